//! The link halves of a table on the wgpu device (SPEC §1.2), and the host's part in a batch's
//! link kernels (`link_*` and `rel_*` in `shaders/table.wgsl`): sizing, the regions of the
//! scratch buffers, and the order of the dispatches. Design: docs/wgpu.md, "Tables on the
//! device".
//!
//! State: one array of halves sorted by (owner's shard, owner, partner), two vec4 per half
//! (see the shader's "Links" section), and the number of halves per shard (read back with
//! every batch that changes them, for statistics and snapshots). A batch that changes links
//! merges the old array and the batch's half events into a second buffer, which becomes the
//! table's only when the batch succeeds: a refused or failed batch leaves the links as they
//! were.

use super::{
    BackendError, Encoder, K_LINK_KEEP_EVENTS, K_LINK_KEEP_OLD, K_LINK_ROUTE, K_LINK_SCAN_APPLY,
    K_LINK_SCAN_BLOCKS, K_LINK_SCAN_CARRY, K_LINK_SORT, K_LINK_WRITE_EVENTS, K_LINK_WRITE_OLD,
    K_REL_COUNT, K_REL_EXIST, K_REL_PAIRS, K_REL_SPAN, Params, Variants, WORKGROUP, WgpuDevice,
    entry, groups, storage,
};

/// Bytes of one half (and of one half event, and of one related pair): two vec4 of u32.
pub(super) const RECORD_BYTES: u64 = 32;
/// Elements per block of the link scans (`SCAN_BLOCK` in the shader).
pub(super) const SCAN_BLOCK: u64 = 256;
/// Most elements one scan takes: its carry runs in one invocation, one iteration per block,
/// and llvmpipe ends a shader after 65535 loop iterations.
pub(super) const MAX_SCAN: u64 = 65_535 * SCAN_BLOCK;

/// The link halves of one table, resident on the device.
#[derive(Debug)]
pub(crate) struct DeviceLinks {
    /// Sorted halves (`RECORD_BYTES` each), `total` of them.
    halves: wgpu::Buffer,
    /// The buffer the next merge writes (grown when too small).
    spare: Option<wgpu::Buffer>,
    per_shard: Vec<u64>,
    total: u64,
}

impl DeviceLinks {
    pub fn new(gpu: &WgpuDevice, shards: u32) -> Result<DeviceLinks, BackendError> {
        Ok(DeviceLinks {
            halves: storage(gpu, "table link halves", RECORD_BYTES)?,
            spare: None,
            per_shard: vec![0; shards as usize],
            total: 0,
        })
    }

    pub fn halves(&self, shard: usize) -> u64 {
        self.per_shard[shard]
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.halves
    }

    /// A buffer for a merge of up to `records` halves (the spare one when large enough),
    /// taken out so that the batch owns it until [`DeviceLinks::adopt`]; a batch that fails
    /// drops it, leaving the halves as they were.
    pub fn take_spare(
        &mut self,
        gpu: &WgpuDevice,
        records: u64,
    ) -> Result<wgpu::Buffer, BackendError> {
        let bytes = records.max(1) * RECORD_BYTES;
        let limit = gpu
            .limits()
            .max_storage_buffer_binding_size
            .min(gpu.limits().max_buffer_size);
        if bytes > limit {
            return Err(super::device_error(format!(
                "the table's link halves with this batch's links could need {bytes} bytes in \
                 one buffer, more than the adapter's storage binding limit of {limit} bytes; \
                 split the batch or use fewer links"
            )));
        }
        match self.spare.take() {
            Some(b) if b.size() >= bytes => Ok(b),
            _ => storage(
                gpu,
                "table link halves",
                bytes.next_power_of_two().min(limit),
            ),
        }
    }

    /// After a successful merge into `merged` (from [`DeviceLinks::take_spare`]): it holds the
    /// halves, `per_shard` of them per shard; the old buffer becomes the spare.
    pub fn adopt(&mut self, merged: wgpu::Buffer, per_shard: Vec<u64>) {
        self.spare = Some(std::mem::replace(&mut self.halves, merged));
        self.total = per_shard.iter().sum();
        self.per_shard = per_shard;
    }

    /// Where shard `shard`'s halves start in the sorted array.
    pub fn first_of(&self, shard: usize) -> u64 {
        self.per_shard[..shard].iter().sum()
    }

    /// A copy on the same device (the spare buffer is not copied).
    pub fn try_clone(&self, gpu: &WgpuDevice) -> Result<DeviceLinks, BackendError> {
        let halves = storage(gpu, "table link halves", self.halves.size())?;
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("table links clone"),
            });
        encoder.copy_buffer_to_buffer(&self.halves, 0, &halves, 0, self.halves.size());
        gpu.submit_and_wait("cloning a table's links", encoder)?;
        Ok(DeviceLinks {
            halves,
            spare: None,
            per_shard: self.per_shard.clone(),
            total: self.total,
        })
    }
}

/// Decodes sorted halves (`RECORD_BYTES` each, as read back) into (owner, partner, strength).
pub(super) fn visit_halves(bytes: &[u8], link: &mut dyn FnMut(u64, u64, f32)) {
    let words: &[u32] = bytemuck::cast_slice(bytes);
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
    pub fn layout(&mut self, p: &mut Params) -> Result<(), BackendError> {
        let (h, e, q) = (self.halves, self.events, self.queries);
        let longest = h.max(e).max(q);
        if longest > MAX_SCAN {
            return Err(super::device_error(format!(
                "{longest} link halves, half events or related queries in one batch: at most \
                 {MAX_SCAN} can be scanned on the device; split the batch"
            )));
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
            return Err(super::device_error(format!(
                "the batch's link work needs {at} words, more than 32-bit device indices reach; \
                 split the batch"
            )));
        }
        p.ev_n = e as u32;
        p.ev_pow2 = self.events_pow2 as u32;
        p.halves_n = h as u32;
        p.rel_n = q as u32;
        Ok(())
    }
}

/// The buffers the link kernels bind (besides the key walk's).
pub(super) struct LinkBuffers<'a> {
    pub batch: &'a wgpu::Buffer,
    pub records: &'a wgpu::Buffer,
    pub work: &'a wgpu::Buffer,
    pub counters: &'a wgpu::Buffer,
    pub halves: &'a wgpu::Buffer,
    pub lwork: &'a wgpu::Buffer,
    pub lflat: &'a wgpu::Buffer,
}

/// Params variants of one exclusive prefix scan of `n` elements of `lflat`.
pub(super) fn scan_variant(
    v: &mut Variants,
    base: Params,
    src: u32,
    dst: u32,
    n: u64,
    sum: bool,
) -> (usize, u64) {
    let variant = v.push(Params {
        scan_src: src,
        scan_dst: dst,
        scan_n: n as u32,
        scan_sum: u32::from(sum),
        ..base
    });
    (variant, n.div_ceil(SCAN_BLOCK))
}

/// Encodes a scan made by [`scan_variant`].
pub(super) fn encode_scan(
    enc: &mut Encoder<'_>,
    lflat: &wgpu::Buffer,
    (variant, blocks): (usize, u64),
) {
    let g = groups(enc.gpu, blocks, WORKGROUP);
    enc.run(K_LINK_SCAN_BLOCKS, variant, &[entry(14, lflat)], g);
    enc.run(K_LINK_SCAN_CARRY, variant, &[entry(14, lflat)], (1, 1));
    enc.run(K_LINK_SCAN_APPLY, variant, &[entry(14, lflat)], g);
}

/// Params variants of a bitonic sort of `pow2` records: one per pass (k, j).
pub(super) fn sort_variants(v: &mut Variants, base: Params, pow2: u64) -> Vec<usize> {
    let mut out = Vec::new();
    let mut k = 2;
    while k <= pow2 {
        let mut j = k / 2;
        while j > 0 {
            out.push(v.push(Params {
                k: k as u32,
                j: j as u32,
                sort_pow2: pow2 as u32,
                ..base
            }));
            j /= 2;
        }
        k *= 2;
    }
    out
}

pub(super) fn encode_sort(enc: &mut Encoder<'_>, buf: &wgpu::Buffer, pow2: u64, passes: &[usize]) {
    let g = groups(enc.gpu, pow2 / 2, WORKGROUP);
    for &v in passes {
        enc.run(K_LINK_SORT, v, &[entry(13, buf)], g);
    }
}

/// The variants of the first part (before any read-back): events, their sort, and the related
/// queries' candidate counts and offsets.
pub(super) struct FirstVariants {
    pub route: usize,
    /// The events sorted by pair, then their copy by time.
    pub sort: Vec<usize>,
    pub sort_by_time: Vec<usize>,
    pub count_scan: (usize, u64),
}

impl FirstVariants {
    pub fn new(v: &mut Variants, base: Params, plan: &LinkPlan) -> FirstVariants {
        FirstVariants {
            route: v.push(base),
            sort: sort_variants(v, base, plan.events_pow2),
            sort_by_time: sort_variants(
                v,
                Params {
                    sort_base: 2 * plan.events_pow2 as u32,
                    ..base
                },
                plan.events_pow2,
            ),
            count_scan: scan_variant(v, base, base.rel_cnt, base.rel_off, plan.queries, true),
        }
    }
}

/// Encodes the events and, when related queries have candidates, their counts: the total
/// number of pairs ends at `lflat[rel_off + queries]`.
pub(super) fn encode_first(
    enc: &mut Encoder<'_>,
    b: &LinkBuffers<'_>,
    plan: &LinkPlan,
    fv: &FirstVariants,
) {
    if plan.events > 0 {
        enc.run(
            K_LINK_ROUTE,
            fv.route,
            &[entry(2, b.batch), entry(13, b.lwork)],
            groups(enc.gpu, plan.events_pow2, WORKGROUP),
        );
        encode_sort(enc, b.lwork, plan.events_pow2, &fv.sort);
        encode_sort(enc, b.lwork, plan.events_pow2, &fv.sort_by_time);
    }
    if plan.related {
        enc.run(
            K_REL_COUNT,
            fv.route,
            &[
                entry(2, b.batch),
                entry(3, b.records),
                entry(4, b.work),
                entry(11, b.halves),
                entry(13, b.lwork),
                entry(14, b.lflat),
            ],
            groups(enc.gpu, plan.queries, WORKGROUP),
        );
        encode_scan(enc, b.lflat, fv.count_scan);
    }
}

/// The related pairs of one batch on the device: its pairs buffer and partner values.
pub(super) struct Pairs<'a> {
    pub n: u64,
    pub pow2: u64,
    pub pairs: &'a wgpu::Buffer,
    pub pvals: &'a wgpu::Buffer,
}

/// The variants of the second part.
pub(super) struct SecondVariants {
    pub base: usize,
    pub per_arena: Vec<usize>,
    pub pair_sort: Vec<usize>,
    pub scan_old: (usize, u64),
    pub scan_ev: (usize, u64),
}

impl SecondVariants {
    pub fn new(
        v: &mut Variants,
        base: Params,
        plan: &LinkPlan,
        pairs_pow2: u64,
        arenas: usize,
    ) -> SecondVariants {
        SecondVariants {
            base: v.push(base),
            per_arena: (0..arenas)
                .map(|a| {
                    v.push(Params {
                        arena: a as u32,
                        ..base
                    })
                })
                .collect(),
            pair_sort: sort_variants(v, base, pairs_pow2),
            scan_old: scan_variant(v, base, base.keep_old, base.scan_old, plan.halves, false),
            scan_ev: scan_variant(v, base, base.keep_ev, base.scan_ev, plan.events, false),
        }
    }
}

/// Encodes the related queries' answers (pairs, partners' existence per table arena, their
/// order, the spans), when there are pairs at all. Runs before the commit changes the table
/// arenas.
pub(super) fn encode_related(
    enc: &mut Encoder<'_>,
    b: &LinkBuffers<'_>,
    pairs: &Pairs<'_>,
    plan: &LinkPlan,
    sv: &SecondVariants,
    arenas: &[(&wgpu::Buffer, &wgpu::Buffer)],
    info: &wgpu::Buffer,
) {
    {
        enc.run(
            K_REL_PAIRS,
            sv.base,
            &[
                entry(2, b.batch),
                entry(3, b.records),
                entry(4, b.work),
                entry(11, b.halves),
                entry(13, b.lwork),
                entry(14, b.lflat),
                entry(16, pairs.pairs),
                entry(17, pairs.pvals),
            ],
            groups(enc.gpu, pairs.pow2, WORKGROUP),
        );
        for (a, &(slots, values)) in arenas.iter().enumerate() {
            enc.run(
                K_REL_EXIST,
                sv.per_arena[a],
                &[
                    entry(1, info),
                    entry(7, slots),
                    entry(8, values),
                    entry(16, pairs.pairs),
                    entry(17, pairs.pvals),
                ],
                groups(enc.gpu, pairs.n, WORKGROUP),
            );
        }
        encode_sort(enc, pairs.pairs, pairs.pow2, &sv.pair_sort);
    }
    enc.run(
        K_REL_SPAN,
        sv.base,
        &[
            entry(2, b.batch),
            entry(14, b.lflat),
            entry(16, pairs.pairs),
        ],
        groups(enc.gpu, plan.queries, WORKGROUP),
    );
}

/// Encodes the merge of the old halves and the batch's events into `new_halves`, counting
/// the halves per shard at `counters[4 * shards ..]`.
pub(super) fn encode_merge(
    enc: &mut Encoder<'_>,
    b: &LinkBuffers<'_>,
    new_halves: &wgpu::Buffer,
    plan: &LinkPlan,
    sv: &SecondVariants,
) {
    let keep = [
        entry(3, b.records),
        entry(4, b.work),
        entry(11, b.halves),
        entry(13, b.lwork),
        entry(14, b.lflat),
    ];
    let write = [
        entry(5, b.counters),
        entry(11, b.halves),
        entry(12, new_halves),
        entry(13, b.lwork),
        entry(14, b.lflat),
    ];
    let (old_groups, ev_groups) = (
        groups(enc.gpu, plan.halves, WORKGROUP),
        groups(enc.gpu, plan.events, WORKGROUP),
    );
    enc.run(K_LINK_KEEP_OLD, sv.base, &keep, old_groups);
    enc.run(K_LINK_KEEP_EVENTS, sv.base, &keep, ev_groups);
    encode_scan(enc, b.lflat, sv.scan_old);
    encode_scan(enc, b.lflat, sv.scan_ev);
    enc.run(K_LINK_WRITE_OLD, sv.base, &write, old_groups);
    enc.run(K_LINK_WRITE_EVENTS, sv.base, &write, ev_groups);
}
