//! One shard of a table on the CPU backend: an open-addressing hash table over flat arrays
//! (linear probing, tombstones), plus the shard's halves of links.
//!
//! Layout: `keys[slot]` (u64; [`EMPTY_KEY`] / [`TOMBSTONE_KEY`] mark free slots) and
//! `values[slot * value_words ..]` (u32 words) — the same structure of arrays a device
//! backend uploads. Growth follows the shared rule of [`route`](crate::table::route): a shard
//! doubles just before an insert would pass `max_load`, so slot counts agree across backends.
//! Tombstones are purged in place when they crowd out empty slots (never a visible resize).

use hashbrown::HashMap;

use crate::table::route::{EMPTY_KEY, TOMBSTONE_KEY, home_slot, max_items, slots_for_insert};

/// One half of a link, kept in the shard of `owner` (the map key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LinkHalf {
    pub partner: u64,
    pub strength: f32,
    /// Batch-global order of the operation that wrote it: `(epoch << 32) | op index`.
    pub stamp: u128,
}

/// Buffers reserved before a batch for every doubling it might need, smallest last, so that
/// growth inside the batch cannot fail half-way.
#[derive(Debug, Default)]
pub(crate) struct GrowthPlan {
    buffers: Vec<(Vec<u64>, Vec<u32>)>,
}

impl GrowthPlan {
    /// Slot counts of the doublings a shard may need to take `new_keys` more keys.
    pub fn sizes(slots: u64, items: u64, new_keys: u64, max_load: f64) -> Vec<u64> {
        let mut sizes = Vec::new();
        let mut s = slots;
        while max_items(s, max_load) < items + new_keys {
            s *= 2;
            sizes.push(s);
        }
        sizes
    }

    /// Reserves (without touching) the buffers for `sizes`; `None` if memory is short.
    pub fn reserve(sizes: &[u64], value_words: usize) -> Option<GrowthPlan> {
        let mut buffers = Vec::with_capacity(sizes.len());
        for &s in sizes.iter().rev() {
            let mut keys = Vec::new();
            let mut values = Vec::new();
            keys.try_reserve_exact(s as usize).ok()?;
            values.try_reserve_exact(s as usize * value_words).ok()?;
            buffers.push((keys, values));
        }
        Some(GrowthPlan { buffers })
    }

    fn take(&mut self, slots: usize, value_words: usize) -> (Vec<u64>, Vec<u32>) {
        // The plan covers every doubling the batch can cause; allocate only as a fallback.
        match self.buffers.pop() {
            Some(b) if b.0.capacity() >= slots => b,
            _ => (
                Vec::with_capacity(slots),
                Vec::with_capacity(slots * value_words),
            ),
        }
    }
}

/// Copies a value; the common small widths avoid a `memcpy` call per operation.
#[inline(always)]
pub(crate) fn copy_words(dst: &mut [u32], src: &[u32]) {
    match (dst.len(), src.len()) {
        (1, 1) => dst[0] = src[0],
        (2, 2) => {
            dst[0] = src[0];
            dst[1] = src[1];
        }
        (4, 4) => dst.copy_from_slice(&src[..4]),
        _ => dst.copy_from_slice(src),
    }
}

/// Most live plus deleted slots before tombstones are purged (always below `slots`).
fn max_used(slots: u64, max_load: f64) -> u64 {
    let m = max_items(slots, max_load);
    m + (slots - m) / 2
}

/// Bytes of keys and values in a shard of `slots` slots.
pub(crate) fn shard_bytes(slots: u64, value_words: usize) -> u64 {
    slots * (8 + 4 * value_words as u64)
}

#[derive(Debug, Clone)]
pub(crate) struct CpuShard {
    keys: Vec<u64>,
    values: Vec<u32>,
    value_words: usize,
    mask: usize,
    max_items: u64,
    /// Most items + tombstones before a purge: halfway between `max_items` and `slots`, so a
    /// purge (O(slots)) comes at most once per ~(slots - max_items) / 2 deletes.
    max_used: u64,
    max_load: f64,
    items: u64,
    tombstones: u64,
    pub ops: u64,
    pub resizes: u32,
    /// In-place tombstone purges (not a statistic of the spec; the cost of churn).
    purges: u64,
    links: HashMap<u64, Vec<LinkHalf>>,
    link_halves: u64,
}

impl CpuShard {
    /// An empty shard of `slots` (a power of two) slots; `None` if memory is short.
    pub fn new(slots: u64, value_words: usize, max_load: f64) -> Option<CpuShard> {
        let mut keys = Vec::new();
        let mut values = Vec::new();
        keys.try_reserve_exact(slots as usize).ok()?;
        values
            .try_reserve_exact(slots as usize * value_words)
            .ok()?;
        keys.resize(slots as usize, EMPTY_KEY);
        values.resize(slots as usize * value_words, 0);
        Some(CpuShard {
            keys,
            values,
            value_words,
            mask: slots as usize - 1,
            max_items: max_items(slots, max_load),
            max_used: max_used(slots, max_load),
            max_load,
            items: 0,
            tombstones: 0,
            ops: 0,
            resizes: 0,
            purges: 0,
            links: HashMap::new(),
            link_halves: 0,
        })
    }

    /// A deep copy; `None` if memory is short.
    pub fn try_clone(&self) -> Option<CpuShard> {
        let mut keys = Vec::new();
        let mut values = Vec::new();
        keys.try_reserve_exact(self.keys.len()).ok()?;
        values.try_reserve_exact(self.values.len()).ok()?;
        keys.extend_from_slice(&self.keys);
        values.extend_from_slice(&self.values);
        Some(CpuShard {
            keys,
            values,
            value_words: self.value_words,
            mask: self.mask,
            max_items: self.max_items,
            max_used: self.max_used,
            max_load: self.max_load,
            items: self.items,
            tombstones: self.tombstones,
            ops: self.ops,
            resizes: self.resizes,
            purges: self.purges,
            links: self.links.clone(),
            link_halves: self.link_halves,
        })
    }

    pub fn slots(&self) -> u64 {
        self.keys.len() as u64
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    pub fn link_halves(&self) -> u64 {
        self.link_halves
    }

    pub fn has_links(&self) -> bool {
        self.link_halves != 0
    }

    pub fn bytes(&self) -> u64 {
        shard_bytes(self.slots(), self.value_words)
    }

    /// Starts loading the cache lines `key`'s probe will touch first.
    #[inline(always)]
    pub fn prefetch(&self, key: u64) {
        let i = home_slot(key, self.mask);
        super::prefetch::prefetch(&self.keys[i]);
        super::prefetch::prefetch(&self.values[i * self.value_words]);
    }

    /// The slot holding `key`.
    #[inline]
    pub fn find(&self, key: u64) -> Option<usize> {
        let mut i = home_slot(key, self.mask);
        loop {
            let k = self.keys[i];
            if k == key {
                return Some(i);
            }
            if k == EMPTY_KEY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The value words at `slot`.
    #[inline]
    pub fn value(&self, slot: usize) -> &[u32] {
        &self.values[slot * self.value_words..(slot + 1) * self.value_words]
    }

    /// Upserts `key`; grows first (from `plan`) when a new key would pass `max_load`.
    #[inline]
    pub fn put(&mut self, key: u64, value: &[u32], plan: &mut GrowthPlan) {
        let mut i = home_slot(key, self.mask);
        let mut tomb = usize::MAX;
        loop {
            let k = self.keys[i];
            if k == key {
                self.write_value(i, value);
                return;
            }
            if k == EMPTY_KEY {
                break;
            }
            if k == TOMBSTONE_KEY && tomb == usize::MAX {
                tomb = i;
            }
            i = (i + 1) & self.mask;
        }
        let at = if self.items + 1 > self.max_items {
            self.grow(plan);
            self.first_empty(key)
        } else if tomb != usize::MAX {
            self.tombstones -= 1;
            tomb
        } else if self.items + self.tombstones + 1 > self.max_used {
            self.purge_tombstones();
            self.first_empty(key)
        } else {
            i
        };
        self.keys[at] = key;
        self.write_value(at, value);
        self.items += 1;
    }

    #[inline]
    fn write_value(&mut self, slot: usize, value: &[u32]) {
        let w = self.value_words;
        copy_words(&mut self.values[slot * w..(slot + 1) * w], value);
    }

    fn first_empty(&self, key: u64) -> usize {
        let mut i = home_slot(key, self.mask);
        while self.keys[i] != EMPTY_KEY {
            i = (i + 1) & self.mask;
        }
        i
    }

    /// Removes `key`; whether it existed.
    #[inline]
    pub fn delete(&mut self, key: u64) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        if self.keys[(i + 1) & self.mask] == EMPTY_KEY {
            // Nothing probes past an empty slot, so this slot and the tombstones right
            // before it can become empty too.
            self.keys[i] = EMPTY_KEY;
            let mut j = (i + self.mask) & self.mask;
            while self.keys[j] == TOMBSTONE_KEY {
                self.keys[j] = EMPTY_KEY;
                self.tombstones -= 1;
                j = (j + self.mask) & self.mask;
            }
        } else {
            self.keys[i] = TOMBSTONE_KEY;
            self.tombstones += 1;
        }
        self.items -= 1;
        true
    }

    /// Doubles the slots (as many times as the growth rule says) and rehashes.
    fn grow(&mut self, plan: &mut GrowthPlan) {
        let slots = slots_for_insert(self.slots(), self.items, self.max_load) as usize;
        let w = self.value_words;
        let (mut keys, mut values) = plan.take(slots, w);
        keys.clear();
        values.clear();
        keys.resize(slots, EMPTY_KEY);
        values.resize(slots * w, 0);
        let mask = slots - 1;
        for (slot, &k) in self.keys.iter().enumerate() {
            if k == EMPTY_KEY || k == TOMBSTONE_KEY {
                continue;
            }
            let mut i = home_slot(k, mask);
            while keys[i] != EMPTY_KEY {
                i = (i + 1) & mask;
            }
            keys[i] = k;
            copy_words(
                &mut values[i * w..(i + 1) * w],
                &self.values[slot * w..(slot + 1) * w],
            );
        }
        self.resizes += slots.trailing_zeros() - self.keys.len().trailing_zeros();
        self.keys = keys;
        self.values = values;
        self.mask = mask;
        self.max_items = max_items(slots as u64, self.max_load);
        self.max_used = max_used(slots as u64, self.max_load);
        self.tombstones = 0;
    }

    /// Rebuilds the probe sequences in place without tombstones (no allocation).
    ///
    /// Starting just after a slot that was empty before the purge, every live key is lifted
    /// out and put back at the first empty slot from its home. Keys are visited in probe
    /// order within their run, so each lands at or before its old slot and no run is broken.
    fn purge_tombstones(&mut self) {
        let slots = self.keys.len();
        let start = self
            .keys
            .iter()
            .position(|&k| k == EMPTY_KEY)
            .expect("a shard always keeps an empty slot");
        for k in &mut self.keys {
            if *k == TOMBSTONE_KEY {
                *k = EMPTY_KEY;
            }
        }
        self.tombstones = 0;
        self.purges += 1;
        let w = self.value_words;
        for step in 1..=slots {
            let j = (start + step) & self.mask;
            let k = self.keys[j];
            if k == EMPTY_KEY {
                continue;
            }
            self.keys[j] = EMPTY_KEY;
            let e = self.first_empty(k);
            self.keys[e] = k;
            if e != j {
                self.values.copy_within(j * w..(j + 1) * w, e * w);
            }
        }
    }

    /// Sets the half `owner -> partner`.
    pub fn link_half(&mut self, owner: u64, partner: u64, strength: f32, stamp: u128) {
        let halves = self.links.entry(owner).or_default();
        if let Some(h) = halves.iter_mut().find(|h| h.partner == partner) {
            h.strength = strength;
            h.stamp = stamp;
        } else {
            halves.push(LinkHalf {
                partner,
                strength,
                stamp,
            });
            self.link_halves += 1;
        }
    }

    /// Removes the half `owner -> partner` if it is older than `before` (any age: `u128::MAX`).
    pub fn unlink_half(&mut self, owner: u64, partner: u64, before: u128) {
        let Some(halves) = self.links.get_mut(&owner) else {
            return;
        };
        if let Some(p) = halves
            .iter()
            .position(|h| h.partner == partner && h.stamp < before)
        {
            halves.swap_remove(p);
            self.link_halves -= 1;
            if halves.is_empty() {
                self.links.remove(&owner);
            }
        }
    }

    /// Removes and returns every half owned by `owner`.
    pub fn take_links(&mut self, owner: u64) -> Option<Vec<LinkHalf>> {
        let halves = self.links.remove(&owner)?;
        self.link_halves -= halves.len() as u64;
        Some(halves)
    }

    /// Visits every entry, then every link half.
    pub fn export(&self, entry: &mut dyn FnMut(u64, &[u8]), link: &mut dyn FnMut(u64, u64, f32)) {
        for (slot, &k) in self.keys.iter().enumerate() {
            if k != EMPTY_KEY && k != TOMBSTONE_KEY {
                entry(k, bytemuck::cast_slice(self.value(slot)));
            }
        }
        for (&owner, halves) in &self.links {
            for h in halves {
                link(owner, h.partner, h.strength);
            }
        }
    }

    /// The halves owned by `owner`.
    pub fn links_of(&self, owner: u64) -> &[LinkHalf] {
        self.links.get(&owner).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn shard() -> CpuShard {
        CpuShard::new(16, 2, 0.8).unwrap()
    }

    #[test]
    fn put_get_delete_and_growth_follow_the_rule() {
        let mut s = shard();
        let mut plan = GrowthPlan::default();
        for k in 0..12u64 {
            s.put(k, &[k as u32, 1], &mut plan);
        }
        assert_eq!((s.slots(), s.resizes), (16, 0));
        s.put(12, &[12, 1], &mut plan);
        assert_eq!((s.slots(), s.resizes), (32, 1));
        for k in 0..13u64 {
            assert_eq!(s.value(s.find(k).unwrap()), &[k as u32, 1]);
        }
        assert!(s.delete(5));
        assert!(!s.delete(5));
        assert!(s.find(5).is_none());
        assert_eq!(s.items(), 12);
    }

    #[test]
    fn churn_through_tombstones_never_loses_keys() {
        let mut s = shard();
        let mut plan = GrowthPlan::default();
        let mut live = std::collections::BTreeSet::new();
        let mut x = 0x1234_5678u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 40;
            if x & 1 == 0 {
                s.put(k, &[k as u32, 7], &mut plan);
                live.insert(k);
            } else {
                assert_eq!(s.delete(k), live.remove(&k));
            }
            assert_eq!(s.items(), live.len() as u64);
        }
        for k in 0..40 {
            assert_eq!(s.find(k).is_some(), live.contains(&k), "key {k}");
        }
        assert!(
            s.slots() <= 64,
            "churn must not grow the shard: {}",
            s.slots()
        );
    }

    #[test]
    fn churn_at_the_growth_limit_purges_rarely() {
        // One slot short of growing, replace keys one at a time: each delete leaves a
        // tombstone, each put of a new key may need a free slot.
        let mut s = CpuShard::new(1 << 12, 2, 0.8).unwrap();
        let mut plan = GrowthPlan::default();
        let limit = max_items(1 << 12, 0.8);
        for k in 0..limit - 1 {
            s.put(k, &[0, 0], &mut plan);
        }
        let rounds = 20_000u64;
        let mut live: std::collections::VecDeque<u64> = (0..limit - 1).collect();
        for r in 0..rounds {
            let oldest = live.pop_front().unwrap();
            assert!(s.delete(oldest), "key {oldest} lost");
            s.put(limit + r, &[1, 1], &mut plan);
            live.push_back(limit + r);
        }
        assert_eq!((s.slots(), s.items()), (1 << 12, limit - 1));
        // A purge frees (slots - max_items) / 2 slots, so it comes at most once per that many
        // inserts; a purge per insert (the old threshold) would be 20,000.
        let bound = rounds / ((1 << 12) - limit) * 2 + 1;
        assert!(
            s.purges <= bound,
            "{} purges for {rounds} replacements (bound {bound})",
            s.purges
        );
        for k in live {
            assert!(s.find(k).is_some(), "key {k} lost");
        }
    }

    #[test]
    fn purge_keeps_every_key_reachable() {
        let mut s = shard();
        let mut plan = GrowthPlan::default();
        for k in 0..12u64 {
            s.put(k, &[k as u32, 0], &mut plan);
        }
        for k in (0..12u64).step_by(2) {
            s.delete(k);
        }
        s.purge_tombstones();
        assert_eq!(s.tombstones, 0);
        for k in 0..12u64 {
            assert_eq!(
                s.find(k).map(|i| s.value(i)[0]),
                (k % 2 == 1).then_some(k as u32)
            );
        }
    }
}
