//! orch-eth against anvil: state updates with real blobs, in both sidecar forms, and the
//! contract refusing what it must refuse.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::DynProvider;
use common::*;
use orch_core::error::Error;
use orch_core::settle::{Settlement, TxStatus};
use orch_core::types::TxHash;
use orch_core::Felt;
use orch_eth::{EthSettlement, ProofForm, SidecarForm, StagedBlobs};
use orch_testkit::services::env_or_skip;

const ANVIL: &str = "ORCH_TEST_ANVIL_URL";

async fn confirmed(s: &EthSettlement, tx: &TxHash) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match s.tx_status(tx).await.unwrap() {
            TxStatus::Confirmed { .. } => return,
            TxStatus::Reverted { reason } => panic!("{tx} reverted: {reason}"),
            _ if Instant::now() < end => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{tx} not confirmed: {other:?}"),
        }
    }
}

fn assert_rejected(r: Result<TxHash, Error>, needle: &str) {
    match r {
        Err(e @ Error::Rejected { .. }) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains(needle), "expected `{needle}` in: {e}");
        }
        other => panic!("expected a rejection naming {needle}, got {other:?}"),
    }
}

/// Settles `sizes.len()` consecutive batches (each `sizes[i]` felts of state diff) and checks
/// the contract's state and events after each.
async fn settle_batches(url: &str, form: SidecarForm, expect: ProofForm, sizes: &[usize]) {
    let mut rng = Rng::new();
    let (provider, _, key) = funded_account(url).await;
    let genesis = rng.felt();
    let core = deploy_stand_in(&provider, genesis).await;
    let staged = Arc::new(StagedBlobs::default());
    let s = settlement(url, &key, core, form, staged.clone()).await;
    assert_eq!(s.proof_form(), expect);
    assert_eq!(s.last_settled().await.unwrap(), None, "nothing settled on a fresh contract");
    let (mut root, mut next) = (genesis, 0u64);
    for (i, &n_felts) in sizes.iter().enumerate() {
        let last = next + 1 + i as u64; // batches of 2, 3, … blocks
        let new_root = rng.felt();
        let batch = kzg_batch(&mut rng, next, last, root, new_root, n_felts);
        staged.stage(batch.request.da.id.clone(), batch.blobs.clone());
        let tx = s.submit_state_update(batch.request.clone()).await.unwrap();
        confirmed(&s, &tx).await;
        // The same dedup key again: the same transaction, nothing applied twice.
        assert_eq!(s.submit_state_update(batch.request.clone()).await.unwrap(), tx);
        let settled = s.last_settled().await.unwrap().expect("settled");
        assert_eq!((settled.block, settled.state_root), (last, new_root));
        assert_eq!(state_block_hash(&provider, core).await, batch.request.block_hash);
        assert_eq!(update_events(&provider, core).await, i + 1);
        (root, next) = (new_root, last + 1);
    }
}

#[tokio::test]
async fn kzg_batches_settle_with_cell_proofs_on_the_default_hardfork() {
    let Some(url) = env_or_skip(ANVIL) else { return };
    // One blob, two blobs (4096 + 1 felts), one blob.
    settle_batches(&url, SidecarForm::Auto, ProofForm::Cell, &[300, 4097, 1000]).await;
}

#[tokio::test]
async fn kzg_batch_settles_with_blob_proofs_on_prague() {
    let Some(bin) = env_or_skip("ORCH_TEST_ANVIL_BIN") else { return };
    let anvil = PrivateAnvil::start(&bin, &["--hardfork", "prague"]).await;
    settle_batches(&anvil.url, SidecarForm::Auto, ProofForm::Blob, &[4097, 200]).await;
}

/// A fresh contract and adapter with one batch ready (not sent).
async fn one_batch(url: &str) -> (DynProvider, Address, EthSettlement, Batch, Arc<StagedBlobs>) {
    let mut rng = Rng::new();
    let (provider, _, key) = funded_account(url).await;
    let genesis = rng.felt();
    let core = deploy_stand_in(&provider, genesis).await;
    let staged = Arc::new(StagedBlobs::default());
    let s = settlement(url, &key, core, SidecarForm::Auto, staged.clone()).await;
    let new_root = rng.felt();
    let batch = kzg_batch(&mut rng, 0, 4, genesis, new_root, 500);
    staged.stage(batch.request.da.id.clone(), batch.blobs.clone());
    (provider, core, s, batch, staged)
}

#[tokio::test]
async fn a_corrupted_proof_is_rejected_by_the_contract() {
    let Some(url) = env_or_skip(ANVIL) else { return };
    let (provider, core, s, batch, _) = one_batch(&url).await;
    // A valid curve point, but the proof of another evaluation point.
    let other_z = orch_blob::Scalar::from(Felt::from_u64(7));
    let (wrong, _) = orch_blob::kzg::point_proof(&batch.blobs[0], &other_z).unwrap();
    let r = s.send_kzg_update(&batch.program_output, batch.blobs.clone(), &[wrong], "corrupted proof").await;
    assert_rejected(r, "POINT_EVALUATION_FAILED");
    assert_eq!(s.last_settled().await.unwrap(), None);
    assert_eq!(update_events(&provider, core).await, 0);
    // The right proof goes through on the same contract.
    let tx = s.send_kzg_update(&batch.program_output, batch.blobs, &batch.proofs, "right proof").await.unwrap();
    confirmed(&s, &tx).await;
    assert_eq!(update_events(&provider, core).await, 1);
}

#[tokio::test]
async fn a_wrong_y_is_refused_locally_and_by_the_contract() {
    let Some(url) = env_or_skip(ANVIL) else { return };
    let (provider, core, s, mut batch, _) = one_batch(&url).await;
    let i = y_index(1);
    let mut low = batch.program_output[i].to_be_bytes();
    low[31] ^= 1;
    batch.program_output[i] = Felt::from_be_bytes(low).unwrap();
    batch.request.program_output = batch.program_output.clone();
    // The port checks each blob against the output before paying gas…
    match s.submit_state_update(batch.request.clone()).await {
        Err(e @ Error::InvalidInput { .. }) => assert!(!e.is_retryable() && e.to_string().contains("y_0"), "{e}"),
        other => panic!("expected InvalidInput naming y_0, got {other:?}"),
    }
    // …and the contract refuses it when sent anyway with the proof of the true y.
    let r = s.send_kzg_update(&batch.program_output, batch.blobs, &batch.proofs, "wrong y").await;
    assert_rejected(r, "POINT_EVALUATION_FAILED");
    assert_eq!(update_events(&provider, core).await, 0);
}

#[tokio::test]
async fn a_wrong_previous_root_is_rejected_by_the_contract() {
    let Some(url) = env_or_skip(ANVIL) else { return };
    let (provider, core, s, batch, staged) = one_batch(&url).await;
    let mut rng = Rng::new();
    let tx = s.submit_state_update(batch.request.clone()).await.unwrap();
    confirmed(&s, &tx).await;
    let r = rng.felt();
    let mut bad = kzg_batch(&mut rng, 5, 6, Felt::from_u64(0xdead), r, 100);
    bad.request.dedup_key = "bad-root".into();
    staged.stage(bad.request.da.id.clone(), bad.blobs.clone());
    assert_rejected(s.submit_state_update(bad.request).await, "INVALID_PREVIOUS_ROOT");
    // A gap: the right root, but not the next block.
    let r = rng.felt();
    let gap = kzg_batch(&mut rng, 9, 9, batch.request.new_root, r, 100);
    staged.stage(gap.request.da.id.clone(), gap.blobs.clone());
    assert_rejected(s.submit_state_update(gap.request).await, "INVALID_PREVIOUS_BLOCK_NUMBER");
    assert_eq!(s.last_settled().await.unwrap().map(|x| x.block), Some(4));
    assert_eq!(update_events(&provider, core).await, 1);
}
