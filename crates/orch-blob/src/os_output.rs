//! Reading the KZG DA segment (`x_0`, commitments, `y_i`) from the Starknet OS program output
//! (vectors README §4), and proving the blobs against it.

use orch_core::Felt;
use serde::{Deserialize, Serialize};

use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::kzg::{self, KzgCommitment, KzgProof, Scalar};
use crate::u256::U256;

/// Index of `use_kzg_da` in the OS output header.
pub const USE_KZG_DA_INDEX: usize = 8;
/// Index of `x_0` (the OS calls it `z`).
pub const X0_INDEX: usize = 10;
/// Index of the number of blobs.
pub const N_BLOBS_INDEX: usize = 11;

const WHAT: &str = "program output";

/// The KZG DA part of a Starknet OS program output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KzgDaOutput {
    /// The evaluation point every blob is opened at.
    pub x_0: Scalar,
    /// Each blob's KZG commitment, as the OS committed to it.
    pub commitments: Vec<KzgCommitment>,
    /// Each blob's polynomial evaluated at `x_0`.
    pub y: Vec<Scalar>,
}

fn limb(output: &[Felt], index: usize, bits: u32, name: &str) -> Result<U256> {
    let f = output
        .get(index)
        .ok_or_else(|| Error::malformed(WHAT, output.len(), format!("output ends before {name} at index {index}")))?;
    let v = U256::from_felt(f);
    if v.bits() > bits {
        return Err(Error::malformed(WHAT, index, format!("{name} is {f}, wider than its {bits} bits")));
    }
    Ok(v)
}

impl KzgDaOutput {
    /// Reads the segment: `[10] x_0`, `[11] n_blobs`, then each commitment as (low 192 bits,
    /// high 192 bits), then each `y_i` as (low 128 bits, high 128 bits).
    pub fn parse(output: &[Felt]) -> Result<KzgDaOutput> {
        let use_kzg = output
            .get(USE_KZG_DA_INDEX)
            .ok_or_else(|| Error::malformed(WHAT, output.len(), "output is shorter than the OS header"))?;
        if *use_kzg != Felt::ONE {
            return Err(Error::malformed(
                WHAT,
                USE_KZG_DA_INDEX,
                format!("use_kzg_da is {use_kzg}, not 1: this block's DA does not use blobs"),
            ));
        }
        let x_0 = Scalar::from(
            *output.get(X0_INDEX).ok_or_else(|| Error::malformed(WHAT, output.len(), "output ends before x_0"))?,
        );
        let n_felt = output
            .get(N_BLOBS_INDEX)
            .ok_or_else(|| Error::malformed(WHAT, output.len(), "output ends before n_blobs"))?;
        let n = n_felt
            .to_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n >= 1 && N_BLOBS_INDEX + 1 + 4 * n <= output.len())
            .ok_or_else(|| {
                Error::malformed(
                    WHAT,
                    N_BLOBS_INDEX,
                    format!(
                        "n_blobs is {n_felt}; it must be at least 1 and the output ({} felts) \
                         must hold 4 felts per blob after it",
                        output.len()
                    ),
                )
            })?;
        let base = N_BLOBS_INDEX + 1;
        let mut commitments = Vec::with_capacity(n);
        for i in 0..n {
            let low = limb(output, base + 2 * i, 192, &format!("commitment {i} low"))?;
            let high = limb(output, base + 2 * i + 1, 192, &format!("commitment {i} high"))?;
            let mut bytes = [0u8; 48];
            bytes[..24].copy_from_slice(&high.to_be_bytes()[8..]);
            bytes[24..].copy_from_slice(&low.to_be_bytes()[8..]);
            commitments.push(KzgCommitment::from_bytes(bytes));
        }
        let base = base + 2 * n;
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let low = limb(output, base + 2 * i, 128, &format!("y_{i} low"))?;
            let high = limb(output, base + 2 * i + 1, 128, &format!("y_{i} high"))?;
            let v = high.shl(128).or(low);
            y.push(Scalar::from_be_bytes(
                &format!("y_{i} (program output [{}..={}])", base + 2 * i, base + 2 * i + 1),
                v.to_be_bytes(),
            )?);
        }
        Ok(KzgDaOutput { x_0, commitments, y })
    }

    /// The point-evaluation proof of each blob at `x_0`, for `updateStateKzgDA`. Checks, per
    /// blob, that the blob's commitment is the one the OS committed to, that the evaluation is
    /// the OS's `y_i`, and that the proof verifies.
    pub fn prove(&self, blobs: &[Blob]) -> Result<Vec<KzgProof>> {
        if blobs.len() != self.commitments.len() {
            return Err(Error::Mismatch {
                field: "number of blobs".into(),
                expected: self.commitments.len().to_string(),
                actual: blobs.len().to_string(),
            });
        }
        let mut proofs = Vec::with_capacity(blobs.len());
        for (i, blob) in blobs.iter().enumerate() {
            let commitment = kzg::commit(blob)?;
            if commitment != self.commitments[i] {
                return Err(Error::Mismatch {
                    field: format!("KZG commitment of blob {i}"),
                    expected: self.commitments[i].to_string(),
                    actual: commitment.to_string(),
                });
            }
            let (proof, y) = kzg::point_proof(blob, &self.x_0)?;
            if y != self.y[i] {
                return Err(Error::Mismatch {
                    field: format!("y_{i} (blob {i} evaluated at x_0)"),
                    expected: self.y[i].to_string(),
                    actual: y.to_string(),
                });
            }
            if !kzg::verify_point_proof(&commitment, &self.x_0, &y, &proof)? {
                return Err(Error::Mismatch {
                    field: format!("KZG point proof of blob {i}"),
                    expected: "a proof that verifies".into(),
                    actual: proof.to_string(),
                });
            }
            proofs.push(proof);
        }
        Ok(proofs)
    }
}
