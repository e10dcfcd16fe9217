//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use orch_rabbit::RabbitConfig;

/// The shared broker's URL, or `None` (with the reason printed) to skip.
pub fn url() -> Option<String> {
    match std::env::var("ORCH_TEST_AMQP_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipping: set ORCH_TEST_AMQP_URL (scripts/services.sh does)");
            None
        }
    }
}

/// A config for a fresh, randomly named queue whose queues the broker deletes 10 minutes
/// after the test stops using them (tests that can, also call `teardown`).
pub fn config(url: &str) -> RabbitConfig {
    let mut c = RabbitConfig::new(url, format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]));
    c.expires = Some(Duration::from_secs(600));
    c
}

/// `host:port` of an AMQP URL.
pub fn authority(url: &str) -> String {
    let uri: lapin::uri::AMQPUri = url.parse().expect("AMQP URL");
    format!("{}:{}", uri.authority.host, uri.authority.port)
}
