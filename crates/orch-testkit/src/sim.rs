//! In-memory simulated outside world for engine tests: a chain, an OS runner, a prover, a DA
//! layer and a strict settlement ledger. Deterministic and instant; wrap them with
//! [`crate::faults`] for misbehaviour.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use orch_core::chain::{
    BlockInfo, ChainSource, ContractStorageDiff, NonceUpdate, StateDiff, StateUpdate, StorageEntry,
};
use orch_core::da::{Da, DaReference, DaRequest, DaStatus};
use orch_core::error::{Error, Result};
use orch_core::prove::{OsOutput, OsRunner, ProofRequest, ProofStatus, Prover, TaskId};
use orch_core::settle::{
    ProofRegistrationRequest, SettledState, Settlement, SettlementCapabilities, StateUpdateRequest, TxStatus,
};
use orch_core::types::{BlockNumber, BlockRange, ChainId, TxHash};
use orch_core::Felt;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// State root after block `n` (`None`: the genesis root before block 0).
pub fn sim_root(n: Option<BlockNumber>) -> Felt {
    match n {
        None => Felt::ZERO,
        Some(n) => Felt::from_u128((u128::from(mix(n)) << 60) | u128::from(n + 1)),
    }
}

/// A chain whose head is set by the test; blocks are small and deterministic.
#[derive(Debug)]
pub struct SimChain {
    head: AtomicU64,
}

impl SimChain {
    /// A chain whose blocks `0..blocks` exist.
    pub fn new(blocks: u64) -> SimChain {
        SimChain { head: AtomicU64::new(blocks) }
    }

    /// Make blocks `0..blocks` exist.
    pub fn set_blocks(&self, blocks: u64) {
        self.head.store(blocks, Ordering::SeqCst);
    }

    fn check(&self, n: BlockNumber) -> Result<()> {
        if n >= self.head.load(Ordering::SeqCst) {
            return Err(Error::not_found(format!("block {n}")));
        }
        Ok(())
    }
}

#[async_trait]
impl ChainSource for SimChain {
    async fn latest_block(&self) -> Result<Option<BlockNumber>> {
        Ok(self.head.load(Ordering::SeqCst).checked_sub(1))
    }

    async fn block(&self, n: BlockNumber) -> Result<BlockInfo> {
        self.check(n)?;
        Ok(BlockInfo {
            number: n,
            hash: Felt::from_u64(mix(n ^ 0xb10c)),
            state_root: sim_root(Some(n)),
            starknet_version: Some("0.13.3".into()),
        })
    }

    async fn state_update(&self, n: BlockNumber) -> Result<StateUpdate> {
        self.check(n)?;
        let contract = Felt::from_u64(0x1000 + n % 7);
        Ok(StateUpdate {
            block_hash: Felt::from_u64(mix(n ^ 0xb10c)),
            old_root: sim_root(n.checked_sub(1)),
            new_root: sim_root(Some(n)),
            state_diff: StateDiff {
                storage_diffs: vec![ContractStorageDiff {
                    address: contract,
                    storage_entries: vec![StorageEntry { key: Felt::from_u64(n), value: Felt::from_u64(mix(n)) }],
                }],
                nonces: vec![NonceUpdate { contract_address: contract, nonce: Felt::from_u64(n + 1) }],
                ..StateDiff::default()
            },
        })
    }

    async fn nonce_at(&self, n: BlockNumber, _contract: Felt) -> Result<Felt> {
        self.check(n)?;
        Ok(Felt::from_u64(n + 1))
    }
}

/// OS runner: program output `[prev_root, new_root, first, last]`.
#[derive(Debug, Default)]
pub struct SimOs {
    runs: AtomicU64,
}

impl SimOs {
    /// Runs so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl OsRunner for SimOs {
    async fn run(&self, _chain: &ChainId, range: BlockRange) -> Result<OsOutput> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        Ok(OsOutput {
            program_output: vec![
                sim_root(range.first().checked_sub(1)),
                sim_root(Some(range.last())),
                Felt::from_u64(range.first()),
                Felt::from_u64(range.last()),
            ],
            pie: format!("pie:{range}").into_bytes(),
        })
    }
}

/// Prover: a task per dedup key, succeeding at its first poll.
#[derive(Debug, Default)]
pub struct SimProver {
    tasks: Mutex<HashMap<String, BlockRange>>,
}

impl SimProver {
    /// Distinct tasks started.
    pub fn tasks(&self) -> usize {
        self.tasks.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[async_trait]
impl Prover for SimProver {
    async fn submit(&self, req: ProofRequest) -> Result<TaskId> {
        let mut t = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        t.entry(req.dedup_key.clone()).or_insert(req.range);
        Ok(TaskId(req.dedup_key))
    }

    async fn status(&self, task: &TaskId) -> Result<ProofStatus> {
        let t = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let range = t.get(&task.0).ok_or_else(|| Error::not_found(format!("task {}", task.0)))?;
        Ok(ProofStatus::Succeeded { proof: format!("proof:{range}").into_bytes() })
    }
}

/// DA layer: publications keyed by dedup key, included at once.
#[derive(Debug, Default)]
pub struct SimDa {
    published: Mutex<HashMap<String, DaReference>>,
}

impl SimDa {
    /// Distinct publications.
    pub fn publications(&self) -> usize {
        self.published.lock().map(|p| p.len()).unwrap_or(0)
    }
}

#[async_trait]
impl Da for SimDa {
    fn max_bytes_per_submission(&self) -> usize {
        6 * 131_072
    }

    async fn publish(&self, req: DaRequest) -> Result<DaReference> {
        let bytes = serde_json::to_vec(&req.updates).map(|v| v.len() as u64).unwrap_or(0);
        let chunks = bytes.div_ceil(131_072).max(1) as u32;
        let mut p = self.published.lock().unwrap_or_else(|p| p.into_inner());
        Ok(p.entry(req.dedup_key.clone())
            .or_insert_with(|| DaReference { id: req.dedup_key.clone(), chunks, bytes })
            .clone())
    }

    async fn verify(&self, reference: &DaReference) -> Result<DaStatus> {
        let p = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if p.contains_key(&reference.id) {
            Ok(DaStatus::Included)
        } else {
            Err(Error::not_found(format!("DA reference {}", reference.id)))
        }
    }
}

/// One state update the ledger applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Blocks.
    pub range: BlockRange,
    /// Root before.
    pub prev_root: Felt,
    /// Root after.
    pub new_root: Felt,
    /// The submitter's dedup key.
    pub dedup_key: String,
}

#[derive(Debug, Default)]
struct Ledger {
    applied: Vec<Applied>,
    by_dedup: HashMap<String, TxHash>,
    tx_ranges: HashMap<String, BlockRange>,
    registered: HashMap<String, TxHash>,
    rejections: Vec<String>,
}

/// A strict settlement ledger: rejects updates out of order, twice, or with the wrong previous
/// root, and records every rejection so tests can assert there were none.
#[derive(Debug)]
pub struct SimSettlement {
    start: BlockNumber,
    genesis_root: Felt,
    caps: SettlementCapabilities,
    ledger: Mutex<Ledger>,
}

impl SimSettlement {
    /// A ledger expecting its first update at `start` on top of `genesis_root`.
    pub fn new(start: BlockNumber, genesis_root: Felt) -> SimSettlement {
        SimSettlement {
            start,
            genesis_root,
            caps: SettlementCapabilities { requires_proof_registration: false, confirmations: 1 },
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// Require proof registration (an L3).
    pub fn with_proof_registration(mut self) -> SimSettlement {
        self.caps.requires_proof_registration = true;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates applied, in order.
    pub fn applied(&self) -> Vec<Applied> {
        self.lock().applied.clone()
    }

    /// Every rejection's message.
    pub fn rejections(&self) -> Vec<String> {
        self.lock().rejections.clone()
    }

    /// Proofs registered.
    pub fn registrations(&self) -> usize {
        self.lock().registered.len()
    }
}

#[async_trait]
impl Settlement for SimSettlement {
    fn capabilities(&self) -> SettlementCapabilities {
        self.caps
    }

    async fn last_settled(&self) -> Result<Option<SettledState>> {
        Ok(self.lock().applied.last().map(|a| SettledState { block: a.range.last(), state_root: a.new_root }))
    }

    async fn register_proof(&self, req: ProofRegistrationRequest) -> Result<TxHash> {
        if !self.caps.requires_proof_registration {
            return Err(Error::unsupported("register_proof", "sim settlement (L2 mode)"));
        }
        let mut l = self.lock();
        let tx = TxHash(format!("0xreg{}", req.dedup_key.len() + l.registered.len()));
        let tx = l.registered.entry(req.dedup_key).or_insert(tx).clone();
        l.tx_ranges.insert(tx.0.clone(), req.range);
        Ok(tx)
    }

    async fn submit_state_update(&self, req: StateUpdateRequest) -> Result<TxHash> {
        let mut l = self.lock();
        if let Some(tx) = l.by_dedup.get(&req.dedup_key) {
            return Ok(tx.clone());
        }
        let (expect_first, expect_root) = match l.applied.last() {
            Some(a) => (a.range.last() + 1, a.new_root),
            None => (self.start, self.genesis_root),
        };
        let problem = if req.range.first() != expect_first {
            Some(format!("update for {} out of order: expected block {expect_first} next", req.range))
        } else if req.prev_root != expect_root {
            Some(format!(
                "update for {} has previous root {} but the settled root is {expect_root}",
                req.range, req.prev_root
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            l.rejections.push(p.clone());
            return Err(Error::rejected("sim settlement", p));
        }
        let tx = TxHash(format!("0xst{:x}", l.applied.len() + 1));
        l.applied.push(Applied {
            range: req.range,
            prev_root: req.prev_root,
            new_root: req.new_root,
            dedup_key: req.dedup_key.clone(),
        });
        l.by_dedup.insert(req.dedup_key, tx.clone());
        l.tx_ranges.insert(tx.0.clone(), req.range);
        Ok(tx)
    }

    async fn tx_status(&self, tx: &TxHash) -> Result<TxStatus> {
        if self.lock().tx_ranges.contains_key(&tx.0) {
            Ok(TxStatus::Confirmed { confirmations: 1 })
        } else {
            Ok(TxStatus::NotFound)
        }
    }
}
