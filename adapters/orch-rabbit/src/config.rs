//! [`RabbitConfig`]: where the broker is and how to use it.

use std::time::Duration;

use orch_core::error::{Error, Result};
use orch_core::secret::{redact_url, Secret};
use serde::{Deserialize, Serialize};

/// Settings of the RabbitMQ queue (`[queue] provider = "rabbitmq"`).
///
/// ```toml
/// url = "amqp://orch:password@rabbit.internal:5672/%2f"
/// queue = "orch"
/// prefetch = 100
/// delay_tiers = ["1s", "5s", "30s", "5m", "30m", "3h", "1d"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitConfig {
    /// AMQP URL, `amqp://user:password@host:port/vhost` (required; no default; the default
    /// vhost `/` is written `%2f`). Kept secret: errors and logs show it with the password
    /// redacted. TLS (`amqps://`) is not compiled in.
    pub url: Secret<String>,
    /// Main queue name (default `orch`). The adapter also declares `<queue>.dead` (dead
    /// letters) and one `<queue>.delay.<tier>` queue per delay tier. 1–200 characters of
    /// `[A-Za-z0-9._:-]`.
    pub queue: String,
    /// Unacked messages the broker hands this instance at once (default 100, 1–65535):
    /// messages in flight plus those buffered for the next `receive`.
    pub prefetch: u16,
    /// Deliveries after which a message goes to `<queue>.dead` instead of being delivered
    /// again (default 10, at least 1).
    pub max_deliveries: u32,
    /// TTL of the delay queues, ascending (default 1s, 5s, 30s, 5m, 30m, 3h, 1d). A delay is
    /// served by chaining the largest tiers that fit, so a message is never early and at most
    /// one smallest tier late. 1–16 distinct tiers from 100ms to 7d.
    #[serde(with = "durations")]
    pub delay_tiers: Vec<Duration>,
    /// Timeout of connecting and of one broker operation (default `10s`).
    #[serde(with = "orch_core::duration")]
    pub timeout: Duration,
    /// Longest wait between reconnect attempts after the connection was lost (default `5s`);
    /// the wait starts at 100ms and doubles.
    #[serde(with = "orch_core::duration")]
    pub max_backoff: Duration,
    /// Delete the declared queues after they have been unused for this long (`x-expires`;
    /// default none). For tests and throw-away deployments only: a delay queue counts as
    /// unused even while it holds messages.
    #[serde(with = "opt_duration")]
    pub expires: Option<Duration>,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            url: Secret::default(),
            queue: "orch".into(),
            prefetch: 100,
            max_deliveries: 10,
            delay_tiers: [1, 5, 30, 300, 1800, 10_800, 86_400].into_iter().map(Duration::from_secs).collect(),
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5),
            expires: None,
        }
    }
}

impl RabbitConfig {
    /// Defaults with `url` and `queue`.
    pub fn new(url: impl Into<String>, queue: impl Into<String>) -> RabbitConfig {
        RabbitConfig { url: Secret::new(url.into()), queue: queue.into(), ..RabbitConfig::default() }
    }

    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        let url = self.url.expose();
        if url.trim().is_empty() {
            return Err(Error::invalid_input(
                "queue.url",
                "is required: set it to e.g. \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            ));
        }
        if url.starts_with("amqps://") {
            return Err(Error::invalid_input(
                "queue.url",
                "amqps:// (TLS) is not supported by this build: use amqp://",
            ));
        }
        if !url.starts_with("amqp://") {
            return Err(Error::invalid_input(
                "queue.url",
                format!("{} is not an AMQP URL: it must start with amqp://", redact_url(url)),
            ));
        }
        url.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            // The parser's message may quote the URL: keep only its first words.
            let reason = e.split(':').next().unwrap_or("unparsable").to_string();
            Error::invalid_input("queue.url", format!("{} is not a valid AMQP URL ({reason})", redact_url(url)))
        })?;
        let ok = !self.queue.is_empty()
            && self.queue.len() <= 200
            && self.queue.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            return Err(Error::invalid_input(
                "queue.queue",
                format!("{:?}: use 1-200 characters of A-Z a-z 0-9 . _ : -", self.queue),
            ));
        }
        if self.prefetch == 0 {
            return Err(Error::invalid_input("queue.prefetch", "is 0 (unlimited): use 1 to 65535 (default 100)"));
        }
        if self.max_deliveries == 0 {
            return Err(Error::invalid_input("queue.max_deliveries", "is 0: use at least 1 (default 10)"));
        }
        let t = &self.delay_tiers;
        if t.is_empty() || t.len() > 16 {
            return Err(Error::invalid_input(
                "queue.delay_tiers",
                "give 1 to 16 durations, e.g. [\"1s\", \"30s\", \"5m\"]",
            ));
        }
        if t.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid_input(
                "queue.delay_tiers",
                "must be strictly ascending, e.g. [\"1s\", \"30s\", \"5m\"]",
            ));
        }
        if t[0] < Duration::from_millis(100) || t[t.len() - 1] > Duration::from_secs(7 * 86_400) {
            return Err(Error::invalid_input("queue.delay_tiers", "each tier must be from \"100ms\" to \"7d\""));
        }
        if self.timeout < Duration::from_millis(100) {
            return Err(Error::invalid_input("queue.timeout", "is shorter than 100ms: use e.g. \"10s\""));
        }
        if self.max_backoff < Duration::from_millis(100) {
            return Err(Error::invalid_input("queue.max_backoff", "is shorter than 100ms: use e.g. \"5s\""));
        }
        if let Some(e) = self.expires {
            if e < Duration::from_secs(1) {
                return Err(Error::invalid_input(
                    "queue.expires",
                    "is shorter than 1s: use e.g. \"10m\", or leave it unset",
                ));
            }
        }
        Ok(())
    }
}

/// A list of human durations.
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(transparent)]
    struct D(#[serde(with = "orch_core::duration")] Duration);

    pub(super) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|d| D(*d)).collect::<Vec<_>>().serialize(s)
    }

    pub(super) fn deserialize<'de, De: Deserializer<'de>>(d: De) -> Result<Vec<Duration>, De::Error> {
        Ok(Vec::<D>::deserialize(d)?.into_iter().map(|D(d)| d).collect())
    }
}

/// An optional human duration.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(transparent)]
    struct D(#[serde(with = "orch_core::duration")] Duration);

    pub(super) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        v.map(D).serialize(s)
    }

    pub(super) fn deserialize<'de, De: Deserializer<'de>>(d: De) -> Result<Option<Duration>, De::Error> {
        Ok(Option::<D>::deserialize(d)?.map(|D(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_a_url_and_unknown_keys_are_rejected() {
        let e = RabbitConfig::default().validate().unwrap_err();
        assert!(e.to_string().contains("queue.url"), "{e}");
        RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f", "q").validate().unwrap();
        use serde::de::value::{Error as DeError, MapDeserializer};
        let map = |kv: Vec<(&'static str, &'static str)>| MapDeserializer::<_, DeError>::new(kv.into_iter());
        let c = RabbitConfig::deserialize(map(vec![("url", "amqp://h"), ("timeout", "2s")])).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.prefetch, 100);
        let e = RabbitConfig::deserialize(map(vec![("prefech", "5")])).unwrap_err();
        assert!(e.to_string().contains("prefech"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_never_show_the_password() {
        for url in ["http://u:hunter2@h", "amqp://u:hunter2@h:notaport/%2f"] {
            let e = RabbitConfig::new(url, "q").validate().unwrap_err();
            assert!(e.to_string().contains("queue.url") && !e.to_string().contains("hunter2"), "{e}");
        }
        let mut c = RabbitConfig::new("amqp://h", "q");
        c.delay_tiers = vec![Duration::from_secs(5), Duration::from_secs(1)];
        assert!(c.validate().unwrap_err().to_string().contains("delay_tiers"));
        let mut c = RabbitConfig::new("amqp://h", "q");
        c.prefetch = 0;
        assert!(c.validate().unwrap_err().to_string().contains("prefetch"));
        assert!(!format!("{:?}", RabbitConfig::new("amqp://u:hunter2@h", "q")).contains("hunter2"));
    }
}
