//! A braid resident on a GPU, whatever the backend: the layout of its device state, the steps
//! of one instant, and the host side of the orchestration. The wgpu backend (`gpu.rs`,
//! `shaders/braid.wgsl`) and the CUDA backend (`cuda.rs`, `kernels/braid.cu`, the kernels
//! of the same names over the same bytes) only hold the buffers and launch the steps
//! ([`BraidDevice`]): one host order drives both, so they compute the same bits.
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
//! Bindings (wgpu) and fields of `BraidBuffers` (CUDA), in this order: 0 params, 1 ctl,
//! 2 cells, 3 procs, 4 edge_start, 5 edges, 6 sorted, 7 em, 8 pool, 9 pages, 10 dispatch,
//! 11 proj ([`Plan::buffers`] lists 1 to 11).
//!
//! The host drives: per segment (up to the next exchange, target or far-future injection)
//! it writes the end instant and runs batches of instants (26 steps each plus two per merge
//! pass; past the end they do nothing), reading back three words per batch to see whether
//! the clock got there. Runs of a cell longer than one apply chunk take the steps of the
//! next instants of the batch as further apply rounds (`G_HOLD` in the kernels), so a batch
//! may process fewer instants than it runs; the host only loops until the clock is there.
//! At an exchange it runs `braid_project` and reads back the counters, the acc sums and the
//! two faces; the projections, violations, corrective events and the interval are the
//! host's (the same code as the CPU backend), and corrective events go back as one
//! injection. After a run the whole state is read back into the host tori (so digests,
//! statistics and `Braid::tori` read it as on the CPU).

use std::collections::BTreeMap;

use super::error::BraidError;
use super::event::Event;
use super::lattice::Lattice;
use super::projection::{Counts, Projection, Receiver};
use super::torus::{RestoreImage, Torus};
use crate::backend::BackendKind;
use crate::error::BackendError;

/// Threads of a workgroup (block) of every kernel but [`Kernel::ScanCells`] and
/// [`Kernel::Cut`] (256).
pub(crate) const WORKGROUP: u32 = 64;
/// Words of `ctl` before the first torus, and per-torus head fields (as in the kernels).
pub(crate) const GLOBALS: usize = 16;
pub(crate) const HEAD: usize = 32;
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

/// Bindings the host writes or reads (see the module doc for all of them).
pub(crate) const B_CTL: usize = 1;
pub(crate) const B_PROCS: usize = 3;
pub(crate) const B_EDGES: usize = 5;
pub(crate) const B_EM: usize = 7;
pub(crate) const B_POOL: usize = 8;
pub(crate) const B_PAGES: usize = 9;
pub(crate) const B_PROJ: usize = 11;

/// The kernels of `shaders/braid.wgsl` and `kernels/braid.cu` (entry points of one name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
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
    pub(crate) const ALL: [Kernel; 19] = [
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

    pub(crate) fn entry(self) -> &'static str {
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

    /// Its position in [`Kernel::ALL`].
    pub(crate) fn index(self) -> usize {
        Kernel::ALL.iter().position(|&x| x == self).expect("listed")
    }
}

/// How a kernel is launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// One workgroup (one invocation per torus).
    Single,
    /// One workgroup per torus (`y` is the torus).
    PerTorus,
    /// Indirect, sized by the device at this byte offset of `dispatch` (`x` at word 0: the
    /// instant's events, at most `max_pending`; at word 3: emitted or injected events, at
    /// most `em_cap`), `y` is the torus.
    Indirect(u64),
    /// `min(ceil(cells / 64), 65535)` workgroups over `x`, `y` is the torus
    /// (`braid_project`).
    Cells,
}

/// Workgroups of [`WORKGROUP`] invocations for `n` items, capped at 65535 as the kernels'
/// `groups_for` caps the indirect sizes (they loop with a grid stride).
pub(crate) fn groups_for(n: u64) -> u32 {
    n.div_ceil(WORKGROUP as u64).min(65535) as u32
}

/// Events per tile of a run ordered in one invocation (`TILE` in the kernels).
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
pub(crate) fn instant_steps(max_pending: u64) -> Vec<(Kernel, Launch)> {
    let mut steps = INSTANT_HEAD.to_vec();
    for _ in 0..merge_passes(max_pending) {
        steps.extend_from_slice(&MERGE_PASS);
    }
    steps.extend_from_slice(&INSTANT_TAIL);
    steps
}

/// Host-written injections.
pub(crate) const INJECT: [(Kernel, Launch); 4] = [
    (Kernel::PlanInject, Launch::Single),
    (Kernel::CountDelays, Launch::Indirect(12)),
    (Kernel::Alloc, Launch::Single),
    (Kernel::Merge, Launch::Indirect(12)),
];

/// The exchange inputs.
pub(crate) const PROJECT: [(Kernel, Launch); 1] = [(Kernel::Project, Launch::Cells)];

/// The kernels' `Params` (WGSL uniform, CUDA `BraidParams`), field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub tori: u32,
    pub cells: u32,
    pub slots: u32,
    pub max_delay: u32,
    pub max_pending: u32,
    pub page_shift: u32,
    pub pages_per_slot: u32,
    pub pages: u32,
    pub em_cap: u32,
    pub dx: u32,
    pub dy: u32,
    pub dz: u32,
    pub ctl_stride: u32,
    pub end: u32,
    pub pages_stride: u32,
    pub proj_stride: u32,
}

/// What the orchestration needs from a device holding a braid's buffers (bindings 1 to 11
/// of the module doc). Work is in stream order: a write or a run is seen by every later
/// run and read.
pub(crate) trait BraidDevice {
    /// The backend, for errors.
    const KIND: BackendKind;

    /// Makes `params` the parameters of the later runs.
    fn write_params(&mut self, params: &Params) -> Result<(), BraidError>;

    /// Writes `values` at word `word` of buffer `binding`.
    fn write(&mut self, binding: usize, word: usize, values: &[u32]) -> Result<(), BraidError>;

    /// Runs `steps`, `times` over, in order.
    fn run(&mut self, what: &str, steps: &[(Kernel, Launch)], times: u32)
    -> Result<(), BraidError>;

    /// The first `words` words of buffer `binding` (all of it for `None`), once the work
    /// before is done.
    fn read(&mut self, binding: usize, words: Option<usize>) -> Result<Vec<u32>, BraidError>;

    /// Why the device reported a loop stopped before its bound (`G_FAULT`).
    fn loop_fault(params: &Params) -> String;
}

/// A buffer's initial contents.
#[derive(Debug)]
pub(crate) enum Init {
    Words(Vec<u32>),
    /// Zeroed, of this many bytes.
    Zeroed(u64),
}

impl Init {
    pub(crate) fn bytes(&self) -> u64 {
        match self {
            Init::Words(w) => w.len() as u64 * 4,
            Init::Zeroed(b) => *b,
        }
    }
}

/// Everything a backend needs to put tori on a device: the params, the buffers' initial
/// contents and the host side of the resident braid.
pub(crate) struct Plan {
    pub params: Params,
    /// Bindings 1 to 11: label and initial contents.
    pub buffers: Vec<(&'static str, Init)>,
    host: Host,
    /// Per torus: pending events within `max_delay` of the clock (injected on upload).
    injections: Vec<Vec<Event>>,
}

/// The host side of a resident braid.
struct Host {
    params: Params,
    lattice: Lattice,
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

impl Plan {
    /// The layout of `tori` (all at clock `now`) on a device.
    pub(crate) fn new(tori: &[Torus], now: u32) -> Plan {
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
        // Truncation only where a backend refuses the sizes first (see `Plan::buffers`).
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
        let buffers = vec![
            ("ctl", Init::Words(ctl)),
            ("cells", Init::Zeroed(t * n * 6 * 4)),
            ("procs", Init::Words(procs)),
            ("edge_start", Init::Words(edge_start)),
            ("edges", Init::Words(edges)),
            ("sorted", Init::Zeroed(t * max_pending * 12)),
            ("em", Init::Zeroed(t * em_cap * 12)),
            ("pool", Init::Zeroed(t * pages * page * 12)),
            ("pages", Init::Words(pages_init)),
            ("dispatch", Init::Zeroed(24)),
            ("proj", Init::Zeroed(t * proj_stride * 4)),
        ];
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
        let host = Host {
            params,
            lattice,
            instant: instant_steps(max_pending),
            far,
            edge0,
            processes: tori.iter().map(Torus::processes).collect(),
            edges: tori.iter().map(Torus::edges).collect(),
            face_x_present,
            instants_seen: vec![0; tori.len()],
            processed_seen: tori.iter().map(Torus::events_processed).sum(),
        };
        Plan {
            params,
            buffers,
            host,
            injections,
        }
    }
}

/// The error of a device step.
pub(crate) fn device_error(backend: BackendKind, reason: String) -> BraidError {
    BraidError::Backend(BackendError::Device { backend, reason })
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

/// A braid's state on device `D`, and the host side of it.
pub(crate) struct Resident<D> {
    dev: D,
    host: Host,
}

impl<D: std::fmt::Debug> std::fmt::Debug for Resident<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident")
            .field("dev", &self.dev)
            .field("params", &self.host.params)
            .finish_non_exhaustive()
    }
}

impl<D: BraidDevice> Resident<D> {
    /// The braid of `plan` on `dev` (whose buffers hold `plan.buffers`): puts the pending
    /// events near the clock into the calendar.
    pub(crate) fn new(dev: D, plan: Plan, now: u32) -> Result<Resident<D>, BraidError> {
        let tori = plan.injections.len();
        let mut res = Resident {
            dev,
            host: plan.host,
        };
        res.inject(now, &plan.injections, &vec![0; tori])?;
        Ok(res)
    }

    pub(crate) fn device(&self) -> &D {
        &self.dev
    }

    fn write_ctl(&mut self, word: usize, values: &[u32]) -> Result<(), BraidError> {
        self.dev.write(B_CTL, word, values)
    }

    fn ctl_at(&self, torus: usize, field: usize) -> usize {
        GLOBALS + torus * self.host.params.ctl_stride as usize + field
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
        let em_cap = self.host.params.em_cap as usize;
        for (i, evs) in events.iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            debug_assert!(evs.len() <= em_cap);
            let words: Vec<u32> = evs.iter().flat_map(|e| em_words(e.t - now, e)).collect();
            self.dev.write(B_EM, i * em_cap * 3, &words)?;
        }
        for (i, (evs, &d)) in events.iter().zip(dropped).enumerate() {
            self.write_ctl(self.ctl_at(i, C_INJ_COUNT), &[evs.len() as u32, d])?;
        }
        self.write_ctl(G_CLOCK, &[now])?;
        self.dev.run("injecting braid events", &INJECT, 1)
    }

    /// Moves the far-future events within `max_delay` of `now` into the calendar.
    fn inject_due(&mut self, now: u32) -> Result<(), BraidError> {
        let horizon = now as u64 + self.host.params.max_delay as u64;
        let mut due = vec![Vec::new(); self.host.far.len()];
        for (far, out) in self.host.far.iter_mut().zip(&mut due) {
            while let Some(entry) = far.first_entry() {
                if *entry.key() as u64 > horizon {
                    break;
                }
                out.extend(entry.remove());
            }
        }
        for i in 0..self.host.far.len() {
            let far = self.host.far[i].values().map(Vec::len).sum::<usize>() as u32;
            self.write_ctl(self.ctl_at(i, C_FAR), &[far])?;
        }
        let zeros = vec![0; self.host.far.len()];
        self.inject(now, &due, &zeros)
    }

    /// Processes every instant in `now..end` on every torus (no exchange falls inside).
    pub(crate) fn run_segment(&mut self, now: u32, end: u32) -> Result<SegmentOut, BraidError> {
        let mut at = now;
        while at < end {
            self.inject_due(at)?;
            let stop = self
                .host
                .far
                .iter()
                .filter_map(|f| f.keys().next())
                .map(|&t| t - self.host.params.max_delay)
                .fold(end, u32::min);
            self.host.params.end = stop;
            self.dev.write_params(&self.host.params)?;
            self.write_ctl(G_CLOCK, &[at, 0])?;
            let mut batch = FIRST_BATCH;
            loop {
                let steps = self.host.instant.clone();
                self.dev.run("processing braid instants", &steps, batch)?;
                let globals = self.dev.read(B_CTL, Some(3))?;
                if globals[G_FAULT] != 0 {
                    return Err(device_error(D::KIND, D::loop_fault(&self.host.params)));
                }
                if globals[G_DONE] != 0 {
                    break;
                }
                batch = (batch * 2).min(MAX_BATCH);
            }
            at = stop;
        }
        let ctl = self.dev.read(B_CTL, None)?;
        let mut out = SegmentOut::default();
        let tori = self.host.far.len();
        let processed: u64 = (0..tori).map(|i| self.counters(&ctl, i).0).sum();
        out.events = processed - self.host.processed_seen;
        self.host.processed_seen = processed;
        for i in 0..tori {
            let seen = ctl[self.ctl_at(i, C_INSTANTS)];
            out.instants
                .push(seen.wrapping_sub(self.host.instants_seen[i]) as u64);
            self.host.instants_seen[i] = seen;
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
        let p = self.host.params;
        let proj_words = p.tori as usize * p.proj_stride as usize;
        self.dev.write(B_PROJ, 0, &vec![0u32; proj_words])?;
        self.dev.run("projecting braid faces", &PROJECT, 1)?;
        let proj = self.dev.read(B_PROJ, Some(proj_words))?;
        let ctl = self.dev.read(B_CTL, None)?;
        let face = self.host.lattice.face_len();
        let far_count = |f: &BTreeMap<u32, Vec<Event>>| f.values().map(Vec::len).sum::<usize>();
        Ok((0..self.host.far.len())
            .map(|i| {
                let (processed, _, pending) = self.counters(&ctl, i);
                let o = i * p.proj_stride as usize;
                let ints = |r: std::ops::Range<usize>| proj[r].iter().map(|&w| w as i32).collect();
                Exchanged {
                    counts: Counts {
                        now,
                        events_processed: processed,
                        pending: pending + far_count(&self.host.far[i]) as u32,
                        processes: self.host.processes[i],
                        edges: self.host.edges[i],
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
            lattice: self.host.lattice,
            face_x: x
                .face_x
                .iter()
                .zip(&self.host.face_x_present[i])
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
        let ctl = self.dev.read(B_CTL, None)?;
        let procs = self.dev.read(B_PROCS, None)?;
        let edges = self.dev.read(B_EDGES, None)?;
        let pages = self.dev.read(B_PAGES, None)?;
        let pool = self.dev.read(B_POOL, None)?;
        let p = self.host.params;
        let n = p.cells as usize;
        let slots = p.slots as usize;
        let page = 1usize << p.page_shift;
        for (i, torus) in tori.iter_mut().enumerate() {
            let (processed, dropped, pending) = self.counters(&ctl, i);
            let cells = &procs[i * n * 4..(i + 1) * n * 4];
            let state: Vec<u32> = cells.chunks_exact(4).map(|c| c[0]).collect();
            let acc: Vec<i32> = cells.chunks_exact(4).map(|c| c[1] as i32).collect();
            let received: Vec<u32> = cells.chunks_exact(4).map(|c| c[2]).collect();
            let e0 = self.host.edge0[i] as usize;
            let delays: Vec<u32> = (e0..e0 + self.host.edges[i] as usize)
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
                return Err(device_error(
                    D::KIND,
                    format!(
                        "torus {i}: the device counts {pending} pending events but its calendar \
                         holds {}",
                        events.len()
                    ),
                ));
            }
            events.extend(self.host.far[i].values().flatten().copied());
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

/// An event of `em` (as the kernels' `em_put`): `to | (delay & 0xFF) << 24`,
/// `src | (delay >> 8) << 24`, payload.
fn em_words(delay: u32, e: &Event) -> [u32; 3] {
    [
        e.dst | (delay << 24),
        e.src | ((delay >> 8) << 24),
        e.payload as u32,
    ]
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn params_are_16_words() {
        assert_eq!(std::mem::size_of::<Params>(), 64);
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
                    || PROJECT.iter().any(|&(s, _)| s == k),
                "{k:?} never runs"
            );
        }
    }

    #[test]
    fn an_instant_is_26_steps_and_two_per_merge_pass() {
        for (max_pending, passes) in [(1u64, 0usize), (256, 0), (257, 1), (1 << 20, 12)] {
            assert_eq!(instant_steps(max_pending).len(), 26 + 2 * passes);
        }
        for (k, launch) in instant_steps(1 << 20).iter().chain(&INJECT).chain(&PROJECT) {
            assert_eq!(k.index(), Kernel::ALL.iter().position(|x| x == k).unwrap());
            // The per-torus steps are exactly the 256-thread kernels.
            assert_eq!(
                *launch == Launch::PerTorus,
                matches!(k, Kernel::ScanCells | Kernel::Cut),
                "{k:?}"
            );
        }
    }

    #[test]
    fn indirect_sizes_are_capped_like_the_kernels() {
        assert_eq!(groups_for(0), 0);
        assert_eq!(groups_for(1), 1);
        assert_eq!(groups_for(64), 1);
        assert_eq!(groups_for(65), 2);
        assert_eq!(groups_for(1 << 40), 65535);
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
