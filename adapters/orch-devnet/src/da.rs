//! [`DevDa`]: a simulated blob DA layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orch_blob::{kzg, Encoded, KzgCommitment, StarknetVersion};
use orch_core::clock::Clock;
use orch_core::da::{Da, DaArtifact, DaPayload, DaReference, DaRequest, DaStatus};
use orch_core::error::{Error, Result};
use orch_core::types::Timestamp;
use serde::Serialize;

use crate::blobs::{self, DA_VERSION};
use crate::config::DaConfig;
use crate::faults::Injector;
use crate::ids;
use crate::mix::{chance, h64, h_str};

const T_FAULTS: u64 = 0x51;
const T_DROP: u64 = 0x52;
/// References carry the digest of the blobs' commitments since version 2.
const PREFIX: &str = "dda2";
const FIELDS: usize = 8;
/// Encoded-but-unpublished requests remembered for their `publish`.
const MEMO_ENTRIES: usize = 1024;

/// Felts one blob carries.
pub const FELTS_PER_BLOB: u64 = orch_blob::FIELD_ELEMENTS_PER_BLOB as u64;
/// Bytes one blob carries (4096 field elements of 32 bytes).
pub const BYTES_PER_BLOB: u64 = orch_blob::BYTES_PER_BLOB as u64;
/// Name of the manifest in a [`DaPayload`]; the blobs are `blob-<i>.bin`.
pub const MANIFEST: &str = "blobs.json";

/// A simulated EIP-4844 DA layer: a publication is `Included` `inclusion_delay` after it was
/// made (by the injected clock), or `Failed` then if it was dropped (`drop_rate`).
///
/// What it publishes is real: the blobs of the request's **squashed** state diff in
/// [`DA_VERSION`]'s format (orch-blob), the blobs the devnet OS commits to. [`Da::encode`] gives
/// them to the engine as `blob-<i>.bin` (131 072 bytes each) and a [`MANIFEST`] listing each
/// blob's KZG commitment and versioned hash. The reference's `chunks` is the number of blobs,
/// `bytes` the payload (32 bytes per DA felt, padding not counted). Data beyond one submission
/// (`blobs_per_submission` blobs) is split over several submissions, never truncated.
///
/// Like the prover's task ids, references are self-describing and sealed with the seed, so
/// `verify` needs no stored state; they also carry a digest of the blobs' commitments, which
/// the [settlement ledger](crate::DevSettlement) compares with the program output's. The dedup
/// table is in memory.
#[derive(Debug)]
pub struct DevDa {
    seed: u64,
    cfg: DaConfig,
    clock: Arc<dyn Clock>,
    faults: Injector,
    by_key: Mutex<HashMap<String, DaReference>>,
    /// What `encode` found per dedup key, for the `publish` that follows.
    encoded: Mutex<HashMap<String, Facts>>,
    published: AtomicU64,
    submissions: AtomicU64,
}

/// What a reference records about a publication's data.
#[derive(Debug, Clone, Copy)]
struct Facts {
    blobs: u64,
    bytes: u64,
    digest: u64,
}

/// The [`MANIFEST`] of a payload.
#[derive(Debug, Serialize)]
struct Manifest {
    /// Whose DA format the blobs are in.
    starknet_version: StarknetVersion,
    /// DA felts of the squashed diff, before compression.
    felts: usize,
    /// Felts in the blobs (after compression), before padding.
    payload_felts: usize,
    blobs: Vec<BlobEntry>,
}

#[derive(Debug, Serialize)]
struct BlobEntry {
    name: String,
    commitment: KzgCommitment,
    versioned_hash: kzg::VersionedHash,
}

/// The publication facts of a sealed reference: `(blobs, digest of the commitments)`, if it
/// is one of this seed's.
pub(crate) fn reference_commitments(seed: u64, reference: &DaReference) -> Option<(u64, u64)> {
    let f = ids::open(seed, PREFIX, FIELDS, &reference.id)?;
    (f[3] == u64::from(reference.chunks) && f[4] == reference.bytes).then_some((f[3], f[7]))
}

impl DevDa {
    /// A DA layer from `cfg` and `seed`, timing inclusion with `clock`.
    pub fn new(cfg: DaConfig, seed: u64, clock: Arc<dyn Clock>) -> DevDa {
        DevDa {
            faults: Injector::new("devnet da", seed, T_FAULTS, cfg.faults.clone()),
            seed,
            cfg,
            clock,
            by_key: Mutex::new(HashMap::new()),
            encoded: Mutex::new(HashMap::new()),
            published: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
        }
    }

    /// Publications made so far (idempotent republications not counted).
    pub fn publications(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Submissions (blob transactions) made so far: a publication larger than one submission
    /// counts several.
    pub fn submissions(&self) -> u64 {
        self.submissions.load(Ordering::Relaxed)
    }

    /// Failures injected so far by the `faults` knobs.
    pub fn injected_failures(&self) -> u64 {
        self.faults.injected()
    }

    /// A DA layer carries bytes and does not judge state roots (settlement does), so only the
    /// shape is checked: one update per block.
    fn validate(req: &DaRequest) -> Result<()> {
        if req.updates.len() as u64 != req.range.len() {
            return Err(Error::invalid_input(
                "DA request updates",
                format!(
                    "{} state updates for the {} blocks of {}; pass one per block, in order",
                    req.updates.len(),
                    req.range.len(),
                    req.range
                ),
            ));
        }
        Ok(())
    }

    /// Encodes `req` and commits to its blobs, off the async runtime.
    async fn encode_request(&self, req: &DaRequest) -> Result<(Encoded, Arc<[KzgCommitment]>)> {
        Self::validate(req)?;
        let diffs: Vec<_> = req.updates.iter().map(|u| u.state_diff.clone()).collect();
        let what = format!("DA request state updates of blocks {}", req.range);
        let mode = self.cfg.kzg;
        blobs::blocking(move || {
            let encoded = blobs::encode(&diffs, &what)?;
            let commitments = blobs::commitments(&encoded, mode)?;
            Ok((encoded, commitments))
        })
        .await
    }

    fn facts(&self, encoded: &Encoded, commitments: &[KzgCommitment]) -> Facts {
        Facts {
            blobs: encoded.blobs.len() as u64,
            bytes: 32 * encoded.payload.len() as u64,
            digest: blobs::commitments_digest(self.seed, commitments),
        }
    }
}

#[async_trait]
impl Da for DevDa {
    fn max_bytes_per_submission(&self) -> usize {
        self.cfg.blobs_per_submission as usize * BYTES_PER_BLOB as usize
    }

    async fn encode(&self, req: &DaRequest) -> Result<DaPayload> {
        let (encoded, commitments) = self.encode_request(req).await?;
        let facts = self.facts(&encoded, &commitments);
        let mut artifacts = Vec::with_capacity(encoded.blobs.len() + 1);
        let mut entries = Vec::with_capacity(encoded.blobs.len());
        for (i, (blob, c)) in encoded.blobs.iter().zip(commitments.iter()).enumerate() {
            let name = format!("blob-{i}.bin");
            entries.push(BlobEntry { name: name.clone(), commitment: *c, versioned_hash: kzg::versioned_hash(c) });
            artifacts.push(DaArtifact { name, bytes: blob.as_bytes().to_vec() });
        }
        let manifest = Manifest {
            starknet_version: DA_VERSION,
            felts: encoded.felts.len(),
            payload_felts: encoded.payload.len(),
            blobs: entries,
        };
        let bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal_from("serializing blobs.json", e))?;
        artifacts.push(DaArtifact { name: MANIFEST.into(), bytes });
        let mut memo = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        // Entries leave at `publish`; keys encoded and never published (a publication that
        // failed for good) must not pile up. Forgetting one only costs recomputing it.
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(req.dedup_key.clone(), facts);
        drop(memo);
        Ok(DaPayload { artifacts })
    }

    async fn publish(&self, req: DaRequest) -> Result<DaReference> {
        let strike = self.faults.effect("publish").await?;
        if let Some(r) = self.by_key.lock().unwrap_or_else(|e| e.into_inner()).get(&req.dedup_key) {
            return strike.finish(r.clone());
        }
        Self::validate(&req)?;
        let remembered = self.encoded.lock().unwrap_or_else(|e| e.into_inner()).remove(&req.dedup_key);
        let facts = match remembered {
            Some(f) => f,
            None => {
                let (encoded, commitments) = self.encode_request(&req).await?;
                self.facts(&encoded, &commitments)
            }
        };
        let key_fp = h_str(self.seed, &req.dedup_key);
        let dropped = chance(h64(&[self.seed, T_DROP, key_fp]), self.cfg.drop_rate);
        let now = self.clock.now().0;
        let id = ids::seal(
            self.seed,
            PREFIX,
            &[
                req.range.first(),
                req.range.last(),
                now,
                facts.blobs,
                facts.bytes,
                u64::from(dropped),
                key_fp,
                facts.digest,
            ],
        );
        let reference = DaReference { id, chunks: facts.blobs.min(u64::from(u32::MAX)) as u32, bytes: facts.bytes };
        let reference = {
            let mut map = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
            // A concurrent publish of the same key may have won the race: keep its reference.
            let r = map.entry(req.dedup_key).or_insert_with(|| {
                self.published.fetch_add(1, Ordering::Relaxed);
                self.submissions.fetch_add(
                    facts.blobs.div_ceil(u64::from(self.cfg.blobs_per_submission.max(1))),
                    Ordering::Relaxed,
                );
                reference
            });
            r.clone()
        };
        strike.finish(reference)
    }

    async fn verify(&self, reference: &DaReference) -> Result<DaStatus> {
        self.faults.read("verify").await?;
        let unknown = || Error::not_found(format!("devnet DA publication {:?}", reference.id));
        let f = ids::open(self.seed, PREFIX, FIELDS, &reference.id).ok_or_else(unknown)?;
        if f[3] != u64::from(reference.chunks) || f[4] != reference.bytes {
            return Err(unknown());
        }
        if self.clock.now() < Timestamp(f[2]).plus(self.cfg.inclusion_delay) {
            return Ok(DaStatus::Pending);
        }
        if f[5] != 0 {
            return Ok(DaStatus::Failed { reason: "simulated blob drop (devnet.da.drop_rate): publish again".into() });
        }
        Ok(DaStatus::Included)
    }
}
