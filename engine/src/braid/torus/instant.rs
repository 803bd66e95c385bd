//! Processing one instant of one torus (SPEC §3.1), the hot path.
//!
//! 1. **Group** (parallel over blocks): the instant's buckets (one per block of destination
//!    cells, see [`super::calendar`]) are split into groups of consecutive blocks holding
//!    about the same number of events; each group orders its blocks' events by destination
//!    ([`super::sort`]) into its own region of one array, so the array is ordered by `dst`.
//! 2. **Process** (parallel over destinations): that array is split recursively
//!    (`rayon::join`) at destination boundaries into up to [`MAX_LEAVES`] leaves, each owning
//!    a contiguous range of cells, hence disjoint slices of the process arrays and of the edge
//!    delays. A leaf orders each destination's run by `(src, payload)` (in cache, just before
//!    using it) and applies its events in that order, exactly the sequential rule. Events of
//!    different cells touch disjoint state and emit only into later instants, so the result
//!    equals the one-event-at-a-time order bit for bit, whatever the split.
//! 3. **Emit** into the leaf's buffers, one per `(delay, destination block)`, edge by edge
//!    over each run, in stretches of equal delay.
//! 4. **Merge** the leaves' buffers into the calendar under the capacity rule: if the events
//!    still pending plus the emitted ones exceed `max_pending`, only the smallest emitted
//!    events in total order are kept. The total order ranks `(delay, block)` buffers exactly
//!    as their index `delay · blocks + block` does, so whole buffers below the cut are copied
//!    (in parallel over buckets), whole buffers above it are dropped unread, and only the
//!    buffer that straddles the cut is filtered: a histogram over its destinations finds the
//!    cut destination, and a selection (`select_nth_unstable`) picks inside that one.
//!    Bucket contents are an unordered multiset, so neither the splits nor the thread count
//!    show in the result.
//!
//! Nothing here allocates once the buffers have reached their high-water marks.

use rayon::prelude::*;

use super::super::event::Packed;
use super::calendar::{Blocks, Calendar};
use super::sort::Sorter;
use super::topology::Topology;

/// A task takes at least this many events before an instant is split further.
pub(crate) const MIN_LEAF_EVENTS: usize = 2048;
/// Most leaves (and sort groups) one instant is split into.
pub(crate) const MAX_LEAVES: usize = 64;
/// Below this many emitted events the merge runs on the calling thread.
const PAR_MERGE_MIN: u64 = 1 << 14;
/// The straddling buffer's histogram has at most `2^COARSE_BITS` buckets.
const COARSE_BITS: u32 = 12;

/// One leaf's buffers.
#[derive(Debug, Clone)]
pub(crate) struct Leaf<E> {
    sorter: Sorter<E>,
    /// The outputs of the run being processed.
    outs: Vec<i32>,
    /// `out[delay · blocks + block]`: the events emitted with that delay into that block.
    out: Vec<Vec<E>>,
    /// Indices of the non-empty `out` buffers.
    touched: Vec<u32>,
    /// Emptied buffers, handed to whichever `out` index is touched first next instant (at
    /// most as many as the last instant touched, the largest), so a leaf's memory tracks what
    /// it emits per instant, not every index it ever used.
    pool: Vec<Vec<E>>,
}

/// Buffers reused from instant to instant.
#[derive(Debug, Clone)]
pub(crate) struct Scratch<E> {
    /// The instant's events ordered by destination (length: a high-water mark).
    sorted: Vec<E>,
    sorters: Vec<Sorter<E>>,
    leaves: Vec<Leaf<E>>,
    /// Sort group boundaries over blocks.
    bounds: Vec<u32>,
    /// Emitted events per `out` index over all leaves (all zero between instants).
    count: Vec<u64>,
    /// The non-empty `out` indices, ascending (= total order of their `(t, block)`).
    order: Vec<u32>,
    /// Capacity cut: histogram of the straddling buffer, and its events at the cut.
    coarse: Vec<u32>,
    boundary: Vec<E>,
}

impl<E> Default for Scratch<E> {
    fn default() -> Self {
        Scratch {
            sorted: Vec::new(),
            sorters: Vec::new(),
            leaves: Vec::new(),
            bounds: Vec::new(),
            count: Vec::new(),
            order: Vec::new(),
            coarse: Vec::new(),
            boundary: Vec::new(),
        }
    }
}

impl<E> Scratch<E> {
    /// Bytes of capacity held by the instant's working buffers (grouped events, sorters,
    /// leaves' emission buffers and pools, the merge's histograms).
    pub(crate) fn buffer_bytes(&self) -> u64 {
        let ev = std::mem::size_of::<E>();
        let head = std::mem::size_of::<Vec<E>>();
        let bufs = |v: &[Vec<E>]| v.iter().map(|b| b.capacity() * ev).sum::<usize>();
        let leaves: usize = self
            .leaves
            .iter()
            .map(|l| {
                l.sorter.buffer_bytes()
                    + l.outs.capacity() * 4
                    + bufs(&l.out)
                    + bufs(&l.pool)
                    + (l.out.capacity() + l.pool.capacity()) * head
                    + l.touched.capacity() * 4
            })
            .sum();
        let sorters: usize = self.sorters.iter().map(Sorter::buffer_bytes).sum();
        (leaves
            + sorters
            + (self.sorted.capacity() + self.boundary.capacity()) * ev
            + (self.bounds.capacity() + self.order.capacity() + self.coarse.capacity()) * 4
            + self.count.capacity() * 8) as u64
    }
}

/// What one instant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct InstantOutcome {
    pub processed: u64,
    pub dropped: u64,
}

/// Processes every event pending at instant `t` (nothing may be pending before `t`), leaves
/// the emitted events in the calendar under the capacity rule, and empties `t`'s buckets.
pub(crate) fn process_instant<E: Packed>(
    topo: &mut Topology,
    cal: &mut Calendar<E>,
    scratch: &mut Scratch<E>,
    t: u32,
    max_delay: u32,
    max_pending: u64,
) -> InstantOutcome {
    let slot = cal.slot(t);
    let n = cal.slot_len[slot] as usize;
    if n == 0 {
        return InstantOutcome::default();
    }
    let nb = cal.blocks.count as usize;
    let cells = topo.lattice.cells;
    let tasks = parallelism(n);

    // 1. Sort, in parallel over groups of blocks.
    if scratch.sorted.len() < n {
        scratch.sorted.resize(n, E::default());
    }
    let groups = tasks.min(nb);
    if scratch.sorters.len() < groups {
        scratch.sorters.resize_with(groups, Sorter::default);
    }
    let buckets = &mut cal.ring[slot * nb..(slot + 1) * nb];
    group_bounds(buckets, groups, n, &mut scratch.bounds);
    let geometry = (cal.blocks, cells);
    sort_blocks(
        geometry,
        buckets,
        0,
        &mut scratch.sorted[..n],
        &mut scratch.sorters[..groups],
        &scratch.bounds,
    );
    cal.pending -= n as u64;
    cal.recycle(slot);

    // 2-3. Process and emit, in parallel over destinations.
    let outs = (max_delay as usize + 1) * nb;
    while scratch.leaves.len() < tasks {
        scratch.leaves.push(Leaf {
            out: (0..outs).map(|_| Vec::new()).collect(),
            sorter: Sorter::default(),
            touched: Vec::new(),
            pool: Vec::new(),
            outs: Vec::new(),
        });
    }
    let ctx = Ctx {
        has_process: &topo.has_process,
        edge_start: &topo.edge_start,
        edge_to: &topo.edge_to,
        max_delay: max_delay as u16,
        blocks: nb,
        shift: cal.blocks.shift,
    };
    let span = Span {
        events: &mut scratch.sorted[..n],
        cell0: 0,
        cell_end: cells,
        state: &mut topo.state,
        acc: &mut topo.acc,
        received: &mut topo.received,
        edge0: 0,
        delay: &mut topo.edge_delay,
    };
    run_span(&ctx, span, &mut scratch.leaves[..tasks]);

    // 4. Merge under the capacity rule.
    let budget = max_pending.saturating_sub(cal.pending);
    let (kept, emitted) = merge(cal, scratch, tasks, t, max_delay, budget, cells);
    InstantOutcome {
        processed: n as u64,
        dropped: emitted - kept,
    }
}

/// How many tasks an instant of `n` events is split into.
fn parallelism(n: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads <= 1 || n < 2 * MIN_LEAF_EVENTS {
        return 1;
    }
    (threads * 4).min(n / MIN_LEAF_EVENTS).clamp(1, MAX_LEAVES)
}

/// `bounds[g]..bounds[g+1]` are the blocks of sort group `g`, each group holding about
/// `n/groups` events.
fn group_bounds<E>(buckets: &[Vec<E>], groups: usize, n: usize, bounds: &mut Vec<u32>) {
    bounds.clear();
    bounds.push(0);
    let mut cum = 0usize;
    let mut g = 1;
    for (b, bucket) in buckets.iter().enumerate() {
        cum += bucket.len();
        while g < groups && cum * groups >= g * n {
            bounds.push(b as u32 + 1);
            g += 1;
        }
    }
    while bounds.len() <= groups {
        bounds.push(buckets.len() as u32);
    }
}

/// Orders the buckets of blocks `block0..` by destination into `out` (their events, in block
/// order), over the sorters in parallel, and empties the buckets.
fn sort_blocks<E: Packed>(
    geometry: (Blocks, u32),
    buckets: &mut [Vec<E>],
    block0: u32,
    out: &mut [E],
    sorters: &mut [Sorter<E>],
    bounds: &[u32],
) {
    if sorters.len() == 1 {
        let (blocks, cells) = geometry;
        let mut off = 0;
        for (i, bucket) in buckets.iter_mut().enumerate() {
            if bucket.is_empty() {
                continue;
            }
            let (base, span) = blocks.range(block0 + i as u32, cells);
            let m = bucket.len();
            sorters[0].group(bucket, base, span, &mut out[off..off + m]);
            off += m;
            bucket.clear();
        }
        return;
    }
    let half = sorters.len() / 2;
    let at = (bounds[half] - bounds[0]) as usize;
    let (bl, br) = buckets.split_at_mut(at);
    let events: usize = bl.iter().map(Vec::len).sum();
    let (ol, or) = out.split_at_mut(events);
    let (sl, sr) = sorters.split_at_mut(half);
    rayon::join(
        || sort_blocks(geometry, bl, block0, ol, sl, &bounds[..=half]),
        || sort_blocks(geometry, br, block0 + at as u32, or, sr, &bounds[half..]),
    );
}

/// Read-only context shared by all leaves.
struct Ctx<'a> {
    has_process: &'a [bool],
    edge_start: &'a [u32],
    edge_to: &'a [u32],
    max_delay: u16,
    blocks: usize,
    shift: u32,
}

/// What one leaf owns: the events of the destinations `cell0..cell_end` (grouped by
/// destination), and those cells' process state and edge delays.
struct Span<'a, E> {
    events: &'a mut [E],
    cell0: u32,
    cell_end: u32,
    state: &'a mut [u32],
    acc: &'a mut [i32],
    received: &'a mut [u32],
    edge0: u32,
    delay: &'a mut [u16],
}

impl<'a, E: Packed> Span<'a, E> {
    /// Splits before event `at`, which must start a destination run.
    fn split(self, at: usize, ctx: &Ctx) -> (Span<'a, E>, Span<'a, E>) {
        let cmid = self.events[at].dst();
        let k = (cmid - self.cell0) as usize;
        let emid = ctx.edge_start[cmid as usize];
        let (el, er) = self.events.split_at_mut(at);
        let (sl, sr) = self.state.split_at_mut(k);
        let (al, ar) = self.acc.split_at_mut(k);
        let (rl, rr) = self.received.split_at_mut(k);
        let (dl, dr) = self.delay.split_at_mut((emid - self.edge0) as usize);
        (
            Span {
                events: el,
                cell0: self.cell0,
                cell_end: cmid,
                state: sl,
                acc: al,
                received: rl,
                edge0: self.edge0,
                delay: dl,
            },
            Span {
                events: er,
                cell0: cmid,
                cell_end: self.cell_end,
                state: sr,
                acc: ar,
                received: rr,
                edge0: emid,
                delay: dr,
            },
        )
    }
}

/// Splits the span over the leaves (in parallel) at destination boundaries and processes
/// each part.
fn run_span<E: Packed>(ctx: &Ctx, span: Span<'_, E>, leaves: &mut [Leaf<E>]) {
    let n = span.events.len();
    if leaves.len() == 1 || n < 2 * MIN_LEAF_EVENTS {
        process_leaf(ctx, span, &mut leaves[0]);
        return;
    }
    let half = leaves.len() / 2;
    let target = (n * half / leaves.len()).max(1);
    let d = span.events[target - 1].dst();
    let mid = target + span.events[target..].partition_point(|e| e.dst() <= d);
    if mid >= n {
        // One destination's run covers the rest: nothing to split off.
        run_span(ctx, span, &mut leaves[..half]);
        return;
    }
    let (left, right) = span.split(mid, ctx);
    let (ll, lr) = leaves.split_at_mut(half);
    rayon::join(|| run_span(ctx, left, ll), || run_span(ctx, right, lr));
}

/// Orders each destination's run and applies SPEC §3.1's rule to its events, in order:
/// first the process update over the run (giving each event's output), then each out-edge in
/// turn over the run: its delay adapts event by event, and the events it emits go out in
/// stretches of equal delay (one buffer append per stretch). Emitting edge by edge instead of
/// event by event changes only the order inside the buffers, which are unordered multisets.
fn process_leaf<E: Packed>(ctx: &Ctx, span: Span<'_, E>, leaf: &mut Leaf<E>) {
    let Span {
        events,
        cell0,
        state,
        acc,
        received,
        edge0,
        delay,
        ..
    } = span;
    let Leaf {
        sorter,
        out,
        touched,
        pool,
        outs,
    } = leaf;
    let mut emit = Emitter {
        out,
        touched,
        pool,
        blocks: ctx.blocks,
        shift: ctx.shift,
        max_delay: ctx.max_delay,
    };
    let n = events.len();
    let mut i = 0;
    while i < n {
        let dst = events[i].dst();
        let mut j = i + 1;
        while j < n && events[j].dst() == dst {
            j += 1;
        }
        let run = &mut events[i..j];
        sorter.sort_run(run);
        let run = &*run;
        outs.clear();
        if ctx.has_process[dst as usize] {
            let local = (dst - cell0) as usize;
            let mut st = state[local];
            let mut a = acc[local];
            outs.extend(run.iter().map(|ev| {
                let p = ev.payload();
                st = st.wrapping_mul(31).wrapping_add(p as u32) ^ (st >> 3);
                a = a.wrapping_add(p);
                (st & 0xFF) as i32 + 1
            }));
            state[local] = st;
            acc[local] = a;
            received[local] = received[local].wrapping_add(run.len() as u32);
        } else {
            outs.extend(run.iter().map(|ev| ev.payload().wrapping_add(1)));
        }
        let r0 = ctx.edge_start[dst as usize] as usize;
        let r1 = ctx.edge_start[dst as usize + 1] as usize;
        let delays = &mut delay[r0 - edge0 as usize..r1 - edge0 as usize];
        for (d, &to) in delays.iter_mut().zip(&ctx.edge_to[r0..r1]) {
            emit.edge(run, outs, dst, to, d);
        }
        i = j;
    }
}

/// Where a leaf's emitted events go.
struct Emitter<'g, E> {
    out: &'g mut [Vec<E>],
    touched: &'g mut Vec<u32>,
    pool: &'g mut Vec<Vec<E>>,
    blocks: usize,
    shift: u32,
    max_delay: u16,
}

impl<E: Packed> Emitter<'_, E> {
    /// One out-edge `src -> to` over a run: for each event in turn, adapt the delay to its
    /// payload, then emit its output with that delay.
    #[inline]
    fn edge(&mut self, run: &[E], outs: &[i32], src: u32, to: u32, delay: &mut u16) {
        let block = (to >> self.shift) as usize;
        let max = self.max_delay;
        let step = |d: u16, p: i32| {
            if p > 0 {
                if d > 1 { d - 1 } else { 1 }
            } else if d < max {
                d + 1
            } else {
                max
            }
        };
        let k = run.len();
        let mut d = *delay;
        let mut i = 0;
        while i < k {
            d = step(d, run[i].payload());
            let start = i;
            i += 1;
            while i < k && step(d, run[i].payload()) == d {
                i += 1;
            }
            let idx = d as usize * self.blocks + block;
            let buf = &mut self.out[idx];
            if buf.is_empty() {
                if buf.capacity() == 0
                    && let Some(spare) = self.pool.pop()
                {
                    *buf = spare;
                }
                self.touched.push(idx as u32);
            }
            buf.extend(outs[start..i].iter().map(|&o| E::new(to, src, o)));
        }
        *delay = d;
    }
}

/// Moves the leaves' emitted events into their buckets, keeping at most `budget` of them
/// (the smallest in total order). Returns `(kept, emitted)`.
fn merge<E: Packed>(
    cal: &mut Calendar<E>,
    scratch: &mut Scratch<E>,
    leaves: usize,
    t: u32,
    max_delay: u32,
    budget: u64,
    cells: u32,
) -> (u64, u64) {
    let nb = cal.blocks.count as usize;
    let r = max_delay as usize + 1;
    let base = cal.slot(t);
    let Scratch {
        leaves: all,
        count,
        order,
        coarse,
        boundary,
        ..
    } = scratch;
    let ls = &mut all[..leaves];
    if count.len() != r * nb {
        count.clear();
        count.resize(r * nb, 0);
    }
    order.clear();
    for l in ls.iter() {
        for &i in &l.touched {
            let i = i as usize;
            if count[i] == 0 {
                order.push(i as u32);
            }
            count[i] += l.out[i].len() as u64;
        }
    }
    order.sort_unstable();
    let emitted: u64 = order.iter().map(|&i| count[i as usize]).sum();

    // order[..cut] are kept whole, order[cut] keeps `keep_at_cut`, the rest is dropped.
    let mut cut = order.len();
    let mut keep_at_cut = 0u64;
    if emitted > budget {
        let mut cum = 0u64;
        for (j, &i) in order.iter().enumerate() {
            let c = count[i as usize];
            if cum + c > budget {
                cut = j;
                keep_at_cut = budget - cum;
                break;
            }
            cum += c;
        }
    }
    let ring_index = |i: usize| ((base + i / nb) % r) * nb + i % nb;
    for (j, &i) in order.iter().enumerate().take(cut + 1) {
        let i = i as usize;
        let add = if j < cut { count[i] } else { keep_at_cut };
        if add > 0 {
            cal.reserve(ring_index(i), add as usize);
            cal.slot_len[(base + i / nb) % r] += add;
        }
    }

    let ls_ref: &[Leaf<E>] = ls;
    let count_ref: &[u64] = count;
    if emitted >= PAR_MERGE_MIN && cut > 1 {
        let threshold = order.get(cut).map_or(usize::MAX, |&i| i as usize);
        cal.ring
            .par_iter_mut()
            .enumerate()
            .with_min_len(8)
            .for_each(|(ri, bucket)| {
                let d = (ri / nb + r - base) % r;
                let i = d * nb + ri % nb;
                if d == 0 || i >= threshold || count_ref[i] == 0 {
                    return;
                }
                for l in ls_ref {
                    bucket.extend_from_slice(&l.out[i]);
                }
            });
    } else {
        for &i in &order[..cut] {
            let bucket = &mut cal.ring[ring_index(i as usize)];
            for l in ls_ref {
                bucket.extend_from_slice(&l.out[i as usize]);
            }
        }
    }
    if keep_at_cut > 0 {
        let i = order[cut] as usize;
        let (base_cell, span) = cal.blocks.range((i % nb) as u32, cells);
        let segments = ls_ref.iter().map(|l| &l.out[i][..]);
        let target = &mut cal.ring[ring_index(i)];
        select_smallest(
            segments,
            keep_at_cut as usize,
            base_cell,
            span,
            coarse,
            boundary,
            target,
        );
    }
    let kept = emitted.min(budget);
    cal.pending += kept;

    for &i in order.iter() {
        count[i as usize] = 0;
    }
    for l in ls.iter_mut() {
        for &i in &l.touched {
            let mut buf = std::mem::take(&mut l.out[i as usize]);
            buf.clear();
            l.pool.push(buf);
        }
        keep_largest(&mut l.pool, l.touched.len());
        l.touched.clear();
    }
    cal.trim_pool();
    (kept, emitted)
}

/// Keeps the `n` largest buffers of a pool and frees the rest, so buffers needed only while
/// the workload looked different do not stay allocated.
pub(crate) fn keep_largest<E>(pool: &mut Vec<Vec<E>>, n: usize) {
    if pool.len() > n {
        pool.sort_unstable_by_key(|b| std::cmp::Reverse(b.capacity()));
        pool.truncate(n);
    }
}

/// Appends to `out` the `k` smallest events (by `(dst, src, payload)`) of the segments,
/// whose destinations lie in `base..base+span`, `1 <= k <` their total: a histogram over
/// destinations (coarsened to at most `2^COARSE_BITS` buckets) finds the bucket that
/// straddles the cut; everything below it is kept, and a selection picks the rest inside it.
fn select_smallest<'a, E: Packed>(
    segments: impl Iterator<Item = &'a [E]> + Clone,
    k: usize,
    base: u32,
    span: u32,
    coarse: &mut Vec<u32>,
    boundary: &mut Vec<E>,
    out: &mut Vec<E>,
) {
    let bits = u32::BITS - (span - 1).leading_zeros();
    let shift = bits.saturating_sub(COARSE_BITS);
    coarse.clear();
    coarse.resize(((span - 1) >> shift) as usize + 1, 0);
    for seg in segments.clone() {
        for e in seg {
            coarse[((e.dst() - base) >> shift) as usize] += 1;
        }
    }
    let mut cum = 0usize;
    let mut straddle = 0u32;
    for (b, &c) in coarse.iter().enumerate() {
        if cum + c as usize >= k {
            straddle = b as u32;
            break;
        }
        cum += c as usize;
    }
    let need = k - cum;
    boundary.clear();
    for seg in segments {
        for e in seg {
            let b = (e.dst() - base) >> shift;
            if b < straddle {
                out.push(*e);
            } else if b == straddle {
                boundary.push(*e);
            }
        }
    }
    if need < boundary.len() {
        boundary.select_nth_unstable_by_key(need, E::key);
    }
    out.extend_from_slice(&boundary[..need]);
}
