//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use orch_core::queue::Queue;
use orch_core::secret::Secret;
use orch_sqs::{SqsConfig, SqsQueue};

/// The SQS endpoint of the tests (moto), or `None` to skip (see
/// [`orch_testkit::services::env_or_skip`]).
pub fn endpoint() -> Option<String> {
    orch_testkit::services::env_or_skip("ORCH_TEST_AWS_ENDPOINT")
}

/// Settings for a fresh, randomly named queue at `endpoint` with dummy credentials.
pub fn config(endpoint: &str) -> SqsConfig {
    SqsConfig {
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some(Secret::new("test".into())),
        secret_access_key: Some(Secret::new("test".into())),
        ..SqsConfig::new(format!("orch-test-{}", uuid::Uuid::new_v4().simple()))
    }
}

/// A fresh queue at `endpoint` (see [`config`]), set up.
pub async fn fresh_queue(endpoint: &str) -> SqsQueue {
    let q = SqsQueue::connect(config(endpoint)).await.unwrap();
    q.setup().await.unwrap();
    q
}

/// Bodies (and `orch_rejected` attributes) on the dead-letter queue, received raw.
pub async fn dead_letters(q: &SqsQueue, want: usize) -> Vec<(String, Option<String>)> {
    let url = q.dlq_url().await.unwrap();
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while out.len() < want && Instant::now() < end {
        let got = q
            .client()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            let why =
                m.message_attributes.as_ref().and_then(|a| a.get("orch_rejected")).and_then(|v| v.string_value.clone());
            out.push((m.body.unwrap_or_default(), why));
        }
    }
    out
}

/// The attributes `names` of the queue at `url`, as SQS reports them.
pub async fn attributes(q: &SqsQueue, url: &str, names: &[QueueAttributeName]) -> HashMap<QueueAttributeName, String> {
    let mut call = q.client().get_queue_attributes().queue_url(url);
    for name in names {
        call = call.attribute_names(name.clone());
    }
    call.send().await.unwrap().attributes.unwrap_or_default()
}

/// Messages on the queue at `url`: (visible, in flight), as SQS reports them.
pub async fn counts(q: &SqsQueue, url: &str) -> (String, String) {
    let names =
        [QueueAttributeName::ApproximateNumberOfMessages, QueueAttributeName::ApproximateNumberOfMessagesNotVisible];
    let attrs = attributes(q, url, &names).await;
    let get = |k: QueueAttributeName| attrs.get(&k).cloned().unwrap_or_default();
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}
