//! [`RedisQueue`]: a [`Queue`] on a Redis stream with a consumer group.

use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Scratch key of a fast receive (the group's cursor before its read); empty between calls.
    pub(crate) cursor: String,
}

impl Keys {
    pub(crate) fn new(queue: &str) -> Keys {
        let base = format!("orch:{{{queue}}}");
        Keys {
            stream: format!("{base}:stream"),
            delayed: format!("{base}:delayed"),
            inflight: format!("{base}:inflight"),
            dead: format!("{base}:dead"),
            cursor: format!("{base}:cursor"),
        }
    }
}

#[derive(Debug)]
struct Scripts {
    take: Script,
    ack: Script,
    nack: Script,
    delay: Script,
    bury: Script,
}

/// The two halves of a fast receive, sent with `EVAL` (not `EVALSHA`): inside `MULTI` a
/// missing script would fail alone while the `XREADGROUP` between them still ran, leaving
/// its entries in no batch. Redis caches the compiled script by its hash either way.
const PRE: &str = include_str!("lua/pre.lua");
const POST: &str = include_str!("lua/post.lua");

/// Why the receive scripts dead-letter an entry that is not orch's (as in `take.lua`).
const MALFORMED: &str = "malformed: an orch entry has fields p (payload) and a (attempt >= 1)";

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
    /// A fast receive saw a batch past its deadline but had no room to claim its messages:
    /// the next receive runs the full take script first.
    reclaim_due: AtomicBool,
}

/// The batch a delivery came in: the id range one `XREADGROUP` handed out and its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Batch<'a> {
    first: &'a str,
    last: &'a str,
    deadline: i64,
}

/// One parsed receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed<'a> {
    id: &'a str,
    /// The entry's delivery count (pending list) at this delivery: every later delivery
    /// raises it, which is what makes an old receipt stale.
    count: u64,
    /// `None` for a message claimed again after its visibility timeout.
    batch: Option<Batch<'a>>,
}

/// A receipt is `<entry id>/<delivery count>/<deadline>/<first id>/<last id>` for a message
/// read as new, `<entry id>/<delivery count>` for one delivered again.
fn receipt(id: &str, count: u64, batch: Option<Batch<'_>>) -> Receipt {
    match batch {
        Some(b) => Receipt(format!("{id}/{count}/{}/{}/{}", b.deadline, b.first, b.last)),
        None => Receipt(format!("{id}/{count}")),
    }
}

/// A stream entry id `<ms>-<seq>` as numbers (which order like the ids), or `None`.
fn entry_id(s: &str) -> Option<(u64, u64)> {
    let digits = |p: &str| (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok()).flatten();
    let (ms, seq) = s.split_once('-')?;
    Some((digits(ms)?, digits(seq)?))
}

fn parse_receipt(r: &Receipt) -> Result<Parsed<'_>> {
    let bad = || {
        Error::invalid_input(
            "receipt",
            format!(
                "{:?} is not a Redis queue receipt (expected <entry id>/<delivery count>[/<deadline>/<first id>/<last id>])",
                r.0
            ),
        )
    };
    let mut parts = r.0.split('/');
    let id = parts.next().ok_or_else(bad)?;
    let n = entry_id(id).ok_or_else(bad)?;
    let count = parts.next().filter(|c| c.bytes().all(|b| b.is_ascii_digit())).and_then(|c| c.parse().ok());
    let count = count.ok_or_else(bad)?;
    let batch = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (None, ..) => None,
        (Some(deadline), Some(first), Some(last), None) => {
            // The entry lies in its batch's range (`(` before the first id: exclusive): the
            // batch check vouches for nothing else.
            let (open, from) = first.strip_prefix('(').map_or((false, first), |f| (true, f));
            let (f, l) = (entry_id(from).ok_or_else(bad)?, entry_id(last).ok_or_else(bad)?);
            if !((f < n || (f == n && !open)) && n <= l) {
                return Err(bad());
            }
            Some(Batch { first, last, deadline: deadline.parse().map_err(|_| bad())? })
        }
        _ => return Err(bad()),
    };
    Ok(Parsed { id, count, batch })
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
                    bury: Script::new(include_str!("lua/bury.lua")),
                },
                reclaim_due: AtomicBool::new(false),
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
            .arg(&k.cursor)
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

    /// Takes up to `max` messages: usually the fast way (new entries only), with the full
    /// take script when a batch's deadline passed, so its messages are claimed again.
    async fn take(&self, max: usize, visibility: Duration) -> Result<Taken> {
        if self.inner.reclaim_due.swap(false, Ordering::Relaxed) {
            return self.take_all(max, visibility).await;
        }
        let (mut taken, expired) = self.take_new(max, visibility).await?;
        if expired {
            if taken.got.len() < max {
                let more = self.take_all(max - taken.got.len(), visibility).await?;
                taken.got.extend(more.got);
                taken.dead.extend(more.dead);
                (taken.wake, taken.last_id) = (more.wake, more.last_id);
            } else {
                self.inner.reclaim_due.store(true, Ordering::Relaxed);
            }
        }
        Ok(taken)
    }

    /// The fast take, one round trip: `MULTI`, a script that promotes due delayed messages
    /// and notes the group's cursor, `XREADGROUP` straight to this client (no trip through
    /// Lua), a script that records what it handed out as one batch, `EXEC`. Returns whether a
    /// batch's deadline has passed. Entries that are not orch's, or past `max_deliveries`,
    /// go to the dead-letter stream in a second call (a crash before it leaves them in their
    /// batch, and the full take script buries them after the deadline).
    async fn take_new(&self, max: usize, visibility: Duration) -> Result<(Taken, bool)> {
        let k = &self.inner.keys;
        let mut p = redis::pipe();
        p.atomic().ignore_errors();
        p.cmd("EVAL").arg(PRE).arg(5).arg(&k.stream).arg(&k.delayed).arg(&k.inflight).arg(&k.cursor).arg(&k.dead);
        p.arg(&self.inner.group).arg(PROMOTE_LIMIT);
        p.cmd("XREADGROUP").arg("GROUP").arg(&self.inner.group).arg(&self.inner.consumer).arg("COUNT").arg(max);
        p.arg("STREAMS").arg(&k.stream).arg(">");
        p.cmd("EVAL").arg(POST).arg(4).arg(&k.stream).arg(&k.delayed).arg(&k.inflight).arg(&k.cursor);
        p.arg(&self.inner.group).arg(ms(visibility.min(MAX_VISIBILITY)).max(1));
        let mut c = self.inner.conn.clone();
        let mut created = false;
        let [pre, read, post] = loop {
            let v: Value = p.query_async(&mut c).await.map_err(|e| self.err(e, "receive"))?;
            let Ok::<[Value; 3], _>(parts) = (match v {
                Value::Array(parts) => parts.try_into(),
                _ => Err(Vec::new()),
            }) else {
                return Err(self.bad_reply());
            };
            match &parts[1] {
                Value::ServerError(e) if e.code() == "NOGROUP" && !created => {
                    tracing::info!(target: "orch::queue", queue = %self.inner.queue, group = %self.inner.group,
                        "consumer group missing (new queue or Redis lost its data); creating it");
                    self.create_group().await?;
                    created = true;
                }
                _ => break parts,
            }
        };
        let [pre, read, post] = [pre, read, post].map(|v| v.extract_error().map_err(|e| self.err(e, "receive")));
        let (pre, read, post) = (pre?, read?, post?);
        let (expired, mut dead) = parse_pre(pre).ok_or_else(|| self.bad_reply())?;
        let (deadline, first, last, wake, last_id) = parse_post(post).ok_or_else(|| self.bad_reply())?;
        let batch = (!first.is_empty()).then_some(Batch { first: &first, last: &last, deadline });
        let entries = stream_entries(read).ok_or_else(|| self.bad_reply())?;
        if batch.is_none() && !entries.is_empty() {
            // post.lua found no cursor to record a range from (cannot happen while pre.lua
            // runs first in the same MULTI): record the entries one by one instead.
            let member = entries.iter().fold(String::from("L"), |m, (id, _)| m + " " + id);
            redis::cmd("ZADD")
                .arg(&k.inflight)
                .arg(deadline)
                .arg(member)
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| self.err(e, "receive"))?;
        }
        let mut got = Vec::new();
        let mut bury: Vec<(String, &str)> = Vec::new();
        for (id, fields) in entries {
            let mut f = fields.into_iter();
            let (mut payload, mut attempt) = (None, None);
            while let (Some(name), Some(value)) = (f.next(), f.next()) {
                match (&name, value) {
                    (Value::BulkString(n), Value::BulkString(v)) if n == b"p" => payload = Some(v),
                    (Value::BulkString(n), Value::BulkString(v)) if n == b"a" => attempt = Some(v),
                    _ => {}
                }
            }
            // As take.lua: the attempt is a decimal integer >= 1.
            let attempt = attempt
                .filter(|a| !a.is_empty() && a.iter().all(u8::is_ascii_digit))
                .map(|a| std::str::from_utf8(&a).ok().and_then(|a| a.parse::<u64>().ok()).unwrap_or(u64::MAX))
                .filter(|a| *a >= 1);
            match (payload, attempt) {
                (Some(payload), Some(a)) if a <= u64::from(self.inner.max_deliveries) => {
                    got.push(Delivery { payload, receipt: receipt(&id, 1, batch), attempt: a as u32 });
                }
                (Some(_), Some(_)) => bury.push((id, "max_deliveries")),
                _ => bury.push((id, MALFORMED)),
            }
        }
        if !bury.is_empty() {
            let mut inv = self.inner.scripts.bury.key(&k.stream);
            inv.key(&k.dead).arg(&self.inner.group);
            for (id, reason) in &bury {
                inv.arg(id).arg(*reason);
            }
            inv.invoke_async::<u64>(&mut c).await.map_err(|e| self.err(e, "dead-letter unusable entries"))?;
            dead.extend(bury.into_iter().map(|(id, reason)| (id, reason.to_owned())));
        }
        Ok((Taken { got, dead, wake, last_id }, expired))
    }

    fn bad_reply(&self) -> Error {
        Error::internal(format!("unexpected reply to receive (queue {})", self.inner.queue))
    }

    /// The full take script (delayed, expired batches, new entries) in one atomic step;
    /// creates the group when Redis lost it (a restart without persistence, or a queue
    /// nobody set up).
    async fn take_all(&self, max: usize, visibility: Duration) -> Result<Taken> {
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
        Taken::parse(v).ok_or_else(|| self.bad_reply())
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
#[derive(Debug)]
struct Taken {
    got: Vec<Delivery>,
    dead: Vec<(String, String)>,
    wake: Option<Duration>,
    last_id: String,
}

impl Taken {
    fn parse(v: Value) -> Option<Taken> {
        let Value::Array(parts) = v else { return None };
        let [deadline, first, last, fresh, again, dead, wake, last_id]: [Value; 8] = parts.try_into().ok()?;
        let deadline = int(deadline)?;
        let (first, last) = (string(first)?, string(last)?);
        let last_id = string(last_id)?;
        let wake = match wake {
            Value::Int(n) if n >= 0 => Some(Duration::from_millis(n as u64)),
            Value::Int(_) => None,
            _ => return None,
        };
        let (Value::Array(fresh), Value::Array(again), Value::Array(dead)) = (fresh, again, dead) else {
            return None;
        };
        let mut got = Vec::with_capacity(fresh.len() / 3 + again.len() / 4);
        let mut again = again.into_iter();
        while let Some(id) = again.next() {
            let (id, count, attempt) = (string(id)?, int(again.next()?)?, int(again.next()?)?);
            let Value::BulkString(payload) = again.next()? else { return None };
            got.push(Delivery {
                payload,
                receipt: receipt(&id, u64::try_from(count).ok()?, None),
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            });
        }
        if !fresh.is_empty() {
            let batch = Batch { first: &first, last: &last, deadline };
            let mut fresh = fresh.into_iter();
            while let Some(id) = fresh.next() {
                let (id, attempt) = (string(id)?, int(fresh.next()?)?);
                let Value::BulkString(payload) = fresh.next()? else { return None };
                got.push(Delivery {
                    payload,
                    receipt: receipt(&id, 1, Some(batch)),
                    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                });
            }
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

/// An integer reply, or a decimal one sent as a string (a stream field read by the script).
fn int(v: Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(n),
        Value::BulkString(b) => std::str::from_utf8(&b).ok()?.parse().ok(),
        _ => None,
    }
}

/// `{expired, {{id, reason}...}}` from pre.lua.
fn parse_pre(v: Value) -> Option<(bool, Vec<(String, String)>)> {
    let Value::Array(parts) = v else { return None };
    let [expired, dead]: [Value; 2] = parts.try_into().ok()?;
    Some((int(expired)? == 1, parse_dead(dead)?))
}

/// `{deadline, first, last, wake, last id}` from post.lua.
fn parse_post(v: Value) -> Option<(i64, String, String, Option<Duration>, String)> {
    let Value::Array(parts) = v else { return None };
    let [deadline, first, last, wake, last_id]: [Value; 5] = parts.try_into().ok()?;
    let wake = match int(wake)? {
        n if n >= 0 => Some(Duration::from_millis(n as u64)),
        _ => None,
    };
    Some((int(deadline)?, string(first)?, string(last)?, wake, string(last_id)?))
}

/// Dead-lettered `{id, reason}` pairs reported by a script.
fn parse_dead(v: Value) -> Option<Vec<(String, String)>> {
    let Value::Array(dead) = v else { return None };
    Some(
        dead.into_iter()
            .filter_map(|d| match d {
                Value::Array(f) if f.len() == 2 => {
                    let mut f = f.into_iter();
                    Some((string(f.next()?)?, string(f.next()?)?))
                }
                _ => None,
            })
            .collect(),
    )
}

/// The entries of a one-stream `XREADGROUP` reply (RESP2 array or RESP3 map), as
/// `(id, [field, value, ...])`; nothing for a nil reply.
fn stream_entries(v: Value) -> Option<Vec<(String, Vec<Value>)>> {
    let entries = match v {
        Value::Nil => return Some(Vec::new()),
        Value::Array(streams) => {
            let Value::Array(s) = streams.into_iter().next()? else { return None };
            let [_, entries]: [Value; 2] = s.try_into().ok()?;
            entries
        }
        Value::Map(streams) => streams.into_iter().next()?.1,
        _ => return None,
    };
    let Value::Array(entries) = entries else { return None };
    entries
        .into_iter()
        .map(|e| {
            let Value::Array(e) = e else { return None };
            let [id, fields]: [Value; 2] = e.try_into().ok()?;
            match fields {
                Value::Array(f) => Some((string(id)?, f)),
                Value::Map(f) => Some((string(id)?, f.into_iter().flat_map(|(k, v)| [k, v]).collect())),
                _ => None,
            }
        })
        .collect()
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
            // Receipts of one batch share one in-flight check: group them by batch.
            let mut batches: Vec<(Batch<'_>, Vec<&str>)> = Vec::new();
            let mut again = Vec::new();
            for p in chunk {
                match p.batch {
                    None => again.push((p.id, p.count)),
                    Some(b) => match batches.iter_mut().find(|(x, _)| *x == b) {
                        Some((_, ids)) => ids.push(p.id),
                        None => batches.push((b, vec![p.id])),
                    },
                }
            }
            let k = &self.inner.keys;
            let mut inv = self.inner.scripts.ack.key(&k.stream);
            inv.key(&k.inflight).arg(&self.inner.group).arg(batches.len());
            for (b, ids) in &batches {
                inv.arg(b.first).arg(b.last).arg(b.deadline).arg(ids.len());
            }
            for (_, ids) in &batches {
                inv.arg(ids);
            }
            for (id, count) in again {
                inv.arg(id).arg(count);
            }
            inv.invoke_async::<u64>(&mut c).await.map_err(|e| self.err(e, "ack"))?;
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let p = parse_receipt(receipt)?;
        let (first, last) = p.batch.map_or(("", ""), |b| (b.first, b.last));
        let k = &self.inner.keys;
        let mut c = self.inner.conn.clone();
        self.inner
            .scripts
            .nack
            .key(&k.stream)
            .key(&k.inflight)
            .key(&k.delayed)
            .arg(&self.inner.group)
            .arg(p.id)
            .arg(p.count)
            .arg(ms(delay.min(MAX_DELAY)))
            .arg(token())
            .arg(first)
            .arg(last)
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
        let b = Batch { first: "1700000000000-0", last: "1700000000001-7", deadline: 1_700_000_030_000 };
        let r = receipt("1700000000000-3", 1, Some(b));
        assert_eq!(parse_receipt(&r).unwrap(), Parsed { id: "1700000000000-3", count: 1, batch: Some(b) });
        let r = receipt("1700000000000-3", 4, None);
        assert_eq!(parse_receipt(&r).unwrap(), Parsed { id: "1700000000000-3", count: 4, batch: None });
        let bad = [
            "",
            "x",
            "1-2",
            "a-b/3",
            "1-2/x",
            "1-2/-1",
            "/5",
            "1-2/3/4",
            "1-2/3/4/1-0",
            "1-2/3/x/1-0/1-5",
            "1-2/3/4/1-0/1-5/9",
            // outside the batch it names
            "1-9/1/4/1-0/1-5",
            "2-0/1/4/1-0/1-5",
        ];
        for bad in bad {
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
