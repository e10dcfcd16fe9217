//! Redis-specific behaviour beyond the conformance suite: dead-lettering, stale receipts,
//! surviving a Redis restart, and clear errors for bad configuration. Entries orch did not
//! write: `malformed.rs`.

mod common;

use std::time::{Duration, Instant};

use orch_core::error::Error;
use orch_core::queue::{OutMessage, Queue, Receipt};
use orch_redis::{RedisConfig, RedisQueue};
use orch_testkit::fixtures::nack_past_max_deliveries;

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
async fn message_nacked_past_max_deliveries_goes_to_the_dead_letter_stream() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |c| c.max_deliveries = 3).await;
    nack_past_max_deliveries(&q, b"poison", 3, VIS).await;
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
    // Redelivered within one receive's wait, once the 1 s visibility has run out.
    let again = q.receive(1, VIS, Duration::from_secs(5)).await.unwrap().remove(0);
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

async fn in_flight_batches(url: &str, q: &RedisQueue) -> u64 {
    let key = format!("orch:{{{}}}:inflight", q.name());
    redis::cmd("ZCARD").arg(key).query_async(&mut raw(url).await).await.unwrap()
}

#[tokio::test]
async fn partly_acked_batch_gives_back_only_the_rest_and_its_old_receipts_go_stale() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    q.send((0..5).map(|i| msg(&format!("m{i}"))).collect()).await.unwrap();
    let first = q.receive(5, Duration::from_secs(1), Duration::from_secs(2)).await.unwrap();
    assert_eq!(first.len(), 5);
    q.ack(&[first[0].receipt.clone(), first[1].receipt.clone()]).await.unwrap();
    // After the deadline the three unacked ones come back, once, with attempt 2.
    let mut again = q.receive(10, VIS, Duration::from_secs(5)).await.unwrap();
    again.sort_by(|a, b| a.payload.cmp(&b.payload));
    let payloads: Vec<_> = again.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(payloads, [b"m2".to_vec(), b"m3".to_vec(), b"m4".to_vec()]);
    assert!(again.iter().all(|d| d.attempt == 2), "{again:?}");
    // The first receipts of those three are stale now: acking or nacking them does nothing.
    q.ack(&first.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>()).await.unwrap();
    q.nack(&first[2].receipt, Duration::ZERO).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 3);
    assert!(q.receive(10, VIS, Duration::from_millis(300)).await.unwrap().is_empty(), "stale receipt acted");
    q.ack(&again.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 0);
    q.teardown().await.unwrap();
}

#[tokio::test]
async fn expired_batch_is_given_back_in_parts_without_duplicates() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    q.send((0..5).map(|i| msg(&format!("m{i}"))).collect()).await.unwrap();
    assert_eq!(q.receive(5, Duration::from_secs(1), Duration::from_secs(2)).await.unwrap().len(), 5);
    let part = q.receive(2, VIS, Duration::from_secs(5)).await.unwrap();
    assert_eq!(part.len(), 2, "{part:?}");
    let rest = q.receive(10, VIS, Duration::from_secs(2)).await.unwrap();
    assert_eq!(rest.len(), 3, "{rest:?}");
    let mut all: Vec<_> = part.iter().chain(&rest).map(|d| (d.payload.clone(), d.attempt)).collect();
    all.sort();
    assert_eq!(all, (0..5).map(|i| (format!("m{i}").into_bytes(), 2)).collect::<Vec<_>>());
    // A redelivered message's receipt nacks and acks like any other.
    q.nack(&part[0].receipt, Duration::ZERO).await.unwrap();
    let third = q.receive(10, VIS, Duration::from_secs(2)).await.unwrap();
    assert_eq!(third.len(), 1, "{third:?}");
    assert_eq!((third[0].payload.clone(), third[0].attempt), (part[0].payload.clone(), 3));
    let receipts: Vec<_> = part[1..].iter().chain(&rest).chain(&third).map(|d| d.receipt.clone()).collect();
    q.ack(&receipts).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 0);
    assert!(q.receive(10, Duration::from_secs(1), Duration::from_millis(300)).await.unwrap().is_empty());
    q.teardown().await.unwrap();
}

#[tokio::test]
async fn acked_batches_leave_the_in_flight_set_and_receipts_outlive_their_deadline() {
    let Some(url) = common::url() else { return };
    let q = queue(&url, |_| {}).await;
    q.send((0..3).map(|i| msg(&format!("m{i}"))).collect()).await.unwrap();
    let got = q.receive(3, VIS, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(in_flight_batches(&url, &q).await, 1);
    q.ack(&got[..2].iter().map(|d| d.receipt.clone()).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(in_flight_batches(&url, &q).await, 1, "one message of the batch is still in flight");
    q.ack(&[got[2].receipt.clone()]).await.unwrap();
    assert_eq!(in_flight_batches(&url, &q).await, 0);
    // A receipt is valid until its message is delivered again, even past the deadline.
    q.send(vec![msg("late")]).await.unwrap();
    let d = q.receive(1, Duration::from_millis(200), Duration::from_secs(2)).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    q.ack(&[d.receipt]).await.unwrap();
    assert_eq!(q.len().await.unwrap(), 0);
    assert!(q.receive(1, VIS, Duration::from_millis(300)).await.unwrap().is_empty());
    assert_eq!(in_flight_batches(&url, &q).await, 0);
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
    // Not early; arriving within the receiver's wait is what shows it was picked up.
    assert!(sent.elapsed() >= Duration::from_millis(950), "early: {:?}", sent.elapsed());
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
    let e = RedisQueue::connect(c).await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(!e.to_string().contains("hunter2"), "password shown: {e}");
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
