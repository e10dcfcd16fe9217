//! The binary as a new user meets it: `dev` end to end, resuming, surviving kill -9, and clear
//! one-line errors for bad input.

// These tests drive child processes synchronously; there is no async runtime to block.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{bin, dev_until, ledger_prefix, stderr};

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("runs")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// Blocks 0..n-1 are in the devnet ledger exactly once, in order, each on its predecessor's root.
fn assert_ledger(dir: &Path, n: u64) {
    assert_eq!(ledger_prefix(dir), n, "ledger covers exactly blocks 0..{n}");
}

#[test]
fn dev_settles_500_blocks_then_resumes_without_resettling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = json(&run(&["dev", "--blocks", "500", "--data-dir", d, "--json"]));
    assert_eq!(out["settled_through"], 499, "{out}");
    assert_eq!(out["jobs_failed"], 0, "{out}");
    // dev batches ten blocks per job: 50 batches of four jobs.
    assert_eq!(out["jobs_completed"], 200, "{out}");
    assert!(out["elapsed_ms"].is_u64());
    assert_ledger(dir.path(), 500);

    let again = json(&run(&["dev", "--blocks", "500", "--data-dir", d, "--json"]));
    assert_eq!(again["settled_through"], 499);
    assert_eq!(again["blocks_settled_this_run"], 0, "a finished run resumes to nothing");
    assert_ledger(dir.path(), 500);

    let more = json(&run(&["dev", "--blocks", "600", "--data-dir", d, "--json"]));
    assert_eq!(more["settled_through"], 599);
    assert_eq!(more["blocks_settled_this_run"], 100);
    assert_ledger(dir.path(), 600);

    let status = json(&run(&["blocks", "status", "--data-dir", d, "--json"]));
    assert_eq!(status["settled_through"], 599, "{status}");
    assert_eq!(status["settlement_layer_through"], 599, "{status}");
    assert_eq!(status["jobs"]["state_transition"]["completed"], 60, "{status}");

    let jobs = json(&run(&["jobs", "list", "--data-dir", d, "--json", "--kind", "state_transition", "--limit", "5"]));
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    assert!(jobs.iter().all(|j| j["status"] == "Completed"), "{jobs:?}");
    let id = jobs[0]["id"].as_str().unwrap();
    let shown = json(&run(&["jobs", "show", id, "--data-dir", d, "--json"]));
    assert!(shown["history"].as_array().unwrap().len() >= 3, "{shown}");
}

#[test]
fn kill_9_at_random_moments_then_one_full_run_settles_each_block_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let n = 3000u64;
    let mut seed = 0x5eed_u64;
    let mut killed_mid_run = 0;
    for round in 0..10 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let after = Duration::from_millis(150 + (seed >> 33) % 900);
        let mut child = bin()
            .args(["dev", "--blocks", &n.to_string(), "--data-dir", d, "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < after {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever was applied so far is a clean prefix.
        let k = ledger_prefix(dir.path());
        assert!(k <= n, "round {round}: ledger beyond the chain");
        if k < n {
            killed_mid_run += 1;
        }
    }
    assert!(killed_mid_run >= 3, "only {killed_mid_run} of 10 kills landed before the end: make the chain longer");
    let out = json(&run(&["dev", "--blocks", &n.to_string(), "--data-dir", d, "--json"]));
    assert_eq!(out["settled_through"], n - 1, "{out}");
    assert_eq!(out["jobs_failed"], 0, "{out}");
    assert_ledger(dir.path(), n);
}

/// Exit non-zero with exactly one line on stderr that contains `needle`, and no panic.
fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn bad_input_gets_one_clear_line_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let d = p.join("data");
    let ds = d.to_str().unwrap();

    let o = run(&["dev", "--blocks", "3", "--data-dir", ds, "--config", p.join("missing.toml").to_str().unwrap()]);
    assert_one_line_error(&o, "not found");

    let typo = p.join("typo.toml");
    std::fs::write(&typo, "[engine]\nwokers = 3\n").unwrap();
    let o = run(&["config", "check", "--config", typo.to_str().unwrap()]);
    assert_one_line_error(&o, "wokers");

    let bad_value = p.join("bad_value.toml");
    std::fs::write(&bad_value, "[engine]\nlease = \"5 parsecs\"\n").unwrap();
    let o = run(&["config", "check", "--config", bad_value.to_str().unwrap()]);
    assert_one_line_error(&o, "engine.lease");

    let typo_db = p.join("typo_db.toml");
    std::fs::write(&typo_db, "[database]\nprovider = \"sqlite\"\npaht = \"x.db\"\n").unwrap();
    let o = run(&["config", "check", "--config", typo_db.to_str().unwrap()]);
    assert_one_line_error(&o, "paht");

    let pg = p.join("pg.toml");
    std::fs::write(
        &pg,
        "[database]\nprovider = \"postgres\"\nurl = \"postgres://u:pw@127.0.0.1:1/orch\"\n[queue]\nprovider = \"none\"\n",
    )
    .unwrap();
    if cfg!(feature = "postgres") {
        // Compiled in: the server at port 1 is unreachable, said in one line without the password.
        let o = run(&["setup", "--config", pg.to_str().unwrap(), "--data-dir", ds]);
        assert_one_line_error(&o, "127.0.0.1:1");
        assert!(!stderr(&o).contains("pw@"), "secret leaked: {}", stderr(&o));
    } else {
        let o = run(&["config", "check", "--config", pg.to_str().unwrap()]);
        assert_one_line_error(&o, "--features postgres");
        assert!(!stderr(&o).contains("pw@"), "secret leaked: {}", stderr(&o));
    }

    // A provider orch names but does not ship yet is said to be so (no feature to enable).
    let starknet = p.join("starknet.toml");
    std::fs::write(&starknet, "[chain]\nprovider = \"starknet\"\n").unwrap();
    let o = run(&["config", "check", "--config", starknet.to_str().unwrap()]);
    assert_one_line_error(&o, "not in this release");
    // One that ships behind a feature names the feature when it is not compiled in.
    let kafka = p.join("kafka.toml");
    std::fs::write(&kafka, "[queue]\nprovider = \"kafka\"\nbrokers = [\"127.0.0.1:1\"]\n").unwrap();
    if !cfg!(feature = "kafka") {
        let o = run(&["config", "check", "--config", kafka.to_str().unwrap()]);
        assert_one_line_error(&o, "--features kafka");
    }

    let o = run(&["dev", "--blocks", "-1", "--data-dir", ds]);
    assert_one_line_error(&o, "--blocks");
    assert_eq!(o.status.code(), Some(2));

    let file = p.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = run(&["dev", "--blocks", "3", "--data-dir", file.to_str().unwrap()]);
    assert_one_line_error(&o, "is a file");

    let corrupt = p.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("orch.db"), vec![0x42u8; 8192]).unwrap();
    let o = run(&["dev", "--blocks", "3", "--data-dir", corrupt.to_str().unwrap()]);
    assert_one_line_error(&o, "orch.db");
    assert_eq!(std::fs::read(corrupt.join("orch.db")).unwrap(), vec![0x42u8; 8192], "a bad file is left as it was");

    let o = run(&["jobs", "list", "--data-dir", p.join("nothing-here").to_str().unwrap()]);
    assert_one_line_error(&o, "no orch store");

    let o = run(&["jobs", "show", "not-a-uuid", "--data-dir", ds]);
    assert!(!o.status.success());
}

#[test]
fn dev_stops_and_names_a_job_that_failed_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("o.toml");
    // Block 25's proofs always fail and a job gets one attempt: its proof job fails for good.
    std::fs::write(
        &cfg,
        "[engine.retry]\nmax_attempts = 1\n[devnet.prover]\nfail_proofs = [{ block = 25, times = 1000 }]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut child = bin()
        .args(["dev", "--blocks", "100", "--json", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        // A file, not a pipe: nobody reads while it runs, and a full pipe would stall it.
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.try_wait().unwrap();
    let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    let Some(status) = status else {
        let _ = child.kill();
        panic!("dev kept waiting on a job that had failed for good: {err}");
    };
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("failed for good") && last.contains("proof_creation"), "{err}");
    assert!(last.contains("orchestrator jobs retry "), "{err}");
    // The named job is the failed one, and the store says so.
    let id = last.split_whitespace().nth(2).expect("job id after 'error: job'");
    let shown = json(&run(&["jobs", "show", id, "--json", "--data-dir", data.to_str().unwrap()]));
    assert_eq!(shown["status"], "Failed", "{shown}");
    // Blocks before the failed one's range settled; none after it.
    let settled = ledger_prefix(&data);
    assert!(settled <= 25, "nothing past the failed block settles (through {settled})");
}

#[test]
fn config_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("o.toml");
    std::fs::write(&cfg, "[devnet]\nseed = 7\n").unwrap();
    let show = |env: &[(&str, &str)]| {
        let mut c = bin();
        c.args(["config", "show", "--json", "--config", cfg.to_str().unwrap()]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // A secret given to a provider that takes no such option is refused without being echoed.
    let o = show(&[("ORCH_QUEUE__URL", "amqp://guest:hunter2@127.0.0.1:5672/")]);
    assert_one_line_error(&o, "url");
    assert!(!stderr(&o).contains("hunter2") && !String::from_utf8_lossy(&o.stdout).contains("hunter2"));
    if !cfg!(feature = "postgres") {
        return;
    }
    let o =
        show(&[("ORCH_DATABASE__PROVIDER", "postgres"), ("ORCH_DATABASE__URL", "postgres://u:hunter2@db:5432/orch")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!text.contains("hunter2"), "secret printed: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["devnet"]["seed"], 7);
    assert_eq!(v["database"]["provider"], "postgres");
    assert_eq!(v["database"]["url"], "<redacted>");
}

/// Every example config, with a secret put into each secret option its providers have, is
/// shown with each of them redacted; a config whose providers this build lacks names the
/// feature instead.
#[test]
fn config_show_prints_no_secret_for_any_example_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs");
    let mut shown = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        let provider = |s: &str| v.get(s).and_then(|s| s.get("provider")).and_then(|p| p.as_str()).unwrap_or("");
        let mut env: Vec<(&str, &str)> = Vec::new();
        match provider("database") {
            "postgres" => env.push(("ORCH_DATABASE__URL", "postgres://u:hunter2@db:5432/orch")),
            "mongo" => env.push(("ORCH_DATABASE__URL", "mongodb://u:hunter2@db:27017/?directConnection=true")),
            _ => {}
        }
        match provider("queue") {
            "redis" => env.push(("ORCH_QUEUE__URL", "redis://:hunter2@cache:6379")),
            "rabbit" => env.push(("ORCH_QUEUE__URL", "amqp://u:hunter2@mq:5672/%2f")),
            "sqs" => env.extend([
                ("ORCH_QUEUE__ACCESS_KEY_ID", "AKIAhunter2"),
                ("ORCH_QUEUE__SECRET_ACCESS_KEY", "hunter2"),
                ("ORCH_QUEUE__SESSION_TOKEN", "hunter2"),
            ]),
            _ => {}
        }
        if provider("storage") == "s3" {
            env.extend([
                ("ORCH_STORAGE__ACCESS_KEY_ID", "AKIAhunter2"),
                ("ORCH_STORAGE__SECRET_ACCESS_KEY", "hunter2"),
                ("ORCH_STORAGE__SESSION_TOKEN", "hunter2"),
            ]);
        }
        let mut c = bin();
        c.args(["config", "show", "--json", "--config"]).arg(&path);
        for (k, val) in &env {
            c.env(k, val);
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let name = path.display();
        assert!(!out.contains("hunter2") && !stderr(&o).contains("hunter2"), "{name}: secret printed: {out}");
        if !o.status.success() {
            assert_one_line_error(&o, "--features");
            continue;
        }
        // The example's own URLs (some with passwords) are secrets too.
        assert!(!out.contains("guest:guest"), "{name}: {out}");
        let redacted = out.matches("<redacted>").count();
        assert!(redacted >= env.len(), "{name}: {redacted} redactions for {} secrets: {out}", env.len());
        shown += 1;
    }
    eprintln!("{shown} example configs shown with their secrets redacted");
}

fn vectors() -> Option<std::path::PathBuf> {
    let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    if v.is_dir() {
        Some(v)
    } else {
        eprintln!("skipping: ../shared/vectors not found");
        None
    }
}

#[test]
fn blob_cli_reproduces_the_vectors_byte_for_byte() {
    let Some(v) = vectors() else { return };
    let out = tempfile::tempdir().unwrap();
    for block in ["178", "631861", "671070"] {
        let dir = out.path().join(block);
        let m = json(&run(&[
            "blob",
            "encode",
            "--state-update",
            v.join(format!("da/state_update/{block}.json")).to_str().unwrap(),
            "--nonces",
            v.join(format!("da/nonces/{block}.json")).to_str().unwrap(),
            "--starknet-version",
            "0.13.2",
            "--out",
            dir.to_str().unwrap(),
            "--json",
        ]));
        assert_eq!(m["blobs"].as_array().unwrap().len(), 1, "{m}");
        let produced = std::fs::read(dir.join("blob-0.hex")).unwrap();
        let expected = std::fs::read(v.join(format!("da/test_blob/{block}.hex"))).unwrap();
        assert!(produced == expected, "block {block}: blob differs from the vector");
        let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest, m);
        let decoded =
            json(&run(&["blob", "decode", dir.join("blob-0.hex").to_str().unwrap(), "--starknet-version", "0.13.2"]));
        assert!(!decoded["contracts"].as_array().unwrap().is_empty());
    }
    let x0 = std::fs::read_to_string(v.join("kzg_x0/651053/x_0.txt")).unwrap();
    let k = json(&run(&[
        "blob",
        "kzg",
        v.join("kzg_x0/651053/blob_data.txt").to_str().unwrap(),
        "--x0",
        x0.trim(),
        "--json",
    ]));
    let want = std::fs::read_to_string(v.join("kzg_x0/651053/kzg_proof.txt")).unwrap();
    assert_eq!(k["kzg_proof"].as_str().unwrap(), want.trim());
    let s = json(&run(&["blob", "kzg", v.join("sidecar/20462788/blob_data.txt").to_str().unwrap(), "--json"]));
    let c = std::fs::read_to_string(v.join("sidecar/20462788/blob_commitment.txt")).unwrap();
    let p = std::fs::read_to_string(v.join("sidecar/20462788/blob_proof.txt")).unwrap();
    assert_eq!(s["commitment"].as_str().unwrap().trim_start_matches("0x"), c.trim().trim_start_matches("0x"));
    assert_eq!(s["blob_kzg_proof"].as_str().unwrap().trim_start_matches("0x"), p.trim().trim_start_matches("0x"));
}

#[test]
fn blob_cli_rejects_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let short = p.join("short.hex");
    std::fs::write(&short, "00ff").unwrap();
    assert_one_line_error(&run(&["blob", "kzg", short.to_str().unwrap()]), "short.hex");
    let nonhex = p.join("nonhex.hex");
    std::fs::write(&nonhex, "zz".repeat(131_072)).unwrap();
    assert_one_line_error(&run(&["blob", "decode", nonhex.to_str().unwrap()]), "nonhex.hex");
    let zero = p.join("zero.hex");
    std::fs::write(&zero, "00".repeat(131_072)).unwrap();
    let r = "0x73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001";
    assert_one_line_error(&run(&["blob", "kzg", zero.to_str().unwrap(), "--x0", r]), "x0");
    let bad_json = p.join("bad.json");
    std::fs::write(&bad_json, "{ not json").unwrap();
    assert_one_line_error(
        &run(&["blob", "encode", "--state-update", bad_json.to_str().unwrap(), "--out", p.to_str().unwrap()]),
        "bad.json",
    );
    assert_one_line_error(
        &run(&["blob", "decode", zero.to_str().unwrap(), "--starknet-version", "banana"]),
        "starknet_version",
    );
}

/// Copies a directory tree (the devnet's simulated outside world moves with the store).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
fn db_export_import_moves_a_mid_run_store_and_the_run_finishes_once() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (da, db) = (a.to_str().unwrap(), b.to_str().unwrap());
    let n = 2000u64;
    // Stop a run part-way, hard, so the store holds leased and half-done jobs.
    dev_until(None, &a, &[], n, 200);
    let k = ledger_prefix(&a);
    assert!(k < n, "the run must be stopped mid-way (settled {k})");

    let dump = dir.path().join("jobs.dump");
    let exported = json(&run(&["db", "export", "--out", dump.to_str().unwrap(), "--data-dir", da, "--json"]));
    let jobs = exported["jobs"].as_u64().unwrap();
    assert!(jobs > 0, "{exported}");

    // The store moves; the outside world (simulated chain and L1) and the artefact storage
    // stay what they were, as an S3 bucket would.
    std::fs::create_dir_all(&b).unwrap();
    copy_dir(&a.join("devnet"), &b.join("devnet"));
    copy_dir(&a.join("artifacts"), &b.join("artifacts"));
    let imported = json(&run(&["db", "import", "--in", dump.to_str().unwrap(), "--data-dir", db, "--json"]));
    assert_eq!(imported["jobs"], jobs, "{imported}");
    assert_eq!(imported["imported"], jobs, "{imported}");
    assert_eq!(imported["verified"], true, "{imported}");
    assert_eq!(imported["sha256"], exported["sha256"], "the store's copy hashes like the dump");
    // Repeating the import changes nothing.
    let again = json(&run(&["db", "import", "--in", dump.to_str().unwrap(), "--data-dir", db, "--json"]));
    assert_eq!(again["imported"], 0, "{again}");
    // A second export of the new store is the same dump.
    let dump2 = dir.path().join("jobs2.dump");
    let re = json(&run(&["db", "export", "--out", dump2.to_str().unwrap(), "--data-dir", db, "--json"]));
    assert_eq!(re["sha256"], exported["sha256"]);

    let out = json(&run(&["dev", "--blocks", &n.to_string(), "--data-dir", db, "--json"]));
    assert_eq!(out["settled_through"], n - 1, "{out}");
    assert_eq!(out["jobs_failed"], 0, "{out}");
    assert_ledger(&b, n);

    // A damaged dump is refused before anything is written.
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'1' { b'2' } else { b'1' };
    let damaged = dir.path().join("damaged.dump");
    std::fs::write(&damaged, &bytes).unwrap();
    let c = dir.path().join("c");
    let o = run(&["db", "import", "--in", damaged.to_str().unwrap(), "--data-dir", c.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("damaged.dump"), "{}", stderr(&o));
    assert!(!c.join("orch.db").exists(), "nothing may be written from a damaged dump");
    let truncated = dir.path().join("truncated.dump");
    std::fs::write(&truncated, &std::fs::read(&dump).unwrap()[..mid]).unwrap();
    let o = run(&["db", "import", "--in", truncated.to_str().unwrap(), "--data-dir", c.to_str().unwrap()]);
    assert_one_line_error(&o, "truncated.dump");
}

/// A dump written by an older release, whose records keep the transient-failure count in
/// `meta.extra`, imports and verifies: the store reads it back in today's form.
#[test]
fn db_import_reads_a_dump_from_an_older_release() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let (from, to) = (dir.path().join("from"), dir.path().join("to"));
    json(&run(&["dev", "--blocks", "20", "--data-dir", from.to_str().unwrap(), "--json"]));
    let dump = dir.path().join("jobs.dump");
    let o = run(&["db", "export", "--out", dump.to_str().unwrap(), "--data-dir", from.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Rewrite every record the old way and seal the file again as the old release would.
    let text = std::fs::read_to_string(&dump).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let end = lines.iter().position(|l| l.starts_with("{\"end\"")).unwrap();
    let mut hash = Sha256::new();
    for line in &mut lines[1..end] {
        let mut r: Value = serde_json::from_str(line).unwrap();
        r["job"]["meta"]["extra"]["transient_failures"] = Value::String("3".into());
        *line = serde_json::to_string(&r).unwrap();
        hash.update(line.as_bytes());
        hash.update(b"\n");
    }
    lines[end] = format!("{{\"end\":{{\"jobs\":{},\"sha256\":\"{}\"}}}}", end - 1, hex::encode(hash.finalize()));
    std::fs::write(&dump, lines.join("\n") + "\n").unwrap();

    let o = run(&["db", "import", "--in", dump.to_str().unwrap(), "--data-dir", to.to_str().unwrap(), "--json"]);
    let out = json(&o);
    assert_eq!(out["verified"], true, "{out}");
    assert_eq!(out["imported"], end as u64 - 1, "{out}");
    let listed = json(&run(&["jobs", "list", "--json", "--data-dir", to.to_str().unwrap()]));
    let id = listed[0]["id"].as_str().expect("a job id").to_string();
    let shown = json(&run(&["jobs", "show", &id, "--json", "--data-dir", to.to_str().unwrap()]));
    assert_eq!(shown["meta"]["transient_failures"], 3, "{shown}");
    assert!(shown["meta"]["extra"].get("transient_failures").is_none(), "{shown}");
}
