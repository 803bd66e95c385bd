//! Projections (SPEC §3.2 step 1-3): what a torus tells the next one at an exchange, its
//! FNV-1a hash, and how a receiver applies it (hash check, boundary violations with corrective
//! events, the global violation, criticality).

use super::fnv::Fnv1a;
use super::lattice::Lattice;
use super::torus::Torus;

/// Number of constraint words in a projection.
pub const CONSTRAINTS: usize = 16;

/// An application with more boundary violations than this is critical.
pub const CRITICAL_BOUNDARY_VIOLATIONS: u32 = 10;

/// What torus `torus` sends at an exchange. The hash covers every field in the order listed,
/// little-endian, `events_processed` as a wrapping u32.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Projection {
    /// Index of the sending torus in the braid.
    pub torus: u32,
    /// The sender's clock: the first instant it has not processed.
    pub now: u32,
    /// Kept as u64 (SPEC §3.2: event counters are u64); hashed as its low 32 bits. The global
    /// violation compares the u64 counts.
    pub events_processed: u64,
    /// Events pending at the sender (at most `max_pending` <= 2^28, so it fits).
    pub pending: u32,
    /// Number of processes of the sender.
    pub processes: u32,
    /// Number of edges of the sender.
    pub edges: u32,
    /// `face[y·Z + z]` = acc of the process at `(0, y, z)`, 0 if none.
    pub face: Vec<i32>,
    /// \[0\] events_processed mod 2^31, \[1\] processes, \[2\] edges, \[3\] now, \[4\] pending,
    /// \[5\] wrapping sum of all acc, the rest 0.
    pub constraints: [i32; CONSTRAINTS],
    /// FNV-1a 64 of the fields above ([`Projection::compute_hash`]).
    pub hash: u64,
}

impl Projection {
    /// Extracts torus `id`'s projection.
    pub fn extract(torus: &Torus, id: u32) -> Projection {
        let mut p = Projection::default();
        p.fill(torus, id);
        p
    }

    /// Extracts into `self`, reusing the face buffer.
    pub fn fill(&mut self, torus: &Torus, id: u32) {
        let lattice = torus.lattice();
        let [_, dy, dz] = lattice.dims;
        self.face.clear();
        for y in 0..dy as i64 {
            for z in 0..dz as i64 {
                let cell = lattice.cell(0, y, z);
                self.face.push(torus.process(cell).map_or(0, |p| p.acc));
            }
        }
        let counts = Counts {
            now: torus.now(),
            events_processed: torus.events_processed(),
            pending: torus.pending() as u32,
            processes: torus.processes(),
            edges: torus.edges(),
            acc_sum: torus.acc_sum(),
        };
        self.set(id, &counts);
    }

    /// Sets every field but the face (already filled) from `counts`, and the hash.
    pub(crate) fn set(&mut self, id: u32, counts: &Counts) {
        self.torus = id;
        self.now = counts.now;
        self.events_processed = counts.events_processed;
        self.pending = counts.pending;
        self.processes = counts.processes;
        self.edges = counts.edges;
        self.constraints = [0; CONSTRAINTS];
        self.constraints[0] = (self.events_processed % (1 << 31)) as i32;
        self.constraints[1] = self.processes as i32;
        self.constraints[2] = self.edges as i32;
        self.constraints[3] = self.now as i32;
        self.constraints[4] = self.pending as i32;
        self.constraints[5] = counts.acc_sum;
        self.hash = self.compute_hash();
    }

    /// FNV-1a 64 of the fields in order (the `hash` field itself excluded).
    pub fn compute_hash(&self) -> u64 {
        let mut h = Fnv1a::new();
        h.u32(self.torus);
        h.u32(self.now);
        h.u32(self.events_processed as u32);
        h.u32(self.pending);
        h.u32(self.processes);
        h.u32(self.edges);
        for &v in &self.face {
            h.i32(v);
        }
        for &v in &self.constraints {
            h.i32(v);
        }
        h.finish()
    }

    /// Applies this projection to `receiver` (SPEC §3.2 step 2): verifies the hash (a
    /// mismatch is a violation and the projection is ignored), compares the face with the
    /// receiver's `x = X-1` face and injects a corrective event `(now, c, c, clamp_i32(diff))`
    /// for each boundary violation (counted dropped in the receiver at `max_pending`), and
    /// checks the global event-count violation.
    pub fn apply(&self, receiver: &mut Torus, tol_boundary: u32, tol_events: f64) -> Application {
        self.apply_to(receiver, tol_boundary, tol_events)
    }

    /// [`Projection::apply`] to any receiver: a host torus, or the read-back view of a
    /// torus resident on a device.
    pub(crate) fn apply_to(
        &self,
        receiver: &mut impl Receiver,
        tol_boundary: u32,
        tol_events: f64,
    ) -> Application {
        let lattice = receiver.lattice();
        let [dx, dy, dz] = lattice.dims;
        let mut app = Application {
            sender: self.torus,
            hash_ok: false,
            ..Application::default()
        };
        if self.hash != self.compute_hash() || self.face.len() != lattice.face_len() {
            return app;
        }
        app.hash_ok = true;
        for y in 0..dy {
            for z in 0..dz {
                let cell = lattice.cell(dx as i64 - 1, y as i64, z as i64);
                let Some(acc) = receiver.acc(cell) else {
                    continue;
                };
                let diff = self.face[(y * dz + z) as usize] as i64 - acc as i64;
                if diff.unsigned_abs() > tol_boundary as u64 {
                    app.boundary_violations += 1;
                    let payload = diff.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
                    if receiver.inject_or_drop(cell, payload) {
                        app.corrective_events += 1;
                    } else {
                        app.corrective_dropped += 1;
                    }
                }
            }
        }
        let er = receiver.events_processed();
        let es = self.events_processed;
        let scale = er.max(es).max(1) as f64;
        app.global_violation = er.abs_diff(es) as f64 > tol_events * scale;
        app
    }
}

/// The counts a projection carries besides the face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub now: u32,
    pub events_processed: u64,
    pub pending: u32,
    pub processes: u32,
    pub edges: u32,
    /// Wrapping sum of every process's acc.
    pub acc_sum: i32,
}

/// What applying a projection reads from and does to its receiver.
pub(crate) trait Receiver {
    fn lattice(&self) -> Lattice;
    /// The acc of the process at `cell`, if one sits there.
    fn acc(&self, cell: u32) -> Option<i32>;
    /// Injects `(now, cell, cell, payload)`, or counts it dropped at `max_pending`.
    fn inject_or_drop(&mut self, cell: u32, payload: i32) -> bool;
    fn events_processed(&self) -> u64;
}

impl Receiver for Torus {
    fn lattice(&self) -> Lattice {
        Torus::lattice(self)
    }

    fn acc(&self, cell: u32) -> Option<i32> {
        self.process(cell).map(|p| p.acc)
    }

    fn inject_or_drop(&mut self, cell: u32, payload: i32) -> bool {
        Torus::inject_or_drop(self, cell, payload)
    }

    fn events_processed(&self) -> u64 {
        Torus::events_processed(self)
    }
}

/// The outcome of applying one projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Application {
    /// The sending torus.
    pub sender: u32,
    /// The hash verified; when false the projection was ignored.
    pub hash_ok: bool,
    /// Face cells whose projected acc differed from the receiver's by more than `tol_boundary`
    /// (each got a corrective event, or had it dropped).
    pub boundary_violations: u32,
    /// Corrective events injected into the receiver.
    pub corrective_events: u32,
    /// Corrective events dropped because the receiver was at `max_pending`.
    pub corrective_dropped: u32,
    /// The event counts differed by more than `tol_events` (relative).
    pub global_violation: bool,
}

impl Application {
    /// Any violation: a hash mismatch, a boundary violation or the global one.
    pub fn violated(&self) -> bool {
        !self.hash_ok || self.boundary_violations > 0 || self.global_violation
    }

    /// More than 10 boundary violations, or a global violation.
    pub fn critical(&self) -> bool {
        self.boundary_violations > CRITICAL_BOUNDARY_VIOLATIONS || self.global_violation
    }
}
