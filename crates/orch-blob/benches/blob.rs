//! Blob transform and DA-step benchmarks.
//!
//! `cargo bench -p orch-blob --bench blob -- --warm-up-time 1 --measurement-time 3`

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use num_bigint::BigUint;
use orch_blob::{kzg, Blob, KzgDaOutput, X0Formula, FIELD_ELEMENTS_PER_BLOB};
use orch_core::Felt;

/// 4096 pseudo-random felts (deterministic, so runs compare).
fn full_felts() -> Vec<Felt> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..FIELD_ELEMENTS_PER_BLOB)
        .map(|_| {
            let mut b = [0u8; 32];
            for chunk in b.chunks_exact_mut(8) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                chunk.copy_from_slice(&s.to_be_bytes());
            }
            b[0] &= 0x07; // below 2^251 < p
            Felt::from_be_bytes(b).expect("below the prime")
        })
        .collect()
}

fn transforms(c: &mut Criterion) {
    let felts = full_felts();
    let blob = Blob::from_felts(&felts).expect("4096 felts fit one blob");
    let mut g = c.benchmark_group("transform");
    g.bench_function("blob_to_felts (inverse NTT, full blob)", |b| {
        b.iter(|| black_box(&blob).to_felts().expect("decodes"))
    });
    g.bench_function("felts_to_blob (forward NTT, full blob)", |b| {
        b.iter(|| Blob::from_felts(black_box(&felts)).expect("encodes"))
    });
    g.bench_function("blob_from_hex + to_hex", |b| {
        let hex = blob.to_hex();
        b.iter(|| Blob::from_hex(black_box(&hex)).expect("parses").to_hex())
    });
    g.finish();
}

fn da_step(c: &mut Criterion) {
    let felts = full_felts();
    let blob = Blob::from_felts(&felts).expect("4096 felts fit one blob");
    // Load the trusted setup outside the measurement.
    let _ = kzg::commit(&blob);
    let mut g = c.benchmark_group("da_step_per_blob");
    g.sample_size(20);
    g.bench_function("orch-blob: encode + commitment + blob proof", |b| {
        b.iter(|| {
            let blob = Blob::from_felts(black_box(&felts)).expect("encodes");
            kzg::sidecar(&blob).expect("proves")
        })
    });
    g.bench_function("c-kzg alone: commitment + blob proof", |b| {
        let settings = c_kzg::ethereum_kzg_settings(0);
        let raw = c_kzg::Blob::from_bytes(blob.as_bytes()).expect("valid blob");
        b.iter(|| {
            let c = settings.blob_to_kzg_commitment(black_box(&raw)).expect("commits");
            settings.compute_blob_kzg_proof(&raw, &c.to_bytes()).expect("proves")
        })
    });
    g.finish();
}

/// What c-kzg's precomputation setting buys: its one-time load cost (printed; it happens once
/// per process, so it is timed once, not sampled) and commitment + blob proof per setting.
fn kzg_precompute(c: &mut Criterion) {
    let blob = Blob::from_felts(&full_felts()).expect("4096 felts fit one blob");
    let raw = c_kzg::Blob::from_bytes(blob.as_bytes()).expect("valid blob");
    let mut g = c.benchmark_group("kzg_precompute (commitment + blob proof)");
    g.sample_size(10);
    for precompute in [0u64, 8] {
        let start = std::time::Instant::now();
        let settings = c_kzg::ethereum_kzg_settings(precompute);
        eprintln!("c-kzg trusted setup load with precompute {precompute}: {:.2?}", start.elapsed());
        g.bench_function(format!("precompute {precompute}"), |b| {
            b.iter(|| {
                let c = settings.blob_to_kzg_commitment(black_box(&raw)).expect("commits");
                settings.compute_blob_kzg_proof(&raw, &c.to_bytes()).expect("proves")
            })
        });
    }
    g.finish();
}

/// What parallelism across blobs buys: the sidecars of one 6-blob transaction on one thread
/// vs on every core (`kzg::sidecars`).
fn kzg_parallel(c: &mut Criterion) {
    let felts = full_felts();
    let blobs: Vec<Blob> = (0..6)
        .map(|i| {
            let mut f = felts.clone();
            f.rotate_left(i * 97); // six different blobs
            Blob::from_felts(&f).expect("4096 felts fit one blob")
        })
        .collect();
    let _ = kzg::commit(&blobs[0]);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("sidecars_of_6_blobs");
    g.sample_size(10);
    g.bench_function("1 thread", |b| b.iter(|| kzg::sidecars_on(black_box(&blobs), 1).expect("proves")));
    g.bench_function(format!("{threads} threads (kzg::sidecars)"), |b| {
        b.iter(|| kzg::sidecars(black_box(&blobs)).expect("proves"))
    });
    g.finish();
}

/// What building a KZG-DA program output costs per full blob, beside the commitment: `x_0`
/// (Poseidon over the 4096 felts and the commitment) and `y` by evaluating the coefficients.
fn os_output(c: &mut Criterion) {
    let felts = full_felts();
    let blob = Blob::from_felts(&felts).expect("4096 felts fit one blob");
    let commitment = kzg::commit(&blob).expect("commits");
    let mut g = c.benchmark_group("os_output_per_blob");
    g.sample_size(20);
    g.bench_function("x_0 (Poseidon, 0.13.2+ formula)", |b| {
        b.iter(|| X0Formula::V0_13_2.x_0(black_box(&felts), &[commitment]).expect("hashes"))
    });
    g.bench_function("KzgDaOutput::from_blobs (x_0 + y)", |b| {
        b.iter(|| {
            KzgDaOutput::from_blobs(
                black_box(&felts),
                std::slice::from_ref(&blob),
                vec![commitment],
                X0Formula::V0_13_2,
            )
            .expect("builds")
        })
    });
    g.bench_function("kzg::commit", |b| b.iter(|| kzg::commit(black_box(&blob)).expect("commits")));
    g.finish();
}

fn majin_comparison(c: &mut Criterion) {
    let blob = Blob::from_felts(&full_felts()).expect("4096 felts fit one blob");
    let elements: Vec<BigUint> = blob.as_bytes().chunks_exact(32).map(BigUint::from_bytes_be).collect();
    // Same answer first, so the timing compares like with like.
    let theirs = majin_blob_core::blob::recover(elements.clone());
    let ours = blob.to_felts().expect("decodes");
    assert!(theirs.iter().zip(&ours).all(|(t, o)| *t == BigUint::from_bytes_be(o.as_be_bytes())));

    let mut g = c.benchmark_group("blob_to_felts_vs_majin");
    g.sample_size(10);
    g.bench_function("orch-blob", |b| b.iter(|| black_box(&blob).to_felts().expect("decodes")));
    g.bench_function("majin-blob-core 0.1.3 blob::recover", |b| {
        b.iter_batched(|| elements.clone(), |e| majin_blob_core::blob::recover(black_box(e)), BatchSize::LargeInput)
    });
    g.finish();
}

criterion_group!(benches, transforms, da_step, kzg_precompute, kzg_parallel, os_output, majin_comparison);
criterion_main!(benches);
