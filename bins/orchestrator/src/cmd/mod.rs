//! The commands.

pub(crate) mod blob;
pub(crate) mod db;
pub(crate) mod dev;
pub(crate) mod jobs;
pub(crate) mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;

use orch_core::engine::EngineConfig;
use orch_core::job::JobQuery;
use orch_core::types::{JobKind, JobStatus};
use serde::Serialize;

use crate::config::{self, AppConfig};
use crate::{output, providers};

/// Global options every command sees.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) config: Option<PathBuf>,
    pub(crate) data_dir: Option<PathBuf>,
}

/// Bad input from the user (config, arguments): exit code 2.
#[derive(Debug)]
pub(crate) struct UserError(pub(crate) String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

pub(crate) fn user(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UserError(e.to_string()))
}

/// One line: the error and its causes.
pub(crate) fn describe(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 2 for bad input, 1 for everything else.
pub(crate) fn exit_code(e: &anyhow::Error) -> u8 {
    let bad_input = e.chain().any(|c| {
        c.downcast_ref::<UserError>().is_some()
            || matches!(c.downcast_ref::<orch_core::Error>(), Some(orch_core::Error::InvalidInput { .. }))
    });
    if bad_input {
        2
    } else {
        1
    }
}

impl Ctx {
    /// Loads the config with `engine` as the engine defaults, applying `--data-dir`.
    pub(crate) fn load(&self, engine: EngineConfig) -> anyhow::Result<AppConfig> {
        let mut cfg = config::load(self.config.as_deref(), engine).map_err(user)?;
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        config::check_providers(&cfg).map_err(user)?;
        Ok(cfg)
    }
}

pub(crate) async fn setup(ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    let ports = providers::open(&cfg, None, providers::StoreMode::Setup).await?;
    ports.db.migrate().await?;
    if let Some(q) = &ports.queue {
        q.setup().await?;
    }
    ports.storage.setup().await?;
    crate::output::line(format!(
        "setup complete: {} store, {} queue, {} storage",
        ports.db.backend(),
        cfg.queue.provider,
        ports.storage.backend()
    ));
    Ok(())
}

pub(crate) fn config_check(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    // Parse every provider's own options now, so a typo fails here and not at start.
    check_sections(&cfg).map_err(user)?;
    if json {
        output::json(&serde_json::json!({ "ok": true, "chain_id": cfg.chain_id }))
    } else {
        crate::output::line(format!(
            "config ok: chain {}, database {}, queue {}, storage {}, settlement {}",
            cfg.chain_id, cfg.database.provider, cfg.queue.provider, cfg.storage.provider, cfg.settlement.provider
        ));
        Ok(())
    }
}

fn check_sections(cfg: &AppConfig) -> anyhow::Result<()> {
    #[cfg(feature = "sqlite")]
    if cfg.database.provider == "sqlite" {
        cfg.database.parse::<orch_sqlite::SqliteConfig>("database")?;
    }
    #[cfg(feature = "fs")]
    if cfg.storage.provider == "fs" {
        cfg.storage.parse::<orch_fs::FsConfig>("storage")?;
    }
    #[cfg(feature = "postgres")]
    if cfg.database.provider == "postgres" {
        cfg.database.parse::<orch_postgres::PostgresConfig>("database")?;
    }
    #[cfg(feature = "mongo")]
    if cfg.database.provider == "mongo" {
        cfg.database.parse::<orch_mongo::MongoConfig>("database")?;
    }
    #[cfg(feature = "redis")]
    if cfg.queue.provider == "redis" {
        cfg.queue.parse::<orch_redis::RedisConfig>("queue")?;
    }
    #[cfg(feature = "rabbit")]
    if cfg.queue.provider == "rabbit" {
        cfg.queue.parse::<orch_rabbit::RabbitConfig>("queue")?;
    }
    #[cfg(feature = "sqs")]
    if cfg.queue.provider == "sqs" {
        cfg.queue.parse::<orch_sqs::SqsConfig>("queue")?;
    }
    #[cfg(feature = "s3")]
    if cfg.storage.provider == "s3" {
        cfg.storage.parse::<orch_s3::S3Config>("storage")?;
    }
    #[cfg(feature = "devnet")]
    {
        let d = config::Section { provider: "devnet".into(), options: cfg.devnet.clone() };
        d.parse::<orch_devnet::DevnetConfig>("devnet")?.validate()?;
    }
    for (name, s) in cfg.sections() {
        if matches!(s.provider.as_str(), "devnet" | "none") && !s.options.is_empty() {
            let keys: Vec<_> = s.options.keys().cloned().collect();
            anyhow::bail!("invalid config at `{name}`: provider \"{}\" takes no options here (found {}); put devnet settings under [devnet]", s.provider, keys.join(", "));
        }
    }
    Ok(())
}

pub(crate) fn config_show(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    let v = config::redacted_json(&cfg)?;
    if json {
        output::json(&v)
    } else {
        crate::output::text(&toml::to_string_pretty(&v)?);
        Ok(())
    }
}

/// What `blocks status` reports.
#[derive(Debug, Serialize)]
pub(crate) struct BlocksStatus {
    pub(crate) chain_id: String,
    /// Highest block whose state transition is complete with all before it (None: none yet).
    pub(crate) settled_through: Option<u64>,
    /// What the settlement layer itself says, when it can be read.
    pub(crate) settlement_layer_through: Option<u64>,
    /// Lowest block with an unfinished state transition.
    pub(crate) lowest_unsettled: Option<u64>,
    /// Job counts: kind → status → count.
    pub(crate) jobs: BTreeMap<String, BTreeMap<String, u64>>,
}

pub(crate) async fn blocks_status(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    let chain = cfg.chain_id()?;
    let store = providers::open_store(&cfg, providers::StoreMode::Existing).await?;
    let db = store.db;
    let mut jobs: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for c in db.count_jobs(&chain).await? {
        jobs.entry(c.kind.to_string()).or_default().insert(c.status.to_string(), c.count);
    }
    let mut q = JobQuery::all(chain.clone(), 1);
    q.kinds = vec![JobKind::StateTransition];
    q.statuses = JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Completed).collect();
    let lowest_unsettled = db.list_jobs(&q).await?.pop().map(|j| j.range().first());
    let mut done = JobQuery::all(chain.clone(), 1);
    done.kinds = vec![JobKind::StateTransition];
    done.statuses = vec![JobStatus::Completed];
    done.order = orch_core::job::Order::Descending;
    if let Some(low) = lowest_unsettled {
        done.first_block = Some((0, low.saturating_sub(1)));
    }
    let settled_through =
        if lowest_unsettled == Some(0) { None } else { db.list_jobs(&done).await?.pop().map(|j| j.range().last()) };
    let settlement_layer_through = providers::settlement_layer_through(&cfg)?;
    let status = BlocksStatus {
        chain_id: cfg.chain_id.clone(),
        settled_through,
        settlement_layer_through,
        lowest_unsettled,
        jobs,
    };
    if json {
        return output::json(&status);
    }
    let show = |v: Option<u64>| v.map_or("-".to_string(), |b| b.to_string());
    crate::output::line(format!(
        "chain {}: settled through block {} (settlement layer: {}), lowest unsettled {}",
        status.chain_id,
        show(settled_through),
        show(settlement_layer_through),
        show(lowest_unsettled)
    ));
    let rows: Vec<Vec<String>> = status
        .jobs
        .iter()
        .map(|(k, m)| vec![k.clone(), m.iter().map(|(s, n)| format!("{s}={n}")).collect::<Vec<_>>().join(" ")])
        .collect();
    output::table(&["KIND", "STATUS COUNTS"], &rows);
    Ok(())
}
