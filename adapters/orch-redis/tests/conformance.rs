//! The whole Queue conformance suite against a real Redis (`ORCH_TEST_REDIS_URL`).

mod common;

use std::sync::Arc;

use orch_core::queue::Queue;
use orch_redis::{RedisConfig, RedisQueue};

/// A fresh queue (random name) per case; `None` skips when the env var is unset.
async fn make() -> Option<Arc<dyn Queue>> {
    let url = common::url()?;
    let config = RedisConfig::new(url, common::queue_name());
    Some(Arc::new(RedisQueue::connect(config).await.expect("connect to ORCH_TEST_REDIS_URL")))
}

orch_testkit::queue_suite!(make());
