//! Messages per second through `RedisQueue` (send → receive → ack of N small messages in
//! batches of 100) against the same work done with raw `redis` commands (XADD pipeline,
//! XREADGROUP, XACK) on the same server, in the same run. Prints both and the ratio. Then how
//! soon `connect` to a server that is not there fails (the tests assert only the error).
//!
//! `ORCH_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p orch-redis --bench throughput`

use std::time::{Duration, Instant};

use orch_core::queue::Queue;
use orch_redis::{RedisConfig, RedisQueue};
use orch_testkit::throughput::{self, payload, Sides};

const N: usize = 20_000;
const BATCH: usize = 100;

async fn adapter(url: &str) -> Duration {
    let name = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let q = RedisQueue::connect(RedisConfig::new(url, name)).await.expect("connect");
    q.setup().await.expect("setup");
    let t = throughput::round_trip(&q, N, BATCH, Duration::from_secs(1)).await;
    assert_eq!(q.len().await.expect("len"), 0);
    q.teardown().await.expect("teardown");
    t
}

async fn raw(url: &str) -> Duration {
    let stream = format!("bench-raw-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let client = redis::Client::open(url).expect("url");
    let mut c = client.get_multiplexed_async_connection().await.expect("connect");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await
        .expect("group");
    let start = Instant::now();
    for b in 0..N / BATCH {
        let mut p = redis::pipe();
        for i in 0..BATCH {
            p.cmd("XADD").arg(&stream).arg("*").arg("p").arg(payload(b * BATCH + i)).arg("a").arg(1).ignore();
        }
        let _: () = p.query_async(&mut c).await.expect("xadd");
        let mut got = 0;
        while got < BATCH {
            let r: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(BATCH - got)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query_async(&mut c)
                .await
                .expect("xreadgroup");
            let ids: Vec<String> = r.keys.into_iter().flat_map(|k| k.ids).map(|e| e.id).collect();
            got += ids.len();
            let _: u64 = redis::cmd("XACK").arg(&stream).arg("g").arg(&ids).query_async(&mut c).await.expect("xack");
        }
    }
    let t = start.elapsed();
    let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut c).await.expect("del");
    t
}

/// How long `connect` to a port nothing listens on takes to fail, with the 300 ms connect
/// timeout of the tests (which assert only that it is a retryable error naming the server).
async fn unreachable() -> Duration {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut c = RedisConfig::new(format!("redis://127.0.0.1:{port}"), "q");
    c.connect_timeout = Duration::from_millis(300);
    let start = Instant::now();
    let e = RedisQueue::connect(c).await.expect_err("nothing listens there");
    let took = start.elapsed();
    assert!(e.is_retryable(), "{e:?}");
    took
}

fn main() {
    let Some(url) = orch_testkit::services::env_or_skip("ORCH_TEST_REDIS_URL") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let sides = Sides {
        title: &format!("redis queue throughput, N={N}, batch={BATCH} (send -> receive -> ack)"),
        adapter: "RedisQueue",
        raw: "raw redis (XADD pipeline / XREADGROUP / XACK)",
    };
    rt.block_on(throughput::compare(sides, N, 3, || adapter(&url), || raw(&url)));
    println!(
        "unreachable server: connect failed (retryable) after {:?} (connect timeout 300ms)",
        rt.block_on(unreachable())
    );
}
