//! Injected latency and failures: retryable, at about the configured rate, deterministic.

mod common;

use std::time::{Duration, Instant};

use common::{ManualClock, TempDir};
use orch_core::chain::ChainSource;
use orch_core::da::DaReference;
use orch_core::error::Error;
use orch_core::prove::{ProofRequest, Prover};
use orch_core::settle::{Settlement, StateUpdateRequest};
use orch_core::types::{BlockRange, Timestamp};
use orch_devnet::{ChainConfig, DevChain, DevProver, DevSettlement, Faults, ProverConfig, SettlementConfig};

fn faulty(rate: f64) -> Faults {
    Faults { failure_rate: rate, ..Faults::default() }
}

fn chain(seed: u64, faults: Faults) -> DevChain {
    DevChain::new(ChainConfig { faults, ..ChainConfig::fixed(100) }, seed, Timestamp::ZERO, ManualClock::at(0))
}

async fn outcomes(c: &DevChain, calls: u64) -> Vec<bool> {
    let mut v = Vec::new();
    for i in 0..calls {
        match c.state_update(i % 100).await {
            Ok(_) => v.push(true),
            Err(e) => {
                assert!(e.is_retryable(), "{e}");
                assert!(matches!(e, Error::Unavailable { .. }));
                assert!(e.to_string().contains("injected failure of state_update"), "{e}");
                v.push(false);
            }
        }
    }
    v
}

#[tokio::test]
async fn failures_come_at_the_configured_rate_and_are_retryable() {
    let c = chain(1, faulty(0.1));
    let v = outcomes(&c, 3000).await;
    let failed = v.iter().filter(|ok| !**ok).count();
    assert!((240..360).contains(&failed), "{failed} of 3000 failed at a 10% rate");
    let all = chain(1, faulty(1.0));
    assert!(outcomes(&all, 50).await.iter().all(|ok| !ok));
    let none = chain(1, faulty(0.0));
    assert!(outcomes(&none, 50).await.iter().all(|ok| *ok));
}

#[tokio::test]
async fn failures_are_deterministic_from_the_seed_and_the_call_counter() {
    let (a, b) = (chain(5, faulty(0.3)), chain(5, faulty(0.3)));
    assert_eq!(outcomes(&a, 500).await, outcomes(&b, 500).await);
    let c = chain(6, faulty(0.3));
    assert_ne!(outcomes(&chain(5, faulty(0.3)), 500).await, outcomes(&c, 500).await);
}

#[tokio::test]
async fn latency_is_added_to_every_call() {
    let c =
        chain(1, Faults { latency: Duration::from_millis(20), jitter: Duration::from_millis(5), ..Faults::default() });
    let t = Instant::now();
    for _ in 0..3 {
        c.latest_block().await.unwrap();
    }
    assert!(t.elapsed() >= Duration::from_millis(60), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_lost_answer_after_the_effect_is_safe_to_retry_with_the_same_key() {
    let dir = TempDir::new("lost");
    let chain = DevChain::fixed(1, 100);
    let cfg = SettlementConfig {
        faults: Faults { failure_rate: 0.5, failure_after_effect: 1.0, ..Faults::default() },
        verify_program_output: false,
        ..SettlementConfig::default()
    };
    let s = DevSettlement::open(dir.path(), cfg, 1, ManualClock::at(0)).unwrap();
    let mut lost = 0;
    for n in 0..30u64 {
        let req = StateUpdateRequest {
            dedup_key: format!("state:{n}"),
            range: BlockRange::single(n),
            prev_root: chain.root_before(n),
            new_root: chain.root_after(n),
            block_hash: chain.block_hash(n),
            program_output: vec![],
            da: DaReference { id: "x".into(), chunks: 1, bytes: 1 },
        };
        // Retry like the engine: same key until an answer comes back.
        loop {
            match s.submit_state_update(req.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(e.is_retryable() && e.to_string().contains("answer was lost"), "{e}");
                    lost += 1;
                    assert_eq!(s.applied().len() as u64, n + 1, "the effect took place");
                }
            }
        }
    }
    assert!(lost > 5, "{lost}");
    assert_eq!(s.applied().len(), 30, "each update applied exactly once");
    assert_eq!(s.injected_failures(), lost);
}

#[tokio::test]
async fn a_failure_before_the_effect_changes_nothing() {
    let prover = DevProver::new(
        ProverConfig {
            faults: Faults { failure_rate: 1.0, failure_after_effect: 0.0, ..Faults::default() },
            ..ProverConfig::default()
        },
        1,
        ManualClock::at(0),
    );
    let req = ProofRequest { dedup_key: "k".into(), range: BlockRange::single(1), pie: vec![1] };
    for _ in 0..10 {
        assert!(prover.submit(req.clone()).await.unwrap_err().is_retryable());
    }
    assert_eq!(prover.tasks_started(), 0);
    assert_eq!(prover.injected_failures(), 10);
}
