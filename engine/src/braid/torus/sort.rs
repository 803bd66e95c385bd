//! Ordering the events of one instant and one block of destinations (`base..base+span`) by
//! `(dst, src, payload)`, in two steps so that the second runs in parallel and in cache:
//!
//! 1. [`Sorter::group`]: sparse inputs (`n < 64` or `8·n < span`) are copied and fully
//!    sorted by `sort_unstable` on the packed key; otherwise a stable **counting sort by
//!    destination** over the block's cells (one histogram pass, one scatter pass: the only
//!    passes over the whole input).
//! 2. [`Sorter::sort_run`], by whoever processes the run, just before processing it: each
//!    destination's run ordered by `(src, payload)`. One pass finds whether the run is
//!    already ordered, or ordered by `src` only (the usual case: emissions are merged in
//!    source order), and each source group's payload range. Then short runs or groups go to
//!    `sort_unstable`; source groups to a **counting sort by payload** (ranges up to 2^15);
//!    anything else to an **LSD radix sort** of the key `src - smin | payload - pmin` packed
//!    in 64 bits (both ranges measured, so concentrated runs get short keys: one pass when
//!    the key has at most 15 bits, else digits of at most 11 bits).

use super::super::event::{Packed, biased, unbiased};

/// Digit width ceiling of the radix passes (2048 buckets).
const MAX_DIGIT_BITS: u32 = 11;
/// A run whose key has at most this many bits is sorted in one counting pass when it is at
/// least `2^(bits - 2)` long (the histogram then costs less than the pass it saves).
const ONE_PASS_BITS: u32 = 15;
/// Runs up to this long are ordered by `sort_unstable` (insertion sort for the shortest).
const SHORT_RUN: usize = 48;

/// Reusable buffers of the sort (lengths are high-water marks).
#[derive(Debug, Clone)]
pub(crate) struct Sorter<E> {
    keys: Vec<u64>,
    tmp: Vec<u64>,
    hist: Vec<u32>,
    counts: Vec<u32>,
    /// Scatter target of the counting sort by payload.
    spare: Vec<E>,
    /// Source groups of the run being ordered: `(start, end, min, max)` of biased payloads.
    groups: Vec<(u32, u32, u32, u32)>,
}

impl<E> Sorter<E> {
    /// Bytes of capacity its buffers hold.
    pub(crate) fn buffer_bytes(&self) -> usize {
        (self.keys.capacity() + self.tmp.capacity()) * 8
            + (self.hist.capacity() + self.counts.capacity()) * 4
            + self.spare.capacity() * std::mem::size_of::<E>()
            + self.groups.capacity() * 16
    }
}

impl<E> Default for Sorter<E> {
    fn default() -> Self {
        Sorter {
            keys: Vec::new(),
            tmp: Vec::new(),
            hist: Vec::new(),
            counts: Vec::new(),
            spare: Vec::new(),
            groups: Vec::new(),
        }
    }
}

fn bits(v: u64) -> u32 {
    u64::BITS - v.leading_zeros()
}

impl<E: Packed> Sorter<E> {
    /// Writes the bucket's events into `out` (same length) ordered by destination (and, for
    /// sparse inputs, fully). Every event's `dst` lies in `base..base + span`.
    pub fn group(&mut self, bucket: &[E], base: u32, span: u32, out: &mut [E]) {
        debug_assert_eq!(out.len(), bucket.len());
        let n = bucket.len();
        if n < 64 || n.saturating_mul(8) < span as usize {
            out.copy_from_slice(bucket);
            out.sort_unstable_by_key(E::key);
        } else {
            self.by_destination(bucket, base, span, out);
        }
    }

    /// Both steps: `out` in total order.
    #[cfg(test)]
    pub fn sort(&mut self, bucket: &[E], base: u32, span: u32, out: &mut [E]) {
        self.group(bucket, base, span, out);
        let n = out.len();
        let mut i = 0;
        while i < n {
            let d = out[i].dst();
            let mut j = i + 1;
            while j < n && out[j].dst() == d {
                j += 1;
            }
            self.sort_run(&mut out[i..j]);
            i = j;
        }
    }

    /// Stable counting sort by destination.
    fn by_destination(&mut self, bucket: &[E], base: u32, span: u32, out: &mut [E]) {
        let counts = &mut self.counts;
        counts.clear();
        counts.resize(span as usize, 0);
        for e in bucket {
            counts[(e.dst() - base) as usize] += 1;
        }
        exclusive_prefix(counts);
        for e in bucket {
            let c = &mut counts[(e.dst() - base) as usize];
            out[*c as usize] = *e;
            *c += 1;
        }
    }

    /// Orders one destination's run by `(src, payload)`. Runs often arrive already ordered
    /// by `src` (emissions are merged in source order); then only each source's group is
    /// ordered by payload, by a counting sort when the payloads span at most 2^15 values.
    pub fn sort_run(&mut self, run: &mut [E]) {
        let n = run.len();
        if n <= 1 {
            return;
        }
        // One pass: is the run ordered by src, where do the src groups start, what payload
        // range does each span, and is each already ordered?
        self.groups.clear();
        let (mut by_src, mut total, mut sorted) = (true, true, true);
        let mut start = 0u32;
        let mut lo = biased(run[0].payload());
        let mut hi = lo;
        for i in 1..n {
            let (a, b) = (&run[i - 1], &run[i]);
            let p = biased(b.payload());
            if a.src() != b.src() {
                if a.src() > b.src() {
                    by_src = false;
                    break;
                }
                if !sorted {
                    self.groups.push((start, i as u32, lo, hi));
                }
                (start, lo, hi, sorted) = (i as u32, p, p, true);
            } else {
                if p < biased(a.payload()) {
                    sorted = false;
                    total = false;
                }
                lo = lo.min(p);
                hi = hi.max(p);
            }
        }
        if by_src && total {
            return;
        }
        if !by_src || n <= SHORT_RUN {
            self.sort_keys(run);
            return;
        }
        if !sorted {
            self.groups.push((start, n as u32, lo, hi));
        }
        for g in 0..self.groups.len() {
            let (a, b, lo, hi) = self.groups[g];
            let group = &mut run[a as usize..b as usize];
            if group.len() <= SHORT_RUN {
                group.sort_unstable_by_key(E::src_key);
            } else if hi - lo < 1 << ONE_PASS_BITS {
                self.by_payload(group, lo, hi);
            } else {
                self.radix_run(group);
            }
        }
    }

    /// Counting sort of one source's events by payload (biased payloads in `lo..=hi`).
    fn by_payload(&mut self, group: &mut [E], lo: u32, hi: u32) {
        let n = group.len();
        let counts = &mut self.counts;
        counts.clear();
        counts.resize((hi - lo) as usize + 1, 0);
        for e in group.iter() {
            counts[(biased(e.payload()) - lo) as usize] += 1;
        }
        exclusive_prefix(counts);
        if self.spare.len() < n {
            self.spare.resize(n, E::default());
        }
        let spare = &mut self.spare[..n];
        for e in group.iter() {
            let c = &mut counts[(biased(e.payload()) - lo) as usize];
            spare[*c as usize] = *e;
            *c += 1;
        }
        group.copy_from_slice(spare);
    }

    /// Orders events of one destination by `(src, payload)`: `sort_unstable` when short,
    /// radix otherwise.
    fn sort_keys(&mut self, run: &mut [E]) {
        if run.len() <= SHORT_RUN {
            run.sort_unstable_by_key(E::src_key);
        } else {
            self.radix_run(run);
        }
    }

    /// LSD radix sort of a run on the packed key `(src - smin) << bp | (payload - pmin)`
    /// (at most 24 + 32 bits).
    fn radix_run(&mut self, run: &mut [E]) {
        let n = run.len();
        let (mut smin, mut smax, mut pmin, mut pmax) = (u32::MAX, 0u32, u32::MAX, 0u32);
        for e in run.iter() {
            let p = biased(e.payload());
            smin = smin.min(e.src());
            smax = smax.max(e.src());
            pmin = pmin.min(p);
            pmax = pmax.max(p);
        }
        let bs = bits((smax - smin) as u64);
        let bp = bits((pmax - pmin) as u64);
        let total = bs + bp;
        if total == 0 {
            return;
        }
        let passes = if total <= ONE_PASS_BITS && n >= 1 << (total.saturating_sub(2)) {
            1
        } else {
            total.div_ceil(MAX_DIGIT_BITS)
        };
        if passes > 2 && n < 1024 {
            run.sort_unstable_by_key(E::src_key);
            return;
        }
        let width = total.div_ceil(passes);
        let radix = 1usize << width;
        let mask = (radix - 1) as u64;
        if self.keys.len() < n {
            self.keys.resize(n, 0);
            self.tmp.resize(n, 0);
        }
        self.hist.clear();
        self.hist.resize(passes as usize * radix, 0);
        let keys = &mut self.keys[..n];
        for (k, e) in keys.iter_mut().zip(run.iter()) {
            *k = (((e.src() - smin) as u64) << bp) | (biased(e.payload()) - pmin) as u64;
        }
        for (p, h) in self.hist.chunks_mut(radix).enumerate() {
            let shift = p as u32 * width;
            for &k in keys.iter() {
                h[((k >> shift) & mask) as usize] += 1;
            }
            exclusive_prefix(h);
        }
        let mut from = &mut self.keys[..n];
        let mut to = &mut self.tmp[..n];
        for (p, h) in self.hist.chunks_mut(radix).enumerate() {
            let shift = p as u32 * width;
            for &k in from.iter() {
                let slot = &mut h[((k >> shift) & mask) as usize];
                to[*slot as usize] = k;
                *slot += 1;
            }
            std::mem::swap(&mut from, &mut to);
        }
        let dst = run[0].dst();
        let pay_mask = (1u64 << bp) - 1;
        for (e, &k) in run.iter_mut().zip(from.iter()) {
            *e = E::new(
                dst,
                (k >> bp) as u32 + smin,
                unbiased((k & pay_mask) as u32 + pmin),
            );
        }
    }
}

fn exclusive_prefix(counts: &mut [u32]) {
    let mut sum = 0u32;
    for c in counts.iter_mut() {
        let k = *c;
        *c = sum;
        sum += k;
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::braid::event::{Narrow, Wide};
    use crate::rng::SplitMix64;

    fn check<E: Packed>(bucket: &[E], cells: u32) {
        let mut sorter = Sorter::<E>::default();
        let mut want = bucket.to_vec();
        want.sort_by_key(E::key);
        let mut out = vec![E::default(); bucket.len()];
        sorter.sort(bucket, 0, cells, &mut out);
        assert_eq!(out, want);
        // The same events as one block of a larger lattice.
        let base = 1000;
        let shift = |e: &E| E::new(e.dst() + base, e.src(), e.payload());
        let shifted: Vec<E> = bucket.iter().map(shift).collect();
        let want: Vec<E> = want.iter().map(shift).collect();
        sorter.sort(&shifted, base, cells, &mut out);
        assert_eq!(out, want);
    }

    fn every_strategy<E: Packed>() {
        let mut rng = SplitMix64::new(5);
        let max = E::MAX_CELLS - 1000;
        for &(cells, n, src_range, pay) in &[
            (64u32, 4usize, 64u32, 1000u64),
            (64, 100, 64, 1000),
            (64, 1000, 64, 256),
            (64, 1000, 64, 1 << 32),
            (512, 600, 1 << 15, 1 << 20),
            (512, 600, max, 1 << 32),
            (max, 3000, max, 1 << 32),
            (4096, 50_000, 4096, 513),
            (max, 1_000_000, max, 1 << 30),
            (512, 300_000, 60, 256),
            (4, 20_000, max, 1 << 32),
            (4, 20_000, 3, 5),
            (8, 40, 8, 1),
        ] {
            let bucket: Vec<E> = (0..n)
                .map(|_| {
                    E::new(
                        (rng.next_u64() % cells as u64) as u32,
                        (rng.next_u64() % src_range as u64) as u32,
                        (rng.next_u64() % pay) as u32 as i32,
                    )
                })
                .collect();
            check(&bucket, cells);
            // Ordered by source only (as merged emissions arrive): payloads within each
            // source group still need ordering.
            let mut by_src = bucket.clone();
            by_src.sort_by_key(|e| e.src());
            check(&by_src, cells);
        }
        let repeated = [(3, 1, i32::MIN), (3, 1, i32::MAX), (3, 1, -1), (3, 1, 0)]
            .map(|(d, s, p)| E::new(d, s, p));
        check(&repeated.repeat(30), 4);
    }

    #[test]
    fn every_strategy_orders_like_the_total_order() {
        every_strategy::<Wide>();
        every_strategy::<Narrow>();
    }

    #[test]
    #[ignore = "timing probe: cargo test --release --lib sort_timing -- --ignored --nocapture"]
    fn sort_timing() {
        let mut rng = SplitMix64::new(5);
        let n = 1 << 20;
        let bucket: Vec<Narrow> = (0..n)
            .map(|_| {
                let src = (rng.next_u64() % 59) as u32;
                Narrow::new(
                    (rng.next_u64() % 59) as u32,
                    src,
                    1 + (rng.next_u64() % 256) as i32,
                )
            })
            .collect();
        let mut sorter = Sorter::<Narrow>::default();
        let mut out = vec![Narrow::default(); n];
        for _ in 0..3 {
            let t = std::time::Instant::now();
            sorter.sort(&bucket, 0, 512, &mut out);
            eprintln!("1M events over 59 destinations: {:?}", t.elapsed());
        }
    }
}
