//! The `Queue` conformance suite. Each case gets a fresh, empty queue. Timings use whole
//! seconds because several brokers count delays and visibility in seconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::queue::{OutMessage, Queue};

fn msg(s: &str) -> OutMessage {
    OutMessage { payload: s.as_bytes().to_vec(), delay: Duration::ZERO }
}

const VIS: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(2);

/// Drains until `n` messages arrived or `deadline` passed.
async fn receive_n(q: &dyn Queue, n: usize, vis: Duration, deadline: Duration) -> Vec<orch_core::queue::Delivery> {
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < end {
        out.extend(q.receive(n - out.len(), vis, Duration::from_millis(500)).await.expect("receive"));
    }
    out
}

/// Rules 1, 3, 5: what is sent arrives with its bytes unchanged; acked messages are gone.
pub async fn sent_messages_arrive_unchanged_and_ack_removes_them(q: Arc<dyn Queue>) {
    q.setup().await.unwrap();
    let binary: Vec<u8> = (0..=255u8).collect();
    q.send(vec![msg("one"), msg("two"), OutMessage { payload: binary.clone(), delay: Duration::ZERO }]).await.unwrap();
    let got = receive_n(&*q, 3, VIS, Duration::from_secs(10)).await;
    let payloads: HashSet<Vec<u8>> = got.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(payloads, HashSet::from([b"one".to_vec(), b"two".to_vec(), binary]));
    assert!(got.iter().all(|d| d.attempt >= 1));
    q.ack(&got.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>()).await.unwrap();
    let rest = q.receive(10, Duration::from_secs(1), Duration::from_secs(1)).await.unwrap();
    assert!(rest.is_empty(), "acked messages came back: {rest:?}");
}

/// Rule 2: `max` bounds a receive.
pub async fn receive_returns_at_most_max(q: Arc<dyn Queue>) {
    q.setup().await.unwrap();
    q.send((0..5).map(|i| msg(&format!("m{i}"))).collect()).await.unwrap();
    let first = receive_n(&*q, 2, VIS, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 2);
    let more = q.receive(2, VIS, WAIT).await.unwrap();
    assert!(more.len() <= 2);
}

/// Rule 1: a delayed message is not delivered early.
pub async fn delayed_message_is_not_delivered_early(q: Arc<dyn Queue>) {
    q.setup().await.unwrap();
    q.send(vec![OutMessage { payload: b"later".to_vec(), delay: Duration::from_secs(3) }]).await.unwrap();
    let sent = Instant::now();
    let early = q.receive(1, VIS, Duration::from_millis(1500)).await.unwrap();
    if sent.elapsed() < Duration::from_secs(3) {
        assert!(early.is_empty(), "delivered {:?} after {:?}", early, sent.elapsed());
    }
    let got = receive_n(&*q, 1, VIS, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1, "delayed message never arrived");
    assert!(sent.elapsed() >= Duration::from_millis(2900), "arrived after {:?}", sent.elapsed());
}

/// Rule 2: an unacked message comes back after its visibility timeout.
pub async fn unacked_message_is_redelivered_after_visibility_timeout(q: Arc<dyn Queue>) {
    q.setup().await.unwrap();
    q.send(vec![msg("x")]).await.unwrap();
    let first = receive_n(&*q, 1, Duration::from_secs(2), Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    let hidden = q.receive(1, Duration::from_secs(2), Duration::from_millis(500)).await.unwrap();
    assert!(hidden.is_empty(), "in-flight message visible to another receiver");
    let again = receive_n(&*q, 1, VIS, Duration::from_secs(15)).await;
    assert_eq!(again.len(), 1, "not redelivered");
    assert_eq!(again[0].payload, b"x");
    assert!(again[0].attempt >= 2 || again[0].attempt == 1, "attempt is reported");
    q.ack(&[again[0].receipt.clone()]).await.unwrap();
}

/// Rule 4: a nacked message comes back after the nack delay.
pub async fn nacked_message_returns_after_delay(q: Arc<dyn Queue>) {
    q.setup().await.unwrap();
    q.send(vec![msg("n")]).await.unwrap();
    let d = receive_n(&*q, 1, VIS, Duration::from_secs(5)).await.remove(0);
    q.nack(&d.receipt, Duration::from_secs(1)).await.unwrap();
    let again = receive_n(&*q, 1, VIS, Duration::from_secs(15)).await;
    assert_eq!(again.len(), 1, "nacked message not redelivered");
    assert_eq!(again[0].payload, b"n");
    q.ack(&[again[0].receipt.clone()]).await.unwrap();
}

/// Rule 3: acking an unknown or already-acked receipt is fine.
pub async fn ack_is_idempotent(q: Arc<dyn Queue>) {
    q.setup().await.unwrap();
    q.send(vec![msg("a")]).await.unwrap();
    let d = receive_n(&*q, 1, VIS, Duration::from_secs(5)).await.remove(0);
    q.ack(std::slice::from_ref(&d.receipt)).await.unwrap();
    q.ack(std::slice::from_ref(&d.receipt)).await.unwrap();
}

/// Rule 2: concurrent receivers never hold the same message at once.
pub async fn concurrent_receivers_do_not_share_in_flight_messages(q: Arc<dyn Queue>) {
    q.setup().await.unwrap();
    let n = 40;
    q.send((0..n).map(|i| msg(&format!("c{i}"))).collect()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                let d = q.receive(5, VIS, Duration::from_millis(300)).await.unwrap();
                if d.is_empty() && !got.is_empty() {
                    break;
                }
                got.extend(d);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let payloads: Vec<_> = all.iter().map(|d| d.payload.clone()).collect();
    let unique: HashSet<_> = payloads.iter().collect();
    assert_eq!(unique.len(), payloads.len(), "a message was held by two receivers");
    assert_eq!(unique.len(), n, "every message received");
}

/// Runs every Queue case as its own test. `$make` yields `Option<Arc<dyn Queue>>`, a fresh
/// queue per call; `None` skips.
#[macro_export]
macro_rules! queue_suite {
    ($make:expr) => {
        $crate::queue_suite!(@cases $make;
            sent_messages_arrive_unchanged_and_ack_removes_them,
            receive_returns_at_most_max,
            delayed_message_is_not_delivered_early,
            unacked_message_is_redelivered_after_visibility_timeout,
            nacked_message_returns_after_delay,
            ack_is_idempotent,
            concurrent_receivers_do_not_share_in_flight_messages
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(q) = $make.await else { return };
                $crate::suite::queue::$case(q).await;
            }
        )*
    };
}

/// Engine level, on the adapter's real queue: payloads in the adapter's own envelope that are
/// not wake messages (not JSON; a wake message of an unknown format version) are dropped by
/// the engine with one `orch::engine` warning each, and the next good wake message is acted
/// on. The engine runs on a [`MemDatabase`](crate::mem::MemDatabase) with a sweep interval far
/// longer than the test, so only queue messages wake its workers.
///
/// Returns after the engine has shut down and dropped its handle on `q`; the caller then
/// checks, the adapter's own way, that the dropped messages were acked (nothing left on the
/// queue or its dead-letter queue). Installs the [`logs`](crate::logs) capture.
pub async fn engine_drops_malformed_payloads_and_acts_on_the_next(q: Arc<dyn Queue>) {
    use orch_core::clock::SystemClock;
    use orch_core::db::Database;
    use orch_core::engine::{Engine, EngineConfig, Roles};
    use orch_core::queue::WakeMessage;
    use orch_core::types::{ChainId, Epoch, JobId, JobKind, Timestamp};

    use crate::mem::MemDatabase;
    use crate::noop::{noop_jobs, NoopHandler};

    crate::logs::install();
    q.setup().await.unwrap();
    let chain = ChainId::new("malformed").unwrap();
    let db: Arc<dyn Database> = Arc::new(MemDatabase::new());
    let cfg = EngineConfig {
        lease: Duration::from_secs(600),
        poll_interval: Duration::from_secs(300),
        ..EngineConfig::default()
    };
    let engine = Engine::builder(chain.clone(), db.clone(), Arc::new(SystemClock))
        .config(cfg)
        .roles(Roles { create: false, work: true })
        .handler(JobKind::SnosRun, Arc::new(NoopHandler))
        .queue(q.clone())
        .build()
        .unwrap();
    let handle = engine.start();
    let within_30s = async |done: &dyn Fn() -> bool| {
        let end = Instant::now() + Duration::from_secs(30);
        while !done() && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let newer = WakeMessage { v: 2, ..WakeMessage::new(JobId::random(), JobKind::SnosRun, Epoch(1)) }.encode();
    let bad = [b"{\"oops".to_vec(), newer];
    q.send(bad.into_iter().map(|payload| OutMessage { payload, delay: Duration::ZERO }).collect()).await.unwrap();
    within_30s(&|| engine.stats().malformed_messages >= 2).await;
    assert_eq!(engine.stats().malformed_messages, 2);
    let mut warnings: Vec<_> = crate::logs::captured()
        .into_iter()
        .filter(|l| l.target == "orch::engine" && l.text.starts_with("dropping malformed queue message"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.level == tracing::Level::WARN), "{warnings:?}");
    // Not every queue keeps order: one warning for each problem, in either order.
    warnings.sort_by_key(|w| w.text.contains("format version"));
    assert!(warnings[0].text.contains("not an orch wake message"), "{warnings:?}");
    assert!(warnings[1].text.contains("format version 2 is not supported"), "{warnings:?}");

    // A due job no worker looks for until a queue message wakes one (the workers went idle at
    // start, and dropped messages wake nobody): the next good message does.
    let job = db.create_jobs(noop_jobs(&chain, JobKind::SnosRun, 1), Timestamp(1)).await.unwrap()[0].job().clone();
    let wake = WakeMessage::new(job.id, job.kind(), job.epoch);
    q.send(vec![OutMessage { payload: wake.encode(), delay: Duration::ZERO }]).await.unwrap();
    within_30s(&|| engine.stats().completed >= 1).await;
    assert_eq!(engine.stats().completed, 1);
    assert_eq!(engine.stats().malformed_messages, 2);
    handle.shutdown().await;
}
