//! The [`Storage`] port: artefacts (PIE, proofs, blobs, program output).

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::forward::port;
use crate::types::ObjectKey;

/// Facts about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Its key (relative to the store's prefix).
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

port! {
    /// Object storage.
    ///
    /// # Contract
    /// 1. `put` stores the bytes under the key atomically (a reader sees the old or the new
    ///    content, never a mix) and returns its meta; it overwrites.
    /// 2. `get` returns exactly the bytes put; `NotFound` for a missing key.
    /// 3. `head` returns size and SHA-256 of the content; `NotFound` for a missing key.
    /// 4. `delete` removes the key; deleting a missing key is not an error.
    /// 5. `list` returns the metas of every key under `prefix` (a whole-segment prefix: `a/b`
    ///    matches `a/b/c`, not `a/bc`), sorted by key; `None` lists everything.
    /// 6. Two stores configured with different, non-nested root prefixes on the same backend
    ///    never see each other's keys (`x` and `xy` are isolated; `x` and `x/a` are not).
    /// 7. Whether a key may be both an object and a prefix of others (`a` and `a/b`) is the
    ///    backend's choice (object stores allow it, file systems cannot): orch never does it, and
    ///    a backend that refuses says so with `InvalidInput`.
    #[async_trait]
    pub trait Storage: Debug + Send + Sync + 'static {
        /// Backend name.
        fn backend(&self) -> &'static str;
        /// Creates the bucket/directory if missing; idempotent.
        async fn setup(&self) -> Result<()>;
        /// Store bytes.
        async fn put(&self, key: &ObjectKey, data: Vec<u8>) -> Result<ObjectMeta>;
        /// Read bytes.
        async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>>;
        /// Size and hash.
        async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta>;
        /// Remove.
        async fn delete(&self, key: &ObjectKey) -> Result<()>;
        /// List under a prefix.
        async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>>;
    }
}

/// Whether `key` lies under `prefix` in the whole-segment sense of contract rule 5.
pub fn key_has_prefix(key: &ObjectKey, prefix: &ObjectKey) -> bool {
    let (k, p) = (key.as_str(), prefix.as_str());
    k == p || (k.starts_with(p) && k.as_bytes().get(p.len()) == Some(&b'/'))
}
