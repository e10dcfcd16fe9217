//! A handler that does nothing and a batch of dependency-free jobs for it: what the engine
//! benchmarks push through to measure the engine and its store, not the work.

use async_trait::async_trait;
use orch_core::engine::{JobCtx, JobHandler, Outcome, Verdict};
use orch_core::job::{JobMeta, NewJob};
use orch_core::types::{BlockRange, ChainId, JobId, JobKey, JobKind, Timestamp};
use orch_core::Result;

/// Completes every job at once, with nothing to verify.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopHandler;

#[async_trait]
impl JobHandler for NoopHandler {
    async fn process(&self, _ctx: &mut JobCtx) -> Result<Outcome> {
        Ok(Outcome::Done)
    }

    async fn verify(&self, _ctx: &mut JobCtx) -> Result<Verdict> {
        Ok(Verdict::Done)
    }
}

/// `n` due, dependency-free jobs of `kind` on blocks `0..n`.
pub fn noop_jobs(chain: &ChainId, kind: JobKind, n: u64) -> Vec<NewJob> {
    (0..n)
        .map(|b| NewJob {
            id: JobId::random(),
            key: JobKey { chain: chain.clone(), kind, range: BlockRange::single(b) },
            max_attempts: 3,
            next_run_at: Timestamp::ZERO,
            deps: vec![],
            meta: JobMeta::default(),
        })
        .collect()
}
