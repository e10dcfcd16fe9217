//! Messages per second through `RabbitQueue` (send with confirms → receive → ack of N small
//! messages in batches of 100) against the same work done with raw lapin (publish with
//! confirms, `basic_consume`, `basic_ack`) on the same broker, in the same run. Prints both
//! and the ratio. Then how late a delay between two tiers arrives (the tests assert only that
//! it is never early; the documented bound is less than the smallest tier).
//!
//! `ORCH_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo bench -p orch-rabbit --bench throughput`

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use orch_core::queue::{OutMessage, Queue};
use orch_rabbit::{RabbitConfig, RabbitQueue};
use orch_testkit::throughput::{self, payload, Sides};

const N: usize = 20_000;
const BATCH: usize = 100;

fn name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn adapter(url: &str) -> Duration {
    let mut c = RabbitConfig::new(url, name("bench"));
    c.prefetch = BATCH as u16;
    let q = RabbitQueue::connect(c).await.expect("connect");
    q.setup().await.expect("setup");
    let t = throughput::round_trip(&q, N, BATCH, Duration::from_secs(1)).await;
    q.teardown().await.expect("teardown");
    t
}

async fn raw(url: &str) -> Duration {
    let queue = name("bench-raw");
    let conn = Connection::connect(url, ConnectionProperties::default()).await.expect("connect");
    let publish = conn.create_channel().await.expect("channel");
    publish.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    publish
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let consume = conn.create_channel().await.expect("channel");
    consume.basic_qos(BATCH as u16, BasicQosOptions::default()).await.expect("qos");
    let mut consumer = consume
        .basic_consume(queue.as_str().into(), "bench".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consume");
    let start = Instant::now();
    for b in 0..N / BATCH {
        let mut confirms = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let props = BasicProperties::default().with_delivery_mode(2);
            let c = publish
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload(b * BATCH + i),
                    props,
                )
                .await
                .expect("publish");
            confirms.push(c);
        }
        for c in confirms {
            c.await.expect("confirm");
        }
        for _ in 0..BATCH {
            let d = consumer.next().await.expect("consumer open").expect("delivery");
            consume.basic_ack(d.delivery_tag, BasicAckOptions::default()).await.expect("ack");
        }
    }
    let t = start.elapsed();
    publish.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await.expect("delete");
    let _ = conn.close(200, "bench done".into()).await;
    t
}

/// How late a 1.5 s delay (between the 1 s and 5 s tiers: served as 1 s + 1 s) arrives,
/// receiving as soon as it is due, over `runs` messages one after another; prints the range.
async fn delay_lateness(url: &str, runs: usize) {
    let c = RabbitConfig::new(url, name("bench-delay"));
    let smallest = c.delay_tiers.first().copied().unwrap_or_default();
    let q = RabbitQueue::connect(c).await.expect("connect");
    q.setup().await.expect("setup");
    let delay = Duration::from_millis(1500);
    let mut late = Vec::with_capacity(runs);
    for i in 0..runs {
        let sent = Instant::now();
        q.send(vec![OutMessage { payload: payload(i), delay }]).await.expect("send");
        let d = loop {
            let mut got = q.receive(1, Duration::from_secs(30), Duration::from_millis(100)).await.expect("receive");
            if let Some(d) = got.pop() {
                break d;
            }
            assert!(sent.elapsed() < Duration::from_secs(60), "the delayed message never arrived");
        };
        late.push(sent.elapsed().saturating_sub(delay));
        q.ack(&[d.receipt]).await.expect("ack");
    }
    q.teardown().await.expect("teardown");
    late.sort();
    println!("rabbitmq delay of {delay:?} between tiers, {runs} runs:");
    println!("  late by     : {:?} (min) .. {:?} (max); smallest tier {smallest:?}", late[0], late[runs - 1]);
}

fn main() {
    let Some(url) = orch_testkit::services::env_or_skip("ORCH_TEST_AMQP_URL") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sides = Sides {
        title: &format!("rabbitmq queue throughput, N={N}, batch={BATCH} (publish+confirm -> consume -> ack)"),
        adapter: "RabbitQueue",
        raw: "raw lapin",
    };
    rt.block_on(throughput::compare(sides, N, 3, || adapter(&url), || raw(&url)));
    rt.block_on(delay_lateness(&url, 5));
}
