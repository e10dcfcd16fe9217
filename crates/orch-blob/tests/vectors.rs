//! Reproduces every vector of `shared/vectors/` byte for byte, in both directions.

mod common;

use std::path::Path;

use orch_blob::{
    blobs_to_felts, decode_blobs, encode_state_update, format_felt_list, kzg, parse_felt_list, parse_nonces,
    parse_state_update, Blob, DaLayout, DaStateDiff, Encoding, KzgCommitment, KzgDaOutput, KzgProof, Scalar,
    StarknetVersion, FIELD_ELEMENTS_PER_BLOB,
};
use orch_core::Felt;

const DA_BLOCKS: [&str; 3] = ["178", "631861", "671070"];
/// The vectors are pre-0.13.3 (README §3.5).
const V: StarknetVersion = StarknetVersion::V0_13_2;

fn encode_da_vector(dir: &Path, block: &str) -> orch_blob::Encoded {
    let update =
        parse_state_update(&common::read(dir, &format!("da/state_update/{block}.json"))).expect("state update parses");
    let nonces = parse_nonces(&common::read(dir, &format!("da/nonces/{block}.json"))).expect("nonces parse");
    encode_state_update(&update, &nonces, V).expect("encodes")
}

#[test]
fn da_vectors_encode_to_the_reference_blobs_byte_for_byte() {
    let Some(dir) = common::vectors_dir() else { return };
    let expected = common::expected(&dir);
    for block in DA_BLOCKS {
        let enc = encode_da_vector(&dir, block);
        let want_felts = common::read(&dir, &format!("derived/da_felts/{block}.txt"));
        assert_eq!(format_felt_list(&enc.felts), want_felts, "felts of {block}");
        assert_eq!(enc.payload, enc.felts, "no compression before 0.13.3");
        let e = &expected[format!("da/{block}")];
        assert_eq!(enc.felts.len() as u64, e["n_felts"].as_u64().unwrap());
        assert_eq!(enc.diff.contracts.len() as u64, e["n_contracts"].as_u64().unwrap());
        assert_eq!(enc.blobs.len() as u64, e["n_blobs"].as_u64().unwrap());

        let want_hex = common::read(&dir, &format!("da/test_blob/{block}.hex"));
        assert_eq!(enc.blobs[0].to_hex(), want_hex, "blob of {block}");
        let mut written = Vec::new();
        enc.blobs[0].write_hex(&mut written).unwrap();
        assert_eq!(written, want_hex.as_bytes(), "written file of {block}");
    }
}

#[test]
fn da_vectors_decode_to_their_felts_followed_by_zeros() {
    let Some(dir) = common::vectors_dir() else { return };
    for block in DA_BLOCKS {
        let blob = Blob::from_hex(&common::read(&dir, &format!("da/test_blob/{block}.hex"))).unwrap();
        let want = parse_felt_list(&common::read(&dir, &format!("derived/da_felts/{block}.txt"))).unwrap();
        let got = blob.to_felts().unwrap();
        assert_eq!(got.len(), FIELD_ELEMENTS_PER_BLOB);
        assert_eq!(&got[..want.len()], &want[..], "felts of {block}");
        assert!(got[want.len()..].iter().all(Felt::is_zero), "padding of {block}");

        // And back: forward(inverse(blob)) == blob.
        assert_eq!(Blob::from_felts(&got).unwrap(), blob);

        // The decoded diff is the one the encoder normalized.
        let decoded = decode_blobs(std::slice::from_ref(&blob), V).unwrap();
        assert_eq!(decoded, encode_da_vector(&dir, block).diff, "diff of {block}");
    }
}

#[test]
fn da_vectors_kzg_values_match_expected_json() {
    let Some(dir) = common::vectors_dir() else { return };
    let expected = common::expected(&dir);
    for block in DA_BLOCKS {
        let enc = encode_da_vector(&dir, block);
        let e = &expected[format!("da/{block}")];
        let s = kzg::sidecar(&enc.blobs[0]).unwrap();
        assert_eq!(s.commitment.to_string(), e["commitment"].as_str().unwrap(), "{block}");
        assert_eq!(s.proof.to_string(), e["blob_kzg_proof"].as_str().unwrap(), "{block}");
        assert_eq!(s.versioned_hash.to_string(), e["versioned_hash"].as_str().unwrap(), "{block}");
        assert!(kzg::verify_blob_proof(&enc.blobs[0], &s.commitment, &s.proof).unwrap());
    }
}

fn check_published_blob(dir: &Path, key: &str, blob: &Blob, felts_file: &str) -> (DaStateDiff, Vec<Felt>) {
    let e = &common::expected(dir)[key];
    let want = parse_felt_list(&common::read(dir, felts_file)).unwrap();
    let got = blobs_to_felts(std::slice::from_ref(blob)).unwrap();
    assert_eq!(&got[..want.len()], &want[..], "{key}");
    assert!(got[want.len()..].iter().all(Felt::is_zero), "{key} padding");
    assert_eq!(want.len() as u64, e["decoded_n_felts"].as_u64().unwrap());

    let diff = decode_blobs(std::slice::from_ref(blob), V).unwrap();
    assert_eq!(diff.contracts.len() as u64, e["decoded_n_contracts"].as_u64().unwrap());
    assert_eq!(diff.declared_classes.len() as u64, e["decoded_n_declared_classes"].as_u64().unwrap());
    // Re-encoding the decoded diff gives the same felts and the same blob.
    assert_eq!(diff.to_felts(DaLayout::Legacy).unwrap(), want, "{key} re-encoded");
    assert_eq!(&Blob::from_felts(&want).unwrap(), blob, "{key} re-blobbed");

    let s = kzg::sidecar(blob).unwrap();
    assert_eq!(s.commitment.to_string(), e["commitment"].as_str().unwrap());
    assert_eq!(s.proof.to_string(), e["blob_kzg_proof"].as_str().unwrap());
    assert_eq!(s.versioned_hash.to_string(), e["versioned_hash"].as_str().unwrap());
    (diff, want)
}

#[test]
fn kzg_x0_vector_point_proof_and_y0_match() {
    let Some(dir) = common::vectors_dir() else { return };
    let blob = Blob::from_hex(&common::read(&dir, "kzg_x0/651053/blob_data.txt")).unwrap();
    check_published_blob(&dir, "kzg_x0/651053", &blob, "derived/blob_felts/651053.txt");

    let e = &common::expected(&dir)["kzg_x0/651053"];
    let x0 = Scalar::from_hex("x_0", &common::read(&dir, "kzg_x0/651053/x_0.txt")).unwrap();
    assert_eq!(x0.to_string(), e["x_0"].as_str().unwrap());
    let want_proof = KzgProof::from_hex(&common::read(&dir, "kzg_x0/651053/kzg_proof.txt")).unwrap();
    let (proof, y0) = kzg::point_proof(&blob, &x0).unwrap();
    assert_eq!(proof, want_proof);
    assert_eq!(proof.to_string(), e["kzg_proof"].as_str().unwrap());
    assert_eq!(y0.to_string(), e["y_0"].as_str().unwrap());
    let commitment = kzg::commit(&blob).unwrap();
    assert!(kzg::verify_point_proof(&commitment, &x0, &y0, &proof).unwrap());
    let wrong_y = Scalar::from_hex("y", "0x1").unwrap();
    assert!(!kzg::verify_point_proof(&commitment, &x0, &wrong_y, &proof).unwrap());
}

/// Builds the KZG part of an OS program output (README §4) for one blob.
fn program_output(x0: &Scalar, commitment: &KzgCommitment, y: &Scalar) -> Vec<Felt> {
    let felt = |bytes: &[u8]| {
        let mut b = [0u8; 32];
        b[32 - bytes.len()..].copy_from_slice(bytes);
        Felt::from_be_bytes(b).unwrap()
    };
    let c = commitment.to_bytes();
    let yb = y.to_bytes();
    let mut out = vec![Felt::from_u64(7); 8];
    out.push(Felt::ONE); // use_kzg_da
    out.push(Felt::ZERO); // full_output
    out.push(felt(&x0.to_bytes()));
    out.push(Felt::ONE); // n_blobs
    out.push(felt(&c[24..])); // commitment low 192 bits
    out.push(felt(&c[..24])); // commitment high 192 bits
    out.push(felt(&yb[16..])); // y low 128 bits
    out.push(felt(&yb[..16])); // y high 128 bits
    out.push(Felt::from_u64(99)); // whatever follows (messages, ...)
    out
}

#[test]
fn kzg_x0_vector_proves_through_the_program_output_layout() {
    let Some(dir) = common::vectors_dir() else { return };
    let e = &common::expected(&dir)["kzg_x0/651053"];
    let blob = Blob::from_hex(&common::read(&dir, "kzg_x0/651053/blob_data.txt")).unwrap();
    let x0 = Scalar::from_hex("x_0", e["x_0"].as_str().unwrap()).unwrap();
    let y0 = Scalar::from_hex("y_0", e["y_0"].as_str().unwrap()).unwrap();
    let commitment = KzgCommitment::from_hex(e["commitment"].as_str().unwrap()).unwrap();

    let output = KzgDaOutput::parse(&program_output(&x0, &commitment, &y0)).unwrap();
    assert_eq!(output.x_0, x0);
    assert_eq!(output.commitments, vec![commitment]);
    assert_eq!(output.y, vec![y0]);
    let proofs = output.prove(std::slice::from_ref(&blob)).unwrap();
    assert_eq!(proofs[0].to_string(), e["kzg_proof"].as_str().unwrap());

    let wrong = KzgDaOutput::parse(&program_output(&x0, &commitment, &Scalar::from(Felt::ONE))).unwrap();
    let err = wrong.prove(std::slice::from_ref(&blob)).unwrap_err();
    assert!(err.to_string().contains("y_0"), "{err}");
}

#[test]
fn sidecar_vector_commitment_proof_and_versioned_hash_match() {
    let Some(dir) = common::vectors_dir() else { return };
    // This file ends with a newline; the reader must accept it.
    let blob = Blob::from_hex(&common::read(&dir, "sidecar/20462788/blob_data.txt")).unwrap();
    check_published_blob(&dir, "sidecar/20462788", &blob, "derived/blob_felts/20462788.txt");
    let s = kzg::sidecar(&blob).unwrap();
    assert_eq!(s.commitment.to_string(), common::read(&dir, "sidecar/20462788/blob_commitment.txt"));
    assert_eq!(s.proof.to_string(), common::read(&dir, "sidecar/20462788/blob_proof.txt"));
    assert_eq!(s.versioned_hash.to_string(), "0x0115122ec8a4d044d4ace9c4bc2d36364d4c8d0ed5da8c49d5f2ec104f855eee");
}

#[test]
fn da_vectors_do_not_reproduce_under_the_0_13_3_layout() {
    let Some(dir) = common::vectors_dir() else { return };
    let update = parse_state_update(&common::read(&dir, "da/state_update/631861.json")).unwrap();
    let nonces = parse_nonces(&common::read(&dir, "da/nonces/631861.json")).unwrap();
    let enc = Encoding { layout: DaLayout::V0_13_3, ..V.encoding() };
    let enc = orch_blob::encode_state_diff(&update.state_diff, &nonces, enc).unwrap();
    let want_hex = common::read(&dir, "da/test_blob/631861.hex");
    assert_ne!(enc.blobs[0].to_hex(), want_hex);
    // ... and the reference blob does not parse as a 0.13.3 diff with the same contracts.
    let blob = Blob::from_hex(&want_hex).unwrap();
    let as_new = decode_blobs(std::slice::from_ref(&blob), Encoding { layout: DaLayout::V0_13_3, ..V.encoding() });
    assert!(as_new.map(|d| d != enc.diff).unwrap_or(true));
}
