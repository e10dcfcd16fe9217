//! Blob sidecars in the two forms nodes accept: EIP-4844 blob proofs (Cancun, Prague) and
//! EIP-7594 cell proofs (Osaka and later). c-kzg computes both, with the Ethereum trusted setup.

use alloy::eips::eip7594::BlobTransactionSidecarVariant;
use orch_blob::Blob;
use orch_core::error::Result;

/// Which proofs a sidecar carries; [`crate::SidecarForm::Auto`] resolved against the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofForm {
    /// One blob proof per blob.
    Blob,
    /// 128 cell proofs per blob.
    Cell,
}

/// The sidecar of `blobs` in `form`, on up to [`std::thread::available_parallelism`] threads:
/// per blob a commitment and a blob proof (about 0.15 s of one core) or the cell proofs (about
/// 0.3 s). Call it off the async runtime. For a KZG-DA state update,
/// [`crate::prepare::prepare`] makes the same sidecar and the point proofs together, without
/// recomputing commitments the program output already has.
pub fn build(blobs: &[Blob], form: ProofForm) -> Result<BlobTransactionSidecarVariant> {
    crate::prepare::sidecar(blobs, form)
}
