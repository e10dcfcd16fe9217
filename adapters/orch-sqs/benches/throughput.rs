//! Send → receive → ack throughput of [`SqsQueue`] against the raw aws-sdk-sqs batch loop,
//! on the same endpoint in the same run.
//!
//! ```sh
//! eval "$(scripts/services.sh)"
//! cargo bench -p orch-sqs --bench throughput --locked          # N=2000
//! ORCH_BENCH_N=500 cargo bench -p orch-sqs --bench throughput --locked
//! ```
//!
//! Both sides do the same calls, in windows of `ORCH_BENCH_WINDOW` (default 100) messages:
//! `SendMessageBatch` of 10 for the window, then `ReceiveMessage` of up to 10 and
//! `DeleteMessageBatch` of what arrived until the window is acked. (Windows keep the queue
//! shallow, as a wake-up queue is; moto slows down badly with thousands of messages queued.)
//! Each side runs `ORCH_BENCH_ROUNDS` times (default 3), interleaved and alternating which
//! goes first, each on a fresh queue that is deleted afterwards; the medians are compared.
//! Then how soon an unreachable endpoint surfaces as an error (the tests assert only the error).

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use orch_core::queue::{OutMessage, Queue, WakeMessage};
use orch_core::secret::Secret;
use orch_core::types::{Epoch, JobId, JobKind};
use orch_sqs::{SqsConfig, SqsQueue};

type BoxResult<T> = Result<T, Box<dyn StdError>>;

const VIS: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(1);

/// One timed run.
struct Run {
    /// Messages per second, send to last ack.
    rate: f64,
    /// Time spent sending.
    send: Duration,
    /// Time from the first send to the last ack.
    total: Duration,
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| WakeMessage::new(JobId::random(), JobKind::SnosRun, Epoch(i as u64)).encode()).collect()
}

async fn fresh_queue(endpoint: &str) -> BoxResult<SqsQueue> {
    let config = SqsConfig {
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        access_key_id: Some(Secret::new("test".into())),
        secret_access_key: Some(Secret::new("test".into())),
        ..SqsConfig::new(format!("orch-bench-{}", uuid::Uuid::new_v4().simple()))
    };
    let q = SqsQueue::connect(config).await?;
    q.setup().await?;
    Ok(q)
}

/// Messages per second through the port.
async fn through_adapter(endpoint: &str, n: usize, window: usize) -> BoxResult<Run> {
    let q = fresh_queue(endpoint).await?;
    let all = payloads(n);
    let start = Instant::now();
    let mut send = Duration::ZERO;
    for chunk in all.chunks(window) {
        let msgs: Vec<OutMessage> =
            chunk.iter().map(|p| OutMessage { payload: p.clone(), delay: Duration::ZERO }).collect();
        let t = Instant::now();
        q.send(msgs).await?;
        send += t.elapsed();
        let mut done = 0;
        while done < chunk.len() {
            let got = q.receive(10, VIS, WAIT).await?;
            if got.is_empty() {
                return Err(format!("adapter: a window of {} lost messages", chunk.len()).into());
            }
            done += got.len();
            q.ack(&got.into_iter().map(|d| d.receipt).collect::<Vec<_>>()).await?;
        }
    }
    let total = start.elapsed();
    drop_queues(&q).await;
    Ok(Run { rate: n as f64 / total.as_secs_f64(), send, total })
}

/// Deletes the run's queue and dead-letter queue (moto keeps everything in memory).
async fn drop_queues(q: &SqsQueue) {
    for url in [q.queue_url().await, q.dlq_url().await].into_iter().flatten() {
        let _ = q.client().delete_queue().queue_url(url).send().await;
    }
}

/// Messages per second with the SDK alone (plain-text bodies, no decoding).
async fn through_sdk(endpoint: &str, n: usize, window: usize) -> BoxResult<Run> {
    let q = fresh_queue(endpoint).await?;
    let (client, url) = (q.client().clone(), q.queue_url().await?);
    let bodies: Vec<String> = payloads(n).into_iter().map(|p| String::from_utf8_lossy(&p).into_owned()).collect();
    let start = Instant::now();
    let mut send = Duration::ZERO;
    for window in bodies.chunks(window) {
        let t = Instant::now();
        for chunk in window.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(b).build())
                .collect::<Result<Vec<_>, _>>()?;
            let out = client.send_message_batch().queue_url(&url).set_entries(Some(entries)).send().await?;
            if !out.failed.is_empty() {
                return Err(format!("sdk: {} sends failed", out.failed.len()).into());
            }
        }
        send += t.elapsed();
        let mut done = 0;
        while done < window.len() {
            let out = client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(VIS.as_secs() as i32)
                .wait_time_seconds(WAIT.as_secs() as i32)
                .send()
                .await?;
            let msgs = out.messages.unwrap_or_default();
            if msgs.is_empty() {
                return Err(format!("sdk: a window of {} lost messages", window.len()).into());
            }
            done += msgs.len();
            let entries = msgs
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            client.delete_message_batch().queue_url(&url).set_entries(Some(entries)).send().await?;
        }
    }
    let total = start.elapsed();
    drop_queues(&q).await;
    Ok(Run { rate: n as f64 / total.as_secs_f64(), send, total })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// How long a `send` to an endpoint nothing listens on takes to fail, with a 1 s connect
/// timeout and the adapter's default retries (the tests assert only that it is a retryable
/// error naming the endpoint).
async fn unreachable() -> BoxResult<Duration> {
    let config = SqsConfig {
        endpoint: Some("http://127.0.0.1:1".into()),
        region: Some("us-east-1".into()),
        access_key_id: Some(Secret::new("test".into())),
        secret_access_key: Some(Secret::new("test".into())),
        connect_timeout: Duration::from_secs(1),
        ..SqsConfig::new("orch-bench-unreachable")
    };
    let q = SqsQueue::connect(config).await?;
    let start = Instant::now();
    let e = q.send(vec![OutMessage { payload: b"x".to_vec(), delay: Duration::ZERO }]).await.err();
    let took = start.elapsed();
    if !e.is_some_and(|e| e.is_retryable()) {
        return Err("a send to an unreachable endpoint was not a retryable error".into());
    }
    Ok(took)
}

fn main() -> BoxResult<()> {
    let Some(endpoint) = orch_testkit::services::env_or_skip("ORCH_TEST_AWS_ENDPOINT") else {
        return Ok(());
    };
    let n: usize = match std::env::var("ORCH_BENCH_N") {
        Ok(v) => v.parse().map_err(|_| format!("ORCH_BENCH_N={v:?} is not a number"))?,
        Err(_) => 2_000,
    };
    let window: usize = match std::env::var("ORCH_BENCH_WINDOW") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|w| *w > 0)
            .ok_or_else(|| format!("ORCH_BENCH_WINDOW={v:?} is not a positive number"))?,
        Err(_) => 100,
    };
    let rounds: usize = match std::env::var("ORCH_BENCH_ROUNDS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| format!("ORCH_BENCH_ROUNDS={v:?} is not a positive number"))?,
        Err(_) => 3,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // Warm up connections and moto.
        through_sdk(&endpoint, 50, window).await?;
        through_adapter(&endpoint, 50, window).await?;
        let (mut sdk, mut adapter) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            // Alternate which side goes first: the machine's load drifts during a run.
            let (s, a) = if round % 2 == 1 {
                let s = through_sdk(&endpoint, n, window).await?;
                (s, through_adapter(&endpoint, n, window).await?)
            } else {
                let a = through_adapter(&endpoint, n, window).await?;
                (through_sdk(&endpoint, n, window).await?, a)
            };
            println!(
                "round {round}: raw aws-sdk-sqs {:.0} msg/s (send {:.1}s of {:.1}s), SqsQueue {:.0} msg/s (send {:.1}s of {:.1}s), ratio {:.2}x",
                s.rate,
                s.send.as_secs_f64(),
                s.total.as_secs_f64(),
                a.rate,
                a.send.as_secs_f64(),
                a.total.as_secs_f64(),
                a.rate / s.rate
            );
            sdk.push(s.rate);
            adapter.push(a.rate);
        }
        let (sdk, adapter) = (median(&mut sdk), median(&mut adapter));
        println!(
            "sqs send->receive->ack, N={n} (windows of {window}), median of {rounds} rounds: raw aws-sdk-sqs {sdk:.0} msg/s, SqsQueue {adapter:.0} msg/s, ratio {:.2}x",
            adapter / sdk
        );
        println!("unreachable endpoint: send failed (retryable) after {:?} (connect timeout 1s)", unreachable().await?);
        Ok(())
    })
}
