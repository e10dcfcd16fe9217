//! The [`JobHandler`] trait: what a kind of job does, and the context it runs in.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::db::{Database, DatabaseExt};
use crate::error::Result;
use crate::job::{Job, JobMeta, JobWrite};
use crate::types::{Timestamp, WorkerId};

/// How processing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to verify: the job is complete.
    Done,
    /// The effect was caused; verify it after `after`.
    Verify {
        /// First check delay.
        after: Duration,
    },
    /// Not this job's turn yet (e.g. settlement lags): look again after `after`, no attempt spent.
    Wait {
        /// Delay.
        after: Duration,
    },
}

/// How a verification check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Confirmed: the job is complete.
    Done,
    /// Not yet; check again after `after`.
    Pending {
        /// Delay.
        after: Duration,
    },
    /// The effect failed (task failed, tx reverted or dropped): process again.
    Failed {
        /// Why.
        reason: String,
    },
}

/// The job a handler works on, with the means to persist intents before external effects.
#[derive(Debug)]
pub struct JobCtx {
    job: Job,
    db: Arc<dyn Database>,
    clock: Arc<dyn Clock>,
    worker: WorkerId,
}

impl JobCtx {
    pub(crate) fn new(job: Job, db: Arc<dyn Database>, clock: Arc<dyn Clock>, worker: WorkerId) -> Self {
        JobCtx { job, db, clock, worker }
    }

    /// The job (as last persisted, plus unpersisted meta changes).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Handler-owned state to change; written with the job's next write.
    pub fn meta_mut(&mut self) -> &mut JobMeta {
        &mut self.job.meta
    }

    /// Current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The worker running the job.
    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    /// Writes the job now (fenced on version and epoch), e.g. to record an intent before an
    /// external effect. A `VersionConflict` means this worker lost the job: stop.
    pub async fn persist(&mut self) -> Result<()> {
        let now = self.clock.now();
        let stored = self.db.update_job(JobWrite { job: self.job.clone(), transition: None, now }).await?;
        self.job = stored;
        Ok(())
    }

    /// Sets `meta.intent` to `intent` and persists, unless that intent is already recorded.
    pub async fn record_intent(&mut self, intent: String) -> Result<()> {
        if self.job.meta.intent.as_deref() == Some(intent.as_str()) {
            return Ok(());
        }
        self.job.meta.intent = Some(intent);
        self.persist().await
    }

    pub(crate) fn into_job(self) -> Job {
        self.job
    }
}

/// What one kind of job does.
///
/// # Contract
/// - `process` may be called again for the same job after a crash at any point, and must then
///   not repeat an external effect blindly: record an intent with [`JobCtx::record_intent`]
///   first, and on entry check `meta` for an effect already caused.
/// - `verify` is called for jobs in `PendingVerification`; it must not cause new effects.
/// - Errors: retryable ones are retried with backoff; others fail the job at once.
#[async_trait]
pub trait JobHandler: std::fmt::Debug + Send + Sync + 'static {
    /// Cause the job's effect.
    async fn process(&self, ctx: &mut JobCtx) -> Result<Outcome>;

    /// Check the effect.
    async fn verify(&self, ctx: &mut JobCtx) -> Result<Verdict>;
}
