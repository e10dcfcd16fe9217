//! [`StorageBlobs`]: the blobs of a KZG-DA state update, read back from the artefacts the DA
//! job stored through the `Storage` port.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use orch_blob::{Blob, BYTES_PER_BLOB};
use orch_core::engine::pipeline::artifact_key;
use orch_core::error::{Error, Result};
use orch_core::settle::StateUpdateRequest;
use orch_core::storage::Storage;
use orch_core::types::{BlockRange, ChainId, JobKind, ObjectKey};
use serde::Deserialize;

use crate::BlobSource;

/// The DA payload's manifest, stored next to its blobs.
const MANIFEST: &str = "blobs.json";

/// The part of the manifest read here: the blobs' artefact names, in commitment order. The
/// DA layer writes more (commitments, versioned hashes, felt counts); the contract checks the
/// blobs against the program output's commitments, so those are not needed to read them.
#[derive(Debug, Deserialize)]
struct Manifest {
    blobs: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    name: String,
}

/// A [`BlobSource`] over the artefacts of the batch's `DataSubmission` job: the engine's DA
/// handler stores what the DA layer encoded under `<chain>/data_submission/<first>-<last>/`
/// before publishing it — a manifest `blobs.json` listing the blobs in order, and each blob as
/// `blob-<i>.bin` (131 072 bytes) — so the settlement sends exactly the published bytes.
///
/// Every blob the manifest names must be stored, no other blob may be stored beside them, and
/// each must be a whole blob; errors name the artefact key. Storage errors pass through as
/// they are, so a store that is briefly down stays retryable.
pub struct StorageBlobs {
    storage: Arc<dyn Storage>,
    chain: ChainId,
}

impl fmt::Debug for StorageBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageBlobs").field("storage", &self.storage.backend()).field("chain", &self.chain).finish()
    }
}

impl StorageBlobs {
    /// Blobs of `chain`'s batches from `storage`, where the engine keeps that chain's
    /// artefacts.
    pub fn new(storage: Arc<dyn Storage>, chain: ChainId) -> StorageBlobs {
        StorageBlobs { storage, chain }
    }

    fn key(&self, range: BlockRange, name: &str) -> Result<ObjectKey> {
        artifact_key(&self.chain, JobKind::DataSubmission, range, name)
    }

    async fn manifest(&self, range: BlockRange) -> Result<(ObjectKey, Vec<String>)> {
        let key = self.key(range, MANIFEST)?;
        let raw = self.storage.get(&key).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::not_found(format!(
                "DA manifest {key} of blocks {range} (the DA job stores it when its layer encodes blobs; \
                 a DA layer without blobs cannot feed a KZG-DA state update)"
            )),
            other => other,
        })?;
        let manifest: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| Error::invalid_input(key.to_string(), format!("is not a DA blob manifest: {e}")))?;
        let mut seen = BTreeSet::new();
        for entry in &manifest.blobs {
            if entry.name.is_empty() || entry.name.contains('/') || !seen.insert(entry.name.as_str()) {
                return Err(Error::invalid_input(
                    key.to_string(),
                    format!("names blob {:?}: names must be unique single path segments", entry.name),
                ));
            }
        }
        Ok((key, manifest.blobs.into_iter().map(|e| e.name).collect()))
    }

    /// The stored blob artefacts of `range` besides the manifest's: left-overs of another
    /// encoding, which would make the manifest a stale one.
    async fn strays(&self, range: BlockRange, names: &[String]) -> Result<Vec<String>> {
        let prefix =
            ObjectKey::new(format!("{}/{}/{}-{}", self.chain, JobKind::DataSubmission, range.first(), range.last()))?;
        let listed = self.storage.list(Some(&prefix)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|m| m.key.as_str().rsplit('/').next().map(str::to_owned))
            .filter(|n| is_blob_name(n) && !names.iter().any(|k| k == n))
            .collect())
    }
}

/// `blob-<i>.bin`, the name the DA layers give blob artefacts.
fn is_blob_name(name: &str) -> bool {
    name.strip_prefix("blob-")
        .and_then(|r| r.strip_suffix(".bin"))
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

#[async_trait]
impl BlobSource for StorageBlobs {
    async fn blobs(&self, req: &StateUpdateRequest) -> Result<Vec<Blob>> {
        let range = req.range;
        let (manifest_key, names) = self.manifest(range).await?;
        let strays = self.strays(range, &names).await?;
        if !strays.is_empty() {
            return Err(Error::invalid_input(
                manifest_key.to_string(),
                format!(
                    "lists {} blobs, but {} more are stored beside it ({}): the artefacts of blocks {range} \
                     are from different encodings; rerun the DA job",
                    names.len(),
                    strays.len(),
                    strays.join(", ")
                ),
            ));
        }
        let mut blobs = Vec::with_capacity(names.len());
        for name in &names {
            let key = self.key(range, name)?;
            let bytes = self.storage.get(&key).await.map_err(|e| match e {
                Error::NotFound { .. } => Error::not_found(format!(
                    "blob artefact {key}: {manifest_key} lists {} blobs, this one is not stored",
                    names.len()
                )),
                other => other,
            })?;
            if bytes.len() != BYTES_PER_BLOB {
                return Err(Error::invalid_input(
                    key.to_string(),
                    format!("is {} bytes; a blob is exactly {BYTES_PER_BLOB}", bytes.len()),
                ));
            }
            blobs.push(Blob::from_bytes(&bytes).map_err(|e| Error::invalid_input(key.to_string(), e.to_string()))?);
        }
        tracing::debug!(target: "orch::eth", range = %range, blobs = blobs.len(), "read the batch's blobs from storage");
        Ok(blobs)
    }
}

#[cfg(test)]
mod tests {
    use orch_core::da::DaReference;
    use orch_core::Felt;
    use orch_fs::{FsConfig, FsStorage};

    use super::*;

    fn request(range: BlockRange, blobs: u32) -> StateUpdateRequest {
        StateUpdateRequest {
            dedup_key: "k".into(),
            range,
            prev_root: Felt::ZERO,
            new_root: Felt::ONE,
            block_hash: Felt::ONE,
            program_output: Vec::new(),
            da: DaReference { id: "da".into(), chunks: blobs, bytes: 0 },
        }
    }

    fn blob(tag: u8) -> Blob {
        let mut bytes = vec![0u8; BYTES_PER_BLOB];
        for e in bytes.chunks_mut(32) {
            e[31] = tag;
        }
        Blob::from_bytes(&bytes).unwrap()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        storage: Arc<dyn Storage>,
        source: StorageBlobs,
        chain: ChainId,
        range: BlockRange,
    }

    impl Fixture {
        async fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(FsConfig::new(dir.path())).unwrap());
            storage.setup().await.unwrap();
            let chain = ChainId::new("appchain").unwrap();
            let source = StorageBlobs::new(storage.clone(), chain.clone());
            Fixture { _dir: dir, storage, source, chain, range: BlockRange::new(10, 19).unwrap() }
        }

        fn key(&self, name: &str) -> ObjectKey {
            artifact_key(&self.chain, JobKind::DataSubmission, self.range, name).unwrap()
        }

        /// Stores `blobs` and a manifest naming `listed` of them, as the DA handler does.
        async fn store(&self, blobs: &[Vec<u8>], listed: usize) {
            for (i, b) in blobs.iter().enumerate() {
                self.storage.put(&self.key(&format!("blob-{i}.bin")), b.clone()).await.unwrap();
            }
            let entries: Vec<_> = (0..listed)
                .map(|i| serde_json::json!({ "name": format!("blob-{i}.bin"), "commitment": "0x00", "versioned_hash": "0x01" }))
                .collect();
            let manifest = serde_json::json!({ "starknet_version": "0.13.3", "felts": 5000, "blobs": entries });
            self.storage.put(&self.key(MANIFEST), serde_json::to_vec(&manifest).unwrap()).await.unwrap();
        }

        async fn read(&self) -> Result<Vec<Blob>> {
            self.source.blobs(&request(self.range, 2)).await
        }
    }

    #[tokio::test]
    async fn reads_the_blobs_the_manifest_lists_in_its_order() {
        let f = Fixture::new().await;
        f.store(&[blob(1).as_bytes().to_vec(), blob(2).as_bytes().to_vec()], 2).await;
        assert_eq!(f.read().await.unwrap(), vec![blob(1), blob(2)]);
    }

    #[tokio::test]
    async fn a_missing_manifest_or_blob_is_not_found_and_named() {
        let f = Fixture::new().await;
        let e = f.read().await.unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("appchain/data_submission/10-19/blobs.json"), "{e}");
        // The manifest lists two blobs, one is stored.
        f.store(&[blob(1).as_bytes().to_vec()], 2).await;
        let e = f.read().await.unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("appchain/data_submission/10-19/blob-1.bin"), "{e}");
    }

    #[tokio::test]
    async fn a_short_blob_is_refused_with_its_key() {
        let f = Fixture::new().await;
        f.store(&[blob(1).as_bytes().to_vec(), vec![0u8; BYTES_PER_BLOB - 32]], 2).await;
        match f.read().await.unwrap_err() {
            Error::InvalidInput { field, reason } => {
                assert_eq!(field, "appchain/data_submission/10-19/blob-1.bin");
                assert!(reason.contains("131040 bytes"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn more_blobs_stored_than_listed_is_a_stale_manifest() {
        let f = Fixture::new().await;
        f.store(&[blob(1).as_bytes().to_vec(), blob(2).as_bytes().to_vec(), blob(3).as_bytes().to_vec()], 2).await;
        match f.read().await.unwrap_err() {
            Error::InvalidInput { field, reason } => {
                assert_eq!(field, "appchain/data_submission/10-19/blobs.json");
                assert!(reason.contains("lists 2 blobs") && reason.contains("blob-2.bin"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_manifest_that_is_not_one_is_refused_with_its_key() {
        let f = Fixture::new().await;
        f.storage.put(&f.key(MANIFEST), b"{\"blobs\": 3}".to_vec()).await.unwrap();
        match f.read().await.unwrap_err() {
            Error::InvalidInput { field, .. } => assert_eq!(field, "appchain/data_submission/10-19/blobs.json"),
            other => panic!("{other:?}"),
        }
        f.storage.put(&f.key(MANIFEST), br#"{"blobs": [{"name": "../x"}]}"#.to_vec()).await.unwrap();
        assert!(matches!(f.read().await.unwrap_err(), Error::InvalidInput { .. }));
    }

    #[test]
    fn blob_names_are_recognised() {
        assert!(is_blob_name("blob-0.bin") && is_blob_name("blob-12.bin"));
        assert!(!is_blob_name("blob-.bin") && !is_blob_name("blobs.json") && !is_blob_name("blob-1.hex"));
    }
}
