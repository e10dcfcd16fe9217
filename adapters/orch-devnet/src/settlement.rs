//! [`DevSettlement`]: a simulated core contract whose ledger is a file on disk.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orch_blob::os_output::HEADER_LEN;
use orch_blob::{KzgDaOutput, OsOutputHeader};
use orch_core::clock::Clock;
use orch_core::da::DaReference;
use orch_core::error::{Error, Result};
use orch_core::settle::{
    ProofRegistrationRequest, SettledState, Settlement, SettlementCapabilities, StateUpdateRequest, TxStatus,
};
use orch_core::types::{BlockRange, Timestamp, TxHash};
use orch_core::Felt;
use serde::{Deserialize, Serialize};

use crate::blobs;
use crate::config::SettlementConfig;
use crate::da::reference_commitments;
use crate::faults::Injector;
use crate::ledger::{self, Line, Writer, LEDGER_FILE};
use crate::mix::{felt_of, h_bytes, h_str};
use crate::os::DEV_OS_PROGRAM_HASH;

const T_FAULTS: u64 = 0x61;
const T_TX: u64 = 0x62;
const BACKEND: &str = "devnet settlement";

/// A state update the ledger applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedUpdate {
    /// Blocks covered.
    pub range: BlockRange,
    /// Root before the range.
    pub prev_root: Felt,
    /// Root after the range.
    pub new_root: Felt,
    /// Hash of the range's last block.
    pub block_hash: Felt,
    /// The submission's idempotency key.
    pub dedup_key: String,
    /// The transaction that applied it.
    pub tx_hash: TxHash,
    /// When it was applied (by the settlement's clock).
    pub applied_at: Timestamp,
    /// The DA publication it cited.
    pub da: DaReference,
}

/// A proof the ledger registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredProof {
    /// Blocks covered.
    pub range: BlockRange,
    /// The registration's idempotency key.
    pub dedup_key: String,
    /// The registration transaction.
    pub tx_hash: TxHash,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// Size of the proof.
    pub proof_bytes: u64,
    /// A fingerprint of the proof bytes (hex).
    pub proof_fingerprint: String,
}

/// A read-only snapshot of a ledger on disk (for tests and the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerView {
    /// The ledger file.
    pub path: PathBuf,
    /// Applied updates, in order.
    pub applied: Vec<AppliedUpdate>,
    /// Registered proofs, in order.
    pub proofs: Vec<RegisteredProof>,
    /// The file ends in an incomplete record (a write cut short by a crash, never
    /// acknowledged); opening the ledger for writing drops it.
    pub torn_tail: bool,
}

impl LedgerView {
    /// The last applied block and root.
    pub fn last_settled(&self) -> Option<SettledState> {
        self.applied.last().map(|u| SettledState { block: u.range.last(), state_root: u.new_root })
    }
}

#[derive(Debug)]
struct Inner {
    writer: Writer,
    updates: Vec<AppliedUpdate>,
    proofs: Vec<RegisteredProof>,
    update_by_key: HashMap<String, usize>,
    proof_by_key: HashMap<String, usize>,
    /// Every transaction hash issued, with the time it was applied.
    txs: HashMap<String, Timestamp>,
    registered: HashSet<BlockRange>,
}

/// A simulated settlement layer (the Starknet core contract), strict like the real one and
/// durable: a ledger file in the data dir.
///
/// # Rules
/// - Updates apply strictly in order. The very first must start at `start_block`, and its
///   `prev_root` must equal `genesis_root` when one is configured (any root otherwise); every
///   later one must start at `last_settled + 1` from the settled root. Anything else —
///   out of order, a range applied twice under a new dedup key, a wrong previous root, a
///   missing proof registration when one is required, a bad program output — is `Rejected`
///   with the reason.
/// - The program output (unless `verify_program_output` is off) must be a Starknet OS output
///   for KZG DA ([`orch_blob::os_output`]) of the devnet's OS program
///   ([`DEV_OS_PROGRAM_HASH`](crate::DEV_OS_PROGRAM_HASH)) that agrees with the request and the
///   ledger: its roots, block numbers and last block hash are the request's, its previous block
///   hash is that of the last settled block, its KZG segment is well-formed, and — when the
///   cited DA publication is one of the devnet DA layer's — it commits to exactly the
///   published blobs (their number and commitments), as the core contract checks the blobs of
///   its transaction.
/// - The same dedup key again returns the same transaction hash and applies nothing.
/// - An update is applied, and durable on disk (appended and fsynced), **before**
///   `submit_state_update` returns; `last_settled` reflects it at once. `tx_status` says
///   `Pending` for `confirmation_delay` after that, then `Confirmed`.
/// - One process per data dir: the ledger is not locked against a second writer.
#[derive(Debug)]
pub struct DevSettlement {
    seed: u64,
    cfg: SettlementConfig,
    clock: Arc<dyn Clock>,
    faults: Injector,
    inner: Mutex<Inner>,
}

impl DevSettlement {
    /// Opens the ledger in `data_dir` (creating the dir and the ledger when absent), restoring
    /// every applied update. An incomplete last record (a crash mid-append) is dropped; any other
    /// damage is an `InvalidInput` error naming the file and line.
    pub fn open(
        data_dir: impl AsRef<Path>,
        cfg: SettlementConfig,
        seed: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<DevSettlement> {
        let (writer, loaded) = Writer::open(data_dir.as_ref(), cfg.fsync)?;
        let mut inner = Inner {
            writer,
            updates: Vec::with_capacity(loaded.updates.len()),
            proofs: Vec::with_capacity(loaded.proofs.len()),
            update_by_key: HashMap::new(),
            proof_by_key: HashMap::new(),
            txs: HashMap::new(),
            registered: HashSet::new(),
        };
        for u in loaded.updates {
            inner.index_update(u);
        }
        for p in loaded.proofs {
            inner.index_proof(p);
        }
        Ok(DevSettlement {
            faults: Injector::new(BACKEND, seed, T_FAULTS, cfg.faults.clone()),
            seed,
            cfg,
            clock,
            inner: Mutex::new(inner),
        })
    }

    /// Reads the ledger in `data_dir` without opening it for writing (safe while a devnet
    /// runs on it). `NotFound` when there is none.
    pub fn read_ledger(data_dir: impl AsRef<Path>) -> Result<LedgerView> {
        let path = data_dir.as_ref().join(LEDGER_FILE);
        let loaded = ledger::read(&path)?;
        Ok(LedgerView { path, applied: loaded.updates, proofs: loaded.proofs, torn_tail: loaded.torn_tail })
    }

    /// The ledger file.
    pub fn path(&self) -> PathBuf {
        self.lock().writer.path().to_path_buf()
    }

    /// Every applied update, in order.
    pub fn applied(&self) -> Vec<AppliedUpdate> {
        self.lock().updates.clone()
    }

    /// Every registered proof, in order.
    pub fn proofs(&self) -> Vec<RegisteredProof> {
        self.lock().proofs.clone()
    }

    /// Failures injected so far by the `faults` knobs.
    pub fn injected_failures(&self) -> u64 {
        self.faults.injected()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tx_hash(&self, kind: u64, index: usize, key: &str) -> TxHash {
        let f = felt_of(&[self.seed, T_TX, kind, index as u64, h_str(self.seed, key)]);
        let mut s = String::with_capacity(66);
        s.push_str("0x");
        for b in f.as_be_bytes() {
            let _ = write!(s, "{b:02x}");
        }
        TxHash(s)
    }

    /// Every rule an update must pass against the ledger `st`.
    fn check_update(&self, st: &Inner, req: &StateUpdateRequest) -> Result<()> {
        let range = req.range;
        match st.updates.last() {
            None => {
                if range.first() != self.cfg.start_block {
                    return Err(Error::rejected(
                        BACKEND,
                        format!(
                            "out of order: the first state update must start at block {} (devnet.settlement.start_block; keep it equal to engine.start_block), this one covers blocks {range}",
                            self.cfg.start_block
                        ),
                    ));
                }
                if let Some(g) = self.cfg.genesis_root {
                    if req.prev_root != g {
                        return Err(Error::rejected(
                            BACKEND,
                            format!(
                                "wrong previous root: the update of blocks {range} starts from {} but the genesis root is {g}",
                                req.prev_root
                            ),
                        ));
                    }
                }
            }
            Some(last) => {
                let settled = last.range.last();
                if range.first() <= settled {
                    let i = st.updates.partition_point(|u| u.range.last() < range.first());
                    let by = st.updates.get(i).unwrap_or(last);
                    return Err(Error::rejected(
                        BACKEND,
                        format!(
                            "already applied: blocks {range} overlap blocks settled up to {settled} (block {} by tx {} with dedup key {:?}); an update is never applied twice",
                            range.first(),
                            by.tx_hash,
                            by.dedup_key
                        ),
                    ));
                }
                if range.first() != settled + 1 {
                    return Err(Error::rejected(
                        BACKEND,
                        format!(
                            "out of order: the next state update must start at block {}, this one covers blocks {range}",
                            settled + 1
                        ),
                    ));
                }
                if req.prev_root != last.new_root {
                    return Err(Error::rejected(
                        BACKEND,
                        format!(
                            "wrong previous root: the update of blocks {range} starts from {} but the settled root after block {settled} is {}",
                            req.prev_root, last.new_root
                        ),
                    ));
                }
            }
        }
        if self.cfg.requires_proof_registration && !st.registered.contains(&range) {
            return Err(Error::rejected(
                BACKEND,
                format!("no proof registered for blocks {range}: register it (register_proof) before the state update"),
            ));
        }
        if self.cfg.verify_program_output {
            check_program_output(self.seed, req, st.updates.last())?;
        }
        Ok(())
    }
}

fn reject_output(range: BlockRange, why: impl std::fmt::Display) -> Error {
    Error::rejected(BACKEND, format!("program output of the update of blocks {range}: {why}"))
}

/// The program output must be the devnet OS's KZG DA output for exactly this update.
fn check_program_output(seed: u64, req: &StateUpdateRequest, prev: Option<&AppliedUpdate>) -> Result<()> {
    let (po, range) = (&req.program_output, req.range);
    let header = OsOutputHeader::parse(po).map_err(|e| {
        reject_output(
            range,
            format_args!(
                "{e} (set devnet.settlement.verify_program_output = false to settle outputs of another OS runner)"
            ),
        )
    })?;
    let mut checks = vec![
        (header.os_program_hash, DEV_OS_PROGRAM_HASH, "os_program_hash"),
        (header.initial_root, req.prev_root, "initial_root"),
        (header.final_root, req.new_root, "final_root"),
        (header.prev_block_number, OsOutputHeader::block_before(range.first()), "prev_block_number"),
        (header.new_block_number, Felt::from_u64(range.last()), "new_block_number"),
        (header.new_block_hash, req.block_hash, "new_block_hash"),
    ];
    if let Some(p) = prev {
        checks.push((header.prev_block_hash, p.block_hash, "prev_block_hash (the last settled block's hash)"));
    }
    for (got, want, what) in checks {
        if got != want {
            return Err(reject_output(range, format_args!("{what} is {got}, expected {want}")));
        }
    }
    if !header.use_kzg_da || header.full_output {
        return Err(reject_output(
            range,
            format_args!(
                "use_kzg_da = {}, full_output = {}: the devnet settles KZG DA outputs (1 and 0)",
                u8::from(header.use_kzg_da),
                u8::from(header.full_output)
            ),
        ));
    }
    let kzg = KzgDaOutput::parse(po).map_err(|e| reject_output(range, e))?;
    // Then the two message segments, each its length and then its felts, and nothing else.
    let mut at = HEADER_LEN + KzgDaOutput::segment_len(kzg.commitments.len());
    for segment in ["L2→L1 messages", "L1→L2 messages"] {
        let len = po
            .get(at)
            .and_then(Felt::to_u64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| at + 1 + n <= po.len())
            .ok_or_else(|| reject_output(range, format_args!("no well-formed {segment} segment at felt {at}")))?;
        at += 1 + len;
    }
    if at != po.len() {
        return Err(reject_output(range, format_args!("{} felts follow the message segments", po.len() - at)));
    }
    if let Some((blobs, digest)) = reference_commitments(seed, &req.da) {
        let n = kzg.commitments.len() as u64;
        if n != blobs {
            return Err(reject_output(
                range,
                format_args!("commits to {n} blobs but DA publication {} has {blobs}", req.da.id),
            ));
        }
        if blobs::commitments_digest(seed, &kzg.commitments) != digest {
            return Err(reject_output(
                range,
                format_args!("its KZG commitments are not those of the blobs of DA publication {}", req.da.id),
            ));
        }
    }
    Ok(())
}

impl Inner {
    fn index_update(&mut self, u: AppliedUpdate) {
        self.update_by_key.insert(u.dedup_key.clone(), self.updates.len());
        self.txs.insert(u.tx_hash.0.clone(), u.applied_at);
        self.updates.push(u);
    }

    fn index_proof(&mut self, p: RegisteredProof) {
        self.proof_by_key.insert(p.dedup_key.clone(), self.proofs.len());
        self.txs.insert(p.tx_hash.0.clone(), p.registered_at);
        self.registered.insert(p.range);
        self.proofs.push(p);
    }
}

#[async_trait]
impl Settlement for DevSettlement {
    fn capabilities(&self) -> SettlementCapabilities {
        SettlementCapabilities {
            requires_proof_registration: self.cfg.requires_proof_registration,
            confirmations: self.cfg.confirmations,
        }
    }

    async fn last_settled(&self) -> Result<Option<SettledState>> {
        self.faults.read("last_settled").await?;
        Ok(self.lock().updates.last().map(|u| SettledState { block: u.range.last(), state_root: u.new_root }))
    }

    async fn register_proof(&self, req: ProofRegistrationRequest) -> Result<TxHash> {
        if !self.cfg.requires_proof_registration {
            return Err(Error::unsupported(
                "register_proof",
                "devnet settlement (set devnet.settlement.requires_proof_registration = true to simulate an L3)",
            ));
        }
        let strike = self.faults.effect("register_proof").await?;
        let tx = {
            let mut st = self.lock();
            if let Some(i) = st.proof_by_key.get(&req.dedup_key) {
                let p = &st.proofs[*i];
                if p.range != req.range {
                    return Err(Error::rejected(
                        BACKEND,
                        format!(
                            "dedup key {:?} already registered the proof of blocks {}, not {}",
                            req.dedup_key, p.range, req.range
                        ),
                    ));
                }
                p.tx_hash.clone()
            } else {
                if req.proof.is_empty() {
                    return Err(Error::rejected(BACKEND, format!("empty proof for blocks {}", req.range)));
                }
                let p = RegisteredProof {
                    range: req.range,
                    tx_hash: self.tx_hash(2, st.proofs.len(), &req.dedup_key),
                    dedup_key: req.dedup_key,
                    registered_at: self.clock.now(),
                    proof_bytes: req.proof.len() as u64,
                    proof_fingerprint: format!("{:016x}", h_bytes(self.seed, &req.proof)),
                };
                st.writer.append(&Line::Proof(p.clone()))?;
                let tx = p.tx_hash.clone();
                st.index_proof(p);
                tx
            }
        };
        strike.finish(tx)
    }

    async fn submit_state_update(&self, req: StateUpdateRequest) -> Result<TxHash> {
        let strike = self.faults.effect("submit_state_update").await?;
        let tx = {
            let mut st = self.lock();
            if let Some(i) = st.update_by_key.get(&req.dedup_key) {
                let u = &st.updates[*i];
                if u.range != req.range {
                    return Err(Error::rejected(
                        BACKEND,
                        format!("dedup key {:?} already applied blocks {}, not {}", req.dedup_key, u.range, req.range),
                    ));
                }
                u.tx_hash.clone()
            } else {
                self.check_update(&st, &req)?;
                let u = AppliedUpdate {
                    range: req.range,
                    prev_root: req.prev_root,
                    new_root: req.new_root,
                    block_hash: req.block_hash,
                    tx_hash: self.tx_hash(1, st.updates.len(), &req.dedup_key),
                    dedup_key: req.dedup_key,
                    applied_at: self.clock.now(),
                    da: req.da,
                };
                // Durable before it counts: append + fsync, then index.
                st.writer.append(&Line::StateUpdate(u.clone()))?;
                let tx = u.tx_hash.clone();
                st.index_update(u);
                tx
            }
        };
        strike.finish(tx)
    }

    async fn tx_status(&self, tx: &TxHash) -> Result<TxStatus> {
        self.faults.read("tx_status").await?;
        let Some(at) = self.lock().txs.get(&tx.0).copied() else {
            return Ok(TxStatus::NotFound);
        };
        let included = at.plus(self.cfg.confirmation_delay);
        let now = self.clock.now();
        if now < included {
            return Ok(TxStatus::Pending);
        }
        let confirmations = if self.cfg.l1_block_time.is_zero() {
            self.cfg.confirmations
        } else {
            let blocks = now.since(included).as_nanos() / self.cfg.l1_block_time.as_nanos();
            (1 + blocks).min(u128::from(u32::MAX)) as u32
        };
        Ok(TxStatus::Confirmed { confirmations })
    }
}
