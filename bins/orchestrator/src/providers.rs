//! Builds the ports a configuration names. Each provider is behind its Cargo feature;
//! [`crate::config::check_providers`] has already refused the ones not compiled in.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use orch_core::chain::ChainSource;
use orch_core::clock::{Clock, SystemClock};
use orch_core::da::Da;
use orch_core::db::Database;
use orch_core::engine::pipeline::PipelinePorts;
use orch_core::prove::{OsRunner, Prover};
use orch_core::queue::Queue;
use orch_core::settle::Settlement;
use orch_core::storage::Storage;
use serde_json::Value;

use crate::config::{check_providers, under_data_dir, with_default, AppConfig};

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
    pub(crate) clock: Arc<dyn Clock>,
}

impl Ports {
    pub(crate) fn pipeline(&self) -> PipelinePorts {
        PipelinePorts {
            chain: self.chain.clone(),
            os: self.os.clone(),
            prover: self.prover.clone(),
            da: self.da.clone(),
            settlement: self.settlement.clone(),
            storage: self.storage.clone(),
            db: self.db.clone(),
        }
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
    check_providers(cfg)?;
    match cfg.database.provider.as_str() {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let section = with_default(&cfg.database, "path", Value::String("orch.db".into()));
            let mut sc: orch_sqlite::SqliteConfig = section.parse("database")?;
            sc.path = under_data_dir(cfg, &sc.path);
            if mode == StoreMode::Existing && !sc.path.exists() {
                bail!(
                    "no orch store at {}: run `orchestrator dev` (or `orchestrator setup`) first, or pass the --data-dir it used",
                    sc.path.display()
                );
            }
            if mode != StoreMode::Existing {
                prepare_data_dir(cfg)?;
            }
            let store = orch_sqlite::SqliteStore::open(sc).await?;
            let queue: Option<Arc<dyn Queue>> = match cfg.queue.provider.as_str() {
                "sqlite" => Some(Arc::new(store.default_queue())),
                _ => open_queue(cfg).await?,
            };
            Ok(Store { db: store.database(), queue })
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let pc: orch_postgres::PostgresConfig = cfg.database.parse("database")?;
            let store = match mode {
                StoreMode::Setup => orch_postgres::PostgresStore::connect_and_migrate(pc).await?,
                _ => orch_postgres::PostgresStore::connect(pc).await?,
            };
            Ok(Store { db: Arc::new(store), queue: open_queue(cfg).await? })
        }
        #[cfg(feature = "mongo")]
        "mongo" => {
            let mc: orch_mongo::MongoConfig = cfg.database.parse("database")?;
            let store = match mode {
                StoreMode::Setup => orch_mongo::MongoStore::connect_and_migrate(mc).await?,
                _ => orch_mongo::MongoStore::connect(mc).await?,
            };
            Ok(Store { db: Arc::new(store), queue: open_queue(cfg).await? })
        }
        other => bail!("[database] provider \"{other}\" is not available in this build"),
    }
}

/// Opens a queue that lives apart from the job store (`none`: the engine sweeps the store).
async fn open_queue(cfg: &AppConfig) -> anyhow::Result<Option<Arc<dyn Queue>>> {
    #[allow(dead_code)] // used only by builds with a broker feature
    fn some(q: impl Queue) -> Option<Arc<dyn Queue>> {
        Some(Arc::new(q))
    }
    Ok(match cfg.queue.provider.as_str() {
        "none" => None,
        "sqlite" => bail!("[queue] provider \"sqlite\" needs [database] provider \"sqlite\" (it lives in the same file); pick another queue or \"none\""),
        #[cfg(feature = "redis")]
        "redis" => some(orch_redis::RedisQueue::connect(cfg.queue.parse("queue")?).await?),
        #[cfg(feature = "rabbit")]
        "rabbit" => some(orch_rabbit::RabbitQueue::connect(cfg.queue.parse("queue")?).await?),
        #[cfg(feature = "sqs")]
        "sqs" => some(orch_sqs::SqsQueue::connect(cfg.queue.parse("queue")?).await?),
        #[cfg(feature = "kafka")]
        "kafka" => some(orch_kafka::KafkaQueue::connect(cfg.queue.parse("queue")?).await?),
        other => bail!("[queue] provider \"{other}\" is not available in this build"),
    })
}

async fn open_storage(cfg: &AppConfig) -> anyhow::Result<Arc<dyn Storage>> {
    Ok(match cfg.storage.provider.as_str() {
        #[cfg(feature = "fs")]
        "fs" => {
            let section = with_default(&cfg.storage, "root", Value::String("artifacts".into()));
            let mut fc: orch_fs::FsConfig = section.parse("storage")?;
            fc.root = under_data_dir(cfg, &fc.root);
            Arc::new(orch_fs::FsStorage::new(fc)?)
        }
        #[cfg(feature = "s3")]
        "s3" => Arc::new(orch_s3::S3Storage::connect(cfg.storage.parse("storage")?).await?),
        other => bail!("[storage] provider \"{other}\" is not available in this build"),
    })
}

fn devnet_config(cfg: &AppConfig, fixed_blocks: Option<u64>) -> anyhow::Result<orch_devnet::DevnetConfig> {
    let section = crate::config::Section { provider: "devnet".into(), options: cfg.devnet.clone() };
    let mut d: orch_devnet::DevnetConfig = section.parse("devnet")?;
    // One first block for both sides: the ledger expects its first update where the engine
    // starts creating jobs.
    d.settlement.start_block = cfg.engine.start_block;
    if let Some(n) = fixed_blocks {
        // `dev --blocks N`: the whole chain exists from the start.
        d.chain.blocks = Some(n);
        d.chain.block_time = std::time::Duration::ZERO;
    }
    Ok(d)
}

fn devnet_dir(cfg: &AppConfig) -> PathBuf {
    cfg.data_dir.join("devnet")
}

/// Opens every port. `fixed_blocks`: the simulated chain has exactly that many blocks.
pub(crate) async fn open(cfg: &AppConfig, fixed_blocks: Option<u64>, mode: StoreMode) -> anyhow::Result<Ports> {
    check_providers(cfg)?;
    prepare_data_dir(cfg)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(cfg, mode).await?;
    let storage = open_storage(cfg).await?;
    let uses_devnet = cfg.sections().iter().any(|(_, s)| s.provider == "devnet");
    if !uses_devnet {
        bail!("only the devnet chain, prover, DA and settlement providers exist in this build");
    }
    let devnet = orch_devnet::Devnet::open(devnet_config(cfg, fixed_blocks)?, devnet_dir(cfg), clock.clone())?;
    Ok(Ports {
        db: store.db,
        queue: store.queue,
        storage,
        chain: devnet.chain(),
        os: devnet.os(),
        prover: devnet.prover(),
        da: devnet.da(),
        settlement: devnet.settlement(),
        clock,
    })
}

/// The last block the settlement layer has applied (for `blocks status`), when the data dir
/// has a devnet ledger. Read-only: a status command must not open the ledger for writing.
pub(crate) fn settlement_layer_through(cfg: &AppConfig) -> anyhow::Result<Option<u64>> {
    if cfg.settlement.provider != "devnet" || !devnet_dir(cfg).is_dir() {
        return Ok(None);
    }
    match orch_devnet::DevSettlement::read_ledger(devnet_dir(cfg)) {
        Ok(view) => Ok(view.last_settled().map(|s| s.block)),
        // No update applied yet: the ledger file is created by the first one.
        Err(orch_core::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
