//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use orch_kafka::KafkaConfig;
pub use orch_testkit::tansu::PrivateTansu;

/// Why a case cannot run: skip with the reason printed, or fail when CI requires services.
fn missing(var: &str) {
    if std::env::var_os("ORCH_REQUIRE_SERVICES").is_some() {
        panic!("{var} is not set but ORCH_REQUIRE_SERVICES is: run scripts/services.sh");
    }
    eprintln!("skipping: set {var} (scripts/services.sh does)");
}

/// The shared broker list, or `None` (with the reason printed) to skip.
pub fn brokers() -> Option<String> {
    match std::env::var("ORCH_TEST_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            missing("ORCH_TEST_KAFKA_BROKERS");
            None
        }
    }
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
    let bin = match std::env::var("ORCH_TEST_TANSU_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            missing("ORCH_TEST_TANSU_BIN");
            return None;
        }
    };
    let at = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Some(PrivateTansu::start(&bin, at(port), at(advertised)))
}
