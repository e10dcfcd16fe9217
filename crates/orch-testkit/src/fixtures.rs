//! Small builders and checks shared by the conformance suites and the adapters' own tests: a
//! fixed start time, fresh chain ids, plain jobs, the check that concurrent claimers never
//! shared a job, and driving a message past a queue's delivery limit.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use orch_core::job::{JobMeta, NewJob};
use orch_core::queue::{OutMessage, Queue};
use orch_core::types::{BlockRange, ChainId, JobId, JobKey, JobKind, Timestamp};
use tokio::task::JoinHandle;

/// The time the fixtures' jobs are created and due at.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// A chain id no other case uses.
pub fn fresh_chain() -> ChainId {
    // The random tail of the id: its head is a timestamp, shared by ids made in the same ms.
    ChainId::new(format!("t{}", &JobId::random().0.simple().to_string()[16..])).expect("valid chain id")
}

/// A due, dependency-free job of `kind` on block `first` of `chain`, with 5 attempts.
pub fn new_job(chain: &ChainId, kind: JobKind, first: u64) -> NewJob {
    NewJob {
        id: JobId::random(),
        key: JobKey { chain: chain.clone(), kind, range: BlockRange::single(first) },
        max_attempts: 5,
        next_run_at: T0,
        deps: vec![],
        meta: JobMeta::default(),
    }
}

/// Joins concurrent claimers, each returning the ids it claimed, and asserts that no job was
/// claimed twice and that `n` were claimed in all.
pub async fn assert_claimed_once(claimers: Vec<JoinHandle<Vec<JobId>>>, n: u64) {
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer panicked"));
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "a job was claimed twice");
    assert_eq!(all.len() as u64, n, "every job claimed once");
}

/// Sends `payload`, then receives it `max_deliveries` times and nacks each delivery at once,
/// asserting that every delivery is that payload and that the attempts count 1, 2, …: how a
/// queue adapter's test drives a message past its delivery limit before it checks where the
/// message went. Each receive may take up to 30 s (a broker may hand it back late).
pub async fn nack_past_max_deliveries(q: &dyn Queue, payload: &[u8], max_deliveries: u32, visibility: Duration) {
    q.send(vec![OutMessage { payload: payload.to_vec(), delay: Duration::ZERO }]).await.expect("send");
    for attempt in 1..=max_deliveries {
        let end = Instant::now() + Duration::from_secs(30);
        let d = loop {
            let mut got = q.receive(1, visibility, Duration::from_millis(500)).await.expect("receive");
            if let Some(d) = got.pop() {
                break d;
            }
            assert!(Instant::now() < end, "delivery {attempt} of {max_deliveries} never came");
        };
        assert_eq!((d.payload.as_slice(), d.attempt), (payload, attempt), "delivery {attempt}");
        q.nack(&d.receipt, Duration::ZERO).await.expect("nack");
    }
}
