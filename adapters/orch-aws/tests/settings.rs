//! Settings that cannot work, refused at load with the key to fix. Its own test binary: it
//! clears the AWS variables of the process environment.

use std::time::Duration;

use orch_aws::{sdk_config, Settings};
use orch_core::error::Error;

fn settings(region: Option<&'static str>, endpoint: Option<&'static str>) -> Settings<'static> {
    Settings {
        section: "queue",
        region,
        endpoint,
        access_key_id: None,
        secret_access_key: None,
        session_token: None,
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        max_attempts: 1,
    }
}

#[tokio::test]
async fn no_region_and_no_credentials_are_clear_errors_naming_the_key() {
    orch_aws::clear_ambient_aws_environment();

    let e = sdk_config(&settings(None, None)).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    assert!(e.to_string().contains("queue.region"), "{e}");

    // With an endpoint override a region is not needed; credentials still are.
    let e = sdk_config(&settings(None, Some("http://127.0.0.1:1"))).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("no AWS credentials") && text.contains("queue.access_key_id"), "{text}");
}
