//! Hashing and sizing rules every backend shares: the routing of a key to its shard
//! (SPEC §1.1, exact), the slot hash inside a shard, and when a shard grows.
//!
//! All arithmetic is 32-bit wrapping so the WGSL and CUDA kernels compute the same values.

/// Seed of the routing hash (SPEC §1.1).
pub const ROUTE_SEED: u32 = 0x9E37_79B9;
/// Seed of the slot hash inside a shard (independent of the routing bits).
pub const SLOT_SEED: u32 = 0x7F4A_7C15;
/// Key value marking an empty slot; reserved, never a user key.
pub const EMPTY_KEY: u64 = u64::MAX;
/// Key value marking a deleted slot; reserved, never a user key.
pub const TOMBSTONE_KEY: u64 = u64::MAX - 1;
/// Smallest shard, in slots (a power of two).
pub const MIN_SLOTS: u64 = 16;

/// MurmurHash3's 32-bit finaliser.
#[inline]
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// `fmix32(lo32(k) ^ fmix32(hi32(k) ^ seed))`.
#[inline]
pub fn key_hash(key: u64, seed: u32) -> u32 {
    fmix32((key as u32) ^ fmix32((key >> 32) as u32 ^ seed))
}

/// The shard a key lives in.
#[inline]
pub fn shard_of(key: u64, shards: u32) -> u32 {
    key_hash(key, ROUTE_SEED) % shards
}

/// [`shard_of`] for a fixed shard count, with the modulo done by multiplication (Lemire's
/// "fastmod": exact for every u32 dividend) since routing runs once per operation.
#[derive(Debug, Clone, Copy)]
pub struct ShardRouter {
    shards: u32,
    magic: u64,
}

impl ShardRouter {
    /// A router for `shards` shards.
    ///
    /// # Panics
    /// If `shards` is 0.
    pub fn new(shards: u32) -> ShardRouter {
        assert!(shards > 0, "a table has at least one shard");
        ShardRouter {
            shards,
            magic: (u64::MAX / u64::from(shards)).wrapping_add(1),
        }
    }

    /// `key_hash(key, ROUTE_SEED) % shards`.
    #[inline]
    pub fn shard(&self, key: u64) -> u32 {
        let low = self
            .magic
            .wrapping_mul(u64::from(key_hash(key, ROUTE_SEED)));
        ((u128::from(low) * u128::from(self.shards)) >> 64) as u32
    }
}

/// The home slot of a key in a shard of `mask + 1` slots.
#[inline]
pub fn home_slot(key: u64, mask: usize) -> usize {
    key_hash(key, SLOT_SEED) as usize & mask
}

/// The most items a shard of `slots` slots may hold at `max_load`.
#[inline]
pub fn max_items(slots: u64, max_load: f64) -> u64 {
    (slots as f64 * max_load).floor() as u64
}

/// Initial slots of each shard for a table expecting `capacity` keys in `shards` shards.
pub fn initial_slots(capacity: u64, shards: u32, max_load: f64) -> u64 {
    let per_shard = capacity.div_ceil(u64::from(shards));
    let mut slots = MIN_SLOTS;
    while max_items(slots, max_load) < per_shard {
        slots *= 2;
    }
    slots
}

/// Slots after growing a shard that holds `items` and receives one more: doubles until the
/// insert fits. Returns `slots` itself when no growth is needed.
#[inline]
pub fn slots_for_insert(slots: u64, items: u64, max_load: f64) -> u64 {
    let mut s = slots;
    while items + 1 > max_items(s, max_load) {
        s *= 2;
    }
    s
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fmix32_matches_murmur3_reference_values() {
        // Reference values from MurmurHash3's fmix32 (computed independently).
        assert_eq!(fmix32(0), 0);
        assert_eq!(fmix32(1), 0x514e_28b7);
        assert_eq!(fmix32(0xffff_ffff), 0x81f1_6f39);
    }

    #[test]
    fn key_hash_combines_both_words() {
        let k = 0x0000_0001_0000_0002u64;
        assert_eq!(key_hash(k, 7), fmix32(2 ^ fmix32(1 ^ 7)));
        assert_ne!(key_hash(1 << 32, ROUTE_SEED), key_hash(0, ROUTE_SEED));
    }

    #[test]
    fn routing_matches_an_independent_model() {
        // Computed with a separate Python implementation of SPEC §1.1.
        let keys = [0u64, 1, 2, 3, 12_345_678_901_234, 1 << 63];
        let want = [9u32, 14, 0, 9, 4, 20];
        for (k, w) in keys.iter().zip(want) {
            assert_eq!(shard_of(*k, 24), w, "key {k}");
        }
    }

    #[test]
    fn router_equals_the_modulo_for_every_shard_count() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for shards in (1..=1024).chain([u32::MAX / 2, u32::MAX]) {
            let r = ShardRouter::new(shards);
            for _ in 0..2_000 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                assert_eq!(r.shard(x), shard_of(x, shards), "key {x} shards {shards}");
            }
            for h in [0u64, 1, u64::from(u32::MAX), u64::MAX - 2] {
                assert_eq!(r.shard(h), shard_of(h, shards));
            }
        }
    }

    #[test]
    fn shards_are_in_range_and_spread() {
        let shards = 24;
        let mut counts = vec![0u32; shards as usize];
        for k in 0..240_000u64 {
            counts[shard_of(k, shards) as usize] += 1;
        }
        for &c in &counts {
            assert!(
                (9_000..11_000).contains(&c),
                "uneven shard counts {counts:?}"
            );
        }
    }

    #[test]
    fn growth_rule_doubles_until_the_insert_fits() {
        assert_eq!(max_items(16, 0.8), 12);
        assert_eq!(slots_for_insert(16, 11, 0.8), 16);
        assert_eq!(slots_for_insert(16, 12, 0.8), 32);
        assert_eq!(initial_slots(0, 24, 0.8), MIN_SLOTS);
        assert_eq!(initial_slots(24 * 13, 24, 0.8), 32);
    }
}
