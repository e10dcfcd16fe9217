//! `orchestrator blob encode|decode|kzg`: the DA codec of orch-blob on files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use orch_blob::blob::Blob;
use orch_blob::kzg::{self, Scalar};
use orch_blob::{DecodedDiff, DiffDocument, StarknetVersion};
use orch_core::Felt;
use serde::Serialize;

use super::user;
use crate::output;

/// Blob commands.
#[derive(Debug, Subcommand)]
pub(crate) enum BlobCmd {
    /// State diff JSON → blob files (`blob-0.hex`, …) and `manifest.json` with KZG values.
    ///
    /// The input is either a `starknet_getStateUpdate` result (recognised by its `state_diff`
    /// key) or what `blob decode` prints (recognised by its `contracts` key), edited or not. A
    /// decoded diff is encoded as it is, in the format of its `starknet_version`: re-encoding
    /// unedited `blob decode` output gives the decoded blobs back byte for byte. It already
    /// carries every nonce and class hash, so `--nonces` is for state updates only.
    Encode(EncodeArgs),
    /// Blob files → the state diff they carry, as JSON that `blob encode` reads back.
    ///
    /// The JSON holds `starknet_version` (the format used to decode), `contracts` (address,
    /// nonce, class_hash when deployed or replaced, storage in blob order) and
    /// `declared_classes`.
    Decode(DecodeArgs),
    /// KZG commitment, blob proof and versioned hash of a blob; with --x0 also y and its proof.
    Kzg(KzgArgs),
}

/// Options of `blob encode`.
#[derive(Debug, Args)]
pub(crate) struct EncodeArgs {
    /// A `starknet_getStateUpdate` result, or the JSON `blob decode` prints (JSON).
    #[arg(long, value_name = "FILE")]
    state_update: PathBuf,
    /// Nonces of written contracts after the block: `[{"nonce": "<hex>", "address": "<decimal>"}]`
    /// (state updates only).
    #[arg(long, value_name = "FILE")]
    nonces: Option<PathBuf>,
    /// Starknet version of the block (default: a decoded diff's own `starknet_version`, else the
    /// newest supported).
    #[arg(long, value_name = "V")]
    starknet_version: Option<String>,
    /// Output directory (default: current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `blob decode`.
#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// Blob files in order (hex, 131072 bytes each; `0x` and trailing whitespace allowed).
    #[arg(required = true, value_name = "BLOB_FILE")]
    blobs: Vec<PathBuf>,
    /// Starknet version the blobs were made for (default: the newest supported).
    #[arg(long, value_name = "V")]
    starknet_version: Option<String>,
    /// Print JSON (the default; kept for symmetry).
    #[arg(long)]
    json: bool,
}

/// Options of `blob kzg`.
#[derive(Debug, Args)]
pub(crate) struct KzgArgs {
    /// One blob file (hex).
    #[arg(value_name = "BLOB_FILE")]
    blob: PathBuf,
    /// Evaluation point x_0 (hex, below the BLS12-381 scalar modulus).
    #[arg(long, value_name = "HEX")]
    x0: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct BlobEntry {
    file: String,
    felts: usize,
    commitment: String,
    blob_kzg_proof: String,
    versioned_hash: String,
}

#[derive(Debug, Serialize)]
struct Manifest {
    starknet_version: String,
    felts: usize,
    payload_felts: usize,
    blobs: Vec<BlobEntry>,
    transactions: Vec<Vec<usize>>,
}

#[derive(Debug, Serialize)]
struct KzgOut {
    commitment: String,
    blob_kzg_proof: String,
    versioned_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    x0: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kzg_proof: Option<String>,
}

fn version(v: &Option<String>) -> anyhow::Result<StarknetVersion> {
    match v {
        Some(s) => StarknetVersion::parse(s).map_err(user),
        None => Ok(StarknetVersion::LATEST),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| user(format!("cannot read {what} {}: {e}", path.display())))
}

fn read_blob(path: &Path) -> anyhow::Result<Blob> {
    let text = read(path, "blob file")?;
    Blob::from_hex(&text).map_err(|e| user(format!("{}: {e}", path.display())))
}

pub(crate) fn blob(cmd: BlobCmd) -> anyhow::Result<()> {
    match cmd {
        BlobCmd::Encode(a) => encode(a),
        BlobCmd::Decode(a) => decode(a),
        BlobCmd::Kzg(a) => {
            let blob = read_blob(&a.blob)?;
            let sc = kzg::sidecar(&blob)?;
            let mut out = KzgOut {
                commitment: sc.commitment.to_string(),
                blob_kzg_proof: sc.proof.to_string(),
                versioned_hash: sc.versioned_hash.to_string(),
                x0: None,
                y: None,
                kzg_proof: None,
            };
            if let Some(x0) = &a.x0 {
                let z = Scalar::from_hex("x0", x0).map_err(user)?;
                let (proof, y) = kzg::point_proof(&blob, &z)?;
                out.x0 = Some(z.to_string());
                out.y = Some(y.to_string());
                out.kzg_proof = Some(proof.to_string());
            }
            if a.json {
                return output::json(&out);
            }
            output::line(format!("commitment      {}", out.commitment));
            output::line(format!("blob_kzg_proof  {}", out.blob_kzg_proof));
            output::line(format!("versioned_hash  {}", out.versioned_hash));
            if let (Some(y), Some(p)) = (&out.y, &out.kzg_proof) {
                output::line(format!("y               {y}"));
                output::line(format!("kzg_proof       {p}"));
            }
            Ok(())
        }
    }
}

fn decode(a: DecodeArgs) -> anyhow::Result<()> {
    let v = version(&a.starknet_version)?;
    let blobs = a.blobs.iter().map(|p| read_blob(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let diff = orch_blob::decode_blobs(&blobs, v).map_err(user)?;
    // The decoder accepts some blobs that no encoder writes (a trailing all-zero blob, a value
    // compressed into a wider bucket than needed); `blob encode` cannot give those back.
    let same = orch_blob::encode_da_state_diff(diff.clone(), v.encoding()).is_ok_and(|e| e.blobs == blobs);
    if !same {
        tracing::warn!(
            target: "orch::blob",
            starknet_version = %v,
            "these blobs decode, but re-encoding the diff gives different blobs: `blob encode` will \
             not reproduce them byte for byte"
        );
    }
    let _ = a.json;
    output::json(&DecodedDiff { starknet_version: Some(v), diff })
}

/// The version to encode a decoded diff with: its own, or the flag's when they agree.
fn decoded_version(flag: &Option<String>, own: Option<StarknetVersion>) -> anyhow::Result<StarknetVersion> {
    match (flag, own) {
        (None, own) => Ok(own.unwrap_or(StarknetVersion::LATEST)),
        (Some(_), None) => version(flag),
        (Some(_), Some(own)) => {
            let v = version(flag)?;
            if v != own {
                return Err(user(format!(
                    "--starknet-version {v} contradicts the diff's starknet_version {own}; drop the flag, or \
                     edit the file's starknet_version to re-encode in another format"
                )));
            }
            Ok(v)
        }
    }
}

fn encode(a: EncodeArgs) -> anyhow::Result<()> {
    let in_file = |e: orch_blob::Error| user(format!("{}: {e}", a.state_update.display()));
    let doc = orch_blob::parse_diff_document(&read(&a.state_update, "state update")?).map_err(in_file)?;
    let (v, enc) = match doc {
        DiffDocument::StateUpdate(update) => {
            let v = version(&a.starknet_version)?;
            let nonces: BTreeMap<Felt, Felt> = match &a.nonces {
                Some(p) => orch_blob::input::parse_nonces(&read(p, "nonces file")?)
                    .map_err(|e| user(format!("{}: {e}", p.display())))?,
                None => BTreeMap::new(),
            };
            (v, orch_blob::encode_state_update(&update, &nonces, v).map_err(user)?)
        }
        DiffDocument::Decoded(decoded) => {
            if let Some(p) = &a.nonces {
                return Err(user(format!(
                    "--nonces {}: {} is a decoded diff, which already carries every nonce; --nonces is for \
                     starknet_getStateUpdate input",
                    p.display(),
                    a.state_update.display()
                )));
            }
            let v = decoded_version(&a.starknet_version, decoded.starknet_version)?;
            (v, orch_blob::encode_da_state_diff(decoded.diff, v.encoding()).map_err(user)?)
        }
    };
    if a.out.exists() && !a.out.is_dir() {
        return Err(user(format!("--out {} is a file: pass a directory", a.out.display())));
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut entries = Vec::with_capacity(enc.blobs.len());
    let per_blob = orch_blob::blob::FIELD_ELEMENTS_PER_BLOB;
    // The proofs are independent per blob: compute them on every core at once.
    let sidecars = kzg::sidecars(&enc.blobs)?;
    for (i, (b, sc)) in enc.blobs.iter().zip(sidecars).enumerate() {
        let name = format!("blob-{i}.hex");
        let path = a.out.join(&name);
        std::fs::write(&path, b.to_hex()).with_context(|| format!("writing {}", path.display()))?;
        let felts = enc.payload.len().saturating_sub(i * per_blob).min(per_blob);
        entries.push(BlobEntry {
            file: name,
            felts,
            commitment: sc.commitment.to_string(),
            blob_kzg_proof: sc.proof.to_string(),
            versioned_hash: sc.versioned_hash.to_string(),
        });
    }
    let mut txs = Vec::new();
    let idx: Vec<usize> = (0..entries.len()).collect();
    for chunk in orch_blob::blob::split_into_transactions(&idx) {
        txs.push(chunk.to_vec());
    }
    let manifest = Manifest {
        starknet_version: v.to_string(),
        felts: enc.felts.len(),
        payload_felts: enc.payload.len(),
        blobs: entries,
        transactions: txs,
    };
    let mpath = a.out.join("manifest.json");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", mpath.display()))?;
    if a.json {
        output::json(&manifest)
    } else {
        output::line(format!(
            "{} felts → {} blob(s) in {} transaction(s), written to {}",
            manifest.felts,
            manifest.blobs.len(),
            manifest.transactions.len(),
            a.out.display()
        ));
        Ok(())
    }
}
