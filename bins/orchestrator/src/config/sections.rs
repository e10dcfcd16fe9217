//! The provider sections (`[database]`, `[queue]`, …) as typed enums tagged by `provider`.
//!
//! Each enum is declared once with `provider_section!`: the variant, the name a config uses,
//! the Cargo feature that compiles it in and the adapter's own config type. From that one
//! declaration come the enum (a variant exists only when its feature is on), the parser that
//! turns a raw section into it, and the table of providers that `config check` and the error
//! messages read. A name this build lacks fails with the feature to enable; an unknown name
//! lists the known ones.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A section as written: the provider's name and its options, before they are typed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RawSection {
    /// Provider name (`sqlite`, `postgres`, `fs`, `devnet`, …); absent: the section's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) provider: Option<String>,
    /// `[settlement] layer = …`: the design's other spelling of `provider` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) layer: Option<String>,
    /// Everything else in the section.
    #[serde(flatten)]
    pub(crate) options: Map<String, Value>,
}

impl RawSection {
    /// The provider the section names, or `default`.
    fn provider<'a>(&'a self, section: &str, default: &'a str) -> anyhow::Result<&'a str> {
        match (&self.provider, &self.layer) {
            (Some(p), Some(l)) if p != l => anyhow::bail!(
                "invalid config at `{section}`: provider = \"{p}\" and layer = \"{l}\" disagree; set only one of them"
            ),
            (_, Some(_)) if section != "settlement" => {
                anyhow::bail!(
                    "invalid config at `{section}.layer`: unknown option; the provider is set with `provider = …`"
                )
            }
            (Some(p), _) | (None, Some(p)) => Ok(p),
            (None, None) => Ok(default),
        }
    }

    /// The options as `T`; errors name `section.key`.
    pub(crate) fn parse<T: DeserializeOwned>(&self, section: &str) -> anyhow::Result<T> {
        parse_options(section, &self.options)
    }
}

/// Options as the type `T` that owns them; errors name `section.key`.
pub(crate) fn parse_options<T: DeserializeOwned>(section: &str, options: &Map<String, Value>) -> anyhow::Result<T> {
    let v = Value::Object(options.clone());
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { section.to_string() } else { format!("{section}.{path}") };
        anyhow::anyhow!("invalid config at `{at}`: {}", e.into_inner())
    })
}

/// The options of a provider that takes none (`none`, the sqlite queue, the devnet providers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) struct NoOptions {}

impl<'de> Deserialize<'de> for NoOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = Map::<String, Value>::deserialize(d)?;
        match m.keys().next() {
            None => Ok(NoOptions {}),
            Some(k) => Err(serde::de::Error::custom(format!(
                "unknown option `{k}`: this provider takes no options here (the simulated world is set \
                 under [devnet]; the sqlite queue shares [database]'s file and settings)"
            ))),
        }
    }
}

impl NoOptions {
    pub(crate) fn validate(&self) -> orch_core::Result<()> {
        Ok(())
    }
}

/// One provider a section knows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Provider {
    /// The section, e.g. `database`.
    pub(crate) section: &'static str,
    /// The name a config uses, e.g. `postgres`.
    pub(crate) name: &'static str,
    /// Other names a config may use for it (`[settlement] layer = "ethereum"` for `eth`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub(crate) aliases: &'static [&'static str],
    /// The Cargo feature that compiles it in (`None`: always there, or planned).
    pub(crate) feature: Option<&'static str>,
    /// Whether this binary has it.
    pub(crate) compiled: bool,
    /// Named by the design but not shipped in this release of orch.
    pub(crate) planned: bool,
}

/// Why a section's provider cannot be used by this binary: one line, with the fix.
fn unavailable(section: &str, name: &str, known: &[Provider]) -> anyhow::Error {
    let quoted =
        |it: &mut dyn Iterator<Item = &Provider>| it.map(|p| format!("\"{}\"", p.name)).collect::<Vec<_>>().join(", ");
    match known.iter().find(|p| p.name == name || p.aliases.contains(&name)) {
        Some(p) if p.planned => anyhow::anyhow!(
            "[{section}] provider \"{name}\" is planned but not in this release of orch yet; available here: {}",
            quoted(&mut known.iter().filter(|p| p.compiled))
        ),
        Some(p) => anyhow::anyhow!(
            "[{section}] provider \"{name}\" is not compiled into this binary: rebuild with `cargo build --release --features {}`",
            p.feature.unwrap_or(name)
        ),
        None => anyhow::anyhow!(
            "[{section}] unknown provider \"{name}\": expected one of {}",
            quoted(&mut known.iter().filter(|p| !p.planned))
        ),
    }
}

/// `Some(feature)` when a feature is given, else `None` (for `provider_section!`).
macro_rules! feature_of {
    () => {
        None
    };
    ($f:literal) => {
        Some($f)
    };
}

/// Declares one section's typed enum; see the module docs. A variant without `if "feature"`
/// is always compiled in; `= "name" | "alias"` accepts the alias as the same provider.
macro_rules! provider_section {
    (
        $(#[$doc:meta])*
        $Enum:ident in $section:literal, default $default:literal {
            $( $(#[$vdoc:meta])* $Variant:ident($Cfg:ty) = $name:literal $(| $alias:literal)* $(if $feature:literal)?, )*
        }
        planned [$($planned:literal),* $(,)?]
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "provider")]
        // One value per section, built once from the config: variants' sizes do not matter.
        #[allow(clippy::large_enum_variant)]
        pub(crate) enum $Enum {
            $(
                $(#[$vdoc])*
                $(#[cfg(feature = $feature)])?
                #[serde(rename = $name)]
                $Variant($Cfg),
            )*
        }

        impl $Enum {
            /// Every provider the section knows, compiled in or not.
            pub(crate) const PROVIDERS: &'static [Provider] = &[
                $( Provider {
                    section: $section,
                    name: $name,
                    aliases: &[$($alias),*],
                    feature: feature_of!($($feature)?),
                    compiled: true $(&& cfg!(feature = $feature))?,
                    planned: false,
                }, )*
                $( Provider {
                    section: $section,
                    name: $planned,
                    aliases: &[],
                    feature: None,
                    compiled: false,
                    planned: true,
                }, )*
            ];

            /// The provider's name as a config writes it.
            pub(crate) fn name(&self) -> &'static str {
                match *self {
                    $( $(#[cfg(feature = $feature)])? Self::$Variant(_) => $name, )*
                }
            }

            /// Types a raw section: the provider must be compiled in, and its options must
            /// parse into its adapter's config and pass that config's checks.
            pub(crate) fn from_raw(raw: &RawSection) -> anyhow::Result<Self> {
                match raw.provider($section, $default)? {
                    $(
                        $(#[cfg(feature = $feature)])?
                        $name $(| $alias)* => {
                            let c: $Cfg = raw.parse($section)?;
                            c.validate()?;
                            Ok(Self::$Variant(c))
                        }
                    )*
                    other => Err(unavailable($section, other, Self::PROVIDERS)),
                }
            }
        }
    };
}

provider_section! {
    /// `[database]`: the job store.
    DatabaseProvider in "database", default "sqlite" {
        /// SQLite file under the data dir (the embedded default).
        Sqlite(orch_sqlite::SqliteConfig) = "sqlite" if "sqlite",
        /// PostgreSQL.
        Postgres(orch_postgres::PostgresConfig) = "postgres" if "postgres",
        /// MongoDB.
        Mongo(orch_mongo::MongoConfig) = "mongo" if "mongo",
    }
    planned []
}

provider_section! {
    /// `[queue]`: the wake-up queue.
    QueueProvider in "queue", default "sqlite" {
        /// The queue inside the SQLite store (needs `[database] provider = "sqlite"`).
        Sqlite(NoOptions) = "sqlite" if "sqlite",
        /// Redis Streams.
        Redis(orch_redis::RedisConfig) = "redis" if "redis",
        /// RabbitMQ.
        Rabbit(orch_rabbit::RabbitConfig) = "rabbit" if "rabbit",
        /// Amazon SQS.
        Sqs(orch_sqs::SqsConfig) = "sqs" if "sqs",
        /// Kafka topics.
        Kafka(orch_kafka::KafkaConfig) = "kafka" if "kafka",
        /// No queue: workers find work by sweeping the store alone.
        None(NoOptions) = "none",
    }
    planned []
}

provider_section! {
    /// `[storage]`: artefacts.
    StorageProvider in "storage", default "fs" {
        /// Files under a directory (relative paths are under the data dir).
        Fs(orch_fs::FsConfig) = "fs" if "fs",
        /// S3 or an S3-compatible store.
        S3(orch_s3::S3Config) = "s3" if "s3",
    }
    planned []
}

provider_section! {
    /// `[chain]`: the L2 being settled.
    ChainProvider in "chain", default "devnet" {
        /// The simulated chain (`[devnet.chain]`).
        Devnet(NoOptions) = "devnet" if "devnet",
    }
    planned ["starknet"]
}

provider_section! {
    /// `[os]`: the SNOS runner.
    OsProvider in "os", default "devnet" {
        /// The simulated OS runner (`[devnet.os]`).
        Devnet(NoOptions) = "devnet" if "devnet",
    }
    planned []
}

provider_section! {
    /// `[prover]`: proving.
    ProverProvider in "prover", default "devnet" {
        /// The simulated prover (`[devnet.prover]`).
        Devnet(NoOptions) = "devnet" if "devnet",
    }
    planned ["atlantic"]
}

provider_section! {
    /// `[da]`: data availability.
    DaProvider in "da", default "devnet" {
        /// The simulated DA layer (`[devnet.da]`).
        Devnet(NoOptions) = "devnet" if "devnet",
    }
    planned ["ethereum"]
}

provider_section! {
    /// `[settlement]`: the settlement layer (`layer = …` is accepted for `provider = …`).
    SettlementProvider in "settlement", default "devnet" {
        /// The simulated ledger (`[devnet.settlement]`).
        Devnet(NoOptions) = "devnet" if "devnet",
        /// The Starknet core contract on Ethereum, state updates with EIP-4844 blobs
        /// (`provider = "eth"` or the design's `layer = "ethereum"`).
        Eth(orch_eth::EthConfig) = "eth" | "ethereum" if "eth",
    }
    planned ["starknet"]
}

provider_section! {
    /// `[alerts]`: where the engine's alerts go.
    AlertsProvider in "alerts", default "log" {
        /// Log each alert (deduplicated, rate limited) on the `orch::alerts` target.
        Log(crate::alerts::LogAlertsConfig) = "log",
        /// Drop alerts.
        None(NoOptions) = "none",
    }
    planned []
}

/// Every provider of every section, for `config check --json` and the docs.
pub(crate) fn all_providers() -> impl Iterator<Item = &'static Provider> {
    [
        DatabaseProvider::PROVIDERS,
        QueueProvider::PROVIDERS,
        StorageProvider::PROVIDERS,
        ChainProvider::PROVIDERS,
        OsProvider::PROVIDERS,
        ProverProvider::PROVIDERS,
        DaProvider::PROVIDERS,
        SettlementProvider::PROVIDERS,
        AlertsProvider::PROVIDERS,
    ]
    .into_iter()
    .flatten()
}
