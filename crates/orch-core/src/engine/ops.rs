//! Operator actions on jobs: retry and cancel. Each is a conditional write, so a worker still
//! holding the job is fenced out, and each records who did it.

use crate::db::{Database, DatabaseExt};
use crate::error::{Error, Result};
use crate::job::{Job, JobWrite, Transition};
use crate::state::{transition, Event};
use crate::types::{JobId, Timestamp, WorkerId};

async fn operator_write(db: &dyn Database, id: JobId, actor: &str, now: Timestamp, event: Event) -> Result<Job> {
    // A handful of tries: a worker may be writing the same job concurrently.
    for _ in 0..5 {
        let job = db.get_job(id).await?;
        let to = transition(job.status, event)
            .map_err(|e| Error::invalid_input("job status", format!("{e}; see `jobs show {id}`")))?;
        let mut next = job.clone();
        next.status = to;
        next.lease = None;
        if event == Event::OperatorRetry {
            next.attempts = 0;
            next.next_run_at = now;
            next.last_error = None;
            next.verify_deadline = None;
        } else {
            next.next_run_at = Timestamp::NEVER;
        }
        let t = Transition {
            at: now,
            from: job.status,
            to,
            reason: format!("operator {actor}: {}", if event == Event::OperatorRetry { "retry" } else { "cancel" }),
            attempt: next.attempts,
            actor: Some(WorkerId(format!("operator:{actor}"))),
            epoch: job.epoch,
        };
        // Conditional on the version read. Every write bumps the version, and worker writes
        // compare it too, so a worker still holding the job is fenced out by this write.
        match db.update_job(JobWrite { job: next, transition: Some(t), now }).await {
            Ok(stored) => return Ok(stored),
            Err(Error::VersionConflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::unavailable("database", format!("job {id} kept changing; try again")))
}

/// Operator retry: a `Failed`, `VerificationTimeout` or `Cancelled` job runs again with fresh
/// attempts.
pub async fn retry_job(db: &dyn Database, id: JobId, actor: &str, now: Timestamp) -> Result<Job> {
    operator_write(db, id, actor, now, Event::OperatorRetry).await
}

/// Operator cancel: the job stops for good (dependents stay blocked).
pub async fn cancel_job(db: &dyn Database, id: JobId, actor: &str, now: Timestamp) -> Result<Job> {
    operator_write(db, id, actor, now, Event::Cancel).await
}
