//! The whole Queue conformance suite against a real RabbitMQ (`ORCH_TEST_AMQP_URL`).

mod common;

use std::sync::Arc;

use orch_core::queue::Queue;
use orch_rabbit::RabbitQueue;

/// A fresh queue (random name, auto-expiring) per case; `None` skips when the env var is unset.
async fn make() -> Option<Arc<dyn Queue>> {
    let url = common::url()?;
    Some(Arc::new(RabbitQueue::connect(common::config(&url)).await.expect("connect to ORCH_TEST_AMQP_URL")))
}

orch_testkit::queue_suite!(make());
