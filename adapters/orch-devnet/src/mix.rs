//! Cheap deterministic mixing: every simulated value is a pure function of the seed and a few
//! integers, so nothing needs storing and two runs with one seed agree bit for bit.
//!
//! Not cryptographic: these functions only have to spread well and be fast (the pipeline asks
//! for thousands of state updates per second).

use orch_core::Felt;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finalizer: a bijection on `u64` with good avalanche.
pub(crate) const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit hash of a few words (order matters).
pub(crate) fn h64(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3_u64;
    for p in parts {
        h = mix(h ^ *p).wrapping_add(GOLDEN);
    }
    mix(h)
}

/// A 64-bit fingerprint of bytes (8-byte words, length-suffixed).
pub(crate) fn h_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = mix(seed ^ 0x6279_7465_735f_6670);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = mix(h ^ u64::from_le_bytes(tail));
    mix(h ^ bytes.len() as u64)
}

/// A felt spread over 251 bits from a 64-bit hash; always below the Starknet prime because
/// the top five bits are cleared (`< 2^251 < p`).
pub(crate) fn felt_from(h: u64) -> Felt {
    let mut b = [0u8; 32];
    for (i, chunk) in b.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(h.wrapping_add(GOLDEN.wrapping_mul(i as u64 + 1))).to_be_bytes());
    }
    b[0] &= 0x07;
    // Cannot fail: b < 2^251.
    Felt::from_be_bytes(b).unwrap_or(Felt::ZERO)
}

/// A felt from a few words.
pub(crate) fn felt_of(parts: &[u64]) -> Felt {
    felt_from(h64(parts))
}

/// A 64-bit hash of a string.
pub(crate) fn h_str(seed: u64, s: &str) -> u64 {
    h_bytes(seed ^ 0x7374_7269_6e67, s.as_bytes())
}

/// Deterministic pseudo-random bytes: `len` bytes of the stream named by `h`.
pub(crate) fn fill_bytes(out: &mut Vec<u8>, h: u64, len: usize) {
    out.reserve(len);
    let mut i = 0u64;
    while out.len() < len {
        let w = mix(h ^ i.wrapping_mul(GOLDEN)).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&w[..take]);
        i += 1;
    }
}

/// `true` with probability `p` for the hash `h` (uniform in `[0, 1)` from its top 53 bits).
pub(crate) fn chance(h: u64, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    ((h >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// A splitmix64 stream for drawing many values from one seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// `true` one time in `n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        n != 0 && self.below(n) == 0
    }

    pub(crate) fn felt(&mut self) -> Felt {
        felt_from(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn felts_are_below_the_prime_and_spread() {
        let mut rng = Rng::new(7);
        let mut top_bits = 0u8;
        for _ in 0..10_000 {
            let f = rng.felt();
            assert!(f.to_be_bytes() < orch_core::felt::STARK_PRIME);
            top_bits |= f.to_be_bytes()[0];
        }
        assert_eq!(top_bits, 0x07, "the top byte should use all three low bits");
    }

    #[test]
    fn byte_fingerprint_sees_every_byte_and_the_length() {
        let a = h_bytes(1, b"hello world");
        assert_ne!(a, h_bytes(1, b"hello worle"));
        assert_ne!(a, h_bytes(2, b"hello world"));
        assert_ne!(h_bytes(1, b"ab"), h_bytes(1, b"ab\0"));
    }

    #[test]
    fn chance_matches_its_probability() {
        let hits = (0..100_000u64).filter(|i| chance(mix(*i), 0.1)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert!(!chance(0, 0.0));
        assert!(chance(u64::MAX, 1.0));
    }
}
