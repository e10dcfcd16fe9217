//! The [`Database`] implementation: one statement (one round trip) per call wherever the
//! contract allows it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use orch_core::db::Database;
use orch_core::error::{Error, Result};
use orch_core::job::{
    ClaimRequest, Created, Job, JobQuery, JobRecord, JobWrite, NewJob, Order, StatusCount, Transition, WorkerInfo,
};
use orch_core::state::{claim_counts_attempt, claimed_status};
use orch_core::types::{BlockNumber, ChainId, Epoch, JobId, JobKey, JobKind, JobStatus, Timestamp, Version, WorkerId};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, AssertSqlSafe, Row};

use crate::codec::{
    deps_json, history_from_lines, history_lines, int, job_cols, job_from_row, kind_code, kind_from_code, meta_json,
    status, ts, ts_back, uint,
};
use crate::error::{corrupt, map_err, BACKEND};
use crate::PostgresStore;

/// The claim: one statement that picks due jobs per wanted kind with `FOR UPDATE SKIP LOCKED`
/// (concurrent claimers pass over each other's rows instead of waiting), writes the lease,
/// epoch, version, status and attempts, and appends the `claimed` entry to the history of
/// each job whose status changes (a line of text: `json_build_object` writes JSON text
/// directly, with its strings escaped).
///
/// The status mapping and the attempt rule are generated from [`claimed_status`] and
/// [`claim_counts_attempt`], so they cannot drift from the state machine. `SET` expressions
/// see the row as it was, so the history entry repeats the new status, attempts and epoch.
/// The update finds its rows by their physical address (`ctid = ANY(ARRAY(…))`, a TID scan):
/// the rows are locked by this statement, so nobody can move them in between, and no index
/// is searched a second time.
fn claim_sql() -> Arc<str> {
    static SQL: OnceLock<Arc<str>> = OnceLock::new();
    SQL.get_or_init(|| {
        let quote = |s: JobStatus| format!("'{}'", s.as_str());
        let cases: String = JobStatus::ALL
            .into_iter()
            .filter_map(|s| claimed_status(s).map(|to| format!(" WHEN {} THEN {}", quote(s), quote(to))))
            .collect();
        let counting: Vec<String> =
            JobStatus::ALL.into_iter().filter(|s| claim_counts_attempt(*s)).map(quote).collect();
        let counting =
            if counting.is_empty() { "false".to_string() } else { format!("j.status IN ({})", counting.join(", ")) };
        let to = format!("CASE j.status{cases} ELSE j.status END");
        let attempts = format!("j.attempts + CASE WHEN {counting} THEN 1 ELSE 0 END");
        format!(
            "WITH picked AS ( \
               SELECT p.ctid AS tid \
               FROM unnest($5::smallint[], $6::bigint[]) AS w(kind, n) \
               CROSS JOIN LATERAL ( \
                 SELECT ctid FROM jobs \
                 WHERE chain = $4 AND kind = w.kind AND due_at <= $3 \
                 ORDER BY due_at, first_block LIMIT w.n \
                 FOR UPDATE SKIP LOCKED) p \
             ), claimed AS ( \
               UPDATE jobs j SET status = {to}, attempts = {attempts}, \
                 epoch = j.epoch + 1, version = j.version + 1, \
                 lease_owner = $1, lease_until = $2, updated_at = $3, \
                 history = CASE WHEN {to} = j.status THEN j.history \
                   ELSE j.history || json_build_object('at', $3::bigint, \
                     'from', j.status, 'to', {to}, 'reason', 'claimed', 'attempt', {attempts}, \
                     'actor', $1::text, 'epoch', j.epoch + 1)::text || E'\\n' END \
               WHERE j.ctid = ANY (ARRAY(SELECT tid FROM picked)) \
               RETURNING {cols} \
             ) \
             SELECT * FROM claimed c \
             ORDER BY array_position($5::smallint[], c.kind), c.next_run_at, c.first_block, c.last_block",
            cols = job_cols!("j.")
        )
        .into()
    })
    .clone()
}

/// The part [`CREATE_SQL`] and [`CREATE_NEW_SQL`] share: the batch as rows, and the insert's
/// columns and values up to its `FROM`.
macro_rules! create_insert_head {
    () => {
        concat!(
            "WITH input AS ( ",
            "SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[], ",
            "$7::bigint[], $8::text[], $9::text[]) WITH ORDINALITY ",
            "AS t(id, chain, kind, first_block, last_block, max_attempts, next_run_at, deps, meta, ord) ",
            "), ins AS ( ",
            "INSERT INTO jobs (id, chain, kind, first_block, last_block, status, version, epoch, attempts, ",
            "max_attempts, next_run_at, deps, meta, created_at, updated_at) ",
            "SELECT id::uuid, chain, kind, first_block, last_block, 'created', 1, 0, 0, max_attempts, next_run_at, ",
        )
    };
}

/// Create-if-absent for a whole batch: inserts in input order, skips taken keys, and reports
/// the input positions it inserted.
const CREATE_SQL: &str = concat!(
    create_insert_head!(),
    "deps::jsonb, meta::jsonb, $10, $10 FROM input ORDER BY ord ",
    "ON CONFLICT (chain, first_block, last_block, kind) DO NOTHING ",
    "RETURNING id ",
    ") SELECT input.ord FROM input JOIN ins ON ins.id = input.id::uuid"
);

/// [`CREATE_SQL`] for the usual batch, whose keys are all free: keys already stored are left
/// out by an anti-join, and the rest is a plain insert, which costs PostgreSQL less than a
/// speculative (`ON CONFLICT`) one. A key that is taken after all (committed concurrently, or
/// twice in the batch) fails the whole statement with a unique violation on `jobs_key`, and
/// the caller runs [`CREATE_SQL`] instead. `OFFSET 0` keeps the `NOT EXISTS` a per-row probe
/// of `jobs_key`: as an anti-join, a generic plan may hash the whole table instead.
const CREATE_NEW_SQL: &str = concat!(
    create_insert_head!(),
    "deps::jsonb, meta::jsonb, $10, $10 FROM input i WHERE NOT EXISTS (SELECT 1 FROM jobs x ",
    "WHERE x.chain = i.chain AND x.first_block = i.first_block AND x.last_block = i.last_block ",
    "AND x.kind = i.kind OFFSET 0) ORDER BY ord ",
    "RETURNING id ",
    ") SELECT input.ord FROM input JOIN ins ON ins.id = input.id::uuid"
);

/// The stored jobs of a list of keys (a separate statement, so that it sees rows committed by
/// concurrent creators after the insert's snapshot).
const BY_KEYS_SQL: &str = concat!(
    "SELECT ",
    job_cols!(""),
    " FROM jobs WHERE (chain, first_block, last_block, kind) IN ",
    "(SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::smallint[]))"
);

const BY_KEY_SQL: &str = concat!(
    "SELECT ",
    job_cols!(""),
    " FROM jobs WHERE chain = $1 AND first_block = $2 AND last_block = $3 AND kind = $4"
);

const BY_ID_SQL: &str = concat!("SELECT ", job_cols!(""), " FROM jobs WHERE id = $1::uuid");

/// A batch of conditional writes in one statement. Each input row (`w`, numbered by `ord`)
/// updates its job iff version, epoch and key still match, appending its transition (`entry`,
/// a history line, or NULL) to the job's history; the result says, per input row in
/// order, whether it applied and whether the job exists. `id = ANY($1)` gives the planner a
/// primary-key path.
const UPDATE_SQL: &str = concat!(
    "WITH w AS ( ",
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], ",
    "$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::text[], ",
    "$14::bigint[], $15::bigint[], $16::text[], $17::smallint[], $18::bigint[], $19::bigint[], $20::text[]) ",
    "WITH ORDINALITY ",
    "AS w(id, version, epoch, status, lease_owner, lease_until, attempts, max_attempts, next_run_at, ",
    "verify_deadline, deps, meta, last_error, created_at, now, chain, kind, first_block, last_block, entry, ord) ",
    "), done AS ( ",
    "UPDATE jobs j SET status = w.status, version = j.version + 1, lease_owner = w.lease_owner, ",
    "lease_until = w.lease_until, attempts = w.attempts, max_attempts = w.max_attempts, ",
    "next_run_at = w.next_run_at, verify_deadline = w.verify_deadline, deps = w.deps::jsonb, ",
    "meta = w.meta::jsonb, last_error = w.last_error, created_at = w.created_at, updated_at = w.now, ",
    "history = CASE WHEN w.entry IS NULL THEN j.history ELSE j.history || w.entry END ",
    "FROM w WHERE j.id = ANY ($1::text[]::uuid[]) AND j.id = w.id::uuid AND j.version = w.version ",
    "AND j.epoch = w.epoch AND j.chain = w.chain AND j.kind = w.kind AND j.first_block = w.first_block ",
    "AND j.last_block = w.last_block ",
    "RETURNING w.ord ",
    ") SELECT w.ord, d.ord IS NOT NULL, ",
    "d.ord IS NOT NULL OR EXISTS (SELECT 1 FROM jobs x WHERE x.id = w.id::uuid) ",
    "FROM w LEFT JOIN done d ON d.ord = w.ord ORDER BY w.ord"
);

/// Wakes the waiting jobs of a list of `(kind, first block)`: per target, a lookup in
/// `jobs_key` (a `LATERAL` subquery that `OFFSET 0` keeps from being merged into a join, so the
/// plan is a probe per target however few rows the planner expects — a generic plan made while
/// `jobs` was empty would otherwise read the chain's whole key range and match every target
/// against it), then the update of the rows found, by address. A row changed in between (a
/// concurrent claim) no longer matches its address and is skipped: a wake is only a hint.
const WAKE_SQL: &str = concat!(
    "UPDATE jobs j SET next_run_at = $1 ",
    "FROM (SELECT x.tid, t.ord FROM unnest($3::smallint[], $4::bigint[]) WITH ORDINALITY AS t(kind, first_block, ord) ",
    "CROSS JOIN LATERAL (SELECT ctid AS tid FROM jobs WHERE chain = $2 AND first_block = t.first_block ",
    "AND kind = t.kind AND status = 'created' AND next_run_at > $1 OFFSET 0) x) s ",
    "WHERE j.ctid = s.tid AND j.status = 'created' AND j.next_run_at > $1 ",
    "RETURNING j.id::text, j.epoch, s.ord, j.last_block"
);

const EXTEND_SQL: &str = concat!(
    "WITH u AS (UPDATE jobs SET lease_until = $1 WHERE id = $2::uuid AND epoch = $3 ",
    "AND lease_owner IS NOT NULL RETURNING 1) ",
    "SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM jobs WHERE id = $2::uuid)"
);

const COUNT_SQL: &str =
    "SELECT kind, status, COUNT(*) FROM jobs WHERE chain = $1 GROUP BY kind, status ORDER BY kind, status";

const HISTORY_SQL: &str = "SELECT history FROM jobs WHERE id = $1::uuid";

/// One exported job with its history, verbatim; a taken key inserts nothing.
const IMPORT_SQL: &str = concat!(
    "INSERT INTO jobs (id, chain, kind, first_block, last_block, status, version, epoch, lease_owner, ",
    "lease_until, attempts, max_attempts, next_run_at, verify_deadline, deps, meta, last_error, created_at, ",
    "updated_at, history) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::jsonb, ",
    "$16::jsonb, $17, $18, $19, $20) ON CONFLICT (chain, first_block, last_block, kind) DO NOTHING"
);

const HEARTBEAT_SQL: &str = concat!(
    "INSERT INTO workers (id, mode, host, version, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6) ",
    "ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, host = excluded.host, version = excluded.version, ",
    "heartbeat_at = excluded.heartbeat_at"
);

const WORKERS_SQL: &str = "SELECT id, mode, host, version, started_at, heartbeat_at FROM workers \
     WHERE heartbeat_at >= $1 ORDER BY id";

const LEAD_SQL: &str = concat!(
    "INSERT INTO leaders (name, owner, lease_until) VALUES ($1, $2, $3) ",
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until ",
    "WHERE leaders.owner = excluded.owner OR leaders.lease_until <= $4"
);

/// The statuses of jobs that wait for an operator: the partial index `jobs_stuck` holds them.
const STUCK: [JobStatus; 3] = [JobStatus::Failed, JobStatus::VerificationTimeout, JobStatus::Cancelled];

/// `jobs_stuck`'s predicate, as the schema spells it.
pub(crate) fn stuck_clause() -> String {
    let names: Vec<String> = STUCK.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("status IN ({})", names.join(", "))
}

/// The SQL of a listing and its arguments. Filters are bound as arrays (`= ANY`), so there
/// are at most a few dozen distinct statements, each prepared once per connection.
fn list_query(q: &JobQuery) -> Result<(String, PgArguments)> {
    let mut args = PgArguments::default();
    let bad = |e| Error::internal_from("binding listing arguments", e);
    let mut sql = format!("SELECT {} FROM jobs WHERE chain = $1", job_cols!(""));
    args.add(q.chain.as_str().to_owned()).map_err(bad)?;
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    // One kind is written as a literal (a code of ours, not input): `kind = 4` lets an index
    // on (chain, kind, first_block) return rows in block order, which `kind = ANY(…)` does
    // not, and lets a generic plan use the partial index `jobs_unsettled`, whose predicate
    // names the kind.
    if let [kind] = q.kinds.as_slice() {
        sql.push_str(&format!(" AND kind = {}", kind_code(*kind)));
    } else if !q.kinds.is_empty() {
        sql.push_str(&format!(" AND kind = ANY (${}::smallint[])", next()));
        args.add(q.kinds.iter().map(|k| kind_code(*k)).collect::<Vec<i16>>()).map_err(bad)?;
    }
    if !q.statuses.is_empty() {
        sql.push_str(&format!(" AND status = ANY (${}::text[])", next()));
        args.add(q.statuses.iter().map(|s| s.as_str().to_owned()).collect::<Vec<String>>()).map_err(bad)?;
        // Implied by the filter, spelled out so that a generic plan can use the partial
        // indexes `jobs_stuck` and `jobs_unsettled`.
        if q.statuses.iter().all(|s| STUCK.contains(s)) {
            sql.push_str(&format!(" AND {}", stuck_clause()));
        } else if !q.statuses.contains(&JobStatus::Completed) {
            sql.push_str(" AND status <> 'completed'");
        }
    }
    if let Some((from, to)) = q.first_block {
        let (a, b) = (next(), next());
        sql.push_str(&format!(" AND first_block BETWEEN ${a} AND ${b}"));
        args.add(int(from, "first_block")?).map_err(bad)?;
        args.add(i64::try_from(to).unwrap_or(i64::MAX)).map_err(bad)?;
    }
    let (cmp, dir) = match q.order {
        Order::Ascending => (">", "ASC"),
        Order::Descending => ("<", "DESC"),
    };
    if let Some(after) = &q.after {
        let (a, b, c) = (next(), next(), next());
        sql.push_str(&format!(" AND (first_block, last_block, kind) {cmp} (${a}, ${b}, ${c})"));
        args.add(int(after.range.first(), "after")?).map_err(bad)?;
        args.add(int(after.range.last(), "after")?).map_err(bad)?;
        args.add(kind_code(after.kind)).map_err(bad)?;
    }
    let l = next();
    sql.push_str(&format!(" ORDER BY first_block {dir}, last_block {dir}, kind {dir} LIMIT ${l}"));
    args.add(i64::from(q.limit.min(10_000))).map_err(bad)?;
    Ok((sql, args))
}

/// One write, checked and converted before anything is sent.
struct Checked {
    id: String,
    version: i64,
    epoch: i64,
    first: i64,
    last: i64,
    deps: String,
    meta: String,
    /// The transition as a `jobs.history` line.
    entry: Option<String>,
}

fn prepare_write(w: &JobWrite) -> Result<Checked> {
    let job = &w.job;
    Ok(Checked {
        id: job.id.to_string(),
        version: int(job.version.0, "version")?,
        epoch: int(job.epoch.0, "epoch")?,
        first: int(job.key.range.first(), "block")?,
        last: int(job.key.range.last(), "block")?,
        deps: deps_json(&job.deps)?,
        meta: meta_json(&job.meta)?,
        entry: w.transition.as_ref().map(|t| history_lines(std::slice::from_ref(t))).transpose()?,
    })
}

impl PostgresStore {
    /// Applies writes whose job ids are all distinct in one statement; returns per-item
    /// outcomes in the order given.
    async fn update_round(&self, items: &[(&JobWrite, Checked)]) -> Result<Vec<Result<Job>>> {
        let at = &*self.at;
        let n = items.len();
        let mut ids = Vec::with_capacity(n);
        let (mut versions, mut epochs, mut statuses) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
        let (mut owners, mut untils, mut attempts, mut maxes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut next_runs, mut verifies, mut deps, mut metas) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut errors, mut createds, mut nows, mut chains) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut kinds, mut firsts, mut lasts, mut entries) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (w, r) in items {
            let job = &w.job;
            ids.push(r.id.as_str());
            versions.push(r.version);
            epochs.push(r.epoch);
            statuses.push(job.status.as_str());
            owners.push(job.lease.as_ref().map(|l| l.owner.0.as_str()));
            untils.push(job.lease.as_ref().map(|l| ts(l.until)));
            attempts.push(i64::from(job.attempts));
            maxes.push(i64::from(job.max_attempts));
            next_runs.push(ts(job.next_run_at));
            verifies.push(job.verify_deadline.map(ts));
            deps.push(r.deps.as_str());
            metas.push(r.meta.as_str());
            errors.push(job.last_error.as_deref());
            createds.push(ts(job.created_at));
            nows.push(ts(w.now));
            chains.push(job.key.chain.as_str());
            kinds.push(kind_code(job.key.kind));
            firsts.push(r.first);
            lasts.push(r.last);
            entries.push(r.entry.as_deref());
        }
        let rows = sqlx::query(UPDATE_SQL)
            .bind(ids)
            .bind(versions)
            .bind(epochs)
            .bind(statuses)
            .bind(owners)
            .bind(untils)
            .bind(attempts)
            .bind(maxes)
            .bind(next_runs)
            .bind(verifies)
            .bind(deps)
            .bind(metas)
            .bind(errors)
            .bind(createds)
            .bind(nows)
            .bind(chains)
            .bind(kinds)
            .bind(firsts)
            .bind(lasts)
            .bind(entries)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err(e, at))?;
        if rows.len() != n {
            return Err(Error::internal(format!("update of {n} jobs reported {} outcomes", rows.len())));
        }
        let mut out = Vec::with_capacity(n);
        for ((w, _), row) in items.iter().zip(rows) {
            let applied: bool = row.try_get(1).map_err(|e| map_err(e, at))?;
            let exists: bool = row.try_get(2).map_err(|e| map_err(e, at))?;
            let id = w.job.id;
            out.push(if applied {
                let mut job = w.job.clone();
                job.version = Version(job.version.0 + 1);
                job.updated_at = w.now;
                Ok(job)
            } else if exists {
                Err(Error::conflict(format!("job {id}")))
            } else {
                Err(Error::not_found(format!("job {id}")))
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Database for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| map_err(e, &self.at))?;
        crate::schema::migrate(&mut conn, &self.at).await
    }

    async fn create_jobs(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Created>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let at = &*self.at;
        let n = jobs.len();
        let mut ids = Vec::with_capacity(n);
        let (mut chains, mut kinds, mut firsts, mut lasts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut maxes, mut runs, mut deps, mut metas) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for j in &jobs {
            ids.push(j.id.to_string());
            chains.push(j.key.chain.as_str());
            kinds.push(kind_code(j.key.kind));
            firsts.push(int(j.key.range.first(), "block")?);
            lasts.push(int(j.key.range.last(), "block")?);
            maxes.push(i64::from(j.max_attempts));
            runs.push(ts(j.next_run_at));
            deps.push(deps_json(&j.deps)?);
            metas.push(meta_json(&j.meta)?);
        }
        let run = |sql: &'static str| {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(&ids)
                .bind(&chains)
                .bind(&kinds)
                .bind(&firsts)
                .bind(&lasts)
                .bind(&maxes)
                .bind(&runs)
                .bind(&deps)
                .bind(&metas)
                .bind(ts(now))
                .fetch_all(&self.pool)
        };
        let inserted = match run(CREATE_NEW_SQL).await {
            Ok(v) => Ok(v),
            // A key committed by a concurrent creator after this statement's snapshot, or a
            // key twice in the batch: the statement inserted nothing; ON CONFLICT sorts it out.
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("23505") && db.constraint() == Some("jobs_key") =>
            {
                run(CREATE_SQL).await
            }
            Err(e) => Err(e),
        };
        let inserted = inserted.map_err(|e| match map_err(e, at) {
            // The key is handled above; a unique violation is a job id in use.
            Error::AlreadyExists { .. } => Error::already_exists("job id (one of the batch is used by another key)"),
            other => other,
        })?;
        let mut is_new = vec![false; n];
        for ord in inserted {
            if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| is_new.get_mut(i)) {
                *slot = true;
            }
        }
        // Taken keys: read what holds them.
        let mut existing: HashMap<JobKey, Job> = HashMap::new();
        if is_new.iter().any(|x| !x) {
            let pick =
                |v: &[i64]| -> Vec<i64> { v.iter().zip(&is_new).filter(|(_, n)| !**n).map(|(x, _)| *x).collect() };
            let taken_chains: Vec<&str> = chains.iter().zip(&is_new).filter(|(_, n)| !**n).map(|(c, _)| *c).collect();
            let taken_kinds: Vec<i16> = kinds.iter().zip(&is_new).filter(|(_, n)| !**n).map(|(k, _)| *k).collect();
            let rows = sqlx::query(BY_KEYS_SQL)
                .bind(taken_chains)
                .bind(pick(&firsts))
                .bind(pick(&lasts))
                .bind(taken_kinds)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_err(e, at))?;
            for row in &rows {
                let job = job_from_row(row, at)?;
                existing.insert(job.key.clone(), job);
            }
        }
        let mut out = Vec::with_capacity(n);
        for (nj, new) in jobs.into_iter().zip(is_new) {
            if new {
                out.push(Created::New(nj.into_job(now)));
            } else {
                let job = existing
                    .get(&nj.key)
                    .cloned()
                    .ok_or_else(|| Error::internal(format!("job {} vanished during create", nj.key)))?;
                out.push(Created::Existing(job));
            }
        }
        Ok(out)
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        let row = sqlx::query(BY_ID_SQL)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err(e, &self.at))?;
        match row {
            Some(row) => job_from_row(&row, &self.at),
            None => Err(Error::not_found(format!("job {id}"))),
        }
    }

    async fn get_job_by_key(&self, key: &JobKey) -> Result<Option<Job>> {
        let row = sqlx::query(BY_KEY_SQL)
            .bind(key.chain.as_str())
            .bind(int(key.range.first(), "block")?)
            .bind(int(key.range.last(), "block")?)
            .bind(kind_code(key.kind))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err(e, &self.at))?;
        row.map(|r| job_from_row(&r, &self.at)).transpose()
    }

    async fn update_jobs(&self, writes: &[JobWrite]) -> Result<Vec<Result<Job>>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut out: Vec<Option<Result<Job>>> = (0..writes.len()).map(|_| None).collect();
        // Writes to the same job apply one after another, as if sent one by one: round k
        // holds each job's k-th write, so every round has distinct ids. Usually one round.
        let mut rounds: Vec<Vec<(usize, &JobWrite, Checked)>> = Vec::new();
        let mut seen: HashMap<JobId, usize> = HashMap::with_capacity(writes.len());
        for (i, w) in writes.iter().enumerate() {
            match prepare_write(w) {
                Ok(r) => {
                    let k = seen.entry(w.job.id).or_insert(0);
                    if rounds.len() <= *k {
                        rounds.push(Vec::new());
                    }
                    rounds[*k].push((i, w, r));
                    *k += 1;
                }
                // Per item, decided before it wrote anything.
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        for round in rounds {
            let (idx, items): (Vec<usize>, Vec<(&JobWrite, Checked)>) =
                round.into_iter().map(|(i, w, r)| (i, (w, r))).unzip();
            for (i, r) in idx.into_iter().zip(self.update_round(&items).await?) {
                out[i] = Some(r);
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or_else(|| Err(Error::internal("write without outcome")))).collect())
    }

    async fn claim_jobs(&self, req: &ClaimRequest) -> Result<Vec<Job>> {
        // One entry per kind: the same kind twice would pick the rows it already locked.
        let mut kinds: Vec<i16> = Vec::new();
        let mut counts: Vec<i64> = Vec::new();
        for (kind, n) in &req.wants {
            let code = kind_code(*kind);
            match kinds.iter().position(|k| *k == code) {
                Some(i) => counts[i] += i64::from(*n),
                None => {
                    kinds.push(code);
                    counts.push(i64::from(*n));
                }
            }
        }
        if counts.iter().all(|n| *n == 0) {
            return Ok(Vec::new());
        }
        let at = &*self.at;
        let rows = sqlx::query(AssertSqlSafe(claim_sql()))
            .bind(req.owner.0.as_str())
            .bind(ts(req.lease_until))
            .bind(ts(req.now))
            .bind(req.chain.as_str())
            .bind(kinds)
            .bind(counts)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err(e, at))?;
        rows.iter().map(|r| job_from_row(r, at)).collect()
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
        let at = &*self.at;
        let kinds: Vec<i16> = targets.iter().map(|(k, _)| kind_code(*k)).collect();
        let firsts: Vec<i64> = targets.iter().map(|(_, b)| int(*b, "block")).collect::<Result<_>>()?;
        let rows = sqlx::query(WAKE_SQL)
            .bind(ts(now))
            .bind(chain.as_str())
            .bind(kinds)
            .bind(firsts)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| map_err(e, at))?;
        let m = |e| map_err(e, at);
        let mut woken = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: &str = row.try_get(0).map_err(m)?;
            let id = JobId::parse(id).map_err(|_| corrupt(at, format!("job id {id:?}")))?;
            let epoch = Epoch(uint(row.try_get(1).map_err(m)?, "epoch", at)?);
            let ord: i64 = row.try_get(2).map_err(m)?;
            let last: i64 = row.try_get(3).map_err(m)?;
            woken.push((ord, last, id, epoch));
        }
        woken.sort();
        Ok(woken.into_iter().map(|(_, _, id, e)| (id, e)).collect())
    }

    async fn extend_lease(&self, id: JobId, epoch: Epoch, until: Timestamp) -> Result<()> {
        let row = sqlx::query(EXTEND_SQL)
            .bind(ts(until))
            .bind(id.to_string())
            .bind(i64::try_from(epoch.0).unwrap_or(-1))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| map_err(e, &self.at))?;
        let m = |e| map_err(e, &self.at);
        let (done, exists): (bool, bool) = (row.try_get(0).map_err(m)?, row.try_get(1).map_err(m)?);
        if done {
            Ok(())
        } else if exists {
            Err(Error::conflict(format!("lease of job {id}")))
        } else {
            Err(Error::not_found(format!("job {id}")))
        }
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let (sql, args) = list_query(query)?;
        let rows =
            sqlx::query_with(AssertSqlSafe(sql), args).fetch_all(&self.pool).await.map_err(|e| map_err(e, &self.at))?;
        rows.iter().map(|r| job_from_row(r, &self.at)).collect()
    }

    async fn count_jobs(&self, chain: &ChainId) -> Result<Vec<StatusCount>> {
        let at = &*self.at;
        let rows =
            sqlx::query(COUNT_SQL).bind(chain.as_str()).fetch_all(&self.pool).await.map_err(|e| map_err(e, at))?;
        let m = |e| map_err(e, at);
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind = kind_from_code(row.try_get(0).map_err(m)?, at)?;
            let st: &str = row.try_get(1).map_err(m)?;
            let count: i64 = row.try_get(2).map_err(m)?;
            out.push(StatusCount { kind, status: status(st, at)?, count: count.max(0) as u64 });
        }
        out.sort_by_key(|c| (c.kind, c.status));
        Ok(out)
    }

    async fn import_jobs(&self, records: &[JobRecord]) -> Result<Vec<bool>> {
        for r in records {
            r.validate()?;
        }
        let at = &*self.at;
        let m = |e| map_err(e, at);
        let mut tx = self.pool.begin().await.map_err(m)?;
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let job = &r.job;
            let id = job.id.to_string();
            if let Some(row) = sqlx::query(BY_ID_SQL).bind(&id).fetch_optional(&mut *tx).await.map_err(m)? {
                let stored = job_from_row(&row, at)?;
                if stored.key != job.key {
                    return Err(Error::already_exists(format!(
                        "job id {} (stored with key {}, imported with key {})",
                        job.id, stored.key, job.key
                    )));
                }
                out.push(false);
                continue;
            }
            let inserted = sqlx::query(IMPORT_SQL)
                .bind(&id)
                .bind(job.key.chain.as_str())
                .bind(kind_code(job.key.kind))
                .bind(int(job.key.range.first(), "block")?)
                .bind(int(job.key.range.last(), "block")?)
                .bind(job.status.as_str())
                .bind(int(job.version.0, "version")?)
                .bind(int(job.epoch.0, "epoch")?)
                .bind(job.lease.as_ref().map(|l| l.owner.0.as_str()))
                .bind(job.lease.as_ref().map(|l| ts(l.until)))
                .bind(i64::from(job.attempts))
                .bind(i64::from(job.max_attempts))
                .bind(ts(job.next_run_at))
                .bind(job.verify_deadline.map(ts))
                .bind(deps_json(&job.deps)?)
                .bind(meta_json(&job.meta)?)
                .bind(job.last_error.as_deref())
                .bind(ts(job.created_at))
                .bind(ts(job.updated_at))
                .bind(history_lines(&r.history)?)
                .execute(&mut *tx)
                .await
                .map_err(m)?
                .rows_affected();
            if inserted == 0 {
                return Err(Error::already_exists(format!("job key {} (imported as job {})", job.key, job.id)));
            }
            out.push(true);
        }
        tx.commit().await.map_err(m)?;
        Ok(out)
    }

    async fn history(&self, id: JobId) -> Result<Vec<Transition>> {
        let at = &*self.at;
        let text: Option<String> = sqlx::query_scalar(HISTORY_SQL)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| map_err(e, at))?;
        match text {
            Some(text) => history_from_lines(&text, id, at),
            None => Err(Error::not_found(format!("job {id}"))),
        }
    }

    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()> {
        sqlx::query(HEARTBEAT_SQL)
            .bind(worker.id.0.as_str())
            .bind(worker.mode.as_str())
            .bind(worker.host.as_str())
            .bind(worker.version.as_str())
            .bind(ts(worker.started_at))
            .bind(ts(worker.heartbeat_at))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| map_err(e, &self.at))
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>> {
        let at = &*self.at;
        let rows = sqlx::query(WORKERS_SQL).bind(ts(since)).fetch_all(&self.pool).await.map_err(|e| map_err(e, at))?;
        let m = |e| map_err(e, at);
        rows.iter()
            .map(|row| {
                Ok(WorkerInfo {
                    id: WorkerId(row.try_get(0).map_err(m)?),
                    mode: row.try_get(1).map_err(m)?,
                    host: row.try_get(2).map_err(m)?,
                    version: row.try_get(3).map_err(m)?,
                    started_at: ts_back(row.try_get(4).map_err(m)?, at)?,
                    heartbeat_at: ts_back(row.try_get(5).map_err(m)?, at)?,
                })
            })
            .collect()
    }

    async fn try_lead(&self, name: &str, owner: &WorkerId, now: Timestamp, until: Timestamp) -> Result<bool> {
        let done = sqlx::query(LEAD_SQL)
            .bind(name)
            .bind(owner.0.as_str())
            .bind(ts(until))
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(|e| map_err(e, &self.at))?;
        Ok(done.rows_affected() == 1)
    }
}

/// The SQL of every engine query, for the plan test in `tests/adapter.rs`.
pub(crate) fn engine_queries() -> Vec<(&'static str, String)> {
    let chain = ChainId::new("c").unwrap_or_else(|_| unreachable!("a valid chain id"));
    let all = JobQuery::all(chain, 10);
    let mut last_snos = all.clone();
    last_snos.kinds = vec![JobKind::SnosRun];
    last_snos.order = Order::Descending;
    let mut unsettled = all.clone();
    unsettled.kinds = vec![JobKind::StateTransition];
    unsettled.statuses = JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Completed).collect();
    let mut stuck = all.clone();
    stuck.statuses = vec![JobStatus::Failed];
    let mut page = all.clone();
    page.after = Some(JobKey {
        chain: all.chain.clone(),
        kind: JobKind::SnosRun,
        range: orch_core::types::BlockRange::single(1),
    });
    let list = |q: &JobQuery| list_query(q).map(|(sql, _)| sql).unwrap_or_default();
    vec![
        ("list all", list(&all)),
        ("list page", list(&page)),
        ("list last snos", list(&last_snos)),
        ("list unsettled", list(&unsettled)),
        ("list stuck", list(&stuck)),
        ("claim", claim_sql().to_string()),
        ("create", CREATE_SQL.into()),
        ("create new", CREATE_NEW_SQL.into()),
        ("by keys", BY_KEYS_SQL.into()),
        ("by key", BY_KEY_SQL.into()),
        ("by id", BY_ID_SQL.into()),
        ("update", UPDATE_SQL.into()),
        ("wake", WAKE_SQL.into()),
        ("extend", EXTEND_SQL.into()),
        ("count", COUNT_SQL.into()),
        ("history", HISTORY_SQL.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_sql_maps_statuses_as_the_state_machine_does() {
        let sql = claim_sql();
        assert!(sql.contains("WHEN 'created' THEN 'processing'"), "{sql}");
        assert!(sql.contains("WHEN 'pending_verification' THEN 'pending_verification'"), "{sql}");
        assert!(!sql.contains("WHEN 'completed'"), "{sql}");
        assert!(sql.contains("j.status IN ('processing')"), "{sql}");
        assert!(sql.contains("FOR UPDATE SKIP LOCKED"), "{sql}");
    }

    #[test]
    fn listing_binds_one_argument_per_placeholder() {
        let mut q = JobQuery::all(ChainId::new("c").unwrap(), 10);
        let (sql, _) = list_query(&q).unwrap();
        assert!(sql.ends_with("LIMIT $2"), "{sql}");
        q.kinds = vec![JobKind::SnosRun];
        q.statuses = vec![JobStatus::Failed];
        q.first_block = Some((1, u64::MAX));
        q.after = Some(JobKey {
            chain: q.chain.clone(),
            kind: JobKind::SnosRun,
            range: orch_core::types::BlockRange::single(3),
        });
        q.order = Order::Descending;
        let (sql, _) = list_query(&q).unwrap();
        assert!(sql.contains(" AND kind = 0 "), "{sql}");
        assert!(sql.contains("status IN ('failed', 'verification_timeout', 'cancelled')"), "{sql}");
        assert!(sql.contains("(first_block, last_block, kind) < ($5, $6, $7)"), "{sql}");
        assert!(sql.ends_with("kind DESC LIMIT $8"), "{sql}");
    }

    #[test]
    fn status_filters_spell_out_the_partial_index_predicates() {
        let mut q = JobQuery::all(ChainId::new("c").unwrap(), 1);
        q.kinds = vec![JobKind::StateTransition];
        q.statuses = JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Completed).collect();
        let (sql, _) = list_query(&q).unwrap();
        assert!(sql.contains(" AND kind = 4 ") && sql.contains(" AND status <> 'completed'"), "{sql}");
        q.statuses = vec![JobStatus::Completed, JobStatus::Failed];
        let (sql, _) = list_query(&q).unwrap();
        assert!(!sql.contains("<> 'completed'") && !sql.contains("status IN"), "{sql}");
    }
}
