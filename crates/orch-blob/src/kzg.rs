//! KZG commitments and proofs over blobs (c-kzg with the Ethereum mainnet trusted setup), and
//! EIP-4844 versioned hashes.

use std::fmt;
use std::str::FromStr;

use orch_core::Felt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::ntt::fr_from_be;

/// The KZG settings, loaded once per process on first use (c-kzg caches them).
fn settings() -> &'static c_kzg::KzgSettings {
    // Precompute 0: the fastest to load, and only cell proofs (PeerDAS) would gain from more.
    c_kzg::ethereum_kzg_settings(0)
}

fn parse_hex_fixed<const L: usize>(field: &str, s: &str) -> Result<[u8; L]> {
    let t = s.trim();
    let h = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    if h.len() != 2 * L {
        return Err(Error::invalid(field, format!("{} hex digits; expected exactly {} ({L} bytes)", h.len(), 2 * L)));
    }
    let mut out = [0u8; L];
    hex::decode_to_slice(h, &mut out).map_err(|e| Error::InvalidInput {
        field: field.into(),
        reason: format!("not hex: {e}"),
        source: Some(Box::new(e)),
    })?;
    Ok(out)
}

macro_rules! bytes_type {
    ($(#[$doc:meta])* $name:ident, $len:expr, $field:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// From raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn to_bytes(&self) -> [u8; $len] {
                self.0
            }

            /// Parses `0x` + fixed-width hex (the `0x` and surrounding whitespace optional).
            pub fn from_hex(s: &str) -> Result<Self> {
                parse_hex_fixed::<$len>($field, s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "0x{}", hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

bytes_type!(
    /// A 48-byte KZG commitment (compressed G1 point).
    KzgCommitment, 48, "KZG commitment"
);
bytes_type!(
    /// A 48-byte KZG proof (compressed G1 point).
    KzgProof, 48, "KZG proof"
);
bytes_type!(
    /// An EIP-4844 versioned hash: `0x01 ‖ sha256(commitment)[1..32]`.
    VersionedHash, 32, "versioned hash"
);

/// An element of the BLS12-381 scalar field (below r), as 32 big-endian bytes: an evaluation
/// point such as `x_0` or a value such as `y_0`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scalar([u8; 32]);

impl Scalar {
    /// A scalar from 32 big-endian bytes; `field` names the input in the error when `>= r`.
    pub fn from_be_bytes(field: &str, bytes: [u8; 32]) -> Result<Scalar> {
        if fr_from_be(&bytes).is_none() {
            return Err(Error::invalid(
                field,
                format!(
                    "0x{} is not below the BLS12-381 scalar modulus r = \
                     0x73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001",
                    hex::encode(bytes)
                ),
            ));
        }
        Ok(Scalar(bytes))
    }

    /// Parses hex with up to 64 digits (`0x` optional); `field` names the input in errors.
    pub fn from_hex(field: &str, s: &str) -> Result<Scalar> {
        let t = s.trim();
        let h = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        if h.is_empty() || h.len() > 64 {
            return Err(Error::invalid(field, format!("{} hex digits; expected 1 to 64", h.len())));
        }
        let mut padded = [b'0'; 64];
        padded[64 - h.len()..].copy_from_slice(h.as_bytes());
        let mut out = [0u8; 32];
        hex::decode_to_slice(padded, &mut out).map_err(|e| Error::InvalidInput {
            field: field.into(),
            reason: format!("not hex: {e}"),
            source: Some(Box::new(e)),
        })?;
        Scalar::from_be_bytes(field, out)
    }

    /// The 32 big-endian bytes.
    pub const fn to_bytes(&self) -> [u8; 32] {
        self.0
    }
}

impl From<Felt> for Scalar {
    /// Every felt is below p < r.
    fn from(f: Felt) -> Scalar {
        Scalar(f.to_be_bytes())
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Scalar::from_hex("scalar", &s).map_err(serde::de::Error::custom)
    }
}

/// `blob_to_kzg_commitment`.
pub fn commit(blob: &Blob) -> Result<KzgCommitment> {
    let c = settings().blob_to_kzg_commitment(blob.as_ckzg()).map_err(|e| Error::kzg("blob_to_kzg_commitment", e))?;
    Ok(KzgCommitment(c.to_bytes().into_inner()))
}

/// `compute_blob_kzg_proof`: the proof an EIP-4844 sidecar carries.
pub fn blob_proof(blob: &Blob, commitment: &KzgCommitment) -> Result<KzgProof> {
    let p = settings()
        .compute_blob_kzg_proof(blob.as_ckzg(), &c_kzg::Bytes48::new(commitment.0))
        .map_err(|e| Error::kzg("compute_blob_kzg_proof", e))?;
    Ok(KzgProof(p.to_bytes().into_inner()))
}

/// `verify_blob_kzg_proof`. `Ok(false)` for a wrong proof; `Err` for bytes that are not a
/// valid point.
pub fn verify_blob_proof(blob: &Blob, commitment: &KzgCommitment, proof: &KzgProof) -> Result<bool> {
    settings()
        .verify_blob_kzg_proof(blob.as_ckzg(), &c_kzg::Bytes48::new(commitment.0), &c_kzg::Bytes48::new(proof.0))
        .map_err(|e| Error::kzg("verify_blob_kzg_proof", e))
}

/// `compute_kzg_proof`: the proof that the blob's polynomial takes the returned value `y` at
/// `z` (for Starknet, `z = x_0` from the OS output).
pub fn point_proof(blob: &Blob, z: &Scalar) -> Result<(KzgProof, Scalar)> {
    let (p, y) = settings()
        .compute_kzg_proof(blob.as_ckzg(), &c_kzg::Bytes32::new(z.0))
        .map_err(|e| Error::kzg("compute_kzg_proof", e))?;
    let mut yb = [0u8; 32];
    yb.copy_from_slice(y.as_ref());
    Ok((KzgProof(p.to_bytes().into_inner()), Scalar(yb)))
}

/// `verify_kzg_proof`.
pub fn verify_point_proof(commitment: &KzgCommitment, z: &Scalar, y: &Scalar, proof: &KzgProof) -> Result<bool> {
    settings()
        .verify_kzg_proof(
            &c_kzg::Bytes48::new(commitment.0),
            &c_kzg::Bytes32::new(z.0),
            &c_kzg::Bytes32::new(y.0),
            &c_kzg::Bytes48::new(proof.0),
        )
        .map_err(|e| Error::kzg("verify_kzg_proof", e))
}

/// The EIP-4844 versioned hash of a commitment.
pub fn versioned_hash(commitment: &KzgCommitment) -> VersionedHash {
    let mut h: [u8; 32] = Sha256::digest(commitment.0).into();
    h[0] = 0x01;
    VersionedHash(h)
}

/// What an EIP-4844 transaction carries for one blob besides the blob itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSidecar {
    /// KZG commitment.
    pub commitment: KzgCommitment,
    /// Blob proof.
    pub proof: KzgProof,
    /// Versioned hash of the commitment.
    pub versioned_hash: VersionedHash,
}

/// Commitment, blob proof and versioned hash of one blob.
pub fn sidecar(blob: &Blob) -> Result<BlobSidecar> {
    let commitment = commit(blob)?;
    let proof = blob_proof(blob, &commitment)?;
    Ok(BlobSidecar { commitment, proof, versioned_hash: versioned_hash(&commitment) })
}

/// [`sidecar`] of every blob, on up to [`std::thread::available_parallelism`] threads (a
/// commitment and proof is ~125 ms of one core per blob; the blobs are independent). The
/// result is in blob order; the first failure (by blob order) is returned.
pub fn sidecars(blobs: &[Blob]) -> Result<Vec<BlobSidecar>> {
    sidecars_on(blobs, default_threads())
}

/// [`sidecars`] on at most `threads` threads (1: on the calling thread).
pub fn sidecars_on(blobs: &[Blob], threads: usize) -> Result<Vec<BlobSidecar>> {
    par_map(blobs, threads, "sidecar", sidecar)
}

/// [`commit`] to every blob, on up to [`std::thread::available_parallelism`] threads. In blob
/// order; the first failure (by blob order) is returned.
pub fn commitments(blobs: &[Blob]) -> Result<Vec<KzgCommitment>> {
    commitments_on(blobs, default_threads())
}

/// [`commitments`] on at most `threads` threads (1: on the calling thread).
pub fn commitments_on(blobs: &[Blob], threads: usize) -> Result<Vec<KzgCommitment>> {
    par_map(blobs, threads, "blob_to_kzg_commitment", commit)
}

/// Cell proofs (KZG proofs of the extended blob's cells, EIP-7594) per blob.
pub const CELL_PROOFS_PER_BLOB: usize = c_kzg::CELLS_PER_EXT_BLOB;

/// The c-kzg precompute (window bits) of the settings [`cell_proofs`] uses. Only cell proofs
/// use the tables: on a 2-core x86-64 VM, 8 cuts a blob's cell proofs from ~305 ms to ~205 ms
/// for ~100 MiB of tables and ~3 s of extra one-time loading, paid only by a process that
/// makes cell proofs (the other functions here keep the table-free settings).
pub const CELL_PROOF_PRECOMPUTE: u64 = 8;

/// `compute_cells_and_kzg_proofs`, keeping the [`CELL_PROOFS_PER_BLOB`] proofs, in cell order:
/// what an EIP-7594 sidecar carries (nodes recompute the cells from the blob).
pub fn cell_proofs(blob: &Blob) -> Result<Vec<KzgProof>> {
    let (_cells, proofs) = c_kzg::ethereum_kzg_settings(CELL_PROOF_PRECOMPUTE)
        .compute_cells_and_kzg_proofs(blob.as_ckzg())
        .map_err(|e| Error::kzg("compute_cells_and_kzg_proofs", e))?;
    Ok(proofs.iter().map(|p| KzgProof(p.to_bytes().into_inner())).collect())
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` of every blob on at most `threads` scoped threads, in blob order.
fn par_map<T: Send>(
    blobs: &[Blob],
    threads: usize,
    operation: &'static str,
    f: fn(&Blob) -> Result<T>,
) -> Result<Vec<T>> {
    let threads = threads.clamp(1, blobs.len().max(1));
    if threads == 1 {
        return blobs.iter().map(f).collect();
    }
    // Contiguous shares keep the output in blob order without sorting.
    let share = blobs.len().div_ceil(threads);
    let parts: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            blobs.chunks(share).map(|part| scope.spawn(move || part.iter().map(f).collect())).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(Error::Kzg { operation, source: "a proving thread panicked".into() }))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(blobs.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_sidecars_equal_one_by_one_in_blob_order() {
        let blobs: Vec<Blob> = (0..5u8)
            .map(|i| {
                let mut bytes = vec![0u8; crate::BYTES_PER_BLOB];
                // One small distinct element per blob (below the BLS modulus).
                bytes[31] = i + 1;
                bytes[63] = 7 * i;
                Blob::from_bytes(&bytes).unwrap()
            })
            .collect();
        let one_by_one: Vec<_> = blobs.iter().map(|b| sidecar(b).unwrap()).collect();
        for threads in [1, 2, 3, 8] {
            assert_eq!(sidecars_on(&blobs, threads).unwrap(), one_by_one, "{threads} threads");
        }
        assert_eq!(sidecars(&blobs).unwrap(), one_by_one);
        assert!(sidecars(&[]).unwrap().is_empty());
        let commitments_one_by_one: Vec<_> = one_by_one.iter().map(|s| s.commitment).collect();
        for threads in [1, 2, 8] {
            assert_eq!(commitments_on(&blobs, threads).unwrap(), commitments_one_by_one, "{threads} threads");
        }
    }

    #[test]
    fn scalar_rejects_values_at_or_above_r() {
        let r = "0x73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001";
        let err = Scalar::from_hex("x_0", r).unwrap_err();
        assert!(err.to_string().contains("x_0"), "{err}");
        let below = "0x73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000000";
        assert!(Scalar::from_hex("x_0", below).is_ok());
    }

    #[test]
    fn commitment_hex_round_trips() {
        let s = "0x80f3ffd8f64bb2558910bb58f6f197e24dc624a977e5df21d83e2d254129c70d894b81c5118956ed4d9704b500a5a277";
        let c: KzgCommitment = s.parse().unwrap();
        assert_eq!(c.to_string(), s);
        assert!(KzgCommitment::from_hex("0x1234").is_err());
    }
}
