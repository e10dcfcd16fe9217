#![doc = include_str!("../README.md")]

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::error::{Error, Result};
use orch_core::storage::{key_has_prefix, ObjectMeta, Storage};
use orch_core::types::ObjectKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Backend name in errors and metrics.
const BACKEND: &str = "fs";

/// Marks temporary files. `~` is not allowed in an [`ObjectKey`], so a temporary file can
/// never be mistaken for an object, and `list` skips it.
const TMP_MARK: &str = ".~orch-tmp-";

/// Settings of the local-directory store (`[storage] provider = "fs"`).
///
/// ```toml
/// root = "data/objects"
/// prefix = "madara-devnet"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FsConfig {
    /// Directory holding the objects (default `data/objects`); created by `setup` or the
    /// first `put`.
    pub root: PathBuf,
    /// Key prefix of this store inside `root` (default none): the store lives in
    /// `<root>/<prefix>` and sees only its own keys. Same syntax as an object key.
    pub prefix: Option<String>,
    /// fsync each object and its directory on `put` (default `true`). Turning it off is only
    /// for throwaway data: a power loss may then lose recent objects.
    pub fsync: bool,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig { root: PathBuf::from("data/objects"), prefix: None, fsync: true }
    }
}

impl FsConfig {
    /// Defaults with the objects under `root`.
    pub fn new(root: impl Into<PathBuf>) -> FsConfig {
        FsConfig { root: root.into(), ..FsConfig::default() }
    }

    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.root.as_os_str().is_empty() {
            return Err(Error::invalid_input("storage.root", "is empty: give a directory, e.g. \"data/objects\""));
        }
        if let Some(p) = &self.prefix {
            ObjectKey::new(p.as_str()).map_err(|e| Error::invalid_input("storage.prefix", e.to_string()))?;
        }
        Ok(())
    }
}

/// [`Storage`] on a local directory: one file per object at `<root>/<prefix>/<key>`.
///
/// Writes are atomic (temporary file in the same directory, fsync, rename, fsync of the
/// directory): a reader sees the old or the new content, never a mix, even with concurrent
/// writers of the same key. A key cannot be both an object and the prefix of other objects
/// (`a` and `a/b`): the second put fails with `InvalidInput`. Symbolic links are not
/// followed out of the root. All file-system work runs on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct FsStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `<root>/<prefix>`: where this store's keys start.
    dir: PathBuf,
    fsync: bool,
}

impl FsStorage {
    /// A store as `config` says. Checks the config; touches no file (see [`Storage::setup`]).
    pub fn new(config: FsConfig) -> Result<FsStorage> {
        config.validate()?;
        let mut dir = config.root;
        if let Some(p) = &config.prefix {
            let key = ObjectKey::new(p.as_str()).map_err(|e| Error::invalid_input("storage.prefix", e.to_string()))?;
            dir = join_key(&dir, &key)?;
        }
        Ok(FsStorage { inner: Arc::new(Inner { dir, fsync: config.fsync }) })
    }

    /// A store at `root` with default settings.
    pub fn at(root: impl Into<PathBuf>) -> Result<FsStorage> {
        FsStorage::new(FsConfig::new(root))
    }

    /// Another store on the same directory under `prefix` (relative to this store's keys).
    pub fn with_prefix(&self, prefix: &str) -> Result<FsStorage> {
        let key = ObjectKey::new(prefix).map_err(|e| Error::invalid_input("storage.prefix", e.to_string()))?;
        let dir = join_key(&self.inner.dir, &key)?;
        Ok(FsStorage { inner: Arc::new(Inner { dir, fsync: self.inner.fsync }) })
    }

    /// The directory holding this store's keys.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::internal_from("file-system task failed", e))?
    }
}

/// `base/<segments of key>`, refusing anything that could leave `base`. [`ObjectKey`]
/// already forbids empty, `.` and `..` segments and separators; this checks again so that a
/// future change there cannot open a traversal here.
fn join_key(base: &Path, key: &ObjectKey) -> Result<PathBuf> {
    let mut path = base.to_path_buf();
    for seg in key.as_str().split('/') {
        let bad = seg.is_empty() || seg == "." || seg == ".." || seg.contains(['/', '\\', '\0']);
        if bad || Path::new(seg).components().count() != 1 {
            return Err(Error::invalid_input("object key", format!("{key}: unsafe path segment {seg:?}")));
        }
        path.push(seg);
    }
    if !path.starts_with(base) {
        return Err(Error::invalid_input("object key", format!("{key} resolves outside the storage root")));
    }
    Ok(path)
}

/// The one place where I/O errors become orch errors. `path` is the file or directory the
/// operation touched; `key` the object, if any.
fn map_io(e: io::Error, op: &str, path: &Path, key: Option<&ObjectKey>) -> Error {
    use io::ErrorKind as K;
    let file = path.display();
    match e.kind() {
        K::NotFound => match key {
            Some(k) => Error::not_found(format!("object {k}")),
            None => Error::not_found(format!("{file}")),
        },
        // Fixable by the operator, not by retrying.
        K::PermissionDenied | K::ReadOnlyFilesystem => Error::invalid_input(
            "storage.root",
            format!("cannot {op} {file}: {e}; make the directory writable by the user running orch (chown/chmod) or choose another root"),
        ),
        // Freeing space (artefact retention, an operator) lets the same put succeed.
        K::StorageFull | K::QuotaExceeded => Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("disk full: cannot {op} {file}; free space on the volume"),
            retry_after: Some(Duration::from_secs(30)),
            source: Some(Box::new(e)),
        },
        // `a/b` put where object `a` exists, or object `a` put where `a/…` objects exist.
        K::NotADirectory | K::IsADirectory | K::DirectoryNotEmpty | K::AlreadyExists => Error::invalid_input(
            "object key",
            format!(
                "cannot {op} {file}: {e}; a key cannot be both an object and the prefix of other objects{}",
                key.map(|k| format!(" ({k})")).unwrap_or_default()
            ),
        ),
        K::FileTooLarge | K::InvalidFilename | K::InvalidInput => {
            Error::invalid_input("object", format!("cannot {op} {file}: {e}"))
        }
        // Interrupted or busy I/O, EIO on a network volume: may work on a retry.
        _ => Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("cannot {op} {file}: {e}"),
            retry_after: None,
            source: Some(Box::new(e)),
        },
    }
}

/// Errors unless `dir` is a directory or does not exist yet (nor does any ancestor that is a
/// file).
fn check_dir(dir: &Path) -> Result<()> {
    for p in dir.ancestors() {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(Error::invalid_input(
                    "storage.root",
                    format!("{} is a file, not a directory; point storage.root at a directory", p.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(map_io(e, "inspect", p, None)),
        }
    }
    Ok(())
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Inner {
    fn path(&self, key: &ObjectKey) -> Result<PathBuf> {
        join_key(&self.dir, key)
    }

    /// Errors if `dir` (an existing directory under the root) resolves outside the root
    /// through a symbolic link.
    fn check_inside(&self, dir: &Path, key: &ObjectKey) -> Result<()> {
        let root = fs::canonicalize(&self.dir).map_err(|e| map_io(e, "resolve", &self.dir, None))?;
        let real = fs::canonicalize(dir).map_err(|e| map_io(e, "resolve", dir, Some(key)))?;
        if real.starts_with(&root) {
            Ok(())
        } else {
            Err(Error::invalid_input(
                "object key",
                format!("{key}: {} leads outside the storage root {} (symbolic link?)", dir.display(), root.display()),
            ))
        }
    }

    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<()> {
        check_dir(&self.dir)?;
        let path = self.path(key)?;
        let dir = path.parent().ok_or_else(|| Error::internal("object path without a parent"))?;
        // A concurrent delete may remove an emptied parent between our mkdir and our create:
        // try again a few times.
        let mut tries = 0;
        let (tmp, mut file) = loop {
            fs::create_dir_all(dir).map_err(|e| map_io(e, "create directory", dir, Some(key)))?;
            self.check_inside(dir, key)?;
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("object");
            let tmp = dir.join(format!("{name}{TMP_MARK}{}", uuid::Uuid::new_v4().simple()));
            match File::options().write(true).create_new(true).open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 5 => tries += 1,
                Err(e) => return Err(map_io(e, "create", &tmp, Some(key))),
            }
        };
        let written = (|| {
            file.write_all(data).map_err(|e| map_io(e, "write", &tmp, Some(key)))?;
            if self.fsync {
                file.sync_all().map_err(|e| map_io(e, "fsync", &tmp, Some(key)))?;
            }
            drop(file);
            fs::rename(&tmp, &path).map_err(|e| map_io(e, "rename into place", &path, Some(key)))?;
            if self.fsync {
                // Makes the rename itself durable.
                File::open(dir).and_then(|d| d.sync_all()).map_err(|e| map_io(e, "fsync", dir, Some(key)))?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    fn open(&self, key: &ObjectKey) -> Result<(PathBuf, File)> {
        let path = self.path(key)?;
        let file = File::open(&path).map_err(|e| map_io(e, "read", &path, Some(key)))?;
        let meta = file.metadata().map_err(|e| map_io(e, "read", &path, Some(key)))?;
        if !meta.is_file() {
            // A prefix of other objects, not an object.
            return Err(Error::not_found(format!("object {key}")));
        }
        if let Some(dir) = path.parent() {
            self.check_inside(dir, key)?;
        }
        Ok((path, file))
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>> {
        let (path, mut file) = self.open(key)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| map_io(e, "read", &path, Some(key)))?;
        Ok(data)
    }

    fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let (path, file) = self.open(key)?;
        hash_file(file, &path, key.clone())
    }

    fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = self.path(key)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Ok(()), // a prefix, not an object: nothing to delete
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(map_io(e, "delete", &path, Some(key))),
        }
        if let Some(dir) = path.parent() {
            self.check_inside(dir, key)?;
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(map_io(e, "delete", &path, Some(key))),
        }
        // Drop emptied directories up to the store's own; `remove_dir` fails (harmlessly)
        // on a directory that is not empty.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(&self.dir) && *d != self.dir) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
        check_dir(&self.dir)?;
        let start = match prefix {
            Some(p) => self.path(p)?,
            None => self.dir.clone(),
        };
        let mut out = Vec::new();
        let rel = prefix.map(|p| p.as_str().to_owned());
        walk(&start, rel, &mut out)?;
        if let Some(p) = prefix {
            out.retain(|m| key_has_prefix(&m.key, p));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

fn hash_file(mut file: File, path: &Path, key: ObjectKey) -> Result<ObjectMeta> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| map_io(e, "read", path, Some(&key)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(ObjectMeta { key, size, sha256: hex::encode(hasher.finalize()) })
}

/// Collects the objects at or below `path`, whose key is `rel` (`None` for the root).
/// Entries whose names are not key segments — temporary files, foreign files — and symbolic
/// links are skipped.
fn walk(path: &Path, rel: Option<String>, out: &mut Vec<ObjectMeta>) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(map_io(e, "list", path, None)),
    };
    if meta.is_file() {
        let Some(key) = rel.and_then(|r| ObjectKey::new(r).ok()) else { return Ok(()) };
        match File::open(path) {
            Ok(f) => out.push(hash_file(f, path, key)?),
            // Deleted while we listed: not there any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(map_io(e, "read", path, Some(&key))),
        }
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(map_io(e, "list", path, None)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| map_io(e, "list", path, None))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if name.contains(TMP_MARK) || ObjectKey::new(name.as_str()).is_err() {
            continue;
        }
        let child = match &rel {
            Some(r) => format!("{r}/{name}"),
            None => name,
        };
        walk(&entry.path(), Some(child), out)?;
    }
    Ok(())
}

#[async_trait]
impl Storage for FsStorage {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn setup(&self) -> Result<()> {
        self.blocking(|inner| {
            check_dir(&inner.dir)?;
            fs::create_dir_all(&inner.dir).map_err(|e| map_io(e, "create directory", &inner.dir, None))
        })
        .await
    }

    async fn put(&self, key: &ObjectKey, data: Vec<u8>) -> Result<ObjectMeta> {
        let key = key.clone();
        self.blocking(move |inner| {
            inner.put(&key, &data)?;
            Ok(ObjectMeta { size: data.len() as u64, sha256: sha256_hex(&data), key })
        })
        .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>> {
        let key = key.clone();
        self.blocking(move |inner| inner.get(&key)).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let key = key.clone();
        self.blocking(move |inner| inner.head(&key)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let key = key.clone();
        self.blocking(move |inner| inner.delete(&key)).await
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
        let prefix = prefix.cloned();
        self.blocking(move |inner| inner.list(prefix.as_ref())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_under_the_root() {
        let p = join_key(Path::new("/r"), &ObjectKey::new("a/b.c/d").unwrap()).unwrap();
        assert_eq!(p, Path::new("/r/a/b.c/d"));
    }

    #[test]
    fn io_errors_are_classified() {
        let p = Path::new("/r/x");
        let k = ObjectKey::new("x").unwrap();
        let e = map_io(io::Error::from(io::ErrorKind::NotFound), "read", p, Some(&k));
        assert!(matches!(e, Error::NotFound { .. }));
        let e = map_io(io::Error::from(io::ErrorKind::PermissionDenied), "write", p, Some(&k));
        assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("/r/x"), "{e}");
        let e = map_io(io::Error::from(io::ErrorKind::StorageFull), "write", p, Some(&k));
        assert!(e.is_retryable());
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_prefixes() {
        let e = serde_json::from_str::<FsConfig>(r#"{"rooot":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("rooot"));
        let c: FsConfig = serde_json::from_str(r#"{"root":"x","prefix":"a/b"}"#).unwrap();
        assert!(c.fsync);
        assert_eq!(FsStorage::new(c).unwrap().dir(), Path::new("x/a/b"));
        let bad = FsConfig { prefix: Some("../up".into()), ..FsConfig::new("x") };
        assert!(FsStorage::new(bad).is_err());
    }
}
