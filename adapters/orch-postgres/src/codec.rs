//! Rows ⇄ orch types.

use orch_core::error::{Error, Result};
use orch_core::job::{Job, JobMeta, Transition};
use orch_core::types::{
    BlockRange, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Lease, Timestamp, Version, WorkerId,
};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::error::{corrupt, map_err, Place};

/// Columns of `jobs` in the order [`job_from_row`] reads them, each prefixed with `$p`
/// (a table alias and a dot, or nothing).
macro_rules! job_cols {
    ($p:literal) => {
        concat!(
            $p,
            "id::text, ",
            $p,
            "chain, ",
            $p,
            "kind, ",
            $p,
            "first_block, ",
            $p,
            "last_block, ",
            $p,
            "status, ",
            $p,
            "version, ",
            $p,
            "epoch, ",
            $p,
            "lease_owner, ",
            $p,
            "lease_until, ",
            $p,
            "attempts, ",
            $p,
            "max_attempts, ",
            $p,
            "next_run_at, ",
            $p,
            "verify_deadline, ",
            $p,
            "deps::text, ",
            $p,
            "meta::text, ",
            $p,
            "last_error, ",
            $p,
            "created_at, ",
            $p,
            "updated_at"
        )
    };
}
pub(crate) use job_cols;

/// Storage code of a kind ([`JobKind::code`]): codes ascend in [`JobKind`]'s order, so
/// `ORDER BY kind` is the order of [`orch_core::job::JobQuery::sort_key`].
pub(crate) const fn kind_code(k: JobKind) -> i16 {
    k.code() as i16
}

pub(crate) fn kind_from_code(c: i16, at: &Place) -> Result<JobKind> {
    JobKind::from_code(i64::from(c)).ok_or_else(|| corrupt(at, format!("unknown job kind code {c}")))
}

/// A timestamp as stored ([`Timestamp::to_i64`]: [`Timestamp::NEVER`] is `i64::MAX`).
pub(crate) fn ts(t: Timestamp) -> i64 {
    t.to_i64()
}

pub(crate) fn ts_back(v: i64, at: &Place) -> Result<Timestamp> {
    Timestamp::from_i64(v).ok_or_else(|| corrupt(at, format!("negative timestamp {v}")))
}

/// A counter (block, version, epoch) as a `bigint`.
pub(crate) fn int(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid_input(what, format!("{v} exceeds PostgreSQL's bigint range (2^63-1)")))
}

pub(crate) fn uint(v: i64, what: &str, at: &Place) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt(at, format!("negative {what} {v}")))
}

fn small(v: i64, what: &str, at: &Place) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(at, format!("{what} {v} out of range")))
}

pub(crate) fn status(s: &str, at: &Place) -> Result<JobStatus> {
    JobStatus::parse(s).map_err(|_| corrupt(at, format!("unknown job status {s:?}")))
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

/// Reads a job from `row`, whose first columns are [`job_cols`].
pub(crate) fn job_from_row(row: &PgRow, at: &Place) -> Result<Job> {
    let m = |e| map_err(e, at);
    let id: String = row.try_get(0).map_err(m)?;
    let id = JobId::parse(&id).map_err(|_| corrupt(at, format!("job id {id:?}")))?;
    let chain: String = row.try_get(1).map_err(m)?;
    let chain = ChainId::new(chain).map_err(|e| corrupt(at, e))?;
    let kind = kind_from_code(row.try_get(2).map_err(m)?, at)?;
    let first = uint(row.try_get(3).map_err(m)?, "block", at)?;
    let last = uint(row.try_get(4).map_err(m)?, "block", at)?;
    let range = BlockRange::new(first, last).map_err(|e| corrupt(at, e))?;
    let st: &str = row.try_get(5).map_err(m)?;
    let owner: Option<String> = row.try_get(8).map_err(m)?;
    let until: Option<i64> = row.try_get(9).map_err(m)?;
    let lease = match (owner, until) {
        (Some(owner), Some(until)) => Some(Lease { owner: WorkerId(owner), until: ts_back(until, at)? }),
        _ => None,
    };
    let verify: Option<i64> = row.try_get(13).map_err(m)?;
    let deps: &str = row.try_get(14).map_err(m)?;
    let meta: &str = row.try_get(15).map_err(m)?;
    let deps: Vec<JobKey> = if deps == "[]" {
        Vec::new()
    } else {
        serde_json::from_str(deps).map_err(|e| corrupt(at, format!("deps of job {id}: {e}")))?
    };
    let meta: JobMeta = if meta == "{}" {
        JobMeta::default()
    } else {
        serde_json::from_str(meta).map_err(|e| corrupt(at, format!("meta of job {id}: {e}")))?
    };
    Ok(Job {
        id,
        key: JobKey { chain, kind, range },
        status: status(st, at)?,
        version: Version(uint(row.try_get(6).map_err(m)?, "version", at)?),
        epoch: Epoch(uint(row.try_get(7).map_err(m)?, "epoch", at)?),
        lease,
        attempts: small(row.try_get(10).map_err(m)?, "attempts", at)?,
        max_attempts: small(row.try_get(11).map_err(m)?, "max_attempts", at)?,
        next_run_at: ts_back(row.try_get(12).map_err(m)?, at)?,
        verify_deadline: verify.map(|v| ts_back(v, at)).transpose()?,
        deps,
        meta,
        last_error: row.try_get(16).map_err(m)?,
        created_at: ts_back(row.try_get(17).map_err(m)?, at)?,
        updated_at: ts_back(row.try_get(18).map_err(m)?, at)?,
    })
}

/// One entry of `jobs.history`, as stored: a JSON object on a line of its own (schema version
/// 4; the claim SQL in [`crate::db`] and the V3 and V4 migrations build the same object).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HistoryEntry<'a> {
    at: i64,
    from: &'a str,
    to: &'a str,
    #[serde(borrow)]
    reason: std::borrow::Cow<'a, str>,
    attempt: i64,
    #[serde(borrow)]
    actor: Option<std::borrow::Cow<'a, str>>,
    epoch: i64,
}

impl<'a> HistoryEntry<'a> {
    fn of(t: &'a Transition) -> Result<HistoryEntry<'a>> {
        Ok(HistoryEntry {
            at: ts(t.at),
            from: t.from.as_str(),
            to: t.to.as_str(),
            reason: t.reason.as_str().into(),
            attempt: i64::from(t.attempt),
            actor: t.actor.as_ref().map(|a| a.0.as_str().into()),
            epoch: int(t.epoch.0, "transition epoch")?,
        })
    }

    fn into_transition(self, at: &Place) -> Result<Transition> {
        Ok(Transition {
            at: ts_back(self.at, at)?,
            from: status(self.from, at)?,
            to: status(self.to, at)?,
            reason: self.reason.into_owned(),
            attempt: small(self.attempt, "attempt", at)?,
            actor: self.actor.map(|a| WorkerId(a.into_owned())),
            epoch: Epoch(uint(self.epoch, "epoch", at)?),
        })
    }
}

/// `transitions` as `jobs.history` text: one JSON object per transition, each followed by a
/// newline, so that appending is concatenation. (Compact JSON escapes the newlines inside
/// strings, so a line never breaks inside an entry.)
pub(crate) fn history_lines(transitions: &[Transition]) -> Result<String> {
    let mut out = String::new();
    for t in transitions {
        let line = serde_json::to_string(&HistoryEntry::of(t)?)
            .map_err(|e| Error::internal_from("encoding job history", e))?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// The transitions stored in a job's `jobs.history` text, oldest first.
pub(crate) fn history_from_lines(text: &str, id: JobId, at: &Place) -> Result<Vec<Transition>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let e: HistoryEntry<'_> = serde_json::from_str(line)
                .map_err(|e| corrupt(at, format!("history of job {id}, entry {}: {e}", i + 1)))?;
            e.into_transition(at)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_ascend_in_kind_order() {
        let mut by_code = JobKind::ALL;
        by_code.sort_by_key(|k| kind_code(*k));
        let mut by_ord = JobKind::ALL;
        by_ord.sort();
        assert_eq!(by_code, by_ord);
    }

    #[test]
    fn never_round_trips_and_keeps_order() {
        let p = Place { url: "u".into(), schema: "s".into() };
        assert_eq!(ts_back(ts(Timestamp::NEVER), &p).unwrap(), Timestamp::NEVER);
        assert_eq!(ts_back(ts(Timestamp(17)), &p).unwrap(), Timestamp(17));
        assert!(ts(Timestamp(u64::MAX - 1)) > ts(Timestamp(1 << 62)));
    }

    #[test]
    fn history_entries_round_trip_in_the_stored_shape() {
        let p = Place { url: "u".into(), schema: "s".into() };
        let id = JobId::parse("00000000-0000-4000-8000-000000000001").unwrap();
        let h = vec![
            Transition {
                at: Timestamp(5),
                from: JobStatus::Created,
                to: JobStatus::Processing,
                reason: "claimed".into(),
                attempt: 1,
                actor: Some(WorkerId("w \"1\"".into())),
                epoch: Epoch(1),
            },
            Transition {
                at: Timestamp::NEVER,
                from: JobStatus::Processing,
                to: JobStatus::PendingVerification,
                reason: "processed; verifying\n".into(),
                attempt: 1,
                actor: None,
                epoch: Epoch(1),
            },
        ];
        let text = history_lines(&h).unwrap();
        assert!(text.starts_with(r#"{"at":5,"from":"created","to":"processing","reason":"claimed","#), "{text}");
        assert!(text.contains(r#""actor":null"#), "{text}");
        assert_eq!(text.lines().count(), 2, "one line per entry, however many newlines a reason has: {text}");
        assert!(text.ends_with("}\n"), "{text}");
        assert_eq!(history_from_lines(&text, id, &p).unwrap(), h);
        assert_eq!(history_from_lines("", id, &p).unwrap(), Vec::new());
        // What PostgreSQL's `json_build_object` writes (the claim's entries) reads the same.
        let spaced = r#"{"at" : 5, "from" : "created", "to" : "processing", "reason" : "claimed", "attempt" : 1, "actor" : "w \"1\"", "epoch" : 1}"#;
        assert_eq!(history_from_lines(&format!("{spaced}\n"), id, &p).unwrap(), h[..1]);
        let e = history_from_lines("{\"at\":1}\n", id, &p).unwrap_err();
        assert!(e.to_string().contains("history of job") && e.to_string().contains("entry 1"), "{e}");
        let bad = r#"{"at":1,"from":"nope","to":"created","reason":"","attempt":0,"actor":null,"epoch":0}"#;
        assert!(history_from_lines(bad, id, &p).is_err());
    }

    #[test]
    fn job_cols_has_every_column_once() {
        assert_eq!(job_cols!("").split(',').count(), 19);
        assert!(job_cols!("j.").starts_with("j.id::text, j.chain"));
    }
}
