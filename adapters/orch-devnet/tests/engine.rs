//! The real engine over the devnet (in-memory job store, queue and storage from the testkit):
//! every block settles exactly once, in order, also with faults injected everywhere.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TempDir;
use orch_core::clock::SystemClock;
use orch_core::engine::pipeline::PipelinePorts;
use orch_core::engine::{Engine, EngineConfig, RetryPolicy};
use orch_core::types::{BlockRange, ChainId};
use orch_devnet::{
    ChainConfig, DaConfig, Devnet, DevnetConfig, FailProof, Faults, OsConfig, ProverConfig, SettlementConfig,
};
use orch_testkit::mem::{MemDatabase, MemQueue, MemStorage};

fn engine_config(batch_size: u64) -> EngineConfig {
    EngineConfig {
        workers: 4,
        claim_batch: 64,
        max_in_flight: [256; 5],
        lease: Duration::from_secs(5),
        poll_interval: Duration::from_millis(10),
        dependency_poll: Duration::from_millis(50),
        verify_poll: Duration::ZERO,
        retry: RetryPolicy { max_attempts: 25, base: Duration::from_millis(5), max: Duration::from_millis(50) },
        creator_interval: Duration::from_millis(5),
        max_blocks_ahead: 256,
        batch_size,
        drain_timeout: Duration::from_secs(5),
        ..EngineConfig::default()
    }
}

/// How long a run may go without settling another block before the test calls it stuck: a
/// liveness check, not a speed check (how fast a run goes is printed, never asserted).
const STALL: Duration = Duration::from_secs(60);

/// Runs the engine until `blocks` are settled, failing if settling stops making progress
/// for [`STALL`]; returns the elapsed time.
async fn run(devnet: &Devnet, blocks: u64, batch_size: u64) -> Duration {
    let db = Arc::new(MemDatabase::new());
    let ports = PipelinePorts {
        chain: devnet.chain(),
        os: devnet.os(),
        prover: devnet.prover(),
        da: devnet.da(),
        settlement: devnet.settlement(),
        storage: Arc::new(MemStorage::new()),
        db: db.clone(),
    };
    let engine = Engine::builder(ChainId::new("devnet").unwrap(), db, Arc::new(SystemClock))
        .config(engine_config(batch_size))
        .queue(Arc::new(MemQueue::new()))
        .pipeline(ports)
        .build()
        .unwrap();
    let start = Instant::now();
    let handle = engine.start();
    let settlement = devnet.settlement();
    let (mut last, mut moved) = (0, Instant::now());
    loop {
        let settled = settlement.last_settled().await.ok().flatten().map_or(0, |s| s.block + 1);
        if settled >= blocks {
            break;
        }
        if settled > last {
            (last, moved) = (settled, Instant::now());
        }
        assert!(moved.elapsed() < STALL, "stuck: {settled} of {blocks} blocks settled, none in {STALL:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    handle.shutdown().await;
    elapsed
}

fn assert_settled_once_in_order(devnet: &Devnet, blocks: u64) {
    let applied = devnet.dev_settlement().applied();
    let chain = devnet.dev_chain();
    let mut next = 0;
    for u in &applied {
        assert_eq!(u.range.first(), next, "gap or repeat at {:?}", u.range);
        assert_eq!(u.prev_root, chain.root_before(u.range.first()));
        assert_eq!(u.new_root, chain.root_after(u.range.last()));
        next = u.range.last() + 1;
    }
    assert_eq!(next, blocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_settles_every_devnet_block_exactly_once() {
    let dir = TempDir::new("engine");
    let cfg = DevnetConfig { chain: ChainConfig::fixed(400), ..DevnetConfig::default() };
    let devnet = Devnet::open(cfg, dir.path(), Arc::new(SystemClock)).unwrap();
    let elapsed = run(&devnet, 400, 1).await;
    println!("400 blocks through the whole pipeline in {elapsed:?} ({:.0} blocks/s)", 400.0 / elapsed.as_secs_f64());
    assert_settled_once_in_order(&devnet, 400);
    assert_eq!(devnet.dev_settlement().applied().len(), 400);
    assert_eq!(devnet.dev_prover().tasks_started(), 400);
    assert_eq!(devnet.dev_da().publications(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_settles_exactly_once_through_injected_faults() {
    let dir = TempDir::new("engine-chaos");
    let faults = Faults { failure_rate: 0.03, ..Faults::default() };
    let cfg = DevnetConfig {
        seed: 99,
        chain: ChainConfig { faults: faults.clone(), ..ChainConfig::fixed(200) },
        os: OsConfig { faults: faults.clone(), ..OsConfig::default() },
        prover: ProverConfig {
            fail_proofs: vec![FailProof { block: 7, times: 2 }, FailProof { block: 100, times: 1 }],
            task_failure_rate: 0.02,
            faults: faults.clone(),
            ..ProverConfig::default()
        },
        da: DaConfig { drop_rate: 0.02, faults: faults.clone(), ..DaConfig::default() },
        settlement: SettlementConfig { faults, ..SettlementConfig::default() },
    };
    let devnet = Devnet::open(cfg, dir.path(), Arc::new(SystemClock)).unwrap();
    // Batches of 3: blocks 198 and 199 never fill one.
    let elapsed = run(&devnet, 198, 3).await;
    println!("198 blocks through injected faults in {elapsed:?}");
    let applied = devnet.dev_settlement().applied();
    assert_settled_once_in_order(&devnet, 198);
    assert!(applied.iter().all(|u| u.range.len() <= 3));
    assert!(applied.iter().any(|u| u.range == BlockRange::new(6, 8).unwrap()));
    let injected = devnet.dev_settlement().injected_failures()
        + devnet.dev_prover().injected_failures()
        + devnet.dev_da().injected_failures();
    assert!(injected > 0, "faults were injected");
    assert!(devnet.dev_prover().tasks_started() >= applied.len() as u64 + 3, "failed proofs were retried");
}
