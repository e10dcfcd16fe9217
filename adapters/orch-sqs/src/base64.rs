//! Standard base64 (RFC 4648 §4, with padding) for message bodies, via the `base64` crate.
//!
//! SQS bodies are XML-safe Unicode text, so arbitrary payload bytes cannot go in as they
//! are. Decoding is strict — canonical padding required, no whitespace, no stray bits — so
//! that a body orch did not write is recognised instead of being turned into garbage bytes.

use ::base64::engine::general_purpose::STANDARD;
use ::base64::Engine;

/// Length of the encoding of `n` bytes.
#[cfg(test)]
pub(crate) fn encoded_len(n: usize) -> usize {
    ::base64::encoded_len(n, true).unwrap_or(usize::MAX)
}

/// Encodes `data`.
pub(crate) fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes `text`, or says why it is not strict base64.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
    STANDARD.decode(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn every_length_and_byte_round_trips() {
        let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for n in 0..data.len() {
            let e = encode(&data[..n]);
            assert_eq!(e.len(), encoded_len(n));
            assert_eq!(decode(&e).unwrap(), &data[..n]);
        }
    }

    #[test]
    fn foreign_text_is_refused() {
        for bad in ["hello", "{\"v\":1}", "Zm9v YmFy", "Zg=", "Z===", "Zh==", "Zg==Zg==", "Zm9-"] {
            assert!(decode(bad).is_err(), "{bad:?} accepted");
        }
    }
}
