//! Starknet ≥ 0.13.3 stateless compression of the DA felt list.
//!
//! The format (compression version 0), as the OS writes it:
//!
//! 1. Each value goes to the smallest bucket of unique values whose width fits it — widths
//!    252, 125, 83, 62, 31 and 15 bits (buckets 0..=5) — unless it was seen before, in which
//!    case it goes to the repeating-value bucket (6) as a pointer to its first copy.
//! 2. Output, each part packed into felts as `Σ elm_i · bound^i` with
//!    `⌊251 / ⌈log2 bound⌉⌋` elements per felt (1 when the bound exceeds 2^251, 251 when it is
//!    at most 1):
//!    * header, bound 2^20: `[version = 0, data_len, len(bucket 0..=5), n_repeating]`;
//!    * each unique-value bucket in first-seen order, bound 2^width;
//!    * repeating-value pointers into the concatenated unique buckets, bound = number of
//!      unique values;
//!    * the bucket index of every element in order, bound 7.
//!
//! The decompressor never panics on arbitrary input: unused slots and leftover high bits must be
//! zero, values must be below the Starknet prime, and the bucket indices must account for every
//! bucket entry exactly. `decompress(compress(x)) == x` for every `x`.

use std::collections::HashMap;

use orch_core::Felt;

use crate::error::{Error, Result};
use crate::u256::U256;

/// The compression format version written in the header.
pub const COMPRESSION_VERSION: u64 = 0;
/// Bit widths of the unique-value buckets, in bucket-index order.
pub const N_BITS_PER_BUCKET: [u32; 6] = [252, 125, 83, 62, 31, 15];
/// Inputs must be shorter than this (lengths are 20-bit header fields).
pub const MAX_DATA_LEN: usize = (1 << HEADER_ELM_N_BITS) - 1;

const MAX_N_BITS: u32 = 251;
const HEADER_ELM_N_BITS: u32 = 20;
const HEADER_LEN: usize = 2 + N_BITS_PER_BUCKET.len() + 1;
const REPEATING_BUCKET: usize = N_BITS_PER_BUCKET.len();
const TOTAL_N_BUCKETS: u64 = N_BITS_PER_BUCKET.len() as u64 + 1;
const WHAT: &str = "compressed DA felts";

/// An exclusive upper bound for packed elements.
#[derive(Clone, Copy)]
enum Bound {
    /// 2^bits.
    Pow2(u32),
    /// A bound that fits in a `u64`.
    Small(u64),
}

impl Bound {
    fn elms_per_felt(self) -> usize {
        let bits = match self {
            Bound::Pow2(0) | Bound::Small(0 | 1) => return MAX_N_BITS as usize,
            Bound::Pow2(b) if b > MAX_N_BITS => return 1,
            Bound::Pow2(b) => b,
            // ⌈log2 b⌉ for b ≥ 2.
            Bound::Small(b) => 64 - (b - 1).leading_zeros(),
        };
        (MAX_N_BITS / bits) as usize
    }
}

/// The unique-value bucket (0..=5) `value` goes to when first seen.
pub(crate) fn bucket_of(value: &Felt) -> usize {
    let bits = value.bits();
    // The narrowest bucket that fits; bucket 0 (252 bits) fits every felt.
    (0..N_BITS_PER_BUCKET.len()).rev().find(|&b| bits <= N_BITS_PER_BUCKET[b]).unwrap_or(0)
}

fn pack(elms: &[U256], bound: Bound, out: &mut Vec<Felt>) -> Result<()> {
    for chunk in elms.chunks(bound.elms_per_felt()) {
        let mut acc = U256::ZERO;
        match bound {
            Bound::Pow2(bits) => {
                for (i, e) in chunk.iter().enumerate() {
                    acc = acc.or(e.shl(bits * i as u32));
                }
            }
            Bound::Small(b) => {
                for e in chunk.iter().rev() {
                    // Elements are < b ≤ 2^20 here, so they fit in one limb.
                    acc = acc.mul_small_add(b, e.0[0]).ok_or(Error::TooLarge {
                        what: "packed felt",
                        len: 256,
                        max: MAX_N_BITS as usize,
                    })?;
                }
            }
        }
        out.push(acc.to_felt().ok_or(Error::TooLarge {
            what: "packed felt",
            len: acc.bits() as usize,
            max: MAX_N_BITS as usize,
        })?);
    }
    Ok(())
}

/// Felts needed to pack `n` elements under `bound`.
fn packed_len(n: usize, bound: Bound) -> usize {
    n.div_ceil(bound.elms_per_felt())
}

/// The length of [`compress`]'s output for a list of `data_len` felts whose distinct values
/// fall `unique[b]` into bucket `b`: the output depends only on these counts (every other value
/// is a repetition), so a caller that keeps them can size a list without compressing it.
pub(crate) fn compressed_len(data_len: usize, unique: &[usize; 6]) -> usize {
    let n_unique: usize = unique.iter().sum();
    let mut len = packed_len(HEADER_LEN, Bound::Pow2(HEADER_ELM_N_BITS));
    for (&n, bits) in unique.iter().zip(N_BITS_PER_BUCKET) {
        len += packed_len(n, Bound::Pow2(bits));
    }
    len += packed_len(data_len - n_unique, Bound::Small(n_unique as u64));
    len + packed_len(data_len, Bound::Small(TOTAL_N_BUCKETS))
}

/// Compresses a felt list as the Starknet ≥ 0.13.3 OS does.
pub fn compress(data: &[Felt]) -> Result<Vec<Felt>> {
    if data.len() > MAX_DATA_LEN {
        return Err(Error::TooLarge { what: "felt list to compress", len: data.len(), max: MAX_DATA_LEN });
    }
    let mut buckets: [Vec<U256>; 6] = Default::default();
    let mut index_in_bucket: HashMap<Felt, usize> = HashMap::new();
    let mut repeating: Vec<(usize, usize)> = Vec::new();
    let mut bucket_per_elm: Vec<U256> = Vec::with_capacity(data.len());
    for v in data {
        let b = bucket_of(v);
        if let Some(&i) = index_in_bucket.get(v) {
            repeating.push((b, i));
            bucket_per_elm.push(U256::from_u64(REPEATING_BUCKET as u64));
        } else {
            index_in_bucket.insert(*v, buckets[b].len());
            buckets[b].push(U256::from_felt(v));
            bucket_per_elm.push(U256::from_u64(b as u64));
        }
    }

    let mut header = Vec::with_capacity(HEADER_LEN);
    header.push(U256::from_u64(COMPRESSION_VERSION));
    header.push(U256::from_u64(data.len() as u64));
    header.extend(buckets.iter().map(|b| U256::from_u64(b.len() as u64)));
    header.push(U256::from_u64(repeating.len() as u64));

    let mut offsets = [0usize; 6];
    let mut n_unique = 0;
    for (offset, bucket) in offsets.iter_mut().zip(&buckets) {
        *offset = n_unique;
        n_unique += bucket.len();
    }
    let pointers: Vec<U256> = repeating.iter().map(|&(b, i)| U256::from_u64((offsets[b] + i) as u64)).collect();

    let mut out = Vec::new();
    pack(&header, Bound::Pow2(HEADER_ELM_N_BITS), &mut out)?;
    for (bucket, bits) in buckets.iter().zip(N_BITS_PER_BUCKET) {
        pack(bucket, Bound::Pow2(bits), &mut out)?;
    }
    pack(&pointers, Bound::Small(n_unique as u64), &mut out)?;
    pack(&bucket_per_elm, Bound::Small(TOTAL_N_BUCKETS), &mut out)?;
    Ok(out)
}

struct Reader<'a> {
    felts: &'a [Felt],
    pos: usize,
}

impl Reader<'_> {
    /// Unpacks `n` elements packed with `bound`; `what` names the part in errors.
    fn unpack(&mut self, n: usize, bound: Bound, what: &str) -> Result<Vec<U256>> {
        let per = bound.elms_per_felt();
        let n_felts = n.div_ceil(per);
        if n_felts > self.felts.len() - self.pos {
            return Err(Error::malformed(
                WHAT,
                self.felts.len(),
                format!("data ends inside the {what} ({n} elements in {n_felts} felts)"),
            ));
        }
        let mut out = Vec::with_capacity(n);
        for k in 0..n_felts {
            let pos = self.pos + k;
            let mut acc = U256::from_felt(&self.felts[pos]);
            let take = per.min(n - k * per);
            for _ in 0..take {
                let e = match bound {
                    Bound::Pow2(bits) => {
                        let e = acc.low_bits(bits);
                        acc = acc.shr(bits);
                        e
                    }
                    Bound::Small(0) => {
                        return Err(Error::malformed(WHAT, pos, format!("{what} present but nothing to point to")))
                    }
                    Bound::Small(b) => {
                        let (q, r) = acc.divmod_small(b);
                        acc = q;
                        U256::from_u64(r)
                    }
                };
                out.push(e);
            }
            if !acc.is_zero() {
                return Err(Error::malformed(
                    WHAT,
                    pos,
                    format!("packed felt of the {what} has bits beyond its {take} elements"),
                ));
            }
        }
        self.pos += n_felts;
        Ok(out)
    }
}

fn small(e: &U256) -> usize {
    // Header fields are < 2^20 and pointers < 2^20 by construction of the bounds.
    e.0[0] as usize
}

/// Decompresses a stream that starts with compressed data. Returns the data and the number of
/// felts of `stream` it used (the rest is blob padding or other data).
pub fn decompress(stream: &[Felt]) -> Result<(Vec<Felt>, usize)> {
    let mut r = Reader { felts: stream, pos: 0 };
    let header = r.unpack(HEADER_LEN, Bound::Pow2(HEADER_ELM_N_BITS), "header")?;
    let version = header[0].0[0];
    if version != COMPRESSION_VERSION {
        return Err(Error::malformed(
            WHAT,
            0,
            format!(
                "compression version {version} is not supported (only {COMPRESSION_VERSION}); \
                 wrong Starknet version, or uncompressed data?"
            ),
        ));
    }
    let data_len = small(&header[1]);
    let lens: Vec<usize> = header[2..2 + N_BITS_PER_BUCKET.len()].iter().map(small).collect();
    let n_repeating = small(&header[HEADER_LEN - 1]);

    let mut unique = Vec::with_capacity(lens.iter().sum());
    for (b, (&len, bits)) in lens.iter().zip(N_BITS_PER_BUCKET).enumerate() {
        let start = r.pos;
        for (k, v) in r.unpack(len, Bound::Pow2(bits), "unique values")?.into_iter().enumerate() {
            let felt = v.to_felt().ok_or_else(|| {
                Error::malformed(
                    WHAT,
                    start + k,
                    format!("unique value {k} of bucket {b} is not below the Starknet prime"),
                )
            })?;
            unique.push(felt);
        }
    }
    let pointers = r.unpack(n_repeating, Bound::Small(unique.len() as u64), "repeating-value pointers")?;
    let indices = r.unpack(data_len, Bound::Small(TOTAL_N_BUCKETS), "bucket indices")?;

    let mut counts = [0usize; 7];
    for i in &indices {
        counts[small(i)] += 1;
    }
    let expected: Vec<usize> = lens.iter().copied().chain([n_repeating]).collect();
    if counts[..] != expected[..] {
        return Err(Error::malformed(
            WHAT,
            r.pos,
            format!(
                "bucket indices use the buckets {counts:?} times but the header announces \
                 {expected:?} entries"
            ),
        ));
    }

    let mut cursors = [0usize; 6];
    let mut offset = 0;
    for (c, len) in cursors.iter_mut().zip(&lens) {
        *c = offset;
        offset += len;
    }
    let mut next_repeating = pointers.iter();
    let mut out = Vec::with_capacity(data_len);
    for i in &indices {
        let b = small(i);
        let v = if b == REPEATING_BUCKET {
            // counts were checked, and pointers are < unique.len() by their packing bound.
            match next_repeating.next() {
                Some(p) => unique[small(p)],
                None => return Err(Error::malformed(WHAT, r.pos, "too few repeating values")),
            }
        } else {
            let v = unique[cursors[b]];
            cursors[b] += 1;
            v
        };
        out.push(v);
    }
    Ok((out, r.pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: u64) -> Felt {
        Felt::from_u64(v)
    }

    #[test]
    fn empty_input_compresses_to_a_header_only() {
        let c = compress(&[]).unwrap();
        assert_eq!(c, vec![Felt::ZERO]);
        assert_eq!(decompress(&c).unwrap(), (vec![], 1));
    }

    #[test]
    fn header_packs_lengths_in_20_bit_fields() {
        let data = [f(1), f(1), f(1 << 20), f(7)];
        let c = compress(&data).unwrap();
        let h = U256::from_felt(&c[0]);
        let field = |i: u32| h.shr(20 * i).low_bits(20).0[0];
        assert_eq!(field(0), 0, "version");
        assert_eq!(field(1), 4, "data_len");
        assert_eq!(field(2 + 4), 1, "31-bit bucket holds 1 << 20");
        assert_eq!(field(2 + 5), 2, "15-bit bucket holds 1 and 7");
        assert_eq!(field(8), 1, "one repeating value");
        assert_eq!(decompress(&c).unwrap().0, data);
    }

    #[test]
    fn repeated_values_become_pointers() {
        let data: Vec<Felt> = (0..100).map(|i| f(i % 3)).collect();
        let c = compress(&data).unwrap();
        // header + 1 felt of 15-bit uniques + 1 felt of pointers + 2 felts of bucket indices
        assert_eq!(c.len(), 5);
        let (d, used) = decompress(&c).unwrap();
        assert_eq!((d, used), (data, 5));
    }

    fn counts(data: &[Felt]) -> [usize; 6] {
        let mut unique = [0; 6];
        for v in data.iter().collect::<std::collections::HashSet<_>>() {
            unique[bucket_of(v)] += 1;
        }
        unique
    }

    #[test]
    fn compressed_len_matches_compress_from_counts_alone() {
        let mut cases: Vec<Vec<Felt>> = vec![vec![], vec![f(0)], (0..100).map(|i| f(i % 3)).collect()];
        // Every bucket, lengths around the packing boundaries, and many repetitions.
        for n in [1usize, 15, 16, 17, 82, 83, 84, 250, 251, 252, 1000, 5000] {
            let mixed: Vec<Felt> = (0..n as u64)
                .map(|i| match i % 7 {
                    0 => f(i),
                    1 => f(i << 20),
                    2 => f(i << 40),
                    3 => Felt::from_u128((i as u128) << 70),
                    4 => Felt::from_u128((i as u128) << 100),
                    5 => Felt::from_hex("x", "0x7ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
                        .unwrap(),
                    _ => f(i % 5),
                })
                .collect();
            cases.push(mixed);
        }
        for data in cases {
            let c = compress(&data).unwrap();
            assert_eq!(compressed_len(data.len(), &counts(&data)), c.len(), "{} felts", data.len());
        }
    }

    #[test]
    fn rejects_unknown_compression_version() {
        let err = decompress(&[f(1)]).unwrap_err();
        assert!(err.to_string().contains("compression version 1"), "{err}");
    }

    #[test]
    fn rejects_truncated_stream() {
        let data: Vec<Felt> = (0..50).map(f).collect();
        let c = compress(&data).unwrap();
        let err = decompress(&c[..c.len() - 1]).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
    }
}
