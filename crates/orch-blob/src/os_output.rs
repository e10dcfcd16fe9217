//! The Starknet OS program output of a batch with KZG DA (vectors README §4): reading its KZG
//! segment (`x_0`, commitments, `y_i`) and proving the blobs against it, and building it.
//!
//! ```text
//! [0..10)   header (OsOutputHeader): roots, block numbers and hashes, program and config
//!           hashes, use_kzg_da = 1, full_output = 0
//! [10]      x_0, the point every blob is opened at (the OS calls it z)
//! [11]      n_blobs
//! then      each blob's KZG commitment as (low 192 bits, high 192 bits)
//! then      each y_i = P_i(x_0) as (low 128 bits, high 128 bits)
//! then      the L2→L1 and L1→L2 message segments, each its length then its felts
//! ```
//!
//! # Which `x_0`
//!
//! The OS derives `x_0` from the data it publishes and the blobs' commitments with the Starknet
//! Poseidon hash ([`X0Formula`]). 0.13.1 allowed one blob; 0.13.2 hashes any number of
//! commitments; from 0.13.3 the hashed data is the stateless-compressed felt list, the same list
//! that goes into the blobs. [`KzgDaOutput::build`] uses the formula of the version it is given;
//! orch's devnet builds with 0.13.3 (the 0.13.2 formula over compressed data), which is what
//! current Starknet OS versions and Madara's SNOS runs produce (0.13.4 adds stateful
//! compression, which orch-blob does not implement).

use ark_bls12_381::Fr;
use orch_core::felt::STARK_PRIME;
use orch_core::Felt;
use serde::{Deserialize, Serialize};
use starknet_crypto::{poseidon_hash, poseidon_hash_many, Felt as PoseidonFelt};

use crate::blob::{Blob, FIELD_ELEMENTS_PER_BLOB};
use crate::error::{Error, Result};
use crate::kzg::{self, KzgCommitment, KzgProof, Scalar};
use crate::ntt::{fr_from_be, fr_to_be};
use crate::u256::U256;
use crate::version::StarknetVersion;
use crate::Encoded;

/// Index of `use_kzg_da` in the OS output header.
pub const USE_KZG_DA_INDEX: usize = 8;
/// Index of `x_0` (the OS calls it `z`).
pub const X0_INDEX: usize = 10;
/// Index of the number of blobs.
pub const N_BLOBS_INDEX: usize = 11;
/// Length of the OS output header.
pub const HEADER_LEN: usize = 10;

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

/// The header of a Starknet OS program output: the first [`HEADER_LEN`] felts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsOutputHeader {
    /// State root before the batch.
    pub initial_root: Felt,
    /// State root after the batch.
    pub final_root: Felt,
    /// The block before the batch's first ([`OsOutputHeader::block_before`]).
    pub prev_block_number: Felt,
    /// The batch's last block.
    pub new_block_number: Felt,
    /// Hash of the block before the batch (0 before block 0).
    pub prev_block_hash: Felt,
    /// Hash of the batch's last block.
    pub new_block_hash: Felt,
    /// Hash of the OS program that ran.
    pub os_program_hash: Felt,
    /// Hash of the OS config (chain id, fee token).
    pub starknet_os_config_hash: Felt,
    /// The state diff went to blobs (KZG DA) rather than into the output.
    pub use_kzg_da: bool,
    /// The output carries the full state diff (with previous values).
    pub full_output: bool,
}

fn flag(output: &[Felt], index: usize, name: &str) -> Result<bool> {
    match output[index] {
        f if f == Felt::ZERO => Ok(false),
        f if f == Felt::ONE => Ok(true),
        f => Err(Error::malformed(WHAT, index, format!("{name} is {f}, not 0 or 1"))),
    }
}

impl OsOutputHeader {
    /// The header's felts, in output order.
    pub fn to_felts(&self) -> [Felt; HEADER_LEN] {
        let bit = |b: bool| if b { Felt::ONE } else { Felt::ZERO };
        [
            self.initial_root,
            self.final_root,
            self.prev_block_number,
            self.new_block_number,
            self.prev_block_hash,
            self.new_block_hash,
            self.os_program_hash,
            self.starknet_os_config_hash,
            bit(self.use_kzg_da),
            bit(self.full_output),
        ]
    }

    /// Reads the header from the start of a program output.
    pub fn parse(output: &[Felt]) -> Result<OsOutputHeader> {
        if output.len() < HEADER_LEN {
            return Err(Error::malformed(
                WHAT,
                output.len(),
                format!("{} felts, shorter than the {HEADER_LEN}-felt OS header", output.len()),
            ));
        }
        Ok(OsOutputHeader {
            initial_root: output[0],
            final_root: output[1],
            prev_block_number: output[2],
            new_block_number: output[3],
            prev_block_hash: output[4],
            new_block_hash: output[5],
            os_program_hash: output[6],
            starknet_os_config_hash: output[7],
            use_kzg_da: flag(output, USE_KZG_DA_INDEX, "use_kzg_da")?,
            full_output: flag(output, USE_KZG_DA_INDEX + 1, "full_output")?,
        })
    }

    /// `prev_block_number` of a batch starting at `first`: `first − 1` in the field, so −1
    /// (p − 1) before block 0, as the OS computes it.
    pub fn block_before(first: u64) -> Felt {
        match first.checked_sub(1) {
            Some(n) => Felt::from_u64(n),
            None => {
                let mut p_minus_1 = STARK_PRIME;
                // p ends in 0x01, so no borrow.
                p_minus_1[31] -= 1;
                Felt::from_be_bytes(p_minus_1).unwrap_or(Felt::ZERO)
            }
        }
    }
}

/// How the OS derives `x_0` from the published data and the blob commitments (see the
/// [module docs](self)). `H` is the Starknet Poseidon hash of two felts, `H_many` that of a
/// list; each 48-byte commitment enters as its low and high 192 bits ([`commitment_felts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum X0Formula {
    /// OS 0.13.1, exactly one blob: `H(H_many(data), H(low, high))`.
    V0_13_1,
    /// OS 0.13.2 and later, any number of blobs:
    /// `H(H_many(data), H_many([low_0, high_0, low_1, high_1, …]))`.
    V0_13_2,
}

impl X0Formula {
    /// The formula of the OS of `version`; versions before 0.13.1 had no KZG DA.
    pub fn for_version(version: StarknetVersion) -> Result<X0Formula> {
        if version < StarknetVersion::new(0, 13, 1, 0) {
            Err(Error::Unsupported {
                feature: format!("KZG DA for Starknet version {version}"),
                reason: "blobs carry Starknet state diffs from 0.13.1 on".into(),
            })
        } else if version < StarknetVersion::V0_13_2 {
            Ok(X0Formula::V0_13_1)
        } else {
            Ok(X0Formula::V0_13_2)
        }
    }

    /// `x_0` for the DA felts `data` (exactly the felts that fill the blobs, without padding:
    /// from 0.13.3 the compressed list) and the blobs' commitments.
    pub fn x_0(self, data: &[Felt], commitments: &[KzgCommitment]) -> Result<Felt> {
        let data_hash = poseidon_hash_many(&data.iter().map(poseidon_felt).collect::<Vec<_>>());
        let commitments_hash = match self {
            X0Formula::V0_13_1 => {
                let [c] = commitments else {
                    return Err(Error::Mismatch {
                        field: "number of blobs (the 0.13.1 OS commits to one)".into(),
                        expected: "1".into(),
                        actual: commitments.len().to_string(),
                    });
                };
                let (low, high) = commitment_felts(c);
                poseidon_hash(poseidon_felt(&low), poseidon_felt(&high))
            }
            X0Formula::V0_13_2 => {
                let limbs: Vec<PoseidonFelt> = commitments
                    .iter()
                    .flat_map(|c| {
                        let (low, high) = commitment_felts(c);
                        [poseidon_felt(&low), poseidon_felt(&high)]
                    })
                    .collect();
                poseidon_hash_many(&limbs)
            }
        };
        Felt::from_be_bytes(poseidon_hash(data_hash, commitments_hash).to_bytes_be())
            .map_err(|e| Error::from_core("x_0", e))
    }
}

fn poseidon_felt(f: &Felt) -> PoseidonFelt {
    PoseidonFelt::from_bytes_be(f.as_be_bytes())
}

/// A commitment as the OS writes it: `(low 192 bits, high 192 bits)` of its 48 bytes read as a
/// big-endian integer.
pub fn commitment_felts(c: &KzgCommitment) -> (Felt, Felt) {
    let bytes = c.to_bytes();
    let limb = |part: &[u8]| {
        let mut b = [0u8; 32];
        b[8..].copy_from_slice(part);
        // 192 bits: far below the prime.
        Felt::from_be_bytes(b).unwrap_or(Felt::ZERO)
    };
    (limb(&bytes[24..]), limb(&bytes[..24]))
}

/// `(low 128 bits, high 128 bits)` of a scalar.
fn scalar_felts(y: &Scalar) -> (Felt, Felt) {
    let b = y.to_bytes();
    let mut low = [0u8; 32];
    let mut high = [0u8; 32];
    low[16..].copy_from_slice(&b[16..]);
    high[16..].copy_from_slice(&b[..16]);
    (Felt::from_be_bytes(low).unwrap_or(Felt::ZERO), Felt::from_be_bytes(high).unwrap_or(Felt::ZERO))
}

/// The value at `x` of the polynomial with coefficients `coeffs` (lowest degree first).
fn evaluate(coeffs: &[Felt], x: &Fr) -> Result<Fr> {
    let mut y = Fr::from(0u64);
    for c in coeffs.iter().rev() {
        // Every felt is below p < r.
        let c = fr_from_be(c.as_be_bytes())
            .ok_or_else(|| Error::invalid("DA felt", format!("{c} is not below the BLS12-381 modulus")))?;
        y = y * x + c;
    }
    Ok(y)
}

/// A KZG-DA program output built together with the blobs it commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KzgDaBatch {
    /// The OS program output: header, KZG segment, empty message segments.
    pub program_output: Vec<Felt>,
    /// Its KZG segment.
    pub kzg: KzgDaOutput,
    /// The encoded state diff; `encoded.blobs[i]` is committed to by `kzg.commitments[i]`.
    pub encoded: Encoded,
}

impl KzgDaOutput {
    /// The KZG segment for `payload` split into `blobs` (`blobs[i]` holding
    /// `payload[4096·i .. 4096·(i+1)]`, as [`crate::felts_to_blobs`] makes them) with the given
    /// commitments of those blobs: `x_0` by `formula`, each `y_i` by evaluating blob `i`'s
    /// coefficients at `x_0` (no KZG proof needed).
    pub fn from_blobs(
        payload: &[Felt],
        blobs: &[Blob],
        commitments: Vec<KzgCommitment>,
        formula: X0Formula,
    ) -> Result<KzgDaOutput> {
        let n_blobs = payload.len().div_ceil(FIELD_ELEMENTS_PER_BLOB);
        if blobs.len() != n_blobs || commitments.len() != n_blobs || n_blobs == 0 {
            return Err(Error::Mismatch {
                field: "number of blobs and commitments".into(),
                expected: format!("{n_blobs} of each for {} DA felts (at least 1)", payload.len()),
                actual: format!("{} blobs, {} commitments", blobs.len(), commitments.len()),
            });
        }
        let x_0 = formula.x_0(payload, &commitments)?;
        let x = fr_from_be(x_0.as_be_bytes())
            .ok_or_else(|| Error::invalid("x_0", format!("{x_0} is not below the BLS12-381 modulus")))?;
        let y = payload
            .chunks(FIELD_ELEMENTS_PER_BLOB)
            .enumerate()
            .map(|(i, chunk)| {
                let y = evaluate(chunk, &x)?;
                Scalar::from_be_bytes(&format!("y_{i}"), fr_to_be(&y))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KzgDaOutput { x_0: Scalar::from(x_0), commitments, y })
    }

    /// The segment's felts: `x_0`, `n_blobs`, the commitments, the `y_i`.
    pub fn to_felts(&self) -> Vec<Felt> {
        let mut out = Vec::with_capacity(2 + 4 * self.commitments.len());
        // x_0 comes from a felt (Poseidon) or from a parsed output: it is below p.
        out.push(Felt::from_be_bytes(self.x_0.to_bytes()).unwrap_or(Felt::ZERO));
        out.push(Felt::from_u64(self.commitments.len() as u64));
        for c in &self.commitments {
            let (low, high) = commitment_felts(c);
            out.extend([low, high]);
        }
        for y in &self.y {
            let (low, high) = scalar_felts(y);
            out.extend([low, high]);
        }
        out
    }

    /// The program output of a batch with no L1↔L2 messages: `header` (whose `use_kzg_da` must
    /// be set and `full_output` not), this segment, then two empty message segments.
    pub fn program_output(&self, header: &OsOutputHeader) -> Result<Vec<Felt>> {
        if !header.use_kzg_da || header.full_output {
            return Err(Error::invalid(
                "OS output header",
                "a KZG DA output has use_kzg_da = 1 and full_output = 0 (the diff is in the blobs)",
            ));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + 4 + 4 * self.commitments.len());
        out.extend(header.to_felts());
        out.extend(self.to_felts());
        // Message segments: L2→L1 then L1→L2, each its length in felts and then the messages.
        out.extend([Felt::ZERO, Felt::ZERO]);
        Ok(out)
    }

    /// Builds the program output of a batch whose state diff is `encoded`, as the OS of
    /// `version` writes it: commits to the blobs ([`kzg::commitments`]), derives `x_0` and the
    /// `y_i` ([`Self::from_blobs`]) and lays out the output ([`Self::program_output`]).
    ///
    /// `encoded` must use `version`'s encoding (from 0.13.3 on: compressed), since `x_0` hashes
    /// the payload. More than [`crate::MAX_BLOBS_PER_TRANSACTION`] blobs are built as they are;
    /// settling them on Ethereum in one transaction is then impossible, so a batch for Ethereum
    /// must be cut to fit.
    pub fn build(header: &OsOutputHeader, encoded: Encoded, version: StarknetVersion) -> Result<KzgDaBatch> {
        let commitments = kzg::commitments(&encoded.blobs)?;
        Self::build_with_commitments(header, encoded, version, commitments)
    }

    /// [`Self::build`] with the blobs' commitments already computed (by a caller that caches
    /// them: a commitment is the expensive part).
    pub fn build_with_commitments(
        header: &OsOutputHeader,
        encoded: Encoded,
        version: StarknetVersion,
        commitments: Vec<KzgCommitment>,
    ) -> Result<KzgDaBatch> {
        let kzg = Self::from_blobs(&encoded.payload, &encoded.blobs, commitments, X0Formula::for_version(version)?)?;
        let program_output = kzg.program_output(header)?;
        Ok(KzgDaBatch { program_output, kzg, encoded })
    }

    /// Number of felts [`Self::to_felts`] writes for `n_blobs` blobs.
    pub const fn segment_len(n_blobs: usize) -> usize {
        2 + 4 * n_blobs
    }
}
