//! The assembled devnet: the whole pipeline by hand over one data dir, restarts, bad dirs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ManualClock, TempDir};
use orch_blob::{Blob, KzgDaOutput};
use orch_core::clock::Clock;
use orch_core::da::{DaRequest, DaStatus};
use orch_core::error::Error;
use orch_core::prove::{ProofRequest, ProofStatus};
use orch_core::settle::{StateUpdateRequest, TxStatus};
use orch_core::types::{BlockRange, ChainId};
use orch_devnet::{
    ChainConfig, DaConfig, Devnet, DevnetConfig, KzgMode, ProverConfig, SettlementConfig, MANIFEST, META_FILE,
};

fn cfg(blocks: u64) -> DevnetConfig {
    DevnetConfig {
        seed: 42,
        chain: ChainConfig::fixed(blocks),
        prover: ProverConfig { proving_time: Duration::from_secs(5), ..ProverConfig::default() },
        da: DaConfig { inclusion_delay: Duration::from_secs(2), ..DaConfig::default() },
        settlement: SettlementConfig { confirmation_delay: Duration::from_secs(3), ..SettlementConfig::default() },
        ..DevnetConfig::default()
    }
}

/// Runs every stage of the pipeline for `range`, the way the engine's handlers call the ports.
async fn settle(d: &Devnet, clock: &ManualClock, range: BlockRange) {
    let id = ChainId::new("devnet").unwrap();
    let out = d.os().run(&id, range).await.unwrap();
    let key = |what: &str| format!("devnet:{what}:{}-{}:0", range.first(), range.last());
    let task = d.prover().submit(ProofRequest { dedup_key: key("proof"), range, pie: out.pie.clone() }).await.unwrap();
    let mut updates = Vec::new();
    for n in range.first()..=range.last() {
        updates.push(d.chain().state_update(n).await.unwrap());
    }
    let prev_root = updates[0].old_root;
    let req = DaRequest { dedup_key: key("da"), range, updates };
    // The blobs the DA layer publishes are those the OS output commits to.
    let payload = d.da().encode(&req).await.unwrap();
    let blobs: Vec<Blob> = payload
        .artifacts
        .iter()
        .filter(|a| a.name.starts_with("blob-"))
        .map(|a| Blob::from_bytes(&a.bytes).unwrap())
        .collect();
    KzgDaOutput::parse(&out.program_output).unwrap().prove(&blobs).unwrap();
    let reference = d.da().publish(req).await.unwrap();
    assert_eq!(reference.chunks as usize, blobs.len());
    assert_eq!(d.prover().status(&task).await.unwrap(), ProofStatus::Pending);
    assert_eq!(d.da().verify(&reference).await.unwrap(), DaStatus::Pending);
    clock.advance(Duration::from_secs(5));
    assert!(matches!(d.prover().status(&task).await.unwrap(), ProofStatus::Succeeded { .. }));
    assert_eq!(d.da().verify(&reference).await.unwrap(), DaStatus::Included);
    let last = d.chain().block(range.last()).await.unwrap();
    let tx = d
        .settlement()
        .submit_state_update(StateUpdateRequest {
            dedup_key: format!("devnet:state:{}-{}", range.first(), range.last()),
            range,
            prev_root,
            new_root: last.state_root,
            block_hash: last.hash,
            program_output: out.program_output,
            da: reference,
        })
        .await
        .unwrap();
    assert_eq!(d.settlement().tx_status(&tx).await.unwrap(), TxStatus::Pending);
    clock.advance(Duration::from_secs(3));
    assert_eq!(d.settlement().tx_status(&tx).await.unwrap(), TxStatus::Confirmed { confirmations: 1 });
}

#[tokio::test]
async fn the_whole_pipeline_settles_the_chain_and_survives_a_restart() {
    let dir = TempDir::new("devnet");
    let clock = ManualClock::at(10_000);
    let d = Devnet::open(cfg(60), dir.path(), clock.clone()).unwrap();
    assert_eq!(d.chain().latest_block().await.unwrap(), Some(59));
    let mut first = 0;
    for len in [1, 3, 5, 1, 10, 20] {
        settle(&d, &clock, BlockRange::new(first, first + len - 1).unwrap()).await;
        first += len;
    }
    let settled = d.settlement().last_settled().await.unwrap().unwrap();
    assert_eq!(settled.block, 39);
    assert_eq!(settled.state_root, d.dev_chain().root_after(39));
    assert_eq!(d.dev_settlement().applied().len(), 6);
    drop(d);

    let d = Devnet::open(cfg(60), dir.path(), clock.clone()).unwrap();
    assert_eq!(d.settlement().last_settled().await.unwrap(), Some(settled));
    settle(&d, &clock, BlockRange::new(40, 59).unwrap()).await;
    assert_eq!(d.dev_settlement().applied().len(), 7);
}

#[tokio::test]
async fn the_first_update_must_start_from_the_chains_genesis_root() {
    let dir = TempDir::new("devnet-genesis");
    let d = Devnet::open(cfg(10), dir.path(), ManualClock::at(0)).unwrap();
    let chain = d.dev_chain();
    let req = StateUpdateRequest {
        dedup_key: "k".into(),
        range: BlockRange::single(0),
        prev_root: orch_core::Felt::from_u64(1),
        new_root: chain.root_after(0),
        block_hash: chain.block_hash(0),
        program_output: d
            .os()
            .run(&ChainId::new("devnet").unwrap(), BlockRange::single(0))
            .await
            .unwrap()
            .program_output,
        da: orch_core::da::DaReference { id: "x".into(), chunks: 1, bytes: 1 },
    };
    let e = d.settlement().submit_state_update(req.clone()).await.unwrap_err();
    assert!(e.to_string().contains("genesis root"), "{e}");
    let ok = StateUpdateRequest { prev_root: chain.genesis_root(), ..req };
    d.settlement().submit_state_update(ok).await.unwrap();
}

#[tokio::test]
async fn a_growing_chain_keeps_its_height_across_a_restart() {
    let dir = TempDir::new("devnet-grow");
    let clock = ManualClock::at(1_000_000);
    let grow = DevnetConfig {
        chain: ChainConfig { block_time: Duration::from_secs(1), ..ChainConfig::default() },
        ..DevnetConfig::default()
    };
    let d = Devnet::open(grow.clone(), dir.path(), clock.clone()).unwrap();
    assert_eq!(d.chain().latest_block().await.unwrap(), None);
    clock.advance(Duration::from_secs(30));
    assert_eq!(d.chain().latest_block().await.unwrap(), Some(29));
    drop(d);
    clock.advance(Duration::from_secs(10));
    let d = Devnet::open(grow, dir.path(), clock.clone()).unwrap();
    assert_eq!(d.chain().latest_block().await.unwrap(), Some(39), "born at the data dir's creation");
    assert!(dir.path().join(META_FILE).exists());
}

#[tokio::test]
async fn reopening_with_another_seed_is_an_error_naming_the_key() {
    let dir = TempDir::new("devnet-seed");
    let clock: Arc<dyn Clock> = ManualClock::at(0);
    Devnet::open(cfg(10), dir.path(), clock.clone()).unwrap();
    let other = DevnetConfig { seed: 43, ..cfg(10) };
    let e = Devnet::open(other, dir.path(), clock.clone()).unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }));
    let msg = e.to_string();
    assert!(msg.contains("devnet.seed") && msg.contains("seed 42"), "{msg}");

    std::fs::write(dir.path().join(META_FILE), b"{not json").unwrap();
    let msg = Devnet::open(cfg(10), dir.path(), clock).unwrap_err().to_string();
    assert!(msg.contains(META_FILE) && msg.contains("unreadable"), "{msg}");
}

#[tokio::test]
async fn an_invalid_config_is_refused_before_touching_the_dir() {
    let dir = TempDir::new("devnet-bad");
    let bad = DevnetConfig { chain: ChainConfig { contracts: 1, ..ChainConfig::fixed(5) }, ..DevnetConfig::default() };
    let e = Devnet::open(bad, dir.path().join("sub"), ManualClock::at(0)).unwrap_err();
    assert!(e.to_string().contains("devnet.chain.contracts"), "{e}");
    assert!(!dir.path().join("sub").exists());
}

#[tokio::test]
async fn simulated_kzg_keeps_the_layout_and_the_checks_without_curve_points() {
    let dir = TempDir::new("devnet-simkzg");
    let da = DaConfig { kzg: KzgMode::Simulated, ..DaConfig::default() };
    let d = Devnet::open(DevnetConfig { da, ..cfg(30) }, dir.path(), ManualClock::at(0)).unwrap();
    let range = BlockRange::new(0, 9).unwrap();
    let out = d.os().run(&ChainId::new("devnet").unwrap(), range).await.unwrap();
    let mut updates = Vec::new();
    for n in 0..=9 {
        updates.push(d.chain().state_update(n).await.unwrap());
    }
    let req = DaRequest { dedup_key: "da".into(), range, updates };
    let payload = d.da().encode(&req).await.unwrap();
    let blobs: Vec<Blob> = payload
        .artifacts
        .iter()
        .filter(|a| a.name.starts_with("blob-"))
        .map(|a| Blob::from_bytes(&a.bytes).unwrap())
        .collect();
    let manifest = payload.artifacts.iter().find(|a| a.name == MANIFEST).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let kzg = KzgDaOutput::parse(&out.program_output).unwrap();
    for (i, c) in kzg.commitments.iter().enumerate() {
        assert_eq!(manifest["blobs"][i]["commitment"], c.to_string(), "OS and DA agree on blob {i}");
    }
    assert!(kzg.prove(&blobs).is_err(), "fingerprints are not commitments");
    let reference = d.da().publish(req).await.unwrap();
    let last = d.chain().block(9).await.unwrap();
    d.settlement()
        .submit_state_update(StateUpdateRequest {
            dedup_key: "state".into(),
            range,
            prev_root: d.dev_chain().genesis_root(),
            new_root: last.state_root,
            block_hash: last.hash,
            program_output: out.program_output,
            da: reference,
        })
        .await
        .unwrap();
}
