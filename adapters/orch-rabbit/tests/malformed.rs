//! Messages orch cannot use, published to the live RabbitMQ by a foreign producer: where they
//! end up, the warning that names the problem, and that the next good message still gets
//! through.
//!
//! Two levels: a message without orch's `x-orch-attempt` header is dead-lettered by the
//! adapter (`orch::queue` warning); one with the header whose payload is not a wake message is
//! delivered, and the engine drops it (`orch::engine` warning).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use orch_core::clock::SystemClock;
use orch_core::db::Database;
use orch_core::engine::{Engine, EngineConfig, Roles};
use orch_core::queue::{OutMessage, Queue, WakeMessage};
use orch_core::types::{ChainId, Epoch, JobId, JobKind, Timestamp};
use orch_rabbit::RabbitQueue;
use orch_testkit::logs;
use orch_testkit::mem::MemDatabase;
use orch_testkit::noop::{noop_jobs, NoopHandler};

const VIS: Duration = Duration::from_secs(30);

/// Polls `done` every 20ms for up to 30s; the caller asserts on what it then finds.
async fn wait_until(mut done: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done().await && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `bodies` to `queue` on a connection of its own, as another program would:
/// with `attempt` as the `x-orch-attempt` header, or without the header.
async fn publish_foreign(url: &str, queue: &str, bodies: &[&[u8]], attempt: Option<u32>) {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut props = BasicProperties::default();
    if let Some(a) = attempt {
        let mut h = FieldTable::default();
        h.insert("x-orch-attempt".into(), AMQPValue::LongUInt(a));
        props = props.with_headers(h);
    }
    for body in bodies {
        ch.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, props.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_message_is_dead_lettered_with_a_warning_and_receive_goes_on() {
    let Some(url) = common::url() else { return };
    logs::install();
    let q = RabbitQueue::connect(common::config(&url)).await.unwrap();
    q.setup().await.unwrap();
    publish_foreign(&url, q.name(), &[b"{junk"], None).await;
    q.send(vec![OutMessage { payload: b"good".to_vec(), delay: Duration::ZERO }]).await.unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got.is_empty() && Instant::now() < end {
        got = q.receive(10, VIS, Duration::from_millis(500)).await.unwrap();
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload, b"good");
    q.ack(&[got[0].receipt.clone()]).await.unwrap();
    wait_until(async || q.counts().await.unwrap().1 >= 1).await;
    assert_eq!(q.counts().await.unwrap(), (0, 1), "(main, dead-letter) ready counts");

    let ours = format!("queue={}", q.name());
    let warnings: Vec<_> = logs::captured()
        .into_iter()
        .filter(|l| l.level == tracing::Level::WARN && l.target == "orch::queue" && l.text.contains(&ours))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0].text;
    assert!(w.starts_with("message moved to the dead-letter queue"), "{w}");
    assert!(w.contains("reason=malformed: no x-orch-attempt header"), "{w}");
    assert!(w.contains(&format!("dead_letter={}", q.dead_letter_queue())), "{w}");
    q.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_drops_payloads_that_are_not_wake_messages_with_a_warning_and_acts_on_the_next() {
    let Some(url) = common::url() else { return };
    logs::install();
    let config = common::config(&url);
    let q = RabbitQueue::connect(config.clone()).await.unwrap();
    q.setup().await.unwrap();
    let chain = ChainId::new("malformed").unwrap();
    let db: Arc<dyn Database> = Arc::new(MemDatabase::new());
    // Workers wake only for queue messages: the sweep interval is far longer than the test.
    let cfg = EngineConfig {
        lease: Duration::from_secs(600),
        poll_interval: Duration::from_secs(300),
        ..EngineConfig::default()
    };
    let engine = Engine::builder(chain.clone(), db.clone(), Arc::new(SystemClock))
        .config(cfg)
        .roles(Roles { create: false, work: true })
        .handler(JobKind::SnosRun, Arc::new(NoopHandler))
        .queue(Arc::new(q.clone()))
        .build()
        .unwrap();
    let handle = engine.start();

    // A foreign producer using orch's header with payloads orch cannot parse: not JSON, and a
    // wake message of a format version this orch does not know.
    let newer = WakeMessage { v: 2, ..WakeMessage::new(JobId::random(), JobKind::SnosRun, Epoch(1)) }.encode();
    publish_foreign(&url, q.name(), &[b"{\"oops".as_slice(), newer.as_slice()], Some(1)).await;
    wait_until(async || engine.stats().malformed_messages >= 2).await;
    assert_eq!(engine.stats().malformed_messages, 2);
    let warnings: Vec<_> = logs::captured()
        .into_iter()
        .filter(|l| l.target == "orch::engine" && l.text.starts_with("dropping malformed queue message"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.level == tracing::Level::WARN), "{warnings:?}");
    assert!(warnings[0].text.contains("not an orch wake message"), "{:?}", warnings[0]);
    assert!(warnings[1].text.contains("format version 2 is not supported"), "{:?}", warnings[1]);

    // A due job that no worker looks for until a queue message wakes one (the workers went
    // idle at start, and dropped messages wake nobody); the next good message does.
    let job = db.create_jobs(noop_jobs(&chain, JobKind::SnosRun, 1), Timestamp(1)).await.unwrap()[0].job().clone();
    let wake = WakeMessage::new(job.id, job.kind(), job.epoch);
    q.send(vec![OutMessage { payload: wake.encode(), delay: Duration::ZERO }]).await.unwrap();
    wait_until(async || engine.stats().completed >= 1).await;
    assert_eq!(engine.stats().completed, 1);
    assert_eq!(engine.stats().malformed_messages, 2);

    // Dropped means acked: once this instance's connection is gone, the broker has nothing to
    // give back (unacked messages would be requeued), and nothing was dead-lettered.
    handle.shutdown().await;
    drop(engine);
    drop(q);
    let q = RabbitQueue::connect(config).await.unwrap();
    assert!(q.receive(10, VIS, Duration::from_secs(2)).await.unwrap().is_empty());
    assert_eq!(q.counts().await.unwrap(), (0, 0), "(main, dead-letter) ready counts");
    q.teardown().await.unwrap();
}
