//! The [`Settlement`] port: the core contract on the settlement layer.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::da::DaReference;
use crate::error::Result;
use crate::felt::Felt;
use crate::forward::port;
use crate::types::{BlockNumber, BlockRange, TxHash};

/// What settlement knows as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledState {
    /// Last block whose state update is applied.
    pub block: BlockNumber,
    /// State root after it.
    pub state_root: Felt,
}

/// What settlement needs to know about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SettlementCapabilities {
    /// Proofs must be registered (`register_proof`) before a state update (L3 on Starknet).
    pub requires_proof_registration: bool,
    /// Confirmations before a transaction counts as final.
    pub confirmations: u32,
}

/// A state update to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdateRequest {
    /// Idempotency key: resubmitting the same key never applies twice.
    pub dedup_key: String,
    /// Blocks covered.
    pub range: BlockRange,
    /// Root before `range.first()`; must equal the settled root.
    pub prev_root: Felt,
    /// Root after `range.last()`.
    pub new_root: Felt,
    /// Hash of `range.last()`.
    pub block_hash: Felt,
    /// The OS program output.
    pub program_output: Vec<Felt>,
    /// Where the data was published.
    pub da: DaReference,
}

/// A proof to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofRegistrationRequest {
    /// Idempotency key.
    pub dedup_key: String,
    /// Blocks covered.
    pub range: BlockRange,
    /// Proof bytes.
    pub proof: Vec<u8>,
}

/// A transaction's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Unknown to the layer (dropped, or never sent).
    NotFound,
    /// Sent, not yet included.
    Pending,
    /// Included with this many confirmations.
    Confirmed {
        /// Blocks on top, counting its own.
        confirmations: u32,
    },
    /// Included and reverted.
    Reverted {
        /// Why.
        reason: String,
    },
}

port! {
    /// The settlement layer.
    ///
    /// # Contract
    /// 1. `last_settled` is `None` before any update; it only moves forward.
    /// 2. `submit_state_update` applies updates strictly in order: one whose `range.first()` is not
    ///    `last_settled + 1`, or whose `prev_root` is not the settled root, is `Rejected`. Submitting
    ///    the same `dedup_key` again returns the same tx hash and applies nothing.
    /// 3. `register_proof` is `Unsupported` unless `requires_proof_registration`; when supported it
    ///    is idempotent on `dedup_key`.
    /// 4. `tx_status` of a hash it returned moves only forward.
    #[async_trait]
    pub trait Settlement: Debug + Send + Sync + 'static {
        /// Capabilities.
        fn capabilities(&self) -> SettlementCapabilities;
        /// Last applied block and root.
        async fn last_settled(&self) -> Result<Option<SettledState>>;
        /// Register a proof (L3).
        async fn register_proof(&self, req: ProofRegistrationRequest) -> Result<TxHash>;
        /// Submit a state update.
        async fn submit_state_update(&self, req: StateUpdateRequest) -> Result<TxHash>;
        /// A transaction's status.
        async fn tx_status(&self, tx: &TxHash) -> Result<TxStatus>;
    }
}
