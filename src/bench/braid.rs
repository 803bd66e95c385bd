//! Braid throughput (SPEC §7 row 5): a braid of three tori with neighbour edges and a
//! sustained event population, beside one torus alone and beside the heap-ordered
//! single-thread reference kernel (the ancestor's design) on the same workloads, in one run.
//!
//! Two workloads, both every cell a process and lattice-neighbour edges of delay 1:
//! - **`neighbour-ring`** (the headline): one out-edge per cell, to `(x+1,y,z)`, `(x,y+1,z)`
//!   or `(x,y,z+1)` as `(x+y+z) mod 3` picks, and `max_pending` events injected at random.
//!   Every processed event emits exactly one, so the population stays at `max_pending`
//!   instant after instant without any drop rule at work (only corrective events that meet a
//!   full torus are dropped). The edge map is nearly one-to-one (on 32³, 992 cells have no
//!   in-edge and as many have two), so events stay spread over the lattice instead of piling
//!   onto a few cells.
//! - **`neighbours`** (SPEC §3.3's `neighbors` builder, three out-edges per cell) with a few
//!   thousand injected events: fan-out 3 grows the population until `max_pending` caps it
//!   within a few dozen instants; from then on every instant emits three events per event
//!   processed and the capacity rule drops two of them. Its pending count is sustained by
//!   the cap, and most emissions are dropped (the report shows both counts).
//!
//! Method, per workload: warpgrid's braid (and a one-torus braid of torus 0's workload) runs
//! on the device's worker pool ([`Braid::run_until_on`]): `warmup` instants untimed, then
//! `measure` instants timed. The reference runs the same warm-up, then `reference_measure` instants
//! timed (it is 20-30x slower, and events/s is a rate). Both kernels stop at
//! `warmup + reference_measure`, where their digests, event counters and exchange counters
//! must be equal: a mismatch fails the bench. Exchanges happen every `interval` instants
//! (adaptive on, bounded below by the same value: the tori are independent random workloads,
//! so every exchange sees boundary violations and the interval stays at its minimum).
//!
//! Memory: the three-tori braid then runs on to `long_factor` times its run length
//! `L = warmup + measure`. The report gives the process's peak resident set (VmHWM from
//! `/proc/self/status`, reset through `/proc/self/clear_refs` at the start of each workload
//! where the kernel allows it) at `L` and at `long_factor · L`, and the bytes the braid's
//! own buffers hold ([`Braid::memory_bytes`]), and the same halfway through the long run.
//! Flat means equal at `L` and at `long_factor · L`; the midpoint shows a workload that is
//! still settling (the `neighbours` population keeps concentrating on fewer cells for a few
//! hundred instants, and the buffers that hold one cell's events grow with it).

use std::time::Instant;

use serde::Serialize;
use warpgrid_engine::braid::reference::{ReferenceBraid, ReferenceBraidStats};
use warpgrid_engine::braid::{Braid, BraidConfig, BraidStats, EdgesBuilder, InjectBuilder};
use warpgrid_engine::braid::{ProcessesBuilder, TorusConfig};

use crate::Device;

/// SPEC §7: warpgrid's braid at least this many times the reference's events/s...
pub const BAR_RATIO: f64 = 5.0;
/// ...and at least this many events/s on the 2-core box.
pub const BAR_EVENTS_PER_S: f64 = 50e6;

/// The two workloads (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// One neighbour edge per cell, population `max_pending` injected at instant 0.
    NeighbourRing,
    /// SPEC §3.3 `neighbors{delay = 1}`, a few thousand injected events, capped by
    /// `max_pending`.
    Neighbours,
}

impl Shape {
    /// The workload's name in reports (`neighbour-ring`, `neighbours`).
    pub fn name(self) -> &'static str {
        match self {
            Shape::NeighbourRing => "neighbour-ring",
            Shape::Neighbours => "neighbours",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BraidBenchConfig {
    /// Lattice of every torus.
    pub dims: [u32; 3],
    /// Capacity of every torus.
    pub max_pending: u64,
    /// Events injected at random for [`Shape::Neighbours`] (the ring injects `max_pending`).
    pub neighbours_inject: u64,
    /// Seed of the random injections.
    pub seed: u64,
    /// Instants run before timing starts.
    pub warmup: u32,
    /// Instants timed on warpgrid.
    pub measure: u32,
    /// Instants timed on the reference (at most `measure`); digests are compared there.
    pub reference_measure: u32,
    /// The memory check runs the braid to this many times `warmup + measure`.
    pub long_factor: u32,
    /// Instants between exchanges (and the adaptive interval's lower bound).
    pub interval: u32,
    /// The workloads to run, in order.
    pub shapes: Vec<Shape>,
}

impl BraidBenchConfig {
    /// SPEC §7: three tori of 32³, `max_pending` 2^20 each; 20 instants of warm-up, 40
    /// timed (10 on the reference), memory at 60 and 600 instants.
    pub fn full() -> Self {
        BraidBenchConfig {
            dims: [32, 32, 32],
            max_pending: 1 << 20,
            neighbours_inject: 4096,
            seed: 7,
            warmup: 20,
            measure: 40,
            reference_measure: 10,
            long_factor: 10,
            interval: 10,
            shapes: vec![Shape::NeighbourRing, Shape::Neighbours],
        }
    }

    /// A smoke run: tori of 16³, `max_pending` 2^14.
    pub fn quick() -> Self {
        BraidBenchConfig {
            dims: [16, 16, 16],
            max_pending: 1 << 14,
            neighbours_inject: 256,
            warmup: 10,
            measure: 20,
            reference_measure: 10,
            ..Self::full()
        }
    }

    /// Instants of the run whose memory is compared with the long run's (`L`).
    pub fn run_length(&self) -> u32 {
        self.warmup + self.measure
    }

    /// Where the digests are compared with the reference.
    pub fn check_instant(&self) -> u32 {
        self.warmup + self.reference_measure.min(self.measure)
    }

    /// The torus settings of a workload.
    pub fn torus_config(&self, shape: Shape) -> TorusConfig {
        let base = TorusConfig::new(self.dims)
            .with_max_pending(self.max_pending)
            .with_processes(ProcessesBuilder::All);
        match shape {
            Shape::NeighbourRing => base
                .with_edges(EdgesBuilder::List {
                    edges: ring_edges(self.dims),
                })
                .with_inject(InjectBuilder::Random {
                    count: self.max_pending,
                    seed: self.seed,
                    at: 0,
                }),
            Shape::Neighbours => base
                .with_edges(EdgesBuilder::Neighbors { delay: 1 })
                .with_inject(InjectBuilder::Random {
                    count: self.neighbours_inject.min(self.max_pending),
                    seed: self.seed,
                    at: 0,
                }),
        }
    }

    /// The braid settings of a workload with `tori` tori (torus `i` seeds with `seed + i`, so
    /// torus 0 of every braid is the same).
    pub fn braid_config(&self, shape: Shape, tori: u32) -> BraidConfig {
        BraidConfig::new(self.torus_config(shape))
            .with_tori(tori)
            .with_instants(self.run_length())
            .with_adaptive_interval(
                self.interval,
                self.interval,
                BraidConfig::DEFAULT_MAX_INTERVAL.max(self.interval),
            )
    }

    /// One line saying what the workload is.
    pub fn describe(&self, shape: Shape) -> String {
        match shape {
            Shape::NeighbourRing => format!(
                "one edge per cell to a lattice neighbour (+x, +y or +z by (x+y+z) mod 3, delay 1), \
                 {} events injected per torus (= max_pending)",
                self.max_pending
            ),
            Shape::Neighbours => format!(
                "neighbors{{delay = 1}} (3 edges per cell), {} events injected per torus, \
                 population capped by max_pending",
                self.neighbours_inject.min(self.max_pending)
            ),
        }
    }
}

/// The edges of [`Shape::NeighbourRing`]: cell `(x, y, z)` to its neighbour along the axis
/// `(x + y + z) mod 3`, delay 1.
pub fn ring_edges(dims: [u32; 3]) -> Vec<[i64; 7]> {
    let [nx, ny, nz] = dims.map(i64::from);
    let mut edges = Vec::with_capacity((nx * ny * nz) as usize);
    for x in 0..nx {
        for y in 0..ny {
            for z in 0..nz {
                let (tx, ty, tz) = match (x + y + z) % 3 {
                    0 => (x + 1, y, z),
                    1 => (x, y + 1, z),
                    _ => (x, y, z + 1),
                };
                edges.push([x, y, z, tx, ty, tz, 1]);
            }
        }
    }
    edges
}

/// One system's timed window.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    /// The kernel (`warpgrid` with its backend, or `heap reference`).
    pub system: &'static str,
    /// Tori in the braid (3, or 1 for torus 0 alone).
    pub tori: u32,
    /// Threads it ran on.
    pub threads: usize,
    /// Start of the timed instants, `from..to`.
    pub from: u32,
    /// End of the timed instants (exclusive).
    pub to: u32,
    /// Events processed in the window, all tori.
    pub events: u64,
    /// Events dropped in the window (capacity rule and corrective events at `max_pending`).
    pub dropped: u64,
    /// Wall time of the window (s).
    pub seconds: f64,
    /// Events processed per second of wall time.
    pub events_per_s: f64,
    /// Wall time per event.
    pub ns_per_event: f64,
    /// CPU time over wall time in the window (process-wide; 0 where unknown).
    pub cpus_busy: f64,
    /// Pending events per torus at the end of the window.
    pub pending: Vec<u64>,
}

/// What both kernels agreed on at the check instant.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The instant both kernels stopped at (`warmup + reference_measure`).
    pub instant: u32,
    /// Tori in the braid.
    pub tori: u32,
    /// Per torus, 16 lowercase hex digits (equal on both kernels).
    pub digests: Vec<String>,
    /// Per torus: events processed.
    pub events_processed: Vec<u64>,
    /// Per torus: events dropped.
    pub events_dropped: Vec<u64>,
    /// Exchanges done.
    pub exchanges: u64,
    /// Boundary violations (face cells over the tolerance).
    pub boundary_violations: u64,
    /// Corrective events injected.
    pub corrective_events: u64,
}

/// Memory of the three-tori braid over a run of `L` instants and of `long_factor · L`.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// `L = warmup + measure`, in instants.
    pub run_length: u32,
    /// `long_factor · L`, in instants.
    pub long_run_length: u32,
    /// Halfway through the long run (`long_factor / 2 · L`), where the midpoint figures
    /// below are read: a workload still settling shows there.
    pub mid_run_length: u32,
    /// Peak resident set of the process (VmHWM) after `L` (KiB; `None` where `/proc` is
    /// missing).
    pub peak_rss_kib_at_l: Option<u64>,
    /// Peak resident set halfway through the long run (KiB; `None` where `/proc` is missing).
    pub peak_rss_kib_at_mid: Option<u64>,
    /// Peak resident set after the long run (KiB; `None` where `/proc` is missing).
    pub peak_rss_kib_at_long: Option<u64>,
    /// Whether the peak was reset at the start of the workload (else it is the process's).
    pub peak_reset: bool,
    /// [`Braid::memory_bytes`] after `L`.
    pub braid_bytes_at_l: u64,
    /// [`Braid::memory_bytes`] halfway through the long run.
    pub braid_bytes_at_mid: u64,
    /// [`Braid::memory_bytes`] after the long run.
    pub braid_bytes_at_long: u64,
    /// Events per second of the long run past `L` (a second, longer warpgrid figure).
    pub long_run_events_per_s: f64,
    /// Pending events per torus at the end of the long run.
    pub long_run_pending: Vec<u64>,
}

/// A ratio and the bar it is held to.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    /// What is measured, with its unit.
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// The bar it must reach (at least).
    pub bar: f64,
    /// Whether `value >= bar`.
    pub met: bool,
}

/// One workload's figures.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadReport {
    /// The workload.
    pub workload: Shape,
    /// The workload in words (edges, injections, capacity).
    pub description: String,
    /// warpgrid 3 tori, warpgrid 1 torus, reference 3 tori, reference 1 torus.
    pub systems: Vec<SystemResult>,
    /// Events/s of warpgrid's 3 tori over the reference's 3 tori.
    pub three_vs_reference: f64,
    /// Events/s of warpgrid's 1 torus over the reference's 1 torus.
    pub one_vs_reference: f64,
    /// Events/s of warpgrid's 3 tori over its 1 torus.
    pub three_vs_one: f64,
    /// The SPEC §7 bars: the ratio to the reference and the absolute rate.
    pub bars: Vec<Bar>,
    /// What both kernels agreed on (a mismatch fails the bench before this is built).
    pub checks: Vec<Check>,
    /// Memory of the three-tori braid over the short and the long run.
    pub memory: Memory,
}

/// Everything the braid bench measured (`warpgrid bench`), as its JSON report holds it.
#[derive(Debug, Clone, Serialize)]
pub struct BraidBenchReport {
    /// Always `braid`.
    pub bench: &'static str,
    /// The device, as [`Device::describe`] gives it.
    pub device: String,
    /// Threads of the rayon pool.
    pub threads: usize,
    /// Lattice of every torus.
    pub dims: [u32; 3],
    /// Capacity of every torus.
    pub max_pending: u64,
    /// Instants run untimed first.
    pub warmup: u32,
    /// Instants timed on warpgrid.
    pub measure: u32,
    /// Instants timed on the reference.
    pub reference_measure: u32,
    /// Instants between exchanges.
    pub interval: u32,
    /// Per workload, in order.
    pub workloads: Vec<WorkloadReport>,
    /// Every bar of every workload met.
    pub bars_met: bool,
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`), where there is one.
pub fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets the process's peak resident set to its current one (Linux `clear_refs`, value 5);
/// false where that is not allowed.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU seconds used by this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the command name.
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A timed stretch: wall seconds and CPU seconds.
struct Timer(Instant, f64);

impl Timer {
    fn start() -> Timer {
        Timer(Instant::now(), cpu_seconds())
    }
    fn stop(&self) -> (f64, f64) {
        (self.0.elapsed().as_secs_f64(), cpu_seconds() - self.1)
    }
}

/// Counters of either kernel at one instant.
struct Snapshot {
    processed: Vec<u64>,
    dropped: Vec<u64>,
    pending: Vec<u64>,
    digests: Vec<u64>,
    exchanges: u64,
    boundary: u64,
    corrective: u64,
}

impl Snapshot {
    fn of_braid(s: &BraidStats) -> Snapshot {
        Snapshot {
            processed: s.tori.iter().map(|t| t.events_processed).collect(),
            dropped: s.tori.iter().map(|t| t.events_dropped).collect(),
            pending: s.tori.iter().map(|t| t.pending).collect(),
            digests: s.tori.iter().map(|t| t.digest).collect(),
            exchanges: s.exchanges,
            boundary: s.boundary_violations,
            corrective: s.corrective_events,
        }
    }

    fn of_reference(s: &ReferenceBraidStats) -> Snapshot {
        Snapshot {
            processed: s.events_processed.clone(),
            dropped: s.events_dropped.clone(),
            pending: s.pending.clone(),
            digests: s.digests.clone(),
            exchanges: s.exchanges,
            boundary: s.boundary_violations,
            corrective: s.corrective_events,
        }
    }

    fn events(&self) -> u64 {
        self.processed.iter().sum()
    }

    fn drops(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Counters of a braid without computing digests (cheap).
fn counters(b: &Braid) -> (u64, u64, Vec<u64>) {
    let t = b.tori();
    (
        t.iter().map(|t| t.events_processed()).sum(),
        t.iter().map(|t| t.events_dropped()).sum(),
        t.iter().map(|t| t.pending()).collect(),
    )
}

#[allow(clippy::too_many_arguments)]
fn result(
    system: &'static str,
    tori: u32,
    threads: usize,
    from: u32,
    to: u32,
    events: u64,
    dropped: u64,
    (seconds, cpu): (f64, f64),
    pending: Vec<u64>,
) -> SystemResult {
    SystemResult {
        system,
        tori,
        threads,
        from,
        to,
        events,
        dropped,
        seconds,
        events_per_s: events as f64 / seconds,
        ns_per_event: seconds * 1e9 / events.max(1) as f64,
        cpus_busy: if cpu > 0.0 { cpu / seconds } else { 0.0 },
        pending,
    }
}

/// warpgrid's braid of `tori` tori: warm-up, timed window (stopping untimed at the check
/// instant for the counters and digests), then optionally the long run for memory.
struct KernelRun {
    result: SystemResult,
    at_check: Snapshot,
    memory: Option<Memory>,
}

fn run_kernel(
    device: &Device,
    cfg: &BraidBenchConfig,
    shape: Shape,
    tori: u32,
    long: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelRun, String> {
    let name = shape.name();
    let bc = cfg.braid_config(shape, tori);
    let (w, c, l) = (cfg.warmup, cfg.check_instant(), cfg.run_length());
    let e =
        |err: warpgrid_engine::braid::BraidError| format!("{name}: warpgrid {tori} tori: {err}");
    progress(&format!(
        "{name}: warpgrid {tori} tori, warm-up to instant {w}"
    ));
    let peak_reset = long && reset_peak_rss();
    let mut braid = Braid::new_on(device, &bc).map_err(e)?;
    braid.run_until_on(device, w).map_err(e)?;
    let (p0, d0, _) = counters(&braid);
    progress(&format!("{name}: warpgrid {tori} tori, timing {w}..{l}"));
    let t = Timer::start();
    braid.run_until_on(device, c).map_err(e)?;
    let (s1, c1) = t.stop();
    let at_check = Snapshot::of_braid(&braid.stats());
    let t = Timer::start();
    braid.run_until_on(device, l).map_err(e)?;
    let (s2, c2) = t.stop();
    let (p1, d1, pending) = counters(&braid);
    let result = result(
        super::warpgrid_label(device),
        tori,
        device.threads(),
        w,
        l,
        p1 - p0,
        d1 - d0,
        (s1 + s2, c1 + c2),
        pending,
    );
    let memory = if long {
        let peak_at_l = status_kib("VmHWM");
        let bytes_at_l = braid.memory_bytes();
        let long_len = l.saturating_mul(cfg.long_factor.max(1));
        let mid_len = l.saturating_mul((cfg.long_factor / 2).max(1)).max(l);
        progress(&format!(
            "{name}: warpgrid {tori} tori, long run to instant {long_len}"
        ));
        let t = Timer::start();
        braid.run_until_on(device, mid_len).map_err(e)?;
        let (s_mid, _) = t.stop();
        let (peak_at_mid, bytes_at_mid) = (status_kib("VmHWM"), braid.memory_bytes());
        let t = Timer::start();
        braid.run_until_on(device, long_len).map_err(e)?;
        let (s_end, _) = t.stop();
        let s = s_mid + s_end;
        let (p2, _, long_pending) = counters(&braid);
        Some(Memory {
            run_length: l,
            mid_run_length: mid_len,
            long_run_length: long_len,
            peak_rss_kib_at_l: peak_at_l,
            peak_rss_kib_at_mid: peak_at_mid,
            peak_rss_kib_at_long: status_kib("VmHWM"),
            peak_reset,
            braid_bytes_at_l: bytes_at_l,
            braid_bytes_at_mid: bytes_at_mid,
            braid_bytes_at_long: braid.memory_bytes(),
            long_run_events_per_s: if s > 0.0 { (p2 - p1) as f64 / s } else { 0.0 },
            long_run_pending: long_pending,
        })
    } else {
        None
    };
    Ok(KernelRun {
        result,
        at_check,
        memory,
    })
}

/// The reference braid of `tori` tori: warm-up, then the timed window to the check instant.
fn run_reference(
    cfg: &BraidBenchConfig,
    shape: Shape,
    tori: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<(SystemResult, Snapshot), String> {
    let name = shape.name();
    let bc = cfg.braid_config(shape, tori);
    let (w, c) = (cfg.warmup, cfg.check_instant());
    let e =
        |err: warpgrid_engine::braid::BraidError| format!("{name}: reference {tori} tori: {err}");
    progress(&format!(
        "{name}: heap reference {tori} tori, warm-up to instant {w}"
    ));
    let mut r = ReferenceBraid::new(&bc).map_err(e)?;
    r.run_until(w).map_err(e)?;
    let before = Snapshot::of_reference(&r.stats());
    progress(&format!(
        "{name}: heap reference {tori} tori, timing {w}..{c}"
    ));
    let t = Timer::start();
    r.run_until(c).map_err(e)?;
    let time = t.stop();
    let after = Snapshot::of_reference(&r.stats());
    let result = result(
        "heap reference",
        tori,
        1,
        w,
        c,
        after.events() - before.events(),
        after.drops() - before.drops(),
        time,
        after.pending.clone(),
    );
    Ok((result, after))
}

/// Both kernels must agree at the check instant: digests, event counters, exchanges.
fn compare(
    shape: Shape,
    tori: u32,
    instant: u32,
    k: &Snapshot,
    r: &Snapshot,
) -> Result<Check, String> {
    let hex = |d: &[u64]| d.iter().map(|d| format!("{d:016x}")).collect::<Vec<_>>();
    let what = format!(
        "{}: {tori} tori at instant {instant}: warpgrid and the heap reference differ",
        shape.name()
    );
    if k.digests != r.digests {
        return Err(format!(
            "{what}: digests {:?} against {:?}",
            hex(&k.digests),
            hex(&r.digests)
        ));
    }
    if (&k.processed, &k.dropped, &k.pending) != (&r.processed, &r.dropped, &r.pending) {
        return Err(format!(
            "{what}: processed {:?} / {:?}, dropped {:?} / {:?}, pending {:?} / {:?}",
            k.processed, r.processed, k.dropped, r.dropped, k.pending, r.pending
        ));
    }
    if (k.exchanges, k.boundary, k.corrective) != (r.exchanges, r.boundary, r.corrective) {
        return Err(format!(
            "{what}: exchanges {} / {}, boundary violations {} / {}, corrective events {} / {}",
            k.exchanges, r.exchanges, k.boundary, r.boundary, k.corrective, r.corrective
        ));
    }
    Ok(Check {
        instant,
        tori,
        digests: hex(&k.digests),
        events_processed: k.processed.clone(),
        events_dropped: k.dropped.clone(),
        exchanges: k.exchanges,
        boundary_violations: k.boundary,
        corrective_events: k.corrective,
    })
}

fn run_shape(
    device: &Device,
    cfg: &BraidBenchConfig,
    shape: Shape,
    progress: &mut dyn FnMut(&str),
) -> Result<WorkloadReport, String> {
    let three = run_kernel(device, cfg, shape, 3, true, progress)?;
    let one = run_kernel(device, cfg, shape, 1, false, progress)?;
    let (ref3, ref3_at) = run_reference(cfg, shape, 3, progress)?;
    let (ref1, ref1_at) = run_reference(cfg, shape, 1, progress)?;
    let c = cfg.check_instant();
    let checks = vec![
        compare(shape, 3, c, &three.at_check, &ref3_at)?,
        compare(shape, 1, c, &one.at_check, &ref1_at)?,
    ];
    let three_vs_reference = three.result.events_per_s / ref3.events_per_s;
    let bars = vec![
        Bar {
            what: "warpgrid 3 tori / heap reference 3 tori (events/s)".into(),
            value: three_vs_reference,
            bar: BAR_RATIO,
            met: three_vs_reference >= BAR_RATIO,
        },
        Bar {
            what: "warpgrid 3 tori (events/s)".into(),
            value: three.result.events_per_s,
            bar: BAR_EVENTS_PER_S,
            met: three.result.events_per_s >= BAR_EVENTS_PER_S,
        },
    ];
    Ok(WorkloadReport {
        workload: shape,
        description: cfg.describe(shape),
        three_vs_reference,
        one_vs_reference: one.result.events_per_s / ref1.events_per_s,
        three_vs_one: three.result.events_per_s / one.result.events_per_s,
        memory: three.memory.expect("the three-tori run measures memory"),
        systems: vec![three.result, one.result, ref3, ref1],
        bars,
        checks,
    })
}

/// Runs every workload of `cfg`: warpgrid (3 tori and 1) on the device's worker pool,
/// the reference on one thread; checks they agree; reports events/s, ratios, bars, memory.
pub fn run(
    device: &Device,
    cfg: &BraidBenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<BraidBenchReport, String> {
    if cfg.reference_measure == 0 || cfg.measure < cfg.reference_measure {
        return Err(format!(
            "bench braid: reference_measure must be in 1..=measure ({}), got {}",
            cfg.measure, cfg.reference_measure
        ));
    }
    let threads = device.threads();
    let mut workloads = Vec::new();
    for &shape in &cfg.shapes {
        workloads.push(run_shape(device, cfg, shape, &mut progress)?);
    }
    Ok(BraidBenchReport {
        bench: "braid",
        device: device.describe(),
        threads,
        dims: cfg.dims,
        max_pending: cfg.max_pending,
        warmup: cfg.warmup,
        measure: cfg.measure,
        reference_measure: cfg.reference_measure,
        interval: cfg.interval,
        bars_met: workloads.iter().all(|w| w.bars.iter().all(|b| b.met)),
        workloads,
    })
}

fn mib_of_kib(k: Option<u64>) -> String {
    k.map_or("unknown".into(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The report as a text table.
pub fn render(r: &BraidBenchReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let [x, y, z] = r.dims;
    let _ = writeln!(
        s,
        "braid: tori of {x}x{y}x{z}, max_pending {} per torus, exchange every {} instants; \
         warm-up {} instants, then {} timed (reference: {})",
        r.max_pending, r.interval, r.warmup, r.measure, r.reference_measure
    );
    let _ = writeln!(s, "device: {}", r.device);
    for w in &r.workloads {
        let _ = writeln!(s);
        let _ = writeln!(s, "workload {}: {}", w.workload.name(), w.description);
        let _ = writeln!(
            s,
            "{:<16} {:>4} {:>7} {:>9} {:>11} {:>10} {:>8} {:>11} {:>8} {:>5}",
            "system",
            "tori",
            "threads",
            "instants",
            "events",
            "dropped",
            "seconds",
            "M events/s",
            "ns/event",
            "CPUs"
        );
        for x in &w.systems {
            let _ = writeln!(
                s,
                "{:<16} {:>4} {:>7} {:>9} {:>11} {:>10} {:>8.3} {:>11.2} {:>8.2} {:>5.2}",
                x.system,
                x.tori,
                x.threads,
                format!("{}..{}", x.from, x.to),
                x.events,
                x.dropped,
                x.seconds,
                x.events_per_s / 1e6,
                x.ns_per_event,
                x.cpus_busy
            );
        }
        let w3 = &w.systems[0];
        let _ = writeln!(
            s,
            "population: pending per torus at instant {}: {:?}; {:.1}% of the window's \
             emissions dropped ({} dropped, {} processed)",
            w3.to,
            w3.pending,
            100.0 * w3.dropped as f64 / (w3.events + w3.dropped).max(1) as f64,
            w3.dropped,
            w3.events
        );
        for c in &w.checks {
            let _ = writeln!(
                s,
                "check, {} {} at instant {}: digests equal to the reference {:?}; processed {:?}, \
                 dropped {:?}, {} exchanges, {} boundary violations: equal",
                c.tori,
                if c.tori == 1 { "torus" } else { "tori" },
                c.instant,
                c.digests,
                c.events_processed,
                c.events_dropped,
                c.exchanges,
                c.boundary_violations
            );
        }
        let _ = writeln!(
            s,
            "ratios: warpgrid / reference  3 tori {:.1}x  1 torus {:.1}x;  3 tori / 1 torus {:.2}x",
            w.three_vs_reference, w.one_vs_reference, w.three_vs_one
        );
        for b in &w.bars {
            let (value, bar) = if b.bar >= 1e3 {
                (
                    format!("{:.1} M/s", b.value / 1e6),
                    format!("{:.0} M/s", b.bar / 1e6),
                )
            } else {
                (format!("{:.1}x", b.value), format!("{:.0}x", b.bar))
            };
            let _ = writeln!(
                s,
                "bar: {} = {value}, >= {bar}: {}",
                b.what,
                if b.met { "met" } else { "NOT met" }
            );
        }
        let m = &w.memory;
        let _ = writeln!(
            s,
            "memory (3 tori): peak RSS {} at instant {} (L), {} at {}, {} at {} ({}x L){}; \
             braid buffers {:.1} -> {:.1} -> {:.1} MiB; long run {:.2} M events/s, pending {:?}",
            mib_of_kib(m.peak_rss_kib_at_l),
            m.run_length,
            mib_of_kib(m.peak_rss_kib_at_mid),
            m.mid_run_length,
            mib_of_kib(m.peak_rss_kib_at_long),
            m.long_run_length,
            m.long_run_length / m.run_length.max(1),
            if m.peak_reset {
                ""
            } else {
                " (process peak, not reset)"
            },
            mib(m.braid_bytes_at_l),
            mib(m.braid_bytes_at_mid),
            mib(m.braid_bytes_at_long),
            m.long_run_events_per_s / 1e6,
            m.long_run_pending
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "bars (>= {BAR_RATIO:.0}x the heap reference and >= {:.0} M events/s, every workload): {}",
        BAR_EVENTS_PER_S / 1e6,
        if r.bars_met { "met" } else { "NOT met" }
    );
    s
}
