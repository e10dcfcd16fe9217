//! State diff ⇄ DA felt list (vectors README §3.3, §3.4).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use orch_core::chain::{DeclaredClass, StateDiff, StorageEntry};
use orch_core::Felt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::u256::U256;
use crate::version::{DaLayout, NoncePolicy};

/// Answers "what is this contract's nonce after the block?" for the DA encoder.
///
/// Under [`NoncePolicy::Oracle`] the encoder asks only for contracts that have storage writes,
/// no entry in `state_diff.nonces` and are not the system contracts 0x1 / 0x2
/// ([`oracle_addresses`] lists them up front, so an async caller can prefetch with
/// `ChainSource::nonce_at` and pass a map).
///
/// Implemented for `BTreeMap<Felt, Felt>`, `HashMap<Felt, Felt>`, closures
/// `Fn(&Felt) -> Option<Felt>` and [`NoOracle`].
pub trait NonceOracle {
    /// The nonce of `address` after the block, or `None` when unknown (an error for the
    /// encoder, never a silent 0).
    fn nonce_after_block(&self, address: &Felt) -> Option<Felt>;
}

impl NonceOracle for BTreeMap<Felt, Felt> {
    fn nonce_after_block(&self, address: &Felt) -> Option<Felt> {
        self.get(address).copied()
    }
}

impl<S: BuildHasher> NonceOracle for HashMap<Felt, Felt, S> {
    fn nonce_after_block(&self, address: &Felt) -> Option<Felt> {
        self.get(address).copied()
    }
}

impl<F: Fn(&Felt) -> Option<Felt>> NonceOracle for F {
    fn nonce_after_block(&self, address: &Felt) -> Option<Felt> {
        self(address)
    }
}

/// An oracle that knows nothing: for [`NoncePolicy::DiffOnly`] encodings, or diffs where every
/// written contract has a nonce entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOracle;

impl NonceOracle for NoOracle {
    fn nonce_after_block(&self, _address: &Felt) -> Option<Felt> {
        None
    }
}

/// One contract's entry in the DA encoding.
///
/// Unknown JSON fields are rejected: a misspelt optional `class_hash` would otherwise silently
/// drop the class from a hand-edited diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaContract {
    /// Contract address.
    pub address: Felt,
    /// The nonce written in the DA word.
    pub nonce: u64,
    /// The class hash, when the contract was deployed or its class replaced in the block.
    pub class_hash: Option<Felt>,
    /// Storage writes, in encoding order (the encoder sorts them by key; the decoder keeps the
    /// order it finds, since some encoders do not sort).
    pub storage: Vec<StorageEntry>,
}

/// A state diff exactly as the DA encoding carries it.
///
/// This is what a blob decodes to. It is less than an RPC [`StateDiff`]: the encoding does not
/// say whether a class hash comes from a deployment or a class replacement, nor whether a nonce
/// changed. [`DaStateDiff::from_state_diff`] is the normalization (merge, sort, nonce rules)
/// that the encoder applies, so `decode(encode(d)) == DaStateDiff::from_state_diff(d, ..)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaStateDiff {
    /// Contracts, strictly ascending by address (the decoder rejects anything else).
    pub contracts: Vec<DaContract>,
    /// Declared Sierra classes, strictly ascending by class hash.
    pub declared_classes: Vec<DeclaredClass>,
}

#[derive(Default)]
struct Acc<'a> {
    storage: Option<(usize, &'a [StorageEntry])>,
    nonce: Option<Felt>,
    deployed: Option<Felt>,
    replaced: Option<Felt>,
}

fn system_contract(address: &Felt) -> bool {
    *address == Felt::ONE || *address == Felt::from_u64(2)
}

fn merge(diff: &StateDiff) -> Result<BTreeMap<Felt, Acc<'_>>> {
    let mut m: BTreeMap<Felt, Acc<'_>> = BTreeMap::new();
    for (i, c) in diff.storage_diffs.iter().enumerate() {
        let acc = m.entry(c.address).or_default();
        if acc.storage.is_some() {
            return Err(Error::InconsistentStateDiff {
                field: format!("state_diff.storage_diffs[{i}].address"),
                value: c.address,
                reason: "appears twice in storage_diffs; merge its entries into one",
            });
        }
        acc.storage = Some((i, &c.storage_entries));
    }
    for (i, n) in diff.nonces.iter().enumerate() {
        let acc = m.entry(n.contract_address).or_default();
        if acc.nonce.replace(n.nonce).is_some() {
            return Err(Error::InconsistentStateDiff {
                field: format!("state_diff.nonces[{i}].contract_address"),
                value: n.contract_address,
                reason: "has two nonce entries",
            });
        }
    }
    for (i, d) in diff.deployed_contracts.iter().enumerate() {
        let acc = m.entry(d.address).or_default();
        if acc.deployed.replace(d.class_hash).is_some() {
            return Err(Error::InconsistentStateDiff {
                field: format!("state_diff.deployed_contracts[{i}].address"),
                value: d.address,
                reason: "is deployed twice",
            });
        }
    }
    // Contracts that only had their class replaced are encoded too: the OS publishes every
    // contract whose state changed, and dropping one would make the blob disagree with the
    // OS output (Madara's per-block DA job skips them; no vector has one).
    for (i, r) in diff.replaced_classes.iter().enumerate() {
        let acc = m.entry(r.contract_address).or_default();
        if acc.replaced.replace(r.class_hash).is_some() {
            return Err(Error::InconsistentStateDiff {
                field: format!("state_diff.replaced_classes[{i}].contract_address"),
                value: r.contract_address,
                reason: "has its class replaced twice",
            });
        }
    }
    Ok(m)
}

/// The contracts whose nonce [`NoncePolicy::Oracle`] takes from the oracle, ascending: storage
/// writes, no `state_diff.nonces` entry, not 0x1 / 0x2.
pub fn oracle_addresses(diff: &StateDiff) -> Vec<Felt> {
    let with_nonce: std::collections::BTreeSet<Felt> = diff.nonces.iter().map(|n| n.contract_address).collect();
    let mut out: Vec<Felt> = diff
        .storage_diffs
        .iter()
        .filter(|c| !c.storage_entries.is_empty())
        .map(|c| c.address)
        .filter(|a| !with_nonce.contains(a) && !system_contract(a))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn nonce_u64(address: Felt, nonce: Felt, source_of_nonce: &'static str) -> Result<u64> {
    nonce.to_u64().ok_or(Error::NonceOutOfRange { address, nonce, source_of_nonce })
}

impl DaStateDiff {
    /// Normalizes an RPC state diff into what the DA encoding carries: contracts merged from
    /// storage diffs, nonces, deployments and class replacements, sorted by address, each with
    /// its storage sorted by key and its nonce chosen by `policy`; declared classes sorted by
    /// class hash. `deprecated_declared_classes` are not part of the encoding.
    ///
    /// Errors on duplicated addresses, storage keys or class hashes (the encoding would be
    /// ambiguous), nonces above `u64::MAX`, and a missing oracle answer.
    pub fn from_state_diff(
        diff: &StateDiff,
        oracle: &(impl NonceOracle + ?Sized),
        policy: NoncePolicy,
    ) -> Result<DaStateDiff> {
        let merged = merge(diff)?;
        let mut contracts = Vec::with_capacity(merged.len());
        for (address, acc) in merged {
            let (storage_index, entries) = acc.storage.unwrap_or((0, &[]));
            let nonce = match acc.nonce {
                Some(n) => nonce_u64(address, n, "state_diff.nonces")?,
                None if policy == NoncePolicy::Oracle && !entries.is_empty() && !system_contract(&address) => {
                    let n = oracle.nonce_after_block(&address).ok_or(Error::NonceUnavailable { address })?;
                    nonce_u64(address, n, "nonce oracle")?
                }
                None => 0,
            };
            let mut storage = entries.to_vec();
            storage.sort_unstable_by_key(|e| e.key);
            if let Some(w) = storage.windows(2).find(|w| w[0].key == w[1].key) {
                return Err(Error::InconsistentStateDiff {
                    field: format!("state_diff.storage_diffs[{storage_index}].storage_entries"),
                    value: w[0].key,
                    reason: "is written twice; keep only the final value",
                });
            }
            contracts.push(DaContract { address, nonce, class_hash: acc.deployed.or(acc.replaced), storage });
        }
        let mut declared_classes = diff.declared_classes.clone();
        declared_classes.sort_unstable_by_key(|c| c.class_hash);
        if let Some(w) = declared_classes.windows(2).find(|w| w[0].class_hash == w[1].class_hash) {
            return Err(Error::InconsistentStateDiff {
                field: "state_diff.declared_classes".into(),
                value: w[0].class_hash,
                reason: "is declared twice",
            });
        }
        Ok(DaStateDiff { contracts, declared_classes })
    }

    /// Puts contracts in ascending address order and declared classes in ascending class-hash
    /// order, as the encoding requires (the decoder rejects anything else), and rejects
    /// duplicates, which it cannot carry. Storage entries keep their order: it is part of the
    /// encoding, and encoders differ on it (the decoder keeps what it finds).
    ///
    /// For diffs that were edited by hand or built outside [`Self::from_state_diff`].
    pub fn sort(&mut self) -> Result<()> {
        if let Some(i) = first_duplicate(self.contracts.iter().map(|c| c.address)) {
            return Err(Error::InconsistentStateDiff {
                field: format!("contracts[{i}].address"),
                value: self.contracts[i].address,
                reason: "appears twice; merge its entries into one",
            });
        }
        if let Some(i) = first_duplicate(self.declared_classes.iter().map(|c| c.class_hash)) {
            return Err(Error::InconsistentStateDiff {
                field: format!("declared_classes[{i}].class_hash"),
                value: self.declared_classes[i].class_hash,
                reason: "is declared twice",
            });
        }
        self.contracts.sort_unstable_by_key(|c| c.address);
        self.declared_classes.sort_unstable_by_key(|c| c.class_hash);
        Ok(())
    }

    /// Number of felts [`Self::to_felts`] produces.
    pub fn felt_len(&self) -> usize {
        let contracts: usize =
            self.contracts.iter().map(|c| 2 + usize::from(c.class_hash.is_some()) + 2 * c.storage.len()).sum();
        2 + contracts + 2 * self.declared_classes.len()
    }

    /// The DA felt list (README §3.3 steps 3–5), in the order of `self`.
    pub fn to_felts(&self, layout: DaLayout) -> Result<Vec<Felt>> {
        let mut out = Vec::with_capacity(self.felt_len());
        out.push(count_felt(self.contracts.len()));
        for c in &self.contracts {
            out.push(c.address);
            out.push(encode_da_word(layout, c.class_hash.is_some(), c.nonce, c.storage.len())?);
            if let Some(h) = c.class_hash {
                out.push(h);
            }
            for e in &c.storage {
                out.push(e.key);
                out.push(e.value);
            }
        }
        out.push(count_felt(self.declared_classes.len()));
        for d in &self.declared_classes {
            out.push(d.class_hash);
            out.push(d.compiled_class_hash);
        }
        Ok(out)
    }

    /// Parses a DA felt list and returns the diff with the number of felts it used. The rest of
    /// `felts` is not looked at (blob padding, or other data).
    pub fn parse(felts: &[Felt], layout: DaLayout) -> Result<(DaStateDiff, usize)> {
        let mut r = Reader { felts, pos: 0 };
        let n_contracts = r.count("number of contracts", 2)?;
        let mut contracts = Vec::with_capacity(n_contracts);
        for _ in 0..n_contracts {
            let address_pos = r.pos;
            let address = r.next("contract address")?;
            // The OS (and every encoder) writes contracts in strictly ascending address order;
            // anything else is not a state diff (e.g. blob padding read with the wrong layout).
            if let Some(prev) = contracts.last().map(|c: &DaContract| c.address) {
                if address <= prev {
                    return Err(Error::malformed(
                        WHAT,
                        address_pos,
                        format!("contract address {address} does not follow {prev} in ascending order"),
                    ));
                }
            }
            let word_pos = r.pos;
            let word = r.next("DA word")?;
            let (has_class, nonce, n_updates) =
                decode_da_word(layout, &word).map_err(|reason| Error::malformed(WHAT, word_pos, reason))?;
            let class_hash = if has_class { Some(r.next("class hash")?) } else { None };
            if n_updates > r.remaining() as u64 / 2 {
                return Err(Error::malformed(
                    WHAT,
                    word_pos,
                    format!(
                        "DA word of contract {address} announces {n_updates} storage updates but \
                         only {} felts follow",
                        r.remaining()
                    ),
                ));
            }
            let mut storage = Vec::with_capacity(n_updates as usize);
            for _ in 0..n_updates {
                let key = r.next("storage key")?;
                let value = r.next("storage value")?;
                storage.push(StorageEntry { key, value });
            }
            contracts.push(DaContract { address, nonce, class_hash, storage });
        }
        let n_declared = r.count("number of declared classes", 2)?;
        let mut declared_classes = Vec::with_capacity(n_declared);
        for _ in 0..n_declared {
            let class_pos = r.pos;
            let class_hash = r.next("class hash")?;
            let compiled_class_hash = r.next("compiled class hash")?;
            if let Some(prev) = declared_classes.last().map(|c: &DeclaredClass| c.class_hash) {
                if class_hash <= prev {
                    return Err(Error::malformed(
                        WHAT,
                        class_pos,
                        format!("declared class {class_hash} does not follow {prev} in ascending order"),
                    ));
                }
            }
            declared_classes.push(DeclaredClass { class_hash, compiled_class_hash });
        }
        Ok((DaStateDiff { contracts, declared_classes }, r.pos))
    }

    /// Parses a DA felt list that may be followed only by zero felts (blob padding).
    pub fn from_felts(felts: &[Felt], layout: DaLayout) -> Result<DaStateDiff> {
        let (diff, used) = DaStateDiff::parse(felts, layout)?;
        ensure_zero_tail(WHAT, felts, used)?;
        Ok(diff)
    }
}

const WHAT: &str = "DA felts";

/// Index of the first item whose key an earlier item already has.
fn first_duplicate(keys: impl Iterator<Item = Felt>) -> Option<usize> {
    let mut seen = std::collections::BTreeSet::new();
    keys.enumerate().find(|(_, k)| !seen.insert(*k)).map(|(i, _)| i)
}

pub(crate) fn ensure_zero_tail(what: &'static str, felts: &[Felt], from: usize) -> Result<()> {
    match felts[from..].iter().position(|f| !f.is_zero()) {
        None => Ok(()),
        Some(i) => Err(Error::malformed(
            what,
            from + i,
            format!(
                "non-zero felt {} after the end of the data (which ends at {from}); wrong \
                 Starknet version, or not a state diff?",
                felts[from + i]
            ),
        )),
    }
}

fn count_felt(n: usize) -> Felt {
    Felt::from_u64(n as u64)
}

struct Reader<'a> {
    felts: &'a [Felt],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.felts.len() - self.pos
    }

    fn next(&mut self, what: &str) -> Result<Felt> {
        let f = self
            .felts
            .get(self.pos)
            .copied()
            .ok_or_else(|| Error::malformed(WHAT, self.pos, format!("data ends where a {what} was expected")))?;
        self.pos += 1;
        Ok(f)
    }

    /// A count whose items take at least `min_felts_each` felts; rejected early when the rest
    /// of the data cannot hold that many (so garbage cannot trigger a huge allocation).
    fn count(&mut self, what: &str, min_felts_each: usize) -> Result<usize> {
        let pos = self.pos;
        let f = self.next(what)?;
        let n = f.to_u64().and_then(|n| usize::try_from(n).ok());
        match n {
            Some(n) if n <= self.remaining() / min_felts_each => Ok(n),
            _ => Err(Error::malformed(WHAT, pos, format!("{what} is {f}, but only {} felts follow", self.remaining()))),
        }
    }
}

/// Encodes the per-contract header word (README §3.4).
pub fn encode_da_word(layout: DaLayout, class_flag: bool, nonce: u64, n_updates: usize) -> Result<Felt> {
    let n = n_updates as u64;
    let w = match layout {
        DaLayout::Legacy => {
            U256::from_u64(u64::from(class_flag)).shl(128).or(U256::from_u64(nonce).shl(64)).or(U256::from_u64(n))
        }
        DaLayout::V0_13_3 => {
            let small = n < 256;
            let b_bits = if small { 8 } else { 64 };
            U256::from_u64(nonce)
                .shl(b_bits + 2)
                .or(U256::from_u64(n).shl(2))
                .or(U256::from_u64(u64::from(small) << 1 | u64::from(class_flag)))
        }
    };
    // At most 130 bits, far below the prime.
    w.to_felt().ok_or(Error::TooLarge { what: "DA word", len: w.bits() as usize, max: 251 })
}

/// Decodes a DA word into `(class_flag, nonce, n_updates)`; the error says what is wrong.
pub fn decode_da_word(layout: DaLayout, word: &Felt) -> std::result::Result<(bool, u64, u64), String> {
    let w = U256::from_felt(word);
    match layout {
        DaLayout::Legacy => {
            let flag = w.shr(128);
            if flag.bits() > 1 {
                return Err(format!(
                    "DA word {word} has bits above 128 set; the pre-0.13.3 word holds class_flag \
                     (bit 128), nonce (bits 64..127) and n_updates (bits 0..63)"
                ));
            }
            Ok((!flag.is_zero(), w.0[1], w.0[0]))
        }
        DaLayout::V0_13_3 => {
            let class_flag = w.0[0] & 1 == 1;
            let small = w.0[0] & 2 == 2;
            let rest = w.shr(2);
            let b_bits = if small { 8 } else { 64 };
            let n_updates = rest.low_bits(b_bits).0[0];
            let nonce = rest
                .shr(b_bits)
                .to_u64()
                .ok_or_else(|| format!("DA word {word} holds a nonce wider than 64 bits (0.13.3 layout)"))?;
            if !small && n_updates < 256 {
                return Err(format!(
                    "DA word {word} uses the wide form for {n_updates} < 256 updates; the \
                     0.13.3 OS writes the small form then"
                ));
            }
            Ok((class_flag, nonce, n_updates))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_word_matches_worked_example() {
        let w = encode_da_word(DaLayout::Legacy, true, 0, 0).unwrap();
        assert_eq!(w.to_string(), "0x100000000000000000000000000000000");
        let w = encode_da_word(DaLayout::Legacy, false, 0xd0, 0).unwrap();
        assert_eq!(w.to_string(), "0xd00000000000000000");
        assert_eq!(decode_da_word(DaLayout::Legacy, &w).unwrap(), (false, 0xd0, 0));
    }

    #[test]
    fn v0_13_3_word_packs_small_and_wide_forms() {
        let w = encode_da_word(DaLayout::V0_13_3, true, 5, 3).unwrap();
        assert_eq!(w.to_u64(), Some(((5 * 256 + 3) * 2 + 1) * 2 + 1));
        assert_eq!(decode_da_word(DaLayout::V0_13_3, &w).unwrap(), (true, 5, 3));
        let w = encode_da_word(DaLayout::V0_13_3, false, u64::MAX, 300).unwrap();
        assert_eq!(decode_da_word(DaLayout::V0_13_3, &w).unwrap(), (false, u64::MAX, 300));
        assert_eq!(w.bits(), 130);
    }

    #[test]
    fn v0_13_3_word_rejects_wide_form_for_few_updates() {
        let w = Felt::from_u64(3 << 2);
        assert!(decode_da_word(DaLayout::V0_13_3, &w).is_err());
    }

    #[test]
    fn legacy_word_rejects_high_bits() {
        let w = Felt::from_be_bytes({
            let mut b = [0u8; 32];
            b[15] = 2;
            b
        })
        .unwrap();
        assert!(decode_da_word(DaLayout::Legacy, &w).is_err());
    }
}
