//! Redis-specific behaviour beyond the conformance suite: dead-lettering, stale receipts,
//! surviving a Redis restart, and clear errors for bad configuration.

mod common;

use std::time::{Duration, Instant};

use orch_core::error::Error;
use orch_core::queue::{OutMessage, Queue, Receipt};
use orch_redis::{RedisConfig, RedisQueue};

fn msg(s: &str) -> OutMessage {
    OutMessage { payload: s.as_bytes().to_vec(), delay: Duration::ZERO }
}

const VIS: Duration = Duration::from_secs(30);

async fn queue(url: &str, configure: impl FnOnce(&mut RedisConfig)) -> RedisQueue {
    let mut c = RedisConfig::new(url, common::queue_name());
    configure(&mut c);
    let q = RedisQueue::connect(c).await.expect("connect");
    q.setup().await.expect("setup");
    q
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn malformed_entry_is_dead_lettered_and_receive_keeps_going() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    let mut c = raw(&url).await;
    // Written by something that is not orch: no `p`/`a` fields; then one with a bad attempt.
    let _: String =
        redis::cmd("XADD").arg(q.stream_key()).arg("*").arg("hello").arg("world").query_async(&mut c).await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(q.stream_key())
        .arg("*")
        .arg("p")
        .arg("x")
        .arg("a")
        .arg("-1")
        .query_async(&mut c)
        .await
        .unwrap();
    q.send(vec![msg("good")]).await.unwrap();
    let got = q.receive(10, VIS, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload, b"good");
    q.ack(&[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(q.dead_letter_len().await.unwrap(), 2);
    let dead: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(q.dead_letter_key()).arg("-").arg("+").query_async(&mut c).await.unwrap();
    let first = &dead.ids[0];
    assert!(first.get::<String>("reason").unwrap().starts_with("malformed"), "{first:?}");
    assert_eq!(first.get::<String>("hello").as_deref(), Some("world"), "original fields are kept");
    // Nothing is left behind: the stream is empty and nothing is redelivered.
    assert_eq!(q.len().await.unwrap(), 0);
    assert!(q.receive(10, Duration::from_secs(1), Duration::from_millis(300)).await.unwrap().is_empty());
    q.teardown().await.unwrap();
}

#[tokio::test]
async fn message_nacked_past_max_deliveries_goes_to_the_dead_letter_stream() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |c| c.max_deliveries = 3).await;
    q.send(vec![msg("poison")]).await.unwrap();
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let d = q.receive(1, VIS, Duration::from_secs(2)).await.unwrap().remove(0);
        attempts.push(d.attempt);
        q.nack(&d.receipt, Duration::ZERO).await.unwrap();
    }
    assert_eq!(attempts, [1, 2, 3]);
    assert!(q.receive(1, VIS, Duration::from_millis(500)).await.unwrap().is_empty());
    assert_eq!(q.dead_letter_len().await.unwrap(), 1);
    assert_eq!(q.len().await.unwrap(), 0);
    q.teardown().await.unwrap();
}

#[tokio::test]
async fn redelivery_counts_attempts_and_makes_the_old_receipt_stale() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    q.send(vec![msg("slow")]).await.unwrap();
    let first = q.receive(1, Duration::from_secs(1), Duration::from_secs(2)).await.unwrap().remove(0);
    assert_eq!(first.attempt, 1);
    let start = Instant::now();
    let again = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap().remove(0);
    assert!(start.elapsed() < Duration::from_secs(3), "redelivery took {:?}", start.elapsed());
    assert_eq!(again.attempt, 2);
    assert_ne!(first.receipt, again.receipt);
    // The stale receipt neither acks nor nacks the message now held by `again`.
    q.ack(std::slice::from_ref(&first.receipt)).await.unwrap();
    q.nack(&first.receipt, Duration::ZERO).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 1);
    assert!(q.receive(1, VIS, Duration::from_millis(300)).await.unwrap().is_empty(), "stale nack made it visible");
    q.ack(&[again.receipt]).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 0);
    q.teardown().await.unwrap();
}

#[tokio::test]
async fn delayed_send_from_another_instance_is_picked_up_by_a_waiting_receiver() {
    let Some(url) = common::url() else { return };
    let name = common::queue_name();
    let mut c = RedisConfig::new(url.clone(), name.clone());
    c.poll_interval = Duration::from_millis(100);
    let a = RedisQueue::connect(c.clone()).await.unwrap();
    let b = RedisQueue::connect(c).await.unwrap();
    a.setup().await.unwrap();
    let waiting = tokio::spawn(async move { a.receive(1, VIS, Duration::from_secs(5)).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Instant::now();
    b.send(vec![OutMessage { payload: b"later".to_vec(), delay: Duration::from_secs(1) }]).await.unwrap();
    let got = waiting.await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(sent.elapsed() >= Duration::from_millis(950), "early: {:?}", sent.elapsed());
    assert!(sent.elapsed() < Duration::from_secs(2), "late: {:?}", sent.elapsed());
    b.teardown().await.unwrap();
}

#[tokio::test]
async fn garbage_receipt_is_invalid_input() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    let e = q.ack(&[Receipt("not-a-receipt".into())]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    q.teardown().await.unwrap();
}

/// Runs against a `redis-server` of its own, never the shared one: it is killed and started
/// again on the same port (losing its data, as it has no persistence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_redis_restart() {
    let Some(mut server) = common::OwnRedis::start().await else { return };
    let mut c = RedisConfig::new(server.url(), "restart");
    c.connect_timeout = Duration::from_millis(500);
    c.response_timeout = Duration::from_secs(1);
    let q = RedisQueue::connect(c).await.unwrap();
    q.setup().await.unwrap();
    q.send(vec![msg("before")]).await.unwrap();
    let d = q.receive(1, VIS, Duration::from_secs(2)).await.unwrap();
    q.ack(&[d[0].receipt.clone()]).await.unwrap();

    server.kill().await;
    let e = q.send(vec![msg("while down")]).await.unwrap_err();
    assert!(e.is_retryable(), "a down server is a retryable error: {e:?}");
    let e = q.receive(1, VIS, Duration::from_millis(200)).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");

    assert!(server.restart().await, "redis-server did not come back");
    // The manager reconnects on use; the first calls may still see the old connection fail.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match q.send(vec![msg("after")]).await {
            Ok(()) => break,
            Err(e) if e.is_retryable() && Instant::now() < end => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("no recovery after restart: {e:?}"),
        }
    }
    // Redis lost the consumer group with its data: receive creates it again.
    let got = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"after");
    q.ack(&[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 0);
}

#[tokio::test]
async fn bad_url_is_invalid_input_naming_the_key() {
    for url in ["", "http://127.0.0.1:6379", "redis://user:hunter2@127.0.0.1:notaport"] {
        let e = RedisQueue::connect(RedisConfig::new(url, "q")).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{url}: {e:?}");
        assert!(e.to_string().contains("queue.url"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "password shown: {e}");
    }
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = RedisConfig::new(format!("redis://:hunter2@127.0.0.1:{port}"), "q");
    c.connect_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let e = RedisQueue::connect(c).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.to_string().contains("hunter2"), "password shown: {e}");
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn wrong_password_is_a_fatal_error() {
    let Some(mut server) = common::OwnRedis::start().await else { return };
    let mut c = raw(&server.url()).await;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("right").query_async(&mut c).await.unwrap();
    let e = RedisQueue::connect(RedisConfig::new(format!("redis://:wrong@127.0.0.1:{}", server.port), "q"))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(!e.to_string().contains("wrong@"), "password shown: {e}");
    server.kill().await;
}

#[tokio::test]
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
