//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use orch_kafka::KafkaConfig;
use orch_testkit::services::env_or_skip;
pub use orch_testkit::tansu::PrivateTansu;

/// The shared broker list, or `None` to skip (see [`env_or_skip`]).
pub fn brokers() -> Option<String> {
    env_or_skip("ORCH_TEST_KAFKA_BROKERS")
}

/// A random name, so runs never collide.
pub fn name() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// A config for fresh, randomly named topics and group.
pub fn config(brokers: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(brokers, name());
    c.group = name();
    c.partitions = 2;
    c
}

/// A tansu broker of this test on `port` (in memory), advertising `advertised` (e.g. a
/// proxy's port) as its address; `None` (skip, or fail under ORCH_REQUIRE_SERVICES) without
/// `ORCH_TEST_TANSU_BIN`.
pub fn private_tansu(port: u16, advertised: u16) -> Option<PrivateTansu> {
    let bin = env_or_skip("ORCH_TEST_TANSU_BIN")?;
    let at = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Some(PrivateTansu::start(&bin, at(port), at(advertised)))
}
