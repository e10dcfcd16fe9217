//! Rows ⇄ orch types.

use std::path::Path;

use orch_core::error::{Error, Result};
use orch_core::job::{Job, JobMeta, Transition};
use orch_core::types::{
    BlockRange, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Lease, Timestamp, Version, WorkerId,
};
use rusqlite::Row;

use crate::error::map_err;

/// Columns of `jobs` in the order [`job_from_row`] reads them.
pub(crate) const JOB_COLS: &str = "id, chain, kind, first_block, last_block, status, version, epoch, \
     lease_owner, lease_until, attempts, max_attempts, next_run_at, verify_deadline, deps, meta, \
     last_error, created_at, updated_at";

/// Number of columns in [`JOB_COLS`].
pub(crate) const JOB_NCOLS: usize = 19;

/// A kind's code as an SQLite integer ([`JobKind::code`]).
pub(crate) const fn kind_code(k: JobKind) -> i64 {
    k.code() as i64
}

fn kind_from_code(c: i64, path: &Path) -> Result<JobKind> {
    JobKind::from_code(c).ok_or_else(|| corrupt(path, format!("unknown job kind code {c}")))
}

pub(crate) fn corrupt(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid_input(
        "sqlite row",
        format!("{} holds a value orch cannot read: {what}; was the file changed by another program?", path.display()),
    )
}

/// Timestamps as SQLite integers ([`Timestamp::to_i64`]).
pub(crate) fn ts(t: Timestamp) -> i64 {
    t.to_i64()
}

pub(crate) fn ts_back(v: i64, path: &Path) -> Result<Timestamp> {
    Timestamp::from_i64(v).ok_or_else(|| corrupt(path, format!("negative timestamp {v}")))
}

/// A counter (block, version, epoch) as an SQLite integer.
pub(crate) fn int(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid_input(what, format!("{v} exceeds SQLite's integer range (2^63-1)")))
}

fn uint(v: i64, what: &str, path: &Path) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(path, format!("negative {what} {v}")))
}

fn status(s: &str, path: &Path) -> Result<JobStatus> {
    JobStatus::parse(s).map_err(|_| corrupt(path, format!("unknown job status {s:?}")))
}

pub(crate) fn deps_json(deps: &[JobKey]) -> Result<String> {
    if deps.is_empty() {
        return Ok("[]".into());
    }
    serde_json::to_string(deps).map_err(|e| Error::internal_from("encoding job deps", e))
}

pub(crate) fn meta_json(meta: &JobMeta) -> Result<String> {
    if *meta == JobMeta::default() {
        return Ok("{}".into());
    }
    serde_json::to_string(meta).map_err(|e| Error::internal_from("encoding job meta", e))
}

/// Reads a job from `row`, whose first columns are [`JOB_COLS`].
pub(crate) fn job_from_row(row: &Row<'_>, path: &Path) -> Result<Job> {
    let m = |e| map_err(e, path);
    let id: String = row.get(0).map_err(m)?;
    let id = JobId::parse(&id).map_err(|_| corrupt(path, format!("job id {id:?}")))?;
    let chain: String = row.get(1).map_err(m)?;
    let chain = ChainId::new(chain).map_err(|e| corrupt(path, e))?;
    let kind = kind_from_code(row.get(2).map_err(m)?, path)?;
    let first = uint(row.get(3).map_err(m)?, "block", path)?;
    let last = uint(row.get(4).map_err(m)?, "block", path)?;
    let range = BlockRange::new(first, last).map_err(|e| corrupt(path, e))?;
    let st: String = row.get(5).map_err(m)?;
    let owner: Option<String> = row.get(8).map_err(m)?;
    let until: Option<i64> = row.get(9).map_err(m)?;
    let lease = match (owner, until) {
        (Some(owner), Some(until)) => Some(Lease { owner: WorkerId(owner), until: ts_back(until, path)? }),
        _ => None,
    };
    let verify: Option<i64> = row.get(13).map_err(m)?;
    let deps: String = row.get(14).map_err(m)?;
    let meta: String = row.get(15).map_err(m)?;
    let deps: Vec<JobKey> = if deps == "[]" {
        Vec::new()
    } else {
        serde_json::from_str(&deps).map_err(|e| corrupt(path, format!("deps of job {id}: {e}")))?
    };
    let meta: JobMeta = if meta == "{}" {
        JobMeta::default()
    } else {
        serde_json::from_str(&meta).map_err(|e| corrupt(path, format!("meta of job {id}: {e}")))?
    };
    Ok(Job {
        id,
        key: JobKey { chain, kind, range },
        status: status(&st, path)?,
        version: Version(uint(row.get(6).map_err(m)?, "version", path)?),
        epoch: Epoch(uint(row.get(7).map_err(m)?, "epoch", path)?),
        lease,
        attempts: u32::try_from(row.get::<_, i64>(10).map_err(m)?).map_err(|_| corrupt(path, "attempts"))?,
        max_attempts: u32::try_from(row.get::<_, i64>(11).map_err(m)?).map_err(|_| corrupt(path, "max_attempts"))?,
        next_run_at: ts_back(row.get(12).map_err(m)?, path)?,
        verify_deadline: verify.map(|v| ts_back(v, path)).transpose()?,
        deps,
        meta,
        last_error: row.get(16).map_err(m)?,
        created_at: ts_back(row.get(17).map_err(m)?, path)?,
        updated_at: ts_back(row.get(18).map_err(m)?, path)?,
    })
}

/// Columns of `job_history` in the order [`transition_from_row`] reads them.
pub(crate) const HISTORY_COLS: &str = "at, from_status, to_status, reason, attempt, actor, epoch";

pub(crate) fn transition_from_row(row: &Row<'_>, path: &Path) -> Result<Transition> {
    let m = |e| map_err(e, path);
    let from: String = row.get(1).map_err(m)?;
    let to: String = row.get(2).map_err(m)?;
    Ok(Transition {
        at: ts_back(row.get(0).map_err(m)?, path)?,
        from: status(&from, path)?,
        to: status(&to, path)?,
        reason: row.get(3).map_err(m)?,
        attempt: u32::try_from(row.get::<_, i64>(4).map_err(m)?).map_err(|_| corrupt(path, "attempt"))?,
        actor: row.get::<_, Option<String>>(5).map_err(m)?.map(WorkerId),
        epoch: Epoch(uint(row.get(6).map_err(m)?, "epoch", path)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_cols_count_matches() {
        assert_eq!(JOB_COLS.split(',').count(), JOB_NCOLS);
    }

    #[tokio::test]
    async fn legacy_transient_failures_in_extra_read_as_the_field() {
        use orch_core::db::{Database, DatabaseExt};
        use orch_core::job::{JobWrite, NewJob};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("legacy.db");
        let now = Timestamp(1_700_000_000_000);
        let new = NewJob {
            id: JobId::random(),
            key: JobKey { chain: ChainId::new("c").unwrap(), kind: JobKind::SnosRun, range: BlockRange::single(1) },
            max_attempts: 5,
            next_run_at: now,
            deps: vec![],
            meta: JobMeta::default(),
        };
        let id = new.id;
        let store = crate::SqliteStore::open_path(&path).await.unwrap();
        store.create_job(new, now).await.unwrap();
        // As orch wrote the count before it had its own field.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let old = r#"{"extra":{"da_bytes":"10","transient_failures":"7"}}"#;
        conn.execute("UPDATE jobs SET meta = ?1 WHERE id = ?2", [old, &id.to_string()]).unwrap();

        let job = store.get_job(id).await.unwrap();
        assert_eq!(job.meta.transient_failures, 7);
        assert_eq!(job.meta.extra.keys().collect::<Vec<_>>(), ["da_bytes"]);
        // The next write stores the new form.
        store.update_job(JobWrite { job, transition: None, now }).await.unwrap();
        let meta: String =
            conn.query_row("SELECT meta FROM jobs WHERE id = ?1", [id.to_string()], |r| r.get(0)).unwrap();
        assert_eq!(meta, r#"{"extra":{"da_bytes":"10"},"transient_failures":7}"#);
    }
}
