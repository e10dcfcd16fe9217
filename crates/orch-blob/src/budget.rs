//! [`BlobBudget`]: batches sized by the blobs their squashed, compressed state diff fills.
//!
//! The engine's job creator grows a batch block by block and asks the budget, after each
//! block, how many payload felts the batch's data takes ([`orch_core::engine::BatchBudget`]).
//! The answer must be exactly what [`encode_batch`](crate::encode_batch) will put into blobs
//! for that block range, and cheap enough to ask after every block of a batch of hundreds.
//!
//! Re-encoding the batch so far after every block (squash, felts, compress) costs the whole
//! batch each time, quadratic in its length. [`BlobFill`] instead keeps the squashed diff and,
//! for stateless compression, the multiset of the values of its DA felt list: the compressed
//! length depends only on the list's length and on how many distinct values fall into each
//! bucket (every other value is a repetition, a pointer), so a block costs only its own
//! writes. `blob_fill_equals_encode_batch_after_every_block` checks it against the encoder.

use std::collections::HashMap;

use orch_core::chain::{StateDiff, StateUpdate};
use orch_core::engine::{BatchBudget, BatchFill, Fill};
use orch_core::Felt;

use crate::blob::{FIELD_ELEMENTS_PER_BLOB, MAX_BLOBS_PER_TRANSACTION};
use crate::compression::{self, bucket_of, MAX_DATA_LEN};
use crate::da::encode_da_word;
use crate::error::{Error, Result};
use crate::version::{Compression, DaLayout, Encoding, NoncePolicy};

/// A budget of `blobs` blobs (1–6) for a batch's DA data in `encoding`'s format: the payload of
/// [`encode_batch`](crate::encode_batch) over the batch's blocks — their squashed diff, as DA
/// felts, compressed when the encoding says so — must fit `blobs × 4096` felts.
///
/// Use the encoding of the DA layer that publishes the batches (for the devnet,
/// `orch_devnet::DA_VERSION.encoding()`), so that the count is the blobs it will publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobBudget {
    blobs: u32,
    encoding: Encoding,
}

impl BlobBudget {
    /// A budget of `blobs` blobs in `encoding`'s format.
    ///
    /// Errors on a blob count outside 1–6 ([`MAX_BLOBS_PER_TRANSACTION`]), and on an encoding
    /// that compresses a diff whose unchanged nonces come from a nonce oracle: the compressed
    /// length then depends on nonces that the blocks' state updates do not carry, so no budget
    /// could count it exactly (no Starknet version uses that combination).
    pub fn new(blobs: u32, encoding: Encoding) -> Result<BlobBudget> {
        if blobs == 0 || blobs as usize > MAX_BLOBS_PER_TRANSACTION {
            return Err(Error::invalid(
                "batch_blobs",
                format!(
                    "is {blobs}; a batch budget is 1 to {MAX_BLOBS_PER_TRANSACTION} blobs (what one state-update \
                     transaction carries)"
                ),
            ));
        }
        if encoding.compression == Compression::Stateless && encoding.nonces == NoncePolicy::Oracle {
            return Err(Error::Unsupported {
                feature: "a blob budget for compressed DA with oracle nonces".into(),
                reason: "the compressed length depends on the nonces of contracts whose nonce did not change, which \
                         state updates do not carry; use the encoding of the chain's Starknet version (≥ 0.13.3 \
                         writes such nonces as 0)"
                    .into(),
            });
        }
        Ok(BlobBudget { blobs, encoding })
    }

    /// The number of blobs a batch may fill.
    pub fn blobs(&self) -> u32 {
        self.blobs
    }

    /// The payload felts a batch may take: `blobs × 4096`.
    pub fn capacity(&self) -> u64 {
        u64::from(self.blobs) * FIELD_ELEMENTS_PER_BLOB as u64
    }

    /// The encoding counted.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// An empty batch, as its concrete type ([`BatchBudget::start`] boxes it).
    pub fn fill(&self) -> BlobFill {
        BlobFill::new(self.encoding, self.capacity())
    }

    /// The fill of the batch of `diffs` (consecutive blocks, in block order), pushed one by one.
    pub fn measure<'a>(&self, diffs: impl IntoIterator<Item = &'a StateDiff>) -> Result<Fill> {
        let mut fill = self.fill();
        let mut last = fill.fill();
        for d in diffs {
            last = fill.push_diff(d)?;
        }
        Ok(last)
    }
}

impl BatchBudget for BlobBudget {
    fn start(&self) -> Box<dyn BatchFill> {
        Box::new(self.fill())
    }
}

/// One contract of the squashed diff.
#[derive(Debug, Default)]
struct Contract {
    storage: HashMap<Felt, Felt>,
    nonce: Option<Felt>,
    class: Option<Felt>,
    /// Its DA word in the value multiset (compressed encodings only).
    word: Option<Felt>,
}

/// The values of the DA felt list, with what the compressed length depends on.
#[derive(Debug, Default)]
struct Values {
    count: HashMap<Felt, u32>,
    /// Distinct values per compression bucket.
    unique: [usize; 6],
    len: usize,
}

impl Values {
    fn add(&mut self, v: Felt) {
        self.len += 1;
        let c = self.count.entry(v).or_insert(0);
        *c += 1;
        if *c == 1 {
            self.unique[bucket_of(&v)] += 1;
        }
    }

    fn remove(&mut self, v: Felt) {
        self.len -= 1;
        if let Some(c) = self.count.get_mut(&v) {
            *c -= 1;
            if *c == 0 {
                self.count.remove(&v);
                self.unique[bucket_of(&v)] -= 1;
            }
        }
    }

    fn replace(&mut self, old: Felt, new: Felt) {
        if old != new {
            self.remove(old);
            self.add(new);
        }
    }
}

/// A batch being measured by a [`BlobBudget`]: the squashed diff of the blocks pushed so far,
/// kept so that pushing a block costs about the size of its own diff.
#[derive(Debug)]
pub struct BlobFill {
    layout: DaLayout,
    /// The value multiset, for compressed encodings (without compression only the length
    /// counts).
    values: Option<Values>,
    capacity: u64,
    contracts: HashMap<Felt, Contract>,
    declared: HashMap<Felt, Felt>,
    /// Length of the (uncompressed) DA felt list.
    felts: usize,
}

fn count_felt(n: usize) -> Felt {
    Felt::from_u64(n as u64)
}

impl BlobFill {
    fn new(encoding: Encoding, capacity: u64) -> BlobFill {
        let values = (encoding.compression == Compression::Stateless).then(|| {
            let mut v = Values::default();
            // The list of an empty diff: zero contracts, zero declared classes.
            v.add(Felt::ZERO);
            v.add(Felt::ZERO);
            v
        });
        BlobFill {
            layout: encoding.layout,
            values,
            capacity,
            contracts: HashMap::new(),
            declared: HashMap::new(),
            felts: 2,
        }
    }

    /// The fill of the blocks pushed so far.
    pub fn fill(&self) -> Fill {
        let (used, fits) = match &self.values {
            None => (self.felts, true),
            // The encoder refuses lists longer than the compressor's 20-bit length field: such a
            // batch cannot be published at all.
            Some(v) => (compression::compressed_len(v.len, &v.unique), v.len <= MAX_DATA_LEN),
        };
        let used = used as u64;
        let blobs = used.div_ceil(FIELD_ELEMENTS_PER_BLOB as u64).min(u64::from(u32::MAX)) as u32;
        let fill = Fill::new(used, self.capacity, blobs);
        Fill { fits: fill.fits && fits, ..fill }
    }

    /// Adds the next block's diff (the batch's blocks in order) and returns the batch's fill:
    /// the squash of [`crate::squash_state_diffs`] (last write per key, last nonce, final class,
    /// union of declared classes), measured as [`crate::encode_batch`] encodes it.
    pub fn push_diff(&mut self, d: &StateDiff) -> Result<Fill> {
        let n_contracts = self.contracts.len();
        let n_declared = self.declared.len();
        let layout = self.layout;
        let BlobFill { values, contracts, declared, felts, .. } = &mut *self;
        let mut touched = Vec::new();
        for s in &d.storage_diffs {
            let c = entry(contracts, values, felts, &mut touched, s.address);
            for e in &s.storage_entries {
                match c.storage.insert(e.key, e.value) {
                    None => {
                        *felts += 2;
                        if let Some(v) = values.as_mut() {
                            v.add(e.key);
                            v.add(e.value);
                        }
                    }
                    Some(old) => {
                        if let Some(v) = values.as_mut() {
                            v.replace(old, e.value);
                        }
                    }
                }
            }
        }
        for n in &d.nonces {
            let c = entry(contracts, values, felts, &mut touched, n.contract_address);
            c.nonce = Some(n.nonce);
        }
        // Replacements after deployments, as in the squash: the last class wins.
        let classes = d
            .deployed_contracts
            .iter()
            .map(|c| (c.address, c.class_hash))
            .chain(d.replaced_classes.iter().map(|r| (r.contract_address, r.class_hash)));
        for (address, class_hash) in classes {
            let c = entry(contracts, values, felts, &mut touched, address);
            match c.class.replace(class_hash) {
                None => {
                    *felts += 1;
                    if let Some(v) = values.as_mut() {
                        v.add(class_hash);
                    }
                }
                Some(old) => {
                    if let Some(v) = values.as_mut() {
                        v.replace(old, class_hash);
                    }
                }
            }
        }
        for k in &d.declared_classes {
            match declared.insert(k.class_hash, k.compiled_class_hash) {
                None => {
                    *felts += 2;
                    if let Some(v) = values.as_mut() {
                        v.add(k.class_hash);
                        v.add(k.compiled_class_hash);
                    }
                }
                Some(old) => {
                    if let Some(v) = values.as_mut() {
                        v.replace(old, k.compiled_class_hash);
                    }
                }
            }
        }

        // Nonces must fit the DA word's 64 bits whatever the layout; the encoder refuses them.
        for address in &touched {
            let c = &contracts[address];
            if let Some(n) = c.nonce {
                n.to_u64().ok_or(Error::NonceOutOfRange {
                    address: *address,
                    nonce: n,
                    source_of_nonce: "state_diff.nonces",
                })?;
            }
        }
        if let Some(v) = values.as_mut() {
            touched.sort_unstable();
            touched.dedup();
            for address in touched {
                let Some(c) = contracts.get_mut(&address) else { continue };
                // Compressed encodings take unchanged nonces as 0 (checked in `BlobBudget::new`).
                let nonce = c.nonce.and_then(|n| n.to_u64()).unwrap_or(0);
                let word = encode_da_word(layout, c.class.is_some(), nonce, c.storage.len())?;
                match c.word.replace(word) {
                    None => v.add(word),
                    Some(old) => v.replace(old, word),
                }
            }
            v.replace(count_felt(n_contracts), count_felt(contracts.len()));
            v.replace(count_felt(n_declared), count_felt(declared.len()));
        }
        Ok(self.fill())
    }
}

/// The contract at `address`, added (address and DA word felts) if the batch did not have it.
fn entry<'a>(
    contracts: &'a mut HashMap<Felt, Contract>,
    values: &mut Option<Values>,
    felts: &mut usize,
    touched: &mut Vec<Felt>,
    address: Felt,
) -> &'a mut Contract {
    touched.push(address);
    contracts.entry(address).or_insert_with(|| {
        *felts += 2;
        if let Some(v) = values.as_mut() {
            v.add(address);
        }
        Contract::default()
    })
}

impl BatchFill for BlobFill {
    fn push(&mut self, update: &StateUpdate) -> orch_core::Result<Fill> {
        self.push_diff(&update.state_diff).map_err(|e| orch_core::Error::invalid_input("state diff", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use orch_core::chain::{
        ContractStorageDiff, DeclaredClass, DeployedContract, NonceUpdate, ReplacedClass, StorageEntry,
    };
    use proptest::prelude::*;

    use super::*;
    use crate::version::StarknetVersion;
    use crate::{encode_batch, NoOracle};

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// Small values (which repeat and share buckets) as often as wide ones.
        fn value(&mut self) -> Felt {
            match self.below(4) {
                0 => Felt::from_u64(self.below(8)),
                1 => Felt::from_u64(self.next() >> 20),
                2 => Felt::from_u128(u128::from(self.next()) << 60 | u128::from(self.next())),
                _ => self.wide(),
            }
        }
        /// A random 251-bit felt.
        fn wide(&mut self) -> Felt {
            let mut b = [0u8; 32];
            for chunk in b.chunks_mut(8) {
                chunk.copy_from_slice(&self.next().to_be_bytes());
            }
            b[0] &= 0x07;
            Felt::from_be_bytes(b).unwrap_or(Felt::ONE)
        }
    }

    /// A block diff over few addresses, keys and classes, so blocks overwrite each other's
    /// keys, nonces and classes; with duplicates inside a block, empty storage lists, system
    /// contracts, and re-declarations.
    fn diff(rng: &mut Rng, n: u64) -> StateDiff {
        let addr = |rng: &mut Rng| Felt::from_u64(1 + rng.below(12));
        let mut d = StateDiff::default();
        for _ in 0..rng.below(5) {
            let entries = (0..rng.below(6))
                .map(|_| StorageEntry { key: Felt::from_u64(rng.below(20)), value: rng.value() })
                .collect();
            d.storage_diffs.push(ContractStorageDiff { address: addr(rng), storage_entries: entries });
        }
        for _ in 0..rng.below(3) {
            d.nonces.push(NonceUpdate { contract_address: addr(rng), nonce: Felt::from_u64(n + rng.below(4)) });
        }
        if rng.below(3) == 0 {
            d.deployed_contracts.push(DeployedContract { address: addr(rng), class_hash: rng.value() });
        }
        if rng.below(3) == 0 {
            d.replaced_classes
                .push(ReplacedClass { contract_address: addr(rng), class_hash: Felt::from_u64(100 + rng.below(3)) });
        }
        if rng.below(3) == 0 {
            let class_hash = Felt::from_u64(1000 + rng.below(5));
            d.declared_classes.push(DeclaredClass { class_hash, compiled_class_hash: rng.value() });
        }
        if rng.below(4) == 0 {
            d.deprecated_declared_classes.push(rng.value());
        }
        d
    }

    fn check(seed: u64, blocks: u64, encoding: Encoding) {
        let mut rng = Rng(seed);
        let diffs: Vec<StateDiff> = (0..blocks).map(|n| diff(&mut rng, n)).collect();
        let budget = BlobBudget::new(1, encoding).unwrap();
        let mut fill = budget.fill();
        let oracle = |_: &Felt| Some(Felt::from_u64(7));
        for i in 0..diffs.len() {
            let got = fill.push_diff(&diffs[i]).unwrap();
            let enc = match encoding.nonces {
                NoncePolicy::Oracle => encode_batch(&diffs[..=i], &oracle, encoding),
                _ => encode_batch(&diffs[..=i], &NoOracle, encoding),
            }
            .unwrap();
            assert_eq!(got.used, enc.payload.len() as u64, "seed {seed}, after block {i}");
            assert_eq!(got.blobs as usize, enc.blobs.len(), "seed {seed}, after block {i}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn blob_fill_equals_encode_batch_after_every_block(seed in any::<u64>(), blocks in 1u64..40) {
            check(seed, blocks, StarknetVersion::V0_13_3.encoding());
            check(seed, blocks, StarknetVersion::V0_13_2.encoding());
        }
    }

    #[test]
    fn blob_fill_counts_multi_blob_batches_exactly() {
        // Wide random values: about one payload felt per DA felt, so a few blocks fill blobs.
        let mut rng = Rng(3);
        let mut big = |n: u64| {
            let entries =
                (0..2500).map(|k| StorageEntry { key: Felt::from_u64(n * 10_000 + k), value: rng.wide() }).collect();
            StateDiff {
                storage_diffs: vec![ContractStorageDiff { address: Felt::from_u64(50 + n), storage_entries: entries }],
                ..StateDiff::default()
            }
        };
        let diffs: Vec<StateDiff> = (0..12).map(&mut big).collect();
        let encoding = StarknetVersion::V0_13_3.encoding();
        let budget = BlobBudget::new(6, encoding).unwrap();
        let mut fill = budget.fill();
        let mut saw_over = false;
        for i in 0..diffs.len() {
            let got = fill.push_diff(&diffs[i]).unwrap();
            let enc = encode_batch(&diffs[..=i], &NoOracle, encoding).unwrap();
            assert_eq!((got.used, got.blobs as usize), (enc.payload.len() as u64, enc.blobs.len()), "block {i}");
            assert_eq!(got.fits, enc.blobs.len() <= 6);
            saw_over |= !got.fits;
        }
        assert!(saw_over, "the batch outgrew six blobs");
        assert_eq!(
            budget.measure(&diffs[..3]).unwrap().used,
            encode_batch(&diffs[..3], &NoOracle, encoding).unwrap().payload.len() as u64
        );
    }

    #[test]
    fn an_empty_batch_is_the_empty_diff() {
        for v in [StarknetVersion::V0_13_2, StarknetVersion::V0_13_3] {
            let budget = BlobBudget::new(1, v.encoding()).unwrap();
            let enc = encode_batch([], &NoOracle, v.encoding()).unwrap();
            assert_eq!(budget.fill().fill().used, enc.payload.len() as u64);
            assert_eq!(budget.measure([&StateDiff::default()]).unwrap().used, enc.payload.len() as u64);
        }
    }

    #[test]
    fn new_checks_the_blob_count_and_the_encoding() {
        let v = StarknetVersion::V0_13_3.encoding();
        for bad in [0, 7] {
            let e = BlobBudget::new(bad, v).unwrap_err().to_string();
            assert!(e.contains("batch_blobs") && e.contains("1 to 6"), "{e}");
        }
        let b = BlobBudget::new(6, v).unwrap();
        assert_eq!((b.blobs(), b.capacity()), (6, 24_576));
        let odd = Encoding { nonces: NoncePolicy::Oracle, ..v };
        assert!(matches!(BlobBudget::new(6, odd), Err(Error::Unsupported { .. })));
        BlobBudget::new(6, StarknetVersion::V0_13_2.encoding()).unwrap();
    }

    #[test]
    fn a_nonce_beyond_64_bits_is_refused_as_the_encoder_does() {
        let d = StateDiff {
            nonces: vec![NonceUpdate { contract_address: Felt::from_u64(9), nonce: Felt::from_u128(1 << 64) }],
            ..StateDiff::default()
        };
        let budget = BlobBudget::new(1, StarknetVersion::V0_13_3.encoding()).unwrap();
        let e = budget.measure([&d]).unwrap_err();
        assert!(matches!(e, Error::NonceOutOfRange { .. }), "{e}");
        assert!(encode_batch([&d], &NoOracle, budget.encoding()).is_err());
    }
}
