//! Bytes → felts → `compression::decompress` (and `DaStateDiff::from_felts` under both
//! layouts). The first byte drives a corruption of a freshly compressed stream. Checks the
//! round trips `decompress(compress(x)) == x` and `decompress(compress(decompress(s))) ==
//! decompress(s)`. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orch_blob::compression::{compress, decompress};
use orch_blob::{DaLayout, DaStateDiff};
use orch_core::Felt;

#[path = "common.rs"]
mod common;

/// Well above a blob (4096 felts), still fast.
const MAX_FELTS: usize = 1 << 14;

fn round_trip(x: &[Felt]) -> Option<Vec<Felt>> {
    let c = compress(x).ok()?;
    let (y, used) = decompress(&c).unwrap_or_else(|e| panic!("decompress(compress(x)) failed: {e}"));
    assert_eq!(y, x, "decompress(compress(x)) != x");
    assert_eq!(used, c.len(), "decompress used a different length than compress wrote");
    Some(c)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let felts = common::felts_from_bytes(rest, MAX_FELTS);

    // The bytes as a compressed stream.
    if let Ok((out, used)) = decompress(&felts) {
        assert!(used <= felts.len(), "used {used} of {} felts", felts.len());
        round_trip(&out);
    }
    for layout in [DaLayout::Legacy, DaLayout::V0_13_3] {
        let _ = DaStateDiff::from_felts(&felts, layout);
        let _ = DaStateDiff::parse(&felts, layout);
    }

    // The bytes as data to compress; then a corrupted copy of the stream must not panic.
    if let Some(mut c) = round_trip(&felts) {
        if control != 0 && !c.is_empty() {
            let i = usize::from(control) % c.len();
            let replacement = match control % 4 {
                0 => Felt::from_u64(u64::from(control)),
                1 => Felt::from_u64(0),
                2 => felts.first().copied().unwrap_or(Felt::from_u64(1)),
                _ => Felt::from_u128(u128::MAX),
            };
            c[i] = replacement;
            if control & 0x80 != 0 {
                c.truncate(i);
            }
            let _ = decompress(&c);
        }
    }
});
