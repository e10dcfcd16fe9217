//! Parsing the text inputs of the DA tools: RPC state updates, nonce files and felt lists.

use std::collections::BTreeMap;

use orch_core::chain::StateUpdate;
use orch_core::Felt;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

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

/// Parses a `starknet_getStateUpdate` result. Also accepts the full JSON-RPC response
/// (`{"jsonrpc": .., "result": {..}}`). Errors name the JSON path of the bad value.
pub fn parse_state_update(json: &str) -> Result<StateUpdate> {
    let mut v: Value = serde_json::from_str(json).map_err(|e| json_error("state update", e))?;
    if v.get("jsonrpc").is_some() {
        if let Some(result) = v.get_mut("result").map(Value::take) {
            v = result;
        }
    }
    check_rpc_felts(&v, &mut String::new())?;
    serde_path_to_error::deserialize(&v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Error::InvalidInput {
            field: if path == "." { "state update".into() } else { path },
            reason: inner.to_string(),
            source: Some(Box::new(inner)),
        }
    })
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
