//! What the binary's test files share: the binary with a clean environment, and the devnet
//! settlement ledger read as the exactly-once proof.

// Each test binary uses its own subset of these.
#![allow(dead_code, clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orch_devnet::DevSettlement;

/// The orchestrator binary, without the caller's `ORCH_*` and `RUST_LOG`.
pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("ORCH_") {
            c.env_remove(k);
        }
    }
    c
}

/// A command's stderr as text.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The ranges the devnet L1 has applied so far cover blocks 0..k-1 contiguously, each exactly
/// once, in order, each on its predecessor's root; returns k (0 before the first update).
pub(crate) fn ledger_prefix(dir: &Path) -> u64 {
    let view = match DevSettlement::read_ledger(dir.join("devnet")) {
        Ok(v) => v,
        Err(orch_core::Error::NotFound { .. }) => return 0,
        Err(e) => panic!("ledger unreadable: {e}"),
    };
    let mut next = 0;
    for u in &view.applied {
        assert_eq!(u.range.first(), next, "ledger ranges must be contiguous and applied once: {:?}", view.applied);
        next = u.range.last() + 1;
    }
    for w in view.applied.windows(2) {
        assert_eq!(w[1].prev_root, w[0].new_root, "roots chain");
    }
    next
}

/// Runs `dev --blocks n` on `config` (None: the embedded default) and kills it (SIGKILL: a
/// crash, not a drain) once the L1 holds at least `until` blocks, or after two minutes.
pub(crate) fn dev_until(config: Option<&Path>, data: &Path, env: &[(String, String)], n: u64, until: u64) {
    let mut c = bin();
    c.args(["dev", "--blocks", &n.to_string(), "--data-dir"]).arg(data);
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("dev starts");
    let start = Instant::now();
    while ledger_prefix(data) < until && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until the devnet L1 holds `target` blocks, or until it has not grown for `stall`
/// (so a slow, loaded machine is waited for, a stuck run is not); returns how many it holds.
pub(crate) fn wait_for_ledger(data: &Path, target: u64, stall: Duration) -> u64 {
    let mut last = ledger_prefix(data);
    let mut moved = Instant::now();
    while last < target && moved.elapsed() < stall {
        std::thread::sleep(Duration::from_millis(20));
        let now = ledger_prefix(data);
        if now != last {
            last = now;
            moved = Instant::now();
        }
    }
    last
}
