//! The settlement ledger: strict ordering, idempotency, durability, corruption handling.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ManualClock, TempDir};
use orch_core::chain::ChainSource;
use orch_core::clock::Clock;
use orch_core::da::{Da, DaReference, DaRequest};
use orch_core::error::Error;
use orch_core::prove::OsRunner;
use orch_core::settle::{ProofRegistrationRequest, SettledState, Settlement, StateUpdateRequest, TxStatus};
use orch_core::types::{BlockRange, ChainId, TxHash};
use orch_core::Felt;
use orch_devnet::{DaConfig, DevChain, DevDa, DevOsRunner, DevSettlement, OsConfig, SettlementConfig, LEDGER_FILE};

fn range(a: u64, b: u64) -> BlockRange {
    BlockRange::new(a, b).unwrap()
}

fn da() -> DaReference {
    DaReference { id: "da-ref".into(), chunks: 1, bytes: 320 }
}

fn chain_id() -> ChainId {
    ChainId::new("devnet").unwrap()
}

/// A correct update of `r` of `chain`, with the devnet OS's program output for it.
fn update(chain: &DevChain, key: &str, r: BlockRange) -> StateUpdateRequest {
    let os = DevOsRunner::new(Arc::new(DevChain::fixed(chain.seed(), r.last() + 1)), OsConfig::default());
    StateUpdateRequest {
        dedup_key: key.into(),
        range: r,
        prev_root: chain.root_before(r.first()),
        new_root: chain.root_after(r.last()),
        block_hash: chain.block_hash(r.last()),
        program_output: os.output(&chain_id(), r).unwrap().program_output,
        da: da(),
    }
}

fn open(dir: &TempDir, clock: Arc<dyn Clock>) -> DevSettlement {
    DevSettlement::open(dir.path(), SettlementConfig::default(), 1, clock).unwrap()
}

fn rejected_reason(e: Error) -> String {
    match e {
        Error::Rejected { reason, .. } => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn updates_in_order_are_applied() {
    let (dir, chain) = (TempDir::new("order"), DevChain::fixed(1, 100));
    let s = open(&dir, ManualClock::at(0));
    assert_eq!(s.last_settled().await.unwrap(), None);
    let mut hashes = Vec::new();
    for (i, r) in [range(0, 0), range(1, 3), range(4, 4)].into_iter().enumerate() {
        hashes.push(s.submit_state_update(update(&chain, &format!("k{i}"), r)).await.unwrap());
        assert_eq!(
            s.last_settled().await.unwrap(),
            Some(SettledState { block: r.last(), state_root: chain.root_after(r.last()) })
        );
    }
    let applied = s.applied();
    assert_eq!(applied.len(), 3);
    assert_eq!(applied.iter().map(|u| u.tx_hash.clone()).collect::<Vec<_>>(), hashes);
    assert_eq!(applied[1].range, range(1, 3));
    assert_eq!(applied[1].prev_root, chain.root_after(0));
    assert_eq!(applied[1].dedup_key, "k1");
    assert_ne!(hashes[0], hashes[1]);
    assert!(hashes.iter().all(|h| h.0.len() == 66 && h.0.starts_with("0x")));
}

#[tokio::test]
async fn the_first_update_must_start_at_the_start_block() {
    let (dir, chain) = (TempDir::new("start"), DevChain::fixed(1, 100));
    let cfg = SettlementConfig { start_block: 5, ..SettlementConfig::default() };
    let s = DevSettlement::open(dir.path(), cfg, 1, ManualClock::at(0)).unwrap();
    let why = rejected_reason(s.submit_state_update(update(&chain, "a", range(0, 4))).await.unwrap_err());
    assert!(why.contains("must start at block 5") && why.contains("start_block"), "{why}");
    let why = rejected_reason(s.submit_state_update(update(&chain, "b", range(6, 6))).await.unwrap_err());
    assert!(why.contains("must start at block 5"), "{why}");
    s.submit_state_update(update(&chain, "c", range(5, 6))).await.unwrap();
    assert!(s.applied().len() == 1);
}

#[tokio::test]
async fn out_of_order_updates_are_rejected() {
    let (dir, chain) = (TempDir::new("gap"), DevChain::fixed(1, 100));
    let s = open(&dir, ManualClock::at(0));
    s.submit_state_update(update(&chain, "a", range(0, 1))).await.unwrap();
    let why = rejected_reason(s.submit_state_update(update(&chain, "b", range(3, 3))).await.unwrap_err());
    assert!(why.contains("out of order") && why.contains("must start at block 2"), "{why}");
    assert_eq!(s.applied().len(), 1);
    assert_eq!(s.last_settled().await.unwrap().unwrap().block, 1);
}

#[tokio::test]
async fn an_update_applied_twice_under_a_new_key_is_rejected() {
    let (dir, chain) = (TempDir::new("twice"), DevChain::fixed(1, 100));
    let s = open(&dir, ManualClock::at(0));
    let tx = s.submit_state_update(update(&chain, "first", range(0, 2))).await.unwrap();
    for r in [range(0, 2), range(2, 2), range(1, 5)] {
        let why = rejected_reason(s.submit_state_update(update(&chain, "second", r)).await.unwrap_err());
        assert!(why.contains("already applied") && why.contains(&tx.0) && why.contains("first"), "{why}");
    }
    assert_eq!(s.applied().len(), 1);
}

#[tokio::test]
async fn a_wrong_previous_root_is_rejected() {
    let (dir, chain) = (TempDir::new("root"), DevChain::fixed(1, 100));
    let s = open(&dir, ManualClock::at(0));
    s.submit_state_update(update(&chain, "a", range(0, 0))).await.unwrap();
    let mut bad = update(&chain, "b", range(1, 1));
    bad.prev_root = Felt::from_u64(0xbad);
    let why = rejected_reason(s.submit_state_update(bad).await.unwrap_err());
    assert!(
        why.contains("wrong previous root") && why.contains("0xbad") && why.contains(&chain.root_after(0).to_string()),
        "{why}"
    );
    assert_eq!(s.applied().len(), 1);
    s.submit_state_update(update(&chain, "b", range(1, 1))).await.unwrap();
}

#[tokio::test]
async fn the_genesis_root_is_checked_when_configured() {
    let (dir, chain) = (TempDir::new("genesis"), DevChain::fixed(1, 100));
    let cfg = SettlementConfig { genesis_root: Some(chain.genesis_root()), ..SettlementConfig::default() };
    let s = DevSettlement::open(dir.path(), cfg, 1, ManualClock::at(0)).unwrap();
    let mut bad = update(&chain, "a", range(0, 0));
    bad.prev_root = Felt::ONE;
    let why = rejected_reason(s.submit_state_update(bad).await.unwrap_err());
    assert!(why.contains("genesis root"), "{why}");
    s.submit_state_update(update(&chain, "a", range(0, 0))).await.unwrap();

    // Without one, any previous root starts the ledger.
    let dir2 = TempDir::new("genesis-any");
    let s = open(&dir2, ManualClock::at(0));
    let mut any = update(&chain, "a", range(0, 0));
    any.prev_root = Felt::from_u64(77);
    any.program_output[0] = any.prev_root; // initial_root
    s.submit_state_update(any).await.unwrap();
}

#[tokio::test]
async fn the_same_dedup_key_returns_the_same_tx_and_applies_nothing() {
    let (dir, chain) = (TempDir::new("dedup"), DevChain::fixed(1, 100));
    let clock = ManualClock::at(0);
    let s = open(&dir, clock.clone());
    let tx = s.submit_state_update(update(&chain, "k", range(0, 0))).await.unwrap();
    s.submit_state_update(update(&chain, "k2", range(1, 1))).await.unwrap();
    // Even after later updates, the old key answers with its transaction.
    clock.advance(Duration::from_secs(1));
    assert_eq!(s.submit_state_update(update(&chain, "k", range(0, 0))).await.unwrap(), tx);
    assert_eq!(s.applied().len(), 2);
    // The key means one range.
    let why = rejected_reason(s.submit_state_update(update(&chain, "k", range(2, 2))).await.unwrap_err());
    assert!(why.contains("already applied blocks 0"), "{why}");
    drop(s);
    // And it is remembered across a restart.
    let s = open(&dir, clock);
    assert_eq!(s.submit_state_update(update(&chain, "k", range(0, 0))).await.unwrap(), tx);
    assert_eq!(s.applied().len(), 2);
    assert_eq!(std::fs::read_to_string(dir.path().join(LEDGER_FILE)).unwrap().lines().count(), 3);
}

#[tokio::test]
async fn reopening_restores_every_applied_update() {
    let (dir, chain) = (TempDir::new("reopen"), DevChain::fixed(1, 100));
    let clock = ManualClock::at(1_000);
    let s = open(&dir, clock.clone());
    for n in 0..20 {
        clock.advance(Duration::from_millis(10));
        s.submit_state_update(update(&chain, &format!("k{n}"), range(n, n))).await.unwrap();
    }
    let before = s.applied();
    drop(s);
    let s = open(&dir, clock.clone());
    assert_eq!(s.applied(), before);
    assert_eq!(s.last_settled().await.unwrap().unwrap().block, 19);
    assert_eq!(s.tx_status(&before[3].tx_hash).await.unwrap(), TxStatus::Confirmed { confirmations: 1 });
    s.submit_state_update(update(&chain, "k20", range(20, 20))).await.unwrap();
    let view = DevSettlement::read_ledger(dir.path()).unwrap();
    assert_eq!(view.applied.len(), 21);
    assert_eq!(view.applied[..20], before[..]);
    assert!(!view.torn_tail);
    assert_eq!(view.last_settled().unwrap().block, 20);
}

#[tokio::test]
async fn read_ledger_of_a_dir_without_one_is_not_found() {
    let dir = TempDir::new("none");
    assert!(matches!(DevSettlement::read_ledger(dir.path()).unwrap_err(), Error::NotFound { .. }));
}

async fn ledger_with(dir: &TempDir, n: u64) -> Vec<u8> {
    let chain = DevChain::fixed(1, 100);
    let s = open(dir, ManualClock::at(0));
    for i in 0..n {
        s.submit_state_update(update(&chain, &format!("k{i}"), range(i, i))).await.unwrap();
    }
    std::fs::read(dir.path().join(LEDGER_FILE)).unwrap()
}

#[tokio::test]
async fn a_corrupted_ledger_is_a_clear_error() {
    let dir = TempDir::new("corrupt");
    let bytes = ledger_with(&dir, 3).await;
    let path = dir.path().join(LEDGER_FILE);
    let lines: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i).collect();
    // Flip a byte inside the second record (line 3).
    let mut bad = bytes.clone();
    bad[lines[1] + 40] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    for e in [
        DevSettlement::open(dir.path(), SettlementConfig::default(), 1, ManualClock::at(0)).unwrap_err(),
        DevSettlement::read_ledger(dir.path()).unwrap_err(),
    ] {
        let msg = e.to_string();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
        assert!(
            msg.contains(&format!("{LEDGER_FILE}:3")) && msg.contains("checksum mismatch") && msg.contains("corrupted"),
            "{msg}"
        );
    }
    // Garbage and an empty file.
    for (content, expect) in
        [(&b"hello\nworld\n"[..], "record"), (&b""[..], "no complete header"), (&b"\xff\xfe\n"[..], "record")]
    {
        std::fs::write(&path, content).unwrap();
        let msg = DevSettlement::read_ledger(dir.path()).unwrap_err().to_string();
        assert!(msg.contains(expect), "{msg}");
    }
    // A record removed from the middle: the chain of roots is broken.
    let mut cut = bytes[..=lines[1]].to_vec();
    cut.extend_from_slice(&bytes[lines[2] + 1..]);
    std::fs::write(&path, &cut).unwrap();
    let msg = DevSettlement::read_ledger(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("does not follow"), "{msg}");
}

#[tokio::test]
async fn a_torn_last_record_is_dropped_on_open() {
    let dir = TempDir::new("torn");
    let bytes = ledger_with(&dir, 3).await;
    let path = dir.path().join(LEDGER_FILE);
    // Cut the last record short, as a crash during the append would.
    std::fs::write(&path, &bytes[..bytes.len() - 25]).unwrap();
    let view = DevSettlement::read_ledger(dir.path()).unwrap();
    assert!(view.torn_tail);
    assert_eq!(view.applied.len(), 2);
    let s = open(&dir, ManualClock::at(0));
    assert_eq!(s.applied().len(), 2);
    // The tail was cut off, so appending continues cleanly.
    let chain = DevChain::fixed(1, 100);
    s.submit_state_update(update(&chain, "k2", range(2, 2))).await.unwrap();
    drop(s);
    let view = DevSettlement::read_ledger(dir.path()).unwrap();
    assert!(!view.torn_tail);
    assert_eq!(view.applied.len(), 3);
}

#[tokio::test]
async fn no_truncation_or_byte_flip_makes_opening_panic() {
    let dir = TempDir::new("fuzz");
    let bytes = ledger_with(&dir, 3).await;
    let path = dir.path().join(LEDGER_FILE);
    let header_end = bytes.iter().position(|b| *b == b'\n').unwrap();
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        match DevSettlement::read_ledger(dir.path()) {
            Ok(v) => {
                assert!(len > header_end, "{len}");
                assert!(v.applied.len() <= 3);
            }
            Err(e) => {
                assert!(len <= header_end, "a cut at {len} should be a torn tail, got {e}");
                assert!(e.to_string().contains("corrupted"), "{e}");
            }
        }
    }
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] = bad[i].wrapping_add(0x55);
        std::fs::write(&path, &bad).unwrap();
        // Either an error or (a flip that turned a newline into something else) a shorter
        // valid prefix; never a panic, never more than was written.
        if let Ok(v) = DevSettlement::read_ledger(dir.path()) {
            assert!(v.applied.len() <= 3);
        }
    }
}

#[tokio::test]
async fn tx_status_is_pending_until_the_confirmation_delay() {
    let (dir, chain) = (TempDir::new("txstatus"), DevChain::fixed(1, 100));
    let clock = ManualClock::at(0);
    let cfg = SettlementConfig {
        confirmation_delay: Duration::from_secs(12),
        l1_block_time: Duration::from_secs(12),
        confirmations: 3,
        ..SettlementConfig::default()
    };
    let s = DevSettlement::open(dir.path(), cfg, 1, clock.clone()).unwrap();
    assert_eq!(s.capabilities().confirmations, 3);
    let tx = s.submit_state_update(update(&chain, "k", range(0, 0))).await.unwrap();
    assert_eq!(s.last_settled().await.unwrap().unwrap().block, 0, "applied at submission");
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Pending);
    clock.advance(Duration::from_secs(12));
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Confirmed { confirmations: 1 });
    clock.advance(Duration::from_secs(24));
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Confirmed { confirmations: 3 });
    assert_eq!(s.tx_status(&TxHash("0x1234".into())).await.unwrap(), TxStatus::NotFound);
}

#[tokio::test]
async fn register_proof_is_unsupported_unless_configured() {
    let dir = TempDir::new("noreg");
    let s = open(&dir, ManualClock::at(0));
    assert!(!s.capabilities().requires_proof_registration);
    let req = ProofRegistrationRequest { dedup_key: "p".into(), range: range(0, 0), proof: vec![1, 2, 3] };
    assert!(matches!(s.register_proof(req).await.unwrap_err(), Error::Unsupported { .. }));
}

#[tokio::test]
async fn with_registration_an_update_needs_its_proof_registered_first() {
    let (dir, chain) = (TempDir::new("reg"), DevChain::fixed(1, 100));
    let clock = ManualClock::at(0);
    let cfg = SettlementConfig { requires_proof_registration: true, ..SettlementConfig::default() };
    let s = DevSettlement::open(dir.path(), cfg.clone(), 1, clock.clone()).unwrap();
    assert!(s.capabilities().requires_proof_registration);
    let why = rejected_reason(s.submit_state_update(update(&chain, "u", range(0, 1))).await.unwrap_err());
    assert!(why.contains("no proof registered for blocks 0..=1"), "{why}");
    let req = ProofRegistrationRequest { dedup_key: "p".into(), range: range(0, 1), proof: vec![1, 2, 3] };
    let tx = s.register_proof(req.clone()).await.unwrap();
    assert_eq!(s.register_proof(req.clone()).await.unwrap(), tx, "idempotent");
    assert_eq!(s.proofs().len(), 1);
    assert_eq!(s.tx_status(&tx).await.unwrap(), TxStatus::Confirmed { confirmations: 1 });
    s.submit_state_update(update(&chain, "u", range(0, 1))).await.unwrap();
    drop(s);
    let s = DevSettlement::open(dir.path(), cfg, 1, clock).unwrap();
    assert_eq!(s.proofs().len(), 1);
    assert_eq!(s.register_proof(req).await.unwrap(), tx, "idempotent across a restart");
    let empty = ProofRegistrationRequest { dedup_key: "q".into(), range: range(2, 2), proof: vec![] };
    assert!(matches!(s.register_proof(empty).await.unwrap_err(), Error::Rejected { .. }));
}

#[tokio::test]
async fn the_program_output_must_agree_with_the_update_and_the_ledger() {
    let (dir, chain) = (TempDir::new("po"), Arc::new(DevChain::fixed(1, 100)));
    let os = DevOsRunner::new(chain.clone(), OsConfig::default());
    let s = open(&dir, ManualClock::at(0));
    let mut req = update(&chain, "a", range(0, 1));
    req.program_output = os.run(&chain_id(), range(0, 1)).await.unwrap().program_output;
    s.submit_state_update(req).await.unwrap();

    let good = update(&chain, "b", range(2, 3));
    let reject = |edit: &dyn Fn(&mut StateUpdateRequest)| {
        let mut req = good.clone();
        edit(&mut req);
        req
    };
    let cases: Vec<(StateUpdateRequest, &str)> = vec![
        (reject(&|r| r.program_output = good.program_output[..9].to_vec()), "shorter than the 10-felt OS header"),
        (reject(&|r| r.program_output = update(&chain, "x", range(2, 2)).program_output), "final_root"),
        (reject(&|r| r.program_output[6] = Felt::ONE), "os_program_hash"),
        (reject(&|r| r.program_output[2] = Felt::from_u64(0)), "prev_block_number"),
        (reject(&|r| r.program_output[4] = Felt::from_u64(0xbad)), "prev_block_hash (the last settled block's hash)"),
        (reject(&|r| r.program_output[9] = Felt::ONE), "full_output = 1"),
        (reject(&|r| r.program_output[11] = Felt::from_u64(1000)), "n_blobs"),
        (reject(&|r| r.program_output.push(Felt::ONE)), "1 felts follow the message segments"),
        (reject(&|r| r.program_output.truncate(r.program_output.len() - 1)), "L1→L2 messages"),
        (reject(&|r| r.program_output = vec![]), "verify_program_output = false"),
    ];
    for (req, want) in cases {
        let why = rejected_reason(s.submit_state_update(req).await.unwrap_err());
        assert!(why.contains(want) && why.contains("blocks 2..=3"), "want {want:?} in: {why}");
    }
    assert_eq!(s.applied().len(), 1);
    s.submit_state_update(good).await.unwrap();
    assert_eq!(chain.latest_block().await.unwrap(), Some(99));
}

#[tokio::test]
async fn the_program_output_must_commit_to_the_blobs_of_the_cited_publication() {
    let (dir, chain) = (TempDir::new("po-da"), DevChain::fixed(1, 100));
    let da = DevDa::new(DaConfig::default(), 1, ManualClock::at(0));
    let publish = |key: &'static str, r: BlockRange| {
        let da = &da;
        let chain = &chain;
        async move {
            let updates = (r.first()..=r.last()).map(|n| chain.generate(n)).collect();
            da.publish(DaRequest { dedup_key: key.into(), range: r, updates }).await.unwrap()
        }
    };
    let s = open(&dir, ManualClock::at(0));
    let own = publish("da:0-1", range(0, 1)).await;
    let other = publish("da:0-2", range(0, 2)).await;
    let mut req = update(&chain, "a", range(0, 1));
    req.da = other;
    let why = rejected_reason(s.submit_state_update(req.clone()).await.unwrap_err());
    assert!(why.contains("not those of the blobs of DA publication"), "{why}");
    // A reference of another devnet (seed) is not checked: its blobs are out of sight.
    req.da = DevDa::new(DaConfig::default(), 2, ManualClock::at(0))
        .publish(DaRequest { dedup_key: "k".into(), range: range(0, 0), updates: vec![chain.generate(5)] })
        .await
        .unwrap();
    s.submit_state_update(req.clone()).await.unwrap();
    let dir2 = TempDir::new("po-da-own");
    let s2 = open(&dir2, ManualClock::at(0));
    req.da = own;
    s2.submit_state_update(req).await.unwrap();
}

#[tokio::test]
async fn without_verification_any_program_output_settles() {
    let (dir, chain) = (TempDir::new("po-off"), DevChain::fixed(1, 100));
    let cfg = SettlementConfig { verify_program_output: false, ..SettlementConfig::default() };
    let s = DevSettlement::open(dir.path(), cfg, 1, ManualClock::at(0)).unwrap();
    let mut req = update(&chain, "a", range(0, 0));
    req.program_output = vec![Felt::ONE];
    s.submit_state_update(req).await.unwrap();
}
