//! The OS runner, the prover and the DA layer: determinism, idempotency, progress by clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ManualClock;
use orch_blob::os_output::HEADER_LEN;
use orch_blob::{decode_blobs, encode_batch, kzg, Blob, KzgDaOutput, NoOracle, OsOutputHeader};
use orch_core::chain::ChainSource;
use orch_core::da::{Da, DaReference, DaRequest, DaStatus};
use orch_core::error::Error;
use orch_core::prove::{OsRunner, ProofRequest, ProofStatus, Prover, TaskId};
use orch_core::types::{BlockRange, ChainId};
use orch_core::Felt;
use orch_devnet::{
    os_config_hash, DaConfig, DevChain, DevDa, DevOsRunner, DevProver, FailProof, OsConfig, ProverConfig,
    BYTES_PER_BLOB, DA_VERSION, DEV_OS_PROGRAM_HASH, DEV_PIE_MAGIC, DEV_PROOF_MAGIC, MANIFEST,
};

fn chain_id() -> ChainId {
    ChainId::new("devnet").unwrap()
}

fn range(a: u64, b: u64) -> BlockRange {
    BlockRange::new(a, b).unwrap()
}

fn proof_req(key: &str, r: BlockRange) -> ProofRequest {
    ProofRequest { dedup_key: key.into(), range: r, pie: b"a pie".to_vec() }
}

/// The blobs of the squashed diff of `r`, as the devnet's OS and DA layer encode it.
fn batch_blobs(chain: &DevChain, r: BlockRange) -> orch_blob::Encoded {
    let diffs: Vec<_> = (r.first()..=r.last()).map(|n| chain.generate(n).state_diff).collect();
    encode_batch(&diffs, &NoOracle, DA_VERSION.encoding()).unwrap()
}

#[tokio::test]
async fn os_output_is_deterministic_and_describes_the_range() {
    let chain = Arc::new(DevChain::fixed(4, 50));
    let os = DevOsRunner::new(chain.clone(), OsConfig::default());
    let r = range(10, 12);
    let a = os.run(&chain_id(), r).await.unwrap();
    assert_eq!(a, os.run(&chain_id(), r).await.unwrap());
    let other = DevOsRunner::new(Arc::new(DevChain::fixed(4, 50)), OsConfig::default());
    assert_eq!(a, other.run(&chain_id(), r).await.unwrap(), "same seed, another instance");

    let po = &a.program_output;
    let h = OsOutputHeader::parse(po).unwrap();
    assert_eq!(h.initial_root, chain.state_update(10).await.unwrap().old_root);
    assert_eq!(h.final_root, chain.block(12).await.unwrap().state_root);
    assert_eq!(h.prev_block_number, Felt::from_u64(9));
    assert_eq!(h.new_block_number, Felt::from_u64(12));
    assert_eq!(h.prev_block_hash, chain.block(9).await.unwrap().hash);
    assert_eq!(h.new_block_hash, chain.block(12).await.unwrap().hash);
    assert_eq!(h.os_program_hash, DEV_OS_PROGRAM_HASH);
    assert_eq!(h.starknet_os_config_hash, os_config_hash(4, &chain_id()));
    assert!(h.use_kzg_da && !h.full_output);
    assert!(a.pie.starts_with(DEV_PIE_MAGIC));
    assert!(a.pie.len() >= 2048 && a.pie.len() < 1 << 20, "{}", a.pie.len());

    let b = os.run(&chain_id(), range(11, 12)).await.unwrap();
    assert_ne!(a.pie, b.pie);
    assert_ne!(a.program_output, b.program_output);
    let other_chain = os.run(&ChainId::new("other").unwrap(), r).await.unwrap();
    assert_ne!(
        OsOutputHeader::parse(&other_chain.program_output).unwrap().starknet_os_config_hash,
        h.starknet_os_config_hash
    );
}

#[tokio::test]
async fn os_output_commits_to_the_blobs_of_the_squashed_diff() {
    let chain = Arc::new(DevChain::fixed(4, 200));
    let os = DevOsRunner::new(chain.clone(), OsConfig::default());
    // A range with a big block: several blobs.
    let big = (0..190).find(|n| chain.is_big_block(*n)).unwrap();
    for r in [range(0, 4), range(big.saturating_sub(2), big + 3)] {
        let po = os.run(&chain_id(), r).await.unwrap().program_output;
        let kzg = KzgDaOutput::parse(&po).unwrap();
        let encoded = batch_blobs(&chain, r);
        assert_eq!(kzg.commitments.len(), encoded.blobs.len(), "{r}");
        assert_eq!(po.len(), HEADER_LEN + KzgDaOutput::segment_len(encoded.blobs.len()) + 2, "{r}");
        // Each blob opens at x_0 to the output's y_i, under the output's commitment.
        assert_eq!(kzg.prove(&encoded.blobs).unwrap().len(), encoded.blobs.len(), "{r}");
        // The blobs carry the batch's diff, each key once.
        let decoded = decode_blobs(&encoded.blobs, DA_VERSION).unwrap();
        assert_eq!(decoded, encoded.diff);
        if r.first() == 0 {
            let h = OsOutputHeader::parse(&po).unwrap();
            assert_eq!(h.prev_block_number, OsOutputHeader::block_before(0), "-1 before block 0");
            assert_eq!(h.prev_block_hash, Felt::ZERO);
        } else {
            assert!(encoded.blobs.len() >= 2, "the big block's batch needs several blobs");
        }
    }
}

#[tokio::test]
async fn os_run_beyond_the_head_is_not_found() {
    let os = DevOsRunner::new(Arc::new(DevChain::fixed(4, 50)), OsConfig::default());
    let e = os.run(&chain_id(), range(48, 50)).await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

#[tokio::test]
async fn a_proof_is_pending_until_the_proving_time_has_passed() {
    let clock = ManualClock::at(5_000);
    let cfg = ProverConfig { proving_time: Duration::from_secs(10), ..ProverConfig::default() };
    let prover = DevProver::new(cfg, 1, clock.clone());
    let task = prover.submit(proof_req("k1", range(3, 4))).await.unwrap();
    assert_eq!(prover.status(&task).await.unwrap(), ProofStatus::Pending);
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(prover.status(&task).await.unwrap(), ProofStatus::Pending);
    clock.advance(Duration::from_millis(1));
    let ProofStatus::Succeeded { proof } = prover.status(&task).await.unwrap() else { panic!("not done") };
    assert!(proof.starts_with(DEV_PROOF_MAGIC));
    assert_eq!(proof.len(), 512);
    // Done stays done, with the same proof.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(prover.status(&task).await.unwrap(), ProofStatus::Succeeded { proof: proof.clone() });

    // Proof bytes depend on the request only: another key, same range and PIE, same proof.
    let t2 = prover.submit(proof_req("k2", range(3, 4))).await.unwrap();
    assert_ne!(t2, task);
    clock.advance(Duration::from_secs(10));
    assert_eq!(prover.status(&t2).await.unwrap(), ProofStatus::Succeeded { proof });
}

#[tokio::test]
async fn resubmitting_a_dedup_key_returns_the_same_task_and_starts_nothing() {
    let clock = ManualClock::at(0);
    let prover = DevProver::new(
        ProverConfig { proving_time: Duration::from_secs(5), ..ProverConfig::default() },
        1,
        clock.clone(),
    );
    let t = prover.submit(proof_req("key", range(1, 1))).await.unwrap();
    clock.advance(Duration::from_secs(3));
    assert_eq!(prover.submit(proof_req("key", range(1, 1))).await.unwrap(), t);
    assert_eq!(prover.tasks_started(), 1);
    // The resubmission did not restart the clock of the task.
    clock.advance(Duration::from_secs(2));
    assert!(matches!(prover.status(&t).await.unwrap(), ProofStatus::Succeeded { .. }));
}

#[tokio::test]
async fn unknown_or_forged_tasks_are_not_found() {
    let clock = ManualClock::at(0);
    let prover = DevProver::new(ProverConfig::default(), 1, clock.clone());
    let t = prover.submit(proof_req("key", range(1, 1))).await.unwrap();
    for bad in ["", "nope", "dp1.1.1.0.0.0.0.0000000000000000"] {
        let e = prover.status(&TaskId(bad.into())).await.unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{bad}: {e}");
    }
    let forged = TaskId(t.0.replacen("dp1.1.1.", "dp1.1.2.", 1));
    assert!(matches!(prover.status(&forged).await.unwrap_err(), Error::NotFound { .. }));
    let other_seed = DevProver::new(ProverConfig::default(), 2, clock.clone());
    assert!(matches!(other_seed.status(&t).await.unwrap_err(), Error::NotFound { .. }));
    // A restarted prover (same seed) still knows the task: ids describe themselves.
    let restarted = DevProver::new(ProverConfig::default(), 1, clock);
    assert!(matches!(restarted.status(&t).await.unwrap(), ProofStatus::Succeeded { .. }));
}

#[tokio::test]
async fn fail_proofs_fails_a_blocks_proof_n_times_then_succeeds() {
    let clock = ManualClock::at(0);
    let cfg = ProverConfig { fail_proofs: vec![FailProof { block: 7, times: 2 }], ..ProverConfig::default() };
    let prover = DevProver::new(cfg, 1, clock);
    let mut fates = Vec::new();
    for attempt in 0..4 {
        let t = prover.submit(proof_req(&format!("proof:7-8:{attempt}"), range(7, 8))).await.unwrap();
        fates.push(matches!(prover.status(&t).await.unwrap(), ProofStatus::Failed { .. }));
    }
    assert_eq!(fates, [true, true, false, false]);
    let other = prover.submit(proof_req("proof:9", range(9, 9))).await.unwrap();
    assert!(matches!(prover.status(&other).await.unwrap(), ProofStatus::Succeeded { .. }));
}

#[tokio::test]
async fn task_failure_rate_fails_tasks_by_their_key() {
    let clock = ManualClock::at(0);
    let cfg = ProverConfig { task_failure_rate: 0.25, ..ProverConfig::default() };
    let (a, b) = (DevProver::new(cfg.clone(), 3, clock.clone()), DevProver::new(cfg, 3, clock));
    let mut failed = Vec::new();
    for i in 0..400 {
        let key = format!("k{i}");
        let (ta, tb) = (
            a.submit(proof_req(&key, range(i, i))).await.unwrap(),
            b.submit(proof_req(&key, range(i, i))).await.unwrap(),
        );
        let fa = matches!(a.status(&ta).await.unwrap(), ProofStatus::Failed { .. });
        assert_eq!(fa, matches!(b.status(&tb).await.unwrap(), ProofStatus::Failed { .. }));
        failed.push(fa);
    }
    let n = failed.iter().filter(|f| **f).count();
    assert!((60..140).contains(&n), "{n} of 400 failed at a 25% rate");
}

#[tokio::test]
async fn an_empty_pie_is_invalid_input() {
    let prover = DevProver::new(ProverConfig::default(), 1, ManualClock::at(0));
    let e = prover.submit(ProofRequest { dedup_key: "k".into(), range: range(1, 1), pie: vec![] }).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
}

async fn da_request(chain: &DevChain, key: &str, r: BlockRange) -> DaRequest {
    let mut updates = Vec::new();
    for n in r.first()..=r.last() {
        updates.push(chain.state_update(n).await.unwrap());
    }
    DaRequest { dedup_key: key.into(), range: r, updates }
}

#[tokio::test]
async fn da_publication_is_pending_until_included() {
    let chain = DevChain::fixed(1, 100);
    let clock = ManualClock::at(0);
    let da = DevDa::new(DaConfig { inclusion_delay: Duration::from_secs(12), ..DaConfig::default() }, 1, clock.clone());
    assert_eq!(da.max_bytes_per_submission(), 6 * BYTES_PER_BLOB as usize);
    let reference = da.publish(da_request(&chain, "da:1", range(1, 2)).await).await.unwrap();
    assert_eq!(da.verify(&reference).await.unwrap(), DaStatus::Pending);
    clock.advance(Duration::from_secs(12));
    assert_eq!(da.verify(&reference).await.unwrap(), DaStatus::Included);
    clock.advance(Duration::from_secs(100));
    assert_eq!(da.verify(&reference).await.unwrap(), DaStatus::Included);
}

#[tokio::test]
async fn da_publish_is_idempotent_on_the_dedup_key() {
    let chain = DevChain::fixed(1, 100);
    let clock = ManualClock::at(0);
    let da = DevDa::new(DaConfig::default(), 1, clock.clone());
    let a = da.publish(da_request(&chain, "da:1", range(1, 2)).await).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let b = da.publish(da_request(&chain, "da:1", range(1, 2)).await).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(da.publications(), 1);
    let c = da.publish(da_request(&chain, "da:2", range(1, 2)).await).await.unwrap();
    assert_ne!(a.id, c.id);
    assert_eq!((a.chunks, a.bytes), (c.chunks, c.bytes));
    assert_eq!(da.publications(), 2);
}

#[tokio::test]
async fn big_data_is_split_into_blobs_and_submissions_never_truncated() {
    let chain = DevChain::fixed(5, 1000);
    let da = DevDa::new(DaConfig::default(), 5, ManualClock::at(0));
    let small = (0..1000).find(|n| !chain.is_big_block(*n)).unwrap();
    let r = da.publish(da_request(&chain, "small", range(small, small)).await).await.unwrap();
    assert_eq!(r.chunks, 1);
    assert_eq!(r.bytes, 32 * batch_blobs(&chain, range(small, small)).payload.len() as u64);

    let mut huge = None;
    // Big blocks until one needs more than one submission (each costs its blobs' commitments).
    for (i, n) in (0..1000).filter(|n| chain.is_big_block(*n)).enumerate() {
        if huge.is_some() && i >= 3 {
            break;
        }
        let before = da.submissions();
        let r = da.publish(da_request(&chain, &format!("big{n}"), range(n, n)).await).await.unwrap();
        assert!(r.chunks >= 2, "block {n}: {r:?}");
        assert_eq!(u64::from(r.chunks), r.bytes.div_ceil(BYTES_PER_BLOB), "every byte is carried");
        assert_eq!(da.submissions() - before, u64::from(r.chunks).div_ceil(6));
        if r.chunks > 6 {
            huge = Some(r);
        }
    }
    assert!(huge.is_some(), "some block needs more than one submission");
}

#[tokio::test]
async fn dropped_publications_fail_after_the_delay() {
    let chain = DevChain::fixed(1, 10);
    let clock = ManualClock::at(0);
    let cfg = DaConfig { drop_rate: 1.0, inclusion_delay: Duration::from_secs(1), ..DaConfig::default() };
    let da = DevDa::new(cfg, 1, clock.clone());
    let r = da.publish(da_request(&chain, "k", range(0, 0)).await).await.unwrap();
    assert_eq!(da.verify(&r).await.unwrap(), DaStatus::Pending);
    clock.advance(Duration::from_secs(1));
    assert!(matches!(da.verify(&r).await.unwrap(), DaStatus::Failed { .. }));
}

#[tokio::test]
async fn da_rejects_malformed_requests_and_unknown_references() {
    let chain = DevChain::fixed(1, 10);
    let da = DevDa::new(DaConfig::default(), 1, ManualClock::at(0));
    let mut req = da_request(&chain, "k", range(0, 2)).await;
    req.updates.pop();
    assert!(matches!(da.publish(req).await.unwrap_err(), Error::InvalidInput { .. }));
    let mut req = da_request(&chain, "k", range(0, 2)).await;
    req.updates.push(req.updates[0].clone());
    let e = da.publish(req).await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }) && e.to_string().contains("one per block"), "{e}");

    let good = da.publish(da_request(&chain, "k", range(0, 0)).await).await.unwrap();
    let wrong_size = DaReference { bytes: good.bytes + 1, ..good.clone() };
    assert!(matches!(da.verify(&wrong_size).await.unwrap_err(), Error::NotFound { .. }));
    let junk = DaReference { id: "0xabc".into(), chunks: 1, bytes: 10 };
    assert!(matches!(da.verify(&junk).await.unwrap_err(), Error::NotFound { .. }));
}

#[tokio::test]
async fn da_encode_gives_the_blobs_and_manifest_that_publish_makes_available() {
    let chain = Arc::new(DevChain::fixed(2, 100));
    let da = DevDa::new(DaConfig::default(), 2, ManualClock::at(0));
    let big = (0..95).find(|n| chain.is_big_block(*n)).unwrap();
    let r = range(big, big + 2);
    let req = da_request(&chain, "da:x", r).await;
    let payload = da.encode(&req).await.unwrap();
    assert_eq!(payload, da.encode(&req).await.unwrap(), "deterministic");
    let encoded = batch_blobs(&chain, r);
    let n = encoded.blobs.len();
    assert!(n >= 2, "{n} blobs");
    let names: Vec<&str> = payload.artifacts.iter().map(|a| a.name.as_str()).collect();
    let mut want: Vec<String> = (0..n).map(|i| format!("blob-{i}.bin")).collect();
    want.push(MANIFEST.into());
    assert_eq!(names, want);
    let blobs: Vec<Blob> = payload.artifacts[..n].iter().map(|a| Blob::from_bytes(&a.bytes).unwrap()).collect();
    assert_eq!(blobs, encoded.blobs);

    let manifest: serde_json::Value = serde_json::from_slice(&payload.artifacts[n].bytes).unwrap();
    assert_eq!(manifest["starknet_version"], DA_VERSION.to_string());
    assert_eq!(manifest["payload_felts"], encoded.payload.len());
    for (i, b) in blobs.iter().enumerate() {
        let c = kzg::commit(b).unwrap();
        assert_eq!(manifest["blobs"][i]["commitment"], c.to_string());
        assert_eq!(manifest["blobs"][i]["versioned_hash"], kzg::versioned_hash(&c).to_string());
    }
    // The OS output of the range commits to the same blobs.
    let os = DevOsRunner::new(chain.clone(), OsConfig::default());
    let kzg_out = KzgDaOutput::parse(&os.run(&chain_id(), r).await.unwrap().program_output).unwrap();
    assert_eq!(kzg_out.prove(&blobs).unwrap().len(), n);

    let reference = da.publish(req).await.unwrap();
    assert_eq!(reference.chunks as usize, n);
    assert_eq!(reference.bytes, 32 * encoded.payload.len() as u64);
}

#[tokio::test]
async fn da_squashes_a_batch_so_rewritten_keys_are_published_once() {
    let chain = DevChain::fixed(1, 30);
    let da = DevDa::new(DaConfig::default(), 1, ManualClock::at(0));
    let one = da.publish(da_request(&chain, "one", range(12, 12)).await).await.unwrap();
    // The same block's update three times (as a conformance suite may send): one block's worth.
    let mut req = da_request(&chain, "three", range(12, 14)).await;
    req.updates = vec![req.updates[0].clone(); 3];
    let three = da.publish(req).await.unwrap();
    assert_eq!((three.chunks, three.bytes), (one.chunks, one.bytes));
}
