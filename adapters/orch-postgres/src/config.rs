//! [`PostgresConfig`]: where the server is and how to use it.

use std::str::FromStr;
use std::time::Duration;

use orch_core::error::{Error, Result};
use orch_core::secret::{redact_url, Secret};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;

/// Settings of the PostgreSQL store (`[database] provider = "postgres"`).
///
/// ```toml
/// url = "postgres://orch:secret@db.internal:5432/orch"
/// schema = "orch"
/// max_connections = 16
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:5432/database` (required, no default).
    /// Query parameters such as `sslmode=require` or `sslrootcert=…` are honoured; without
    /// `sslmode` the connection uses TLS when the server offers it. Never printed.
    pub url: Secret<String>,
    /// Schema (namespace) holding orch's tables (default `orch`): 1–63 characters of
    /// `a-z`, `0-9`, `_`, not starting with a digit and not starting with `pg_`. Several
    /// deployments can share one database under different schemas.
    pub schema: String,
    /// Most connections kept open to the server (default 16, 1–1000).
    pub max_connections: u32,
    /// How long opening a connection, or waiting for a free one from the pool, may take
    /// before a retryable `Unavailable` (default `10s`).
    #[serde(with = "orch_core::duration")]
    pub connect_timeout: Duration,
    /// Server-side limit on one statement (default `30s`; `0` means none). A statement that
    /// runs longer is cancelled and reported as retryable `Unavailable`.
    #[serde(with = "orch_core::duration")]
    pub statement_timeout: Duration,
    /// `application_name` shown in `pg_stat_activity` (default `orch`).
    pub application_name: String,
    /// PostgreSQL's `synchronous_commit` for orch's sessions (default `true`). `false` makes
    /// commits return before the WAL is flushed: much faster writes, and a server crash may
    /// lose the last fraction of a second of commits (never corrupts). Jobs are re-derived
    /// from the chain, so some deployments accept that.
    pub synchronous_commit: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: Secret::new(String::new()),
            schema: "orch".into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
            application_name: "orch".into(),
            synchronous_commit: true,
        }
    }
}

impl PostgresConfig {
    /// Defaults with the server at `url`.
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig { url: Secret::new(url.into()), ..PostgresConfig::default() }
    }

    /// The URL with its password hidden, for messages.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }

    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        self.connect_options().map(|_| ())
    }

    /// Validates and builds the driver's options (search path, timeouts, name).
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions> {
        let url = self.url.expose().trim();
        if url.is_empty() {
            return Err(Error::invalid_input(
                "database.url",
                "is missing: set it to postgres://user:password@host:5432/database \
                 (or the ORCH_DATABASE__URL environment variable)",
            ));
        }
        let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !scheme_ok {
            return Err(Error::invalid_input(
                "database.url",
                format!("{} is not a PostgreSQL URL: it must start with postgres://", redact_url(url)),
            ));
        }
        validate_schema(&self.schema)?;
        if !(1..=1000).contains(&self.max_connections) {
            return Err(Error::invalid_input(
                "database.max_connections",
                format!("{} is out of range: use 1 to 1000", self.max_connections),
            ));
        }
        if self.connect_timeout < Duration::from_millis(100) || self.connect_timeout > Duration::from_secs(600) {
            return Err(Error::invalid_input("database.connect_timeout", "use a value from \"100ms\" to \"10m\""));
        }
        if self.statement_timeout > Duration::from_secs(24 * 3600) {
            return Err(Error::invalid_input("database.statement_timeout", "use at most \"1d\", or 0 for no limit"));
        }
        let name_ok = !self.application_name.is_empty()
            && self.application_name.len() <= 63
            && self.application_name.bytes().all(|b| b.is_ascii_graphic());
        if !name_ok {
            return Err(Error::invalid_input(
                "database.application_name",
                format!("{:?}: use 1-63 printable ASCII characters without spaces", self.application_name),
            ));
        }
        // The driver's parse error never contains the password; ours shows the URL redacted.
        let opts = PgConnectOptions::from_str(url).map_err(|e| {
            Error::invalid_input(
                "database.url",
                format!(
                    "{} cannot be parsed ({e}); expected postgres://user:password@host:5432/database",
                    redact_url(url)
                ),
            )
        })?;
        let statement_timeout = self.statement_timeout.as_millis().to_string();
        let sync = if self.synchronous_commit { "on" } else { "off" };
        Ok(opts
            .application_name(&self.application_name)
            .options([
                ("search_path", self.schema.as_str()),
                ("statement_timeout", statement_timeout.as_str()),
                ("synchronous_commit", sync),
            ])
            .options(PLANNER_SETTINGS))
    }
}

/// How orch's sessions plan their statements.
///
/// * Generic plans: every statement is prepared once per connection and planned once.
/// * That plan is made at the statement's first run on the connection — on a fresh
///   deployment, while the tables are still empty. On an empty table a sequential scan looks
///   free, so without `enable_seqscan = off` the claim would update its locked rows by
///   scanning the whole table instead of by address, and a lookup by id would read every
///   row, for as long as the connection lives (until an `ANALYZE` invalidates the plan; with
///   autovacuum off, never). Every orch statement has an index path (tests/adapter.rs checks
///   each generic plan, on an empty schema with these settings and on a full one without
///   them); only counts read all of a chain's jobs, through a bitmap of `jobs_key`.
pub(crate) const PLANNER_SETTINGS: [(&str, &str); 2] =
    [("plan_cache_mode", "force_generic_plan"), ("enable_seqscan", "off")];

/// Schema names are used unquoted in SQL, so only plain lower-case identifiers are accepted.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && !schema.starts_with("pg_")
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(
            "database.schema",
            format!("{schema:?}: use 1-63 characters of a-z, 0-9 and _, not starting with a digit or pg_"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_a_url_and_name_the_key() {
        let e = PostgresConfig::default().validate().unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        PostgresConfig::new("postgres://u:pw@localhost/orch").validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected_and_durations_parse() {
        let c: PostgresConfig =
            serde_json::from_str(r#"{"url":"postgres://h/db","connect_timeout":"2s","statement_timeout":0}"#).unwrap();
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.statement_timeout, Duration::ZERO);
        assert_eq!(c.schema, "orch");
        let e = serde_json::from_str::<PostgresConfig>(r#"{"uri":"postgres://h/db"}"#).unwrap_err();
        assert!(e.to_string().contains("uri"), "{e}");
    }

    #[test]
    fn unsafe_schema_names_are_refused() {
        for bad in ["", "Orch", "orch;drop", "1orch", "pg_orch", "or ch", "\"x\"", &"a".repeat(64)] {
            let mut c = PostgresConfig::new("postgres://h/db");
            c.schema = bad.into();
            let e = c.validate().unwrap_err();
            assert!(e.to_string().contains("database.schema"), "{bad:?}: {e}");
        }
        validate_schema("orch_test_1").unwrap();
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_password() {
        for bad in ["mysql://u:hunter2@h/db", "not a url hunter2", "postgres://u:hunter2@h:notaport/db"] {
            let e = PostgresConfig::new(bad).validate().unwrap_err();
            let text = e.to_string();
            assert!(text.contains("database.url"), "{text}");
            assert!(!text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn debug_never_shows_the_url() {
        let c = PostgresConfig::new("postgres://u:hunter2@h/db");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
    }
}
