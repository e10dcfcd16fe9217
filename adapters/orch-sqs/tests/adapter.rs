//! Behaviour of the SQS queue beyond the conformance suite: redrive to the dead-letter queue,
//! limits, and failures (missing queue, unreachable endpoint, a connection cut in the middle
//! of work). Messages orch did not write: `malformed.rs`.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use orch_core::error::Error;
use orch_core::queue::{OutMessage, Queue};
use orch_sqs::{SqsConfig, SqsQueue, MAX_DELAY, MAX_PAYLOAD_BYTES};
use orch_testkit::proxy::CutProxy;

use common::{config, dead_letters, endpoint, fresh_queue};

fn msg(s: &str) -> OutMessage {
    OutMessage { payload: s.as_bytes().to_vec(), delay: Duration::ZERO }
}

const VIS: Duration = Duration::from_secs(30);

#[tokio::test]
async fn setup_is_idempotent_and_applies_a_changed_redrive_count() {
    let Some(ep) = endpoint() else { return };
    let cfg = config(&ep);
    let q = SqsQueue::connect(cfg.clone()).await.unwrap();
    q.setup().await.unwrap();
    q.setup().await.unwrap();
    let q = SqsQueue::connect(SqsConfig { max_receive_count: 4, ..cfg }).await.unwrap();
    q.setup().await.unwrap();
    let attrs = common::attributes(&q, &q.queue_url().await.unwrap(), &[QueueAttributeName::RedrivePolicy]).await;
    let policy: serde_json::Value = serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "4", "{policy}");
    let dlq = q.config().dlq_name();
    assert!(policy["deadLetterTargetArn"].as_str().unwrap().ends_with(&format!(":{dlq}")), "{policy}");
}

#[tokio::test]
async fn attempt_counts_deliveries() {
    let Some(ep) = endpoint() else { return };
    let q = fresh_queue(&ep).await;
    q.send(vec![msg("again")]).await.unwrap();
    let first = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first[0].attempt, 1);
    q.nack(&first[0].receipt, Duration::ZERO).await.unwrap();
    let second = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap();
    assert_eq!(second[0].payload, b"again");
    assert_eq!(second[0].attempt, 2);
    q.ack(&[second[0].receipt.clone()]).await.unwrap();
}

#[tokio::test]
async fn message_nacked_past_max_receive_count_lands_in_the_dlq() {
    let Some(ep) = endpoint() else { return };
    let q = SqsQueue::connect(SqsConfig { max_receive_count: 2, ..config(&ep) }).await.unwrap();
    q.setup().await.unwrap();
    let payload: Vec<u8> = (0..=255u8).rev().collect();
    q.send(vec![OutMessage { payload: payload.clone(), delay: Duration::ZERO }]).await.unwrap();
    for attempt in 1..=2 {
        let d = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap();
        assert_eq!(d.len(), 1, "delivery {attempt}");
        assert_eq!(d[0].attempt, attempt);
        q.nack(&d[0].receipt, Duration::ZERO).await.unwrap();
    }
    // The third receive finds the count exhausted: SQS moves the message instead.
    let third = q.receive(1, VIS, Duration::from_secs(2)).await.unwrap();
    assert!(third.is_empty(), "delivered a third time: {third:?}");
    let dead = dead_letters(&q, 1).await;
    assert_eq!(dead.len(), 1, "not in the dead-letter queue");
    assert!(dead[0].1.is_none(), "moved by SQS's redrive, not by orch");
    // The dead letter keeps orch's encoding: it can be inspected or redriven as is.
    assert_eq!(dead[0].0.len(), 344);
    assert!(dead[0].0.ends_with("AA=="), "{}", dead[0].0);
}

#[tokio::test]
async fn limits_are_refused_before_anything_is_sent() {
    let Some(ep) = endpoint() else { return };
    let q = fresh_queue(&ep).await;
    let late = OutMessage { payload: b"late".to_vec(), delay: MAX_DELAY + Duration::from_secs(1) };
    let e = q.send(vec![msg("fine"), late]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("900"), "{e}");
    let big = OutMessage { payload: vec![7; MAX_PAYLOAD_BYTES + 1], delay: Duration::ZERO };
    let e = q.send(vec![big]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("payload"), "{e}");
    assert!(q.receive(10, VIS, Duration::from_secs(1)).await.unwrap().is_empty(), "a refused send sent something");
    // The largest payload goes through, also several in one call (batches split by size).
    let max = OutMessage { payload: vec![0xAB; MAX_PAYLOAD_BYTES], delay: Duration::ZERO };
    q.send(vec![max.clone(), max.clone(), max]).await.unwrap();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.len() < 3 && Instant::now() < end {
        got.extend(q.receive(3, VIS, Duration::from_secs(1)).await.unwrap());
    }
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|d| d.payload.len() == MAX_PAYLOAD_BYTES && d.payload.iter().all(|b| *b == 0xAB)));
    let d = &got[0];
    let e = q.nack(&d.receipt, Duration::from_secs(901)).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    let e = q.receive(1, Duration::from_secs(13 * 3600), Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("visibility"), "{e}");
}

#[tokio::test]
async fn stale_and_unknown_receipts_are_harmless() {
    let Some(ep) = endpoint() else { return };
    let q = fresh_queue(&ep).await;
    q.send(vec![msg("s")]).await.unwrap();
    let d = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap().remove(0);
    q.ack(std::slice::from_ref(&d.receipt)).await.unwrap();
    q.nack(&d.receipt, Duration::ZERO).await.unwrap();
    let garbage = orch_core::queue::Receipt("not-a-receipt-handle".into());
    q.ack(std::slice::from_ref(&garbage)).await.unwrap();
    q.nack(&garbage, Duration::from_secs(1)).await.unwrap();
    assert!(q.receive(1, VIS, Duration::from_secs(1)).await.unwrap().is_empty());
}

#[tokio::test]
async fn missing_queue_without_setup_is_a_clear_fatal_error() {
    let Some(ep) = endpoint() else { return };
    let q = SqsQueue::connect(config(&ep)).await.unwrap();
    let name = q.config().queue.clone();
    for e in [q.send(vec![msg("x")]).await.unwrap_err(), q.receive(1, VIS, Duration::ZERO).await.unwrap_err()] {
        assert!(!e.is_retryable(), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(&name) && text.contains("setup") && text.contains("queue.queue"), "{text}");
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_a_clear_retryable_error() {
    let cfg = SqsConfig { connect_timeout: Duration::from_secs(1), ..config("http://127.0.0.1:1") };
    let q = SqsQueue::connect(cfg).await.expect("connect does not touch the network");
    for e in [q.setup().await.unwrap_err(), q.send(vec![msg("x")]).await.unwrap_err()] {
        assert!(e.is_retryable(), "{e:?}");
        assert!(e.to_string().contains("127.0.0.1:1"), "names the endpoint: {e}");
    }
}

#[tokio::test]
async fn bad_config_is_refused_at_connect() {
    let mut cfg = config("http://127.0.0.1:1");
    cfg.secret_access_key = None;
    let e = SqsQueue::connect(cfg).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("secret_access_key"), "{e}");
    let e = SqsQueue::connect(SqsConfig { endpoint: Some("localhost:5000".into()), ..config("http://x") })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("queue.endpoint"), "{e}");
    let e = SqsQueue::connect(SqsConfig::new("orders.fifo")).await.unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_resumes_after_the_connection_is_cut() {
    let Some(ep) = endpoint() else { return };
    let upstream = ep.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let proxy = CutProxy::start(upstream.as_str());
    let cfg = SqsConfig {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(1),
        ..config(&format!("http://{}", proxy.addr()))
    };
    let q = SqsQueue::connect(cfg).await.unwrap();
    q.setup().await.unwrap();
    q.send(vec![msg("before")]).await.unwrap();
    let before = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap();
    assert_eq!(before[0].payload, b"before");
    q.ack(&[before[0].receipt.clone()]).await.unwrap();

    // A long poll in flight when the connection drops fails, retryable. The server may go on
    // waiting for the dropped poll and hand it a message that nobody will read: like any lost
    // response, that message is back after the poll's visibility timeout (2 s here).
    let polling = {
        let q = q.clone();
        tokio::spawn(async move { q.receive(1, Duration::from_secs(2), Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    let e = polling.await.unwrap().expect_err("receive across the cut");
    assert!(e.is_retryable(), "{e:?}");
    // While it is down, every call fails retryable, quickly.
    let e = q.send(vec![msg("during")]).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let e = q.receive(1, VIS, Duration::from_secs(1)).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();

    // Back up: the same queue handle sends and receives again (a caller retries as the
    // engine does, because a pooled connection may still be found dead once).
    let end = Instant::now() + Duration::from_secs(15);
    let mut sent = false;
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < end {
        if !sent {
            match q.send(vec![msg("after")]).await {
                Ok(()) => sent = true,
                Err(e) => assert!(e.is_retryable(), "{e:?}"),
            }
            continue;
        }
        match q.receive(1, VIS, Duration::from_secs(1)).await {
            Ok(d) => got = d,
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }
    }
    assert!(sent, "send did not resume");
    assert_eq!(got.len(), 1, "receive did not resume");
    // "during" was never sent, or was sent once before the cut took: either way "after" arrives.
    let mut payloads = vec![got[0].payload.clone()];
    q.ack(&[got[0].receipt.clone()]).await.unwrap();
    let rest = q.receive(10, VIS, Duration::from_secs(1)).await.unwrap();
    payloads.extend(rest.iter().map(|d| d.payload.clone()));
    assert!(payloads.contains(&b"after".to_vec()), "{payloads:?}");
}
