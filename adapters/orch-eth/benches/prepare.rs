//! Settlement preparation of a 6-blob batch, orch against c-kzg alone, for both sidecar forms.
//!
//! `CARGO_TARGET_DIR=$HOME/.cache/orch/target-bench cargo bench -p orch-eth --bench prepare`
//!
//! * `orch`: encode (the payload into blobs with `felts_to_blobs`, their commitments, the KZG
//!   segment: `x_0` and the `y_i`) and [`prepare`] (checks, point proofs at `x_0`, sidecar).
//! * `ckzg_sequential`: c-kzg alone, the least it takes for the same result: per blob the
//!   commitment, the point proof at `x_0`, and the blob proof or the cell proofs, one blob after
//!   the other.
//! * `ckzg_parallel`: the same calls spread across blobs on as many threads as `prepare` uses.
//!
//! Criterion measures each; then the binary times the three again in interleaved rounds (so
//! load from other processes hits all of them alike) and prints the medians and the ratios
//! orch / c-kzg. `ORCH_BENCH_ROUNDS` sets the rounds (default 5; 0 skips this step).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use orch_blob::kzg;
use orch_blob::{felts_to_blobs, Blob, KzgDaOutput, X0Formula, FIELD_ELEMENTS_PER_BLOB};
use orch_core::Felt;
use orch_eth::prepare::{prepare, Prepared};
use orch_eth::ProofForm;

const N_BLOBS: usize = 6;

/// The batch: a payload filling six blobs with pseudo-random felts (deterministic, so runs
/// compare), and what c-kzg needs for the same blobs.
struct Inputs {
    payload: Vec<Felt>,
    x_0: c_kzg::Bytes32,
    blobs: Vec<c_kzg::Blob>,
}

fn inputs() -> Inputs {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let payload: Vec<Felt> = (0..N_BLOBS * FIELD_ELEMENTS_PER_BLOB)
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
        .collect();
    let output = encode(&payload).0;
    let blobs = felts_to_blobs(&payload).expect("encodes");
    Inputs {
        x_0: c_kzg::Bytes32::new(output.x_0.to_bytes()),
        blobs: blobs.iter().map(|b| c_kzg::Blob::new(*b.as_bytes())).collect(),
        payload,
    }
}

/// The encode step: blobs, their commitments, the program output's KZG segment.
fn encode(payload: &[Felt]) -> (KzgDaOutput, Vec<Blob>) {
    let blobs = felts_to_blobs(payload).expect("encodes");
    let commitments = kzg::commitments(&blobs).expect("commits");
    let output = KzgDaOutput::from_blobs(payload, &blobs, commitments, X0Formula::V0_13_2).expect("segment");
    (output, blobs)
}

fn orch(inputs: &Inputs, form: ProofForm) -> Prepared {
    let (output, blobs) = encode(&inputs.payload);
    prepare(&output, &blobs, form).expect("prepares")
}

/// [`orch`] with the time of each step: `felts_to_blobs`, commitments, the KZG segment (`x_0`
/// and the `y_i`), `prepare`.
fn orch_steps(inputs: &Inputs, form: ProofForm) -> [Duration; 4] {
    let t = Instant::now();
    let blobs = felts_to_blobs(&inputs.payload).expect("encodes");
    let to_blobs = t.elapsed();
    let t = Instant::now();
    let commitments = kzg::commitments(&blobs).expect("commits");
    let commit = t.elapsed();
    let t = Instant::now();
    let output = KzgDaOutput::from_blobs(&inputs.payload, &blobs, commitments, X0Formula::V0_13_2).expect("segment");
    let segment = t.elapsed();
    let prove = timed(|| prepare(&output, &blobs, form).expect("prepares"));
    [to_blobs, commit, segment, prove]
}

/// What c-kzg alone computes for one blob: commitment, point proof and `y` at `x_0`, and the
/// sidecar proofs.
struct CkzgBlob {
    commitment: c_kzg::KzgCommitment,
    point_proof: c_kzg::KzgProof,
    sidecar_proofs: Vec<c_kzg::KzgProof>,
}

/// The settings c-kzg alone would use: for cell proofs those with orch's precompute (the other
/// calls run at the same speed with either), so the comparison measures orch, not the tables.
fn settings(form: ProofForm) -> &'static c_kzg::KzgSettings {
    match form {
        ProofForm::Blob => c_kzg::ethereum_kzg_settings(0),
        ProofForm::Cell => c_kzg::ethereum_kzg_settings(kzg::CELL_PROOF_PRECOMPUTE),
    }
}

fn ckzg_one(blob: &c_kzg::Blob, x_0: &c_kzg::Bytes32, form: ProofForm) -> CkzgBlob {
    let s = settings(form);
    let commitment = s.blob_to_kzg_commitment(blob).expect("commits");
    let (point_proof, _y) = s.compute_kzg_proof(blob, x_0).expect("opens");
    let sidecar_proofs = match form {
        ProofForm::Blob => vec![s.compute_blob_kzg_proof(blob, &commitment.to_bytes()).expect("proves")],
        ProofForm::Cell => s.compute_cells_and_kzg_proofs(blob).expect("proves").1.to_vec(),
    };
    CkzgBlob { commitment, point_proof, sidecar_proofs }
}

fn ckzg_sequential(inputs: &Inputs, form: ProofForm) -> Vec<CkzgBlob> {
    inputs.blobs.iter().map(|b| ckzg_one(b, &inputs.x_0, form)).collect()
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(N_BLOBS)
}

/// [`ckzg_sequential`] on `prepare`'s thread pool shape: scoped threads taking blobs in order.
fn ckzg_parallel(inputs: &Inputs, form: ProofForm) -> Vec<CkzgBlob> {
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, CkzgBlob)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads())
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(blob) = inputs.blobs.get(i) else { break done };
                        done.push((i, ckzg_one(blob, &inputs.x_0, form)));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("no panic")).collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, b)| b).collect()
}

/// orch and c-kzg agree on every commitment and proof (so both sides compute the same thing).
fn check_same_result(inputs: &Inputs, form: ProofForm) {
    let prepared = orch(inputs, form);
    let reference = ckzg_sequential(inputs, form);
    let (commitments, proofs): (Vec<[u8; 48]>, Vec<[u8; 48]>) = match &prepared.sidecar {
        alloy::eips::eip7594::BlobTransactionSidecarVariant::Eip4844(c) => {
            (c.commitments.iter().map(|x| x.0).collect(), c.proofs.iter().map(|x| x.0).collect())
        }
        alloy::eips::eip7594::BlobTransactionSidecarVariant::Eip7594(c) => {
            (c.commitments.iter().map(|x| x.0).collect(), c.cell_proofs.iter().map(|x| x.0).collect())
        }
    };
    let bytes = |p: &c_kzg::KzgProof| p.to_bytes().into_inner();
    assert_eq!(commitments, reference.iter().map(|r| r.commitment.to_bytes().into_inner()).collect::<Vec<_>>());
    assert_eq!(proofs, reference.iter().flat_map(|r| r.sidecar_proofs.iter().map(bytes)).collect::<Vec<_>>());
    let point: Vec<[u8; 48]> = prepared.point_proofs.iter().map(|p| p.to_bytes()).collect();
    assert_eq!(point, reference.iter().map(|r| bytes(&r.point_proof)).collect::<Vec<_>>());
}

fn form_name(form: ProofForm) -> &'static str {
    match form {
        ProofForm::Blob => "blob_proofs",
        ProofForm::Cell => "cell_proofs",
    }
}

fn prepare_batch(c: &mut Criterion) {
    let inputs = inputs();
    for form in [ProofForm::Blob, ProofForm::Cell] {
        check_same_result(&inputs, form);
        let mut g = c.benchmark_group(format!("prepare_6_blobs/{}", form_name(form)));
        g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
        g.bench_function("orch (encode + prepare, parallel)", |b| b.iter(|| orch(black_box(&inputs), form)));
        g.bench_function("ckzg_sequential", |b| b.iter(|| ckzg_sequential(black_box(&inputs), form)));
        g.bench_function("ckzg_parallel", |b| b.iter(|| ckzg_parallel(black_box(&inputs), form)));
        g.finish();
    }
}

/// Cell proofs of one blob with and without c-kzg's precomputed tables.
fn cell_precompute(c: &mut Criterion) {
    let inputs = inputs();
    let blob = &inputs.blobs[0];
    let mut g = c.benchmark_group("cell_proofs_1_blob");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for precompute in [0, kzg::CELL_PROOF_PRECOMPUTE] {
        let s = c_kzg::ethereum_kzg_settings(precompute);
        g.bench_function(format!("precompute {precompute}"), |b| {
            b.iter(|| s.compute_cells_and_kzg_proofs(black_box(blob)).expect("proves"))
        });
    }
    g.finish();
}

criterion_group!(benches, prepare_batch, cell_precompute);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    black_box(f());
    t.elapsed()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "?".into(), |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn rss_mib() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| "?".into(), |kib| format!("{:.0} MiB", kib / 1024.0))
}

/// The three contenders timed in interleaved rounds, medians and ratios printed.
fn ratios(rounds: usize) {
    let inputs = inputs();
    println!(
        "\n== ratios, measured in this run: {rounds} interleaved rounds, {} threads, load average {} ==",
        threads(),
        load_average()
    );
    println!(
        "{:<12} {:>10} {:>16} {:>14} {:>15} {:>13}",
        "form", "orch", "ckzg_sequential", "ckzg_parallel", "orch/ckzg_seq", "orch/ckzg_par"
    );
    let mut breakdowns = Vec::new();
    for form in [ProofForm::Blob, ProofForm::Cell] {
        let (mut a, mut s, mut p, mut steps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Rotate the order so none always runs first (after an idle gap or a cold cache).
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => {
                        let st = orch_steps(&inputs, form);
                        a.push(st.iter().sum());
                        steps.push(st);
                    }
                    1 => s.push(timed(|| ckzg_sequential(&inputs, form))),
                    _ => p.push(timed(|| ckzg_parallel(&inputs, form))),
                }
            }
        }
        let (a, s, p) = (median(a), median(s), median(p));
        println!(
            "{:<12} {:>8.0}ms {:>14.0}ms {:>12.0}ms {:>14.2}x {:>12.2}x",
            form_name(form),
            a.as_secs_f64() * 1e3,
            s.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3,
            a.as_secs_f64() / s.as_secs_f64(),
            a.as_secs_f64() / p.as_secs_f64()
        );
        let step = |k: usize| median(steps.iter().map(|st: &[Duration; 4]| st[k]).collect()).as_secs_f64() * 1e3;
        breakdowns.push(format!(
            "orch {} steps (medians): felts_to_blobs {:.0}ms, commitments {:.0}ms, KZG segment (x_0, y_i) {:.0}ms, \
             prepare {:.0}ms",
            form_name(form),
            step(0),
            step(1),
            step(2),
            step(3)
        ));
    }
    breakdowns.iter().for_each(|b| println!("{b}"));
    println!("load average after: {}", load_average());
}

fn main() {
    // The settings load once per process; time the first loads before anything uses them.
    let rss_before = rss_mib();
    let t0 = timed(|| c_kzg::ethereum_kzg_settings(0));
    let rss_p0 = rss_mib();
    let t8 = timed(|| c_kzg::ethereum_kzg_settings(kzg::CELL_PROOF_PRECOMPUTE));
    println!(
        "c-kzg settings first load: precompute 0 {:.1} s (RSS {rss_before} -> {rss_p0}), precompute {} {:.1} s \
         more (RSS -> {})",
        t0.as_secs_f64(),
        kzg::CELL_PROOF_PRECOMPUTE,
        t8.as_secs_f64(),
        rss_mib()
    );
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each benchmark once without it.
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds = std::env::var("ORCH_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    if benching && rounds > 0 {
        ratios(rounds);
    }
}
