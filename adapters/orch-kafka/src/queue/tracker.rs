//! The delivery tracker: every record this instance consumed and has not finished — held
//! until due, ready, in flight under a receipt, or being moved to another topic — with the
//! visibility deadlines, the committable position of each partition, and where reading each
//! assigned partition has got to. Plain data, no I/O: the pump and the `Queue` methods drive
//! it under one lock.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use orch_core::error::{Error, Result};
use orch_core::queue::{Delivery, Receipt};
use tokio::time::Instant;

/// Longest visibility timeout honoured (longer ones are clamped).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Most records in one batch our producer writes (librdkafka's `batch.num.messages`, set
/// explicitly), and so how far before a position a partition is read again (see [`Track`]):
/// the batch holding that position starts at most this many offsets earlier.
pub(super) const REWIND: i64 = 1_000;

/// Which of the queue's consumed topics a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Src {
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
pub(super) type Key = (Src, i32, i64);

/// The queue's topic names.
#[derive(Debug)]
pub(super) struct Names {
    pub(super) main: String,
    pub(super) retry: String,
    pub(super) dead: String,
}

impl Names {
    pub(super) fn src(&self, topic: &str) -> Option<Src> {
        if topic == self.main {
            Some(Src::Main)
        } else if topic == self.retry {
            Some(Src::Retry)
        } else {
            None
        }
    }

    pub(super) fn topic(&self, src: Src) -> &str {
        match src {
            Src::Main => &self.main,
            Src::Retry => &self.retry,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
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
pub(super) struct Entry {
    pub(super) payload: Vec<u8>,
    pub(super) attempt: u32,
    pub(super) status: Status,
    /// Set when the record must go to the dead-letter topic (why), not to receivers.
    pub(super) dead: Option<&'static str>,
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
pub(super) struct Track {
    /// One past the last record fetched since reading (re)started here, if any: where the
    /// consumer resumes after a pause, and the offset the next record must have.
    next: Option<i64>,
    /// Records below this are passed over (reading again from before it).
    pub(super) floor: Option<i64>,
}

/// What to do with a fetched record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
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
pub(super) struct State {
    pub(super) entries: HashMap<Key, Entry>,
    ready: VecDeque<Key>,
    held: BinaryHeap<Reverse<(u64, Key)>>,
    /// How many entries are `Held`.
    pub(super) held_n: usize,
    deadlines: BinaryHeap<Reverse<(Instant, u64, Key)>>,
    parts: HashMap<(Src, i32), Part>,
    /// The partitions assigned to this instance.
    pub(super) tracks: HashMap<(Src, i32), Track>,
    seq: u64,
    /// A partition's position may have moved since the last commit.
    dirty: bool,
    /// A commit failed: commit every position again.
    pub(super) recommit: bool,
    /// Fetching from the main topic is paused (flow control, by the pump).
    pub(super) paused_main: bool,
    /// Fetching from the retry topic is paused.
    pub(super) paused_retry: bool,
}

impl State {
    /// Checks that a fetched record continues its partition where this instance left off.
    pub(super) fn check(&mut self, (src, partition, offset): Key) -> Check {
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
    pub(super) fn rewound(&mut self, src: Src, partition: i32, floor: i64) {
        if let Some(t) = self.tracks.get_mut(&(src, partition)) {
            *t = Track { next: None, floor: Some(t.floor.map_or(floor, |f| f.max(floor))) };
        }
    }

    /// Where to read a paused partition again from when it resumes, and the floor to pass
    /// over up to; `None` when nothing was fetched since reading (re)started (the consumer
    /// then resumes at that start).
    pub(super) fn resume_at(&self, src: Src, partition: i32) -> Option<(i64, i64)> {
        let t = self.tracks.get(&(src, partition))?;
        let next = t.next?;
        Some((rewind_from(next), t.floor.map_or(next, |f| f.max(next))))
    }

    /// Registers a consumed record; false when it is already held (fetched twice).
    pub(super) fn add(
        &mut self,
        key: Key,
        payload: Vec<u8>,
        attempt: u32,
        status: Status,
        dead: Option<&'static str>,
    ) -> bool {
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
    pub(super) fn set_status(&mut self, key: Key, status: Status) {
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
    pub(super) fn finish(&mut self, key: Key) {
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
    pub(super) fn in_flight(&self, key: Key, seq: u64) -> bool {
        matches!(self.entries.get(&key), Some(Entry { status: Status::InFlight { seq: s, .. }, .. }) if *s == seq)
    }

    /// Hands out up to `max` ready messages, invisible until `now + visibility`.
    pub(super) fn take(&mut self, max: usize, visibility: Duration) -> Vec<Delivery> {
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
    pub(super) fn promote(&mut self, now: u64) -> (Vec<Key>, bool) {
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
    pub(super) fn expired(&mut self, now: Instant) -> Vec<Key> {
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
    pub(super) fn next_wake(&self) -> Option<Instant> {
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
    pub(super) fn commit_positions(&mut self) -> Vec<(Src, i32, i64)> {
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
    pub(super) fn drop_partition(&mut self, src: Src, partition: i32) -> Option<i64> {
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
    pub(super) fn compact(&mut self) {
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
    pub(super) fn active(&self) -> usize {
        self.entries.len() - self.held_n
    }
}

/// Where to start reading so that the batch holding `position` is fetched whole.
pub(super) fn rewind_from(position: i64) -> i64 {
    position.saturating_sub(REWIND).max(0)
}

fn receipt(key: Key, seq: u64) -> Receipt {
    Receipt(format!("{}.{}.{}.{seq}", key.0.tag(), key.1, key.2))
}

pub(super) fn parse_receipt(r: &Receipt) -> Result<(Key, u64)> {
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

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(super) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent between statements; a panic elsewhere must not wedge the queue.
    m.lock().unwrap_or_else(|e| e.into_inner())
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
