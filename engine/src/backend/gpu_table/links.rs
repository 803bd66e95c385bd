//! The link halves of a table on a GPU device (SPEC §1.2), and the host's part in a batch's
//! link kernels (`link_*` and `rel_*` in `shaders/table.wgsl` and `kernels/table.cu`):
//! sizing, the regions of the scratch buffers, and the order of the launches, shared by the
//! wgpu and CUDA backends. Design: docs/wgpu.md, "Tables on the device".
//!
//! State: one array of halves sorted by (owner's shard, owner, partner), two vec4 per half
//! (see the shader's "Links" section), and the number of halves per shard (read back with
//! every batch that changes them, for statistics and snapshots). A batch that changes links
//! merges the old array and the batch's half events into a second buffer, which becomes the
//! table's only when the batch succeeds: a refused or failed batch leaves the links as they
//! were.

use super::{
    Arena, BackendError, Kernel, Params, Step, TableDevice, device_error, run, run_groups,
};

/// Bytes of one half (and of one half event, and of one related pair): two vec4 of u32.
pub(crate) const RECORD_BYTES: u64 = 32;
/// Elements per block of the link scans (`SCAN_BLOCK` in the shader).
pub(crate) const SCAN_BLOCK: u64 = 256;
/// Most elements one scan takes: its carry runs in one invocation, one iteration per block,
/// and llvmpipe ends a shader after 65535 loop iterations.
pub(crate) const MAX_SCAN: u64 = 65_535 * SCAN_BLOCK;

/// The link halves of one table, resident on the device.
#[derive(Debug)]
pub(crate) struct DeviceLinks<B> {
    /// Sorted halves (`RECORD_BYTES` each), `total` of them.
    halves: B,
    /// The buffer the next merge writes (grown when too small).
    spare: Option<B>,
    per_shard: Vec<u64>,
    total: u64,
}

impl<B> DeviceLinks<B> {
    /// No halves, for a table of `shards` shards.
    pub fn new<D: TableDevice<Buf = B>>(dev: &D, shards: u32) -> Result<Self, BackendError> {
        Ok(DeviceLinks {
            halves: dev.alloc("table link halves", RECORD_BYTES)?,
            spare: None,
            per_shard: vec![0; shards as usize],
            total: 0,
        })
    }

    /// Halves stored in shard `shard`.
    pub fn halves(&self, shard: usize) -> u64 {
        self.per_shard[shard]
    }

    /// Halves stored in all shards.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The buffer of sorted halves.
    pub fn buffer(&self) -> &B {
        &self.halves
    }

    /// A buffer for a merge of up to `records` halves (the spare one when large enough),
    /// taken out so that the batch owns it until [`DeviceLinks::adopt`]; a batch that fails
    /// drops it, leaving the halves as they were.
    pub fn take_spare<D: TableDevice<Buf = B>>(
        &mut self,
        dev: &D,
        records: u64,
    ) -> Result<B, BackendError> {
        let bytes = records.max(1) * RECORD_BYTES;
        let limit = dev.buffer_limit();
        if bytes > limit {
            return Err(device_error(
                D::KIND,
                format!(
                    "the table's link halves with this batch's links could need {bytes} bytes \
                     in one buffer, more than {} of {limit} bytes; split the batch or use \
                     fewer links",
                    D::LIMIT_NAME
                ),
            ));
        }
        match self.spare.take() {
            Some(b) if D::size(&b) >= bytes => Ok(b),
            _ => dev.alloc("table link halves", bytes.next_power_of_two().min(limit)),
        }
    }

    /// After a successful merge into `merged` (from [`DeviceLinks::take_spare`]): it holds the
    /// halves, `per_shard` of them per shard; the old buffer becomes the spare.
    pub fn adopt(&mut self, merged: B, per_shard: Vec<u64>) {
        self.spare = Some(std::mem::replace(&mut self.halves, merged));
        self.total = per_shard.iter().sum();
        self.per_shard = per_shard;
    }

    /// Where shard `shard`'s halves start in the sorted array.
    pub fn first_of(&self, shard: usize) -> u64 {
        self.per_shard[..shard].iter().sum()
    }

    /// The same counts over a new buffer of the same size (the spare buffer is not copied);
    /// the caller copies the halves into it.
    pub fn empty_copy<D: TableDevice<Buf = B>>(&self, dev: &D) -> Result<Self, BackendError> {
        Ok(DeviceLinks {
            halves: dev.alloc("table link halves", D::size(&self.halves))?,
            spare: None,
            per_shard: self.per_shard.clone(),
            total: self.total,
        })
    }
}

/// Decodes sorted halves (`RECORD_BYTES` each, as read back) into (owner, partner, strength).
pub(super) fn visit_halves(words: &[u32], link: &mut dyn FnMut(u64, u64, f32)) {
    for h in words.chunks_exact(8) {
        let owner = u64::from(h[2]) | u64::from(h[1]) << 32;
        let partner = u64::from(h[4]) | u64::from(h[3]) << 32;
        link(owner, partner, f32::from_bits(h[5]));
    }
}

/// The link work of one batch, built by the host in batch order.
#[derive(Default)]
pub(super) struct LinkOps {
    /// Per link or unlink: (op, partner lo, partner hi, strength bits or 0 for an unlink).
    pub links: Vec<u32>,
    /// Per related query: (op, min strength bits, max, 0).
    pub related: Vec<u32>,
    pub deletes: bool,
}

impl LinkOps {
    pub fn link(&mut self, op: usize, partner: u64, strength: Option<f32>) {
        self.links.extend([
            op as u32,
            partner as u32,
            (partner >> 32) as u32,
            strength.map_or(0, f32::to_bits),
        ]);
    }

    pub fn related(&mut self, op: usize, min: f32, max: u32) {
        // Strengths are positive, so their bits order like their values; a minimum of 0
        // (or -0.0) admits every strength.
        let min_bits = if min > 0.0 { min.to_bits() } else { 0 };
        self.related.extend([op as u32, min_bits, max, 0]);
    }

    pub fn queries(&self) -> u64 {
        self.related.len() as u64 / 4
    }
}

/// Sizes of one batch's link work and the regions of its scratch buffers.
#[derive(Debug, Clone, Copy)]
pub(super) struct LinkPlan {
    /// Half events and their sorted count.
    pub events: u64,
    pub events_pow2: u64,
    /// Halves before the batch.
    pub halves: u64,
    pub queries: u64,
    /// Whether the batch can change the halves (it has events, or deletes and halves).
    pub merge: bool,
    /// Whether related queries have candidates to look at.
    pub related: bool,
    /// Words of the `lflat` buffer.
    pub flat_words: u64,
}

impl LinkPlan {
    pub fn new(ops: &LinkOps, halves: u64) -> LinkPlan {
        let events = ops.links.len() as u64 / 4 * 2;
        let queries = ops.queries();
        LinkPlan {
            events,
            events_pow2: events.next_power_of_two().max(2),
            halves,
            queries,
            merge: events > 0 || (halves > 0 && ops.deletes),
            related: queries > 0 && (halves > 0 || events > 0),
            flat_words: 0,
        }
    }

    /// Lays out the `lflat` regions into `p` (and `flat_words`).
    pub fn layout<D: TableDevice>(&mut self, p: &mut Params) -> Result<(), BackendError> {
        let (h, e, q) = (self.halves, self.events, self.queries);
        let longest = h.max(e).max(q);
        if longest > MAX_SCAN {
            return Err(device_error(
                D::KIND,
                format!(
                    "{longest} link halves, half events or related queries in one batch: at \
                     most {MAX_SCAN} can be scanned on the device; split the batch"
                ),
            ));
        }
        let mut at = 0u64;
        let mut region = |words: u64| {
            let start = at;
            at += words;
            start as u32
        };
        p.keep_old = region(h);
        p.keep_ev = region(e);
        p.scan_old = region(h + 1);
        p.scan_ev = region(e + 1);
        p.rel_cnt = region(q);
        p.rel_off = region(q + 1);
        p.rel_lbo = region(q);
        p.rel_lbe = region(q);
        p.rel_a = region(q);
        p.rel_span = region(2 * q);
        p.scan_tmp = region(longest.div_ceil(SCAN_BLOCK) + 1);
        self.flat_words = at;
        if at > u64::from(u32::MAX) {
            return Err(device_error(
                D::KIND,
                format!(
                    "the batch's link work needs {at} words, more than 32-bit device indices \
                     reach; split the batch"
                ),
            ));
        }
        p.ev_n = e as u32;
        p.ev_pow2 = self.events_pow2 as u32;
        p.halves_n = h as u32;
        p.rel_n = q as u32;
        Ok(())
    }
}

/// The buffers the link kernels bind (besides the key walk's).
pub(super) struct LinkBuffers<'a, B> {
    pub batch: &'a B,
    pub records: &'a B,
    pub work: &'a B,
    pub counters: &'a B,
    pub halves: &'a B,
    pub lwork: &'a B,
    pub lflat: &'a B,
}

/// Appends an exclusive prefix scan of `n` elements of `lflat` (from `src` to `dst`; `sum`:
/// sum the values, else count the nonzero ones).
fn scan<'a, B>(
    steps: &mut Vec<Step<'a, B>>,
    lflat: &'a B,
    base: Params,
    (src, dst): (u32, u32),
    n: u64,
    sum: bool,
) {
    let p = Params {
        scan_src: src,
        scan_dst: dst,
        scan_n: n as u32,
        scan_sum: u32::from(sum),
        ..base
    };
    let blocks = n.div_ceil(SCAN_BLOCK);
    run(steps, Kernel::LinkScanBlocks, p, &[(14, lflat)], blocks);
    run_groups(steps, Kernel::LinkScanCarry, p, &[(14, lflat)], 1);
    run(steps, Kernel::LinkScanApply, p, &[(14, lflat)], blocks);
}

/// Appends a bitonic sort of `pow2` 8-word records of `buf` (from record `base.sort_base / 2`):
/// one pass per (k, j).
fn sort<'a, B>(steps: &mut Vec<Step<'a, B>>, buf: &'a B, base: Params, pow2: u64) {
    let mut k = 2;
    while k <= pow2 {
        let mut j = k / 2;
        while j > 0 {
            let p = Params {
                k: k as u32,
                j: j as u32,
                sort_pow2: pow2 as u32,
                ..base
            };
            run(steps, Kernel::LinkSort, p, &[(13, buf)], pow2 / 2);
            j /= 2;
        }
        k *= 2;
    }
}

/// Appends the events and, when related queries have candidates, their counts: the total
/// number of pairs ends at `lflat[rel_off + queries]`.
pub(super) fn first_steps<'a, B>(
    steps: &mut Vec<Step<'a, B>>,
    b: &LinkBuffers<'a, B>,
    plan: &LinkPlan,
    base: Params,
) {
    if plan.events > 0 {
        run(
            steps,
            Kernel::LinkRoute,
            base,
            &[(2, b.batch), (13, b.lwork)],
            plan.events_pow2,
        );
        sort(steps, b.lwork, base, plan.events_pow2);
        let by_time = Params {
            sort_base: 2 * plan.events_pow2 as u32,
            ..base
        };
        sort(steps, b.lwork, by_time, plan.events_pow2);
    }
    if plan.related {
        run(
            steps,
            Kernel::RelCount,
            base,
            &[
                (2, b.batch),
                (3, b.records),
                (4, b.work),
                (11, b.halves),
                (13, b.lwork),
                (14, b.lflat),
            ],
            plan.queries,
        );
        scan(
            steps,
            b.lflat,
            base,
            (base.rel_cnt, base.rel_off),
            plan.queries,
            true,
        );
    }
}

/// The related pairs of one batch on the device: its pairs buffer and partner values.
pub(super) struct Pairs<'a, B> {
    pub n: u64,
    pub pow2: u64,
    pub pairs: &'a B,
    pub pvals: &'a B,
}

/// Appends the related queries' answers (pairs, partners' existence per table arena, their
/// order, the spans), when there are pairs at all. Runs before the commit changes the table
/// arenas. `base` carries the pairs' counts.
pub(super) fn related_steps<'a, B>(
    steps: &mut Vec<Step<'a, B>>,
    b: &LinkBuffers<'a, B>,
    pairs: &Pairs<'a, B>,
    plan: &LinkPlan,
    base: Params,
    arenas: &'a [Arena<B>],
    info: &'a B,
) {
    run(
        steps,
        Kernel::RelPairs,
        base,
        &[
            (2, b.batch),
            (3, b.records),
            (4, b.work),
            (11, b.halves),
            (13, b.lwork),
            (14, b.lflat),
            (16, pairs.pairs),
            (17, pairs.pvals),
        ],
        pairs.pow2,
    );
    for (a, arena) in arenas.iter().enumerate() {
        let p = Params {
            arena: a as u32,
            ..base
        };
        run(
            steps,
            Kernel::RelExist,
            p,
            &[
                (1, info),
                (7, &arena.slots),
                (8, &arena.values),
                (16, pairs.pairs),
                (17, pairs.pvals),
            ],
            pairs.n,
        );
    }
    // link_sort sorts whatever is bound at binding 13: here the pairs.
    sort(steps, pairs.pairs, base, pairs.pow2);
    run(
        steps,
        Kernel::RelSpan,
        base,
        &[(2, b.batch), (14, b.lflat), (16, pairs.pairs)],
        plan.queries,
    );
}

/// Appends the merge of the old halves and the batch's events into `new_halves`, counting
/// the halves per shard at `counters[4 * shards ..]`.
pub(super) fn merge_steps<'a, B>(
    steps: &mut Vec<Step<'a, B>>,
    b: &LinkBuffers<'a, B>,
    new_halves: &'a B,
    plan: &LinkPlan,
    base: Params,
) {
    let keep = [
        (3, b.records),
        (4, b.work),
        (11, b.halves),
        (13, b.lwork),
        (14, b.lflat),
    ];
    let write = [
        (5, b.counters),
        (11, b.halves),
        (12, new_halves),
        (13, b.lwork),
        (14, b.lflat),
    ];
    run(steps, Kernel::LinkKeepOld, base, &keep, plan.halves);
    run(steps, Kernel::LinkKeepEvents, base, &keep, plan.events);
    scan(
        steps,
        b.lflat,
        base,
        (base.keep_old, base.scan_old),
        plan.halves,
        false,
    );
    scan(
        steps,
        b.lflat,
        base,
        (base.keep_ev, base.scan_ev),
        plan.events,
        false,
    );
    run(steps, Kernel::LinkWriteOld, base, &write, plan.halves);
    run(steps, Kernel::LinkWriteEvents, base, &write, plan.events);
}
