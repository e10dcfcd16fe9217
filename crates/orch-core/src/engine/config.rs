//! Engine tuning. Every field has a documented default; the binary reads it from `[engine]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::JobKind;

/// The most blobs `batch_blobs` may ask for: what one Starknet state-update transaction on
/// Ethereum carries (EIP-4844/7691, and the Starknet OS's limit).
pub const MAX_BATCH_BLOBS: u32 = 6;

/// What to do when verification runs past its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutPolicy {
    /// Process the job again (counts as a failed attempt).
    #[default]
    Reprocess,
    /// Leave it in `VerificationTimeout` for an operator.
    Wait,
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts before `Failed` (default 5).
    pub max_attempts: u32,
    /// Delay after the first failure (default 1s); doubles per attempt.
    #[serde(with = "crate::duration")]
    pub base: Duration,
    /// Cap on the delay (default 5m).
    #[serde(with = "crate::duration")]
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, base: Duration::from_secs(1), max: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1-based) of the job whose id hashes to `seed`:
    /// `base * 2^(attempt-1)`, capped at `max`, plus up to 25 % deterministic jitter so that
    /// jobs failing together do not retry together.
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        // splitmix64: cheap, well-spread, and the same for the same job and attempt.
        let mut z = seed.wrapping_add(u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let jitter_ms = raw.as_millis() as u64 / 4;
        let jitter = if jitter_ms == 0 { 0 } else { z % (jitter_ms + 1) };
        raw + Duration::from_millis(jitter)
    }
}

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Concurrent worker loops in this instance (default 8).
    pub workers: usize,
    /// Jobs a worker claims per kind per round (default 32).
    pub claim_batch: u32,
    /// Claims this instance's workers may have in flight at once (default 2; at most
    /// `workers` take effect). With one, the store idles between a claim's commit and the
    /// next claim's arrival; with many, claims take the same due jobs from the store's index
    /// and then step over each other's locked rows.
    pub concurrent_claims: usize,
    /// In-flight limit per kind in this instance (default 64 each), in the order of
    /// [`JobKind::ALL`].
    pub max_in_flight: [u32; JobKind::COUNT],
    /// Lease length (default 30s); leases are renewed at a third of it.
    #[serde(with = "crate::duration")]
    pub lease: Duration,
    /// Sweep interval: how often an idle worker looks for due jobs without a queue hint
    /// (default 500ms). Bounds the delay a lost message can cause.
    #[serde(with = "crate::duration")]
    pub poll_interval: Duration,
    /// How long a job whose dependencies are incomplete waits before it is looked at again,
    /// unless woken earlier by a completing dependency (default 2s).
    #[serde(with = "crate::duration")]
    pub dependency_poll: Duration,
    /// Default interval between verification checks (default 2s).
    #[serde(with = "crate::duration")]
    pub verify_poll: Duration,
    /// Deadline for verification (default 1h).
    #[serde(with = "crate::duration")]
    pub verify_timeout: Duration,
    /// Policy on verification timeout.
    pub on_verify_timeout: TimeoutPolicy,
    /// Retries.
    pub retry: RetryPolicy,
    /// Blocks per batch (default 1). With `batch_blobs` this is the most blocks a batch takes.
    pub batch_size: u64,
    /// Blobs a batch's DA data may fill, 1–6 (default unset: batches are sized by
    /// `batch_size` and `batch_timeout` only). When set, a batch also closes before the first
    /// block whose data would not fit that many blobs (the batch's squashed, compressed state
    /// diff, as the DA layer encodes it). Needs a budget given to the engine
    /// (`EngineBuilder::batch_budget`, e.g. `orch_blob::BlobBudget`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_blobs: Option<u32>,
    /// How long a batch waits to fill up before it closes with the blocks it has (default 60s).
    #[serde(with = "crate::duration")]
    pub batch_timeout: Duration,
    /// How far job creation may run ahead of the lowest unsettled block (default 64).
    pub max_blocks_ahead: u64,
    /// First block to orchestrate when the store and the settlement layer are empty (default 0).
    pub start_block: u64,
    /// Interval of the job creator (default 1s).
    #[serde(with = "crate::duration")]
    pub creator_interval: Duration,
    /// Send queue messages as wake-up hints for other instances (default true).
    pub queue_hints: bool,
    /// How long a graceful shutdown waits for in-flight jobs (default 30s).
    #[serde(with = "crate::duration")]
    pub drain_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 8,
            claim_batch: 32,
            concurrent_claims: 2,
            max_in_flight: [64; JobKind::COUNT],
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            dependency_poll: Duration::from_secs(2),
            verify_poll: Duration::from_secs(2),
            verify_timeout: Duration::from_secs(3600),
            on_verify_timeout: TimeoutPolicy::Reprocess,
            retry: RetryPolicy::default(),
            batch_size: 1,
            batch_blobs: None,
            batch_timeout: Duration::from_secs(60),
            max_blocks_ahead: 64,
            start_block: 0,
            creator_interval: Duration::from_secs(1),
            queue_hints: true,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl EngineConfig {
    /// Checks the values, naming the key and the fix.
    pub fn validate(&self) -> Result<()> {
        let err = |k: &str, why: &str| Err(Error::invalid_input(format!("engine.{k}"), why));
        if self.workers == 0 || self.workers > 1024 {
            return err("workers", "must be between 1 and 1024");
        }
        if self.claim_batch == 0 || self.claim_batch > 10_000 {
            return err("claim_batch", "must be between 1 and 10000");
        }
        if self.concurrent_claims == 0 || self.concurrent_claims > 1024 {
            return err("concurrent_claims", "must be between 1 and 1024");
        }
        if self.max_in_flight.contains(&0) {
            return err("max_in_flight", "every kind needs a limit of at least 1");
        }
        if self.lease < Duration::from_millis(50) {
            return err("lease", "must be at least 50ms");
        }
        if self.poll_interval.is_zero() || self.poll_interval > self.lease {
            return err("poll_interval", "must be above zero and not longer than the lease");
        }
        if self.batch_size == 0 {
            return err("batch_size", "must be at least 1 block");
        }
        if let Some(n) = self.batch_blobs {
            if !(1..=MAX_BATCH_BLOBS).contains(&n) {
                return err(
                    "batch_blobs",
                    &format!(
                        "is {n}; it must be between 1 and {MAX_BATCH_BLOBS} (the blobs one Ethereum state-update \
                         transaction carries), or unset to size batches by batch_size only"
                    ),
                );
            }
        }
        if self.max_blocks_ahead < self.batch_size {
            return err("max_blocks_ahead", "must be at least batch_size");
        }
        if self.retry.max_attempts == 0 {
            return err("retry.max_attempts", "must be at least 1");
        }
        Ok(())
    }

    /// The in-flight limit of `kind`.
    pub fn in_flight_limit(&self, kind: JobKind) -> u32 {
        self.max_in_flight[kind.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_a_quarter() {
        let p = RetryPolicy { max_attempts: 10, base: Duration::from_secs(1), max: Duration::from_secs(60) };
        for a in 1..12 {
            let raw = Duration::from_secs(1 << (a - 1).min(30)).min(Duration::from_secs(60));
            let d = p.delay(a, 42);
            assert!(d >= raw && d <= raw + raw / 4, "attempt {a}: {d:?}");
        }
        assert_ne!(p.delay(3, 1), p.delay(3, 2), "different jobs should spread");
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_key() {
        EngineConfig::default().validate().unwrap();
        let c = EngineConfig { workers: 0, ..EngineConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("engine.workers"));
        let c = EngineConfig { concurrent_claims: 0, ..EngineConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("engine.concurrent_claims"));
    }

    #[test]
    fn batch_blobs_must_be_one_to_six() {
        for ok in [1, 6] {
            EngineConfig { batch_blobs: Some(ok), ..EngineConfig::default() }.validate().unwrap();
        }
        for bad in [0, 7] {
            let e = EngineConfig { batch_blobs: Some(bad), ..EngineConfig::default() }.validate().unwrap_err();
            let e = e.to_string();
            assert!(e.contains("engine.batch_blobs") && e.contains("between 1 and 6"), "{e}");
        }
    }

    #[test]
    fn batch_blobs_reads_from_the_engine_section_and_is_omitted_when_unset() {
        let c: EngineConfig = serde_json::from_value(serde_json::json!({ "batch_blobs": 6 })).unwrap();
        assert_eq!(c.batch_blobs, Some(6));
        let v = serde_json::to_value(EngineConfig::default()).unwrap();
        assert!(v.get("batch_blobs").is_none(), "{v}");
    }
}
