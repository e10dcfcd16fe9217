//! `kill -9` at any moment: every update acknowledged before the kill survives, and the ledger
//! reopens cleanly. The test re-runs its own binary as the writer process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{ManualClock, TempDir};
use orch_core::da::DaReference;
use orch_core::settle::{Settlement, StateUpdateRequest};
use orch_core::types::BlockRange;
use orch_devnet::{DevChain, DevSettlement, SettlementConfig};

const CHILD_ENV: &str = "ORCH_DEVNET_CRASH_DIR";

fn request(chain: &DevChain, n: u64) -> StateUpdateRequest {
    StateUpdateRequest {
        dedup_key: format!("state:{n}"),
        range: BlockRange::single(n),
        prev_root: chain.root_before(n),
        new_root: chain.root_after(n),
        block_hash: chain.block_hash(n),
        program_output: vec![],
        da: DaReference { id: format!("da{n}"), chunks: 1, bytes: 64 },
    }
}

/// Durability, not program outputs, is under test: no OS outputs to build for the requests.
fn config() -> SettlementConfig {
    SettlementConfig { verify_program_output: false, ..SettlementConfig::default() }
}

/// The writer: continues the ledger in `$ORCH_DEVNET_CRASH_DIR`, printing `applied <n>` once
/// each submission has returned. Does nothing in a normal test run.
#[tokio::test]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let chain = DevChain::fixed(1, u64::MAX);
    let s = DevSettlement::open(&dir, config(), 1, ManualClock::at(0)).unwrap();
    let next = s.last_settled().await.unwrap().map_or(0, |x| x.block + 1);
    let mut out = std::io::stdout().lock();
    for n in next..next + 100_000 {
        s.submit_state_update(request(&chain, n)).await.unwrap();
        writeln!(out, "applied {n}").unwrap();
        out.flush().unwrap();
    }
}

fn run_and_kill(dir: &Path, acks_before_kill: usize) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut last = None;
    let mut seen = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("applied ") {
            last = Some(n.parse::<u64>().unwrap());
            seen += 1;
            if seen >= acks_before_kill {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    last
}

#[test]
fn acknowledged_updates_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = TempDir::new("crash");
    let chain = DevChain::fixed(1, u64::MAX);
    let mut acked_total: Option<u64> = None;
    for (round, acks) in [1usize, 7, 30, 3, 55].into_iter().enumerate() {
        let last_acked = run_and_kill(dir.path(), acks).expect("the writer acknowledged nothing");
        acked_total = Some(last_acked);
        let view = DevSettlement::read_ledger(dir.path()).unwrap();
        let settled = view.last_settled().expect("nothing settled").block;
        assert!(
            settled >= last_acked,
            "round {round}: block {last_acked} was acknowledged, the ledger ends at {settled}"
        );
        for (i, u) in view.applied.iter().enumerate() {
            assert_eq!(u.range, BlockRange::single(i as u64), "round {round}: the ledger is a gap-free prefix");
            assert_eq!(u.new_root, chain.root_after(i as u64));
        }
    }
    // Still a working ledger after all that.
    let s = DevSettlement::open(dir.path(), config(), 1, ManualClock::at(0)).unwrap();
    let next = s.applied().len() as u64;
    assert!(next > acked_total.unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(s.submit_state_update(request(&chain, next))).unwrap();
}
