//! Pending events of one torus: a calendar of per-instant buckets, each split into blocks of
//! destination cells.
//!
//! Every event a processed instant `t` emits lands in `t+1..=t+max_delay`, so a ring of
//! `max_delay + 1` slots (slot `t mod (max_delay+1)` holds instant `t`) covers every instant
//! in `now..=now+max_delay`. Each slot is split into [`Blocks`] of `2^shift` consecutive
//! destination cells, so an instant can be sorted and processed block by block in parallel,
//! and the capacity rule can keep or drop whole blocks without reading them. Injections
//! further ahead than the ring wait in an ordered side map and move into the ring as the
//! clock reaches them; nothing on the hot path touches the map. Events inside a bucket are
//! unordered (an instant is sorted when it is processed; the digest sorts).
//!
//! Memory: bucket buffers are recycled through a pool (a processed bucket's buffer goes to
//! the pool; a bucket about to outgrow its buffer takes one from it; the pool keeps at most
//! one buffer per block, the largest), so the buffers in use track the pending population
//! instead of each slot growing to the largest instant.

use std::collections::BTreeMap;

use super::super::event::{Event, Packed};

/// How destination cells are grouped into blocks: block of cell `c` is `c >> shift`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocks {
    pub shift: u32,
    pub count: u32,
}

impl Blocks {
    /// At most 64 blocks of at least 256 cells, and at most 8192 buckets in the whole ring.
    pub fn new(cells: u32, max_delay: u32) -> Blocks {
        let max_blocks = (8192 / (max_delay + 1)).clamp(1, 64);
        let max_blocks_log = u32::BITS - 1 - max_blocks.leading_zeros();
        let cell_bits = u32::BITS - (cells - 1).leading_zeros();
        let shift = cell_bits.saturating_sub(max_blocks_log).max(8);
        Blocks {
            shift,
            count: cells.div_ceil(1 << shift),
        }
    }

    #[inline]
    pub fn of(&self, cell: u32) -> usize {
        (cell >> self.shift) as usize
    }

    /// Cells `base..base+span` of block `b` (the last block may be short).
    pub fn range(&self, b: u32, cells: u32) -> (u32, u32) {
        let base = b << self.shift;
        (base, (cells - base).min(1 << self.shift))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Calendar<E> {
    pub blocks: Blocks,
    /// `(max_delay + 1) · blocks.count` buckets: slot `s`, block `b` at `s · count + b`.
    pub ring: Vec<Vec<E>>,
    /// Events per slot.
    pub slot_len: Vec<u64>,
    /// Events beyond `now + max_delay`, by instant.
    far: BTreeMap<u32, Vec<E>>,
    /// All pending events (ring and far).
    pub pending: u64,
    /// Empty buffers ready for reuse.
    pub pool: Vec<Vec<E>>,
    max_delay: u32,
}

impl<E: Packed> Calendar<E> {
    pub fn new(cells: u32, max_delay: u32) -> Calendar<E> {
        let blocks = Blocks::new(cells, max_delay);
        let slots = max_delay as usize + 1;
        Calendar {
            blocks,
            ring: (0..slots * blocks.count as usize)
                .map(|_| Vec::new())
                .collect(),
            slot_len: vec![0; slots],
            far: BTreeMap::new(),
            pending: 0,
            pool: Vec::new(),
            max_delay,
        }
    }

    #[inline]
    pub fn slot(&self, t: u32) -> usize {
        (t % (self.max_delay + 1)) as usize
    }

    /// Index in `ring` of instant `t`'s bucket for `dst`.
    #[inline]
    pub fn bucket(&self, t: u32, dst: u32) -> usize {
        self.slot(t) * self.blocks.count as usize + self.blocks.of(dst)
    }

    /// Adds an event at instant `t >= now`.
    pub fn push(&mut self, now: u32, t: u32, ev: E) {
        debug_assert!(t >= now);
        if (t - now) <= self.max_delay {
            let b = self.bucket(t, ev.dst());
            self.ring[b].push(ev);
            let s = self.slot(t);
            self.slot_len[s] += 1;
        } else {
            self.far.entry(t).or_default().push(ev);
        }
        self.pending += 1;
    }

    /// The earliest instant with a pending event, given that nothing is pending before `now`.
    pub fn earliest(&self, now: u32) -> Option<u32> {
        if self.pending == 0 {
            return None;
        }
        for k in 0..=self.max_delay {
            let t = now as u64 + k as u64;
            if t > u32::MAX as u64 {
                break;
            }
            if self.slot_len[self.slot(t as u32)] != 0 {
                return Some(t as u32);
            }
        }
        self.far.keys().next().copied()
    }

    /// The clock moved to `now` (every instant before it processed): bring the far events
    /// that are now within `max_delay` into the ring.
    pub fn advance(&mut self, now: u32) {
        let horizon = now as u64 + self.max_delay as u64;
        while let Some(entry) = self.far.first_entry() {
            if *entry.key() as u64 > horizon {
                break;
            }
            let (t, evs) = entry.remove_entry();
            let s = self.slot(t);
            self.slot_len[s] += evs.len() as u64;
            for ev in evs {
                let b = self.bucket(t, ev.dst());
                self.ring[b].push(ev);
            }
        }
    }

    /// Gives every (empty) bucket buffer of `slot` to the pool.
    pub fn recycle(&mut self, slot: usize) {
        let n = self.blocks.count as usize;
        for v in &mut self.ring[slot * n..(slot + 1) * n] {
            debug_assert!(v.is_empty());
            if v.capacity() > 0 {
                self.pool.push(std::mem::take(v));
            }
        }
        self.slot_len[slot] = 0;
    }

    /// Frees pooled buffers beyond one per block (keeping the largest): the pool only has to
    /// bridge from one processed slot to the buckets the next merges fill.
    pub fn trim_pool(&mut self) {
        super::instant::keep_largest(&mut self.pool, self.blocks.count as usize);
    }

    /// Makes room for `add` more events in bucket `i`, from the pool when it has a buffer.
    pub fn reserve(&mut self, i: usize, add: usize) {
        let need = self.ring[i].len() + add;
        if self.ring[i].capacity() >= need {
            return;
        }
        match self.pool.pop() {
            Some(mut buf) => {
                if buf.capacity() < need {
                    buf.reserve(need);
                }
                buf.extend_from_slice(&self.ring[i]);
                let mut old = std::mem::replace(&mut self.ring[i], buf);
                if old.capacity() > 0 {
                    old.clear();
                    self.pool.push(old);
                }
            }
            None => self.ring[i].reserve(add),
        }
    }

    /// Bytes of capacity held by the ring's buckets, the far-future map's buffers and the
    /// pool (the calendar's own bookkeeping included).
    pub fn buffer_bytes(&self) -> u64 {
        let ev = std::mem::size_of::<E>();
        let bufs = |v: &[Vec<E>]| v.iter().map(|b| b.capacity() * ev).sum::<usize>();
        let vec_head = std::mem::size_of::<Vec<E>>();
        let far: usize = self
            .far
            .values()
            .map(|b| b.capacity() * ev + vec_head)
            .sum();
        (bufs(&self.ring)
            + bufs(&self.pool)
            + far
            + (self.ring.capacity() + self.pool.capacity()) * vec_head
            + self.slot_len.capacity() * 8) as u64
    }

    /// Every pending event, in total order, given the clock `now`.
    pub fn events(&self, now: u32) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.pending as usize);
        let n = self.blocks.count as usize;
        for k in 0..=self.max_delay {
            let t = now as u64 + k as u64;
            if t > u32::MAX as u64 {
                break;
            }
            let t = t as u32;
            let s = self.slot(t);
            for bucket in &self.ring[s * n..(s + 1) * n] {
                out.extend(bucket.iter().map(|e| e.at(t)));
            }
        }
        for (&t, evs) in &self.far {
            out.extend(evs.iter().map(|e| e.at(t)));
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn block_geometry() {
        let b = Blocks::new(32 * 32 * 32, 64);
        assert_eq!((b.shift, b.count), (9, 64));
        let b = Blocks::new(8, 64);
        assert_eq!((b.shift, b.count), (8, 1));
        assert_eq!(b.range(0, 8), (0, 8));
        let b = Blocks::new(1 << 24, 1024);
        assert_eq!((b.shift, b.count), (22, 4));
        let b = Blocks::new(3 * 1000, 1);
        assert_eq!(b.count, 3000u32.div_ceil(1 << b.shift));
        assert_eq!(
            b.range(b.count - 1, 3000).0 + b.range(b.count - 1, 3000).1,
            3000
        );
    }
}
