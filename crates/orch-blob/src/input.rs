//! Parsing the text inputs of the DA tools: RPC state updates, nonce files and felt lists.

use std::collections::BTreeMap;

use orch_core::chain::{DeclaredClass, StateUpdate};
use orch_core::Felt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::da::{DaContract, DaStateDiff};
use crate::error::{Error, Result};
use crate::version::StarknetVersion;

fn json_error(field: &str, e: serde_json::Error) -> Error {
    Error::InvalidInput { field: field.into(), reason: format!("not valid JSON: {e}"), source: Some(Box::new(e)) }
}

/// Checks that every string in `v` is a felt written the JSON-RPC way (`0x` + hex, below p),
/// naming the JSON path of the first one that is not. `orch_core::Felt` also accepts decimal,
/// which in an RPC document means a value was written in the wrong base.
fn check_rpc_felts(v: &Value, path: &mut String) -> Result<()> {
    match v {
        Value::String(s) => {
            if !(s.starts_with("0x") || s.starts_with("0X")) {
                return Err(Error::invalid(
                    path.as_str(),
                    format!("{s:?} is not 0x-prefixed hex; JSON-RPC writes felts as 0x-hex"),
                ));
            }
            Felt::from_hex(path, s).map_err(|e| Error::from_core(path.as_str(), e))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_rpc_felts(item, path)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                check_rpc_felts(item, path)?;
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Deserializes `v`, naming the JSON path of the first bad value (`whole` when it is the
/// document itself).
fn deserialize_at<T: DeserializeOwned>(v: &Value, whole: &str) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Error::InvalidInput {
            field: if path == "." { whole.into() } else { path },
            reason: inner.to_string(),
            source: Some(Box::new(inner)),
        }
    })
}

/// The JSON value of a document; a full JSON-RPC response (`{"jsonrpc": .., "result": {..}}`)
/// is replaced by its result.
fn document(json: &str, what: &str) -> Result<Value> {
    let mut v: Value = serde_json::from_str(json).map_err(|e| json_error(what, e))?;
    if v.get("jsonrpc").is_some() {
        if let Some(result) = v.get_mut("result").map(Value::take) {
            v = result;
        }
    }
    Ok(v)
}

fn state_update_from(v: &Value) -> Result<StateUpdate> {
    check_rpc_felts(v, &mut String::new())?;
    deserialize_at(v, "state update")
}

/// Parses a `starknet_getStateUpdate` result. Also accepts the full JSON-RPC response
/// (`{"jsonrpc": .., "result": {..}}`). Errors name the JSON path of the bad value.
pub fn parse_state_update(json: &str) -> Result<StateUpdate> {
    state_update_from(&document(json, "state update")?)
}

/// A decoded state diff as JSON tools exchange it: what `orchestrator blob decode` prints and
/// `orchestrator blob encode` reads back.
///
/// `{"starknet_version": "0.13.2", "contracts": [..], "declared_classes": [..]}`: the fields
/// of [`DaStateDiff`] (felts in `0x`-hex, nonces as JSON numbers) and the Starknet version whose
/// DA format the blobs were decoded with. Together they fix the blobs exactly: encoding the diff
/// in that version's format gives the decoded blobs back byte for byte (for every blob the
/// encoder itself could have written). The version is optional when reading, as output of
/// older tools lacks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodedDiff {
    /// The version whose DA format (word layout, compression) the diff is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starknet_version: Option<StarknetVersion>,
    /// The diff, exactly as the blobs carry it.
    #[serde(flatten)]
    pub diff: DaStateDiff,
}

/// The fields of [`DecodedDiff`] besides the version, strictly: a misspelt key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodedFields {
    contracts: Vec<DaContract>,
    #[serde(default)]
    declared_classes: Vec<DeclaredClass>,
}

fn decoded_from(mut v: Value) -> Result<DecodedDiff> {
    let starknet_version = match v.as_object_mut().and_then(|m| m.remove("starknet_version")) {
        None => None,
        Some(Value::String(s)) => Some(StarknetVersion::parse(&s)?),
        Some(other) => {
            return Err(Error::invalid("starknet_version", format!("{other} is not a string like \"0.13.2\"")));
        }
    };
    check_rpc_felts(&v, &mut String::new())?;
    let fields: DecodedFields = deserialize_at(&v, "decoded state diff")?;
    let mut diff = DaStateDiff { contracts: fields.contracts, declared_classes: fields.declared_classes };
    diff.sort()?;
    Ok(DecodedDiff { starknet_version, diff })
}

/// A state-diff document an encoder accepts; see [`parse_diff_document`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffDocument {
    /// A `starknet_getStateUpdate` result: to be normalized ([`DaStateDiff::from_state_diff`]),
    /// with a nonce oracle for pre-0.13.3 versions.
    StateUpdate(StateUpdate),
    /// A decoded diff, possibly edited: encoded as it is (contracts and declared classes put in
    /// ascending order, storage entries in the order given).
    Decoded(DecodedDiff),
}

fn describe_json(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "an empty JSON object".into(),
        Value::Object(m) => {
            let mut keys: Vec<String> = m.keys().take(6).map(|k| format!("{k:?}")).collect();
            if m.len() > keys.len() {
                keys.push("…".into());
            }
            format!("a JSON object with keys {}", keys.join(", "))
        }
        Value::Array(_) => "a JSON array".into(),
        Value::String(_) => "a JSON string".into(),
        Value::Number(_) => "a JSON number".into(),
        Value::Bool(_) => "a JSON boolean".into(),
        Value::Null => "JSON null".into(),
    }
}

/// Parses either form of state diff, told apart by its keys: a `starknet_getStateUpdate`
/// result (or full JSON-RPC response) has `state_diff`, a [`DecodedDiff`] has `contracts`.
/// A document with neither (or both) is rejected with an error saying what it has instead.
pub fn parse_diff_document(json: &str) -> Result<DiffDocument> {
    let v = document(json, "state diff document")?;
    let (rpc, decoded) = match &v {
        Value::Object(m) => (m.contains_key("state_diff"), m.contains_key("contracts")),
        _ => (false, false),
    };
    match (rpc, decoded) {
        (true, false) => state_update_from(&v).map(DiffDocument::StateUpdate),
        (false, true) => decoded_from(v).map(DiffDocument::Decoded),
        (true, true) => Err(Error::invalid(
            "state diff document",
            "has both \"state_diff\" (a starknet_getStateUpdate result) and \"contracts\" (a decoded \
             diff); keep one",
        )),
        (false, false) => Err(Error::invalid(
            "state diff document",
            format!(
                "{} is neither a starknet_getStateUpdate result (no \"state_diff\" key) nor a decoded \
                 diff as `blob decode` prints it (no \"contracts\" key)",
                describe_json(&v)
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NonceRecord {
    nonce: String,
    address: String,
}

/// Parses a nonce-oracle file: `[{"nonce": "<hex, no 0x>", "address": "<decimal>"}, ..]`
/// (vectors README §3.2), into a map usable as a [`crate::NonceOracle`].
pub fn parse_nonces(json: &str) -> Result<BTreeMap<Felt, Felt>> {
    let records: Vec<NonceRecord> = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(json))
        .map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Error::InvalidInput {
                field: format!("nonces {path}"),
                reason: inner.to_string(),
                source: Some(Box::new(inner)),
            }
        })?;
    let mut out = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let field = format!("nonces[{i}].address");
        if !r.address.bytes().all(|b| b.is_ascii_digit()) || r.address.is_empty() {
            return Err(Error::invalid(
                field,
                format!("{:?} is not decimal digits (addresses in nonce files are decimal)", r.address),
            ));
        }
        let address = Felt::parse(&field, &r.address).map_err(|e| Error::from_core(&field, e))?;
        let field = format!("nonces[{i}].nonce");
        let nonce = Felt::from_hex(&field, &r.nonce).map_err(|e| Error::from_core(&field, e))?;
        if let Some(prev) = out.insert(address, nonce) {
            if prev != nonce {
                return Err(Error::InconsistentStateDiff {
                    field: format!("nonces[{i}].address"),
                    value: address,
                    reason: "has two different nonces",
                });
            }
        }
    }
    Ok(out)
}

/// Parses a felt list: felts separated by whitespace or commas, each `0x`-hex or decimal.
pub fn parse_felt_list(text: &str) -> Result<Vec<Felt>> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            let field = format!("felt {i}");
            Felt::parse(&field, s).map_err(|e| Error::from_core(&field, e))
        })
        .collect()
}

/// Writes a felt list one felt per line in minimal hex, each line ending in `\n` (the format of
/// the `derived/*_felts` vector files).
pub fn format_felt_list(felts: &[Felt]) -> String {
    let mut s = String::with_capacity(felts.len() * 66);
    for f in felts {
        s.push_str(&f.to_string());
        s.push('\n');
    }
    s
}
