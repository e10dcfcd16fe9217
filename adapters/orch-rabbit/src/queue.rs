//! [`RabbitQueue`]: a [`Queue`] on RabbitMQ with publisher confirms, manual acks, TTL delay
//! tiers, a dead-letter queue and reconnection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, PublisherConfirm};
use orch_core::error::{Error, Result};
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use orch_core::secret::redact_url;
use tokio::time::Instant;

use crate::config::RabbitConfig;
use crate::error::{map_err, BACKEND};

/// Longest delay `send` and `nack` accept (longer ones are clamped); served by chaining tiers.
const MAX_DELAY: Duration = Duration::from_secs(30 * 86_400);
/// Longest visibility timeout honoured (longer ones are clamped; RabbitMQ's default
/// `consumer_timeout` of 30 minutes closes a channel holding a delivery longer than that).
const MAX_VISIBILITY: Duration = Duration::from_secs(30 * 60);
/// Header with the delivery attempt this copy of the message starts at (1 for a fresh send).
const H_ATTEMPT: &str = "x-orch-attempt";
/// Header with the time (ms since the Unix epoch) before which the message must not be
/// delivered; a message that reaches the main queue early goes through another delay tier.
const H_DUE: &str = "x-orch-due";
/// Header of dead letters: why the message was moved.
const H_REASON: &str = "x-orch-reason";
/// How often in-flight messages are checked for an expired visibility timeout.
const EXPIRY_TICK: Duration = Duration::from_millis(50);

/// A queue on RabbitMQ. See the crate's `docs.md` for how each rule of the contract is met.
///
/// * `send` publishes with publisher confirms (persistent messages, `mandatory`), and returns
///   once the broker confirmed every message.
/// * `receive` takes deliveries from one consumer (manual acks, `prefetch`); each handed-out
///   delivery is tracked with its visibility deadline, and a background task gives expired
///   ones back (a copy with attempt + 1 is published, then the original acked).
/// * Delays use TTL queues `<queue>.delay.<tier>` that dead-letter into the main queue.
/// * After a lost connection, the next call reconnects (with backoff); the broker requeues
///   the deliveries the old connection held.
///
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Names {
    main: String,
    dead: String,
    /// (tier TTL, queue name), ascending.
    tiers: Vec<(Duration, String)>,
}

#[derive(Debug)]
struct Inner {
    config: RabbitConfig,
    url: String,
    names: Names,
    link: tokio::sync::Mutex<LinkState>,
    inflight: Mutex<HashMap<(u64, u64), InFlight>>,
    expiry: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct LinkState {
    link: Option<Link>,
    generation: u64,
    failures: u32,
    next_try: Option<Instant>,
}

/// One connection with its publishing (confirm mode) and consuming channels.
#[derive(Clone)]
struct Link {
    generation: u64,
    conn: Arc<Connection>,
    publish: Channel,
    consume: Channel,
    consumer: Arc<tokio::sync::Mutex<Consumer>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl Link {
    fn healthy(&self) -> bool {
        self.conn.status().connected() && self.publish.status().connected() && self.consume.status().connected()
    }
}

/// A delivery handed out by `receive` and not yet acked or nacked.
#[derive(Debug)]
struct InFlight {
    deadline: Instant,
    attempt: u32,
    payload: Vec<u8>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut t) = self.expiry.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
        if let Some(link) = self.link.get_mut().link.take() {
            close_in_background(link);
        }
    }
}

fn close_in_background(link: Link) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = link.conn.close(200, "orch queue closed".into()).await;
        });
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The largest tier not longer than `remaining`, or the smallest tier: a delay is served by
/// a chain of tiers, so it is never cut short and overshoots by less than the smallest tier.
fn pick_tier(tiers: &[(Duration, String)], remaining: Duration) -> usize {
    tiers.iter().rposition(|(t, _)| *t <= remaining).unwrap_or(0)
}

fn header_u64(props: &BasicProperties, key: &str) -> Option<u64> {
    let v = props.headers().as_ref()?.inner().get(key)?;
    match v {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(*n),
        _ => None,
    }
}

fn parse_receipt(r: &Receipt) -> Result<(u64, u64)> {
    let bad = || {
        Error::invalid_input(
            "receipt",
            format!("{:?} is not a RabbitMQ queue receipt (expected <generation>.<tag>)", r.0),
        )
    };
    let (g, t) = r.0.split_once('.').ok_or_else(bad)?;
    Ok((g.parse().map_err(|_| bad())?, t.parse().map_err(|_| bad())?))
}

/// What to publish and where.
struct Publish<'a> {
    queue: &'a str,
    payload: &'a [u8],
    attempt: u32,
    due: Option<u64>,
    reason: Option<&'a str>,
}

impl RabbitQueue {
    /// Validates `config`, connects, opens the channels and declares the queues. Fails with
    /// `InvalidInput` naming the key for a bad config, wrong credentials or an unknown vhost,
    /// and with a retryable `Unavailable` when the broker cannot be reached within `timeout`.
    pub async fn connect(config: RabbitConfig) -> Result<RabbitQueue> {
        config.validate()?;
        let url = redact_url(config.url.expose());
        let q = &config.queue;
        let names = Names {
            main: q.clone(),
            dead: format!("{q}.dead"),
            tiers: config.delay_tiers.iter().map(|t| (*t, format!("{q}.delay.{}ms", ms(*t)))).collect(),
        };
        let inner = Arc::new(Inner {
            config,
            url,
            names,
            link: tokio::sync::Mutex::new(LinkState::default()),
            inflight: Mutex::new(HashMap::new()),
            expiry: Mutex::new(None),
        });
        let queue = RabbitQueue { inner };
        {
            let mut st = queue.inner.link.lock().await;
            st.generation += 1;
            let link = queue.open(st.generation).await?;
            st.link = Some(link);
        }
        let weak = Arc::downgrade(&queue.inner);
        let task = tokio::spawn(expiry_loop(weak));
        if let Ok(mut t) = queue.inner.expiry.lock() {
            *t = Some(task);
        }
        Ok(queue)
    }

    /// The main queue's name.
    pub fn name(&self) -> &str {
        &self.inner.names.main
    }

    /// The dead-letter queue's name (`<queue>.dead`). Dead letters keep their payload and
    /// headers and get `x-orch-reason`.
    pub fn dead_letter_queue(&self) -> &str {
        &self.inner.names.dead
    }

    /// The delay queues' names, shortest tier first.
    pub fn delay_queues(&self) -> Vec<String> {
        self.inner.names.tiers.iter().map(|(_, n)| n.clone()).collect()
    }

    /// Messages ready in the main and dead-letter queues (a passive declare each).
    pub async fn counts(&self) -> Result<(u32, u32)> {
        let link = self.link().await?;
        let mut out = [0u32; 2];
        for (i, name) in [&self.inner.names.main, &self.inner.names.dead].into_iter().enumerate() {
            let q = link
                .publish
                .queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions { passive: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.fail(&link, e, "count messages"))?;
            out[i] = q.message_count();
        }
        Ok((out[0], out[1]))
    }

    /// Deletes the main, dead-letter and delay queues (with their messages) and closes the
    /// connection. For tests and `orchestrator teardown`.
    pub async fn teardown(&self) -> Result<()> {
        let link = self.link().await?;
        let n = &self.inner.names;
        for name in std::iter::once(&n.main).chain(std::iter::once(&n.dead)).chain(n.tiers.iter().map(|(_, q)| q)) {
            link.publish
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| self.fail(&link, e, "delete a queue"))?;
        }
        let mut st = self.inner.link.lock().await;
        if let Some(l) = st.link.take() {
            let _ = l.conn.close(200, "orch queue torn down".into()).await;
        }
        Ok(())
    }

    fn queue_args(&self, ttl_to_main: Option<Duration>) -> FieldTable {
        let mut t = FieldTable::default();
        if let Some(e) = self.inner.config.expires {
            t.insert("x-expires".into(), AMQPValue::LongLongInt(i64::try_from(ms(e)).unwrap_or(i64::MAX)));
        }
        if let Some(ttl) = ttl_to_main {
            t.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(ms(ttl)).unwrap_or(i64::MAX)));
            // Expired messages go back to the main queue through the default exchange.
            t.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
            t.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(self.inner.names.main.as_str().into()));
        }
        t
    }

    async fn declare(&self, ch: &Channel) -> lapin::Result<()> {
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        let n = &self.inner.names;
        ch.queue_declare(n.main.as_str().into(), durable, self.queue_args(None)).await?;
        ch.queue_declare(n.dead.as_str().into(), durable, self.queue_args(None)).await?;
        for (ttl, name) in &n.tiers {
            ch.queue_declare(name.as_str().into(), durable, self.queue_args(Some(*ttl))).await?;
        }
        Ok(())
    }

    /// Opens a connection, its two channels, declares the queues and starts consuming.
    async fn open(&self, generation: u64) -> Result<Link> {
        let what = format!("connecting to RabbitMQ for queue {}", self.inner.names.main);
        let url = &self.inner.url;
        let fut = async {
            let conn = Connection::connect(self.inner.config.url.expose(), ConnectionProperties::default())
                .await
                .map_err(|e| map_err(e, &what, url))?;
            let conn = Arc::new(conn);
            let setup = async {
                let publish = conn.create_channel().await?;
                publish.confirm_select(ConfirmSelectOptions::default()).await?;
                self.declare(&publish).await?;
                let consume = conn.create_channel().await?;
                consume.basic_qos(self.inner.config.prefetch, BasicQosOptions::default()).await?;
                let tag = format!("orch-{}", uuid::Uuid::new_v4().simple());
                let consumer = consume
                    .basic_consume(
                        self.inner.names.main.as_str().into(),
                        tag.into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                Ok::<_, lapin::Error>((publish, consume, consumer))
            };
            match setup.await {
                Ok((publish, consume, consumer)) => Ok(Link {
                    generation,
                    conn,
                    publish,
                    consume,
                    consumer: Arc::new(tokio::sync::Mutex::new(consumer)),
                }),
                Err(e) => {
                    let _ = conn.close(200, "setup failed".into()).await;
                    Err(map_err(e, &what, url))
                }
            }
        };
        match tokio::time::timeout(self.inner.config.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::unavailable(
                BACKEND,
                format!("{what}: {url} did not answer within {:?}", self.inner.config.timeout),
            )),
        }
    }

    /// The current link, reconnecting when it is gone or broken. While reconnect attempts
    /// fail, calls fail fast with `Unavailable` until the backoff (100ms doubling up to
    /// `max_backoff`) has passed.
    async fn link(&self) -> Result<Link> {
        let mut st = self.inner.link.lock().await;
        if let Some(l) = &st.link {
            if l.healthy() {
                return Ok(l.clone());
            }
            let gen = l.generation;
            if let Some(l) = st.link.take() {
                close_in_background(l);
            }
            self.forget_generation(gen);
        }
        let now = Instant::now();
        if let Some(t) = st.next_try {
            if now < t {
                return Err(Error::Unavailable {
                    backend: BACKEND.into(),
                    message: format!("reconnecting to {} (queue {})", self.inner.url, self.inner.names.main),
                    retry_after: Some(t - now),
                    source: None,
                });
            }
        }
        st.generation += 1;
        match self.open(st.generation).await {
            Ok(l) => {
                if st.failures > 0 {
                    tracing::info!(target: "orch::queue", backend = BACKEND, queue = %self.inner.names.main,
                        attempts = st.failures + 1, "reconnected to RabbitMQ");
                }
                st.failures = 0;
                st.next_try = None;
                st.link = Some(l.clone());
                Ok(l)
            }
            Err(e) => {
                st.failures += 1;
                let backoff = Duration::from_millis(100)
                    .saturating_mul(1 << st.failures.min(16))
                    .min(self.inner.config.max_backoff);
                st.next_try = Some(Instant::now() + backoff);
                tracing::warn!(target: "orch::queue", backend = BACKEND, queue = %self.inner.names.main,
                    error = %e, retry_in = ?backoff, "cannot reconnect to RabbitMQ");
                Err(e)
            }
        }
    }

    /// Deliveries of a dead connection: the broker requeues them, their receipts are stale.
    fn forget_generation(&self, gen: u64) {
        if let Ok(mut m) = self.inner.inflight.lock() {
            m.retain(|(g, _), _| *g != gen);
        }
    }

    /// Maps an error of an operation on `link`, dropping the link when it broke.
    fn fail(&self, link: &Link, e: lapin::Error, what: &str) -> Error {
        let err = map_err(e, &format!("{what} (queue {})", self.inner.names.main), &self.inner.url);
        if err.is_retryable() || !link.healthy() {
            if let Ok(mut st) = self.inner.link.try_lock() {
                if st.link.as_ref().is_some_and(|l| l.generation == link.generation) {
                    if let Some(l) = st.link.take() {
                        close_in_background(l);
                    }
                }
            }
            self.forget_generation(link.generation);
        }
        err
    }

    async fn publish_one(&self, link: &Link, p: Publish<'_>) -> lapin::Result<PublisherConfirm> {
        let mut h = FieldTable::default();
        h.insert(H_ATTEMPT.into(), AMQPValue::LongUInt(p.attempt));
        if let Some(due) = p.due {
            h.insert(H_DUE.into(), AMQPValue::LongLongInt(i64::try_from(due).unwrap_or(i64::MAX)));
        }
        if let Some(r) = p.reason {
            h.insert(H_REASON.into(), AMQPValue::LongString(r.into()));
        }
        let props = BasicProperties::default().with_delivery_mode(2).with_headers(h);
        link.publish
            .basic_publish(
                ShortString::from(""),
                p.queue.into(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                p.payload,
                props,
            )
            .await
    }

    /// Waits for the broker's confirm; an unroutable message (queue deleted) is an error.
    async fn confirmed(&self, link: &Link, c: PublisherConfirm, what: &str) -> Result<()> {
        match c.await.map_err(|e| self.fail(link, e, what))? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(Error::invalid_input(
                "queue.queue",
                format!(
                    "{what}: queue {} does not exist on {}; run `orchestrator setup`",
                    self.inner.names.main, self.inner.url
                ),
            )),
            Confirmation::Nack(_) => Err(Error::unavailable(
                BACKEND,
                format!("{what}: {} refused the message (nack); it may be out of memory or disk", self.inner.url),
            )),
        }
    }

    /// Where a message due at `due` goes now: a delay tier while it is not due, else the main queue.
    fn route(&self, due: Option<u64>) -> (&str, Option<u64>) {
        let n = &self.inner.names;
        match due {
            Some(due) if due > now_ms() => {
                let remaining = Duration::from_millis(due - now_ms());
                (n.tiers[pick_tier(&n.tiers, remaining)].1.as_str(), Some(due))
            }
            _ => (n.main.as_str(), None),
        }
    }

    /// Publishes a copy of a message (confirmed) and then acks the original delivery: the
    /// copy goes to the dead-letter queue with `reason`, to a delay tier, or to the main queue.
    async fn move_and_ack(
        &self,
        link: &Link,
        tag: u64,
        payload: &[u8],
        attempt: u32,
        delay: Duration,
        dead: Option<&str>,
    ) -> Result<()> {
        let p = match dead {
            Some(reason) => {
                Publish { queue: &self.inner.names.dead, payload, attempt, due: None, reason: Some(reason) }
            }
            None => {
                let due = (!delay.is_zero()).then(|| now_ms().saturating_add(ms(delay.min(MAX_DELAY))));
                let (queue, due) = self.route(due);
                Publish { queue, payload, attempt, due, reason: None }
            }
        };
        let c = self.publish_one(link, p).await.map_err(|e| self.fail(link, e, "republish"))?;
        self.confirmed(link, c, "republish").await?;
        link.consume.basic_ack(tag, BasicAckOptions::default()).await.map_err(|e| self.fail(link, e, "ack"))
    }

    /// Turns a broker delivery into an orch delivery, or handles it: malformed or past
    /// `max_deliveries` → dead-letter queue; due later → next delay tier.
    async fn accept(&self, link: &Link, d: AmqpDelivery, visibility: Duration) -> Result<Option<Delivery>> {
        let tag = d.delivery_tag;
        let Some(base) = header_u64(&d.properties, H_ATTEMPT).filter(|a| *a >= 1).and_then(|a| u32::try_from(a).ok())
        else {
            let reason = "malformed: no x-orch-attempt header (not published by orch)";
            tracing::warn!(target: "orch::queue", backend = BACKEND, queue = %self.inner.names.main,
                dead_letter = %self.inner.names.dead, reason, "message moved to the dead-letter queue");
            self.move_and_ack(link, tag, &d.data, 1, Duration::ZERO, Some(reason)).await?;
            return Ok(None);
        };
        if let Some(due) = header_u64(&d.properties, H_DUE) {
            if due > now_ms() {
                // Not due yet: through the next tier of the chain (not a delivery attempt).
                let (queue, due) = self.route(Some(due));
                let p = Publish { queue, payload: &d.data, attempt: base, due, reason: None };
                let c = self.publish_one(link, p).await.map_err(|e| self.fail(link, e, "delay"))?;
                self.confirmed(link, c, "delay").await?;
                link.consume.basic_ack(tag, BasicAckOptions::default()).await.map_err(|e| self.fail(link, e, "ack"))?;
                return Ok(None);
            }
        }
        // A redelivery by the broker (a connection died with the message unacked) is one
        // more attempt than the header says.
        let attempt = base.saturating_add(u32::from(d.redelivered));
        if attempt > self.inner.config.max_deliveries {
            tracing::warn!(target: "orch::queue", backend = BACKEND, queue = %self.inner.names.main, attempt,
                dead_letter = %self.inner.names.dead, reason = "max_deliveries", "message moved to the dead-letter queue");
            self.move_and_ack(link, tag, &d.data, attempt, Duration::ZERO, Some("max_deliveries")).await?;
            return Ok(None);
        }
        let receipt = Receipt(format!("{}.{tag}", link.generation));
        if let Ok(mut m) = self.inner.inflight.lock() {
            m.insert(
                (link.generation, tag),
                InFlight {
                    deadline: Instant::now() + visibility.min(MAX_VISIBILITY),
                    attempt,
                    payload: d.data.clone(),
                },
            );
        }
        Ok(Some(Delivery { payload: d.data, receipt, attempt }))
    }

    /// Gives back deliveries whose visibility timeout passed: a copy with attempt + 1 (or a
    /// dead letter) is published and the original acked, so the count survives.
    async fn expire(&self) {
        let now = Instant::now();
        let expired: Vec<((u64, u64), InFlight)> = match self.inner.inflight.lock() {
            Ok(mut m) => {
                let keys: Vec<_> = m.iter().filter(|(_, f)| f.deadline <= now).map(|(k, _)| *k).collect();
                keys.into_iter().filter_map(|k| m.remove(&k).map(|f| (k, f))).collect()
            }
            Err(_) => return,
        };
        if expired.is_empty() {
            return;
        }
        let link = { self.inner.link.lock().await.link.clone() };
        for ((gen, tag), f) in expired {
            let Some(link) = link.as_ref().filter(|l| l.generation == gen) else { continue };
            let r = self.give_back(link, tag, f.payload, f.attempt, Duration::ZERO).await;
            if let Err(e) = r {
                tracing::warn!(target: "orch::queue", backend = BACKEND, queue = %self.inner.names.main, error = %e,
                    "cannot give back a message past its visibility timeout; the broker redelivers it when the connection closes");
            }
        }
    }

    /// Publishes the next attempt of a message (or dead-letters it) and acks the original.
    async fn give_back(&self, link: &Link, tag: u64, payload: Vec<u8>, attempt: u32, delay: Duration) -> Result<()> {
        let next = attempt.saturating_add(1);
        if next > self.inner.config.max_deliveries {
            tracing::warn!(target: "orch::queue", backend = BACKEND, queue = %self.inner.names.main, attempt = next,
                dead_letter = %self.inner.names.dead, reason = "max_deliveries", "message moved to the dead-letter queue");
            self.move_and_ack(link, tag, &payload, attempt, Duration::ZERO, Some("max_deliveries")).await
        } else {
            self.move_and_ack(link, tag, &payload, next, delay, None).await
        }
    }
}

async fn expiry_loop(weak: Weak<Inner>) {
    loop {
        tokio::time::sleep(EXPIRY_TICK).await;
        let Some(inner) = weak.upgrade() else { return };
        RabbitQueue { inner }.expire().await;
    }
}

#[async_trait]
impl Queue for RabbitQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities { native_delay: false, fifo: false, dead_letter: true, max_delay: MAX_DELAY }
    }

    async fn setup(&self) -> Result<()> {
        let link = self.link().await?;
        self.declare(&link.publish).await.map_err(|e| self.fail(&link, e, "declare the queues"))
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let link = self.link().await?;
        let mut confirms = Vec::with_capacity(messages.len());
        for m in &messages {
            let due = (!m.delay.is_zero()).then(|| now_ms().saturating_add(ms(m.delay.min(MAX_DELAY))));
            let (queue, due) = self.route(due);
            let p = Publish { queue, payload: &m.payload, attempt: 1, due, reason: None };
            confirms.push(self.publish_one(&link, p).await.map_err(|e| self.fail(&link, e, "send"))?);
        }
        for c in confirms {
            self.confirmed(&link, c, "send").await?;
        }
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // A huge `wait` (or `Duration::MAX`) must not overflow the clock.
        let deadline = Instant::now() + wait.min(MAX_DELAY);
        let link = self.link().await?;
        let mut out = Vec::new();
        let Ok(mut consumer) = tokio::time::timeout_at(deadline, link.consumer.lock()).await else {
            return Ok(out);
        };
        while out.len() < max {
            // Wait for the first message; after that take only what is already here.
            let next = if out.is_empty() {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                }
            } else {
                match consumer.next().now_or_never() {
                    Some(n) => n,
                    None => break,
                }
            };
            match next {
                Some(Ok(d)) => {
                    if let Some(d) = self.accept(&link, d, visibility).await? {
                        out.push(d);
                    }
                }
                Some(Err(e)) => {
                    let e = self.fail(&link, e, "receive");
                    if out.is_empty() {
                        return Err(e);
                    }
                    break;
                }
                None => {
                    // The consumer was cancelled (queue deleted) or its channel closed.
                    let e = Error::unavailable(
                        BACKEND,
                        format!("the consumer of queue {} on {} was cancelled", self.inner.names.main, self.inner.url),
                    );
                    if let Ok(mut st) = self.inner.link.try_lock() {
                        if st.link.as_ref().is_some_and(|l| l.generation == link.generation) {
                            if let Some(l) = st.link.take() {
                                close_in_background(l);
                            }
                        }
                    }
                    self.forget_generation(link.generation);
                    if out.is_empty() {
                        return Err(e);
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        let parsed = receipts.iter().map(parse_receipt).collect::<Result<Vec<_>>>()?;
        let taken: Vec<(u64, u64)> = match self.inner.inflight.lock() {
            Ok(mut m) => parsed.into_iter().filter(|k| m.remove(k).is_some()).collect(),
            Err(_) => return Err(Error::internal("in-flight table poisoned")),
        };
        if taken.is_empty() {
            return Ok(());
        }
        let link = { self.inner.link.lock().await.link.clone() };
        // Deliveries of an older connection were requeued by the broker: nothing to ack.
        let Some(link) = link else { return Ok(()) };
        for (gen, tag) in taken {
            if gen == link.generation {
                link.consume
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| self.fail(&link, e, "ack"))?;
            }
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let key = parse_receipt(receipt)?;
        let Some(f) = self.inner.inflight.lock().ok().and_then(|mut m| m.remove(&key)) else { return Ok(()) };
        let link = { self.inner.link.lock().await.link.clone() };
        let Some(link) = link.filter(|l| l.generation == key.0) else { return Ok(()) };
        let (payload, attempt, deadline) = (f.payload.clone(), f.attempt, f.deadline);
        if let Err(e) = self.give_back(&link, key.1, f.payload, attempt, delay).await {
            // Still unacked on the channel: keep tracking it so it is given back later.
            if let Ok(mut m) = self.inner.inflight.lock() {
                m.insert(key, InFlight { deadline, attempt, payload });
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers(secs: &[u64]) -> Vec<(Duration, String)> {
        secs.iter().map(|s| (Duration::from_secs(*s), format!("t{s}"))).collect()
    }

    #[test]
    fn tiers_chain_down_and_round_up_only_below_the_smallest() {
        let t = tiers(&[1, 5, 30]);
        assert_eq!(pick_tier(&t, Duration::from_millis(300)), 0);
        assert_eq!(pick_tier(&t, Duration::from_secs(3)), 0);
        assert_eq!(pick_tier(&t, Duration::from_secs(5)), 1);
        assert_eq!(pick_tier(&t, Duration::from_secs(29)), 1);
        assert_eq!(pick_tier(&t, Duration::from_secs(3600)), 2);
    }

    #[test]
    fn receipts_round_trip_and_garbage_is_invalid_input() {
        assert_eq!(parse_receipt(&Receipt("3.17".into())).unwrap(), (3, 17));
        for bad in ["", "3", "a.b", "1-2/3"] {
            assert!(matches!(parse_receipt(&Receipt(bad.into())), Err(Error::InvalidInput { .. })), "{bad}");
        }
    }
}
