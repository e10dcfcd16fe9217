//! Bad input gets a clear error naming the field, never a panic.

use std::collections::BTreeMap;

use orch_blob::{
    decode_blobs, encode_state_diff, encode_state_update, parse_diff_document, parse_felt_list, parse_nonces,
    parse_state_update, Blob, DiffDocument, Error, KzgCommitment, KzgDaOutput, NoOracle, NoncePolicy, Scalar,
    StarknetVersion, BYTES_PER_BLOB,
};
use orch_core::chain::{ContractStorageDiff, NonceUpdate, StateDiff, StorageEntry};
use orch_core::Felt;

const P: &str = "0x800000000000011000000000000000000000000000000000000000000000001";
const R: &str = "0x73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001";

fn state_update_json(address: &str, key: &str) -> String {
    format!(
        r#"{{"block_hash": "0x1", "old_root": "0x2", "new_root": "0x3", "state_diff": {{
            "storage_diffs": [{{"address": "{address}", "storage_entries": [{{"key": "{key}", "value": "0x7"}}]}}],
            "deprecated_declared_classes": [], "declared_classes": [], "deployed_contracts": [],
            "replaced_classes": [], "nonces": []}}}}"#
    )
}

fn assert_names(err: &Error, needle: &str) {
    assert!(err.to_string().contains(needle), "error does not name {needle:?}: {err}");
}

#[test]
fn invalid_json_is_rejected_with_position() {
    let err = parse_state_update("{\"block_hash\": ").unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_names(&err, "state update");
    assert_names(&err, "line 1");
}

#[test]
fn state_update_missing_field_names_it() {
    let err = parse_state_update(r#"{"block_hash": "0x1", "old_root": "0x2", "new_root": "0x3"}"#).unwrap_err();
    assert_names(&err, "state_diff");
}

#[test]
fn felt_at_or_above_the_prime_names_its_json_path() {
    let err = parse_state_update(&state_update_json("0x5", P)).unwrap_err();
    assert_names(&err, "state_diff.storage_diffs[0].storage_entries[0].key");
    assert_names(&err, "prime");
}

#[test]
fn decimal_address_in_rpc_json_is_the_wrong_base() {
    let err = parse_state_update(&state_update_json("12345", "0x1")).unwrap_err();
    assert_names(&err, "state_diff.storage_diffs[0].address");
    assert_names(&err, "0x-prefixed hex");
}

#[test]
fn wrong_json_type_names_its_path() {
    let json = state_update_json("0x5", "0x1").replace("\"value\": \"0x7\"", "\"value\": 7");
    let err = parse_state_update(&json).unwrap_err();
    assert_names(&err, "state_diff.storage_diffs[0].storage_entries[0].value");
}

#[test]
fn hex_address_in_nonce_file_is_the_wrong_base() {
    let err = parse_nonces(r#"[{"nonce": "10fc", "address": "0x1234"}]"#).unwrap_err();
    assert_names(&err, "nonces[0].address");
    assert_names(&err, "decimal");
    let err = parse_nonces(r#"[{"nonce": "10fc", "address": "12ab"}]"#).unwrap_err();
    assert_names(&err, "nonces[0].address");
}

#[test]
fn bad_nonce_file_entries_name_the_field() {
    let err = parse_nonces(r#"[{"nonce": "xyz", "address": "5"}]"#).unwrap_err();
    assert_names(&err, "nonces[0].nonce");
    let err = parse_nonces(r#"[{"nonce": "1"}]"#).unwrap_err();
    assert_names(&err, "address");
    let err = parse_nonces(r#"[{"nonce": "1", "address": "5"}, {"nonce": "2", "address": "5"}]"#).unwrap_err();
    assert_names(&err, "nonces[1].address");
    let ok = parse_nonces(r#"[{"nonce": "10fc", "address": "17"}]"#).unwrap();
    assert_eq!(ok[&Felt::from_u64(17)], Felt::from_u64(0x10fc));
}

fn one_write(address: u64) -> StateDiff {
    StateDiff {
        storage_diffs: vec![ContractStorageDiff {
            address: Felt::from_u64(address),
            storage_entries: vec![StorageEntry { key: Felt::ONE, value: Felt::ONE }],
        }],
        ..StateDiff::default()
    }
}

#[test]
fn nonce_above_u64_in_the_diff_is_rejected_naming_the_contract() {
    let mut d = one_write(0x99);
    d.nonces.push(NonceUpdate { contract_address: Felt::from_u64(0x99), nonce: Felt::from_u128(1 << 64) });
    for v in [StarknetVersion::V0_13_2, StarknetVersion::V0_13_3] {
        let err = encode_state_diff(&d, &NoOracle, v.encoding()).unwrap_err();
        assert!(matches!(err, Error::NonceOutOfRange { .. }), "{err:?}");
        assert_names(&err, "0x99");
        assert_names(&err, "state_diff.nonces");
    }
}

#[test]
fn nonce_above_u64_from_the_oracle_is_rejected() {
    let oracle = BTreeMap::from([(Felt::from_u64(0x99), Felt::from_u128(u128::MAX))]);
    let err = encode_state_diff(&one_write(0x99), &oracle, StarknetVersion::V0_13_2.encoding()).unwrap_err();
    assert!(matches!(err, Error::NonceOutOfRange { .. }), "{err:?}");
    assert_names(&err, "nonce oracle");
}

#[test]
fn missing_oracle_nonce_is_an_error_not_a_zero() {
    let err = encode_state_diff(&one_write(0x99), &NoOracle, StarknetVersion::V0_13_2.encoding()).unwrap_err();
    assert!(matches!(err, Error::NonceUnavailable { .. }), "{err:?}");
    assert_names(&err, "0x99");
    // System contracts and the ≥ 0.13.3 policy never ask.
    assert!(encode_state_diff(&one_write(1), &NoOracle, StarknetVersion::V0_13_2.encoding()).is_ok());
    assert!(encode_state_diff(&one_write(0x99), &NoOracle, StarknetVersion::V0_13_3.encoding()).is_ok());
    assert_eq!(StarknetVersion::V0_13_3.nonce_policy(), NoncePolicy::DiffOnly);
}

#[test]
fn duplicate_storage_key_is_rejected() {
    let mut d = one_write(0x99);
    d.storage_diffs[0].storage_entries.push(StorageEntry { key: Felt::ONE, value: Felt::ZERO });
    let err = encode_state_diff(&d, &NoOracle, StarknetVersion::V0_13_3.encoding()).unwrap_err();
    assert!(matches!(err, Error::InconsistentStateDiff { .. }), "{err:?}");
    assert_names(&err, "state_diff.storage_diffs[0].storage_entries");
}

#[test]
fn duplicate_contract_in_storage_diffs_is_rejected() {
    let mut d = one_write(0x99);
    d.storage_diffs.push(d.storage_diffs[0].clone());
    let err = encode_state_diff(&d, &NoOracle, StarknetVersion::V0_13_3.encoding()).unwrap_err();
    assert_names(&err, "state_diff.storage_diffs[1].address");
}

#[test]
fn blob_of_the_wrong_length_is_rejected() {
    let err = Blob::from_hex("abcd").unwrap_err();
    assert_names(&err, "blob hex");
    assert_names(&err, "262144");
    let err = Blob::from_bytes(&vec![0u8; BYTES_PER_BLOB - 1]).unwrap_err();
    assert_names(&err, "131072");
}

#[test]
fn non_hex_blob_is_rejected_with_the_offset() {
    let mut s = "0".repeat(2 * BYTES_PER_BLOB);
    s.replace_range(100..101, "g");
    let err = Blob::from_hex(&s).unwrap_err();
    assert_names(&err, "offset 100");
}

#[test]
fn blob_hex_accepts_prefix_and_trailing_whitespace() {
    let z = "0".repeat(2 * BYTES_PER_BLOB);
    assert_eq!(Blob::from_hex(&format!("0x{z}\n")).unwrap(), Blob::zeroed());
    assert_eq!(Blob::zeroed().to_hex(), z);
}

#[test]
fn blob_element_at_or_above_r_is_rejected_naming_the_element() {
    let mut s = "0".repeat(2 * BYTES_PER_BLOB);
    s.replace_range(64 * 5..64 * 6, R.trim_start_matches("0x"));
    let err = Blob::from_hex(&s).unwrap_err();
    assert_names(&err, "blob element 5");
}

#[test]
fn blob_that_does_not_carry_felts_fails_to_decode() {
    // Arbitrary evaluations give coefficients mostly above the Starknet prime.
    let mut bytes = vec![0u8; BYTES_PER_BLOB];
    for (i, e) in bytes.chunks_exact_mut(32).enumerate() {
        e[31] = i as u8;
        e[30] = (i >> 8) as u8;
    }
    let blob = Blob::from_bytes(&bytes).unwrap();
    let err = decode_blobs(&[blob], StarknetVersion::V0_13_2).unwrap_err();
    assert_names(&err, "not below the Starknet prime");
}

#[test]
fn felts_that_are_not_a_state_diff_fail_to_decode() {
    let blob = Blob::from_felts(&[Felt::from_u64(1000), Felt::ONE]).unwrap();
    for v in [StarknetVersion::V0_13_2, StarknetVersion::V0_13_3] {
        match decode_blobs(std::slice::from_ref(&blob), v) {
            Err(err) => assert!(matches!(err, Error::Malformed { .. }), "{v}: {err:?}"),
            Ok(d) => panic!("{v}: decoded {} contracts from garbage", d.contracts.len()),
        }
    }
}

#[test]
fn x0_at_or_above_r_is_rejected() {
    let err = Scalar::from_hex("x_0", R).unwrap_err();
    assert_names(&err, "x_0");
    assert_names(&err, "BLS12-381");
    let err = Scalar::from_hex("x_0", "0xnothex").unwrap_err();
    assert_names(&err, "x_0");
}

#[test]
fn malformed_program_output_is_rejected_with_the_index() {
    let mut out = vec![Felt::ZERO; 16];
    let err = KzgDaOutput::parse(&out).unwrap_err();
    assert_names(&err, "use_kzg_da");
    out[8] = Felt::ONE;
    out[11] = Felt::from_u64(2); // needs 12 + 8 felts
    let err = KzgDaOutput::parse(&out).unwrap_err();
    assert_names(&err, "n_blobs");
    out[11] = Felt::ONE;
    out[12] = Felt::from_u128(u128::MAX).to_string().parse::<Felt>().unwrap();
    out[13] = Felt::parse("high", "0x1000000000000000000000000000000000000000000000000").unwrap();
    let err = KzgDaOutput::parse(&out).unwrap_err();
    assert_names(&err, "commitment 0 high");
    assert!(KzgDaOutput::parse(&out[..5]).is_err());
}

#[test]
fn bad_commitment_bytes_are_a_kzg_error_not_a_panic() {
    let blob = Blob::zeroed();
    let garbage = KzgCommitment::from_bytes([0xff; 48]);
    let proof = orch_blob::KzgProof::from_bytes([0xff; 48]);
    let err = orch_blob::kzg::verify_blob_proof(&blob, &garbage, &proof).unwrap_err();
    assert!(matches!(err, Error::Kzg { .. }), "{err:?}");
}

#[test]
fn bad_version_and_felt_list_are_rejected() {
    assert!(StarknetVersion::parse("latest").is_err());
    let err = parse_felt_list("0x1\n0x2\nzz\n").unwrap_err();
    assert_names(&err, "felt 2");
}

#[test]
fn encode_state_update_uses_the_version() {
    let u = parse_state_update(&state_update_json("0x5", "0x1")).unwrap();
    let oracle = BTreeMap::from([(Felt::from_u64(5), Felt::from_u64(3))]);
    let old = encode_state_update(&u, &oracle, StarknetVersion::V0_13_2).unwrap();
    let new = encode_state_update(&u, &oracle, StarknetVersion::LATEST).unwrap();
    assert_eq!(old.diff.contracts[0].nonce, 3);
    assert_eq!(new.diff.contracts[0].nonce, 0);
    assert_ne!(old.payload, new.payload);
}

#[test]
fn diff_document_tells_the_two_forms_apart_by_their_keys() {
    let rpc = parse_diff_document(&state_update_json("0x5", "0x1")).unwrap();
    assert!(matches!(rpc, DiffDocument::StateUpdate(_)), "{rpc:?}");
    let decoded = parse_diff_document(
        r#"{"starknet_version": "0.13.2", "contracts": [
            {"address": "0x9", "nonce": 1, "class_hash": null, "storage": []},
            {"address": "0x3", "nonce": 0, "storage": [{"key": "0x2", "value": "0x1"}, {"key": "0x1", "value": "0x1"}]}]}"#,
    )
    .unwrap();
    let DiffDocument::Decoded(d) = decoded else { panic!("{decoded:?}") };
    assert_eq!(d.starknet_version, Some(StarknetVersion::V0_13_2));
    assert_eq!(d.diff.contracts[0].address, Felt::from_u64(3), "contracts are put in encoding order");
    assert_eq!(d.diff.contracts[0].storage[0].key, Felt::from_u64(2), "storage order is kept");
    assert!(d.diff.declared_classes.is_empty());
}

#[test]
fn diff_document_that_is_neither_form_says_what_it_has() {
    let err = parse_diff_document(r#"{"block_number": 1}"#).unwrap_err();
    assert_names(&err, "\"block_number\"");
    assert_names(&err, "state_diff");
    assert_names(&err, "contracts");
    let err = parse_diff_document("[]").unwrap_err();
    assert_names(&err, "JSON array");
    let err = parse_diff_document(r#"{"state_diff": {}, "contracts": []}"#).unwrap_err();
    assert_names(&err, "both");
}

#[test]
fn decoded_diff_rejects_typos_duplicates_and_bad_versions() {
    let err =
        parse_diff_document(r#"{"contracts": [{"address": "0x5", "nonce": 0, "clas_hash": "0x1", "storage": []}]}"#)
            .unwrap_err();
    assert_names(&err, "clas_hash");
    let err = parse_diff_document(r#"{"contracts": [], "declared": []}"#).unwrap_err();
    assert_names(&err, "declared");
    let err = parse_diff_document(
        r#"{"contracts": [], "declared_classes": [{"class_hash": "0x1", "compiled_class_hash": "0x2"},
            {"class_hash": "0x1", "compiled_class_hash": "0x3"}]}"#,
    )
    .unwrap_err();
    assert_names(&err, "declared_classes[1].class_hash");
    let err = parse_diff_document(r#"{"starknet_version": 13, "contracts": []}"#).unwrap_err();
    assert_names(&err, "starknet_version");
    let err = parse_diff_document(r#"{"starknet_version": "0.99.0", "contracts": []}"#).unwrap_err();
    assert_names(&err, "0.99.0");
    let err = parse_diff_document(r#"{"contracts": [{"address": "0x5", "nonce": -1, "storage": []}]}"#).unwrap_err();
    assert_names(&err, "contracts[0].nonce");
}
