//! [`DevProver`]: a simulated proving service.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orch_core::clock::Clock;
use orch_core::error::{Error, Result};
use orch_core::prove::{ProofRequest, ProofStatus, Prover, TaskId};
use orch_core::types::{BlockRange, Timestamp};

use crate::config::ProverConfig;
use crate::faults::Injector;
use crate::ids;
use crate::mix::{chance, fill_bytes, h64, h_bytes, h_str};

const T_FAULTS: u64 = 0x41;
const T_FATE: u64 = 0x42;
const T_PROOF: u64 = 0x43;
const PREFIX: &str = "dp1";

/// First bytes of every devnet proof.
pub const DEV_PROOF_MAGIC: &[u8; 8] = b"DEVPROOF";

/// A simulated prover: a task completes `proving_time` after its submission (by the injected
/// clock), with proof bytes that are a function of the range and the PIE.
///
/// Task ids describe the task (range, submission time, fate) and are sealed with the seed, so
/// `status` needs no stored state and still answers after a restart; the dedup-key table that
/// makes `submit` idempotent lives in memory (a restarted prover forgets it, as a real one
/// that lost its database would).
///
/// Fates: a task ends `Failed` when it covers a block of `fail_proofs` that has failures left
/// (counted per process), or with probability `task_failure_rate` drawn from its dedup key.
#[derive(Debug)]
pub struct DevProver {
    seed: u64,
    cfg: ProverConfig,
    clock: Arc<dyn Clock>,
    faults: Injector,
    state: Mutex<State>,
    tasks: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    by_key: HashMap<String, TaskId>,
    /// `(block, failures left)` from `fail_proofs`.
    fail_left: Vec<(u64, u32)>,
}

impl DevProver {
    /// A prover from `cfg` and `seed`, timing tasks with `clock`.
    pub fn new(cfg: ProverConfig, seed: u64, clock: Arc<dyn Clock>) -> DevProver {
        let fail_left = cfg.fail_proofs.iter().map(|f| (f.block, f.times)).collect();
        DevProver {
            faults: Injector::new("devnet prover", seed, T_FAULTS, cfg.faults.clone()),
            seed,
            cfg,
            clock,
            state: Mutex::new(State { by_key: HashMap::new(), fail_left }),
            tasks: AtomicU64::new(0),
        }
    }

    /// Tasks started so far (idempotent resubmissions not counted).
    pub fn tasks_started(&self) -> u64 {
        self.tasks.load(Ordering::Relaxed)
    }

    /// Failures injected so far by the `faults` knobs.
    pub fn injected_failures(&self) -> u64 {
        self.faults.injected()
    }

    /// The proof a successful task over `range` with a PIE of fingerprint `pie` yields.
    fn proof(&self, range: BlockRange, pie: u64) -> Vec<u8> {
        let len = self.cfg.proof_bytes.max(32) as usize;
        let mut p = Vec::with_capacity(len);
        p.extend_from_slice(DEV_PROOF_MAGIC);
        p.extend_from_slice(&range.first().to_be_bytes());
        p.extend_from_slice(&range.last().to_be_bytes());
        p.extend_from_slice(&pie.to_be_bytes());
        fill_bytes(&mut p, h64(&[self.seed, T_PROOF, range.first(), range.last(), pie]), len);
        p
    }
}

#[async_trait]
impl Prover for DevProver {
    async fn submit(&self, req: ProofRequest) -> Result<TaskId> {
        let strike = self.faults.effect("submit").await?;
        if req.pie.is_empty() {
            return Err(Error::invalid_input("proof request pie", "is empty; pass the PIE of the OS run"));
        }
        let key_fp = h_str(self.seed, &req.dedup_key);
        let task = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = st.by_key.get(&req.dedup_key) {
                t.clone()
            } else {
                let range = req.range;
                let mut doomed = false;
                for (block, left) in st.fail_left.iter_mut() {
                    if range.contains(*block) && *left > 0 {
                        *left -= 1;
                        doomed = true;
                    }
                }
                doomed |= chance(h64(&[self.seed, T_FATE, key_fp]), self.cfg.task_failure_rate);
                let pie_fp = h_bytes(self.seed, &req.pie);
                let now = self.clock.now().0;
                let id = TaskId(ids::seal(
                    self.seed,
                    PREFIX,
                    &[range.first(), range.last(), now, u64::from(doomed), pie_fp, key_fp],
                ));
                st.by_key.insert(req.dedup_key, id.clone());
                self.tasks.fetch_add(1, Ordering::Relaxed);
                id
            }
        };
        strike.finish(task)
    }

    async fn status(&self, task: &TaskId) -> Result<ProofStatus> {
        self.faults.read("status").await?;
        let f = ids::open(self.seed, PREFIX, 6, &task.0)
            .ok_or_else(|| Error::not_found(format!("devnet prover task {:?}", task.0)))?;
        let range =
            BlockRange::new(f[0], f[1]).map_err(|_| Error::not_found(format!("devnet prover task {:?}", task.0)))?;
        let done_at = Timestamp(f[2]).plus(self.cfg.proving_time);
        if self.clock.now() < done_at {
            return Ok(ProofStatus::Pending);
        }
        if f[3] != 0 {
            return Ok(ProofStatus::Failed {
                reason: format!(
                    "simulated proving failure of blocks {range} (devnet.prover.fail_proofs or task_failure_rate)"
                ),
            });
        }
        Ok(ProofStatus::Succeeded { proof: self.proof(range, f[4]) })
    }
}
