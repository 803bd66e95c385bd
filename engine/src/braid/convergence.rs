//! Convergence of a braid (SPEC §3.2 statistics): how many exchanges it takes from a
//! disturbance until an exchange without violations.
//!
//! An exchange is *violating* when any of its applications had a violation (hash mismatch,
//! boundary or global). A **disturbance** is a violating exchange that follows a
//! non-violating one (or is the first exchange). It **converges** at the next non-violating
//! exchange; its convergence length is the number of exchanges from the disturbance to that
//! one (a violation at exchange 5 cleared at exchange 6 has length 1). A disturbance not yet
//! converged is *ongoing*.

/// Convergence statistics; fixed size whatever the run length.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Convergence {
    /// Disturbances seen.
    pub disturbances: u64,
    /// Of those, how many converged.
    pub converged: u64,
    /// Length of the last converged disturbance.
    pub last: Option<u64>,
    /// Longest converged disturbance (0 if none).
    pub max: u64,
    /// Mean length over converged disturbances (0 if none).
    pub mean: f64,
    /// Exchanges since the disturbance still unresolved, counting the one that started it.
    pub ongoing: Option<u64>,
}

/// Follows exchanges one at a time.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConvergenceTracker {
    exchanges: u64,
    disturbed_at: Option<u64>,
    disturbances: u64,
    converged: u64,
    total: u64,
    max: u64,
    last: Option<u64>,
}

impl ConvergenceTracker {
    /// Records the next exchange.
    pub fn record(&mut self, violating: bool) {
        self.exchanges += 1;
        match (self.disturbed_at, violating) {
            (None, true) => {
                self.disturbed_at = Some(self.exchanges);
                self.disturbances += 1;
            }
            (Some(at), false) => {
                let len = self.exchanges - at;
                self.converged += 1;
                self.total += len;
                self.max = self.max.max(len);
                self.last = Some(len);
                self.disturbed_at = None;
            }
            _ => {}
        }
    }

    pub fn stats(&self) -> Convergence {
        Convergence {
            disturbances: self.disturbances,
            converged: self.converged,
            last: self.last,
            max: self.max,
            mean: if self.converged == 0 {
                0.0
            } else {
                self.total as f64 / self.converged as f64
            },
            ongoing: self.disturbed_at.map(|at| self.exchanges - at + 1),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn lengths_from_disturbance_to_clean_exchange() {
        let mut c = ConvergenceTracker::default();
        for v in [
            false, true, true, true, false, false, true, false, true, true,
        ] {
            c.record(v);
        }
        let s = c.stats();
        assert_eq!(s.disturbances, 3);
        assert_eq!(s.converged, 2);
        assert_eq!(s.last, Some(1));
        assert_eq!(s.max, 3);
        assert_eq!(s.mean, 2.0);
        assert_eq!(s.ongoing, Some(2));
    }
}
