#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod db;
mod error;
mod schema;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use orch_core::db::Database;
use orch_core::error::{Error, Result};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;

pub use config::PostgresConfig;
pub use schema::SCHEMA_VERSION;

use error::{map_err, Place, BACKEND};

/// A pooled connection to the PostgreSQL schema that holds orch's jobs, history, worker
/// registry and leader leases.
///
/// Cheap to clone (clones share the pool). Any number of stores — in one process or in many —
/// may use one schema together: claims skip each other's locked rows, and leases and epochs
/// fence stale writers. Connections that break (server restart, failover, network cut) are
/// dropped and replaced by the pool; calls made while the server is away fail with a retryable
/// `Unavailable`.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    at: Arc<Place>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.at.url)
            .field("schema", &self.at.schema)
            .field("connections", &self.pool.size())
            .finish()
    }
}

/// Idle connections older than this are checked with a round trip before use, so a server
/// restart during a quiet period costs no failed call; busy connections are not checked.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Validates `config`, connects, and checks that the schema was set up by a compatible orch.
    ///
    /// Errors: `InvalidInput` naming the key for a bad or missing URL, an unknown database or
    /// role, a refused password, a schema that is missing (run `orchestrator setup`) or newer
    /// than this code (upgrade orch); `Unavailable` when the server cannot be reached within
    /// `connect_timeout`.
    pub async fn connect(config: PostgresConfig) -> Result<PostgresStore> {
        PostgresStore::open(config, true).await
    }

    /// Connects and brings the schema to [`SCHEMA_VERSION`] (what `orchestrator setup` does).
    pub async fn connect_and_migrate(config: PostgresConfig) -> Result<PostgresStore> {
        let store = PostgresStore::open(config, false).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn open(config: PostgresConfig, check: bool) -> Result<PostgresStore> {
        let opts = config.connect_options()?;
        let at = Place { url: config.redacted_url(), schema: config.schema.clone() };
        // One direct connection first: it reports what is wrong (refused, unknown database,
        // bad login) where the pool would retry until its timeout and only say it timed out.
        let mut conn = tokio::time::timeout(config.connect_timeout, PgConnection::connect_with(&opts))
            .await
            .map_err(|_| {
                Error::unavailable(
                    BACKEND,
                    format!(
                        "{} did not answer within connect_timeout ({}); is the host reachable?",
                        at.url,
                        orch_core::duration::format_duration(config.connect_timeout)
                    ),
                )
            })?
            .map_err(|e| map_err(e, &at))?;
        let checked = if check { schema::check(&mut conn, &at).await } else { Ok(()) };
        // Best effort: the server drops the session when the socket closes anyway.
        let _ = conn.close().await;
        checked?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(0)
            .acquire_timeout(config.connect_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(opts);
        tracing::debug!(target: "orch::postgres", url = %at.url, schema = %at.schema, "connected");
        Ok(PostgresStore { pool, at: Arc::new(at) })
    }

    /// This store as a shared [`Database`].
    pub fn database(&self) -> Arc<dyn Database> {
        Arc::new(self.clone())
    }

    /// The schema holding orch's tables.
    pub fn schema(&self) -> &str {
        &self.at.schema
    }

    /// Closes every connection of this store and its clones; later calls fail with
    /// `ShuttingDown`.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Brings the schema to `version` and no further (for upgrade tests, which need a store
    /// at an old version); `migrate` is the way to set a store up.
    ///
    /// Errors: `InvalidInput` when `version` is 0 or above [`SCHEMA_VERSION`], or when the
    /// schema is newer than this code.
    #[doc(hidden)]
    pub async fn migrate_to_version(&self, version: u32) -> Result<()> {
        if version == 0 || version > SCHEMA_VERSION {
            return Err(Error::invalid_input(
                "version",
                format!("{version} is not a schema version of this orch (1 to {SCHEMA_VERSION})"),
            ));
        }
        let mut conn = self.pool.acquire().await.map_err(|e| map_err(e, &self.at))?;
        schema::migrate_to(&mut conn, &self.at, version).await
    }

    /// Connects without checking the schema version (for upgrade tests, which use a store
    /// at an old version before migrating it).
    #[doc(hidden)]
    pub async fn connect_unchecked(config: PostgresConfig) -> Result<PostgresStore> {
        PostgresStore::open(config, false).await
    }

    /// The planner settings of the store's sessions, as `(name, value)` (for plan checks in
    /// tests, which plan the engine's statements as the store's connections do).
    #[doc(hidden)]
    pub fn planner_settings() -> &'static [(&'static str, &'static str)] {
        &config::PLANNER_SETTINGS
    }

    /// The SQL text of every statement the engine's hot paths run (for plan checks in tests).
    #[doc(hidden)]
    pub fn engine_queries() -> Vec<(&'static str, String)> {
        db::engine_queries()
    }
}
