//! Shard tables on the wgpu backend (SPEC §1): the shards' hash tables resident on the device,
//! every PUT / GET / DELETE of a batch run as WGSL compute (`shaders/table.wgsl`), with the
//! result the sequential order defines. Design: docs/wgpu.md, "Tables on the device".
//!
//! One batch:
//! 1. The host encodes the batch once, in batch order: every operation becomes one device op
//!    at its own batch position (a link, unlink or related query counts in its key's shard;
//!    a related query reads its key's value), links and unlinks are listed with their
//!    partners and strengths, related queries with their minimum and maximum ([`links`]).
//! 2. One upload; on the device: route (shard per op), bitonic sort by (shard, key, position),
//!    one invocation per run segment of a key (runs cut in chunks of 256 records, the state
//!    carried across chunks by a scan of per-chunk effects): probe the shard, apply the ops
//!    in order (results, item deltas, the key's final state, and per op the key's state and
//!    last delete, which the link kernels look up); and, when a shard could grow, the
//!    per-shard peak of the running item count in batch order (block sums, scan, block
//!    maxima). The half events of links and unlinks are sorted, and each related query
//!    counts its candidates (the halves and events its key owns).
//! 3. Only then the host reads the per-shard counters and the number of related candidates
//!    (when growth is possible at all, or related queries have candidates), plans growth
//!    exactly like the CPU backend (doubling before an insert would pass `max_load`), checks
//!    the memory limit, and allocates new arenas. Nothing persistent has been written yet,
//!    so a refusal leaves the table unchanged.
//! 4. On the device: the related queries' answers (from the table before the commit), the
//!    merge of the link halves into a second buffer, then the commit: tombstones and
//!    in-place updates, copies or rehashes into new arenas, inserts of new keys; one readback
//!    of statuses, read values, counters and related answers.
//!
//! Shards are packed into arenas (one slots buffer and one values buffer each) no larger
//! than the adapter's storage-binding limit; a kernel that touches the table runs once per
//! arena.

mod links;

use std::num::NonZeroU64;

use super::buffers::map_read;
use super::{Readback, WgpuDevice};
use crate::backend::{BackendKind, TableBackend};
use crate::error::{BackendError, TableError};
use crate::table::route::{initial_slots, max_items};
use crate::table::{
    Batch, BatchResults, OpCode, RelatedHit, RelatedSpan, ShardStats, Status, TableConfig,
};
use links::{
    DeviceLinks, FirstVariants, LinkBuffers, LinkOps, LinkPlan, Pairs, RECORD_BYTES, SecondVariants,
};

const SHADER: &str = include_str!("../../../../../shaders/table.wgsl");
/// Invocations per workgroup of the flat kernels (`WORKGROUP` in the shader).
const WORKGROUP: u32 = 256;
/// Operations per block of the peak scan (`BLOCK` in the shader).
const BLOCK: u32 = 256;
/// Most shards the peak kernels' workgroup arrays hold (`MAX_SHARDS`; config allows 1024).
const MAX_SHARDS: u32 = 1024;
/// Words per slot in an arena's slots buffer: tag, key lo, key hi.
const SLOT_WORDS: u64 = 3;

const OP_PUT: u32 = 0;
const OP_GET: u32 = 1;
const OP_DELETE: u32 = 2;
const OP_NOP: u32 = 3;
const COUNTED: u32 = 0x100;

/// The kernels of `shaders/table.wgsl`: (pipeline name, entry point). The entry point is the
/// operation's name in every backend.
const KERNELS: [(&str, &str); 25] = [
    ("table_kv_route", "kv_route"),
    ("table_kv_sort", "kv_sort"),
    ("table_kv_walk", "kv_walk"),
    ("table_kv_peak_blocks", "kv_peak_blocks"),
    ("table_kv_peak_scan", "kv_peak_scan"),
    ("table_kv_peak", "kv_peak"),
    ("table_kv_commit", "kv_commit"),
    ("table_kv_rehash", "kv_rehash"),
    ("table_kv_insert", "kv_insert"),
    ("table_kv_walk_chunks", "kv_walk_chunks"),
    ("table_kv_walk_carry", "kv_walk_carry"),
    ("table_kv_sort_local", "kv_sort_local"),
    ("table_link_route", "link_route"),
    ("table_link_sort", "link_sort"),
    ("table_rel_count", "rel_count"),
    ("table_link_scan_blocks", "link_scan_blocks"),
    ("table_link_scan_carry", "link_scan_carry"),
    ("table_link_scan_apply", "link_scan_apply"),
    ("table_rel_pairs", "rel_pairs"),
    ("table_rel_exist", "rel_exist"),
    ("table_rel_span", "rel_span"),
    ("table_link_keep_old", "link_keep_old"),
    ("table_link_keep_events", "link_keep_events"),
    ("table_link_write_old", "link_write_old"),
    ("table_link_write_events", "link_write_events"),
];
const K_ROUTE: usize = 0;
const K_SORT: usize = 1;
const K_WALK: usize = 2;
const K_PEAK_BLOCKS: usize = 3;
const K_PEAK_SCAN: usize = 4;
const K_PEAK: usize = 5;
const K_COMMIT: usize = 6;
const K_REHASH: usize = 7;
const K_INSERT: usize = 8;
const K_WALK_CHUNKS: usize = 9;
const K_WALK_CARRY: usize = 10;
const K_SORT_LOCAL: usize = 11;
const K_LINK_ROUTE: usize = 12;
const K_LINK_SORT: usize = 13;
const K_REL_COUNT: usize = 14;
const K_LINK_SCAN_BLOCKS: usize = 15;
const K_LINK_SCAN_CARRY: usize = 16;
const K_LINK_SCAN_APPLY: usize = 17;
const K_REL_PAIRS: usize = 18;
const K_REL_EXIST: usize = 19;
const K_REL_SPAN: usize = 20;
const K_LINK_KEEP_OLD: usize = 21;
const K_LINK_KEEP_EVENTS: usize = 22;
const K_LINK_WRITE_OLD: usize = 23;
const K_LINK_WRITE_EVENTS: usize = 24;
/// Records one workgroup of `kv_sort_local` sorts (`TILE` in the shader).
const TILE: u64 = 512;
/// Records per walk chunk (`CHUNK` in the shader).
const CHUNK: u64 = 256;
/// Most device operations in one batch: the single-invocation scans (walk chunks, peak
/// blocks) loop once per 256 operations, and llvmpipe ends a shader after 65535 loop
/// iterations.
pub(crate) const MAX_DEVICE_OPS: usize = 65_535 * 256;

/// Constants of one dispatch, laid out as `Params` in the shader.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    n_pow2: u32,
    nshards: u32,
    w: u32,
    arena: u32,
    arena2: u32,
    k: u32,
    j: u32,
    value_base: u32,
    blocks: u32,
    delta_base: u32,
    matrix_base: u32,
    count: u32,
    chunk_base: u32,
    chunks: u32,
    st_base: u32,
    link_base: u32,
    ev_n: u32,
    ev_pow2: u32,
    halves_n: u32,
    rel_base: u32,
    rel_n: u32,
    pairs_n: u32,
    pairs_pow2: u32,
    sort_pow2: u32,
    scan_src: u32,
    scan_dst: u32,
    scan_n: u32,
    scan_tmp: u32,
    scan_sum: u32,
    keep_old: u32,
    keep_ev: u32,
    scan_old: u32,
    scan_ev: u32,
    rel_cnt: u32,
    rel_off: u32,
    rel_lbo: u32,
    rel_lbe: u32,
    rel_a: u32,
    rel_span: u32,
    sort_base: u32,
    pad: [u32; 7],
}

/// Host bookkeeping of one shard.
#[derive(Debug, Clone, Copy)]
struct ShardMeta {
    slots: u64,
    items: u64,
    /// Slots not empty (items and tombstones), an upper bound: every insert is counted as if
    /// it took an empty slot. A shard is rebuilt before it could pass `max_used`.
    used: u64,
    ops: u64,
    resizes: u32,
    arena: u32,
    /// First slot of the shard in its arena.
    base: u64,
}

/// One slots buffer and one values buffer holding several shards.
#[derive(Debug)]
struct Arena {
    slots: wgpu::Buffer,
    values: wgpu::Buffer,
    /// Slots in the arena.
    len: u64,
}

/// The shards of one table on a wgpu device.
#[derive(Debug)]
pub struct WgpuShards {
    shards: Vec<ShardMeta>,
    arenas: Vec<Arena>,
    w: usize,
    max_load: f64,
    /// Most bytes of one arena buffer (the adapter's storage-binding and buffer limits).
    cap: u64,
    /// Whether the sort does its short distances in workgroup memory (`kv_sort_local`):
    /// fewer passes, but llvmpipe's workgroup barriers cost more than the global passes they
    /// save (a 1M-op batch sorts in 8.9 s instead of 7.3 s), so not on a CPU adapter.
    local_sort: bool,
    links: DeviceLinks,
}

/// Buffers of one batch, kept by the device between batches (grown as needed).
#[derive(Default)]
pub(crate) struct Scratch {
    batch: Option<wgpu::Buffer>,
    records: Option<wgpu::Buffer>,
    work: Option<wgpu::Buffer>,
    counters: Option<wgpu::Buffer>,
    results: Option<wgpu::Buffer>,
    info: Option<wgpu::Buffer>,
    params: Option<wgpu::Buffer>,
    params2: Option<wgpu::Buffer>,
    /// The link kernels' half events, flags and prefix counts, related pairs and their
    /// partners' values.
    lwork: Option<wgpu::Buffer>,
    lflat: Option<wgpu::Buffer>,
    pairs: Option<wgpu::Buffer>,
    pvals: Option<wgpu::Buffer>,
    /// MAP_READ copies of the results (with the counters) and of the counters alone.
    staging: Option<wgpu::Buffer>,
    plan_staging: Option<wgpu::Buffer>,
}

/// `slot` (a staging buffer) holding at least `bytes`, reallocated larger when it does not.
fn staging<'a>(
    gpu: &WgpuDevice,
    slot: &'a mut Option<wgpu::Buffer>,
    bytes: u64,
) -> Result<&'a wgpu::Buffer, BackendError> {
    if slot.as_ref().is_none_or(|b| b.size() < bytes) {
        *slot = None;
        *slot = Some(gpu.scoped("allocating a staging buffer", || {
            gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("table staging"),
                size: bytes.next_power_of_two(),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?);
    }
    Ok(slot.as_ref().expect("set above"))
}

/// Bytes of table state per slot: tag and key (3 words) and the value.
fn slot_bytes(w: usize) -> u64 {
    SLOT_WORDS * 4 + 4 * w as u64
}

/// Most live plus deleted slots before a shard is rebuilt (as the CPU backend's purge).
fn max_used(slots: u64, max_load: f64) -> u64 {
    let m = max_items(slots, max_load);
    m + (slots - m) / 2
}

fn device_error(reason: String) -> BackendError {
    BackendError::Device {
        backend: BackendKind::Wgpu,
        reason,
    }
}

/// Packs shards of `slots` into arenas of at most `cap` bytes per buffer: per shard
/// (arena, base), and each arena's slot count.
/// Where each shard lies: (arena, first slot).
type Placement = Vec<(u32, u64)>;

fn layout(slots: &[u64], w: usize, cap: u64) -> Result<(Placement, Vec<u64>), BackendError> {
    let per_slot = (SLOT_WORDS * 4).max(4 * w as u64);
    let mut at = Vec::with_capacity(slots.len());
    let mut arenas: Vec<u64> = Vec::new();
    for (s, &n) in slots.iter().enumerate() {
        if n * per_slot > cap {
            return Err(device_error(format!(
                "shard {s} would need {} bytes in one buffer, more than the adapter's storage \
                 binding limit of {cap} bytes; use more shards",
                n * per_slot
            )));
        }
        let last = arenas.len().wrapping_sub(1);
        match arenas.last_mut() {
            Some(len) if (*len + n) * per_slot <= cap => {
                at.push((last as u32, *len));
                *len += n;
            }
            _ => {
                at.push((arenas.len() as u32, 0));
                arenas.push(n);
            }
        }
    }
    Ok((at, arenas))
}

fn storage(gpu: &WgpuDevice, label: &str, bytes: u64) -> Result<wgpu::Buffer, BackendError> {
    gpu.scoped(&format!("allocating {label}"), || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

fn new_arenas(gpu: &WgpuDevice, lens: &[u64], w: usize) -> Result<Vec<Arena>, BackendError> {
    lens.iter()
        .map(|&len| {
            Ok(Arena {
                slots: storage(gpu, "table slots", len * SLOT_WORDS * 4)?,
                values: storage(gpu, "table values", len * 4 * w as u64)?,
                len,
            })
        })
        .collect()
}

/// `slot` (a scratch buffer) holding at least `bytes`, reallocated larger when it does not.
fn ensure<'a>(
    gpu: &WgpuDevice,
    slot: &'a mut Option<wgpu::Buffer>,
    label: &str,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> Result<&'a wgpu::Buffer, BackendError> {
    let limit = gpu
        .limits()
        .max_storage_buffer_binding_size
        .min(gpu.limits().max_buffer_size);
    let bytes = bytes.max(16).next_multiple_of(4);
    if bytes > limit {
        return Err(device_error(format!(
            "{label}: the batch needs {bytes} bytes in one buffer, more than the adapter's \
             storage binding limit of {limit} bytes; split the batch"
        )));
    }
    if slot.as_ref().is_none_or(|b| b.size() < bytes) {
        let size = bytes.next_power_of_two().min(limit).max(bytes);
        *slot = None;
        *slot = Some(gpu.scoped(&format!("allocating {label}"), || {
            gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        })?);
    }
    Ok(slot.as_ref().expect("set above"))
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// `(x, y)` workgroups covering `invocations` of `size`-wide workgroups.
fn groups(gpu: &WgpuDevice, invocations: u64, size: u32) -> (u32, u32) {
    let groups = invocations.div_ceil(u64::from(size)).max(1);
    let max = u64::from(gpu.limits().max_compute_workgroups_per_dimension.max(1));
    if groups <= max {
        (groups as u32, 1)
    } else {
        (max as u32, groups.div_ceil(max) as u32)
    }
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// Records dispatches into one encoder, each with its own `Params` variant.
struct Encoder<'a> {
    gpu: &'a WgpuDevice,
    encoder: wgpu::CommandEncoder,
    pipelines: &'a [std::sync::Arc<wgpu::ComputePipeline>],
    params: &'a wgpu::Buffer,
    stride: u64,
}

impl Encoder<'_> {
    /// Dispatches kernel `kernel` (index into [`KERNELS`]) with params variant `variant`.
    fn run(
        &mut self,
        kernel: usize,
        variant: usize,
        entries: &[wgpu::BindGroupEntry<'_>],
        (x, y): (u32, u32),
    ) {
        let pipeline = &self.pipelines[kernel];
        let mut all = Vec::with_capacity(entries.len() + 1);
        all.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: self.params,
                offset: variant as u64 * self.stride,
                size: NonZeroU64::new(std::mem::size_of::<Params>() as u64),
            }),
        });
        all.extend_from_slice(entries);
        let group = self
            .gpu
            .device()
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(KERNELS[kernel].0),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &all,
            });
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(KERNELS[kernel].0),
                timestamp_writes: None,
            });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// Params variants of one submit, written to the uniform buffer at a 256-byte-aligned stride.
struct Variants {
    list: Vec<Params>,
    stride: u64,
}

impl Variants {
    fn push(&mut self, p: Params) -> usize {
        self.list.push(p);
        self.list.len() - 1
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.list.len() * self.stride as usize];
        for (i, p) in self.list.iter().enumerate() {
            let at = i * self.stride as usize;
            out[at..at + std::mem::size_of::<Params>()].copy_from_slice(bytemuck::bytes_of(p));
        }
        out
    }
}

/// The device ops of one batch (4 words each) and its put values.
struct DeviceBatch {
    words: Vec<u32>,
    puts: u32,
}

impl DeviceBatch {
    fn push(&mut self, code: u32, key: u64) {
        self.words.extend([code, key as u32, (key >> 32) as u32, 0]);
    }

    fn len(&self) -> usize {
        self.words.len() / 4
    }
}

/// What the device returned for a batch: per device op a status and (when reading) value
/// words.
struct DeviceOut {
    status: Vec<u32>,
    values: Vec<u32>,
    /// Per related query (first pair, hits) in `pairs`.
    spans: Vec<u32>,
    /// The sorted related pairs, 8 words each: (query, !strength bits, partner hi, partner
    /// lo), (pair index, ..).
    pairs: Vec<u32>,
    /// Per pair index its partner's value words.
    pvals: Vec<u32>,
}

impl WgpuDevice {
    fn take_scratch(&self) -> Scratch {
        self.table_scratch().pop().unwrap_or_default()
    }

    fn return_scratch(&self, scratch: Scratch) {
        self.table_scratch().push(scratch);
    }

    /// Frees the batch buffers tables keep between batches.
    pub(crate) fn release_table_scratch(&self) {
        self.table_scratch().clear();
    }

    fn table_pipelines(&self) -> Result<Vec<std::sync::Arc<wgpu::ComputePipeline>>, BackendError> {
        KERNELS
            .iter()
            .map(|&(name, entry)| self.pipeline(name, SHADER, entry))
            .collect()
    }

    fn arena_cap(&self) -> u64 {
        self.limits()
            .max_storage_buffer_binding_size
            .min(self.limits().max_buffer_size)
    }

    /// Runs the device part of a batch on `t` (see the module doc). On `Err` the table's
    /// device state (slots, values and links) and metadata are as they were.
    #[allow(clippy::too_many_lines)]
    fn kv_apply(
        &self,
        t: &mut WgpuShards,
        dev: &DeviceBatch,
        put_values: &[u32],
        ops: &LinkOps,
        reads: bool,
        scratch: &mut Scratch,
    ) -> Result<DeviceOut, BackendError> {
        let n = dev.len() as u64;
        let nshards = t.shards.len() as u64;
        let w = t.w as u64;
        // kv_sort_local sorts whole tiles, the global passes need at least one pair.
        let n_pow2 = n
            .next_power_of_two()
            .max(if t.local_sort { TILE } else { 2 });
        let blocks = n.div_ceil(u64::from(BLOCK));
        let value_base = 4 * n;
        let link_base = value_base + put_values.len() as u64;
        let rel_base = link_base + ops.links.len() as u64;
        let upload_words = rel_base + ops.related.len() as u64;
        let delta_base = 2 * n_pow2;
        let matrix_base = delta_base + n;
        let chunks = n.div_ceil(CHUNK);
        let chunk_base = matrix_base + blocks * nshards;
        let st_base = chunk_base + 7 * chunks;
        let work_words = st_base + 3 * n;
        let value_words = if reads { n * w } else { 0 };
        // Statuses, values, then per shard 4 counters and its link halves.
        let counter_words = 5 * nshards;
        let result_words = n + value_words + counter_words;
        if upload_words > u64::from(u32::MAX)
            || work_words > u64::from(u32::MAX)
            || result_words > u64::from(u32::MAX)
        {
            return Err(device_error(format!(
                "a batch of {n} device operations is too large for 32-bit device indices; \
                 split the batch"
            )));
        }
        let pipelines = self.table_pipelines()?;
        let mut plan = LinkPlan::new(ops, t.links.total());
        // The buffer the merged halves go to, taken now: a failure refuses the batch before
        // anything changed (and `t.links` gets it back only with the merged halves in it).
        let new_halves = if plan.merge {
            Some(t.links.take_spare(self, plan.halves + plan.events)?)
        } else {
            None
        };

        // Can any shard grow or need a rebuild? If not, and no related query needs its
        // candidates counted first, one submit does everything.
        let puts = u64::from(dev.puts);
        let may_rebuild = t.shards.iter().any(|s| {
            s.items + puts > max_items(s.slots, t.max_load)
                || s.used + puts > max_used(s.slots, t.max_load)
        });
        let midway = may_rebuild || plan.related;

        let Scratch {
            batch,
            records,
            work,
            counters,
            results,
            info,
            params,
            params2,
            lwork,
            lflat,
            pairs,
            pvals,
            staging: results_staging,
            plan_staging,
        } = scratch;
        let plan_staging = staging(self, plan_staging, counter_words * 4 + 4)?;
        let batch_buf = ensure(self, batch, "table batch", upload_words * 4, STORAGE)?;
        let records = ensure(self, records, "table sort records", n_pow2 * 16, STORAGE)?;
        let work = ensure(self, work, "table work", work_words * 4, STORAGE)?;
        let counters = ensure(self, counters, "table counters", counter_words * 4, STORAGE)?;
        let results = ensure(self, results, "table results", result_words * 4, STORAGE)?;
        let info = ensure(self, info, "table shard info", nshards * 32, STORAGE)?;
        let stride = u64::from(self.limits().min_uniform_buffer_offset_alignment).max(256);

        let mut base = Params {
            n: n as u32,
            n_pow2: n_pow2 as u32,
            nshards: nshards as u32,
            w: w as u32,
            value_base: value_base as u32,
            blocks: blocks as u32,
            delta_base: delta_base as u32,
            matrix_base: matrix_base as u32,
            chunk_base: chunk_base as u32,
            chunks: chunks as u32,
            st_base: st_base as u32,
            link_base: link_base as u32,
            rel_base: rel_base as u32,
            ..Params::default()
        };
        plan.layout(&mut base)?;
        let lwork = ensure(
            self,
            lwork,
            "table link events",
            2 * plan.events_pow2 * RECORD_BYTES,
            STORAGE,
        )?;
        let lflat = ensure(
            self,
            lflat,
            "table link scratch",
            plan.flat_words * 4,
            STORAGE,
        )?;
        let mut v1 = Variants {
            list: Vec::new(),
            stride,
        };
        let route = v1.push(base);
        // Bitonic stages; with `local_sort`: 2..TILE in one local pass, then per stage k the
        // distances j >= TILE as global passes and the rest in one local pass.
        let local = if t.local_sort { TILE } else { 1 };
        let mut sort = Vec::new();
        if t.local_sort {
            sort.push((K_SORT_LOCAL, v1.push(base)));
        }
        let mut k = 2 * local;
        while k <= n_pow2 {
            let mut j = k / 2;
            while j >= local {
                let v = v1.push(Params {
                    k: k as u32,
                    j: j as u32,
                    ..base
                });
                sort.push((K_SORT, v));
                j /= 2;
            }
            if t.local_sort {
                let v = v1.push(Params {
                    k: k as u32,
                    ..base
                });
                sort.push((K_SORT_LOCAL, v));
            }
            k *= 2;
        }
        let per_arena: Vec<usize> = (0..t.arenas.len())
            .map(|a| {
                v1.push(Params {
                    arena: a as u32,
                    ..base
                })
            })
            .collect();
        let first = FirstVariants::new(&mut v1, base, &plan);
        let params_bytes = v1.bytes();
        let params_buf = ensure(
            self,
            params,
            "table params",
            params_bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;

        let old_info = shard_info(t, &t.shards, &vec![false; t.shards.len()]);
        let queue = self.queue();
        let mut upload = Vec::with_capacity(upload_words as usize);
        upload.extend_from_slice(&dev.words);
        upload.extend_from_slice(put_values);
        upload.extend_from_slice(&ops.links);
        upload.extend_from_slice(&ops.related);
        queue.write_buffer(batch_buf, 0, bytemuck::cast_slice(&upload));
        queue.write_buffer(info, 0, bytemuck::cast_slice(&old_info));
        queue.write_buffer(params_buf, 0, &params_bytes);
        let lb = LinkBuffers {
            batch: batch_buf,
            records,
            work,
            counters,
            halves: t.links.buffer(),
            lwork,
            lflat,
        };

        let mut enc = Encoder {
            gpu: self,
            encoder: self
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("table batch"),
                }),
            pipelines: &pipelines,
            params: params_buf,
            stride,
        };
        self.scoped("encoding a table batch", || {
            enc.encoder
                .clear_buffer(counters, 0, Some(counter_words * 4));
            enc.run(
                K_ROUTE,
                route,
                &[entry(2, batch_buf), entry(3, records), entry(5, counters)],
                groups(self, n_pow2, WORKGROUP),
            );
            for &(kernel, variant) in &sort {
                let g = if kernel == K_SORT {
                    groups(self, n_pow2 / 2, WORKGROUP)
                } else {
                    groups(self, n_pow2 / TILE, 1)
                };
                enc.run(kernel, variant, &[entry(3, records)], g);
            }
            for (a, arena) in t.arenas.iter().enumerate() {
                enc.run(
                    K_WALK_CHUNKS,
                    per_arena[a],
                    &[
                        entry(1, info),
                        entry(2, batch_buf),
                        entry(3, records),
                        entry(4, work),
                        entry(7, &arena.slots),
                    ],
                    groups(self, chunks, WORKGROUP),
                );
            }
            enc.run(
                K_WALK_CARRY,
                route,
                &[entry(3, records), entry(4, work)],
                (1, 1),
            );
            for (a, arena) in t.arenas.iter().enumerate() {
                enc.run(
                    K_WALK,
                    per_arena[a],
                    &[
                        entry(1, info),
                        entry(2, batch_buf),
                        entry(3, records),
                        entry(4, work),
                        entry(5, counters),
                        entry(6, results),
                        entry(7, &arena.slots),
                        entry(8, &arena.values),
                    ],
                    groups(self, n, WORKGROUP),
                );
            }
            links::encode_first(&mut enc, &lb, &plan, &first);
            if may_rebuild {
                let block_groups = groups(self, blocks, 1);
                enc.run(
                    K_PEAK_BLOCKS,
                    route,
                    &[entry(2, batch_buf), entry(4, work)],
                    block_groups,
                );
                enc.run(
                    K_PEAK_SCAN,
                    route,
                    &[entry(4, work)],
                    groups(self, nshards, WORKGROUP),
                );
                enc.run(
                    K_PEAK,
                    route,
                    &[entry(2, batch_buf), entry(4, work), entry(5, counters)],
                    block_groups,
                );
            }
            if midway {
                enc.encoder
                    .copy_buffer_to_buffer(counters, 0, plan_staging, 0, counter_words * 4);
                enc.encoder.copy_buffer_to_buffer(
                    lflat,
                    u64::from(base.rel_off) * 4 + plan.queries * 4,
                    plan_staging,
                    counter_words * 4,
                    4,
                );
            }
        })?;

        // Plan growth from the counters (only when some shard could grow), and size the
        // related pairs.
        let mut new_meta = t.shards.clone();
        let mut rebuild = vec![false; t.shards.len()];
        let mut new_arenas_list: Option<Vec<Arena>> = None;
        let mut reserved = 0u64;
        let mut pairs_n = 0u64;
        let mut enc = if midway {
            let Encoder { encoder, .. } = enc;
            self.submit_and_wait("table batch: route, sort, walk", encoder)?;
            let bytes = map_read(self, plan_staging, counter_words * 4 + 4)?;
            let c: &[i32] = bytemuck::cast_slice(&bytes);
            if plan.related {
                pairs_n = u64::from(c[counter_words as usize] as u32);
            }
            if may_rebuild {
                for (s, m) in new_meta.iter_mut().enumerate() {
                    let (inserts, peak) = (c[4 * s + 1] as u64, c[4 * s + 3].max(0) as u64);
                    let peak_items = m.items + peak;
                    let mut slots = m.slots;
                    while max_items(slots, t.max_load) < peak_items {
                        slots *= 2;
                    }
                    rebuild[s] =
                        slots != m.slots || m.used + inserts > max_used(m.slots, t.max_load);
                    m.slots = slots;
                }
            }
            if rebuild.iter().any(|&r| r) {
                let slots: Vec<u64> = new_meta.iter().map(|m| m.slots).collect();
                let (at, lens) = layout(&slots, t.w, t.cap)?;
                let old_bytes: u64 = t.shards.iter().map(|m| m.slots).sum::<u64>();
                let new_bytes: u64 = slots.iter().sum::<u64>();
                let extra = (new_bytes - old_bytes) * slot_bytes(t.w);
                if extra > 0 {
                    self.reserve(extra)?;
                    reserved = extra;
                }
                match new_arenas(self, &lens, t.w) {
                    Ok(a) => new_arenas_list = Some(a),
                    Err(e) => {
                        self.release(reserved);
                        return Err(e);
                    }
                }
                for (m, (arena, base)) in new_meta.iter_mut().zip(at) {
                    m.arena = arena;
                    m.base = base;
                }
            }
            Encoder {
                gpu: self,
                encoder: self
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("table commit"),
                    }),
                pipelines: &pipelines,
                params: params_buf,
                stride,
            }
        } else {
            enc
        };

        // The related pairs' buffers: the last thing that may fail before the table changes.
        let pairs_pow2 = pairs_n.next_power_of_two().max(2);
        let prepared = if pairs_n > links::MAX_SCAN {
            Err(device_error(format!(
                "{pairs_n} related candidates in one batch: at most {} fit; split the batch",
                links::MAX_SCAN
            )))
        } else {
            ensure(
                self,
                pairs,
                "table related pairs",
                pairs_pow2 * RECORD_BYTES,
                STORAGE,
            )
            .and_then(|p| {
                let v = ensure(
                    self,
                    pvals,
                    "table related values",
                    pairs_n * w * 4,
                    STORAGE,
                )?;
                Ok((p, v))
            })
        };
        let (pairs_buf, pvals_buf) = match prepared {
            Ok(x) => x,
            Err(e) => {
                self.release(reserved);
                return Err(e);
            }
        };
        let related = Pairs {
            n: pairs_n,
            pow2: pairs_pow2,
            pairs: pairs_buf,
            pvals: pvals_buf,
        };

        // Phase 2: related answers, the link merge, commit.
        let final_arenas: &[Arena] = new_arenas_list.as_deref().unwrap_or(&t.arenas);
        let mut v2 = Variants {
            list: Vec::new(),
            stride,
        };
        let second_base = Params {
            pairs_n: pairs_n as u32,
            pairs_pow2: pairs_pow2 as u32,
            ..base
        };
        let second = SecondVariants::new(&mut v2, second_base, &plan, pairs_pow2, t.arenas.len());
        let commit: Vec<usize> = (0..t.arenas.len())
            .map(|a| {
                v2.push(Params {
                    arena: a as u32,
                    ..base
                })
            })
            .collect();
        let insert: Vec<usize> = (0..final_arenas.len())
            .map(|a| {
                v2.push(Params {
                    arena: a as u32,
                    ..base
                })
            })
            .collect();
        let mut pairs: Vec<(usize, usize)> = (0..t.shards.len())
            .filter(|&s| rebuild[s])
            .map(|s| (t.shards[s].arena as usize, new_meta[s].arena as usize))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let rehash: Vec<usize> = pairs
            .iter()
            .map(|&(a, b)| {
                v2.push(Params {
                    arena: a as u32,
                    arena2: b as u32,
                    count: t.arenas[a].len as u32,
                    ..base
                })
            })
            .collect();
        let params_bytes = v2.bytes();
        let params_buf = match ensure(
            self,
            params2,
            "table commit params",
            params_bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        ) {
            Ok(b) => b,
            Err(e) => {
                self.release(reserved);
                return Err(e);
            }
        };
        // What comes back: statuses, values and counters, then per related query its span,
        // then the sorted pairs and their partners' values.
        // (No pairs, no hits: the related kernels do not run, nothing comes back for them.)
        let span_words = if pairs_n > 0 { 2 * plan.queries } else { 0 };
        let pair_words = 8 * pairs_n;
        let pval_words = pairs_n * w;
        let read_words = result_words + span_words + pair_words + pval_words;
        let results_staging = match staging(self, results_staging, read_words * 4) {
            Ok(b) => b,
            Err(e) => {
                self.release(reserved);
                return Err(e);
            }
        };
        enc.params = params_buf;
        let new_info = shard_info(t, &new_meta, &rebuild);
        queue.write_buffer(info, 0, bytemuck::cast_slice(&new_info));
        queue.write_buffer(params_buf, 0, &params_bytes);
        let old_arenas: Vec<(&wgpu::Buffer, &wgpu::Buffer)> =
            t.arenas.iter().map(|a| (&a.slots, &a.values)).collect();
        let scoped = self.scoped("encoding a table commit", || {
            // The related answers read the table as it was before the batch: before the commit.
            if pairs_n > 0 {
                links::encode_related(&mut enc, &lb, &related, &plan, &second, &old_arenas, info);
            }
            if let Some(new_halves) = &new_halves {
                links::encode_merge(&mut enc, &lb, new_halves, &plan, &second);
            }
            for (a, arena) in t.arenas.iter().enumerate() {
                enc.run(
                    K_COMMIT,
                    commit[a],
                    &[
                        entry(1, info),
                        entry(2, batch_buf),
                        entry(3, records),
                        entry(4, work),
                        entry(9, &arena.slots),
                        entry(10, &arena.values),
                    ],
                    groups(self, n, WORKGROUP),
                );
            }
            if let Some(new) = &new_arenas_list {
                for (s, (old, m)) in t.shards.iter().zip(&new_meta).enumerate() {
                    if rebuild[s] {
                        continue;
                    }
                    let (from, to) = (&t.arenas[old.arena as usize], &new[m.arena as usize]);
                    let sb = SLOT_WORDS * 4;
                    enc.encoder.copy_buffer_to_buffer(
                        &from.slots,
                        old.base * sb,
                        &to.slots,
                        m.base * sb,
                        old.slots * sb,
                    );
                    let vb = 4 * w;
                    enc.encoder.copy_buffer_to_buffer(
                        &from.values,
                        old.base * vb,
                        &to.values,
                        m.base * vb,
                        old.slots * vb,
                    );
                }
                for (i, &(a, b)) in pairs.iter().enumerate() {
                    enc.run(
                        K_REHASH,
                        rehash[i],
                        &[
                            entry(1, info),
                            entry(7, &t.arenas[a].slots),
                            entry(8, &t.arenas[a].values),
                            entry(9, &new[b].slots),
                            entry(10, &new[b].values),
                        ],
                        groups(self, t.arenas[a].len, WORKGROUP),
                    );
                }
            }
            for (b, arena) in final_arenas.iter().enumerate() {
                enc.run(
                    K_INSERT,
                    insert[b],
                    &[
                        entry(1, info),
                        entry(2, batch_buf),
                        entry(3, records),
                        entry(4, work),
                        entry(9, &arena.slots),
                        entry(10, &arena.values),
                    ],
                    groups(self, n, WORKGROUP),
                );
            }
            enc.encoder.copy_buffer_to_buffer(
                counters,
                0,
                results,
                (n + value_words) * 4,
                counter_words * 4,
            );
            enc.encoder
                .copy_buffer_to_buffer(results, 0, results_staging, 0, result_words * 4);
            let mut at = result_words * 4;
            for (buf, offset, words) in [
                (lflat, u64::from(base.rel_span) * 4, span_words),
                (related.pairs, 0, pair_words),
                (related.pvals, 0, pval_words),
            ] {
                if words > 0 {
                    enc.encoder
                        .copy_buffer_to_buffer(buf, offset, results_staging, at, words * 4);
                }
                at += words * 4;
            }
        });
        if let Err(e) = scoped {
            self.release(reserved);
            return Err(e);
        }
        let Encoder { encoder, .. } = enc;
        // From this submit on the table is changing: a failure now is a device fault, which
        // refuses every later operation anyway.
        let done = self
            .submit_and_wait("table batch: commit", encoder)
            .and_then(|()| map_read(self, results_staging, read_words * 4));
        let bytes = match done {
            Ok(b) => b,
            Err(e) => {
                self.release(reserved);
                return Err(e);
            }
        };
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        let n = n as usize;
        let (status, rest) = words.split_at(n);
        let (values, rest) = rest.split_at(value_words as usize);
        let (counts, rest) = rest.split_at(counter_words as usize);
        let (spans, rest) = rest.split_at(span_words as usize);
        let (pair_words, pvals) = rest.split_at(pair_words as usize);
        let out = DeviceOut {
            status: status.to_vec(),
            values: values.to_vec(),
            spans: spans.to_vec(),
            pairs: pair_words.to_vec(),
            pvals: pvals[..pval_words as usize].to_vec(),
        };
        let c: &[i32] = bytemuck::cast_slice(counts);

        // Success: adopt the new layout, links and statistics.
        let old_bytes: u64 = t.shards.iter().map(|m| m.slots).sum::<u64>() * slot_bytes(t.w);
        for (s, m) in new_meta.iter_mut().enumerate() {
            let old = &t.shards[s];
            let (inserts, removes) = (c[4 * s + 1] as u64, c[4 * s + 2] as u64);
            m.items = old.items + inserts - removes;
            m.used = if rebuild[s] {
                m.items
            } else {
                old.used + inserts
            };
            m.resizes = old.resizes + (m.slots.trailing_zeros() - old.slots.trailing_zeros());
            m.ops = old.ops + c[4 * s] as u64;
        }
        if let Some(new_halves) = new_halves {
            let halves = &c[4 * nshards as usize..];
            t.links
                .adopt(new_halves, halves.iter().map(|&h| h as u64).collect());
        }
        let new_bytes: u64 = new_meta.iter().map(|m| m.slots).sum::<u64>() * slot_bytes(t.w);
        debug_assert_eq!(new_bytes - old_bytes, reserved);
        t.shards = new_meta;
        if let Some(a) = new_arenas_list {
            t.arenas = a;
        }
        Ok(out)
    }
}

/// Per shard two vec4: (arena, base, mask, rebuild) before the batch (`t.shards`) and
/// (arena, base, mask, 0) after (`after`).
fn shard_info(t: &WgpuShards, after: &[ShardMeta], rebuild: &[bool]) -> Vec<u32> {
    let mut out = Vec::with_capacity(t.shards.len() * 8);
    for (s, (b, a)) in t.shards.iter().zip(after).enumerate() {
        out.extend([
            b.arena,
            b.base as u32,
            (b.slots - 1) as u32,
            u32::from(rebuild[s]),
            a.arena,
            a.base as u32,
            (a.slots - 1) as u32,
            0,
        ]);
    }
    out
}

fn status_of(code: u32) -> Status {
    match code {
        0 => Status::Ok,
        1 => Status::Value,
        2 => Status::Missing,
        3 => Status::Deleted,
        4 => Status::Absent,
        _ => Status::Related,
    }
}

impl TableBackend for WgpuDevice {
    type Shards = WgpuShards;

    fn create_shards(&self, config: &TableConfig) -> Result<WgpuShards, TableError> {
        if config.shards > MAX_SHARDS {
            return Err(TableError::InvalidConfig {
                field: "shards",
                reason: format!(
                    "expected at most {MAX_SHARDS} on the wgpu backend, got {}",
                    config.shards
                ),
            });
        }
        let slots = initial_slots(config.capacity, config.shards, config.max_load);
        let w = config.value_words();
        let cap = self.arena_cap();
        let (at, lens) = layout(&vec![slots; config.shards as usize], w, cap)?;
        let bytes = slots * u64::from(config.shards) * slot_bytes(w);
        self.reserve(bytes)?;
        let arenas = new_arenas(self, &lens, w).inspect_err(|_| self.release(bytes))?;
        Ok(WgpuShards {
            shards: at
                .into_iter()
                .map(|(arena, base)| ShardMeta {
                    slots,
                    items: 0,
                    used: 0,
                    ops: 0,
                    resizes: 0,
                    arena,
                    base,
                })
                .collect(),
            arenas,
            w,
            max_load: config.max_load,
            cap,
            local_sort: !self.is_cpu_adapter(),
            links: DeviceLinks::new(self, config.shards).inspect_err(|_| self.release(bytes))?,
        })
    }

    fn apply(
        &self,
        t: &mut WgpuShards,
        _config: &TableConfig,
        batch: &Batch,
        _epoch: u64,
        results: &mut BatchResults,
    ) -> Result<(), TableError> {
        let n = batch.len();
        let w = t.w;
        let reads = batch.reads_values();
        results.reset(n, w, reads);
        if n == 0 {
            return Ok(());
        }
        if n > MAX_DEVICE_OPS {
            results.reset(0, w, false);
            return Err(TableError::BatchTooLarge {
                max: MAX_DEVICE_OPS,
            });
        }
        // One device op per operation, at its batch position (the link kernels' clock).
        let (codes, keys) = (batch.codes(), batch.keys());
        let mut dev = DeviceBatch {
            words: Vec::with_capacity(n * 4),
            puts: 0,
        };
        let mut put_values = Vec::new();
        let mut ops = LinkOps::default();
        for i in 0..n {
            let key = keys[i];
            match codes[i] {
                OpCode::Put => {
                    dev.push(OP_PUT | COUNTED, key);
                    let at = dev.words.len() - 1;
                    dev.words[at] = dev.puts;
                    dev.puts += 1;
                    put_values.extend_from_slice(batch.put_value(i));
                }
                OpCode::Get => dev.push(OP_GET | COUNTED, key),
                OpCode::Delete => {
                    dev.push(OP_DELETE | COUNTED, key);
                    ops.deletes = true;
                }
                OpCode::Link => {
                    let a = batch.aux(i);
                    dev.push(OP_NOP | COUNTED, key);
                    ops.link(i, a.partner, Some(a.strength));
                }
                OpCode::Unlink => {
                    dev.push(OP_NOP | COUNTED, key);
                    ops.link(i, batch.aux(i).partner, None);
                }
                OpCode::GetRelated => {
                    let a = batch.aux(i);
                    dev.push(OP_GET | COUNTED, key);
                    ops.related(i, a.strength, a.max);
                }
            }
        }

        let mut scratch = self.take_scratch();
        let done = self.kv_apply(t, &dev, &put_values, &ops, reads, &mut scratch);
        self.return_scratch(scratch);
        let out = done.map_err(|e| {
            results.reset(0, w, false);
            TableError::from(e)
        })?;

        // Results in batch order.
        let mut q = 0;
        for (i, &code) in codes.iter().enumerate() {
            let st = status_of(out.status[i]);
            if code == OpCode::GetRelated {
                let found = st == Status::Value;
                if found {
                    results.values[i * w..(i + 1) * w]
                        .copy_from_slice(&out.values[i * w..(i + 1) * w]);
                }
                let start = results.hits.len();
                // The device's spans are empty when no query had candidates (none read back).
                let (first, hits) = match out.spans.get(2 * q..2 * q + 2) {
                    Some(&[first, hits]) => (first as usize, hits as usize),
                    _ => (0, 0),
                };
                for pair in out.pairs[8 * first..8 * (first + hits)].chunks_exact(8) {
                    let key = u64::from(pair[3]) | u64::from(pair[2]) << 32;
                    let strength = f32::from_bits(!pair[1]);
                    results.hits.push(RelatedHit { key, strength });
                    let at = pair[4] as usize * w;
                    results.hit_values.extend_from_slice(&out.pvals[at..at + w]);
                }
                results.related.push(RelatedSpan {
                    op: i as u32,
                    start: start as u32,
                    len: hits as u32,
                    found,
                });
                results.status[i] = Status::Related;
                q += 1;
            } else {
                results.status[i] = st;
                if st == Status::Value {
                    results.values[i * w..(i + 1) * w]
                        .copy_from_slice(&out.values[i * w..(i + 1) * w]);
                }
            }
        }
        Ok(())
    }

    fn shard_stats(&self, t: &WgpuShards) -> Vec<ShardStats> {
        t.shards
            .iter()
            .enumerate()
            .map(|(s, m)| ShardStats {
                items: m.items,
                slots: m.slots,
                ops: m.ops,
                resizes: m.resizes,
                link_halves: t.links.halves(s),
            })
            .collect()
    }

    fn export_shard(
        &self,
        t: &WgpuShards,
        shard: usize,
        entry: &mut dyn FnMut(u64, &[u8]),
        link: &mut dyn FnMut(u64, u64, f32),
    ) -> Result<(), TableError> {
        let m = t.shards[shard];
        let arena = &t.arenas[m.arena as usize];
        let w = t.w as u64;
        let read = |buf: &wgpu::Buffer, at: u64, bytes: u64| -> Result<Vec<u8>, BackendError> {
            let tmp = storage(self, "export", bytes)?;
            let mut encoder = self
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            encoder.copy_buffer_to_buffer(buf, at, &tmp, 0, bytes);
            self.submit_and_wait("exporting a shard", encoder)?;
            Readback::default().read(self, &tmp, bytes)
        };
        // Every read finishes before anything is visited, so a failure visits nothing.
        let slots = read(&arena.slots, m.base * 12, m.slots * 12)?;
        let values = read(&arena.values, m.base * 4 * w, m.slots * 4 * w)?;
        let halves = t.links.halves(shard);
        let links = if halves > 0 {
            read(
                t.links.buffer(),
                t.links.first_of(shard) * RECORD_BYTES,
                halves * RECORD_BYTES,
            )?
        } else {
            Vec::new()
        };
        let slots: &[u32] = bytemuck::cast_slice(&slots);
        for (g, s) in slots.chunks_exact(3).enumerate() {
            if s[0] == 2 {
                let key = u64::from(s[1]) | u64::from(s[2]) << 32;
                let at = g * 4 * t.w;
                entry(key, &values[at..at + 4 * t.w]);
            }
        }
        links::visit_halves(&links, link);
        Ok(())
    }

    fn try_clone_shards(&self, t: &WgpuShards) -> Result<WgpuShards, TableError> {
        let bytes = t.shards.iter().map(|m| m.slots).sum::<u64>() * slot_bytes(t.w);
        self.reserve(bytes)?;
        let lens: Vec<u64> = t.arenas.iter().map(|a| a.len).collect();
        let copy = new_arenas(self, &lens, t.w).and_then(|arenas| {
            let mut encoder =
                self.device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("table clone"),
                    });
            for (from, to) in t.arenas.iter().zip(&arenas) {
                encoder.copy_buffer_to_buffer(&from.slots, 0, &to.slots, 0, from.slots.size());
                encoder.copy_buffer_to_buffer(&from.values, 0, &to.values, 0, from.values.size());
            }
            self.submit_and_wait("cloning a table", encoder)?;
            Ok((arenas, t.links.try_clone(self)?))
        });
        match copy {
            Ok((arenas, links)) => Ok(WgpuShards {
                shards: t.shards.clone(),
                arenas,
                w: t.w,
                max_load: t.max_load,
                cap: t.cap,
                local_sort: t.local_sort,
                links,
            }),
            Err(e) => {
                self.release(bytes);
                Err(e.into())
            }
        }
    }

    fn drop_shards(&self, t: WgpuShards) {
        self.release(t.shards.iter().map(|m| m.slots).sum::<u64>() * slot_bytes(t.w));
    }
}

#[cfg(test)]
mod test;
