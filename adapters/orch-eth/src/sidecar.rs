//! Blob sidecars in the two forms nodes accept: EIP-4844 blob proofs (Cancun, Prague) and
//! EIP-7594 cell proofs (Osaka and later). c-kzg computes both, with the Ethereum trusted setup.

use alloy::eips::eip4844::{Blob as EthBlob, BlobTransactionSidecar};
use alloy::eips::eip7594::{BlobTransactionSidecarEip7594, BlobTransactionSidecarVariant};
use alloy::primitives::FixedBytes;
use orch_blob::kzg;
use orch_blob::Blob;
use orch_core::error::{Error, Result};

/// Which proofs a sidecar carries; [`crate::SidecarForm::Auto`] resolved against the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofForm {
    /// One blob proof per blob.
    Blob,
    /// 128 cell proofs per blob.
    Cell,
}

fn kzg_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

/// The sidecar of `blobs` in `form`. Costs about 0.1 s of one core per blob for blob proofs
/// and about 1 s for cell proofs; call it off the async runtime.
pub fn build(blobs: &[Blob], form: ProofForm) -> Result<BlobTransactionSidecarVariant> {
    let eth_blobs: Vec<EthBlob> = blobs.iter().map(|b| EthBlob::from_slice(b.as_bytes())).collect();
    match form {
        ProofForm::Blob => {
            let cars = kzg::sidecars(blobs).map_err(|e| kzg_err("blob proofs", e))?;
            let commitments = cars.iter().map(|c| FixedBytes(c.commitment.to_bytes())).collect();
            let proofs = cars.iter().map(|c| FixedBytes(c.proof.to_bytes())).collect();
            Ok(BlobTransactionSidecar::new(eth_blobs, commitments, proofs).into())
        }
        ProofForm::Cell => {
            // The same settings (precompute 0) orch-blob loads, so the setup loads once.
            let settings = c_kzg::ethereum_kzg_settings(0);
            let mut commitments = Vec::with_capacity(blobs.len());
            let mut cell_proofs = Vec::with_capacity(blobs.len() * c_kzg::CELLS_PER_EXT_BLOB);
            for blob in blobs {
                commitments.push(FixedBytes(kzg::commit(blob).map_err(|e| kzg_err("commitment", e))?.to_bytes()));
                let ckzg = c_kzg::Blob::new(*blob.as_bytes());
                let (_cells, proofs) =
                    settings.compute_cells_and_kzg_proofs(&ckzg).map_err(|e| kzg_err("cell proofs", e))?;
                cell_proofs.extend(proofs.iter().map(|p| FixedBytes(p.to_bytes().into_inner())));
            }
            Ok(BlobTransactionSidecarEip7594::new(eth_blobs, commitments, cell_proofs).into())
        }
    }
}
