//! A batch's blobs as the devnet's OS runner and DA layer both derive them: the squashed state
//! diff of the batch's blocks, encoded with orch-blob in [`DA_VERSION`]'s format, and the KZG
//! commitments of its blobs.
//!
//! A commitment is a 4096-point multi-scalar multiplication, tens of milliseconds of one core,
//! far more than everything else a batch costs the devnet. The OS run and the DA publication
//! of a batch commit to the same blobs, so the commitments are computed once per process and
//! shared ([`commitments`]); every other step is cheap and simply recomputed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use orch_blob::{encode_batch, kzg, Blob, Encoded, KzgCommitment, NoOracle, StarknetVersion};
use orch_core::chain::StateDiff;
use orch_core::error::{Error, Result};
use sha2::{Digest, Sha256};

use crate::config::KzgMode;
use crate::mix::h_bytes;

/// The Starknet version whose DA format the devnet's OS and DA layer use: the packed DA word
/// and stateless compression of 0.13.3, and the `x_0` of 0.13.2 and later over the compressed
/// felts — what current Starknet OS versions and Madara's SNOS runs publish. (The chain's blocks
/// claim 0.13.4, whose OS also applies stateful compression; orch-blob does not implement it.)
pub const DA_VERSION: StarknetVersion = StarknetVersion::V0_13_3;

/// Payloads whose commitments the process remembers (48 bytes per blob each).
const CACHE_ENTRIES: usize = 4096;

/// The DA encoding of the blocks whose diffs are `diffs`, in block order.
pub(crate) fn encode<'a>(diffs: impl IntoIterator<Item = &'a StateDiff>, what: &str) -> Result<Encoded> {
    // Only the ≥ 0.13.3 nonce rule (a nonce is published when it changed) applies, so no oracle.
    encode_batch(diffs, &NoOracle, DA_VERSION.encoding())
        .map_err(|e| Error::invalid_input(what, format!("cannot be encoded for DA: {e}")))
}

type Slot = Arc<OnceLock<std::result::Result<Arc<[KzgCommitment]>, String>>>;

#[derive(Default)]
struct Cache {
    slots: HashMap<[u8; 32], Slot>,
    /// Insertion order, for eviction.
    order: VecDeque<[u8; 32]>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The commitments of `encoded`'s blobs under `mode`, each payload's computed once per process:
/// a caller asking while another computes the same payload's waits for that result. Blocks the
/// thread for as long as the computation takes: call it off the async runtime ([`blocking`]).
pub(crate) fn commitments(encoded: &Encoded, mode: KzgMode) -> Result<Arc<[KzgCommitment]>> {
    if mode == KzgMode::Simulated {
        return Ok(encoded.blobs.iter().map(fingerprint).collect());
    }
    let mut h = Sha256::new();
    for f in &encoded.payload {
        h.update(f.as_be_bytes());
    }
    let key: [u8; 32] = h.finalize().into();
    let slot = {
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = c.slots.get(&key) {
            s.clone()
        } else {
            if c.order.len() >= CACHE_ENTRIES {
                if let Some(old) = c.order.pop_front() {
                    c.slots.remove(&old);
                }
            }
            let s = Slot::default();
            c.slots.insert(key, s.clone());
            c.order.push_back(key);
            s
        }
    };
    // Two threads at most: other batches' OS runs and publications want the other cores.
    let threads = encoded.blobs.len().min(2);
    slot.get_or_init(|| kzg::commitments_on(&encoded.blobs, threads).map(Arc::from).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::internal(format!("committing to the devnet's blobs: {e}")))
}

/// [`KzgMode::Simulated`]'s stand-in for a blob's commitment: 48 bytes of SHA-256 of the blob.
fn fingerprint(blob: &Blob) -> KzgCommitment {
    let first: [u8; 32] = Sha256::digest(blob.as_bytes()).into();
    let second: [u8; 32] = Sha256::digest(first).into();
    let mut out = [0u8; 48];
    out[..32].copy_from_slice(&first);
    out[32..].copy_from_slice(&second[..16]);
    KzgCommitment::from_bytes(out)
}

/// A fingerprint of a batch's commitments, sealed into the DA layer's references so that the
/// settlement ledger can check the program output's commitments against the published blobs.
pub(crate) fn commitments_digest(seed: u64, commitments: &[KzgCommitment]) -> u64 {
    let mut bytes = Vec::with_capacity(48 * commitments.len());
    for c in commitments {
        bytes.extend_from_slice(&c.to_bytes());
    }
    h_bytes(seed, &bytes)
}

/// Runs CPU-heavy work (encoding, commitments) on tokio's blocking pool, off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal_from("devnet blob work panicked", e))?
}
