//! The host cache of hot keys (SPEC §1.4, the ancestor's "event horizon cache").
//!
//! It answers gets without a device launch. Only the queue's dispatcher touches it, the table's
//! one writer, and only in batch order:
//! - **write-through**: every applied put of a cached key updates it; a put of an uncached key
//!   enters with probability `1/put_sample` (default 1/8);
//! - **backfill**: a get answered by the table enters with probability `1/get_sample`
//!   (default 1/4);
//! - **invalidate**: a delete removes the key.
//!
//! So a cached value is always the table's value after the last applied batch: never stale.
//! A get is served from the cache only when no earlier operation of the same batch writes its
//! key. Eviction is CLOCK over a fixed number of entries; memory is `capacity * (8 + value
//! bytes)` plus the index, allocated up front.

use hashbrown::HashMap;
use warpgrid_engine::rng::SplitMix64;

/// Settings of the host cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// `None`: on for device backends, off for the CPU backend (SPEC §1.4).
    pub enabled: Option<bool>,
    /// Entries (default 65,536).
    pub capacity: usize,
    /// A put of an uncached key enters with probability 1/`put_sample` (default 8).
    pub put_sample: u32,
    /// A get the table answered enters with probability 1/`get_sample` (default 4).
    pub get_sample: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: None,
            capacity: 65_536,
            put_sample: 8,
            get_sample: 4,
        }
    }
}

/// A fixed-capacity CLOCK cache from keys to values (as 32-bit words).
#[derive(Debug)]
pub struct HostCache {
    index: HashMap<u64, u32>,
    keys: Vec<u64>,
    values: Vec<u8>,
    referenced: Vec<bool>,
    free: Vec<u32>,
    hand: usize,
    value_bytes: usize,
    put_sample: u64,
    get_sample: u64,
    rng: SplitMix64,
    hits: u64,
    lookups: u64,
}

impl HostCache {
    /// An empty cache with `config`'s capacity and sampling, for values of `value_bytes` bytes.
    pub fn new(config: &CacheConfig, value_bytes: usize) -> HostCache {
        let cap = config.capacity.max(1);
        let w = value_bytes;
        HostCache {
            index: HashMap::with_capacity(cap),
            keys: vec![0; cap],
            values: vec![0; cap * w],
            referenced: vec![false; cap],
            free: (0..cap as u32).rev().collect(),
            hand: 0,
            value_bytes: w,
            put_sample: u64::from(config.put_sample.max(1)),
            get_sample: u64::from(config.get_sample.max(1)),
            rng: SplitMix64::new(0x0CAC_4E5E_ED00_0001),
            hits: 0,
            lookups: 0,
        }
    }

    /// Entries cached.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no entry is cached.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Hits and lookups so far.
    pub fn hit_counts(&self) -> (u64, u64) {
        (self.hits, self.lookups)
    }

    /// The cached value of `key` (counted as a lookup).
    #[inline]
    pub fn lookup(&mut self, key: u64) -> Option<&[u8]> {
        self.lookups += 1;
        let slot = *self.index.get(&key)? as usize;
        self.hits += 1;
        self.referenced[slot] = true;
        let w = self.value_bytes;
        Some(&self.values[slot * w..(slot + 1) * w])
    }

    /// Whether `key` is cached (not counted).
    pub fn contains(&self, key: u64) -> bool {
        self.index.contains_key(&key)
    }

    /// An applied put.
    pub fn on_put(&mut self, key: u64, value: &[u8]) {
        if let Some(&slot) = self.index.get(&key) {
            self.write(slot as usize, value);
        } else if self.rng.below(self.put_sample) == 0 {
            self.insert(key, value);
        }
    }

    /// A get the table answered with `value`.
    pub fn on_get(&mut self, key: u64, value: &[u8]) {
        if !self.index.contains_key(&key) && self.rng.below(self.get_sample) == 0 {
            self.insert(key, value);
        }
    }

    /// An applied delete.
    pub fn on_delete(&mut self, key: u64) {
        if let Some(slot) = self.index.remove(&key) {
            self.referenced[slot as usize] = false;
            self.free.push(slot);
        }
    }

    /// Forgets everything (e.g. after a batch failed half-way on a device).
    pub fn clear(&mut self) {
        self.index.clear();
        self.free = (0..self.keys.len() as u32).rev().collect();
        self.referenced.fill(false);
    }

    fn write(&mut self, slot: usize, value: &[u8]) {
        let w = self.value_bytes;
        self.values[slot * w..(slot + 1) * w].copy_from_slice(value);
    }

    fn insert(&mut self, key: u64, value: &[u8]) {
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => self.evict(),
        };
        self.keys[slot] = key;
        self.referenced[slot] = false;
        self.write(slot, value);
        self.index.insert(key, slot as u32);
    }

    /// CLOCK: the first slot from the hand not referenced since the hand last passed.
    fn evict(&mut self) -> usize {
        loop {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.keys.len();
            if std::mem::take(&mut self.referenced[slot]) {
                continue;
            }
            self.index.remove(&self.keys[slot]);
            return slot;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn cache(capacity: usize) -> HostCache {
        HostCache::new(
            &CacheConfig {
                capacity,
                put_sample: 1,
                get_sample: 1,
                ..CacheConfig::default()
            },
            8,
        )
    }

    #[test]
    fn write_through_backfill_and_invalidate() {
        let mut c = cache(4);
        c.on_put(1, &[1; 8]);
        assert_eq!(c.lookup(1), Some(&[1u8; 8][..]));
        c.on_put(1, &[2; 8]);
        assert_eq!(c.lookup(1), Some(&[2u8; 8][..]));
        c.on_delete(1);
        assert_eq!(c.lookup(1), None);
        c.on_get(5, &[5; 8]);
        c.on_get(5, &[6; 8]); // a get never overwrites: the value came from the same state
        assert_eq!(c.lookup(5), Some(&[5u8; 8][..]));
        assert_eq!(c.hit_counts(), (3, 4));
    }

    #[test]
    fn clock_evicts_unreferenced_entries_first_and_stays_bounded() {
        let mut c = cache(3);
        for k in 1..=3 {
            c.on_put(k, &[k as u8; 8]);
        }
        assert!(c.lookup(1).is_some());
        c.on_put(4, &[4; 8]); // 1 was referenced: 2 goes
        assert!(c.contains(1) && !c.contains(2) && c.contains(3) && c.contains(4));
        for k in 10..1000 {
            c.on_put(k, &[0; 8]);
            assert!(c.len() <= 3);
        }
    }

    #[test]
    fn sampling_admits_about_one_in_n() {
        let mut c = HostCache::new(
            &CacheConfig {
                capacity: 100_000,
                ..CacheConfig::default()
            },
            8,
        );
        for k in 0..80_000 {
            c.on_put(k, &[0; 8]);
        }
        assert!(
            (8_000..12_000).contains(&c.len()),
            "{} of 80000 admitted at 1/8",
            c.len()
        );
    }
}
