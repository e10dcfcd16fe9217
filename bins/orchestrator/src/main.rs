//! `orchestrator`: the orch binary. Thin: parses the CLI, loads the config, wires the
//! providers compiled in (Cargo features) and runs orch-core's engine.

mod alerts;
mod cmd;
mod config;
mod output;
mod providers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// orch: a pluggable orchestrator for Starknet-stack appchains.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file (default: ./orchestrator.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where embedded providers keep their files (overrides `data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `orch=debug` (default: warn for `dev`, info otherwise;
    /// RUST_LOG also works).
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on embedded defaults against the simulated chain.
    Dev(cmd::dev::DevArgs),
    /// Run as a service (scale out with several instances and modes).
    Run(cmd::run::RunArgs),
    /// Create tables, indexes, queues and directories (idempotent).
    Setup,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Inspect and act on jobs.
    #[command(subcommand)]
    Jobs(cmd::jobs::JobsCmd),
    /// Settlement progress per block.
    #[command(subcommand)]
    Blocks(BlocksCmd),
    /// State diff ⇄ EIP-4844 blobs ⇄ KZG, on files.
    #[command(subcommand)]
    Blob(cmd::blob::BlobCmd),
    /// Back up, restore, or move the job store to another backend.
    #[command(subcommand)]
    Db(cmd::db::DbCmd),
    /// Ethereum settlement tools (deploy a stand-in core contract on a local devnet).
    #[cfg(feature = "eth")]
    #[command(subcommand)]
    Eth(cmd::eth::EthCmd),
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate the configuration and that its providers are compiled in.
    Check(JsonFlag),
    /// Print the merged configuration, secrets redacted.
    Show(JsonFlag),
}

#[derive(Debug, Subcommand)]
enum BlocksCmd {
    /// How far settlement has come.
    Status(JsonFlag),
}

/// `--json`: machine-readable output.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

fn init_logs(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match cli.command {
        Command::Dev(_) => "warn",
        _ => "info",
    };
    let filter = cli
        .log
        .clone()
        .map(EnvFilter::new)
        .unwrap_or_else(|| EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: what is wrong; then where to look.
            let text = e.to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            eprintln!("{first} (see `orchestrator --help`)");
            return ExitCode::from(2);
        }
    };
    init_logs(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cmd::describe(&e));
            ExitCode::from(cmd::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = cmd::Ctx { config: cli.config.clone(), data_dir: cli.data_dir.clone() };
    match cli.command {
        Command::Dev(a) => cmd::dev::dev(&ctx, a).await,
        Command::Run(a) => cmd::run::run(&ctx, a).await,
        Command::Setup => cmd::setup(&ctx).await,
        Command::Config(ConfigCmd::Check(j)) => cmd::config_check(&ctx, j.json),
        Command::Config(ConfigCmd::Show(j)) => cmd::config_show(&ctx, j.json),
        Command::Jobs(c) => cmd::jobs::jobs(&ctx, c).await,
        Command::Blocks(BlocksCmd::Status(j)) => cmd::blocks_status(&ctx, j.json).await,
        Command::Blob(c) => cmd::blob::blob(c),
        Command::Db(c) => cmd::db::db(&ctx, c).await,
        #[cfg(feature = "eth")]
        Command::Eth(c) => cmd::eth::eth(&ctx, c).await,
    }
}
