//! The background task of a receiving instance: fetches records into the tracker, holds
//! delayed ones until due, gives back expired deliveries, republishes to the retry and
//! dead-letter topics, pauses and resumes fetching, and commits finished positions.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

use super::tracker::{lock, now_ms, rewind_from, Check, Key, Src, Status};
use super::{ms, Shared, H_ATTEMPT, H_DUE, H_FROM, H_REASON, MAX_DELAY};
use crate::error::BACKEND;

/// Most delayed messages one instance holds in memory; past it the retry topic is paused.
const MAX_HELD: usize = 100_000;
/// How soon a failed move to the dead-letter topic is tried again.
const DEAD_RETRY: Duration = Duration::from_secs(1);
/// Longest the pump sleeps without looking at timers and commits.
const TICK: Duration = Duration::from_millis(500);

/// A positive decimal header value.
fn header_u64(m: &BorrowedMessage<'_>, key: &str) -> Option<u64> {
    let h = m.headers()?;
    let v = h.iter().find(|h| h.key == key)?.value?;
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl Shared {
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
    pub(super) async fn give_back(self: &Arc<Self>, key: Key, attempt: u32, delay: Duration) {
        let next = attempt.saturating_add(1);
        if next > self.config.max_deliveries {
            self.move_record(key, attempt, None, Some("max_deliveries")).await;
        } else {
            let due = (!delay.is_zero()).then(|| now_ms().saturating_add(ms(delay.min(MAX_DELAY))));
            self.move_record(key, next, due, None).await;
        }
    }

    /// Whether a fetched record is to be taken in; reads the partition again when the broker
    /// skipped records before it (see [`Track`](super::tracker::Track)).
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
    pub(super) fn commit(&self) {
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
pub(super) async fn pump(s: Arc<Shared>) {
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
