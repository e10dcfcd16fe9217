//! An orch binary of your own: only the adapters you deploy are compiled in — jobs in
//! PostgreSQL, wake-ups on Redis Streams, artefacts in S3 — with orch-devnet's simulated
//! chain, prover, DA layer and L1 on the chain side. Its config is a few flags (or `APP_*`
//! environment variables). It creates what is missing (schema, consumer group, bucket),
//! settles blocks `0..N-1` of a devnet chain and drains; Ctrl-C drains early.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use orch_core::clock::{Clock, SystemClock};
use orch_core::engine::pipeline::PipelinePorts;
use orch_core::engine::{Engine, EngineConfig};
use orch_core::queue::Queue;
use orch_core::storage::Storage;
use orch_core::types::{ChainId, JobStatus};
use orch_devnet::{ChainConfig, Devnet, DevnetConfig};
use orch_postgres::{PostgresConfig, PostgresStore};
use orch_redis::{RedisConfig, RedisQueue};
use orch_s3::{S3Config, S3Storage};

/// Settle a devnet chain on PostgreSQL + Redis + S3.
#[derive(Debug, Parser)]
struct Config {
    /// PostgreSQL URL of the job store, e.g. postgres://orch:secret@127.0.0.1:5432/orch.
    #[arg(long, env = "APP_POSTGRES_URL", hide_env_values = true)]
    postgres_url: String,
    /// Schema holding orch's tables (created if missing).
    #[arg(long, env = "APP_POSTGRES_SCHEMA", default_value = "orch")]
    postgres_schema: String,
    /// Redis URL of the wake-up queue, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "APP_REDIS_URL", hide_env_values = true)]
    redis_url: String,
    /// Name of the queue in Redis.
    #[arg(long, env = "APP_REDIS_QUEUE", default_value = "orch")]
    redis_queue: String,
    /// S3-compatible endpoint (default: AWS S3). Credentials come from the AWS default chain
    /// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an instance role).
    #[arg(long, env = "APP_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// AWS region of the bucket (default: the AWS default chain; us-east-1 with an endpoint).
    #[arg(long, env = "APP_S3_REGION")]
    s3_region: Option<String>,
    /// Bucket of the artefacts (created if missing).
    #[arg(long, env = "APP_S3_BUCKET", default_value = "orch-artefacts")]
    s3_bucket: String,
    /// Key prefix of this deployment's artefacts inside the bucket.
    #[arg(long, env = "APP_S3_PREFIX")]
    s3_prefix: Option<String>,
    /// Directory of the simulated world (its L1 ledger).
    #[arg(long, default_value = "data/devnet")]
    devnet_dir: PathBuf,
    /// Blocks of the devnet chain to settle.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    blocks: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cfg = Config::parse();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    // Jobs in PostgreSQL (schema created and migrated if missing).
    let pg = PostgresConfig { schema: cfg.postgres_schema, ..PostgresConfig::new(cfg.postgres_url) };
    let db = PostgresStore::connect_and_migrate(pg).await.context("job store")?.database();
    // Wake-ups between instances on a Redis stream (consumer group created if missing).
    let queue = Arc::new(RedisQueue::connect(RedisConfig::new(cfg.redis_url, cfg.redis_queue)).await?);
    queue.setup().await.context("queue")?;
    // Artefacts in S3 (bucket created if missing).
    let s3 = S3Config {
        endpoint: cfg.s3_endpoint,
        region: cfg.s3_region,
        prefix: cfg.s3_prefix,
        ..S3Config::new(cfg.s3_bucket)
    };
    let storage = Arc::new(S3Storage::connect(s3).await?);
    storage.setup().await.context("artefact storage")?;
    // The chain side, simulated: a chain of exactly `blocks` blocks, OS runner, prover, DA, L1.
    let world = DevnetConfig { chain: ChainConfig::fixed(cfg.blocks), ..DevnetConfig::default() };
    let devnet = Devnet::open(world, &cfg.devnet_dir, clock.clone())?;

    let ports = PipelinePorts {
        chain: devnet.chain(),
        os: devnet.os(),
        prover: devnet.prover(),
        da: devnet.da(),
        settlement: devnet.settlement(),
        storage,
        db: db.clone(),
    };
    let config = EngineConfig {
        batch_size: 10,
        batch_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(100),
        creator_interval: Duration::from_millis(50),
        verify_poll: Duration::ZERO,
        ..EngineConfig::default()
    };
    let chain = ChainId::new("devnet")?;
    let engine =
        Engine::builder(chain.clone(), db.clone(), clock).config(config).queue(queue).pipeline(ports).build()?;
    let started = Instant::now();
    let handle = engine.start();

    let settlement = devnet.settlement();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let settled = loop {
        let settled = settlement.last_settled().await?.map(|s| s.block);
        // Done, or stuck: a job out of attempts holds settlement back until an operator acts.
        if settled >= Some(cfg.blocks - 1) || handle.stats().failed > 0 {
            break settled;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = &mut ctrl_c => break settled,
        }
    };
    handle.shutdown().await;

    let counts = db.count_jobs(&chain).await?;
    let count = |s: JobStatus| counts.iter().filter(|c| c.status == s).map(|c| c.count).sum::<u64>();
    println!(
        "settled blocks 0..={} in {:.1}s; jobs completed {}, failed {}",
        settled.map_or("-".into(), |b| b.to_string()),
        started.elapsed().as_secs_f64(),
        count(JobStatus::Completed),
        count(JobStatus::Failed),
    );
    anyhow::ensure!(settled >= Some(cfg.blocks - 1), "stopped before block {} settled", cfg.blocks - 1);
    Ok(())
}
