//! Missing credentials. Its own test binary because it clears the AWS variables of the
//! process environment.

use orch_core::error::Error;
use orch_s3::{S3Config, S3Storage};

#[tokio::test]
async fn missing_credentials_are_a_clear_error_at_connect() {
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_PROFILE",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/orch-test/config");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/orch-test/credentials");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
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
