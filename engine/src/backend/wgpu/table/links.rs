//! The link halves of a table on the wgpu backend, kept on the host (an interim: see
//! docs/wgpu.md, "Tables on the device"). Each shard owns the halves of its keys
//! (`owner -> partner`), like the CPU backend's `CpuShard::links`.
//!
//! Link state does not depend on which keys exist (SPEC §1.2: links do not require their keys,
//! and deleting a key, present or not, removes its links), so the host evolves it in batch
//! order without reading anything from the device. Every change is journaled until the batch
//! commits, so a batch that fails on the device leaves the links as they were.

use hashbrown::HashMap;

use crate::table::route::ShardRouter;

/// One journaled change: the half `owner -> partner` had strength `prev` before.
#[derive(Debug, Clone, Copy)]
struct Undo {
    owner: u64,
    partner: u64,
    prev: Option<f32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Links {
    router: ShardRouter,
    /// Per shard: owner -> (partner, strength) halves.
    shards: Vec<HashMap<u64, Vec<(u64, f32)>>>,
    /// Halves stored per shard.
    halves: Vec<u64>,
    total: u64,
    journal: Vec<Undo>,
}

impl Links {
    pub fn new(shards: u32) -> Links {
        Links {
            router: ShardRouter::new(shards),
            shards: vec![HashMap::new(); shards as usize],
            halves: vec![0; shards as usize],
            total: 0,
            journal: Vec::new(),
        }
    }

    pub fn halves(&self, shard: usize) -> u64 {
        self.halves[shard]
    }

    /// Sets (`Some`) or removes (`None`) the half `owner -> partner`, journaling the change.
    fn set(&mut self, owner: u64, partner: u64, strength: Option<f32>) {
        let s = self.router.shard(owner) as usize;
        let map = &mut self.shards[s];
        let prev = match strength {
            Some(x) => {
                let halves = map.entry(owner).or_default();
                match halves.iter_mut().find(|h| h.0 == partner) {
                    Some(h) => Some(std::mem::replace(&mut h.1, x)),
                    None => {
                        halves.push((partner, x));
                        self.halves[s] += 1;
                        self.total += 1;
                        None
                    }
                }
            }
            None => {
                let Some(halves) = map.get_mut(&owner) else {
                    return;
                };
                let Some(at) = halves.iter().position(|h| h.0 == partner) else {
                    return;
                };
                let old = halves.swap_remove(at).1;
                if halves.is_empty() {
                    map.remove(&owner);
                }
                self.halves[s] -= 1;
                self.total -= 1;
                Some(old)
            }
        };
        self.journal.push(Undo {
            owner,
            partner,
            prev,
        });
    }

    pub fn link(&mut self, a: u64, b: u64, strength: f32) {
        self.set(a, b, Some(strength));
        self.set(b, a, Some(strength));
    }

    pub fn unlink(&mut self, a: u64, b: u64) {
        self.set(a, b, None);
        self.set(b, a, None);
    }

    /// Removes every link of `key` (both halves of each).
    pub fn delete(&mut self, key: u64) {
        if self.total == 0 {
            return;
        }
        let s = self.router.shard(key) as usize;
        let Some(halves) = self.shards[s].get(&key) else {
            return;
        };
        let partners: Vec<u64> = halves.iter().map(|h| h.0).collect();
        for p in partners {
            self.set(key, p, None);
            self.set(p, key, None);
        }
    }

    /// Appends `key`'s partners with strength >= `min`, strongest first, ties by key
    /// ascending (existence is the device's to tell).
    pub fn related(&self, key: u64, min: f32, out: &mut Vec<(u64, f32)>) {
        let start = out.len();
        let s = self.router.shard(key) as usize;
        if let Some(halves) = self.shards[s].get(&key) {
            out.extend(halves.iter().filter(|h| h.1 >= min).copied());
        }
        out[start..].sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    }

    /// Keeps every change since the last commit.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    /// Undoes every change since the last commit.
    pub fn rollback(&mut self) {
        let journal = std::mem::take(&mut self.journal);
        for u in journal.into_iter().rev() {
            self.set(u.owner, u.partner, u.prev);
        }
        self.journal.clear();
    }

    /// Visits the halves stored in `shard`.
    pub fn export(&self, shard: usize, link: &mut dyn FnMut(u64, u64, f32)) {
        for (&owner, halves) in &self.shards[shard] {
            for &(partner, strength) in halves {
                link(owner, partner, strength);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn rollback_restores_every_half() {
        let mut l = Links::new(3);
        l.link(1, 2, 0.5);
        l.link(1, 3, 0.25);
        l.commit();
        l.link(1, 2, 0.75);
        l.delete(1);
        l.link(4, 5, 1.0);
        l.unlink(1, 3);
        l.rollback();
        let mut out = Vec::new();
        l.related(1, 0.0, &mut out);
        assert_eq!(out, [(2, 0.5), (3, 0.25)]);
        out.clear();
        l.related(4, 0.0, &mut out);
        assert!(out.is_empty());
        assert_eq!((0..3).map(|s| l.halves(s)).sum::<u64>(), 4);
    }
}
