//! Messages orch cannot use, published to the live RabbitMQ by a foreign producer: where they
//! end up, the warning that names the problem, and that the next good message still gets
//! through.
//!
//! Two levels: a message without orch's `x-orch-attempt` header is dead-lettered by the
//! adapter (`orch::queue` warning); one with the header whose payload is not a wake message is
//! delivered, and the engine drops it (`orch::engine` warning; the scenario is
//! `orch_testkit::suite::queue::engine_drops_malformed_payloads_and_acts_on_the_next`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use orch_core::queue::{OutMessage, Queue};
use orch_rabbit::RabbitQueue;
use orch_testkit::{logs, suite};

const VIS: Duration = Duration::from_secs(30);

/// Polls `done` every 20ms for up to 30s; the caller asserts on what it then finds.
async fn wait_until(mut done: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done().await && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `bodies` to `queue` on a connection of its own, as another program would, without
/// orch's `x-orch-attempt` header.
async fn publish_foreign(url: &str, queue: &str, bodies: &[&[u8]]) {
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    for body in bodies {
        ch.basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, BasicProperties::default())
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
    publish_foreign(&url, q.name(), &[b"{junk"]).await;
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

    let warnings = logs::queue_warnings(q.name());
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
    let config = common::config(&url);
    let q = RabbitQueue::connect(config.clone()).await.unwrap();
    suite::queue::engine_drops_malformed_payloads_and_acts_on_the_next(Arc::new(q.clone())).await;

    // Dropped means acked: once this instance's connection is gone, the broker has nothing to
    // give back (unacked messages would be requeued), and nothing was dead-lettered.
    drop(q);
    let q = RabbitQueue::connect(config).await.unwrap();
    assert!(q.receive(10, VIS, Duration::from_secs(2)).await.unwrap().is_empty());
    assert_eq!(q.counts().await.unwrap(), (0, 0), "(main, dead-letter) ready counts");
    q.teardown().await.unwrap();
}
