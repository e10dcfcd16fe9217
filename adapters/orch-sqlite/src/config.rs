//! [`SqliteConfig`]: where the file is and how to use it.

use std::path::PathBuf;
use std::time::Duration;

use orch_core::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync at checkpoints only: never corrupts, but a power loss (not a crash) may lose the
    /// last commits. Jobs are re-derivable from the chain, so this is the default.
    #[default]
    Normal,
    /// fsync on every commit: nothing committed is ever lost, at a large write-speed cost.
    Full,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// Settings of the embedded SQLite store (`[database] provider = "sqlite"`).
///
/// ```toml
/// path = "data/orch.db"
/// busy_timeout = "5s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// The database file (default `orch.db`). Created, with its parent directories, if
    /// missing; SQLite keeps `-wal` and `-shm` files beside it.
    pub path: PathBuf,
    /// How long a statement waits for a lock held by another connection or process before it
    /// fails with a retryable `Unavailable` (default `5s`).
    #[serde(with = "orch_core::duration")]
    pub busy_timeout: Duration,
    /// Read connections kept open for lookups and listings (default 4, 1–64). Writes always
    /// go through one writer connection.
    pub read_connections: usize,
    /// Durability of commits (default `normal`).
    pub synchronous: Synchronous,
    /// Page cache per connection, in KiB (default 16384).
    pub cache_kib: u32,
    /// Queue name of [`SqliteStore::default_queue`](crate::SqliteStore::default_queue)
    /// (default `orch`). Several queues share one file under different names.
    pub queue: String,
    /// How often a waiting `receive` looks for messages sent by other processes (default
    /// `25ms`, 1ms–1s). Messages sent through the same store wake receivers at once.
    #[serde(with = "orch_core::duration")]
    pub queue_poll: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("orch.db"),
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            synchronous: Synchronous::Normal,
            cache_kib: 16 * 1024,
            queue: "orch".into(),
            queue_poll: Duration::from_millis(25),
        }
    }
}

impl SqliteConfig {
    /// Defaults with the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SqliteConfig {
        SqliteConfig { path: path.into(), ..SqliteConfig::default() }
    }

    /// Checks every field; errors name the field and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::invalid_input("path", "is empty: give the database file, e.g. \"data/orch.db\""));
        }
        if self.path.to_str().is_none() {
            return Err(Error::invalid_input("path", format!("{} is not valid UTF-8", self.path.display())));
        }
        if !(1..=64).contains(&self.read_connections) {
            return Err(Error::invalid_input(
                "read_connections",
                format!("{} is out of range: use 1 to 64", self.read_connections),
            ));
        }
        if self.queue_poll < Duration::from_millis(1) || self.queue_poll > Duration::from_secs(1) {
            return Err(Error::invalid_input("queue_poll", "use a value from \"1ms\" to \"1s\""));
        }
        validate_queue_name(&self.queue)?;
        Ok(())
    }
}

/// Queue names: 1–128 characters of `[A-Za-z0-9._:-]`.
pub(crate) fn validate_queue_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input("queue", format!("{name:?}: use 1-128 characters of A-Z a-z 0-9 . _ : -")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_rejected() {
        SqliteConfig::default().validate().unwrap();
        let c: SqliteConfig = serde_json::from_str(r#"{"path":"x.db","busy_timeout":"2s","queue_poll":10}"#).unwrap();
        assert_eq!(c.busy_timeout, Duration::from_secs(2));
        assert_eq!(c.queue_poll, Duration::from_millis(10));
        assert_eq!(c.read_connections, 4);
        let e = serde_json::from_str::<SqliteConfig>(r#"{"pth":"x.db"}"#).unwrap_err();
        assert!(e.to_string().contains("pth"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let mut c = SqliteConfig::new("x.db");
        c.read_connections = 0;
        assert!(c.validate().unwrap_err().to_string().contains("read_connections"));
        let mut c = SqliteConfig::new("x.db");
        c.queue = "has space".into();
        assert!(c.validate().unwrap_err().to_string().contains("queue"));
    }
}
