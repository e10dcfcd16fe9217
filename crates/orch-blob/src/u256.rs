//! A minimal 256-bit unsigned integer for packing DA words and compressed felts.
//!
//! `Felt` is a byte array without arithmetic; the formats here need shifts, masks and
//! multiply/divide by small numbers, nothing more, so a dependency on a bignum crate is not
//! worth it.

use orch_core::Felt;

/// Little-endian 64-bit limbs.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub(crate) struct U256(pub(crate) [u64; 4]);

impl U256 {
    pub(crate) const ZERO: U256 = U256([0; 4]);

    pub(crate) const fn from_u64(v: u64) -> U256 {
        U256([v, 0, 0, 0])
    }

    pub(crate) fn from_be_bytes(b: &[u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let start = 32 - 8 * (i + 1);
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&b[start..start + 8]);
            *limb = u64::from_be_bytes(chunk);
        }
        U256(limbs)
    }

    pub(crate) fn to_be_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            let start = 32 - 8 * (i + 1);
            out[start..start + 8].copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    pub(crate) fn from_felt(f: &Felt) -> U256 {
        U256::from_be_bytes(f.as_be_bytes())
    }

    /// The felt with this value, or `None` when it is not below the Starknet prime.
    pub(crate) fn to_felt(self) -> Option<Felt> {
        Felt::from_be_bytes(self.to_be_bytes()).ok()
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The value when it fits in a `u64`.
    pub(crate) fn to_u64(self) -> Option<u64> {
        if self.0[1..] == [0; 3] {
            Some(self.0[0])
        } else {
            None
        }
    }

    /// Number of significant bits.
    pub(crate) fn bits(&self) -> u32 {
        for i in (0..4).rev() {
            if self.0[i] != 0 {
                return 64 * i as u32 + (64 - self.0[i].leading_zeros());
            }
        }
        0
    }

    pub(crate) fn shl(self, n: u32) -> U256 {
        if n >= 256 {
            return U256::ZERO;
        }
        let (words, bits) = ((n / 64) as usize, n % 64);
        let mut out = [0u64; 4];
        for i in (words..4).rev() {
            let src = i - words;
            out[i] = self.0[src] << bits;
            if bits > 0 && src > 0 {
                out[i] |= self.0[src - 1] >> (64 - bits);
            }
        }
        U256(out)
    }

    pub(crate) fn shr(self, n: u32) -> U256 {
        if n >= 256 {
            return U256::ZERO;
        }
        let (words, bits) = ((n / 64) as usize, n % 64);
        let mut out = [0u64; 4];
        for (i, slot) in out.iter_mut().enumerate().take(4 - words) {
            let src = i + words;
            *slot = self.0[src] >> bits;
            if bits > 0 && src + 1 < 4 {
                *slot |= self.0[src + 1] << (64 - bits);
            }
        }
        U256(out)
    }

    pub(crate) fn or(self, o: U256) -> U256 {
        U256([self.0[0] | o.0[0], self.0[1] | o.0[1], self.0[2] | o.0[2], self.0[3] | o.0[3]])
    }

    /// The low `n` bits.
    pub(crate) fn low_bits(self, n: u32) -> U256 {
        if n >= 256 {
            return self;
        }
        let mut out = self.0;
        for (i, limb) in out.iter_mut().enumerate() {
            let lo = 64 * i as u32;
            if n <= lo {
                *limb = 0;
            } else if n < lo + 64 {
                *limb &= (1u64 << (n - lo)) - 1;
            }
        }
        U256(out)
    }

    /// `self * m + a`, or `None` on overflow past 256 bits.
    pub(crate) fn mul_small_add(self, m: u64, a: u64) -> Option<U256> {
        let mut out = [0u64; 4];
        let mut carry = u128::from(a);
        for (slot, limb) in out.iter_mut().zip(self.0) {
            let v = u128::from(limb) * u128::from(m) + carry;
            *slot = v as u64;
            carry = v >> 64;
        }
        (carry == 0).then_some(U256(out))
    }

    /// `(self / d, self % d)`; `d` must be non-zero (callers check).
    pub(crate) fn divmod_small(self, d: u64) -> (U256, u64) {
        let mut out = [0u64; 4];
        let mut rem = 0u128;
        let d = u128::from(d.max(1));
        for i in (0..4).rev() {
            let cur = (rem << 64) | u128::from(self.0[i]);
            out[i] = (cur / d) as u64;
            rem = cur % d;
        }
        (U256(out), rem as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_round_trip_across_limbs() {
        let x = U256([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 0x1111, 0]);
        for n in [0, 1, 63, 64, 65, 100, 114] {
            assert_eq!(x.shl(n).shr(n), x, "shift {n}");
        }
        assert_eq!(U256::from_u64(1).shl(200).bits(), 201);
        assert_eq!(x.low_bits(64), U256([x.0[0], 0, 0, 0]));
        assert_eq!(x.low_bits(70).0[1], x.0[1] & 0x3f);
    }

    #[test]
    fn mul_and_divmod_invert_each_other() {
        let x = U256([u64::MAX, 12345, 0, 1 << 40]);
        let y = x.mul_small_add(7, 5).unwrap();
        assert_eq!(y.divmod_small(7), (x, 5));
        assert!(U256([0, 0, 0, u64::MAX]).mul_small_add(2, 0).is_none());
    }

    #[test]
    fn bytes_round_trip() {
        let mut b = [0u8; 32];
        for (i, v) in b.iter_mut().enumerate() {
            *v = i as u8;
        }
        assert_eq!(U256::from_be_bytes(&b).to_be_bytes(), b);
    }
}
