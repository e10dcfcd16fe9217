//! The [`EventBus`] port: job transitions out to subscribers.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::forward::port;
use crate::job::Transition;
use crate::types::{JobId, JobKey};

/// A job changed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Which job.
    pub job_id: JobId,
    /// Its key.
    pub key: JobKey,
    /// The change.
    pub transition: Transition,
}

port! {
    /// Publishes job events.
    ///
    /// # Contract
    /// `publish` never blocks and never fails the engine: a slow or absent subscriber loses events
    /// (and should resynchronise from the Database), the engine does not wait.
    pub trait EventBus: Debug + Send + Sync + 'static {
        /// Whether anyone listens now; the engine skips building events when not.
        fn is_active(&self) -> bool;
        /// Hand an event to subscribers.
        fn publish(&self, event: JobEvent);
    }
}

/// In-process fan-out on a bounded broadcast channel; lagging receivers skip ahead.
#[derive(Debug, Clone)]
pub struct BroadcastBus {
    tx: broadcast::Sender<JobEvent>,
}

impl BroadcastBus {
    /// A bus keeping at most `capacity` undelivered events per subscriber.
    pub fn new(capacity: usize) -> BroadcastBus {
        BroadcastBus { tx: broadcast::channel(capacity.max(1)).0 }
    }

    /// A new subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.tx.subscribe()
    }
}

impl EventBus for BroadcastBus {
    fn is_active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    fn publish(&self, event: JobEvent) {
        // No receiver is fine: events are best-effort by contract.
        let _ = self.tx.send(event);
    }
}
