//! Radix-2 NTT over the BLS12-381 scalar field, size 4096, in the orders EIP-4844 needs.
//!
//! A decimation-in-frequency forward transform takes coefficients in natural order and leaves
//! the evaluations in bit-reversed order, which is exactly the blob layout
//! (`blob[i] = P(ω^brev12(i))`); the decimation-in-time inverse takes that order back to natural
//! coefficients. So neither direction needs a permutation pass.
//!
//! Both transforms are linear, so they run directly on the raw integers read as Montgomery
//! representations: an input `x` stands for `x·R⁻¹`, the output then stands for `T(x)·R⁻¹`, whose
//! Montgomery representation is the integer `T(x)` itself. That saves a Montgomery conversion per
//! element on the way in and on the way out (a quarter of the work of a 4096-point transform).

use std::sync::OnceLock;

use ark_bls12_381::Fr;
use ark_ff::{BigInt, Field, One, PrimeField};

/// Elements per blob.
pub(crate) const N: usize = 4096;
const LOG_N: u32 = 12;

struct Tables {
    /// `fwd[h + j] = ω_{2h}^j` for each stage half-width `h` (a power of two) and `j < h`:
    /// every stage's twiddles are contiguous, so the inner loop streams through memory.
    fwd: Vec<Fr>,
    /// The same for ω⁻¹, except that the last stage's entries (`h = N/2`) are pre-multiplied by
    /// 4096⁻¹, folding the final scaling into that stage.
    inv: Vec<Fr>,
    /// 4096⁻¹.
    n_inv: Fr,
}

fn stage_table(root: Fr) -> Vec<Fr> {
    let mut t = vec![Fr::one(); N];
    let mut h = 1;
    while h < N {
        // ω_{2h} = root^(N / 2h)
        let base = root.pow([(N / (2 * h)) as u64]);
        let mut w = Fr::one();
        for slot in &mut t[h..2 * h] {
            *slot = w;
            w *= base;
        }
        h *= 2;
    }
    t
}

/// ω = 7^((r-1)/4096), the root EIP-4844 and c-kzg use.
pub(crate) fn omega() -> Fr {
    let mut e = Fr::MODULUS.0;
    // r - 1: r is odd, so only the lowest limb changes.
    e[0] -= 1;
    // (r - 1) >> 12
    for i in 0..4 {
        e[i] >>= LOG_N;
        if i + 1 < 4 {
            e[i] |= e[i + 1] << (64 - LOG_N);
        }
    }
    Fr::from(7u64).pow(e)
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let w = omega();
        // ω is a primitive root of unity, hence non-zero and invertible.
        let w_inv = w.inverse().unwrap_or_default();
        let n_inv = Fr::from(N as u64).inverse().unwrap_or_default();
        let mut inv = stage_table(w_inv);
        for x in &mut inv[N / 2..] {
            *x *= n_inv;
        }
        Tables { fwd: stage_table(w), inv, n_inv }
    })
}

/// Natural-order coefficients → bit-reversed evaluations, in place. `a.len()` must be `N`.
pub(crate) fn forward(a: &mut [Fr]) {
    debug_assert_eq!(a.len(), N);
    let tw = &tables().fwd;
    let mut h = N / 2;
    while h >= 1 {
        // Twiddle 0 of every block is 1: skipping its multiplication saves ~N of the
        // N/2·log2(N) multiplications.
        let w = &tw[h + 1..2 * h];
        for block in a.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            let (u, v) = (lo[0], hi[0]);
            lo[0] = u + v;
            hi[0] = u - v;
            for ((u, v), w) in lo[1..].iter_mut().zip(&mut hi[1..]).zip(w) {
                let t = *u - *v;
                *u += *v;
                *v = t * w;
            }
        }
        h /= 2;
    }
}

/// Bit-reversed evaluations → natural-order coefficients, in place. `a.len()` must be `N`.
pub(crate) fn inverse(a: &mut [Fr]) {
    debug_assert_eq!(a.len(), N);
    let t = tables();
    // The only twiddle of the first stage is 1.
    for pair in a.chunks_exact_mut(2) {
        let (u, v) = (pair[0], pair[1]);
        pair[0] = u + v;
        pair[1] = u - v;
    }
    let mut h = 2;
    while h < N / 2 {
        // As in `forward`, twiddle 0 of every block is 1.
        let w = &t.inv[h + 1..2 * h];
        for block in a.chunks_exact_mut(2 * h) {
            let (lo, hi) = block.split_at_mut(h);
            let (u, v) = (lo[0], hi[0]);
            lo[0] = u + v;
            hi[0] = u - v;
            for ((u, v), w) in lo[1..].iter_mut().zip(&mut hi[1..]).zip(w) {
                let t = *v * w;
                *v = *u - t;
                *u += t;
            }
        }
        h *= 2;
    }
    // Last stage, with the 4096⁻¹ scaling folded in (its twiddles already carry it).
    let (lo, hi) = a.split_at_mut(N / 2);
    for ((u, v), w) in lo.iter_mut().zip(hi.iter_mut()).zip(&t.inv[N / 2..]) {
        let s = *u * t.n_inv;
        let t = *v * w;
        *u = s + t;
        *v = s - t;
    }
}

/// Reads 32 big-endian bytes as a raw Montgomery representation (see the module docs); `None`
/// when the integer is not below r.
pub(crate) fn load_raw(b: &[u8]) -> Option<Fr> {
    let limbs = be_to_limbs(b)?;
    let x = Fr::new_unchecked(BigInt(limbs));
    (BigInt(limbs) < Fr::MODULUS).then_some(x)
}

/// Writes the raw Montgomery representation of `x` as 32 big-endian bytes (see the module docs).
pub(crate) fn store_raw(x: &Fr, out: &mut [u8]) {
    limbs_to_be(&(x.0).0, out);
}

fn be_to_limbs(b: &[u8]) -> Option<[u64; 4]> {
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let start = 32 - 8 * (i + 1);
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(b.get(start..start + 8)?);
        *limb = u64::from_be_bytes(chunk);
    }
    Some(limbs)
}

fn limbs_to_be(limbs: &[u64; 4], out: &mut [u8]) {
    for (i, limb) in limbs.iter().enumerate() {
        let start = 32 - 8 * (i + 1);
        out[start..start + 8].copy_from_slice(&limb.to_be_bytes());
    }
}

/// A scalar from 32 big-endian bytes; `None` when it is not below r.
pub(crate) fn fr_from_be(b: &[u8]) -> Option<Fr> {
    Fr::from_bigint(BigInt(be_to_limbs(b)?))
}

/// The 32 big-endian bytes of a scalar's canonical value.
pub(crate) fn fr_to_be(x: &Fr) -> [u8; 32] {
    let mut out = [0u8; 32];
    limbs_to_be(&x.into_bigint().0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brev12(i: usize) -> usize {
        i.reverse_bits() >> (usize::BITS - LOG_N)
    }

    #[test]
    fn omega_is_the_eip4844_root() {
        let w = omega();
        let expected: Fr =
            "39033254847818212395286706435128746857159659164139250548781411570340225835782".parse().unwrap();
        assert_eq!(w, expected);
        assert_eq!(w.pow([2048u64]), -Fr::one());
        assert_eq!(w.pow([4096u64]), Fr::one());
    }

    #[test]
    fn forward_matches_naive_evaluation_in_bit_reversed_order() {
        let mut a = vec![Fr::from(0u64); N];
        for (j, c) in a.iter_mut().enumerate().take(40) {
            *c = Fr::from((j * j + 3) as u64);
        }
        let coeffs = a.clone();
        forward(&mut a);
        let w = omega();
        for i in [0usize, 1, 2, 3, 100, 4095] {
            let x = w.pow([brev12(i) as u64]);
            let mut y = Fr::from(0u64);
            for c in coeffs.iter().rev() {
                y = y * x + c;
            }
            assert_eq!(a[i], y, "element {i}");
        }
        inverse(&mut a);
        assert_eq!(a, coeffs);
    }
}
