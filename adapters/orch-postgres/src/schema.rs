//! Versioned schema migrations.
//!
//! A migration is history: once released its SQL never changes; a new schema is a new entry at
//! the end of [`MIGRATIONS`]. `schema_version` (one row) holds the version the schema is at.

use orch_core::error::{Error, Result};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::error::{map_err, Place};

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 4;

/// First key of the advisory lock that serialises migrations ("orch"); the second is the
/// schema name's hash, so deployments in different schemas do not wait for each other.
const LOCK_CLASS: i32 = 0x6F72_6368;

/// `(version, SQL)`, applied in order to schemas below that version. The SQL runs with
/// `search_path` set to the target schema.
const MIGRATIONS: &[(u32, &str)] = &[(1, V1), (2, V2), (3, V3), (4, V4)];

/// Version 1.
///
/// * `kind` is a small integer ([`crate::codec::kind_code`]) ascending in pipeline order, so
///   listings order by `(first_block, last_block, kind)` straight from the `jobs_key` index.
/// * `due_at` is when a claimable job becomes claimable — the later of `next_run_at` and its
///   lease expiry — and NULL for every other status. Claims read the partial index `jobs_due`,
///   which holds only claimable jobs, so finished jobs cost claims nothing.
/// * `jobs_open` serves listings of one kind filtered by status (the engine's "lowest
///   unsettled job" query) in block order. It leaves out `completed` jobs — nearly all of them,
///   in time — so it stays the size of the live work, and the write that completes a job adds
///   no entry to it.
/// * `job_history` is keyed by `(job_id, version)`: each entry is written by the write that
///   gave the job that version. There is no foreign key: jobs are never deleted, and the
///   check would lock the job row once more on every history insert.
/// * Timestamps are milliseconds since the Unix epoch (`bigint`); `Timestamp::NEVER` is
///   `i64::MAX`. Counters are `bigint`, so every `u32` fits.
const V1: &str = r#"
CREATE TABLE jobs (
    id              uuid     NOT NULL PRIMARY KEY,
    chain           text     NOT NULL,
    kind            smallint NOT NULL,
    first_block     bigint   NOT NULL,
    last_block      bigint   NOT NULL,
    status          text     NOT NULL,
    version         bigint   NOT NULL,
    epoch           bigint   NOT NULL,
    lease_owner     text,
    lease_until     bigint,
    attempts        bigint   NOT NULL,
    max_attempts    bigint   NOT NULL,
    next_run_at     bigint   NOT NULL,
    verify_deadline bigint,
    deps            jsonb    NOT NULL,
    meta            jsonb    NOT NULL,
    last_error      text,
    created_at      bigint   NOT NULL,
    updated_at      bigint   NOT NULL,
    due_at          bigint GENERATED ALWAYS AS (
        CASE WHEN status IN ('created', 'processing', 'pending_verification', 'pending_retry')
             THEN GREATEST(next_run_at, COALESCE(lease_until, 0)) END
    ) STORED,
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
);
CREATE UNIQUE INDEX jobs_key ON jobs (chain, first_block, last_block, kind);
CREATE INDEX jobs_due ON jobs (chain, kind, due_at, first_block) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_open ON jobs (chain, kind, first_block, last_block) WHERE status <> 'completed';

CREATE TABLE job_history (
    job_id      uuid   NOT NULL,
    version     bigint NOT NULL,
    at          bigint NOT NULL,
    from_status text   NOT NULL,
    to_status   text   NOT NULL,
    reason      text   NOT NULL,
    attempt     bigint NOT NULL,
    actor       text,
    epoch       bigint NOT NULL,
    PRIMARY KEY (job_id, version)
);

CREATE TABLE workers (
    id           text   NOT NULL PRIMARY KEY,
    mode         text   NOT NULL,
    host         text   NOT NULL,
    version      text   NOT NULL,
    started_at   bigint NOT NULL,
    heartbeat_at bigint NOT NULL
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);

CREATE TABLE leaders (
    name        text   NOT NULL PRIMARY KEY,
    owner       text   NOT NULL,
    lease_until bigint NOT NULL
);
"#;

/// Version 2: fewer index entries per job on the hot path.
///
/// A claim or a completion changes `due_at`, so PostgreSQL cannot update the row in place
/// (HOT): every index whose predicate the new row version matches gets a new entry. The
/// cost of a job's life is therefore about one index insert per index per state change.
///
/// * `jobs_open` is replaced by `jobs_unsettled`, which holds only unsettled
///   `StateTransition` jobs (kind code 4, see [`crate::codec::kind_code`]): the engine's
///   status-filtered listing ("lowest unsettled state transition") asks for nothing else,
///   and jobs of the other four kinds no longer pay an entry at creation and at each claim.
/// * `jobs_stuck` holds the jobs that wait for an operator (`failed`,
///   `verification_timeout`, `cancelled`), so listings of those read only those rows'
///   entries. Jobs rarely enter these statuses, so it costs the hot path nothing.
/// * `fillfactor = 80` leaves room on each heap page for the new versions its rows get when
///   claimed and completed, so they mostly stay on the page (no new page, fewer pruning
///   passes). It applies to pages written from now on.
const V2: &str = r#"
DROP INDEX jobs_open;
CREATE INDEX jobs_unsettled ON jobs (chain, first_block, last_block) WHERE kind = 4 AND status <> 'completed';
CREATE INDEX jobs_stuck ON jobs (chain, kind, first_block, last_block)
    WHERE status IN ('failed', 'verification_timeout', 'cancelled');
ALTER TABLE jobs SET (fillfactor = 80);
"#;

/// Version 3: a job's history lives in its row.
///
/// * `jobs.history` is a `jsonb` array of the job's transitions, oldest first, each an object
///   `{"at", "from", "to", "reason", "attempt", "actor", "epoch"}` (`at` in milliseconds,
///   statuses as stored in `status`, `actor` null when unknown; see
///   [`crate::codec::HistoryEntry`]). The write that changes a job's status appends to it in
///   the same `UPDATE`, so a claim or a completion writes one heap row and its index entries,
///   where the `job_history` table cost one more heap row and one more index entry each.
/// * The rows of `job_history` are moved into their jobs' `history` in version order, and the
///   table is dropped. (Its rows have no other reader; a row whose job does not exist — jobs
///   are never deleted — has nowhere to go and goes with the table.) The `UPDATE` rewrites
///   every job that has a history, in the migration's one transaction.
const V3: &str = r#"
ALTER TABLE jobs ADD COLUMN history jsonb NOT NULL DEFAULT '[]';
UPDATE jobs j SET history = h.entries
FROM (
    SELECT job_id, jsonb_agg(jsonb_build_object(
               'at', at, 'from', from_status, 'to', to_status, 'reason', reason,
               'attempt', attempt, 'actor', actor, 'epoch', epoch) ORDER BY version) AS entries
    FROM job_history GROUP BY job_id
) h
WHERE j.id = h.job_id;
DROP TABLE job_history;
"#;

/// Version 4: a job's history is text, one JSON object per line.
///
/// * `jobs.history` holds the same entries as in version 3, each followed by a newline, oldest
///   first (see [`crate::codec::history_lines`]). Appending an entry is then a concatenation:
///   appending to a `jsonb` array decodes and re-encodes the whole array, which cost claims and
///   completions about a third of their time. Operators read it with
///   `SELECT line::jsonb FROM regexp_split_to_table(rtrim(history, E'\n'), E'\n') AS line`.
/// * Each job's array is turned into its lines in place (the `UPDATE` rewrites the jobs that
///   have a history, in the migration's one transaction); a job without history gets `''`.
const V4: &str = r#"
ALTER TABLE jobs ADD COLUMN history_lines text NOT NULL DEFAULT '';
UPDATE jobs SET history_lines = (
    SELECT string_agg(e::text || E'\n', '' ORDER BY n) FROM jsonb_array_elements(history) WITH ORDINALITY AS x(e, n)
) WHERE history <> '[]';
ALTER TABLE jobs DROP COLUMN history;
ALTER TABLE jobs RENAME COLUMN history_lines TO history;
"#;

/// The schema's version: `None` when the schema or its `schema_version` table is missing.
pub(crate) async fn current_version(conn: &mut PgConnection, at: &Place) -> Result<Option<u32>> {
    let table = format!("{}.schema_version", at.schema);
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_err(e, at))?;
    if exists.is_none() {
        return Ok(None);
    }
    let sql = format!("SELECT version::bigint FROM {table} WHERE id = 1");
    let v: Option<i64> =
        sqlx::query_scalar(AssertSqlSafe(sql)).fetch_optional(&mut *conn).await.map_err(|e| map_err(e, at))?;
    match v {
        None => Ok(None),
        Some(v) => u32::try_from(v).map(Some).map_err(|_| {
            Error::invalid_input(
                "database.schema",
                format!("schema {:?} on {} has an invalid schema version {v}", at.schema, at.url),
            )
        }),
    }
}

fn too_new(version: u32, at: &Place) -> Error {
    Error::invalid_input(
        "database.schema",
        format!(
            "schema {:?} on {} is at version {version}, but this orch understands versions up to \
             {SCHEMA_VERSION}; upgrade orch (or restore a backup taken before the upgrade)",
            at.schema, at.url
        ),
    )
}

/// Errors unless the schema exists at exactly [`SCHEMA_VERSION`].
pub(crate) async fn check(conn: &mut PgConnection, at: &Place) -> Result<()> {
    match current_version(conn, at).await? {
        None => Err(Error::invalid_input(
            "database.schema",
            format!("schema {:?} on {} has no orch tables; run `orchestrator setup` to create them", at.schema, at.url),
        )),
        Some(v) if v > SCHEMA_VERSION => Err(too_new(v, at)),
        Some(v) if v < SCHEMA_VERSION => Err(Error::invalid_input(
            "database.schema",
            format!(
                "schema {:?} on {} is at version {v}, this orch needs version {SCHEMA_VERSION}; \
                 run `orchestrator setup` to migrate it",
                at.schema, at.url
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction, holding an advisory lock so that
/// processes migrating at the same time take turns (the second finds the work done).
pub(crate) async fn migrate(conn: &mut PgConnection, at: &Place) -> Result<()> {
    migrate_to(conn, at, SCHEMA_VERSION).await
}

/// [`migrate`], stopping at `target` (upgrade tests build a store at an old version with it).
/// A schema already at or above `target` is left as it is, unless it is newer than this code.
pub(crate) async fn migrate_to(conn: &mut PgConnection, at: &Place, target: u32) -> Result<()> {
    let m = |e| map_err(e, at);
    let mut tx = conn.begin().await.map_err(m)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(LOCK_CLASS)
        .bind(&at.schema)
        .execute(&mut *tx)
        .await
        .map_err(m)?;
    // Checked first: CREATE SCHEMA IF NOT EXISTS needs the CREATE right even when the schema
    // exists, and a role that only owns the schema may lack it.
    let has_schema: bool = sqlx::query_scalar("SELECT to_regnamespace($1) IS NOT NULL")
        .bind(&at.schema)
        .fetch_one(&mut *tx)
        .await
        .map_err(m)?;
    if !has_schema {
        // The name was validated as a plain identifier.
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {}", at.schema))).execute(&mut *tx).await.map_err(m)?;
    }
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {}.schema_version (
             id         integer PRIMARY KEY CHECK (id = 1),
             version    integer NOT NULL,
             updated_at timestamptz NOT NULL DEFAULT now()
         )",
        at.schema
    )))
    .execute(&mut *tx)
    .await
    .map_err(m)?;
    let from = current_version(&mut tx, at).await?.unwrap_or(0);
    if from > SCHEMA_VERSION {
        return Err(too_new(from, at));
    }
    if from >= target {
        tx.commit().await.map_err(m)?;
        return Ok(());
    }
    sqlx::query(AssertSqlSafe(format!("SET LOCAL search_path TO {}", at.schema))).execute(&mut *tx).await.map_err(m)?;
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from && *v <= target) {
        sqlx::raw_sql(AssertSqlSafe(*sql)).execute(&mut *tx).await.map_err(m)?;
        sqlx::query(
            "INSERT INTO schema_version (id, version) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, updated_at = now()",
        )
        .bind(i32::try_from(*v).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await
        .map_err(m)?;
        tracing::info!(target: "orch::postgres", schema = %at.schema, version = v, "schema migrated");
    }
    tx.commit().await.map_err(m)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use orch_core::types::JobStatus;

    use super::*;

    #[test]
    fn due_at_lists_exactly_the_claimable_statuses() {
        let listed: Vec<String> =
            JobStatus::ALL.into_iter().filter(|s| s.is_claimable()).map(|s| format!("'{}'", s.as_str())).collect();
        let clause = format!("status IN ({})", listed.join(", "));
        assert!(V1.contains(&clause), "due_at must use {clause}");
    }

    #[test]
    fn v2_partial_indexes_name_the_codes_and_statuses_the_queries_use() {
        assert_eq!(crate::codec::kind_code(orch_core::types::JobKind::StateTransition), 4);
        assert!(V2.contains("WHERE kind = 4 AND status <> 'completed'"), "{V2}");
        let stuck = crate::db::stuck_clause();
        assert!(V2.contains(&format!("WHERE {stuck};")), "jobs_stuck must use {stuck}");
    }

    #[test]
    fn migrations_are_contiguous_and_end_at_the_current_version() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
