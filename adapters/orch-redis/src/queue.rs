//! [`RedisQueue`]: a [`Queue`] on a Redis stream with a consumer group.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch_core::error::{Error, Result};
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use orch_core::secret::redact_url;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::config::RedisConfig;
use crate::error::{map_err, BACKEND};

/// Longest delay `send` and `nack` accept; longer ones are clamped.
const MAX_DELAY: Duration = Duration::from_secs(30 * 86_400);
/// Longest visibility timeout honoured (longer ones are clamped).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Most messages one `receive` returns, whatever `max` asks.
const MAX_BATCH: usize = 1_000;
/// Most due delayed messages moved into the stream per `receive`.
const PROMOTE_LIMIT: usize = 1_000;
/// Receipts acked per script call (Lua's `unpack` has a stack limit).
const ACK_CHUNK: usize = 1_000;

/// The Redis keys of one queue. The `{…}` hash tag keeps them in one cluster slot, which the
/// scripts (touching several of them at once) need.
#[derive(Debug)]
pub(crate) struct Keys {
    pub(crate) stream: String,
    pub(crate) delayed: String,
    pub(crate) inflight: String,
    pub(crate) dead: String,
}

impl Keys {
    pub(crate) fn new(queue: &str) -> Keys {
        let base = format!("orch:{{{queue}}}");
        Keys {
            stream: format!("{base}:stream"),
            delayed: format!("{base}:delayed"),
            inflight: format!("{base}:inflight"),
            dead: format!("{base}:dead"),
        }
    }
}

#[derive(Debug)]
struct Scripts {
    take: Script,
    ack: Script,
    nack: Script,
    delay: Script,
}

/// A queue on Redis Streams.
///
/// Messages are stream entries (`p` = payload, `a` = attempt) read by one consumer group; a
/// taken entry's visibility deadline sits in a sorted set, and `receive` claims entries past
/// it again (`XCLAIM`). Delayed messages wait in a sorted set scored by due time and join the
/// stream when a `receive` finds them due. Every step that touches more than one key is a Lua
/// script, so a crash never leaves a message half-moved. See the crate's `docs.md`.
///
/// Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: ConnectionManager,
    /// Connections for blocking reads: a blocked command holds its connection, so waiting
    /// receivers must not share the one sends and acks go through.
    blocking: Mutex<Vec<ConnectionManager>>,
    client: redis::Client,
    blocking_config: ConnectionManagerConfig,
    keys: Keys,
    group: String,
    consumer: String,
    queue: String,
    url: String,
    max_deliveries: u32,
    poll: Duration,
    scripts: Scripts,
}

/// A receipt is `<entry id>/<visibility deadline in ms>`: the deadline changes with every
/// delivery, which is what makes an old receipt stale.
fn receipt(id: &str, deadline: i64) -> Receipt {
    Receipt(format!("{id}/{deadline}"))
}

fn parse_receipt(r: &Receipt) -> Result<(&str, i64)> {
    let bad = || {
        Error::invalid_input(
            "receipt",
            format!("{:?} is not a Redis queue receipt (expected <entry id>/<deadline>)", r.0),
        )
    };
    let (id, deadline) = r.0.split_once('/').ok_or_else(bad)?;
    let (ms, seq) = id.split_once('-').ok_or_else(bad)?;
    if ms.is_empty() || seq.is_empty() || !ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok((id, deadline.parse().map_err(|_| bad())?))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The default consumer name: `orch-` and a random id, one per process.
fn process_consumer() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("orch-{}", &token()[..12]))
}

/// A random 32-character token making each delayed member unique.
fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl RedisQueue {
    /// Validates `config` and connects. Fails with `InvalidInput` naming the key for a bad
    /// config or refused credentials, and with a retryable `Unavailable` when the server
    /// cannot be reached within `connect_timeout`.
    pub async fn connect(config: RedisConfig) -> Result<RedisQueue> {
        config.validate()?;
        let raw = config.url.expose();
        let url = redact_url(raw);
        let client = redis::Client::open(raw.as_str()).map_err(|e| {
            Error::invalid_input("queue.url", format!("{url} is not a valid Redis URL: {}", e.category()))
        })?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(2));
        let conn_config = base.clone().set_response_timeout(Some(config.response_timeout));
        // Blocking reads last up to `poll_interval`; their timeout leaves room for that.
        let blocking_config = base.set_response_timeout(Some(config.poll_interval + config.response_timeout));
        let what = format!("connecting to Redis for queue {}", config.queue);
        let conn = match tokio::time::timeout(
            config.connect_timeout * 4,
            ConnectionManager::new_with_config(client.clone(), conn_config),
        )
        .await
        {
            Ok(r) => r.map_err(|e| map_err(e, &what, &url))?,
            Err(_) => {
                return Err(Error::unavailable(
                    BACKEND,
                    format!("{what}: {url} did not answer within {:?}", config.connect_timeout * 4),
                ))
            }
        };
        let consumer = config.consumer.clone().unwrap_or_else(|| process_consumer().to_string());
        let queue = RedisQueue {
            inner: Arc::new(Inner {
                conn,
                blocking: Mutex::new(Vec::new()),
                client,
                blocking_config,
                keys: Keys::new(&config.queue),
                group: config.group.clone(),
                consumer,
                queue: config.queue.clone(),
                url,
                max_deliveries: config.max_deliveries,
                poll: config.poll_interval,
                scripts: Scripts {
                    take: Script::new(include_str!("lua/take.lua")),
                    ack: Script::new(include_str!("lua/ack.lua")),
                    nack: Script::new(include_str!("lua/nack.lua")),
                    delay: Script::new(include_str!("lua/delay.lua")),
                },
            }),
        };
        // A PING proves the credentials and the database index now, not at the first send.
        let mut c = queue.inner.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await.map_err(|e| queue.err(e, "ping"))?;
        Ok(queue)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.queue
    }

    /// The consumer name this instance reads as.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The Redis key of the dead-letter stream (`orch:{<queue>}:dead`). Its entries carry
    /// the original fields plus `reason` and `from` (the original entry id).
    pub fn dead_letter_key(&self) -> &str {
        &self.inner.keys.dead
    }

    /// The Redis key of the main stream (`orch:{<queue>}:stream`).
    pub fn stream_key(&self) -> &str {
        &self.inner.keys.stream
    }

    /// Messages waiting or in flight: stream entries plus delayed ones.
    pub async fn len(&self) -> Result<u64> {
        let mut c = self.inner.conn.clone();
        let (s, d): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.inner.keys.stream)
            .cmd("ZCARD")
            .arg(&self.inner.keys.delayed)
            .query_async(&mut c)
            .await
            .map_err(|e| self.err(e, "count messages"))?;
        Ok(s + d)
    }

    /// Messages in the dead-letter stream.
    pub async fn dead_letter_len(&self) -> Result<u64> {
        let mut c = self.inner.conn.clone();
        redis::cmd("XLEN")
            .arg(&self.inner.keys.dead)
            .query_async(&mut c)
            .await
            .map_err(|e| self.err(e, "count dead letters"))
    }

    /// Deletes every key of this queue (stream, group, delayed and in-flight sets, dead
    /// letters). For tests and `orchestrator teardown`.
    pub async fn teardown(&self) -> Result<()> {
        let k = &self.inner.keys;
        let mut c = self.inner.conn.clone();
        redis::cmd("DEL")
            .arg(&k.stream)
            .arg(&k.delayed)
            .arg(&k.inflight)
            .arg(&k.dead)
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| self.err(e, "delete the queue's keys"))
    }

    fn err(&self, e: redis::RedisError, what: &str) -> Error {
        map_err(e, &format!("{what} (queue {})", self.inner.queue), &self.inner.url)
    }

    async fn create_group(&self) -> Result<()> {
        let mut c = self.inner.conn.clone();
        let r = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.inner.keys.stream)
            .arg(&self.inner.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut c)
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(self.err(e, "create the consumer group")),
        }
    }

    /// One atomic take; creates the group when Redis lost it (a restart without persistence,
    /// or a queue nobody set up).
    async fn take(&self, max: usize, visibility: Duration) -> Result<Taken> {
        let mut c = self.inner.conn.clone();
        let v: Value = match self.take_invocation(max, visibility).invoke_async(&mut c).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::info!(target: "orch::queue", queue = %self.inner.queue, group = %self.inner.group,
                    "consumer group missing (new queue or Redis lost its data); creating it");
                self.create_group().await?;
                self.take_invocation(max, visibility).invoke_async(&mut c).await.map_err(|e| self.err(e, "receive"))?
            }
            Err(e) => return Err(self.err(e, "receive")),
        };
        Taken::parse(v).ok_or_else(|| {
            Error::internal(format!("unexpected reply of the receive script (queue {})", self.inner.queue))
        })
    }

    fn take_invocation(&self, max: usize, visibility: Duration) -> redis::ScriptInvocation<'_> {
        let k = &self.inner.keys;
        let mut i = self.inner.scripts.take.key(&k.stream);
        i.key(&k.delayed)
            .key(&k.inflight)
            .key(&k.dead)
            .arg(&self.inner.group)
            .arg(&self.inner.consumer)
            .arg(max)
            .arg(ms(visibility.min(MAX_VISIBILITY)).max(1))
            .arg(self.inner.max_deliveries)
            .arg(PROMOTE_LIMIT);
        i
    }

    /// Blocks until the stream gets an entry after `last_id`, or `block` passes.
    async fn wait_for_entries(&self, last_id: &str, block: Duration) -> Result<()> {
        let conn = self.inner.blocking.lock().map(|mut p| p.pop()).unwrap_or(None);
        let mut conn = match conn {
            Some(c) => c,
            None => ConnectionManager::new_with_config(self.inner.client.clone(), self.inner.blocking_config.clone())
                .await
                .map_err(|e| self.err(e, "open a connection for blocking reads"))?,
        };
        let r = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(ms(block).max(1))
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(&self.inner.keys.stream)
            .arg(last_id)
            .query_async::<Value>(&mut conn)
            .await;
        if let Ok(mut p) = self.inner.blocking.lock() {
            p.push(conn);
        }
        r.map(|_| ()).map_err(|e| self.err(e, "wait for messages"))
    }
}

/// What the take script returned.
struct Taken {
    got: Vec<Delivery>,
    dead: Vec<(String, String)>,
    wake: Option<Duration>,
    last_id: String,
}

impl Taken {
    fn parse(v: Value) -> Option<Taken> {
        let Value::Array(mut parts) = v else { return None };
        if parts.len() != 4 {
            return None;
        }
        let last_id = string(parts.pop()?)?;
        let wake = match parts.pop()? {
            Value::Int(n) if n >= 0 => Some(Duration::from_millis(n as u64)),
            Value::Int(_) => None,
            _ => return None,
        };
        let Value::Array(dead) = parts.pop()? else { return None };
        let Value::Array(out) = parts.pop()? else { return None };
        let mut got = Vec::with_capacity(out.len());
        for m in out {
            let Value::Array(f) = m else { return None };
            let mut f = f.into_iter();
            let id = string(f.next()?)?;
            let Value::Int(deadline) = f.next()? else { return None };
            let Value::Int(attempt) = f.next()? else { return None };
            let Value::BulkString(payload) = f.next()? else { return None };
            got.push(Delivery {
                payload,
                receipt: receipt(&id, deadline),
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            });
        }
        let dead = dead
            .into_iter()
            .filter_map(|d| match d {
                Value::Array(f) if f.len() == 2 => {
                    let mut f = f.into_iter();
                    Some((string(f.next()?)?, string(f.next()?)?))
                }
                _ => None,
            })
            .collect();
        Some(Taken { got, dead, wake, last_id })
    }
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities { native_delay: false, fifo: false, dead_letter: true, max_delay: MAX_DELAY }
    }

    async fn setup(&self) -> Result<()> {
        self.create_group().await
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let k = &self.inner.keys;
        let mut now = redis::pipe();
        let mut later = self.inner.scripts.delay.key(&k.delayed);
        let (mut n_now, mut n_later) = (0usize, 0usize);
        for m in messages {
            if m.delay.is_zero() {
                now.cmd("XADD").arg(&k.stream).arg("*").arg("p").arg(m.payload).arg("a").arg(1).ignore();
                n_now += 1;
            } else {
                let mut member = format!("{}:1:", token()).into_bytes();
                member.extend_from_slice(&m.payload);
                later.arg(ms(m.delay.min(MAX_DELAY))).arg(member);
                n_later += 1;
            }
        }
        let mut c = self.inner.conn.clone();
        if n_now > 0 {
            now.query_async::<()>(&mut c).await.map_err(|e| self.err(e, "send"))?;
        }
        if n_later > 0 {
            later.invoke_async::<u64>(&mut c).await.map_err(|e| self.err(e, "send delayed messages"))?;
        }
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(MAX_BATCH);
        // A huge `wait` (or `Duration::MAX`) must not overflow the clock.
        let deadline = tokio::time::Instant::now() + wait.min(MAX_DELAY);
        loop {
            let taken = self.take(max, visibility).await?;
            for (id, reason) in &taken.dead {
                tracing::warn!(target: "orch::queue", backend = BACKEND, queue = %self.inner.queue, entry = %id,
                    reason = %reason, dead_letter = %self.inner.keys.dead, "message moved to the dead-letter stream");
            }
            let now = tokio::time::Instant::now();
            if !taken.got.is_empty() || now >= deadline {
                return Ok(taken.got);
            }
            // Block until a new entry arrives, the next known deadline, or the poll interval
            // (which bounds how late a delay set by another process is noticed).
            let mut block = (deadline - now).min(self.inner.poll);
            if let Some(w) = taken.wake {
                block = block.min(w);
            }
            if block.is_zero() {
                continue;
            }
            self.wait_for_entries(&taken.last_id, block).await?;
        }
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        let parsed = receipts.iter().map(parse_receipt).collect::<Result<Vec<_>>>()?;
        let mut c = self.inner.conn.clone();
        for chunk in parsed.chunks(ACK_CHUNK) {
            let k = &self.inner.keys;
            let mut inv = self.inner.scripts.ack.key(&k.stream);
            inv.key(&k.inflight).arg(&self.inner.group);
            for (id, deadline) in chunk {
                inv.arg(*id).arg(*deadline);
            }
            inv.invoke_async::<u64>(&mut c).await.map_err(|e| self.err(e, "ack"))?;
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let (id, deadline) = parse_receipt(receipt)?;
        let k = &self.inner.keys;
        let mut c = self.inner.conn.clone();
        self.inner
            .scripts
            .nack
            .key(&k.stream)
            .key(&k.inflight)
            .key(&k.delayed)
            .arg(&self.inner.group)
            .arg(id)
            .arg(deadline)
            .arg(ms(delay.min(MAX_DELAY)))
            .arg(token())
            .invoke_async::<u64>(&mut c)
            .await
            .map_err(|e| self.err(e, "nack"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_garbage_is_invalid_input() {
        let r = receipt("1700000000000-3", 1_700_000_030_000);
        assert_eq!(parse_receipt(&r).unwrap(), ("1700000000000-3", 1_700_000_030_000));
        for bad in ["", "x", "1-2", "a-b/3", "1-2/x", "/5"] {
            let e = parse_receipt(&Receipt(bad.into())).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keys::new("jobs");
        for key in [&k.stream, &k.delayed, &k.inflight, &k.dead] {
            assert!(key.starts_with("orch:{jobs}:"), "{key}");
        }
    }
}
