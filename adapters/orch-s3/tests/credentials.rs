//! Missing credentials. Its own test binary because it clears the AWS variables of the
//! process environment.

use orch_core::error::Error;
use orch_s3::{S3Config, S3Storage};

#[tokio::test]
async fn missing_credentials_are_a_clear_error_at_connect() {
    orch_aws::clear_ambient_aws_environment();
    let config = S3Config {
        endpoint: Some("http://127.0.0.1:1".into()),
        region: Some("us-east-1".into()),
        ..S3Config::new("orch-no-credentials")
    };
    let e = S3Storage::connect(config).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("no AWS credentials") && text.contains("storage.access_key_id"), "{text}");
}
