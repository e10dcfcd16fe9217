#![doc = include_str!("../README.md")]

mod blobs;
mod budget;
mod chain;
mod config;
mod da;
mod faults;
mod ids;
mod ledger;
mod mix;
mod os;
mod prover;
mod settlement;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orch_core::chain::ChainSource;
use orch_core::clock::Clock;
use orch_core::da::Da;
use orch_core::error::{Error, Result};
use orch_core::prove::{OsRunner, Prover};
use orch_core::settle::Settlement;
use orch_core::types::Timestamp;
use serde::{Deserialize, Serialize};

pub use blobs::DA_VERSION;
pub use budget::blob_budget;
pub use chain::{da_felts_estimate, DevChain, STARKNET_VERSION};
pub use config::{
    ChainConfig, DaConfig, DevnetConfig, FailProof, Faults, KzgMode, OsConfig, ProverConfig, SettlementConfig,
};
pub use da::{DevDa, BYTES_PER_BLOB, FELTS_PER_BLOB, MANIFEST};
pub use ledger::LEDGER_FILE;
pub use os::{os_config_hash, DevOsRunner, DEV_OS_PROGRAM_HASH, DEV_PIE_MAGIC};
pub use prover::{DevProver, DEV_PROOF_MAGIC};
pub use settlement::{AppliedUpdate, DevSettlement, LedgerView, RegisteredProof};

/// The data dir's identity file: which seed made it and when its chain started.
pub const META_FILE: &str = "devnet.json";
const META_FORMAT: &str = "orch-devnet";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: String,
    version: u32,
    seed: u64,
    genesis_ms: u64,
}

/// The whole simulated world on one data dir: chain, OS runner, prover, DA layer and
/// settlement ledger, all from one [`DevnetConfig`].
#[derive(Debug, Clone)]
pub struct Devnet {
    data_dir: PathBuf,
    chain: Arc<DevChain>,
    os: Arc<DevOsRunner>,
    prover: Arc<DevProver>,
    da: Arc<DevDa>,
    settlement: Arc<DevSettlement>,
}

impl Devnet {
    /// Builds every component from `cfg`, keeping state in `data_dir` (created if absent) and
    /// time with `clock`.
    ///
    /// The data dir remembers its seed and the chain's birth time ([`META_FILE`]), so a
    /// reopened devnet continues the same chain at the height it has grown to, and its
    /// settlement ledger ([`LEDGER_FILE`]) holds what was applied. Reopening with another seed
    /// is an error. When `settlement.genesis_root` is unset, the first update must start from
    /// the simulated chain's root before `settlement.start_block`.
    pub fn open(cfg: DevnetConfig, data_dir: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Devnet> {
        cfg.validate()?;
        let dir = data_dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| ledger::io_error(dir, "creating", e))?;
        let meta = load_or_create_meta(dir, cfg.seed, clock.now())?;
        let seed = cfg.seed;
        let chain = Arc::new(DevChain::new(cfg.chain, seed, Timestamp(meta.genesis_ms), clock.clone()));
        let os = Arc::new(DevOsRunner::new(chain.clone(), cfg.os).with_kzg(cfg.da.kzg));
        let prover = Arc::new(DevProver::new(cfg.prover, seed, clock.clone()));
        let da = Arc::new(DevDa::new(cfg.da, seed, clock.clone()));
        let mut scfg = cfg.settlement;
        if scfg.genesis_root.is_none() {
            scfg.genesis_root = Some(chain.root_before(scfg.start_block));
        }
        let settlement = Arc::new(DevSettlement::open(dir, scfg, seed, clock)?);
        tracing::debug!(target: "orch::devnet", data_dir = %dir.display(), seed, "devnet opened");
        Ok(Devnet { data_dir: dir.to_path_buf(), chain, os, prover, da, settlement })
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The chain, as a port.
    pub fn chain(&self) -> Arc<dyn ChainSource> {
        self.chain.clone()
    }

    /// The OS runner, as a port.
    pub fn os(&self) -> Arc<dyn OsRunner> {
        self.os.clone()
    }

    /// The prover, as a port.
    pub fn prover(&self) -> Arc<dyn Prover> {
        self.prover.clone()
    }

    /// The DA layer, as a port.
    pub fn da(&self) -> Arc<dyn Da> {
        self.da.clone()
    }

    /// The settlement layer, as a port.
    pub fn settlement(&self) -> Arc<dyn Settlement> {
        self.settlement.clone()
    }

    /// The chain itself (head, generated blocks, roots).
    pub fn dev_chain(&self) -> &Arc<DevChain> {
        &self.chain
    }

    /// The OS runner itself.
    pub fn dev_os(&self) -> &Arc<DevOsRunner> {
        &self.os
    }

    /// The prover itself (task counts).
    pub fn dev_prover(&self) -> &Arc<DevProver> {
        &self.prover
    }

    /// The DA layer itself (publication counts).
    pub fn dev_da(&self) -> &Arc<DevDa> {
        &self.da
    }

    /// The settlement ledger itself ([`DevSettlement::applied`]).
    pub fn dev_settlement(&self) -> &Arc<DevSettlement> {
        &self.settlement
    }
}

fn load_or_create_meta(dir: &Path, seed: u64, now: Timestamp) -> Result<Meta> {
    let path = dir.join(META_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| {
                Error::invalid_input(
                    format!("devnet data dir file {}", path.display()),
                    format!("unreadable ({e}); restore it, or remove the data dir to start a fresh devnet"),
                )
            })?;
            if meta.format != META_FORMAT || meta.version != 1 {
                return Err(Error::invalid_input(
                    format!("devnet data dir file {}", path.display()),
                    format!("is {} version {}, not {META_FORMAT} version 1", meta.format, meta.version),
                ));
            }
            if meta.seed != seed {
                return Err(Error::invalid_input(
                    "devnet.seed",
                    format!(
                        "is {seed} but the data dir {} holds a devnet made with seed {}: use that seed, or another data dir",
                        dir.display(),
                        meta.seed
                    ),
                ));
            }
            Ok(meta)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let meta = Meta { format: META_FORMAT.into(), version: 1, seed, genesis_ms: now.0 };
            let body =
                serde_json::to_vec_pretty(&meta).map_err(|e| Error::internal_from("serializing devnet.json", e))?;
            let tmp = dir.join(format!("{META_FILE}.tmp"));
            let mut f = fs::File::create(&tmp).map_err(|e| ledger::io_error(&tmp, "creating", e))?;
            f.write_all(&body).and_then(|()| f.sync_all()).map_err(|e| ledger::io_error(&tmp, "writing", e))?;
            drop(f);
            fs::rename(&tmp, &path).map_err(|e| ledger::io_error(&path, "renaming to", e))?;
            ledger::sync_dir(dir)?;
            Ok(meta)
        }
        Err(e) => Err(ledger::io_error(&path, "reading", e)),
    }
}
