//! The [`Database`] port: the job store and source of truth.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::forward::port;
use crate::job::{
    ClaimRequest, Created, Job, JobQuery, JobRecord, JobWrite, NewJob, StatusCount, Transition, WorkerInfo,
};
use crate::types::{BlockNumber, ChainId, Epoch, JobId, JobKey, JobKind, Timestamp, WorkerId};

port! {
    /// The job store.
    ///
    /// # Contract
    /// 1. **Create-if-absent.** `create_jobs` inserts each job whose key `(chain, kind, range)` is
    ///    free, as [`NewJob::into_job`] at `now` (status `Created`, version 1, epoch 0), and returns
    ///    `Created::New`; for a taken key it changes nothing and returns `Created::Existing` with the
    ///    stored job. Results are in input order. Jobs are inserted in input order, each atomically;
    ///    a failure part-way leaves a (possibly empty) prefix inserted.
    /// 2. **Lookups.** `get_job` returns `NotFound` for an unknown id; `get_job_by_key` returns
    ///    `None` for an unknown key.
    /// 3. **Conditional write.** `update_jobs` applies each [`JobWrite`] atomically iff the stored
    ///    record's `version` and `epoch` equal the write's; it stores the record with
    ///    `version + 1`, `updated_at = now`, appends the transition, and returns the stored record.
    ///    Otherwise that item is `Err(VersionConflict)` (or `NotFound`) and nothing of it is written.
    ///    Items are independent: one conflict does not affect the others.
    /// 4. **Claim.** `claim_jobs` atomically selects, per `(kind, n)` in `wants`, up to `n` jobs of
    ///    `chain` and that kind that are *due*: status is claimable (`Created`, `PendingRetry`,
    ///    `Processing`, `PendingVerification`), `next_run_at <= now`, and no lease with
    ///    `until > now`. When more are due than wanted, lower `range.first` should go first (the
    ///    suite checks it among jobs due at the same time; an adapter may order by due time
    ///    first). Each is written
    ///    with lease `(owner, lease_until)`, `epoch + 1`, `version + 1`, status
    ///    [`crate::state::claimed_status`], `attempts + 1` when [`crate::state::claim_counts_attempt`],
    ///    and — when the status changes — a history entry with reason `claimed`. Two concurrent
    ///    claims never return the same job at the same epoch.
    /// 5. **Wake.** `wake_jobs` sets `next_run_at = now` on every job of `chain` that matches one of
    ///    `targets` — its kind equals the target's and its range starts at the target's block —
    ///    whose status is `Created` and whose `next_run_at > now`. It
    ///    changes neither version nor epoch (it is a hint, safe to race with a claim) and returns the
    ///    ids and epochs of the jobs it woke.
    /// 5a. **Lease extension.** `extend_lease` sets the lease expiry of job `id` to `until` iff its
    ///    epoch is still `epoch` and it has a lease; otherwise `VersionConflict`. It changes neither
    ///    version nor epoch, so the holder's next conditional write still applies.
    /// 6. **Queries.** `list_jobs` filters and pages as [`JobQuery`] says, in its order;
    ///    `count_jobs` counts per (kind, status), omitting zeros; `history` returns a job's
    ///    transitions oldest first.
    /// 7. **Registry and leadership.** `heartbeat` upserts a worker row; `workers` lists rows whose
    ///    heartbeat is at or after `since`; `try_lead` grants the named lease to `owner` if it is
    ///    free, expired at `now`, or already `owner`'s, and returns whether `owner` holds it.
    /// 8. **Isolation.** Nothing of one chain is visible through another chain's queries.
    /// 9. **Import.** `import_jobs` stores each [`JobRecord`] verbatim — every field of the job,
    ///    including version, epoch and lease, and its history in order — atomically per record, so
    ///    a store can be restored from a dump or moved to another backend. A record whose id is
    ///    already stored with the same key changes nothing and reports `false` (an import can be
    ///    repeated); a record whose id or key is held by a different job fails the call with
    ///    `AlreadyExists` (records before it may or may not have been imported; re-running the
    ///    import is safe). `true` means it was written. A record with more history entries than
    ///    its version allows is `InvalidInput`.
    #[async_trait]
    pub trait Database: Debug + Send + Sync + 'static {
        /// Backend name for errors and metrics (`sqlite`, `postgres`, …).
        fn backend(&self) -> &'static str;

        /// Creates or upgrades the schema; idempotent. A schema newer than this code is an error.
        async fn migrate(&self) -> Result<()>;

        /// Create-if-absent, per contract rule 1.
        async fn create_jobs(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Created>>;

        /// A job by id.
        async fn get_job(&self, id: JobId) -> Result<Job>;

        /// A job by key.
        async fn get_job_by_key(&self, key: &JobKey) -> Result<Option<Job>>;

        /// Conditional writes, per contract rule 3. The outer error is for the backend failing.
        async fn update_jobs(&self, writes: &[JobWrite]) -> Result<Vec<Result<Job>>>;

        /// Claim due jobs, per contract rule 4.
        async fn claim_jobs(&self, req: &ClaimRequest) -> Result<Vec<Job>>;

        /// Wake waiting jobs, per contract rule 5.
        async fn wake_jobs(
            &self,
            chain: &ChainId,
            targets: &[(JobKind, BlockNumber)],
            now: Timestamp,
        ) -> Result<Vec<(JobId, Epoch)>>;

        /// Extend a held lease, per contract rule 5a.
        async fn extend_lease(&self, id: JobId, epoch: Epoch, until: Timestamp) -> Result<()>;

        /// A page of jobs.
        async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>>;

        /// Counts per (kind, status).
        async fn count_jobs(&self, chain: &ChainId) -> Result<Vec<StatusCount>>;

        /// A job's transitions, oldest first.
        async fn history(&self, id: JobId) -> Result<Vec<Transition>>;

        /// Upserts a worker registry row.
        async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()>;

        /// Workers seen at or after `since`.
        async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>>;

        /// Takes or keeps the named leader lease until `until`.
        async fn try_lead(&self, name: &str, owner: &WorkerId, now: Timestamp, until: Timestamp) -> Result<bool>;

        /// Stores exported records verbatim, per contract rule 9.
        async fn import_jobs(&self, records: &[JobRecord]) -> Result<Vec<bool>>;
    }
}

/// Conveniences over [`Database`], for every implementor.
#[async_trait]
pub trait DatabaseExt: Database {
    /// One conditional write.
    async fn update_job(&self, write: JobWrite) -> Result<Job> {
        let mut out = self.update_jobs(std::slice::from_ref(&write)).await?;
        out.pop().unwrap_or_else(|| Err(Error::internal("update_jobs returned no result")))
    }

    /// One create-if-absent.
    async fn create_job(&self, job: NewJob, now: Timestamp) -> Result<Created> {
        let mut out = self.create_jobs(vec![job], now).await?;
        out.pop().ok_or_else(|| Error::internal("create_jobs returned no result"))
    }
}

impl<T: Database + ?Sized> DatabaseExt for T {}
