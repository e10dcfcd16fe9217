//! The generic part of the `Settlement` and `Da` contracts. Each case gets a fresh settlement
//! layer that expects its first update at `fixture.start` on top of `fixture.genesis_root`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::chain::StateUpdate;
use orch_core::da::{Da, DaReference, DaRequest, DaStatus};
use orch_core::error::Error;
use orch_core::settle::{Settlement, StateUpdateRequest, TxStatus};
use orch_core::types::{BlockNumber, BlockRange, TxHash};
use orch_core::Felt;

/// Where a fresh settlement layer starts.
#[derive(Debug, Clone, Copy)]
pub struct SettlementFixture {
    /// First block it accepts.
    pub start: BlockNumber,
    /// Root it expects as `prev_root` of the first update.
    pub genesis_root: Felt,
}

fn root(n: u64) -> Felt {
    Felt::from_u64(0xabc0_0000 + n)
}

fn update(f: SettlementFixture, i: u64, dedup: &str) -> StateUpdateRequest {
    let n = f.start + i;
    StateUpdateRequest {
        dedup_key: dedup.into(),
        range: BlockRange::single(n),
        prev_root: if i == 0 { f.genesis_root } else { root(n - 1) },
        new_root: root(n),
        block_hash: Felt::from_u64(n),
        program_output: vec![Felt::from_u64(n)],
        da: DaReference { id: format!("da-{n}"), chunks: 1, bytes: 10 },
    }
}

async fn confirmed(s: &dyn Settlement, tx: &TxHash) -> bool {
    let end = Instant::now() + Duration::from_secs(30);
    let need = s.capabilities().confirmations.max(1);
    while Instant::now() < end {
        if let TxStatus::Confirmed { confirmations } = s.tx_status(tx).await.unwrap() {
            if confirmations >= need {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Rules 1–2, 4: updates in order apply, confirm, and advance `last_settled`.
pub async fn in_order_updates_apply(s: Arc<dyn Settlement>, f: SettlementFixture) {
    for i in 0..3 {
        let tx = s.submit_state_update(update(f, i, &format!("k{i}"))).await.unwrap();
        assert!(confirmed(&*s, &tx).await, "tx {tx} never confirmed");
    }
    let last = s.last_settled().await.unwrap().expect("settled");
    assert_eq!((last.block, last.state_root), (f.start + 2, root(f.start + 2)));
}

/// Rule 2: a gap is rejected.
pub async fn out_of_order_update_is_rejected(s: Arc<dyn Settlement>, f: SettlementFixture) {
    let mut u = update(f, 1, "gap");
    u.prev_root = f.genesis_root;
    assert!(matches!(s.submit_state_update(u).await, Err(Error::Rejected { .. })));
    assert_eq!(s.last_settled().await.unwrap().map(|x| x.block), None);
}

/// Rule 2: a wrong previous root is rejected.
pub async fn wrong_previous_root_is_rejected(s: Arc<dyn Settlement>, f: SettlementFixture) {
    s.submit_state_update(update(f, 0, "a")).await.unwrap();
    let mut u = update(f, 1, "b");
    u.prev_root = Felt::from_u64(0xdead);
    let r = s.submit_state_update(u).await;
    assert!(matches!(r, Err(Error::Rejected { .. })), "{r:?}");
}

/// Rule 2: the same dedup key returns the same tx and applies once; the same blocks under
/// another key are rejected.
pub async fn resubmission_never_applies_twice(s: Arc<dyn Settlement>, f: SettlementFixture) {
    let t1 = s.submit_state_update(update(f, 0, "same")).await.unwrap();
    let t2 = s.submit_state_update(update(f, 0, "same")).await.unwrap();
    assert_eq!(t1, t2);
    let r = s.submit_state_update(update(f, 0, "other")).await;
    assert!(matches!(r, Err(Error::Rejected { .. })), "applied twice: {r:?}");
    assert_eq!(s.last_settled().await.unwrap().map(|x| x.block), Some(f.start));
}

/// Rule 2: the same key submitted by several callers at once (two instances after a
/// failover, a retry racing the first attempt) gives one transaction and applies once; after
/// confirmation the key still answers with that transaction.
pub async fn concurrent_resubmissions_apply_once(s: Arc<dyn Settlement>, f: SettlementFixture) {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.submit_state_update(update(f, 0, "raced")).await })
        })
        .collect();
    let mut hashes = Vec::new();
    for t in tasks {
        hashes.push(t.await.expect("task").expect("every racer gets the transaction"));
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "one transaction for one key: {hashes:?}");
    assert!(confirmed(&*s, &hashes[0]).await, "tx {} never confirmed", hashes[0]);
    assert_eq!(s.submit_state_update(update(f, 0, "raced")).await.unwrap(), hashes[0]);
    assert_eq!(s.last_settled().await.unwrap().map(|x| x.block), Some(f.start));
    // The next block still applies on top: nothing was applied twice.
    let tx = s.submit_state_update(update(f, 1, "next")).await.unwrap();
    assert!(confirmed(&*s, &tx).await);
    assert_eq!(s.last_settled().await.unwrap().map(|x| x.block), Some(f.start + 1));
}

/// Rule 2: strict order — an update already applied, under a new key, is rejected; an update
/// two ahead is rejected until the one between applies.
pub async fn strict_order_holds_after_updates_apply(s: Arc<dyn Settlement>, f: SettlementFixture) {
    for i in 0..2 {
        let tx = s.submit_state_update(update(f, i, &format!("in-order-{i}"))).await.unwrap();
        assert!(confirmed(&*s, &tx).await);
    }
    for (i, key) in [(0, "replay-0"), (1, "replay-1"), (3, "ahead-3")] {
        let r = s.submit_state_update(update(f, i, key)).await;
        assert!(matches!(r, Err(Error::Rejected { .. })), "update {i} under {key}: {r:?}");
    }
    let tx = s.submit_state_update(update(f, 2, "in-order-2")).await.unwrap();
    assert!(confirmed(&*s, &tx).await);
    let tx = s.submit_state_update(update(f, 3, "in-order-3")).await.unwrap();
    assert!(confirmed(&*s, &tx).await);
    assert_eq!(s.last_settled().await.unwrap().map(|x| x.block), Some(f.start + 3));
}

/// Rule 4: a transaction's status never moves back while later updates land on top of it
/// (`NotFound` < `Pending` < `Confirmed` with non-decreasing confirmations).
pub async fn tx_status_moves_only_forward(s: Arc<dyn Settlement>, f: SettlementFixture) {
    fn rank(t: &TxStatus) -> (u8, u32) {
        match t {
            TxStatus::NotFound => (0, 0),
            TxStatus::Pending => (1, 0),
            TxStatus::Confirmed { confirmations } => (2, *confirmations),
            TxStatus::Reverted { reason } => panic!("a valid update reverted: {reason}"),
        }
    }
    let first = s.submit_state_update(update(f, 0, "watched")).await.unwrap();
    let mut seen = vec![s.tx_status(&first).await.unwrap()];
    for i in 1..4 {
        let tx = s.submit_state_update(update(f, i, &format!("on-top-{i}"))).await.unwrap();
        assert!(confirmed(&*s, &tx).await);
        seen.push(s.tx_status(&first).await.unwrap());
    }
    assert!(confirmed(&*s, &first).await);
    seen.push(s.tx_status(&first).await.unwrap());
    assert!(seen.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])), "status moved back: {seen:?}");
    assert!(matches!(seen.last(), Some(TxStatus::Confirmed { .. })), "{seen:?}");
}

/// DA rules 1–2: publication is idempotent and reaches Included; big payloads split.
pub async fn da_publication_is_idempotent_and_included(da: Arc<dyn Da>, sample: StateUpdate) {
    let req = |key: &str, n: usize| DaRequest {
        dedup_key: key.into(),
        range: BlockRange::new(0, n as u64 - 1).unwrap(),
        updates: vec![sample.clone(); n],
    };
    let r1 = da.publish(req("one", 1)).await.unwrap();
    let r2 = da.publish(req("one", 1)).await.unwrap();
    assert_eq!(r1, r2, "same dedup key, same reference");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match da.verify(&r1).await.unwrap() {
            DaStatus::Included => break,
            DaStatus::Pending if Instant::now() < end => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("not included: {other:?}"),
        }
    }
    let per = r1.bytes.max(1) as usize;
    let n = da.max_bytes_per_submission() / per + 2;
    let big = da.publish(req("big", n)).await.unwrap();
    assert!(big.bytes > da.max_bytes_per_submission() as u64 || big.chunks > 1, "{big:?}");
    assert!(big.chunks >= 2, "a payload beyond one submission must be split, not truncated: {big:?}");
}
