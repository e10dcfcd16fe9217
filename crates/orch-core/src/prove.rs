//! The [`OsRunner`] and [`Prover`] ports.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::felt::Felt;
use crate::forward::port;
use crate::types::{BlockRange, ChainId};

/// What a Starknet OS run produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsOutput {
    /// The OS program output (what the state transition carries to the core contract).
    pub program_output: Vec<Felt>,
    /// The Cairo PIE, opaque bytes for the prover.
    pub pie: Vec<u8>,
}

port! {
    /// Runs the Starknet OS (SNOS) over blocks.
    ///
    /// # Contract
    /// `run` is deterministic: the same range gives the same output; it has no external side effect,
    /// so the engine may repeat it freely. A range beyond the chain head is `NotFound`.
    #[async_trait]
    pub trait OsRunner: Debug + Send + Sync + 'static {
        /// Run the OS over `range` of `chain`.
        async fn run(&self, chain: &ChainId, range: BlockRange) -> Result<OsOutput>;
    }
}

/// A proving job as the prover sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofRequest {
    /// Idempotency key: the same key always names the same task.
    pub dedup_key: String,
    /// Blocks proven.
    pub range: BlockRange,
    /// The Cairo PIE from the OS run.
    pub pie: Vec<u8>,
}

/// A prover's task handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub String);

/// Where a proving task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofStatus {
    /// Still running.
    Pending,
    /// Done: the proof bytes.
    Succeeded {
        /// The proof.
        proof: Vec<u8>,
    },
    /// The task failed; a new task (new dedup key) is needed.
    Failed {
        /// Why.
        reason: String,
    },
}

port! {
    /// A proving service.
    ///
    /// # Contract
    /// 1. `submit` with a dedup key already submitted returns the same task id and starts no new
    ///    work.
    /// 2. `status` of a known task moves only forward: `Pending` → `Succeeded` | `Failed`, and then
    ///    never changes. An unknown task id is `NotFound`.
    #[async_trait]
    pub trait Prover: Debug + Send + Sync + 'static {
        /// Submit (idempotent on `dedup_key`).
        async fn submit(&self, req: ProofRequest) -> Result<TaskId>;
        /// Poll a task.
        async fn status(&self, task: &TaskId) -> Result<ProofStatus>;
    }
}
