//! Builds the SDK client from [`SqsConfig`].

use orch_core::error::Result;

use crate::config::SqsConfig;

/// An SQS client as `config` says, with credentials checked once.
pub(crate) async fn build(config: &SqsConfig) -> Result<aws_sdk_sqs::Client> {
    let settings = orch_aws::Settings {
        section: "queue",
        region: config.region.as_deref(),
        endpoint: config.endpoint.as_deref(),
        access_key_id: config.access_key_id.as_ref(),
        secret_access_key: config.secret_access_key.as_ref(),
        session_token: config.session_token.as_ref(),
        request_timeout: config.request_timeout,
        connect_timeout: config.connect_timeout,
        max_attempts: config.max_attempts,
    };
    Ok(aws_sdk_sqs::Client::new(&orch_aws::sdk_config(&settings).await?))
}
