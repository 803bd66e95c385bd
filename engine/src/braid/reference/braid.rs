//! [`ReferenceBraid`]: reference tori driven one after the other, instant by instant, with a
//! plain, separate implementation of the exchange of SPEC §3.2.

use std::collections::VecDeque;

use super::super::config::{BraidConfig, time_limit};
use super::super::error::BraidError;
use super::super::workload::Workload;
use super::torus::{ReferenceTorus, fnv1a};

/// Counters of a reference braid run (the same meaning as in [`super::super::BraidStats`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceBraidStats {
    /// The braid clock: the first instant not yet processed.
    pub now: u32,
    /// The current exchange interval, in instants.
    pub interval: u32,
    /// Exchanges done so far.
    pub exchanges: u64,
    /// Face cells over `tol_boundary`, over all applied projections.
    pub boundary_violations: u64,
    /// Applied projections over `tol_events`.
    pub global_violations: u64,
    /// Projections whose hash did not verify (each ignored).
    pub hash_mismatches: u64,
    /// Corrective events injected.
    pub corrective_events: u64,
    /// Corrective events dropped at `max_pending`.
    pub corrective_dropped: u64,
    /// Critical applications.
    pub critical: u64,
    /// The starting interval, then the interval after each exchange.
    pub interval_history: Vec<u32>,
    /// Per torus: [`digest`](ReferenceTorus::digest).
    pub digests: Vec<u64>,
    /// Per torus: events processed.
    pub events_processed: Vec<u64>,
    /// Per torus: events dropped.
    pub events_dropped: Vec<u64>,
    /// Per torus: events pending.
    pub pending: Vec<u64>,
}

/// A projection as the reference sends it: the hashed bytes and what the receiver reads.
struct Sent {
    bytes: Vec<u8>,
    hash: u64,
    events: u64,
    face: Vec<i32>,
}

/// A braid of reference tori (single thread, instant by instant).
#[derive(Debug, Clone)]
pub struct ReferenceBraid {
    config: BraidConfig,
    tori: Vec<ReferenceTorus>,
    now: u32,
    last_exchange: u32,
    interval: u32,
    window: VecDeque<bool>,
    stats: ReferenceBraidStats,
}

impl ReferenceBraid {
    /// As [`Braid::new`](crate::braid::Braid::new): tori built by the config's builders, torus
    /// `i` seeded with `seed + i`.
    pub fn new(config: &BraidConfig) -> Result<ReferenceBraid, BraidError> {
        config.validate()?;
        let tori = (0..config.tori)
            .map(|i| ReferenceTorus::for_braid(&config.torus, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReferenceBraid::with_tori(config, tori))
    }

    /// As [`Braid::from_workloads`](crate::braid::Braid::from_workloads): one workload per
    /// torus.
    pub fn from_workloads(
        config: &BraidConfig,
        workloads: &[Workload],
    ) -> Result<ReferenceBraid, BraidError> {
        config.validate()?;
        config.check_workloads(workloads.len())?;
        let tori = workloads
            .iter()
            .map(|w| ReferenceTorus::from_workload(&config.torus, w))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReferenceBraid::with_tori(config, tori))
    }

    fn with_tori(config: &BraidConfig, tori: Vec<ReferenceTorus>) -> ReferenceBraid {
        ReferenceBraid {
            config: config.clone(),
            tori,
            now: 0,
            last_exchange: 0,
            interval: config.interval,
            window: VecDeque::new(),
            stats: ReferenceBraidStats {
                interval_history: vec![config.interval],
                ..Default::default()
            },
        }
    }

    /// The braid clock: the first instant not yet processed.
    pub fn now(&self) -> u32 {
        self.now
    }

    /// The tori, in index order.
    pub fn tori(&self) -> &[ReferenceTorus] {
        &self.tori
    }

    /// Runs to [`instants`](BraidConfig::instants) of the config.
    pub fn run(&mut self) -> Result<(), BraidError> {
        self.run_until(self.config.instants)
    }

    /// Instant by instant up to `target`: exchange when due, then every torus processes the
    /// instant (possibly empty).
    pub fn run_until(&mut self, target: u32) -> Result<(), BraidError> {
        let limit = time_limit(self.config.torus.max_delay);
        if target >= limit {
            return Err(BraidError::TimeLimit {
                instant: target as u64,
                limit,
            });
        }
        while self.now < target {
            if self.now as u64 == self.last_exchange as u64 + self.interval as u64 {
                self.exchange();
            }
            for torus in &mut self.tori {
                torus.process_instant(self.now);
            }
            self.now += 1;
        }
        Ok(())
    }

    fn project(torus: &ReferenceTorus, id: u32) -> Sent {
        let l = torus.lattice();
        let [_, ny, nz] = l.dims;
        let mut face = Vec::new();
        for y in 0..ny {
            for z in 0..nz {
                face.push(
                    torus
                        .process(l.cell(0, y as i64, z as i64))
                        .map(|p| p.acc)
                        .unwrap_or(0),
                );
            }
        }
        let events = torus.events_processed();
        let mut constraints = [0i32; 16];
        constraints[0] = (events % 2147483648) as i32;
        constraints[1] = torus.processes() as i32;
        constraints[2] = torus.edges() as i32;
        constraints[3] = torus.now() as i32;
        constraints[4] = torus.pending() as i32;
        constraints[5] = torus.acc_sum();
        let mut bytes = Vec::new();
        for v in [
            id,
            torus.now(),
            events as u32,
            torus.pending() as u32,
            torus.processes(),
            torus.edges(),
        ] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        for v in face.iter().chain(constraints.iter()) {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let hash = fnv1a(&bytes);
        Sent {
            bytes,
            hash,
            events,
            face,
        }
    }

    fn exchange(&mut self) {
        let count = self.tori.len();
        let sent: Vec<Sent> = self
            .tori
            .iter()
            .enumerate()
            .map(|(i, t)| Self::project(t, i as u32))
            .collect();
        for (s, p) in sent.iter().enumerate() {
            let r = &mut self.tori[(s + 1) % count];
            let violated = if fnv1a(&p.bytes) != p.hash {
                self.stats.hash_mismatches += 1;
                true
            } else {
                let l = r.lattice();
                let [nx, ny, nz] = l.dims;
                let mut boundary = 0u64;
                for y in 0..ny {
                    for z in 0..nz {
                        let cell = l.cell(nx as i64 - 1, y as i64, z as i64);
                        if let Some(proc_) = r.process(cell) {
                            let diff = p.face[(y * nz + z) as usize] as i64 - proc_.acc as i64;
                            if diff.abs() > self.config.tol_boundary as i64 {
                                boundary += 1;
                                let payload = diff.max(i32::MIN as i64).min(i32::MAX as i64) as i32;
                                if r.inject_or_drop(cell, payload) {
                                    self.stats.corrective_events += 1;
                                } else {
                                    self.stats.corrective_dropped += 1;
                                }
                            }
                        }
                    }
                }
                let er = r.events_processed() as f64;
                let es = p.events as f64;
                let global = (er - es).abs() > self.config.tol_events * er.max(es).max(1.0);
                self.stats.boundary_violations += boundary;
                self.stats.global_violations += global as u64;
                if boundary > 10 || global {
                    self.stats.critical += 1;
                }
                boundary > 0 || global
            };
            if self.window.len() == 100 {
                self.window.pop_front();
            }
            self.window.push_back(violated);
        }
        self.stats.exchanges += 1;
        self.last_exchange = self.now;
        if self.config.adaptive {
            let rate = self.window.iter().filter(|&&v| v).count() as f64 / self.window.len() as f64;
            if rate > 0.05 {
                self.interval = self
                    .config
                    .min_interval
                    .max((self.interval as f64 * 0.8).floor() as u32);
            } else if rate < 0.025 {
                let grown = (self.interval + 1).max((self.interval as f64 * 1.2).floor() as u32);
                self.interval = self.config.max_interval.min(grown);
            }
        }
        self.stats.interval_history.push(self.interval);
    }

    /// The counters as of now.
    pub fn stats(&self) -> ReferenceBraidStats {
        let mut s = self.stats.clone();
        s.now = self.now;
        s.interval = self.interval;
        s.digests = self.tori.iter().map(ReferenceTorus::digest).collect();
        s.events_processed = self
            .tori
            .iter()
            .map(ReferenceTorus::events_processed)
            .collect();
        s.events_dropped = self
            .tori
            .iter()
            .map(ReferenceTorus::events_dropped)
            .collect();
        s.pending = self.tori.iter().map(ReferenceTorus::pending).collect();
        s
    }
}
