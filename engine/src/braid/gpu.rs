//! Braids on the wgpu backend: every torus's processes, edges (with their mutable delays) and
//! pending events resident on the device, instants processed by `shaders/braid.wgsl` for all
//! tori at once, many instants per submit.
//!
//! Device state (all tori concatenated in each buffer, torus `i`'s part at `i · stride`):
//! - `procs`: per cell `state, acc, received, has_process`; `edge_start` (absolute row
//!   offsets), `edges`: per edge `to, delay`.
//! - pending events: a calendar of `max_delay + 1` slots per torus (slot `t mod (max_delay+1)`
//!   holds instant `t`, as on the CPU), each slot a list of fixed-size pages taken from the
//!   torus's free stack (`pages`: page tables, then the stack; `pool`: the pages). The pages
//!   bound memory by `max_pending` whatever the spread over instants. Events further ahead
//!   than the ring (injections only) wait on the host and go in when the clock comes within
//!   `max_delay` of them.
//! - `ctl`: the clock, a done flag, and per torus the counters (u64 as two words), pending,
//!   the capacity cut, slot counts, a per-delay histogram and 256 bins of a payload byte.
//! - scratch: `cells` (per cell counts, offsets, selection bins), `sorted` (the instant
//!   grouped by destination), `em` (emitted or injected events), `dispatch` (indirect sizes),
//!   `proj` (exchange inputs).
//!
//! The host drives: per segment (up to the next exchange, target or far-future injection)
//! it writes the end instant and encodes batches of instants (26 dispatches each plus two per
//! merge pass; past the end they do nothing), reading back three words per batch to see
//! whether the clock got there. Runs of a cell longer than one apply chunk take the steps of
//! the next encoded instants as further apply rounds (`G_HOLD` in the shader), so a batch may
//! process fewer instants than it encodes; the host only loops until the clock is there. At an exchange it runs `braid_project` and reads back the counters, the acc sums
//! and the two faces; the projections, violations, corrective events and the interval are
//! the host's (the same code as the CPU backend), and corrective events go back as one
//! injection. After a run the whole state is read back into the host tori (so digests,
//! statistics and `Braid::tori` read it as on the CPU).

use std::collections::BTreeMap;

use super::error::BraidError;
use super::event::Event;
use super::lattice::Lattice;
use super::projection::{Counts, Projection, Receiver};
use super::torus::{RestoreImage, Torus};
use crate::backend::BackendKind;
use crate::backend::wgpu::{Readback, WgpuDevice};
use crate::error::BackendError;

const SHADER: &str = include_str!("../../../shaders/braid.wgsl");
const WORKGROUP: u32 = 64;
/// Words of `ctl` before the first torus, and per-torus head fields (as in the shader).
const GLOBALS: usize = 16;
const HEAD: usize = 32;
const C_PROC_LO: usize = 0;
const C_DROP_LO: usize = 2;
const C_PENDING: usize = 4;
const C_FREE: usize = 13;
const C_INSTANTS: usize = 14;
const C_INJ_COUNT: usize = 15;
const C_FAR: usize = 18;
const G_CLOCK: usize = 0;
const G_DONE: usize = 1;
const G_FAULT: usize = 2;
/// Instants per submit: the first batch of a segment, and the most.
const FIRST_BATCH: u32 = 8;
const MAX_BATCH: u32 = 256;

/// The kernels of `shaders/braid.wgsl`: entry point and the bindings it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    BeginInstant,
    CountDst,
    ScanCells,
    ScatterDst,
    OrderRuns,
    MergePass,
    NextPass,
    OrderDone,
    ProcessInstant,
    EndRound,
    PlanMerge,
    PlanInject,
    CountDelays,
    CountKeys,
    Cut,
    Alloc,
    Merge,
    Advance,
    Project,
}

impl Kernel {
    const ALL: [Kernel; 19] = [
        Kernel::BeginInstant,
        Kernel::CountDst,
        Kernel::ScanCells,
        Kernel::ScatterDst,
        Kernel::OrderRuns,
        Kernel::MergePass,
        Kernel::NextPass,
        Kernel::OrderDone,
        Kernel::ProcessInstant,
        Kernel::EndRound,
        Kernel::PlanMerge,
        Kernel::PlanInject,
        Kernel::CountDelays,
        Kernel::CountKeys,
        Kernel::Cut,
        Kernel::Alloc,
        Kernel::Merge,
        Kernel::Advance,
        Kernel::Project,
    ];

    fn entry(self) -> &'static str {
        match self {
            Kernel::BeginInstant => "braid_begin_instant",
            Kernel::CountDst => "braid_count_dst",
            Kernel::ScanCells => "braid_scan_cells",
            Kernel::ScatterDst => "braid_scatter_dst",
            Kernel::OrderRuns => "braid_order_runs",
            Kernel::MergePass => "braid_merge_pass",
            Kernel::NextPass => "braid_next_pass",
            Kernel::OrderDone => "braid_order_done",
            Kernel::ProcessInstant => "braid_process_instant",
            Kernel::EndRound => "braid_end_round",
            Kernel::PlanMerge => "braid_plan_merge",
            Kernel::PlanInject => "braid_plan_inject",
            Kernel::CountDelays => "braid_count_delays",
            Kernel::CountKeys => "braid_count_keys",
            Kernel::Cut => "braid_cut",
            Kernel::Alloc => "braid_alloc",
            Kernel::Merge => "braid_merge",
            Kernel::Advance => "braid_advance",
            Kernel::Project => "braid_project",
        }
    }

    /// The bindings the entry point uses (its automatic layout holds exactly these).
    fn bindings(self) -> &'static [u32] {
        match self {
            Kernel::BeginInstant | Kernel::PlanMerge | Kernel::PlanInject => &[0, 1, 10],
            Kernel::CountDst => &[0, 1, 2, 8, 9],
            Kernel::ScanCells | Kernel::Cut => &[0, 1, 2],
            Kernel::ScatterDst => &[0, 1, 2, 7, 8, 9],
            Kernel::OrderRuns | Kernel::MergePass => &[0, 1, 2, 6, 7],
            Kernel::OrderDone => &[0, 1, 6, 7],
            Kernel::NextPass | Kernel::EndRound => &[1],
            Kernel::ProcessInstant => &[0, 1, 2, 3, 4, 5, 6, 7],
            Kernel::CountDelays => &[0, 1, 7],
            Kernel::CountKeys => &[0, 1, 2, 7],
            Kernel::Alloc => &[0, 1, 9],
            Kernel::Merge => &[0, 1, 7, 8, 9],
            Kernel::Advance => &[0, 1],
            Kernel::Project => &[0, 3, 11],
        }
    }
}

/// How a kernel is launched.
#[derive(Debug, Clone, Copy)]
enum Launch {
    /// One workgroup (one invocation per torus).
    Single,
    /// One workgroup per torus (`y` is the torus).
    PerTorus,
    /// Indirect, sized by the device at this byte offset of `dispatch`.
    Indirect(u64),
}

/// Events per tile of a run ordered in one invocation (`TILE` in the shader).
const TILE: u64 = 256;

/// One instant, in order: the merge passes (`passes` of them, see [`merge_passes`]) come
/// between `OrderRuns` and `OrderDone`.
const INSTANT_HEAD: [(Kernel, Launch); 5] = [
    (Kernel::BeginInstant, Launch::Single),
    (Kernel::CountDst, Launch::Indirect(0)),
    (Kernel::ScanCells, Launch::PerTorus),
    (Kernel::ScatterDst, Launch::Indirect(0)),
    (Kernel::OrderRuns, Launch::Indirect(0)),
];
const MERGE_PASS: [(Kernel, Launch); 2] = [
    (Kernel::MergePass, Launch::Indirect(0)),
    (Kernel::NextPass, Launch::Single),
];
const INSTANT_TAIL: [(Kernel, Launch); 21] = [
    (Kernel::OrderDone, Launch::Indirect(0)),
    (Kernel::ProcessInstant, Launch::Indirect(0)),
    (Kernel::EndRound, Launch::Single),
    (Kernel::PlanMerge, Launch::Single),
    (Kernel::CountDelays, Launch::Indirect(12)),
    // The cut: delay, dst, src, then the payload's four bytes.
    (Kernel::Cut, Launch::PerTorus),
    (Kernel::CountKeys, Launch::Indirect(12)),
    (Kernel::Cut, Launch::PerTorus),
    (Kernel::CountKeys, Launch::Indirect(12)),
    (Kernel::Cut, Launch::PerTorus),
    (Kernel::CountKeys, Launch::Indirect(12)),
    (Kernel::Cut, Launch::PerTorus),
    (Kernel::CountKeys, Launch::Indirect(12)),
    (Kernel::Cut, Launch::PerTorus),
    (Kernel::CountKeys, Launch::Indirect(12)),
    (Kernel::Cut, Launch::PerTorus),
    (Kernel::CountKeys, Launch::Indirect(12)),
    (Kernel::Cut, Launch::PerTorus),
    (Kernel::Alloc, Launch::Single),
    (Kernel::Merge, Launch::Indirect(12)),
    (Kernel::Advance, Launch::Single),
];

/// Merge passes that order runs of up to `max_pending` events from tiles of [`TILE`].
fn merge_passes(max_pending: u64) -> u32 {
    let mut passes = 0;
    while TILE << passes < max_pending {
        passes += 1;
    }
    passes
}

/// The steps of one instant for runs of up to `max_pending` events.
fn instant_steps(max_pending: u64) -> Vec<(Kernel, Launch)> {
    let mut steps = INSTANT_HEAD.to_vec();
    for _ in 0..merge_passes(max_pending) {
        steps.extend_from_slice(&MERGE_PASS);
    }
    steps.extend_from_slice(&INSTANT_TAIL);
    steps
}

/// Host-written injections.
const INJECT: [(Kernel, Launch); 4] = [
    (Kernel::PlanInject, Launch::Single),
    (Kernel::CountDelays, Launch::Indirect(12)),
    (Kernel::Alloc, Launch::Single),
    (Kernel::Merge, Launch::Indirect(12)),
];

/// The shader's `Params`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tori: u32,
    cells: u32,
    slots: u32,
    max_delay: u32,
    max_pending: u32,
    page_shift: u32,
    pages_per_slot: u32,
    pages: u32,
    em_cap: u32,
    dx: u32,
    dy: u32,
    dz: u32,
    ctl_stride: u32,
    end: u32,
    pages_stride: u32,
    proj_stride: u32,
}

fn device_error(reason: String) -> BraidError {
    BraidError::Backend(BackendError::Device {
        backend: BackendKind::Wgpu,
        reason,
    })
}

/// Per torus, what an exchange needs from the device.
#[derive(Debug, Clone)]
pub(crate) struct Exchanged {
    pub counts: Counts,
    pub face0: Vec<i32>,
    pub face_x: Vec<i32>,
}

/// What a segment did, per torus.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentOut {
    /// Events processed by all tori.
    pub events: u64,
    /// Instants with events, per torus.
    pub instants: Vec<u64>,
}

/// The braid's state on one wgpu device.
pub(crate) struct Resident {
    gpu: WgpuDevice,
    params: Params,
    lattice: Lattice,
    uniform: wgpu::Buffer,
    /// Buffers by binding number (0 is the uniform).
    buffers: Vec<wgpu::Buffer>,
    /// Per kernel (in `Kernel::ALL` order): pipeline and bind group.
    kernels: Vec<(std::sync::Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
    readback: Readback,
    /// The steps of one instant.
    instant: Vec<(Kernel, Launch)>,
    /// Per torus: events beyond the ring, by instant.
    far: Vec<BTreeMap<u32, Vec<Event>>>,
    /// Per torus: its first edge in `edges`, processes, edges.
    edge0: Vec<u32>,
    processes: Vec<u32>,
    edges: Vec<u32>,
    /// Per torus: a process at each cell of the x = X-1 face.
    face_x_present: Vec<Vec<bool>>,
    /// `C_INSTANTS` of each torus when last read, and the events processed by all tori.
    instants_seen: Vec<u32>,
    processed_seen: u64,
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident")
            .field("gpu", &self.gpu)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

const B_CTL: usize = 1;
const B_PROCS: usize = 3;
const B_EDGES: usize = 5;
const B_EM: usize = 7;
const B_POOL: usize = 8;
const B_PAGES: usize = 9;
const B_PROJ: usize = 11;

impl Resident {
    pub(crate) fn on(&self, gpu: &WgpuDevice) -> bool {
        self.gpu.same_as(gpu)
    }

    /// Uploads `tori` (all at clock `now`) to `gpu`. Refuses, naming the limit, when a
    /// buffer would exceed the adapter's storage binding or buffer size.
    pub(crate) fn upload(
        gpu: &WgpuDevice,
        tori: &[Torus],
        now: u32,
    ) -> Result<Resident, BraidError> {
        let first = &tori[0];
        let lattice = first.lattice();
        let n = lattice.cells as u64;
        let t = tori.len() as u64;
        let max_delay = first.max_delay();
        let slots = max_delay as u64 + 1;
        let max_pending = first.max_pending();
        // Pages of about sqrt(max_pending / 3) events: the page tables (slots · pages per
        // slot words) and the last pages' slack (slots · page events) stay small together.
        let page = ((max_pending / 3).isqrt().max(16)).next_power_of_two();
        let pages_per_slot = max_pending.div_ceil(page);
        let pages = pages_per_slot + slots;
        let views: Vec<_> = tori.iter().map(Torus::device_view).collect();
        let max_degree = views
            .iter()
            .flat_map(|v| v.edge_start.windows(2).map(|w| (w[1] - w[0]) as u64))
            .max()
            .unwrap_or(0)
            .max(1);
        let em_cap = max_pending * max_degree;
        let total_edges: u64 = views.iter().map(|v| v.edge_to.len() as u64).sum();
        let ctl_stride = HEAD as u64 + 2 * slots + 256;
        let pages_stride = slots * pages_per_slot + pages;
        let face = lattice.face_len() as u64;
        let proj_stride = 1 + 2 * face;
        let sizes: [(&str, u64); 11] = [
            ("ctl", (GLOBALS as u64 + t * ctl_stride) * 4),
            ("cells", t * n * 6 * 4),
            ("procs", t * n * 16),
            ("edge_start", t * (n + 1) * 4),
            ("edges", total_edges * 8),
            ("sorted", t * max_pending * 12),
            ("em", t * em_cap * 12),
            ("pool", t * pages * page * 12),
            ("pages", t * pages_stride * 4),
            ("dispatch", 24),
            ("proj", t * proj_stride * 4),
        ];
        let limits = gpu.limits();
        let binding = limits.max_storage_buffer_binding_size;
        let buffer = limits.max_buffer_size;
        let limit = binding.min(buffer).min(u32::MAX as u64);
        for (label, bytes) in sizes {
            if bytes > limit {
                return Err(device_error(format!(
                    "the braid's {label} buffer needs {bytes} bytes, more than the adapter allows \
                     in one storage binding ({limit} bytes: max_storage_buffer_binding_size \
                     {binding}, max_buffer_size {buffer}); use fewer tori, a smaller lattice, \
                     a smaller max_pending or fewer out-edges per cell, or --backend cpu"
                )));
            }
        }
        let u = |v: u64| v as u32;
        let params = Params {
            tori: u(t),
            cells: u(n),
            slots: u(slots),
            max_delay,
            max_pending: u(max_pending),
            page_shift: page.trailing_zeros(),
            pages_per_slot: u(pages_per_slot),
            pages: u(pages),
            em_cap: u(em_cap),
            dx: lattice.dims[0],
            dy: lattice.dims[1],
            dz: lattice.dims[2],
            ctl_stride: u(ctl_stride),
            end: now,
            pages_stride: u(pages_stride),
            proj_stride: u(proj_stride),
        };

        // Initial contents.
        let mut ctl = vec![0u32; (GLOBALS as u64 + t * ctl_stride) as usize];
        ctl[G_CLOCK] = now;
        ctl[G_DONE] = 1;
        let mut procs = Vec::with_capacity((t * n * 4) as usize);
        let mut edge_start = Vec::with_capacity((t * (n + 1)) as usize);
        let mut edges = Vec::with_capacity((total_edges * 2) as usize);
        let mut pages_init = vec![0u32; (t * pages_stride) as usize];
        let mut edge0 = Vec::new();
        let mut far = Vec::new();
        let mut injections = Vec::new();
        for (i, (torus, v)) in tori.iter().zip(&views).enumerate() {
            let c = GLOBALS + i * ctl_stride as usize;
            let (processed, dropped) = (torus.events_processed(), torus.events_dropped());
            ctl[c + C_PROC_LO] = processed as u32;
            ctl[c + C_PROC_LO + 1] = (processed >> 32) as u32;
            ctl[c + C_DROP_LO] = dropped as u32;
            ctl[c + C_DROP_LO + 1] = (dropped >> 32) as u32;
            ctl[c + C_FREE] = u(pages);
            for cell in 0..n as usize {
                procs.extend_from_slice(&[
                    v.state[cell],
                    v.acc[cell] as u32,
                    v.received[cell],
                    v.has_process[cell] as u32,
                ]);
            }
            let e0 = (edges.len() / 2) as u32;
            edge0.push(e0);
            edge_start.extend(v.edge_start.iter().map(|&s| s + e0));
            for (&to, &d) in v.edge_to.iter().zip(v.edge_delay) {
                edges.extend_from_slice(&[to, d as u32]);
            }
            let stack = i * pages_stride as usize + (slots * pages_per_slot) as usize;
            for (k, p) in pages_init[stack..stack + pages as usize]
                .iter_mut()
                .enumerate()
            {
                *p = k as u32;
            }
            let mut soon = Vec::new();
            let mut later: BTreeMap<u32, Vec<Event>> = BTreeMap::new();
            for e in torus.pending_events() {
                if e.t - now <= max_delay {
                    soon.push(e);
                } else {
                    later.entry(e.t).or_default().push(e);
                }
            }
            ctl[c + C_FAR] = later.values().map(Vec::len).sum::<usize>() as u32;
            injections.push(soon);
            far.push(later);
        }
        let storage = |label: &str, words: &[u32]| {
            make_buffer(gpu, label, bytemuck::cast_slice(words), false)
        };
        let buffers = vec![
            make_buffer(gpu, "braid params", bytemuck::cast_slice(&[params]), true)?,
            storage("braid ctl", &ctl)?,
            zeroed(gpu, "braid cells", t * n * 6 * 4)?,
            storage("braid procs", &procs)?,
            storage("braid edge_start", &edge_start)?,
            storage("braid edges", &edges)?,
            zeroed(gpu, "braid sorted", t * max_pending * 12)?,
            zeroed(gpu, "braid em", t * em_cap * 12)?,
            zeroed(gpu, "braid pool", t * pages * page * 12)?,
            storage("braid pages", &pages_init)?,
            zeroed(gpu, "braid dispatch", 24)?,
            zeroed(gpu, "braid proj", t * proj_stride * 4)?,
        ];
        let uniform = buffers[0].clone();
        let mut kernels = Vec::with_capacity(Kernel::ALL.len());
        for k in Kernel::ALL {
            let pipeline = gpu.pipeline(k.entry(), SHADER, k.entry())?;
            let layout = pipeline.get_bind_group_layout(0);
            let group = gpu.scoped(&format!("binding {}", k.entry()), || {
                let entries: Vec<_> = k
                    .bindings()
                    .iter()
                    .map(|&b| wgpu::BindGroupEntry {
                        binding: b,
                        resource: buffers[b as usize].as_entire_binding(),
                    })
                    .collect();
                gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(k.entry()),
                    layout: &layout,
                    entries: &entries,
                })
            })?;
            kernels.push((pipeline, group));
        }
        let dx = lattice.dims[0] as i64;
        let face_x_present = views
            .iter()
            .map(|v| {
                (0..face)
                    .map(|k| {
                        let cell = lattice.cell(dx - 1, 0, 0) as u64 + k;
                        v.has_process[cell as usize]
                    })
                    .collect()
            })
            .collect();
        let mut res = Resident {
            gpu: gpu.clone(),
            params,
            lattice,
            uniform,
            buffers,
            kernels,
            readback: Readback::default(),
            instant: instant_steps(max_pending),
            far,
            edge0,
            processes: tori.iter().map(Torus::processes).collect(),
            edges: tori.iter().map(Torus::edges).collect(),
            face_x_present,
            instants_seen: vec![0; tori.len()],
            processed_seen: tori.iter().map(Torus::events_processed).sum(),
        };
        res.inject(now, &injections, &vec![0; tori.len()])?;
        Ok(res)
    }

    fn kernel(&self, k: Kernel) -> &(std::sync::Arc<wgpu::ComputePipeline>, wgpu::BindGroup) {
        let i = Kernel::ALL.iter().position(|&x| x == k).expect("listed");
        &self.kernels[i]
    }

    /// Encodes `steps`, `times` over, into one compute pass.
    /// Encodes `steps`, `times` over, into one compute pass.
    fn encode(&self, encoder: &mut wgpu::CommandEncoder, steps: &[(Kernel, Launch)], times: u32) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        let dispatch = &self.buffers[10];
        for _ in 0..times {
            for &(k, launch) in steps {
                let (pipeline, group) = self.kernel(k);
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                match launch {
                    Launch::Single => pass.dispatch_workgroups(1, 1, 1),
                    Launch::PerTorus => pass.dispatch_workgroups(1, self.params.tori, 1),
                    Launch::Indirect(offset) => pass.dispatch_workgroups_indirect(dispatch, offset),
                }
            }
        }
    }

    fn run(
        &mut self,
        what: &str,
        steps: &[(Kernel, Launch)],
        times: u32,
    ) -> Result<(), BraidError> {
        let mut encoder = self
            .gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
        self.gpu
            .scoped(what, || self.encode(&mut encoder, steps, times))?;
        self.gpu.submit_and_wait(what, encoder)?;
        Ok(())
    }

    fn write_params(&self) {
        self.gpu
            .queue()
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(&self.params));
    }

    fn write_ctl(&self, word: usize, values: &[u32]) {
        self.gpu.queue().write_buffer(
            &self.buffers[B_CTL],
            (word * 4) as u64,
            bytemuck::cast_slice(values),
        );
    }

    fn ctl_at(&self, torus: usize, field: usize) -> usize {
        GLOBALS + torus * self.params.ctl_stride as usize + field
    }

    fn read_words(&mut self, binding: usize, words: usize) -> Result<Vec<u32>, BraidError> {
        let bytes = self
            .readback
            .read(&self.gpu, &self.buffers[binding], (words * 4) as u64)?;
        Ok(bytemuck::cast_slice(&bytes[..words * 4]).to_vec())
    }

    fn read_all(&mut self, binding: usize) -> Result<Vec<u32>, BraidError> {
        let words = (self.buffers[binding].size() / 4) as usize;
        self.read_words(binding, words)
    }

    /// Appends `events[i]` (each at or after `now`, within `max_delay` of it) to torus `i`'s
    /// calendar, and counts `dropped[i]` more dropped events.
    pub(crate) fn inject(
        &mut self,
        now: u32,
        events: &[Vec<Event>],
        dropped: &[u32],
    ) -> Result<(), BraidError> {
        if events.iter().all(Vec::is_empty) && dropped.iter().all(|&d| d == 0) {
            return Ok(());
        }
        let em_cap = self.params.em_cap as usize;
        for (i, evs) in events.iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            debug_assert!(evs.len() <= em_cap);
            let words: Vec<u32> = evs.iter().flat_map(|e| em_words(e.t - now, e)).collect();
            self.gpu.queue().write_buffer(
                &self.buffers[B_EM],
                (i * em_cap * 12) as u64,
                bytemuck::cast_slice(&words),
            );
        }
        for (i, (evs, &d)) in events.iter().zip(dropped).enumerate() {
            self.write_ctl(self.ctl_at(i, C_INJ_COUNT), &[evs.len() as u32, d]);
        }
        self.write_ctl(G_CLOCK, &[now]);
        self.run("injecting braid events", &INJECT, 1)
    }

    /// Moves the far-future events within `max_delay` of `now` into the calendar.
    fn inject_due(&mut self, now: u32) -> Result<(), BraidError> {
        let horizon = now as u64 + self.params.max_delay as u64;
        let mut due = vec![Vec::new(); self.far.len()];
        for (far, out) in self.far.iter_mut().zip(&mut due) {
            while let Some(entry) = far.first_entry() {
                if *entry.key() as u64 > horizon {
                    break;
                }
                out.extend(entry.remove());
            }
        }
        for i in 0..self.far.len() {
            let far = self.far[i].values().map(Vec::len).sum::<usize>() as u32;
            self.write_ctl(self.ctl_at(i, C_FAR), &[far]);
        }
        let zeros = vec![0; self.far.len()];
        self.inject(now, &due, &zeros)
    }

    /// Processes every instant in `now..end` on every torus (no exchange falls inside).
    pub(crate) fn run_segment(&mut self, now: u32, end: u32) -> Result<SegmentOut, BraidError> {
        let mut at = now;
        while at < end {
            self.inject_due(at)?;
            let stop = self
                .far
                .iter()
                .filter_map(|f| f.keys().next())
                .map(|&t| t - self.params.max_delay)
                .fold(end, u32::min);
            self.params.end = stop;
            self.write_params();
            self.write_ctl(G_CLOCK, &[at, 0]);
            let mut batch = FIRST_BATCH;
            loop {
                let steps = self.instant.clone();
                self.run("processing braid instants", &steps, batch)?;
                let globals = self.read_words(B_CTL, 3)?;
                if globals[G_FAULT] != 0 {
                    return Err(device_error(format!(
                        "the adapter stopped a braid shader loop before its end (lavapipe \
                         ends every loop of an invocation after 65535 iterations in all): a \
                         cell with more out-edges or more events at the cut of the drop rule \
                         than this adapter can loop over in one invocation ({} cells, {} \
                         tori); nothing was changed; use --backend cpu or a GPU",
                        self.params.cells, self.params.tori
                    )));
                }
                if globals[G_DONE] != 0 {
                    break;
                }
                batch = (batch * 2).min(MAX_BATCH);
            }
            at = stop;
        }
        let ctl = self.read_all(B_CTL)?;
        let mut out = SegmentOut::default();
        let processed: u64 = (0..self.far.len()).map(|i| self.counters(&ctl, i).0).sum();
        out.events = processed - self.processed_seen;
        self.processed_seen = processed;
        for i in 0..self.far.len() {
            let seen = ctl[self.ctl_at(i, C_INSTANTS)];
            out.instants
                .push(seen.wrapping_sub(self.instants_seen[i]) as u64);
            self.instants_seen[i] = seen;
        }
        Ok(out)
    }

    /// Per torus: processed and dropped counters, pending.
    fn counters(&self, ctl: &[u32], torus: usize) -> (u64, u64, u32) {
        let word = |f: usize| ctl[self.ctl_at(torus, f)] as u64;
        (
            word(C_PROC_LO) | word(C_PROC_LO + 1) << 32,
            word(C_DROP_LO) | word(C_DROP_LO + 1) << 32,
            ctl[self.ctl_at(torus, C_PENDING)],
        )
    }

    /// The exchange inputs of every torus at clock `now`.
    pub(crate) fn project(&mut self, now: u32) -> Result<Vec<Exchanged>, BraidError> {
        let proj_words = self.params.tori as usize * self.params.proj_stride as usize;
        self.gpu.queue().write_buffer(
            &self.buffers[B_PROJ],
            0,
            bytemuck::cast_slice(&vec![0u32; proj_words]),
        );
        let (pipeline, group) = self.kernel(Kernel::Project);
        let groups = self.params.cells.div_ceil(WORKGROUP).min(65535);
        let mut encoder = self
            .gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        self.gpu.scoped("projecting braid faces", || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(groups, self.params.tori, 1);
        })?;
        self.gpu
            .submit_and_wait("projecting braid faces", encoder)?;
        let proj = self.read_words(B_PROJ, proj_words)?;
        let ctl = self.read_all(B_CTL)?;
        let face = self.lattice.face_len();
        let far_count = |f: &BTreeMap<u32, Vec<Event>>| f.values().map(Vec::len).sum::<usize>();
        Ok((0..self.far.len())
            .map(|i| {
                let (processed, _, pending) = self.counters(&ctl, i);
                let o = i * self.params.proj_stride as usize;
                let ints = |r: std::ops::Range<usize>| proj[r].iter().map(|&w| w as i32).collect();
                Exchanged {
                    counts: Counts {
                        now,
                        events_processed: processed,
                        pending: pending + far_count(&self.far[i]) as u32,
                        processes: self.processes[i],
                        edges: self.edges[i],
                        acc_sum: proj[o] as i32,
                    },
                    face0: ints(o + 1..o + 1 + face),
                    face_x: ints(o + 1 + face..o + 1 + 2 * face),
                }
            })
            .collect())
    }

    /// A receiver view of torus `i` for applying a projection (corrective events collect
    /// in it; inject them with [`Resident::inject`]).
    pub(crate) fn receiver(&self, i: usize, x: &Exchanged, max_pending: u64) -> DeviceReceiver {
        DeviceReceiver {
            lattice: self.lattice,
            face_x: x
                .face_x
                .iter()
                .zip(&self.face_x_present[i])
                .map(|(&a, &present)| present.then_some(a))
                .collect(),
            now: x.counts.now,
            pending: x.counts.pending as u64,
            max_pending,
            events_processed: x.counts.events_processed,
            corrective: Vec::new(),
            dropped: 0,
        }
    }

    /// Reads the whole state back into `tori` (clock `now`).
    pub(crate) fn download(&mut self, now: u32, tori: &mut [Torus]) -> Result<(), BraidError> {
        let ctl = self.read_all(B_CTL)?;
        let procs = self.read_all(B_PROCS)?;
        let edges = self.read_all(B_EDGES)?;
        let pages = self.read_all(B_PAGES)?;
        let pool = self.read_all(B_POOL)?;
        let p = self.params;
        let n = p.cells as usize;
        let slots = p.slots as usize;
        let page = 1usize << p.page_shift;
        for (i, torus) in tori.iter_mut().enumerate() {
            let (processed, dropped, pending) = self.counters(&ctl, i);
            let cells = &procs[i * n * 4..(i + 1) * n * 4];
            let state: Vec<u32> = cells.chunks_exact(4).map(|c| c[0]).collect();
            let acc: Vec<i32> = cells.chunks_exact(4).map(|c| c[1] as i32).collect();
            let received: Vec<u32> = cells.chunks_exact(4).map(|c| c[2]).collect();
            let e0 = self.edge0[i] as usize;
            let delays: Vec<u32> = (e0..e0 + self.edges[i] as usize)
                .map(|e| edges[e * 2 + 1])
                .collect();
            let mut events = Vec::with_capacity(pending as usize);
            let table = i * p.pages_stride as usize;
            for d in 0..slots {
                let t = now as u64 + d as u64;
                if t > u32::MAX as u64 {
                    break;
                }
                let s = (t % slots as u64) as usize;
                let count = ctl[self.ctl_at(i, HEAD + s)] as usize;
                for j in 0..count {
                    let pg = pages[table + s * p.pages_per_slot as usize + j / page] as usize;
                    let e = ((i * p.pages as usize + pg) * page + j % page) * 3;
                    events.push(Event {
                        t: t as u32,
                        dst: pool[e],
                        src: pool[e + 1],
                        payload: pool[e + 2] as i32,
                    });
                }
            }
            if events.len() != pending as usize {
                return Err(device_error(format!(
                    "torus {i}: the device counts {pending} pending events but its calendar \
                     holds {}",
                    events.len()
                )));
            }
            events.extend(self.far[i].values().flatten().copied());
            torus.restore(RestoreImage {
                now,
                events_processed: processed,
                events_dropped: dropped,
                state: &state,
                acc: &acc,
                received: &received,
                delays: &delays,
                events: &events,
            });
        }
        Ok(())
    }
}

/// A device-resident torus as the receiver of a projection: the read-back x = X-1 face,
/// pending count and events processed; corrective events collect here.
#[derive(Debug)]
pub(crate) struct DeviceReceiver {
    lattice: Lattice,
    face_x: Vec<Option<i32>>,
    now: u32,
    pending: u64,
    max_pending: u64,
    events_processed: u64,
    pub corrective: Vec<Event>,
    pub dropped: u32,
}

impl Receiver for DeviceReceiver {
    fn lattice(&self) -> Lattice {
        self.lattice
    }

    fn acc(&self, cell: u32) -> Option<i32> {
        let first = self.lattice.cell(self.lattice.dims[0] as i64 - 1, 0, 0);
        self.face_x[(cell - first) as usize]
    }

    fn inject_or_drop(&mut self, cell: u32, payload: i32) -> bool {
        if self.pending >= self.max_pending {
            self.dropped += 1;
            false
        } else {
            self.pending += 1;
            self.corrective.push(Event {
                t: self.now,
                dst: cell,
                src: cell,
                payload,
            });
            true
        }
    }

    fn events_processed(&self) -> u64 {
        self.events_processed
    }
}

/// Projection `id` from the device's exchange inputs.
pub(crate) fn projection(id: u32, x: &Exchanged) -> Projection {
    let mut p = Projection {
        face: x.face0.clone(),
        ..Projection::default()
    };
    p.set(id, &x.counts);
    p
}

/// An event of `em` (as the shader's `em_put`): `to | (delay & 0xFF) << 24`,
/// `src | (delay >> 8) << 24`, payload.
fn em_words(delay: u32, e: &Event) -> [u32; 3] {
    [
        e.dst | (delay << 24),
        e.src | ((delay >> 8) << 24),
        e.payload as u32,
    ]
}

/// A storage (or uniform) buffer holding `bytes`.
fn make_buffer(
    gpu: &WgpuDevice,
    label: &str,
    bytes: &[u8],
    uniform: bool,
) -> Result<wgpu::Buffer, BraidError> {
    use wgpu::util::DeviceExt;
    let usage = if uniform {
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST
    } else {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
    };
    let padded;
    let bytes = if bytes.len() < 4 {
        padded = [bytes, &[0u8; 4][bytes.len()..]].concat();
        &padded[..]
    } else {
        bytes
    };
    Ok(gpu.scoped(&format!("allocating {label}"), || {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage,
            })
    })?)
}

/// A zeroed storage buffer of `bytes` (at least 4), also usable for indirect dispatch.
fn zeroed(gpu: &WgpuDevice, label: &str, bytes: u64) -> Result<wgpu::Buffer, BraidError> {
    Ok(gpu.scoped(&format!("allocating {label}"), || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::INDIRECT,
            mapped_at_creation: false,
        })
    })?)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn params_mirror_the_shader_struct() {
        // 16 u32 fields, as `struct Params` in shaders/braid.wgsl.
        assert_eq!(std::mem::size_of::<Params>(), 64);
        assert!(SHADER.contains("struct Params {"));
    }

    #[test]
    fn every_kernel_is_an_entry_point_of_the_shader() {
        for k in Kernel::ALL {
            let decl = format!("fn {}(", k.entry());
            assert!(
                SHADER.contains(&decl),
                "{decl} missing from shaders/braid.wgsl"
            );
            assert!(k.entry().starts_with("braid_"));
        }
        for (k, _) in instant_steps(1 << 20).iter().chain(&INJECT) {
            assert!(Kernel::ALL.contains(k));
        }
    }

    #[test]
    fn merge_passes_cover_max_pending() {
        assert_eq!(merge_passes(1), 0);
        assert_eq!(merge_passes(TILE), 0);
        assert_eq!(merge_passes(TILE + 1), 1);
        assert_eq!(merge_passes(65536), 8);
        assert_eq!(merge_passes(1 << 28), 20);
        for k in Kernel::ALL {
            assert!(
                instant_steps(65536).iter().any(|&(s, _)| s == k)
                    || INJECT.iter().any(|&(s, _)| s == k)
                    || k == Kernel::Project,
                "{k:?} never runs"
            );
        }
    }

    #[test]
    fn emitted_events_pack_delays_up_to_1024() {
        let e = Event {
            t: 0,
            dst: (1 << 24) - 1,
            src: 12345,
            payload: -7,
        };
        for delay in [0, 1, 255, 256, 1023, 1024] {
            let [a, b, p] = em_words(delay, &e);
            assert_eq!(a & 0xFF_FFFF, e.dst);
            assert_eq!(b & 0xFF_FFFF, e.src);
            assert_eq!((a >> 24) | ((b >> 24) << 8), delay);
            assert_eq!(p as i32, -7);
        }
    }
}
