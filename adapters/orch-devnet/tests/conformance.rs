//! The testkit's conformance suites for `Settlement` and `Da`, run against the devnet.

mod common;

use std::sync::Arc;

use common::{ManualClock, TempDir};
use orch_core::settle::Settlement;
use orch_core::Felt;
use orch_devnet::{DaConfig, DevChain, DevDa, DevSettlement, SettlementConfig};
use orch_testkit::suite::settlement::{self as suite, SettlementFixture};

const FIXTURE: SettlementFixture = SettlementFixture { start: 5, genesis_root: Felt::from_u64(0x9e11e515) };

/// A fresh ledger per case, in its own dir (kept alive by the returned guard).
fn fresh() -> (TempDir, Arc<dyn Settlement>) {
    let dir = TempDir::new("conformance");
    let cfg = SettlementConfig {
        start_block: FIXTURE.start,
        genesis_root: Some(FIXTURE.genesis_root),
        // The generic suite's program outputs are stand-ins, not Starknet OS outputs; the
        // ledger's checks of real ones are tested in tests/settlement.rs.
        verify_program_output: false,
        ..SettlementConfig::default()
    };
    let s = DevSettlement::open(dir.path(), cfg, 1, ManualClock::at(0)).unwrap();
    (dir, Arc::new(s))
}

#[tokio::test]
async fn in_order_updates_apply() {
    let (_dir, s) = fresh();
    suite::in_order_updates_apply(s, FIXTURE).await;
}

#[tokio::test]
async fn out_of_order_update_is_rejected() {
    let (_dir, s) = fresh();
    suite::out_of_order_update_is_rejected(s, FIXTURE).await;
}

#[tokio::test]
async fn wrong_previous_root_is_rejected() {
    let (_dir, s) = fresh();
    suite::wrong_previous_root_is_rejected(s, FIXTURE).await;
}

#[tokio::test]
async fn resubmission_never_applies_twice() {
    let (_dir, s) = fresh();
    suite::resubmission_never_applies_twice(s, FIXTURE).await;
}

#[tokio::test]
async fn concurrent_resubmissions_apply_once() {
    let (_dir, s) = fresh();
    suite::concurrent_resubmissions_apply_once(s, FIXTURE).await;
}

#[tokio::test]
async fn strict_order_holds_after_updates_apply() {
    let (_dir, s) = fresh();
    suite::strict_order_holds_after_updates_apply(s, FIXTURE).await;
}

#[tokio::test]
async fn tx_status_moves_only_forward() {
    let (_dir, s) = fresh();
    suite::tx_status_moves_only_forward(s, FIXTURE).await;
}

#[tokio::test]
async fn da_publication_is_idempotent_and_included() {
    let da = DevDa::new(DaConfig::default(), 1, ManualClock::at(0));
    // The devnet DA publishes a batch's squashed diff, so the suite's n copies of one update
    // are one update's worth: take a block that alone exceeds one submission (six blobs), so
    // the split is still exercised.
    let chain = DevChain::fixed(1, 1000);
    let sample = (0..1000)
        .filter(|n| chain.is_big_block(*n))
        .map(|n| chain.generate(n))
        .find(|u| u.state_diff.storage_diffs.iter().map(|c| c.storage_entries.len()).sum::<usize>() > 12_000)
        .expect("a block beyond one submission");
    suite::da_publication_is_idempotent_and_included(Arc::new(da), sample).await;
}
