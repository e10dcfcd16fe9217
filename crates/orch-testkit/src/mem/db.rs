//! [`MemDatabase`]: the reference `Database`, in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use orch_core::db::Database;
use orch_core::error::{Error, Result};
use orch_core::job::{
    ClaimRequest, Created, Job, JobQuery, JobRecord, JobWrite, NewJob, Order, StatusCount, Transition, WorkerInfo,
};
use orch_core::state::{claim_counts_attempt, claimed_status};
use orch_core::types::{BlockNumber, ChainId, Epoch, JobId, JobKey, JobKind, Lease, Timestamp, Version, WorkerId};

/// Where a claimable job waits. Jobs move `Waiting`/`Leased` → `Ready` when their time comes,
/// so a claim touches only jobs that are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Not claimable (terminal, failed, timed out).
    None,
    /// Claimable from `next_run_at`.
    Waiting(Timestamp),
    /// Held until the lease expires.
    Leased(Timestamp),
    /// Due now; indexed by block.
    Ready,
}

type ReadyKey = (BlockNumber, BlockNumber, JobId);

/// FxHash-style hasher: the maps here are keyed by random UUIDs and small keys, where SipHash
/// was a tenth of the engine benchmark's time and DoS resistance buys nothing.
#[derive(Debug, Default, Clone, Copy)]
struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type Fast = std::hash::BuildHasherDefault<FastHasher>;
type IdMap<V> = HashMap<JobId, V, Fast>;

#[derive(Debug, Default)]
struct Inner {
    jobs: IdMap<Job>,
    by_key: HashMap<JobKey, JobId, Fast>,
    history: IdMap<Vec<Transition>>,
    slots: IdMap<Slot>,
    waiting: BTreeSet<(Timestamp, JobId)>,
    leased: BTreeSet<(Timestamp, JobId)>,
    ready: HashMap<ChainId, [BTreeSet<ReadyKey>; 5], Fast>,
    /// Sorted index for listings: chain → (first, last, kind) → id.
    sorted: HashMap<ChainId, BTreeMap<(BlockNumber, BlockNumber, JobKind), JobId>, Fast>,
    workers: HashMap<WorkerId, WorkerInfo>,
    leaders: HashMap<String, (WorkerId, Timestamp)>,
}

impl Inner {
    fn unplace(&mut self, job: &Job) {
        match self.slots.remove(&job.id) {
            Some(Slot::Waiting(t)) => {
                self.waiting.remove(&(t, job.id));
            }
            Some(Slot::Leased(t)) => {
                self.leased.remove(&(t, job.id));
            }
            Some(Slot::Ready) => {
                if let Some(sets) = self.ready.get_mut(&job.key.chain) {
                    sets[job.key.kind.index()].remove(&(job.key.range.first(), job.key.range.last(), job.id));
                }
            }
            Some(Slot::None) | None => {}
        }
    }

    fn ready_set(&mut self, chain: &ChainId, kind: JobKind) -> &mut BTreeSet<ReadyKey> {
        if !self.ready.contains_key(chain) {
            self.ready.insert(chain.clone(), Default::default());
        }
        let sets = self.ready.get_mut(chain).expect("inserted above");
        &mut sets[kind.index()]
    }

    fn place(&mut self, job: &Job, now: Timestamp) {
        let slot = if !job.status.is_claimable() {
            Slot::None
        } else if let Some(l) = &job.lease {
            Slot::Leased(l.until)
        } else if job.next_run_at <= now {
            Slot::Ready
        } else {
            Slot::Waiting(job.next_run_at)
        };
        match slot {
            Slot::Ready => {
                let rk = (job.key.range.first(), job.key.range.last(), job.id);
                self.ready_set(&job.key.chain, job.key.kind).insert(rk);
            }
            Slot::Waiting(t) => {
                self.waiting.insert((t, job.id));
            }
            Slot::Leased(t) => {
                self.leased.insert((t, job.id));
            }
            Slot::None => {}
        }
        self.slots.insert(job.id, slot);
    }

    /// Stores a whole record and re-indexes it; `now` is the time of the write (a job already due
    /// then goes straight to `ready`).
    fn store(&mut self, job: Job, now: Timestamp) {
        // The key never changes (writes that try are rejected), so the new record finds the
        // old one's index entries.
        self.unplace(&job);
        self.place(&job, now);
        self.jobs.insert(job.id, job);
    }

    /// Moves jobs whose time has come into `ready`.
    fn promote(&mut self, now: Timestamp) {
        for set in [true, false] {
            loop {
                let src = if set { &mut self.waiting } else { &mut self.leased };
                let Some(&(t, id)) = src.first() else { break };
                if t > now {
                    break;
                }
                src.remove(&(t, id));
                let Some(job) = self.jobs.get(&id) else { continue };
                // A lease that expired at `t` is due only if the job is also past next_run_at.
                if !set && job.next_run_at > now {
                    self.waiting.insert((job.next_run_at, id));
                    self.slots.insert(id, Slot::Waiting(job.next_run_at));
                    continue;
                }
                let (chain, kind) = (job.key.chain.clone(), job.key.kind);
                let rk = (job.key.range.first(), job.key.range.last(), id);
                self.ready_set(&chain, kind).insert(rk);
                self.slots.insert(id, Slot::Ready);
            }
        }
    }
}

/// An in-memory job store implementing the whole [`Database`] contract. The reference against
/// which adapters are compared and the store of the engine's unit tests; not durable.
#[derive(Debug, Default)]
pub struct MemDatabase {
    inner: Mutex<Inner>,
}

impl MemDatabase {
    /// An empty store.
    pub fn new() -> MemDatabase {
        MemDatabase::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written job: every mutation below
        // is a whole-record replace.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every job of every chain (for test assertions).
    pub fn all_jobs(&self) -> Vec<Job> {
        self.lock().jobs.values().cloned().collect()
    }
}

#[async_trait]
impl Database for MemDatabase {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    async fn create_jobs(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Created>> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(jobs.len());
        for nj in jobs {
            if let Some(id) = g.by_key.get(&nj.key) {
                out.push(Created::Existing(g.jobs[id].clone()));
                continue;
            }
            if g.jobs.contains_key(&nj.id) {
                return Err(Error::already_exists(format!("job id {}", nj.id)));
            }
            let job = nj.into_job(now);
            g.by_key.insert(job.key.clone(), job.id);
            let sk = JobQuery::sort_key(&job.key);
            g.sorted.entry(job.key.chain.clone()).or_default().insert(sk, job.id);
            g.store(job.clone(), now);
            out.push(Created::New(job));
        }
        Ok(out)
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.lock().jobs.get(&id).cloned().ok_or_else(|| Error::not_found(format!("job {id}")))
    }

    async fn get_job_by_key(&self, key: &JobKey) -> Result<Option<Job>> {
        let g = self.lock();
        Ok(g.by_key.get(key).map(|id| g.jobs[id].clone()))
    }

    async fn update_jobs(&self, writes: &[JobWrite]) -> Result<Vec<Result<Job>>> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            let Some(cur) = g.jobs.get(&w.job.id) else {
                out.push(Err(Error::not_found(format!("job {}", w.job.id))));
                continue;
            };
            if cur.version != w.job.version || cur.epoch != w.job.epoch || cur.key != w.job.key {
                out.push(Err(Error::conflict(format!("job {}", w.job.id))));
                continue;
            }
            let mut job = w.job.clone();
            job.version = Version(job.version.0 + 1);
            job.updated_at = w.now;
            if let Some(t) = &w.transition {
                g.history.entry(job.id).or_default().push(t.clone());
            }
            g.store(job.clone(), w.now);
            out.push(Ok(job));
        }
        Ok(out)
    }

    async fn claim_jobs(&self, req: &ClaimRequest) -> Result<Vec<Job>> {
        let mut g = self.lock();
        g.promote(req.now);
        let mut out = Vec::new();
        for (kind, n) in &req.wants {
            let picked: Vec<ReadyKey> = match g.ready.get(&req.chain) {
                Some(sets) => sets[kind.index()].iter().take(*n as usize).copied().collect(),
                None => continue,
            };
            for rk in picked {
                let id = rk.2;
                let Some(mut job) = g.jobs.remove(&id) else { continue };
                g.unplace(&job);
                let Some(to) = claimed_status(job.status) else {
                    g.place(&job, req.now);
                    g.jobs.insert(id, job);
                    continue;
                };
                let from = job.status;
                if claim_counts_attempt(from) {
                    job.attempts += 1;
                }
                job.status = to;
                job.epoch = Epoch(job.epoch.0 + 1);
                job.version = Version(job.version.0 + 1);
                job.lease = Some(Lease { owner: req.owner.clone(), until: req.lease_until });
                job.updated_at = req.now;
                if from != to {
                    g.history.entry(id).or_default().push(Transition {
                        at: req.now,
                        from,
                        to,
                        reason: "claimed".into(),
                        attempt: job.attempts,
                        actor: Some(req.owner.clone()),
                        epoch: job.epoch,
                    });
                }
                out.push(job.clone());
                g.place(&job, req.now);
                g.jobs.insert(id, job);
            }
        }
        Ok(out)
    }

    async fn wake_jobs(
        &self,
        chain: &ChainId,
        targets: &[(JobKind, BlockNumber)],
        now: Timestamp,
    ) -> Result<Vec<(JobId, Epoch)>> {
        let mut g = self.lock();
        let mut woken = Vec::new();
        for (kind, first) in targets {
            let ids: Vec<JobId> = g
                .sorted
                .get(chain)
                .map(|m| {
                    m.range((*first, 0, JobKind::SnosRun)..(*first + 1, 0, JobKind::SnosRun))
                        .filter(|((_, _, k), _)| k == kind)
                        .map(|(_, id)| *id)
                        .collect()
                })
                .unwrap_or_default();
            for id in ids {
                let job = &g.jobs[&id];
                if job.status == orch_core::types::JobStatus::Created && job.next_run_at > now {
                    let mut job = job.clone();
                    job.next_run_at = now;
                    woken.push((job.id, job.epoch));
                    g.store(job, now);
                }
            }
        }
        Ok(woken)
    }

    async fn extend_lease(&self, id: JobId, epoch: Epoch, until: Timestamp) -> Result<()> {
        let mut g = self.lock();
        let Some(job) = g.jobs.get(&id) else {
            return Err(Error::not_found(format!("job {id}")));
        };
        if job.epoch != epoch || job.lease.is_none() {
            return Err(Error::conflict(format!("lease of job {id}")));
        }
        let mut job = job.clone();
        if let Some(l) = job.lease.as_mut() {
            l.until = until;
        }
        let at = job.updated_at;
        g.store(job, at);
        Ok(())
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<Job>> {
        let g = self.lock();
        let Some(sorted) = g.sorted.get(&q.chain) else { return Ok(vec![]) };
        let after = q.after.as_ref().map(JobQuery::sort_key);
        let limit = q.limit.min(10_000) as usize;
        let pick = |(_, id): (&(u64, u64, JobKind), &JobId)| {
            let job = &g.jobs[id];
            q.matches(job).then(|| job.clone())
        };
        let out = match q.order {
            Order::Ascending => {
                let range = match after {
                    Some(a) => sorted.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
                    None => sorted.range(..),
                };
                range.filter_map(pick).take(limit).collect()
            }
            Order::Descending => {
                let range = match after {
                    Some(a) => sorted.range(..a),
                    None => sorted.range(..),
                };
                range.rev().filter_map(pick).take(limit).collect()
            }
        };
        Ok(out)
    }

    async fn count_jobs(&self, chain: &ChainId) -> Result<Vec<StatusCount>> {
        let g = self.lock();
        let mut counts: BTreeMap<(JobKind, orch_core::types::JobStatus), u64> = BTreeMap::new();
        for job in g.jobs.values().filter(|j| &j.key.chain == chain) {
            *counts.entry((job.key.kind, job.status)).or_default() += 1;
        }
        Ok(counts.into_iter().map(|((kind, status), count)| StatusCount { kind, status, count }).collect())
    }

    async fn import_jobs(&self, records: &[JobRecord]) -> Result<Vec<bool>> {
        let mut g = self.lock();
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            r.validate()?;
            let job = &r.job;
            if let Some(cur) = g.jobs.get(&job.id) {
                if cur.key != job.key {
                    return Err(Error::already_exists(format!(
                        "job id {} (stored with key {}, imported with key {})",
                        job.id, cur.key, job.key
                    )));
                }
                out.push(false);
                continue;
            }
            if let Some(holder) = g.by_key.get(&job.key) {
                return Err(Error::already_exists(format!(
                    "job key {} (held by job {holder}, imported as job {})",
                    job.key, job.id
                )));
            }
            g.by_key.insert(job.key.clone(), job.id);
            let sk = JobQuery::sort_key(&job.key);
            g.sorted.entry(job.key.chain.clone()).or_default().insert(sk, job.id);
            // Placed as of the epoch start: claims promote whatever is due by their `now`.
            g.store(job.clone(), Timestamp(0));
            g.history.insert(job.id, r.history.clone());
            out.push(true);
        }
        Ok(out)
    }

    async fn history(&self, id: JobId) -> Result<Vec<Transition>> {
        let g = self.lock();
        if !g.jobs.contains_key(&id) {
            return Err(Error::not_found(format!("job {id}")));
        }
        Ok(g.history.get(&id).cloned().unwrap_or_default())
    }

    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()> {
        let mut g = self.lock();
        let started = g.workers.get(&worker.id).map(|w| w.started_at);
        let mut w = worker.clone();
        if let Some(s) = started {
            w.started_at = s;
        }
        g.workers.insert(w.id.clone(), w);
        Ok(())
    }

    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>> {
        let g = self.lock();
        let mut v: Vec<_> = g.workers.values().filter(|w| w.heartbeat_at >= since).cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    async fn try_lead(&self, name: &str, owner: &WorkerId, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut g = self.lock();
        let free = match g.leaders.get(name) {
            None => true,
            Some((o, t)) => o == owner || *t <= now,
        };
        if free {
            g.leaders.insert(name.to_string(), (owner.clone(), until));
        }
        Ok(free)
    }
}
