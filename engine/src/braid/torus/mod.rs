//! One torus (SPEC §3.1): a lattice discrete-event kernel that processes a whole instant at
//! a time, in parallel over destination cells, bit-identical to the one-event-at-a-time order.
//!
//! [`Torus`] owns the clock, the counters and the public operations (`inject`, `step`,
//! `run_until`, `digest`). The rest is one module per job: [`topology`] (processes and
//! edges), [`calendar`] (pending events in per-instant buckets), [`sort`] (ordering an
//! instant) and [`instant`] (processing one instant, with its reusable buffers).

mod calendar;
mod instant;
mod sort;
mod topology;

use super::config::{TorusConfig, time_limit};
use super::error::BraidError;
use super::event::{Event, Narrow, Packed, Wide};
use super::fnv::Fnv1a;
use super::latency::LatencyHistogram;
use super::lattice::Lattice;
use super::workload::Workload;
use calendar::Calendar;
use instant::Scratch;
use topology::Topology;

/// Pending events and the buffers that process them, in the event form the lattice allows:
/// 8 bytes up to 2^16 cells, 12 above.
#[derive(Debug, Clone)]
enum Store {
    Narrow(Calendar<Narrow>, Scratch<Narrow>),
    Wide(Calendar<Wide>, Scratch<Wide>),
}

impl Store {
    fn new(cells: u32, max_delay: u32) -> Store {
        if cells <= Narrow::MAX_CELLS {
            Store::Narrow(Calendar::new(cells, max_delay), Scratch::default())
        } else {
            Store::Wide(Calendar::new(cells, max_delay), Scratch::default())
        }
    }
}

/// Runs `$body` with `$cal` and `$scratch` bound to the store's calendar and scratch, of
/// whichever event form.
macro_rules! on_store {
    ($store:expr, $cal:ident, $scratch:ident => $body:expr) => {
        match $store {
            Store::Narrow($cal, $scratch) => $body,
            Store::Wide($cal, $scratch) => $body,
        }
    };
}

/// The state of the process at one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Process {
    /// Hash chain of the payloads received: `state = (state * 31 + payload) ^ (state >> 3)`,
    /// wrapping, per event in order.
    pub state: u32,
    /// Wrapping sum of the payloads received.
    pub acc: i32,
    /// Events received (wrapping).
    pub received: u32,
}

/// Counters and digest of one torus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TorusStats {
    /// The torus clock: the first instant not yet processed.
    pub now: u32,
    /// Events processed since construction.
    pub events_processed: u64,
    /// Events dropped at `max_pending` since construction.
    pub events_dropped: u64,
    /// Events pending now.
    pub pending: u64,
    /// Number of processes.
    pub processes: u32,
    /// Number of edges (after replacement of repeated `(from, to)`).
    pub edges: u32,
    /// [`Torus::digest`].
    pub digest: u64,
}

/// One lattice discrete-event kernel. Build it from a [`TorusConfig`] (or a [`Workload`]),
/// then [`inject`](Torus::inject), [`step`](Torus::step) and [`run_until`](Torus::run_until).
/// Instants are processed on the current rayon pool; the thread count never changes results.
#[derive(Debug, Clone)]
pub struct Torus {
    lattice: Lattice,
    max_delay: u32,
    max_pending: u64,
    limit: u32,
    topo: Topology,
    store: Store,
    now: u32,
    events_processed: u64,
    events_dropped: u64,
    /// Wall time of each processed instant (statistics only).
    latency: LatencyHistogram,
}

impl Torus {
    /// A torus built by the config's builders (as torus 0 of a braid).
    pub fn new(config: &TorusConfig) -> Result<Torus, BraidError> {
        Torus::for_braid(config, 0)
    }

    /// Torus `index` of a braid: each random builder is seeded with `seed + index`.
    pub fn for_braid(config: &TorusConfig, index: u32) -> Result<Torus, BraidError> {
        config.validate()?;
        Torus::from_workload(config, &Workload::build(config, index))
    }

    /// A torus with the config's dims and capacities (its builders are ignored) and the given
    /// workload. Cells must be below `X·Y·Z`, delays in `1..=max_delay`, injections at most
    /// `max_pending`.
    pub fn from_workload(config: &TorusConfig, workload: &Workload) -> Result<Torus, BraidError> {
        config.validate()?;
        let lattice = config.lattice();
        check_workload(lattice, config.max_delay, workload)?;
        let mut torus = Torus {
            lattice,
            max_delay: config.max_delay,
            max_pending: config.max_pending,
            limit: time_limit(config.max_delay),
            topo: Topology::new(lattice, workload),
            store: Store::new(lattice.cells, config.max_delay),
            now: 0,
            events_processed: 0,
            events_dropped: 0,
            latency: LatencyHistogram::new(),
        };
        torus.inject_events(&workload.injections)?;
        Ok(torus)
    }

    /// The lattice: dims and cell-id mapping.
    pub fn lattice(&self) -> Lattice {
        self.lattice
    }

    /// Extents `(X, Y, Z)`.
    pub fn dims(&self) -> [u32; 3] {
        self.lattice.dims
    }

    /// Number of cells, `X·Y·Z`.
    pub fn cells(&self) -> u32 {
        self.lattice.cells
    }

    /// Largest edge delay, in instants.
    pub fn max_delay(&self) -> u32 {
        self.max_delay
    }

    /// Most events pending at once.
    pub fn max_pending(&self) -> u64 {
        self.max_pending
    }

    /// The first instant not yet processed.
    pub fn now(&self) -> u32 {
        self.now
    }

    /// Events processed since construction.
    pub fn events_processed(&self) -> u64 {
        self.events_processed
    }

    /// Events dropped at `max_pending` (emissions past the capacity) since construction.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Events pending now, at any instant.
    pub fn pending(&self) -> u64 {
        on_store!(&self.store, cal, _s => cal.pending)
    }

    /// Bytes of capacity held by the event buffers: the pending events' calendar and the
    /// buffers that process an instant. They grow until the workload's shape settles and are
    /// reused from then on; `max_pending` bounds the calendar, one instant's emissions bound
    /// the rest.
    pub fn buffer_bytes(&self) -> u64 {
        on_store!(&self.store, cal, scratch => cal.buffer_bytes() + scratch.buffer_bytes())
    }

    /// Bytes of the processes and edges (fixed at construction).
    pub fn topology_bytes(&self) -> u64 {
        self.topo.bytes()
    }

    /// Number of processes.
    pub fn processes(&self) -> u32 {
        self.topo.processes
    }

    /// Number of edges (after replacement of repeated `(from, to)`).
    pub fn edges(&self) -> u32 {
        self.topo.edges()
    }

    /// The process at `cell`, if any.
    pub fn process(&self, cell: u32) -> Option<Process> {
        let c = cell as usize;
        (c < self.topo.has_process.len() && self.topo.has_process[c]).then(|| Process {
            state: self.topo.state[c],
            acc: self.topo.acc[c],
            received: self.topo.received[c],
        })
    }

    /// The out-edges of `cell` in creation order, as `(to, delay)`.
    pub fn out_edges(&self, cell: u32) -> Vec<(u32, u32)> {
        if cell >= self.lattice.cells {
            return Vec::new();
        }
        self.topo
            .row(cell)
            .map(|i| (self.topo.edge_to[i], self.topo.edge_delay[i] as u32))
            .collect()
    }

    /// Wall time of each instant this torus processed (statistics only).
    pub fn instant_latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    /// Wrapping sum of every process's acc.
    pub fn acc_sum(&self) -> i32 {
        self.topo.acc_sum()
    }

    /// Every pending event, in total order.
    pub fn pending_events(&self) -> Vec<Event> {
        on_store!(&self.store, cal, _s => cal.events(self.now))
    }

    /// The earliest instant with a pending event.
    pub fn earliest_pending(&self) -> Option<u32> {
        on_store!(&self.store, cal, _s => cal.earliest(self.now))
    }

    /// Injects `(now, dst, src, payload)`.
    pub fn inject(&mut self, dst: u32, src: u32, payload: i32) -> Result<(), BraidError> {
        self.inject_at(dst, src, payload, self.now)
    }

    /// Injects `(at, dst, src, payload)`: `InvalidTime` if `at < now`, `Full` at
    /// `max_pending`, `TimeLimit` at or past `2^32 - max_delay`.
    pub fn inject_at(
        &mut self,
        dst: u32,
        src: u32,
        payload: i32,
        at: u32,
    ) -> Result<(), BraidError> {
        self.inject_events(&[Event {
            t: at,
            dst,
            src,
            payload,
        }])
    }

    /// Injects all the events or none: every one is checked first.
    pub fn inject_events(&mut self, events: &[Event]) -> Result<(), BraidError> {
        for e in events {
            self.check_cell(e.dst)?;
            self.check_cell(e.src)?;
            if e.t < self.now {
                return Err(BraidError::InvalidTime {
                    at: e.t as u64,
                    now: self.now,
                });
            }
            if e.t >= self.limit {
                return Err(BraidError::TimeLimit {
                    instant: e.t as u64,
                    limit: self.limit,
                });
            }
        }
        let adding = events.len() as u64;
        if self.pending() + adding > self.max_pending {
            return Err(BraidError::Full {
                max_pending: self.max_pending,
                pending: self.pending(),
                adding,
            });
        }
        for e in events {
            let now = self.now;
            on_store!(&mut self.store, cal, _s => cal.push(now, e.t, Packed::new(e.dst, e.src, e.payload)));
        }
        Ok(())
    }

    /// Processes the instant `now` (jumping `now` to the earliest pending instant first if
    /// nothing is pending at `now`) and sets `now` to that instant + 1. With nothing pending
    /// it does nothing. Returns the instant processed.
    pub fn step(&mut self) -> Result<Option<u32>, BraidError> {
        let Some(t) = self.earliest_pending() else {
            return Ok(None);
        };
        self.check_end(t as u64 + 1)?;
        self.process_instant(t);
        Ok(Some(t))
    }

    /// Steps while the earliest pending instant is below `t`, then sets `now = max(now, t)`:
    /// only instants below `t` are processed. `t` must be below `2^32 - max_delay`.
    pub fn run_until(&mut self, t: u32) -> Result<(), BraidError> {
        self.check_end(t as u64)?;
        while let Some(e) = self.earliest_pending() {
            if e >= t {
                break;
            }
            self.process_instant(e);
        }
        self.jump(t);
        Ok(())
    }

    /// FNV-1a 64 over the state, exactly as SPEC §3.1 lists it.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv1a::new();
        h.u32(self.now);
        h.u32(self.events_processed as u32);
        h.u32(self.events_dropped as u32);
        let t = &self.topo;
        for c in 0..self.lattice.cells {
            let i = c as usize;
            if t.has_process[i] {
                h.u32(c);
                h.u32(t.state[i]);
                h.i32(t.acc[i]);
                h.u32(t.received[i]);
            }
        }
        for c in 0..self.lattice.cells {
            for i in t.row(c) {
                h.u32(c);
                h.u32(t.edge_to[i]);
                h.u32(t.edge_delay[i] as u32);
            }
        }
        for e in self.pending_events() {
            h.u32(e.t);
            h.u32(e.dst);
            h.u32(e.src);
            h.i32(e.payload);
        }
        h.finish()
    }

    /// Counters and digest as of now.
    pub fn stats(&self) -> TorusStats {
        TorusStats {
            now: self.now,
            events_processed: self.events_processed,
            events_dropped: self.events_dropped,
            pending: self.pending(),
            processes: self.processes(),
            edges: self.edges(),
            digest: self.digest(),
        }
    }

    /// The arrays the device backends keep resident (`braid::gpu`): presence, process state
    /// and the edge rows.
    pub(crate) fn device_view(&self) -> DeviceView<'_> {
        let t = &self.topo;
        DeviceView {
            has_process: &t.has_process,
            state: &t.state,
            acc: &t.acc,
            received: &t.received,
            edge_start: &t.edge_start,
            edge_to: &t.edge_to,
            edge_delay: &t.edge_delay,
        }
    }

    /// Replaces the mutable state with what a device computed: the clock, the counters,
    /// process state (per cell), edge delays (in row order) and the pending events (each at
    /// or after `now`). The buffers that process instants are rebuilt empty.
    pub(crate) fn restore(&mut self, image: RestoreImage<'_>) {
        let t = &mut self.topo;
        t.state.copy_from_slice(image.state);
        t.acc.copy_from_slice(image.acc);
        t.received.copy_from_slice(image.received);
        for (d, &v) in t.edge_delay.iter_mut().zip(image.delays) {
            *d = v as u16;
        }
        self.now = image.now;
        self.events_processed = image.events_processed;
        self.events_dropped = image.events_dropped;
        self.store = Store::new(self.lattice.cells, self.max_delay);
        let now = self.now;
        on_store!(&mut self.store, cal, _s => {
            for e in image.events {
                cal.push(now, e.t, Packed::new(e.dst, e.src, e.payload));
            }
        });
    }

    /// Records `count` processed instants of `ns_each` nanoseconds (statistics only).
    pub(crate) fn record_instants(&mut self, count: u64, ns_each: u64) {
        for _ in 0..count {
            self.latency.record(ns_each);
        }
    }

    /// Processes instant `t >= now` (nothing may be pending before it) if anything is
    /// pending there, then sets `now = t + 1`. Returns the events processed.
    pub(crate) fn process_instant(&mut self, t: u32) -> u64 {
        self.jump(t);
        let start = std::time::Instant::now();
        let (topo, max_delay, max_pending) = (&mut self.topo, self.max_delay, self.max_pending);
        let out = on_store!(&mut self.store, cal, scratch => instant::process_instant(topo, cal, scratch, t, max_delay, max_pending));
        if out.processed > 0 {
            self.latency.record(start.elapsed().as_nanos() as u64);
        }
        self.events_processed += out.processed;
        self.events_dropped += out.dropped;
        self.now = t + 1;
        on_store!(&mut self.store, cal, _s => cal.advance(self.now));
        out.processed
    }

    /// Moves the clock forward to `t` (nothing may be pending before `t`).
    pub(crate) fn jump(&mut self, t: u32) {
        if t > self.now {
            self.now = t;
            on_store!(&mut self.store, cal, _s => cal.advance(t));
        }
    }

    /// Injects `(now, cell, cell, payload)`, or counts it dropped at `max_pending`.
    /// Returns whether it was injected.
    pub(crate) fn inject_or_drop(&mut self, cell: u32, payload: i32) -> bool {
        if self.pending() >= self.max_pending {
            self.events_dropped += 1;
            false
        } else {
            let now = self.now;
            on_store!(&mut self.store, cal, _s => cal.push(now, now, Packed::new(cell, cell, payload)));
            true
        }
    }

    fn check_cell(&self, cell: u32) -> Result<(), BraidError> {
        if cell < self.lattice.cells {
            Ok(())
        } else {
            Err(BraidError::InvalidCell {
                cell: cell as u64,
                cells: self.lattice.cells,
            })
        }
    }

    fn check_end(&self, end: u64) -> Result<(), BraidError> {
        if end < self.limit as u64 {
            Ok(())
        } else {
            Err(BraidError::TimeLimit {
                instant: end,
                limit: self.limit,
            })
        }
    }
}

/// Read-only views of a torus's topology and process state (see [`Torus::device_view`]).
pub(crate) struct DeviceView<'a> {
    pub has_process: &'a [bool],
    pub state: &'a [u32],
    pub acc: &'a [i32],
    pub received: &'a [u32],
    pub edge_start: &'a [u32],
    pub edge_to: &'a [u32],
    pub edge_delay: &'a [u16],
}

/// A torus's mutable state as a device hands it back (see [`Torus::restore`]).
#[derive(Clone, Copy)]
pub(crate) struct RestoreImage<'a> {
    pub now: u32,
    pub events_processed: u64,
    pub events_dropped: u64,
    pub state: &'a [u32],
    pub acc: &'a [i32],
    pub received: &'a [u32],
    pub delays: &'a [u32],
    pub events: &'a [Event],
}

/// Checks a workload against the lattice: cells in range, delays in `1..=max_delay`.
pub(crate) fn check_workload(
    lattice: Lattice,
    max_delay: u32,
    workload: &Workload,
) -> Result<(), BraidError> {
    let cells = lattice.cells;
    let bad_cell = |c: u32| BraidError::InvalidCell {
        cell: c as u64,
        cells,
    };
    if let Some(&c) = workload.processes.iter().find(|&&c| c >= cells) {
        return Err(bad_cell(c));
    }
    for &(from, to, delay) in &workload.edges {
        if from >= cells {
            return Err(bad_cell(from));
        }
        if to >= cells {
            return Err(bad_cell(to));
        }
        if !(1..=max_delay).contains(&delay) {
            return Err(BraidError::InvalidConfig {
                field: "edges".to_string(),
                reason: format!(
                    "edge {from} -> {to} has delay {delay}, expected 1..=max_delay = 1..={max_delay}"
                ),
            });
        }
    }
    Ok(())
}
