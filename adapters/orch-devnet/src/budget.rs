//! The batch budget that matches what the devnet's DA layer and OS runner put into blobs.

use orch_blob::BlobBudget;
use orch_core::error::{Error, Result};

use crate::blobs::DA_VERSION;

/// A budget of `blobs` blobs (1–6) per batch, counted in the format the devnet's DA layer
/// publishes and its OS runner commits to ([`DA_VERSION`]: the batch's squashed diff, 0.13.3 DA
/// words, stateless compression, no nonce oracle). Give it to the engine with
/// `EngineBuilder::batch_budget` when `engine.batch_blobs` is set.
pub fn blob_budget(blobs: u32) -> Result<BlobBudget> {
    BlobBudget::new(blobs, DA_VERSION.encoding()).map_err(|e| Error::invalid_input("engine.batch_blobs", e.to_string()))
}

#[cfg(test)]
mod tests;
