//! [`DevDa`]: a simulated blob DA layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orch_core::clock::Clock;
use orch_core::da::{Da, DaReference, DaRequest, DaStatus};
use orch_core::error::{Error, Result};
use orch_core::types::Timestamp;

use crate::chain::da_felts_estimate;
use crate::config::DaConfig;
use crate::faults::Injector;
use crate::ids;
use crate::mix::{chance, h64, h_str};

const T_FAULTS: u64 = 0x51;
const T_DROP: u64 = 0x52;
const PREFIX: &str = "dda1";

/// Felts one blob carries.
pub const FELTS_PER_BLOB: u64 = 4096;
/// Bytes one blob carries (4096 field elements of 32 bytes).
pub const BYTES_PER_BLOB: u64 = 131_072;

/// A simulated DA layer: a publication is `Included` `inclusion_delay` after it was made (by
/// the injected clock), or `Failed` then if it was dropped (`drop_rate`).
///
/// Size: the request's state diffs are charged at [`da_felts_estimate`] felts each,
/// 32 bytes per felt; `chunks` in the reference is the number of blobs (4096 felts each).
/// Data beyond one submission (`blobs_per_submission` blobs) is split over several
/// submissions, never truncated. Like the prover's task ids, references are self-describing and
/// sealed with the seed, so `verify` needs no stored state; the dedup table is in memory.
#[derive(Debug)]
pub struct DevDa {
    seed: u64,
    cfg: DaConfig,
    clock: Arc<dyn Clock>,
    faults: Injector,
    by_key: Mutex<HashMap<String, DaReference>>,
    published: AtomicU64,
    submissions: AtomicU64,
}

impl DevDa {
    /// A DA layer from `cfg` and `seed`, timing inclusion with `clock`.
    pub fn new(cfg: DaConfig, seed: u64, clock: Arc<dyn Clock>) -> DevDa {
        DevDa {
            faults: Injector::new("devnet da", seed, T_FAULTS, cfg.faults.clone()),
            seed,
            cfg,
            clock,
            by_key: Mutex::new(HashMap::new()),
            published: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
        }
    }

    /// Publications made so far (idempotent republications not counted).
    pub fn publications(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Submissions (blob transactions) made so far: a publication larger than one submission
    /// counts several.
    pub fn submissions(&self) -> u64 {
        self.submissions.load(Ordering::Relaxed)
    }

    /// Failures injected so far by the `faults` knobs.
    pub fn injected_failures(&self) -> u64 {
        self.faults.injected()
    }

    /// A DA layer carries bytes and does not judge state roots (settlement does), so only the
    /// shape is checked: one update per block.
    fn validate(req: &DaRequest) -> Result<()> {
        if req.updates.len() as u64 != req.range.len() {
            return Err(Error::invalid_input(
                "DA request updates",
                format!(
                    "{} state updates for the {} blocks of {}; pass one per block, in order",
                    req.updates.len(),
                    req.range.len(),
                    req.range
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Da for DevDa {
    fn max_bytes_per_submission(&self) -> usize {
        self.cfg.blobs_per_submission as usize * BYTES_PER_BLOB as usize
    }

    async fn publish(&self, req: DaRequest) -> Result<DaReference> {
        let strike = self.faults.effect("publish").await?;
        if let Some(r) = self.by_key.lock().unwrap_or_else(|e| e.into_inner()).get(&req.dedup_key) {
            return strike.finish(r.clone());
        }
        Self::validate(&req)?;
        let felts: u64 = req.updates.iter().map(|u| da_felts_estimate(&u.state_diff) as u64).sum();
        let chunks = felts.div_ceil(FELTS_PER_BLOB).max(1);
        let bytes = felts * 32;
        let key_fp = h_str(self.seed, &req.dedup_key);
        let dropped = chance(h64(&[self.seed, T_DROP, key_fp]), self.cfg.drop_rate);
        let now = self.clock.now().0;
        let id = ids::seal(
            self.seed,
            PREFIX,
            &[req.range.first(), req.range.last(), now, chunks, bytes, u64::from(dropped), key_fp],
        );
        let reference = DaReference { id, chunks: chunks.min(u64::from(u32::MAX)) as u32, bytes };
        let reference = {
            let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
            // A concurrent publish of the same key may have won the race: keep its reference.
            let r = map.entry(req.dedup_key).or_insert_with(|| {
                self.published.fetch_add(1, Ordering::Relaxed);
                self.submissions
                    .fetch_add(chunks.div_ceil(u64::from(self.cfg.blobs_per_submission.max(1))), Ordering::Relaxed);
                reference
            });
            r.clone()
        };
        strike.finish(reference)
    }

    async fn verify(&self, reference: &DaReference) -> Result<DaStatus> {
        self.faults.read("verify").await?;
        let unknown = || Error::not_found(format!("devnet DA publication {:?}", reference.id));
        let f = ids::open(self.seed, PREFIX, 7, &reference.id).ok_or_else(unknown)?;
        if f[3] != u64::from(reference.chunks) || f[4] != reference.bytes {
            return Err(unknown());
        }
        if self.clock.now() < Timestamp(f[2]).plus(self.cfg.inclusion_delay) {
            return Ok(DaStatus::Pending);
        }
        if f[5] != 0 {
            return Ok(DaStatus::Failed { reason: "simulated blob drop (devnet.da.drop_rate): publish again".into() });
        }
        Ok(DaStatus::Included)
    }
}
