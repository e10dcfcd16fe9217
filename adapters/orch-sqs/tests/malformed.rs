//! Messages orch cannot use, sent to the live SQS queue by a foreign producer: where they end
//! up, the warning that names the problem, and that the next good message still gets through.
//!
//! Two levels: a body that is not orch's base64 is moved to the dead-letter queue by the
//! adapter (`orch::queue` warning); a base64 body whose payload is not a wake message is
//! delivered, and the engine drops it (`orch::engine` warning; the scenario is
//! `orch_testkit::suite::queue::engine_drops_malformed_payloads_and_acts_on_the_next`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, counts, dead_letters, endpoint};
use orch_core::queue::{OutMessage, Queue};
use orch_sqs::SqsQueue;
use orch_testkit::{logs, suite};

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
    let warnings = logs::queue_warnings(&cfg.queue);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for w in &warnings {
        assert!(w.text.starts_with("malformed message moved to the dead-letter queue"), "{w:?}");
        assert!(w.text.contains("reason=body is not orch's base64 encoding"), "{w:?}");
    }
}

#[tokio::test]
async fn engine_drops_payloads_that_are_not_wake_messages_with_a_warning_and_acts_on_the_next() {
    let Some(ep) = endpoint() else { return };
    let q = SqsQueue::connect(config(&ep)).await.unwrap();
    suite::queue::engine_drops_malformed_payloads_and_acts_on_the_next(Arc::new(q.clone())).await;
    // Dropped means deleted from the queue, not dead-lettered.
    let url = q.queue_url().await.unwrap();
    wait_until(async || counts(&q, &url).await == zero()).await;
    assert_eq!(counts(&q, &url).await, zero(), "(visible, in flight)");
    assert_eq!(counts(&q, &q.dlq_url().await.unwrap()).await, zero(), "dead-letter queue");
}
