//! Self-describing, seed-authenticated ids: a prover task id or DA reference carries what its
//! status depends on (range, submission time, fate), sealed with a MAC of the seed. A status
//! query therefore needs no stored state, and it keeps working after the process restarts
//! (the engine records these ids and polls them later). An id that does not parse or whose MAC
//! does not match was not issued by this devnet: `NotFound`.

use std::fmt::Write as _;

use crate::mix::h64;

const T_MAC: u64 = 0x31;

/// Formats `prefix.f0.f1…` with a trailing MAC.
pub(crate) fn seal(seed: u64, prefix: &str, fields: &[u64]) -> String {
    let mut s = String::with_capacity(prefix.len() + 17 * (fields.len() + 1));
    s.push_str(prefix);
    for f in fields {
        let _ = write!(s, ".{f:x}");
    }
    let _ = write!(s, ".{:016x}", mac(seed, prefix, fields));
    s
}

/// The fields of an id made by [`seal`] with `prefix` and `n` fields, if authentic.
pub(crate) fn open(seed: u64, prefix: &str, n: usize, id: &str) -> Option<Vec<u64>> {
    let rest = id.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut parts: Vec<&str> = rest.split('.').collect();
    let mac_hex = parts.pop()?;
    if parts.len() != n || mac_hex.len() != 16 {
        return None;
    }
    let fields = parts
        .iter()
        .map(|p| if p.is_empty() || p.len() > 16 { None } else { u64::from_str_radix(p, 16).ok() })
        .collect::<Option<Vec<u64>>>()?;
    let got = u64::from_str_radix(mac_hex, 16).ok()?;
    (got == mac(seed, prefix, &fields)).then_some(fields)
}

fn mac(seed: u64, prefix: &str, fields: &[u64]) -> u64 {
    let mut parts = Vec::with_capacity(fields.len() + 3);
    parts.extend([seed, T_MAC, crate::mix::h_str(seed, prefix)]);
    parts.extend_from_slice(fields);
    h64(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_forgeries() {
        let id = seal(7, "dp1", &[3, 4, 1_700_000_000_000, 0]);
        assert_eq!(open(7, "dp1", 4, &id), Some(vec![3, 4, 1_700_000_000_000, 0]));
        assert_eq!(open(8, "dp1", 4, &id), None, "another seed's id");
        assert_eq!(open(7, "dp1", 3, &id), None);
        assert_eq!(open(7, "dda1", 4, &id), None);
        let tampered = id.replacen("dp1.3.", "dp1.2.", 1);
        assert_eq!(open(7, "dp1", 4, &tampered), None);
        for junk in ["", "dp1", "dp1.", "dp1...", "dp1.x.y.z.w.0000000000000000", "ü"] {
            assert_eq!(open(7, "dp1", 4, junk), None, "{junk:?}");
        }
    }
}
