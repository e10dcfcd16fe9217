//! RabbitMQ-specific behaviour beyond the conformance suite: dead-lettering, delay tiers,
//! surviving dropped connections, and clear errors for bad configuration. Messages orch did
//! not publish: `malformed.rs`.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use orch_core::error::Error;
use orch_core::queue::{OutMessage, Queue, Receipt};
use orch_rabbit::{RabbitConfig, RabbitQueue};
use orch_testkit::fixtures::nack_past_max_deliveries;
use orch_testkit::proxy::CutProxy;

fn msg(s: &str) -> OutMessage {
    OutMessage { payload: s.as_bytes().to_vec(), delay: Duration::ZERO }
}

const VIS: Duration = Duration::from_secs(30);

async fn queue(url: &str, configure: impl FnOnce(&mut RabbitConfig)) -> RabbitQueue {
    let mut c = common::config(url);
    configure(&mut c);
    let q = RabbitQueue::connect(c).await.expect("connect");
    q.setup().await.expect("setup");
    q
}

/// Waits until the dead-letter queue holds `n` messages (counts lag publishes a little).
async fn dead_letters(q: &RabbitQueue, n: u32) -> u32 {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, dead) = q.counts().await.unwrap();
        if dead >= n || Instant::now() > end {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_nacked_past_max_deliveries_goes_to_the_dead_letter_queue() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |c| c.max_deliveries = 3).await;
    nack_past_max_deliveries(&q, b"poison", 3, VIS).await;
    assert!(q.receive(1, VIS, Duration::from_millis(500)).await.unwrap().is_empty());
    assert_eq!(dead_letters(&q, 1).await, 1);
    q.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_timeout_counts_attempts_and_makes_the_old_receipt_stale() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    q.send(vec![msg("slow")]).await.unwrap();
    let first = q.receive(1, Duration::from_secs(1), Duration::from_secs(2)).await.unwrap().remove(0);
    assert_eq!(first.attempt, 1);
    let again = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap().remove(0);
    assert_eq!(again.attempt, 2);
    assert_eq!(again.payload, b"slow");
    q.ack(std::slice::from_ref(&first.receipt)).await.unwrap();
    q.nack(&first.receipt, Duration::ZERO).await.unwrap();
    assert!(q.receive(1, VIS, Duration::from_millis(300)).await.unwrap().is_empty(), "stale receipt acted");
    q.ack(&[again.receipt]).await.unwrap();
    q.teardown().await.unwrap();
}

/// A delay between tiers is served by chaining tiers (1.5s as 1s + 1s): delivered once,
/// never early. How late it is (less than the smallest tier) the throughput bench prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_between_tiers_is_delivered_once_and_never_early() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    let sent = Instant::now();
    q.send(vec![OutMessage { payload: b"d".to_vec(), delay: Duration::from_millis(1500) }]).await.unwrap();
    let mut got = Vec::new();
    // A bound on the wait, not on the delay: a message that never arrives fails below.
    while got.is_empty() && sent.elapsed() < Duration::from_secs(30) {
        got = q.receive(1, VIS, Duration::from_millis(200)).await.unwrap();
    }
    let took = sent.elapsed();
    assert_eq!(got.len(), 1, "the delayed message never arrived");
    assert_eq!(got[0].payload, b"d");
    assert_eq!(got[0].attempt, 1, "going through the tiers is not a delivery attempt");
    assert!(took >= Duration::from_millis(1500), "early: {took:?}");
    q.ack(&[got.remove(0).receipt]).await.unwrap();
    assert!(q.receive(1, VIS, Duration::from_millis(1500)).await.unwrap().is_empty(), "delivered twice");
    q.teardown().await.unwrap();
}

/// Runs through a TCP proxy of its own, never restarting the shared broker: the proxy's
/// connections are cut mid-run; sends and receives resume and no message is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_connection_is_reopened_and_nothing_is_lost() {
    let Some(url) = common::url() else { return };
    let target = common::authority(&url);
    let proxy = CutProxy::start(target.as_str());
    let proxied = url.replacen(&target, &format!("127.0.0.1:{}", proxy.port()), 1);
    let mut c = common::config(&proxied);
    c.timeout = Duration::from_secs(3);
    c.max_backoff = Duration::from_millis(400);
    let q = RabbitQueue::connect(c).await.unwrap();
    q.setup().await.unwrap();

    let sent: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    q.send(sent[..50].iter().map(|s| msg(s)).collect()).await.unwrap();
    let mut acked = HashSet::new();
    let first = q.receive(20, VIS, Duration::from_secs(2)).await.unwrap();
    assert!(!first.is_empty());
    // Ack half of what we hold; the rest is in flight when the connection dies.
    for d in first.iter().step_by(2) {
        q.ack(std::slice::from_ref(&d.receipt)).await.unwrap();
        acked.insert(String::from_utf8(d.payload.clone()).unwrap());
    }

    proxy.drop_connections();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match q.send(sent[50..].iter().map(|s| msg(s)).collect()).await {
            Ok(()) => break,
            // Failing while the adapter notices the cut and reconnects is fine.
            Err(e) if e.is_retryable() && Instant::now() < end => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("send did not recover: {e:?}"),
        }
    }
    // The receipts of the old connection are stale: acking them is a no-op, not an error.
    q.ack(&first.iter().map(|d| d.receipt.clone()).collect::<Vec<Receipt>>()).await.unwrap();

    while acked.len() < sent.len() && Instant::now() < end {
        match q.receive(50, VIS, Duration::from_millis(500)).await {
            Ok(got) => {
                for d in got {
                    q.ack(std::slice::from_ref(&d.receipt)).await.unwrap();
                    acked.insert(String::from_utf8(d.payload).unwrap());
                }
            }
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("receive did not recover: {e:?}"),
        }
    }
    let missing: Vec<_> = sent.iter().filter(|s| !acked.contains(*s)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(proxy.accepted() >= 2, "no new connection was opened");
    q.teardown().await.unwrap();
}

#[tokio::test]
async fn bad_url_is_invalid_input_naming_the_key() {
    for url in ["", "http://127.0.0.1:5672", "amqp://user:hunter2@127.0.0.1:notaport/%2f"] {
        let e = RabbitQueue::connect(RabbitConfig::new(url, "q")).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{url}: {e:?}");
        assert!(e.to_string().contains("queue.url"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "password shown: {e}");
    }
}

#[tokio::test]
async fn unreachable_broker_is_a_retryable_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = RabbitConfig::new(format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f"), "q");
    c.timeout = Duration::from_secs(2);
    let e = RabbitQueue::connect(c).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.to_string().contains("hunter2"), "password shown: {e}");
}

#[tokio::test]
async fn wrong_credentials_are_a_fatal_error_naming_the_url_key() {
    let Some(url) = common::url() else { return };
    let uri: lapin::uri::AMQPUri = url.parse().unwrap();
    let bad = format!("amqp://{}:wrong-hunter2@{}/%2f", uri.authority.userinfo.username, common::authority(&url));
    let e = RabbitQueue::connect(RabbitConfig::new(bad, "q")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("queue.url"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "password shown: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_durations_are_clamped_not_a_panic() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    assert!(q.receive(1, Duration::MAX, Duration::from_millis(100)).await.unwrap().is_empty());
    q.send(vec![msg("x")]).await.unwrap();
    let got = q.receive(1, Duration::MAX, Duration::MAX).await.unwrap();
    assert_eq!(got.len(), 1);
    q.ack(std::slice::from_ref(&got[0].receipt)).await.unwrap();
    q.teardown().await.unwrap();
}
