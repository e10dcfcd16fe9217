//! [`SqsConfig`]: which queue, where, and with which credentials.

use std::time::Duration;

use orch_core::error::{Error, Result};
use orch_core::secret::Secret;
use serde::{Deserialize, Serialize};

/// Settings of the SQS queue (`[queue] provider = "sqs"`).
///
/// ```toml
/// queue = "orch-mainnet"
/// region = "eu-west-1"
/// max_receive_count = 10
/// # endpoint = "http://127.0.0.1:5000"   # an emulator (moto, LocalStack, ElasticMQ)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqsConfig {
    /// Name of the queue (default `orch`): 1–80 characters of `A-Z a-z 0-9 _ -`. FIFO
    /// queues (`.fifo`) are not supported: orch needs per-message delays, which FIFO queues
    /// lack.
    pub queue: String,
    /// Name of the dead-letter queue (default `{queue}-dlq`), same syntax as `queue`.
    pub dlq: Option<String>,
    /// Receives after which SQS moves a message to the dead-letter queue (default 10,
    /// 1–1000): the `maxReceiveCount` of the queue's redrive policy, set by `setup`.
    pub max_receive_count: u32,
    /// How long the queue keeps an undelivered message (default `4d`, 60s–14d).
    #[serde(with = "orch_core::duration")]
    pub message_retention: Duration,
    /// How long the dead-letter queue keeps a message (default `14d`, 60s–14d).
    #[serde(with = "orch_core::duration")]
    pub dlq_retention: Duration,
    /// AWS region, e.g. `eu-west-1` (default: the AWS default chain — `AWS_REGION`, the
    /// profile; `us-east-1` when `endpoint` is set and the chain has none).
    pub region: Option<String>,
    /// Endpoint override for emulators and VPC endpoints, e.g. `http://127.0.0.1:5000`
    /// (default none: the regional AWS endpoint).
    pub endpoint: Option<String>,
    /// Access key id (default none: the AWS default credential chain — environment,
    /// profile, web identity, ECS, EC2 instance metadata). Set together with
    /// `secret_access_key`.
    pub access_key_id: Option<Secret<String>>,
    /// Secret access key for `access_key_id` (default none).
    pub secret_access_key: Option<Secret<String>>,
    /// Session token of temporary credentials (default none).
    pub session_token: Option<Secret<String>>,
    /// Limit for one HTTP attempt, on top of the long-poll wait for `receive` (default `30s`,
    /// 1s–5m). A slower attempt fails and is retried.
    #[serde(with = "orch_core::duration")]
    pub request_timeout: Duration,
    /// Limit for opening a connection (default `5s`, 100ms–1m).
    #[serde(with = "orch_core::duration")]
    pub connect_timeout: Duration,
    /// Attempts per call, the first included, before a transient error is returned to the
    /// engine as retryable (default 3, 1–10). The SDK backs off between attempts.
    pub max_attempts: u32,
}

impl Default for SqsConfig {
    fn default() -> Self {
        SqsConfig {
            queue: "orch".into(),
            dlq: None,
            max_receive_count: 10,
            message_retention: Duration::from_secs(4 * 86_400),
            dlq_retention: Duration::from_secs(14 * 86_400),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

/// SQS's bounds on the retention period.
const MIN_RETENTION: Duration = Duration::from_secs(60);
const MAX_RETENTION: Duration = Duration::from_secs(14 * 86_400);

impl SqsConfig {
    /// Defaults with the queue named `queue`.
    pub fn new(queue: impl Into<String>) -> SqsConfig {
        SqsConfig { queue: queue.into(), ..SqsConfig::default() }
    }

    /// The dead-letter queue's name: `dlq`, or `{queue}-dlq`.
    pub fn dlq_name(&self) -> String {
        self.dlq.clone().unwrap_or_else(|| format!("{}-dlq", self.queue))
    }

    /// Checks every field; errors name the field and the fix.
    pub fn validate(&self) -> Result<()> {
        validate_queue_name("queue.queue", &self.queue)?;
        let dlq = self.dlq_name();
        validate_queue_name("queue.dlq", &dlq)?;
        if dlq == self.queue {
            return Err(Error::invalid_input("queue.dlq", "must differ from queue.queue"));
        }
        if !(1..=1000).contains(&self.max_receive_count) {
            return Err(Error::invalid_input(
                "queue.max_receive_count",
                format!("{} is out of range: use 1 to 1000", self.max_receive_count),
            ));
        }
        for (field, d) in
            [("queue.message_retention", self.message_retention), ("queue.dlq_retention", self.dlq_retention)]
        {
            if !(MIN_RETENTION..=MAX_RETENTION).contains(&d) {
                return Err(Error::invalid_input(field, "use a value from \"60s\" to \"14d\" (SQS's limits)"));
            }
        }
        if let Some(r) = &self.region {
            let ok = !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !ok {
                return Err(Error::invalid_input(
                    "queue.region",
                    format!("{r:?} is not a region name, e.g. \"eu-west-1\""),
                ));
            }
        }
        if let Some(e) = &self.endpoint {
            let scheme_ok = e.starts_with("http://") || e.starts_with("https://");
            if !scheme_ok || e.len() <= "https://".len() || e.contains(char::is_whitespace) {
                return Err(Error::invalid_input(
                    "queue.endpoint",
                    format!(
                        "{} is not an http(s) URL; write e.g. \"http://127.0.0.1:5000\"",
                        orch_core::secret::redact_url(e)
                    ),
                ));
            }
        }
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(_), None) => {
                return Err(Error::invalid_input(
                    "queue.secret_access_key",
                    "is missing: access_key_id is set, so set its secret_access_key too (or neither, for the AWS default credential chain)",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::invalid_input(
                    "queue.access_key_id",
                    "is missing: secret_access_key is set, so set its access_key_id too (or neither, for the AWS default credential chain)",
                ))
            }
            (Some(id), Some(secret)) if id.expose().is_empty() || secret.expose().is_empty() => {
                return Err(Error::invalid_input("queue.access_key_id", "access_key_id and secret_access_key must not be empty"))
            }
            _ => {}
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            return Err(Error::invalid_input(
                "queue.session_token",
                "is only used with access_key_id and secret_access_key",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.request_timeout) {
            return Err(Error::invalid_input("queue.request_timeout", "use a value from \"1s\" to \"5m\""));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.connect_timeout) {
            return Err(Error::invalid_input("queue.connect_timeout", "use a value from \"100ms\" to \"1m\""));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(Error::invalid_input(
                "queue.max_attempts",
                format!("{} is out of range: use 1 to 10", self.max_attempts),
            ));
        }
        Ok(())
    }
}

/// SQS standard-queue names: 1–80 characters of `[A-Za-z0-9_-]`.
fn validate_queue_name(field: &str, name: &str) -> Result<()> {
    if name.ends_with(".fifo") {
        return Err(Error::invalid_input(
            field,
            format!(
                "{name:?} is a FIFO queue: orch needs per-message delays, which FIFO queues lack; use a standard queue"
            ),
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 80
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(field, format!("{name:?}: use 1-80 characters of A-Z a-z 0-9 _ -")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_rejected() {
        let c = SqsConfig::default();
        c.validate().unwrap();
        assert_eq!(c.dlq_name(), "orch-dlq");
        let c: SqsConfig =
            serde_json::from_str(r#"{"queue":"jobs","max_receive_count":3,"request_timeout":"10s"}"#).unwrap();
        assert_eq!(c.max_receive_count, 3);
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.dlq_name(), "jobs-dlq");
        let e = serde_json::from_str::<SqsConfig>(r#"{"queue_name":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("queue_name"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: Vec<(SqsConfig, &str)> = vec![
            (SqsConfig::new("has space"), "queue.queue"),
            (SqsConfig::new("jobs.fifo"), "queue.queue"),
            (SqsConfig::new("x".repeat(78)), "queue.dlq"),
            (SqsConfig { dlq: Some("a".into()), ..SqsConfig::new("a") }, "queue.dlq"),
            (SqsConfig { max_receive_count: 0, ..SqsConfig::default() }, "queue.max_receive_count"),
            (
                SqsConfig { message_retention: Duration::from_secs(1), ..SqsConfig::default() },
                "queue.message_retention",
            ),
            (SqsConfig { endpoint: Some("127.0.0.1:5000".into()), ..SqsConfig::default() }, "queue.endpoint"),
            (SqsConfig { region: Some("eu west".into()), ..SqsConfig::default() }, "queue.region"),
            (
                SqsConfig { access_key_id: Some(Secret::new("AKIA".into())), ..SqsConfig::default() },
                "queue.secret_access_key",
            ),
            (SqsConfig { max_attempts: 0, ..SqsConfig::default() }, "queue.max_attempts"),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = SqsConfig {
            access_key_id: Some(Secret::new("AKIAEXAMPLE".into())),
            secret_access_key: Some(Secret::new("hunter2".into())),
            ..SqsConfig::default()
        };
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("hunter2") && !shown.contains("AKIAEXAMPLE"), "{shown}");
    }
}
