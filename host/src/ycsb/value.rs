//! Deterministic record values, so a runner can write a value for `(key, version)` and later
//! check what a read returned without keeping a copy.
//!
//! Layout of a value of `n` bytes: the first `min(n, 8)` bytes are `version` little-endian;
//! bytes `8..n` are the little-endian outputs of a [`SplitMix64`] seeded from `(key,
//! version)`. A value of 8 bytes or more therefore names its version ([`value_version`]), and
//! the bytes past the 8th tie it to its key. YCSB's own records are 10 fields of 100 random bytes
//! ([`YCSB_VALUE_BYTES`]); YCSB fills them with fresh random data, not a function of the key.

use warpgrid_engine::rng::SplitMix64;

/// Bytes in a YCSB record by default: `fieldcount` 10 × `fieldlength` 100.
pub const YCSB_VALUE_BYTES: usize = 1000;

/// Bytes of the version header at the start of a value.
const HEADER_BYTES: usize = size_of::<u64>();

fn filler(key: u64, version: u64) -> SplitMix64 {
    SplitMix64::new(SplitMix64::new(key).next_u64() ^ version)
}

/// Writes the value of `(key, version)` into `out`, `out.len()` bytes long.
pub fn fill_value(key: u64, version: u64, out: &mut [u8]) {
    let header = version.to_le_bytes();
    let n = out.len().min(HEADER_BYTES);
    out[..n].copy_from_slice(&header[..n]);
    if out.len() > HEADER_BYTES {
        let mut g = filler(key, version);
        for chunk in out[HEADER_BYTES..].chunks_mut(8) {
            chunk.copy_from_slice(&g.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }
}

/// The value of `(key, version)`, `value_bytes` long.
pub fn value_for(key: u64, version: u64, value_bytes: usize) -> Vec<u8> {
    let mut v = vec![0; value_bytes];
    fill_value(key, version, &mut v);
    v
}

/// The version `value` was written with, if it is exactly [`value_for`]`(key, version,
/// value.len())` for some version; `None` if it is not, or if it is shorter than 8 bytes
/// (too short to name its version). A value of exactly 8 bytes matches every key.
pub fn value_version(key: u64, value: &[u8]) -> Option<u64> {
    let (header, rest) = value.split_first_chunk::<HEADER_BYTES>()?;
    let version = u64::from_le_bytes(*header);
    let mut g = filler(key, version);
    rest.chunks(8)
        .all(|chunk| chunk == &g.next_u64().to_le_bytes()[..chunk.len()])
        .then_some(version)
}
