//! The commands.

pub(crate) mod blob;
pub(crate) mod db;
pub(crate) mod dev;
#[cfg(feature = "eth")]
pub(crate) mod eth;
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

/// One line: the error and each of its causes once. Many errors print their source inside
/// their own message as well as returning it from `source()`, so a cause already said (or a
/// message that only repeats a later cause after its own context) is not said again.
pub(crate) fn describe(e: &anyhow::Error) -> String {
    let texts: Vec<String> =
        e.chain().map(|c| c.to_string().split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    let mut out = String::new();
    for (i, text) in texts.iter().enumerate() {
        let mut text = text.as_str();
        // "context: <a later cause>": keep the context, the later cause comes on its own.
        if let Some(inner) = texts[i + 1..].iter().find(|t| !t.is_empty() && text.ends_with(t.as_str())) {
            text = text[..text.len() - inner.len()].trim_end_matches([' ', ':']);
        }
        if text.is_empty() || out.contains(text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
    }
    out
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
    /// Loads and types the config with `engine` as the engine defaults, `--data-dir` on top.
    pub(crate) fn load(&self, engine: EngineConfig) -> anyhow::Result<AppConfig> {
        let sources = config::Sources { file: self.config.as_deref(), data_dir: self.data_dir.as_deref() };
        config::load(&sources, engine).map_err(user)
    }
}

pub(crate) async fn setup(ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    // The L1 first: a wrong chain, a missing contract or an unfunded key is said plainly here,
    // before anything is created.
    #[cfg(feature = "eth")]
    let l1 = eth::preflight_if_eth(&cfg).await?;
    let ports = providers::open(&cfg, None, providers::StoreMode::Setup).await?;
    ports.db.migrate().await?;
    if let Some(q) = &ports.queue {
        q.setup().await?;
    }
    ports.storage.setup().await?;
    crate::output::line(format!(
        "setup complete: {} store, {} queue, {} storage",
        ports.db.backend(),
        cfg.queue.name(),
        ports.storage.backend()
    ));
    #[cfg(feature = "eth")]
    if let Some(l1) = l1 {
        crate::output::line(l1.to_string());
    }
    Ok(())
}

pub(crate) fn config_check(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    // Loading types every section: a provider not compiled in, a typo or a bad value fails here.
    let cfg = ctx.load(EngineConfig::default())?;
    if json {
        output::json(&serde_json::json!({
            "ok": true,
            "chain_id": cfg.chain_id,
            "providers": {
                "database": cfg.database.name(),
                "queue": cfg.queue.name(),
                "storage": cfg.storage.name(),
                "chain": cfg.chain.name(),
                "os": cfg.os.name(),
                "prover": cfg.prover.name(),
                "da": cfg.da.name(),
                "settlement": cfg.settlement.name(),
                "alerts": cfg.alerts.name(),
            },
            "compiled_in": config::sections::all_providers()
                .filter(|p| p.compiled)
                .map(|p| format!("{}.{}", p.section, p.name))
                .collect::<Vec<_>>(),
        }))
    } else {
        crate::output::line(format!(
            "config ok: chain {}, database {}, queue {}, storage {}, settlement {}",
            cfg.chain_id,
            cfg.database.name(),
            cfg.queue.name(),
            cfg.storage.name(),
            cfg.settlement.name()
        ));
        Ok(())
    }
}

pub(crate) fn config_show(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    let v = config::shown(&cfg)?;
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
    let chain = cfg.chain_id.clone();
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
    let settlement_layer_through = providers::settlement_layer_through(&cfg).await?;
    let status = BlocksStatus {
        chain_id: cfg.chain_id.to_string(),
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

#[cfg(test)]
mod tests {
    use super::describe;

    /// An error that, like many drivers' errors, prints its source inside its own message and
    /// also returns it from `source()`.
    #[derive(Debug)]
    struct Wraps(String, Option<Box<Wraps>>);

    impl std::fmt::Display for Wraps {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match &self.1 {
                Some(inner) if self.0.is_empty() => write!(f, "{inner}"),
                Some(inner) => write!(f, "{}: {inner}", self.0),
                None => f.write_str(&self.0),
            }
        }
    }

    impl std::error::Error for Wraps {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn wraps(text: &str, inner: Option<Wraps>) -> Wraps {
        Wraps(text.into(), inner.map(Box::new))
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = wraps("Connection refused (os error 111)", None);
        let driver = wraps("error communicating with database", Some(io));
        let e = anyhow::Error::new(driver).context("cannot reach the database at 127.0.0.1:1");
        let text = describe(&e);
        assert_eq!(
            text,
            "cannot reach the database at 127.0.0.1:1: error communicating with database: Connection refused (os error 111)"
        );
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let inner = wraps("timed out", None);
        let outer = wraps("", Some(inner));
        let e = anyhow::Error::new(outer).context("store unavailable: timed out");
        assert_eq!(describe(&e), "store unavailable: timed out");
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        let e = anyhow::anyhow!("first line\n  second line");
        assert_eq!(describe(&e), "first line second line");
    }
}
