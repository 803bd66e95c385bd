//! The host order of shard tables on a GPU (SPEC §1), shared by the wgpu and CUDA backends:
//! the shards' hash tables resident on the device, every operation of a batch run by the
//! kernels of `shaders/table.wgsl` / `kernels/table.cu` (siblings: same names, `Params`
//! bytes, buffers and algorithms), with the result the sequential order defines. Design:
//! docs/wgpu.md, "Tables on the device", and docs/cuda.md, "Tables on CUDA".
//!
//! This module owns everything that does not depend on the device: sizing and the regions of
//! the batch buffers, the [`Params`] of every launch, the launch sequence of a batch, growth
//! planning, the commit-or-refuse semantics, statistics, result and export decoding. A
//! backend implements [`TableDevice`]: allocate and size buffers (within its limits and the
//! memory account), and run a list of [`Step`]s (writes, clears, copies, kernel launches) in
//! order, then read regions back with one wait.
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
//! than [`TableDevice::arena_cap`] (wgpu: the adapter's storage-binding limit; CUDA: the
//! kernels' 32-bit indexing); a kernel that touches the table runs once per arena.
//!
//! The shapes llvmpipe needs (walk chunks, single-invocation scans, at most 65,535 loop
//! iterations, hence [`MAX_DEVICE_OPS`]) are part of this order, so CUDA runs them the same
//! way; `kernels/table.cu`'s header says where CUDA could do better later.

pub(crate) mod links;

use crate::backend::BackendKind;
use crate::error::{BackendError, TableError};
use crate::table::route::{initial_slots, max_items};
use crate::table::{
    Batch, BatchResults, OpCode, RelatedHit, RelatedSpan, ShardStats, Status, TableConfig,
};
use links::{DeviceLinks, LinkOps, LinkPlan, RECORD_BYTES};

/// Invocations per workgroup of the flat kernels (`WORKGROUP` in the kernels).
pub(crate) const WORKGROUP: u32 = 256;
/// Operations per block of the peak scan (`BLOCK` in the kernels).
pub(crate) const BLOCK: u32 = 256;
/// Most shards the peak kernels' workgroup arrays hold (`MAX_SHARDS`; config allows 1024).
pub(crate) const MAX_SHARDS: u32 = 1024;
/// Words per slot in an arena's slots buffer: tag, key lo, key hi.
const SLOT_WORDS: u64 = 3;

const OP_PUT: u32 = 0;
const OP_GET: u32 = 1;
const OP_DELETE: u32 = 2;
const OP_NOP: u32 = 3;
const COUNTED: u32 = 0x100;

/// Records one workgroup of `kv_sort_local` sorts (`TILE` in the kernels).
pub(crate) const TILE: u64 = 512;
/// Records per walk chunk (`CHUNK` in the kernels).
pub(crate) const CHUNK: u64 = 256;
/// Most device operations in one batch: the single-invocation scans (walk chunks, peak
/// blocks) loop once per 256 operations, and llvmpipe ends a shader after 65535 loop
/// iterations.
pub(crate) const MAX_DEVICE_OPS: usize = 65_535 * 256;

/// The kernels of a table batch; [`Kernel::entry`] is the operation's name in every backend
/// (the WGSL entry point and the CUDA kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Route,
    Sort,
    SortLocal,
    WalkChunks,
    WalkCarry,
    Walk,
    PeakBlocks,
    PeakScan,
    Peak,
    Commit,
    Rehash,
    Insert,
    LinkRoute,
    LinkSort,
    RelCount,
    LinkScanBlocks,
    LinkScanCarry,
    LinkScanApply,
    RelPairs,
    RelExist,
    RelSpan,
    LinkKeepOld,
    LinkKeepEvents,
    LinkWriteOld,
    LinkWriteEvents,
}

impl Kernel {
    /// Every kernel, in declaration order (`ALL[k.index()] == k`).
    pub(crate) const ALL: [Kernel; 25] = [
        Kernel::Route,
        Kernel::Sort,
        Kernel::SortLocal,
        Kernel::WalkChunks,
        Kernel::WalkCarry,
        Kernel::Walk,
        Kernel::PeakBlocks,
        Kernel::PeakScan,
        Kernel::Peak,
        Kernel::Commit,
        Kernel::Rehash,
        Kernel::Insert,
        Kernel::LinkRoute,
        Kernel::LinkSort,
        Kernel::RelCount,
        Kernel::LinkScanBlocks,
        Kernel::LinkScanCarry,
        Kernel::LinkScanApply,
        Kernel::RelPairs,
        Kernel::RelExist,
        Kernel::RelSpan,
        Kernel::LinkKeepOld,
        Kernel::LinkKeepEvents,
        Kernel::LinkWriteOld,
        Kernel::LinkWriteEvents,
    ];

    /// The entry point (WGSL) and kernel (CUDA) name.
    pub(crate) fn entry(self) -> &'static str {
        match self {
            Kernel::Route => "kv_route",
            Kernel::Sort => "kv_sort",
            Kernel::SortLocal => "kv_sort_local",
            Kernel::WalkChunks => "kv_walk_chunks",
            Kernel::WalkCarry => "kv_walk_carry",
            Kernel::Walk => "kv_walk",
            Kernel::PeakBlocks => "kv_peak_blocks",
            Kernel::PeakScan => "kv_peak_scan",
            Kernel::Peak => "kv_peak",
            Kernel::Commit => "kv_commit",
            Kernel::Rehash => "kv_rehash",
            Kernel::Insert => "kv_insert",
            Kernel::LinkRoute => "link_route",
            Kernel::LinkSort => "link_sort",
            Kernel::RelCount => "rel_count",
            Kernel::LinkScanBlocks => "link_scan_blocks",
            Kernel::LinkScanCarry => "link_scan_carry",
            Kernel::LinkScanApply => "link_scan_apply",
            Kernel::RelPairs => "rel_pairs",
            Kernel::RelExist => "rel_exist",
            Kernel::RelSpan => "rel_span",
            Kernel::LinkKeepOld => "link_keep_old",
            Kernel::LinkKeepEvents => "link_keep_events",
            Kernel::LinkWriteOld => "link_write_old",
            Kernel::LinkWriteEvents => "link_write_events",
        }
    }

    /// Threads per workgroup (block): the WGSL `@workgroup_size`.
    pub(crate) fn threads(self) -> u32 {
        match self {
            Kernel::PeakBlocks | Kernel::Peak => 64,
            Kernel::WalkCarry | Kernel::LinkScanCarry => 1,
            _ => WORKGROUP,
        }
    }

    /// Position in [`Kernel::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Constants of one launch, laid out as `Params` in `shaders/table.wgsl` and `TableParams`
/// in `kernels/table.cu` (48 u32, 192 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub n_pow2: u32,
    pub nshards: u32,
    pub w: u32,
    pub arena: u32,
    pub arena2: u32,
    pub k: u32,
    pub j: u32,
    pub value_base: u32,
    pub blocks: u32,
    pub delta_base: u32,
    pub matrix_base: u32,
    pub count: u32,
    pub chunk_base: u32,
    pub chunks: u32,
    pub st_base: u32,
    pub link_base: u32,
    pub ev_n: u32,
    pub ev_pow2: u32,
    pub halves_n: u32,
    pub rel_base: u32,
    pub rel_n: u32,
    pub pairs_n: u32,
    pub pairs_pow2: u32,
    pub sort_pow2: u32,
    pub scan_src: u32,
    pub scan_dst: u32,
    pub scan_n: u32,
    pub scan_tmp: u32,
    pub scan_sum: u32,
    pub keep_old: u32,
    pub keep_ev: u32,
    pub scan_old: u32,
    pub scan_ev: u32,
    pub rel_cnt: u32,
    pub rel_off: u32,
    pub rel_lbo: u32,
    pub rel_lbe: u32,
    pub rel_a: u32,
    pub rel_span: u32,
    pub sort_base: u32,
    pub pad: [u32; 7],
}

/// One piece of device work, run in list order by [`TableDevice::submit`]. Writes come
/// first in a list (wgpu performs them before the list's commands).
pub enum Step<'a, B> {
    /// Writes `words` at the start of `buf`.
    Write { buf: &'a B, words: Vec<u32> },
    /// Zeroes the first `bytes` of `buf`.
    Clear { buf: &'a B, bytes: u64 },
    /// Copies `bytes` from `from` at byte `from_at` to `to` at byte `to_at`.
    Copy {
        from: &'a B,
        from_at: u64,
        to: &'a B,
        to_at: u64,
        bytes: u64,
    },
    /// Launches `kernel` with `params` over `groups` workgroups of `kernel.threads()`,
    /// storage buffers bound by WGSL binding number.
    Run {
        kernel: Kernel,
        params: Params,
        binds: Vec<(u32, &'a B)>,
        groups: u64,
    },
}

/// A region read back after a list of steps: (buffer, byte offset, words).
pub type Read<'a, B> = (&'a B, u64, u64);

/// The device operations the table order needs. wgpu: buffers, bind groups and command
/// encoders (`backend::wgpu::table`); CUDA: plain allocations and launches on one stream
/// (`backend::cuda::table`).
pub trait TableDevice: Sized {
    /// A device buffer.
    type Buf: Send;
    /// Per-batch state the device keeps with the batch buffers (staging, loaded kernels).
    type Cache: Default + Send;
    /// The backend, for errors.
    const KIND: BackendKind;
    /// What bounds one buffer, for errors ("the adapter's storage binding limit").
    const LIMIT_NAME: &'static str;

    /// Most bytes of one arena buffer.
    fn arena_cap(&self) -> u64;
    /// Most bytes of one batch buffer.
    fn buffer_limit(&self) -> u64;
    /// Whether the sort does its short distances in workgroup memory (`kv_sort_local`).
    fn local_sort(&self) -> bool;
    /// A zeroed storage buffer of at least `bytes` bytes.
    fn alloc(&self, label: &str, bytes: u64) -> Result<Self::Buf, BackendError>;
    /// The size of `buf` in bytes.
    fn size(buf: &Self::Buf) -> u64;
    /// Accounts `bytes` more table state against the memory limit, or fails with nothing
    /// accounted.
    fn reserve(&self, bytes: u64) -> Result<(), BackendError>;
    /// Returns `bytes` of table state to the account.
    fn release(&self, bytes: u64);
    /// Runs `steps` in order, then reads `reads` back (concatenated words), waiting once.
    fn submit(
        &self,
        what: &str,
        cache: &mut Self::Cache,
        steps: &[Step<'_, Self::Buf>],
        reads: &[Read<'_, Self::Buf>],
    ) -> Result<Vec<u32>, BackendError>;
    /// A set of batch buffers from the device's pool (or a new, empty one).
    fn take_scratch(&self) -> Scratch<Self>;
    /// Gives a set of batch buffers back to the pool.
    fn return_scratch(&self, scratch: Scratch<Self>);
}

/// Host bookkeeping of one shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardMeta {
    pub slots: u64,
    pub items: u64,
    /// Slots not empty (items and tombstones), an upper bound: every insert is counted as if
    /// it took an empty slot. A shard is rebuilt before it could pass `max_used`.
    pub used: u64,
    pub ops: u64,
    pub resizes: u32,
    pub arena: u32,
    /// First slot of the shard in its arena.
    pub base: u64,
}

/// One slots buffer and one values buffer holding several shards.
#[derive(Debug)]
pub(crate) struct Arena<B> {
    pub slots: B,
    pub values: B,
    /// Slots in the arena.
    pub len: u64,
}

/// The shards of one table on a GPU device.
pub struct GpuShards<D: TableDevice> {
    pub(crate) shards: Vec<ShardMeta>,
    pub(crate) arenas: Vec<Arena<D::Buf>>,
    pub(crate) w: usize,
    pub(crate) max_load: f64,
    /// Most bytes of one arena buffer.
    pub(crate) cap: u64,
    /// Whether the sort does its short distances in workgroup memory (`kv_sort_local`).
    pub(crate) local_sort: bool,
    pub(crate) links: DeviceLinks<D::Buf>,
}

impl<D: TableDevice> std::fmt::Debug for GpuShards<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuShards")
            .field("backend", &D::KIND)
            .field("shards", &self.shards)
            .field("arenas", &self.arenas.len())
            .field("w", &self.w)
            .field("link_halves", &self.links.total())
            .finish_non_exhaustive()
    }
}

/// Buffers of one batch, kept by the device between batches (grown as needed).
pub struct Scratch<D: TableDevice> {
    batch: Option<D::Buf>,
    records: Option<D::Buf>,
    work: Option<D::Buf>,
    counters: Option<D::Buf>,
    results: Option<D::Buf>,
    info: Option<D::Buf>,
    /// The link kernels' half events, flags and prefix counts, related pairs and their
    /// partners' values.
    lwork: Option<D::Buf>,
    lflat: Option<D::Buf>,
    pairs: Option<D::Buf>,
    pvals: Option<D::Buf>,
    cache: D::Cache,
}

impl<D: TableDevice> Default for Scratch<D> {
    fn default() -> Self {
        Scratch {
            batch: None,
            records: None,
            work: None,
            counters: None,
            results: None,
            info: None,
            lwork: None,
            lflat: None,
            pairs: None,
            pvals: None,
            cache: D::Cache::default(),
        }
    }
}

/// Bytes of table state per slot: tag and key (3 words) and the value.
pub(crate) fn slot_bytes(w: usize) -> u64 {
    SLOT_WORDS * 4 + 4 * w as u64
}

/// Most live plus deleted slots before a shard is rebuilt (as the CPU backend's purge).
fn max_used(slots: u64, max_load: f64) -> u64 {
    let m = max_items(slots, max_load);
    m + (slots - m) / 2
}

/// A device error of backend `kind`.
pub(crate) fn device_error(kind: BackendKind, reason: String) -> BackendError {
    BackendError::Device {
        backend: kind,
        reason,
    }
}

/// Where each shard lies: (arena, first slot).
pub(crate) type Placement = Vec<(u32, u64)>;

/// Packs shards of `slots` into arenas of at most `cap` bytes per buffer: per shard
/// (arena, base), and each arena's slot count.
pub(crate) fn layout<D: TableDevice>(
    slots: &[u64],
    w: usize,
    cap: u64,
) -> Result<(Placement, Vec<u64>), BackendError> {
    let per_slot = (SLOT_WORDS * 4).max(4 * w as u64);
    let mut at = Vec::with_capacity(slots.len());
    let mut arenas: Vec<u64> = Vec::new();
    for (s, &n) in slots.iter().enumerate() {
        if n * per_slot > cap {
            return Err(device_error(
                D::KIND,
                format!(
                    "shard {s} would need {} bytes in one buffer, more than {} of {cap} \
                     bytes; use more shards",
                    n * per_slot,
                    D::LIMIT_NAME
                ),
            ));
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

/// New arenas of `lens` slots each.
pub(crate) fn new_arenas<D: TableDevice>(
    dev: &D,
    lens: &[u64],
    w: usize,
) -> Result<Vec<Arena<D::Buf>>, BackendError> {
    lens.iter()
        .map(|&len| {
            Ok(Arena {
                slots: dev.alloc("table slots", len * SLOT_WORDS * 4)?,
                values: dev.alloc("table values", len * 4 * w as u64)?,
                len,
            })
        })
        .collect()
}

/// `slot` (a scratch buffer) holding at least `bytes`, reallocated larger when it does not.
fn ensure<'a, D: TableDevice>(
    dev: &D,
    slot: &'a mut Option<D::Buf>,
    label: &str,
    bytes: u64,
) -> Result<&'a D::Buf, BackendError> {
    let limit = dev.buffer_limit();
    let bytes = bytes.max(16).next_multiple_of(4);
    if bytes > limit {
        return Err(device_error(
            D::KIND,
            format!(
                "{label}: the batch needs {bytes} bytes in one buffer, more than {} of \
                 {limit} bytes; split the batch",
                D::LIMIT_NAME
            ),
        ));
    }
    if slot.as_ref().is_none_or(|b| D::size(b) < bytes) {
        let size = bytes.next_power_of_two().min(limit).max(bytes);
        *slot = None;
        *slot = Some(dev.alloc(label, size)?);
    }
    Ok(slot.as_ref().expect("set above"))
}

/// Workgroups of `threads` covering `invocations` (at least one).
pub(crate) fn groups_for(invocations: u64, threads: u32) -> u64 {
    invocations.div_ceil(u64::from(threads)).max(1)
}

/// Appends a launch of `kernel` over `invocations` (in workgroups of `kernel.threads()`).
pub(crate) fn run<'a, B>(
    steps: &mut Vec<Step<'a, B>>,
    kernel: Kernel,
    params: Params,
    binds: &[(u32, &'a B)],
    invocations: u64,
) {
    run_groups(
        steps,
        kernel,
        params,
        binds,
        groups_for(invocations, kernel.threads()),
    );
}

/// Appends a launch of `kernel` over `groups` workgroups.
pub(crate) fn run_groups<'a, B>(
    steps: &mut Vec<Step<'a, B>>,
    kernel: Kernel,
    params: Params,
    binds: &[(u32, &'a B)],
    groups: u64,
) {
    steps.push(Step::Run {
        kernel,
        params,
        binds: binds.to_vec(),
        groups: groups.max(1),
    });
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

/// Per shard two vec4: (arena, base, mask, rebuild) before the batch (`before`) and
/// (arena, base, mask, 0) after (`after`).
fn shard_info(before: &[ShardMeta], after: &[ShardMeta], rebuild: &[bool]) -> Vec<u32> {
    let mut out = Vec::with_capacity(before.len() * 8);
    for (s, (b, a)) in before.iter().zip(after).enumerate() {
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

/// Runs the device part of a batch on `t` (see the module doc). On `Err` the table's
/// device state (slots, values and links) and metadata are as they were.
#[allow(clippy::too_many_lines)]
fn kv_apply<D: TableDevice>(
    dev: &D,
    t: &mut GpuShards<D>,
    batch_ops: &DeviceBatch,
    put_values: &[u32],
    ops: &LinkOps,
    reads: bool,
    scratch: &mut Scratch<D>,
) -> Result<DeviceOut, BackendError> {
    let n = batch_ops.len() as u64;
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
        return Err(device_error(
            D::KIND,
            format!(
                "a batch of {n} device operations is too large for 32-bit device indices; \
                 split the batch"
            ),
        ));
    }
    let mut plan = LinkPlan::new(ops, t.links.total());
    // The buffer the merged halves go to, taken now: a failure refuses the batch before
    // anything changed (and `t.links` gets it back only with the merged halves in it).
    let new_halves = if plan.merge {
        Some(t.links.take_spare(dev, plan.halves + plan.events)?)
    } else {
        None
    };

    // Can any shard grow or need a rebuild? If not, and no related query needs its
    // candidates counted first, one submit does everything.
    let puts = u64::from(batch_ops.puts);
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
        lwork,
        lflat,
        pairs,
        pvals,
        cache,
    } = scratch;
    let batch_buf = ensure(dev, batch, "table batch", upload_words * 4)?;
    let records = ensure(dev, records, "table sort records", n_pow2 * 16)?;
    let work = ensure(dev, work, "table work", work_words * 4)?;
    let counters = ensure(dev, counters, "table counters", counter_words * 4)?;
    let results = ensure(dev, results, "table results", result_words * 4)?;
    let info = ensure(dev, info, "table shard info", nshards * 32)?;

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
    plan.layout::<D>(&mut base)?;
    let lwork = ensure(
        dev,
        lwork,
        "table link events",
        2 * plan.events_pow2 * RECORD_BYTES,
    )?;
    let lflat = ensure(dev, lflat, "table link scratch", plan.flat_words * 4)?;

    let old_info = shard_info(&t.shards, &t.shards, &vec![false; t.shards.len()]);
    let mut upload = Vec::with_capacity(upload_words as usize);
    upload.extend_from_slice(&batch_ops.words);
    upload.extend_from_slice(put_values);
    upload.extend_from_slice(&ops.links);
    upload.extend_from_slice(&ops.related);
    let mut steps: Vec<Step<'_, D::Buf>> = vec![
        Step::Write {
            buf: batch_buf,
            words: upload,
        },
        Step::Write {
            buf: info,
            words: old_info,
        },
        Step::Clear {
            buf: counters,
            bytes: counter_words * 4,
        },
    ];
    run(
        &mut steps,
        Kernel::Route,
        base,
        &[(2, batch_buf), (3, records), (5, counters)],
        n_pow2,
    );
    // Bitonic stages; with `local_sort`: 2..TILE in one local pass, then per stage k the
    // distances j >= TILE as global passes and the rest in one local pass.
    let local = if t.local_sort { TILE } else { 1 };
    let tiles = n_pow2 / TILE;
    if t.local_sort {
        run_groups(&mut steps, Kernel::SortLocal, base, &[(3, records)], tiles);
    }
    let mut k = 2 * local;
    while k <= n_pow2 {
        let mut j = k / 2;
        while j >= local {
            let p = Params {
                k: k as u32,
                j: j as u32,
                ..base
            };
            run(&mut steps, Kernel::Sort, p, &[(3, records)], n_pow2 / 2);
            j /= 2;
        }
        if t.local_sort {
            let p = Params {
                k: k as u32,
                ..base
            };
            run_groups(&mut steps, Kernel::SortLocal, p, &[(3, records)], tiles);
        }
        k *= 2;
    }
    let at_arena = |a: usize| Params {
        arena: a as u32,
        ..base
    };
    for (a, arena) in t.arenas.iter().enumerate() {
        run(
            &mut steps,
            Kernel::WalkChunks,
            at_arena(a),
            &[
                (1, info),
                (2, batch_buf),
                (3, records),
                (4, work),
                (7, &arena.slots),
            ],
            chunks,
        );
    }
    run_groups(
        &mut steps,
        Kernel::WalkCarry,
        base,
        &[(3, records), (4, work)],
        1,
    );
    for (a, arena) in t.arenas.iter().enumerate() {
        run(
            &mut steps,
            Kernel::Walk,
            at_arena(a),
            &[
                (1, info),
                (2, batch_buf),
                (3, records),
                (4, work),
                (5, counters),
                (6, results),
                (7, &arena.slots),
                (8, &arena.values),
            ],
            n,
        );
    }
    let lb = links::LinkBuffers {
        batch: batch_buf,
        records,
        work,
        counters,
        halves: t.links.buffer(),
        lwork,
        lflat,
    };
    links::first_steps(&mut steps, &lb, &plan, base);
    if may_rebuild {
        let peak_binds = [(2, batch_buf), (4, work), (5, counters)];
        run_groups(
            &mut steps,
            Kernel::PeakBlocks,
            base,
            &[(2, batch_buf), (4, work)],
            blocks,
        );
        run(&mut steps, Kernel::PeakScan, base, &[(4, work)], nshards);
        run_groups(&mut steps, Kernel::Peak, base, &peak_binds, blocks);
    }

    // Plan growth from the counters (only when some shard could grow), and size the
    // related pairs.
    let mut new_meta = t.shards.clone();
    let mut rebuild = vec![false; t.shards.len()];
    let mut new_arenas_list: Option<Vec<Arena<D::Buf>>> = None;
    let mut reserved = 0u64;
    let mut pairs_n = 0u64;
    if midway {
        let mut back: Vec<Read<'_, D::Buf>> = vec![(counters, 0, counter_words)];
        if plan.related {
            back.push((lflat, u64::from(base.rel_off) * 4 + plan.queries * 4, 1));
        }
        let c = dev.submit("table batch: route, sort, walk", cache, &steps, &back)?;
        steps.clear();
        let c: &[i32] = bytemuck::cast_slice(&c);
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
                rebuild[s] = slots != m.slots || m.used + inserts > max_used(m.slots, t.max_load);
                m.slots = slots;
            }
        }
        if rebuild.iter().any(|&r| r) {
            let slots: Vec<u64> = new_meta.iter().map(|m| m.slots).collect();
            let (at, lens) = layout::<D>(&slots, t.w, t.cap)?;
            let old_slots: u64 = t.shards.iter().map(|m| m.slots).sum::<u64>();
            let new_slots: u64 = slots.iter().sum::<u64>();
            let extra = (new_slots - old_slots) * slot_bytes(t.w);
            if extra > 0 {
                dev.reserve(extra)?;
                reserved = extra;
            }
            match new_arenas(dev, &lens, t.w) {
                Ok(a) => new_arenas_list = Some(a),
                Err(e) => {
                    dev.release(reserved);
                    return Err(e);
                }
            }
            for (m, (arena, base)) in new_meta.iter_mut().zip(at) {
                m.arena = arena;
                m.base = base;
            }
        }
    }

    // The related pairs' buffers: the last thing that may fail before the table changes.
    let pairs_pow2 = pairs_n.next_power_of_two().max(2);
    let prepared = if pairs_n > links::MAX_SCAN {
        Err(device_error(
            D::KIND,
            format!(
                "{pairs_n} related candidates in one batch: at most {} fit; split the batch",
                links::MAX_SCAN
            ),
        ))
    } else {
        ensure(dev, pairs, "table related pairs", pairs_pow2 * RECORD_BYTES).and_then(|p| {
            let v = ensure(dev, pvals, "table related values", pairs_n * w * 4)?;
            Ok((p, v))
        })
    };
    let (pairs_buf, pvals_buf) = match prepared {
        Ok(x) => x,
        Err(e) => {
            dev.release(reserved);
            return Err(e);
        }
    };
    let related = links::Pairs {
        n: pairs_n,
        pow2: pairs_pow2,
        pairs: pairs_buf,
        pvals: pvals_buf,
    };

    // Phase 2: related answers, the link merge, commit.
    let final_arenas: &[Arena<D::Buf>] = new_arenas_list.as_deref().unwrap_or(&t.arenas);
    let new_info = shard_info(&t.shards, &new_meta, &rebuild);
    if midway {
        steps.push(Step::Write {
            buf: info,
            words: new_info,
        });
    } else {
        // One submit: nothing grew, so the info written first is the final one.
        debug_assert!(rebuild.iter().all(|&r| !r));
    }
    let second = Params {
        pairs_n: pairs_n as u32,
        pairs_pow2: pairs_pow2 as u32,
        ..base
    };
    // The related answers read the table as it was before the batch: before the commit.
    if pairs_n > 0 {
        links::related_steps(&mut steps, &lb, &related, &plan, second, &t.arenas, info);
    }
    if let Some(new_halves) = &new_halves {
        links::merge_steps(&mut steps, &lb, new_halves, &plan, second);
    }
    for (a, arena) in t.arenas.iter().enumerate() {
        run(
            &mut steps,
            Kernel::Commit,
            at_arena(a),
            &[
                (1, info),
                (2, batch_buf),
                (3, records),
                (4, work),
                (9, &arena.slots),
                (10, &arena.values),
            ],
            n,
        );
    }
    let mut moves: Vec<(usize, usize)> = (0..t.shards.len())
        .filter(|&s| rebuild[s])
        .map(|s| (t.shards[s].arena as usize, new_meta[s].arena as usize))
        .collect();
    moves.sort_unstable();
    moves.dedup();
    if let Some(new) = &new_arenas_list {
        for (s, (old, m)) in t.shards.iter().zip(&new_meta).enumerate() {
            if rebuild[s] {
                continue;
            }
            let (from, to) = (&t.arenas[old.arena as usize], &new[m.arena as usize]);
            let sb = SLOT_WORDS * 4;
            steps.push(Step::Copy {
                from: &from.slots,
                from_at: old.base * sb,
                to: &to.slots,
                to_at: m.base * sb,
                bytes: old.slots * sb,
            });
            let vb = 4 * w;
            steps.push(Step::Copy {
                from: &from.values,
                from_at: old.base * vb,
                to: &to.values,
                to_at: m.base * vb,
                bytes: old.slots * vb,
            });
        }
        for &(a, b) in &moves {
            let p = Params {
                arena: a as u32,
                arena2: b as u32,
                count: t.arenas[a].len as u32,
                ..base
            };
            run(
                &mut steps,
                Kernel::Rehash,
                p,
                &[
                    (1, info),
                    (7, &t.arenas[a].slots),
                    (8, &t.arenas[a].values),
                    (9, &new[b].slots),
                    (10, &new[b].values),
                ],
                t.arenas[a].len,
            );
        }
    }
    for (b, arena) in final_arenas.iter().enumerate() {
        run(
            &mut steps,
            Kernel::Insert,
            at_arena(b),
            &[
                (1, info),
                (2, batch_buf),
                (3, records),
                (4, work),
                (9, &arena.slots),
                (10, &arena.values),
            ],
            n,
        );
    }
    // What comes back: statuses and values, counters, then per related query its span,
    // then the sorted pairs and their partners' values.
    // (No pairs, no hits: the related kernels do not run, nothing comes back for them.)
    let span_words = if pairs_n > 0 { 2 * plan.queries } else { 0 };
    let pair_words = 8 * pairs_n;
    let pval_words = pairs_n * w;
    let back: Vec<Read<'_, D::Buf>> = [
        (results, 0, n + value_words),
        (counters, 0, counter_words),
        (lflat, u64::from(base.rel_span) * 4, span_words),
        (related.pairs, 0, pair_words),
        (related.pvals, 0, pval_words),
    ]
    .into_iter()
    .filter(|r| r.2 > 0)
    .collect();
    // From this submit on the table is changing: a failure now is a device fault, which
    // refuses every later operation anyway.
    let words = match dev.submit("table batch: commit", cache, &steps, &back) {
        Ok(w) => w,
        Err(e) => {
            dev.release(reserved);
            return Err(e);
        }
    };
    drop(steps);
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

/// `TableBackend::create_shards` on a GPU device.
pub(crate) fn create_shards<D: TableDevice>(
    dev: &D,
    config: &TableConfig,
) -> Result<GpuShards<D>, TableError> {
    if config.shards > MAX_SHARDS {
        return Err(TableError::InvalidConfig {
            field: "shards",
            reason: format!(
                "expected at most {MAX_SHARDS} on the {} backend, got {}",
                D::KIND.name(),
                config.shards
            ),
        });
    }
    let slots = initial_slots(config.capacity, config.shards, config.max_load);
    let w = config.value_words();
    let cap = dev.arena_cap();
    let (at, lens) = layout::<D>(&vec![slots; config.shards as usize], w, cap)?;
    let bytes = slots * u64::from(config.shards) * slot_bytes(w);
    dev.reserve(bytes)?;
    let arenas = new_arenas(dev, &lens, w).inspect_err(|_| dev.release(bytes))?;
    Ok(GpuShards {
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
        local_sort: dev.local_sort(),
        links: DeviceLinks::new(dev, config.shards).inspect_err(|_| dev.release(bytes))?,
    })
}

/// `TableBackend::apply` on a GPU device.
pub(crate) fn apply<D: TableDevice>(
    dev: &D,
    t: &mut GpuShards<D>,
    batch: &Batch,
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
    let mut ops_words = DeviceBatch {
        words: Vec::with_capacity(n * 4),
        puts: 0,
    };
    let mut put_values = Vec::new();
    let mut ops = LinkOps::default();
    for i in 0..n {
        let key = keys[i];
        match codes[i] {
            OpCode::Put => {
                ops_words.push(OP_PUT | COUNTED, key);
                let at = ops_words.words.len() - 1;
                ops_words.words[at] = ops_words.puts;
                ops_words.puts += 1;
                put_values.extend_from_slice(batch.put_value(i));
            }
            OpCode::Get => ops_words.push(OP_GET | COUNTED, key),
            OpCode::Delete => {
                ops_words.push(OP_DELETE | COUNTED, key);
                ops.deletes = true;
            }
            OpCode::Link => {
                let a = batch.aux(i);
                ops_words.push(OP_NOP | COUNTED, key);
                ops.link(i, a.partner, Some(a.strength));
            }
            OpCode::Unlink => {
                ops_words.push(OP_NOP | COUNTED, key);
                ops.link(i, batch.aux(i).partner, None);
            }
            OpCode::GetRelated => {
                let a = batch.aux(i);
                ops_words.push(OP_GET | COUNTED, key);
                ops.related(i, a.strength, a.max);
            }
        }
    }

    let mut scratch = dev.take_scratch();
    let done = kv_apply(dev, t, &ops_words, &put_values, &ops, reads, &mut scratch);
    dev.return_scratch(scratch);
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
                results.values[i * w..(i + 1) * w].copy_from_slice(&out.values[i * w..(i + 1) * w]);
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
                results.values[i * w..(i + 1) * w].copy_from_slice(&out.values[i * w..(i + 1) * w]);
            }
        }
    }
    Ok(())
}

/// `TableBackend::shard_stats` on a GPU device.
pub(crate) fn shard_stats<D: TableDevice>(t: &GpuShards<D>) -> Vec<ShardStats> {
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

/// `TableBackend::export_shard` on a GPU device: one read-back of the shard's slots, values
/// and link halves, which finishes before anything is visited (a failure visits nothing).
pub(crate) fn export_shard<D: TableDevice>(
    dev: &D,
    t: &GpuShards<D>,
    shard: usize,
    entry: &mut dyn FnMut(u64, &[u8]),
    link: &mut dyn FnMut(u64, u64, f32),
) -> Result<(), TableError> {
    let m = t.shards[shard];
    let arena = &t.arenas[m.arena as usize];
    let w = t.w as u64;
    let halves = t.links.halves(shard);
    let record_words = RECORD_BYTES / 4;
    let mut back: Vec<Read<'_, D::Buf>> = vec![
        (&arena.slots, m.base * SLOT_WORDS * 4, m.slots * SLOT_WORDS),
        (&arena.values, m.base * 4 * w, m.slots * w),
    ];
    if halves > 0 {
        back.push((
            t.links.buffer(),
            t.links.first_of(shard) * RECORD_BYTES,
            halves * record_words,
        ));
    }
    let mut cache = D::Cache::default();
    let words = dev.submit("exporting a shard", &mut cache, &[], &back)?;
    let (slots, rest) = words.split_at((m.slots * SLOT_WORDS) as usize);
    let (values, links) = rest.split_at((m.slots * w) as usize);
    let values: &[u8] = bytemuck::cast_slice(values);
    for (g, s) in slots.chunks_exact(3).enumerate() {
        if s[0] == 2 {
            let key = u64::from(s[1]) | u64::from(s[2]) << 32;
            let at = g * 4 * t.w;
            entry(key, &values[at..at + 4 * t.w]);
        }
    }
    links::visit_halves(links, link);
    Ok(())
}

/// `TableBackend::try_clone_shards` on a GPU device.
pub(crate) fn try_clone_shards<D: TableDevice>(
    dev: &D,
    t: &GpuShards<D>,
) -> Result<GpuShards<D>, TableError> {
    let bytes = t.shards.iter().map(|m| m.slots).sum::<u64>() * slot_bytes(t.w);
    dev.reserve(bytes)?;
    let lens: Vec<u64> = t.arenas.iter().map(|a| a.len).collect();
    let copy = new_arenas(dev, &lens, t.w).and_then(|arenas| {
        let links = t.links.empty_copy(dev)?;
        let mut steps = Vec::new();
        for (from, to) in t.arenas.iter().zip(&arenas) {
            for (f, tt) in [(&from.slots, &to.slots), (&from.values, &to.values)] {
                steps.push(Step::Copy {
                    from: f,
                    from_at: 0,
                    to: tt,
                    to_at: 0,
                    bytes: D::size(f),
                });
            }
        }
        steps.push(Step::Copy {
            from: t.links.buffer(),
            from_at: 0,
            to: links.buffer(),
            to_at: 0,
            bytes: D::size(t.links.buffer()),
        });
        let mut cache = D::Cache::default();
        dev.submit("cloning a table", &mut cache, &steps, &[])?;
        drop(steps);
        Ok((arenas, links))
    });
    match copy {
        Ok((arenas, links)) => Ok(GpuShards {
            shards: t.shards.clone(),
            arenas,
            w: t.w,
            max_load: t.max_load,
            cap: t.cap,
            local_sort: t.local_sort,
            links,
        }),
        Err(e) => {
            dev.release(bytes);
            Err(e.into())
        }
    }
}

/// `TableBackend::drop_shards` on a GPU device.
#[allow(clippy::needless_pass_by_value)] // takes the shards: they are gone after this
pub(crate) fn drop_shards<D: TableDevice>(dev: &D, t: GpuShards<D>) {
    dev.release(t.shards.iter().map(|m| m.slots).sum::<u64>() * slot_bytes(t.w));
}

/// Every GPU table device is a table backend: the shared order above, on its device.
impl<D: TableDevice> crate::backend::TableBackend for D {
    type Shards = GpuShards<D>;

    fn create_shards(&self, config: &TableConfig) -> Result<GpuShards<D>, TableError> {
        create_shards(self, config)
    }

    fn apply(
        &self,
        t: &mut GpuShards<D>,
        _config: &TableConfig,
        batch: &Batch,
        _epoch: u64,
        results: &mut BatchResults,
    ) -> Result<(), TableError> {
        apply(self, t, batch, results)
    }

    fn shard_stats(&self, t: &GpuShards<D>) -> Vec<ShardStats> {
        shard_stats(t)
    }

    fn export_shard(
        &self,
        t: &GpuShards<D>,
        shard: usize,
        entry: &mut dyn FnMut(u64, &[u8]),
        link: &mut dyn FnMut(u64, u64, f32),
    ) -> Result<(), TableError> {
        export_shard(self, t, shard, entry, link)
    }

    fn try_clone_shards(&self, t: &GpuShards<D>) -> Result<GpuShards<D>, TableError> {
        try_clone_shards(self, t)
    }

    fn drop_shards(&self, t: GpuShards<D>) {
        drop_shards(self, t);
    }
}
