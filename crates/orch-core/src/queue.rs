//! The [`Queue`] port: wake-up hints between instances. Never the source of truth.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::forward::port;
use crate::types::{Epoch, JobId, JobKind};

/// What a queue can do natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueCapabilities {
    /// `send` honours `delay` itself (otherwise the adapter emulates it, e.g. with a delay set).
    pub native_delay: bool,
    /// Deliveries come in send order.
    pub fifo: bool,
    /// Messages nacked too often move to a dead-letter queue.
    pub dead_letter: bool,
    /// Longest delay accepted by `send`/`nack`.
    pub max_delay: Duration,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Opaque payload (orch sends [`WakeMessage`] JSON).
    pub payload: Vec<u8>,
    /// Do not deliver before this much time has passed.
    pub delay: Duration,
}

/// Identifies one delivery for `ack`/`nack`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Payload as sent.
    pub payload: Vec<u8>,
    /// For `ack`/`nack`.
    pub receipt: Receipt,
    /// 1 for the first delivery, more for redeliveries (when the backend knows).
    pub attempt: u32,
}

port! {
    /// A queue.
    ///
    /// # Contract
    /// 1. `send` enqueues every message; a message is not delivered before its `delay` has passed.
    /// 2. `receive` returns up to `max` messages, waiting at most `wait` for the first. A received
    ///    message is invisible to other receivers for `visibility`; if it is neither acked nor
    ///    nacked by then it is delivered again (at-least-once).
    /// 3. `ack` removes a message for good; acking an unknown or already-acked receipt is not an
    ///    error. A receipt is valid until its message is acked, nacked or delivered again; a stale
    ///    receipt acks nothing.
    /// 4. `nack` makes the message deliverable again after `delay`, with `attempt + 1`; where
    ///    [`QueueCapabilities::dead_letter`] is set, the backend may move it to its DLQ instead
    ///    after its configured redrive count.
    /// 5. Payloads are opaque bytes, returned unchanged. Delivery may duplicate or reorder
    ///    messages unless [`QueueCapabilities::fifo`] says otherwise.
    #[async_trait]
    pub trait Queue: Debug + Send + Sync + 'static {
        /// Backend name.
        fn backend(&self) -> &'static str;
        /// What it supports.
        fn capabilities(&self) -> QueueCapabilities;
        /// Creates the queue (and its DLQ, topics, …) if missing; idempotent.
        async fn setup(&self) -> Result<()>;
        /// Enqueue messages.
        async fn send(&self, messages: Vec<OutMessage>) -> Result<()>;
        /// Receive up to `max` messages.
        async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>>;
        /// Remove delivered messages.
        async fn ack(&self, receipts: &[Receipt]) -> Result<()>;
        /// Return a delivered message for redelivery after `delay`.
        async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()>;
    }
}

/// The message orch puts on its queue: "job `job_id` may be due at `epoch`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WakeMessage {
    /// Format version (1).
    pub v: u8,
    /// The job.
    pub job_id: JobId,
    /// Its kind.
    pub kind: JobKind,
    /// Epoch when sent: a message older than the job's epoch is stale (and harmless).
    pub epoch: Epoch,
}

impl WakeMessage {
    /// Version 1 message.
    pub fn new(job_id: JobId, kind: JobKind, epoch: Epoch) -> WakeMessage {
        WakeMessage { v: 1, job_id, kind, epoch }
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses JSON bytes, rejecting unknown versions and fields.
    pub fn decode(bytes: &[u8]) -> Result<WakeMessage> {
        let m: WakeMessage = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid_input("queue message", format!("not an orch wake message: {e}")))?;
        if m.v != 1 {
            return Err(Error::invalid_input(
                "queue message",
                format!("format version {} is not supported by this orch (expects 1)", m.v),
            ));
        }
        Ok(m)
    }
}
