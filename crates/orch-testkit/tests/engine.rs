//! Engine reliability over 1,000 blocks on the in-memory adapters with injected faults: every
//! block's state transition is applied exactly once, in order, on a valid chain of roots, and
//! no job is left unfinished.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_core::clock::{Clock, SystemClock};
use orch_core::db::Database;
use orch_core::engine::pipeline::PipelinePorts;
use orch_core::engine::{Engine, EngineConfig, EngineHandle, RetryPolicy};
use orch_core::job::JobQuery;
use orch_core::prove::Prover;
use orch_core::queue::Queue;
use orch_core::types::{BlockRange, ChainId, JobKey, JobKind, JobStatus};
use orch_testkit::faults::{DbFaults, FaultyDb, FaultyQueue, FlakyProver, GatedProver, QueueFaults};
use orch_testkit::mem::{MemDatabase, MemQueue, MemStorage};
use orch_testkit::sim::{sim_root, SimChain, SimDa, SimOs, SimProver, SimSettlement};

const BLOCKS: u64 = 1_000;

fn chain_id() -> ChainId {
    ChainId::new("testchain").unwrap()
}

fn fast_config() -> EngineConfig {
    EngineConfig {
        workers: 4,
        claim_batch: 16,
        lease: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        dependency_poll: Duration::from_millis(100),
        verify_poll: Duration::ZERO,
        retry: RetryPolicy { max_attempts: 5, base: Duration::from_millis(20), max: Duration::from_millis(200) },
        creator_interval: Duration::from_millis(10),
        max_blocks_ahead: 64,
        drain_timeout: Duration::from_secs(5),
        ..EngineConfig::default()
    }
}

struct World {
    db: Arc<MemDatabase>,
    queue: Arc<dyn Queue>,
    storage: Arc<MemStorage>,
    chain: Arc<SimChain>,
    os: Arc<SimOs>,
    prover: Arc<dyn Prover>,
    da: Arc<SimDa>,
    settlement: Arc<SimSettlement>,
    clock: Arc<dyn Clock>,
}

impl World {
    fn new(faults: QueueFaults, prover: Arc<dyn Prover>) -> World {
        World {
            db: Arc::new(MemDatabase::new()),
            queue: Arc::new(FaultyQueue::new(MemQueue::new(), faults, 7)),
            storage: Arc::new(MemStorage::new()),
            chain: Arc::new(SimChain::new(BLOCKS)),
            os: Arc::new(SimOs::default()),
            prover,
            da: Arc::new(SimDa::default()),
            settlement: Arc::new(SimSettlement::new(0, sim_root(None))),
            clock: Arc::new(SystemClock),
        }
    }

    fn ports(&self, db: Arc<dyn Database>, prover: Arc<dyn Prover>) -> PipelinePorts {
        PipelinePorts {
            chain: self.chain.clone(),
            os: self.os.clone(),
            prover,
            da: self.da.clone(),
            settlement: self.settlement.clone(),
            storage: self.storage.clone(),
            db,
        }
    }

    fn engine_with(&self, db: Arc<dyn Database>, prover: Arc<dyn Prover>, cfg: EngineConfig) -> Engine {
        Engine::builder(chain_id(), db.clone(), self.clock.clone())
            .config(cfg)
            .queue(self.queue.clone())
            .pipeline(self.ports(db, prover))
            .build()
            .expect("engine builds")
    }

    fn engine(&self) -> Engine {
        self.engine_with(self.db.clone(), self.prover.clone(), fast_config())
    }

    async fn wait_settled(&self, n: u64, within: Duration) {
        let end = Instant::now() + within;
        while (self.settlement.applied().len() as u64) < n {
            assert!(
                Instant::now() < end,
                "only {} of {n} blocks settled in {within:?}; rejections: {:?}",
                self.settlement.applied().len(),
                self.settlement.rejections()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exactly-once, in-order, valid-roots, nothing-stuck assertion every scenario ends with.
    async fn assert_settled_exactly_once(&self, n: u64) {
        let applied = self.settlement.applied();
        assert!(self.settlement.rejections().is_empty(), "ledger rejected updates: {:?}", self.settlement.rejections());
        assert_eq!(applied.len() as u64, n, "blocks settled");
        let mut prev = sim_root(None);
        for (i, a) in applied.iter().enumerate() {
            assert_eq!(a.range, BlockRange::single(i as u64), "update {i} out of order");
            assert_eq!(a.prev_root, prev, "update {i} does not chain on its predecessor");
            assert_eq!(a.new_root, sim_root(Some(i as u64)), "update {i} carries the wrong root");
            prev = a.new_root;
        }
        // Nothing stuck: every job of blocks 0..n completed (give in-flight verifications a moment).
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let jobs: Vec<_> = self.db.all_jobs().into_iter().filter(|j| j.range().last() < n).collect();
            let unfinished: Vec<_> = jobs
                .iter()
                .filter(|j| j.status != JobStatus::Completed)
                .map(|j| (j.key.to_string(), j.status))
                .collect();
            if unfinished.is_empty() {
                assert_eq!(jobs.len() as u64, 4 * n, "one job of each kind per block");
                break;
            }
            assert!(Instant::now() < end, "jobs left unfinished: {:?}", &unfinished[..unfinished.len().min(10)]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let proofs = self.db.all_jobs().iter().filter(|j| j.kind() == JobKind::ProofCreation).count();
        assert!(proofs as u64 >= n);
    }
}

async fn run_two_instances(w: &World) -> (EngineHandle, EngineHandle) {
    (w.engine().start(), w.engine().start())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_duplicated_settles_each_block_once_in_order() {
    let w = World::new(QueueFaults { duplicate: true, ..QueueFaults::default() }, Arc::new(SimProver::default()));
    let (a, b) = run_two_instances(&w).await;
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_of_messages_dropped_settles_each_block_once_in_order() {
    let w = World::new(QueueFaults { drop_rate: 0.2, ..QueueFaults::default() }, Arc::new(SimProver::default()));
    let (a, b) = run_two_instances(&w).await;
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_deliveries_settle_each_block_once_in_order() {
    let faults = QueueFaults { reorder_jitter: Some(Duration::from_millis(30)), ..QueueFaults::default() };
    let w = World::new(faults, Arc::new(SimProver::default()));
    let (a, b) = run_two_instances(&w).await;
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Instance A stalls inside the prover call for block 500 and cannot renew its lease (frozen
/// process, partition). B reclaims the job when the lease lapses and finishes the chain. When A
/// wakes up, its late result is rejected by the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_worker_is_taken_over_and_its_late_write_is_fenced() {
    let shared_prover = Arc::new(SimProver::default());
    let w = World::new(QueueFaults::default(), shared_prover.clone());
    let (gated, gate) = GatedProver::new(shared_prover.clone(), 500);
    let faults = Arc::new(DbFaults::default());
    faults.fail_lease_renewal.store(true, Ordering::SeqCst);
    let a_db: Arc<dyn Database> = Arc::new(FaultyDb::new(w.db.clone(), faults));
    let short = EngineConfig { lease: Duration::from_millis(300), ..fast_config() };
    let a = w.engine_with(a_db, Arc::new(gated), short.clone()).start();

    let end = Instant::now() + Duration::from_secs(60);
    while !gate.caught() {
        assert!(Instant::now() < end, "instance A never reached block 500");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b = w.engine_with(w.db.clone(), shared_prover.clone(), short).start();
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;

    let before = a.stats().conflicts;
    gate.open();
    let end = Instant::now() + Duration::from_secs(10);
    while a.stats().conflicts == before {
        assert!(Instant::now() < end, "A's late write was not rejected by the fence");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The late write changed nothing: still exactly once, and the proof job is B's.
    w.assert_settled_exactly_once(BLOCKS).await;
    let key = JobKey { chain: chain_id(), kind: JobKind::ProofCreation, range: BlockRange::single(500) };
    let job = w.db.get_job_by_key(&key).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert!(job.attempts >= 1, "the orphaned attempt is counted");
    a.abort();
    b.shutdown().await;
}

/// Proving block 500 fails three times, then succeeds. Later blocks' proving and DA go ahead
/// meanwhile; settlement of 500 and after waits; everything completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_proof_holds_back_only_later_settlement_then_recovers() {
    let flaky = Arc::new(FlakyProver::new(SimProver::default(), 500, 3));
    let w = World::new(QueueFaults::default(), flaky.clone());
    let mut cfg = fast_config();
    cfg.retry = RetryPolicy { max_attempts: 5, base: Duration::from_millis(60), max: Duration::from_millis(500) };
    let a = w.engine_with(w.db.clone(), flaky.clone(), cfg.clone()).start();
    let b = w.engine_with(w.db.clone(), flaky.clone(), cfg).start();
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;
    assert_eq!(flaky.failures_left(), 0, "the injected failures happened");

    let key = |kind, n| JobKey { chain: chain_id(), kind, range: BlockRange::single(n) };
    let proof = w.db.get_job_by_key(&key(JobKind::ProofCreation, 500)).await.unwrap().unwrap();
    assert_eq!(proof.attempts, 3, "three failed attempts recorded");
    let history = w.db.history(proof.id).await.unwrap();
    let retries = history.iter().filter(|t| t.to == JobStatus::PendingRetry).count();
    assert_eq!(retries, 3, "{history:#?}");

    let completed_at = |id| {
        let db = w.db.clone();
        async move { db.history(id).await.unwrap().iter().find(|t| t.to == JobStatus::Completed).map(|t| t.at).unwrap() }
    };
    let st500 = w.db.get_job_by_key(&key(JobKind::StateTransition, 500)).await.unwrap().unwrap();
    let st500_done = completed_at(st500.id).await;
    let first_failure = history.iter().find(|t| t.to == JobStatus::PendingRetry).unwrap().at;
    // Work on later blocks went ahead while 500 was failing: something of block > 500
    // completed between the first failure and block 500's settlement.
    let mut q = JobQuery::all(chain_id(), 10_000);
    q.kinds = vec![JobKind::ProofCreation, JobKind::DataSubmission, JobKind::SnosRun];
    q.first_block = Some((501, BLOCKS));
    let mut ahead = 0;
    for j in w.db.list_jobs(&q).await.unwrap() {
        let t = completed_at(j.id).await;
        if t > first_failure && t <= st500_done {
            ahead += 1;
        }
    }
    assert!(ahead > 0, "no later block's proving or DA progressed while block 500 was failing");
    // And no later block settled before 500 (the ledger would have rejected it, but check the
    // jobs too).
    let st501 = w.db.get_job_by_key(&key(JobKind::StateTransition, 501)).await.unwrap().unwrap();
    assert!(completed_at(st501.id).await >= st500_done);
    a.shutdown().await;
    b.shutdown().await;
}

/// The database goes away for a while mid-run: workers back off and resume, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_mid_run_loses_nothing() {
    let w = World::new(QueueFaults::default(), Arc::new(SimProver::default()));
    let faults = Arc::new(DbFaults::default());
    let db: Arc<dyn Database> = Arc::new(FaultyDb::new(w.db.clone(), faults.clone()));
    let a = w.engine_with(db.clone(), w.prover.clone(), fast_config()).start();
    let b = w.engine_with(db, w.prover.clone(), fast_config()).start();
    w.wait_settled(300, Duration::from_secs(60)).await;
    faults.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    faults.down.store(false, Ordering::SeqCst);
    // Flaky afterwards too: every 7th call fails.
    faults.fail_every.store(7, Ordering::SeqCst);
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A slow store: each instance has at most `concurrent_claims` claims in flight, and uses
/// them all when its workers are hungry; two instances with different bounds settle every block
/// once between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_in_flight_stay_within_concurrent_claims() {
    let w = World::new(QueueFaults::default(), Arc::new(SimProver::default()));
    let mut instances = Vec::new();
    let mut faults = Vec::new();
    for bound in [1usize, 3] {
        let f = Arc::new(DbFaults::default());
        f.claim_delay_ms.store(5, Ordering::SeqCst);
        let db: Arc<dyn Database> = Arc::new(FaultyDb::new(w.db.clone(), f.clone()));
        let cfg = EngineConfig { workers: 8, concurrent_claims: bound, ..fast_config() };
        instances.push(w.engine_with(db, w.prover.clone(), cfg).start());
        faults.push((bound, f));
    }
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;
    for e in instances {
        e.shutdown().await;
    }
    for (bound, f) in faults {
        assert_eq!(f.claims_peak(), bound as u64, "claims in flight at once with concurrent_claims = {bound}");
    }
}

/// Stop mid-run (graceful once, crash once) and start again: the new instance resumes from the
/// store and never settles a block twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_drain_and_after_crash_resumes_without_resettling() {
    let w = World::new(QueueFaults::default(), Arc::new(SimProver::default()));
    let cfg = EngineConfig { lease: Duration::from_millis(400), ..fast_config() };
    let first = w.engine_with(w.db.clone(), w.prover.clone(), cfg.clone()).start();
    w.wait_settled(200, Duration::from_secs(60)).await;
    first.shutdown().await;
    let second = w.engine_with(w.db.clone(), w.prover.clone(), cfg.clone()).start();
    w.wait_settled(500, Duration::from_secs(60)).await;
    second.abort();
    let third = w.engine_with(w.db.clone(), w.prover.clone(), cfg).start();
    w.wait_settled(BLOCKS, Duration::from_secs(120)).await;
    w.assert_settled_exactly_once(BLOCKS).await;
    third.shutdown().await;
}

/// Batches of ten blocks over a chain whose length is not a multiple of ten: full batches go as
/// soon as their blocks exist, the short last one when `batch_timeout` has passed. Every block
/// is covered by exactly one settled range, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_cover_every_block_once_including_a_short_last_batch() {
    let w = World::new(QueueFaults::default(), Arc::new(SimProver::default()));
    w.chain.set_blocks(1_005);
    let cfg = EngineConfig { batch_size: 10, batch_timeout: Duration::from_millis(300), ..fast_config() };
    let a = w.engine_with(w.db.clone(), w.prover.clone(), cfg).start();
    let end = Instant::now() + Duration::from_secs(60);
    while w.settlement.applied().last().map(|u| u.range.last()) != Some(1_004) {
        assert!(Instant::now() < end, "not settled: {:?}", w.settlement.applied().last());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let applied = w.settlement.applied();
    assert!(w.settlement.rejections().is_empty(), "{:?}", w.settlement.rejections());
    assert_eq!(applied.len(), 101, "100 full batches and one of five blocks");
    let mut next = 0;
    let mut prev = sim_root(None);
    for u in &applied {
        assert_eq!(u.range.first(), next, "ranges are contiguous");
        assert_eq!(u.prev_root, prev);
        assert_eq!(u.new_root, sim_root(Some(u.range.last())));
        next = u.range.last() + 1;
        prev = u.new_root;
    }
    assert_eq!(applied.last().unwrap().range, BlockRange::new(1_000, 1_004).unwrap());
    a.shutdown().await;
}
