//! The KZG DA program output: `x_0` against the 651053 vector, and build → parse → prove for
//! multi-blob batches.

mod common;

use orch_blob::os_output::{commitment_felts, HEADER_LEN};
use orch_blob::{
    decode_blobs, encode_batch, kzg, parse_felt_list, squash_state_diffs, Blob, DaStateDiff, Error, KzgCommitment,
    KzgDaOutput, NoOracle, NoncePolicy, OsOutputHeader, Scalar, StarknetVersion, X0Formula, FIELD_ELEMENTS_PER_BLOB,
};
use orch_core::chain::{ContractStorageDiff, DeclaredClass, DeployedContract, NonceUpdate, StateDiff, StorageEntry};
use orch_core::Felt;

#[test]
fn x0_of_block_651053_is_the_0_13_1_formula_over_its_da_felts_and_commitment() {
    let Some(dir) = common::vectors_dir() else { return };
    let felts = parse_felt_list(&common::read(&dir, "derived/blob_felts/651053.txt")).unwrap();
    assert_eq!(felts.len(), 2702);
    let blob = Blob::from_hex(&common::read(&dir, "kzg_x0/651053/blob_data.txt")).unwrap();
    let commitment = kzg::commit(&blob).unwrap();
    let e = &common::expected(&dir)["kzg_x0/651053"];
    assert_eq!(commitment.to_string(), e["commitment"].as_str().unwrap());
    let want = Felt::from_hex("x_0.txt", &common::read(&dir, "kzg_x0/651053/x_0.txt")).unwrap();

    let x_0 = X0Formula::V0_13_1.x_0(&felts, &[commitment]).unwrap();
    assert_eq!(x_0, want);
    let version = StarknetVersion::parse("0.13.1.1").unwrap();
    assert_eq!(X0Formula::for_version(version).unwrap(), X0Formula::V0_13_1);
    // The block predates 0.13.2: the later formula gives another point.
    assert_ne!(X0Formula::V0_13_2.x_0(&felts, &[commitment]).unwrap(), want);

    // y_0 computed from the coefficients is what c-kzg computes from the blob.
    let out =
        KzgDaOutput::from_blobs(&felts, std::slice::from_ref(&blob), vec![commitment], X0Formula::V0_13_1).unwrap();
    assert_eq!(out.x_0, Scalar::from(want));
    assert_eq!(out.y[0].to_string(), e["y_0"].as_str().unwrap());
}

#[test]
fn commitment_splits_into_low_and_high_192_bits() {
    let c = KzgCommitment::from_hex(
        "0xb69c72ffcc17345445c59e6653cbe0fca28731518b980ba392e8f8056296c6b13469e1b4ba207aa918ff049f173f2a16",
    )
    .unwrap();
    let (low, high) = commitment_felts(&c);
    assert_eq!(high.to_string(), "0xb69c72ffcc17345445c59e6653cbe0fca28731518b980ba3");
    assert_eq!(low.to_string(), "0x92e8f8056296c6b13469e1b4ba207aa918ff049f173f2a16");
}

/// A deterministic pseudo-random felt stream.
struct Felts(u64);

impl Felts {
    fn next(&mut self) -> Felt {
        let mut b = [0u8; 32];
        for chunk in b.chunks_exact_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_be_bytes());
        }
        b[0] &= 0x07;
        Felt::from_be_bytes(b).unwrap()
    }
}

/// Three blocks whose squashed diff takes about three blobs; block 2 rewrites keys of block 0.
fn blocks() -> Vec<StateDiff> {
    let mut r = Felts(0x5eed);
    let contract = |r: &mut Felts, address: Felt, keys: &[Felt]| ContractStorageDiff {
        address,
        storage_entries: keys.iter().map(|&key| StorageEntry { key, value: r.next() }).collect(),
    };
    let (a, b) = (r.next(), r.next());
    let keys: Vec<Felt> = (0..2500).map(|_| r.next()).collect();
    let more: Vec<Felt> = (0..2500).map(|_| r.next()).collect();
    let block0 = StateDiff {
        storage_diffs: vec![contract(&mut r, a, &keys)],
        nonces: vec![NonceUpdate { contract_address: b, nonce: Felt::from_u64(3) }],
        deployed_contracts: vec![DeployedContract { address: r.next(), class_hash: r.next() }],
        ..StateDiff::default()
    };
    let block1 = StateDiff {
        storage_diffs: vec![contract(&mut r, b, &more)],
        nonces: vec![NonceUpdate { contract_address: b, nonce: Felt::from_u64(4) }],
        declared_classes: vec![DeclaredClass { class_hash: r.next(), compiled_class_hash: r.next() }],
        ..StateDiff::default()
    };
    let block2 = StateDiff { storage_diffs: vec![contract(&mut r, a, &keys[..700])], ..StateDiff::default() };
    vec![block0, block1, block2]
}

fn header() -> OsOutputHeader {
    OsOutputHeader {
        initial_root: Felt::from_u64(0x100),
        final_root: Felt::from_u64(0x200),
        prev_block_number: OsOutputHeader::block_before(40),
        new_block_number: Felt::from_u64(42),
        prev_block_hash: Felt::from_u64(0x39),
        new_block_hash: Felt::from_u64(0x42),
        os_program_hash: Felt::from_u64(0x05),
        starknet_os_config_hash: Felt::from_u64(0x06),
        use_kzg_da: true,
        full_output: false,
    }
}

#[test]
fn a_built_multi_blob_output_parses_and_every_blob_opens_at_x0_to_its_y() {
    let version = StarknetVersion::V0_13_3;
    let diffs = blocks();
    let encoded = encode_batch(&diffs, &NoOracle, version.encoding()).unwrap();
    assert!(encoded.blobs.len() >= 2, "the batch needs several blobs: {}", encoded.blobs.len());
    assert_eq!(encoded.payload, orch_blob::compression::compress(&encoded.felts).unwrap(), "0.13.3 compresses");
    let batch = KzgDaOutput::build(&header(), encoded.clone(), version).unwrap();
    let po = &batch.program_output;
    let n = encoded.blobs.len();
    assert_eq!(po.len(), HEADER_LEN + KzgDaOutput::segment_len(n) + 2);
    assert_eq!(&po[po.len() - 2..], &[Felt::ZERO, Felt::ZERO], "empty message segments");
    assert_eq!(OsOutputHeader::parse(po).unwrap(), header());

    let parsed = KzgDaOutput::parse(po).unwrap();
    assert_eq!(parsed, batch.kzg);
    assert_eq!(parsed.commitments.len(), n);
    // x_0 is the 0.13.2+ formula over the compressed felts.
    let x_0 = X0Formula::V0_13_2.x_0(&encoded.payload, &parsed.commitments).unwrap();
    assert_eq!(parsed.x_0, Scalar::from(x_0));
    for (i, blob) in batch.encoded.blobs.iter().enumerate() {
        assert_eq!(kzg::commit(blob).unwrap(), parsed.commitments[i], "commitment of blob {i}");
        let (proof, y) = kzg::point_proof(blob, &parsed.x_0).unwrap();
        assert_eq!(y, parsed.y[i], "y_{i}");
        assert!(kzg::verify_point_proof(&parsed.commitments[i], &parsed.x_0, &y, &proof).unwrap());
    }
    assert_eq!(parsed.prove(&batch.encoded.blobs).unwrap().len(), n);

    // The blobs carry the squashed diff.
    let squashed = DaStateDiff::from_state_diff(&squash_state_diffs(&diffs), &NoOracle, NoncePolicy::DiffOnly).unwrap();
    assert_eq!(decode_blobs(&batch.encoded.blobs, version).unwrap(), squashed);
    let writes: usize = squashed.contracts.iter().map(|c| c.storage.len()).sum();
    assert_eq!(writes, 5000, "keys written twice appear once");
}

#[test]
fn a_single_blob_output_under_0_13_2_hashes_the_uncompressed_felts() {
    let version = StarknetVersion::V0_13_2;
    let diff = StateDiff {
        storage_diffs: vec![ContractStorageDiff {
            address: Felt::from_u64(0x123),
            storage_entries: vec![StorageEntry { key: Felt::from_u64(5), value: Felt::from_u64(7) }],
        }],
        nonces: vec![NonceUpdate { contract_address: Felt::from_u64(0x123), nonce: Felt::from_u64(1) }],
        ..StateDiff::default()
    };
    let encoded = encode_batch([&diff], &NoOracle, version.encoding()).unwrap();
    assert_eq!(encoded.payload, encoded.felts);
    let batch = KzgDaOutput::build(&header(), encoded, version).unwrap();
    let parsed = KzgDaOutput::parse(&batch.program_output).unwrap();
    let x_0 = X0Formula::V0_13_2.x_0(&batch.encoded.felts, &parsed.commitments).unwrap();
    assert_eq!(parsed.x_0, Scalar::from(x_0));
    assert_eq!(parsed.prove(&batch.encoded.blobs).unwrap().len(), 1);
}

#[test]
fn the_0_13_1_formula_refuses_several_blobs_and_older_versions_have_no_kzg() {
    let c = KzgCommitment::from_bytes([0xc0; 48]);
    let err = X0Formula::V0_13_1.x_0(&[Felt::ONE], &[c, c]).unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    let err = X0Formula::for_version(StarknetVersion::new(0, 13, 0, 0)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert_eq!(X0Formula::for_version(StarknetVersion::LATEST).unwrap(), X0Formula::V0_13_2);
}

#[test]
fn blob_and_commitment_counts_must_match_the_payload() {
    let payload = vec![Felt::ONE; FIELD_ELEMENTS_PER_BLOB + 1];
    let blobs = orch_blob::felts_to_blobs(&payload).unwrap();
    let c = kzg::commit(&blobs[0]).unwrap();
    let err = KzgDaOutput::from_blobs(&payload, &blobs, vec![c], X0Formula::V0_13_2).unwrap_err();
    assert!(err.to_string().contains("2 of each"), "{err}");
    let err = KzgDaOutput::from_blobs(&payload, &blobs[..1], vec![c], X0Formula::V0_13_2).unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err}");
}

#[test]
fn header_round_trips_and_rejects_bad_flags() {
    let h = header();
    assert_eq!(OsOutputHeader::parse(&h.to_felts()).unwrap(), h);
    let mut felts = h.to_felts().to_vec();
    felts[8] = Felt::from_u64(2);
    let err = OsOutputHeader::parse(&felts).unwrap_err();
    assert!(err.to_string().contains("use_kzg_da"), "{err}");
    let err = OsOutputHeader::parse(&felts[..9]).unwrap_err();
    assert!(err.to_string().contains("header"), "{err}");
    assert_eq!(OsOutputHeader::block_before(1), Felt::ZERO);
    assert_eq!(
        OsOutputHeader::block_before(0).to_string(),
        "0x800000000000011000000000000000000000000000000000000000000000000",
        "-1 in the field"
    );
    let kzg = KzgDaOutput { x_0: Scalar::from(Felt::ONE), commitments: vec![], y: vec![] };
    let no_kzg = OsOutputHeader { use_kzg_da: false, ..h };
    assert!(kzg.program_output(&no_kzg).is_err());
}
