//! Blob bytes → `Blob::from_bytes` / `Blob::from_felts` → `to_felts` → `decode_blobs` under a
//! pre-0.13.3 version (legacy layout, no compression) and the latest one (packed layout,
//! stateless compression). Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch_blob::{decode_blobs, decode_payload, Blob, StarknetVersion, BYTES_PER_BLOB, FIELD_ELEMENTS_PER_BLOB};

#[path = "common.rs"]
mod common;

fn versions() -> [StarknetVersion; 2] {
    [StarknetVersion::parse("0.13.2").expect("0.13.2 parses"), StarknetVersion::LATEST]
}

// Every inverse transform costs milliseconds, so each blob is transformed only as often as
// needed to reach every decoder once.
fn decode(blob: &Blob) {
    let _ = blob.to_felts();
    for v in versions() {
        let _ = decode_blobs(std::slice::from_ref(blob), v);
    }
}

fuzz_target!(|data: &[u8]| {
    // 1. The raw bytes, as a blob read from the chain would be (usually rejected: wrong length
    //    or an element >= r).
    if let Ok(blob) = Blob::from_bytes(data) {
        decode(&blob);
    }

    // 2. A valid blob built from the bytes: zero-padded/truncated to one blob, each element's
    //    top two bits cleared so it is below r. It must be accepted.
    let mut bytes = vec![0u8; BYTES_PER_BLOB];
    let n = data.len().min(BYTES_PER_BLOB);
    bytes[..n].copy_from_slice(&data[..n]);
    for e in bytes.chunks_exact_mut(32) {
        e[0] &= 0x3f;
    }
    let blob = Blob::from_bytes(&bytes).expect("every element is below r");
    decode(&blob);

    // 3. The bytes as DA felts: straight into the payload decoder, and through a blob (the
    //    blob's coefficients must be those felts again; `decode_blobs` of it would only repeat
    //    `decode_payload` of them).
    let felts = common::felts_from_bytes(data, FIELD_ELEMENTS_PER_BLOB);
    for v in versions() {
        let _ = decode_payload(&felts, v.encoding());
    }
    let blob = Blob::from_felts(&felts).expect("at most 4096 felts, each below p < r");
    let back = blob.to_felts().expect("coefficients of a blob made from felts are felts");
    assert_eq!(&back[..felts.len()], &felts[..], "from_felts/to_felts round trip");
    assert!(back[felts.len()..].iter().all(|f| f.is_zero()), "zero padding after the felts");
});
