//! Kafka-specific behaviour beyond the conformance suite: idempotent setup, dead-lettering,
//! stale receipts, committed offsets never skipping an unacked message, surviving dropped
//! connections and an outage, and clear errors for bad configuration or endpoints.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use orch_core::error::Error;
use orch_core::queue::{OutMessage, Queue, Receipt};
use orch_kafka::{KafkaConfig, KafkaQueue};
use orch_testkit::fixtures::nack_past_max_deliveries;
use orch_testkit::proxy::CutProxy;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

fn msg(s: &str) -> OutMessage {
    OutMessage { payload: s.as_bytes().to_vec(), delay: Duration::ZERO }
}

const VIS: Duration = Duration::from_secs(30);
/// Upper bound for anything that must not hang (not a speed check).
const HANG: Duration = Duration::from_secs(60);

async fn queue(brokers: &str, configure: impl FnOnce(&mut KafkaConfig)) -> KafkaQueue {
    let mut c = common::config(brokers);
    configure(&mut c);
    let q = KafkaQueue::connect(c).await.expect("connect");
    q.setup().await.expect("setup");
    q
}

/// Receives until `n` messages arrived (or `HANG` passed).
async fn receive_n(q: &KafkaQueue, n: usize, vis: Duration) -> Vec<orch_core::queue::Delivery> {
    let end = Instant::now() + HANG;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < end {
        out.extend(q.receive(n - out.len(), vis, Duration::from_millis(500)).await.expect("receive"));
    }
    out
}

/// Every record of `topic` (read from the start by a fresh group), with its headers, until
/// `n` arrived.
async fn read_topic(brokers: &str, topic: &str, n: usize) -> Vec<(Vec<u8>, HashMap<String, String>)> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", common::name())
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let end = Instant::now() + HANG;
    while out.len() < n && Instant::now() < end {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), c.recv()).await else { continue };
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        out.push((m.payload().unwrap_or_default().to_vec(), headers));
    }
    out
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_and_a_second_instance_shares_the_topics() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |_| {}).await;
    q.setup().await.expect("second setup");
    let mut c = common::config(&brokers);
    c.topic = q.topic().to_string();
    c.group = q.group().to_string();
    let other = KafkaQueue::connect(c).await.unwrap();
    other.setup().await.expect("setup by another instance");
    other.send(vec![msg("shared")]).await.unwrap();
    let got = receive_n(&q, 1, VIS).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"shared");
    q.ack(&[got[0].receipt.clone()]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_without_setup_says_to_run_setup() {
    let Some(brokers) = common::brokers() else { return };
    let q = KafkaQueue::connect(common::config(&brokers)).await.unwrap();
    let e = q.receive(1, VIS, Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    assert!(e.to_string().contains("queue.topic") && e.to_string().contains("setup"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_record_is_dead_lettered_and_receive_keeps_going() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |c| c.partitions = 1).await;
    // Written by something that is not orch: no headers; then one with a garbage attempt.
    let p = producer(&brokers);
    p.send(FutureRecord::<(), [u8]>::to(q.topic()).payload(b"foreign"), Duration::from_secs(10)).await.unwrap();
    let bad = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header { key: "orch-attempt", value: Some("zero") });
    p.send(FutureRecord::<(), [u8]>::to(q.topic()).payload(b"garbled").headers(bad), Duration::from_secs(10))
        .await
        .unwrap();
    q.send(vec![msg("good")]).await.unwrap();
    let got = receive_n(&q, 1, VIS).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload, b"good");
    q.ack(&[got[0].receipt.clone()]).await.unwrap();
    let dead = read_topic(&brokers, q.dead_letter_topic(), 2).await;
    let payloads: HashSet<&[u8]> = dead.iter().map(|(p, _)| p.as_slice()).collect();
    assert_eq!(payloads, HashSet::from([&b"foreign"[..], &b"garbled"[..]]));
    for (_, h) in &dead {
        assert!(h.get("orch-reason").is_some_and(|r| r.starts_with("malformed")), "{h:?}");
        assert!(h.get("orch-from").is_some_and(|f| f.starts_with(q.topic())), "{h:?}");
    }
    // Nothing else comes out of the queue.
    assert!(q.receive(10, Duration::from_secs(1), Duration::from_millis(500)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_nacked_past_max_deliveries_goes_to_the_dead_letter_topic() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |c| c.max_deliveries = 3).await;
    nack_past_max_deliveries(&q, b"poison", 3, VIS).await;
    let dead = read_topic(&brokers, q.dead_letter_topic(), 1).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, b"poison");
    assert_eq!(dead[0].1.get("orch-reason").map(String::as_str), Some("max_deliveries"));
    assert!(q.receive(1, VIS, Duration::from_secs(1)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_counts_attempts_and_makes_the_old_receipt_stale() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |_| {}).await;
    q.send(vec![msg("slow")]).await.unwrap();
    let first = receive_n(&q, 1, Duration::from_secs(1)).await.remove(0);
    assert_eq!(first.attempt, 1);
    let again = receive_n(&q, 1, VIS).await.remove(0);
    assert_eq!(again.payload, b"slow");
    assert_eq!(again.attempt, 2);
    assert_ne!(first.receipt, again.receipt);
    // The stale receipt neither acks nor nacks the message now held by `again`.
    q.ack(std::slice::from_ref(&first.receipt)).await.unwrap();
    q.nack(&first.receipt, Duration::ZERO).await.unwrap();
    assert!(q.receive(1, VIS, Duration::from_secs(1)).await.unwrap().is_empty(), "stale receipt freed the message");
    q.ack(&[again.receipt]).await.unwrap();
}

/// The committed offset of partition 0 of `topic` for `group`, once it equals `want` or
/// `patience` passed.
async fn committed(brokers: &str, group: &str, topic: &str, want: i64, patience: Duration) -> Option<i64> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let end = Instant::now() + patience;
    loop {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let got = c.committed_offsets(tpl, Duration::from_secs(5)).ok().and_then(|t| {
            match t.find_partition(topic, 0)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }
        });
        if got == Some(want) || Instant::now() >= end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_commit_only_the_finished_prefix_so_an_unacked_message_is_not_skipped() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |c| c.partitions = 1).await;
    q.send(vec![msg("m0"), msg("m1"), msg("m2")]).await.unwrap();
    let got = receive_n(&q, 3, VIS).await;
    let by_payload: HashMap<Vec<u8>, Receipt> = got.into_iter().map(|d| (d.payload, d.receipt)).collect();
    // m1 and m2 acked, m0 still in flight: nothing may be committed past m0.
    q.ack(&[by_payload[&b"m1"[..]].clone(), by_payload[&b"m2"[..]].clone()]).await.unwrap();
    // Another receive runs the pump's commit step; the position must stay at m0 (offset 0).
    let _ = q.receive(1, VIS, Duration::from_millis(500)).await.unwrap();
    let group = q.group().to_string();
    // Given time to (wrongly) commit past m0, the position is still before it.
    let early = committed(&brokers, &group, q.topic(), 3, Duration::from_secs(3)).await;
    assert!(early.is_none_or(|o| o == 0), "committed {early:?} past the unacked m0");
    q.ack(&[by_payload[&b"m0"[..]].clone()]).await.unwrap();
    assert_eq!(committed(&brokers, &group, q.topic(), 3, HANG).await, Some(3), "all three acked: position 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_is_redelivered_by_the_next_instance_of_the_group() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |c| {
        c.partitions = 1;
        c.session_timeout = Duration::from_secs(6);
    })
    .await;
    q.send(vec![msg("m0"), msg("m1")]).await.unwrap();
    let got = receive_n(&q, 2, VIS).await;
    let m1 = got.iter().find(|d| d.payload == b"m1").expect("m1").receipt.clone();
    q.ack(&[m1]).await.unwrap();
    let mut c = common::config(&brokers);
    c.topic = q.topic().to_string();
    c.group = q.group().to_string();
    c.session_timeout = Duration::from_secs(6);
    // The first instance goes away holding m0 unacked; its partition moves to the second.
    drop(got);
    let topic = q.topic().to_string();
    drop(q);
    let next = KafkaQueue::connect(c).await.unwrap();
    let mut seen = Vec::new();
    let end = Instant::now() + HANG;
    while !seen.contains(&b"m0".to_vec()) && Instant::now() < end {
        for d in next.receive(10, VIS, Duration::from_millis(500)).await.unwrap() {
            next.ack(&[d.receipt]).await.unwrap();
            seen.push(d.payload);
        }
    }
    assert!(seen.contains(&b"m0".to_vec()), "m0 was lost; got {seen:?} from {topic}");
}

fn text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

/// Receives from `q`, up to `max` at a time, acking each delivery as it arrives, until `n`
/// arrived (or `HANG` passed); their payloads as text, in arrival order.
async fn take_acking(q: &KafkaQueue, n: usize, max: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let end = Instant::now() + HANG;
    while seen.len() < n && Instant::now() < end {
        for d in q.receive(max, VIS, Duration::from_millis(500)).await.unwrap() {
            q.ack(&[d.receipt]).await.unwrap();
            seen.push(text(&d.payload));
        }
    }
    seen
}

/// Writes `n` orch records (`r0`, `r1`, …) to partition 0 of `topic` as one produced batch
/// (the producer lingers until all are queued), as orch's own producer batches a `send`.
async fn one_batch(brokers: &str, topic: &str, n: usize) -> Vec<String> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "200")
        .set("acks", "all")
        .create()
        .unwrap();
    let payloads: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let mut pending = Vec::new();
    for payload in &payloads {
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "orch-attempt", value: Some("1") });
        let record = FutureRecord::<(), str>::to(topic).partition(0).payload(payload).headers(headers);
        pending.push(p.send_result(record).map_err(|(e, _)| e).expect("queued"));
    }
    let mut offsets = Vec::new();
    for f in pending {
        let delivery = f.await.expect("delivery report").map_err(|(e, _)| e).expect("delivered");
        offsets.push(delivery.offset);
    }
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>(), "one partition, from offset 0");
    payloads
}

/// The group's position ends up inside a produced batch (three of ten records acked), and
/// the partition moves to another instance: that one must resume at the fourth record. (A
/// broker that serves a fetch from inside a batch by skipping to the next batch, as tansu 0.6
/// does, lost the other seven.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_owner_resumes_inside_a_produced_batch_and_skips_nothing() {
    let Some(brokers) = common::brokers() else { return };
    let configure = |c: &mut KafkaConfig| {
        c.partitions = 1;
        c.session_timeout = Duration::from_secs(6);
    };
    let q = queue(&brokers, configure).await;
    let payloads = one_batch(&brokers, q.topic(), 10).await;
    let first = receive_n(&q, 3, VIS).await;
    assert_eq!(first.iter().map(|d| text(&d.payload)).collect::<Vec<_>>(), payloads[..3]);
    q.ack(&first.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>()).await.unwrap();
    let group = q.group().to_string();
    assert_eq!(committed(&brokers, &group, q.topic(), 3, HANG).await, Some(3), "position inside the batch");
    let mut c = common::config(&brokers);
    configure(&mut c);
    c.topic = q.topic().to_string();
    c.group = group;
    drop(q);
    let next = KafkaQueue::connect(c).await.unwrap();
    let seen = take_acking(&next, 7, 10).await;
    assert_eq!(seen, payloads[3..], "the seven records after the committed position, once each");
}

/// With room for one message, fetching pauses after every record and resumes at the next
/// offset, inside the produced batch: every record still arrives, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_paused_and_resumed_inside_a_produced_batch_skips_nothing() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |c| {
        c.partitions = 1;
        c.prefetch = 1;
    })
    .await;
    let payloads = one_batch(&brokers, q.topic(), 10).await;
    assert_eq!(take_acking(&q, payloads.len(), 1).await, payloads);
}

/// Against a tansu of its own behind a proxy (the broker advertises the proxy's port, so
/// every connection goes through it): connections are cut mid-stream, then the network is
/// down for a while. Every message sent is still received and acked.
#[test]
fn dropped_connections_and_an_outage_lose_nothing() {
    if common::brokers().is_none() {
        return;
    }
    let runtime =
        || tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("a runtime");
    let broker_port = orch_testkit::tansu::free_addr().port();
    let proxy = CutProxy::start(("127.0.0.1", broker_port));
    let Some(_tansu) = common::private_tansu(broker_port, proxy.port()) else { return };
    // The queue lives on a runtime of its own that ends, closing the queue's consumer, before
    // the broker stops (also when an assertion fails): librdkafka's consumer close waits for
    // the group coordinator, so closing after the broker is gone blocks.
    runtime().block_on(lose_nothing_across_cuts(&proxy));
}

async fn lose_nothing_across_cuts(proxy: &CutProxy) {
    let brokers = format!("127.0.0.1:{}", proxy.port());
    let q = queue(&brokers, |c| {
        c.send_timeout = Duration::from_secs(3);
        c.session_timeout = Duration::from_secs(6);
    })
    .await;

    let mut sent = HashSet::new();
    let mut seen = HashSet::new();
    let send = |batch: usize| (0..20).map(move |i| format!("b{batch}-{i}")).collect::<Vec<_>>();
    let mut pending: Vec<String> = Vec::new();
    for batch in 0..6 {
        pending.extend(send(batch));
        // Retryable failures while the network is cut: send the batch again (duplicates are fine).
        let end = Instant::now() + HANG;
        loop {
            match q.send(pending.iter().map(|s| msg(s)).collect()).await {
                Ok(()) => break,
                Err(e) if e.is_retryable() && Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("send did not recover: {e:?}"),
            }
        }
        sent.extend(pending.drain(..));
        for d in q.receive(15, VIS, Duration::from_millis(500)).await.unwrap() {
            seen.insert(String::from_utf8(d.payload).unwrap());
            q.ack(&[d.receipt]).await.unwrap();
        }
        match batch {
            1 | 3 => proxy.drop_connections(),
            2 => {
                proxy.cut();
                tokio::time::sleep(Duration::from_secs(2)).await;
                let e = q.send(vec![msg("while down")]).await;
                if let Err(e) = &e {
                    assert!(e.is_retryable(), "an unreachable broker is a retryable error: {e:?}");
                } else {
                    sent.insert("while down".to_string());
                }
                proxy.restore();
            }
            _ => {}
        }
    }
    let end = Instant::now() + HANG;
    while !sent.is_subset(&seen) && Instant::now() < end {
        for d in q.receive(50, VIS, Duration::from_millis(500)).await.unwrap_or_default() {
            seen.insert(String::from_utf8(d.payload).unwrap());
            let _ = q.ack(&[d.receipt]).await;
        }
    }
    let lost: Vec<_> = sent.difference(&seen).collect();
    assert!(lost.is_empty(), "lost {} of {}: {lost:?}", lost.len(), sent.len());
}

#[tokio::test]
async fn bad_config_is_invalid_input_naming_the_key() {
    for (brokers, key) in [("", "queue.brokers"), ("kafka://h:9092", "queue.brokers"), ("h:notaport", "queue.brokers")]
    {
        let e = KafkaQueue::connect(KafkaConfig::new(brokers, "q")).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{brokers}: {e:?}");
        assert!(e.to_string().contains(key), "{e}");
    }
    let e = KafkaQueue::connect(KafkaConfig::new("127.0.0.1:9092", "bad topic")).await.unwrap_err();
    assert!(e.to_string().contains("queue.topic"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_a_retryable_error_naming_it() {
    let port = orch_testkit::tansu::free_addr().port();
    let mut c = KafkaConfig::new(format!("127.0.0.1:{port}"), "q");
    c.connect_timeout = Duration::from_millis(500);
    let e = tokio::time::timeout(HANG, KafkaQueue::connect(c)).await.expect("connect hung").unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

/// Something that is not Kafka (it answers every request with HTTP) on the configured port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_endpoint_is_a_clear_error_not_a_hang() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let mut c = KafkaConfig::new(format!("127.0.0.1:{port}"), "q");
    c.connect_timeout = Duration::from_secs(1);
    let e = tokio::time::timeout(HANG, KafkaQueue::connect(c)).await.expect("connect hung").unwrap_err();
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")) && e.to_string().contains("queue.brokers"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_receipt_is_invalid_input() {
    let Some(brokers) = common::brokers() else { return };
    let q = KafkaQueue::connect(common::config(&brokers)).await.unwrap();
    let e = q.ack(&[Receipt("not-a-receipt".into())]).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    let e = q.nack(&Receipt("m.0.1".into()), Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_durations_are_clamped_not_a_panic() {
    let Some(brokers) = common::brokers() else { return };
    let q = queue(&brokers, |_| {}).await;
    assert!(q.receive(1, Duration::MAX, Duration::from_millis(100)).await.unwrap().is_empty());
    q.send(vec![msg("x"), OutMessage { payload: b"far".to_vec(), delay: Duration::MAX }]).await.unwrap();
    let got = q.receive(1, Duration::MAX, Duration::MAX).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, b"x");
    q.ack(std::slice::from_ref(&got[0].receipt)).await.unwrap();
}
