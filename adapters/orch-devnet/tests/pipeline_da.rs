//! The DA stage through the real engine: the blobs the devnet DA layer encodes are stored as
//! the DataSubmission job's artefacts, and the program output the SnosRun job stored commits to
//! exactly them.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TempDir;
use orch_blob::{decode_blobs, squash_state_updates, Blob, DaStateDiff, KzgDaOutput, NoOracle, NoncePolicy};
use orch_core::chain::ChainSource;
use orch_core::clock::SystemClock;
use orch_core::db::Database;
use orch_core::engine::pipeline::{artifact_key, PipelinePorts};
use orch_core::engine::{Engine, EngineConfig};
use orch_core::storage::Storage;
use orch_core::types::{BlockRange, ChainId, JobKey, JobKind};
use orch_core::Felt;
use orch_devnet::{ChainConfig, Devnet, DevnetConfig, DA_VERSION, MANIFEST};
use orch_testkit::mem::{MemDatabase, MemQueue, MemStorage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_da_stage_stores_the_blobs_the_program_output_commits_to() {
    let dir = TempDir::new("pipeline-da");
    let devnet = Devnet::open(
        DevnetConfig { chain: ChainConfig::fixed(30), ..DevnetConfig::default() },
        dir.path(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let (db, storage) = (Arc::new(MemDatabase::new()), Arc::new(MemStorage::new()));
    let chain_id = ChainId::new("devnet").unwrap();
    let ports = PipelinePorts {
        chain: devnet.chain(),
        os: devnet.os(),
        prover: devnet.prover(),
        da: devnet.da(),
        settlement: devnet.settlement(),
        storage: storage.clone(),
        db: db.clone(),
    };
    let config = EngineConfig {
        workers: 4,
        poll_interval: Duration::from_millis(10),
        dependency_poll: Duration::from_millis(50),
        verify_poll: Duration::ZERO,
        creator_interval: Duration::from_millis(5),
        batch_size: 10,
        batch_timeout: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let engine = Engine::builder(chain_id.clone(), db.clone(), Arc::new(SystemClock))
        .config(config)
        .queue(Arc::new(MemQueue::new()))
        .pipeline(ports)
        .build()
        .unwrap();
    let handle = engine.start();
    let start = Instant::now();
    while devnet.settlement().last_settled().await.unwrap().map(|s| s.block) != Some(29) {
        assert!(start.elapsed() < Duration::from_secs(120), "30 blocks did not settle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.shutdown().await;

    for range in [BlockRange::new(0, 9).unwrap(), BlockRange::new(10, 19).unwrap(), BlockRange::new(20, 29).unwrap()] {
        let key = JobKey { chain: chain_id.clone(), kind: JobKind::DataSubmission, range };
        let job = db.get_job_by_key(&key).await.unwrap().expect("the DA job");
        let manifest_key = artifact_key(&chain_id, JobKind::DataSubmission, range, MANIFEST).unwrap();
        assert_eq!(job.meta.artifacts.get("blobs"), Some(&manifest_key), "{range}");
        let manifest: serde_json::Value = serde_json::from_slice(&storage.get(&manifest_key).await.unwrap()).unwrap();
        let n = manifest["blobs"].as_array().unwrap().len();
        let mut blobs = Vec::with_capacity(n);
        for i in 0..n {
            let blob_key = job.meta.artifacts.get(&format!("blob-{i}")).expect("each blob recorded");
            assert_eq!(
                blob_key,
                &artifact_key(&chain_id, JobKind::DataSubmission, range, &format!("blob-{i}.bin")).unwrap()
            );
            blobs.push(Blob::from_bytes(&storage.get(blob_key).await.unwrap()).unwrap());
        }

        // The stored blobs carry the batch's squashed diff...
        let mut updates = Vec::new();
        for b in range.first()..=range.last() {
            updates.push(devnet.chain().state_update(b).await.unwrap());
        }
        let want =
            DaStateDiff::from_state_diff(&squash_state_updates(&updates), &NoOracle, NoncePolicy::DiffOnly).unwrap();
        assert_eq!(decode_blobs(&blobs, DA_VERSION).unwrap(), want, "{range}");

        // ... and the stored program output commits to them, and was settled.
        let po_key = artifact_key(&chain_id, JobKind::SnosRun, range, "program_output.json").unwrap();
        let po: Vec<Felt> = serde_json::from_slice(&storage.get(&po_key).await.unwrap()).unwrap();
        let kzg = KzgDaOutput::parse(&po).unwrap();
        assert_eq!(kzg.prove(&blobs).unwrap().len(), n, "{range}");
        for (i, c) in kzg.commitments.iter().enumerate() {
            assert_eq!(manifest["blobs"][i]["commitment"], c.to_string(), "{range} blob {i}");
        }
    }
    assert_eq!(devnet.dev_settlement().applied().len(), 3);
}
