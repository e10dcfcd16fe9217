//! Everything a KZG-DA state update carries for its blobs, computed once per blob and in
//! parallel across blobs: the point proofs at `x_0` for `updateStateKzgDA`, checked against the
//! program output, and the blob sidecar in either [`ProofForm`].
//!
//! # Why no commitment is computed
//!
//! The output's commitment `C_i` is checked with a pairing instead of recomputing the
//! commitment (a 4096-point multi-scalar multiplication, as costly as a proof). The point proof
//! `π` and `y` at `x_0` are computed from the blob, so `π = [q(τ)]` with
//! `q(X)·(X − x_0) = p(X) − y` exactly. `verify_kzg_proof(C_i, x_0, y, π)` checks
//! `C_i − [y] = (τ − x_0)·π = [p(τ) − y]`, which holds exactly when `C_i = [p(τ)]`, the blob's
//! commitment. So a proof that verifies against the output's commitment proves that commitment
//! is the blob's, and the sidecar can carry it. Only a failed check recomputes the commitment,
//! to say which value is wrong.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use alloy::eips::eip4844::{Blob as EthBlob, BlobTransactionSidecar};
use alloy::eips::eip7594::{BlobTransactionSidecarEip7594, BlobTransactionSidecarVariant};
use alloy::primitives::FixedBytes;
use orch_blob::kzg::{self, KzgCommitment, KzgProof};
use orch_blob::{Blob, KzgDaOutput};
use orch_core::error::{Error, Result};

use crate::sidecar::ProofForm;

/// What [`prepare`] computes for a KZG-DA state update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The blobs with their commitments and proofs in the requested form.
    pub sidecar: BlobTransactionSidecarVariant,
    /// Each blob's proof of opening to `y_i` at `x_0`: `updateStateKzgDA`'s `kzgProofs`.
    pub point_proofs: Vec<KzgProof>,
}

/// Checks `blobs` against the program output's KZG segment and computes the point proofs and
/// the sidecar in `form`, on up to [`std::thread::available_parallelism`] threads. Costs about
/// two proofs per blob for blob proofs and one proof plus the cell proofs for cell proofs (see
/// [`crate::sidecar::build`]); call it off the async runtime.
///
/// Errors name the first failing blob (by index): `InvalidInput` when a blob does not match
/// the output's commitment or does not open to its `y_i`, or when the counts differ.
pub fn prepare(output: &KzgDaOutput, blobs: &[Blob], form: ProofForm) -> Result<Prepared> {
    prepare_on(output, blobs, form, default_threads())
}

/// [`prepare`] on at most `threads` threads (1: on the calling thread).
pub fn prepare_on(output: &KzgDaOutput, blobs: &[Blob], form: ProofForm, threads: usize) -> Result<Prepared> {
    if blobs.len() != output.commitments.len() || blobs.len() != output.y.len() {
        return Err(Error::invalid_input(
            "blobs",
            format!(
                "{} blobs for a program output that commits to {} blobs and gives {} values y_i",
                blobs.len(),
                output.commitments.len(),
                output.y.len()
            ),
        ));
    }
    let parts = per_blob(blobs.len(), threads, |i| {
        let point_proof = open_at_x0(output, i, &blobs[i])?;
        let commitment = output.commitments[i];
        Ok((point_proof, BlobParts { commitment, proofs: sidecar_proofs(i, &blobs[i], &commitment, form)? }))
    })?;
    let (point_proofs, parts): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    Ok(Prepared { sidecar: assemble(blobs, parts, form), point_proofs })
}

/// The sidecar of `blobs` in `form` with no program output to check against: each commitment is
/// computed. In parallel as [`prepare`].
pub(crate) fn sidecar(blobs: &[Blob], form: ProofForm) -> Result<BlobTransactionSidecarVariant> {
    sidecar_on(blobs, form, default_threads())
}

/// [`sidecar`] on at most `threads` threads.
pub(crate) fn sidecar_on(blobs: &[Blob], form: ProofForm, threads: usize) -> Result<BlobTransactionSidecarVariant> {
    let parts = per_blob(blobs.len(), threads, |i| {
        let commitment = kzg::commit(&blobs[i]).map_err(|e| kzg_failed(i, e))?;
        Ok(BlobParts { commitment, proofs: sidecar_proofs(i, &blobs[i], &commitment, form)? })
    })?;
    Ok(assemble(blobs, parts, form))
}

/// One blob's share of a sidecar.
struct BlobParts {
    commitment: KzgCommitment,
    /// One blob proof, or [`kzg::CELL_PROOFS_PER_BLOB`] cell proofs.
    proofs: Vec<KzgProof>,
}

/// Blob `i`'s point proof at `x_0`, after checking it opens to `y_i` and that the output's
/// commitment is the blob's (see the [module docs](self)).
fn open_at_x0(output: &KzgDaOutput, i: usize, blob: &Blob) -> Result<KzgProof> {
    let (proof, y) = kzg::point_proof(blob, &output.x_0).map_err(|e| kzg_failed(i, e))?;
    let expected = output.commitments[i];
    if y != output.y[i] {
        // Either the blob is another one, or the output's y_i is wrong: the commitment tells.
        commitment_matches(i, blob, &expected)?;
        return Err(Error::invalid_input(
            "blobs",
            format!(
                "blob {i} does not open to y_{i} at x_0: the program output has {}, the blob gives {y}",
                output.y[i]
            ),
        ));
    }
    // `Err`: the output's commitment is not a point of the group, so not the blob's either.
    if !kzg::verify_point_proof(&expected, &output.x_0, &y, &proof).unwrap_or(false) {
        commitment_matches(i, blob, &expected)?;
        // Unreachable unless c-kzg contradicts itself: the commitment is the blob's, yet its
        // own proof does not verify.
        return Err(Error::internal(format!(
            "blob {i}: the point proof {proof} at x_0 does not verify against the blob's own commitment {expected}"
        )));
    }
    Ok(proof)
}

/// `Ok` if `expected` is blob `i`'s commitment, else the error naming both.
fn commitment_matches(i: usize, blob: &Blob, expected: &KzgCommitment) -> Result<()> {
    let actual = kzg::commit(blob).map_err(|e| kzg_failed(i, e))?;
    if actual == *expected {
        return Ok(());
    }
    Err(Error::invalid_input(
        "blobs",
        format!("blob {i}'s commitment does not match the program output's: the output has {expected}, the blob's is {actual}"),
    ))
}

fn sidecar_proofs(i: usize, blob: &Blob, commitment: &KzgCommitment, form: ProofForm) -> Result<Vec<KzgProof>> {
    match form {
        ProofForm::Blob => Ok(vec![kzg::blob_proof(blob, commitment).map_err(|e| kzg_failed(i, e))?]),
        ProofForm::Cell => kzg::cell_proofs(blob).map_err(|e| kzg_failed(i, e)),
    }
}

/// c-kzg refusing a blob orch-blob already validated is a bug, not bad input.
fn kzg_failed(i: usize, e: orch_blob::Error) -> Error {
    Error::internal_from(format!("blob {i}: {e}"), e)
}

fn assemble(blobs: &[Blob], parts: Vec<BlobParts>, form: ProofForm) -> BlobTransactionSidecarVariant {
    let eth_blobs: Vec<EthBlob> = blobs.iter().map(|b| EthBlob::from_slice(b.as_bytes())).collect();
    let commitments = parts.iter().map(|p| FixedBytes(p.commitment.to_bytes())).collect();
    let proofs = parts.iter().flat_map(|p| p.proofs.iter().map(|q| FixedBytes(q.to_bytes()))).collect();
    match form {
        ProofForm::Blob => BlobTransactionSidecar::new(eth_blobs, commitments, proofs).into(),
        ProofForm::Cell => BlobTransactionSidecarEip7594::new(eth_blobs, commitments, proofs).into(),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f(i)` for every blob index `i < n` on at most `threads` scoped threads, in index order. On
/// failure, the error of the lowest failing index.
fn per_blob<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return (0..n).map(f).collect();
    }
    // Indices are handed out in order, so once blob j fails every blob before it is already
    // taken and finishes: stopping there still finds the lowest failing index.
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = || {
        let mut done = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            let r = f(i);
            failed.fetch_or(r.is_err(), Ordering::Relaxed);
            done.push((i, r));
        }
        done
    };
    let mut slots: Vec<Option<Result<T>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
        for h in handles {
            // A panicked thread loses its results: its blobs are left `None` below.
            if let Ok(done) = h.join() {
                done.into_iter().for_each(|(i, r)| slots[i] = Some(r));
            }
        }
    });
    let mut out = Vec::with_capacity(n);
    for (i, slot) in slots.into_iter().enumerate() {
        match slot {
            Some(r) => out.push(r?),
            // Not reached because an earlier blob failed (returned above) or its thread panicked.
            None => {
                return Err(Error::internal(format!("a proving thread panicked before blob {i}'s result was kept")))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use orch_blob::{felts_to_blobs, Scalar, X0Formula, FIELD_ELEMENTS_PER_BLOB};
    use orch_core::Felt;

    use super::*;

    /// `n` pseudo-random felts (below 2^251 < p), deterministic per seed.
    fn felts(n: usize, seed: u64) -> Vec<Felt> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                for chunk in b.chunks_exact_mut(8) {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    chunk.copy_from_slice(&s.to_be_bytes());
                }
                b[0] &= 0x07;
                Felt::from_be_bytes(b).expect("below 2^251")
            })
            .collect()
    }

    /// A program output's KZG segment with the blobs it commits to, as the DA job builds them.
    fn batch(n_blobs: usize, seed: u64) -> (KzgDaOutput, Vec<Blob>) {
        let payload = felts(n_blobs * FIELD_ELEMENTS_PER_BLOB - 17, seed);
        let blobs = felts_to_blobs(&payload).expect("encodes");
        let commitments = kzg::commitments(&blobs).expect("commits");
        let output = KzgDaOutput::from_blobs(&payload, &blobs, commitments, X0Formula::V0_13_2).expect("segment");
        (output, blobs)
    }

    /// Three blobs, built once for every test (a commitment is ~0.1 s per blob).
    fn three() -> &'static (KzgDaOutput, Vec<Blob>) {
        static BATCH: OnceLock<(KzgDaOutput, Vec<Blob>)> = OnceLock::new();
        BATCH.get_or_init(|| batch(3, 0x5eed))
    }

    fn ckzg_blob(blob: &Blob) -> Box<c_kzg::Blob> {
        Box::new(c_kzg::Blob::new(*blob.as_bytes()))
    }

    fn bytes48(b: &FixedBytes<48>) -> c_kzg::Bytes48 {
        c_kzg::Bytes48::new(b.0)
    }

    fn err_of(r: Result<Prepared>) -> String {
        r.expect_err("the mismatch is found").to_string()
    }

    #[test]
    fn blob_form_sidecar_and_point_proofs_verify_with_ckzg() {
        let (output, blobs) = three();
        let prepared = prepare(output, blobs, ProofForm::Blob).unwrap();
        let BlobTransactionSidecarVariant::Eip4844(car) = &prepared.sidecar else {
            panic!("blob proofs make an EIP-4844 sidecar: {:?}", prepared.sidecar);
        };
        let settings = c_kzg::ethereum_kzg_settings(0);
        let ck: Vec<c_kzg::Blob> = blobs.iter().map(|b| *ckzg_blob(b)).collect();
        let commitments: Vec<_> = car.commitments.iter().map(bytes48).collect();
        let proofs: Vec<_> = car.proofs.iter().map(bytes48).collect();
        assert!(settings.verify_blob_kzg_proof_batch(&ck, &commitments, &proofs).unwrap());
        assert_eq!(car.blobs.len(), 3);
        for (i, blob) in blobs.iter().enumerate() {
            assert_eq!(car.blobs[i].as_slice(), blob.as_bytes().as_slice());
            assert_eq!(car.commitments[i].0, output.commitments[i].to_bytes());
            let ok = settings
                .verify_kzg_proof(
                    &c_kzg::Bytes48::new(output.commitments[i].to_bytes()),
                    &c_kzg::Bytes32::new(output.x_0.to_bytes()),
                    &c_kzg::Bytes32::new(output.y[i].to_bytes()),
                    &c_kzg::Bytes48::new(prepared.point_proofs[i].to_bytes()),
                )
                .unwrap();
            assert!(ok, "point proof of blob {i}");
        }
    }

    #[test]
    fn cell_form_sidecar_verifies_and_equals_ckzg_cell_proofs() {
        let (output, blobs) = batch(2, 0xce11);
        let prepared = prepare(&output, &blobs, ProofForm::Cell).unwrap();
        let BlobTransactionSidecarVariant::Eip7594(car) = &prepared.sidecar else {
            panic!("cell proofs make an EIP-7594 sidecar: {:?}", prepared.sidecar);
        };
        let n = kzg::CELL_PROOFS_PER_BLOB;
        assert_eq!(car.cell_proofs.len(), 2 * n);
        let settings = c_kzg::ethereum_kzg_settings(0);
        let (mut commitments, mut indices, mut cells) = (Vec::new(), Vec::new(), Vec::new());
        for (i, blob) in blobs.iter().enumerate() {
            let (blob_cells, proofs) = settings.compute_cells_and_kzg_proofs(&ckzg_blob(blob)).unwrap();
            for (k, p) in proofs.iter().enumerate() {
                assert_eq!(car.cell_proofs[i * n + k].0, p.to_bytes().into_inner(), "blob {i} cell {k}");
            }
            commitments.extend(std::iter::repeat_n(bytes48(&car.commitments[i]), n));
            indices.extend(0..n as u64);
            cells.extend(blob_cells.iter().cloned());
        }
        let proofs: Vec<_> = car.cell_proofs.iter().map(bytes48).collect();
        assert!(settings.verify_cell_kzg_proof_batch(&commitments, &indices, &cells, &proofs).unwrap());
        assert_eq!(prepared.point_proofs, output.prove(&blobs).unwrap());
        assert_eq!(prepare_on(&output, &blobs, ProofForm::Cell, 1).unwrap(), prepared);
        assert_eq!(crate::sidecar::build(&blobs, ProofForm::Cell).unwrap(), prepared.sidecar);
    }

    #[test]
    fn parallel_prepare_equals_the_sequential_path() {
        let (output, blobs) = three();
        // The sequential path before `prepare`: `KzgDaOutput::prove`, then commitment and blob
        // proof per blob.
        let point_proofs = output.prove(blobs).unwrap();
        let mut commitments = Vec::new();
        let mut proofs = Vec::new();
        for blob in blobs {
            let c = kzg::commit(blob).unwrap();
            proofs.push(FixedBytes(kzg::blob_proof(blob, &c).unwrap().to_bytes()));
            commitments.push(FixedBytes(c.to_bytes()));
        }
        let eth_blobs = blobs.iter().map(|b| EthBlob::from_slice(b.as_bytes())).collect();
        let sequential =
            Prepared { sidecar: BlobTransactionSidecar::new(eth_blobs, commitments, proofs).into(), point_proofs };
        for threads in [1, 2, 3, 8] {
            assert_eq!(prepare_on(output, blobs, ProofForm::Blob, threads).unwrap(), sequential, "{threads} threads");
            assert_eq!(sidecar_on(blobs, ProofForm::Blob, threads).unwrap(), sequential.sidecar, "{threads} threads");
        }
        assert_eq!(crate::sidecar::build(blobs, ProofForm::Blob).unwrap(), sequential.sidecar);
    }

    #[test]
    fn wrong_blob_is_reported_with_its_index() {
        let (output, blobs) = three();
        let (_, others) = batch(1, 0xbad);
        for threads in [1, 2] {
            let mut wrong = blobs.clone();
            wrong[1] = others[0].clone();
            let e = err_of(prepare_on(output, &wrong, ProofForm::Blob, threads));
            assert!(e.contains("blob 1's commitment does not match the program output's"), "{e}");
            // With two wrong blobs, the first is reported.
            wrong[2] = others[0].clone();
            let e = err_of(prepare_on(output, &wrong, ProofForm::Blob, threads));
            assert!(e.contains("blob 1's commitment"), "{threads} threads: {e}");
        }
    }

    #[test]
    fn wrong_commitment_is_reported_with_its_index() {
        let (output, blobs) = three();
        let mut wrong = output.clone();
        // A valid point, but another blob's commitment.
        wrong.commitments[2] = output.commitments[0];
        let e = err_of(prepare(&wrong, blobs, ProofForm::Blob));
        assert!(e.contains("blob 2's commitment does not match the program output's"), "{e}");
        assert!(
            e.contains(&output.commitments[0].to_string()) && e.contains(&output.commitments[2].to_string()),
            "{e}"
        );
        // Not a point at all.
        wrong.commitments[2] = KzgCommitment::from_bytes([0xab; 48]);
        let e = err_of(prepare(&wrong, blobs, ProofForm::Cell));
        assert!(e.contains("blob 2's commitment does not match the program output's"), "{e}");
    }

    #[test]
    fn wrong_y_is_reported_with_its_index() {
        let (output, blobs) = three();
        let mut wrong = output.clone();
        wrong.y[0] = Scalar::from(Felt::ONE);
        let e = err_of(prepare(&wrong, blobs, ProofForm::Blob));
        assert!(e.contains("blob 0 does not open to y_0 at x_0"), "{e}");
        assert!(e.contains(&output.y[0].to_string()), "names the blob's value: {e}");
    }

    #[test]
    fn per_blob_keeps_index_order_and_reports_the_lowest_failure() {
        for threads in [1, 2, 3, 8] {
            assert_eq!(per_blob(5, threads, |i| Ok(i * 10)).unwrap(), vec![0, 10, 20, 30, 40]);
            let e = per_blob(5, threads, |i| if i % 2 == 1 { Err(Error::internal(format!("no {i}"))) } else { Ok(i) });
            assert!(e.unwrap_err().to_string().contains("no 1"), "{threads} threads");
        }
        assert!(per_blob(0, 4, Ok).unwrap().is_empty());
    }

    #[test]
    fn per_blob_turns_a_panicking_thread_into_an_error() {
        let e = per_blob(4, 2, |i| if i == 2 { panic!("blob {i} panics (expected by the test)") } else { Ok(i) });
        assert!(e.unwrap_err().to_string().contains("a proving thread panicked"));
    }

    #[test]
    fn blob_count_must_match_the_output() {
        let (output, blobs) = three();
        let e = err_of(prepare(output, &blobs[..2], ProofForm::Blob));
        assert!(e.contains("2 blobs for a program output that commits to 3"), "{e}");
    }

    #[test]
    fn proofs_match_the_651053_vector() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors/kzg_x0/651053"));
        if !dir.is_dir() {
            assert!(std::env::var_os("ORCH_REQUIRE_SERVICES").is_none(), "{} is missing", dir.display());
            eprintln!("skipping: {} not found", dir.display());
            return;
        }
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let blob = Blob::from_hex(&read("blob_data.txt")).unwrap();
        let output = KzgDaOutput {
            x_0: Scalar::from_hex("x_0", &read("x_0.txt")).unwrap(),
            commitments: vec![KzgCommitment::from_hex(
                "0xb69c72ffcc17345445c59e6653cbe0fca28731518b980ba392e8f8056296c6b13469e1b4ba207aa918ff049f173f2a16",
            )
            .unwrap()],
            y: vec![
                Scalar::from_hex("y_0", "0x56dfb3107555c11bd069a2ed79df311f6cbe62d70b86112e1d7094c906fcdb8d").unwrap()
            ],
        };
        let prepared = prepare(&output, &[blob], ProofForm::Blob).unwrap();
        assert_eq!(prepared.point_proofs, vec![KzgProof::from_hex(&read("kzg_proof.txt")).unwrap()]);
        let BlobTransactionSidecarVariant::Eip4844(car) = prepared.sidecar else { panic!("EIP-4844 sidecar") };
        assert_eq!(
            KzgProof::from_bytes(car.proofs[0].0).to_string(),
            "0xa6c4dfcd43233f8807b48bfdb8407f7728d303dfe5620cee8ebfff44c1b830de0142cff88c713dbb63396d18b2c48c54"
        );
    }
}
