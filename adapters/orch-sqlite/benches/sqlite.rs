//! Raw throughput of the engine's hot path on a SQLite file: batched create, claim (batch 32)
//! and update_jobs (batch 32, to `Completed` with a history entry), with 1 and 8 concurrent
//! workers. Prints no-op job lifecycles per second.
//!
//! `cargo bench -p orch-sqlite --bench sqlite`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use orch_core::db::Database;
use orch_core::job::{ClaimRequest, JobMeta, JobWrite, NewJob, Transition};
use orch_core::types::{BlockRange, ChainId, JobId, JobKey, JobKind, JobStatus, Timestamp, WorkerId};
use orch_sqlite::SqliteStore;

const JOBS: u64 = 4096;
const BATCH: u32 = 32;
const T0: Timestamp = Timestamp(1_700_000_000_000);

fn jobs(chain: &ChainId) -> Vec<NewJob> {
    (0..JOBS)
        .map(|b| NewJob {
            id: JobId::random(),
            key: JobKey { chain: chain.clone(), kind: JobKind::SnosRun, range: BlockRange::single(b) },
            max_attempts: 5,
            next_run_at: T0,
            deps: vec![],
            meta: JobMeta::default(),
        })
        .collect()
}

/// Creates `JOBS` jobs in batches of 256, then `workers` tasks claim and complete them all.
async fn lifecycles(db: Arc<dyn Database>, workers: usize) -> Duration {
    let chain = ChainId::new(format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..12])).unwrap();
    let all = jobs(&chain);
    let start = Instant::now();
    for chunk in all.chunks(256) {
        db.create_jobs(chunk.to_vec(), T0).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (db, chain) = (db.clone(), chain.clone());
        tasks.push(tokio::spawn(async move {
            let owner = WorkerId(format!("w{w}"));
            loop {
                let req = ClaimRequest {
                    chain: chain.clone(),
                    owner: owner.clone(),
                    now: T0,
                    lease_until: Timestamp(T0.0 + 30_000),
                    wants: vec![(JobKind::SnosRun, BATCH)],
                };
                let claimed = db.claim_jobs(&req).await.unwrap();
                if claimed.is_empty() {
                    return;
                }
                let writes: Vec<JobWrite> = claimed
                    .into_iter()
                    .map(|mut job| {
                        let t = Transition {
                            at: T0,
                            from: job.status,
                            to: JobStatus::Completed,
                            reason: "processed".into(),
                            attempt: job.attempts,
                            actor: Some(owner.clone()),
                            epoch: job.epoch,
                        };
                        job.status = JobStatus::Completed;
                        job.lease = None;
                        job.next_run_at = Timestamp::NEVER;
                        JobWrite { job, transition: Some(t), now: T0 }
                    })
                    .collect();
                for r in db.update_jobs(&writes).await.unwrap() {
                    r.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(SqliteStore::open_path(dir.path().join("bench.db"))).unwrap();
    let db = store.database();
    let mut group = c.benchmark_group("sqlite_lifecycle");
    group.throughput(Throughput::Elements(JOBS));
    group.sample_size(10);
    for workers in [1usize, 8] {
        let (mut total, mut n) = (Duration::ZERO, 0u64);
        group.bench_function(format!("create+claim32+update32/{workers}_workers"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let db = db.clone();
                async move {
                    let mut t = Duration::ZERO;
                    for _ in 0..iters {
                        t += lifecycles(db.clone(), workers).await;
                    }
                    t
                }
            })
        });
        // One more measured run, for a plain jobs/s line.
        for _ in 0..3 {
            total += rt.block_on(lifecycles(db.clone(), workers));
            n += JOBS;
        }
        println!(
            "sqlite: {workers} worker(s): {:.0} job lifecycles/s (create + claim + complete, batches of {BATCH})",
            n as f64 / total.as_secs_f64()
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
