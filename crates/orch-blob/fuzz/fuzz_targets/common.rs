//! Shared helpers for the fuzz targets (included with `#[path]`, not a module of its own crate).

use orch_core::Felt;

/// Reads `bytes` as consecutive 32-byte big-endian values (a short tail is zero-padded on the
/// right). The top nibble is cleared so most values are below the Starknet prime; the few that
/// still are not (`[p, 2^252)`) are skipped.
#[allow(dead_code)]
pub fn felts_from_bytes(bytes: &[u8], max: usize) -> Vec<Felt> {
    bytes
        .chunks(32)
        .take(max)
        .filter_map(|c| {
            let mut b = [0u8; 32];
            b[..c.len()].copy_from_slice(c);
            b[0] &= 0x0f;
            Felt::from_be_bytes(b).ok()
        })
        .collect()
}
