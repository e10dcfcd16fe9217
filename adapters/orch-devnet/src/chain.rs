//! [`DevChain`]: a simulated appchain whose every block is a pure function of `(seed, n)`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use orch_core::chain::{
    BlockInfo, ChainSource, ContractStorageDiff, DeclaredClass, DeployedContract, NonceUpdate, ReplacedClass,
    StateDiff, StateUpdate, StorageEntry,
};
use orch_core::clock::Clock;
use orch_core::error::{Error, Result};
use orch_core::types::{BlockNumber, Timestamp};
use orch_core::Felt;

use crate::config::ChainConfig;
use crate::faults::Injector;
use crate::mix::{felt_of, h64, Rng};

// Domain tags: each kind of derived value gets its own stream.
const T_BLOCK: u64 = 0x01;
const T_ROOT: u64 = 0x02;
const T_GENESIS: u64 = 0x03;
const T_HASH: u64 = 0x04;
const T_CONTRACT: u64 = 0x05;
const T_ACCOUNT: u64 = 0x06;
const T_CLASS: u64 = 0x07;
const T_KEY: u64 = 0x08;
const T_DEPLOY: u64 = 0x09;
const T_DECLARE: u64 = 0x0a;
const T_CASM: u64 = 0x0b;
const T_LEGACY: u64 = 0x0c;
const T_BIG: u64 = 0x0d;
const T_BALANCE: u64 = 0x0e;
const T_FAULTS: u64 = 0x0f;

/// Classes deployed contracts and class replacements pick from.
const GENESIS_CLASSES: u64 = 8;
/// Nonce rates are in thousandths of a transaction per block.
const RATE_DEN: u64 = 1000;
/// Starknet writes the hash of block `n - 10` into contract 0x1 at block `n`.
const BLOCK_HASH_LAG: u64 = 10;
/// The Starknet version the blocks claim.
pub const STARKNET_VERSION: &str = "0.13.4";

#[derive(Debug, Clone, Copy)]
struct Account {
    address: Felt,
    /// Transactions per block, in thousandths.
    rate: u64,
    phase: u64,
    balance_key: Felt,
}

impl Account {
    /// Nonce after `blocks` blocks (`blocks = n + 1` after block `n`): a closed form, so no
    /// history is needed, non-decreasing, about `rate / 1000` per block.
    fn nonce_after_blocks(&self, blocks: u64) -> u64 {
        let scaled = u128::from(blocks) * u128::from(self.rate) + u128::from(self.phase);
        (scaled / u128::from(RATE_DEN)) as u64 - self.phase / RATE_DEN
    }
}

/// A simulated appchain, deterministic from a seed.
///
/// Every block is regenerated from `(seed, n)` on each call (a few microseconds for a normal
/// block), so the chain needs no memory however long it runs. Blocks carry realistic state
/// diffs: the block-hash write to contract `0x1`, fee-token writes and nonce updates for the
/// accounts that sent transactions, storage writes across several contracts (some with
/// hundreds of keys), deployments with constructor writes, declared classes, the odd legacy
/// declaration and class replacement. One block in `big_block_every` writes more than 4096
/// felts of diff (several blobs); about a fifth of those more than 24576 (several blob
/// transactions).
///
/// State roots and block hashes are hash-like felts of `(seed, n)`; the roots chain:
/// `state_update(n).old_root == state_update(n - 1).new_root`.
#[derive(Debug)]
pub struct DevChain {
    seed: u64,
    cfg: ChainConfig,
    genesis: Timestamp,
    clock: Arc<dyn Clock>,
    contracts: Vec<Felt>,
    accounts: Vec<Account>,
    account_index: HashMap<Felt, usize>,
    fee_token: Felt,
    sequencer_balance_key: Felt,
    classes: Vec<Felt>,
    /// Blocks reported to exist (`head + 1`), so the head never moves back.
    produced: AtomicU64,
    faults: Injector,
}

impl DevChain {
    /// A chain from `cfg` and `seed`, born at `genesis` (the growth of the head is counted
    /// from it by `clock`). The config is assumed validated
    /// ([`DevnetConfig::validate`](crate::DevnetConfig::validate)); out-of-range values are
    /// clamped.
    pub fn new(cfg: ChainConfig, seed: u64, genesis: Timestamp, clock: Arc<dyn Clock>) -> DevChain {
        let n_contracts = u64::from(cfg.contracts.clamp(2, 256));
        let n_accounts = u64::from(cfg.accounts.clamp(1, 256));
        let contracts: Vec<Felt> = (0..n_contracts).map(|i| felt_of(&[seed, T_CONTRACT, i])).collect();
        let accounts: Vec<Account> = (0..n_accounts)
            .map(|i| {
                let mut rng = Rng::new(h64(&[seed, T_ACCOUNT, i]));
                let address = rng.felt();
                Account {
                    address,
                    rate: rng.range(100, 1500),
                    phase: rng.below(RATE_DEN),
                    balance_key: felt_of(&[seed, T_BALANCE, i]),
                }
            })
            .collect();
        let account_index = accounts.iter().enumerate().map(|(i, a)| (a.address, i)).collect();
        let classes = (0..GENESIS_CLASSES).map(|i| felt_of(&[seed, T_CLASS, i])).collect();
        let faults = Injector::new("devnet chain", seed, T_FAULTS, cfg.faults.clone());
        DevChain {
            seed,
            // Contract 1 of the list doubles as the fee token.
            fee_token: contracts[1],
            sequencer_balance_key: felt_of(&[seed, T_BALANCE, u64::MAX]),
            contracts,
            accounts,
            account_index,
            classes,
            genesis,
            clock,
            produced: AtomicU64::new(0),
            faults,
            cfg,
        }
    }

    /// A chain whose blocks `0..blocks` all exist, with the default shape (for tests and
    /// tools that only need the data).
    pub fn fixed(seed: u64, blocks: u64) -> DevChain {
        DevChain::new(ChainConfig::fixed(blocks), seed, Timestamp::ZERO, Arc::new(orch_core::clock::SystemClock))
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The newest block that exists now, `None` before the first. Never moves back.
    pub fn head(&self) -> Option<BlockNumber> {
        let cap = self.cfg.blocks.unwrap_or(u64::MAX);
        let now_produced = if self.cfg.block_time.is_zero() {
            cap
        } else {
            let elapsed_ns = u128::from(self.clock.now().0.saturating_sub(self.genesis.0)) * 1_000_000;
            let grown = elapsed_ns / self.cfg.block_time.as_nanos();
            (u128::from(self.cfg.initial_blocks) + grown).min(u128::from(cap)) as u64
        };
        let produced = self.produced.fetch_max(now_produced, Ordering::Relaxed).max(now_produced);
        produced.checked_sub(1)
    }

    /// The root before block 0.
    pub fn genesis_root(&self) -> Felt {
        felt_of(&[self.seed, T_GENESIS])
    }

    /// The state root after block `n`.
    pub fn root_after(&self, n: BlockNumber) -> Felt {
        felt_of(&[self.seed, T_ROOT, n])
    }

    /// The state root before block `n` (after `n - 1`, or the genesis root).
    pub fn root_before(&self, n: BlockNumber) -> Felt {
        match n.checked_sub(1) {
            Some(p) => self.root_after(p),
            None => self.genesis_root(),
        }
    }

    /// The hash of block `n`.
    pub fn block_hash(&self, n: BlockNumber) -> Felt {
        felt_of(&[self.seed, T_HASH, n])
    }

    /// Header facts of block `n`, whether or not it exists yet.
    pub fn block_info(&self, n: BlockNumber) -> BlockInfo {
        BlockInfo {
            number: n,
            hash: self.block_hash(n),
            state_root: self.root_after(n),
            starknet_version: Some(STARKNET_VERSION.to_owned()),
        }
    }

    /// Whether block `n` is one of the big (multi-blob) blocks.
    pub fn is_big_block(&self, n: BlockNumber) -> bool {
        let every = self.cfg.big_block_every;
        every != 0 && n % every == h64(&[self.seed, T_BIG, n / every]) % every
    }

    /// A contract's nonce after block `n`, whether or not the block exists yet: an account's
    /// transaction count so far, 0 for every other contract.
    pub fn nonce_after(&self, n: BlockNumber, contract: &Felt) -> Felt {
        match self.account_index.get(contract) {
            Some(i) => Felt::from_u64(self.accounts[*i].nonce_after_blocks(n.saturating_add(1))),
            None => Felt::ZERO,
        }
    }

    /// The state update of block `n`, whether or not it exists yet.
    pub fn generate(&self, n: BlockNumber) -> StateUpdate {
        StateUpdate {
            block_hash: self.block_hash(n),
            old_root: self.root_before(n),
            new_root: self.root_after(n),
            state_diff: self.state_diff(n),
        }
    }

    fn state_diff(&self, n: BlockNumber) -> StateDiff {
        let seed = self.seed;
        let mut rng = Rng::new(h64(&[seed, T_BLOCK, n]));
        let mut d = StateDiff::default();

        if n >= BLOCK_HASH_LAG {
            let old = n - BLOCK_HASH_LAG;
            d.storage_diffs.push(ContractStorageDiff {
                address: Felt::ONE,
                storage_entries: vec![StorageEntry { key: Felt::from_u64(old), value: self.block_hash(old) }],
            });
        }

        // Accounts that sent transactions: their nonces move, the fee token moves balances.
        let mut fee = Vec::new();
        for a in &self.accounts {
            let (before, after) = (a.nonce_after_blocks(n), a.nonce_after_blocks(n + 1));
            if after > before {
                d.nonces.push(NonceUpdate { contract_address: a.address, nonce: Felt::from_u64(after) });
                fee.push(StorageEntry { key: a.balance_key, value: rng.felt() });
            }
        }
        if !fee.is_empty() {
            fee.push(StorageEntry { key: self.sequencer_balance_key, value: rng.felt() });
            d.storage_diffs.push(ContractStorageDiff { address: self.fee_token, storage_entries: fee });
        }

        // Application contracts (2.. of the list: 0 is the bulk writer, 1 the fee token).
        let apps = &self.contracts[2..];
        if !apps.is_empty() {
            let k = rng.range(1, (apps.len() as u64).min(8)) as usize;
            let mut order: Vec<u16> = (0..apps.len() as u16).collect();
            let heavy = rng.one_in(10).then(|| rng.below(k as u64) as usize);
            for j in 0..k {
                let pick = j + rng.below((order.len() - j) as u64) as usize;
                order.swap(j, pick);
                let idx = order[j] as usize;
                let entries = if heavy == Some(j) {
                    rng.range(100, 600)
                } else if rng.one_in(4) {
                    rng.range(8, 64)
                } else {
                    rng.range(1, 6)
                };
                d.storage_diffs.push(self.writes(&mut rng, idx as u64 + 2, apps[idx], entries));
            }
        }

        if self.is_big_block(n) {
            let entries = if rng.one_in(5) { rng.range(12_500, 14_000) } else { rng.range(2_100, 4_000) };
            d.storage_diffs.push(self.writes(&mut rng, 0, self.contracts[0], entries));
        }

        if rng.one_in(4) {
            for i in 0..rng.range(1, 3) {
                let address = felt_of(&[seed, T_DEPLOY, n, i]);
                let class_hash = self.classes[rng.below(self.classes.len() as u64) as usize];
                d.deployed_contracts.push(DeployedContract { address, class_hash });
                let entries = rng.range(1, 4);
                // Constructor writes: keys from the deployment's own slot space.
                let tag = h64(&[T_DEPLOY, n, i]);
                d.storage_diffs.push(self.writes(&mut rng, tag, address, entries));
            }
        }
        if rng.one_in(8) {
            for i in 0..rng.range(1, 2) {
                d.declared_classes.push(DeclaredClass {
                    class_hash: felt_of(&[seed, T_DECLARE, n, i]),
                    compiled_class_hash: felt_of(&[seed, T_CASM, n, i]),
                });
            }
        }
        if rng.one_in(50) {
            d.deprecated_declared_classes.push(felt_of(&[seed, T_LEGACY, n]));
        }
        if rng.one_in(15) {
            let idx = 2 + rng.below(apps.len() as u64) as usize;
            let class_hash = self.classes[rng.below(self.classes.len() as u64) as usize];
            d.replaced_classes.push(ReplacedClass { contract_address: self.contracts[idx], class_hash });
        }
        d
    }

    /// `entries` distinct storage writes to `address`: consecutive slots from a random base,
    /// each hashed to a key, so keys never repeat within a contract and block.
    fn writes(&self, rng: &mut Rng, slot_space: u64, address: Felt, entries: u64) -> ContractStorageDiff {
        let base = rng.below(1 << 20);
        let storage_entries = (0..entries)
            .map(|i| StorageEntry { key: felt_of(&[self.seed, T_KEY, slot_space, base + i]), value: rng.felt() })
            .collect();
        ContractStorageDiff { address, storage_entries }
    }

    fn check(&self, n: BlockNumber) -> Result<()> {
        match self.head() {
            Some(h) if n <= h => Ok(()),
            head => Err(Error::not_found(format!(
                "devnet block {n} (the chain head is {})",
                head.map_or_else(|| "empty".to_owned(), |h| h.to_string())
            ))),
        }
    }

    pub(crate) fn check_range(&self, first: BlockNumber, last: BlockNumber) -> Result<()> {
        self.check(first)?;
        self.check(last)
    }
}

#[async_trait]
impl ChainSource for DevChain {
    async fn latest_block(&self) -> Result<Option<BlockNumber>> {
        self.faults.read("latest_block").await?;
        Ok(self.head())
    }

    async fn block(&self, number: BlockNumber) -> Result<BlockInfo> {
        self.faults.read("block").await?;
        self.check(number)?;
        Ok(self.block_info(number))
    }

    async fn state_update(&self, number: BlockNumber) -> Result<StateUpdate> {
        self.faults.read("state_update").await?;
        self.check(number)?;
        Ok(self.generate(number))
    }

    async fn nonce_at(&self, number: BlockNumber, contract: Felt) -> Result<Felt> {
        self.faults.read("nonce_at").await?;
        self.check(number)?;
        Ok(self.nonce_after(number, &contract))
    }
}

/// A rough count of the felts a state diff takes in the DA encoding: 2 for the header, per
/// contract touched 2 (address, DA word) + 1 with a new class + 2 per storage write, and 2 per
/// declared class. What the DA layer charges for, and what decides the number of blobs.
pub fn da_felts_estimate(diff: &StateDiff) -> usize {
    let mut classed: Vec<&Felt> = diff
        .deployed_contracts
        .iter()
        .map(|c| &c.address)
        .chain(diff.replaced_classes.iter().map(|c| &c.contract_address))
        .collect();
    classed.sort_unstable();
    classed.dedup();
    let mut others: Vec<&Felt> =
        classed.iter().copied().chain(diff.nonces.iter().map(|n| &n.contract_address)).collect();
    others.sort_unstable();
    others.dedup();
    let mut with_storage = 0;
    let mut storage_felts = 0;
    for c in &diff.storage_diffs {
        storage_felts += 2 * c.storage_entries.len();
        if others.binary_search(&&c.address).is_err() {
            with_storage += 1;
        }
    }
    2 + 2 * (with_storage + others.len()) + classed.len() + storage_felts + 2 * diff.declared_classes.len()
}
