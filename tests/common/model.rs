//! A plain sequential reference model of one shard table, written from SPEC §1.1 and §1.2
//! alone (not from any backend's code).
//!
//! Invariant guarded: a backend's results, contents and statistics equal those of applying
//! the same operations one by one, in batch order, to this model — values in a `HashMap`,
//! links in a symmetric adjacency map keyed by the unordered pair, and per-shard counters
//! driven by an independent implementation of the routing hash and of the growth rule.

use std::collections::{HashMap, HashSet};

use warpgrid_engine::table::{Batch, Outcome, ShardStats};

/// Seed of the routing hash (SPEC §1.1).
pub const ROUTE_SEED: u32 = 0x9E37_79B9;
/// Slots of a shard of a table created with capacity 0 (SPEC: shards start at 16 slots).
pub const MIN_SLOTS: u64 = 16;

/// `h ^= h>>16; h *= 0x85ebca6b; h ^= h>>13; h *= 0xc2b2ae35; h ^= h>>16` (u32, wrapping).
pub fn fmix32(h: u32) -> u32 {
    let mut h = h;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// `fmix32(lo32(k) ^ fmix32(hi32(k) ^ seed))`.
pub fn key_hash(k: u64, seed: u32) -> u32 {
    let lo = (k & 0xFFFF_FFFF) as u32;
    let hi = (k >> 32) as u32;
    fmix32(lo ^ fmix32(hi ^ seed))
}

/// `key_hash(k, 0x9E3779B9) % shards`.
pub fn shard(k: u64, shards: u32) -> usize {
    (key_hash(k, ROUTE_SEED) % shards) as usize
}

/// Most items a shard of `slots` slots may hold: `floor(slots * max_load)`.
pub fn max_items(slots: u64, max_load: f64) -> u64 {
    (slots as f64 * max_load).floor() as u64
}

/// One table operation (SPEC §1.2).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(u64, Vec<u8>),
    Get(u64),
    Delete(u64),
    Link(u64, u64, f32),
    Unlink(u64, u64),
    /// `GetRelated(key, min_strength, max)`.
    Related(u64, f32, u32),
}

impl Op {
    /// The key whose shard the operation is counted in (the first key of a link).
    pub fn key(&self) -> u64 {
        match *self {
            Op::Put(k, _) | Op::Get(k) | Op::Delete(k) | Op::Related(k, _, _) => k,
            Op::Link(a, _, _) | Op::Unlink(a, _) => a,
        }
    }

    /// Appends this operation to `batch`.
    pub fn push(&self, batch: &mut Batch) {
        match *self {
            Op::Put(k, ref v) => batch.put(k, v),
            Op::Get(k) => batch.get(k),
            Op::Delete(k) => batch.delete(k),
            Op::Link(a, b, s) => batch.link(a, b, s),
            Op::Unlink(a, b) => batch.unlink(a, b),
            Op::Related(k, min, max) => batch.get_related(k, min, max),
        }
        .unwrap_or_else(|e| panic!("test generated an invalid operation {self:?}: {e}"));
    }
}

/// A batch holding `ops`, in order.
pub fn batch_of(value_bytes: usize, ops: &[Op]) -> Batch {
    let mut b = Batch::with_capacity(value_bytes, ops.len());
    for op in ops {
        op.push(&mut b);
    }
    b
}

/// The expected (or observed, owned) result of one operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Ok,
    Value(Vec<u8>),
    Missing,
    Deleted,
    Absent,
    Related {
        value: Option<Vec<u8>>,
        /// `(key, strength, value)`, strongest first, ties by key ascending.
        partners: Vec<(u64, f32, Vec<u8>)>,
    },
}

impl Expect {
    /// An owned copy of a backend's outcome.
    pub fn from_outcome(o: &Outcome<'_>) -> Expect {
        match o {
            Outcome::Ok => Expect::Ok,
            Outcome::Value(v) => Expect::Value(v.to_vec()),
            Outcome::Missing => Expect::Missing,
            Outcome::Deleted => Expect::Deleted,
            Outcome::Absent => Expect::Absent,
            Outcome::Related(r) => Expect::Related {
                value: r.value.map(<[u8]>::to_vec),
                partners: r.partners().map(|(k, s, v)| (k, s, v.to_vec())).collect(),
            },
        }
    }

    /// Equality with strengths compared bit for bit.
    pub fn same(&self, other: &Expect) -> bool {
        match (self, other) {
            (
                Expect::Related {
                    value: va,
                    partners: pa,
                },
                Expect::Related {
                    value: vb,
                    partners: pb,
                },
            ) => {
                va == vb
                    && pa.len() == pb.len()
                    && pa
                        .iter()
                        .zip(pb)
                        .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits() && x.2 == y.2)
            }
            (a, b) => a == b,
        }
    }
}

/// Per-shard counters of the model.
#[derive(Debug, Clone, Default)]
struct ShardModel {
    items: u64,
    slots: u64,
    resizes: u32,
    ops: u64,
}

/// The reference model of one table.
#[derive(Debug, Clone)]
pub struct Model {
    pub shards: u32,
    pub value_bytes: usize,
    pub max_load: f64,
    values: HashMap<u64, Vec<u8>>,
    /// Symmetric adjacency: `links[a][b] == links[b][a]` is the strength of link {a, b}.
    links: HashMap<u64, HashMap<u64, f32>>,
    link_count: u64,
    per_shard: Vec<ShardModel>,
    touched: HashSet<u64>,
}

impl Model {
    /// An empty table whose shards each start with `initial_slots` slots.
    pub fn new(shards: u32, value_bytes: usize, max_load: f64, initial_slots: u64) -> Model {
        Model {
            shards,
            value_bytes,
            max_load,
            values: HashMap::new(),
            links: HashMap::new(),
            link_count: 0,
            per_shard: vec![
                ShardModel {
                    slots: initial_slots,
                    ..ShardModel::default()
                };
                shards as usize
            ],
            touched: HashSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn value(&self, k: u64) -> Option<&[u8]> {
        self.values.get(&k).map(Vec::as_slice)
    }

    /// Keys currently stored, ascending.
    pub fn keys(&self) -> Vec<u64> {
        let mut k: Vec<u64> = self.values.keys().copied().collect();
        k.sort_unstable();
        k
    }

    /// Every key any operation has named (as key or partner), ascending.
    pub fn touched(&self) -> Vec<u64> {
        let mut k: Vec<u64> = self.touched.iter().copied().collect();
        k.sort_unstable();
        k
    }

    /// Links stored (each pair once), whether or not their keys exist.
    pub fn link_count(&self) -> u64 {
        self.link_count
    }

    /// The strength of link {a, b}, if any.
    pub fn link(&self, a: u64, b: u64) -> Option<f32> {
        self.links.get(&a).and_then(|m| m.get(&b)).copied()
    }

    /// Keys routed to each shard.
    pub fn items_per_shard(&self) -> Vec<u64> {
        let mut n = vec![0u64; self.shards as usize];
        for &k in self.values.keys() {
            n[shard(k, self.shards)] += 1;
        }
        n
    }

    /// What each shard's statistics must be: items (by routing), slots and resizes (by the
    /// growth rule), ops (by routing the first key), link halves (one per key of each link).
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        let items = self.items_per_shard();
        let mut halves = vec![0u64; self.shards as usize];
        for (&k, partners) in &self.links {
            halves[shard(k, self.shards)] += partners.len() as u64;
        }
        self.per_shard
            .iter()
            .enumerate()
            .map(|(s, m)| {
                assert_eq!(items[s], m.items, "model bookkeeping: items of shard {s}");
                ShardStats {
                    items: m.items,
                    slots: m.slots,
                    ops: m.ops,
                    resizes: m.resizes,
                    link_halves: halves[s],
                }
            })
            .collect()
    }

    /// Applies `op` as SPEC §1.2 defines it and returns its result.
    pub fn apply(&mut self, op: &Op) -> Expect {
        let s = shard(op.key(), self.shards);
        self.per_shard[s].ops += 1;
        self.touched.insert(op.key());
        match *op {
            Op::Put(k, ref v) => {
                assert_eq!(v.len(), self.value_bytes);
                if !self.values.contains_key(&k) {
                    // Grow (double) before an insert would push items past floor(slots*max_load).
                    let sh = &mut self.per_shard[shard(k, self.shards)];
                    while sh.items + 1 > max_items(sh.slots, self.max_load) {
                        sh.slots *= 2;
                        sh.resizes += 1;
                    }
                    sh.items += 1;
                }
                self.values.insert(k, v.clone());
                Expect::Ok
            }
            Op::Get(k) => match self.values.get(&k) {
                Some(v) => Expect::Value(v.clone()),
                None => Expect::Missing,
            },
            Op::Delete(k) => {
                // Deleting a key, present or not, removes all its links.
                if let Some(partners) = self.links.remove(&k) {
                    for p in partners.keys() {
                        let m = self.links.get_mut(p).expect("links are symmetric");
                        m.remove(&k);
                        if m.is_empty() {
                            self.links.remove(p);
                        }
                    }
                    self.link_count -= partners.len() as u64;
                }
                if self.values.remove(&k).is_some() {
                    self.per_shard[shard(k, self.shards)].items -= 1;
                    Expect::Deleted
                } else {
                    Expect::Absent
                }
            }
            Op::Link(a, b, strength) => {
                assert_ne!(a, b);
                self.touched.insert(b);
                let old = self.links.entry(a).or_default().insert(b, strength);
                self.links.entry(b).or_default().insert(a, strength);
                if old.is_none() {
                    self.link_count += 1;
                }
                Expect::Ok
            }
            Op::Unlink(a, b) => {
                self.touched.insert(b);
                let mut removed = false;
                for (x, y) in [(a, b), (b, a)] {
                    if let Some(m) = self.links.get_mut(&x) {
                        removed |= m.remove(&y).is_some();
                        if m.is_empty() {
                            self.links.remove(&x);
                        }
                    }
                }
                if removed {
                    self.link_count -= 1;
                }
                Expect::Ok
            }
            Op::Related(k, min, max) => Expect::Related {
                value: self.values.get(&k).cloned(),
                partners: self.related(k, min, max),
            },
        }
    }

    /// Partners of `k` that exist now with strength >= `min`, strongest first, ties by key
    /// ascending, at most `max`, each with its value.
    pub fn related(&self, k: u64, min: f32, max: u32) -> Vec<(u64, f32, Vec<u8>)> {
        let Some(partners) = self.links.get(&k) else {
            return Vec::new();
        };
        let mut hits: Vec<(u64, f32)> = partners
            .iter()
            .filter(|&(p, &s)| s >= min && self.values.contains_key(p))
            .map(|(&p, &s)| (p, s))
            .collect();
        hits.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        hits.truncate(max as usize);
        hits.into_iter()
            .map(|(p, s)| (p, s, self.values[&p].clone()))
            .collect()
    }

    /// Applies every operation in order and returns their results.
    pub fn apply_all(&mut self, ops: &[Op]) -> Vec<Expect> {
        ops.iter().map(|op| self.apply(op)).collect()
    }
}
