//! [`SqsQueue`]: the [`Queue`] port on one SQS standard queue and its dead-letter queue.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use orch_core::error::{Error, Result};
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use orch_core::secret::redact_url;
use tracing::{debug, warn};

use crate::base64;
use crate::config::SqsConfig;
use crate::error::{classify, from_class, map_err, Class, Ctx, BACKEND};

/// SQS's longest per-message delay (`DelaySeconds`); `send` and `nack` refuse longer ones.
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest long-poll wait; a longer `wait` is shortened to it.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's limit on one message body and on the bodies of one batch.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// The largest payload (192 KiB) whose base64 body fits SQS's 256 KiB message limit.
pub const MAX_PAYLOAD_BYTES: usize = MAX_BODY_BYTES / 4 * 3;
/// Entries per batch call, SQS's limit.
const BATCH: usize = 10;
/// Pause between short polls while a sub-second `wait` runs out.
const SHORT_POLL_PAUSE: Duration = Duration::from_millis(100);
/// Message attribute naming why a body was moved to the dead-letter queue by orch itself.
const REJECTED_ATTRIBUTE: &str = "orch_rejected";

/// [`Queue`] on Amazon SQS (or an SQS-compatible emulator).
///
/// * Payloads travel as standard base64 text (SQS bodies must be text), so a payload may be
///   at most [`MAX_PAYLOAD_BYTES`] (192 KiB).
/// * `send` uses `SendMessageBatch` (10 messages or 256 KiB per call) with per-message
///   `DelaySeconds`; delays are rounded up to whole seconds and at most [`MAX_DELAY`].
/// * `receive` long-polls (`WaitTimeSeconds`, at most 20 s) and repeats `ReceiveMessage` (10
///   per call) to fill `max`; `attempt` is `ApproximateReceiveCount`.
/// * `ack` is `DeleteMessageBatch`; `nack` is `ChangeMessageVisibility`.
/// * SQS moves a message received more than `max_receive_count` times to the dead-letter
///   queue (the redrive policy `setup` sets). A body that is not orch's base64 is moved there
///   by `receive` at once, with an `orch_rejected` attribute saying why.
///
/// Cheap to clone; clones share the client.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: aws_sdk_sqs::Client,
    config: SqsConfig,
    main: Target,
    dlq: Target,
}

/// One SQS queue: its name, its URL once known, and how to name it in errors.
#[derive(Debug)]
struct Target {
    name: String,
    url: RwLock<Option<String>>,
    ctx: Ctx,
}

impl Target {
    fn new(name: String, field: &'static str, endpoint: &str) -> Target {
        let ctx = Ctx { place: format!("SQS queue {name:?} at {endpoint}"), field };
        Target { name, url: RwLock::new(None), ctx }
    }

    fn cached(&self) -> Option<String> {
        self.url.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn remember(&self, url: &str) {
        *self.url.write().unwrap_or_else(|p| p.into_inner()) = Some(url.to_owned());
    }
}

impl SqsQueue {
    /// Checks `config` (errors name the key), builds the client and resolves credentials.
    /// Does not touch the queue: [`Queue::setup`] creates it, and the first call that needs
    /// it looks its URL up.
    pub async fn connect(config: SqsConfig) -> Result<SqsQueue> {
        config.validate()?;
        let client = crate::client::build(&config).await?;
        let endpoint = match &config.endpoint {
            Some(e) => redact_url(e).trim_end_matches('/').to_owned(),
            None => format!("region {}", config.region.as_deref().unwrap_or("from the AWS default chain")),
        };
        let main = Target::new(config.queue.clone(), "queue.queue", &endpoint);
        let dlq = Target::new(config.dlq_name(), "queue.dlq", &endpoint);
        Ok(SqsQueue { inner: Arc::new(Inner { client, config, main, dlq }) })
    }

    /// The settings in use.
    pub fn config(&self) -> &SqsConfig {
        &self.inner.config
    }

    /// The SDK client, for what the port does not cover (metrics, operator tools).
    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.inner.client
    }

    /// The queue's URL (looked up once).
    pub async fn queue_url(&self) -> Result<String> {
        self.url(&self.inner.main).await
    }

    /// The dead-letter queue's URL (looked up once).
    pub async fn dlq_url(&self) -> Result<String> {
        self.url(&self.inner.dlq).await
    }

    async fn url(&self, target: &Target) -> Result<String> {
        if let Some(url) = target.cached() {
            return Ok(url);
        }
        let out = self
            .inner
            .client
            .get_queue_url()
            .queue_name(&target.name)
            .send()
            .await
            .map_err(|e| map_err(e, "GetQueueUrl", &target.ctx))?;
        let url = out.queue_url.ok_or_else(|| {
            Error::unavailable(BACKEND, format!("GetQueueUrl for {} returned no URL", target.ctx.place))
        })?;
        target.remember(&url);
        Ok(url)
    }

    /// Creates `target` if missing (without attributes, which SQS accepts for an existing
    /// queue whatever its attributes) and then sets `attributes`, so that a changed setting
    /// is applied instead of failing with "queue already exists".
    async fn ensure(&self, target: &Target, attributes: Vec<(QueueAttributeName, String)>) -> Result<String> {
        let c = &self.inner.client;
        let out = c
            .create_queue()
            .queue_name(&target.name)
            .send()
            .await
            .map_err(|e| map_err(e, "CreateQueue", &target.ctx))?;
        let url = out.queue_url.ok_or_else(|| {
            Error::unavailable(BACKEND, format!("CreateQueue for {} returned no URL", target.ctx.place))
        })?;
        let mut set = c.set_queue_attributes().queue_url(&url);
        for (k, v) in attributes {
            set = set.attributes(k, v);
        }
        set.send().await.map_err(|e| map_err(e, "SetQueueAttributes", &target.ctx))?;
        target.remember(&url);
        Ok(url)
    }

    async fn dlq_arn(&self, url: &str) -> Result<String> {
        let dlq = &self.inner.dlq;
        let out = self
            .inner
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| map_err(e, "GetQueueAttributes", &dlq.ctx))?;
        out.attributes.and_then(|mut a| a.remove(&QueueAttributeName::QueueArn)).ok_or_else(|| {
            Error::unavailable(BACKEND, format!("GetQueueAttributes for {} returned no QueueArn", dlq.ctx.place))
        })
    }

    async fn send_batch(&self, url: &str, entries: Vec<SendMessageBatchRequestEntry>) -> Result<()> {
        let main = &self.inner.main;
        let out = self
            .inner
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| map_err(e, "SendMessageBatch", &main.ctx))?;
        match out.failed.first() {
            None => Ok(()),
            // Duplicates of the entries that did go through are harmless (at-least-once), so
            // the caller may retry the whole send.
            Some(f) => Err(batch_error(f, out.failed.len(), "SendMessageBatch", &main.ctx)),
        }
    }

    /// Turns one received message into a delivery, or moves it to the dead-letter queue
    /// when its body is not orch's.
    async fn accept(&self, url: &str, m: Message) -> Option<Delivery> {
        let Some(receipt) = m.receipt_handle else {
            warn!(target: "orch::queue", message_id = ?m.message_id, "message without a receipt handle skipped");
            return None;
        };
        let body = m.body.unwrap_or_default();
        match base64::decode(&body) {
            Ok(payload) => {
                let attempt = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse::<u32>().ok())
                    .unwrap_or(1)
                    .max(1);
                Some(Delivery { payload, receipt: Receipt(receipt), attempt })
            }
            Err(why) => {
                let reason = format!("body is not orch's base64 encoding: {why}");
                self.quarantine(url, m.message_id.as_deref(), &body, &receipt, &reason).await;
                None
            }
        }
    }

    /// Moves a foreign message to the dead-letter queue. If that fails, the message stays:
    /// it comes back after its visibility timeout and SQS's redrive moves it after
    /// `max_receive_count` receives.
    async fn quarantine(&self, url: &str, id: Option<&str>, body: &str, receipt: &str, reason: &str) {
        warn!(target: "orch::queue", message_id = ?id, queue = %self.inner.main.name, reason, "malformed message moved to the dead-letter queue");
        let moved = async {
            let dlq = self.dlq_url().await?;
            let attr = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(reason)
                .build()
                .map_err(|e| Error::internal_from("building a message attribute", e))?;
            // An empty body is not allowed by SQS; keep a marker instead.
            let body = if body.is_empty() { "(empty body)" } else { body };
            self.inner
                .client
                .send_message()
                .queue_url(&dlq)
                .message_body(body)
                .message_attributes(REJECTED_ATTRIBUTE, attr)
                .send()
                .await
                .map_err(|e| map_err(e, "SendMessage", &self.inner.dlq.ctx))?;
            self.inner
                .client
                .delete_message()
                .queue_url(url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| map_err(e, "DeleteMessage", &self.inner.main.ctx))?;
            Ok::<_, Error>(())
        };
        if let Err(e) = moved.await {
            warn!(target: "orch::queue", message_id = ?id, error = %e, "could not move a malformed message; SQS's redrive will");
        }
    }

    async fn receive_batch(&self, url: &str, n: usize, visibility: i32, wait: i32) -> Result<Vec<Message>> {
        let main = &self.inner.main;
        let attempt_timeout = self.inner.config.request_timeout + Duration::from_secs(wait.unsigned_abs().into());
        let out = self
            .inner
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(n.min(BATCH) as i32)
            .visibility_timeout(visibility)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default().timeout_config(
                    aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(attempt_timeout)
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|e| map_err(e, "ReceiveMessage", &main.ctx))?;
        Ok(out.messages.unwrap_or_default())
    }
}

/// Whole seconds of `d`, rounded up (a delay must never come early), at most `max`.
fn whole_seconds(d: Duration, max: Duration, field: &str) -> Result<i32> {
    if d > max {
        return Err(Error::invalid_input(
            field,
            format!("{d:?} is longer than SQS allows ({}s); use at most {max:?}", max.as_secs()),
        ));
    }
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Ok(secs.min(max.as_secs()) as i32)
}

/// The error for a failed batch entry (`count` entries failed in all).
fn batch_error(f: &BatchResultErrorEntry, count: usize, op: &str, ctx: &Ctx) -> Error {
    // Without a code, `sender_fault` decides: the request's fault is fatal, SQS's is not.
    let class = classify(&f.code, if f.sender_fault { 400 } else { 500 });
    let detail = format!(
        "{count} entr{} failed, e.g. {} ({}): {}",
        if count == 1 { "y" } else { "ies" },
        f.code,
        if f.sender_fault { "sender fault" } else { "service fault" },
        f.message.as_deref().unwrap_or("")
    );
    from_class(class, op, ctx, &detail, None)
}

/// Whether an error of a receipt-handle operation means the receipt is stale: the message
/// was already acked, redelivered under a new receipt, or expired. Delays and visibilities
/// are checked before the call, so an invalid parameter can only be the receipt.
fn is_stale_receipt<E: aws_sdk_sqs::error::ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            matches!(classify(code, se.raw().status().as_u16()), Class::StaleReceipt)
                || code.ends_with("InvalidParameterValue")
        }
        _ => false,
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities { native_delay: true, fifo: false, dead_letter: true, max_delay: MAX_DELAY }
    }

    /// Creates the dead-letter queue, then the queue, and sets the queue's redrive policy
    /// and both retention periods. Safe to run again, also after a setting changed.
    async fn setup(&self) -> Result<()> {
        let c = &self.inner.config;
        let dlq_url = self
            .ensure(
                &self.inner.dlq,
                vec![(QueueAttributeName::MessageRetentionPeriod, c.dlq_retention.as_secs().to_string())],
            )
            .await?;
        let arn = self.dlq_arn(&dlq_url).await?;
        let policy = serde_json::json!({
            "deadLetterTargetArn": arn,
            "maxReceiveCount": c.max_receive_count.to_string(),
        })
        .to_string();
        self.ensure(
            &self.inner.main,
            vec![
                (QueueAttributeName::RedrivePolicy, policy),
                (QueueAttributeName::MessageRetentionPeriod, c.message_retention.as_secs().to_string()),
            ],
        )
        .await?;
        Ok(())
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        // Check everything first: a bad message fails the call before anything is sent.
        let mut bodies = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            if m.payload.len() > MAX_PAYLOAD_BYTES {
                return Err(Error::invalid_input(
                    "message payload",
                    format!(
                        "message {i} has {} bytes; SQS carries at most {MAX_PAYLOAD_BYTES} bytes per message (base64 of 256 KiB)",
                        m.payload.len()
                    ),
                ));
            }
            bodies.push((base64::encode(&m.payload), whole_seconds(m.delay, MAX_DELAY, "message delay")?));
        }
        let url = self.queue_url().await?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut batch_bytes = 0;
        for (body, delay) in bodies {
            if batch.len() == BATCH || batch_bytes + body.len() > MAX_BODY_BYTES {
                self.send_batch(&url, std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
            batch_bytes += body.len();
            let entry = SendMessageBatchRequestEntry::builder()
                .id(batch.len().to_string())
                .message_body(body)
                .delay_seconds(delay)
                .build()
                .map_err(|e| Error::internal_from("building an SQS batch entry", e))?;
            batch.push(entry);
        }
        if !batch.is_empty() {
            self.send_batch(&url, batch).await?;
        }
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        let vis = whole_seconds(visibility, MAX_VISIBILITY, "visibility")?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let url = self.queue_url().await?;
        let wait = wait.min(MAX_WAIT);
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut first = true;
        loop {
            let want = (max - out.len()).min(BATCH);
            // Long-poll only for the first messages, and never past `wait` (SQS counts
            // whole seconds, so the first poll takes the whole seconds of `wait` and later
            // ones what is left); once some arrived, take what is there without waiting.
            let poll = match (first, out.is_empty()) {
                (true, _) => wait.as_secs() as i32,
                (false, true) => deadline.saturating_duration_since(Instant::now()).as_secs() as i32,
                (false, false) => 0,
            };
            first = false;
            let got = self.receive_batch(&url, want, vis, poll).await?;
            let n = got.len();
            for m in got {
                if let Some(d) = self.accept(&url, m).await {
                    out.push(d);
                }
            }
            if out.len() >= max {
                break;
            }
            if n == 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if !out.is_empty() || left.is_zero() {
                    break;
                }
                // Less than a second of `wait` left: short-poll until it is used up.
                tokio::time::sleep(left.min(SHORT_POLL_PAUSE)).await;
            }
        }
        Ok(out)
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let url = self.queue_url().await?;
        let main = &self.inner.main;
        for chunk in receipts.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&r.0).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::internal_from("building an SQS delete entry", e))?;
            let out = self
                .inner
                .client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| map_err(e, "DeleteMessageBatch", &main.ctx))?;
            // A stale or unknown receipt acks nothing (contract rule 3); anything else fails.
            let stale = |f: &&BatchResultErrorEntry| {
                classify(&f.code, 400) == Class::StaleReceipt || f.code.ends_with("InvalidParameterValue")
            };
            let (skipped, failed): (Vec<_>, Vec<_>) = out.failed.iter().partition(stale);
            if !skipped.is_empty() {
                debug!(target: "orch::queue", count = skipped.len(), "stale receipts acked nothing");
            }
            if let Some(f) = failed.first() {
                return Err(batch_error(f, failed.len(), "DeleteMessageBatch", &main.ctx));
            }
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let secs = whole_seconds(delay, MAX_DELAY, "nack delay")?;
        let url = self.queue_url().await?;
        let res = self
            .inner
            .client
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(secs)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_stale_receipt(&e) => {
                debug!(target: "orch::queue", "stale receipt nacked nothing");
                Ok(())
            }
            Err(e) => Err(map_err(e, "ChangeMessageVisibility", &self.inner.main.ctx)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_and_are_bounded() {
        assert_eq!(whole_seconds(Duration::ZERO, MAX_DELAY, "d").unwrap(), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1), MAX_DELAY, "d").unwrap(), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2500), MAX_DELAY, "d").unwrap(), 3);
        assert_eq!(whole_seconds(MAX_DELAY, MAX_DELAY, "d").unwrap(), 900);
        let e = whole_seconds(MAX_DELAY + Duration::from_millis(1), MAX_DELAY, "message delay").unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("message delay"), "{e}");
    }

    #[test]
    fn payload_limit_fits_a_body() {
        assert!(base64::encoded_len(MAX_PAYLOAD_BYTES) <= MAX_BODY_BYTES);
        assert!(base64::encoded_len(MAX_PAYLOAD_BYTES + 1) > MAX_BODY_BYTES);
    }
}
