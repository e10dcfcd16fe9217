//! The job record, its history, and what callers hand the [`Database`](crate::db::Database).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{
    BlockRange, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Lease, ObjectKey, Timestamp, Version, WorkerId,
};

/// Handler-owned state persisted on the job: intents before external effects, references to
/// what those effects produced, and artefact keys; and the engine's count of transient failures.
///
/// Rule: a handler writes `intent` (a dedup key, a nonce) *before* it causes an external effect
/// and `external_ref` (task id, tx hash, DA reference) right after; a retry reads them first and
/// checks the effect's outcome instead of repeating it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredJobMeta")]
pub struct JobMeta {
    /// The side effect about to be caused (idempotency key understood by the port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// What the external system answered (task id, tx hash, serialized DA reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    /// Artefacts this job produced, by role (`pie`, `program_output`, `proof`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, ObjectKey>,
    /// Small free-form facts (counts, sizes) shown to operators.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
    /// Retryable failures so far, which back off without spending an attempt. Owned by the
    /// engine; handlers leave it alone.
    #[serde(skip_serializing_if = "is_zero")]
    pub transient_failures: u32,
}

/// The `extra` key under which orch before the typed field kept [`JobMeta::transient_failures`].
const LEGACY_TRANSIENT_FAILURES: &str = "transient_failures";

impl JobMeta {
    /// Moves what older orch versions kept in `extra` into its typed field (today
    /// `transient_failures`), so records they stored read the same as new ones. Decoding with
    /// serde does it; a store that builds `JobMeta` field by field calls it after decoding.
    pub fn upgrade_legacy(&mut self) {
        if let Some(v) = self.extra.remove(LEGACY_TRANSIENT_FAILURES) {
            // Unparsable counted as zero before too.
            let legacy = v.parse::<u32>().unwrap_or(0);
            self.transient_failures = self.transient_failures.max(legacy);
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// [`JobMeta`] as found in storage, upgraded on the way in by [`JobMeta::upgrade_legacy`].
#[derive(Deserialize)]
struct StoredJobMeta {
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    external_ref: Option<String>,
    #[serde(default)]
    artifacts: BTreeMap<String, ObjectKey>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
    #[serde(default)]
    transient_failures: u32,
}

impl From<StoredJobMeta> for JobMeta {
    fn from(m: StoredJobMeta) -> JobMeta {
        let mut meta = JobMeta {
            intent: m.intent,
            external_ref: m.external_ref,
            artifacts: m.artifacts,
            extra: m.extra,
            transient_failures: m.transient_failures,
        };
        meta.upgrade_legacy();
        meta
    }
}

/// One recorded status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// When.
    pub at: Timestamp,
    /// Status before.
    pub from: JobStatus,
    /// Status after.
    pub to: JobStatus,
    /// Why, e.g. `claimed`, `processed`, `prover: task failed: …`.
    pub reason: String,
    /// `attempts` after the change.
    pub attempt: u32,
    /// Who caused it (a worker, or `operator:<name>`).
    pub actor: Option<WorkerId>,
    /// Fencing epoch in force.
    pub epoch: Epoch,
}

/// A job with its history: the unit of `db export` / `db import` and of
/// [`Database::import_jobs`](crate::db::Database::import_jobs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRecord {
    /// The job as stored.
    pub job: Job,
    /// Its transitions, oldest first.
    pub history: Vec<Transition>,
}

impl JobRecord {
    /// Checks what a store relies on: no more transitions than writes (each transition was
    /// recorded by one write), and a range the key allows.
    pub fn validate(&self) -> crate::error::Result<()> {
        if self.history.len() as u64 > self.job.version.0 {
            return Err(crate::error::Error::invalid_input(
                format!("job {}", self.job.id),
                format!(
                    "has {} history entries but version {}: every entry is written by one write, so the record is corrupt",
                    self.history.len(),
                    self.job.version.0
                ),
            ));
        }
        Ok(())
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Identity.
    pub id: JobId,
    /// Unique key `(chain, kind, range)`.
    pub key: JobKey,
    /// Life-cycle status.
    pub status: JobStatus,
    /// Incremented by every write; conditional updates compare it.
    pub version: Version,
    /// Incremented by every claim; fences stale workers.
    pub epoch: Epoch,
    /// Current claim, if any (possibly expired).
    pub lease: Option<Lease>,
    /// Failed or abandoned processing attempts so far.
    pub attempts: u32,
    /// Attempts allowed before `Failed`.
    pub max_attempts: u32,
    /// When the engine should next look at the job.
    pub next_run_at: Timestamp,
    /// Deadline for verification (set on entering `PendingVerification`).
    pub verify_deadline: Option<Timestamp>,
    /// Jobs that must be `Completed` before this one may be processed.
    pub deps: Vec<JobKey>,
    /// Handler-owned state.
    pub meta: JobMeta,
    /// Last error message (for operators).
    pub last_error: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Time of the last write.
    pub updated_at: Timestamp,
}

impl Job {
    /// Kind of job.
    pub fn kind(&self) -> JobKind {
        self.key.kind
    }

    /// Blocks covered.
    pub fn range(&self) -> BlockRange {
        self.key.range
    }

    /// Whether a worker holds a lease that has not expired at `now`.
    pub fn has_live_lease(&self, now: Timestamp) -> bool {
        self.lease.as_ref().is_some_and(|l| l.until > now)
    }

    /// Whether [`Database::claim_jobs`](crate::db::Database::claim_jobs) may claim it at `now`.
    pub fn is_due(&self, now: Timestamp) -> bool {
        self.status.is_claimable() && self.next_run_at <= now && !self.has_live_lease(now)
    }
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    /// Identity to use if the key is free.
    pub id: JobId,
    /// Unique key.
    pub key: JobKey,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// First time it may run.
    pub next_run_at: Timestamp,
    /// Dependencies.
    pub deps: Vec<JobKey>,
    /// Initial handler state.
    pub meta: JobMeta,
}

impl NewJob {
    /// The record a store writes for this job at `now` (status `Created`, version 1, epoch 0).
    pub fn into_job(self, now: Timestamp) -> Job {
        Job {
            id: self.id,
            key: self.key,
            status: JobStatus::Created,
            version: Version(1),
            epoch: Epoch(0),
            lease: None,
            attempts: 0,
            max_attempts: self.max_attempts,
            next_run_at: self.next_run_at,
            verify_deadline: None,
            deps: self.deps,
            meta: self.meta,
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Result of a create-if-absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The key was free; this is the new job.
    New(Job),
    /// The key was taken; this is the job that holds it (unchanged).
    Existing(Job),
}

impl Created {
    /// The job either way.
    pub fn job(&self) -> &Job {
        match self {
            Created::New(j) | Created::Existing(j) => j,
        }
    }

    /// Whether this call created it.
    pub fn is_new(&self) -> bool {
        matches!(self, Created::New(_))
    }
}

/// A conditional write of a whole job record.
///
/// Applied only if the stored record still has `job.version` **and** `job.epoch`; the store then
/// writes `job` with `version + 1` and `updated_at = now`, appends `transition` (if any) to the
/// history, and returns the stored record. Otherwise `VersionConflict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobWrite {
    /// The new record; `version` and `epoch` are the expected current ones.
    pub job: Job,
    /// History entry to append.
    pub transition: Option<Transition>,
    /// Write time.
    pub now: Timestamp,
}

/// What to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// Tenant.
    pub chain: ChainId,
    /// Claimer.
    pub owner: WorkerId,
    /// Current time: due means `next_run_at <= now` and no lease alive at `now`.
    pub now: Timestamp,
    /// Expiry of the leases granted.
    pub lease_until: Timestamp,
    /// Up to how many jobs of each kind.
    pub wants: Vec<(JobKind, u32)>,
}

/// Sort order of a [`JobQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Order {
    /// Lowest blocks first.
    #[default]
    Ascending,
    /// Highest blocks first.
    Descending,
}

/// A filtered, paginated listing. Results are ordered by `(range.first, range.last, kind)`;
/// `after` is an exclusive keyset cursor (the last key of the previous page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Tenant.
    pub chain: ChainId,
    /// Only these kinds (empty = all).
    pub kinds: Vec<JobKind>,
    /// Only these statuses (empty = all).
    pub statuses: Vec<JobStatus>,
    /// Only jobs whose range starts within `from..=to`.
    pub first_block: Option<(u64, u64)>,
    /// Keyset cursor.
    pub after: Option<JobKey>,
    /// Order.
    pub order: Order,
    /// Page size (at most 10,000).
    pub limit: u32,
}

impl JobQuery {
    /// All jobs of a chain, ascending, `limit` at a time.
    pub fn all(chain: ChainId, limit: u32) -> JobQuery {
        JobQuery {
            chain,
            kinds: Vec::new(),
            statuses: Vec::new(),
            first_block: None,
            after: None,
            order: Order::Ascending,
            limit,
        }
    }

    /// Whether `job` passes the filters (not the cursor).
    pub fn matches(&self, job: &Job) -> bool {
        job.key.chain == self.chain
            && (self.kinds.is_empty() || self.kinds.contains(&job.key.kind))
            && (self.statuses.is_empty() || self.statuses.contains(&job.status))
            && self.first_block.is_none_or(|(from, to)| from <= job.key.range.first() && job.key.range.first() <= to)
    }

    /// The ordering tuple of a key.
    pub fn sort_key(key: &JobKey) -> (u64, u64, JobKind) {
        (key.range.first(), key.range.last(), key.kind)
    }
}

/// Number of jobs of one kind in one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCount {
    /// Kind.
    pub kind: JobKind,
    /// Status.
    pub status: JobStatus,
    /// How many.
    pub count: u64,
}

/// A live orchestrator instance, as kept in the worker registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Identity.
    pub id: WorkerId,
    /// Service mode (`all`, `worker`, `watcher`, `api`).
    pub mode: String,
    /// Host name or pod name.
    pub host: String,
    /// orch version.
    pub version: String,
    /// Start time.
    pub started_at: Timestamp,
    /// Last heartbeat.
    pub heartbeat_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_is_a_field_and_skipped_when_zero() {
        assert_eq!(serde_json::to_string(&JobMeta::default()).unwrap(), "{}");
        let meta = JobMeta { transient_failures: 3, ..JobMeta::default() };
        let json = serde_json::to_string(&meta).unwrap();
        assert_eq!(json, r#"{"transient_failures":3}"#);
        assert_eq!(serde_json::from_str::<JobMeta>(&json).unwrap(), meta);
    }

    #[test]
    fn legacy_transient_failures_in_extra_reads_as_the_field() {
        let old = r#"{"intent":"i","extra":{"da_bytes":"10","transient_failures":"7"}}"#;
        let meta: JobMeta = serde_json::from_str(old).unwrap();
        assert_eq!(meta.transient_failures, 7);
        assert_eq!(meta.intent.as_deref(), Some("i"));
        assert_eq!(meta.extra, BTreeMap::from([("da_bytes".to_string(), "10".to_string())]));
        // Written back, it is in the new form only.
        assert_eq!(
            serde_json::to_string(&meta).unwrap(),
            r#"{"intent":"i","extra":{"da_bytes":"10"},"transient_failures":7}"#
        );

        // An unparsable legacy value counted as zero, as it did before.
        let meta: JobMeta = serde_json::from_str(r#"{"extra":{"transient_failures":"x"}}"#).unwrap();
        assert_eq!(meta, JobMeta::default());

        // Both present (a store that kept the old entry): the larger count wins.
        let both = r#"{"extra":{"transient_failures":"2"},"transient_failures":5}"#;
        assert_eq!(serde_json::from_str::<JobMeta>(both).unwrap().transient_failures, 5);

        let mut built = JobMeta::default();
        built.extra.insert("transient_failures".into(), "4".into());
        built.upgrade_legacy();
        assert_eq!(built, JobMeta { transient_failures: 4, ..JobMeta::default() });
    }
}
