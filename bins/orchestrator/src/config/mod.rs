//! `AppConfig`: built-in defaults < `orchestrator.toml` < `ORCH_*` environment < CLI flags,
//! merged by figment, then typed section by section.
//!
//! Loading has two steps. Figment merges the layers into a [`RawConfig`], whose provider
//! sections are still maps; its errors name the key and the layer it came from. Then each
//! section is typed ([`sections`]): the provider must be compiled into this binary and its
//! options must parse into its adapter's config and pass its checks. Everything after
//! [`load`] sees only the typed [`AppConfig`].

pub(crate) mod sections;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use orch_core::engine::EngineConfig;
use orch_core::types::ChainId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub(crate) use self::sections::{
    AlertsProvider, ChainProvider, DaProvider, DatabaseProvider, OsProvider, ProverProvider, QueueProvider, RawSection,
    SettlementProvider, StorageProvider,
};

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

/// The configuration as figment merges it: provider sections not yet typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    chain_id: String,
    data_dir: PathBuf,
    engine: EngineConfig,
    database: RawSection,
    queue: RawSection,
    storage: RawSection,
    chain: RawSection,
    os: RawSection,
    prover: RawSection,
    da: RawSection,
    settlement: RawSection,
    alerts: RawSection,
    #[serde(default)]
    devnet: Map<String, Value>,
    #[serde(default)]
    api: ApiConfig,
}

impl RawConfig {
    /// Built-in defaults: the embedded providers.
    fn embedded(engine: EngineConfig) -> RawConfig {
        RawConfig {
            chain_id: "devnet".into(),
            data_dir: PathBuf::from("data"),
            engine,
            database: RawSection::default(),
            queue: RawSection::default(),
            storage: RawSection::default(),
            chain: RawSection::default(),
            os: RawSection::default(),
            prover: RawSection::default(),
            da: RawSection::default(),
            settlement: RawSection::default(),
            alerts: RawSection::default(),
            devnet: Map::new(),
            api: ApiConfig::default(),
        }
    }
}

/// The whole configuration, typed. Serializing it (`config show`) prints every secret as
/// `<redacted>`: that is `Secret`'s own serialization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AppConfig {
    /// Tenant id: namespaces jobs, queues and artefacts (default `devnet`).
    pub(crate) chain_id: ChainId,
    /// Where embedded providers keep their files (default `data`).
    pub(crate) data_dir: PathBuf,
    /// Engine tuning.
    pub(crate) engine: EngineConfig,
    /// Job store.
    pub(crate) database: DatabaseProvider,
    /// Wake-up queue.
    pub(crate) queue: QueueProvider,
    /// Artefacts.
    pub(crate) storage: StorageProvider,
    /// The L2 being settled.
    pub(crate) chain: ChainProvider,
    /// SNOS runner.
    pub(crate) os: OsProvider,
    /// Prover.
    pub(crate) prover: ProverProvider,
    /// DA layer.
    pub(crate) da: DaProvider,
    /// Settlement layer.
    pub(crate) settlement: SettlementProvider,
    /// Where alerts go.
    pub(crate) alerts: AlertsProvider,
    /// The simulated world, used by every `devnet` provider.
    #[cfg(feature = "devnet")]
    pub(crate) devnet: orch_devnet::DevnetConfig,
    /// HTTP API.
    pub(crate) api: ApiConfig,
}

impl AppConfig {
    /// Types every section of `raw`; the first error names its key.
    #[allow(irrefutable_let_patterns)] // builds with a single storage provider
    fn from_raw(raw: RawConfig) -> anyhow::Result<AppConfig> {
        raw.engine.validate().map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
        let chain_id = ChainId::new(&raw.chain_id).map_err(|e| anyhow::anyhow!("invalid config at `chain_id`: {e}"))?;
        let mut cfg = AppConfig {
            chain_id,
            engine: raw.engine,
            database: DatabaseProvider::from_raw(&raw.database)?,
            queue: QueueProvider::from_raw(&raw.queue)?,
            storage: StorageProvider::from_raw(&raw.storage)?,
            chain: ChainProvider::from_raw(&raw.chain)?,
            os: OsProvider::from_raw(&raw.os)?,
            prover: ProverProvider::from_raw(&raw.prover)?,
            da: DaProvider::from_raw(&raw.da)?,
            settlement: SettlementProvider::from_raw(&raw.settlement)?,
            alerts: AlertsProvider::from_raw(&raw.alerts)?,
            #[cfg(feature = "devnet")]
            devnet: {
                let d: orch_devnet::DevnetConfig = sections::parse_options("devnet", &raw.devnet)?;
                d.validate()?;
                d
            },
            api: raw.api,
            data_dir: raw.data_dir,
        };
        #[cfg(not(feature = "devnet"))]
        if !raw.devnet.is_empty() {
            bail!("[devnet] settings need the simulated world, which is not compiled into this binary: rebuild with `cargo build --release --features devnet`, or remove [devnet]");
        }
        // The binary's own defaults for files: under the data dir, named for what they hold.
        #[cfg(feature = "fs")]
        if let StorageProvider::Fs(fc) = &mut cfg.storage {
            if !raw.storage.options.contains_key("root") {
                fc.root = PathBuf::from("artifacts");
            }
        }
        cfg.resolve_paths();
        Ok(cfg)
    }

    /// Relative file paths of embedded providers live under the data dir, and so does the
    /// Ethereum transaction manager's state when the config does not place it
    /// (`<data_dir>/eth`).
    #[allow(irrefutable_let_patterns)] // builds with a single database or storage provider
    fn resolve_paths(&mut self) {
        let under = |p: &mut PathBuf, dir: &Path| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        #[cfg(feature = "sqlite")]
        if let DatabaseProvider::Sqlite(c) = &mut self.database {
            under(&mut c.path, &self.data_dir);
        }
        #[cfg(feature = "fs")]
        if let StorageProvider::Fs(c) = &mut self.storage {
            under(&mut c.root, &self.data_dir);
        }
        #[cfg(feature = "eth")]
        if let SettlementProvider::Eth(c) = &mut self.settlement {
            under(c.state_dir.get_or_insert_with(|| PathBuf::from("eth")), &self.data_dir);
        }
        let _ = under;
    }

    /// The simulated world's files.
    #[cfg(feature = "devnet")]
    pub(crate) fn devnet_dir(&self) -> PathBuf {
        self.data_dir.join("devnet")
    }
}

/// Where the configuration comes from besides built-in defaults and the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources<'a> {
    /// `--config FILE`: must exist. `None`: `./orchestrator.toml` when present.
    pub(crate) file: Option<&'a Path>,
    /// `--data-dir DIR`: overrides `data_dir` from every other layer.
    pub(crate) data_dir: Option<&'a Path>,
}

/// Loads and types the configuration.
pub(crate) fn load(sources: &Sources<'_>, engine_defaults: EngineConfig) -> anyhow::Result<AppConfig> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::embedded(engine_defaults)));
    match sources.file {
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
    // `ORCH_TEST_*` and `ORCH_REQUIRE_SERVICES` belong to the test suite (scripts/services.sh,
    // scripts/test.sh), not to the configuration.
    let env = Env::prefixed("ORCH_")
        .filter(|k| {
            let k = k.as_str().to_ascii_lowercase();
            !k.starts_with("test_") && k != "require_services"
        })
        .split("__")
        .map(|k| k.as_str().to_ascii_lowercase().into());
    fig = fig.merge(env);
    if let Some(d) = sources.data_dir {
        fig = fig.merge(Serialized::default("data_dir", d));
    }
    let raw: RawConfig = fig.extract().map_err(|e| anyhow::anyhow!("{}", describe_figment_error(e)))?;
    AppConfig::from_raw(raw)
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

/// The configuration as JSON for `config show`: secrets come out as `<redacted>` through
/// `Secret`'s serialization; unset options are left out.
pub(crate) fn shown(cfg: &AppConfig) -> anyhow::Result<Value> {
    fn drop_nulls(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, v| !v.is_null());
                m.values_mut().for_each(drop_nulls);
            }
            Value::Array(a) => a.iter_mut().for_each(drop_nulls),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(cfg)?;
    drop_nulls(&mut v);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> anyhow::Result<AppConfig> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("o.toml");
        std::fs::write(&f, text)?;
        load(&Sources { file: Some(&f), data_dir: None }, EngineConfig::default())
    }

    #[test]
    #[allow(irrefutable_let_patterns)] // builds with a single database or storage provider
    fn defaults_are_the_embedded_providers_under_the_data_dir() {
        let cfg = load_toml("").unwrap();
        assert_eq!(cfg.database.name(), "sqlite");
        assert_eq!(cfg.queue.name(), "sqlite");
        assert_eq!(cfg.storage.name(), "fs");
        assert_eq!(cfg.settlement.name(), "devnet");
        assert_eq!(cfg.alerts.name(), "log");
        #[cfg(feature = "sqlite")]
        if let DatabaseProvider::Sqlite(c) = &cfg.database {
            assert_eq!(c.path, Path::new("data/orch.db"));
        }
        #[cfg(feature = "fs")]
        if let StorageProvider::Fs(c) = &cfg.storage {
            assert_eq!(c.root, Path::new("data/artifacts"));
        }
    }

    #[test]
    fn the_data_dir_flag_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("o.toml");
        std::fs::write(&f, "data_dir = \"from-file\"\n").unwrap();
        let flag = dir.path().join("from-flag");
        let cfg = load(&Sources { file: Some(&f), data_dir: Some(&flag) }, EngineConfig::default()).unwrap();
        assert_eq!(cfg.data_dir, flag);
    }

    #[test]
    fn errors_name_the_section_and_key() {
        let e = load_toml("[database]\nprovider = \"sqlite\"\npaht = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("database") && e.contains("paht"), "{e}");
        let e = load_toml("[alerts]\nmax_per_window = 0\n").unwrap_err().to_string();
        assert!(e.contains("alerts.max_per_window"), "{e}");
        let e = load_toml("[queue]\nprovider = \"carrier-pigeon\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown provider \"carrier-pigeon\"") && e.contains("\"none\""), "{e}");
        let e = load_toml("[chain]\nprovider = \"devnet\"\nblock_time = \"1s\"\n").unwrap_err().to_string();
        assert!(e.contains("`chain`") && e.contains("block_time") && e.contains("[devnet]"), "{e}");
        let e = load_toml("[settlement]\nlayer = \"starknet\"\n").unwrap_err().to_string();
        assert!(e.contains("not in this release"), "{e}");
        let e = load_toml("[settlement]\nlayer = \"devnet\"\nprovider = \"starknet\"\n").unwrap_err().to_string();
        assert!(e.contains("disagree"), "{e}");
        let e = load_toml("[queue]\nlayer = \"none\"\n").unwrap_err().to_string();
        assert!(e.contains("queue.layer"), "{e}");
    }

    #[test]
    fn every_provider_not_compiled_in_names_its_feature() {
        for p in sections::all_providers().filter(|p| !p.compiled && !p.planned) {
            let e = load_toml(&format!("[{}]\nprovider = \"{}\"\n", p.section, p.name)).unwrap_err().to_string();
            let feature = p.feature.expect("a provider that can be missing has a feature");
            assert!(e.contains(&format!("--features {feature}")), "{e}");
        }
    }

    #[cfg(all(feature = "eth", feature = "embedded"))]
    const ETH: &str = "[settlement]\nprovider = \"eth\"\nrpc_url = \"http://u:hunter2@127.0.0.1:8545\"\n\
                       private_key = \"0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\"\n\
                       core_contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\nchain_id = 31337\n";

    #[cfg(all(feature = "eth", feature = "embedded"))]
    #[test]
    fn eth_settlement_is_typed_under_either_name_with_its_state_under_the_data_dir() {
        let cfg = load_toml(ETH).unwrap();
        let SettlementProvider::Eth(eth) = &cfg.settlement else { panic!("{:?}", cfg.settlement) };
        assert_eq!(eth.chain_id, 31337);
        assert_eq!(eth.state_dir.as_deref(), Some(Path::new("data/eth")));
        // The design's spelling is the same provider.
        let layer = load_toml(&ETH.replace("provider = \"eth\"", "layer = \"ethereum\"")).unwrap();
        assert_eq!(layer.settlement, cfg.settlement);
        assert_eq!(layer.settlement.name(), "eth");
        let placed = load_toml(&format!("{ETH}state_dir = \"/var/lib/orch-eth\"\n")).unwrap();
        let SettlementProvider::Eth(eth) = &placed.settlement else { unreachable!() };
        assert_eq!(eth.state_dir.as_deref(), Some(Path::new("/var/lib/orch-eth")));
        // Bad values name their key.
        let e = load_toml(&ETH.replace("31337", "0")).unwrap_err().to_string();
        assert!(e.contains("settlement.chain_id"), "{e}");
        let e = load_toml(&format!("{ETH}confirmatons = 2\n")).unwrap_err().to_string();
        assert!(e.contains("confirmatons"), "{e}");
    }

    #[cfg(all(feature = "eth", feature = "embedded"))]
    #[test]
    fn shown_eth_settlement_redacts_the_node_url_and_the_key() {
        let v = shown(&load_toml(ETH).unwrap()).unwrap();
        let text = v.to_string();
        assert_eq!(v["settlement"]["provider"], "eth", "{v}");
        assert_eq!(v["settlement"]["rpc_url"], "<redacted>", "{v}");
        assert_eq!(v["settlement"]["private_key"], "<redacted>", "{v}");
        assert!(!text.contains("hunter2") && !text.contains("ac0974bec39a17e3"), "{text}");
    }

    #[cfg(not(feature = "eth"))]
    #[test]
    fn ethereum_settlement_names_the_eth_feature_when_not_compiled_in() {
        for name in ["eth", "ethereum"] {
            let e = load_toml(&format!("[settlement]\nlayer = \"{name}\"\n")).unwrap_err().to_string();
            assert!(e.contains("--features eth"), "{e}");
        }
    }

    #[test]
    fn shown_config_is_the_typed_config_with_provider_tags() {
        assert_eq!(load_toml("[settlement]\nlayer = \"devnet\"\n").unwrap().settlement.name(), "devnet");
        let cfg = load_toml("[alerts]\nprovider = \"none\"\n").unwrap();
        let v = shown(&cfg).unwrap();
        assert_eq!(v["alerts"]["provider"], "none");
        assert_eq!(v["database"]["provider"], "sqlite");
        assert!(v["database"].get("path").is_some(), "{v}");
    }
}
