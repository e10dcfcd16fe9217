//! The [`Alerts`] port and a de-duplicating, rate-limiting decorator.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::Result;
use crate::forward::port;
use crate::types::Timestamp;

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs a look soon.
    Warning,
    /// Needs an operator now.
    Critical,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Severity.
    pub severity: Severity,
    /// De-duplication key: alerts with the same key within the window are sent once.
    pub key: String,
    /// One line.
    pub summary: String,
    /// More.
    pub details: String,
}

port! {
    /// A notification sink.
    ///
    /// # Contract
    /// `send` delivers or fails; it must not block the caller for long (adapters time out).
    #[async_trait]
    pub trait Alerts: Debug + Send + Sync + 'static {
        /// Deliver one alert.
        async fn send(&self, alert: Alert) -> Result<()>;
    }
}

/// Sends nothing; the default when no sink is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAlerts;

#[async_trait]
impl Alerts for NoAlerts {
    async fn send(&self, _alert: Alert) -> Result<()> {
        Ok(())
    }
}

/// Drops repeats of a key within `window` and caps the rate at `max_per_window` alerts overall,
/// so a failure storm produces a handful of notifications, not thousands.
#[derive(Debug)]
pub struct Deduped<A, C> {
    inner: A,
    clock: C,
    window: Duration,
    max_per_window: usize,
    state: Mutex<DedupState>,
}

#[derive(Debug, Default)]
struct DedupState {
    last_sent: HashMap<String, Timestamp>,
    sent_in_window: Vec<Timestamp>,
    suppressed: u64,
}

impl<A: Alerts, C: Clock> Deduped<A, C> {
    /// Wraps `inner`.
    pub fn new(inner: A, clock: C, window: Duration, max_per_window: usize) -> Self {
        Deduped { inner, clock, window, max_per_window, state: Mutex::new(DedupState::default()) }
    }

    /// Alerts dropped so far.
    pub fn suppressed(&self) -> u64 {
        self.state.lock().map(|s| s.suppressed).unwrap_or(0)
    }
}

#[async_trait]
impl<A: Alerts, C: Clock> Alerts for Deduped<A, C> {
    async fn send(&self, alert: Alert) -> Result<()> {
        let now = self.clock.now();
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let window = self.window;
            s.sent_in_window.retain(|t| now.since(*t) < window);
            let repeat = s.last_sent.get(&alert.key).is_some_and(|t| now.since(*t) < window);
            if repeat || s.sent_in_window.len() >= self.max_per_window {
                s.suppressed += 1;
                return Ok(());
            }
            s.last_sent.insert(alert.key.clone(), now);
            s.sent_in_window.push(now);
        }
        self.inner.send(alert).await
    }
}
