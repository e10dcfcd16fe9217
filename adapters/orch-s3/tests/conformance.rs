//! The whole Storage conformance suite against S3 (moto in CI, see `scripts/services.sh`).

use std::sync::{Arc, OnceLock};

use orch_core::secret::Secret;
use orch_core::storage::Storage;
use orch_s3::{S3Config, S3Storage};

/// One random bucket for this run; the suite's cases use fresh prefixes inside it.
fn bucket() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| format!("orch-conf-{}", uuid::Uuid::new_v4().simple()))
}

async fn store(prefix: String) -> Option<Arc<dyn Storage>> {
    let endpoint = orch_testkit::services::env_or_skip("ORCH_TEST_AWS_ENDPOINT")?;
    let config = S3Config {
        prefix: Some(prefix),
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some(Secret::new("test".into())),
        secret_access_key: Some(Secret::new("test".into())),
        ..S3Config::new(bucket())
    };
    Some(Arc::new(S3Storage::connect(config).await.expect("connect to S3")) as Arc<dyn Storage>)
}

orch_testkit::storage_suite!(store);
