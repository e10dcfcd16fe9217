//! Property tests: decode(encode(d)) == normalize(d) for random state diffs under every
//! encoding, decompress(compress(x)) == x, and every proof verifies.

use std::collections::BTreeMap;

use orch_blob::compression::{compress, decompress};
use orch_blob::{
    decode_blobs, encode_da_state_diff, encode_state_diff, felts_to_blobs, kzg, parse_diff_document,
    split_into_transactions, Blob, Compression, DaContract, DaLayout, DaStateDiff, DecodedDiff, DiffDocument, Encoding,
    NoncePolicy, Scalar, FIELD_ELEMENTS_PER_BLOB,
};
use orch_core::chain::{
    ContractStorageDiff, DeclaredClass, DeployedContract, NonceUpdate, ReplacedClass, StateDiff, StorageEntry,
};
use orch_core::Felt;
use proptest::prelude::*;

/// Felts of every width class the compressor buckets by, plus the edges.
fn felt() -> impl Strategy<Value = Felt> {
    let p_minus_1 =
        Felt::parse("p-1", "0x800000000000011000000000000000000000000000000000000000000000000").expect("p - 1 parses");
    prop_oneof![
        Just(Felt::ZERO),
        Just(Felt::ONE),
        Just(p_minus_1),
        any::<u16>().prop_map(|v| Felt::from_u64(u64::from(v))),
        any::<u64>().prop_map(Felt::from_u64),
        any::<u128>().prop_map(Felt::from_u128),
        any::<[u8; 32]>().prop_map(|mut b| {
            b[0] &= 0x07; // < 2^251 < p
            Felt::from_be_bytes(b).expect("below 2^251")
        }),
    ]
}

fn address() -> impl Strategy<Value = Felt> {
    prop_oneof![1 => Just(Felt::ONE), 1 => Just(Felt::from_u64(2)), 8 => felt()]
}

fn nonce() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), any::<u8>().prop_map(u64::from), (0u64..16).prop_map(|d| u64::MAX - d), any::<u64>()]
}

#[derive(Debug, Clone)]
struct ContractModel {
    in_storage_diffs: bool,
    storage: BTreeMap<Felt, Felt>,
    nonce: Option<u64>,
    deployed: Option<Felt>,
    replaced: Option<Felt>,
    oracle_nonce: u64,
}

fn contract(max_storage: usize) -> impl Strategy<Value = ContractModel> {
    (
        any::<bool>(),
        prop::collection::btree_map(felt(), felt(), 0..max_storage),
        prop::option::of(nonce()),
        prop::option::weighted(0.3, felt()),
        prop::option::weighted(0.3, felt()),
        nonce(),
    )
        .prop_map(|(in_storage_diffs, storage, nonce, deployed, replaced, oracle_nonce)| ContractModel {
            in_storage_diffs: in_storage_diffs || !storage.is_empty(),
            storage,
            nonce,
            deployed,
            replaced,
            oracle_nonce,
        })
}

#[derive(Debug, Clone)]
struct Model {
    contracts: BTreeMap<Felt, ContractModel>,
    declared: BTreeMap<Felt, Felt>,
    /// Permutation seed: the RPC lists are given in a scrambled order.
    seed: u64,
}

fn model(max_contracts: usize, max_storage: usize) -> impl Strategy<Value = Model> {
    (
        prop::collection::btree_map(address(), contract(max_storage), 0..max_contracts),
        prop::collection::btree_map(felt(), felt(), 0..8),
        any::<u64>(),
    )
        .prop_map(|(contracts, declared, seed)| Model { contracts, declared, seed })
}

/// Deterministic scramble so the encoder's sorting is exercised.
fn scramble<T>(mut v: Vec<T>, seed: u64) -> Vec<T> {
    let mut s = seed | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

impl Model {
    fn state_diff(&self) -> StateDiff {
        let mut d = StateDiff::default();
        for (i, (addr, c)) in self.contracts.iter().enumerate() {
            if c.in_storage_diffs {
                let entries = c.storage.iter().map(|(&key, &value)| StorageEntry { key, value });
                d.storage_diffs.push(ContractStorageDiff {
                    address: *addr,
                    storage_entries: scramble(entries.collect(), self.seed ^ i as u64),
                });
            }
            if let Some(n) = c.nonce {
                d.nonces.push(NonceUpdate { contract_address: *addr, nonce: Felt::from_u64(n) });
            }
            if let Some(h) = c.deployed {
                d.deployed_contracts.push(DeployedContract { address: *addr, class_hash: h });
            }
            if let Some(h) = c.replaced {
                d.replaced_classes.push(ReplacedClass { contract_address: *addr, class_hash: h });
            }
        }
        d.declared_classes = self
            .declared
            .iter()
            .map(|(&class_hash, &compiled_class_hash)| DeclaredClass { class_hash, compiled_class_hash })
            .collect();
        d.storage_diffs = scramble(d.storage_diffs, self.seed);
        d.nonces = scramble(d.nonces, self.seed.rotate_left(1));
        d.declared_classes = scramble(d.declared_classes, self.seed.rotate_left(2));
        d
    }

    fn oracle(&self) -> BTreeMap<Felt, Felt> {
        self.contracts.iter().map(|(a, c)| (*a, Felt::from_u64(c.oracle_nonce))).collect()
    }

    /// The diff the DA encoding carries, computed independently of the encoder.
    fn expected(&self, policy: NoncePolicy) -> DaStateDiff {
        let system = |a: &Felt| *a == Felt::ONE || *a == Felt::from_u64(2);
        let contracts = self
            .contracts
            .iter()
            .filter(|(_, c)| c.in_storage_diffs || c.nonce.is_some() || c.deployed.is_some() || c.replaced.is_some())
            .map(|(a, c)| DaContract {
                address: *a,
                nonce: match (c.nonce, policy) {
                    (Some(n), _) => n,
                    (None, NoncePolicy::Oracle) if !c.storage.is_empty() && !system(a) => c.oracle_nonce,
                    _ => 0,
                },
                class_hash: c.deployed.or(c.replaced),
                storage: c.storage.iter().map(|(&key, &value)| StorageEntry { key, value }).collect(),
            })
            .collect();
        let declared_classes = self
            .declared
            .iter()
            .map(|(&class_hash, &compiled_class_hash)| DeclaredClass { class_hash, compiled_class_hash })
            .collect();
        DaStateDiff { contracts, declared_classes }
    }
}

const ENCODINGS: [Encoding; 4] = [
    Encoding { layout: DaLayout::Legacy, compression: Compression::None, nonces: NoncePolicy::Oracle },
    Encoding { layout: DaLayout::Legacy, compression: Compression::Stateless, nonces: NoncePolicy::Oracle },
    Encoding { layout: DaLayout::V0_13_3, compression: Compression::None, nonces: NoncePolicy::DiffOnly },
    Encoding { layout: DaLayout::V0_13_3, compression: Compression::Stateless, nonces: NoncePolicy::Oracle },
];

fn check_round_trip(m: &Model) -> Result<(), TestCaseError> {
    let diff = m.state_diff();
    for enc in ENCODINGS {
        let encoded =
            encode_state_diff(&diff, &m.oracle(), enc).map_err(|e| TestCaseError::fail(format!("{enc:?}: {e}")))?;
        let expected = m.expected(enc.nonces);
        prop_assert_eq!(&encoded.diff, &expected, "normalization under {:?}", enc);
        prop_assert_eq!(
            encoded.blobs.len(),
            encoded.payload.len().div_ceil(FIELD_ELEMENTS_PER_BLOB),
            "never truncates"
        );
        let decoded = decode_blobs(&encoded.blobs, enc).map_err(|e| TestCaseError::fail(format!("{enc:?}: {e}")))?;
        prop_assert_eq!(&decoded, &expected, "decode(encode(d)) under {:?}", enc);
        // Through the JSON that `blob decode` prints and `blob encode` reads back: same blobs.
        let json = serde_json::to_string(&DecodedDiff { starknet_version: None, diff: decoded })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = match parse_diff_document(&json) {
            Ok(DiffDocument::Decoded(d)) => d.diff,
            other => return Err(TestCaseError::fail(format!("{enc:?}: {other:?}"))),
        };
        let again = encode_da_state_diff(back, enc).map_err(|e| TestCaseError::fail(format!("{enc:?}: {e}")))?;
        prop_assert!(again.blobs == encoded.blobs, "decoded JSON re-encodes to other blobs under {:?}", enc);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_state_diffs_round_trip_under_every_encoding(m in model(12, 12)) {
        check_round_trip(&m)?;
    }

    #[test]
    fn arbitrary_felt_lists_decompress_to_themselves(
        data in prop::collection::vec(felt(), 0..600),
        pool in prop::collection::vec(felt(), 1..20),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..600),
    ) {
        // Two sources of input: unique-ish random felts and heavily repeating ones.
        let mut x = data;
        x.extend(picks.iter().map(|i| pool[i.index(pool.len())]));
        let c = compress(&x).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (back, used) = decompress(&c).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(used, c.len());
        prop_assert_eq!(back, x);
    }

    #[test]
    fn decompress_never_panics_on_garbage(stream in prop::collection::vec(felt(), 0..40)) {
        let _ = decompress(&stream);
    }

    #[test]
    fn decode_never_panics_on_garbage(stream in prop::collection::vec(felt(), 0..60)) {
        for enc in ENCODINGS {
            let _ = orch_blob::decode_payload(&stream, enc);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Contracts with ≥ 256 updates (the wide 0.13.3 word) and diffs spanning 3+ blobs.
    #[test]
    fn large_state_diffs_span_several_blobs_and_round_trip(
        m in model(4, 40),
        values in prop::collection::vec(felt(), 4200..4600),
        key_stride in 1u64..1 << 40,
        addr in felt(),
        n in nonce(),
    ) {
        // Distinct keys by construction: a map strategy would reject (and retry forever) when
        // random keys collide below the minimum size.
        let big = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Felt::from_u128(u128::from(key_stride) * i as u128), v))
            .collect();
        let mut m = m;
        m.contracts.insert(addr, ContractModel {
            in_storage_diffs: true,
            storage: big,
            nonce: Some(n),
            deployed: None,
            replaced: None,
            oracle_nonce: 0,
        });
        check_round_trip(&m)?;
        let encoded = encode_state_diff(&m.state_diff(), &m.oracle(), ENCODINGS[0])
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(encoded.blobs.len() >= 3, "{} blobs", encoded.blobs.len());
    }

    #[test]
    fn every_produced_proof_verifies(
        felts in prop::collection::vec(felt(), 1..5000),
        z in felt(),
    ) {
        let blobs = felts_to_blobs(&felts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let z = Scalar::from(z);
        for blob in &blobs {
            let s = kzg::sidecar(blob).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(kzg::verify_blob_proof(blob, &s.commitment, &s.proof).unwrap_or(false));
            let (proof, y) = kzg::point_proof(blob, &z).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(kzg::verify_point_proof(&s.commitment, &z, &y, &proof).unwrap_or(false));
        }
    }
}

#[test]
fn thirteen_blobs_group_into_transactions_of_at_most_six() {
    let felts: Vec<Felt> = (0..12 * FIELD_ELEMENTS_PER_BLOB as u64 + 5).map(Felt::from_u64).collect();
    let blobs = felts_to_blobs(&felts).unwrap();
    assert_eq!(blobs.len(), 13);
    let sizes: Vec<usize> = split_into_transactions(&blobs).map(<[Blob]>::len).collect();
    assert_eq!(sizes, [6, 6, 1]);
    let back = orch_blob::blobs_to_felts(&blobs).unwrap();
    assert_eq!(&back[..felts.len()], &felts[..]);
    assert!(back[felts.len()..].iter().all(Felt::is_zero));
}

#[test]
fn empty_state_diff_encodes_to_one_blob_and_back() {
    for enc in ENCODINGS {
        let e = encode_state_diff(&StateDiff::default(), &orch_blob::NoOracle, enc).unwrap();
        assert_eq!(e.felts, [Felt::ZERO, Felt::ZERO]);
        assert_eq!(e.blobs.len(), 1);
        assert_eq!(decode_blobs(&e.blobs, enc).unwrap(), DaStateDiff::default());
    }
}
