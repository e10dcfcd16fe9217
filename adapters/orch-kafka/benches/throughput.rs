//! Messages per second through `KafkaQueue` (send → receive → ack of N small messages in
//! batches of 100) against the same work done with rdkafka's own producer and consumer
//! (produce a batch, await the acknowledgements, consume it, commit) on the same broker, in
//! the same run. Prints both and the ratio.
//!
//! `ORCH_TEST_KAFKA_BROKERS=127.0.0.1:9092 cargo bench -p orch-kafka --bench throughput`

use std::time::{Duration, Instant};

use orch_core::queue::Queue;
use orch_kafka::{KafkaConfig, KafkaQueue};
use orch_testkit::throughput::{self, payload, Sides};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

const N: usize = 10_000;
const BATCH: usize = 100;
const PARTITIONS: i32 = 6;

fn name() -> String {
    format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn config(brokers: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(brokers, name());
    c.group = name();
    c.partitions = PARTITIONS;
    c
}

async fn adapter(brokers: &str) -> Duration {
    let q = KafkaQueue::connect(config(brokers)).await.expect("connect");
    q.setup().await.expect("setup");
    // Join the group before the clock starts (the raw side does the same).
    let _ = q.receive(1, Duration::from_secs(30), Duration::from_secs(3)).await.expect("warm-up receive");
    let t = throughput::round_trip(&q, N, BATCH, Duration::from_secs(5)).await;
    // Topics are left in place: deleting topics on tansu 0.6 breaks librdkafka clients
    // (see docs.md); names are random.
    t
}

/// The same flow with plain rdkafka: same producer settings and headers, one consumer in a
/// group with manual async commits.
async fn raw(brokers: &str) -> Duration {
    // Topics come from the adapter's setup (same partitions), so creation is not measured.
    let q = KafkaQueue::connect(config(brokers)).await.expect("connect");
    q.setup().await.expect("setup");
    let topic = q.topic().to_string();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", name())
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let _ = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await;
    let start = Instant::now();
    for b in 0..N / BATCH {
        let mut pending = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let p = payload(b * BATCH + i);
            let h = OwnedHeaders::new().insert(Header { key: "orch-attempt", value: Some("1") });
            let r = FutureRecord::<(), [u8]>::to(&topic).payload(&p).headers(h);
            pending.push(producer.send_result(r).map_err(|(e, _)| e).expect("enqueue"));
        }
        for f in pending {
            f.await.expect("delivery").map_err(|(e, _)| e).expect("produce");
        }
        for _ in 0..BATCH {
            let m = consumer.recv().await.expect("consume");
            consumer.store_offset_from_message(&m).ok();
            let _ = m.payload();
        }
        consumer.commit_consumer_state(CommitMode::Async).ok();
    }
    let t = start.elapsed();
    drop(consumer);
    drop(q);
    t
}

fn main() {
    let Some(brokers) = orch_testkit::services::env_or_skip("ORCH_TEST_KAFKA_BROKERS") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sides = Sides {
        title: &format!(
            "kafka queue throughput, N={N}, batch={BATCH}, partitions={PARTITIONS} (send -> receive -> ack)"
        ),
        adapter: "KafkaQueue",
        raw: "raw rdkafka (FutureProducer acks=all / StreamConsumer / async commit)",
    };
    rt.block_on(throughput::compare(sides, N, 3, || adapter(&brokers), || raw(&brokers)));
}
