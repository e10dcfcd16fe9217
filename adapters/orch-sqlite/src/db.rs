//! The [`Database`] implementation.

use std::path::Path;
use std::sync::OnceLock;

use async_trait::async_trait;
use orch_core::db::Database;
use orch_core::error::{Error, Result};
use orch_core::job::{
    ClaimRequest, Created, Job, JobQuery, JobRecord, JobWrite, NewJob, Order, StatusCount, Transition, WorkerInfo,
};
use orch_core::state::{claim_counts_attempt, claimed_status};
use orch_core::types::{
    BlockNumber, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Lease, Timestamp, Version, WorkerId,
};
use rusqlite::{params, CachedStatement, Connection, Statement, ToSql};

use crate::codec::{
    corrupt, deps_json, int, job_from_row, kind_code, meta_json, transition_from_row, ts, ts_back, HISTORY_COLS,
    JOB_COLS, JOB_NCOLS,
};
use crate::error::{map_err, BACKEND};
use crate::SqliteStore;

/// The due jobs of one kind, earliest due first, read through the partial index `jobs_due`.
/// The row id comes last so that [`job_from_row`] reads the job columns first.
///
/// A bound `LIMIT ?` makes SQLite re-plan the statement at every execution (it plans with
/// the value); `LIMIT CAST(? AS INTEGER)` keeps one plan. Measured: the claim re-prepared on
/// every call and cost a third more without it.
fn claim_select() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {JOB_COLS}, rowid FROM jobs WHERE chain = ?1 AND kind = ?2 AND due_at <= ?3 \
             ORDER BY due_at, first_block LIMIT CAST(?4 AS INTEGER)"
        )
    })
}

/// Claims one row read by [`claim_select`] in the same transaction; the new status and
/// attempts come from the state machine ([`claimed_status`], [`claim_counts_attempt`]).
/// `claimed_from` keeps the status the claim found.
///
/// One single-row write per job rather than one `UPDATE … WHERE rowid IN (…) RETURNING`:
/// SQLite runs a multi-row update under a statement journal and buffers `RETURNING` rows in a
/// temporary table, which together cost more than the separate writes (measured).
const CLAIM_ROW: &str = "UPDATE jobs SET claimed_from = status, status = ?1, attempts = attempts + ?2, \
     epoch = epoch + 1, version = version + 1, lease_owner = ?3, lease_until = ?4, updated_at = ?5 WHERE rowid = ?6";

const INSERT_JOB: &str = "INSERT INTO jobs (id, chain, kind, first_block, last_block, status, version, epoch, \
     lease_owner, lease_until, attempts, max_attempts, next_run_at, verify_deadline, deps, meta, last_error, \
     created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
     ON CONFLICT (chain, first_block, last_block, kind) DO NOTHING";

const UPDATE_JOB: &str = "UPDATE jobs SET status = ?1, version = version + 1, lease_owner = ?2, lease_until = ?3, \
     attempts = ?4, max_attempts = ?5, next_run_at = ?6, verify_deadline = ?7, deps = ?8, meta = ?9, \
     last_error = ?10, created_at = ?11, updated_at = ?12 \
     WHERE id = ?13 AND version = ?14 AND epoch = ?15 AND chain = ?16 AND kind = ?17 AND first_block = ?18 \
     AND last_block = ?19";

/// The jobs a wake target matches (contract rule 5), and the write that wakes one of them;
/// both run in the writer's transaction.
const WAKE_FIND: &str = "SELECT id, epoch, last_block, rowid FROM jobs WHERE chain = ?2 AND kind = ?3 \
     AND status = 'created' AND first_block = ?4 AND next_run_at > ?1";
const WAKE_SET: &str = "UPDATE jobs SET next_run_at = ?1 WHERE rowid = ?2";

const INSERT_HISTORY: &str =
    "INSERT INTO job_history (job_id, version, at, from_status, to_status, reason, attempt, actor, \
     epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

fn select_by_key() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!("SELECT {JOB_COLS} FROM jobs WHERE chain = ?1 AND first_block = ?2 AND last_block = ?3 AND kind = ?4")
    })
}

fn select_by_id() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))
}

fn job_exists(conn: &Connection, id: &str, path: &Path) -> Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)))
        .map_err(|e| map_err(e, path))
}

fn get_by_key(conn: &Connection, key: &JobKey, path: &Path) -> Result<Option<Job>> {
    let m = |e| map_err(e, path);
    let mut stmt = conn.prepare_cached(select_by_key()).map_err(m)?;
    let mut rows = stmt
        .query(params![
            key.chain.as_str(),
            int(key.range.first(), "block")?,
            int(key.range.last(), "block")?,
            kind_code(key.kind)
        ])
        .map_err(m)?;
    match rows.next().map_err(m)? {
        Some(row) => Ok(Some(job_from_row(row, path)?)),
        None => Ok(None),
    }
}

/// Appends `t` to the history of job `id`, as written by the write that gave it `version`;
/// `stmt` is [`INSERT_HISTORY`], prepared once per request.
fn insert_history(stmt: &mut Statement<'_>, id: &str, version: Version, t: &Transition, path: &Path) -> Result<()> {
    let epoch = int(t.epoch.0, "epoch")?;
    stmt.execute(params![
        id,
        int(version.0, "version").unwrap_or(i64::MAX),
        ts(t.at),
        t.from.as_str(),
        t.to.as_str(),
        t.reason,
        i64::from(t.attempt),
        t.actor.as_ref().map(|a| a.0.as_str()),
        epoch,
    ])
    .map(|_| ())
    .map_err(|e| map_err(e, path))
}

fn create_in(conn: &Connection, jobs: Vec<NewJob>, now: Timestamp, path: &Path) -> Result<Vec<Created>> {
    let m = |e| map_err(e, path);
    let mut out = Vec::with_capacity(jobs.len());
    let mut insert = conn.prepare_cached(INSERT_JOB).map_err(m)?;
    for nj in jobs {
        let job = nj.into_job(now);
        let id = job.id.to_string();
        let n = insert
            .execute(params![
                id,
                job.key.chain.as_str(),
                kind_code(job.key.kind),
                int(job.key.range.first(), "block")?,
                int(job.key.range.last(), "block")?,
                job.status.as_str(),
                int(job.version.0, "version")?,
                int(job.epoch.0, "epoch")?,
                Option::<&str>::None,
                Option::<i64>::None,
                i64::from(job.attempts),
                i64::from(job.max_attempts),
                ts(job.next_run_at),
                job.verify_deadline.map(ts),
                deps_json(&job.deps)?,
                meta_json(&job.meta)?,
                job.last_error,
                ts(job.created_at),
                ts(job.updated_at),
            ])
            .map_err(|e| match map_err(e, path) {
                // The key is handled by ON CONFLICT; a unique violation is the id.
                Error::AlreadyExists { .. } => Error::already_exists(format!("job id {}", job.id)),
                other => other,
            })?;
        if n == 1 {
            out.push(Created::New(job));
        } else {
            let existing = get_by_key(conn, &job.key, path)?
                .ok_or_else(|| Error::internal(format!("job {} vanished during create", job.key)))?;
            out.push(Created::Existing(existing));
        }
    }
    Ok(out)
}

/// Stores one exported record verbatim (contract rule 9). Its transitions take the versions
/// just below the job's own, in order, so later writes append after them.
fn import_one(conn: &Connection, r: &JobRecord, path: &Path) -> Result<bool> {
    let m = |e| map_err(e, path);
    let job = &r.job;
    let id = job.id.to_string();
    let stored: Option<Job> = {
        let mut stmt = conn.prepare_cached(select_by_id()).map_err(m)?;
        let mut rows = stmt.query([&id]).map_err(m)?;
        match rows.next().map_err(m)? {
            Some(row) => Some(job_from_row(row, path)?),
            None => None,
        }
    };
    if let Some(cur) = stored {
        if cur.key != job.key {
            return Err(Error::already_exists(format!(
                "job id {} (stored with key {}, imported with key {})",
                job.id, cur.key, job.key
            )));
        }
        return Ok(false);
    }
    let n = conn
        .prepare_cached(INSERT_JOB)
        .map_err(m)?
        .execute(params![
            id,
            job.key.chain.as_str(),
            kind_code(job.key.kind),
            int(job.key.range.first(), "block")?,
            int(job.key.range.last(), "block")?,
            job.status.as_str(),
            int(job.version.0, "version")?,
            int(job.epoch.0, "epoch")?,
            job.lease.as_ref().map(|l| l.owner.0.as_str()),
            job.lease.as_ref().map(|l| ts(l.until)),
            i64::from(job.attempts),
            i64::from(job.max_attempts),
            ts(job.next_run_at),
            job.verify_deadline.map(ts),
            deps_json(&job.deps)?,
            meta_json(&job.meta)?,
            job.last_error,
            ts(job.created_at),
            ts(job.updated_at),
        ])
        .map_err(m)?;
    if n == 0 {
        let holder = get_by_key(conn, &job.key, path)?.map(|j| j.id.to_string()).unwrap_or_default();
        return Err(Error::already_exists(format!(
            "job key {} (held by job {holder}, imported as job {})",
            job.key, job.id
        )));
    }
    let first = job.version.0 + 1 - r.history.len() as u64;
    let mut hist = conn.prepare_cached(INSERT_HISTORY).map_err(m)?;
    for (i, t) in r.history.iter().enumerate() {
        insert_history(&mut hist, &id, Version(first + i as u64), t, path)?;
    }
    Ok(true)
}

/// The statements of [`update_one`], prepared once per request.
struct UpdateStmts<'c> {
    update: CachedStatement<'c>,
    history: CachedStatement<'c>,
}

impl<'c> UpdateStmts<'c> {
    fn prepare(conn: &'c Connection, path: &Path) -> Result<Self> {
        let m = |e| map_err(e, path);
        Ok(UpdateStmts {
            update: conn.prepare_cached(UPDATE_JOB).map_err(m)?,
            history: conn.prepare_cached(INSERT_HISTORY).map_err(m)?,
        })
    }
}

fn update_one(conn: &Connection, st: &mut UpdateStmts<'_>, w: JobWrite, path: &Path) -> Result<Job> {
    let JobWrite { mut job, transition, now } = w;
    let id = job.id.to_string();
    // Everything that can fail on the input is computed before anything is written.
    let (deps, meta) = (deps_json(&job.deps)?, meta_json(&job.meta)?);
    let (version, epoch) = (int(job.version.0, "version")?, int(job.epoch.0, "epoch")?);
    let (first, last) = (int(job.key.range.first(), "block")?, int(job.key.range.last(), "block")?);
    if let Some(t) = &transition {
        int(t.epoch.0, "transition epoch")?;
    }
    let n = st
        .update
        .execute(params![
            job.status.as_str(),
            job.lease.as_ref().map(|l| l.owner.0.as_str()),
            job.lease.as_ref().map(|l| ts(l.until)),
            i64::from(job.attempts),
            i64::from(job.max_attempts),
            ts(job.next_run_at),
            job.verify_deadline.map(ts),
            deps,
            meta,
            job.last_error,
            ts(job.created_at),
            ts(now),
            id,
            version,
            epoch,
            job.key.chain.as_str(),
            kind_code(job.key.kind),
            first,
            last,
        ])
        .map_err(|e| map_err(e, path))?;
    if n == 0 {
        return Err(if job_exists(conn, &id, path)? {
            Error::conflict(format!("job {id}"))
        } else {
            Error::not_found(format!("job {id}"))
        });
    }
    job.version = Version(job.version.0 + 1);
    if let Some(t) = &transition {
        insert_history(&mut st.history, &id, job.version, t, path)?;
    }
    job.updated_at = now;
    Ok(job)
}

fn claim_in(conn: &Connection, req: &ClaimRequest, path: &Path) -> Result<Vec<Job>> {
    let m = |e| map_err(e, path);
    let mut out = Vec::new();
    let mut select = conn.prepare_cached(claim_select()).map_err(m)?;
    let mut claim = conn.prepare_cached(CLAIM_ROW).map_err(m)?;
    let mut hist = conn.prepare_cached(INSERT_HISTORY).map_err(m)?;
    let (now, until) = (ts(req.now), ts(req.lease_until));
    let mut due = Vec::new();
    for (kind, n) in &req.wants {
        if *n == 0 {
            continue;
        }
        due.clear();
        let mut rows = select.query(params![req.chain.as_str(), kind_code(*kind), now, i64::from(*n)]).map_err(m)?;
        while let Some(row) = rows.next().map_err(m)? {
            let rowid: i64 = row.get(JOB_NCOLS).map_err(m)?;
            due.push((rowid, job_from_row(row, path)?));
        }
        drop(rows);
        let start = out.len();
        for (rowid, mut job) in due.drain(..) {
            let from = job.status;
            // Only claimable statuses are due; anything else keeps its status, as a claim of
            // it would under the state machine's "no transition".
            let to = claimed_status(from).unwrap_or(from);
            let counted = u32::from(claim_counts_attempt(from));
            claim.execute(params![to.as_str(), counted, req.owner.0, until, now, rowid]).map_err(m)?;
            job.status = to;
            job.attempts += counted;
            job.epoch = Epoch(job.epoch.0 + 1);
            job.version = Version(job.version.0 + 1);
            job.lease = Some(Lease { owner: req.owner.clone(), until: ts_back(until, path)? });
            job.updated_at = ts_back(now, path)?;
            if from != to {
                let t = Transition {
                    at: req.now,
                    from,
                    to,
                    reason: "claimed".into(),
                    attempt: job.attempts,
                    actor: Some(req.owner.clone()),
                    epoch: job.epoch,
                };
                insert_history(&mut hist, &job.id.to_string(), job.version, &t, path)?;
            }
            out.push(job);
        }
        // Hand jobs out in the order they were due.
        out[start..].sort_by_key(|j| (j.next_run_at, j.key.range.first(), j.key.range.last()));
    }
    Ok(out)
}

/// The SQL of a listing and its arguments.
fn list_query(q: &JobQuery) -> Result<(String, Vec<Box<dyn ToSql>>)> {
    // With both kinds and statuses given (the engine's "lowest unsettled" query), the matching
    // jobs are few and found by seeks into `jobs_status`; left alone, the planner would walk
    // `jobs_key` in order through every finished job of the chain.
    let hint = if !q.kinds.is_empty() && !q.statuses.is_empty() { " INDEXED BY jobs_status" } else { "" };
    let mut sql = format!("SELECT {JOB_COLS} FROM jobs{hint} WHERE chain = ?");
    let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(q.chain.as_str().to_owned())];
    if !q.kinds.is_empty() {
        sql.push_str(&format!(" AND kind IN ({})", vec!["?"; q.kinds.len()].join(", ")));
        args.extend(q.kinds.iter().map(|k| Box::new(kind_code(*k)) as Box<dyn ToSql>));
    }
    if !q.statuses.is_empty() {
        sql.push_str(&format!(" AND status IN ({})", vec!["?"; q.statuses.len()].join(", ")));
        args.extend(q.statuses.iter().map(|s| Box::new(s.as_str()) as Box<dyn ToSql>));
    }
    if let Some((from, to)) = q.first_block {
        sql.push_str(" AND first_block BETWEEN ? AND ?");
        args.push(Box::new(int(from, "first_block")?));
        args.push(Box::new(i64::try_from(to).unwrap_or(i64::MAX)));
    }
    let (cmp, dir) = match q.order {
        Order::Ascending => (">", "ASC"),
        Order::Descending => ("<", "DESC"),
    };
    if let Some(after) = &q.after {
        sql.push_str(&format!(" AND (first_block, last_block, kind) {cmp} (?, ?, ?)"));
        args.push(Box::new(int(after.range.first(), "after")?));
        args.push(Box::new(int(after.range.last(), "after")?));
        args.push(Box::new(kind_code(after.kind)));
    }
    sql.push_str(&format!(" ORDER BY first_block {dir}, last_block {dir}, kind {dir} LIMIT CAST(? AS INTEGER)"));
    args.push(Box::new(i64::from(q.limit.min(10_000))));
    Ok((sql, args))
}

#[cfg(test)]
fn list_sql(q: &JobQuery) -> (String, usize) {
    let (sql, args) = list_query(q).unwrap();
    (sql, args.len())
}

fn list_in(conn: &Connection, q: &JobQuery, path: &Path) -> Result<Vec<Job>> {
    let m = |e| map_err(e, path);
    let (sql, args) = list_query(q)?;
    let mut stmt = conn.prepare_cached(&sql).map_err(m)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter())).map_err(m)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(m)? {
        out.push(job_from_row(row, path)?);
    }
    Ok(out)
}

#[async_trait]
impl Database for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        self.conns.write(|conn, sh| crate::schema::migrate(conn, &sh.path)).await
    }

    async fn create_jobs(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Created>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.conns.write(move |conn, sh| create_in(conn, jobs, now, &sh.path)).await
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.conns
            .read(move |conn, sh| {
                let path = &sh.path;
                let m = |e| map_err(e, path);
                let mut stmt = conn.prepare_cached(select_by_id()).map_err(m)?;
                let mut rows = stmt.query([id.to_string()]).map_err(m)?;
                match rows.next().map_err(m)? {
                    Some(row) => job_from_row(row, path),
                    None => Err(Error::not_found(format!("job {id}"))),
                }
            })
            .await
    }

    async fn get_job_by_key(&self, key: &JobKey) -> Result<Option<Job>> {
        let key = key.clone();
        self.conns.read(move |conn, sh| get_by_key(conn, &key, &sh.path)).await
    }

    async fn update_jobs(&self, writes: &[JobWrite]) -> Result<Vec<Result<Job>>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let writes = writes.to_vec();
        self.conns
            .write(move |conn, sh| {
                let mut out = Vec::with_capacity(writes.len());
                let mut st = UpdateStmts::prepare(conn, &sh.path)?;
                for w in writes {
                    match update_one(conn, &mut st, w, &sh.path) {
                        Ok(j) => out.push(Ok(j)),
                        // Per-item outcomes, decided before the item wrote anything.
                        Err(
                            e @ (Error::VersionConflict { .. } | Error::NotFound { .. } | Error::InvalidInput { .. }),
                        ) => out.push(Err(e)),
                        // A failing backend fails the batch; the writer undoes all of it.
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn claim_jobs(&self, req: &ClaimRequest) -> Result<Vec<Job>> {
        if req.wants.iter().all(|(_, n)| *n == 0) {
            return Ok(Vec::new());
        }
        let req = req.clone();
        self.conns.write(move |conn, sh| claim_in(conn, &req, &sh.path)).await
    }

    async fn wake_jobs(
        &self,
        chain: &ChainId,
        targets: &[(JobKind, BlockNumber)],
        now: Timestamp,
    ) -> Result<Vec<(JobId, Epoch)>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let chain = chain.clone();
        let targets = targets.to_vec();
        self.conns
            .write(move |conn, sh| {
                let path = &sh.path;
                let m = |e| map_err(e, path);
                // Look first, write only what matches: most targets match nothing (the
                // dependent is not created yet, or is already running), and a read costs a
                // fraction of an `UPDATE … RETURNING`, which sets up a temporary table even
                // when it returns no row.
                let mut find = conn.prepare_cached(WAKE_FIND).map_err(m)?;
                let mut set = conn.prepare_cached(WAKE_SET).map_err(m)?;
                let mut woken = Vec::new();
                let mut these = Vec::new();
                for (kind, first) in targets {
                    these.clear();
                    let mut rows = find
                        .query(params![ts(now), chain.as_str(), kind_code(kind), int(first, "block")?])
                        .map_err(m)?;
                    while let Some(row) = rows.next().map_err(m)? {
                        let id: String = row.get(0).map_err(m)?;
                        let id = JobId::parse(&id).map_err(|_| corrupt(path, format!("job id {id:?}")))?;
                        let epoch: i64 = row.get(1).map_err(m)?;
                        let last: i64 = row.get(2).map_err(m)?;
                        let rowid: i64 = row.get(3).map_err(m)?;
                        these.push((last, id, Epoch(epoch.max(0) as u64), rowid));
                    }
                    drop(rows);
                    for (_, _, _, rowid) in &these {
                        set.execute(params![ts(now), rowid]).map_err(m)?;
                    }
                    these.sort();
                    woken.extend(these.iter().map(|(_, id, e, _)| (*id, *e)));
                }
                Ok(woken)
            })
            .await
    }

    async fn extend_lease(&self, id: JobId, epoch: Epoch, until: Timestamp) -> Result<()> {
        self.conns
            .write(move |conn, sh| {
                let path = &sh.path;
                let sid = id.to_string();
                let n = conn
                    .prepare_cached(
                        "UPDATE jobs SET lease_until = ?1 WHERE id = ?2 AND epoch = ?3 AND lease_owner IS NOT NULL",
                    )
                    .and_then(|mut s| s.execute(params![ts(until), sid, i64::try_from(epoch.0).unwrap_or(-1)]))
                    .map_err(|e| map_err(e, path))?;
                if n == 1 {
                    Ok(())
                } else if job_exists(conn, &sid, path)? {
                    Err(Error::conflict(format!("lease of job {id}")))
                } else {
                    Err(Error::not_found(format!("job {id}")))
                }
            })
            .await
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let q = query.clone();
        self.conns.read(move |conn, sh| list_in(conn, &q, &sh.path)).await
    }

    async fn count_jobs(&self, chain: &ChainId) -> Result<Vec<StatusCount>> {
        let chain = chain.clone();
        self.conns
            .read(move |conn, sh| {
                let path = &sh.path;
                let m = |e| map_err(e, path);
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT kind, status, COUNT(*) FROM jobs WHERE chain = ?1 GROUP BY kind, status ORDER BY kind, status",
                    )
                    .map_err(m)?;
                let mut rows = stmt.query([chain.as_str()]).map_err(m)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(m)? {
                    let code: i64 = row.get(0).map_err(m)?;
                    let kind = JobKind::ALL
                        .into_iter()
                        .find(|k| kind_code(*k) == code)
                        .ok_or_else(|| corrupt(path, format!("job kind code {code}")))?;
                    let status: String = row.get(1).map_err(m)?;
                    let status = JobStatus::parse(&status).map_err(|_| corrupt(path, format!("status {status:?}")))?;
                    let count: i64 = row.get(2).map_err(m)?;
                    out.push(StatusCount { kind, status, count: count.max(0) as u64 });
                }
                out.sort_by_key(|c| (c.kind, c.status));
                Ok(out)
            })
            .await
    }

    async fn import_jobs(&self, records: &[JobRecord]) -> Result<Vec<bool>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        for r in records {
            r.validate()?;
        }
        let records = records.to_vec();
        self.conns
            .write(move |conn, sh| {
                let mut out = Vec::with_capacity(records.len());
                for r in &records {
                    out.push(import_one(conn, r, &sh.path)?);
                }
                Ok(out)
            })
            .await
    }

    async fn history(&self, id: JobId) -> Result<Vec<Transition>> {
        self.conns
            .read(move |conn, sh| {
                let path = &sh.path;
                let m = |e| map_err(e, path);
                let sid = id.to_string();
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {HISTORY_COLS} FROM job_history WHERE job_id = ?1 ORDER BY version"
                    ))
                    .map_err(m)?;
                let mut rows = stmt.query([&sid]).map_err(m)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(m)? {
                    out.push(transition_from_row(row, path)?);
                }
                if out.is_empty() && !job_exists(conn, &sid, path)? {
                    return Err(Error::not_found(format!("job {id}")));
                }
                Ok(out)
            })
            .await
    }

    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()> {
        let w = worker.clone();
        self.conns
            .write(move |conn, sh| {
                conn.prepare_cached(
                    "INSERT INTO workers (id, mode, host, version, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, host = excluded.host, \
                     version = excluded.version, heartbeat_at = excluded.heartbeat_at",
                )
                .and_then(|mut s| {
                    s.execute(params![w.id.0, w.mode, w.host, w.version, ts(w.started_at), ts(w.heartbeat_at)])
                })
                .map(|_| ())
                .map_err(|e| map_err(e, &sh.path))
            })
            .await
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>> {
        self.conns
            .read(move |conn, sh| {
                let path = &sh.path;
                let m = |e| map_err(e, path);
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, mode, host, version, started_at, heartbeat_at FROM workers \
                         WHERE heartbeat_at >= ?1 ORDER BY id",
                    )
                    .map_err(m)?;
                let mut rows = stmt.query([ts(since)]).map_err(m)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(m)? {
                    out.push(WorkerInfo {
                        id: WorkerId(row.get(0).map_err(m)?),
                        mode: row.get(1).map_err(m)?,
                        host: row.get(2).map_err(m)?,
                        version: row.get(3).map_err(m)?,
                        started_at: ts_back(row.get(4).map_err(m)?, path)?,
                        heartbeat_at: ts_back(row.get(5).map_err(m)?, path)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn try_lead(&self, name: &str, owner: &WorkerId, now: Timestamp, until: Timestamp) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.clone());
        self.conns
            .write(move |conn, sh| {
                let path = &sh.path;
                let n = conn
                    .prepare_cached(
                        "INSERT INTO leaders (name, owner, until) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                         WHERE leaders.owner = excluded.owner OR leaders.until <= ?4",
                    )
                    .and_then(|mut s| s.execute(params![name, owner.0, ts(until), ts(now)]))
                    .map_err(|e| map_err(e, path))?;
                Ok(n == 1)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_reads_due_jobs_in_due_order() {
        let sql = claim_select();
        assert!(sql.contains("due_at <= ?3") && sql.contains("ORDER BY due_at, first_block"), "{sql}");
        assert!(sql.contains(&format!("{JOB_COLS}, rowid")), "{sql}");
    }
}

/// Every engine query is an index lookup, never a scan of `jobs`.
#[cfg(test)]
mod plans {
    use super::*;
    use crate::config::SqliteConfig;
    use crate::conn::Conns;

    fn plan(conn: &Connection, sql: &str, n: usize) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let args: Vec<i64> = vec![1; n];
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join(" | ")
    }

    #[test]
    fn engine_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conns = Conns::open(SqliteConfig::new(dir.path().join("p.db"))).unwrap();
        let conn = Connection::open(conns.path()).unwrap();
        let q = |chain: &str| JobQuery::all(ChainId::new(chain).unwrap(), 10);
        let mut st = q("c");
        st.kinds = vec![JobKind::StateTransition];
        st.statuses = JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Completed).collect();
        let cases = [
            ("claim", claim_select().to_string(), 4),
            ("claim row", CLAIM_ROW.to_string(), 6),
            ("by key", select_by_key().to_string(), 4),
            ("by id", select_by_id().to_string(), 1),
            ("update", UPDATE_JOB.to_string(), 19),
            ("wake", WAKE_FIND.to_string(), 4),
            ("wake row", WAKE_SET.to_string(), 2),
            ("count", "SELECT kind, status, COUNT(*) FROM jobs WHERE chain = ?1 GROUP BY kind, status".into(), 1),
            ("history", format!("SELECT {HISTORY_COLS} FROM job_history WHERE job_id = ?1 ORDER BY version"), 1),
        ];
        for (name, sql, n) in cases {
            let p = plan(&conn, &sql, n);
            assert!(!p.contains("SCAN jobs") || p.contains("INDEX"), "{name}: {p}");
            assert!(!p.contains("SCAN job_history"), "{name}: {p}");
            if name == "claim" {
                assert!(p.contains("jobs_due"), "{name}: {p}");
            }
            println!("{name}: {p}");
        }
        // Listings: the engine's "last SnosRun" and "lowest unsettled" queries.
        let mut last = q("c");
        last.kinds = vec![JobKind::SnosRun];
        last.order = Order::Descending;
        for (name, query) in [("list all", q("c")), ("last snos", last), ("lowest unsettled", st)] {
            // Build the SQL as list_in does, by running it on an empty file.
            assert!(list_in(&conn, &query, conns.path()).unwrap().is_empty());
            let (sql, n) = list_sql(&query);
            let p = plan(&conn, &sql, n);
            assert!(p.contains("INDEX"), "{name}: {p}");
            println!("{name}: {p}");
        }
    }
}
