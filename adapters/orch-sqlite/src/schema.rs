//! Versioned schema migrations.
//!
//! A migration is history: once released its SQL never changes; a new schema is a new entry
//! at the end of [`MIGRATIONS`]. `schema_version` holds the version the file is at.

use std::path::Path;

use orch_core::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension};

use crate::error::map_err;

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 2;

/// `PRAGMA application_id` of an orch database ("orch"), so another program's SQLite file is
/// recognised before orch adds tables to it.
const APPLICATION_ID: i64 = 0x6F72_6368;

/// A migration step, run inside the migrating transaction.
type Step = fn(&Connection) -> rusqlite::Result<()>;

/// `(version, step)`, applied in order to files below that version.
const MIGRATIONS: &[(u32, Step)] = &[(1, |c| c.execute_batch(V1)), (2, v2)];

/// Version 1.
///
/// * `jobs.kind` is a small integer ([`crate::codec::kind_code`]) so that listings order by
///   `(first_block, last_block, kind)` in pipeline order straight from the `jobs_key` index.
/// * `due_at` is when a claimable job becomes claimable — the later of `next_run_at` and its
///   lease expiry — and NULL for every other status. Claims read the partial index
///   `jobs_due`, so they touch only jobs that are due, however many finished jobs there are.
/// * `job_history` is keyed by `(job_id, version)`: every entry is written by the write that
///   gave the job that version, so the key is unique and in order, and one B-tree serves both
///   storage and lookup.
/// * `claimed_from` is the status the last claim found (claims of this version read it back
///   through `RETURNING`; claims now read the row before writing it, and still set it).
/// * Timestamps are milliseconds since the Unix epoch; `Timestamp::NEVER` is stored as
///   `i64::MAX`.
const V1: &str = r#"
CREATE TABLE jobs (
    id              TEXT    NOT NULL PRIMARY KEY,
    chain           TEXT    NOT NULL,
    kind            INTEGER NOT NULL,
    first_block     INTEGER NOT NULL,
    last_block      INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    epoch           INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    attempts        INTEGER NOT NULL,
    max_attempts    INTEGER NOT NULL,
    next_run_at     INTEGER NOT NULL,
    verify_deadline INTEGER,
    deps            TEXT    NOT NULL,
    meta            TEXT    NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    claimed_from    TEXT,
    due_at          INTEGER GENERATED ALWAYS AS (
        CASE WHEN status IN ('created', 'processing', 'pending_verification', 'pending_retry')
             THEN max(next_run_at, coalesce(lease_until, 0)) END
    ) VIRTUAL,
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL))
);
CREATE UNIQUE INDEX jobs_key ON jobs (chain, first_block, last_block, kind);
CREATE INDEX jobs_due ON jobs (chain, kind, due_at, first_block) WHERE due_at IS NOT NULL;
CREATE INDEX jobs_status ON jobs (chain, kind, status, first_block, last_block);

CREATE TABLE job_history (
    job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    from_status TEXT    NOT NULL,
    to_status   TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    actor       TEXT,
    epoch       INTEGER NOT NULL,
    PRIMARY KEY (job_id, version)
) WITHOUT ROWID;

CREATE TABLE workers (
    id           TEXT    NOT NULL PRIMARY KEY,
    mode         TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

CREATE TABLE leaders (
    name  TEXT    NOT NULL PRIMARY KEY,
    owner TEXT    NOT NULL,
    until INTEGER NOT NULL
);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    queue      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    visible_at INTEGER NOT NULL,
    attempt    INTEGER NOT NULL DEFAULT 0,
    receipt    TEXT
);
CREATE INDEX messages_visible ON messages (queue, visible_at);
CREATE INDEX messages_receipt ON messages (receipt) WHERE receipt IS NOT NULL;
"#;

/// The claimable-status test of `due_at` as version 1 wrote it.
const V1_DUE_TEST: &str = "status IN ('created', 'processing', 'pending_verification', 'pending_retry')";

/// The same test as version 2 writes it.
const V2_DUE_TEST: &str =
    "status = 'created' OR status = 'processing' OR status = 'pending_verification' OR status = 'pending_retry'";

/// Version 2: `due_at` tests the status with `=`s instead of `IN (…)`.
///
/// Same values, so the same rows and `jobs_due` entries; only the code SQLite generates
/// changes. SQLite evaluates the generated column on every write of a job (for the partial
/// index), and it codes an `IN` with more than two constants there as a temporary B-tree built
/// afresh at each evaluation — three per job update, measured as about a third of the writer
/// thread's work. SQLite cannot alter a generated column, and the expression is not stored in
/// the rows, so this is the in-place schema edit SQLite documents for changes that leave the
/// file's content as it is: rewrite the table's SQL in `sqlite_schema`, bump
/// `schema_version` so that every connection re-reads it, and reload it here.
fn v2(conn: &Connection) -> rusqlite::Result<()> {
    let cookie: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let edited = conn.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) \
         WHERE type = 'table' AND name = 'jobs' AND instr(sql, ?1) > 0",
        [V1_DUE_TEST, V2_DUE_TEST],
    );
    if !matches!(edited, Ok(1)) {
        let _ = conn.execute_batch("PRAGMA writable_schema = RESET");
        // Not the table version 1 created: leave it alone (the transaction rolls back).
        edited?;
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some("table jobs is not as schema version 1 created it; was the file changed by another program?".into()),
        ));
    }
    conn.execute_batch(&format!("PRAGMA schema_version = {}; PRAGMA writable_schema = RESET", cookie + 1))
}

/// The file's schema version (0 for a file orch never migrated).
pub(crate) fn current_version(conn: &Connection, path: &Path) -> Result<u32> {
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| map_err(e, path))?;
    if !has_table {
        return Ok(0);
    }
    let v: Option<i64> = conn
        .query_row("SELECT version FROM schema_version WHERE id = 1", [], |r| r.get(0))
        .optional()
        .map_err(|e| map_err(e, path))?;
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| {
        Error::invalid_input("database.path", format!("{} has an invalid schema version {v}", path.display()))
    })
}

/// Errors unless a file at `version` can be used by this code.
pub(crate) fn check_supported(version: u32, path: &Path) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::invalid_input(
            "database.path",
            format!(
                "{} has schema version {version}, but this orch understands versions up to {SCHEMA_VERSION}; \
                 run a newer orch, or restore a backup taken before the upgrade",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]. Runs inside the writer's transaction, so a
/// failing migration leaves the file as it was.
pub(crate) fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| map_err(e, path))?;
    if app != 0 && app != APPLICATION_ID {
        return Err(Error::invalid_input(
            "database.path",
            format!(
                "{} is another application's SQLite database (application_id {app:#x}); give orch its own file",
                path.display()
            ),
        ));
    }
    let from = current_version(conn, path)?;
    check_supported(from, path)?;
    if from == SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             id      INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         )",
    )
    .map_err(|e| map_err(e, path))?;
    for (v, step) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        step(conn).map_err(|e| map_err(e, path))?;
        conn.execute(
            "INSERT INTO schema_version (id, version) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            [v],
        )
        .map_err(|e| map_err(e, path))?;
        tracing::info!(target: "orch::sqlite", path = %path.display(), version = v, "schema migrated");
    }
    conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}")).map_err(|e| map_err(e, path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use orch_core::types::JobStatus;

    use super::*;

    #[test]
    fn due_at_lists_exactly_the_claimable_statuses() {
        let listed: Vec<&str> = JobStatus::ALL.into_iter().filter(|s| s.is_claimable()).map(|s| s.as_str()).collect();
        let clause = format!("status IN ({})", listed.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", "));
        assert!(V1.contains(&clause), "due_at must use {clause}");
        assert_eq!(clause, V1_DUE_TEST);
        let v2 = listed.iter().map(|s| format!("status = '{s}'")).collect::<Vec<_>>().join(" OR ");
        assert_eq!(v2, V2_DUE_TEST);
    }

    /// A version 1 file with jobs in every status: version 2 keeps every row and index entry
    /// (`integrity_check` recomputes `due_at` for each `jobs_due` entry) and drops the `IN`.
    #[test]
    fn v2_rewrites_due_at_in_place_and_keeps_the_index_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON; BEGIN").unwrap();
        conn.execute_batch(V1).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
             INSERT INTO schema_version (id, version) VALUES (1, 1);",
        )
        .unwrap();
        for (i, s) in JobStatus::ALL.into_iter().cycle().take(64).enumerate() {
            let leased = i % 3 == 0;
            conn.execute(
                "INSERT INTO jobs (id, chain, kind, first_block, last_block, status, version, epoch, lease_owner, \
                 lease_until, attempts, max_attempts, next_run_at, deps, meta, created_at, updated_at) \
                 VALUES (?1, 'c', ?2, ?3, ?3, ?4, 1, 0, ?5, ?6, 0, 3, ?7, '[]', '{}', 1, 1)",
                rusqlite::params![
                    format!("job-{i}"),
                    (i % 5) as i64,
                    i as i64,
                    s.as_str(),
                    leased.then_some("w"),
                    leased.then_some(i as i64 * 7),
                    i as i64 * 3
                ],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        let due = |c: &Connection| -> Vec<(String, Option<i64>)> {
            let mut st = c.prepare("SELECT id, due_at FROM jobs ORDER BY id").unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
        };
        let before = due(&conn);
        assert_eq!(current_version(&conn, &path).unwrap(), 1);

        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        migrate(&conn, &path).unwrap();
        conn.execute_batch("COMMIT").unwrap();

        for c in [&conn, &Connection::open(&path).unwrap()] {
            assert_eq!(current_version(c, &path).unwrap(), SCHEMA_VERSION);
            let sql: String =
                c.query_row("SELECT sql FROM sqlite_schema WHERE name = 'jobs'", [], |r| r.get(0)).unwrap();
            assert!(sql.contains(V2_DUE_TEST) && !sql.contains(V1_DUE_TEST), "{sql}");
            let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(check, "ok");
            assert_eq!(due(c), before);
        }
        for c in [&conn, &Connection::open(&path).unwrap()] {
            // Writes through the migrated schema keep the partial index right.
            c.execute("UPDATE jobs SET status = 'completed', lease_owner = NULL, lease_until = NULL", []).unwrap();
            c.execute("UPDATE jobs SET status = 'created', next_run_at = 5", []).unwrap();
            let check: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(check, "ok");
            let n: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM jobs INDEXED BY jobs_due WHERE chain = 'c' AND kind = 0 AND due_at <= 5",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 13);
        }
    }

    #[test]
    fn v2_refuses_a_jobs_table_it_does_not_recognise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
             INSERT INTO schema_version (id, version) VALUES (1, 1);
             CREATE TABLE jobs (id TEXT PRIMARY KEY);",
        )
        .unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(migrate(&conn, &path).is_err());
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(current_version(&conn, &path).unwrap(), 1);
    }

    #[test]
    fn migrations_are_contiguous_and_end_at_the_current_version() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
