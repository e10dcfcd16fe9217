//! The transaction manager against anvil, each case on an anvil of its own so that mining,
//! base fees and reorgs are the test's to control: crashes after signing and after sending,
//! a dropped transaction, a fee spike, a reorg, a nonce taken by another transaction, an
//! on-chain revert, the spend budget, an unfunded key. After each, the contract's
//! `LogStateUpdate` events show how many times an update was applied.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use async_trait::async_trait;
use common::*;
use orch_core::alerts::{Alert, Alerts};
use orch_core::error::{Error, Result};
use orch_core::settle::{Settlement, TxStatus};
use orch_core::types::TxHash;
use orch_core::Felt;
use orch_eth::{EthConfig, EthSettlement, SidecarForm, StagedBlobs, Wei};
use orch_testkit::services::env_or_skip;

const BIN: &str = "ORCH_TEST_ANVIL_BIN";

/// Alerts kept for the test to read.
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<Alert>>);

#[async_trait]
impl Alerts for Recorded {
    async fn send(&self, alert: Alert) -> Result<()> {
        self.0.lock().unwrap().push(alert);
        Ok(())
    }
}

/// A private anvil with a funded key, the stand-in deployed, and one batch staged.
struct World {
    anvil: PrivateAnvil,
    provider: DynProvider,
    key: String,
    core: Address,
    staged: Arc<StagedBlobs>,
    batch: Batch,
    genesis: Felt,
}

impl World {
    async fn new(bin: &str, seed: u64, anvil_args: &[&str]) -> World {
        let anvil = PrivateAnvil::start(bin, anvil_args).await;
        let (provider, _, key) = funded_account(&anvil.url).await;
        let mut rng = Rng::seeded(seed);
        let genesis = rng.felt();
        let core = deploy_stand_in(&provider, genesis).await;
        let new_root = rng.felt();
        let batch = kzg_batch(&mut rng, 0, 3, genesis, new_root, 700);
        let staged = Arc::new(StagedBlobs::default());
        staged.stage(batch.request.da.id.clone(), batch.blobs.clone());
        World { anvil, provider, key, core, staged, batch, genesis }
    }

    fn config(&self) -> EthConfig {
        config(&self.anvil.url, &self.key, self.core, SidecarForm::Auto)
    }

    async fn connect(&self, cfg: &EthConfig) -> EthSettlement {
        EthSettlement::connect(cfg).await.unwrap().with_blob_source(self.staged.clone())
    }

    async fn rpc<R: alloy::rpc::json_rpc::RpcRecv>(&self, method: &'static str, params: serde_json::Value) -> R {
        self.provider.raw_request(method.into(), params).await.unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    async fn automine(&self, on: bool) {
        let () = self.rpc("evm_setAutomine", serde_json::json!([on])).await;
    }

    async fn mine(&self, blocks: u64) {
        let () = self.rpc("anvil_mine", serde_json::json!([format!("{blocks:#x}")])).await;
    }

    async fn events(&self) -> usize {
        update_events(&self.provider, self.core).await
    }

    async fn in_pool(&self, hash: B256) -> bool {
        self.provider.get_transaction_by_hash(hash).await.unwrap().is_some_and(|t| t.block_number.is_none())
    }

    async fn nonce(&self) -> u64 {
        let addr = alloy::signers::local::PrivateKeySigner::from_slice(
            &alloy::hex::decode(self.key.trim_start_matches("0x")).unwrap(),
        )
        .unwrap()
        .address();
        self.provider.get_transaction_count(addr).await.unwrap()
    }
}

fn hash(tx: &TxHash) -> B256 {
    tx.0.parse().unwrap()
}

/// Polls `tx_status` (which drives re-broadcasts and bumps) until it says `Confirmed`.
async fn until_confirmed(s: &EthSettlement, tx: &TxHash, mine: Option<&World>) -> u32 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match s.tx_status(tx).await.unwrap() {
            TxStatus::Confirmed { confirmations } => return confirmations,
            TxStatus::Reverted { reason } => panic!("{tx} reverted: {reason}"),
            other => assert!(Instant::now() < end, "{tx} not confirmed within 60 s: {other:?}"),
        }
        if let Some(w) = mine {
            w.mine(1).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- crashes, in a child process that aborts at the named point ----------------------------

/// The child's half: connect with the parent's journal directory and submit the parent's
/// batch; `ORCH_TEST_ETH_CRASH_AT` aborts it inside `submit_state_update`.
#[tokio::test]
#[ignore = "run by crash tests as a child process"]
async fn child_submits_until_it_crashes() {
    let Ok(spec) = std::env::var("ORCH_TEST_ETH_CHILD") else { return };
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let url = spec["url"].as_str().unwrap();
    let core: Address = spec["core"].as_str().unwrap().parse().unwrap();
    let mut rng = Rng::seeded(spec["seed"].as_u64().unwrap());
    let genesis = rng.felt();
    let new_root = rng.felt();
    let batch = kzg_batch(&mut rng, 0, 3, genesis, new_root, 700);
    let staged = Arc::new(StagedBlobs::default());
    staged.stage(batch.request.da.id.clone(), batch.blobs.clone());
    let mut cfg = config(url, spec["key"].as_str().unwrap(), core, SidecarForm::Auto);
    cfg.state_dir = Some(spec["state_dir"].as_str().unwrap().into());
    let s = EthSettlement::connect(&cfg).await.unwrap().with_blob_source(staged);
    let _ = s.submit_state_update(batch.request).await;
    panic!("the child was to crash inside submit_state_update");
}

async fn crash_then_restart(point: &str) {
    let Some(bin) = env_or_skip(BIN) else { return };
    let seed = uuid::Uuid::new_v4().as_u64_pair().0;
    let w = World::new(&bin, seed, &[]).await;
    w.automine(false).await;
    let cfg = w.config();
    let spec = serde_json::json!({
        "url": w.anvil.url, "core": format!("{:#x}", w.core), "seed": seed, "key": w.key,
        "state_dir": cfg.state_dir.as_ref().unwrap(),
    });
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_submits_until_it_crashes", "--ignored", "--nocapture"])
        .env("ORCH_TEST_ETH_CHILD", spec.to_string())
        .env("ORCH_TEST_ETH_CRASH_AT", point)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("crashing at `{point}`")), "the child did not crash at {point}: {stderr}");
    assert!(!stderr.contains(w.key.trim_start_matches("0x")), "the key was printed");
    let sent_before_restart = w.nonce().await;
    // Restart: the same journal, the same key.
    let s = w.connect(&cfg).await;
    let books = s.books().await;
    assert_eq!(books.pending.len(), 1, "the journal holds the crashed submission: {books:?}");
    let journaled = books.pending[0].hash;
    assert_eq!(w.in_pool(journaled).await, point == "sent", "in the pool after a crash at {point}");
    let tx = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    assert_eq!(hash(&tx), journaled, "the restart resumes the journaled transaction");
    assert!(w.in_pool(journaled).await);
    w.mine(1).await;
    until_confirmed(&s, &tx, None).await;
    assert_eq!(s.submit_state_update(w.batch.request.clone()).await.unwrap(), tx);
    w.mine(2).await;
    assert_eq!(w.events().await, 1, "applied exactly once");
    assert_eq!(w.nonce().await, sent_before_restart + 1, "one transaction in all");
    let settled = s.last_settled().await.unwrap().unwrap();
    assert_eq!((settled.block, settled.state_root), (3, w.batch.request.new_root));
}

#[tokio::test]
async fn a_crash_after_signing_resumes_with_the_same_transaction() {
    crash_then_restart("signed").await;
}

#[tokio::test]
async fn a_crash_after_sending_resumes_without_a_second_transaction() {
    crash_then_restart("sent").await;
}

// ---- the pool and the chain ----------------------------------------------------------------

#[tokio::test]
async fn a_dropped_transaction_is_broadcast_again_at_the_same_nonce() {
    let Some(bin) = env_or_skip(BIN) else { return };
    let w = World::new(&bin, 1, &[]).await;
    w.automine(false).await;
    let s = w.connect(&w.config()).await;
    let tx = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    assert!(w.in_pool(hash(&tx)).await);
    let _: serde_json::Value = w.rpc("anvil_dropTransaction", serde_json::json!([tx.0])).await;
    assert!(!w.in_pool(hash(&tx)).await, "anvil dropped it");
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Pending, "the manager sends it again");
    assert!(w.in_pool(hash(&tx)).await, "the same transaction (same nonce, same hash) is back");
    w.mine(1).await;
    until_confirmed(&s, &tx, None).await;
    assert_eq!(w.events().await, 1);
}

#[tokio::test]
async fn a_fee_spike_leads_to_doubled_replacements_and_then_inclusion() {
    let Some(bin) = env_or_skip(BIN) else { return };
    let w = World::new(&bin, 2, &[]).await;
    w.automine(false).await;
    let mut cfg = w.config();
    cfg.bump_after = Duration::from_secs(1);
    let s = w.connect(&cfg).await;
    let tx = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    let first = s.books().await.pending[0].clone();
    // The base fee jumps far above the first transaction's cap: blocks go by without it.
    let spike = first.max_fee_per_gas.0 * 8;
    let () = w.rpc("anvil_setNextBlockBaseFeePerGas", serde_json::json!([format!("{spike:#x}")])).await;
    w.mine(1).await;
    assert_eq!(w.events().await, 0, "priced out of the block");
    let mut seen = vec![first.clone()];
    let end = Instant::now() + Duration::from_secs(60);
    while w.events().await == 0 {
        assert!(Instant::now() < end, "not included after the spike: {seen:?}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let status = s.tx_status(&tx).await.unwrap();
        assert!(matches!(status, TxStatus::Pending | TxStatus::Confirmed { .. }), "{status:?}");
        if let Some(p) = s.books().await.pending.first().cloned() {
            if p.hash != seen.last().unwrap().hash {
                seen.push(p);
            }
        }
        w.mine(1).await;
    }
    assert!(seen.len() >= 2, "at least one replacement: {seen:?}");
    for pair in seen.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(a.nonce, b.nonce, "a replacement keeps the nonce");
        assert!(b.max_fee_per_gas.0 >= 2 * a.max_fee_per_gas.0, "{a:?} -> {b:?}");
        assert!(b.max_priority_fee_per_gas.0 >= 2 * a.max_priority_fee_per_gas.0, "{a:?} -> {b:?}");
        assert!(b.max_fee_per_blob_gas.unwrap().0 >= 2 * a.max_fee_per_blob_gas.unwrap().0, "{a:?} -> {b:?}");
    }
    until_confirmed(&s, &tx, None).await;
    assert_eq!(w.events().await, 1, "one of the attempts applied, once");
}

#[tokio::test]
async fn an_l1_reorg_that_removes_the_update_settles_it_again_once() {
    let Some(bin) = env_or_skip(BIN) else { return };
    let w = World::new(&bin, 3, &[]).await;
    let mut cfg = w.config();
    cfg.confirmations = 3;
    let s = w.connect(&cfg).await;
    let tx = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    assert_eq!(until_confirmed(&s, &tx, None).await, 1, "automine includes it at once");
    assert_eq!(w.events().await, 1);
    // Replace the inclusion block: the update is gone from the chain and from the pool.
    w.automine(false).await;
    let () = w.rpc("anvil_reorg", serde_json::json!([1, []])).await;
    assert_eq!(w.events().await, 0, "the reorg removed the update");
    assert_eq!(s.last_settled().await.unwrap(), None);
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Pending, "sent again");
    assert!(w.in_pool(hash(&tx)).await);
    w.automine(true).await;
    w.mine(3).await;
    assert!(until_confirmed(&s, &tx, None).await >= 3);
    assert_eq!(w.events().await, 1, "applied once on the new chain");
    assert_eq!(s.last_settled().await.unwrap().map(|x| x.block), Some(3));
}

#[tokio::test]
async fn a_nonce_taken_by_another_transaction_gets_a_new_intent_and_settles_once() {
    let Some(bin) = env_or_skip(BIN) else { return };
    let w = World::new(&bin, 4, &[]).await;
    w.automine(false).await;
    let cfg = w.config();
    let s = w.connect(&cfg).await;
    let tx = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    // Someone else with the same key takes the nonce (an operator's manual transfer).
    let _: serde_json::Value = w.rpc("anvil_dropTransaction", serde_json::json!([tx.0])).await;
    let transfer = alloy::rpc::types::TransactionRequest::default()
        .to(Address::repeat_byte(9))
        .value(U256::from(1u64))
        .nonce(w.nonce().await);
    let pending = w.provider.send_transaction(transfer).await.unwrap();
    w.mine(1).await;
    pending.get_receipt().await.unwrap();
    // The intent's nonce is used by another transaction: once a later block still shows no
    // receipt of ours, `NotFound`; and the same key again makes a new intent.
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Pending, "not concluded on one look");
    w.mine(1).await;
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::NotFound);
    let again = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    assert_ne!(again, tx);
    w.automine(true).await;
    w.mine(1).await;
    until_confirmed(&s, &again, None).await;
    assert_eq!(w.events().await, 1);
}

#[tokio::test]
async fn an_update_reverted_on_chain_is_reported_and_never_sent_again() {
    let Some(bin) = env_or_skip(BIN) else { return };
    let w = World::new(&bin, 5, &[]).await;
    w.automine(false).await;
    let s = w.connect(&w.config()).await;
    let tx = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    // Ours leaves the pool; meanwhile another operator applies the same update. When ours is
    // broadcast again it is mined after the rival's, and reverts.
    let _: serde_json::Value = w.rpc("anvil_dropTransaction", serde_json::json!([tx.0])).await;
    let (_, _, rival_key) = funded_account(&w.anvil.url).await;
    let mut rival_cfg = config(&w.anvil.url, &rival_key, w.core, SidecarForm::Auto);
    rival_cfg.state_dir = Some(fresh_state_dir());
    let rival = EthSettlement::connect(&rival_cfg).await.unwrap();
    rival.send_kzg_update(&w.batch.program_output, w.batch.blobs.clone(), &w.batch.proofs, "rival").await.unwrap();
    w.mine(1).await;
    assert_eq!(w.events().await, 1, "the rival's update");
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Pending, "ours, broadcast again");
    w.mine(1).await;
    let status = s.tx_status(&tx).await.unwrap();
    match &status {
        TxStatus::Reverted { reason } => assert!(reason.contains("INVALID_PREVIOUS_ROOT"), "{reason}"),
        other => panic!("expected a revert, got {other:?} (was ours mined first?)"),
    }
    assert_eq!(w.events().await, 1, "the rival's update only");
    match s.submit_state_update(w.batch.request.clone()).await {
        Err(e @ Error::Rejected { .. }) => assert!(e.to_string().contains("would revert again"), "{e}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    let _ = w.genesis;
}

// ---- money ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_spend_budget_stops_spending_and_alerts_once() {
    let Some(bin) = env_or_skip(BIN) else { return };
    let w = World::new(&bin, 6, &[]).await;
    let mut cfg = w.config();
    // Enough for one update's worst case, not two.
    cfg.max_spend = Some(Wei(10u128.pow(16)));
    let alerts = Arc::new(Recorded::default());
    let s = w.connect(&cfg).await.with_alerts(alerts.clone());
    let tx = s.submit_state_update(w.batch.request.clone()).await.unwrap();
    until_confirmed(&s, &tx, None).await;
    let spent = s.books().await.spent;
    assert!(spent.0 > 0 && spent < Wei(10u128.pow(16)), "{spent}");
    // A second update whose worst case no longer fits: refused before anything is signed.
    let mut rng = Rng::seeded(60);
    let r = rng.felt();
    let second = kzg_batch(&mut rng, 4, 6, w.batch.request.new_root, r, 300);
    w.staged.stage(second.request.da.id.clone(), second.blobs.clone());
    let mut tight = cfg.clone();
    tight.max_spend = Some(Wei(spent.0 + 1));
    drop(s);
    let s = w.connect(&tight).await.with_alerts(alerts.clone());
    let nonce = w.nonce().await;
    for _ in 0..2 {
        match s.submit_state_update(second.request.clone()).await {
            Err(e @ Error::Unavailable { .. }) => {
                assert!(e.to_string().contains("spend budget"), "{e}");
                assert!(e.retry_after().is_some());
            }
            other => panic!("expected to wait for the budget, got {other:?}"),
        }
    }
    assert_eq!(w.nonce().await, nonce, "nothing sent");
    assert_eq!(w.events().await, 1);
    let recorded = alerts.0.lock().unwrap().clone();
    assert!(recorded.iter().any(|a| a.summary.contains("spend budget")), "{recorded:?}");
    // Same key for every such alert, so the engine's de-duplicating sink sends it once.
    let keys: std::collections::HashSet<_> =
        recorded.iter().filter(|a| a.summary.contains("spend budget")).map(|a| a.key.clone()).collect();
    assert_eq!(keys.len(), 1);
}

#[tokio::test]
async fn an_unfunded_key_waits_with_a_clear_reason_and_no_secret() {
    let Some(bin) = env_or_skip(BIN) else { return };
    let w = World::new(&bin, 7, &[]).await;
    let mut cfg = w.config();
    let poor = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let () = w
        .rpc(
            "anvil_setBalance",
            serde_json::json!([
                format!(
                    "{:#x}",
                    alloy::signers::local::PrivateKeySigner::from_slice(&alloy::hex::decode(&poor[2..]).unwrap())
                        .unwrap()
                        .address()
                ),
                "0x0"
            ]),
        )
        .await;
    cfg.private_key = orch_core::secret::Secret::new(poor.into());
    let s = w.connect(&cfg).await;
    match s.submit_state_update(w.batch.request.clone()).await {
        Err(e) => {
            assert!(e.is_retryable(), "funding the account fixes it: {e}");
            let shown = format!("{e} {e:?}");
            assert!(shown.contains("fund"), "{shown}");
            assert!(!shown.contains(&poor[2..]), "the key was printed: {shown}");
        }
        Ok(tx) => panic!("an unfunded key sent {tx}"),
    }
    assert_eq!(w.events().await, 0);
}
