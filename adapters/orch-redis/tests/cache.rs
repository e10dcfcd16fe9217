//! `RedisBlockCache` against a real Redis: shared fetches and fallback when Redis fails.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::chain::{BlockInfo, ChainSource, StateUpdate};
use orch_core::error::Result;
use orch_core::types::BlockNumber;
use orch_core::Felt;
use orch_redis::{RedisBlockCache, RedisCacheConfig};
use orch_testkit::sim::SimChain;

/// The simulated chain, counting the reads that reach it.
#[derive(Debug)]
struct Counting {
    chain: SimChain,
    blocks: AtomicU64,
    updates: AtomicU64,
}

impl Counting {
    fn new(n: u64) -> Arc<Counting> {
        Arc::new(Counting { chain: SimChain::new(n), blocks: AtomicU64::new(0), updates: AtomicU64::new(0) })
    }
}

#[async_trait]
impl ChainSource for Counting {
    async fn latest_block(&self) -> Result<Option<BlockNumber>> {
        self.chain.latest_block().await
    }
    async fn block(&self, n: BlockNumber) -> Result<BlockInfo> {
        self.blocks.fetch_add(1, Ordering::SeqCst);
        // A slow RPC, so concurrent readers really overlap.
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.chain.block(n).await
    }
    async fn state_update(&self, n: BlockNumber) -> Result<StateUpdate> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.chain.state_update(n).await
    }
    async fn nonce_at(&self, n: BlockNumber, c: Felt) -> Result<Felt> {
        self.chain.nonce_at(n, c).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_caches_fetch_each_block_once() {
    let Some(url) = common::url() else { return };
    const N: u64 = 20;
    let chain = Counting::new(N);
    let mut config = RedisCacheConfig::new(url, common::queue_name());
    // Generous: a command slower than this bypasses the cache (by design), which on a loaded
    // test machine would count as an extra fetch.
    config.timeout = Duration::from_secs(3);
    let a = RedisBlockCache::connect(config.clone(), chain.clone()).await.unwrap();
    let b = RedisBlockCache::connect(config, chain.clone()).await.unwrap();
    let reference = SimChain::new(N);
    // Both watchers read every block three times, concurrently.
    let mut tasks = Vec::new();
    for cache in [a.clone(), b.clone(), a, b] {
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                for n in 0..N {
                    out.push((cache.block(n).await.unwrap(), cache.state_update(n).await.unwrap()));
                }
            }
            out
        }));
    }
    for t in tasks {
        for (i, (block, update)) in t.await.unwrap().into_iter().enumerate() {
            let n = i as u64 % N;
            assert_eq!(block, reference.block(n).await.unwrap());
            assert_eq!(update, reference.state_update(n).await.unwrap());
        }
    }
    assert_eq!(chain.blocks.load(Ordering::SeqCst), N, "inner block() hits");
    assert_eq!(chain.updates.load(Ordering::SeqCst), N, "inner state_update() hits");
}

#[tokio::test]
async fn errors_of_the_inner_source_are_returned_and_not_cached() {
    let Some(url) = common::url() else { return };
    let chain = Counting::new(1);
    let cache =
        RedisBlockCache::connect(RedisCacheConfig::new(url, common::queue_name()), chain.clone()).await.unwrap();
    let e = cache.block(5).await.unwrap_err();
    assert!(matches!(e, orch_core::error::Error::NotFound { .. }), "{e:?}");
    chain.chain.set_blocks(6);
    cache.block(5).await.unwrap();
    assert_eq!(chain.blocks.load(Ordering::SeqCst), 2);
}

/// A Redis of its own, killed mid-run: reads go on through the inner source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_the_chain_when_redis_is_down() {
    let Some(mut server) = common::OwnRedis::start().await else { return };
    let chain = Counting::new(5);
    let mut config = RedisCacheConfig::new(server.url(), "fallback");
    config.timeout = Duration::from_millis(200);
    let cache = RedisBlockCache::connect(config, chain.clone()).await.unwrap();
    cache.state_update(1).await.unwrap();
    cache.state_update(1).await.unwrap();
    assert_eq!(chain.updates.load(Ordering::SeqCst), 1);
    server.kill().await;
    for _ in 0..3 {
        assert_eq!(cache.state_update(1).await.unwrap(), SimChain::new(5).state_update(1).await.unwrap());
    }
    assert_eq!(chain.updates.load(Ordering::SeqCst), 4, "every read went to the chain");
    // Back up (empty): the cache fills again.
    assert!(server.restart().await);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut served_by_redis = false;
    while !served_by_redis && std::time::Instant::now() < end {
        let before = chain.updates.load(Ordering::SeqCst);
        cache.state_update(2).await.unwrap();
        served_by_redis = chain.updates.load(Ordering::SeqCst) == before;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_by_redis, "the cache was not used again after Redis came back");
}
