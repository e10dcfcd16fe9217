//! The handlers of the settlement pipeline, one per [`JobKind`], calling the ports.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::chain::ChainSource;
use crate::da::{Da, DaReference, DaRequest, DaStatus};
use crate::db::Database;
use crate::engine::handler::{JobCtx, JobHandler, Outcome, Verdict};
use crate::error::{Error, Result};
use crate::felt::Felt;
use crate::prove::{OsRunner, ProofRequest, ProofStatus, Prover, TaskId};
use crate::settle::{ProofRegistrationRequest, Settlement, StateUpdateRequest, TxStatus};
use crate::storage::Storage;
use crate::types::{BlockRange, ChainId, JobKey, JobKind, ObjectKey, TxHash};

/// The ports the pipeline handlers use.
#[derive(Debug, Clone)]
pub struct PipelinePorts {
    /// The chain being settled.
    pub chain: Arc<dyn ChainSource>,
    /// SNOS.
    pub os: Arc<dyn OsRunner>,
    /// Prover.
    pub prover: Arc<dyn Prover>,
    /// DA layer.
    pub da: Arc<dyn Da>,
    /// Settlement layer.
    pub settlement: Arc<dyn Settlement>,
    /// Artefacts.
    pub storage: Arc<dyn Storage>,
    /// The job store (to read sibling jobs' results).
    pub db: Arc<dyn Database>,
}

/// Where an artefact of a batch lives: `<chain>/<kind>/<first>-<last>/<name>`.
pub fn artifact_key(chain: &ChainId, kind: JobKind, range: BlockRange, name: &str) -> Result<ObjectKey> {
    ObjectKey::new(format!("{chain}/{kind}/{}-{}/{name}", range.first(), range.last()))
}

fn dedup_key(ctx: &JobCtx, what: &str) -> String {
    let j = ctx.job();
    // The attempt number makes a new key after a *known* failure (the handler clears the
    // intent then); a crash keeps the recorded intent, so the retry reuses the same key.
    format!("{}:{what}:{}-{}:{}", j.key.chain, j.range().first(), j.range().last(), j.attempts)
}

/// Where an effect-causing handler starts: `None` when the effect was already caused (its
/// result is recorded: go and verify it), otherwise the intent to use — the one recorded by an
/// earlier, interrupted attempt, or a new one recorded now, before the effect.
async fn begin_effect(ctx: &mut JobCtx, what: &str) -> Result<Option<String>> {
    if ctx.job().meta.external_ref.is_some() {
        return Ok(None);
    }
    if let Some(i) = ctx.job().meta.intent.clone() {
        return Ok(Some(i));
    }
    let i = dedup_key(ctx, what);
    ctx.record_intent(i.clone()).await?;
    Ok(Some(i))
}

/// SNOS: run the OS, store program output and PIE. No external effect, so no intent.
#[derive(Debug)]
pub struct SnosHandler(pub PipelinePorts);

#[async_trait]
impl JobHandler for SnosHandler {
    async fn process(&self, ctx: &mut JobCtx) -> Result<Outcome> {
        let (chain, range) = (ctx.job().key.chain.clone(), ctx.job().range());
        let out = self.0.os.run(&chain, range).await?;
        let po_key = artifact_key(&chain, JobKind::SnosRun, range, "program_output.json")?;
        let pie_key = artifact_key(&chain, JobKind::SnosRun, range, "pie.bin")?;
        let po = serde_json::to_vec(&out.program_output)
            .map_err(|e| Error::internal_from("serializing program output", e))?;
        self.0.storage.put(&pie_key, out.pie).await?;
        self.0.storage.put(&po_key, po).await?;
        let meta = ctx.meta_mut();
        meta.artifacts.insert("program_output".into(), po_key);
        meta.artifacts.insert("pie".into(), pie_key);
        meta.extra.insert("program_output_felts".into(), out.program_output.len().to_string());
        Ok(Outcome::Done)
    }

    async fn verify(&self, _ctx: &mut JobCtx) -> Result<Verdict> {
        Ok(Verdict::Done)
    }
}

/// Proving: submit the PIE (idempotent on the recorded intent), poll the task, store the proof.
#[derive(Debug)]
pub struct ProofHandler {
    /// Ports.
    pub ports: PipelinePorts,
    /// Poll interval.
    pub poll: Duration,
}

#[async_trait]
impl JobHandler for ProofHandler {
    async fn process(&self, ctx: &mut JobCtx) -> Result<Outcome> {
        let Some(intent) = begin_effect(ctx, "proof").await? else {
            return Ok(Outcome::Verify { after: Duration::ZERO });
        };
        let (chain, range) = (ctx.job().key.chain.clone(), ctx.job().range());
        let pie = self.ports.storage.get(&artifact_key(&chain, JobKind::SnosRun, range, "pie.bin")?).await?;
        let task = self.ports.prover.submit(ProofRequest { dedup_key: intent, range, pie }).await?;
        ctx.meta_mut().external_ref = Some(task.0);
        Ok(Outcome::Verify { after: self.poll })
    }

    async fn verify(&self, ctx: &mut JobCtx) -> Result<Verdict> {
        let Some(task) = ctx.job().meta.external_ref.clone() else {
            return Ok(Verdict::Failed { reason: "no prover task recorded".into() });
        };
        match self.ports.prover.status(&TaskId(task)).await? {
            ProofStatus::Pending => Ok(Verdict::Pending { after: self.poll }),
            ProofStatus::Succeeded { proof } => {
                let (chain, range) = (ctx.job().key.chain.clone(), ctx.job().range());
                let key = artifact_key(&chain, JobKind::ProofCreation, range, "proof.bin")?;
                self.ports.storage.put(&key, proof).await?;
                ctx.meta_mut().artifacts.insert("proof".into(), key);
                Ok(Verdict::Done)
            }
            ProofStatus::Failed { reason } => {
                let meta = ctx.meta_mut();
                meta.intent = None;
                meta.external_ref = None;
                Ok(Verdict::Failed { reason: format!("prover task failed: {reason}") })
            }
        }
    }
}

/// L3 proof registration on the settlement layer.
#[derive(Debug)]
pub struct RegistrationHandler {
    /// Ports.
    pub ports: PipelinePorts,
    /// Poll interval.
    pub poll: Duration,
}

#[async_trait]
impl JobHandler for RegistrationHandler {
    async fn process(&self, ctx: &mut JobCtx) -> Result<Outcome> {
        let Some(intent) = begin_effect(ctx, "register").await? else {
            return Ok(Outcome::Verify { after: Duration::ZERO });
        };
        let (chain, range) = (ctx.job().key.chain.clone(), ctx.job().range());
        let proof = self.ports.storage.get(&artifact_key(&chain, JobKind::ProofCreation, range, "proof.bin")?).await?;
        let tx =
            self.ports.settlement.register_proof(ProofRegistrationRequest { dedup_key: intent, range, proof }).await?;
        ctx.meta_mut().external_ref = Some(tx.0);
        Ok(Outcome::Verify { after: self.poll })
    }

    async fn verify(&self, ctx: &mut JobCtx) -> Result<Verdict> {
        tx_verdict(&*self.ports.settlement, ctx, self.poll, false).await
    }
}

/// DA: have the DA layer encode the batch's state updates (for blob DA: the blobs of the
/// squashed diff), keep what it encoded as artefacts, publish, wait for inclusion.
///
/// The encoding lives in the adapter ([`Da::encode`]), not here: it is the layer's format, and
/// the blob codec's crypto does not belong in the core. Storing it before publishing lets a
/// later stage read exactly the published bytes (`artifacts["blob-<i>"]` of this job).
#[derive(Debug)]
pub struct DaHandler {
    /// Ports.
    pub ports: PipelinePorts,
    /// Poll interval.
    pub poll: Duration,
}

impl DaHandler {
    /// Stores the layer's payload for `req` under the job's artefact prefix, recording each
    /// piece in the job's artefacts by its name without extension. Nothing for a layer with
    /// no payload of its own (`Unsupported`). Deterministic, so a retry rewrites the same bytes.
    async fn store_payload(&self, ctx: &mut JobCtx, req: &DaRequest) -> Result<()> {
        let payload = match self.ports.da.encode(req).await {
            Ok(p) => p,
            Err(Error::Unsupported { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let chain = ctx.job().key.chain.clone();
        let mut seen = std::collections::HashSet::new();
        for a in payload.artifacts {
            if a.name.is_empty() || a.name.contains('/') || !seen.insert(a.name.clone()) {
                return Err(Error::internal(format!(
                    "the DA layer's payload names an artefact {:?}: names must be unique, non-empty single path segments",
                    a.name
                )));
            }
            let key = artifact_key(&chain, JobKind::DataSubmission, req.range, &a.name)?;
            self.ports.storage.put(&key, a.bytes).await?;
            let label = a.name.rsplit_once('.').map_or(a.name.as_str(), |(stem, _)| stem).to_owned();
            ctx.meta_mut().artifacts.insert(label, key);
        }
        Ok(())
    }
}

#[async_trait]
impl JobHandler for DaHandler {
    async fn process(&self, ctx: &mut JobCtx) -> Result<Outcome> {
        let Some(intent) = begin_effect(ctx, "da").await? else {
            return Ok(Outcome::Verify { after: Duration::ZERO });
        };
        let range = ctx.job().range();
        let mut updates = Vec::with_capacity(range.len() as usize);
        for n in range.first()..=range.last() {
            updates.push(self.ports.chain.state_update(n).await?);
        }
        let req = DaRequest { dedup_key: intent, range, updates };
        self.store_payload(ctx, &req).await?;
        let reference = self.ports.da.publish(req).await?;
        let meta = ctx.meta_mut();
        meta.extra.insert("da_bytes".into(), reference.bytes.to_string());
        meta.extra.insert("da_chunks".into(), reference.chunks.to_string());
        meta.external_ref =
            Some(serde_json::to_string(&reference).map_err(|e| Error::internal_from("serializing DA reference", e))?);
        Ok(Outcome::Verify { after: self.poll })
    }

    async fn verify(&self, ctx: &mut JobCtx) -> Result<Verdict> {
        let Some(raw) = ctx.job().meta.external_ref.clone() else {
            return Ok(Verdict::Failed { reason: "no DA reference recorded".into() });
        };
        let reference = parse_da_reference(&raw)?;
        match self.ports.da.verify(&reference).await? {
            DaStatus::Included => Ok(Verdict::Done),
            DaStatus::Pending => Ok(Verdict::Pending { after: self.poll }),
            DaStatus::Failed { reason } => {
                let meta = ctx.meta_mut();
                meta.intent = None;
                meta.external_ref = None;
                Ok(Verdict::Failed { reason: format!("DA publication failed: {reason}") })
            }
        }
    }
}

fn parse_da_reference(raw: &str) -> Result<DaReference> {
    serde_json::from_str(raw)
        .map_err(|e| Error::invalid_input("job meta external_ref", format!("not a DA reference: {e}")))
}

/// State transition: apply the batch on the core contract, strictly in order, exactly once.
#[derive(Debug)]
pub struct StateTransitionHandler {
    /// Ports.
    pub ports: PipelinePorts,
    /// Poll interval.
    pub poll: Duration,
}

#[async_trait]
impl JobHandler for StateTransitionHandler {
    async fn process(&self, ctx: &mut JobCtx) -> Result<Outcome> {
        if ctx.job().meta.external_ref.is_some() {
            return Ok(Outcome::Verify { after: Duration::ZERO });
        }
        let (chain, range) = (ctx.job().key.chain.clone(), ctx.job().range());
        let settled = self.ports.settlement.last_settled().await?;
        match settled {
            // Applied already: a previous attempt's transaction landed but its hash was never
            // recorded (crash between submit and write). Never submit twice.
            Some(s) if s.block >= range.last() => {
                ctx.meta_mut().extra.insert("found_settled".into(), s.block.to_string());
                return Ok(Outcome::Done);
            }
            Some(s) if s.block + 1 != range.first() => {
                return Ok(Outcome::Wait { after: self.poll });
            }
            _ => {}
        }
        let intent = format!("{chain}:state:{}-{}", range.first(), range.last());
        ctx.record_intent(intent.clone()).await?;

        let po_raw =
            self.ports.storage.get(&artifact_key(&chain, JobKind::SnosRun, range, "program_output.json")?).await?;
        let program_output: Vec<Felt> =
            serde_json::from_slice(&po_raw).map_err(|e| Error::invalid_input("program_output.json", e.to_string()))?;
        let da_key = JobKey { chain: chain.clone(), kind: JobKind::DataSubmission, range };
        let da_job =
            self.ports.db.get_job_by_key(&da_key).await?.ok_or_else(|| Error::not_found(format!("job {da_key}")))?;
        let da = parse_da_reference(
            da_job.meta.external_ref.as_deref().ok_or_else(|| Error::not_found(format!("DA reference of {da_key}")))?,
        )?;
        let first_update = self.ports.chain.state_update(range.first()).await?;
        let last = self.ports.chain.block(range.last()).await?;
        let tx = self
            .ports
            .settlement
            .submit_state_update(StateUpdateRequest {
                dedup_key: intent,
                range,
                prev_root: first_update.old_root,
                new_root: last.state_root,
                block_hash: last.hash,
                program_output,
                da,
            })
            .await?;
        ctx.meta_mut().external_ref = Some(tx.0);
        Ok(Outcome::Verify { after: self.poll })
    }

    async fn verify(&self, ctx: &mut JobCtx) -> Result<Verdict> {
        tx_verdict(&*self.ports.settlement, ctx, self.poll, true).await
    }
}

async fn tx_verdict(
    settlement: &dyn Settlement,
    ctx: &mut JobCtx,
    poll: Duration,
    is_state_update: bool,
) -> Result<Verdict> {
    let Some(tx) = ctx.job().meta.external_ref.clone() else {
        return Ok(Verdict::Failed { reason: "no transaction recorded".into() });
    };
    let need = settlement.capabilities().confirmations.max(1);
    let lost = |ctx: &mut JobCtx, reason: String| {
        // Keep the intent: the dedup key makes a resubmission safe.
        ctx.meta_mut().external_ref = None;
        Ok(Verdict::Failed { reason })
    };
    match settlement.tx_status(&TxHash(tx.clone())).await? {
        TxStatus::Confirmed { confirmations } if confirmations >= need => Ok(Verdict::Done),
        TxStatus::Confirmed { .. } | TxStatus::Pending => Ok(Verdict::Pending { after: poll }),
        TxStatus::NotFound => {
            if is_state_update {
                let range = ctx.job().range();
                if settlement.last_settled().await?.is_some_and(|s| s.block >= range.last()) {
                    return Ok(Verdict::Done);
                }
            }
            lost(ctx, format!("transaction {tx} not found (dropped)"))
        }
        TxStatus::Reverted { reason } => lost(ctx, format!("transaction {tx} reverted: {reason}")),
    }
}

/// The standard handler set for `ports`.
pub fn standard_handlers(ports: &PipelinePorts, poll: Duration) -> Vec<(JobKind, Arc<dyn JobHandler>)> {
    vec![
        (JobKind::SnosRun, Arc::new(SnosHandler(ports.clone())) as Arc<dyn JobHandler>),
        (JobKind::ProofCreation, Arc::new(ProofHandler { ports: ports.clone(), poll })),
        (JobKind::ProofRegistration, Arc::new(RegistrationHandler { ports: ports.clone(), poll })),
        (JobKind::DataSubmission, Arc::new(DaHandler { ports: ports.clone(), poll })),
        (JobKind::StateTransition, Arc::new(StateTransitionHandler { ports: ports.clone(), poll })),
    ]
}
