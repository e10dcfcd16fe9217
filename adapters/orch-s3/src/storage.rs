//! [`S3Storage`]: the [`Storage`] port on an S3 bucket under a key prefix.

use base64::Engine as _;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart, CreateBucketConfiguration};
use orch_core::error::{Error, Result};
use orch_core::secret::redact_url;
use orch_core::storage::{key_has_prefix, ObjectMeta, Storage};
use orch_core::types::ObjectKey;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::config::S3Config;
use crate::error::{map_err, Ctx, BACKEND};

/// User metadata key holding the lowercase hex SHA-256 of the content
/// (`x-amz-meta-orch-sha256`).
pub const SHA256_METADATA: &str = "orch-sha256";
/// Objects hashed on the blocking pool from this size on, to keep the executor responsive.
const HASH_INLINE_MAX: usize = 256 * 1024;
/// HEAD requests in flight while `list` collects hashes.
const LIST_HEADS: usize = 16;

/// [`Storage`] on Amazon S3 or an S3-compatible store (MinIO, R2, moto, LocalStack, …).
///
/// * Objects live at `<prefix>/<key>` in the bucket; a store sees only its own prefix.
/// * `put` computes the SHA-256 and stores it as user metadata `orch-sha256`; a single PUT
///   also sends it as the request's `x-amz-checksum-sha256`, so S3 rejects a damaged upload.
///   From `multipart_threshold` on, the object is uploaded in `part_size` parts
///   (`upload_concurrency` at once); a failed upload is aborted. Both are atomic: readers
///   see the old or the new object.
/// * `head` reads size and hash from a HEAD request; an object without the metadata
///   (written by another tool) is downloaded and hashed.
/// * `list` pages through `ListObjectsV2` and HEADs each object for its hash.
/// * A key may be both an object and the prefix of others (`a` and `a/b`), as S3 allows.
///
/// Cheap to clone; clones share the client.
#[derive(Debug, Clone)]
pub struct S3Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: aws_sdk_s3::Client,
    config: S3Config,
    region: String,
    /// The store's prefix inside the bucket, without the trailing `/`.
    root: Option<String>,
    ctx: Ctx,
}

impl S3Storage {
    /// Checks `config` (errors name the key), builds the client and resolves credentials.
    /// Does not touch the bucket: [`Storage::setup`] creates it.
    pub async fn connect(config: S3Config) -> Result<S3Storage> {
        config.validate()?;
        let (client, region) = crate::client::build(&config).await?;
        let place = match &config.endpoint {
            Some(e) => format!("S3 bucket {:?} at {}", config.bucket, redact_url(e).trim_end_matches('/')),
            None => format!("S3 bucket {:?} in {region}", config.bucket),
        };
        let root = config.prefix.clone();
        Ok(S3Storage { inner: Arc::new(Inner { client, config, region, root, ctx: Ctx { place } }) })
    }

    /// Another store on the same bucket under `prefix`, relative to this store's prefix
    /// (e.g. one per chain).
    pub fn with_prefix(&self, prefix: &str) -> Result<S3Storage> {
        let key = ObjectKey::new(prefix).map_err(|e| Error::invalid_input("storage.prefix", e.to_string()))?;
        let root = Some(self.s3_key(&key));
        let i = &self.inner;
        let inner = Inner {
            client: i.client.clone(),
            config: i.config.clone(),
            region: i.region.clone(),
            root,
            ctx: i.ctx.clone(),
        };
        Ok(S3Storage { inner: Arc::new(inner) })
    }

    /// The settings in use.
    pub fn config(&self) -> &S3Config {
        &self.inner.config
    }

    /// The SDK client, for what the port does not cover (lifecycle rules, operator tools).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.inner.client
    }

    /// The S3 key of `key`: `<prefix>/<key>`.
    pub fn s3_key(&self, key: &ObjectKey) -> String {
        match &self.inner.root {
            Some(r) => format!("{r}/{key}"),
            None => key.to_string(),
        }
    }

    fn bucket(&self) -> &str {
        &self.inner.config.bucket
    }

    fn ctx(&self) -> &Ctx {
        &self.inner.ctx
    }

    async fn put_single(&self, key: &ObjectKey, data: Vec<u8>, digest: &[u8; 32], sha: &str) -> Result<()> {
        let k = key.as_str();
        self.inner
            .client
            .put_object()
            .bucket(self.bucket())
            .key(self.s3_key(key))
            .metadata(SHA256_METADATA, sha)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| map_err(e, "PutObject", Some(k), self.ctx()))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &ObjectKey, data: Vec<u8>, sha: &str) -> Result<()> {
        let (c, s3_key, k) = (&self.inner.client, self.s3_key(key), key.as_str());
        let created = c
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(&s3_key)
            .metadata(SHA256_METADATA, sha)
            .send()
            .await
            .map_err(|e| map_err(e, "CreateMultipartUpload", Some(k), self.ctx()))?;
        let Some(upload_id) = created.upload_id else {
            return Err(Error::unavailable(
                BACKEND,
                format!("CreateMultipartUpload for {k} in {} returned no upload id", self.ctx().place),
            ));
        };
        let done = async {
            let parts = self.upload_parts(&s3_key, k, &upload_id, data).await?;
            c.complete_multipart_upload()
                .bucket(self.bucket())
                .key(&s3_key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| map_err(e, "CompleteMultipartUpload", Some(k), self.ctx()))?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = done {
            // Parts of an unfinished upload are stored (and billed) until aborted.
            let aborted =
                c.abort_multipart_upload().bucket(self.bucket()).key(&s3_key).upload_id(&upload_id).send().await;
            if let Err(a) = aborted {
                warn!(
                    target: "orch::storage::s3",
                    key = k,
                    upload_id = %upload_id,
                    error = %map_err(a, "AbortMultipartUpload", Some(k), self.ctx()),
                    "could not abort a failed multipart upload; an AbortIncompleteMultipartUpload lifecycle rule on the bucket cleans such parts up"
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// Uploads `data` in parts, `upload_concurrency` at once; the parts in number order.
    async fn upload_parts(
        &self,
        s3_key: &str,
        key: &str,
        upload_id: &str,
        data: Vec<u8>,
    ) -> Result<Vec<CompletedPart>> {
        let part_size = usize::try_from(self.inner.config.part_size).unwrap_or(usize::MAX);
        let concurrency = self.inner.config.upload_concurrency;
        let mut tasks = JoinSet::new();
        let mut parts = Vec::with_capacity(data.len().div_ceil(part_size));
        // Dropping `tasks` on an error aborts the parts still in flight.
        for (i, chunk) in data.chunks(part_size).enumerate() {
            while tasks.len() >= concurrency {
                parts.push(joined(tasks.join_next().await)?);
            }
            let number = i32::try_from(i + 1).map_err(|_| Error::internal("more than i32::MAX parts"))?;
            let req = self
                .inner
                .client
                .upload_part()
                .bucket(self.bucket())
                .key(s3_key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()));
            let (ctx, key) = (self.ctx().clone(), key.to_owned());
            tasks.spawn(async move {
                let out = req.send().await.map_err(|e| map_err(e, "UploadPart", Some(&key), &ctx))?;
                Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build())
            });
        }
        while let Some(r) = tasks.join_next().await {
            parts.push(joined(Some(r))?);
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// The object's bytes, or `NotFound`.
    async fn download(&self, key: &ObjectKey) -> Result<Vec<u8>> {
        let k = key.as_str();
        let out = self
            .inner
            .client
            .get_object()
            .bucket(self.bucket())
            .key(self.s3_key(key))
            .send()
            .await
            .map_err(|e| map_err(e, "GetObject", Some(k), self.ctx()))?;
        let body = out.body.collect().await.map_err(|e| Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("reading object {k} from {} was cut: {e}", self.ctx().place),
            retry_after: None,
            source: Some(Box::new(e)),
        })?;
        Ok(body.to_vec())
    }
}

/// The result of one part task.
fn joined(r: Option<std::result::Result<Result<CompletedPart>, tokio::task::JoinError>>) -> Result<CompletedPart> {
    match r {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(Error::internal_from("an upload task failed", e)),
        None => Err(Error::internal("no upload task to wait for")),
    }
}

/// SHA-256 of `data`, on the blocking pool when it is large.
async fn sha256(data: Vec<u8>) -> Result<(Vec<u8>, [u8; 32])> {
    if data.len() <= HASH_INLINE_MAX {
        let d: [u8; 32] = Sha256::digest(&data).into();
        return Ok((data, d));
    }
    tokio::task::spawn_blocking(move || {
        let d: [u8; 32] = Sha256::digest(&data).into();
        (data, d)
    })
    .await
    .map_err(|e| Error::internal_from("hashing task failed", e))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[async_trait]
impl Storage for S3Storage {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    /// Creates the bucket unless it exists (in the configured region). Fails clearly when
    /// the name belongs to another account.
    async fn setup(&self) -> Result<()> {
        let c = &self.inner.client;
        let head = c.head_bucket().bucket(self.bucket()).send().await;
        match head {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {}
            Err(e) => return Err(map_err(e, "HeadBucket", None, self.ctx())),
        }
        let mut create = c.create_bucket().bucket(self.bucket());
        // us-east-1 is the default location and must not be named.
        if self.inner.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.inner.region.as_str()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            // Created meanwhile by another instance running setup.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
            Err(e) => Err(map_err(e, "CreateBucket", None, self.ctx())),
        }
    }

    async fn put(&self, key: &ObjectKey, data: Vec<u8>) -> Result<ObjectMeta> {
        let size = data.len() as u64;
        let c = &self.inner.config;
        if size > c.max_object_size {
            return Err(Error::invalid_input(
                "object",
                format!(
                    "{key} has {size} bytes, more than storage.max_object_size ({} bytes); raise max_object_size \
                     (and part_size: at most part_size × 10000) or store smaller artefacts",
                    c.max_object_size
                ),
            ));
        }
        let (data, digest) = sha256(data).await?;
        let sha = hex::encode(digest);
        if size >= c.multipart_threshold {
            self.put_multipart(key, data, &sha).await?;
        } else {
            self.put_single(key, data, &digest, &sha).await?;
        }
        Ok(ObjectMeta { key: key.clone(), size, sha256: sha })
    }

    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>> {
        self.download(key).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let k = key.as_str();
        let out = self
            .inner
            .client
            .head_object()
            .bucket(self.bucket())
            .key(self.s3_key(key))
            .send()
            .await
            .map_err(|e| map_err(e, "HeadObject", Some(k), self.ctx()))?;
        let size = out.content_length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        match out.metadata.as_ref().and_then(|m| m.get(SHA256_METADATA)) {
            Some(sha) if is_sha256_hex(sha) => Ok(ObjectMeta { key: key.clone(), size, sha256: sha.clone() }),
            _ => {
                // Written by something else than orch: hash the content itself.
                debug!(target: "orch::storage::s3", key = k, "object without orch-sha256 metadata: hashing its content");
                let data = self.download(key).await?;
                let size = data.len() as u64;
                let (_, digest) = sha256(data).await?;
                Ok(ObjectMeta { key: key.clone(), size, sha256: hex::encode(digest) })
            }
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let k = key.as_str();
        // S3 answers a delete of a missing key with success.
        self.inner
            .client
            .delete_object()
            .bucket(self.bucket())
            .key(self.s3_key(key))
            .send()
            .await
            .map_err(|e| map_err(e, "DeleteObject", Some(k), self.ctx()))?;
        Ok(())
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
        let s3_prefix = match (&self.inner.root, prefix) {
            (Some(r), Some(p)) => format!("{r}/{p}"),
            (Some(r), None) => format!("{r}/"),
            (None, Some(p)) => p.to_string(),
            (None, None) => String::new(),
        };
        let strip = self.inner.root.as_ref().map(|r| r.len() + 1).unwrap_or(0);
        let mut keys = Vec::new();
        let mut pages =
            self.inner.client.list_objects_v2().bucket(self.bucket()).prefix(&s3_prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err(e, "ListObjectsV2", None, self.ctx()))?;
            for obj in page.contents.unwrap_or_default() {
                let Some(full) = obj.key else { continue };
                // Keys that are not orch keys (another tool's objects) are not this store's.
                let Some(key) = full.get(strip..).and_then(|k| ObjectKey::new(k).ok()) else {
                    debug!(target: "orch::storage::s3", key = %full, "skipping a key that is not an orch object key");
                    continue;
                };
                if prefix.is_none_or(|p| key_has_prefix(&key, p)) {
                    keys.push(key);
                }
            }
        }
        // Hashes live in each object's metadata, which listings do not return.
        let mut tasks = JoinSet::new();
        let mut out = Vec::with_capacity(keys.len());
        let mut collect = |r: Option<std::result::Result<Result<ObjectMeta>, tokio::task::JoinError>>| match r {
            Some(Ok(Ok(meta))) => {
                out.push(meta);
                Ok(())
            }
            // Deleted between the listing and the HEAD: not there any more.
            Some(Ok(Err(Error::NotFound { .. }))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(Error::internal_from("a listing task failed", e)),
        };
        for key in keys {
            while tasks.len() >= LIST_HEADS {
                collect(tasks.join_next().await)?;
            }
            let this = self.clone();
            tasks.spawn(async move { this.head(&key).await });
        }
        while let Some(r) = tasks.join_next().await {
            collect(Some(r))?;
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{classify, from_class};

    #[test]
    fn hash_format_is_checked() {
        assert!(is_sha256_hex(&hex::encode(Sha256::digest(b"x"))));
        assert!(!is_sha256_hex("ABC"));
        assert!(!is_sha256_hex(&"G".repeat(64)));
    }

    #[test]
    fn missing_object_errors_name_the_key() {
        let ctx = Ctx { place: "S3 bucket \"b\"".into() };
        let e = from_class(classify("", 404), "HeadObject", Some("a/b"), &ctx, "HTTP 404", None);
        assert!(matches!(e, Error::NotFound { .. }) && e.to_string().contains("a/b"), "{e}");
    }
}
