//! Runs the example as a user would, then checks the simulated L1's ledger on disk; and keeps
//! the copy of the example in orch-core's README identical to the source.

use std::path::Path;
use std::process::Command;

use orch_devnet::DevSettlement;

fn run(blocks: u64, dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_orch-example-embed"))
        .arg(blocks.to_string())
        .arg(dir)
        .output()
        .expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "example failed\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The ranges the ledger applied, checked to tile `0..blocks` in order.
fn settled_ranges(dir: &Path, blocks: u64) -> Vec<(u64, u64)> {
    let ledger = DevSettlement::read_ledger(dir.join("devnet")).expect("the run left a ledger");
    let ranges: Vec<_> = ledger.applied.iter().map(|u| (u.range.first(), u.range.last())).collect();
    let mut next = 0;
    for &(first, last) in &ranges {
        assert_eq!(first, next, "blocks settled out of order or twice: {ranges:?}");
        next = last + 1;
    }
    assert_eq!(next, blocks, "not every block settled: {ranges:?}");
    ranges
}

#[test]
fn settles_every_block_once_in_order_and_a_rerun_settles_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    // 25 blocks: two full batches of ten and a short one that closes on its timeout.
    let stdout = run(25, dir.path());
    assert!(stdout.contains("settled blocks 20..=24"), "{stdout}");
    let ranges = settled_ranges(dir.path(), 25);
    assert_eq!(ranges, [(0, 9), (10, 19), (20, 24)]);

    run(25, dir.path());
    assert_eq!(settled_ranges(dir.path(), 25), ranges, "the rerun changed the ledger");
}

#[test]
fn orch_core_readme_shows_this_example_verbatim() {
    let readme = include_str!("../../../crates/orch-core/README.md");
    let main = include_str!("../src/main.rs");
    assert!(
        readme.contains(&format!("```rust,ignore\n{main}```\n")),
        "crates/orch-core/README.md must show examples/embed/src/main.rs verbatim in its \
         ```rust,ignore block: copy the file there"
    );
}
