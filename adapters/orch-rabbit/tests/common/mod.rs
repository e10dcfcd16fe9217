//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use orch_rabbit::RabbitConfig;

/// The shared broker's URL, or `None` to skip (see [`orch_testkit::services::env_or_skip`]).
pub fn url() -> Option<String> {
    orch_testkit::services::env_or_skip("ORCH_TEST_AMQP_URL")
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
