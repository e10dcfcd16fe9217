//! [`RedisConfig`] and [`RedisCacheConfig`]: where Redis is and how to use it.

use std::time::Duration;

use orch_core::error::{Error, Result};
use orch_core::secret::{redact_url, Secret};
use serde::{Deserialize, Serialize};

/// Settings of the Redis Streams queue (`[queue] provider = "redis"`).
///
/// ```toml
/// url = "redis://:password@redis.internal:6379/0"
/// queue = "orch"
/// max_deliveries = 10
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Redis URL, `redis://[user:password@]host:port[/db]` or `rediss://…` (required; no
    /// default). Kept secret: errors and logs show it with the password redacted.
    pub url: Secret<String>,
    /// Queue name (default `orch`): every key is `orch:{<queue>}:…`, so several queues (or
    /// tenants) share one Redis, and a cluster keeps one queue's keys in one slot.
    /// 1–128 characters of `[A-Za-z0-9._:-]`.
    pub queue: String,
    /// Consumer group name (default `orch`). Every orch instance of one deployment uses the
    /// same group, so each message goes to one of them.
    pub group: String,
    /// Consumer name within the group (default: `orch-` and a random id, new per process).
    /// Only shows in `XINFO`/`XPENDING`; delivery does not depend on it.
    pub consumer: Option<String>,
    /// Deliveries after which a message goes to the dead-letter stream `orch:{<queue>}:dead`
    /// instead of being delivered again (default 10, at least 1).
    pub max_deliveries: u32,
    /// Longest a waiting `receive` blocks before it looks again at the delayed set and at
    /// expired visibility deadlines written by other processes (default `1s`, 10ms–10s).
    /// Sends of immediate messages wake waiting receivers at once whatever this is.
    #[serde(with = "orch_core::duration")]
    pub poll_interval: Duration,
    /// Timeout of one TCP connect (default `5s`).
    #[serde(with = "orch_core::duration")]
    pub connect_timeout: Duration,
    /// Timeout of one command, blocking reads excluded (default `5s`).
    #[serde(with = "orch_core::duration")]
    pub response_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: Secret::default(),
            queue: "orch".into(),
            group: "orch".into(),
            consumer: None,
            max_deliveries: 10,
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisConfig {
    /// Defaults with `url` and `queue`.
    pub fn new(url: impl Into<String>, queue: impl Into<String>) -> RedisConfig {
        RedisConfig { url: Secret::new(url.into()), queue: queue.into(), ..RedisConfig::default() }
    }

    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        validate_url("queue.url", self.url.expose())?;
        validate_name("queue.queue", &self.queue)?;
        validate_name("queue.group", &self.group)?;
        if let Some(c) = &self.consumer {
            validate_name("queue.consumer", c)?;
        }
        if self.max_deliveries == 0 {
            return Err(Error::invalid_input("queue.max_deliveries", "is 0: use at least 1 (default 10)"));
        }
        if self.poll_interval < Duration::from_millis(10) || self.poll_interval > Duration::from_secs(10) {
            return Err(Error::invalid_input("queue.poll_interval", "use a value from \"10ms\" to \"10s\""));
        }
        for (key, d) in
            [("queue.connect_timeout", self.connect_timeout), ("queue.response_timeout", self.response_timeout)]
        {
            if d < Duration::from_millis(10) {
                return Err(Error::invalid_input(key, "is shorter than 10ms: use e.g. \"5s\""));
            }
        }
        Ok(())
    }
}

/// Settings of [`RedisBlockCache`](crate::RedisBlockCache), the shared read-through cache
/// of L2 blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisCacheConfig {
    /// Redis URL (required; no default), as in [`RedisConfig::url`].
    pub url: Secret<String>,
    /// Key namespace (default `orch`), e.g. the chain id: keys are `orch:{<namespace>}:cache:…`.
    /// Watchers of the same chain must use the same namespace to share fetches; different
    /// chains must not. 1–128 characters of `[A-Za-z0-9._:-]`.
    pub namespace: String,
    /// How long a cached block stays in Redis (default `1h`, at least `1s`).
    #[serde(with = "orch_core::duration")]
    pub ttl: Duration,
    /// How long a reader that missed waits for another reader's fetch of the same block
    /// before fetching it itself (default `10s`).
    #[serde(with = "orch_core::duration")]
    pub fetch_lock: Duration,
    /// Timeout of one Redis command and connect (default `500ms`): past it, the read goes to
    /// the chain source directly.
    #[serde(with = "orch_core::duration")]
    pub timeout: Duration,
}

impl Default for RedisCacheConfig {
    fn default() -> Self {
        RedisCacheConfig {
            url: Secret::default(),
            namespace: "orch".into(),
            ttl: Duration::from_secs(3600),
            fetch_lock: Duration::from_secs(10),
            timeout: Duration::from_millis(500),
        }
    }
}

impl RedisCacheConfig {
    /// Defaults with `url` and `namespace`.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> RedisCacheConfig {
        RedisCacheConfig { url: Secret::new(url.into()), namespace: namespace.into(), ..RedisCacheConfig::default() }
    }

    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        validate_url("chain.cache.url", self.url.expose())?;
        validate_name("chain.cache.namespace", &self.namespace)?;
        if self.ttl < Duration::from_secs(1) {
            return Err(Error::invalid_input("chain.cache.ttl", "is shorter than 1s: use e.g. \"1h\""));
        }
        if self.timeout < Duration::from_millis(10) {
            return Err(Error::invalid_input("chain.cache.timeout", "is shorter than 10ms: use e.g. \"500ms\""));
        }
        Ok(())
    }
}

/// Parses the URL the way the client will, so a typo fails at start with the key named.
pub(crate) fn validate_url(key: &str, url: &str) -> Result<()> {
    if url.trim().is_empty() {
        return Err(Error::invalid_input(key, "is required: set it to e.g. \"redis://127.0.0.1:6379\""));
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://")) {
        return Err(Error::invalid_input(
            key,
            format!("{} is not a Redis URL: it must start with redis://, rediss:// or redis+unix://", redact_url(url)),
        ));
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| {
        Error::invalid_input(key, format!("{} is not a valid Redis URL: {}", redact_url(url), e.category()))
    })
}

/// Names used inside keys: 1–128 characters of `[A-Za-z0-9._:-]`.
pub(crate) fn validate_name(key: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(key, format!("{name:?}: use 1-128 characters of A-Z a-z 0-9 . _ : -")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_a_url_and_unknown_keys_are_rejected() {
        let e = RedisConfig::default().validate().unwrap_err();
        assert!(e.to_string().contains("queue.url"), "{e}");
        RedisConfig::new("redis://127.0.0.1:6379", "q").validate().unwrap();
        let c: RedisConfig =
            serde_json::from_str(r#"{"url":"redis://h:6379","poll_interval":"250ms","max_deliveries":3}"#).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.max_deliveries, 3);
        assert_eq!(c.group, "orch");
        let e = serde_json::from_str::<RedisConfig>(r#"{"urll":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("urll"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_never_show_the_password() {
        let e = RedisConfig::new("http://u:hunter2@h", "q").validate().unwrap_err();
        assert!(e.to_string().contains("queue.url") && !e.to_string().contains("hunter2"), "{e}");
        let e = RedisConfig::new("redis://u:hunter2@h:notaport", "q").validate().unwrap_err();
        assert!(e.to_string().contains("queue.url") && !e.to_string().contains("hunter2"), "{e}");
        let e = RedisConfig::new("redis://h", "has space").validate().unwrap_err();
        assert!(e.to_string().contains("queue.queue"), "{e}");
        let mut c = RedisConfig::new("redis://h", "q");
        c.max_deliveries = 0;
        assert!(c.validate().unwrap_err().to_string().contains("max_deliveries"));
        let e = RedisCacheConfig::new("redis://h", "").validate().unwrap_err();
        assert!(e.to_string().contains("namespace"), "{e}");
    }

    #[test]
    fn debug_and_serialize_redact_the_url() {
        let c = RedisConfig::new("redis://:hunter2@h:6379", "q");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
    }
}
