//! Documents ⇄ orch types. The documents are this crate's own serde structs; nothing of BSON
//! leaves the crate.

use orch_core::error::{Error, Result};
use orch_core::job::{Job, JobMeta, Transition, WorkerInfo};
use orch_core::types::{
    BlockRange, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Lease, ObjectKey, Timestamp, Version, WorkerId,
};
use serde::{Deserialize, Serialize};

/// Collection of jobs (with each job's history embedded).
pub(crate) const JOBS: &str = "jobs";
/// Collection of worker registry rows.
pub(crate) const WORKERS: &str = "workers";
/// Collection of named leader leases.
pub(crate) const LEADERS: &str = "leaders";
/// Collection holding the schema-version document.
pub(crate) const META: &str = "orch_meta";

/// A kind's code as a BSON 32-bit integer ([`JobKind::code`]).
pub(crate) const fn kind_code(k: JobKind) -> i32 {
    k.code() as i32
}

fn kind_from_code(c: i32) -> Result<JobKind> {
    JobKind::from_code(i64::from(c)).ok_or_else(|| corrupt(format!("unknown job kind code {c}")))
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::invalid_input(
        "mongo document",
        format!("orch cannot read a stored value: {what}; was the database changed by another program?"),
    )
}

/// Timestamps are milliseconds as BSON 64-bit integers. [`Timestamp::NEVER`] is `i64::MAX`,
/// so every real timestamp fits; larger values are clamped (order is preserved).
pub(crate) fn ts(t: Timestamp) -> i64 {
    t.to_i64()
}

pub(crate) fn ts_back(v: i64) -> Result<Timestamp> {
    Timestamp::from_i64(v).ok_or_else(|| corrupt(format!("negative timestamp {v}")))
}

/// A counter (block, version, epoch) as a BSON 64-bit integer.
pub(crate) fn int(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid_input(what, format!("{v} exceeds MongoDB's integer range (2^63-1)")))
}

fn uint(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative {what} {v}")))
}

fn small(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(format!("{what} {v} out of range")))
}

fn status(s: &str) -> Result<JobStatus> {
    JobStatus::parse(s).map_err(|_| corrupt(format!("unknown job status {s:?}")))
}

/// When a job becomes claimable: the later of `next_run_at` and its lease expiry for a
/// claimable status, `None` (stored as null, which no `$lte` on a number matches) otherwise.
/// Claims read one index range on it.
pub(crate) fn due_at(status: JobStatus, next_run_at: Timestamp, lease: Option<&Lease>) -> Option<i64> {
    status.is_claimable().then(|| ts(next_run_at).max(lease.map_or(0, |l| ts(l.until))))
}

/// A job key inside a document (dependencies).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyDoc {
    pub(crate) chain: String,
    pub(crate) kind: i32,
    pub(crate) first: i64,
    pub(crate) last: i64,
}

impl KeyDoc {
    pub(crate) fn from_key(k: &JobKey) -> Result<KeyDoc> {
        Ok(KeyDoc {
            chain: k.chain.as_str().to_owned(),
            kind: kind_code(k.kind),
            first: int(k.range.first(), "block")?,
            last: int(k.range.last(), "block")?,
        })
    }

    fn into_key(self) -> Result<JobKey> {
        Ok(JobKey {
            chain: ChainId::new(self.chain).map_err(corrupt)?,
            kind: kind_from_code(self.kind)?,
            range: BlockRange::new(uint(self.first, "block")?, uint(self.last, "block")?).map_err(corrupt)?,
        })
    }
}

/// One `(name, value)` entry of a map. Maps are stored as arrays so that names may hold any
/// character (MongoDB field names may not start with `$`, and dots are awkward in them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) k: String,
    pub(crate) v: String,
}

/// [`JobMeta`] as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct MetaDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) external_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) artifacts: Vec<Entry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) extra: Vec<Entry>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) transient_failures: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl MetaDoc {
    pub(crate) fn from_meta(m: &JobMeta) -> MetaDoc {
        MetaDoc {
            intent: m.intent.clone(),
            external_ref: m.external_ref.clone(),
            artifacts: m.artifacts.iter().map(|(k, v)| Entry { k: k.clone(), v: v.as_str().to_owned() }).collect(),
            extra: m.extra.iter().map(|(k, v)| Entry { k: k.clone(), v: v.clone() }).collect(),
            transient_failures: i64::from(m.transient_failures),
        }
    }

    fn into_meta(self) -> Result<JobMeta> {
        let mut artifacts = std::collections::BTreeMap::new();
        for e in self.artifacts {
            artifacts.insert(e.k, ObjectKey::new(e.v).map_err(corrupt)?);
        }
        let mut meta = JobMeta {
            intent: self.intent,
            external_ref: self.external_ref,
            artifacts,
            extra: self.extra.into_iter().map(|e| (e.k, e.v)).collect(),
            transient_failures: small(self.transient_failures, "transient_failures")?,
        };
        // Documents written before the typed field keep the count in `extra`.
        meta.upgrade_legacy();
        Ok(meta)
    }
}

/// A job document, without its embedded `history` array (reads project it away).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobDoc {
    #[serde(rename = "_id")]
    pub(crate) id: String,
    pub(crate) chain: String,
    pub(crate) kind: i32,
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) status: String,
    pub(crate) version: i64,
    pub(crate) epoch: i64,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_until: Option<i64>,
    pub(crate) attempts: i64,
    pub(crate) max_attempts: i64,
    pub(crate) next_run_at: i64,
    pub(crate) verify_deadline: Option<i64>,
    pub(crate) deps: Vec<KeyDoc>,
    pub(crate) meta: MetaDoc,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    /// See [`due_at`].
    pub(crate) due_at: Option<i64>,
}

impl JobDoc {
    pub(crate) fn from_job(j: &Job) -> Result<JobDoc> {
        Ok(JobDoc {
            id: j.id.to_string(),
            chain: j.key.chain.as_str().to_owned(),
            kind: kind_code(j.key.kind),
            first: int(j.key.range.first(), "block")?,
            last: int(j.key.range.last(), "block")?,
            status: j.status.as_str().to_owned(),
            version: int(j.version.0, "version")?,
            epoch: int(j.epoch.0, "epoch")?,
            lease_owner: j.lease.as_ref().map(|l| l.owner.0.clone()),
            lease_until: j.lease.as_ref().map(|l| ts(l.until)),
            attempts: i64::from(j.attempts),
            max_attempts: i64::from(j.max_attempts),
            next_run_at: ts(j.next_run_at),
            verify_deadline: j.verify_deadline.map(ts),
            deps: j.deps.iter().map(KeyDoc::from_key).collect::<Result<_>>()?,
            meta: MetaDoc::from_meta(&j.meta),
            last_error: j.last_error.clone(),
            created_at: ts(j.created_at),
            updated_at: ts(j.updated_at),
            due_at: due_at(j.status, j.next_run_at, j.lease.as_ref()),
        })
    }

    pub(crate) fn into_job(self) -> Result<Job> {
        let id = JobId::parse(&self.id).map_err(|_| corrupt(format!("job id {:?}", self.id)))?;
        let lease = match (self.lease_owner, self.lease_until) {
            (Some(owner), Some(until)) => Some(Lease { owner: WorkerId(owner), until: ts_back(until)? }),
            _ => None,
        };
        Ok(Job {
            id,
            key: KeyDoc { chain: self.chain, kind: self.kind, first: self.first, last: self.last }.into_key()?,
            status: status(&self.status)?,
            version: Version(uint(self.version, "version")?),
            epoch: Epoch(uint(self.epoch, "epoch")?),
            lease,
            attempts: small(self.attempts, "attempts")?,
            max_attempts: small(self.max_attempts, "max_attempts")?,
            next_run_at: ts_back(self.next_run_at)?,
            verify_deadline: self.verify_deadline.map(ts_back).transpose()?,
            deps: self.deps.into_iter().map(KeyDoc::into_key).collect::<Result<_>>()?,
            meta: self.meta.into_meta()?,
            last_error: self.last_error,
            created_at: ts_back(self.created_at)?,
            updated_at: ts_back(self.updated_at)?,
        })
    }
}

/// One entry of a job's embedded `history` array.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TransitionDoc {
    pub(crate) at: i64,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) reason: String,
    pub(crate) attempt: i64,
    pub(crate) actor: Option<String>,
    pub(crate) epoch: i64,
}

impl TransitionDoc {
    pub(crate) fn from_transition(t: &Transition) -> Result<TransitionDoc> {
        Ok(TransitionDoc {
            at: ts(t.at),
            from: t.from.as_str().to_owned(),
            to: t.to.as_str().to_owned(),
            reason: t.reason.clone(),
            attempt: i64::from(t.attempt),
            actor: t.actor.as_ref().map(|a| a.0.clone()),
            epoch: int(t.epoch.0, "transition epoch")?,
        })
    }

    pub(crate) fn into_transition(self) -> Result<Transition> {
        Ok(Transition {
            at: ts_back(self.at)?,
            from: status(&self.from)?,
            to: status(&self.to)?,
            reason: self.reason,
            attempt: small(self.attempt, "attempt")?,
            actor: self.actor.map(WorkerId),
            epoch: Epoch(uint(self.epoch, "epoch")?),
        })
    }
}

/// The `history` projection of a job document.
#[derive(Debug, Deserialize)]
pub(crate) struct HistoryDoc {
    #[serde(default)]
    pub(crate) history: Vec<TransitionDoc>,
}

/// A worker registry document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WorkerDoc {
    #[serde(rename = "_id")]
    pub(crate) id: String,
    pub(crate) mode: String,
    pub(crate) host: String,
    pub(crate) version: String,
    pub(crate) started_at: i64,
    pub(crate) heartbeat_at: i64,
}

impl WorkerDoc {
    pub(crate) fn into_worker(self) -> Result<WorkerInfo> {
        Ok(WorkerInfo {
            id: WorkerId(self.id),
            mode: self.mode,
            host: self.host,
            version: self.version,
            started_at: ts_back(self.started_at)?,
            heartbeat_at: ts_back(self.heartbeat_at)?,
        })
    }
}

/// One `(kind, status) → count` row of `count_jobs`.
#[derive(Debug, Deserialize)]
pub(crate) struct CountDoc {
    #[serde(rename = "_id")]
    pub(crate) id: CountKey,
    pub(crate) n: i64,
}

/// The group key of a [`CountDoc`].
#[derive(Debug, Deserialize)]
pub(crate) struct CountKey {
    pub(crate) kind: i32,
    pub(crate) status: String,
}

impl CountDoc {
    pub(crate) fn into_count(self) -> Result<orch_core::job::StatusCount> {
        Ok(orch_core::job::StatusCount {
            kind: kind_from_code(self.id.kind)?,
            status: status(&self.id.status)?,
            count: uint(self.n, "count")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_only_for_claimable_statuses() {
        let lease = Lease { owner: WorkerId("w".into()), until: Timestamp(50) };
        for s in JobStatus::ALL {
            let d = due_at(s, Timestamp(10), Some(&lease));
            assert_eq!(d.is_some(), s.is_claimable(), "{s}");
        }
        assert_eq!(due_at(JobStatus::Created, Timestamp(10), None), Some(10));
        assert_eq!(due_at(JobStatus::Processing, Timestamp(10), Some(&lease)), Some(50));
        assert_eq!(ts_back(ts(Timestamp::NEVER)).unwrap(), Timestamp::NEVER);
    }

    fn through_bson(doc: &MetaDoc) -> JobMeta {
        let raw = mongodb::bson::to_document(doc).unwrap();
        mongodb::bson::from_document::<MetaDoc>(raw).unwrap().into_meta().unwrap()
    }

    #[test]
    fn meta_transient_failures_round_trips_and_is_omitted_when_zero() {
        let raw = mongodb::bson::to_document(&MetaDoc::from_meta(&JobMeta::default())).unwrap();
        assert!(raw.is_empty(), "{raw}");
        let meta = JobMeta { transient_failures: 12, ..JobMeta::default() };
        assert_eq!(through_bson(&MetaDoc::from_meta(&meta)), meta);
    }

    #[test]
    fn legacy_transient_failures_in_extra_read_as_the_field() {
        let old = MetaDoc {
            extra: vec![
                Entry { k: "da_bytes".into(), v: "10".into() },
                Entry { k: "transient_failures".into(), v: "7".into() },
            ],
            ..MetaDoc::default()
        };
        let meta = through_bson(&old);
        assert_eq!(meta.transient_failures, 7);
        assert_eq!(meta.extra.into_iter().collect::<Vec<_>>(), [("da_bytes".to_string(), "10".to_string())]);
    }
}
