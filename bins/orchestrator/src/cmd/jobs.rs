//! `orchestrator jobs …`.

use clap::{Args, Subcommand};
use orch_core::clock::{Clock, SystemClock};
use orch_core::engine::{ops, EngineConfig};
use orch_core::job::{Job, JobQuery};
use orch_core::types::{JobId, JobKind, JobStatus};
use serde::Serialize;

use super::{user, Ctx};
use crate::{output, providers};

/// Job commands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCmd {
    /// List jobs, lowest blocks first.
    List(ListArgs),
    /// One job with its history.
    Show(IdArgs),
    /// Run a failed, timed-out or cancelled job again with fresh attempts.
    Retry(IdArgs),
    /// Stop a job for good.
    Cancel(IdArgs),
}

/// Options of `jobs list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this status (e.g. failed, pending_retry).
    #[arg(long)]
    status: Option<String>,
    /// Only this kind (snos_run, proof_creation, proof_registration, data_submission, state_transition).
    #[arg(long)]
    kind: Option<String>,
    /// Only jobs whose range starts at or after this block.
    #[arg(long)]
    from: Option<u64>,
    /// Only jobs whose range starts at or before this block.
    #[arg(long)]
    to: Option<u64>,
    /// At most this many (1–10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A job id argument.
#[derive(Debug, Args)]
pub(crate) struct IdArgs {
    /// The job's id (from `jobs list`).
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct JobView<'a> {
    #[serde(flatten)]
    job: &'a Job,
    history: Vec<orch_core::job::Transition>,
}

fn row(j: &Job) -> Vec<String> {
    vec![
        j.id.to_string(),
        j.key.kind.to_string(),
        j.key.range.to_string(),
        j.status.to_string(),
        j.attempts.to_string(),
        j.last_error.clone().unwrap_or_default(),
    ]
}

pub(crate) async fn jobs(ctx: &Ctx, cmd: JobsCmd) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    let chain = cfg.chain_id.clone();
    let db = providers::open_store(&cfg, providers::StoreMode::Existing).await?.db;
    match cmd {
        JobsCmd::List(a) => {
            let mut q = JobQuery::all(chain, a.limit);
            if let Some(s) = &a.status {
                q.statuses = vec![JobStatus::parse(s).map_err(user)?];
            }
            if let Some(k) = &a.kind {
                q.kinds = vec![JobKind::parse(k).map_err(user)?];
            }
            if a.from.is_some() || a.to.is_some() {
                let (from, to) = (a.from.unwrap_or(0), a.to.unwrap_or(u64::MAX));
                if to < from {
                    return Err(user(format!("--to {to} is below --from {from}")));
                }
                q.first_block = Some((from, to));
            }
            let jobs = db.list_jobs(&q).await?;
            if a.json {
                return output::json(&jobs);
            }
            let rows: Vec<_> = jobs.iter().map(row).collect();
            output::table(&["ID", "KIND", "BLOCKS", "STATUS", "ATTEMPTS", "LAST ERROR"], &rows);
        }
        JobsCmd::Show(a) => {
            let id = JobId::parse(&a.id).map_err(user)?;
            let job = db.get_job(id).await?;
            let history = db.history(id).await?;
            if a.json {
                return output::json(&JobView { job: &job, history });
            }
            output::table(&["ID", "KIND", "BLOCKS", "STATUS", "ATTEMPTS", "LAST ERROR"], &[row(&job)]);
            crate::output::line("");
            let rows: Vec<_> = history
                .iter()
                .map(|t| {
                    vec![
                        t.at.0.to_string(),
                        format!("{} -> {}", t.from, t.to),
                        t.attempt.to_string(),
                        t.actor.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                        t.reason.clone(),
                    ]
                })
                .collect();
            output::table(&["AT (ms)", "TRANSITION", "ATTEMPT", "BY", "REASON"], &rows);
        }
        JobsCmd::Retry(a) => {
            let id = JobId::parse(&a.id).map_err(user)?;
            let job = ops::retry_job(&*db, id, &operator(), SystemClock.now()).await.map_err(user)?;
            report(&job, a.json)?;
        }
        JobsCmd::Cancel(a) => {
            let id = JobId::parse(&a.id).map_err(user)?;
            let job = ops::cancel_job(&*db, id, &operator(), SystemClock.now()).await.map_err(user)?;
            report(&job, a.json)?;
        }
    }
    Ok(())
}

fn operator() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

fn report(job: &Job, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(job)
    } else {
        crate::output::line(format!("job {} ({}) is now {}", job.id, job.key, job.status));
        Ok(())
    }
}
