//! A node's own tokio program that embeds orch: the engine runs in-process on the node's own
//! `ChainSource` and `EventBus`, the embedded SQLite store and file storage, and the simulated
//! prover, DA layer and L1 (orch-devnet). It settles blocks `0..N-1` and drains gracefully.
//!
//! `cargo run -p orch-example-embed -- [N=50] [DATA_DIR]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use async_trait::async_trait;
use orch_core::chain::{BlockInfo, ChainSource, StateUpdate};
use orch_core::clock::{Clock, SystemClock};
use orch_core::engine::pipeline::PipelinePorts;
use orch_core::engine::{Engine, EngineConfig};
use orch_core::events::{EventBus, JobEvent};
use orch_core::storage::Storage;
use orch_core::types::{BlockNumber, ChainId, JobKind, JobStatus};
use orch_core::{Error, Felt, Result};
use orch_devnet::{ChainConfig, Devnet, DevnetConfig};
use orch_fs::FsStorage;
use orch_sqlite::{SqliteConfig, SqliteStore};
use tokio::sync::mpsc;

/// The node's chain as orch sees it: only the blocks the node has produced so far. A real
/// node reads its own block store here; this one takes the blocks from the simulated chain.
#[derive(Debug)]
struct NodeChain {
    blocks: Arc<dyn ChainSource>,
    produced: AtomicU64,
}

impl NodeChain {
    /// The node's block producer made one more block.
    fn produce(&self) {
        self.produced.fetch_add(1, Ordering::Release);
    }

    fn head(&self) -> Option<BlockNumber> {
        self.produced.load(Ordering::Acquire).checked_sub(1)
    }

    fn known(&self, n: BlockNumber) -> Result<()> {
        match self.head() {
            Some(h) if n <= h => Ok(()),
            _ => Err(Error::not_found(format!("block {n}"))),
        }
    }
}

#[async_trait]
impl ChainSource for NodeChain {
    async fn latest_block(&self) -> Result<Option<BlockNumber>> {
        Ok(self.head())
    }
    async fn block(&self, n: BlockNumber) -> Result<BlockInfo> {
        self.known(n)?;
        self.blocks.block(n).await
    }
    async fn state_update(&self, n: BlockNumber) -> Result<StateUpdate> {
        self.known(n)?;
        self.blocks.state_update(n).await
    }
    async fn nonce_at(&self, n: BlockNumber, contract: Felt) -> Result<Felt> {
        self.known(n)?;
        self.blocks.nonce_at(n, contract).await
    }
}

/// Job transitions into the node's own channel. `publish` must never block the engine: the
/// channel is unbounded, and a closed one just drops events.
#[derive(Debug)]
struct ToChannel(mpsc::UnboundedSender<JobEvent>);

impl EventBus for ToChannel {
    fn is_active(&self) -> bool {
        !self.0.is_closed()
    }
    fn publish(&self, event: JobEvent) {
        let _ = self.0.send(event);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let blocks: u64 = match args.next() {
        Some(n) => n.parse().ok().filter(|n| *n > 0).with_context(|| format!("N: {n:?} is not a positive number"))?,
        None => 50,
    };
    let dir =
        args.next().map_or_else(|| std::env::temp_dir().join(format!("orch-embed-{}", std::process::id())), Into::into);

    // The outside world: simulated prover, DA and L1 over a chain of exactly `blocks` blocks.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let world = DevnetConfig { chain: ChainConfig::fixed(blocks), ..DevnetConfig::default() };
    let devnet = Devnet::open(world, dir.join("devnet"), clock.clone())?;
    let chain = Arc::new(NodeChain { blocks: devnet.chain(), produced: AtomicU64::new(0) });

    // orch's embedded store, queue and artefact storage.
    let store = SqliteStore::open(SqliteConfig::new(dir.join("orch.db"))).await?;
    let storage = Arc::new(FsStorage::at(dir.join("artifacts"))?);
    storage.setup().await?;

    let (tx, mut events) = mpsc::unbounded_channel();
    let ports = PipelinePorts {
        chain: chain.clone(),
        os: devnet.os(),
        prover: devnet.prover(),
        da: devnet.da(),
        settlement: devnet.settlement(),
        storage,
        db: store.database(),
    };
    let config = EngineConfig {
        batch_size: 10,
        batch_timeout: Duration::from_millis(100),
        poll_interval: Duration::from_millis(50),
        creator_interval: Duration::from_millis(20),
        verify_poll: Duration::ZERO,
        ..EngineConfig::default()
    };
    let engine = Engine::builder(ChainId::new("devnet")?, store.database(), clock)
        .config(config)
        .queue(Arc::new(store.default_queue()))
        .events(Arc::new(ToChannel(tx)))
        .pipeline(ports)
        .build()?;
    let handle = engine.start();

    // The node produces a block every 5 ms; orch settles them as they come.
    tokio::spawn({
        let chain = chain.clone();
        async move {
            for _ in 0..blocks {
                chain.produce();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    // Our bus loses no event, so the node follows settlement from the events alone (counting
    // from what an earlier run on this data dir settled).
    let mut settled = devnet.settlement().last_settled().await?.map_or(0, |s| s.block + 1);
    while settled < blocks {
        let next = tokio::time::timeout(Duration::from_secs(60), events.recv());
        let e = next.await.context("no job moved for a minute")?.context("the engine stopped")?;
        ensure!(e.transition.to != JobStatus::Failed, "job {} failed for good: {}", e.key, e.transition.reason);
        if e.key.kind == JobKind::StateTransition && e.transition.to == JobStatus::Completed {
            println!("settled blocks {}", e.key.range);
            settled += e.key.range.len();
        }
    }
    handle.shutdown().await; // stop claiming, let in-flight jobs finish and write

    // Every block settled once, in order: the L1 ledger's updates tile 0..N-1 exactly.
    let mut next = 0;
    let updates = devnet.dev_settlement().applied();
    for u in &updates {
        ensure!(u.range.first() == next, "blocks {} settled out of order or twice", u.range);
        next = u.range.last() + 1;
    }
    ensure!(next == blocks, "settled {next} of {blocks} blocks");
    println!(
        "blocks 0..={} settled once each, in order, by {} state updates; data in {}",
        blocks - 1,
        updates.len(),
        dir.display()
    );
    Ok(())
}
