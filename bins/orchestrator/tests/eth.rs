//! The binary settling on Ethereum, with `examples/configs/sqlite-eth-anvil.toml` against a
//! private anvil: `eth deploy-stand-in`, `setup`, then `run` until the core contract holds 200
//! devnet blocks, each settled once, on the devnet chain's root; `setup`'s one-line errors for
//! an L1 that is down, on another chain, without the contract, or with an unfunded key, none
//! showing a secret. And, without a node: the blobs a settlement reads back through storage
//! are the devnet DA layer's, and the example's batches fit one blob transaction.
//!
//! The anvil binary comes from `ORCH_TEST_ANVIL_BIN` (scripts/services.sh exports it); without
//! it the node tests print why and skip, unless `ORCH_REQUIRE_SERVICES` is set.
// The example runs on the embedded store and files and the simulated chain.
#![cfg(all(feature = "eth", feature = "sqlite", feature = "fs", feature = "devnet"))]
// These tests drive child processes synchronously; alloy calls run on a runtime of their own.
#![allow(clippy::disallowed_methods)]

#[path = "common/anvil.rs"]
mod anvil;
mod common;

use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use anvil::{free_port, PrivateAnvil};
use common::{bin, stderr};
use orch_core::chain::ChainSource;
use orch_core::clock::{Clock, SystemClock};
use orch_core::Felt;
use orch_eth::abi::IStarknetCore;
use serde_json::Value;

/// Where `deploy-stand-in` puts the contract on a fresh anvil (account #0, nonce 0), as the
/// example config says.
const CORE: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
/// The example's key (anvil's public dev key #0), which must never be printed.
const KEY_HEX: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Blocks the end-to-end run settles.
const BLOCKS: u64 = 200;
/// How long a run may go without settling a block before the test calls it stuck.
const STALL: Duration = Duration::from_secs(120);

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs/sqlite-eth-anvil.toml")
}

fn example_toml() -> toml::Value {
    toml::from_str(&std::fs::read_to_string(example()).unwrap()).unwrap()
}

/// The example's simulated world.
fn example_devnet() -> orch_devnet::DevnetConfig {
    match example_toml().get("devnet") {
        Some(d) => d.clone().try_into().unwrap(),
        None => orch_devnet::DevnetConfig::default(),
    }
}

fn anvil_bin() -> Option<String> {
    orch_testkit::services::env_or_skip("ORCH_TEST_ANVIL_BIN")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn orch(data: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut c = bin();
    c.args(args).arg("--config").arg(example()).arg("--data-dir").arg(data);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn ok_json(o: &Output, what: &str) -> Value {
    assert!(o.status.success(), "{what} failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The example against the anvil at `url`, on a devnet chain of `blocks` blocks that all
/// exist at once, with an engine that polls fast.
fn run_env(url: &str, blocks: u64) -> Vec<(String, String)> {
    env(&[
        ("ORCH_SETTLEMENT__RPC_URL", url),
        ("ORCH_DEVNET__CHAIN__BLOCKS", &blocks.to_string()),
        ("ORCH_DEVNET__CHAIN__BLOCK_TIME", "0s"),
        ("ORCH_ENGINE__POLL_INTERVAL", "20ms"),
        ("ORCH_ENGINE__CREATOR_INTERVAL", "20ms"),
        ("ORCH_ENGINE__VERIFY_POLL", "100ms"),
        ("ORCH_ENGINE__DEPENDENCY_POLL", "200ms"),
    ])
}

/// A running orchestrator, killed if the test ends without stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// SIGTERM (a graceful drain), then SIGKILL after 20 s.
    fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn view<C: SolCall>(p: &DynProvider, core: Address, call: C) -> C::Return {
    let tx = TransactionRequest::default().with_to(core).with_input(call.abi_encode());
    C::abi_decode_returns(&p.call(tx).await.unwrap()).unwrap()
}

/// `stateBlockNumber()`, `None` while negative (nothing settled).
async fn state_block(p: &DynProvider, core: Address) -> Option<u64> {
    let n = view(p, core, IStarknetCore::stateBlockNumberCall {}).await;
    (!n.is_negative()).then(|| u64::try_from(n.into_raw()).unwrap())
}

/// Polls the contract until it holds block `target`, or nothing moved for [`STALL`]; the last
/// block it held (starting from `from`).
fn settle_until(
    rt: &tokio::runtime::Runtime,
    provider: &DynProvider,
    core: Address,
    target: u64,
    from: Option<u64>,
) -> Option<u64> {
    let (mut last, mut moved) = (from, Instant::now());
    while last != Some(target) && moved.elapsed() < STALL {
        std::thread::sleep(Duration::from_millis(100));
        let now = rt.block_on(state_block(provider, core));
        if now != last {
            (last, moved) = (now, Instant::now());
        }
    }
    last
}

/// `blocks status` once the store has caught up with the contract at `target` (the last
/// job's confirmation), or after 30 s.
fn store_catches_up(data: &Path, env: &[(String, String)], target: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = ok_json(&orch(data, env, &["blocks", "status", "--json"]), "blocks status");
        if s["settled_through"] == target || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The block number of each `LogStateUpdate` the contract emitted, in order.
fn update_block_numbers(rt: &tokio::runtime::Runtime, provider: &DynProvider, core: Address) -> Vec<i64> {
    let filter =
        Filter::new().address(core).event_signature(IStarknetCore::LogStateUpdate::SIGNATURE_HASH).from_block(0u64);
    let logs = rt.block_on(provider.get_logs(&filter)).unwrap();
    logs.iter()
        .map(|l| {
            i64::try_from(l.log_decode::<IStarknetCore::LogStateUpdate>().unwrap().inner.data.blockNumber).unwrap()
        })
        .collect()
}

fn felt(v: alloy::primitives::U256) -> Felt {
    Felt::from_be_bytes(v.to_be_bytes::<32>()).unwrap()
}

/// `eth deploy-stand-in`, `setup` (twice: idempotent), then `run` until the contract holds
/// blocks 0..199 and the store says so; every block applied once, in order, on the devnet
/// chain's roots.
#[test]
fn run_settles_200_devnet_blocks_on_anvil_each_once() {
    // Automine by default: each transaction gets its block at once (the example's 1
    // confirmation). `ORCH_TEST_ETH_ANVIL_ARGS="--block-time 1"` measures with L1 block times.
    let extra = std::env::var("ORCH_TEST_ETH_ANVIL_ARGS").unwrap_or_default();
    settle_example(&extra, BLOCKS);
}

/// The same on a Prague node, whose blob transactions carry EIP-4844 blob proofs (the
/// default fork, Osaka, takes cell proofs).
#[test]
fn run_settles_on_prague_with_blob_proofs() {
    settle_example("--hardfork prague", 100);
}

/// `eth deploy-stand-in`, `setup` (twice), `run` until `blocks` blocks are settled on an
/// anvil started with `extra`, then the checks above.
fn settle_example(extra: &str, blocks: u64) {
    let Some(anvil_bin) = anvil_bin() else { return };
    let anvil = PrivateAnvil::start(&anvil_bin, &extra.split_whitespace().collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = run_env(&anvil.url, blocks);

    let deployed = ok_json(&orch(&data, &env, &["eth", "deploy-stand-in", "--json"]), "eth deploy-stand-in");
    let core: Address = deployed["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(core, CORE.parse::<Address>().unwrap(), "{deployed}");
    assert_eq!(deployed["matches_config"], true, "{deployed}");
    assert_eq!(deployed["genesis_block"], -1, "{deployed}");
    for round in 0..2 {
        let o = orch(&data, &env, &["setup"]);
        assert!(o.status.success(), "setup #{round} failed: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("ethereum settlement ready") && out.contains(CORE), "{out}");
    }

    let rt = runtime();
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap()).erased();
    assert_eq!(rt.block_on(state_block(&provider, core)), None, "nothing settled before the run");
    let log = dir.path().join("run.log");
    let mut c = bin();
    c.args(["run", "--config"]).arg(example()).arg("--data-dir").arg(&data);
    c.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in &env {
        c.env(k, v);
    }
    let started = Instant::now();
    let mut run = Running(c.spawn().expect("run starts"));
    let last = settle_until(&rt, &provider, core, blocks - 1, None);
    let elapsed = started.elapsed();
    let status = store_catches_up(&data, &env, blocks - 1);
    run.terminate();
    let run_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        last,
        Some(blocks - 1),
        "the contract must hold blocks 0..{} (holds {last:?}); run log:\n{run_log}",
        blocks - 1
    );
    assert_eq!(status["settled_through"], blocks - 1, "{status}");
    assert_eq!(status["settlement_layer_through"], blocks - 1, "{status}");

    // The contract's state is the devnet chain's at its last block.
    let mut devnet = example_devnet();
    devnet.chain = orch_devnet::ChainConfig { blocks: Some(blocks), block_time: Duration::ZERO, ..devnet.chain };
    let world =
        orch_devnet::Devnet::open(devnet, data.join("devnet"), Arc::new(SystemClock) as Arc<dyn Clock>).unwrap();
    let head = rt.block_on(world.chain().block(blocks - 1)).unwrap();
    assert_eq!(felt(rt.block_on(view(&provider, core, IStarknetCore::stateRootCall {}))), head.state_root);
    assert_eq!(felt(rt.block_on(view(&provider, core, IStarknetCore::stateBlockHashCall {}))), head.hash);

    // One LogStateUpdate per state-transition job, in block order: nothing settled twice.
    let numbers = update_block_numbers(&rt, &provider, core);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "updates in block order, none repeated: {numbers:?}");
    let jobs = ok_json(
        &orch(&data, &env, &["jobs", "list", "--json", "--kind", "state_transition", "--limit", "10000"]),
        "jobs list",
    );
    let jobs = jobs.as_array().unwrap();
    assert_eq!(numbers.len(), jobs.len(), "one update event per state-transition job");
    assert!(jobs.iter().all(|j| j["status"] == "Completed"), "{jobs:?}");
    let blobs: u64 = {
        let da = ok_json(
            &orch(&data, &env, &["jobs", "list", "--json", "--kind", "data_submission", "--limit", "10000"]),
            "jobs list",
        );
        da.as_array()
            .unwrap()
            .iter()
            .filter_map(|j| j["meta"]["extra"]["da_chunks"].as_str()?.parse::<u64>().ok())
            .sum()
    };
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "settled {blocks} devnet blocks on anvil ({}) in {secs:.1} s ({:.1} blocks/s): {} state updates carrying {blobs} blobs",
        if extra.is_empty() { "automine" } else { extra },
        blocks as f64 / secs,
        numbers.len()
    );
    assert!(!run_log.contains(KEY_HEX), "the run logged the private key");
}

/// Exit non-zero with one line on stderr that names `needles`, no panic, and no secret in
/// stdout or stderr.
fn assert_one_clear_line(o: &Output, needles: &[&str], secrets: &[&str]) {
    let err = stderr(o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "expected failure, got success; stdout: {out} stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    for s in secrets {
        assert!(!err.contains(s) && !out.contains(s), "secret {s:?} printed: {out} {err}");
    }
}

#[test]
fn setup_says_in_one_line_what_is_wrong_with_the_l1_and_prints_no_secret() {
    let Some(anvil_bin) = anvil_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    const UNFUNDED: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
    let secrets = ["hunter2", KEY_HEX, &UNFUNDED[2..]];

    // Nothing listens: the URL's credentials are not shown.
    let url = format!("http://orch:hunter2@127.0.0.1:{}/", free_port());
    let o = orch(&data, &env(&[("ORCH_SETTLEMENT__RPC_URL", &url)]), &["setup"]);
    assert_one_clear_line(&o, &["settlement.rpc_url", "http://127.0.0.1:"], &secrets);
    assert!(!data.join("orch.db").exists(), "a failed L1 check creates nothing");

    let anvil = PrivateAnvil::start(&anvil_bin, &[]);
    let url = format!("http://orch:hunter2@127.0.0.1:{}/", anvil.port);
    // Another chain.
    let o = orch(&data, &env(&[("ORCH_SETTLEMENT__RPC_URL", &url), ("ORCH_SETTLEMENT__CHAIN_ID", "1")]), &["setup"]);
    assert_one_clear_line(&o, &["settlement.chain_id", "31337"], &secrets);
    // No contract at the address yet.
    let on_anvil = env(&[("ORCH_SETTLEMENT__RPC_URL", &url)]);
    let o = orch(&data, &on_anvil, &["setup"]);
    assert_one_clear_line(&o, &["settlement.core_contract", CORE, "deploy-stand-in"], &secrets);
    assert!(!data.join("orch.db").exists(), "a failed L1 check creates nothing");
    // Deployed; but the key of an account without ether.
    let deployed = orch(&data, &on_anvil, &["eth", "deploy-stand-in"]);
    assert!(deployed.status.success(), "{}", stderr(&deployed));
    assert!(String::from_utf8_lossy(&deployed.stdout).contains(CORE));
    let unfunded = env(&[("ORCH_SETTLEMENT__RPC_URL", &url), ("ORCH_SETTLEMENT__PRIVATE_KEY", UNFUNDED)]);
    let o = orch(&data, &unfunded, &["setup"]);
    assert_one_clear_line(&o, &["settlement.private_key", "fund"], &secrets);
    // Nor does the unfunded key deploy anything.
    let o = orch(&data, &unfunded, &["eth", "deploy-stand-in"]);
    assert_one_clear_line(&o, &["settlement.private_key"], &secrets);
    // All good now.
    let o = orch(&data, &on_anvil, &["setup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = orch(&data, &on_anvil, &["config", "show", "--json"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(!text.contains("hunter2") && !text.contains(KEY_HEX), "{text}");
}

/// What the engine's DA handler stores for a batch (the devnet DA layer's `blobs.json` and
/// `blob-<i>.bin`), `StorageBlobs` reads back byte for byte, in order.
#[test]
fn storage_blobs_read_back_what_the_devnet_da_layer_encoded() {
    use orch_core::da::{Da, DaRequest};
    use orch_core::engine::pipeline::artifact_key;
    use orch_core::settle::StateUpdateRequest;
    use orch_core::storage::Storage;
    use orch_core::types::{BlockRange, ChainId, JobKind, Timestamp};
    use orch_eth::BlobSource;

    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let chain = orch_devnet::DevChain::new(orch_devnet::ChainConfig::fixed(200), 1, Timestamp(0), clock.clone());
    let big = (0..200).find(|&n| chain.is_big_block(n)).expect("a multi-blob block in 200");
    let range = BlockRange::new(big.saturating_sub(2), big + 2).unwrap();
    let updates = (range.first()..=range.last()).map(|n| chain.generate(n)).collect();
    let da = orch_devnet::DevDa::new(orch_devnet::DaConfig::default(), 1, clock);
    let req = DaRequest { dedup_key: "k".into(), range, updates };
    let payload = rt.block_on(da.encode(&req)).unwrap();
    let storage: Arc<dyn Storage> =
        Arc::new(orch_fs::FsStorage::new(orch_fs::FsConfig::new(dir.path().join("artifacts"))).unwrap());
    let chain_id = ChainId::new("devnet").unwrap();
    let mut expected = Vec::new();
    for a in &payload.artifacts {
        let key = artifact_key(&chain_id, JobKind::DataSubmission, range, &a.name).unwrap();
        rt.block_on(storage.put(&key, a.bytes.clone())).unwrap();
        if a.name.starts_with("blob-") {
            expected.push(a.bytes.clone());
        }
    }
    assert!(expected.len() > 1, "a multi-blob batch");
    let source = orch_eth::StorageBlobs::new(storage, chain_id);
    let update = StateUpdateRequest {
        dedup_key: "s".into(),
        range,
        prev_root: Felt::ZERO,
        new_root: Felt::ZERO,
        block_hash: Felt::ZERO,
        program_output: Vec::new(),
        da: orch_core::da::DaReference { id: "x".into(), chunks: expected.len() as u32, bytes: 0 },
    };
    let blobs = rt.block_on(source.blobs(&update)).unwrap();
    let got: Vec<Vec<u8>> = blobs.iter().map(|b| b.as_bytes().to_vec()).collect();
    assert_eq!(got, expected);
}

/// The example's `engine.batch_size` keeps every batch of the devnet chain it settles within
/// one blob transaction (at most 6 blobs), over the first 1,000 blocks.
#[test]
fn the_example_batches_fit_one_blob_transaction() {
    use orch_core::da::{Da, DaRequest};
    use orch_core::types::{BlockRange, Timestamp};

    let batch = example_toml()["engine"]["batch_size"].as_integer().unwrap() as u64;
    let devnet = example_devnet();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let chain = orch_devnet::DevChain::new(
        orch_devnet::ChainConfig { blocks: Some(1000), block_time: Duration::ZERO, ..devnet.chain.clone() },
        devnet.seed,
        Timestamp(0),
        clock.clone(),
    );
    // The count of blobs does not depend on how they are committed to.
    let da_cfg = orch_devnet::DaConfig { kzg: orch_devnet::KzgMode::Simulated, ..devnet.da.clone() };
    let da = orch_devnet::DevDa::new(da_cfg, devnet.seed, clock);
    let rt = runtime();
    let mut most = (0, 0);
    for first in (0..1000).step_by(batch as usize) {
        let range = BlockRange::new(first, (first + batch - 1).min(999)).unwrap();
        let updates = (range.first()..=range.last()).map(|n| chain.generate(n)).collect();
        let req = DaRequest { dedup_key: format!("b{first}"), range, updates };
        let payload = rt.block_on(da.encode(&req)).unwrap();
        let blobs = payload.artifacts.iter().filter(|a| a.name.starts_with("blob-")).count();
        assert!(blobs <= 6, "blocks {range} need {blobs} blobs: more than one transaction carries");
        most = most.max((blobs, first));
    }
    eprintln!("batches of {batch} blocks need at most {} blobs (the batch from block {})", most.0, most.1);
}

/// Blocks the crash test settles: three batches of the example's 50.
const CRASH_BLOCKS: u64 = 150;

/// Killed at the worst moments and restarted, the orchestrator still settles every block
/// exactly once: it aborts itself right after journaling a signed state update (before
/// sending it), then right after sending one (before any receipt); then it is SIGKILLed at
/// arbitrary moments; then it runs to the end. The contract's events show each block range
/// once, in order, and the operator's nonce shows no transaction beyond them was ever mined.
#[test]
fn kill_9_between_signing_and_receipt_never_settles_a_batch_twice() {
    let Some(anvil_bin) = anvil_bin() else { return };
    let anvil = PrivateAnvil::start(&anvil_bin, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = run_env(&anvil.url, CRASH_BLOCKS);
    ok_json(&orch(&data, &env, &["eth", "deploy-stand-in", "--json"]), "eth deploy-stand-in");
    assert!(orch(&data, &env, &["setup"]).status.success());
    let core: Address = CORE.parse().unwrap();
    let rt = runtime();
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap()).erased();
    let log = dir.path().join("run.log");
    let spawn = |extra: &[(&str, &str)]| {
        let mut c = bin();
        c.args(["run", "--config"]).arg(example()).arg("--data-dir").arg(&data);
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        c.stdout(Stdio::null()).stderr(f);
        for (k, v) in env.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(extra.iter().copied()) {
            c.env(k, v);
        }
        Running(c.spawn().expect("run starts"))
    };
    let run_log = || std::fs::read_to_string(&log).unwrap_or_default();

    for point in ["signed", "sent"] {
        let mut run = spawn(&[("ORCH_TEST_ETH_CRASH_AT", point)]);
        let deadline = Instant::now() + STALL;
        let status = loop {
            if let Some(s) = run.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "no crash at `{point}` within {STALL:?}:\n{}", run_log());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "the run was to abort at `{point}`");
        assert!(run_log().contains(&format!("crashing at `{point}`")), "{}", run_log());
    }
    let after_crashes = rt.block_on(state_block(&provider, core));
    for delay in [Duration::from_millis(1500), Duration::from_millis(4000), Duration::from_millis(2500)] {
        let mut run = spawn(&[]);
        std::thread::sleep(delay);
        run.0.kill().unwrap(); // SIGKILL
        run.0.wait().unwrap();
    }
    let mut run = spawn(&[]);
    let from = rt.block_on(state_block(&provider, core));
    let last = settle_until(&rt, &provider, core, CRASH_BLOCKS - 1, from);
    store_catches_up(&data, &env, CRASH_BLOCKS - 1);
    run.terminate();
    assert_eq!(last, Some(CRASH_BLOCKS - 1), "settled after {after_crashes:?} at the crashes; log:\n{}", run_log());

    let numbers = update_block_numbers(&rt, &provider, core);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "each range once, in order: {numbers:?}");
    assert_eq!(numbers.last(), Some(&((CRASH_BLOCKS - 1) as i64)));
    let jobs = ok_json(
        &orch(&data, &env, &["jobs", "list", "--json", "--kind", "state_transition", "--limit", "1000"]),
        "jobs",
    );
    assert_eq!(numbers.len(), jobs.as_array().unwrap().len(), "one update per state-transition job");
    // Account #0 sent the deployment and the updates, and nothing else was ever mined.
    let operator: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".parse().unwrap();
    let nonce = rt.block_on(provider.get_transaction_count(operator).into_future()).unwrap();
    assert_eq!(nonce, 1 + numbers.len() as u64, "no second (reverted or duplicate) update transaction");

    // `eth status` reads the same, with nothing left in flight.
    let status = ok_json(&orch(&data, &env, &["eth", "status", "--json"]), "eth status");
    assert_eq!(status["settled_through"], CRASH_BLOCKS - 1, "{status}");
    assert_eq!(status["pending"].as_array().map(Vec::len), Some(0), "{status}");
    assert!(!status.to_string().contains(KEY_HEX));
    assert!(!run_log().contains(KEY_HEX), "the run logged the private key");
    eprintln!("crash test: {} state updates after 2 self-aborts and 3 SIGKILLs", numbers.len());
}
