//! orch vs apalis on SQLite: the full durable lifecycle (enqueue N no-op jobs, run them all to
//! completion with concurrency 8) on a database file on disk (WAL, `synchronous=NORMAL` for
//! both), in the same process and run. Each side runs three times (`ORCH_BENCH_RUNS`) on a
//! fresh file; the median is printed with the ratio.
//!
//! `cargo bench -p orch-bench` (set `ORCH_BENCH_N` to change N; default 5,000). For profiling,
//! `ORCH_BENCH_ONLY=orch` skips apalis and `ORCH_BENCH_RUNS` changes the number of runs; the
//! printed ratio is only meaningful with both sides.
//!
//! - **orch**: `Engine` on `orch_sqlite::SqliteStore`, 8 workers, no queue, `claim_batch` 64.
//!   Jobs are created in chunks of 1,024 while the engine runs; the span ends when
//!   `engine.stats().completed == N`.
//! - **apalis** 1.0 + apalis-sqlite 1.0: `push_bulk` all N, then one worker with
//!   `.concurrency(8)`; it is stopped once the handler has seen N jobs (stopping flushes the
//!   buffered acks) and the span ends after the worker returns and the `Jobs` table shows N
//!   rows `Done`. `SqliteStorage::setup` sets `synchronous=OFF` on the connection it runs on,
//!   so it runs on a throwaway pool and the measured pool is opened with WAL + NORMAL.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_sqlite::SqliteStorage;
use orch_sqlite::{SqliteConfig, SqliteStore};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

mod common;
use common::{orch_noop_run, BoxError, CONCURRENCY};

const DEFAULT_RUNS: usize = 3;
const DEFAULT_N: u64 = 5_000;

// ---------------------------------------------------------------- orch

/// Creates `n` jobs in a fresh SQLite file and runs them to completion; returns the elapsed time.
async fn orch_run(dir: &Path, n: u64) -> Result<Duration, BoxError> {
    let store = SqliteStore::open(SqliteConfig::new(dir.join("orch.db"))).await?;
    let elapsed =
        orch_noop_run(store.database(), n, 64, 1024, Duration::from_millis(5), Duration::from_secs(600)).await?;
    store.close();
    Ok(elapsed)
}

// ---------------------------------------------------------------- apalis

static APALIS_SEEN: AtomicU64 = AtomicU64::new(0);

async fn apalis_noop(_job: u64) -> Result<(), BoxDynError> {
    APALIS_SEEN.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Pushes `n` jobs into a fresh apalis-sqlite file, runs one worker with concurrency 8 until all
/// are done (acked in the database); returns the elapsed time.
async fn apalis_run(dir: &Path, n: u64) -> Result<Duration, BoxError> {
    let url = format!("sqlite://{}", dir.join("apalis.db").display());
    let opts = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);

    // Migrations on a throwaway pool: `setup` sets `synchronous=OFF` on its connection.
    let setup_pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
    SqliteStorage::setup(&setup_pool).await?;
    setup_pool.close().await;

    let pool = SqlitePoolOptions::new().connect_with(opts).await?;
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&pool).await?;
    assert_eq!(sync, 1, "measured pool must run with synchronous=NORMAL (1)");

    APALIS_SEEN.store(0, Ordering::SeqCst);
    let mut storage = SqliteStorage::<u64>::new(&pool);
    let jobs: Vec<u64> = (0..n).collect();

    let start = Instant::now();
    storage.push_bulk(jobs).await?;
    let worker = WorkerBuilder::new("bench-worker").backend(storage).concurrency(CONCURRENCY).build(apalis_noop);
    worker
        .run_with_ctx(move |ctx| async move {
            while APALIS_SEEN.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            ctx.stop()
        })
        .await?;
    // Stopping flushes the buffered acks; confirm they are all durable before stopping the clock.
    loop {
        let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE status = 'Done'").fetch_one(&pool).await?;
        if done as u64 >= n {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("apalis: only {done}/{n} jobs Done after 600s").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    pool.close().await;
    Ok(elapsed)
}

// ---------------------------------------------------------------- report

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_runs(n: u64, runs: &[Duration]) -> String {
    runs.iter()
        .map(|d| format!("{:.3}s ({} jobs/s)", d.as_secs_f64(), thousands(rate(n, *d))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; a filter argument may follow. Ignore them.
    let n: u64 = match std::env::var("ORCH_BENCH_N") {
        Ok(v) => v.parse()?,
        Err(_) => DEFAULT_N,
    };
    let runs: usize = match std::env::var("ORCH_BENCH_RUNS") {
        Ok(v) => v.parse::<usize>()?.max(1),
        Err(_) => DEFAULT_RUNS,
    };
    let only_orch = std::env::var("ORCH_BENCH_ONLY").is_ok_and(|v| v == "orch");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    println!("orch vs apalis on SQLite (file on disk, WAL, synchronous=NORMAL), N={n} no-op jobs, concurrency={CONCURRENCY}, {runs} runs each");
    println!("span: enqueue all N + run to completion (durably marked done)");

    let mut orch = Vec::new();
    let mut apalis = Vec::new();
    for run in 1..=runs {
        let dir = tempfile::tempdir()?;
        let o = rt.block_on(orch_run(dir.path(), n))?;
        println!("  run {run}: orch   {:.3}s  {:>9} jobs/s", o.as_secs_f64(), thousands(rate(n, o)));
        orch.push(o);
        if only_orch {
            continue;
        }
        let a = rt.block_on(apalis_run(dir.path(), n))?;
        println!("  run {run}: apalis {:.3}s  {:>9} jobs/s", a.as_secs_f64(), thousands(rate(n, a)));
        apalis.push(a);
    }

    println!("orch   runs: {}", fmt_runs(n, &orch));
    if only_orch {
        println!(
            "N={n} concurrency={CONCURRENCY}: orch {} jobs/s (median of {runs}; apalis skipped)",
            thousands(rate(n, median(orch)))
        );
        return Ok(());
    }
    println!("apalis runs: {}", fmt_runs(n, &apalis));
    let (om, am) = (median(orch), median(apalis));
    let (or, ar) = (rate(n, om), rate(n, am));
    println!(
        "N={n} concurrency={CONCURRENCY}: orch {} jobs/s, apalis {} jobs/s, ratio {:.1}x (medians of {runs})",
        thousands(or),
        thousands(ar),
        or / ar
    );
    Ok(())
}
