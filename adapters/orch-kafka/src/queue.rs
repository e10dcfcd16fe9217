//! [`KafkaQueue`]: a [`Queue`] on Kafka topics with one consumer group, manual offset
//! commits, a retry topic for delays and redeliveries, and a dead-letter topic.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use orch_core::error::{Error, Result};
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use crate::config::KafkaConfig;
use crate::error::{map_code, map_err, BACKEND};

/// Longest delay `send` and `nack` accept (longer ones are clamped). Delayed messages wait
/// in `<topic>.retry`, which `setup` creates with a retention of twice this.
const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);
/// Retention of the retry and dead-letter topics created by `setup`.
const RETENTION: Duration = Duration::from_secs(14 * 86_400);
/// Longest visibility timeout honoured (longer ones are clamped).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Most messages one `receive` returns, whatever `max` asks.
const MAX_BATCH: usize = 1_000;
/// Most delayed messages one instance holds in memory; past it the retry topic is paused.
const MAX_HELD: usize = 100_000;
/// How soon a failed move to the dead-letter topic is tried again.
const DEAD_RETRY: Duration = Duration::from_secs(1);
/// Longest the pump sleeps without looking at timers and commits.
const TICK: Duration = Duration::from_millis(500);
/// Most records in one batch our producer writes (librdkafka's `batch.num.messages`, set
/// explicitly), and so how far before a position a partition is read again (see [`Track`]):
/// the batch holding that position starts at most this many offsets earlier.
const REWIND: i64 = 1_000;

/// Header with the delivery attempt the record starts at (1 for a fresh send), in ASCII.
pub(crate) const H_ATTEMPT: &str = "orch-attempt";
/// Header with the time (ms since the Unix epoch, ASCII) before which the record must not be
/// delivered.
pub(crate) const H_DUE: &str = "orch-due";
/// Header of dead letters: why the message was moved.
pub(crate) const H_REASON: &str = "orch-reason";
/// Header of dead letters: `<topic>/<partition>/<offset>` the message was read from.
pub(crate) const H_FROM: &str = "orch-from";

/// Which of the queue's consumed topics a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Src {
    Main,
    Retry,
}

impl Src {
    fn tag(self) -> char {
        match self {
            Src::Main => 'm',
            Src::Retry => 'r',
        }
    }
}

/// One consumed record: topic, partition, offset.
type Key = (Src, i32, i64);

/// The queue's topic names.
#[derive(Debug)]
struct Names {
    main: String,
    retry: String,
    dead: String,
}

impl Names {
    fn src(&self, topic: &str) -> Option<Src> {
        if topic == self.main {
            Some(Src::Main)
        } else if topic == self.retry {
            Some(Src::Retry)
        } else {
            None
        }
    }

    fn topic(&self, src: Src) -> &str {
        match src {
            Src::Main => &self.main,
            Src::Retry => &self.retry,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not due before this time (ms since the epoch).
    Held(u64),
    /// Waiting for a receiver.
    Ready,
    /// Handed out; the receipt carries `seq`.
    InFlight { seq: u64, deadline: Instant },
    /// Being republished (retry or dead-letter topic); finished when the broker confirms.
    Moving,
}

#[derive(Debug)]
struct Entry {
    payload: Vec<u8>,
    attempt: u32,
    status: Status,
    /// Set when the record must go to the dead-letter topic (why), not to receivers.
    dead: Option<&'static str>,
}

/// Offsets of one partition this instance consumed and has not finished.
#[derive(Debug)]
struct Part {
    outstanding: BTreeSet<i64>,
    /// One past the highest offset seen.
    high: i64,
    /// Last position committed (or the first offset seen, which the group had committed).
    committed: i64,
}

impl Part {
    /// The next offset the group may resume at: nothing before it is unfinished.
    fn position(&self) -> i64 {
        self.outstanding.first().copied().unwrap_or(self.high)
    }
}

/// Where reading a partition assigned to this instance has got to.
///
/// A fetch from an offset inside a stored batch must return that whole batch (the client
/// drops the records before the offset). Some Kafka-API brokers (tansu 0.6) return only the
/// batches that start at or after it, silently skipping the rest of that batch. The consumer
/// fetches from inside a batch whenever it resumes at a committed offset (after a rebalance)
/// or at its own position (after a pause): a skipped record would never be delivered, and
/// acks of later ones would commit past it. So reading starts [`REWIND`] offsets earlier
/// (before the start of the batch holding the position), and records below the position
/// (`floor`) are passed over: finished by the group, or taken in here before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Track {
    /// One past the last record fetched since reading (re)started here, if any: where the
    /// consumer resumes after a pause, and the offset the next record must have.
    next: Option<i64>,
    /// Records below this are passed over (reading again from before it).
    floor: Option<i64>,
}

/// What to do with a fetched record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// It continues the partition: take it in.
    Take,
    /// Not this instance's (partition revoked), or below the floor, or fetched twice: pass
    /// over it.
    Pass,
    /// The broker skipped the records from `floor` on (a start point not foreseen): read the
    /// partition again from before `floor`.
    Rewind { floor: i64 },
}

/// Everything this instance holds; one lock, never held across an await.
#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, Entry>,
    ready: VecDeque<Key>,
    held: BinaryHeap<Reverse<(u64, Key)>>,
    held_n: usize,
    deadlines: BinaryHeap<Reverse<(Instant, u64, Key)>>,
    parts: HashMap<(Src, i32), Part>,
    /// The partitions assigned to this instance.
    tracks: HashMap<(Src, i32), Track>,
    seq: u64,
    /// A partition's position may have moved since the last commit.
    dirty: bool,
    /// A commit failed: commit every position again.
    recommit: bool,
    paused_main: bool,
    paused_retry: bool,
}

impl State {
    /// Checks that a fetched record continues its partition where this instance left off.
    fn check(&mut self, (src, partition, offset): Key) -> Check {
        let Some(t) = self.tracks.get_mut(&(src, partition)) else { return Check::Pass };
        if let Some(floor) = t.floor {
            t.next = Some(offset + 1);
            if offset < floor {
                return Check::Pass;
            }
            // Read again from before the floor: whatever the broker has from the floor on
            // arrives now (a gap that remains is in the log itself, e.g. a transaction marker).
            t.floor = None;
            return Check::Take;
        }
        match t.next {
            Some(next) if offset > next => Check::Rewind { floor: next },
            Some(next) if offset < next => Check::Pass,
            _ => {
                t.next = Some(offset + 1);
                Check::Take
            }
        }
    }

    /// The partition is being read again from before `floor`.
    fn rewound(&mut self, src: Src, partition: i32, floor: i64) {
        if let Some(t) = self.tracks.get_mut(&(src, partition)) {
            *t = Track { next: None, floor: Some(t.floor.map_or(floor, |f| f.max(floor))) };
        }
    }

    /// Where to read a paused partition again from when it resumes, and the floor to pass
    /// over up to; `None` when nothing was fetched since reading (re)started (the consumer
    /// then resumes at that start).
    fn resume_at(&self, src: Src, partition: i32) -> Option<(i64, i64)> {
        let t = self.tracks.get(&(src, partition))?;
        let next = t.next?;
        Some((rewind_from(next), t.floor.map_or(next, |f| f.max(next))))
    }

    /// Registers a consumed record; false when it is already held (fetched twice).
    fn add(&mut self, key: Key, payload: Vec<u8>, attempt: u32, status: Status, dead: Option<&'static str>) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        let (src, partition, offset) = key;
        let part = self.parts.entry((src, partition)).or_insert(Part {
            outstanding: BTreeSet::new(),
            high: offset,
            committed: offset,
        });
        part.outstanding.insert(offset);
        part.high = part.high.max(offset + 1);
        self.entries.insert(key, Entry { payload, attempt, status: Status::Moving, dead });
        self.set_status(key, status);
        true
    }

    /// Moves an entry to `status`, keeping the ready queue, timers and counters in step.
    fn set_status(&mut self, key: Key, status: Status) {
        let Some(e) = self.entries.get_mut(&key) else { return };
        if matches!(e.status, Status::Held(_)) {
            self.held_n -= 1;
        }
        e.status = status;
        match status {
            Status::Held(due) => {
                self.held_n += 1;
                self.held.push(Reverse((due, key)));
            }
            Status::Ready => self.ready.push_back(key),
            Status::InFlight { seq, deadline } => self.deadlines.push(Reverse((deadline, seq, key))),
            Status::Moving => {}
        }
    }

    /// The record is done with (acked, moved, dead-lettered): its offset may be committed.
    fn finish(&mut self, key: Key) {
        if let Some(e) = self.entries.remove(&key) {
            if matches!(e.status, Status::Held(_)) {
                self.held_n -= 1;
            }
            if let Some(p) = self.parts.get_mut(&(key.0, key.1)) {
                p.outstanding.remove(&key.2);
            }
            self.dirty = true;
        }
    }

    /// The entry if its current delivery is the one `seq` names.
    fn in_flight(&self, key: Key, seq: u64) -> bool {
        matches!(self.entries.get(&key), Some(Entry { status: Status::InFlight { seq: s, .. }, .. }) if *s == seq)
    }

    /// Hands out up to `max` ready messages, invisible until `now + visibility`.
    fn take(&mut self, max: usize, visibility: Duration) -> Vec<Delivery> {
        let mut out = Vec::new();
        let deadline = Instant::now() + visibility.min(MAX_VISIBILITY);
        while out.len() < max {
            let Some(key) = self.ready.pop_front() else { break };
            // The queue is cleaned lazily: skip keys that moved on (revoked, re-held).
            if !matches!(self.entries.get(&key), Some(e) if e.status == Status::Ready) {
                continue;
            }
            self.seq += 1;
            let seq = self.seq;
            self.set_status(key, Status::InFlight { seq, deadline });
            if let Some(e) = self.entries.get(&key) {
                out.push(Delivery { payload: e.payload.clone(), receipt: receipt(key, seq), attempt: e.attempt });
            }
        }
        out
    }

    /// Makes due held records ready; returns those due for the dead-letter topic (now
    /// `Moving`) and whether any became ready.
    fn promote(&mut self, now: u64) -> (Vec<Key>, bool) {
        let (mut dead, mut ready) = (Vec::new(), false);
        while let Some(Reverse((due, key))) = self.held.peek().copied() {
            if due > now {
                break;
            }
            self.held.pop();
            let Some(e) = self.entries.get(&key) else { continue };
            if e.status != Status::Held(due) {
                continue;
            }
            if e.dead.is_some() {
                self.set_status(key, Status::Moving);
                dead.push(key);
            } else {
                self.set_status(key, Status::Ready);
                ready = true;
            }
        }
        (dead, ready)
    }

    /// In-flight records past their visibility deadline, now `Moving`.
    fn expired(&mut self, now: Instant) -> Vec<Key> {
        let mut out = Vec::new();
        while let Some(Reverse((deadline, seq, key))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if self.in_flight(key, seq) {
                self.set_status(key, Status::Moving);
                out.push(key);
            }
        }
        out
    }

    /// When the pump must look again: the next due time or visibility deadline.
    fn next_wake(&self) -> Option<Instant> {
        let held = self.held.peek().map(|Reverse((due, _))| {
            let now = now_ms();
            Instant::now() + Duration::from_millis(due.saturating_sub(now))
        });
        let deadline = self.deadlines.peek().map(|Reverse((d, _, _))| *d);
        match (held, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Positions to commit: those that moved (or all after a failed commit).
    fn commit_positions(&mut self) -> Vec<(Src, i32, i64)> {
        if !self.dirty && !self.recommit {
            return Vec::new();
        }
        let all = std::mem::take(&mut self.recommit);
        self.dirty = false;
        let mut out = Vec::new();
        for (&(src, partition), p) in &mut self.parts {
            let pos = p.position();
            if pos > p.committed || (all && pos >= p.committed) {
                p.committed = pos;
                out.push((src, partition, pos));
            }
        }
        out
    }

    /// Forgets a partition given to another instance: its records will be read there again
    /// from the committed position, so every receipt of it is now stale.
    fn drop_partition(&mut self, src: Src, partition: i32) -> Option<i64> {
        self.tracks.remove(&(src, partition));
        let part = self.parts.remove(&(src, partition))?;
        for offset in &part.outstanding {
            if let Some(e) = self.entries.remove(&(src, partition, *offset)) {
                if matches!(e.status, Status::Held(_)) {
                    self.held_n -= 1;
                }
            }
        }
        Some(part.position())
    }

    /// Drops timer entries that no longer match their record (acked, nacked, revoked), once
    /// they clearly outnumber the live ones, so a busy queue's heaps stay small.
    fn compact(&mut self) {
        let live = self.entries.len();
        if self.deadlines.len() > 2 * live + 1024 {
            let entries = &self.entries;
            self.deadlines.retain(|Reverse((_, seq, key))| {
                matches!(entries.get(key), Some(Entry { status: Status::InFlight { seq: s, .. }, .. }) if s == seq)
            });
        }
        if self.held.len() > 2 * self.held_n + 1024 {
            let entries = &self.entries;
            self.held
                .retain(|Reverse((due, key))| matches!(entries.get(key), Some(e) if e.status == Status::Held(*due)));
        }
        if self.ready.len() > 2 * live + 1024 {
            let entries = &self.entries;
            self.ready.retain(|key| matches!(entries.get(key), Some(e) if e.status == Status::Ready));
        }
    }

    /// Messages held ready, in flight or being moved (delayed ones excluded).
    fn active(&self) -> usize {
        self.entries.len() - self.held_n
    }
}

/// Where to start reading so that the batch holding `position` is fetched whole.
fn rewind_from(position: i64) -> i64 {
    position.saturating_sub(REWIND).max(0)
}

fn receipt(key: Key, seq: u64) -> Receipt {
    Receipt(format!("{}.{}.{}.{seq}", key.0.tag(), key.1, key.2))
}

fn parse_receipt(r: &Receipt) -> Result<(Key, u64)> {
    let bad = || {
        Error::invalid_input(
            "receipt",
            format!("{:?} is not a Kafka queue receipt (expected <m|r>.<partition>.<offset>.<delivery>)", r.0),
        )
    };
    let mut it = r.0.split('.');
    let src = match it.next() {
        Some("m") => Src::Main,
        Some("r") => Src::Retry,
        _ => return Err(bad()),
    };
    let partition: i32 = it.next().and_then(|s| s.parse().ok()).filter(|p| *p >= 0).ok_or_else(bad)?;
    let offset: i64 = it.next().and_then(|s| s.parse().ok()).filter(|o| *o >= 0).ok_or_else(bad)?;
    let seq: u64 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    if it.next().is_some() {
        return Err(bad());
    }
    Ok(((src, partition, offset), seq))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent between statements; a panic elsewhere must not wedge the queue.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A positive decimal header value.
fn header_u64(m: &BorrowedMessage<'_>, key: &str) -> Option<u64> {
    let h = m.headers()?;
    let v = h.iter().find(|h| h.key == key)?.value?;
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// librdkafka's log lines, into `tracing`.
fn log(level: RDKafkaLogLevel, facility: &str, line: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::warn!(target: "orch::queue", backend = BACKEND, facility, detail = line, "librdkafka")
        }
        RDKafkaLogLevel::Warning => {
            tracing::info!(target: "orch::queue", backend = BACKEND, facility, detail = line, "librdkafka")
        }
        _ => tracing::debug!(target: "orch::queue", backend = BACKEND, facility, detail = line, "librdkafka"),
    }
}

/// Context of the producer and admin client: logs through `tracing`.
#[derive(Debug, Clone, Copy)]
struct LogCtx;

impl ClientContext for LogCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "orch::queue", backend = BACKEND, error = %error, reason, "librdkafka client error");
    }
}

/// Context of the consumer: on a rebalance, commits and forgets the partitions taken away.
struct ConsumerCtx {
    state: Arc<Mutex<State>>,
    names: Arc<Names>,
    /// Bound on the broker calls made during a rebalance.
    timeout: Duration,
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "orch::queue", backend = BACKEND, error = %error, reason, "librdkafka consumer error");
    }
}

impl ConsumerCtx {
    /// Commits the finished prefix of the partitions taken away and forgets them.
    fn revoke(&self, base_consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut commit = TopicPartitionList::new();
        {
            let mut st = lock(&self.state);
            for el in tpl.elements() {
                let Some(src) = self.names.src(el.topic()) else { continue };
                if let Some(pos) = st.drop_partition(src, el.partition()) {
                    let _ = commit.add_partition_offset(el.topic(), el.partition(), Offset::Offset(pos));
                }
            }
        }
        tracing::debug!(target: "orch::queue", backend = BACKEND, partitions = tpl.count(), "partitions revoked");
        // Done work is not redone by the next owner; failure only means duplicates.
        if commit.count() > 0 {
            if let Err(e) = base_consumer.commit(&commit, CommitMode::Sync) {
                tracing::info!(target: "orch::queue", backend = BACKEND, error = %e,
                    "commit on revoke failed; the next owner redelivers those messages");
            }
        }
    }

    /// Takes the partitions given to this instance, reading each from [`REWIND`] before the
    /// group's committed offset and passing over what is below it (see [`Track`]).
    fn assign(&self, base_consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let committed = base_consumer.committed_offsets(tpl.clone(), self.timeout);
        if let Err(e) = &committed {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = %e,
                "cannot read the committed offsets; resuming at them as they are");
        }
        let mut start = tpl.clone();
        {
            let mut st = lock(&self.state);
            for el in tpl.elements() {
                let Some(src) = self.names.src(el.topic()) else { continue };
                let position = committed
                    .as_ref()
                    .ok()
                    .and_then(|c| c.find_partition(el.topic(), el.partition()))
                    .filter(|c| c.error().is_ok())
                    .and_then(|c| match c.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                // Nothing committed: the log start, where a fetch cannot fall inside a batch.
                let mut track = Track::default();
                if let Some(pos) = position {
                    if start.set_partition_offset(el.topic(), el.partition(), Offset::Offset(rewind_from(pos))).is_ok()
                    {
                        track.floor = Some(pos);
                    }
                }
                st.tracks.insert((src, el.partition()), track);
            }
            // New partitions start unpaused; the pump pauses them again if it must.
            st.paused_main = false;
            st.paused_retry = false;
        }
        tracing::debug!(target: "orch::queue", backend = BACKEND, partitions = tpl.count(), "partitions assigned");
        if let Err(e) = base_consumer.assign(&start) {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = %e, "cannot take the assigned partitions");
        }
    }
}

impl ConsumerContext for ConsumerCtx {
    // The group uses an eager assignor (librdkafka's default), so an assignment replaces the
    // previous one whole.
    fn rebalance(&self, base_consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            self.assign(base_consumer, tpl);
            return;
        }
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = ?err, "rebalance failed; giving up the partitions");
        }
        self.revoke(base_consumer, tpl);
        if let Err(e) = base_consumer.unassign() {
            tracing::warn!(target: "orch::queue", backend = BACKEND, error = %e, "cannot give up the revoked partitions");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::debug!(target: "orch::queue", backend = BACKEND, error = %e, "offset commit failed; retrying");
            lock(&self.state).recommit = true;
        }
    }
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

    /// Publishes the next copy of a record taken out of circulation (`Moving`): to the
    /// dead-letter topic when `dead` says why, else to the retry topic with `attempt` and
    /// `due`. Once confirmed, the original is finished; on failure the record stays here
    /// (held or ready again), so nothing is lost.
    async fn move_record(self: &Arc<Self>, key: Key, attempt: u32, due: Option<u64>, dead: Option<&'static str>) {
        let payload = match lock(&self.state).entries.get(&key) {
            Some(e) if e.status == Status::Moving => e.payload.clone(),
            _ => return,
        };
        let r = async {
            let (topic, headers) = match dead {
                Some(reason) => {
                    let from = format!("{}/{}/{}", self.names.topic(key.0), key.1, key.2);
                    let h = Self::headers(attempt, None)
                        .insert(Header { key: H_REASON, value: Some(reason) })
                        .insert(Header { key: H_FROM, value: Some(from.as_str()) });
                    (&self.names.dead, h)
                }
                None => (&self.names.retry, Self::headers(attempt, due)),
            };
            let f = self.produce(topic, &payload, headers).await?;
            self.delivered(f, "republish").await
        }
        .await;
        let mut st = lock(&self.state);
        if !matches!(st.entries.get(&key), Some(e) if e.status == Status::Moving) {
            // Revoked meanwhile: the next owner reads the original again.
            return;
        }
        match r {
            Ok(()) => {
                if let Some(reason) = dead {
                    tracing::warn!(target: "orch::queue", backend = BACKEND, topic = %self.names.topic(key.0),
                        partition = key.1, offset = key.2, attempt, reason, dead_letter = %self.names.dead,
                        "message moved to the dead-letter topic");
                }
                st.finish(key);
            }
            Err(e) => {
                tracing::warn!(target: "orch::queue", backend = BACKEND, topic = %self.names.topic(key.0),
                    partition = key.1, offset = key.2, error = %e,
                    "cannot republish a message; it stays with this instance and is delivered again from here");
                if let Some(entry) = st.entries.get_mut(&key) {
                    entry.attempt = attempt;
                    entry.dead = dead;
                }
                let status = match (dead, due) {
                    (Some(_), _) => Status::Held(now_ms() + ms(DEAD_RETRY)),
                    (None, Some(due)) if due > now_ms() => Status::Held(due),
                    (None, _) => Status::Ready,
                };
                st.set_status(key, status);
                drop(st);
                self.ready.notify_waiters();
                self.wake.notify_one();
                return;
            }
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Gives back a record whose delivery ended without an ack: attempt + 1 to the retry
    /// topic, or to the dead-letter topic past `max_deliveries`.
    async fn give_back(self: &Arc<Self>, key: Key, attempt: u32, delay: Duration) {
        let next = attempt.saturating_add(1);
        if next > self.config.max_deliveries {
            self.move_record(key, attempt, None, Some("max_deliveries")).await;
        } else {
            let due = (!delay.is_zero()).then(|| now_ms().saturating_add(ms(delay.min(MAX_DELAY))));
            self.move_record(key, next, due, None).await;
        }
    }

    /// Whether a fetched record is to be taken in; reads the partition again when the broker
    /// skipped records before it (see [`Track`]).
    fn admit(&self, key: Key) -> bool {
        let (src, partition, offset) = key;
        match lock(&self.state).check(key) {
            Check::Take => true,
            Check::Pass => false,
            Check::Rewind { floor } => {
                tracing::info!(target: "orch::queue", backend = BACKEND, topic = %self.names.topic(src), partition,
                    expected = floor, got = offset, "the broker skipped records; reading the partition again");
                if self.seek(src, partition, rewind_from(floor)) {
                    lock(&self.state).rewound(src, partition, floor);
                }
                false
            }
        }
    }

    /// Makes the consumer fetch `partition` from `offset` next; records already fetched are
    /// dropped by librdkafka. False (logged) when that failed.
    fn seek(&self, src: Src, partition: i32, offset: i64) -> bool {
        let topic = self.names.topic(src);
        match self.consumer.seek(topic, partition, Offset::Offset(offset), self.config.connect_timeout) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(target: "orch::queue", backend = BACKEND, topic, partition, offset, error = %e,
                    "cannot move the consumer's position");
                false
            }
        }
    }

    /// Takes in one consumed record.
    fn accept(self: &Arc<Self>, m: &BorrowedMessage<'_>) {
        let Some(src) = self.names.src(m.topic()) else { return };
        let key = (src, m.partition(), m.offset());
        if !self.admit(key) {
            return;
        }
        let payload = m.payload().unwrap_or_default().to_vec();
        let attempt = header_u64(m, H_ATTEMPT).filter(|a| *a >= 1).and_then(|a| u32::try_from(a).ok());
        let due = header_u64(m, H_DUE).filter(|d| *d > now_ms());
        let (status, dead) = match attempt {
            None => (Status::Moving, Some("malformed: no orch-attempt header (not produced by orch)")),
            Some(a) if a > self.config.max_deliveries => (Status::Moving, Some("max_deliveries")),
            Some(_) => match due {
                Some(d) => (Status::Held(d), None),
                None => (Status::Ready, None),
            },
        };
        let added = lock(&self.state).add(key, payload, attempt.unwrap_or(1), status, dead);
        if !added {
            return;
        }
        match (status, dead) {
            (Status::Ready, _) => self.ready.notify_waiters(),
            (Status::Moving, Some(reason)) => {
                let s = self.clone();
                let attempt = attempt.unwrap_or(1);
                tokio::spawn(async move { s.move_record(key, attempt, None, Some(reason)).await });
            }
            _ => {}
        }
    }

    /// Timers, commits and flow control; run by the pump after every event.
    fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        let (dead, became_ready, expired, pause) = {
            let mut st = lock(&self.state);
            let (dead, ready) = st.promote(now_ms());
            let dead: Vec<(Key, u32, &'static str)> = dead
                .into_iter()
                .filter_map(|k| st.entries.get(&k).map(|e| (k, e.attempt, e.dead.unwrap_or("max_deliveries"))))
                .collect();
            let expired: Vec<(Key, u32)> =
                st.expired(now).into_iter().filter_map(|k| st.entries.get(&k).map(|e| (k, e.attempt))).collect();
            st.compact();
            let active = st.active();
            // Resuming reads up to REWIND records again (see `Track`): once paused, resume
            // only when half the room is free, not at every ack.
            let pause_main =
                if st.paused_main { active > self.config.prefetch / 2 } else { active >= self.config.prefetch };
            let pause_retry = pause_main || st.held_n >= MAX_HELD;
            let change = (pause_main != st.paused_main || pause_retry != st.paused_retry).then_some((
                pause_main,
                pause_retry,
                st.paused_main,
                st.paused_retry,
            ));
            st.paused_main = pause_main;
            st.paused_retry = pause_retry;
            (dead, ready, expired, change)
        };
        if became_ready {
            self.ready.notify_waiters();
        }
        for (key, attempt, reason) in dead {
            let s = self.clone();
            tokio::spawn(async move { s.move_record(key, attempt, None, Some(reason)).await });
        }
        if !expired.is_empty() {
            let s = self.clone();
            tokio::spawn(async move {
                futures::future::join_all(expired.into_iter().map(|(k, a)| s.give_back(k, a, Duration::ZERO))).await;
            });
        }
        if let Some((main, retry, was_main, was_retry)) = pause {
            self.flow(Src::Main, main, was_main);
            self.flow(Src::Retry, retry, was_retry);
        }
        self.commit();
    }

    /// Pauses or resumes fetching from one topic's assigned partitions.
    fn flow(&self, src: Src, pause: bool, was: bool) {
        if pause == was {
            return;
        }
        let Ok(assigned) = self.consumer.assignment() else { return };
        let topic = self.names.topic(src);
        let mut tpl = TopicPartitionList::new();
        for el in assigned.elements().iter().filter(|el| el.topic() == topic) {
            tpl.add_partition(topic, el.partition());
        }
        if tpl.count() == 0 {
            return;
        }
        if !pause {
            // librdkafka resumes at its position, which may be inside a batch: read from
            // before it instead (see `Track`).
            for el in tpl.elements() {
                let Some((from, floor)) = lock(&self.state).resume_at(src, el.partition()) else { continue };
                if self.seek(src, el.partition(), from) {
                    lock(&self.state).rewound(src, el.partition(), floor);
                }
            }
        }
        let r = if pause { self.consumer.pause(&tpl) } else { self.consumer.resume(&tpl) };
        if let Err(e) = r {
            tracing::debug!(target: "orch::queue", backend = BACKEND, topic, pause, error = %e, "pause/resume failed");
        }
    }

    /// Commits every position that moved (asynchronously; failures are retried next tick).
    fn commit(&self) {
        let positions = lock(&self.state).commit_positions();
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (src, partition, pos) in positions {
            let _ = tpl.add_partition_offset(self.names.topic(src), partition, Offset::Offset(pos));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(target: "orch::queue", backend = BACKEND, error = %e, "offset commit not sent; retrying");
            lock(&self.state).recommit = true;
        }
    }
}

/// Fetches records and runs timers until the queue is dropped.
async fn pump(s: Arc<Shared>) {
    loop {
        let wake = lock(&s.state).next_wake();
        let now = Instant::now();
        let until = wake.map_or(now + TICK, |w| w.min(now + TICK));
        tokio::select! {
            m = s.consumer.recv() => match m {
                Ok(m) => s.accept(&m),
                Err(e) => {
                    tracing::debug!(target: "orch::queue", backend = BACKEND, topic = %s.names.main, error = %e, "consume error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = tokio::time::sleep_until(until) => {}
            _ = s.wake.notified() => {}
        }
        s.tick();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: i64) -> Key {
        (Src::Main, 0, offset)
    }

    #[test]
    fn receipts_round_trip_and_garbage_is_invalid_input() {
        let r = receipt((Src::Retry, 3, 17), 9);
        assert_eq!(parse_receipt(&r).unwrap(), ((Src::Retry, 3, 17), 9));
        for bad in ["", "m", "x.1.2.3", "m.1.2", "m.-1.2.3", "m.1.2.3.4", "m.a.b.c"] {
            let e = parse_receipt(&Receipt(bad.into())).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn commits_stop_at_the_first_unfinished_offset() {
        let mut st = State::default();
        for o in 10..15 {
            assert!(st.add(key(o), vec![], 1, Status::Ready, None));
        }
        assert!(!st.add(key(12), vec![], 1, Status::Ready, None), "a record fetched twice is held once");
        let got = st.take(5, Duration::from_secs(30));
        assert_eq!(got.len(), 5);
        // Acking 11..15 but not 10 commits nothing: 10 must not be skipped.
        for o in 11..15 {
            st.finish(key(o));
        }
        assert!(st.commit_positions().is_empty());
        st.finish(key(10));
        assert_eq!(st.commit_positions(), vec![(Src::Main, 0, 15)]);
        assert!(st.commit_positions().is_empty(), "nothing moved since");
    }

    #[test]
    fn held_records_wait_for_their_due_time_and_count_apart() {
        let mut st = State::default();
        let now = now_ms();
        st.add(key(1), b"later".to_vec(), 1, Status::Held(now + 60_000), None);
        st.add(key(2), b"now".to_vec(), 1, Status::Ready, None);
        assert_eq!((st.held_n, st.active()), (1, 1));
        assert_eq!(st.promote(now), (vec![], false));
        let got = st.take(10, Duration::from_secs(30));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, b"now");
        assert_eq!(st.promote(now + 60_000), (vec![], true));
        assert_eq!(st.held_n, 0);
        assert_eq!(st.take(10, Duration::from_secs(30))[0].payload, b"later");
    }

    #[test]
    fn expired_deliveries_are_taken_back_and_their_receipts_go_stale() {
        let mut st = State::default();
        st.add(key(1), b"x".to_vec(), 1, Status::Ready, None);
        let d = st.take(1, Duration::ZERO).remove(0);
        let ((k, seq), now) = (parse_receipt(&d.receipt).unwrap(), Instant::now());
        assert_eq!(st.expired(now), vec![k]);
        assert!(!st.in_flight(k, seq), "a receipt of an expired delivery acks nothing");
        assert!(st.take(1, Duration::ZERO).is_empty(), "moving records are not handed out");
    }

    #[test]
    fn reading_restarts_before_the_position_and_passes_over_what_is_below_it() {
        let mut st = State::default();
        assert_eq!(st.check(key(3)), Check::Pass, "a partition not assigned here is not read here");
        // Assigned with 1003 committed: reading starts REWIND earlier, below 1003 is passed over.
        assert_eq!(rewind_from(1003), 3);
        assert_eq!(rewind_from(7), 0);
        st.tracks.insert((Src::Main, 0), Track { next: None, floor: Some(1003) });
        assert_eq!(st.check(key(3)), Check::Pass);
        assert_eq!(st.check(key(1002)), Check::Pass);
        assert_eq!(st.check(key(1003)), Check::Take);
        assert_eq!(st.check(key(1004)), Check::Take);
        assert_eq!(st.check(key(1004)), Check::Pass, "fetched twice");
        // Paused and resumed: again from REWIND before the next offset.
        assert_eq!(st.resume_at(Src::Main, 0), Some((5, 1005)));
        st.rewound(Src::Main, 0, 1005);
        assert_eq!(st.resume_at(Src::Main, 0), None, "nothing fetched since the restart");
        assert_eq!(st.check(key(1004)), Check::Pass);
        assert_eq!(st.resume_at(Src::Main, 0), Some((5, 1005)), "still passing over up to 1005");
        assert_eq!(st.check(key(1005)), Check::Take);
        // A skip nobody foresaw: read again from before it.
        assert_eq!(st.check(key(1009)), Check::Rewind { floor: 1006 });
        st.rewound(Src::Main, 0, 1006);
        assert_eq!(st.check(key(1005)), Check::Pass);
        assert_eq!(st.check(key(1007)), Check::Take, "a gap left after reading again is in the log itself");
        assert_eq!(st.check(key(1008)), Check::Take);
        // Nothing committed: the log start, taken as it comes.
        st.tracks.insert((Src::Retry, 1), Track::default());
        assert_eq!(st.check((Src::Retry, 1, 0)), Check::Take);
        // Revoked: late records of the partition are the next owner's.
        st.drop_partition(Src::Main, 0);
        assert_eq!(st.check(key(1009)), Check::Pass);
    }

    #[test]
    fn a_revoked_partition_forgets_its_records() {
        let mut st = State::default();
        st.add(key(5), vec![], 1, Status::Ready, None);
        st.add(key(6), vec![], 1, Status::Held(u64::MAX), None);
        st.add((Src::Retry, 0, 1), vec![], 1, Status::Ready, None);
        assert_eq!(st.drop_partition(Src::Main, 0), Some(5));
        assert_eq!((st.entries.len(), st.held_n), (1, 0));
        assert_eq!(st.take(10, Duration::from_secs(1)).len(), 1);
    }
}
