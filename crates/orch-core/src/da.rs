//! The [`Da`] port: data availability.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::chain::StateUpdate;
use crate::error::Result;
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

/// A data-availability layer.
///
/// # Contract
/// 1. `publish` with a dedup key already published returns the same reference and publishes
///    nothing new. Data larger than one submission is split, never truncated.
/// 2. `verify` of a reference moves only forward (`Pending` → `Included` | `Failed`).
#[async_trait]
pub trait Da: Debug + Send + Sync + 'static {
    /// Largest payload of one submission, in bytes.
    fn max_bytes_per_submission(&self) -> usize;
    /// Publish (idempotent on `dedup_key`).
    async fn publish(&self, req: DaRequest) -> Result<DaReference>;
    /// Check inclusion.
    async fn verify(&self, reference: &DaReference) -> Result<DaStatus>;
}

#[async_trait]
impl<T: Da + ?Sized> Da for std::sync::Arc<T> {
    fn max_bytes_per_submission(&self) -> usize {
        (**self).max_bytes_per_submission()
    }
    async fn publish(&self, req: DaRequest) -> Result<DaReference> {
        (**self).publish(req).await
    }
    async fn verify(&self, reference: &DaReference) -> Result<DaStatus> {
        (**self).verify(reference).await
    }
}
