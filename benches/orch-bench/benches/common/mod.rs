//! The orch side every comparison runs: N no-op jobs through the engine on a given store.

// Each bench binary uses what it needs of this.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::clock::SystemClock;
use orch_core::db::Database;
use orch_core::engine::{Engine, EngineConfig, Roles};
use orch_core::types::{ChainId, JobKind, Timestamp};
use orch_testkit::noop::{noop_jobs, NoopHandler};

/// Boxed error for the bench binaries.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Workers of the engine, and the peer's concurrency.
pub(crate) const CONCURRENCY: usize = 8;

/// Starts an engine (`CONCURRENCY` workers, claims of `claim_batch`, sweeping for due jobs every
/// `poll_interval`, no queue) on `db`, creates `n` due no-op jobs in chunks of `chunk` while it
/// runs, telling the engine after each chunk, and returns the time until all are completed
/// (every completion committed). Fails after `limit`.
pub(crate) async fn orch_noop_run(
    db: Arc<dyn Database>,
    n: u64,
    claim_batch: u32,
    chunk: usize,
    poll_interval: Duration,
    limit: Duration,
) -> Result<Duration, BoxError> {
    let chain = ChainId::new("bench")?;
    let cfg = EngineConfig {
        workers: CONCURRENCY,
        claim_batch,
        max_in_flight: [4096; 5],
        poll_interval,
        ..EngineConfig::default()
    };
    let engine = Engine::builder(chain.clone(), db.clone(), Arc::new(SystemClock))
        .config(cfg)
        .roles(Roles { create: false, work: true })
        .handler(JobKind::SnosRun, Arc::new(NoopHandler))
        .build()?;
    let new_jobs = noop_jobs(&chain, JobKind::SnosRun, n);

    let start = Instant::now();
    let handle = engine.start();
    for part in new_jobs.chunks(chunk.max(1)) {
        db.create_jobs(part.to_vec(), Timestamp(1)).await?;
        engine.notify();
    }
    while engine.stats().completed < n {
        if start.elapsed() > limit {
            let done = engine.stats().completed;
            handle.shutdown().await;
            return Err(format!("orch: only {done}/{n} done after {limit:?}").into());
        }
        // Coarse enough to cost the engine nothing, fine next to spans of a second.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    handle.shutdown().await;
    Ok(elapsed)
}
