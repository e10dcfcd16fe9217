//! The whole Storage conformance suite against a temporary directory, plus behaviour of the
//! file-system store itself.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use orch_core::error::Error;
use orch_core::storage::Storage;
use orch_core::types::ObjectKey;
use orch_fs::{FsConfig, FsStorage};
use tempfile::TempDir;

/// One directory for every case, as a real backend is shared; cases pick fresh prefixes.
fn base() -> &'static TempDir {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

mod storage {
    use super::*;
    orch_testkit::storage_suite!(|prefix: String| async move {
        let cfg = FsConfig { prefix: Some(prefix), ..FsConfig::new(base().path()) };
        Some(Arc::new(FsStorage::new(cfg).unwrap()) as Arc<dyn Storage>)
    });
}

fn k(s: &str) -> ObjectKey {
    ObjectKey::new(s).unwrap()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_root_that_is_a_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let s = FsStorage::at(&file).unwrap();
    for e in [s.setup().await.unwrap_err(), s.put(&k("a"), vec![1]).await.unwrap_err(), s.list(None).await.unwrap_err()]
    {
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
        assert!(e.to_string().contains(&file.display().to_string()), "must name the path: {e}");
    }
    // Also under a prefix.
    let s = FsStorage::new(FsConfig { prefix: Some("p/q".into()), ..FsConfig::new(&file) }).unwrap();
    assert!(matches!(s.setup().await, Err(Error::InvalidInput { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_to_one_key_never_tear() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::at(dir.path()).unwrap();
    s.setup().await.unwrap();
    let key = k("hot/object.bin");
    const LEN: usize = 256 * 1024;
    s.put(&key, vec![0u8; LEN]).await.unwrap();
    let mut tasks = Vec::new();
    for w in 1..=6u8 {
        let (s, key) = (s.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                s.put(&key, vec![w; LEN]).await.unwrap();
            }
        }));
    }
    let reader = {
        let (s, key) = (s.clone(), key.clone());
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            for _ in 0..200 {
                let data = s.get(&key).await.unwrap();
                assert_eq!(data.len(), LEN, "torn read");
                assert!(data.iter().all(|b| *b == data[0]), "mixed content");
                seen.insert(data[0]);
            }
            seen
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    reader.await.unwrap();
    let last = s.get(&key).await.unwrap();
    assert!(last.iter().all(|b| *b == last[0]) && last[0] >= 1);
    assert_eq!(files(dir.path()), ["hot/object.bin"], "temporary files left behind");
}

#[tokio::test]
async fn puts_leave_no_temporary_files_and_deletes_prune_directories() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::new(FsConfig { prefix: Some("chain".into()), ..FsConfig::new(dir.path()) }).unwrap();
    for i in 0..20 {
        s.put(&k(&format!("a/{i}/x.bin")), vec![i as u8; 1000]).await.unwrap();
    }
    assert_eq!(files(dir.path()).len(), 20);
    assert!(files(dir.path()).iter().all(|f| f.starts_with("chain/a/") && f.ends_with("x.bin")));
    for i in 0..20 {
        s.delete(&k(&format!("a/{i}/x.bin"))).await.unwrap();
    }
    assert!(files(dir.path()).is_empty());
    assert!(!dir.path().join("chain/a").exists(), "emptied directories are removed");
}

#[tokio::test]
async fn foreign_and_temporary_files_are_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::at(dir.path()).unwrap();
    s.put(&k("x/real"), b"r".to_vec()).await.unwrap();
    std::fs::write(dir.path().join("x/real.~orch-tmp-abc"), b"partial").unwrap();
    std::fs::write(dir.path().join("x/has space"), b"foreign").unwrap();
    let keys: Vec<_> = s.list(None).await.unwrap().into_iter().map(|m| m.key.to_string()).collect();
    assert_eq!(keys, ["x/real"]);
}

#[tokio::test]
async fn a_key_cannot_be_both_object_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::at(dir.path()).unwrap();
    s.put(&k("a"), b"object".to_vec()).await.unwrap();
    let e = s.put(&k("a/b"), b"child".to_vec()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    s.put(&k("p/q"), b"child".to_vec()).await.unwrap();
    let e = s.put(&k("p"), b"object".to_vec()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    assert!(matches!(s.get(&k("p")).await, Err(Error::NotFound { .. })));
    s.delete(&k("p")).await.unwrap();
    assert_eq!(s.get(&k("p/q")).await.unwrap(), b"child");
    assert_eq!(files(dir.path()), ["a", "p/q"]);
}

#[cfg(unix)]
#[tokio::test]
async fn symbolic_links_out_of_the_root_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
    let s = FsStorage::at(dir.path()).unwrap();
    let e = s.put(&k("escape/x"), b"no".to_vec()).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing written outside");
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    assert!(s.get(&k("escape/secret")).await.is_err());
    assert!(s.delete(&k("escape/secret")).await.is_err());
    assert!(outside.path().join("secret").exists(), "delete must not follow the link");
    assert!(s.list(None).await.unwrap().is_empty(), "links are not followed by list");
}
