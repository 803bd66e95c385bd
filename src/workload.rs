//! Deterministic workload generators shared by the demo, the benches and the tests.

pub use warpgrid_engine::rng::SplitMix64;

/// `n` uniform random keys (never the two reserved values).
pub fn uniform_keys(n: usize, seed: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            loop {
                let k = rng.next_u64();
                if k < u64::MAX - 1 {
                    break k;
                }
            }
        })
        .collect()
}

/// The 8-byte value the benches store under `key` (so reads can be checked).
#[inline]
pub fn value_of(key: u64) -> [u8; 8] {
    (key ^ 0x5555_5555_5555_5555).rotate_left(17).to_le_bytes()
}
