//! Messages orch cannot use, sent to the live SQS queue by a foreign producer: where they end
//! up, the warning that names the problem, and that the next good message still gets through.
//!
//! Two levels: a body that is not orch's base64 is moved to the dead-letter queue by the
//! adapter (`orch::queue::sqs` warning); a base64 body whose payload is not a wake message is
//! delivered, and the engine drops it (`orch::engine` warning).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{config, counts, dead_letters, endpoint};
use orch_core::clock::SystemClock;
use orch_core::db::Database;
use orch_core::engine::{Engine, EngineConfig, Roles};
use orch_core::queue::{OutMessage, Queue, WakeMessage};
use orch_core::types::{ChainId, Epoch, JobId, JobKind, Timestamp};
use orch_sqs::SqsQueue;
use orch_testkit::logs;
use orch_testkit::mem::MemDatabase;
use orch_testkit::noop::{noop_jobs, NoopHandler};

const VIS: Duration = Duration::from_secs(30);

/// Polls `done` every 50ms for up to 30s; the caller asserts on what it then finds.
async fn wait_until(mut done: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done().await && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn zero() -> (String, String) {
    ("0".into(), "0".into())
}

#[tokio::test]
async fn foreign_bodies_are_dead_lettered_with_a_warning_and_receive_goes_on() {
    let Some(ep) = endpoint() else { return };
    logs::install();
    let cfg = config(&ep);
    let q = SqsQueue::connect(cfg.clone()).await.unwrap();
    q.setup().await.unwrap();
    let url = q.queue_url().await.unwrap();
    for body in ["{\"v\":1,\"job_id\":\"not base64\"}", "Zh=="] {
        q.client().send_message().queue_url(&url).message_body(body).send().await.unwrap();
    }
    q.send(vec![OutMessage { payload: b"ours".to_vec(), delay: Duration::ZERO }]).await.unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.is_empty() && Instant::now() < end {
        got.extend(q.receive(10, VIS, Duration::from_secs(1)).await.expect("receive keeps going"));
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload, b"ours");
    q.ack(&[got[0].receipt.clone()]).await.unwrap();
    let mut dead = dead_letters(&q, 2).await;
    dead.sort();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].0, "Zh==");
    assert_eq!(dead[1].0, "{\"v\":1,\"job_id\":\"not base64\"}");
    assert!(dead.iter().all(|(_, why)| why.as_deref().is_some_and(|w| w.contains("base64"))), "{dead:?}");
    // Gone from the queue itself, not just hidden.
    assert_eq!(counts(&q, &url).await, zero(), "(visible, in flight)");

    // One warning per foreign message, naming the queue and the reason.
    let ours = format!("queue={}", cfg.queue);
    let warnings: Vec<_> = logs::captured()
        .into_iter()
        .filter(|l| l.level == tracing::Level::WARN && l.target.starts_with("orch::queue") && l.text.contains(&ours))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for w in &warnings {
        assert!(w.text.starts_with("malformed message moved to the dead-letter queue"), "{w:?}");
        assert!(w.text.contains("reason=body is not orch's base64 encoding"), "{w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_drops_payloads_that_are_not_wake_messages_with_a_warning_and_acts_on_the_next() {
    let Some(ep) = endpoint() else { return };
    logs::install();
    let cfg = config(&ep);
    let q = SqsQueue::connect(cfg.clone()).await.unwrap();
    q.setup().await.unwrap();
    let url = q.queue_url().await.unwrap();
    let chain = ChainId::new("malformed").unwrap();
    let db: Arc<dyn Database> = Arc::new(MemDatabase::new());
    // Workers wake only for queue messages: the sweep interval is far longer than the test.
    let engine_cfg = EngineConfig {
        lease: Duration::from_secs(600),
        poll_interval: Duration::from_secs(300),
        ..EngineConfig::default()
    };
    let engine = Engine::builder(chain.clone(), db.clone(), Arc::new(SystemClock))
        .config(engine_cfg)
        .roles(Roles { create: false, work: true })
        .handler(JobKind::SnosRun, Arc::new(NoopHandler))
        .queue(Arc::new(q.clone()))
        .build()
        .unwrap();
    let handle = engine.start();

    // A foreign producer using orch's body encoding with payloads orch cannot parse: not JSON,
    // and a wake message of a format version this orch does not know.
    let newer = WakeMessage { v: 2, ..WakeMessage::new(JobId::random(), JobKind::SnosRun, Epoch(1)) }.encode();
    for payload in [b"{\"oops".as_slice(), newer.as_slice()] {
        let body = base64::engine::general_purpose::STANDARD.encode(payload);
        q.client().send_message().queue_url(&url).message_body(body).send().await.unwrap();
    }
    wait_until(async || engine.stats().malformed_messages >= 2).await;
    assert_eq!(engine.stats().malformed_messages, 2);
    let mut warnings: Vec<_> = logs::captured()
        .into_iter()
        .filter(|l| l.target == "orch::engine" && l.text.starts_with("dropping malformed queue message"))
        .map(|l| (l.level, l.text))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|(level, _)| *level == tracing::Level::WARN), "{warnings:?}");
    // SQS does not keep order: one warning for each problem, in either order.
    warnings.sort_by_key(|(_, text)| text.contains("format version"));
    assert!(warnings[0].1.contains("not an orch wake message"), "{warnings:?}");
    assert!(warnings[1].1.contains("format version 2 is not supported"), "{warnings:?}");
    // Dropped: deleted from the queue (right after the warnings), not dead-lettered.
    wait_until(async || counts(&q, &url).await == zero()).await;
    assert_eq!(counts(&q, &url).await, zero(), "(visible, in flight)");
    assert_eq!(counts(&q, &q.dlq_url().await.unwrap()).await, zero(), "dead-letter queue");

    // A due job that no worker looks for until a queue message wakes one (the workers went
    // idle at start, and dropped messages wake nobody); the next good message does.
    let job = db.create_jobs(noop_jobs(&chain, JobKind::SnosRun, 1), Timestamp(1)).await.unwrap()[0].job().clone();
    let wake = WakeMessage::new(job.id, job.kind(), job.epoch);
    q.send(vec![OutMessage { payload: wake.encode(), delay: Duration::ZERO }]).await.unwrap();
    wait_until(async || engine.stats().completed >= 1).await;
    assert_eq!(engine.stats().completed, 1);
    assert_eq!(engine.stats().malformed_messages, 2);
    wait_until(async || counts(&q, &url).await == zero()).await;
    assert_eq!(counts(&q, &url).await, zero(), "(visible, in flight)");
    handle.shutdown().await;
}
