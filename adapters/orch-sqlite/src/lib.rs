#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod conn;
mod db;
mod error;
mod queue;
mod schema;

use std::path::Path;
use std::sync::Arc;

use orch_core::db::Database;
use orch_core::error::{Error, Result};
use tokio::sync::Notify;

pub use config::{SqliteConfig, Synchronous};
pub use queue::SqliteQueue;
pub use schema::SCHEMA_VERSION;

use conn::Conns;

/// One SQLite file holding orch's jobs, history, worker registry, leader leases and queues.
///
/// Cheap to clone (all clones share the connections). It implements [`Database`] itself;
/// [`SqliteStore::queue`] gives [`Queue`](orch_core::queue::Queue) views on the same file.
/// Two stores opened on the same file — in one process or in several — are safe to use
/// together: SQLite serialises their writes and leases fence their jobs.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conns: Arc<Conns>,
    arrived: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database described by `config`.
    ///
    /// Fails with `InvalidInput` naming the file when it is not an SQLite database, is
    /// corrupt, cannot be opened or written, or has a schema newer than this code.
    pub async fn open(config: SqliteConfig) -> Result<SqliteStore> {
        let conns = tokio::task::spawn_blocking(move || Conns::open(config))
            .await
            .map_err(|e| Error::internal_from("opening the sqlite database failed", e))??;
        Ok(SqliteStore { conns: Arc::new(conns), arrived: Arc::new(Notify::new()) })
    }

    /// [`SqliteStore::open`] with default settings for the file at `path`.
    pub async fn open_path(path: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::open(SqliteConfig::new(path.as_ref())).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.conns.path()
    }

    /// This store as a shared [`Database`].
    pub fn database(&self) -> Arc<dyn Database> {
        Arc::new(self.clone())
    }

    /// The queue named `name` in this file (created on first send). Names are 1–128
    /// characters of `[A-Za-z0-9._:-]`.
    pub fn queue(&self, name: &str) -> Result<SqliteQueue> {
        config::validate_queue_name(name)?;
        Ok(SqliteQueue::new(self.conns.clone(), name, self.arrived.clone()))
    }

    /// The queue named by [`SqliteConfig::queue`].
    pub fn default_queue(&self) -> SqliteQueue {
        SqliteQueue::new(self.conns.clone(), &self.conns.shared.config.queue, self.arrived.clone())
    }

    /// Stops this store and all its clones from writing: queued writes finish, later calls
    /// fail. Dropping the last clone does the same.
    pub fn close(&self) {
        self.conns.close();
    }
}
