//! `blob decode` output feeds `blob encode`: every blob vector decodes to JSON that re-encodes to
//! the same blob byte for byte, hand edits survive the trip, and a file that is neither input
//! form is refused in one line with exit code 2.

// These tests drive child processes synchronously; there is no async runtime to block.
#![allow(clippy::disallowed_methods)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

mod common;
use common::{bin, stderr};

/// Every blob in the vectors carries a pre-0.13.3 state diff (vectors README §3.5, §4, §5).
const VECTOR_VERSION: &str = "0.13.2";
/// Characters of a blob as the CLI writes it: 4096 × 32 bytes in lowercase hex, nothing else.
const HEX_CHARS_PER_BLOB: usize = 2 * 4096 * 32;

fn run<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    bin().args(args).output().expect("runs")
}

fn stdout_json(o: &Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// Exit code 2 (bad input) with exactly one line on stderr that contains every needle.
fn assert_bad_input(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "expected exit code 2; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
}

/// The shared vectors, or `None` with the reason printed; under `ORCH_REQUIRE_SERVICES` (CI) a
/// missing directory is a failure, not a skip.
fn vectors() -> Option<PathBuf> {
    let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    if v.is_dir() {
        return Some(v);
    }
    if std::env::var_os("ORCH_REQUIRE_SERVICES").is_some() {
        panic!("blob vectors not found at {} but ORCH_REQUIRE_SERVICES is set", v.display());
    }
    eprintln!("skipping: blob vectors not found at {} (../shared/vectors)", v.display());
    None
}

/// A blob file's content normalised the way the CLI writes blobs: surrounding whitespace and a
/// `0x` prefix dropped, lowercase. `None` when the file is not one blob in hex.
fn normalised_blob(path: &Path) -> Option<String> {
    let len = std::fs::metadata(path).ok()?.len() as usize;
    // Room for a `0x`, a newline and a few spaces; anything longer is not one blob.
    if !(HEX_CHARS_PER_BLOB..=HEX_CHARS_PER_BLOB + 8).contains(&len) {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.trim();
    let h = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    (h.len() == HEX_CHARS_PER_BLOB && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

/// Every file under `dir` that holds exactly one blob in hex, with its normalised content.
fn blob_vectors(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("listing {}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(hex) = normalised_blob(&p) {
                out.push((p, hex));
            }
        }
    }
    out.sort();
    out
}

/// Runs `c`, failing the test unless it succeeds with JSON on stdout.
fn run_json(c: &mut Command) -> (Value, Output) {
    let o = c.output().expect("runs");
    (stdout_json(&o), o)
}

/// `blob decode <blobs> --json`, written to `to`; returns the JSON.
fn decode_to(blobs: &[&Path], version: Option<&str>, to: &Path) -> Value {
    let mut c = bin();
    c.args(["blob", "decode"]).args(blobs).arg("--json");
    if let Some(v) = version {
        c.args(["--starknet-version", v]);
    }
    let (decoded, o) = run_json(&mut c);
    std::fs::write(to, &o.stdout).unwrap();
    decoded
}

/// `blob encode --state-update <diff> --out <out> --json`; returns the manifest and the blob
/// files' contents, in order.
fn encode(diff: &Path, version: Option<&str>, out: &Path) -> (Value, Vec<String>) {
    let mut c = bin();
    c.args(["blob", "encode", "--state-update"]).arg(diff).arg("--out").arg(out).arg("--json");
    if let Some(v) = version {
        c.args(["--starknet-version", v]);
    }
    let (manifest, _) = run_json(&mut c);
    let blobs = manifest["blobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no blobs in {manifest}"))
        .iter()
        .map(|b| {
            let p = out.join(b["file"].as_str().unwrap());
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        })
        .collect();
    (manifest, blobs)
}

#[test]
fn every_blob_vector_decodes_to_json_that_encodes_back_byte_for_byte() {
    let Some(dir) = vectors() else { return };
    let vectors = blob_vectors(&dir);
    // README "What a conforming implementation must reproduce" names five blobs.
    assert!(vectors.len() >= 5, "expected at least 5 blob vectors under {}, found {vectors:?}", dir.display());
    let tmp = tempfile::tempdir().unwrap();
    for (i, (path, want)) in vectors.iter().enumerate() {
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        let work = tmp.path().join(i.to_string());
        std::fs::create_dir(&work).unwrap();
        let diff = work.join("decoded.json");
        let decoded = decode_to(&[path.as_path()], Some(VECTOR_VERSION), &diff);
        assert_eq!(decoded["starknet_version"], VECTOR_VERSION, "{name}: decode records its version");
        assert!(!decoded["contracts"].as_array().unwrap().is_empty(), "{name}: {decoded}");

        let (manifest, blobs) = encode(&diff, Some(VECTOR_VERSION), &work.join("with-flag"));
        assert_eq!(manifest["starknet_version"], VECTOR_VERSION, "{name}");
        assert_eq!(blobs.len(), 1, "{name}: one blob in, one blob out: {manifest}");
        assert!(blobs[0] == *want, "{name}: re-encoded blob differs from the vector");

        // The version travels in the JSON: no flag needed to get the same blob back.
        let (_, again) = encode(&diff, None, &work.join("from-file"));
        assert!(again == blobs, "{name}: encoding with the diff's own version differs");
    }
    eprintln!("{} blob vectors round-trip through decode → encode", vectors.len());
}

#[test]
fn an_edited_decoded_diff_encodes_in_its_own_format_and_decodes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    // As a user might write it: contracts and classes out of order, storage unsorted (storage
    // order is part of the encoding and is kept), felts with uppercase hex digits.
    let edited = json!({
        "starknet_version": "0.13.3",
        "contracts": [
            {"address": "0x7AB", "nonce": 3, "class_hash": null,
             "storage": [{"key": "0x9", "value": "0x1"}, {"key": "0x2", "value": "0x1"}]},
            {"address": "0x10", "nonce": 0, "class_hash": "0x5ca1ab1e", "storage": []},
        ],
        "declared_classes": [
            {"class_hash": "0x222", "compiled_class_hash": "0x3"},
            {"class_hash": "0x111", "compiled_class_hash": "0x4"},
        ],
    });
    let src = p.join("edited.json");
    std::fs::write(&src, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let (manifest, blobs) = encode(&src, None, &p.join("a"));
    assert_eq!(manifest["starknet_version"], "0.13.3", "{manifest}");

    let decoded = decode_to(&[&p.join("a/blob-0.hex")], Some("0.13.3"), &p.join("decoded.json"));
    let addresses: Vec<_> = decoded["contracts"].as_array().unwrap().iter().map(|c| c["address"].clone()).collect();
    assert_eq!(addresses, [json!("0x10"), json!("0x7ab")], "{decoded}");
    assert_eq!(decoded["contracts"][1]["storage"][0]["key"], "0x9", "storage order is kept: {decoded}");
    assert_eq!(decoded["contracts"][1]["nonce"], 3);
    assert_eq!(decoded["contracts"][0]["class_hash"], "0x5ca1ab1e");
    assert_eq!(decoded["declared_classes"][0]["class_hash"], "0x111", "{decoded}");

    let (_, again) = encode(&p.join("decoded.json"), None, &p.join("b"));
    assert!(again == blobs, "decode → encode changed the blob");
    // Output of `blob decode` from before it recorded the version re-encodes with the flag.
    let mut old = decoded.clone();
    old.as_object_mut().unwrap().remove("starknet_version");
    std::fs::write(p.join("old.json"), old.to_string()).unwrap();
    let (_, again) = encode(&p.join("old.json"), Some("0.13.3"), &p.join("c"));
    assert!(again == blobs, "version from the flag");
}

#[test]
fn a_file_that_is_neither_form_gets_one_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let out = p.join("out");
    let neither = p.join("neither.json");
    std::fs::write(&neither, r#"{"block_number": 5, "diff": []}"#).unwrap();
    let o = run([
        OsStr::new("blob"),
        "encode".as_ref(),
        "--state-update".as_ref(),
        neither.as_ref(),
        "--out".as_ref(),
        out.as_ref(),
    ]);
    assert_bad_input(&o, &["neither.json", "\"block_number\"", "state_diff", "contracts"]);
    assert!(!out.exists(), "nothing written on bad input");

    let array = p.join("array.json");
    std::fs::write(&array, "[1, 2]").unwrap();
    let o = run([
        OsStr::new("blob"),
        "encode".as_ref(),
        "--state-update".as_ref(),
        array.as_ref(),
        "--out".as_ref(),
        out.as_ref(),
    ]);
    assert_bad_input(&o, &["array.json", "JSON array", "state_diff", "contracts"]);
}

#[test]
fn decoded_diff_mistakes_get_one_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let out = p.join("out");
    let diff = |name: &str, doc: Value| {
        let f = p.join(name);
        std::fs::write(&f, doc.to_string()).unwrap();
        f
    };
    let encode_args = |f: &Path, extra: &[&str]| {
        let mut a: Vec<String> =
            ["blob", "encode", "--state-update", f.to_str().unwrap(), "--out", out.to_str().unwrap()]
                .map(String::from)
                .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        run(a)
    };
    let good = diff(
        "good.json",
        json!({"starknet_version": "0.13.2", "contracts": [{"address": "0x5", "nonce": 1, "class_hash": null,
               "storage": [{"key": "0x1", "value": "0x2"}]}], "declared_classes": []}),
    );

    let nonces = diff("nonces.json", json!([]));
    let o = encode_args(&good, &["--nonces", nonces.to_str().unwrap()]);
    assert_bad_input(&o, &["--nonces", "decoded diff"]);

    let o = encode_args(&good, &["--starknet-version", "0.13.3"]);
    assert_bad_input(&o, &["0.13.3", "0.13.2", "starknet_version"]);

    let typo =
        diff("typo.json", json!({"contracts": [{"address": "0x5", "nonce": 0, "clas_hash": "0x1", "storage": []}]}));
    assert_bad_input(&encode_args(&typo, &[]), &["typo.json", "contracts[0]", "clas_hash"]);

    let decimal = diff("decimal.json", json!({"contracts": [{"address": "17", "nonce": 0, "storage": []}]}));
    assert_bad_input(&encode_args(&decimal, &[]), &["decimal.json", "contracts[0].address", "0x"]);

    let twice = diff(
        "twice.json",
        json!({"contracts": [{"address": "0x5", "nonce": 0, "storage": []}, {"address": "0x05", "nonce": 1, "storage": []}]}),
    );
    assert_bad_input(&encode_args(&twice, &[]), &["twice.json", "contracts[1].address", "twice"]);
    assert!(!out.exists(), "nothing written on bad input");
}
