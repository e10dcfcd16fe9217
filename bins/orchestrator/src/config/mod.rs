//! `AppConfig`: built-in defaults < `orchestrator.toml` < `ORCH_*` environment < CLI flags.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use orch_core::engine::EngineConfig;
use orch_core::types::ChainId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A provider section: which provider, and its own options (checked by the provider's config
/// type, which rejects unknown keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Section {
    /// Provider name (`sqlite`, `postgres`, `fs`, `devnet`, …).
    #[serde(alias = "layer")]
    pub(crate) provider: String,
    /// Everything else in the section.
    #[serde(flatten)]
    pub(crate) options: Map<String, Value>,
}

impl Section {
    fn named(provider: &str) -> Section {
        Section { provider: provider.into(), options: Map::new() }
    }

    /// The options as the provider's config type; errors name `section.key`.
    pub(crate) fn parse<T: DeserializeOwned>(&self, section: &str) -> anyhow::Result<T> {
        let v = Value::Object(self.options.clone());
        serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." { section.to_string() } else { format!("{section}.{path}") };
            anyhow::anyhow!("invalid config at `{at}`: {}", e.into_inner())
        })
    }
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ApiConfig {
    /// Listen address (default `127.0.0.1:8080`: loopback only).
    pub(crate) bind: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { bind: "127.0.0.1:8080".into() }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppConfig {
    /// Tenant id: namespaces jobs, queues and artefacts (default `devnet`).
    pub(crate) chain_id: String,
    /// Where embedded providers keep their files (default `data`).
    pub(crate) data_dir: PathBuf,
    /// Engine tuning.
    pub(crate) engine: EngineConfig,
    /// Job store.
    pub(crate) database: Section,
    /// Wake-up queue (`provider = "none"` to rely on sweeping alone).
    pub(crate) queue: Section,
    /// Artefacts.
    pub(crate) storage: Section,
    /// The L2 being settled.
    pub(crate) chain: Section,
    /// SNOS runner.
    pub(crate) os: Section,
    /// Prover.
    pub(crate) prover: Section,
    /// DA layer.
    pub(crate) da: Section,
    /// Settlement layer (`layer = "devnet" | "ethereum" | "starknet"`).
    pub(crate) settlement: Section,
    /// The simulated world, used by every `devnet` provider.
    #[serde(default)]
    pub(crate) devnet: Map<String, Value>,
    /// HTTP API.
    #[serde(default)]
    pub(crate) api: ApiConfig,
}

impl AppConfig {
    /// Defaults: the embedded providers.
    pub(crate) fn embedded(engine: EngineConfig) -> AppConfig {
        AppConfig {
            chain_id: "devnet".into(),
            data_dir: PathBuf::from("data"),
            engine,
            database: Section::named("sqlite"),
            queue: Section::named("sqlite"),
            storage: Section::named("fs"),
            chain: Section::named("devnet"),
            os: Section::named("devnet"),
            prover: Section::named("devnet"),
            da: Section::named("devnet"),
            settlement: Section::named("devnet"),
            devnet: Map::new(),
            api: ApiConfig::default(),
        }
    }

    pub(crate) fn chain_id(&self) -> anyhow::Result<ChainId> {
        ChainId::new(&self.chain_id).map_err(|e| anyhow::anyhow!("invalid config at `chain_id`: {e}"))
    }

    /// Every section with its name, for checks that walk them all.
    pub(crate) fn sections(&self) -> [(&'static str, &Section); 8] {
        [
            ("database", &self.database),
            ("queue", &self.queue),
            ("storage", &self.storage),
            ("chain", &self.chain),
            ("os", &self.os),
            ("prover", &self.prover),
            ("da", &self.da),
            ("settlement", &self.settlement),
        ]
    }
}

/// Loads the configuration. `file` given: it must exist. Not given: `./orchestrator.toml` is
/// read when present.
pub(crate) fn load(file: Option<&Path>, engine_defaults: EngineConfig) -> anyhow::Result<AppConfig> {
    let mut fig = Figment::from(Serialized::defaults(AppConfig::embedded(engine_defaults)));
    match file {
        Some(f) => {
            if !f.exists() {
                bail!("config file {} not found: check the path given to --config", f.display());
            }
            if f.is_dir() {
                bail!("config file {} is a directory: pass the path of a TOML file", f.display());
            }
            let text = std::fs::read_to_string(f).with_context(|| format!("reading config file {}", f.display()))?;
            toml::from_str::<toml::Value>(&text).map_err(|e| {
                anyhow::anyhow!("config file {} is not valid TOML: {}", f.display(), one_line(&e.to_string()))
            })?;
            fig = fig.merge(Toml::file(f));
        }
        None => {
            let f = Path::new("orchestrator.toml");
            if f.is_file() {
                fig = fig.merge(Toml::file(f));
            }
        }
    }
    fig = fig.merge(Env::prefixed("ORCH_").split("__").map(|k| k.as_str().to_ascii_lowercase().into()));
    let cfg: AppConfig = fig.extract().map_err(|e| anyhow::anyhow!("{}", describe_figment_error(e)))?;
    cfg.engine.validate().map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    cfg.chain_id()?;
    Ok(cfg)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn describe_figment_error(e: figment::Error) -> String {
    let mut out = Vec::new();
    for err in e {
        let path = err.path.join(".");
        let at = if path.is_empty() { String::new() } else { format!(" at `{path}`") };
        let source = match &err.metadata {
            Some(m) => match &m.source {
                Some(src) => format!(" (from {src})"),
                None => format!(" (from {})", m.name),
            },
            None => String::new(),
        };
        out.push(format!("invalid config{at}: {}{source}", err.kind));
    }
    out.join("; ")
}

/// Keys whose values are redacted by `config show`, whatever the provider.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["url", "password", "secret", "token", "api_key", "credentials", "private_key", "access_key"]
        .iter()
        .any(|s| k.contains(s))
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_secret_key(k) && !v.is_object() {
                    *v = Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The configuration as JSON with every secret-looking value redacted.
pub(crate) fn redacted_json(cfg: &AppConfig) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(cfg)?;
    redact(&mut v);
    Ok(v)
}

/// Which provider lives in which Cargo feature, and whether this binary has it.
pub(crate) struct ProviderInfo {
    pub(crate) section: &'static str,
    pub(crate) name: &'static str,
    /// Its Cargo feature; empty for providers orch does not ship yet.
    pub(crate) feature: &'static str,
    pub(crate) compiled: bool,
}

pub(crate) fn providers() -> Vec<ProviderInfo> {
    let p = |section, name, feature, compiled| ProviderInfo { section, name, feature, compiled };
    let mut v = vec![
        p("database", "sqlite", "sqlite", cfg!(feature = "sqlite")),
        p("database", "postgres", "postgres", cfg!(feature = "postgres")),
        p("database", "mongo", "mongo", cfg!(feature = "mongo")),
        p("queue", "sqlite", "sqlite", cfg!(feature = "sqlite")),
        p("queue", "none", "", true),
        p("queue", "sqs", "sqs", cfg!(feature = "sqs")),
        p("queue", "rabbit", "rabbit", cfg!(feature = "rabbit")),
        p("queue", "kafka", "kafka", cfg!(feature = "kafka")),
        p("queue", "redis", "redis", cfg!(feature = "redis")),
        p("storage", "fs", "fs", cfg!(feature = "fs")),
        p("storage", "s3", "s3", cfg!(feature = "s3")),
        p("chain", "starknet", "", false),
        p("prover", "atlantic", "", false),
        p("da", "ethereum", "", false),
        p("settlement", "ethereum", "", false),
        p("settlement", "starknet", "", false),
    ];
    for s in ["chain", "os", "prover", "da", "settlement"] {
        v.push(p(s, "devnet", "devnet", cfg!(feature = "devnet")));
    }
    v
}

/// Fails when a section names an unknown provider or one not compiled into this binary.
pub(crate) fn check_providers(cfg: &AppConfig) -> anyhow::Result<()> {
    let all = providers();
    for (section, s) in cfg.sections() {
        let known: Vec<_> = all.iter().filter(|p| p.section == section).collect();
        match known.iter().find(|p| p.name == s.provider) {
            Some(p) if p.compiled => {}
            Some(p) if p.feature.is_empty() => bail!(
                "[{section}] provider \"{}\" is planned but not in this release of orch yet; available here: {}",
                s.provider,
                known.iter().filter(|p| p.compiled).map(|p| format!("\"{}\"", p.name)).collect::<Vec<_>>().join(", ")
            ),
            Some(p) => bail!(
                "[{section}] provider \"{}\" is not compiled into this binary: rebuild with `cargo build --release --features {}`",
                s.provider,
                p.feature
            ),
            None => {
                let names: Vec<_> = known.iter().map(|p| format!("\"{}\"", p.name)).collect();
                bail!("[{section}] unknown provider \"{}\": expected one of {}", s.provider, names.join(", "))
            }
        }
    }
    Ok(())
}

/// Resolves a path option relative to the data dir when it is relative.
pub(crate) fn under_data_dir(cfg: &AppConfig, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cfg.data_dir.join(p)
    }
}

/// Options of a section with a default filled in when absent.
pub(crate) fn with_default(section: &Section, key: &str, value: Value) -> Section {
    let mut s = section.clone();
    s.options.entry(key.to_string()).or_insert(value);
    s
}
