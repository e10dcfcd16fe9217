//! [`MongoConfig`]: where the server is and which database orch uses.

use std::time::Duration;

use orch_core::error::{Error, Result};
use orch_core::secret::Secret;
use serde::{Deserialize, Serialize};

/// Settings of the MongoDB store (`[database] provider = "mongo"`).
///
/// ```toml
/// url = "mongodb://orch:password@db-0:27017,db-1:27017/?replicaSet=rs0"
/// database = "orch"
/// connect_timeout = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoConfig {
    /// Connection string, `mongodb://…` or `mongodb+srv://…` (required, no default). It may
    /// carry a user and password, so it is a secret: never printed, logged or serialized.
    pub url: Secret<String>,
    /// Database holding orch's collections (default `orch`). 1–63 bytes, none of
    /// `/ \ . " $ * < > : | ?`, spaces or NUL.
    pub database: String,
    /// How long connecting and selecting a server may take before a call fails with a
    /// retryable `Unavailable` (default `10s`, 100ms–5m).
    #[serde(with = "orch_core::duration")]
    pub connect_timeout: Duration,
    /// Most connections the driver opens to one server (default 16, 1–1000).
    pub max_pool_size: u32,
    /// Most requests one batch call (`update_jobs`, claims, wakes) runs concurrently
    /// (default 8, 1–256).
    pub concurrency: usize,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            url: Secret::new(String::new()),
            database: "orch".into(),
            connect_timeout: Duration::from_secs(10),
            max_pool_size: 16,
            concurrency: 8,
        }
    }
}

impl MongoConfig {
    /// Defaults with the server at `url`.
    pub fn new(url: impl Into<String>) -> MongoConfig {
        MongoConfig { url: Secret::new(url.into()), ..MongoConfig::default() }
    }

    /// Checks every field; errors name the key (`database.url`, …) and the fix.
    pub fn validate(&self) -> Result<()> {
        let url = self.url.expose().trim();
        if url.is_empty() {
            return Err(Error::invalid_input(
                "database.url",
                "is missing: set it to a MongoDB connection string, e.g. \"mongodb://127.0.0.1:27017\" \
                 (or ORCH_DATABASE__URL)",
            ));
        }
        if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
            return Err(Error::invalid_input(
                "database.url",
                format!(
                    "{} is not a MongoDB connection string: it must start with mongodb:// or mongodb+srv://",
                    orch_core::secret::redact_url(url)
                ),
            ));
        }
        validate_database_name(&self.database)?;
        if self.connect_timeout < Duration::from_millis(100) || self.connect_timeout > Duration::from_secs(300) {
            return Err(Error::invalid_input("database.connect_timeout", "use a value from \"100ms\" to \"5m\""));
        }
        if !(1..=1000).contains(&self.max_pool_size) {
            return Err(Error::invalid_input(
                "database.max_pool_size",
                format!("{} is out of range: use 1 to 1000", self.max_pool_size),
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(Error::invalid_input(
                "database.concurrency",
                format!("{} is out of range: use 1 to 256", self.concurrency),
            ));
        }
        Ok(())
    }
}

/// MongoDB's rules for database names (the stricter, cross-platform set).
pub(crate) fn validate_database_name(name: &str) -> Result<()> {
    const FORBIDDEN: &[char] = &['/', '\\', '.', '"', '$', '*', '<', '>', ':', '|', '?', ' ', '\0'];
    if name.is_empty() || name.len() > 63 || name.contains(FORBIDDEN) {
        return Err(Error::invalid_input(
            "database.database",
            format!("{name:?}: use 1-63 bytes without spaces or any of / \\ . \" $ * < > : | ?"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_url_and_unknown_keys_are_rejected() {
        let e = MongoConfig::default().validate().unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        MongoConfig::new("mongodb://127.0.0.1:27017").validate().unwrap();
        let c: MongoConfig =
            serde_json::from_str(r#"{"url":"mongodb://h","database":"x","connect_timeout":"2s"}"#).unwrap();
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.database, "x");
        assert_eq!(c.max_pool_size, 16);
        let e = serde_json::from_str::<MongoConfig>(r#"{"uri":"mongodb://h"}"#).unwrap_err();
        assert!(e.to_string().contains("uri"), "{e}");
    }

    #[test]
    fn the_url_is_never_shown() {
        let c = MongoConfig::new("mongodb://orch:hunter2@db:27017/orch");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
        let e = MongoConfig::new("postgres://orch:hunter2@db/orch").validate().unwrap_err().to_string();
        assert!(e.contains("database.url") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (name, ok) in [("orch", true), ("a.b", false), ("", false), ("has space", false), ("x$", false)] {
            let mut c = MongoConfig::new("mongodb://h");
            c.database = name.into();
            match c.validate() {
                Ok(()) => assert!(ok, "{name:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{name:?}: {e}");
                    assert!(e.to_string().contains("database.database"), "{e}");
                }
            }
        }
        let mut c = MongoConfig::new("mongodb://h");
        c.database = "x".repeat(64);
        assert!(c.validate().is_err());
        let mut c = MongoConfig::new("mongodb://h");
        c.connect_timeout = Duration::from_millis(1);
        assert!(c.validate().unwrap_err().to_string().contains("database.connect_timeout"));
        let mut c = MongoConfig::new("mongodb://h");
        c.max_pool_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("database.max_pool_size"));
    }
}
