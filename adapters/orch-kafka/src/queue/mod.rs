//! [`KafkaQueue`]: a [`Queue`] on Kafka topics with one consumer group, manual offset
//! commits, a retry topic for delays and redeliveries, and a dead-letter topic.
//!
//! Here: the clients and the `Queue` methods. The records this instance holds are kept by
//! the delivery tracker (`tracker`), fed by a background task (`pump`); librdkafka calls back
//! into the contexts (`context`) on rebalances and for its log lines.

mod context;
mod pump;
mod tracker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch_core::error::{Error, Result};
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use self::context::{ConsumerCtx, LogCtx};
use self::pump::pump;
use self::tracker::{lock, now_ms, parse_receipt, Names, State, Status, REWIND};
use crate::config::KafkaConfig;
use crate::error::{map_code, map_err, BACKEND};

/// Longest delay `send` and `nack` accept (longer ones are clamped). Delayed messages wait
/// in `<topic>.retry`, which `setup` creates with a retention of twice this.
const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);
/// Retention of the retry and dead-letter topics created by `setup`.
const RETENTION: Duration = Duration::from_secs(14 * 86_400);
/// Most messages one `receive` returns, whatever `max` asks.
const MAX_BATCH: usize = 1_000;

/// Header with the delivery attempt the record starts at (1 for a fresh send), in ASCII.
pub(crate) const H_ATTEMPT: &str = "orch-attempt";
/// Header with the time (ms since the Unix epoch, ASCII) before which the record must not be
/// delivered.
pub(crate) const H_DUE: &str = "orch-due";
/// Header of dead letters: why the message was moved.
pub(crate) const H_REASON: &str = "orch-reason";
/// Header of dead letters: `<topic>/<partition>/<offset>` the message was read from.
pub(crate) const H_FROM: &str = "orch-from";

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A queue on Kafka. See the crate's `docs.md` for how each rule of the contract is met.
///
/// * `send` produces to `<topic>` (or, with a delay, to `<topic>.retry` with a due-time
///   header) and returns once the brokers acknowledged every message (`acks=all`).
/// * The first `receive` subscribes this instance to `<topic>` and `<topic>.retry` in the
///   consumer group; a background task then fetches records, holds delayed ones until due,
///   and hands ready ones to `receive`. Offsets are committed manually, only up to the first
///   record not yet finished in each partition.
/// * A message whose visibility timeout passes, or that is nacked, is produced again to
///   `<topic>.retry` with attempt + 1 (or to `<topic>.dead` past `max_deliveries`), and its
///   original record then counts as finished.
///
/// Cheap to clone; clones share the clients.
#[derive(Debug, Clone)]
pub struct KafkaQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    subscribed: OnceCell<()>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Shared {
    config: KafkaConfig,
    brokers: String,
    names: Arc<Names>,
    producer: FutureProducer<LogCtx>,
    admin: AdminClient<LogCtx>,
    consumer: StreamConsumer<ConsumerCtx>,
    state: Arc<Mutex<State>>,
    /// Wakes waiting receivers when messages become ready.
    ready: Notify,
    /// Wakes the pump after an ack or nack (commit, resume fetching).
    wake: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("brokers", &self.brokers).field("names", &self.names).finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(t) = self.pump.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
        // Commit what is finished, so a successor does not redo it.
        self.shared.commit();
    }
}

impl KafkaQueue {
    /// Validates `config`, creates the clients and checks that the brokers answer. Fails
    /// with `InvalidInput` naming the key for a bad config, and with a retryable
    /// `Unavailable` naming the brokers when they cannot be reached within `connect_timeout`.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaQueue> {
        config.validate()?;
        let brokers = config.bootstrap();
        let names = Arc::new(Names {
            main: config.topic.clone(),
            retry: format!("{}.retry", config.topic),
            dead: format!("{}.dead", config.topic),
        });
        // librdkafka's floor for the connection setup timeout is 1s.
        let connect_ms = ms(config.connect_timeout.max(Duration::from_secs(1))).to_string();
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &brokers)
            .set("client.id", &config.client_id)
            .set("socket.connection.setup.timeout.ms", &connect_ms)
            .set("socket.timeout.ms", ms(config.connect_timeout.max(Duration::from_secs(10))).to_string())
            .set("reconnect.backoff.max.ms", "2000")
            .set_log_level(RDKafkaLogLevel::Warning);
        let what = format!("creating the Kafka clients for topic {}", names.main);
        let producer: FutureProducer<LogCtx> = base
            .clone()
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("batch.num.messages", REWIND.to_string())
            .set("message.timeout.ms", ms(config.send_timeout).to_string())
            .create_with_context(LogCtx)
            .map_err(|e| map_err(e, &what, &brokers))?;
        let admin: AdminClient<LogCtx> = base.create_with_context(LogCtx).map_err(|e| map_err(e, &what, &brokers))?;
        let session = ms(config.session_timeout);
        let state = Arc::new(Mutex::new(State::default()));
        let consumer: StreamConsumer<ConsumerCtx> = base
            .clone()
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
            .set("fetch.wait.max.ms", "100")
            .create_with_context(ConsumerCtx {
                state: state.clone(),
                names: names.clone(),
                timeout: config.connect_timeout,
            })
            .map_err(|e| map_err(e, &what, &brokers))?;
        let shared = Arc::new(Shared {
            config,
            brokers,
            names,
            producer,
            admin,
            consumer,
            state,
            ready: Notify::new(),
            wake: Notify::new(),
        });
        // One metadata round trip proves the brokers answer, now rather than at the first send.
        let main = shared.names.main.clone();
        shared.metadata("connecting", &[&main]).await?;
        Ok(KafkaQueue { inner: Arc::new(Inner { shared, subscribed: OnceCell::new(), pump: Mutex::new(None) }) })
    }

    /// The main topic.
    pub fn topic(&self) -> &str {
        &self.inner.shared.names.main
    }

    /// The retry topic (`<topic>.retry`): delayed sends, nacked and timed-out messages.
    pub fn retry_topic(&self) -> &str {
        &self.inner.shared.names.retry
    }

    /// The dead-letter topic (`<topic>.dead`). Dead letters keep their payload and headers
    /// and get `orch-reason` and `orch-from` (`<topic>/<partition>/<offset>`).
    pub fn dead_letter_topic(&self) -> &str {
        &self.inner.shared.names.dead
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.inner.shared.config.group
    }

    /// Deletes the queue's three topics (with their messages). For tests and `orchestrator
    /// teardown`; missing topics are fine.
    pub async fn teardown(&self) -> Result<()> {
        let s = &self.inner.shared;
        let names = [s.names.main.as_str(), s.names.retry.as_str(), s.names.dead.as_str()];
        let results = s.admin.delete_topics(&names, &s.admin_options()).await.map_err(|e| s.err(e, "delete topics"))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => return Err(map_code(code, &format!("delete topic {name}"), &s.brokers, None)),
            }
        }
        Ok(())
    }

    /// Subscribes on first use and starts the pump. Only receiving instances join the group:
    /// a send-only instance must not take partitions it never reads.
    async fn ensure_subscribed(&self) -> Result<()> {
        self.inner
            .subscribed
            .get_or_try_init(|| async {
                let s = &self.inner.shared;
                let md = s.metadata("checking the topics", &[&s.names.main, &s.names.retry]).await?;
                for name in [&s.names.main, &s.names.retry] {
                    if !md.iter().any(|(n, parts)| n == name && *parts > 0) {
                        return Err(Error::invalid_input(
                            "queue.topic",
                            format!("topic {name} does not exist on {}; run `orchestrator setup`", s.brokers),
                        ));
                    }
                }
                s.consumer
                    .subscribe(&[s.names.main.as_str(), s.names.retry.as_str()])
                    .map_err(|e| s.err(e, "subscribe"))?;
                let task = tokio::spawn(pump(s.clone()));
                if let Ok(mut p) = self.inner.pump.lock() {
                    *p = Some(task);
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

impl Shared {
    fn err(&self, e: KafkaError, what: &str) -> Error {
        map_err(e, &format!("{what} (topic {})", self.names.main), &self.brokers)
    }

    fn admin_options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.config.connect_timeout))
            .operation_timeout(Some(self.config.connect_timeout))
    }

    /// Which of `topics` exist, with their partition counts, bounded by `connect_timeout`.
    ///
    /// Asks for the named topics only, through the consumer (which never asks brokers to
    /// auto-create): an all-topics request can list deleted topics without a name on some
    /// brokers (tansu 0.6), which crashes librdkafka 2.12's metadata cache.
    async fn metadata(self: &Arc<Self>, what: &str, topics: &[&str]) -> Result<Vec<(String, usize)>> {
        let s = self.clone();
        let timeout = self.config.connect_timeout;
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let r = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for t in &topics {
                let md = s.consumer.client().fetch_metadata(Some(t), timeout)?;
                out.extend(
                    md.topics()
                        .iter()
                        .filter(|m| m.error().is_none() && m.name() == t)
                        .map(|m| (m.name().to_string(), m.partitions().len())),
                );
            }
            Ok::<_, KafkaError>(out)
        })
        .await
        .map_err(|e| Error::internal_from("metadata task failed", e))?;
        r.map_err(|e| {
            let code = e.rdkafka_error_code();
            match code {
                Some(c)
                    if !matches!(
                        c,
                        RDKafkaErrorCode::OperationTimedOut
                            | RDKafkaErrorCode::AllBrokersDown
                            | RDKafkaErrorCode::BrokerTransportFailure
                            | RDKafkaErrorCode::Resolve
                    ) =>
                {
                    self.err(e, what)
                }
                _ => Error::Unavailable {
                    backend: BACKEND.into(),
                    message: format!(
                        "{what}: no Kafka broker answered at {} within {:?} ({e}); check queue.brokers and that the brokers run",
                        self.brokers, timeout
                    ),
                    retry_after: None,
                    source: Some(Box::new(e)),
                },
            }
        })
    }

    /// Produces one record; the future resolves when the brokers acknowledge it (or after
    /// `send_timeout`). Waits for room when the local queue is full.
    async fn produce(&self, topic: &str, payload: &[u8], headers: OwnedHeaders) -> Result<DeliveryFuture> {
        let mut record = FutureRecord::<(), [u8]>::to(topic).payload(payload).headers(headers);
        let end = Instant::now() + self.config.send_timeout;
        loop {
            match self.producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) if Instant::now() < end => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(self.err(e, "send")),
            }
        }
    }

    async fn delivered(&self, f: DeliveryFuture, what: &str) -> Result<()> {
        match f.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(self.err(e, what)),
            Err(_) => Err(Error::unavailable(BACKEND, format!("{what}: the Kafka producer was closed"))),
        }
    }

    fn headers(attempt: u32, due: Option<u64>) -> OwnedHeaders {
        let a = attempt.to_string();
        let mut h = OwnedHeaders::new_with_capacity(2).insert(Header { key: H_ATTEMPT, value: Some(a.as_str()) });
        if let Some(due) = due {
            let d = due.to_string();
            h = h.insert(Header { key: H_DUE, value: Some(d.as_str()) });
        }
        h
    }
}

#[async_trait]
impl Queue for KafkaQueue {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> QueueCapabilities {
        QueueCapabilities { native_delay: false, fifo: false, dead_letter: true, max_delay: MAX_DELAY }
    }

    async fn setup(&self) -> Result<()> {
        let s = &self.inner.shared;
        let replication = || TopicReplication::Fixed(s.config.replication_factor.map_or(-1, i32::from));
        let retention = ms(RETENTION).to_string();
        let topics = [
            NewTopic::new(&s.names.main, s.config.partitions, replication()),
            NewTopic::new(&s.names.retry, s.config.partitions, replication()).set("retention.ms", &retention),
            NewTopic::new(&s.names.dead, s.config.partitions.min(3), replication()).set("retention.ms", &retention),
        ];
        let results =
            s.admin.create_topics(&topics, &s.admin_options()).await.map_err(|e| s.err(e, "create topics"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(map_code(code, &format!("create topic {name}"), &s.brokers, None)),
            }
        }
        // Creation is asynchronous on the brokers: wait until every topic shows in metadata.
        let end = Instant::now() + s.config.connect_timeout;
        loop {
            let md = s.metadata("setup", &[&s.names.main, &s.names.retry, &s.names.dead]).await?;
            let missing: Vec<&String> = [&s.names.main, &s.names.retry, &s.names.dead]
                .into_iter()
                .filter(|n| !md.iter().any(|(m, parts)| m == *n && *parts > 0))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(Error::unavailable(
                    BACKEND,
                    format!("setup: topics {missing:?} created but not yet visible on {}", s.brokers),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn send(&self, messages: Vec<OutMessage>) -> Result<()> {
        let s = &self.inner.shared;
        let mut pending = Vec::with_capacity(messages.len());
        for m in &messages {
            let due = (!m.delay.is_zero()).then(|| now_ms().saturating_add(ms(m.delay.min(MAX_DELAY))));
            let topic = if due.is_some() { &s.names.retry } else { &s.names.main };
            pending.push(s.produce(topic, &m.payload, Shared::headers(1, due)).await?);
        }
        for f in pending {
            s.delivered(f, "send").await?;
        }
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.ensure_subscribed().await?;
        let s = &self.inner.shared;
        let max = max.min(MAX_BATCH);
        // A huge `wait` (or `Duration::MAX`) must not overflow the clock.
        let deadline = Instant::now() + wait.min(MAX_DELAY);
        loop {
            let notified = s.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = lock(&s.state).take(max, visibility);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        let parsed = receipts.iter().map(parse_receipt).collect::<Result<Vec<_>>>()?;
        let s = &self.inner.shared;
        let mut any = false;
        {
            let mut st = lock(&s.state);
            for (key, seq) in parsed {
                if st.in_flight(key, seq) {
                    st.finish(key);
                    any = true;
                }
            }
        }
        if any {
            s.wake.notify_one();
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let (key, seq) = parse_receipt(receipt)?;
        let s = &self.inner.shared;
        let attempt = {
            let mut st = lock(&s.state);
            if !st.in_flight(key, seq) {
                return Ok(());
            }
            st.set_status(key, Status::Moving);
            st.entries.get(&key).map_or(1, |e| e.attempt)
        };
        s.give_back(key, attempt, delay).await;
        Ok(())
    }
}
