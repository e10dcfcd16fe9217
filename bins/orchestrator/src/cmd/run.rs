//! `orchestrator run`: the service, in one of its scaling modes.

use clap::{Args, ValueEnum};
use orch_core::engine::{EngineConfig, Roles};

use super::{user, Ctx};
use crate::providers;

/// Which part of orch this instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Watcher and workers.
    All,
    /// Claim and run jobs only.
    Worker,
    /// Create jobs for new blocks only.
    Watcher,
    /// The HTTP API only.
    Api,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Service mode.
    #[arg(long, value_enum, default_value_t = Mode::All)]
    mode: Mode,
}

pub(crate) async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    let roles = match args.mode {
        Mode::All => Roles::ALL,
        Mode::Worker => Roles { create: false, work: true },
        Mode::Watcher => Roles { create: true, work: false },
        Mode::Api => {
            return Err(user("--mode api needs the HTTP API (orch-api), which this build does not include yet"))
        }
    };
    let ports = providers::open(&cfg, None, providers::StoreMode::Run).await?;
    let engine = ports.engine(&cfg, roles)?;
    tracing::info!(target: "orch::run", worker = %engine.worker_id(), mode = ?args.mode, chain = %cfg.chain_id, "orchestrator running; Ctrl-C or SIGTERM to drain and stop");
    let handle = engine.start();
    shutdown_signal().await;
    tracing::info!(target: "orch::run", "draining");
    handle.shutdown().await;
    tracing::info!(target: "orch::run", "stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
