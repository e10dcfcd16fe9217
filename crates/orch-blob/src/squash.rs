//! Squashing the state diffs of consecutive blocks into the one diff of their batch.
//!
//! A batch is settled with one OS run, and the OS publishes one state diff for it: the state
//! after the batch's last block compared with the state before its first. So a key written in
//! several blocks appears once with its last value, a nonce once with its final value, and a
//! contract once with its final class.

use std::collections::{BTreeMap, BTreeSet};

use orch_core::chain::{
    ContractStorageDiff, DeclaredClass, DeployedContract, NonceUpdate, ReplacedClass, StateDiff, StateUpdate,
    StorageEntry,
};
use orch_core::Felt;

/// The diff of a batch of consecutive blocks, given each block's diff in block order.
///
/// - storage: every `(contract, key)` written, with the value of its last write;
/// - nonces: each contract's last nonce update;
/// - classes: a contract deployed in the batch is listed in `deployed_contracts` with its class
///   at the end of the batch (a later replacement wins); a contract only replaced is listed in
///   `replaced_classes` with its last class;
/// - declared classes (Sierra and Cairo 0): the union, each class once.
///
/// Within one block, replacements are read as happening after deployments. Every list of the
/// result is sorted (contracts by address, storage by key, classes by hash), so the result
/// does not depend on the order the blocks listed their entries in. Writes of a value equal to
/// the one before the batch are kept: a diff does not carry the previous values that would
/// show them to be no-ops.
pub fn squash_state_diffs<'a>(diffs: impl IntoIterator<Item = &'a StateDiff>) -> StateDiff {
    let mut storage: BTreeMap<Felt, BTreeMap<Felt, Felt>> = BTreeMap::new();
    let mut nonces: BTreeMap<Felt, Felt> = BTreeMap::new();
    let mut class_of: BTreeMap<Felt, Felt> = BTreeMap::new();
    let mut deployed: BTreeSet<Felt> = BTreeSet::new();
    let mut declared: BTreeMap<Felt, Felt> = BTreeMap::new();
    let mut deprecated: BTreeSet<Felt> = BTreeSet::new();
    for d in diffs {
        for c in &d.storage_diffs {
            let slots = storage.entry(c.address).or_default();
            for e in &c.storage_entries {
                slots.insert(e.key, e.value);
            }
        }
        for n in &d.nonces {
            nonces.insert(n.contract_address, n.nonce);
        }
        for c in &d.deployed_contracts {
            class_of.insert(c.address, c.class_hash);
            deployed.insert(c.address);
        }
        for r in &d.replaced_classes {
            class_of.insert(r.contract_address, r.class_hash);
        }
        for c in &d.declared_classes {
            declared.insert(c.class_hash, c.compiled_class_hash);
        }
        deprecated.extend(d.deprecated_declared_classes.iter().copied());
    }
    let (mut deployed_contracts, mut replaced_classes) = (Vec::new(), Vec::new());
    for (address, class_hash) in class_of {
        if deployed.contains(&address) {
            deployed_contracts.push(DeployedContract { address, class_hash });
        } else {
            replaced_classes.push(ReplacedClass { contract_address: address, class_hash });
        }
    }
    StateDiff {
        storage_diffs: storage
            .into_iter()
            .map(|(address, slots)| ContractStorageDiff {
                address,
                storage_entries: slots.into_iter().map(|(key, value)| StorageEntry { key, value }).collect(),
            })
            .collect(),
        deprecated_declared_classes: deprecated.into_iter().collect(),
        declared_classes: declared
            .into_iter()
            .map(|(class_hash, compiled_class_hash)| DeclaredClass { class_hash, compiled_class_hash })
            .collect(),
        deployed_contracts,
        replaced_classes,
        nonces: nonces.into_iter().map(|(contract_address, nonce)| NonceUpdate { contract_address, nonce }).collect(),
    }
}

/// [`squash_state_diffs`] of the state updates of consecutive blocks, in block order.
pub fn squash_state_updates(updates: &[StateUpdate]) -> StateDiff {
    squash_state_diffs(updates.iter().map(|u| &u.state_diff))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: u64) -> Felt {
        Felt::from_u64(v)
    }

    fn writes(address: u64, kv: &[(u64, u64)]) -> ContractStorageDiff {
        ContractStorageDiff {
            address: f(address),
            storage_entries: kv.iter().map(|&(k, v)| StorageEntry { key: f(k), value: f(v) }).collect(),
        }
    }

    #[test]
    fn last_write_wins_per_key_and_lists_come_out_sorted() {
        let a = StateDiff {
            storage_diffs: vec![writes(9, &[(2, 20), (1, 10)]), writes(3, &[(5, 50)])],
            nonces: vec![NonceUpdate { contract_address: f(7), nonce: f(1) }],
            ..StateDiff::default()
        };
        let b = StateDiff {
            storage_diffs: vec![writes(9, &[(1, 11)])],
            nonces: vec![NonceUpdate { contract_address: f(7), nonce: f(4) }],
            ..StateDiff::default()
        };
        let s = squash_state_diffs([&a, &b]);
        assert_eq!(s.storage_diffs, vec![writes(3, &[(5, 50)]), writes(9, &[(1, 11), (2, 20)])]);
        assert_eq!(s.nonces, vec![NonceUpdate { contract_address: f(7), nonce: f(4) }]);
    }

    #[test]
    fn a_deployed_contract_keeps_its_final_class_and_stays_deployed() {
        let a = StateDiff {
            deployed_contracts: vec![DeployedContract { address: f(5), class_hash: f(100) }],
            replaced_classes: vec![ReplacedClass { contract_address: f(6), class_hash: f(200) }],
            declared_classes: vec![DeclaredClass { class_hash: f(1), compiled_class_hash: f(2) }],
            deprecated_declared_classes: vec![f(44)],
            ..StateDiff::default()
        };
        let b = StateDiff {
            replaced_classes: vec![
                ReplacedClass { contract_address: f(5), class_hash: f(101) },
                ReplacedClass { contract_address: f(6), class_hash: f(201) },
            ],
            declared_classes: vec![
                DeclaredClass { class_hash: f(3), compiled_class_hash: f(4) },
                DeclaredClass { class_hash: f(1), compiled_class_hash: f(2) },
            ],
            deprecated_declared_classes: vec![f(44)],
            ..StateDiff::default()
        };
        let s = squash_state_diffs([&a, &b]);
        assert_eq!(s.deployed_contracts, vec![DeployedContract { address: f(5), class_hash: f(101) }]);
        assert_eq!(s.replaced_classes, vec![ReplacedClass { contract_address: f(6), class_hash: f(201) }]);
        assert_eq!(s.declared_classes.len(), 2);
        assert_eq!(s.deprecated_declared_classes, vec![f(44)]);
    }

    #[test]
    fn one_block_squashes_to_its_own_diff_sorted() {
        let a = StateDiff { storage_diffs: vec![writes(9, &[(2, 20), (1, 10)])], ..StateDiff::default() };
        let s = squash_state_diffs([&a]);
        assert_eq!(s.storage_diffs, vec![writes(9, &[(1, 10), (2, 20)])]);
        assert_eq!(squash_state_diffs([]), StateDiff::default());
    }
}
