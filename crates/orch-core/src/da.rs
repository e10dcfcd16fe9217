//! The [`Da`] port: data availability.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::chain::StateUpdate;
use crate::error::{Error, Result};
use crate::forward::port;
use crate::types::BlockRange;

/// State updates to make available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaRequest {
    /// Idempotency key: the same key always names the same publication.
    pub dedup_key: String,
    /// Blocks covered.
    pub range: BlockRange,
    /// One state update per block of `range`, in order.
    pub updates: Vec<StateUpdate>,
}

/// Where published data can be found (what settlement cites as DA proof).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaReference {
    /// Layer-specific locator (tx hash, blob versioned hashes, …).
    pub id: String,
    /// Number of blobs or chunks.
    pub chunks: u32,
    /// Payload bytes published.
    pub bytes: u64,
}

/// One named piece of what a DA layer publishes for a request (a blob, a manifest), for the
/// engine to keep as an artefact of the DA job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaArtifact {
    /// File name, one path segment (`blob-0.bin`, `blobs.json`); unique within a payload.
    pub name: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// What a DA layer makes available for a request, in its own format, before it publishes:
/// for EIP-4844 DA the blobs of the batch's squashed state diff and a manifest of their
/// commitments. See [`Da::encode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaPayload {
    /// The pieces, in order.
    pub artifacts: Vec<DaArtifact>,
}

/// Whether published data is included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaStatus {
    /// Not yet final.
    Pending,
    /// Included and final.
    Included,
    /// Dropped or failed: publish again.
    Failed {
        /// Why.
        reason: String,
    },
}

port! {
    /// A data-availability layer.
    ///
    /// # Contract
    /// 1. `publish` with a dedup key already published returns the same reference and publishes
    ///    nothing new. Data larger than one submission is split, never truncated.
    /// 2. `verify` of a reference moves only forward (`Pending` → `Included` | `Failed`).
    /// 3. `encode` is deterministic and has no effect: the same request gives the same payload, and
    ///    it is exactly what `publish` of that request makes available. A layer without a payload
    ///    of its own answers `Unsupported` (the default).
    #[async_trait]
    pub trait Da: Debug + Send + Sync + 'static {
        /// Largest payload of one submission, in bytes.
        fn max_bytes_per_submission(&self) -> usize;
        /// The layer's encoding of `req` (blobs and the like), which the engine stores as the DA
        /// job's artefacts before it publishes — so that a settlement which must carry the same
        /// data (Ethereum's KZG DA puts the blobs in the state-update transaction) reads exactly
        /// what was published. No effect; `Unsupported` by default.
        async fn encode(&self, req: &DaRequest) -> Result<DaPayload> {
            let _ = req;
            Err(Error::unsupported("Da::encode", std::any::type_name::<Self>()))
        }
        /// Publish (idempotent on `dedup_key`).
        async fn publish(&self, req: DaRequest) -> Result<DaReference>;
        /// Check inclusion.
        async fn verify(&self, reference: &DaReference) -> Result<DaStatus>;
    }
}
