//! The driver the queue adapters' throughput benches share: the send → receive → ack loop on
//! an adapter, and the same-run comparison against the SDK's own raw loop that every such
//! bench prints.

use std::future::Future;
use std::time::{Duration, Instant};

use orch_core::queue::{OutMessage, Queue};

/// Message `i` of a run: about the size of a wake message.
pub fn payload(i: usize) -> Vec<u8> {
    format!("{{\"v\":1,\"job\":\"{i:016x}\",\"kind\":\"snos_run\",\"epoch\":3}}").into_bytes()
}

/// Sends `n` messages through `q` in batches of `batch`, receiving and acking each batch
/// before the next is sent (each `receive` waits up to `wait`); returns the time it took.
/// Panics if a call fails: a bench has nothing better to do.
pub async fn round_trip(q: &dyn Queue, n: usize, batch: usize, wait: Duration) -> Duration {
    let start = Instant::now();
    for b in 0..n / batch {
        let out = (0..batch).map(|i| OutMessage { payload: payload(b * batch + i), delay: Duration::ZERO });
        q.send(out.collect()).await.expect("send");
        let mut got = 0;
        while got < batch {
            let d = q.receive(batch - got, Duration::from_secs(30), wait).await.expect("receive");
            got += d.len();
            q.ack(&d.into_iter().map(|d| d.receipt).collect::<Vec<_>>()).await.expect("ack");
        }
    }
    start.elapsed()
}

/// What a comparison prints about its two sides.
pub struct Sides<'a> {
    /// The bench's headline, e.g. `redis queue throughput, N=20000, batch=100`.
    pub title: &'a str,
    /// The adapter's name, e.g. `RedisQueue`.
    pub adapter: &'a str,
    /// The raw side, e.g. `raw redis (XADD pipeline / XREADGROUP / XACK)`.
    pub raw: &'a str,
}

/// Runs both sides once to warm up, then `rounds` times each, alternating; prints the best
/// rate of each in messages per second and the ratio adapter / raw, which it returns. Each
/// call of a side moves `n` messages and returns how long that took.
pub async fn compare<A, R, FA, FR>(sides: Sides<'_>, n: usize, rounds: usize, mut adapter: A, mut raw: R) -> f64
where
    A: FnMut() -> FA,
    R: FnMut() -> FR,
    FA: Future<Output = Duration>,
    FR: Future<Output = Duration>,
{
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    adapter().await;
    raw().await;
    let (mut a, mut r) = (0.0f64, 0.0f64);
    for _ in 0..rounds.max(1) {
        a = a.max(rate(adapter().await));
        r = r.max(rate(raw().await));
    }
    println!("{}, best of {rounds}:", sides.title);
    println!("  {:<12}: {a:>10.0} msg/s", sides.adapter);
    println!("  {:<12}: {r:>10.0} msg/s", sides.raw);
    println!("  ratio       : {:.2}x raw", a / r);
    a / r
}
