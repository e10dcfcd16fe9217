#![doc = include_str!("../README.md")]

pub mod abi;
mod artifacts;
mod config;
mod error;
pub mod prepare;
mod settlement;
pub mod sidecar;
mod txm;

pub use artifacts::StorageBlobs;
pub use config::{EthConfig, SidecarForm, Wei};
pub use settlement::{BlobSource, EthSettlement, StagedBlobs};
pub use sidecar::ProofForm;
pub use txm::{read_books, Books, PendingTx};

/// The core contract stand-in's compiled artefact (ABI and creation bytecode), built by
/// `scripts/build-contracts.sh` from `contracts/StarknetCoreStandIn.sol`. For tests and local
/// devnets: it checks state continuity and blob openings but no STARK proof.
pub const STAND_IN_ARTEFACT: &str = include_str!("../contracts/StarknetCoreStandIn.json");
