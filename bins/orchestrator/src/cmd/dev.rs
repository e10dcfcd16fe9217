//! `orchestrator dev`: the whole pipeline on embedded defaults against the simulated chain.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use orch_core::engine::{EngineConfig, Roles};
use orch_core::job::JobQuery;
use orch_core::types::JobStatus;
use serde::Serialize;

use super::Ctx;
use crate::{output, providers};

/// Options of `dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Settle blocks 0..N-1 of a chain of exactly N blocks, then exit. Without it: run until
    /// Ctrl-C on a chain that grows by one block per `devnet.chain.block_time`.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = parse_blocks)]
    blocks: Option<u64>,
    /// Print one JSON summary at the end instead of a progress bar.
    #[arg(long)]
    json: bool,
}

fn parse_blocks(s: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 && n <= i128::from(u64::MAX) => Ok(n as u64),
        Ok(_) => Err(format!("{s} is not a positive number of blocks; use e.g. --blocks 500")),
        Err(_) => Err(format!("{s:?} is not a number; use e.g. --blocks 500")),
    }
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
struct Summary {
    settled_through: Option<u64>,
    blocks_settled_this_run: u64,
    jobs_completed: u64,
    jobs_failed: u64,
    elapsed_ms: u64,
    blocks_per_sec: f64,
    data_dir: String,
}

/// Engine defaults for `dev`: quick polls, since everything is local.
pub(crate) fn dev_engine_defaults() -> EngineConfig {
    EngineConfig {
        workers: 8,
        claim_batch: 64,
        max_in_flight: [256; 5],
        poll_interval: Duration::from_millis(20),
        dependency_poll: Duration::from_secs(1),
        verify_poll: Duration::ZERO,
        creator_interval: Duration::from_millis(20),
        // Ten blocks per job: proving and settling batches is how appchains run, and it is what
        // lets `dev` settle well over 1,000 blocks/s on SQLite (one block per job: ~160/s).
        batch_size: 10,
        batch_timeout: Duration::from_millis(200),
        max_blocks_ahead: 200,
        lease: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(10),
        ..EngineConfig::default()
    }
}

pub(crate) async fn dev(ctx: &Ctx, args: DevArgs) -> anyhow::Result<()> {
    let cfg = ctx.load(dev_engine_defaults())?;
    let ports = providers::open(&cfg, args.blocks, providers::StoreMode::Setup).await?;
    ports.db.migrate().await?;
    let chain = cfg.chain_id.clone();
    let start_settled = ports.settlement.last_settled().await?.map(|s| s.block);
    let engine = ports.engine(&cfg, Roles::ALL)?;
    let target = args.blocks.map(|n| n - 1);
    let started = Instant::now();

    let bar = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let bar = match args.blocks {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} settled {pos}/{len} blocks [{bar:40}] {per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });

    let handle = if target.is_some_and(|t| start_settled.is_some_and(|s| s >= t)) {
        None // Already done: resume means nothing to do.
    } else {
        Some(engine.start())
    };
    let mut settled = start_settled;
    let mut interrupted = false;
    let mut stuck = None;
    if let Some(h) = &handle {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut last_check = Instant::now();
        loop {
            settled = ports.settlement.last_settled().await?.map(|s| s.block);
            // A job out of attempts blocks its blocks for good: say so instead of waiting.
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                let mut q = JobQuery::all(chain.clone(), 1);
                q.statuses = vec![JobStatus::Failed];
                if let Some(job) = ports.db.list_jobs(&q).await?.into_iter().next() {
                    stuck = Some(job);
                    break;
                }
            }
            if let Some(b) = &bar {
                b.set_position(settled.map_or(0, |s| s + 1));
                let st = h.stats();
                b.set_message(format!("jobs done {} retried {} failed {}", st.completed, st.retried, st.failed));
            }
            if let (Some(t), Some(s)) = (target, settled) {
                if s >= t {
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = &mut ctrl_c => { interrupted = true; break; }
            }
        }
    }
    if let Some(h) = handle {
        if interrupted {
            tracing::warn!(target: "orch::dev", "interrupted: draining in-flight jobs");
        }
        h.shutdown().await;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(job) = stuck {
        return Err(anyhow::anyhow!(
            "job {} ({} of blocks {}) failed for good after {} attempts: {}; settlement cannot pass it. \
             Fix the cause, then `orchestrator jobs retry {}` and run `orchestrator dev` again (see `orchestrator jobs show {}`)",
            job.id,
            job.key.kind,
            job.key.range,
            job.attempts,
            job.last_error.as_deref().unwrap_or("no error recorded"),
            job.id,
            job.id
        ));
    }
    let elapsed = started.elapsed();
    let counts = ports.db.count_jobs(&chain).await?;
    let count = |st: JobStatus| counts.iter().filter(|c| c.status == st).map(|c| c.count).sum::<u64>();
    let this_run = match (settled, start_settled) {
        (Some(s), Some(b)) => s - b,
        (Some(s), None) => s + 1,
        _ => 0,
    };
    let summary = Summary {
        settled_through: settled,
        blocks_settled_this_run: this_run,
        jobs_completed: count(JobStatus::Completed),
        jobs_failed: count(JobStatus::Failed),
        elapsed_ms: elapsed.as_millis() as u64,
        blocks_per_sec: this_run as f64 / elapsed.as_secs_f64().max(1e-9),
        data_dir: cfg.data_dir.display().to_string(),
    };
    if args.json {
        output::json(&summary)?;
    } else {
        crate::output::line(format!(
            "settled through block {} ({} this run in {:.2}s, {:.0} blocks/s); jobs completed {}, failed {}; data in {}",
            summary.settled_through.map_or("-".into(), |s| s.to_string()),
            summary.blocks_settled_this_run,
            elapsed.as_secs_f64(),
            summary.blocks_per_sec,
            summary.jobs_completed,
            summary.jobs_failed,
            summary.data_dir
        ));
    }
    Ok(())
}
