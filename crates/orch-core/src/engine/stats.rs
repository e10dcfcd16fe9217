//! Engine counters (exported by the API as metrics).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) claimed: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) created: AtomicU64,
    pub(crate) verify_checks: AtomicU64,
    pub(crate) malformed_messages: AtomicU64,
    pub(crate) db_errors: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> EngineStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            claimed: g(&self.claimed),
            completed: g(&self.completed),
            failed: g(&self.failed),
            retried: g(&self.retried),
            deferred: g(&self.deferred),
            conflicts: g(&self.conflicts),
            created: g(&self.created),
            verify_checks: g(&self.verify_checks),
            malformed_messages: g(&self.malformed_messages),
            db_errors: g(&self.db_errors),
        }
    }
}

/// What an engine instance has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Jobs that ran out of attempts or failed for good.
    pub failed: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    /// Claims put back because dependencies were incomplete.
    pub deferred: u64,
    /// Writes rejected by the fence (this instance had lost the job).
    pub conflicts: u64,
    /// Jobs created by this instance's creator.
    pub created: u64,
    /// Verification checks run.
    pub verify_checks: u64,
    /// Queue messages dropped as malformed.
    pub malformed_messages: u64,
    /// Database calls that failed.
    pub db_errors: u64,
}
