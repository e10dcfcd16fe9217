//! Deterministic latency and failure injection shared by the simulated components.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orch_core::error::{Error, Result};

use crate::config::Faults;
use crate::mix::{chance, h64};

/// Decides, per call, how long it takes and whether it fails. The `k`-th call of a component
/// always gets the same answer for one seed; concurrent callers share the counter, so which
/// caller is the `k`-th is up to the scheduler, but the sequence is fixed.
#[derive(Debug)]
pub(crate) struct Injector {
    backend: &'static str,
    key: u64,
    cfg: Faults,
    inert: bool,
    calls: AtomicU64,
    injected: AtomicU64,
}

/// What the injector decided for a call that went ahead.
#[derive(Debug)]
pub(crate) enum Strike {
    /// The call succeeds.
    Clear,
    /// The call's effect happens, then its answer is lost.
    AfterEffect(Error),
}

impl Strike {
    /// The call's answer: `value`, or the lost-answer error.
    pub(crate) fn finish<T>(self, value: T) -> Result<T> {
        match self {
            Strike::Clear => Ok(value),
            Strike::AfterEffect(e) => Err(e),
        }
    }
}

impl Injector {
    pub(crate) fn new(backend: &'static str, seed: u64, tag: u64, cfg: Faults) -> Injector {
        let inert = cfg.is_inert();
        Injector { backend, key: h64(&[seed, tag]), cfg, inert, calls: AtomicU64::new(0), injected: AtomicU64::new(0) }
    }

    /// Failures injected so far.
    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Start a call without an effect: sleep the latency, maybe fail.
    pub(crate) async fn read(&self, op: &'static str) -> Result<()> {
        match self.enter(op, false).await? {
            Strike::Clear => Ok(()),
            Strike::AfterEffect(e) => Err(e),
        }
    }

    /// Start a call with an effect: sleep the latency, maybe fail now, maybe after the effect.
    pub(crate) async fn effect(&self, op: &'static str) -> Result<Strike> {
        self.enter(op, true).await
    }

    async fn enter(&self, op: &'static str, has_effect: bool) -> Result<Strike> {
        if self.inert {
            return Ok(Strike::Clear);
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let h = h64(&[self.key, call]);
        let mut delay = self.cfg.latency;
        if !self.cfg.jitter.is_zero() {
            let span = self.cfg.jitter.as_nanos().min(u128::from(u64::MAX - 1)) as u64 + 1;
            delay += Duration::from_nanos(h64(&[h, 1]) % span);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if !chance(h64(&[h, 2]), self.cfg.failure_rate) {
            return Ok(Strike::Clear);
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        let after = has_effect && chance(h64(&[h, 3]), self.cfg.failure_after_effect);
        let e = Error::unavailable(
            self.backend,
            format!(
                "injected failure of {op} (call #{call}, faults.failure_rate = {}){}",
                self.cfg.failure_rate,
                if after { "; the effect took place, the answer was lost" } else { "" }
            ),
        );
        if after {
            Ok(Strike::AfterEffect(e))
        } else {
            Err(e)
        }
    }
}
