//! Human durations in config: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, or an integer of
//! milliseconds.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serializer};

use crate::error::{Error, Result};

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`; `field` names the key in the error.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || {
        Error::invalid_input(
            field,
            format!("{s:?} is not a duration; write e.g. \"250ms\", \"30s\", \"5m\", \"2h\" or \"1d\""),
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" | "" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

/// Formats as the largest exact unit (`"1500ms"`, `"30s"`, `"5m"`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `#[serde(with = "orch_core::duration")]` support.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// `#[serde(with = "orch_core::duration")]` support.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(t) => parse_duration("duration", &t).map_err(de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        for (s, ms) in [("250ms", 250), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), ("7", 7_000)] {
            let d = parse_duration("x", s).unwrap();
            assert_eq!(d, Duration::from_millis(ms));
            assert_eq!(parse_duration("x", &format_duration(d)).unwrap(), d);
        }
    }

    #[test]
    fn rejects_bad_units_naming_the_field() {
        let e = parse_duration("engine.lease", "5 parsecs").unwrap_err().to_string();
        assert!(e.contains("engine.lease"), "{e}");
        assert!(parse_duration("x", "-5s").is_err());
        assert!(parse_duration("x", "99999999999999999999d").is_err());
    }
}
