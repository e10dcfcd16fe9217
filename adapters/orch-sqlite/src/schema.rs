//! Versioned schema migrations.
//!
//! A migration is history: once released its SQL never changes; a new schema is a new entry
//! at the end of [`MIGRATIONS`]. `schema_version` holds the version the file is at.

use std::path::Path;

use orch_core::error::{Error, Result};
use rusqlite::{Connection, OptionalExtension};

use crate::error::map_err;

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// `PRAGMA application_id` of an orch database ("orch"), so another program's SQLite file is
/// recognised before orch adds tables to it.
const APPLICATION_ID: i64 = 0x6F72_6368;

/// `(version, SQL)`, applied in order to files below that version.
const MIGRATIONS: &[(u32, &str)] = &[(1, V1)];

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
/// * `claimed_from` is the status the last claim found; a claim's `RETURNING` reads it to
///   record the transition without a second query.
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
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        conn.execute_batch(sql).map_err(|e| map_err(e, path))?;
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
    }

    #[test]
    fn migrations_are_contiguous_and_end_at_the_current_version() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
