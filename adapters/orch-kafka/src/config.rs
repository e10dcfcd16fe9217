//! [`KafkaConfig`]: where the Kafka cluster is and how the queue uses it.

use std::time::Duration;

use orch_core::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;
/// The longest suffix added to `topic` (`.retry`, `.dead`).
const SUFFIX_LEN: usize = ".retry".len();

/// Settings of the Kafka queue (`[queue] provider = "kafka"`).
///
/// ```toml
/// brokers = ["kafka-1.internal:9092", "kafka-2.internal:9092"]
/// topic = "orch"
/// group = "orch"
/// max_deliveries = 10
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each (required; no default). The client learns the rest
    /// of the cluster from them.
    pub brokers: Vec<String>,
    /// Main topic (default `orch`). `setup` also creates `<topic>.retry` (delayed, nacked and
    /// timed-out messages) and `<topic>.dead` (dead letters). 1–243 characters of
    /// `[A-Za-z0-9._-]`, so the suffixed names stay within Kafka's 249.
    pub topic: String,
    /// Consumer group (default `orch`). Every orch instance of one deployment uses the same
    /// group, so each message goes to one of them. 1–255 characters of `[A-Za-z0-9._-]`.
    pub group: String,
    /// Partitions of each topic created by `setup` (default 6, 1–10000). More partitions let
    /// more instances receive in parallel; existing topics are left as they are.
    pub partitions: i32,
    /// Replication factor of the topics created by `setup` (default: the broker's
    /// `default.replication.factor`).
    pub replication_factor: Option<i16>,
    /// Deliveries after which a message goes to `<topic>.dead` instead of being delivered
    /// again (default 10, at least 1).
    pub max_deliveries: u32,
    /// Most messages one instance holds ready or in flight (default 1000, 1–100000): past it,
    /// fetching pauses until receivers ack, so one instance never hoards the topic.
    pub prefetch: usize,
    /// Timeout of connecting, of metadata and admin requests (default `10s`, at least 100ms).
    #[serde(with = "orch_core::duration")]
    pub connect_timeout: Duration,
    /// How long `send` waits for the brokers to acknowledge a message before failing with a
    /// retryable error (default `30s`, at least 1s).
    #[serde(with = "orch_core::duration")]
    pub send_timeout: Duration,
    /// Consumer group session timeout (default `30s`, 1s–5m): how long the group waits for a
    /// silent instance before giving its partitions (and their unacked messages) to others.
    #[serde(with = "orch_core::duration")]
    pub session_timeout: Duration,
    /// Client id shown in broker logs and metrics (default `orch`).
    pub client_id: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: Vec::new(),
            topic: "orch".into(),
            group: "orch".into(),
            partitions: 6,
            replication_factor: None,
            max_deliveries: 10,
            prefetch: 1000,
            connect_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(30),
            client_id: "orch".into(),
        }
    }
}

impl KafkaConfig {
    /// Defaults with `brokers` (comma-separated `host:port` list) and `topic`.
    pub fn new(brokers: impl AsRef<str>, topic: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.as_ref().split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect(),
            topic: topic.into(),
            ..KafkaConfig::default()
        }
    }

    /// Checks every field; errors name the key and the fix.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.is_empty() {
            return Err(Error::invalid_input("queue.brokers", "is required: set it to e.g. [\"127.0.0.1:9092\"]"));
        }
        for b in &self.brokers {
            validate_broker(b)?;
        }
        validate_name("queue.topic", &self.topic, MAX_TOPIC_LEN - SUFFIX_LEN)?;
        if self.topic == "." || self.topic == ".." {
            return Err(Error::invalid_input("queue.topic", "\".\" and \"..\" are not valid Kafka topic names"));
        }
        validate_name("queue.group", &self.group, 255)?;
        validate_name("queue.client_id", &self.client_id, 255)?;
        if !(1..=10_000).contains(&self.partitions) {
            return Err(Error::invalid_input("queue.partitions", format!("is {}: use 1 to 10000", self.partitions)));
        }
        if let Some(r) = self.replication_factor {
            if r < 1 {
                return Err(Error::invalid_input(
                    "queue.replication_factor",
                    format!("is {r}: use at least 1, or leave it unset for the broker's default"),
                ));
            }
        }
        if self.max_deliveries == 0 {
            return Err(Error::invalid_input("queue.max_deliveries", "is 0: use at least 1 (default 10)"));
        }
        if !(1..=100_000).contains(&self.prefetch) {
            return Err(Error::invalid_input("queue.prefetch", format!("is {}: use 1 to 100000", self.prefetch)));
        }
        if self.connect_timeout < Duration::from_millis(100) {
            return Err(Error::invalid_input("queue.connect_timeout", "is shorter than 100ms: use e.g. \"10s\""));
        }
        if self.send_timeout < Duration::from_secs(1) || self.send_timeout > Duration::from_secs(3600) {
            return Err(Error::invalid_input("queue.send_timeout", "use a value from \"1s\" to \"1h\""));
        }
        if self.session_timeout < Duration::from_secs(1) || self.session_timeout > Duration::from_secs(300) {
            return Err(Error::invalid_input("queue.session_timeout", "use a value from \"1s\" to \"5m\""));
        }
        Ok(())
    }

    /// The bootstrap list in librdkafka's form.
    pub(crate) fn bootstrap(&self) -> String {
        self.brokers.join(",")
    }
}

/// `host:port` with a non-zero port; no scheme (a common slip is `kafka://…` or `tcp://…`).
fn validate_broker(b: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid_input("queue.brokers", format!("{b:?} {why}: write host:port, e.g. \"127.0.0.1:9092\""))
    };
    if b.contains("://") {
        return Err(bad("has a URL scheme"));
    }
    let (host, port) = b.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ',' || c == '/') {
        return Err(bad("has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("has no valid port")),
    }
}

/// Kafka's legal name characters: `[A-Za-z0-9._-]`, 1 to `max` of them.
fn validate_name(key: &str, name: &str, max: usize) -> Result<()> {
    let ok =
        !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(key, format!("{name:?}: use 1-{max} characters of A-Z a-z 0-9 . _ -")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_brokers_and_unknown_keys_are_rejected() {
        let e = KafkaConfig::default().validate().unwrap_err();
        assert!(e.to_string().contains("queue.brokers"), "{e}");
        KafkaConfig::new("127.0.0.1:9092", "q").validate().unwrap();
        let c: KafkaConfig = serde_json::from_str(
            r#"{"brokers":["a:9092","b:9093"],"session_timeout":"10s","max_deliveries":3,"replication_factor":3}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.session_timeout, Duration::from_secs(10));
        assert_eq!(c.max_deliveries, 3);
        assert_eq!(c.replication_factor, Some(3));
        assert_eq!(c.group, "orch");
        assert_eq!(c.bootstrap(), "a:9092,b:9093");
        let e = serde_json::from_str::<KafkaConfig>(r#"{"broker":["x:1"]}"#).unwrap_err();
        assert!(e.to_string().contains("broker"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for b in ["kafka://h:9092", "h", "h:0", "h:notaport", ":9092", "h:99999"] {
            let e = KafkaConfig::new(b, "q").validate().unwrap_err();
            assert!(e.to_string().contains("queue.brokers"), "{b}: {e}");
        }
        KafkaConfig::new("[::1]:9092, kafka.internal:9092", "q").validate().unwrap();
        for t in ["", "has space", "a/b", "..", &"x".repeat(244)] {
            let e = KafkaConfig::new("h:1", t).validate().unwrap_err();
            assert!(e.to_string().contains("queue.topic"), "{t}: {e}");
        }
        let mut c = KafkaConfig::new("h:1", "q");
        c.max_deliveries = 0;
        assert!(c.validate().unwrap_err().to_string().contains("queue.max_deliveries"));
        let mut c = KafkaConfig::new("h:1", "q");
        c.partitions = 0;
        assert!(c.validate().unwrap_err().to_string().contains("queue.partitions"));
        let mut c = KafkaConfig::new("h:1", "q");
        c.replication_factor = Some(0);
        assert!(c.validate().unwrap_err().to_string().contains("queue.replication_factor"));
        let mut c = KafkaConfig::new("h:1", "q");
        c.group = "a b".into();
        assert!(c.validate().unwrap_err().to_string().contains("queue.group"));
        let mut c = KafkaConfig::new("h:1", "q");
        c.send_timeout = Duration::from_millis(10);
        assert!(c.validate().unwrap_err().to_string().contains("queue.send_timeout"));
        let mut c = KafkaConfig::new("h:1", "q");
        c.prefetch = 0;
        assert!(c.validate().unwrap_err().to_string().contains("queue.prefetch"));
    }
}
