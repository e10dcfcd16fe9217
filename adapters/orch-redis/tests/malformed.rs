//! Messages orch cannot use, written to the live Redis by a foreign producer: where they end
//! up, the warning that names the problem, and that the next good message still gets through.
//!
//! Two levels: a stream entry without orch's fields is dead-lettered by the adapter
//! (`orch::queue` warning); an entry in orch's format whose payload is not a wake message is
//! delivered, and the engine drops it (`orch::engine` warning; the scenario is
//! `orch_testkit::suite::queue::engine_drops_malformed_payloads_and_acts_on_the_next`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::queue::{OutMessage, Queue};
use orch_redis::{RedisConfig, RedisQueue};
use orch_testkit::{logs, suite};

const VIS: Duration = Duration::from_secs(30);

async fn queue(url: &str) -> RedisQueue {
    let q = RedisQueue::connect(RedisConfig::new(url, common::queue_name())).await.expect("connect");
    q.setup().await.expect("setup");
    q
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// Polls `done` every 20ms for up to 30s; the caller asserts on what it then finds.
async fn wait_until(mut done: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while !done().await && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_entries_are_dead_lettered_with_a_warning_and_receive_goes_on() {
    let Some(url) = common::url() else { return };
    logs::install();
    let q = queue(&url).await;
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
    q.send(vec![OutMessage { payload: b"good".to_vec(), delay: Duration::ZERO }]).await.unwrap();
    let got = q.receive(10, VIS, Duration::from_secs(2)).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload, b"good");
    q.ack(&[got[0].receipt.clone()]).await.unwrap();

    // Dead-lettered with the reason and the original fields.
    assert_eq!(q.dead_letter_len().await.unwrap(), 2);
    let dead: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(q.dead_letter_key()).arg("-").arg("+").query_async(&mut c).await.unwrap();
    for d in &dead.ids {
        assert!(d.get::<String>("reason").unwrap().starts_with("malformed"), "{d:?}");
    }
    assert_eq!(dead.ids[0].get::<String>("hello").as_deref(), Some("world"), "original fields are kept");
    assert_eq!(dead.ids[1].get::<String>("a").as_deref(), Some("-1"), "original fields are kept");

    // One warning per entry, naming the queue, the entry, the reason and where it went.
    let warnings = logs::queue_warnings(q.name());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for (w, d) in warnings.iter().zip(&dead.ids) {
        assert!(w.text.starts_with("message moved to the dead-letter stream"), "{w:?}");
        assert!(w.text.contains("reason=malformed"), "{w:?}");
        assert!(w.text.contains(&format!("entry={}", d.get::<String>("from").unwrap())), "{w:?} / {d:?}");
        assert!(w.text.contains(&format!("dead_letter={}", q.dead_letter_key())), "{w:?}");
    }

    // Nothing is left behind: the stream is empty and nothing is redelivered.
    assert_eq!(q.len().await.unwrap(), 0);
    assert!(q.receive(10, Duration::from_secs(1), Duration::from_millis(300)).await.unwrap().is_empty());
    q.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_drops_payloads_that_are_not_wake_messages_with_a_warning_and_acts_on_the_next() {
    let Some(url) = common::url() else { return };
    let q = queue(&url).await;
    suite::queue::engine_drops_malformed_payloads_and_acts_on_the_next(Arc::new(q.clone())).await;
    // Dropped means acked, not dead-lettered.
    wait_until(async || q.len().await.unwrap() == 0).await;
    assert_eq!(q.len().await.unwrap(), 0);
    assert_eq!(q.dead_letter_len().await.unwrap(), 0);
    q.teardown().await.unwrap();
}
