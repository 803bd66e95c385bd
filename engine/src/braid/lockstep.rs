//! [`Braid`] (SPEC §3.2): T tori advanced in lockstep on a shared clock, in parallel (rayon
//! over tori, and inside each torus over cells), with the exchange schedule, projections
//! applied around the braid, violation counting, the adaptive interval and the statistics.
//!
//! Schedule: the braid's next instant is the earliest pending instant of any torus, capped at
//! the next exchange `last_exchange + interval` and at the run's target. When the clock
//! reaches the next exchange (instants before it processed, that instant not yet) the braid
//! exchanges, even when nothing is pending; a run to `N` stops at `N` before exchanging there.
//!
//! Execution: between two exchanges the tori share nothing, so each runs the whole segment
//! on its own (`Torus::run_until(next exchange)`, tori in parallel, cells in parallel inside
//! each). The result is exactly the lockstep order of SPEC §3.2 (instant t everywhere before
//! t + 1 anywhere), which only an exchange could observe; the threads just never wait for
//! each other at every instant.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use rayon::prelude::*;

use super::adaptive::IntervalControl;
use super::config::{BraidConfig, time_limit};
use super::convergence::ConvergenceTracker;
use super::error::BraidError;
use super::latency::LatencyHistogram;
use super::projection::{Application, Projection};
use super::resident::{self, BraidDevice, Resident};
use super::stats::{BraidStats, LatencyStats};
use super::torus::Torus;
use super::workload::Workload;
use super::{cuda, gpu};
use crate::backend::Device;

/// Exchange counters.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    exchanges: u64,
    boundary: u64,
    global: u64,
    hash_mismatches: u64,
    corrective: u64,
    corrective_dropped: u64,
    critical: u64,
}

/// A braid of tori. Build with [`Braid::new`], advance with [`Braid::run_until`] (or
/// [`Braid::run`] to the configured `instants`), read [`Braid::stats`].
#[derive(Debug, Clone)]
pub struct Braid {
    config: BraidConfig,
    tori: Vec<Torus>,
    now: u32,
    last_exchange: u32,
    limit: u32,
    control: IntervalControl,
    projections: Vec<Projection>,
    counters: Counters,
    interval_history: Vec<u32>,
    convergence: ConvergenceTracker,
    /// Tori with instants left in the current segment (reused).
    ready: VecDeque<usize>,
    /// Wall time spent in segments that processed events, and those events.
    busy_ns: u64,
    exchange_latency: LatencyHistogram,
    timed_events: u64,
    /// The tori resident on a GPU, when the last run was there (the host tori are read back
    /// after every such run, so they are always current).
    gpu: GpuSlot,
}

/// Device-resident state of a braid. A clone starts without one (it uploads its own host
/// tori when it next runs on a device).
#[derive(Debug, Default)]
struct GpuSlot(Option<Box<OnGpu>>);

/// The tori resident on one GPU backend.
#[derive(Debug)]
enum OnGpu {
    Wgpu(Resident<gpu::WgpuBraid>),
    Cuda(Resident<cuda::CudaBraid>),
}

impl Clone for GpuSlot {
    fn clone(&self) -> Self {
        GpuSlot(None)
    }
}

/// The host-side schedule and statistics, saved so a failed device run can put them back.
#[derive(Clone)]
struct Saved {
    now: u32,
    last_exchange: u32,
    control: IntervalControl,
    counters: Counters,
    history: usize,
    convergence: ConvergenceTracker,
    busy_ns: u64,
    exchange_latency: LatencyHistogram,
    timed_events: u64,
}

impl Braid {
    /// Validates the config and builds its tori (torus `i` seeds every random builder with
    /// `seed + i`).
    pub fn new(config: &BraidConfig) -> Result<Braid, BraidError> {
        config.validate()?;
        let tori = (0..config.tori)
            .into_par_iter()
            .map(|i| Torus::for_braid(&config.torus, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Braid::from_tori(config, tori))
    }

    /// A braid whose torus `i` starts with `workloads[i]` (the config's builders are
    /// ignored); there must be exactly `config.tori` workloads.
    pub fn from_workloads(
        config: &BraidConfig,
        workloads: &[Workload],
    ) -> Result<Braid, BraidError> {
        config.validate()?;
        config.check_workloads(workloads.len())?;
        let tori = workloads
            .iter()
            .map(|w| Torus::from_workload(&config.torus, w))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Braid::from_tori(config, tori))
    }

    fn from_tori(config: &BraidConfig, tori: Vec<Torus>) -> Braid {
        Braid {
            config: config.clone(),
            projections: vec![Projection::default(); tori.len()],
            tori,
            now: 0,
            last_exchange: 0,
            limit: time_limit(config.torus.max_delay),
            control: IntervalControl::new(
                config.interval,
                config.adaptive,
                config.min_interval,
                config.max_interval,
            ),
            counters: Counters::default(),
            interval_history: vec![config.interval],
            convergence: ConvergenceTracker::default(),
            ready: VecDeque::with_capacity(config.tori as usize),
            busy_ns: 0,
            exchange_latency: LatencyHistogram::new(),
            timed_events: 0,
            gpu: GpuSlot::default(),
        }
    }

    /// The settings the braid was built with.
    pub fn config(&self) -> &BraidConfig {
        &self.config
    }

    /// The shared clock: the first instant not yet processed.
    pub fn now(&self) -> u32 {
        self.now
    }

    /// The current exchange interval, in instants.
    pub fn interval(&self) -> u32 {
        self.control.interval()
    }

    /// The instant of the last exchange (0 before the first).
    pub fn last_exchange(&self) -> u32 {
        self.last_exchange
    }

    /// The tori, in index order.
    pub fn tori(&self) -> &[Torus] {
        &self.tori
    }

    /// Bytes of capacity held by the tori's event buffers ([`Torus::buffer_bytes`]) plus
    /// their processes and edges: the braid's own memory, apart from the allocator's slack
    /// and the statistics (`interval_history` grows by 4 bytes per exchange).
    pub fn memory_bytes(&self) -> u64 {
        self.tori
            .iter()
            .map(|t| t.buffer_bytes() + t.topology_bytes())
            .sum()
    }

    /// Digest of every torus, in order.
    pub fn digests(&self) -> Vec<u64> {
        self.tori.iter().map(Torus::digest).collect()
    }

    /// Runs to the configured `instants`.
    pub fn run(&mut self) -> Result<(), BraidError> {
        self.run_until(self.config.instants)
    }

    /// [`Braid::new`] on `device`: on the CPU backend, on its workers (its thread pool)
    /// rather than the caller's rayon pool; on wgpu or CUDA, built on the host and uploaded
    /// (a device too small for it is an error naming the limit).
    pub fn new_on(device: &Device, config: &BraidConfig) -> Result<Braid, BraidError> {
        match device {
            Device::Cpu(d) => d.install(|| Braid::new(config)),
            Device::Wgpu(g) => {
                let mut braid = Braid::new(config)?;
                let r = gpu::upload(g, &braid.tori, braid.now)?;
                braid.gpu.0 = Some(Box::new(OnGpu::Wgpu(r)));
                Ok(braid)
            }
            Device::Cuda(c) => {
                let mut braid = Braid::new(config)?;
                let r = cuda::upload(c, &braid.tori, braid.now)?;
                braid.gpu.0 = Some(Box::new(OnGpu::Cuda(r)));
                Ok(braid)
            }
        }
    }

    /// [`Braid::run_until`] on `device`: on the CPU backend, on its workers rather than the
    /// caller's rayon pool (the thread count never changes results); on wgpu or CUDA, with
    /// the tori resident on the device (uploaded on first use, kept there between calls,
    /// read back into [`Braid::tori`] at the end of each call). Results are bit-identical to
    /// the CPU's. A call that fails leaves the braid as it was before the call.
    pub fn run_until_on(&mut self, device: &Device, target: u32) -> Result<(), BraidError> {
        match device {
            Device::Cpu(d) => d.install(|| self.run_until(target)),
            Device::Wgpu(g) => self.run_until_gpu(
                target,
                |slot| match slot {
                    OnGpu::Wgpu(r) if r.device().on(g) => Some(r),
                    _ => None,
                },
                |tori, now| gpu::upload(g, tori, now),
                OnGpu::Wgpu,
            ),
            Device::Cuda(c) => self.run_until_gpu(
                target,
                |slot| match slot {
                    OnGpu::Cuda(r) if r.device().on(c) => Some(r),
                    _ => None,
                },
                |tori, now| cuda::upload(c, tori, now),
                OnGpu::Cuda,
            ),
        }
    }

    /// Processes every instant below `target` on every torus, exchanging on schedule, and
    /// sets the clock to `max(now, target)`. `target` must be below `2^32 - max_delay`.
    pub fn run_until(&mut self, target: u32) -> Result<(), BraidError> {
        // The host tori move on: a device copy would be stale.
        self.gpu.0 = None;
        if target >= self.limit {
            return Err(BraidError::TimeLimit {
                instant: target as u64,
                limit: self.limit,
            });
        }
        while self.now < target {
            let next_exchange = self.last_exchange as u64 + self.control.interval() as u64;
            if self.now as u64 == next_exchange {
                self.exchange();
                continue;
            }
            let end = next_exchange.min(target as u64) as u32;
            self.run_segment(end);
        }
        Ok(())
    }

    /// Runs every torus to `end` (an exchange instant or the target; no exchange falls
    /// inside). Tori share nothing between exchanges, so each one advancing through the
    /// segment on its own gives exactly the lockstep result, without a barrier at every
    /// instant. The busy tori are dealt round-robin, one instant at a time, to as many
    /// workers as there are threads: with 3 tori on 2 threads no thread waits for the third
    /// torus at the end of each instant or of the segment.
    fn run_segment(&mut self, end: u32) {
        let start = Instant::now();
        let before: u64 = self.tori.iter().map(Torus::events_processed).sum();
        self.ready.clear();
        for (i, torus) in self.tori.iter().enumerate() {
            if torus.earliest_pending().is_some_and(|t| t < end) {
                self.ready.push_back(i);
            }
        }
        let workers = rayon::current_num_threads().min(self.ready.len());
        if workers > 1 {
            let mut tori = self.tori.iter_mut();
            let slots: [Option<Mutex<&mut Torus>>; BraidConfig::MAX_TORI as usize] =
                std::array::from_fn(|_| tori.next().map(Mutex::new));
            let ready = Mutex::new(std::mem::take(&mut self.ready));
            rayon::scope(|s| {
                for _ in 0..workers {
                    s.spawn(|_| round_robin(&slots, &ready, end));
                }
            });
            self.ready = ready.into_inner().unwrap_or_else(PoisonError::into_inner);
        }
        for torus in &mut self.tori {
            torus
                .run_until(end)
                .expect("segments end below the time limit");
        }
        let events = self.tori.iter().map(Torus::events_processed).sum::<u64>() - before;
        if events > 0 {
            self.busy_ns += start.elapsed().as_nanos() as u64;
            self.timed_events += events;
        }
        self.now = end;
    }

    /// Extracts every projection, applies `P_i` to torus `(i + 1) mod T` in sender order,
    /// counts, and adapts the interval.
    fn exchange(&mut self) {
        let start = Instant::now();
        self.projections
            .par_iter_mut()
            .zip(self.tori.par_iter())
            .enumerate()
            .for_each(|(i, (p, torus))| p.fill(torus, i as u32));
        let count = self.tori.len();
        let mut apps = Vec::with_capacity(count);
        for sender in 0..count {
            let receiver = (sender + 1) % count;
            apps.push(self.projections[sender].apply(
                &mut self.tori[receiver],
                self.config.tol_boundary,
                self.config.tol_events,
            ));
        }
        self.finish_exchange(&apps, start);
    }

    /// Counts the applications (in sender order), adapts the interval, records the exchange.
    fn finish_exchange(&mut self, apps: &[Application], start: Instant) {
        let mut violating = false;
        for app in apps {
            self.count(app);
            self.control.record(app.violated());
            violating |= app.violated();
        }
        self.counters.exchanges += 1;
        self.last_exchange = self.now;
        let interval = self.control.adapt();
        self.interval_history.push(interval);
        self.convergence.record(violating);
        self.exchange_latency
            .record(start.elapsed().as_nanos() as u64);
    }

    fn save(&self) -> Saved {
        Saved {
            now: self.now,
            last_exchange: self.last_exchange,
            control: self.control.clone(),
            counters: self.counters,
            history: self.interval_history.len(),
            convergence: self.convergence.clone(),
            busy_ns: self.busy_ns,
            exchange_latency: self.exchange_latency.clone(),
            timed_events: self.timed_events,
        }
    }

    fn restore(&mut self, s: Saved) {
        self.now = s.now;
        self.last_exchange = s.last_exchange;
        self.control = s.control;
        self.counters = s.counters;
        self.interval_history.truncate(s.history);
        self.convergence = s.convergence;
        self.busy_ns = s.busy_ns;
        self.exchange_latency = s.exchange_latency;
        self.timed_events = s.timed_events;
    }

    /// [`Braid::run_until`] with the tori on a GPU: the resident copy `reuse` keeps from
    /// the slot (one on this device), else the tori as `upload` puts them there; `keep`
    /// stores it back. On failure the schedule and statistics go back to where they were
    /// and the device copy is dropped (the host tori were not touched: they are read back
    /// only when the run completes).
    fn run_until_gpu<D: BraidDevice>(
        &mut self,
        target: u32,
        reuse: impl FnOnce(OnGpu) -> Option<Resident<D>>,
        upload: impl FnOnce(&[Torus], u32) -> Result<Resident<D>, BraidError>,
        keep: impl FnOnce(Resident<D>) -> OnGpu,
    ) -> Result<(), BraidError> {
        if target >= self.limit {
            return Err(BraidError::TimeLimit {
                instant: target as u64,
                limit: self.limit,
            });
        }
        let saved = self.save();
        let resident = match self.gpu.0.take().and_then(|slot| reuse(*slot)) {
            Some(r) => Ok(r),
            None => upload(&self.tori, self.now),
        };
        let mut timings = Vec::new();
        let result = resident.and_then(|mut r| {
            self.run_device(&mut r, target, &mut timings)?;
            r.download(self.now, &mut self.tori)?;
            Ok(r)
        });
        match result {
            Ok(r) => {
                self.gpu.0 = Some(Box::new(keep(r)));
                for (instants, ns) in timings {
                    for (torus, &count) in self.tori.iter_mut().zip(&instants) {
                        torus.record_instants(count, ns);
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.restore(saved);
                Err(e)
            }
        }
    }

    /// Runs the schedule on the device; `timings` collects, per segment, the instants each
    /// torus processed and the wall time per instant (recorded once the run succeeds).
    fn run_device<D: BraidDevice>(
        &mut self,
        res: &mut Resident<D>,
        target: u32,
        timings: &mut Vec<(Vec<u64>, u64)>,
    ) -> Result<(), BraidError> {
        while self.now < target {
            let next_exchange = self.last_exchange as u64 + self.control.interval() as u64;
            if self.now as u64 == next_exchange {
                self.exchange_device(res)?;
                continue;
            }
            let end = next_exchange.min(target as u64) as u32;
            let start = Instant::now();
            let out = res.run_segment(self.now, end)?;
            if out.events > 0 {
                let ns = start.elapsed().as_nanos() as u64;
                self.busy_ns += ns;
                self.timed_events += out.events;
                let instants: u64 = out.instants.iter().sum();
                timings.push((out.instants, ns / instants.max(1)));
            }
            self.now = end;
        }
        Ok(())
    }

    /// [`Braid::exchange`] with the tori on the device: the device reduces the faces, acc
    /// sums and counters, the host applies the projections, the corrective events go back
    /// as one injection.
    fn exchange_device<D: BraidDevice>(&mut self, res: &mut Resident<D>) -> Result<(), BraidError> {
        let start = Instant::now();
        let inputs = res.project(self.now)?;
        let count = inputs.len();
        let mut apps = Vec::with_capacity(count);
        let mut corrective = vec![Vec::new(); count];
        let mut dropped = vec![0; count];
        for sender in 0..count {
            let receiver = (sender + 1) % count;
            let projection = resident::projection(sender as u32, &inputs[sender]);
            let mut view = res.receiver(receiver, &inputs[receiver], self.config.torus.max_pending);
            apps.push(projection.apply_to(
                &mut view,
                self.config.tol_boundary,
                self.config.tol_events,
            ));
            corrective[receiver] = view.corrective;
            dropped[receiver] = view.dropped;
        }
        res.inject(self.now, &corrective, &dropped)?;
        self.finish_exchange(&apps, start);
        Ok(())
    }

    fn count(&mut self, app: &Application) {
        let c = &mut self.counters;
        c.boundary += app.boundary_violations as u64;
        c.global += app.global_violation as u64;
        c.hash_mismatches += !app.hash_ok as u64;
        c.corrective += app.corrective_events as u64;
        c.corrective_dropped += app.corrective_dropped as u64;
        c.critical += app.critical() as u64;
    }

    /// Per-instant processing latency of every torus together.
    fn instant_latency(&self) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for torus in &self.tori {
            h.merge(torus.instant_latency());
        }
        h
    }

    /// Statistics and digests (digests hash the whole state: call it at the end of a run).
    pub fn stats(&self) -> BraidStats {
        let c = &self.counters;
        BraidStats {
            now: self.now,
            interval: self.control.interval(),
            exchanges: c.exchanges,
            boundary_violations: c.boundary,
            global_violations: c.global,
            hash_mismatches: c.hash_mismatches,
            corrective_events: c.corrective,
            corrective_dropped: c.corrective_dropped,
            critical: c.critical,
            interval_history: self.interval_history.clone(),
            convergence: self.convergence.stats(),
            latency: LatencyStats::from_histograms(
                &self.instant_latency(),
                &self.exchange_latency,
                self.timed_events,
                self.busy_ns,
            ),
            tori: self.tori.par_iter().map(Torus::stats).collect(),
        }
    }
}

/// One worker of a segment: takes the next ready torus, processes its earliest instant below
/// `end`, and puts it back at the end of the queue while it has instants left.
fn round_robin(slots: &[Option<Mutex<&mut Torus>>], ready: &Mutex<VecDeque<usize>>, end: u32) {
    loop {
        let next = ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let Some(i) = next else { return };
        let Some(slot) = &slots[i] else { return };
        let mut torus = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = torus.earliest_pending().filter(|&t| t < end) else {
            continue;
        };
        torus
            .run_until(t + 1)
            .expect("segments end below the time limit");
        let more = torus.earliest_pending().is_some_and(|t| t < end);
        drop(torus);
        if more {
            ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(i);
        }
    }
}
