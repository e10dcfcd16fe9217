//! The whole Queue conformance suite against a real Kafka API (`ORCH_TEST_KAFKA_BROKERS`).

mod common;

use std::sync::Arc;

use orch_core::queue::Queue;
use orch_kafka::KafkaQueue;

/// Fresh topics and group (random names) per case; `None` skips when the env var is unset.
async fn make() -> Option<Arc<dyn Queue>> {
    let brokers = common::brokers()?;
    let q = KafkaQueue::connect(common::config(&brokers)).await.expect("connect to ORCH_TEST_KAFKA_BROKERS");
    Some(Arc::new(q))
}

orch_testkit::queue_suite!(make());
