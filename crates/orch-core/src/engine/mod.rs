//! The job engine: creator, workers, verifier and sweeper over the ports.
//!
//! One [`Engine`] serves one chain. Many engines (processes) may share a Database and Queue:
//! claims are leased and every worker write is fenced on the claim's epoch, so at most one
//! worker's result counts, whatever crashes, stalls or duplicate messages happen.

pub mod budget;
mod config;
mod creator;
pub mod graph;
pub mod handler;
pub mod ops;
pub mod pipeline;
mod stats;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use budget::{BatchBudget, BatchFill, Fill};
pub use config::{EngineConfig, RetryPolicy, TimeoutPolicy, MAX_BATCH_BLOBS};
pub use handler::{JobCtx, JobHandler, Outcome, Verdict};
pub use stats::EngineStats;

use crate::alerts::{Alerts, NoAlerts};
use crate::chain::ChainSource;
use crate::clock::Clock;
use crate::db::Database;
use crate::error::{Error, Result};
use crate::events::{BroadcastBus, EventBus};
use crate::queue::Queue;
use crate::settle::Settlement;
use crate::types::{ChainId, JobKind, WorkerId};

/// Which loops an engine instance runs (service modes for scaling out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Create jobs for new blocks (the watcher).
    pub create: bool,
    /// Claim and run jobs (workers and verifier).
    pub work: bool,
}

impl Roles {
    /// Everything.
    pub const ALL: Roles = Roles { create: true, work: true };
}

/// What the job creator reads.
#[derive(Debug, Clone)]
pub(crate) struct CreatorPorts {
    chain: Arc<dyn ChainSource>,
    settlement: Arc<dyn Settlement>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    chain: ChainId,
    cfg: EngineConfig,
    db: Arc<dyn Database>,
    queue: Option<Arc<dyn Queue>>,
    clock: Arc<dyn Clock>,
    events: Arc<dyn EventBus>,
    alerts: Arc<dyn Alerts>,
    handlers: [Option<Arc<dyn JobHandler>>; JobKind::COUNT],
    creator: Option<CreatorPorts>,
    /// Closes batches on their DA size too (`EngineBuilder::batch_budget`).
    budget: Option<Arc<dyn BatchBudget>>,
    with_registration: bool,
    roles: Roles,
    worker_id: WorkerId,
    in_flight: [AtomicU32; JobKind::COUNT],
    /// Set when a worker could not reserve all the in-flight slots it wanted; the next release
    /// clears it and wakes the workers.
    starved: AtomicBool,
    /// A permit per claim in flight: bounds this instance's concurrent claims to
    /// `concurrent_claims` (see `worker_loop`).
    claiming: tokio::sync::Semaphore,
    /// Wakes idle workers: new or newly due jobs, freed capacity.
    work: Arc<Notify>,
    stats: stats::Stats,
    shutdown: CancellationToken,
}

impl Shared {
    /// The wake-up signal, for tasks that outlive a borrow of `Shared`.
    pub(crate) fn work_handle(&self) -> Arc<Notify> {
        self.work.clone()
    }
}

/// Builds an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    chain: ChainId,
    cfg: EngineConfig,
    db: Arc<dyn Database>,
    clock: Arc<dyn Clock>,
    queue: Option<Arc<dyn Queue>>,
    events: Arc<dyn EventBus>,
    alerts: Arc<dyn Alerts>,
    handlers: [Option<Arc<dyn JobHandler>>; JobKind::COUNT],
    creator: Option<CreatorPorts>,
    budget: Option<Arc<dyn BatchBudget>>,
    with_registration: bool,
    roles: Roles,
    worker_id: Option<WorkerId>,
}

impl EngineBuilder {
    /// Engine settings (default: [`EngineConfig::default`]).
    pub fn config(mut self, cfg: EngineConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Queue for wake-up hints between instances (optional: without one, instances find work
    /// by sweeping every `poll_interval`).
    pub fn queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Where job transitions are published.
    pub fn events(mut self, events: Arc<dyn EventBus>) -> Self {
        self.events = events;
        self
    }

    /// Where alerts go.
    pub fn alerts(mut self, alerts: Arc<dyn Alerts>) -> Self {
        self.alerts = alerts;
        self
    }

    /// A handler for one kind (replaces any before it).
    pub fn handler(mut self, kind: JobKind, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers[kind.index()] = Some(handler);
        self
    }

    /// The standard settlement pipeline: its handlers, and a creator that makes the jobs of
    /// every new batch.
    pub fn pipeline(mut self, ports: pipeline::PipelinePorts) -> Self {
        self.with_registration = ports.settlement.capabilities().requires_proof_registration;
        for (kind, h) in pipeline::standard_handlers(&ports, self.cfg.verify_poll) {
            self.handlers[kind.index()] = Some(h);
        }
        self.creator = Some(CreatorPorts { chain: ports.chain, settlement: ports.settlement });
        self
    }

    /// Sizes batches by their DA data too: the job creator adds blocks to a batch while the
    /// batch's data still fits `budget`, and closes it on the budget, `batch_size` or
    /// `batch_timeout`, whichever comes first; the block that would overflow starts the next
    /// batch. A block that alone exceeds the budget becomes a batch of one block (with a
    /// warning): the settlement layer then refuses it with its own reason.
    ///
    /// Without one, batches are sized by block count and timeout only. Required when
    /// `engine.batch_blobs` is set (build it from that value, e.g.
    /// `orch_blob::BlobBudget::new(n, encoding)`).
    pub fn batch_budget(mut self, budget: Arc<dyn BatchBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Which loops to run (default: all).
    pub fn roles(mut self, roles: Roles) -> Self {
        self.roles = roles;
        self
    }

    /// This instance's identity (default: random).
    pub fn worker_id(mut self, id: WorkerId) -> Self {
        self.worker_id = Some(id);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Engine> {
        self.cfg.validate()?;
        if self.roles.work && self.handlers.iter().all(Option::is_none) {
            return Err(Error::invalid_input("engine", "no job handlers: call .pipeline(..) or .handler(..)"));
        }
        if let (Some(n), None, true) = (self.cfg.batch_blobs, &self.budget, self.roles.create) {
            return Err(Error::invalid_input(
                "engine.batch_blobs",
                format!(
                    "is {n} but the engine was given no batch budget: call EngineBuilder::batch_budget(..) with a \
                     budget of {n} blobs (orch_blob::BlobBudget), or unset batch_blobs"
                ),
            ));
        }
        let claims = self.cfg.concurrent_claims.min(self.cfg.workers);
        Ok(Engine {
            shared: Arc::new(Shared {
                chain: self.chain,
                cfg: self.cfg,
                db: self.db,
                queue: self.queue,
                clock: self.clock,
                events: self.events,
                alerts: self.alerts,
                handlers: self.handlers,
                creator: self.creator,
                budget: self.budget,
                with_registration: self.with_registration,
                roles: self.roles,
                worker_id: self.worker_id.unwrap_or_else(|| WorkerId::random("orch")),
                in_flight: Default::default(),
                starved: AtomicBool::new(false),
                claiming: tokio::sync::Semaphore::new(claims),
                work: Arc::new(Notify::new()),
                stats: stats::Stats::default(),
                shutdown: CancellationToken::new(),
            }),
        })
    }
}

/// The engine of one chain in one process.
#[derive(Debug, Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// Starts building an engine for `chain` on `db`, timed by `clock`.
    pub fn builder(chain: ChainId, db: Arc<dyn Database>, clock: Arc<dyn Clock>) -> EngineBuilder {
        EngineBuilder {
            chain,
            cfg: EngineConfig::default(),
            db,
            clock,
            queue: None,
            events: Arc::new(BroadcastBus::new(1024)),
            alerts: Arc::new(NoAlerts),
            handlers: Default::default(),
            creator: None,
            budget: None,
            with_registration: false,
            roles: Roles::ALL,
            worker_id: None,
        }
    }

    /// Spawns the engine's loops on the current tokio runtime.
    pub fn start(&self) -> EngineHandle {
        let sh = &self.shared;
        let mut tasks = JoinSet::new();
        if sh.roles.work {
            for n in 0..sh.cfg.workers {
                tasks.spawn(worker::worker_loop(sh.clone(), n));
            }
            if sh.queue.is_some() {
                tasks.spawn(worker::queue_listener(sh.clone()));
            }
        }
        if sh.roles.create {
            if let Some(cp) = sh.creator.clone() {
                tasks.spawn(creator::creator_loop(sh.clone(), cp));
            }
        }
        tasks.spawn(worker::heartbeat_loop(sh.clone()));
        EngineHandle { shared: sh.clone(), tasks }
    }

    /// Counters so far.
    pub fn stats(&self) -> EngineStats {
        self.shared.stats.snapshot()
    }

    /// Wakes idle workers now (e.g. after creating jobs from outside the engine).
    pub fn notify(&self) {
        self.shared.work.notify_waiters();
    }

    /// This instance's worker id.
    pub fn worker_id(&self) -> &WorkerId {
        &self.shared.worker_id
    }
}

/// A running engine.
#[derive(Debug)]
pub struct EngineHandle {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl EngineHandle {
    /// Counters so far.
    pub fn stats(&self) -> EngineStats {
        self.shared.stats.snapshot()
    }

    /// Graceful drain: stop claiming, let in-flight jobs finish and write (up to
    /// `drain_timeout`), then stop. Jobs cut off by the timeout keep their leases until expiry
    /// and are reclaimed by another instance; their effects are idempotent.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        self.shared.work.notify_waiters();
        let drain = self.shared.cfg.drain_timeout;
        let joined = tokio::time::timeout(drain, async { while self.tasks.join_next().await.is_some() {} }).await;
        if joined.is_err() {
            tracing::warn!(target: "orch::engine", "drain timed out; abandoning in-flight jobs to their leases");
            self.tasks.abort_all();
        }
    }

    /// Stops every loop at once, as a crash would (no writes, leases left to expire).
    pub fn abort(mut self) {
        self.tasks.abort_all();
    }

    /// A token that is cancelled when shutdown starts.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }
}
