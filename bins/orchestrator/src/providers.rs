//! Opens the ports a typed configuration names. Every match below is on a typed section, so a
//! provider is reachable only when its Cargo feature compiled its variant in; the config
//! loader has already refused the others with the feature to enable.
// Builds that leave out a whole section's providers (say, no database feature) still compile:
// matches on an enum with no variants end the function there.
#![cfg_attr(not(feature = "embedded"), allow(unreachable_code, unused_variables, unused_imports, dead_code))]

use std::sync::Arc;

use anyhow::{bail, Context};
use orch_core::alerts::{Alerts, NoAlerts};
use orch_core::chain::ChainSource;
use orch_core::clock::{Clock, SystemClock};
use orch_core::da::Da;
use orch_core::db::Database;
use orch_core::engine::pipeline::PipelinePorts;
use orch_core::engine::{Engine, Roles};
use orch_core::prove::{OsRunner, Prover};
use orch_core::queue::Queue;
use orch_core::settle::Settlement;
use orch_core::storage::Storage;

use crate::config::{
    AlertsProvider, AppConfig, ChainProvider, DaProvider, DatabaseProvider, OsProvider, ProverProvider, QueueProvider,
    SettlementProvider, StorageProvider,
};

/// Everything the engine and the commands need.
pub(crate) struct Ports {
    pub(crate) db: Arc<dyn Database>,
    pub(crate) queue: Option<Arc<dyn Queue>>,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) chain: Arc<dyn ChainSource>,
    pub(crate) os: Arc<dyn OsRunner>,
    pub(crate) prover: Arc<dyn Prover>,
    pub(crate) da: Arc<dyn Da>,
    pub(crate) settlement: Arc<dyn Settlement>,
    pub(crate) alerts: Arc<dyn Alerts>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Ports {
    /// The settlement pipeline's engine over these ports, running `roles`.
    pub(crate) fn engine(&self, cfg: &AppConfig, roles: Roles) -> anyhow::Result<Engine> {
        let pipeline = PipelinePorts {
            chain: self.chain.clone(),
            os: self.os.clone(),
            prover: self.prover.clone(),
            da: self.da.clone(),
            settlement: self.settlement.clone(),
            storage: self.storage.clone(),
            db: self.db.clone(),
        };
        let mut builder = Engine::builder(cfg.chain_id.clone(), self.db.clone(), self.clock.clone())
            .config(cfg.engine.clone())
            .roles(roles)
            .alerts(self.alerts.clone())
            .pipeline(pipeline);
        if let Some(q) = &self.queue {
            builder = builder.queue(q.clone());
        }
        if let Some(blobs) = cfg.engine.batch_blobs {
            // Blobs counted in the format of the DA layer that publishes them.
            let budget: orch_blob::BlobBudget = match cfg.da {
                #[cfg(feature = "devnet")]
                DaProvider::Devnet(_) => orch_devnet::blob_budget(blobs)?,
            };
            builder = builder.batch_budget(Arc::new(budget));
        }
        Ok(builder.build()?)
    }
}

/// The data dir must be a directory (created if missing).
pub(crate) fn prepare_data_dir(cfg: &AppConfig) -> anyhow::Result<()> {
    let d = &cfg.data_dir;
    if d.exists() && !d.is_dir() {
        bail!("data dir {} is a file, not a directory: pass --data-dir with a directory path", d.display());
    }
    std::fs::create_dir_all(d).with_context(|| format!("creating data dir {}", d.display()))?;
    Ok(())
}

/// The job store (and, for providers that have one, its queue).
pub(crate) struct Store {
    pub(crate) db: Arc<dyn Database>,
    pub(crate) queue: Option<Arc<dyn Queue>>,
}

/// How a command opens the job store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreMode {
    /// Read commands: the store must already exist; never create or migrate one.
    Existing,
    /// Service start (`run`): create an embedded store if missing; a server store must have
    /// been set up (its schema version is checked, not changed).
    Run,
    /// `setup`, `dev`, `db import`: create and migrate whatever is missing.
    Setup,
}

/// Opens the job store as `mode` says.
pub(crate) async fn open_store(cfg: &AppConfig, mode: StoreMode) -> anyhow::Result<Store> {
    match cfg.database {
        #[cfg(feature = "sqlite")]
        DatabaseProvider::Sqlite(ref sc) => {
            if mode == StoreMode::Existing && !sc.path.exists() {
                bail!(
                    "no orch store at {}: run `orchestrator dev` (or `orchestrator setup`) first, or pass the --data-dir it used",
                    sc.path.display()
                );
            }
            if mode != StoreMode::Existing {
                prepare_data_dir(cfg)?;
            }
            let store = orch_sqlite::SqliteStore::open(sc.clone()).await?;
            let queue: Option<Arc<dyn Queue>> = match cfg.queue {
                QueueProvider::Sqlite(_) => Some(Arc::new(store.default_queue())),
                _ => open_queue(cfg).await?,
            };
            Ok(Store { db: store.database(), queue })
        }
        #[cfg(feature = "postgres")]
        DatabaseProvider::Postgres(ref pc) => {
            let store = match mode {
                StoreMode::Setup => orch_postgres::PostgresStore::connect_and_migrate(pc.clone()).await?,
                _ => orch_postgres::PostgresStore::connect(pc.clone()).await?,
            };
            Ok(Store { db: Arc::new(store), queue: open_queue(cfg).await? })
        }
        #[cfg(feature = "mongo")]
        DatabaseProvider::Mongo(ref mc) => {
            let store = match mode {
                StoreMode::Setup => orch_mongo::MongoStore::connect_and_migrate(mc.clone()).await?,
                _ => orch_mongo::MongoStore::connect(mc.clone()).await?,
            };
            Ok(Store { db: Arc::new(store), queue: open_queue(cfg).await? })
        }
    }
}

/// Opens a queue that lives apart from the job store (`none`: the engine sweeps the store).
async fn open_queue(cfg: &AppConfig) -> anyhow::Result<Option<Arc<dyn Queue>>> {
    Ok(match cfg.queue {
        QueueProvider::None(_) => None,
        #[cfg(feature = "sqlite")]
        QueueProvider::Sqlite(_) => bail!(
            "[queue] provider \"sqlite\" needs [database] provider \"sqlite\" (it lives in the same file); pick another queue or \"none\""
        ),
        #[cfg(feature = "redis")]
        QueueProvider::Redis(ref c) => Some(Arc::new(orch_redis::RedisQueue::connect(c.clone()).await?)),
        #[cfg(feature = "rabbit")]
        QueueProvider::Rabbit(ref c) => Some(Arc::new(orch_rabbit::RabbitQueue::connect(c.clone()).await?)),
        #[cfg(feature = "sqs")]
        QueueProvider::Sqs(ref c) => Some(Arc::new(orch_sqs::SqsQueue::connect(c.clone()).await?)),
        #[cfg(feature = "kafka")]
        QueueProvider::Kafka(ref c) => Some(Arc::new(orch_kafka::KafkaQueue::connect(c.clone()).await?)),
    })
}

async fn open_storage(cfg: &AppConfig) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match cfg.storage {
        #[cfg(feature = "fs")]
        StorageProvider::Fs(ref fc) => Arc::new(orch_fs::FsStorage::new(fc.clone())?),
        #[cfg(feature = "s3")]
        StorageProvider::S3(ref c) => Arc::new(orch_s3::S3Storage::connect(c.clone()).await?),
    })
}

fn open_alerts(cfg: &AppConfig, clock: Arc<dyn Clock>) -> Arc<dyn Alerts> {
    match cfg.alerts {
        AlertsProvider::Log(ref c) => c.open(clock),
        AlertsProvider::None(_) => Arc::new(NoAlerts),
    }
}

/// The simulated world, opened once for every section that names `devnet`.
#[cfg(feature = "devnet")]
struct Simulated<'a> {
    cfg: &'a AppConfig,
    fixed_blocks: Option<u64>,
    clock: Arc<dyn Clock>,
    world: Option<orch_devnet::Devnet>,
}

#[cfg(feature = "devnet")]
impl Simulated<'_> {
    fn get(&mut self) -> anyhow::Result<&orch_devnet::Devnet> {
        let world = match self.world.take() {
            Some(w) => w,
            None => {
                let mut d = self.cfg.devnet.clone();
                // One first block for both sides: the ledger expects its first update where the
                // engine starts creating jobs.
                d.settlement.start_block = self.cfg.engine.start_block;
                if let Some(n) = self.fixed_blocks {
                    // `dev --blocks N`: the whole chain exists from the start.
                    d.chain.blocks = Some(n);
                    d.chain.block_time = std::time::Duration::ZERO;
                }
                orch_devnet::Devnet::open(d, self.cfg.devnet_dir(), self.clock.clone())?
            }
        };
        Ok(self.world.insert(world))
    }
}

/// Opens the chain source alone (for commands that only read the L2, such as
/// `eth deploy-stand-in`).
#[cfg_attr(not(feature = "eth"), allow(dead_code))]
pub(crate) fn open_chain(cfg: &AppConfig) -> anyhow::Result<Arc<dyn ChainSource>> {
    prepare_data_dir(cfg)?;
    #[cfg(feature = "devnet")]
    let mut sim = Simulated { cfg, fixed_blocks: None, clock: Arc::new(SystemClock), world: None };
    Ok(match cfg.chain {
        #[cfg(feature = "devnet")]
        ChainProvider::Devnet(_) => sim.get()?.chain(),
    })
}

/// Ethereum settlement: the core contract through `cfg`'s node and key, its transaction
/// manager's state under `<data_dir>/eth` unless the config places it, the blobs of KZG-DA
/// updates read from the DA jobs' artefacts in `storage`, and its alerts (spend, fees, funds)
/// to `alerts`.
#[cfg(feature = "eth")]
async fn open_eth(
    cfg: &AppConfig,
    eth: &orch_eth::EthConfig,
    storage: Arc<dyn Storage>,
    alerts: Arc<dyn Alerts>,
) -> anyhow::Result<Arc<dyn Settlement>> {
    let mut eth = eth.clone();
    eth.state_dir.get_or_insert_with(|| cfg.data_dir.join("eth"));
    let settlement = orch_eth::EthSettlement::connect(&eth)
        .await
        .map_err(|e| crate::cmd::eth::scrubbed(&eth, e))
        .context("connecting to the Ethereum settlement layer ([settlement] provider = \"eth\")")?;
    let blobs = Arc::new(orch_eth::StorageBlobs::new(storage, cfg.chain_id.clone()));
    Ok(Arc::new(settlement.with_blob_source(blobs).with_alerts(alerts)))
}

/// Opens every port. `fixed_blocks`: a simulated chain has exactly that many blocks.
pub(crate) async fn open(cfg: &AppConfig, fixed_blocks: Option<u64>, mode: StoreMode) -> anyhow::Result<Ports> {
    prepare_data_dir(cfg)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(cfg, mode).await?;
    let storage = open_storage(cfg).await?;
    let alerts = open_alerts(cfg, clock.clone());
    #[cfg(feature = "devnet")]
    let mut sim = Simulated { cfg, fixed_blocks, clock: clock.clone(), world: None };
    let chain: Arc<dyn ChainSource> = match cfg.chain {
        #[cfg(feature = "devnet")]
        ChainProvider::Devnet(_) => sim.get()?.chain(),
    };
    let os: Arc<dyn OsRunner> = match cfg.os {
        #[cfg(feature = "devnet")]
        OsProvider::Devnet(_) => sim.get()?.os(),
    };
    let prover: Arc<dyn Prover> = match cfg.prover {
        #[cfg(feature = "devnet")]
        ProverProvider::Devnet(_) => sim.get()?.prover(),
    };
    let da: Arc<dyn Da> = match cfg.da {
        #[cfg(feature = "devnet")]
        DaProvider::Devnet(_) => sim.get()?.da(),
    };
    let settlement: Arc<dyn Settlement> = match cfg.settlement {
        #[cfg(feature = "devnet")]
        SettlementProvider::Devnet(_) => sim.get()?.settlement(),
        #[cfg(feature = "eth")]
        SettlementProvider::Eth(ref c) => open_eth(cfg, c, storage.clone(), alerts.clone()).await?,
    };
    Ok(Ports { db: store.db, queue: store.queue, storage, chain, os, prover, da, settlement, alerts, clock })
}

/// The last block the settlement layer has applied (for `blocks status`), when it can be read
/// without opening it for writing: a status command must not change anything. A node that
/// cannot be reached is said in a warning, not an error: the job store's view still stands.
pub(crate) async fn settlement_layer_through(cfg: &AppConfig) -> anyhow::Result<Option<u64>> {
    match cfg.settlement {
        #[cfg(feature = "devnet")]
        SettlementProvider::Devnet(_) => {
            if !cfg.devnet_dir().is_dir() {
                return Ok(None);
            }
            match orch_devnet::DevSettlement::read_ledger(cfg.devnet_dir()) {
                Ok(view) => Ok(view.last_settled().map(|s| s.block)),
                // No update applied yet: the ledger file is created by the first one.
                Err(orch_core::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        #[cfg(feature = "eth")]
        SettlementProvider::Eth(ref c) => match crate::cmd::eth::settled_through(c).await {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::warn!(target: "orch::eth", error = %crate::cmd::describe(&e), "cannot read the core contract's settled block");
                Ok(None)
            }
        },
    }
}
