//! Builds the SDK client from [`S3Config`].

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{Credentials, ProvideCredentials, RequestChecksumCalculation};
use aws_sdk_s3::error::DisplayErrorContext;
use orch_core::error::{Error, Result};

use crate::config::S3Config;

/// Region used with an endpoint override when the default chain has none: S3-compatible
/// stores accept any region, and the SDK refuses to sign without one.
const EMULATOR_REGION: &str = "us-east-1";

/// An S3 client as `config` says, with credentials checked once: a missing or broken
/// credential source fails here with a clear error instead of on every call.
pub(crate) async fn build(config: &S3Config) -> Result<(aws_sdk_s3::Client, String)> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(config.connect_timeout)
        .operation_attempt_timeout(config.request_timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts))
        .timeout_config(timeouts);
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint.trim_end_matches('/'));
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        let token = config.session_token.as_ref().map(|t| t.expose().clone());
        loader = loader.credentials_provider(Credentials::new(
            id.expose().clone(),
            secret.expose().clone(),
            token,
            None,
            "orch-config",
        ));
    }
    let mut sdk = loader.load().await;
    if sdk.region().is_none() {
        if config.endpoint.is_none() {
            return Err(Error::invalid_input(
                "storage.region",
                "is not set and the AWS default chain (AWS_REGION, AWS_DEFAULT_REGION, the profile) has none; set it, e.g. \"eu-west-1\"",
            ));
        }
        sdk = sdk.into_builder().region(Region::from_static(EMULATOR_REGION)).build();
    }
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| EMULATOR_REGION.to_owned());
    let Some(provider) = sdk.credentials_provider() else {
        return Err(no_credentials("no credential source is configured"));
    };
    if let Err(e) = provider.provide_credentials().await {
        return Err(no_credentials(&DisplayErrorContext(&e).to_string()));
    }
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(config.path_style())
        // orch sends its own SHA-256 with single PUTs; parts of a multipart upload carry
        // none, which every S3-compatible store accepts.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    Ok((aws_sdk_s3::Client::from_conf(s3), region))
}

fn no_credentials(detail: &str) -> Error {
    Error::invalid_input(
        "storage.access_key_id",
        format!(
            "no AWS credentials found ({detail}); set storage.access_key_id and storage.secret_access_key, \
             or provide credentials through the AWS default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
             AWS_PROFILE, web identity, ECS or EC2 instance roles)"
        ),
    )
}
