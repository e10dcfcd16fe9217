//! The L2 being orchestrated: blocks, state updates and the [`ChainSource`] port.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::felt::Felt;
use crate::forward::port;
use crate::types::BlockNumber;

/// One contract's storage writes in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractStorageDiff {
    /// Contract address.
    pub address: Felt,
    /// Written keys and their new values.
    pub storage_entries: Vec<StorageEntry>,
}

/// One storage write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageEntry {
    /// Storage key.
    pub key: Felt,
    /// New value.
    pub value: Felt,
}

/// A Sierra class declared in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredClass {
    /// Sierra class hash.
    pub class_hash: Felt,
    /// Compiled (CASM) class hash.
    pub compiled_class_hash: Felt,
}

/// A contract deployed in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedContract {
    /// Contract address.
    pub address: Felt,
    /// Its class hash.
    pub class_hash: Felt,
}

/// A contract whose class was replaced in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedClass {
    /// Contract address.
    pub contract_address: Felt,
    /// The new class hash.
    pub class_hash: Felt,
}

/// A contract's nonce after the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceUpdate {
    /// Contract address.
    pub contract_address: Felt,
    /// New nonce.
    pub nonce: Felt,
}

/// The state diff of a block, in the shape of Starknet JSON-RPC `STATE_DIFF`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDiff {
    /// Storage writes per contract.
    #[serde(default)]
    pub storage_diffs: Vec<ContractStorageDiff>,
    /// Cairo 0 classes declared (not part of the DA encoding).
    #[serde(default)]
    pub deprecated_declared_classes: Vec<Felt>,
    /// Sierra classes declared.
    #[serde(default)]
    pub declared_classes: Vec<DeclaredClass>,
    /// Contracts deployed.
    #[serde(default)]
    pub deployed_contracts: Vec<DeployedContract>,
    /// Contracts whose class was replaced.
    #[serde(default)]
    pub replaced_classes: Vec<ReplacedClass>,
    /// Nonce updates.
    #[serde(default)]
    pub nonces: Vec<NonceUpdate>,
}

/// A finalized block's state update, in the shape of `starknet_getStateUpdate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// Hash of the block.
    pub block_hash: Felt,
    /// State root before the block.
    pub old_root: Felt,
    /// State root after the block.
    pub new_root: Felt,
    /// What changed.
    pub state_diff: StateDiff,
}

/// A block as the orchestrator needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Height.
    pub number: BlockNumber,
    /// Block hash.
    pub hash: Felt,
    /// State root after the block.
    pub state_root: Felt,
    /// Starknet protocol version of the block (e.g. `0.13.3`), when known.
    pub starknet_version: Option<String>,
}

port! {
    /// The L2 chain orch settles.
    ///
    /// # Contract
    /// - `latest_block` returns the newest block that is final enough to orchestrate, or `None` for
    ///   an empty chain. It never goes backwards between calls on the same source.
    /// - `block` and `state_update` for a block `<= latest_block` always succeed (or fail with a
    ///   retryable error) and return the same value every time; for a block above it they return
    ///   `NotFound`.
    /// - `state_update(n).old_root == state_update(n - 1).new_root` and
    ///   `state_update(n).new_root == block(n).state_root`.
    #[async_trait]
    pub trait ChainSource: Debug + Send + Sync + 'static {
        /// Newest orchestratable block.
        async fn latest_block(&self) -> Result<Option<BlockNumber>>;
        /// Header facts of one block.
        async fn block(&self, number: BlockNumber) -> Result<BlockInfo>;
        /// The state update of one block.
        async fn state_update(&self, number: BlockNumber) -> Result<StateUpdate>;
        /// A contract's nonce after `number` (the DA encoder's nonce oracle).
        async fn nonce_at(&self, number: BlockNumber, contract: Felt) -> Result<Felt>;
    }
}
