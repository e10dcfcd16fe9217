//! The one place where SQLite errors become orch errors.

use std::path::Path;

use orch_core::error::Error;
use rusqlite::ffi::{self, ErrorCode};

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "sqlite";

/// Classifies a rusqlite error into orch's [`Error`]; `path` is the database file, named in
/// every error an operator has to act on.
///
/// The engine reads only `is_retryable()`: `Unavailable` is "try again later", everything
/// else is fatal for the operation.
pub(crate) fn map_err(e: rusqlite::Error, path: &Path) -> Error {
    let file = path.display();
    match e {
        rusqlite::Error::SqliteFailure(ffi::Error { code, extended_code }, ref msg) => {
            let detail = msg.clone().unwrap_or_else(|| code_text(extended_code));
            match code {
                // Another connection (this process's other handle, or another process) held
                // the lock for longer than `busy_timeout`: transient by nature.
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Unavailable {
                    backend: BACKEND.into(),
                    message: format!("{file} is locked by another connection ({detail}); raise busy_timeout if this persists"),
                    retry_after: Some(std::time::Duration::from_millis(50)),
                    source: Some(Box::new(e)),
                },
                // A unique or primary key is taken: the create-if-absent paths handle the key
                // itself with ON CONFLICT, so this is a second job with an id already in use.
                ErrorCode::ConstraintViolation
                    if extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                        || extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    Error::already_exists(format!("row in {file} ({detail})"))
                }
                // NOT NULL, CHECK, FOREIGN KEY: the input broke a rule of the schema.
                ErrorCode::ConstraintViolation => {
                    Error::invalid_input("sqlite row", format!("rejected by {file}: {detail}"))
                }
                // The file is damaged, or is not SQLite at all (garbage, another format, a
                // truncated copy): no retry helps, an operator must act.
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Error::invalid_input(
                    "database.path",
                    format!(
                        "{file} is not a usable SQLite database ({detail}); restore it from a backup, \
                         or move it away to start with an empty database"
                    ),
                ),
                ErrorCode::CannotOpen => Error::invalid_input(
                    "database.path",
                    format!("cannot open {file} ({detail}); check that the directory exists and is writable"),
                ),
                ErrorCode::PermissionDenied | ErrorCode::ReadOnly | ErrorCode::AuthorizationForStatementDenied => {
                    Error::invalid_input(
                        "database.path",
                        format!("{file} cannot be written ({detail}); check the permissions of the file, its -wal and -shm files and its directory"),
                    )
                }
                // Freeing space (or a checkpoint shrinking the WAL) lets the same write succeed.
                ErrorCode::DiskFull => Error::Unavailable {
                    backend: BACKEND.into(),
                    message: format!("disk full while writing {file}: {detail}"),
                    retry_after: Some(std::time::Duration::from_secs(5)),
                    source: Some(Box::new(e)),
                },
                // I/O hiccups, interrupted statements, a schema change under a prepared
                // statement (re-prepared on the next try) and memory pressure are transient.
                ErrorCode::SystemIoFailure
                | ErrorCode::OperationInterrupted
                | ErrorCode::OperationAborted
                | ErrorCode::SchemaChanged
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed => Error::Unavailable {
                    backend: BACKEND.into(),
                    message: format!("{file}: {detail}"),
                    retry_after: None,
                    source: Some(Box::new(e)),
                },
                ErrorCode::TooBig => {
                    Error::invalid_input("sqlite row", format!("value too large for {file}: {detail}"))
                }
                ErrorCode::NoLargeFileSupport => Error::unsupported(format!("large files ({file})"), BACKEND),
                // SQL errors ("no such table" on an unmigrated file, …), misuse, internal
                // malfunctions: a bug or a file orch did not set up.
                _ => Error::internal_from(format!("sqlite error on {file}: {detail}"), e),
            }
        }
        rusqlite::Error::QueryReturnedNoRows => Error::not_found(format!("row in {file}")),
        // A stored value orch cannot read back: the file was edited by something else.
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => Error::invalid_input(
            "sqlite row",
            format!("{file} holds a value orch cannot read ({e}); was the file changed by another program?"),
        ),
        rusqlite::Error::ToSqlConversionFailure(_) | rusqlite::Error::NulError(_) => {
            Error::invalid_input("sqlite parameter", e.to_string())
        }
        rusqlite::Error::InvalidPath(_) => Error::invalid_input(
            "database.path",
            format!("{file} is not a valid path for SQLite (it must be valid UTF-8)"),
        ),
        other => Error::internal_from(format!("sqlite error on {file}"), other),
    }
}

/// A copy of `e` good enough to classify it again: used when one failed commit fails every
/// request of a group.
pub(crate) fn duplicate(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => rusqlite::Error::SqliteFailure(*code, msg.clone()),
        other => rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_ERROR), Some(other.to_string())),
    }
}

fn code_text(code: std::os::raw::c_int) -> String {
    ffi::Error::new(code).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn busy_and_locked_are_retryable() {
        for c in [ffi::SQLITE_BUSY, ffi::SQLITE_LOCKED, ffi::SQLITE_IOERR, ffi::SQLITE_FULL] {
            let e = map_err(failure(c), Path::new("x.db"));
            assert!(e.is_retryable(), "{c}: {e}");
        }
    }

    #[test]
    fn damaged_files_name_the_path_and_are_fatal() {
        for c in [ffi::SQLITE_CORRUPT, ffi::SQLITE_NOTADB, ffi::SQLITE_CANTOPEN, ffi::SQLITE_READONLY] {
            let e = map_err(failure(c), Path::new("/data/orch.db"));
            assert!(matches!(e, Error::InvalidInput { .. }), "{c}: {e:?}");
            assert!(e.to_string().contains("/data/orch.db"), "{e}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn unique_violation_is_already_exists_other_constraints_invalid() {
        let e = map_err(failure(ffi::SQLITE_CONSTRAINT_PRIMARYKEY), Path::new("x.db"));
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
        let e = map_err(failure(ffi::SQLITE_CONSTRAINT_NOTNULL), Path::new("x.db"));
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    }
}
