//! The orch-testkit Settlement suite against the stand-in on anvil, one fresh contract per case.
//!
//! The suite's requests carry a placeholder program output (not an OS output); the contract
//! reads everything from the output, so a thin wrapper writes the request's fields into a
//! calldata-DA OS header in front of it. Everything else — ordering, roots, dedup, receipts and
//! confirmations — is the adapter and the contract as they are.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use orch_core::error::Result;
use orch_core::settle::{
    ProofRegistrationRequest, SettledState, Settlement, SettlementCapabilities, StateUpdateRequest, TxStatus,
};
use orch_core::types::TxHash;
use orch_core::Felt;
use orch_eth::{EthSettlement, SidecarForm, StagedBlobs};
use orch_testkit::services::env_or_skip;
use orch_testkit::suite::settlement::{self as suite, SettlementFixture};

#[derive(Debug)]
struct WithOsHeader(EthSettlement);

#[async_trait]
impl Settlement for WithOsHeader {
    fn capabilities(&self) -> SettlementCapabilities {
        self.0.capabilities()
    }
    async fn last_settled(&self) -> Result<Option<SettledState>> {
        self.0.last_settled().await
    }
    async fn register_proof(&self, req: ProofRegistrationRequest) -> Result<TxHash> {
        self.0.register_proof(req).await
    }
    async fn submit_state_update(&self, mut req: StateUpdateRequest) -> Result<TxHash> {
        let mut out = vec![
            req.prev_root,
            req.new_root,
            block_before(req.range.first()),
            Felt::from_u64(req.range.last()),
            Felt::ZERO,
            req.block_hash,
            Felt::ZERO,
            Felt::ZERO,
            Felt::ZERO, // use_kzg_da = 0: calldata DA, `updateState`
            Felt::ONE,
        ];
        out.append(&mut req.program_output);
        req.program_output = out;
        self.0.submit_state_update(req).await
    }
    async fn tx_status(&self, tx: &TxHash) -> Result<TxStatus> {
        self.0.tx_status(tx).await
    }
}

async fn fresh() -> Option<(Arc<dyn Settlement>, SettlementFixture)> {
    let url = env_or_skip("ORCH_TEST_ANVIL_URL")?;
    let mut rng = Rng::new();
    let (provider, _, key) = funded_account(&url).await;
    let genesis = rng.felt();
    let core = deploy_stand_in(&provider, genesis).await;
    let s = settlement(&url, &key, core, SidecarForm::Auto, Arc::new(StagedBlobs::default())).await;
    Some((Arc::new(WithOsHeader(s)), SettlementFixture { start: 0, genesis_root: genesis }))
}

#[tokio::test]
async fn in_order_updates_apply() {
    let Some((s, f)) = fresh().await else { return };
    suite::in_order_updates_apply(s, f).await;
}

#[tokio::test]
async fn out_of_order_update_is_rejected() {
    let Some((s, f)) = fresh().await else { return };
    suite::out_of_order_update_is_rejected(s, f).await;
}

#[tokio::test]
async fn wrong_previous_root_is_rejected() {
    let Some((s, f)) = fresh().await else { return };
    suite::wrong_previous_root_is_rejected(s, f).await;
}

#[tokio::test]
async fn resubmission_never_applies_twice() {
    let Some((s, f)) = fresh().await else { return };
    suite::resubmission_never_applies_twice(s, f).await;
}

#[tokio::test]
async fn concurrent_resubmissions_apply_once() {
    let Some((s, f)) = fresh().await else { return };
    suite::concurrent_resubmissions_apply_once(s, f).await;
}

#[tokio::test]
async fn strict_order_holds_after_updates_apply() {
    let Some((s, f)) = fresh().await else { return };
    suite::strict_order_holds_after_updates_apply(s, f).await;
}

#[tokio::test]
async fn tx_status_moves_only_forward() {
    let Some((s, f)) = fresh().await else { return };
    suite::tx_status_moves_only_forward(s, f).await;
}
