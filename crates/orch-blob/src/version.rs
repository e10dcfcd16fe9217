//! Starknet protocol versions and the DA format each one uses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A Starknet protocol version such as `0.13.2`, `0.13.1.1` or `0.14.0`.
///
/// Ordering is numeric per component (`0.13.10 > 0.13.9`), with a missing fourth component read
/// as 0. Only the DA-relevant consequences are derived from it: [`DaLayout`], [`Compression`]
/// and the default [`NoncePolicy`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StarknetVersion([u16; 4]);

impl StarknetVersion {
    /// 0.13.2: the last version with the original DA word and no compression.
    pub const V0_13_2: StarknetVersion = StarknetVersion([0, 13, 2, 0]);
    /// 0.13.3: the packed DA word and stateless compression.
    pub const V0_13_3: StarknetVersion = StarknetVersion([0, 13, 3, 0]);
    /// 0.14.0.
    pub const V0_14_0: StarknetVersion = StarknetVersion([0, 14, 0, 0]);
    /// The newest version whose DA format this crate knows; the [`Default`].
    pub const LATEST: StarknetVersion = StarknetVersion::V0_14_0;

    /// A version from its components (`new(0, 13, 3, 0)` is 0.13.3).
    pub const fn new(major: u16, minor: u16, patch: u16, build: u16) -> StarknetVersion {
        StarknetVersion([major, minor, patch, build])
    }

    /// Parses `"0.13.3"` or `"0.13.1.1"` and rejects versions newer than [`Self::LATEST`]'s
    /// minor release, whose DA format is unknown (encoding them silently in an old format would
    /// publish data the OS did not commit to).
    pub fn parse(s: &str) -> Result<StarknetVersion> {
        let field = "starknet_version";
        let t = s.trim();
        let parts: Vec<&str> = t.split('.').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(Error::invalid(field, format!("{t:?} is not a version like 0.13.3 or 0.13.1.1")));
        }
        let mut out = [0u16; 4];
        for (slot, part) in out.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid(field, format!("{t:?}: component {part:?} is not a decimal number")));
            }
            *slot =
                part.parse().map_err(|_| Error::invalid(field, format!("{t:?}: component {part:?} is too large")))?;
        }
        let v = StarknetVersion(out);
        if v.0[..2] > Self::LATEST.0[..2] {
            return Err(Error::Unsupported {
                feature: format!("Starknet version {v}"),
                reason: format!(
                    "the newest DA format known is that of {}; pass an older version only if the \
                     chain's OS really uses that format",
                    Self::LATEST
                ),
            });
        }
        Ok(v)
    }

    /// The per-contract header word layout this version's OS writes.
    pub fn da_layout(self) -> DaLayout {
        if self >= Self::V0_13_3 {
            DaLayout::V0_13_3
        } else {
            DaLayout::Legacy
        }
    }

    /// The compression this version's OS applies to the DA felts before blobbing.
    pub fn compression(self) -> Compression {
        if self >= Self::V0_13_3 {
            Compression::Stateless
        } else {
            Compression::None
        }
    }

    /// Which nonce the DA word carries for a contract whose nonce the block did not change.
    pub fn nonce_policy(self) -> NoncePolicy {
        if self >= Self::V0_13_3 {
            NoncePolicy::DiffOnly
        } else {
            NoncePolicy::Oracle
        }
    }

    /// All three format choices of this version.
    pub fn encoding(self) -> Encoding {
        Encoding { layout: self.da_layout(), compression: self.compression(), nonces: self.nonce_policy() }
    }
}

impl Default for StarknetVersion {
    fn default() -> Self {
        Self::LATEST
    }
}

impl fmt::Display for StarknetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}")?;
        if d != 0 {
            write!(f, ".{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StarknetVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for StarknetVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        StarknetVersion::parse(s)
    }
}

impl Serialize for StarknetVersion {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StarknetVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StarknetVersion::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Layout of the per-contract header word ("DA word"); README §3.4 of the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DaLayout {
    /// Before 0.13.3: `class_flag·2^128 + nonce·2^64 + n_updates`.
    Legacy,
    /// From 0.13.3: `((nonce·B + n_updates)·2 + small)·2 + class_flag`, `B = 2^8` when fewer
    /// than 256 updates (`small`), else `2^64`.
    V0_13_3,
}

/// Compression applied to the DA felt list before it is split into blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Compression {
    /// The felts go into the blobs as they are.
    None,
    /// Starknet ≥ 0.13.3 stateless compression (see [`crate::compression`]).
    Stateless,
}

/// Which nonce the DA word carries for a contract with no entry in `state_diff.nonces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoncePolicy {
    /// Its nonce after the block, from the nonce oracle, when it has storage writes and is not
    /// a system contract (0x1, 0x2); otherwise 0. Pre-0.13.3 OS output and Madara's DA job.
    Oracle,
    /// 0: the ≥ 0.13.3 OS writes a nonce only when the block changed it. No oracle is asked.
    DiffOnly,
}

/// The full set of format choices for one encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Encoding {
    /// DA word layout.
    pub layout: DaLayout,
    /// Compression of the felt list.
    pub compression: Compression,
    /// Nonces of contracts whose nonce did not change.
    pub nonces: NoncePolicy,
}

impl Default for Encoding {
    fn default() -> Self {
        StarknetVersion::LATEST.encoding()
    }
}

impl From<StarknetVersion> for Encoding {
    fn from(v: StarknetVersion) -> Self {
        v.encoding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_choose_layout_and_compression() {
        let v = StarknetVersion::parse("0.13.2").unwrap();
        assert_eq!(v.da_layout(), DaLayout::Legacy);
        assert_eq!(v.compression(), Compression::None);
        let v: StarknetVersion = "0.13.3".parse().unwrap();
        assert_eq!(v.da_layout(), DaLayout::V0_13_3);
        assert_eq!(v.compression(), Compression::Stateless);
        let v: StarknetVersion = "0.13.1.1".parse().unwrap();
        assert_eq!(v.to_string(), "0.13.1.1");
        assert!(v < StarknetVersion::V0_13_2);
        assert_eq!(StarknetVersion::default(), StarknetVersion::parse("0.14.0").unwrap());
    }

    #[test]
    fn versions_compare_numerically() {
        let a: StarknetVersion = "0.13.10".parse().unwrap();
        let b: StarknetVersion = "0.13.9".parse().unwrap();
        assert!(a > b);
    }

    #[test]
    fn rejects_garbage_and_unknown_future_versions() {
        for bad in ["", "0.13", "v0.13.3", "0.13.x", "0..3", "0.13.3.1.1", "0.13.99999"] {
            let err = StarknetVersion::parse(bad).unwrap_err();
            assert!(err.to_string().contains("starknet_version"), "{bad}: {err}");
        }
        let err = StarknetVersion::parse("0.15.0").unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert!(StarknetVersion::parse("0.14.7").is_ok());
    }
}
