//! Fault-injection wrappers: lose, duplicate, delay and reorder messages; fail database calls
//! every n-th time or all of them for a while; fail or stall a prover. Deterministic from a seed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orch_core::db::Database;
use orch_core::error::{Error, Result};
use orch_core::job::{
    ClaimRequest, Created, Job, JobQuery, JobRecord, JobWrite, NewJob, StatusCount, Transition, WorkerInfo,
};
use orch_core::prove::{ProofRequest, ProofStatus, Prover, TaskId};
use orch_core::queue::{Delivery, OutMessage, Queue, QueueCapabilities, Receipt};
use orch_core::types::{BlockNumber, BlockRange, ChainId, Epoch, JobId, JobKey, JobKind, Timestamp, WorkerId};
use tokio::sync::watch;

/// A small deterministic random source (splitmix64), safe to share.
#[derive(Debug)]
pub struct Rng(AtomicU64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(AtomicU64::new(seed))
    }

    /// Next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut z = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// What a [`FaultyQueue`] does to messages on `send`.
#[derive(Debug, Clone, Default)]
pub struct QueueFaults {
    /// Probability that a message is silently lost.
    pub drop_rate: f64,
    /// Send every message twice.
    pub duplicate: bool,
    /// Shuffle each batch and add up to this much random delay per message.
    pub reorder_jitter: Option<Duration>,
    /// Fixed extra delay for every message.
    pub delay: Duration,
}

/// Wraps a queue and misbehaves as [`QueueFaults`] says.
#[derive(Debug)]
pub struct FaultyQueue<Q> {
    inner: Q,
    faults: QueueFaults,
    rng: Rng,
    dropped: AtomicU64,
}

impl<Q: Queue> FaultyQueue<Q> {
    /// Wraps `inner`.
    pub fn new(inner: Q, faults: QueueFaults, seed: u64) -> Self {
        FaultyQueue { inner, faults, rng: Rng::new(seed), dropped: AtomicU64::new(0) }
    }

    /// Messages lost so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<Q: Queue> Queue for FaultyQueue<Q> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn capabilities(&self) -> QueueCapabilities {
        self.inner.capabilities()
    }
    async fn setup(&self) -> Result<()> {
        self.inner.setup().await
    }
    async fn send(&self, messages: Vec<OutMessage>) -> Result<()> {
        let mut out = Vec::with_capacity(messages.len() * 2);
        for mut m in messages {
            if self.rng.chance(self.faults.drop_rate) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            m.delay += self.faults.delay;
            if let Some(j) = self.faults.reorder_jitter {
                let ms = j.as_millis() as u64;
                m.delay += Duration::from_millis(if ms == 0 { 0 } else { self.rng.next_u64() % (ms + 1) });
            }
            if self.faults.duplicate {
                out.push(m.clone());
            }
            out.push(m);
        }
        if self.faults.reorder_jitter.is_some() {
            // Fisher–Yates with our own rng, so runs are reproducible.
            for i in (1..out.len()).rev() {
                let j = (self.rng.next_u64() % (i as u64 + 1)) as usize;
                out.swap(i, j);
            }
        }
        self.inner.send(out).await
    }
    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.receive(max, visibility, wait).await
    }
    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        self.inner.ack(receipts).await
    }
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.inner.nack(receipt, delay).await
    }
}

/// Switches for a [`FaultyDb`], shareable with the test.
#[derive(Debug, Default)]
pub struct DbFaults {
    /// Every call fails with `Unavailable` while set (the service is down).
    pub down: AtomicBool,
    /// Every n-th call fails with `Unavailable` (0 = never).
    pub fail_every: AtomicU64,
    /// Lease renewals fail while set (a network partition between a worker and the store).
    pub fail_lease_renewal: AtomicBool,
    /// Every claim takes this many milliseconds longer (a slow or distant store).
    pub claim_delay_ms: AtomicU64,
    calls: AtomicU64,
    claims_now: AtomicU64,
    claims_peak: AtomicU64,
}

impl DbFaults {
    /// The most claims that were in flight at once so far.
    pub fn claims_peak(&self) -> u64 {
        self.claims_peak.load(Ordering::SeqCst)
    }
}

/// Counts one claim in flight for as long as it lives, so that a claim cut off mid-way
/// (its caller dropped it) is counted out too.
struct ClaimInFlight<'a>(&'a DbFaults);

impl<'a> ClaimInFlight<'a> {
    fn enter(f: &'a DbFaults) -> Self {
        let now = f.claims_now.fetch_add(1, Ordering::SeqCst) + 1;
        f.claims_peak.fetch_max(now, Ordering::SeqCst);
        ClaimInFlight(f)
    }
}

impl Drop for ClaimInFlight<'_> {
    fn drop(&mut self) {
        self.0.claims_now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wraps a database and fails calls as [`DbFaults`] says.
#[derive(Debug)]
pub struct FaultyDb<D> {
    inner: D,
    faults: Arc<DbFaults>,
}

impl<D: Database> FaultyDb<D> {
    /// Wraps `inner`; flip the switches in `faults`.
    pub fn new(inner: D, faults: Arc<DbFaults>) -> Self {
        FaultyDb { inner, faults }
    }

    fn gate(&self) -> Result<()> {
        let n = self.faults.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let every = self.faults.fail_every.load(Ordering::Relaxed);
        if self.faults.down.load(Ordering::Relaxed) || (every > 0 && n.is_multiple_of(every)) {
            return Err(Error::unavailable("faulty db", "injected failure"));
        }
        Ok(())
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<D: Database> Database for FaultyDb<D> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn migrate(&self) -> Result<()> {
        self.gate()?;
        self.inner.migrate().await
    }
    async fn create_jobs(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<Created>> {
        self.gate()?;
        self.inner.create_jobs(jobs, now).await
    }
    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.gate()?;
        self.inner.get_job(id).await
    }
    async fn get_job_by_key(&self, key: &JobKey) -> Result<Option<Job>> {
        self.gate()?;
        self.inner.get_job_by_key(key).await
    }
    async fn update_jobs(&self, writes: &[JobWrite]) -> Result<Vec<Result<Job>>> {
        self.gate()?;
        self.inner.update_jobs(writes).await
    }
    async fn claim_jobs(&self, req: &ClaimRequest) -> Result<Vec<Job>> {
        self.gate()?;
        let _counted = ClaimInFlight::enter(&self.faults);
        let delay = self.faults.claim_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.inner.claim_jobs(req).await
    }
    async fn wake_jobs(
        &self,
        chain: &ChainId,
        targets: &[(JobKind, BlockNumber)],
        now: Timestamp,
    ) -> Result<Vec<(JobId, Epoch)>> {
        self.gate()?;
        self.inner.wake_jobs(chain, targets, now).await
    }
    async fn extend_lease(&self, id: JobId, epoch: Epoch, until: Timestamp) -> Result<()> {
        if self.faults.fail_lease_renewal.load(Ordering::Relaxed) {
            return Err(Error::unavailable("faulty db", "injected partition"));
        }
        self.gate()?;
        self.inner.extend_lease(id, epoch, until).await
    }
    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        self.gate()?;
        self.inner.list_jobs(query).await
    }
    async fn count_jobs(&self, chain: &ChainId) -> Result<Vec<StatusCount>> {
        self.gate()?;
        self.inner.count_jobs(chain).await
    }
    async fn history(&self, id: JobId) -> Result<Vec<Transition>> {
        self.gate()?;
        self.inner.history(id).await
    }
    async fn heartbeat(&self, worker: &WorkerInfo) -> Result<()> {
        self.gate()?;
        self.inner.heartbeat(worker).await
    }
    async fn workers(&self, since: Timestamp) -> Result<Vec<WorkerInfo>> {
        self.gate()?;
        self.inner.workers(since).await
    }
    async fn try_lead(&self, name: &str, owner: &WorkerId, now: Timestamp, until: Timestamp) -> Result<bool> {
        self.gate()?;
        self.inner.try_lead(name, owner, now, until).await
    }
    async fn import_jobs(&self, records: &[JobRecord]) -> Result<Vec<bool>> {
        self.gate()?;
        self.inner.import_jobs(records).await
    }
}

/// A prover whose tasks covering `block` fail the first `times` times they are polled to an end.
#[derive(Debug)]
pub struct FlakyProver<P> {
    inner: P,
    block: BlockNumber,
    left: AtomicU64,
    ranges: Mutex<HashMap<String, BlockRange>>,
    failed: Mutex<HashSet<String>>,
}

impl<P: Prover> FlakyProver<P> {
    /// Fails tasks covering `block` `times` times.
    pub fn new(inner: P, block: BlockNumber, times: u64) -> Self {
        FlakyProver { inner, block, left: AtomicU64::new(times), ranges: Mutex::default(), failed: Mutex::default() }
    }

    /// Failures still to come.
    pub fn failures_left(&self) -> u64 {
        self.left.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<P: Prover> Prover for FlakyProver<P> {
    async fn submit(&self, req: ProofRequest) -> Result<TaskId> {
        let range = req.range;
        let id = self.inner.submit(req).await?;
        self.ranges.lock().unwrap_or_else(|p| p.into_inner()).insert(id.0.clone(), range);
        Ok(id)
    }

    async fn status(&self, task: &TaskId) -> Result<ProofStatus> {
        let failed_reason = || ProofStatus::Failed { reason: "injected prover failure".into() };
        if self.failed.lock().unwrap_or_else(|p| p.into_inner()).contains(&task.0) {
            return Ok(failed_reason());
        }
        let covers =
            self.ranges.lock().unwrap_or_else(|p| p.into_inner()).get(&task.0).is_some_and(|r| r.contains(self.block));
        if covers && self.left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            self.failed.lock().unwrap_or_else(|p| p.into_inner()).insert(task.0.clone());
            return Ok(failed_reason());
        }
        self.inner.status(task).await
    }
}

/// A prover whose first submission covering `block` stalls until [`Gate::open`] is called: a
/// worker frozen mid-job (GC pause, partition) while holding a lease.
#[derive(Debug)]
pub struct GatedProver<P> {
    inner: P,
    block: BlockNumber,
    tripped: AtomicBool,
    gate: Gate,
}

/// Opens a [`GatedProver`] and tells whether it has caught a submission.
#[derive(Debug, Clone)]
pub struct Gate {
    open: watch::Sender<bool>,
    caught: Arc<AtomicBool>,
}

impl Gate {
    /// Releases the stalled call.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }

    /// Whether a submission is (or was) stalled.
    pub fn caught(&self) -> bool {
        self.caught.load(Ordering::SeqCst)
    }
}

impl<P: Prover> GatedProver<P> {
    /// Stalls the first submission covering `block`.
    pub fn new(inner: P, block: BlockNumber) -> (Self, Gate) {
        let gate = Gate { open: watch::channel(false).0, caught: Arc::default() };
        (GatedProver { inner, block, tripped: AtomicBool::new(false), gate: gate.clone() }, gate)
    }
}

#[async_trait]
impl<P: Prover> Prover for GatedProver<P> {
    async fn submit(&self, req: ProofRequest) -> Result<TaskId> {
        if req.range.contains(self.block) && !self.tripped.swap(true, Ordering::SeqCst) {
            self.gate.caught.store(true, Ordering::SeqCst);
            let mut rx = self.gate.open.subscribe();
            let _ = rx.wait_for(|open| *open).await;
        }
        self.inner.submit(req).await
    }

    async fn status(&self, task: &TaskId) -> Result<ProofStatus> {
        self.inner.status(task).await
    }
}
