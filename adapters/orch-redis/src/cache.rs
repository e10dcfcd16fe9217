//! [`RedisBlockCache`]: a read-through cache of L2 blocks shared by several watchers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::chain::{BlockInfo, ChainSource, StateUpdate};
use orch_core::error::{Error, Result};
use orch_core::secret::redact_url;
use orch_core::types::BlockNumber;
use orch_core::Felt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::RedisCacheConfig;
use crate::error::{map_err, BACKEND};

/// How often a reader waiting for another reader's fetch looks for the value.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// A [`ChainSource`] that keeps the blocks and state updates it fetched from `inner` in Redis
/// (JSON, with a TTL), so several watchers of one chain fetch each block once.
///
/// Only facts that never change are cached: `block`, `state_update` and `nonce_at` of blocks
/// the inner source returned (final blocks, by the `ChainSource` contract); `latest_block`
/// always goes to `inner`. A miss takes a short lock in Redis so that concurrent readers of
/// the same block wait for one fetch instead of all fetching.
///
/// Redis is an optimisation only: when it fails or is slow (past `timeout`), the read goes to
/// `inner` and a warning is logged; a read never fails because of Redis. Errors of `inner`
/// are returned as they are and never cached.
#[derive(Debug, Clone)]
pub struct RedisBlockCache {
    inner: Arc<dyn ChainSource>,
    conn: ConnectionManager,
    prefix: String,
    ttl: Duration,
    lock: Duration,
    timeout: Duration,
    url: String,
    release: Arc<redis::Script>,
}

impl RedisBlockCache {
    /// Validates `config` and connects. Fails with `InvalidInput` naming the key for a bad
    /// config and with a retryable `Unavailable` when Redis cannot be reached: a deployment
    /// that configured a cache should learn at start that it does not work.
    pub async fn connect(config: RedisCacheConfig, inner: Arc<dyn ChainSource>) -> Result<RedisBlockCache> {
        config.validate()?;
        let raw = config.url.expose();
        let url = redact_url(raw);
        let client = redis::Client::open(raw.as_str()).map_err(|e| {
            Error::invalid_input("chain.cache.url", format!("{url} is not a valid Redis URL: {}", e.category()))
        })?;
        let cm = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let what = "connecting to the Redis block cache";
        let conn = tokio::time::timeout(config.timeout * 4, ConnectionManager::new_with_config(client, cm))
            .await
            .map_err(|_| {
                Error::unavailable(BACKEND, format!("{what}: {url} did not answer within {:?}", config.timeout * 4))
            })?
            .map_err(|e| map_err(e, what, &url))?;
        let mut c = conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await.map_err(|e| map_err(e, what, &url))?;
        Ok(RedisBlockCache {
            inner,
            conn,
            prefix: format!("orch:{{{}}}:cache", config.namespace),
            ttl: config.ttl,
            lock: config.fetch_lock,
            timeout: config.timeout,
            url,
            release: Arc::new(redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            )),
        })
    }

    /// Fetches from the inner source and stores a successful result with the TTL.
    async fn fetch_and_store<T, F, Fut>(&self, key: &str, fetch: F) -> Result<T>
    where
        T: Serialize,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let fetched = fetch().await;
        if let Ok(v) = &fetched {
            match serde_json::to_vec(v) {
                Ok(json) => {
                    let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
                    let mut put = redis::cmd("SET");
                    put.arg(key).arg(json).arg("PX").arg(ttl);
                    let _: Option<()> = self.redis(put, key).await;
                }
                Err(e) => tracing::warn!(target: "orch::chain", key, error = %e, "cannot encode a block for the cache"),
            }
        }
        fetched
    }

    /// One Redis command with the cache's timeout; `None` (logged) on any failure.
    async fn redis<T: redis::FromRedisValue>(&self, cmd: redis::Cmd, key: &str) -> Option<T> {
        let mut c = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                let e = map_err(e, "block cache", &self.url);
                tracing::warn!(target: "orch::chain", backend = BACKEND, key, error = %e,
                    "block cache unavailable; reading from the chain source");
                None
            }
            Err(_) => {
                tracing::warn!(target: "orch::chain", backend = BACKEND, key, timeout = ?self.timeout,
                    "block cache timed out; reading from the chain source");
                None
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<Option<T>> {
        let raw: Option<Vec<u8>> = self.redis(redis::Cmd::get(key), key).await?;
        Some(raw.and_then(|b| match serde_json::from_slice(&b) {
            Ok(v) => Some(v),
            Err(e) => {
                // Written by another version or program: refetch and overwrite.
                tracing::warn!(target: "orch::chain", key, error = %e, "unreadable block cache entry; refetching");
                None
            }
        }))
    }

    /// Reads `key` from Redis, or fetches it once (whoever holds the lock fetches; the others
    /// wait for the value) and stores it.
    async fn cached<T, F, Fut>(&self, key: String, fetch: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match self.get::<T>(&key).await {
            Some(Some(v)) => return Ok(v),
            Some(None) => {}
            None => return fetch().await,
        }
        let lock_key = format!("{key}:lock");
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lock_ms = u64::try_from(self.lock.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut set = redis::cmd("SET");
        set.arg(&lock_key).arg(&token).arg("NX").arg("PX").arg(lock_ms);
        let locked: Option<Option<String>> = self.redis(set, &lock_key).await;
        match locked {
            // Redis failed: fetch without caching.
            None => return fetch().await,
            // Someone else is fetching: wait for their value, then give up and fetch.
            Some(None) => {
                let end = tokio::time::Instant::now() + self.lock;
                while tokio::time::Instant::now() < end {
                    tokio::time::sleep(LOCK_POLL).await;
                    match self.get::<T>(&key).await {
                        Some(Some(v)) => return Ok(v),
                        Some(None) => {}
                        None => return fetch().await,
                    }
                }
            }
            Some(Some(_)) => {}
        }
        // Another reader may have stored the value between our miss and our lock.
        let fetched = match self.get::<T>(&key).await {
            Some(Some(v)) => Ok(v),
            _ => self.fetch_and_store(&key, fetch).await,
        };
        // Release the lock (also after a failed fetch, so waiters stop waiting), unless it
        // expired meanwhile and another reader holds it now.
        let mut c = self.conn.clone();
        let mut release = self.release.key(&lock_key);
        release.arg(&token);
        let release = release.invoke_async::<i64>(&mut c);
        if let Ok(Err(e)) = tokio::time::timeout(self.timeout, release).await {
            tracing::debug!(target: "orch::chain", key = %lock_key, error = %e, "cannot release a block cache lock; it expires");
        }
        fetched
    }
}

#[async_trait]
impl ChainSource for RedisBlockCache {
    async fn latest_block(&self) -> Result<Option<BlockNumber>> {
        self.inner.latest_block().await
    }

    async fn block(&self, number: BlockNumber) -> Result<BlockInfo> {
        self.cached(format!("{}:block:{number}", self.prefix), || self.inner.block(number)).await
    }

    async fn state_update(&self, number: BlockNumber) -> Result<StateUpdate> {
        self.cached(format!("{}:state_update:{number}", self.prefix), || self.inner.state_update(number)).await
    }

    async fn nonce_at(&self, number: BlockNumber, contract: Felt) -> Result<Felt> {
        let key = format!("{}:nonce:{number}:{}", self.prefix, contract.to_hex());
        self.cached(key, || self.inner.nonce_at(number, contract)).await
    }
}
