//! No-op job lifecycles per second through the engine on the in-memory adapters (created →
//! claimed → completed, 8 workers), next to a plain tokio mpsc channel moving the same number of
//! messages as the baseline for "how fast can anything move work between tasks here".
//!
//! `cargo bench -p orch-testkit --bench engine`

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use orch_core::clock::SystemClock;
use orch_core::db::Database;
use orch_core::engine::{Engine, EngineConfig, Roles};
use orch_core::types::{ChainId, JobKind, Timestamp};
use orch_testkit::mem::MemDatabase;
use orch_testkit::noop::{noop_jobs, NoopHandler};
use tokio::runtime::Runtime;

const JOBS: u64 = 20_000;

/// Creates `n` jobs and runs them to completion; returns the elapsed time.
async fn engine_run(n: u64) -> Duration {
    let db: Arc<dyn Database> = Arc::new(MemDatabase::new());
    let chain = ChainId::new("bench").unwrap();
    let cfg = EngineConfig {
        workers: 8,
        claim_batch: 256,
        max_in_flight: [4096; 5],
        poll_interval: Duration::from_millis(5),
        ..EngineConfig::default()
    };
    let engine = Engine::builder(chain.clone(), db.clone(), Arc::new(SystemClock))
        .config(cfg)
        .roles(Roles { create: false, work: true })
        .handler(JobKind::SnosRun, Arc::new(NoopHandler))
        .build()
        .unwrap();
    let new_jobs = noop_jobs(&chain, JobKind::SnosRun, n);
    let start = Instant::now();
    let handle = engine.start();
    for chunk in new_jobs.chunks(1024) {
        db.create_jobs(chunk.to_vec(), Timestamp(1)).await.unwrap();
        engine.notify();
    }
    while engine.stats().completed < n {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let elapsed = start.elapsed();
    handle.shutdown().await;
    elapsed
}

/// The same number of messages through one tokio mpsc channel, 8 consumers sharing the receiver.
async fn mpsc_run(n: u64) -> Duration {
    let (tx, rx) = tokio::sync::mpsc::channel::<u64>(1024);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let start = Instant::now();
    let mut consumers = Vec::new();
    for _ in 0..8 {
        let rx = rx.clone();
        consumers.push(tokio::spawn(async move {
            let mut got = 0u64;
            let mut buf = Vec::with_capacity(128);
            loop {
                buf.clear();
                if rx.lock().await.recv_many(&mut buf, 128).await == 0 {
                    return got;
                }
                got += buf.len() as u64;
            }
        }));
    }
    for i in 0..n {
        tx.send(i).await.unwrap();
    }
    drop(tx);
    let mut total = 0;
    for c in consumers {
        total += c.await.unwrap();
    }
    assert_eq!(total, n);
    start.elapsed()
}

/// Runs `run` `iters` times on `rt` and adds up the times it reports.
fn total<F: Future<Output = Duration>>(rt: &Runtime, iters: u64, run: impl Fn() -> F) -> Duration {
    rt.block_on(async {
        let mut t = Duration::ZERO;
        for _ in 0..iters {
            t += run().await;
        }
        t
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut g = c.benchmark_group("noop_lifecycle");
    g.throughput(Throughput::Elements(JOBS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("engine_mem_8_workers", |b| b.iter_custom(|iters| total(&rt, iters, || engine_run(JOBS))));
    g.bench_function("baseline_tokio_mpsc_8_consumers", |b| {
        b.iter_custom(|iters| total(&rt, iters, || mpsc_run(JOBS)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
