//! A deterministic test clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orch_core::clock::Clock;
use orch_core::types::Timestamp;

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct TestClock {
    ms: AtomicU64,
}

impl TestClock {
    /// A clock at `start`.
    pub fn at(start: Timestamp) -> TestClock {
        TestClock { ms: AtomicU64::new(start.0) }
    }

    /// Moves forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.ms.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the time; never moves backwards.
    pub fn set(&self, t: Timestamp) {
        self.ms.fetch_max(t.0, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.ms.load(Ordering::SeqCst))
    }
}
