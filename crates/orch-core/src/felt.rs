//! The Starknet field element and the state-diff types the ports exchange.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// The Starknet prime p = 2^251 + 17·2^192 + 1, big-endian.
pub const STARK_PRIME: [u8; 32] = {
    let mut p = [0u8; 32];
    p[0] = 0x08;
    p[7] = 0x11;
    p[31] = 0x01;
    p
};

/// An element of the Starknet field, stored as 32 big-endian bytes, always `< p`.
///
/// Parsing accepts `0x`-prefixed hex (any case, leading zeros allowed) or plain decimal and
/// rejects values `>= p`, so a `Felt` is canonical by construction. It displays as minimal
/// lowercase hex (`0x0` for zero), the way Starknet JSON-RPC writes felts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Felt([u8; 32]);

impl Felt {
    /// Zero.
    pub const ZERO: Felt = Felt([0; 32]);
    /// One.
    pub const ONE: Felt = Felt::from_u64(1);

    /// A felt from a `u64` (always canonical).
    pub const fn from_u64(v: u64) -> Felt {
        let b = v.to_be_bytes();
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 8 {
            out[24 + i] = b[i];
            i += 1;
        }
        Felt(out)
    }

    /// A felt from a `u128` (always canonical).
    pub const fn from_u128(v: u128) -> Felt {
        let b = v.to_be_bytes();
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 16 {
            out[16 + i] = b[i];
            i += 1;
        }
        Felt(out)
    }

    /// A felt from 32 big-endian bytes; `InvalidInput` when the value is `>= p`.
    pub fn from_be_bytes(bytes: [u8; 32]) -> Result<Felt> {
        if bytes >= STARK_PRIME {
            return Err(Error::invalid_input("felt", "value is not below the Starknet prime 2^251 + 17*2^192 + 1"));
        }
        Ok(Felt(bytes))
    }

    /// The 32 big-endian bytes.
    pub const fn to_be_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A reference to the 32 big-endian bytes.
    pub const fn as_be_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The value as a `u64` when it fits.
    pub fn to_u64(&self) -> Option<u64> {
        if self.0[..24].iter().any(|b| *b != 0) {
            return None;
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[24..]);
        Some(u64::from_be_bytes(b))
    }

    /// The value as a `u128` when it fits.
    pub fn to_u128(&self) -> Option<u128> {
        if self.0[..16].iter().any(|b| *b != 0) {
            return None;
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.0[16..]);
        Some(u128::from_be_bytes(b))
    }

    /// Number of significant bits (0 for zero).
    pub fn bits(&self) -> u32 {
        for (i, b) in self.0.iter().enumerate() {
            if *b != 0 {
                return (32 - i as u32) * 8 - b.leading_zeros();
            }
        }
        0
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// Parses `0x`-hex or decimal. `field` names the input in the error.
    pub fn parse(field: &str, s: &str) -> Result<Felt> {
        let s = s.trim();
        let bytes = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            parse_hex_be(field, h)?
        } else {
            parse_dec_be(field, s)?
        };
        Felt::from_be_bytes(bytes).map_err(|_| {
            Error::invalid_input(field, format!("{s} is not below the Starknet prime 2^251 + 17*2^192 + 1"))
        })
    }

    /// Parses hex digits with or without `0x`.
    pub fn from_hex(field: &str, s: &str) -> Result<Felt> {
        let s = s.trim();
        let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
        let bytes = parse_hex_be(field, h)?;
        Felt::from_be_bytes(bytes).map_err(|_| {
            Error::invalid_input(field, format!("0x{h} is not below the Starknet prime 2^251 + 17*2^192 + 1"))
        })
    }

    /// Minimal lowercase hex with `0x`.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

fn parse_hex_be(field: &str, h: &str) -> Result<[u8; 32]> {
    if h.is_empty() {
        return Err(Error::invalid_input(field, "empty hex number"));
    }
    let h = h.trim_start_matches('0');
    if h.len() > 64 {
        return Err(Error::invalid_input(field, "hex number longer than 256 bits"));
    }
    let mut padded = [b'0'; 64];
    padded[64 - h.len()..].copy_from_slice(h.as_bytes());
    let mut out = [0u8; 32];
    hex::decode_to_slice(padded, &mut out)
        .map_err(|e| Error::invalid_input(field, format!("not a hex number ({e}); expected e.g. 0x1a2b")))?;
    Ok(out)
}

fn parse_dec_be(field: &str, d: &str) -> Result<[u8; 32]> {
    if d.is_empty() {
        return Err(Error::invalid_input(field, "empty number"));
    }
    let mut out = [0u8; 32];
    for c in d.bytes() {
        if !c.is_ascii_digit() {
            return Err(Error::invalid_input(field, format!("{d:?} is neither 0x-prefixed hex nor a decimal number")));
        }
        // out = out * 10 + digit, big-endian schoolbook.
        let mut carry = u32::from(c - b'0');
        for byte in out.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry != 0 {
            return Err(Error::invalid_input(field, "decimal number larger than 256 bits"));
        }
    }
    Ok(out)
}

impl fmt::Display for Felt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        let t = h.trim_start_matches('0');
        if t.is_empty() {
            f.write_str("0x0")
        } else {
            write!(f, "0x{t}")
        }
    }
}

impl fmt::Debug for Felt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Felt {
    type Err = Error;
    fn from_str(s: &str) -> Result<Felt> {
        Felt::parse("felt", s)
    }
}

impl From<u64> for Felt {
    fn from(v: u64) -> Felt {
        Felt::from_u64(v)
    }
}

impl Serialize for Felt {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Felt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Felt, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Felt::parse("felt", &s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_decimal_alike() {
        let a = Felt::parse("x", "0x10fc").unwrap();
        let b = Felt::parse("x", "4348").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "0x10fc");
        assert_eq!(Felt::ZERO.to_string(), "0x0");
        assert_eq!(a.to_u64(), Some(4348));
    }

    #[test]
    fn rejects_values_at_or_above_the_prime() {
        let p = "0x800000000000011000000000000000000000000000000000000000000000001";
        let err = Felt::parse("storage_key", p).unwrap_err();
        assert!(err.to_string().contains("storage_key"), "{err}");
        let below = "0x800000000000011000000000000000000000000000000000000000000000000";
        assert!(Felt::parse("x", below).is_ok());
    }

    #[test]
    fn rejects_garbage_with_the_field_name() {
        for bad in ["", "0x", "0xzz", "12a", "-1", "0x1_0"] {
            let err = Felt::parse("nonce", bad).unwrap_err();
            assert!(err.to_string().contains("nonce"), "{bad}: {err}");
        }
    }

    #[test]
    fn bits_counts_significant_bits() {
        assert_eq!(Felt::ZERO.bits(), 0);
        assert_eq!(Felt::from_u64(1).bits(), 1);
        assert_eq!(Felt::from_u64(255).bits(), 8);
        assert_eq!(Felt::from_u64(256).bits(), 9);
        assert_eq!(Felt::from_u128(1 << 64).bits(), 65);
    }
}
