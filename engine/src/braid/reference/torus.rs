//! [`ReferenceTorus`]: one event at a time from a binary heap (the ancestor's design).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::super::config::{TorusConfig, time_limit};
use super::super::error::BraidError;
use super::super::event::Event;
use super::super::lattice::Lattice;
use super::super::torus::{Process, check_workload};
use super::super::workload::Workload;

/// A single-threaded, heap-ordered torus with the semantics of SPEC §3.1.
#[derive(Debug, Clone)]
pub struct ReferenceTorus {
    lattice: Lattice,
    max_delay: u32,
    max_pending: u64,
    limit: u32,
    processes: Vec<Option<Process>>,
    /// Per cell: `(to, delay)` in creation order.
    out: Vec<Vec<(u32, u32)>>,
    heap: BinaryHeap<Reverse<Event>>,
    now: u32,
    processed: u64,
    dropped: u64,
    emitted: Vec<Event>,
}

impl ReferenceTorus {
    /// As [`Torus::new`](crate::braid::Torus::new).
    pub fn new(config: &TorusConfig) -> Result<ReferenceTorus, BraidError> {
        ReferenceTorus::for_braid(config, 0)
    }

    /// As [`Torus::for_braid`](crate::braid::Torus::for_braid).
    pub fn for_braid(config: &TorusConfig, index: u32) -> Result<ReferenceTorus, BraidError> {
        config.validate()?;
        ReferenceTorus::from_workload(config, &Workload::build(config, index))
    }

    /// As [`Torus::from_workload`](crate::braid::Torus::from_workload).
    pub fn from_workload(
        config: &TorusConfig,
        workload: &Workload,
    ) -> Result<ReferenceTorus, BraidError> {
        config.validate()?;
        let lattice = Lattice::new(config.dims);
        check_workload(lattice, config.max_delay, workload)?;
        let cells = lattice.cells as usize;
        let mut processes = vec![None; cells];
        for &c in &workload.processes {
            processes[c as usize] = Some(Process::default());
        }
        let mut out: Vec<Vec<(u32, u32)>> = vec![Vec::new(); cells];
        for &(from, to, delay) in &workload.edges {
            let row = &mut out[from as usize];
            match row.iter_mut().find(|e| e.0 == to) {
                Some(e) => e.1 = delay,
                None => row.push((to, delay)),
            }
        }
        let mut torus = ReferenceTorus {
            lattice,
            max_delay: config.max_delay,
            max_pending: config.max_pending,
            limit: time_limit(config.max_delay),
            processes,
            out,
            heap: BinaryHeap::new(),
            now: 0,
            processed: 0,
            dropped: 0,
            emitted: Vec::new(),
        };
        if workload.injections.len() as u64 > config.max_pending {
            return Err(BraidError::Full {
                max_pending: config.max_pending,
                pending: 0,
                adding: workload.injections.len() as u64,
            });
        }
        for e in &workload.injections {
            torus.inject_at(e.dst, e.src, e.payload, e.t)?;
        }
        Ok(torus)
    }

    /// The lattice: dims and cell-id mapping.
    pub fn lattice(&self) -> Lattice {
        self.lattice
    }

    /// The first instant not yet processed.
    pub fn now(&self) -> u32 {
        self.now
    }

    /// Events processed since construction.
    pub fn events_processed(&self) -> u64 {
        self.processed
    }

    /// Events dropped at `max_pending` since construction.
    pub fn events_dropped(&self) -> u64 {
        self.dropped
    }

    /// Events pending now, at any instant.
    pub fn pending(&self) -> u64 {
        self.heap.len() as u64
    }

    /// Number of processes.
    pub fn processes(&self) -> u32 {
        self.processes.iter().filter(|p| p.is_some()).count() as u32
    }

    /// Number of edges (after replacement of repeated `(from, to)`).
    pub fn edges(&self) -> u32 {
        self.out.iter().map(|r| r.len() as u32).sum()
    }

    /// The process at `cell`, if any.
    pub fn process(&self, cell: u32) -> Option<Process> {
        self.processes.get(cell as usize).copied().flatten()
    }

    /// The out-edges of `cell` in creation order, as `(to, delay)`.
    pub fn out_edges(&self, cell: u32) -> Vec<(u32, u32)> {
        self.out.get(cell as usize).cloned().unwrap_or_default()
    }

    /// Every pending event, in total order.
    pub fn pending_events(&self) -> Vec<Event> {
        let mut v: Vec<Event> = self.heap.iter().map(|r| r.0).collect();
        v.sort();
        v
    }

    /// Injects `(now, dst, src, payload)`.
    pub fn inject(&mut self, dst: u32, src: u32, payload: i32) -> Result<(), BraidError> {
        self.inject_at(dst, src, payload, self.now)
    }

    /// Injects `(at, dst, src, payload)`: `InvalidCell` for a cell outside the lattice,
    /// `InvalidTime` if `at < now`, `TimeLimit` at or past `2^32 - max_delay`, `Full` at
    /// `max_pending`.
    pub fn inject_at(
        &mut self,
        dst: u32,
        src: u32,
        payload: i32,
        at: u32,
    ) -> Result<(), BraidError> {
        let cells = self.lattice.cells;
        for c in [dst, src] {
            if c >= cells {
                return Err(BraidError::InvalidCell {
                    cell: c as u64,
                    cells,
                });
            }
        }
        if at < self.now {
            return Err(BraidError::InvalidTime {
                at: at as u64,
                now: self.now,
            });
        }
        if at >= self.limit {
            return Err(BraidError::TimeLimit {
                instant: at as u64,
                limit: self.limit,
            });
        }
        if self.heap.len() as u64 >= self.max_pending {
            return Err(BraidError::Full {
                max_pending: self.max_pending,
                pending: self.pending(),
                adding: 1,
            });
        }
        self.heap.push(Reverse(Event {
            t: at,
            dst,
            src,
            payload,
        }));
        Ok(())
    }

    /// Injects `(now, cell, cell, payload)` or counts it dropped at `max_pending`.
    pub(crate) fn inject_or_drop(&mut self, cell: u32, payload: i32) -> bool {
        if self.heap.len() as u64 >= self.max_pending {
            self.dropped += 1;
            false
        } else {
            self.heap.push(Reverse(Event {
                t: self.now,
                dst: cell,
                src: cell,
                payload,
            }));
            true
        }
    }

    /// As [`Torus::step`](crate::braid::Torus::step): processes the earliest pending instant
    /// and returns it, or `None` with nothing pending.
    pub fn step(&mut self) -> Result<Option<u32>, BraidError> {
        let Some(&Reverse(first)) = self.heap.peek() else {
            return Ok(None);
        };
        if first.t as u64 + 1 >= self.limit as u64 {
            return Err(BraidError::TimeLimit {
                instant: first.t as u64 + 1,
                limit: self.limit,
            });
        }
        self.process_instant(first.t);
        Ok(Some(first.t))
    }

    /// As [`Torus::run_until`](crate::braid::Torus::run_until): processes every instant below
    /// `t`, then sets `now = max(now, t)`.
    pub fn run_until(&mut self, t: u32) -> Result<(), BraidError> {
        if t >= self.limit {
            return Err(BraidError::TimeLimit {
                instant: t as u64,
                limit: self.limit,
            });
        }
        while let Some(&Reverse(first)) = self.heap.peek() {
            if first.t >= t {
                break;
            }
            self.process_instant(first.t);
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Pops and processes every event at instant `t` one at a time, then applies the capacity
    /// rule to what they emitted and sets `now = t + 1`. Nothing may be pending before `t`.
    pub(crate) fn process_instant(&mut self, t: u32) {
        while let Some(&Reverse(e)) = self.heap.peek() {
            if e.t != t {
                break;
            }
            self.heap.pop();
            self.process_event(e);
        }
        let room = (self.max_pending - self.heap.len() as u64) as usize;
        if self.emitted.len() > room {
            self.emitted.sort_unstable();
            self.dropped += (self.emitted.len() - room) as u64;
            self.emitted.truncate(room);
        }
        for e in self.emitted.drain(..) {
            self.heap.push(Reverse(e));
        }
        self.now = t + 1;
    }

    fn process_event(&mut self, e: Event) {
        let p = e.payload;
        let out = match &mut self.processes[e.dst as usize] {
            Some(proc_) => {
                proc_.received = proc_.received.wrapping_add(1);
                let old = proc_.state;
                proc_.state = (old.wrapping_mul(31).wrapping_add(p as u32)) ^ (old >> 3);
                proc_.acc = proc_.acc.wrapping_add(p);
                (proc_.state & 0xFF) as i32 + 1
            }
            None => p.wrapping_add(1),
        };
        for edge in &mut self.out[e.dst as usize] {
            edge.1 = if p > 0 {
                edge.1.saturating_sub(1).max(1)
            } else {
                (edge.1 + 1).min(self.max_delay)
            };
            self.emitted.push(Event {
                t: e.t + edge.1,
                dst: edge.0,
                src: e.dst,
                payload: out,
            });
        }
        self.processed += 1;
    }

    /// Earliest pending instant.
    pub fn earliest_pending(&self) -> Option<u32> {
        self.heap.peek().map(|r| r.0.t)
    }

    /// Wrapping sum of all acc.
    pub fn acc_sum(&self) -> i32 {
        self.processes
            .iter()
            .flatten()
            .fold(0i32, |s, p| s.wrapping_add(p.acc))
    }

    /// The digest of SPEC §3.1, from the bytes laid out one field after the other.
    pub fn digest(&self) -> u64 {
        let mut bytes = Vec::new();
        let mut put = |v: u32| bytes.extend_from_slice(&v.to_le_bytes());
        put(self.now);
        put(self.processed as u32);
        put(self.dropped as u32);
        for (c, p) in self.processes.iter().enumerate() {
            if let Some(p) = p {
                put(c as u32);
                put(p.state);
                put(p.acc as u32);
                put(p.received);
            }
        }
        for (c, row) in self.out.iter().enumerate() {
            for &(to, delay) in row {
                put(c as u32);
                put(to);
                put(delay);
            }
        }
        for e in self.pending_events() {
            put(e.t);
            put(e.dst);
            put(e.src);
            put(e.payload as u32);
        }
        fnv1a(&bytes)
    }
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
