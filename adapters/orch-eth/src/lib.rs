#![doc = include_str!("../README.md")]

pub mod abi;
mod config;
mod error;
mod settlement;
pub mod sidecar;

pub use config::{EthConfig, SidecarForm};
pub use settlement::{BlobSource, EthSettlement, StagedBlobs};
pub use sidecar::ProofForm;

/// The core contract stand-in's compiled artefact (ABI and creation bytecode), built by
/// `scripts/build-contracts.sh` from `contracts/StarknetCoreStandIn.sol`. For tests and local
/// devnets: it checks state continuity and blob openings but no STARK proof.
pub const STAND_IN_ARTEFACT: &str = include_str!("../contracts/StarknetCoreStandIn.json");
