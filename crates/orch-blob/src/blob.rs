//! EIP-4844 blobs: felts ⇄ blobs (vectors README §3.6) and blob hex I/O (§3.7).

use std::fmt;
use std::io;

use ark_bls12_381::Fr;
use ark_ff::Zero;
use orch_core::Felt;

use crate::error::{Error, Result};
use crate::ntt::{self, load_raw, store_raw};

/// Field elements in one blob.
pub const FIELD_ELEMENTS_PER_BLOB: usize = 4096;
/// Bytes in one blob (4096 × 32).
pub const BYTES_PER_BLOB: usize = FIELD_ELEMENTS_PER_BLOB * 32;
/// Length of a blob in the `test_blob` hex format.
pub const HEX_CHARS_PER_BLOB: usize = 2 * BYTES_PER_BLOB;
/// The most blobs one Starknet state-update transaction carries (the OS and Ethereum limit).
pub const MAX_BLOBS_PER_TRANSACTION: usize = 6;

/// One EIP-4844 blob: 4096 field elements, each 32 bytes big-endian and below the BLS12-381
/// scalar modulus r (checked on construction, so c-kzg never rejects it).
#[derive(Clone, PartialEq, Eq)]
pub struct Blob(Box<c_kzg::Blob>);

impl Blob {
    /// The all-zero blob.
    pub fn zeroed() -> Blob {
        Blob(Box::default())
    }

    /// A blob from its 131 072 bytes; errors on a wrong length or an element `>= r`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Blob> {
        if bytes.len() != BYTES_PER_BLOB {
            return Err(Error::invalid("blob", format!("{} bytes; a blob has exactly {BYTES_PER_BLOB}", bytes.len())));
        }
        if let Some(i) = bytes.chunks_exact(32).position(|e| load_raw(e).is_none()) {
            return Err(Error::invalid(
                format!("blob element {i}"),
                format!("0x{} is not below the BLS12-381 scalar modulus r", hex::encode(&bytes[32 * i..32 * i + 32])),
            ));
        }
        let mut b = Blob::zeroed();
        b.0.copy_from_slice(bytes);
        Ok(b)
    }

    /// Parses a blob in hex: 262 144 hex digits, optionally with a `0x` prefix and surrounding
    /// whitespace (a trailing newline, as in files written by other tools).
    pub fn from_hex(s: &str) -> Result<Blob> {
        let t = s.trim();
        let h = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        if let Some((i, c)) = h.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(Error::invalid("blob hex", format!("character {c:?} at offset {i} is not a hex digit")));
        }
        if h.len() != HEX_CHARS_PER_BLOB {
            return Err(Error::invalid(
                "blob hex",
                format!("{} hex digits; a blob has exactly {HEX_CHARS_PER_BLOB}", h.len()),
            ));
        }
        let mut bytes = vec![0u8; BYTES_PER_BLOB];
        hex::decode_to_slice(h, &mut bytes).map_err(|e| Error::InvalidInput {
            field: "blob hex".into(),
            reason: e.to_string(),
            source: Some(Box::new(e)),
        })?;
        Blob::from_bytes(&bytes)
    }

    /// The 131 072 bytes.
    pub fn as_bytes(&self) -> &[u8; BYTES_PER_BLOB] {
        &self.0
    }

    /// Element `i` (0..4096) as 32 big-endian bytes, `None` out of range.
    pub fn element(&self, i: usize) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.get(32 * i..32 * i + 32)?);
        Some(out)
    }

    /// The `test_blob` format: 262 144 lowercase hex digits, no `0x`, no newline.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Writes [`Self::to_hex`] to `w`.
    pub fn write_hex(&self, mut w: impl io::Write) -> io::Result<()> {
        w.write_all(self.to_hex().as_bytes())
    }

    /// Transforms up to 4096 felts, read as polynomial coefficients (lowest degree first,
    /// zero-padded), into the blob of the polynomial's evaluations in bit-reversed order.
    pub fn from_felts(felts: &[Felt]) -> Result<Blob> {
        if felts.len() > FIELD_ELEMENTS_PER_BLOB {
            return Err(Error::TooLarge {
                what: "felts for one blob (use felts_to_blobs)",
                len: felts.len(),
                max: FIELD_ELEMENTS_PER_BLOB,
            });
        }
        let mut a = scratch();
        for (slot, f) in a.iter_mut().zip(felts) {
            // Every felt is below p < r.
            *slot = load_raw(f.as_be_bytes())
                .ok_or_else(|| Error::invalid("felt", format!("{f} is not below the BLS12-381 modulus")))?;
        }
        ntt::forward(&mut a);
        let mut b = Blob::zeroed();
        for (x, out) in a.iter().zip(b.0.chunks_exact_mut(32)) {
            store_raw(x, out);
        }
        Ok(b)
    }

    /// The polynomial's 4096 coefficients as 32-byte big-endian scalars (each below r).
    pub fn to_coefficients(&self) -> Vec<[u8; 32]> {
        let a = self.inverse_transform();
        a.iter()
            .map(|x| {
                let mut out = [0u8; 32];
                store_raw(x, &mut out);
                out
            })
            .collect()
    }

    /// The polynomial's 4096 coefficients as felts; errors when one is not below the Starknet
    /// prime (the blob does not hold Starknet DA data).
    pub fn to_felts(&self) -> Result<Vec<Felt>> {
        self.to_felts_at(0)
    }

    fn to_felts_at(&self, blob_index: usize) -> Result<Vec<Felt>> {
        self.to_coefficients()
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                Felt::from_be_bytes(c).map_err(|_| {
                    Error::malformed(
                        "blob coefficients",
                        blob_index * FIELD_ELEMENTS_PER_BLOB + i,
                        format!(
                            "coefficient {i} of blob {blob_index} is 0x{}, not below the \
                             Starknet prime: this blob does not carry Starknet DA felts",
                            hex::encode(c)
                        ),
                    )
                })
            })
            .collect()
    }

    fn inverse_transform(&self) -> Vec<Fr> {
        let mut a = scratch();
        for (slot, e) in a.iter_mut().zip(self.0.chunks_exact(32)) {
            // Elements were checked to be below r when the blob was built.
            *slot = load_raw(e).unwrap_or_default();
        }
        ntt::inverse(&mut a);
        a
    }

    pub(crate) fn as_ckzg(&self) -> &c_kzg::Blob {
        &self.0
    }
}

fn scratch() -> Vec<Fr> {
    // On the heap: 128 KiB arrays on the stack are a risk for small thread stacks.
    vec![Fr::zero(); ntt::N]
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonzero = self.0.chunks_exact(32).filter(|e| e.iter().any(|b| *b != 0)).count();
        write!(f, "Blob {{ 0x{}…, {nonzero} non-zero elements }}", hex::encode(&self.0[..8]))
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Splits a felt list into chunks of 4096 and transforms each into one blob; the last chunk is
/// zero-padded. Never truncates: `ceil(len / 4096)` blobs (none for an empty list).
pub fn felts_to_blobs(felts: &[Felt]) -> Result<Vec<Blob>> {
    felts.chunks(FIELD_ELEMENTS_PER_BLOB).map(Blob::from_felts).collect()
}

/// The coefficients of all blobs, concatenated (4096 felts per blob, padding included).
pub fn blobs_to_felts(blobs: &[Blob]) -> Result<Vec<Felt>> {
    let mut out = Vec::with_capacity(blobs.len() * FIELD_ELEMENTS_PER_BLOB);
    for (i, b) in blobs.iter().enumerate() {
        out.extend(b.to_felts_at(i)?);
    }
    Ok(out)
}

/// Groups blobs (or their proofs, commitments, ...) into transactions of at most
/// [`MAX_BLOBS_PER_TRANSACTION`], in order.
pub fn split_into_transactions<T>(items: &[T]) -> std::slice::Chunks<'_, T> {
    items.chunks(MAX_BLOBS_PER_TRANSACTION)
}
