//! The one place where PostgreSQL and driver errors become orch errors.

use std::io::ErrorKind;
use std::time::Duration;

use orch_core::error::Error;

/// Backend name in errors and metrics.
pub(crate) const BACKEND: &str = "postgres";

/// What an error message names: the server (redacted URL) and the schema.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// The URL without its password.
    pub(crate) url: String,
    /// The schema orch's tables live in.
    pub(crate) schema: String,
}

fn unavailable(message: String, retry_after: Option<Duration>, e: sqlx::Error) -> Error {
    Error::Unavailable { backend: BACKEND.into(), message, retry_after, source: Some(Box::new(e)) }
}

/// Classifies a driver error into orch's [`Error`].
///
/// The engine reads only `is_retryable()`: `Unavailable` is "try again later" (the server is
/// restarting, overloaded, failing over, or a transaction lost a race); `InvalidInput` is a
/// configuration or setup problem an operator must fix, and names the key to change.
pub(crate) fn map_err(e: sqlx::Error, at: &Place) -> Error {
    let url = &at.url;
    match e {
        sqlx::Error::Database(ref db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let msg = db.message().to_owned();
            let class = code.get(..2).unwrap_or("");
            match (class, code.as_str()) {
                // A lost serialization race or deadlock: the same transaction succeeds on retry.
                (_, "40001") | (_, "40P01") => {
                    unavailable(format!("transaction conflict ({code}: {msg})"), Some(Duration::from_millis(10)), e)
                }
                // Server shutting down or restarting (57P01 admin_shutdown, 57P02 crash_shutdown,
                // 57P03 cannot_connect_now), a statement cancelled by statement_timeout
                // (57014), a lock not obtained (55P03), a read-only server during failover
                // (25006), connection problems (08), out of resources (53: too many
                // connections, disk full) and system errors (58): all transient.
                ("57", _) | ("08", _) | ("53", _) | ("58", _) | (_, "55P03") | (_, "25006") => {
                    unavailable(format!("{url}: {msg} ({code})"), Some(Duration::from_millis(500)), e)
                }
                // The database named in the URL does not exist.
                (_, "3D000") => Error::invalid_input(
                    "database.url",
                    format!("{url}: {msg}; create the database (CREATE DATABASE …) or fix the URL"),
                ),
                // Unknown role, wrong password, or pg_hba.conf refusing the client.
                ("28", _) => Error::invalid_input(
                    "database.url",
                    format!("{url} refused the login: {msg} ({code}); check the user name and password in the URL"),
                ),
                // The schema or a table is missing: the database was never set up.
                (_, "3F000") | (_, "42P01") => Error::invalid_input(
                    "database.schema",
                    format!("{url}: {msg}; schema {:?} is not set up: run `orchestrator setup` first", at.schema),
                ),
                (_, "42501") => Error::invalid_input(
                    "database.url",
                    format!(
                        "{url}: {msg}; grant the role in the URL the rights on schema {:?} (or use its owner)",
                        at.schema
                    ),
                ),
                // Create-if-absent paths handle the job key with ON CONFLICT, so a unique
                // violation is a job id (or other primary key) already in use.
                (_, "23505") => {
                    Error::already_exists(format!("row ({}) in {url}", db.constraint().unwrap_or("unique key")))
                }
                // NOT NULL, CHECK, FOREIGN KEY, or a value the column cannot hold.
                ("23", _) | ("22", _) => {
                    Error::invalid_input("postgres row", format!("rejected by {url}: {msg} ({code})"))
                }
                // Anything else (syntax, undefined function…) is a bug or a schema orch did not
                // create.
                _ => Error::internal_from(format!("postgres error on {url}: {msg} ({code})"), e),
            }
        }
        sqlx::Error::Io(ref io) => {
            let hint = match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused; is PostgreSQL running and listening there?",
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                    "connection lost; the server may be restarting"
                }
                ErrorKind::UnexpectedEof => "the server closed the connection",
                ErrorKind::TimedOut => "timed out",
                _ => "I/O error",
            };
            let message = format!("cannot reach {url}: {hint} ({io})");
            unavailable(message, Some(Duration::from_millis(500)), e)
        }
        sqlx::Error::PoolTimedOut => unavailable(
            format!(
                "no connection to {url} became available within connect_timeout; the server is down \
                 or every connection is busy (raise max_connections)"
            ),
            Some(Duration::from_secs(1)),
            e,
        ),
        // Only `PostgresStore::close` closes the pool.
        sqlx::Error::PoolClosed => Error::ShuttingDown,
        // A handshake failure is a configuration mismatch (sslmode=require against a server
        // without TLS, an untrusted certificate), not something a retry fixes.
        sqlx::Error::Tls(ref t) => Error::invalid_input(
            "database.url",
            format!("TLS with {url} failed ({t}); check sslmode / sslrootcert in the URL"),
        ),
        sqlx::Error::Configuration(ref c) => Error::invalid_input("database.url", format!("{url} is not usable ({c})")),
        // Garbage on the wire: usually not a PostgreSQL server at that port; sometimes a
        // connection cut mid-message. Retrying is harmless either way.
        sqlx::Error::Protocol(ref p) => unavailable(
            format!("{url} answered something that is not the PostgreSQL protocol ({p}); check host and port"),
            Some(Duration::from_secs(1)),
            e,
        ),
        // A stored value orch cannot read: the tables were changed by something else.
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => Error::invalid_input(
            "database.schema",
            format!(
                "schema {:?} on {url} holds data orch cannot read ({e}); was it changed by another program?",
                at.schema
            ),
        ),
        sqlx::Error::Encode(ref x) => Error::invalid_input("postgres parameter", x.to_string()),
        sqlx::Error::RowNotFound => Error::not_found(format!("row in {url}")),
        other => Error::internal_from(format!("postgres driver error on {url}"), other),
    }
}

/// A stored value that does not decode into an orch type.
pub(crate) fn corrupt(at: &Place, what: impl std::fmt::Display) -> Error {
    Error::invalid_input(
        "database.schema",
        format!(
            "schema {:?} on {} holds a value orch cannot read: {what}; was it changed by another program?",
            at.schema, at.url
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::fmt;

    use sqlx::error::{DatabaseError, ErrorKind as DbKind};

    use super::*;

    #[derive(Debug)]
    struct Fake(&'static str);

    impl fmt::Display for Fake {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "fake {}", self.0)
        }
    }

    impl std::error::Error for Fake {}

    impl DatabaseError for Fake {
        fn message(&self) -> &str {
            "server said no"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> DbKind {
            DbKind::Other
        }
    }

    fn place() -> Place {
        Place { url: "postgres://orch:<redacted>@db:5432/orch".into(), schema: "orch".into() }
    }

    fn db(code: &'static str) -> Error {
        map_err(sqlx::Error::Database(Box::new(Fake(code))), &place())
    }

    #[test]
    fn transient_server_states_are_retryable() {
        for code in ["40001", "40P01", "57P01", "57P02", "57P03", "57014", "08006", "53300", "55P03", "25006"] {
            let e = db(code);
            assert!(e.is_retryable(), "{code}: {e}");
        }
        let io = map_err(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()), &place());
        assert!(io.is_retryable() && io.to_string().contains("refused"), "{io}");
        let io = map_err(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()), &place());
        assert!(io.is_retryable(), "{io}");
        assert!(map_err(sqlx::Error::PoolTimedOut, &place()).is_retryable());
    }

    #[test]
    fn setup_problems_are_fatal_and_name_the_key() {
        for (code, key) in [
            ("3D000", "database.url"),
            ("28P01", "database.url"),
            ("28000", "database.url"),
            ("42501", "database.url"),
            ("3F000", "database.schema"),
            ("42P01", "database.schema"),
        ] {
            let e = db(code);
            assert!(!e.is_retryable(), "{code}: {e}");
            assert!(matches!(&e, Error::InvalidInput { field, .. } if field == key), "{code}: {e:?}");
        }
        assert!(db("42P01").to_string().contains("orchestrator setup"));
    }

    #[test]
    fn unique_violation_is_already_exists() {
        assert!(matches!(db("23505"), Error::AlreadyExists { .. }));
        assert!(matches!(db("23502"), Error::InvalidInput { .. }));
        assert!(matches!(db("42601"), Error::Internal { .. }));
    }
}
