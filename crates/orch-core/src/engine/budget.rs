//! Batch budgets: how much DA data a batch may carry, measured block by block as the job
//! creator grows the batch.
//!
//! What a batch costs on the settlement layer is mostly its data: for blob DA, the blobs that
//! carry the batch's squashed, compressed state diff. The core knows nothing of that encoding
//! (it lives in `orch-blob` and the DA adapters), so the creator asks a [`BatchBudget`]: it starts
//! a [`BatchFill`] for each new batch and pushes the batch's blocks into it in order; each push
//! answers with the [`Fill`] of the batch so far. The creator closes the batch before the first
//! block that does not fit (see `EngineBuilder::batch_budget`).

use std::fmt::Debug;

use crate::chain::StateUpdate;
use crate::error::Result;
use crate::forward::port;

/// How full a batch's DA data is, after the blocks pushed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// Units the batch's data takes (for blob DA: payload felts, after squashing and
    /// compression, before padding).
    pub used: u64,
    /// Units the budget allows (for blob DA: blobs × 4096 felts).
    pub capacity: u64,
    /// DA units `used` needs (for blob DA: blobs).
    pub blobs: u32,
    /// Whether the batch still fits the budget. Normally `used <= capacity`; a budget may also
    /// refuse data for another reason (say, data too long for the compressor to take).
    pub fits: bool,
}

impl Fill {
    /// A fill that fits exactly when `used <= capacity`.
    pub fn new(used: u64, capacity: u64, blobs: u32) -> Fill {
        Fill { used, capacity, blobs, fits: used <= capacity }
    }

    /// `used / capacity` (above 1 for data over the budget; 0 for a zero capacity).
    pub fn ratio(&self) -> f64 {
        if self.capacity == 0 {
            return 0.0;
        }
        self.used as f64 / self.capacity as f64
    }
}

/// The batch being measured: blocks go in one at a time, in block order, from the batch's first.
///
/// A push is expected to cost about the size of the block's own diff, not of the whole batch so
/// far: a batch can hold hundreds of blocks, and the creator pushes every one.
pub trait BatchFill: Send {
    /// Adds the next block of the batch and returns the fill of the batch with it. After a
    /// push that does not fit, the creator drops this fill (the block starts the next batch),
    /// so an implementation need not be able to take a block back.
    ///
    /// An error means the block cannot be measured (its diff cannot be encoded at all); the
    /// creator retries later, and the batch's DA job would fail on the same diff.
    fn push(&mut self, update: &StateUpdate) -> Result<Fill>;
}

port! {
    /// A DA budget per batch, e.g. `orch_blob::BlobBudget`: at most N blobs of the batch's
    /// squashed, compressed state diff.
    ///
    /// # Contract
    /// - Deterministic: the same blocks pushed into a fresh [`BatchBudget::start`] give the same
    ///   fills, in any process. Batch boundaries, and so the job keys after a restart, depend on
    ///   it.
    /// - The fill of a batch is exactly what the DA layer will publish for that block range
    ///   (for blob DA: `fill.blobs` is the number of blobs its `encode` produces), so a batch
    ///   that fits the budget fits one settlement transaction.
    /// - Pushing only adds: the fill of blocks `a..=b` does not depend on what is pushed after
    ///   `b`.
    pub trait BatchBudget: Debug + Send + Sync + 'static {
        /// A new, empty batch.
        fn start(&self) -> Box<dyn BatchFill>;
    }
}
