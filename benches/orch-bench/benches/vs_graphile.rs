//! orch vs graphile-worker on PostgreSQL: the full durable lifecycle (enqueue N no-op jobs, run
//! them all to completion with concurrency 8) on the same server, in the same run. Each side
//! runs `RUNS` times in a fresh schema; medians and their ratio are printed.
//!
//! `cargo bench -p orch-bench --bench vs_graphile` with `ORCH_TEST_POSTGRES_URL` set (and
//! `ORCH_BENCH_N`, default 20,000). graphile-worker 0.17.3 must be installed with npm in
//! `ORCH_GRAPHILE_DIR` (default `~/.cache/orch/graphile`; `scripts/bench-peers.sh` does it).
//!
//! - **orch**: `Engine` on `orch_postgres::PostgresStore`, 8 workers, no queue, claims of 256
//!   (at most two in flight at once, the engine's default `concurrent_claims`),
//!   the engine's default sweep interval (500 ms; graphile-worker's `pollInterval` here is
//!   1 s). Jobs are created in chunks of 1,024 while the engine runs, and the engine is told
//!   after each chunk (as graphile-worker's `add_jobs` notifies its runner); the span ends
//!   when `engine.stats().completed == N` (every completion committed).
//! - **graphile-worker** 0.17.3 (Node): `addJobs` in chunks of 5,000, then a runner with
//!   `concurrentJobs: 8` and its documented fast settings (`localQueue.size = 500`,
//!   `completeJobBatchDelay = 0`, `maxPoolSize = 10`); the span ends when its job table is
//!   empty (it deletes completed jobs). Its process start and schema migration are outside
//!   the span.
//!
//! Both connect over the same transport: graphile-worker's driver (node-postgres) uses TLS
//! only when the URL asks for it, and orch's (sqlx) whenever the server offers it, so a URL
//! without `sslmode` gets `sslmode=disable` for both sides (set `sslmode` in the URL to
//! compare over TLS: both honour it).

use std::process::Command;
use std::time::Duration;

use orch_core::engine::EngineConfig;
use orch_core::secret::Secret;
use orch_postgres::{PostgresConfig, PostgresStore};

mod common;
use common::{orch_noop_run, BoxError, CONCURRENCY};

const RUNS: usize = 3;
const DEFAULT_N: u64 = 20_000;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}_{:x}", nanos & 0xffff_ffff_ffff)
}

async fn orch_run(url: &str, n: u64) -> Result<Duration, BoxError> {
    let schema = unique("orch_bench");
    // Its own application_name, so its sessions can be told apart in pg_stat_activity.
    let config = PostgresConfig {
        url: Secret::new(url.to_string()),
        schema: schema.clone(),
        application_name: "orch_bench".into(),
        ..PostgresConfig::default()
    };
    let store = PostgresStore::connect_and_migrate(config).await?;
    let poll = EngineConfig::default().poll_interval;
    let elapsed = orch_noop_run(store.database(), n, 256, 1024, poll, Duration::from_secs(600)).await;
    store.close().await;
    drop_schema(url, &schema);
    elapsed
}

fn drop_schema(url: &str, schema: &str) {
    let _ = Command::new("psql").arg(url).arg("-qc").arg(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).output();
}

fn graphile_run(url: &str, n: u64, dir: &str) -> Result<Duration, BoxError> {
    let schema = unique("gw_bench");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/graphile/bench.cjs");
    let out = Command::new("node")
        .arg(script)
        .env("GRAPHILE_DIR", dir)
        .env("DATABASE_URL", url)
        .env("SCHEMA", &schema)
        .env("N", n.to_string())
        .output()?;
    drop_schema(url, &schema);
    if !out.status.success() {
        return Err(format!("graphile-worker bench failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ms = v["ms"].as_f64().ok_or("graphile-worker bench printed no `ms`")?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// `url` with `sslmode=disable` added unless it names an `sslmode`: the transport both sides
/// use by default (see the module docs).
fn same_transport(url: &str) -> String {
    if url.contains("sslmode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() -> Result<(), BoxError> {
    let Some(url) = orch_testkit::services::env_or_skip("ORCH_TEST_POSTGRES_URL") else {
        return Ok(());
    };
    let url = same_transport(&url);
    let n: u64 = match std::env::var("ORCH_BENCH_N") {
        Ok(v) => v.parse()?,
        Err(_) => DEFAULT_N,
    };
    let home = std::env::var("HOME").unwrap_or_default();
    let dir = std::env::var("ORCH_GRAPHILE_DIR").unwrap_or_else(|_| format!("{home}/.cache/orch/graphile"));
    let have_graphile = std::path::Path::new(&dir).join("node_modules/graphile-worker").is_dir();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    println!(
        "orch vs graphile-worker 0.17.3 on PostgreSQL, N={n} no-op jobs, concurrency={CONCURRENCY}, {RUNS} runs each"
    );
    println!("span: enqueue all N + run to completion (durably done)");
    let tls = if url.contains("sslmode=disable") { "plaintext" } else { "as the URL's sslmode says" };
    println!("transport: {tls}, the same for both");
    let (mut orch, mut gw) = (Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let o = rt.block_on(orch_run(&url, n))?;
        println!("  run {run}: orch            {:.3}s  {:>8.0} jobs/s", o.as_secs_f64(), rate(n, o));
        orch.push(o);
        if have_graphile {
            let g = graphile_run(&url, n, &dir)?;
            println!("  run {run}: graphile-worker {:.3}s  {:>8.0} jobs/s", g.as_secs_f64(), rate(n, g));
            gw.push(g);
        }
    }
    let or = rate(n, median(orch));
    if gw.is_empty() {
        println!("N={n}: orch {or:.0} jobs/s; graphile-worker not installed in {dir} (run scripts/bench-peers.sh)");
    } else {
        let gr = rate(n, median(gw));
        println!(
            "N={n}: orch {or:.0} jobs/s, graphile-worker {gr:.0} jobs/s, ratio {:.2}x (medians of {RUNS})",
            or / gr
        );
    }
    Ok(())
}
