//! [`EthSettlement`]: orch's `Settlement` port on the Starknet core contract.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};

use alloy::eips::BlockId;
use alloy::network::{EthereumWallet, ReceiptResponse, TransactionBuilder};
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use orch_blob::kzg::KzgProof;
use orch_blob::{Blob, KzgDaOutput, OsOutputHeader, MAX_BLOBS_PER_TRANSACTION};
use orch_core::alerts::Alerts;
use orch_core::error::{Error, Result};
use orch_core::settle::{
    ProofRegistrationRequest, SettledState, Settlement, SettlementCapabilities, StateUpdateRequest, TxStatus,
};
use orch_core::types::TxHash;
use orch_core::Felt;
use tokio::sync::Mutex;

use crate::abi::IStarknetCore;
use crate::config::{parse_address, parse_url, EthConfig, SidecarForm};
use crate::error::{classify, BACKEND};
use crate::prepare;
use crate::sidecar::{self, ProofForm};
use crate::txm::{Books, Call, Policy, TxManager};

/// Where the blobs of a KZG-DA state update come from: the settlement request names its DA
/// publication ([`StateUpdateRequest::da`]); the blobs themselves live with the DA job's
/// artefacts, which the wiring hands over through this.
#[async_trait]
pub trait BlobSource: fmt::Debug + Send + Sync + 'static {
    /// The blobs of `req`'s batch, in the order of the program output's commitments.
    async fn blobs(&self, req: &StateUpdateRequest) -> Result<Vec<Blob>>;
}

/// A [`BlobSource`] holding blobs in memory by DA reference id, for tests and for a caller
/// that has the blobs at hand.
#[derive(Debug, Default)]
pub struct StagedBlobs(StdMutex<HashMap<String, Arc<Vec<Blob>>>>);

impl StagedBlobs {
    /// Keeps `blobs` for requests whose `da.id` is `da_id`.
    pub fn stage(&self, da_id: impl Into<String>, blobs: Vec<Blob>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(da_id.into(), Arc::new(blobs));
    }
}

#[async_trait]
impl BlobSource for StagedBlobs {
    async fn blobs(&self, req: &StateUpdateRequest) -> Result<Vec<Blob>> {
        let staged = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&req.da.id).cloned();
        staged
            .map(|b| b.as_ref().clone())
            .ok_or_else(|| Error::not_found(format!("blobs of DA publication {}", req.da.id)))
    }
}

/// Settlement on Ethereum through the Starknet core contract (or anything with its interface).
///
/// Reads `stateBlockNumber()`/`stateRoot()`; submits `updateStateKzgDA` as a type-3
/// transaction carrying the batch's blobs when the program output says `use_kzg_da`, and
/// `updateState` otherwise.
pub struct EthSettlement {
    provider: DynProvider,
    core: Address,
    operator: Address,
    confirmations: u32,
    form: ProofForm,
    blobs: Option<Arc<dyn BlobSource>>,
    /// The nonce owner: every state update goes through its persisted intents.
    txm: TxManager,
    /// One state update prepared and submitted at a time, in order.
    submitting: Mutex<()>,
}

impl fmt::Debug for EthSettlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EthSettlement")
            .field("core", &self.core)
            .field("operator", &self.operator)
            .field("confirmations", &self.confirmations)
            .field("form", &self.form)
            .finish_non_exhaustive()
    }
}

impl EthSettlement {
    /// Validates `cfg`, checks that the node serves `cfg.chain_id` and that a contract is
    /// deployed at `cfg.core_contract`, and resolves the sidecar form.
    pub async fn connect(cfg: &EthConfig) -> Result<EthSettlement> {
        cfg.validate()?;
        let url = parse_url(cfg.rpc_url.expose())?;
        let signer = cfg.signer()?;
        let core = parse_address(&cfg.core_contract)?;
        let operator = signer.address();
        let wallet = EthereumWallet::from(signer);
        let provider = ProviderBuilder::new().wallet(wallet.clone()).connect_http(url).erased();
        let chain = provider.get_chain_id().await.map_err(|e| classify("read the chain id", e))?;
        if chain != cfg.chain_id {
            return Err(Error::invalid_input(
                "settlement.chain_id",
                format!("is {}, but the node at settlement.rpc_url serves chain {chain}", cfg.chain_id),
            ));
        }
        let code = provider.get_code_at(core).await.map_err(|e| classify("read the core contract's code", e))?;
        if code.is_empty() {
            return Err(Error::invalid_input(
                "settlement.core_contract",
                format!("no contract is deployed at {core} on chain {chain}"),
            ));
        }
        let form = match cfg.sidecar {
            SidecarForm::BlobProofs => ProofForm::Blob,
            SidecarForm::CellProofs => ProofForm::Cell,
            SidecarForm::Auto => detect_form(&provider).await?,
        };
        let state_dir = cfg.state_dir.clone().ok_or_else(|| {
            Error::invalid_input(
                "settlement.state_dir",
                "is unset: give a directory that survives restarts, where the transaction manager keeps its journal",
            )
        })?;
        let txm = TxManager::open(provider.clone(), wallet, operator, Policy::from_config(cfg), state_dir)?;
        tracing::info!(target: "orch::eth", %core, %operator, chain, form = ?form, "connected to the core contract");
        Ok(EthSettlement {
            provider,
            core,
            operator,
            confirmations: cfg.confirmations,
            form,
            blobs: None,
            txm,
            submitting: Mutex::new(()),
        })
    }

    /// Where alerts go (spend budget reached, fees above the ceilings, no funds).
    pub fn with_alerts(mut self, alerts: Arc<dyn Alerts>) -> EthSettlement {
        self.txm.set_alerts(alerts);
        self
    }

    /// The transaction manager's books: pending transactions with their fees, spend.
    pub async fn books(&self) -> Books {
        self.txm.books().await
    }

    /// Where KZG-DA updates find their blobs. Without one, such updates are `InvalidInput`.
    pub fn with_blob_source(mut self, source: Arc<dyn BlobSource>) -> EthSettlement {
        self.blobs = Some(source);
        self
    }

    /// The sidecar form blob transactions use.
    pub fn proof_form(&self) -> ProofForm {
        self.form
    }

    /// The account that signs state updates.
    pub fn operator(&self) -> Address {
        self.operator
    }

    /// Sends `updateStateKzgDA(program_output, proofs)` carrying `blobs`, as given: no local
    /// check of the proofs or of the request against the output, so the contract's checks
    /// decide (a revert is `Rejected`). [`Settlement::submit_state_update`] checks first and
    /// computes the proofs itself; this is for callers that did, and for testing the contract.
    /// Not deduplicated; serialized with every other send of this instance.
    pub async fn send_kzg_update(
        &self,
        program_output: &[Felt],
        blobs: Vec<Blob>,
        proofs: &[KzgProof],
        what: &str,
    ) -> Result<TxHash> {
        let _one_at_a_time = self.submitting.lock().await;
        let tx = self.kzg_request(program_output, blobs, proofs).await?;
        self.send(tx, what).await
    }

    /// The `updateStateKzgDA` transaction carrying `blobs` in this instance's sidecar form.
    async fn kzg_request(
        &self,
        program_output: &[Felt],
        blobs: Vec<Blob>,
        proofs: &[KzgProof],
    ) -> Result<TransactionRequest> {
        let form = self.form;
        let sidecar = tokio::task::spawn_blocking(move || sidecar::build(&blobs, form))
            .await
            .map_err(|e| Error::internal(format!("building the sidecar: {e}")))??;
        Ok(self.kzg_call(program_output, proofs, sidecar))
    }

    fn kzg_call(
        &self,
        program_output: &[Felt],
        proofs: &[KzgProof],
        sidecar: alloy::eips::eip7594::BlobTransactionSidecarVariant,
    ) -> TransactionRequest {
        let call = IStarknetCore::updateStateKzgDACall {
            programOutput: words(program_output),
            kzgProofs: proofs.iter().map(|p| Bytes::copy_from_slice(&p.to_bytes())).collect(),
        };
        let mut tx = TransactionRequest::default().with_to(self.core).with_input(call.abi_encode());
        tx.sidecar = Some(sidecar);
        tx.populate_blob_hashes();
        tx
    }

    async fn send(&self, tx: TransactionRequest, what: &str) -> Result<TxHash> {
        // An unmanaged send (no journal, no dedup): the nonce is read for each one, after
        // every transaction the manager has in the pool.
        let nonce = self
            .provider
            .get_transaction_count(self.operator)
            .pending()
            .await
            .map_err(|e| classify("read the operator's nonce", e))?;
        let tx = tx.with_from(self.operator).with_nonce(nonce);
        let pending = self.provider.send_transaction(tx).await.map_err(|e| classify(what, e))?;
        let hash = TxHash(format!("{:#x}", pending.tx_hash()));
        tracing::info!(target: "orch::eth", tx = %hash, what, "state update sent");
        Ok(hash)
    }

    async fn read(&self, call: Vec<u8>, block: u64, what: &str) -> Result<Bytes> {
        let tx = TransactionRequest::default().with_to(self.core).with_input(call);
        self.provider.call(tx).block(BlockId::number(block)).await.map_err(|e| classify(what, e))
    }
}

/// From Osaka on (EIP-7951's P256VERIFY precompile at 0x100 came with it) nodes want cell
/// proofs. `eth_config` (EIP-7910) lists the current fork's precompiles.
async fn detect_form(provider: &DynProvider) -> Result<ProofForm> {
    let config: serde_json::Value = match provider.raw_request("eth_config".into(), ()).await {
        Ok(v) => v,
        Err(alloy::transports::RpcError::ErrorResp(p)) => {
            return Err(Error::invalid_input(
                "settlement.sidecar",
                format!(
                    "is auto, but the node does not answer eth_config ({}): set \"blob_proofs\" \
                     (Cancun, Prague) or \"cell_proofs\" (Osaka and later)",
                    p.message
                ),
            ))
        }
        Err(e) => return Err(classify("read eth_config", e)),
    };
    let osaka = config["current"]["precompiles"]
        .as_object()
        .is_some_and(|p| p.values().any(|a| a.as_str().is_some_and(|a| a.ends_with("0000100"))));
    Ok(if osaka { ProofForm::Cell } else { ProofForm::Blob })
}

fn words(felts: &[Felt]) -> Vec<U256> {
    felts.iter().map(|f| U256::from_be_bytes(f.to_be_bytes())).collect()
}

fn felt(v: U256, what: &str) -> Result<Felt> {
    Felt::from_be_bytes(v.to_be_bytes::<32>())
        .map_err(|_| Error::internal(format!("the core contract's {what} {v:#x} is not a felt")))
}

fn mismatch(name: &str, request: impl fmt::Display, output: &Felt) -> Error {
    Error::invalid_input(
        "program_output",
        format!("the output's {name} is {output}, but the request says {request}: request and output disagree"),
    )
}

/// The request's fields must be what its program output says: the contract reads only the
/// output, the engine only the request.
fn check_request(req: &StateUpdateRequest, h: &OsOutputHeader) -> Result<()> {
    if h.initial_root != req.prev_root {
        return Err(mismatch("initial root", req.prev_root, &h.initial_root));
    }
    if h.final_root != req.new_root {
        return Err(mismatch("final root", req.new_root, &h.final_root));
    }
    if h.new_block_hash != req.block_hash {
        return Err(mismatch("new block hash", req.block_hash, &h.new_block_hash));
    }
    if h.new_block_number != Felt::from_u64(req.range.last()) {
        return Err(mismatch("new block number", req.range.last(), &h.new_block_number));
    }
    if h.prev_block_number != OsOutputHeader::block_before(req.range.first()) {
        return Err(mismatch(
            "previous block number",
            format!("first block {}", req.range.first()),
            &h.prev_block_number,
        ));
    }
    Ok(())
}

fn output_err(e: orch_blob::Error) -> Error {
    Error::invalid_input("program_output", e.to_string())
}

#[async_trait]
impl Settlement for EthSettlement {
    fn capabilities(&self) -> SettlementCapabilities {
        SettlementCapabilities { requires_proof_registration: false, confirmations: self.confirmations }
    }

    async fn last_settled(&self) -> Result<Option<SettledState>> {
        // Both reads at one block, so the pair is consistent.
        let head = self.provider.get_block_number().await.map_err(|e| classify("read the block number", e))?;
        let raw =
            self.read(IStarknetCore::stateBlockNumberCall {}.abi_encode(), head, "read stateBlockNumber()").await?;
        let number = IStarknetCore::stateBlockNumberCall::abi_decode_returns(&raw)
            .map_err(|e| Error::internal(format!("decoding stateBlockNumber(): {e}")))?;
        if number.is_negative() {
            return Ok(None);
        }
        let block = u64::try_from(number.into_raw())
            .map_err(|_| Error::internal(format!("stateBlockNumber() {number} does not fit a block number")))?;
        let raw = self.read(IStarknetCore::stateRootCall {}.abi_encode(), head, "read stateRoot()").await?;
        let root = IStarknetCore::stateRootCall::abi_decode_returns(&raw)
            .map_err(|e| Error::internal(format!("decoding stateRoot(): {e}")))?;
        Ok(Some(SettledState { block, state_root: felt(root, "stateRoot()")? }))
    }

    async fn register_proof(&self, _req: ProofRegistrationRequest) -> Result<TxHash> {
        Err(Error::unsupported("register_proof", BACKEND))
    }

    async fn submit_state_update(&self, req: StateUpdateRequest) -> Result<TxHash> {
        // Held across the send: one update at a time, in order, and a concurrent resubmission
        // of the same key waits for the first and gets its hash.
        let _one_at_a_time = self.submitting.lock().await;
        // Known key: its intent answers, before any blob is read or proof computed.
        if let Some(tx) = self.txm.resume(&req.dedup_key).await? {
            return Ok(TxHash(format!("{tx:#x}")));
        }
        let header = OsOutputHeader::parse(&req.program_output).map_err(output_err)?;
        check_request(&req, &header)?;
        let what = format!("update state to block {} ({})", req.range.last(), req.dedup_key);
        let submission = if header.use_kzg_da {
            let kzg = KzgDaOutput::parse(&req.program_output).map_err(output_err)?;
            if kzg.commitments.len() > MAX_BLOBS_PER_TRANSACTION {
                return Err(Error::invalid_input(
                    "program_output",
                    format!(
                        "commits to {} blobs; one Ethereum transaction carries at most {MAX_BLOBS_PER_TRANSACTION}",
                        kzg.commitments.len()
                    ),
                ));
            }
            let source = self.blobs.as_ref().ok_or_else(|| {
                Error::invalid_input("settlement", "a KZG-DA update needs its blobs: no blob source is configured")
            })?;
            let blobs = source.blobs(&req).await?;
            let n_blobs = kzg.commitments.len();
            // Each blob checked against the output's commitment and y_i before any gas is
            // paid; point proofs and the sidecar computed once, in parallel across blobs.
            let form = self.form;
            let prepared = tokio::task::spawn_blocking(move || prepare::prepare(&kzg, &blobs, form))
                .await
                .map_err(|e| Error::internal(format!("proving the blobs: {e}")))??;
            let request = self.kzg_call(&req.program_output, &prepared.point_proofs, prepared.sidecar);
            Call { key: req.dedup_key, what, request, blobs: n_blobs }
        } else {
            let (hash, size) = onchain_data(&req.program_output);
            let call = IStarknetCore::updateStateCall {
                programOutput: words(&req.program_output),
                onchainDataHash: hash,
                onchainDataSize: size,
            };
            let request = TransactionRequest::default().with_to(self.core).with_input(call.abi_encode());
            Call { key: req.dedup_key, what, request, blobs: 0 }
        };
        Ok(TxHash(format!("{:#x}", self.txm.submit(submission).await?)))
    }

    async fn tx_status(&self, tx: &TxHash) -> Result<TxStatus> {
        if let Some(status) = self.txm.status(&tx.0).await? {
            return Ok(status);
        }
        // Not the manager's (sent by `send_kzg_update`, or journal pruned): the receipt says.
        let hash: B256 =
            tx.0.parse()
                .map_err(|_| Error::invalid_input("tx", format!("`{tx}` is not a 32-byte transaction hash")))?;
        let receipt = self.provider.get_transaction_receipt(hash).await.map_err(|e| classify("read a receipt", e))?;
        let Some(receipt) = receipt else {
            let known =
                self.provider.get_transaction_by_hash(hash).await.map_err(|e| classify("read a transaction", e))?;
            return Ok(if known.is_some() { TxStatus::Pending } else { TxStatus::NotFound });
        };
        let Some(block) = receipt.block_number() else { return Ok(TxStatus::Pending) };
        if !receipt.status() {
            return Ok(TxStatus::Reverted {
                reason: format!("reverted in block {block} after {} gas", receipt.gas_used()),
            });
        }
        let head = self.provider.get_block_number().await.map_err(|e| classify("read the block number", e))?;
        let confirmations = u32::try_from(head.saturating_sub(block) + 1).unwrap_or(u32::MAX);
        Ok(TxStatus::Confirmed { confirmations })
    }
}

/// `updateState`'s data arguments for a calldata-DA output: keccak-256 of the 32-byte words
/// after the header, and their count.
fn onchain_data(output: &[Felt]) -> (U256, U256) {
    let data = output.get(orch_blob::os_output::HEADER_LEN..).unwrap_or_default();
    let bytes: Vec<u8> = data.iter().flat_map(|f| f.to_be_bytes()).collect();
    (U256::from_be_bytes(keccak256(bytes).0), U256::from(data.len()))
}
