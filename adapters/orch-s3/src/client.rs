//! Builds the SDK client from [`S3Config`].

use aws_sdk_s3::config::RequestChecksumCalculation;
use orch_core::error::Result;

use crate::config::S3Config;

/// An S3 client as `config` says, with credentials checked once, and the region it uses.
pub(crate) async fn build(config: &S3Config) -> Result<(aws_sdk_s3::Client, String)> {
    let settings = orch_aws::Settings {
        section: "storage",
        region: config.region.as_deref(),
        endpoint: config.endpoint.as_deref(),
        access_key_id: config.access_key_id.as_ref(),
        secret_access_key: config.secret_access_key.as_ref(),
        session_token: config.session_token.as_ref(),
        request_timeout: config.request_timeout,
        connect_timeout: config.connect_timeout,
        max_attempts: config.max_attempts,
    };
    let sdk = orch_aws::sdk_config(&settings).await?;
    let region = sdk.region().map_or_else(|| orch_aws::EMULATOR_REGION.to_owned(), |r| r.to_string());
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(config.path_style())
        // orch sends its own SHA-256 with single PUTs; parts of a multipart upload carry
        // none, which every S3-compatible store accepts.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    Ok((aws_sdk_s3::Client::from_conf(s3), region))
}
