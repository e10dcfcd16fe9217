//! The whole Queue conformance suite against SQS (moto in CI, see `scripts/services.sh`).

use std::sync::Arc;

use orch_core::queue::Queue;
use orch_core::secret::Secret;
use orch_sqs::{SqsConfig, SqsQueue};

/// A fresh queue (random name) on the endpoint in `ORCH_TEST_AWS_ENDPOINT`, or `None` to skip.
async fn fresh() -> Option<Arc<dyn Queue>> {
    let endpoint = orch_testkit::services::env_or_skip("ORCH_TEST_AWS_ENDPOINT")?;
    let config = SqsConfig {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some(Secret::new("test".into())),
        secret_access_key: Some(Secret::new("test".into())),
        ..SqsConfig::new(format!("orch-conf-{}", uuid::Uuid::new_v4().simple()))
    };
    Some(Arc::new(SqsQueue::connect(config).await.expect("connect to SQS")) as Arc<dyn Queue>)
}

orch_testkit::queue_suite!(fresh());
