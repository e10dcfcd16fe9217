//! [`MemStorage`]: the reference `Storage`, in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orch_core::error::{Error, Result};
use orch_core::storage::{key_has_prefix, ObjectMeta, Storage};
use orch_core::types::ObjectKey;
use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An in-memory object store implementing the whole [`Storage`] contract. Stores made with
/// [`MemStorage::with_prefix`] share one backend under different root prefixes.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    backend: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
    root: String,
}

impl MemStorage {
    /// An empty store with no root prefix.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Another view of the same backend under `root/`.
    pub fn with_prefix(&self, root: &str) -> Result<MemStorage> {
        ObjectKey::new(root)?;
        Ok(MemStorage { backend: self.backend.clone(), root: format!("{root}/") })
    }

    fn full(&self, key: &ObjectKey) -> String {
        format!("{}{}", self.root, key.as_str())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        self.backend.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn meta(key: ObjectKey, data: &[u8]) -> ObjectMeta {
    ObjectMeta { key, size: data.len() as u64, sha256: sha256_hex(data) }
}

#[async_trait]
impl Storage for MemStorage {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn setup(&self) -> Result<()> {
        Ok(())
    }

    async fn put(&self, key: &ObjectKey, data: Vec<u8>) -> Result<ObjectMeta> {
        let m = meta(key.clone(), &data);
        self.lock().insert(self.full(key), Arc::new(data));
        Ok(m)
    }

    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>> {
        self.lock()
            .get(&self.full(key))
            .map(|d| d.as_ref().clone())
            .ok_or_else(|| Error::not_found(format!("object {key}")))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta> {
        let d = self.lock().get(&self.full(key)).cloned();
        d.map(|d| meta(key.clone(), &d)).ok_or_else(|| Error::not_found(format!("object {key}")))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        self.lock().remove(&self.full(key));
        Ok(())
    }

    async fn list(&self, prefix: Option<&ObjectKey>) -> Result<Vec<ObjectMeta>> {
        let g = self.lock();
        let mut out = Vec::new();
        for (k, d) in g.range(self.root.clone()..) {
            let Some(rel) = k.strip_prefix(&self.root) else { break };
            let key = ObjectKey::new(rel)?;
            if prefix.is_none_or(|p| key_has_prefix(&key, p)) {
                out.push(meta(key, d));
            }
        }
        Ok(out)
    }
}
