//! Shard tables on the wgpu backend (SPEC §1): the shards' hash tables resident on the device,
//! every PUT / GET / DELETE of a batch run as WGSL compute (`shaders/table.wgsl`), with the
//! result the sequential order defines. Design: docs/wgpu.md, "Tables on the device".
//!
//! One batch:
//! 1. The host walks the batch once: link, unlink and delete update the link halves (kept on
//!    the host, [`links`]), and every key operation becomes a device op; a related query
//!    becomes a counted GET of its key plus an uncounted GET ("probe") of each partner the
//!    links hold at that point, so the device tells which partners exist, with their values,
//!    at exactly that moment of the batch.
//! 2. One upload; on the device: route (shard per op), bitonic sort by (shard, key, position),
//!    one invocation per run segment of a key (runs cut in chunks of 256 records, the state
//!    carried across chunks by a scan of per-chunk effects): probe the shard, apply the ops
//!    in order (results, item deltas, the key's final state); and, when a shard could grow,
//!    the per-shard peak of the running item count in batch order (block sums, scan, block
//!    maxima).
//! 3. Only then the host reads the per-shard counters (when growth is possible at all), plans
//!    growth exactly like the CPU backend (doubling before an insert would pass `max_load`),
//!    checks the memory limit, and allocates new arenas. Nothing persistent has been written
//!    yet, so a refusal leaves the table unchanged.
//! 4. Commit on the device: tombstones and in-place updates, copies or rehashes into new
//!    arenas, inserts of new keys; one readback of statuses, read values and counters.
//!
//! Shards are packed into arenas (one slots buffer and one values buffer each) no larger
//! than the adapter's storage-binding limit; a kernel that touches the table runs once per
//! arena.
//!
//! The link halves live on the host for now ([`links`]; an interim stated in docs/wgpu.md):
//! only their evolution and a related query's candidate list are computed there.

mod links;

use std::num::NonZeroU64;

use super::buffers::map_read;
use super::{Readback, WgpuDevice};
use crate::backend::{BackendKind, TableBackend};
use crate::error::{BackendError, TableError};
use crate::table::route::{ShardRouter, initial_slots, max_items};
use crate::table::{
    Batch, BatchResults, OpCode, RelatedHit, RelatedSpan, ShardStats, Status, TableConfig,
};
use links::Links;

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
const COUNTED: u32 = 0x100;

/// The kernels of `shaders/table.wgsl`: (pipeline name, entry point). The entry point is the
/// operation's name in every backend.
const KERNELS: [(&str, &str); 12] = [
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
    pad: u32,
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
    links: Links,
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
    /// device state and metadata are as they were.
    fn kv_apply(
        &self,
        t: &mut WgpuShards,
        dev: &DeviceBatch,
        put_values: &[u32],
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
        let delta_base = 2 * n_pow2;
        let matrix_base = delta_base + n;
        let chunks = n.div_ceil(CHUNK);
        let chunk_base = matrix_base + blocks * nshards;
        let work_words = chunk_base + 5 * chunks;
        let value_words = if reads { n * w } else { 0 };
        let result_words = n + value_words + 4 * nshards;
        if value_base + put_values.len() as u64 > u64::from(u32::MAX)
            || work_words > u64::from(u32::MAX)
            || result_words > u64::from(u32::MAX)
        {
            return Err(device_error(format!(
                "a batch of {n} device operations is too large for 32-bit device indices; \
                 split the batch"
            )));
        }
        let pipelines = self.table_pipelines()?;

        // Can any shard grow or need a rebuild? If not, one submit does everything.
        let puts = u64::from(dev.puts);
        let may_rebuild = t.shards.iter().any(|s| {
            s.items + puts > max_items(s.slots, t.max_load)
                || s.used + puts > max_used(s.slots, t.max_load)
        });

        let Scratch {
            batch,
            records,
            work,
            counters,
            results,
            info,
            params,
            params2,
            staging: results_staging,
            plan_staging,
        } = scratch;
        let plan_staging = staging(self, plan_staging, nshards * 16)?;
        let results_staging = staging(self, results_staging, result_words * 4)?;
        let batch_buf = ensure(
            self,
            batch,
            "table batch",
            (dev.words.len() + put_values.len()) as u64 * 4,
            STORAGE,
        )?;
        let records = ensure(self, records, "table sort records", n_pow2 * 16, STORAGE)?;
        let work = ensure(self, work, "table work", work_words * 4, STORAGE)?;
        let counters = ensure(self, counters, "table counters", nshards * 16, STORAGE)?;
        let results = ensure(self, results, "table results", result_words * 4, STORAGE)?;
        let info = ensure(self, info, "table shard info", nshards * 32, STORAGE)?;
        let stride = u64::from(self.limits().min_uniform_buffer_offset_alignment).max(256);

        let base = Params {
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
            ..Params::default()
        };
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
        let mut upload = Vec::with_capacity(dev.words.len() + put_values.len());
        upload.extend_from_slice(&dev.words);
        upload.extend_from_slice(put_values);
        queue.write_buffer(batch_buf, 0, bytemuck::cast_slice(&upload));
        queue.write_buffer(info, 0, bytemuck::cast_slice(&old_info));
        queue.write_buffer(params_buf, 0, &params_bytes);

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
            enc.encoder.clear_buffer(counters, 0, Some(nshards * 16));
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
                enc.encoder
                    .copy_buffer_to_buffer(counters, 0, plan_staging, 0, nshards * 16);
            }
        })?;

        // Plan growth from the counters (only when some shard could grow).
        let mut new_meta = t.shards.clone();
        let mut rebuild = vec![false; t.shards.len()];
        let mut new_arenas_list: Option<Vec<Arena>> = None;
        let mut reserved = 0u64;
        let mut enc = if may_rebuild {
            let Encoder { encoder, .. } = enc;
            self.submit_and_wait("table batch: route, sort, walk", encoder)?;
            let bytes = map_read(self, plan_staging, nshards * 16)?;
            let c: &[i32] = bytemuck::cast_slice(&bytes);
            for (s, m) in new_meta.iter_mut().enumerate() {
                let (inserts, peak) = (c[4 * s + 1] as u64, c[4 * s + 3].max(0) as u64);
                let peak_items = m.items + peak;
                let mut slots = m.slots;
                while max_items(slots, t.max_load) < peak_items {
                    slots *= 2;
                }
                rebuild[s] = slots != m.slots || m.used + inserts > max_used(m.slots, t.max_load);
                m.slots = slots;
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

        // Phase 2: commit.
        let final_arenas: &[Arena] = new_arenas_list.as_deref().unwrap_or(&t.arenas);
        let mut v2 = Variants {
            list: Vec::new(),
            stride,
        };
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
        enc.params = params_buf;
        let new_info = shard_info(t, &new_meta, &rebuild);
        queue.write_buffer(info, 0, bytemuck::cast_slice(&new_info));
        queue.write_buffer(params_buf, 0, &params_bytes);
        let scoped = self.scoped("encoding a table commit", || {
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
                nshards * 16,
            );
            enc.encoder
                .copy_buffer_to_buffer(results, 0, results_staging, 0, result_words * 4);
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
            .and_then(|()| map_read(self, results_staging, result_words * 4));
        let bytes = match done {
            Ok(b) => b,
            Err(e) => {
                self.release(reserved);
                return Err(e);
            }
        };
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        let n = n as usize;
        let out = DeviceOut {
            status: words[..n].to_vec(),
            values: words[n..n + value_words as usize].to_vec(),
        };
        let c: &[i32] = bytemuck::cast_slice(&words[n + value_words as usize..]);
        let counts: Vec<[i32; 4]> = (0..nshards as usize)
            .map(|s| [c[4 * s], c[4 * s + 1], c[4 * s + 2], c[4 * s + 3]])
            .collect();

        // Success: adopt the new layout and statistics.
        let old_bytes: u64 = t.shards.iter().map(|m| m.slots).sum::<u64>() * slot_bytes(t.w);
        for (s, m) in new_meta.iter_mut().enumerate() {
            let old = &t.shards[s];
            let (inserts, removes) = (counts[s][1] as u64, counts[s][2] as u64);
            m.items = old.items + inserts - removes;
            m.used = if rebuild[s] {
                m.items
            } else {
                old.used + inserts
            };
            m.resizes = old.resizes + (m.slots.trailing_zeros() - old.slots.trailing_zeros());
            m.ops = old.ops + counts[s][0] as u64;
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

/// One related query of a batch: its own GET and its partners' probes on the device.
struct RelatedQuery {
    op: usize,
    own: usize,
    /// Candidates `cands[start..start + len]`, probed by device ops `probe..probe + len`.
    start: usize,
    len: usize,
    probe: usize,
    max: u32,
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
            links: Links::new(config.shards),
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
        let router = ShardRouter::new(t.shards.len() as u32);
        let (codes, keys) = (batch.codes(), batch.keys());
        let mut dev = DeviceBatch {
            words: Vec::with_capacity(n * 4),
            puts: 0,
        };
        let mut put_values = Vec::new();
        // Per op: its device op (u32::MAX for links and unlinks).
        let mut map = vec![u32::MAX; n];
        let mut host_ops = vec![0u64; t.shards.len()];
        let mut related = Vec::new();
        let mut cands: Vec<(u64, f32)> = Vec::new();
        for i in 0..n {
            let key = keys[i];
            match codes[i] {
                OpCode::Put => {
                    map[i] = dev.len() as u32;
                    dev.push(OP_PUT | COUNTED, key);
                    let at = dev.words.len() - 1;
                    dev.words[at] = dev.puts;
                    dev.puts += 1;
                    put_values.extend_from_slice(batch.put_value(i));
                }
                OpCode::Get => {
                    map[i] = dev.len() as u32;
                    dev.push(OP_GET | COUNTED, key);
                }
                OpCode::Delete => {
                    map[i] = dev.len() as u32;
                    dev.push(OP_DELETE | COUNTED, key);
                    t.links.delete(key);
                }
                OpCode::Link => {
                    let a = batch.aux(i);
                    t.links.link(key, a.partner, a.strength);
                    host_ops[router.shard(key) as usize] += 1;
                }
                OpCode::Unlink => {
                    t.links.unlink(key, batch.aux(i).partner);
                    host_ops[router.shard(key) as usize] += 1;
                }
                OpCode::GetRelated => {
                    let a = batch.aux(i);
                    let own = dev.len();
                    dev.push(OP_GET | COUNTED, key);
                    let start = cands.len();
                    if a.max > 0 {
                        t.links.related(key, a.strength, &mut cands);
                    }
                    let probe = dev.len();
                    for &(partner, _) in &cands[start..] {
                        dev.push(OP_GET, partner);
                    }
                    related.push(RelatedQuery {
                        op: i,
                        own,
                        start,
                        len: cands.len() - start,
                        probe,
                        max: a.max,
                    });
                }
            }
        }

        if dev.len() > MAX_DEVICE_OPS {
            t.links.rollback();
            results.reset(0, w, false);
            return Err(TableError::BatchTooLarge {
                max: MAX_DEVICE_OPS,
            });
        }
        let out = if dev.len() == 0 {
            DeviceOut {
                status: Vec::new(),
                values: Vec::new(),
            }
        } else {
            let mut scratch = self.take_scratch();
            let done = self.kv_apply(t, &dev, &put_values, reads, &mut scratch);
            self.return_scratch(scratch);
            match done {
                Ok(out) => out,
                Err(e) => {
                    t.links.rollback();
                    results.reset(0, w, false);
                    return Err(e.into());
                }
            }
        };
        t.links.commit();
        for (m, o) in t.shards.iter_mut().zip(host_ops) {
            m.ops += o;
        }

        // Results in batch order.
        let mut rel = related.iter();
        for i in 0..n {
            match codes[i] {
                OpCode::Link | OpCode::Unlink => results.status[i] = Status::Ok,
                OpCode::GetRelated => {
                    let q = rel.next().expect("one entry per related query");
                    debug_assert_eq!(q.op, i);
                    let found = out.status[q.own] == Status::Value as u32;
                    if found {
                        results.values[i * w..(i + 1) * w]
                            .copy_from_slice(&out.values[q.own * w..(q.own + 1) * w]);
                    }
                    let start = results.hits.len();
                    for c in 0..q.len {
                        if results.hits.len() - start >= q.max as usize {
                            break;
                        }
                        let d = q.probe + c;
                        if out.status[d] == Status::Value as u32 {
                            let (key, strength) = cands[q.start + c];
                            results.hits.push(RelatedHit { key, strength });
                            results
                                .hit_values
                                .extend_from_slice(&out.values[d * w..(d + 1) * w]);
                        }
                    }
                    results.related.push(RelatedSpan {
                        op: i as u32,
                        start: start as u32,
                        len: (results.hits.len() - start) as u32,
                        found,
                    });
                    results.status[i] = Status::Related;
                }
                _ => {
                    let d = map[i] as usize;
                    let st = status_of(out.status[d]);
                    results.status[i] = st;
                    if st == Status::Value {
                        results.values[i * w..(i + 1) * w]
                            .copy_from_slice(&out.values[d * w..(d + 1) * w]);
                    }
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
        // Both reads finish before anything is visited, so a failure visits nothing.
        let slots = read(&arena.slots, m.base * 12, m.slots * 12)?;
        let values = read(&arena.values, m.base * 4 * w, m.slots * 4 * w)?;
        let slots: &[u32] = bytemuck::cast_slice(&slots);
        for (g, s) in slots.chunks_exact(3).enumerate() {
            if s[0] == 2 {
                let key = u64::from(s[1]) | u64::from(s[2]) << 32;
                let at = g * 4 * t.w;
                entry(key, &values[at..at + 4 * t.w]);
            }
        }
        t.links.export(shard, link);
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
            Ok(arenas)
        });
        match copy {
            Ok(arenas) => Ok(WgpuShards {
                shards: t.shards.clone(),
                arenas,
                w: t.w,
                max_load: t.max_load,
                cap: t.cap,
                local_sort: t.local_sort,
                links: t.links.clone(),
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
