//! orch on MongoDB against the same server's raw `find_one_and_update` rate, in the same run.
//!
//! The MongoDB-wire test server here (SecantusDB) is slow, so absolute figures say little;
//! the ratio says how much of the server's raw conditional-update capacity orch's job
//! lifecycle uses. A no-op job costs orch at least two conditional writes (claim, complete)
//! plus its share of batched creates, so ~0.5× of the raw rate is the ceiling.
//!
//! `cargo bench -p orch-bench --bench vs_raw_mongo` with `ORCH_TEST_MONGO_URL` set
//! (`ORCH_BENCH_MONGO_N`, default 300).
//!
//! - **orch**: `Engine` on `orch_mongo::MongoStore`, 8 workers, no queue; N no-op jobs
//!   created in one batch, span until all are completed.
//! - **raw**: N documents inserted (outside the span), then N `find_one_and_update` calls by
//!   `_id` with a status condition, 8 at a time (the same concurrency), each returning the
//!   updated document — the primitive a claim is made of.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use mongodb::bson::doc;
use mongodb::options::ReturnDocument;
use orch_core::secret::Secret;
use orch_mongo::{MongoConfig, MongoStore};

mod common;
use common::{orch_noop_run, BoxError, CONCURRENCY};

const DEFAULT_N: u64 = 300;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}_{:x}", nanos & 0xffff_ffff_ffff)
}

async fn orch_run(url: &str, n: u64) -> Result<Duration, BoxError> {
    let database = unique("orch_bench");
    let config =
        MongoConfig { url: Secret::new(url.to_string()), database: database.clone(), ..MongoConfig::default() };
    let store = MongoStore::connect_and_migrate(config).await?;
    // One batch: creates are cheap next to this server's per-document updates.
    let elapsed = orch_noop_run(store.database(), n, 64, n as usize, Duration::from_secs(900)).await;
    mongodb::Client::with_uri_str(url).await?.database(&database).drop().await?;
    elapsed
}

async fn raw_run(url: &str, n: u64) -> Result<Duration, BoxError> {
    let client = mongodb::Client::with_uri_str(url).await?;
    let database = unique("raw_bench");
    let coll = client.database(&database).collection::<mongodb::bson::Document>("jobs");
    let docs: Vec<_> = (0..n as i64).map(|i| doc! { "_id": i, "status": "created", "version": 1_i64 }).collect();
    coll.insert_many(docs).await?;
    let start = Instant::now();
    let results: Vec<Result<bool, mongodb::error::Error>> = stream::iter(0..n as i64)
        .map(|i| {
            let coll = coll.clone();
            async move {
                let got = coll
                    .find_one_and_update(
                        doc! { "_id": i, "status": "created" },
                        doc! { "$set": { "status": "processing" }, "$inc": { "version": 1_i64 } },
                    )
                    .return_document(ReturnDocument::After)
                    .await?;
                Ok(got.is_some())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = start.elapsed();
    for r in results {
        if !r? {
            return Err("raw: a find_one_and_update matched nothing".into());
        }
    }
    client.database(&database).drop().await?;
    Ok(elapsed)
}

fn main() -> Result<(), BoxError> {
    let Ok(url) = std::env::var("ORCH_TEST_MONGO_URL") else {
        println!("skipping: set ORCH_TEST_MONGO_URL (scripts/services.sh exports it)");
        return Ok(());
    };
    let n: u64 = match std::env::var("ORCH_BENCH_MONGO_N") {
        Ok(v) => v.parse()?,
        Err(_) => DEFAULT_N,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("orch on MongoDB vs raw find_one_and_update on the same server, N={n}, concurrency={CONCURRENCY}");
    let raw = rt.block_on(raw_run(&url, n))?;
    let orch = rt.block_on(orch_run(&url, n))?;
    let raw2 = rt.block_on(raw_run(&url, n))?;
    let raw = raw.min(raw2);
    let (rr, or) = (n as f64 / raw.as_secs_f64(), n as f64 / orch.as_secs_f64());
    println!("  raw find_one_and_update: {:.3}s  {rr:.0} ops/s (best of 2, before and after orch)", raw.as_secs_f64());
    println!("  orch no-op lifecycle:    {:.3}s  {or:.0} jobs/s", orch.as_secs_f64());
    println!("N={n}: orch {or:.0} jobs/s = {:.2}x of raw find_one_and_update ({rr:.0} ops/s)", or / rr);
    Ok(())
}
