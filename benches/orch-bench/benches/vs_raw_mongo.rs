//! orch on MongoDB against the same server's raw `find_one_and_update` rate, in the same run.
//!
//! The MongoDB-wire test server here (SecantusDB) is slow, so absolute figures say little;
//! the ratio says how orch's job lifecycle compares with the server's raw per-document
//! conditional-update rate. A no-op job costs orch two single-document conditional writes
//! (claim, complete) plus its share of reads (claim candidates, one wake lookup per batch of
//! results) and of the batched create. orch sends a batch's writes together (`bulkWrite`
//! commands with per-update results, MongoDB 8.0+), the raw loop one request per document, so
//! the ratio is not capped at 0.5×.
//!
//! `cargo bench -p orch-bench --bench vs_raw_mongo` with `ORCH_TEST_MONGO_URL` set
//! (`ORCH_BENCH_MONGO_N`, default 300).
//!
//! - **orch**: `Engine` on `orch_mongo::MongoStore`, 8 workers, no queue; N no-op jobs
//!   created in one batch, span until all are completed. Its collection carries orch's four
//!   secondary indexes, which every write maintains.
//! - **raw** (the headline ratio): N documents inserted (outside the span), no secondary
//!   index, then N `find_one_and_update` calls by `_id` with a status condition, 8 at a time
//!   (the same concurrency), each returning the updated document — the primitive a claim is
//!   made of. SecantusDB answers `findAndModify` with an `_id` plus another condition by a
//!   collection scan (orch-mongo's docs.md, quirk 6), so this rate falls as N grows.
//! - **raw update_one** (shown for context, not in the ratio): the same loop with
//!   `update_one` (no document returned), which SecantusDB takes by `_id`.

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
    let elapsed =
        orch_noop_run(store.database(), n, 64, n as usize, Duration::from_millis(5), Duration::from_secs(900)).await;
    mongodb::Client::with_uri_str(url).await?.database(&database).drop().await?;
    elapsed
}

/// The raw per-document request.
#[derive(Clone, Copy)]
enum Raw {
    FindOneAndUpdate,
    UpdateOne,
}

async fn raw_run(url: &str, n: u64, how: Raw) -> Result<Duration, BoxError> {
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
                let filter = doc! { "_id": i, "status": "created" };
                let update = doc! { "$set": { "status": "processing" }, "$inc": { "version": 1_i64 } };
                Ok(match how {
                    Raw::FindOneAndUpdate => {
                        coll.find_one_and_update(filter, update).return_document(ReturnDocument::After).await?.is_some()
                    }
                    Raw::UpdateOne => coll.update_one(filter, update).await?.matched_count == 1,
                })
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = start.elapsed();
    for r in results {
        if !r? {
            return Err("raw: an update matched nothing".into());
        }
    }
    client.database(&database).drop().await?;
    Ok(elapsed)
}

fn main() -> Result<(), BoxError> {
    let Some(url) = orch_testkit::services::env_or_skip("ORCH_TEST_MONGO_URL") else {
        return Ok(());
    };
    let n: u64 = match std::env::var("ORCH_BENCH_MONGO_N") {
        Ok(v) => v.parse()?,
        Err(_) => DEFAULT_N,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("orch on MongoDB vs raw find_one_and_update on the same server, N={n}, concurrency={CONCURRENCY}");
    let raw = rt.block_on(raw_run(&url, n, Raw::FindOneAndUpdate))?;
    let upd = rt.block_on(raw_run(&url, n, Raw::UpdateOne))?;
    let orch = rt.block_on(orch_run(&url, n))?;
    let upd2 = rt.block_on(raw_run(&url, n, Raw::UpdateOne))?;
    let raw2 = rt.block_on(raw_run(&url, n, Raw::FindOneAndUpdate))?;
    let (raw, upd) = (raw.min(raw2), upd.min(upd2));
    let (rr, ur, or) = (n as f64 / raw.as_secs_f64(), n as f64 / upd.as_secs_f64(), n as f64 / orch.as_secs_f64());
    println!("  raw find_one_and_update: {:.3}s  {rr:.0} ops/s (best of 2, before and after orch)", raw.as_secs_f64());
    println!("  raw update_one:          {:.3}s  {ur:.0} ops/s (best of 2, before and after orch)", upd.as_secs_f64());
    println!("  orch no-op lifecycle:    {:.3}s  {or:.0} jobs/s", orch.as_secs_f64());
    println!("N={n}: orch = {:.2}x of raw update_one (context)", or / ur);
    println!("N={n}: orch {or:.0} jobs/s = {:.2}x of raw find_one_and_update ({rr:.0} ops/s)", or / rr);
    Ok(())
}
