//! The [`Clock`] port, so time is injectable and tests are deterministic.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::forward::port;
use crate::types::Timestamp;

port! {
    /// A source of the current time.
    ///
    /// # Contract
    /// `now` never goes backwards between two calls on the same clock.
    pub trait Clock: Debug + Send + Sync + 'static {
        /// Current time.
        fn now(&self) -> Timestamp;
    }
}

/// Wall-clock time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Timestamp(ms as u64)
    }
}
