//! The transaction manager: the one owner of a signer's nonces.
//!
//! Every state update becomes an *intent* under its dedup key: nonce, fee caps, and each
//! signed attempt, persisted ([`journal`]) before anything is broadcast. From then on the
//! intent is driven by its status polls, not by a background task:
//!
//! - not in the node's pool (dropped, or removed by a reorg) and its nonce still free: the
//!   latest attempt is broadcast again, the same bytes at the same nonce;
//! - not included `bump_after` after its latest attempt: a replacement at the same nonce with
//!   higher caps ([`fees::bump`]), within the configured ceilings;
//! - included: confirmations counted against the receipt's block; a receipt that vanishes
//!   (reorg) puts the intent back to open, and the loop above sends it again;
//! - its nonce used by a transaction that is none of its attempts: replaced (the caller's
//!   next submission makes a new intent, after checking the contract's state).
//!
//! Since every attempt of an intent shares one nonce, at most one of them is ever included:
//! resubmitting, re-broadcasting and bumping can never apply an update twice.

pub(crate) mod fees;
pub(crate) mod journal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::consensus::{EthereumTypedTransaction, TxEip4844Variant, TxEnvelope};
use alloy::eips::eip2718::{Decodable2718, Encodable2718};
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::{
    Ethereum, EthereumWallet, NetworkTransactionBuilder, NetworkWallet, ReceiptResponse, TransactionBuilder,
};
use alloy::primitives::{keccak256, Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use orch_core::alerts::{Alert, Alerts, NoAlerts, Severity};
use orch_core::error::{Error, Result};
use orch_core::settle::TxStatus;
use tokio::sync::Mutex;

use crate::config::{EthConfig, Wei};
use crate::error::{classify, BACKEND};
use fees::{AboveCeiling, Ceilings, Fees, Market};
use journal::{Attempt, Intent, IntentState, Journal, Spend, Store};

/// Extra gas over the node's estimate: state updates touch storage whose cost can move
/// between estimate and inclusion.
const GAS_MARGIN_PERCENT: u64 = 25;

/// Gas assumed for a state update when the node cannot estimate it for want of funds.
const GAS_FLOOR_FOR_FUNDS: u64 = 300_000;

/// What a node made of a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broadcast {
    /// In the pool (now or already), or included.
    Sent,
    /// Refused for caps below what the market asks now: replace it.
    FeeTooLow,
}

/// What the manager needs besides the node.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub chain_id: u64,
    pub confirmations: u32,
    pub ceilings: Ceilings,
    pub bump_after: Duration,
    pub budget: Option<Wei>,
    /// The window spends are counted over (the budget's, and `eth status`'s).
    pub spend_period: Duration,
}

impl Policy {
    pub(crate) fn from_config(cfg: &EthConfig) -> Policy {
        Policy {
            chain_id: cfg.chain_id,
            confirmations: cfg.confirmations,
            ceilings: Ceilings {
                max_fee: cfg.max_fee_per_gas,
                tip: cfg.max_priority_fee_per_gas,
                blob_fee: cfg.max_fee_per_blob_gas,
            },
            bump_after: cfg.bump_after,
            budget: cfg.max_spend,
            spend_period: cfg.spend_period,
        }
    }

    /// The unix second before which spends no longer count.
    fn window_start(&self, now: u64) -> u64 {
        now.saturating_sub(self.spend_period.as_secs())
    }
}

/// A transaction to make, before nonce, gas and fees.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The caller's idempotency key.
    pub key: String,
    /// What it does, for errors and logs.
    pub what: String,
    /// `to`, `input`, and for a blob transaction the sidecar.
    pub request: TransactionRequest,
    pub blobs: usize,
}

/// One pending intent, for `eth status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTx {
    /// Dedup key of the update.
    pub key: String,
    /// What it does.
    pub what: String,
    /// Its nonce.
    pub nonce: u64,
    /// Hash of its latest attempt.
    pub hash: B256,
    /// Number of attempts (1 + replacements).
    pub attempts: usize,
    /// Caps of the latest attempt: tip, max fee, blob fee.
    pub max_priority_fee_per_gas: Wei,
    /// Max fee per gas.
    pub max_fee_per_gas: Wei,
    /// Max fee per blob gas, for a blob transaction.
    pub max_fee_per_blob_gas: Option<Wei>,
    /// Included in this block, awaiting confirmations.
    pub included_in: Option<u64>,
}

/// The manager's books, for `eth status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Books {
    /// Intents still holding a nonce.
    pub pending: Vec<PendingTx>,
    /// Spent within `spend_period`.
    pub spent: Wei,
    /// Worst case of what is in flight.
    pub reserved: Wei,
}

pub(crate) fn books(j: &Journal, window_start: u64) -> Books {
    let pending = j
        .intents
        .iter()
        .filter(|i| i.state.is_live())
        .map(|i| {
            let a = i.latest();
            PendingTx {
                key: i.key.clone(),
                what: i.what.clone(),
                nonce: i.nonce,
                hash: a.hash,
                attempts: i.attempts.len(),
                max_priority_fee_per_gas: Wei(a.fees.tip),
                max_fee_per_gas: Wei(a.fees.max_fee),
                max_fee_per_blob_gas: a.fees.blob_fee.map(Wei),
                included_in: match i.state {
                    IntentState::Included { block, .. } => Some(block),
                    _ => None,
                },
            }
        })
        .collect();
    Books { pending, spent: Wei(j.spent_since(window_start)), reserved: Wei(j.reserved()) }
}

/// The books of `cfg`'s signer as its journal holds them, read without taking the owner lock
/// (for a status command beside a running orchestrator).
pub fn read_books(cfg: &EthConfig) -> Result<Books> {
    let signer = cfg.signer()?;
    let root = cfg.state_dir.as_ref().ok_or_else(|| {
        Error::invalid_input("settlement.state_dir", "is unset: give the transaction journal's directory")
    })?;
    let journal = Store::read(&journal::signer_dir(root, cfg.chain_id, signer.address()))?;
    Ok(books(&journal, unix_now().saturating_sub(cfg.spend_period.as_secs())))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Stops the process at a named point when the test suite asks for it
/// (`ORCH_TEST_ETH_CRASH_AT=<point>`), to prove recovery from a crash right there.
fn crash_point(point: &str) {
    if std::env::var("ORCH_TEST_ETH_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("orch-eth: crashing at `{point}` as ORCH_TEST_ETH_CRASH_AT asks");
        std::process::abort();
    }
}

/// The nonce owner of one signer.
pub(crate) struct TxManager {
    provider: DynProvider,
    wallet: EthereumWallet,
    from: Address,
    policy: Policy,
    alerts: Arc<dyn Alerts>,
    store: Mutex<Store>,
    /// Intent key → the head block when its nonce was first seen used with no receipt of
    /// ours (see `keep_alive`).
    nonce_gone: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl std::fmt::Debug for TxManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxManager").field("from", &self.from).field("policy", &self.policy).finish_non_exhaustive()
    }
}

fn parse_hash(tx: &str) -> Result<B256> {
    tx.parse().map_err(|_| Error::invalid_input("tx", format!("`{tx}` is not a 32-byte transaction hash")))
}

impl TxManager {
    /// Takes ownership of `from`'s nonces on this chain: its journal under `dir`.
    pub(crate) fn open(
        provider: DynProvider,
        wallet: EthereumWallet,
        from: Address,
        policy: Policy,
        dir: PathBuf,
    ) -> Result<TxManager> {
        let store = Store::open(journal::signer_dir(&dir, policy.chain_id, from))?;
        let live = store.journal.intents.iter().filter(|i| i.state.is_live()).count();
        if live > 0 {
            tracing::info!(target: "orch::eth", live, "resuming the transactions the journal holds");
        }
        Ok(TxManager {
            provider,
            wallet,
            from,
            policy,
            alerts: Arc::new(NoAlerts),
            store: Mutex::new(store),
            nonce_gone: Default::default(),
        })
    }

    pub(crate) fn set_alerts(&mut self, alerts: Arc<dyn Alerts>) {
        self.alerts = alerts;
    }

    /// The manager's books now.
    pub(crate) async fn books(&self) -> Books {
        let st = self.store.lock().await;
        books(&st.journal, self.policy.window_start(unix_now()))
    }

    async fn alert(&self, severity: Severity, key: &str, summary: String, details: String) {
        tracing::warn!(target: "orch::eth", %summary, "{details}");
        let alert = Alert { severity, key: format!("eth:{key}:{:#x}", self.from), summary, details };
        if let Err(e) = self.alerts.send(alert).await {
            tracing::warn!(target: "orch::eth", error = %e, "alert not delivered");
        }
    }

    /// Submits `call` once per key: the hash of its first attempt, now or on any later call
    /// with the same key while the intent lives or after it is included.
    /// The hash of `key`'s intent when it lives or is final (kept alive on the way); `None`
    /// when the key is new or its intent can no longer be included.
    pub(crate) async fn resume(&self, key: &str) -> Result<Option<B256>> {
        let mut st = self.store.lock().await;
        let Some(i) = st.journal.by_key(key) else { return Ok(None) };
        let intent = &st.journal.intents[i];
        match intent.state {
            IntentState::Final { .. } => Ok(Some(intent.handle())),
            IntentState::Open | IntentState::Included { .. } => {
                let handle = intent.handle();
                self.keep_alive(&mut st, i).await?;
                // Its nonce may have gone to another transaction meanwhile.
                Ok(st.journal.intents[i].state.is_live().then_some(handle))
            }
            _ => Ok(None),
        }
    }

    pub(crate) async fn submit(&self, call: Call) -> Result<B256> {
        let mut st = self.store.lock().await;
        let input = call.request.input.input().cloned().unwrap_or_default();
        let input_hash = keccak256(&input);
        if let Some(i) = st.journal.by_key(&call.key) {
            let intent = &st.journal.intents[i];
            match &intent.state {
                IntentState::Open | IntentState::Included { .. } => {
                    let handle = intent.handle();
                    self.keep_alive(&mut st, i).await?;
                    return Ok(handle);
                }
                IntentState::Final { .. } => return Ok(intent.handle()),
                IntentState::Reverted { hash, reason, .. } if intent.input_hash == input_hash => {
                    return Err(Error::rejected(
                        BACKEND,
                        format!(
                            "{}: transaction {hash:#x} reverted on chain ({reason}); the same update would revert \
                             again, so it is not sent twice",
                            call.what
                        ),
                    ));
                }
                // Reverted with other data, replaced, refused: a new intent.
                _ => {}
            }
        }
        self.reconcile(&mut st).await?;
        let blob = call.blobs > 0;
        let market = self.market(blob).await?;
        let fees = match fees::initial(market, self.policy.ceilings) {
            Ok(f) => f,
            Err(AboveCeiling(why)) => return Err(self.too_expensive(&call.what, why).await),
        };
        let mut request = call.request.clone().with_from(self.from).with_chain_id(self.policy.chain_id);
        set_fees(&mut request, fees);
        // A node estimates no gas for an account that cannot pay for it: say so first.
        self.ensure_funds(&call.what, fees.worst_case(21_000, call.blobs)).await?;
        let estimate = match self.provider.estimate_gas(request.clone()).await {
            Ok(g) => g,
            Err(e) => {
                let message = e.to_string().to_lowercase();
                if message.contains("insufficient funds") || message.contains("exceeds allowance") {
                    return Err(self.no_funds(&call.what, fees.worst_case(GAS_FLOOR_FOR_FUNDS, call.blobs)).await);
                }
                return Err(classify(&format!("{} (estimating gas)", call.what), e));
            }
        };
        let gas = estimate + estimate * GAS_MARGIN_PERCENT / 100;
        self.ensure_funds(&call.what, fees.worst_case(gas, call.blobs)).await?;
        let now = unix_now();
        self.check_budget(&st.journal, fees.worst_case(gas, call.blobs), &call.what, now).await?;
        let chain_nonce = self
            .provider
            .get_transaction_count(self.from)
            .pending()
            .await
            .map_err(|e| classify("read the operator's nonce", e))?;
        let nonce = chain_nonce.max(st.journal.next_nonce().unwrap_or(0));
        let request = request.with_nonce(nonce).with_gas_limit(gas);
        let envelope = <TransactionRequest as NetworkTransactionBuilder<Ethereum>>::build(request, &self.wallet)
            .await
            .map_err(|e| Error::internal(format!("{}: signing the transaction: {e}", call.what)))?;
        let hash = *envelope.tx_hash();
        st.put_raw(hash, &envelope.encoded_2718())?;
        st.journal.intents.push(Intent {
            key: call.key,
            what: call.what.clone(),
            nonce,
            input_hash,
            gas,
            blobs: call.blobs,
            created_at: now,
            attempts: vec![Attempt { hash, fees, signed_at: now }],
            state: IntentState::Open,
        });
        st.save(self.policy.window_start(now))?;
        tracing::info!(target: "orch::eth", tx = %hash, nonce, what = %call.what, "signed and journaled");
        crash_point("signed");
        let i = st.journal.intents.len() - 1;
        if self.broadcast(&mut st, i).await? == Broadcast::FeeTooLow {
            self.replace(&mut st, i).await?;
        }
        crash_point("sent");
        Ok(hash)
    }

    /// The status of the intent one of whose attempts is `tx`, driving it on (re-broadcast,
    /// replacement, confirmation); `None` when `tx` is not the manager's.
    pub(crate) async fn status(&self, tx: &str) -> Result<Option<TxStatus>> {
        let hash = parse_hash(tx)?;
        let mut st = self.store.lock().await;
        let Some(i) = st.journal.by_hash(hash) else { return Ok(None) };
        match st.journal.intents[i].state.clone() {
            IntentState::Reverted { reason, .. } => return Ok(Some(TxStatus::Reverted { reason })),
            IntentState::Replaced => return Ok(Some(TxStatus::NotFound)),
            IntentState::Refused { reason } => {
                return Ok(Some(TxStatus::Reverted { reason: format!("the node refused it: {reason}") }))
            }
            IntentState::Open | IntentState::Included { .. } | IntentState::Final { .. } => {}
        }
        if let Some(status) = self.included(&mut st, i).await? {
            return Ok(Some(status));
        }
        self.keep_alive(&mut st, i).await?;
        Ok(Some(match st.journal.intents[i].state {
            IntentState::Replaced => TxStatus::NotFound,
            _ => TxStatus::Pending,
        }))
    }

    /// Brings every live intent's state up to the chain's: an update the engine found settled
    /// on the contract (after a crash) is never polled again, yet its intent must not stay
    /// open in the books or hold back the spend budget.
    async fn reconcile(&self, st: &mut Store) -> Result<()> {
        let live: Vec<usize> =
            (0..st.journal.intents.len()).filter(|&j| st.journal.intents[j].state.is_live()).collect();
        for j in live {
            self.included(st, j).await?;
        }
        Ok(())
    }

    /// Looks for a receipt of any attempt of intent `i` and records what it says; `None`
    /// when no attempt is in a block (an inclusion that vanished is undone first).
    async fn included(&self, st: &mut Store, i: usize) -> Result<Option<TxStatus>> {
        let hashes: Vec<B256> = st.journal.intents[i].attempts.iter().rev().map(|a| a.hash).collect();
        for hash in hashes {
            let receipt =
                self.provider.get_transaction_receipt(hash).await.map_err(|e| classify("read a receipt", e))?;
            let Some(r) = receipt else { continue };
            let Some(block) = r.block_number() else { continue };
            let now = unix_now();
            let intent = &mut st.journal.intents[i];
            if !r.status() {
                let reason = self.revert_reason(st, hash, block).await;
                tracing::error!(target: "orch::eth", tx = %hash, block, %reason, "state update reverted");
                st.journal.intents[i].state = IntentState::Reverted { hash, block, reason: reason.clone() };
                st.save(self.policy.window_start(now))?;
                return Ok(Some(TxStatus::Reverted {
                    reason: format!("reverted in block {block} after {} gas: {reason}", r.gas_used()),
                }));
            }
            let cost = u128::from(r.gas_used()).saturating_mul(r.effective_gas_price()).saturating_add(
                u128::from(r.blob_gas_used().unwrap_or(0)).saturating_mul(r.blob_gas_price().unwrap_or(0)),
            );
            let head = self.provider.get_block_number().await.map_err(|e| classify("read the block number", e))?;
            let confirmations = u32::try_from(head.saturating_sub(block) + 1).unwrap_or(u32::MAX);
            let state = if confirmations >= self.policy.confirmations {
                IntentState::Final { hash, block, cost }
            } else {
                IntentState::Included { hash, block, cost }
            };
            if intent.state != state {
                let first_sight = !matches!(intent.state, IntentState::Included { hash: h, block: b, .. } | IntentState::Final { hash: h, block: b, .. } if h == hash && b == block);
                if first_sight {
                    st.journal.spends.retain(|s| s.tx != hash);
                    st.journal.spends.push(Spend { at: now, wei: cost, tx: hash });
                    tracing::info!(target: "orch::eth", tx = %hash, block, cost = %Wei(cost), "included");
                }
                st.journal.intents[i].state = state;
                st.save(self.policy.window_start(now))?;
            }
            return Ok(Some(TxStatus::Confirmed { confirmations }));
        }
        let intent = &mut st.journal.intents[i];
        if let IntentState::Included { hash, block, .. } | IntentState::Final { hash, block, .. } = intent.state {
            tracing::warn!(target: "orch::eth", tx = %hash, block, "the receipt is gone (L1 reorg): sending the update again");
            intent.state = IntentState::Open;
            st.journal.spends.retain(|s| s.tx != hash);
            st.save(self.policy.window_start(unix_now()))?;
        }
        Ok(None)
    }

    /// Keeps open intent `i` on its way: re-broadcast when the node lost it, replacement
    /// when it waited too long, `Replaced` when its nonce went to another transaction.
    async fn keep_alive(&self, st: &mut Store, i: usize) -> Result<()> {
        if !matches!(st.journal.intents[i].state, IntentState::Open) {
            return Ok(());
        }
        let intent = st.journal.intents[i].clone();
        let mined_nonce = self
            .provider
            .get_transaction_count(self.from)
            .latest()
            .await
            .map_err(|e| classify("read the operator's nonce", e))?;
        if mined_nonce > intent.nonce {
            // A block holds a transaction at this nonce. If it is one of ours, its receipt
            // shows it, though a node may update the account before it stores the receipt;
            // so "another transaction took it" is concluded only when a later block still
            // shows no receipt of ours.
            if self.included(st, i).await?.is_some() {
                return Ok(());
            }
            let head = self.provider.get_block_number().await.map_err(|e| classify("read the block number", e))?;
            let first_seen =
                *self.nonce_gone.lock().unwrap_or_else(|p| p.into_inner()).entry(intent.key.clone()).or_insert(head);
            if head <= first_seen {
                return Ok(());
            }
            self.nonce_gone.lock().unwrap_or_else(|p| p.into_inner()).remove(&intent.key);
            tracing::warn!(target: "orch::eth", nonce = intent.nonce, key = %intent.key, "nonce used by another transaction");
            st.journal.intents[i].state = IntentState::Replaced;
            return st.save(self.policy.window_start(unix_now()));
        }
        let mut known = false;
        for a in intent.attempts.iter().rev() {
            let tx =
                self.provider.get_transaction_by_hash(a.hash).await.map_err(|e| classify("read a transaction", e))?;
            if tx.is_some() {
                known = true;
                break;
            }
        }
        if !known {
            tracing::warn!(target: "orch::eth", tx = %intent.latest().hash, nonce = intent.nonce, "not in the node's pool: broadcasting again");
            if self.broadcast(st, i).await? == Broadcast::FeeTooLow {
                self.replace(st, i).await?;
            }
            return Ok(());
        }
        let waited = unix_now().saturating_sub(intent.latest().signed_at);
        if waited >= self.policy.bump_after.as_secs() {
            self.replace(st, i).await?;
        }
        Ok(())
    }

    /// Signs and broadcasts a replacement of intent `i` with bumped caps.
    async fn replace(&self, st: &mut Store, i: usize) -> Result<()> {
        let intent = st.journal.intents[i].clone();
        let prev = intent.latest();
        let market = self.market(intent.blobs > 0).await?;
        let fees = match fees::bump(prev.fees, market, self.policy.ceilings) {
            Ok(f) => f,
            Err(AboveCeiling(why)) => {
                self.alert(
                    Severity::Critical,
                    "fee-ceiling",
                    format!("{} is stuck at the fee ceiling", intent.what),
                    format!("transaction {:#x} (nonce {}) waits: {why}", prev.hash, intent.nonce),
                )
                .await;
                return Ok(());
            }
        };
        let now = unix_now();
        let extra =
            fees.worst_case(intent.gas, intent.blobs).saturating_sub(prev.fees.worst_case(intent.gas, intent.blobs));
        if let Err(e) = self.check_budget(&st.journal, extra, &intent.what, now).await {
            tracing::warn!(target: "orch::eth", error = %e, "not replacing");
            return Ok(());
        }
        let raw = st.raw(prev.hash)?;
        let envelope = TxEnvelope::decode_2718(&mut raw.as_slice())
            .map_err(|e| Error::internal(format!("decoding the journaled transaction {:#x}: {e}", prev.hash)))?;
        let mut typed = envelope.into_typed_transaction();
        match &mut typed {
            EthereumTypedTransaction::Eip1559(t) => {
                t.max_priority_fee_per_gas = fees.tip;
                t.max_fee_per_gas = fees.max_fee;
            }
            EthereumTypedTransaction::Eip4844(TxEip4844Variant::TxEip4844WithSidecar(t)) => {
                t.tx.max_priority_fee_per_gas = fees.tip;
                t.tx.max_fee_per_gas = fees.max_fee;
                t.tx.max_fee_per_blob_gas = fees.blob_fee.unwrap_or(t.tx.max_fee_per_blob_gas);
            }
            other => {
                return Err(Error::internal(format!(
                    "journaled transaction {:#x} is of type {}, which the manager never signs",
                    prev.hash,
                    other.tx_type()
                )))
            }
        }
        let signed = NetworkWallet::<Ethereum>::sign_transaction_from(&self.wallet, self.from, typed)
            .await
            .map_err(|e| Error::internal(format!("{}: signing a replacement: {e}", intent.what)))?;
        let hash = *signed.tx_hash();
        st.put_raw(hash, &signed.encoded_2718())?;
        st.journal.intents[i].attempts.push(Attempt { hash, fees, signed_at: now });
        st.save(self.policy.window_start(now))?;
        tracing::info!(
            target: "orch::eth", tx = %hash, replaces = %prev.hash, nonce = intent.nonce,
            max_fee = %Wei(fees.max_fee), tip = %Wei(fees.tip), blob_fee = ?fees.blob_fee.map(Wei),
            "replacement signed"
        );
        // Still below the market: the next poll past `bump_after` bumps again.
        self.broadcast(st, i).await.map(drop)
    }

    /// Broadcasts intent `i`'s latest attempt and reads the node's answer as the outcome it
    /// is. Errors only for what the caller must hear: a refusal, no funds, a node down.
    async fn broadcast(&self, st: &mut Store, i: usize) -> Result<Broadcast> {
        let intent = st.journal.intents[i].clone();
        let hash = intent.latest().hash;
        let raw = st.raw(hash)?;
        let err = match self.provider.send_raw_transaction(&raw).await {
            Ok(_) => {
                tracing::info!(target: "orch::eth", tx = %hash, nonce = intent.nonce, what = %intent.what, "broadcast");
                return Ok(Broadcast::Sent);
            }
            Err(e) => e,
        };
        let message = err.to_string().to_lowercase();
        if message.contains("already known")
            || message.contains("known transaction")
            || message.contains("already imported")
        {
            return Ok(Broadcast::Sent);
        }
        // Another attempt of ours holds the nonce in the pool at higher caps: fine.
        if message.contains("replacement transaction underpriced") || message.contains("replacement underpriced") {
            tracing::info!(target: "orch::eth", tx = %hash, "the pool holds a better-paying attempt at this nonce");
            return Ok(Broadcast::Sent);
        }
        // The market moved past these caps (the node refuses a max fee below the base fee).
        if message.contains("less than block base fee")
            || message.contains("fee cap less than")
            || message.contains("underpriced")
            || message.contains("max fee per blob gas less than")
        {
            tracing::warn!(target: "orch::eth", tx = %hash, error = %err, "priced below the market: replacing");
            return Ok(Broadcast::FeeTooLow);
        }
        if message.contains("nonce too low") {
            // Included as one of our attempts, or lost to another transaction: the status
            // polls tell which (and a lost intent then gives way to a new one).
            tracing::info!(target: "orch::eth", tx = %hash, nonce = intent.nonce, "nonce already used");
            return Ok(Broadcast::Sent);
        }
        if message.contains("insufficient funds") {
            let need = intent.latest().fees.worst_case(intent.gas, intent.blobs);
            return Err(self.no_funds(&intent.what, need).await);
        }
        let e = classify(&format!("broadcast {}", intent.what), err);
        if !e.is_retryable() {
            st.journal.intents[i].state = IntentState::Refused { reason: e.to_string() };
            st.save(self.policy.window_start(unix_now()))?;
        }
        Err(e)
    }

    /// Refuses to go on while the operator's balance cannot pay `need` wei: one alert, and an
    /// error that says to fund the account (retried, since funding fixes it).
    async fn ensure_funds(&self, what: &str, need: u128) -> Result<()> {
        let balance =
            self.provider.get_balance(self.from).await.map_err(|e| classify("read the operator's balance", e))?;
        if balance >= alloy::primitives::U256::from(need) {
            return Ok(());
        }
        Err(self.no_funds(what, need).await)
    }

    async fn no_funds(&self, what: &str, need: u128) -> Error {
        let balance = self.provider.get_balance(self.from).await.ok().and_then(|b| u128::try_from(b).ok());
        let balance = balance.map_or_else(|| "unknown".to_owned(), |b| Wei(b).to_string());
        let message = format!(
            "{what}: the operator account {:#x} holds {balance} and may need up to {}: fund it",
            self.from,
            Wei(need)
        );
        self.alert(
            Severity::Critical,
            "funds",
            format!("operator account {:#x} cannot pay for settlement", self.from),
            message.clone(),
        )
        .await;
        Error::Unavailable {
            backend: BACKEND.into(),
            message,
            retry_after: Some(Duration::from_secs(30)),
            source: None,
        }
    }

    /// The replayed call's revert reason, or a plain note when it cannot be had.
    async fn revert_reason(&self, st: &Store, hash: B256, block: u64) -> String {
        let Ok(raw) = st.raw(hash) else { return "reason unknown".into() };
        let Ok(envelope) = TxEnvelope::decode_2718(&mut raw.as_slice()) else { return "reason unknown".into() };
        let req = <TransactionRequest as From<TxEnvelope>>::from(envelope).with_from(self.from);
        match self.provider.call(req).block(BlockId::number(block.saturating_sub(1))).await {
            Err(e) => classify("replay", e)
                .to_string()
                .split_once("reverted: ")
                .map_or_else(|| "reason unknown".into(), |(_, r)| r.to_owned()),
            Ok(_) => "reason unknown (the replay succeeded)".into(),
        }
    }

    async fn market(&self, blob: bool) -> Result<Market> {
        let latest = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(|e| classify("read the latest block", e))?
            .ok_or_else(|| Error::unavailable(BACKEND, "the node has no latest block"))?;
        let base_fee = latest.header.base_fee_per_gas.map(u128::from).ok_or_else(|| {
            Error::invalid_input("settlement.rpc_url", "the node's blocks have no base fee: it predates EIP-1559")
        })?;
        let tip =
            self.provider.get_max_priority_fee_per_gas().await.map_err(|e| classify("read the suggested tip", e))?;
        let blob_base_fee = if blob {
            Some(self.provider.get_blob_base_fee().await.map_err(|e| classify("read the blob base fee", e))?)
        } else {
            None
        };
        Ok(Market { base_fee, tip, blob_base_fee })
    }

    async fn too_expensive(&self, what: &str, why: String) -> Error {
        self.alert(
            Severity::Warning,
            "fee-ceiling",
            "settlement waits for fees to fall below the ceilings".into(),
            why.clone(),
        )
        .await;
        Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("{what}: {why}; waiting"),
            retry_after: Some(Duration::from_secs(12)),
            source: None,
        }
    }

    /// Refuses `extra` wei of new exposure when it would take the window's spend, plus the
    /// worst case of what is in flight, past the budget.
    async fn check_budget(&self, j: &Journal, extra: u128, what: &str, now: u64) -> Result<()> {
        let Some(max) = self.policy.budget else { return Ok(()) };
        let period = self.policy.spend_period;
        let spent = j.spent_since(self.policy.window_start(now));
        let reserved = j.reserved();
        let total = spent.saturating_add(reserved).saturating_add(extra);
        if total <= max.0 {
            return Ok(());
        }
        // The earliest moment a spend leaves the window, else a minute.
        let window_start = self.policy.window_start(now);
        let wait = j
            .spends
            .iter()
            .filter(|s| s.at >= window_start)
            .map(|s| s.at + period.as_secs())
            .min()
            .map_or(60, |t| t.saturating_sub(now).clamp(1, 3600));
        let details = format!(
            "{what} could cost up to {}; spent {} in the last {}, {} in flight, budget settlement.max_spend {}",
            Wei(extra),
            Wei(spent),
            orch_core::duration::format_duration(period),
            Wei(reserved),
            max
        );
        self.alert(
            Severity::Critical,
            "spend-budget",
            "settlement stopped at its spend budget".into(),
            details.clone(),
        )
        .await;
        Err(Error::Unavailable {
            backend: BACKEND.into(),
            message: format!("spend budget reached: {details}; waiting"),
            retry_after: Some(Duration::from_secs(wait)),
            source: None,
        })
    }
}

fn set_fees(req: &mut TransactionRequest, fees: Fees) {
    req.max_priority_fee_per_gas = Some(fees.tip);
    req.max_fee_per_gas = Some(fees.max_fee);
    req.max_fee_per_blob_gas = fees.blob_fee;
}
