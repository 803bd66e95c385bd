//! Braid statistics (SPEC §3.2, and the fields of `braid run --json` in §5).

use super::convergence::Convergence;
use super::latency::LatencyHistogram;
use super::torus::TorusStats;

/// Timing statistics. Measured with `std::time::Instant`; they never affect results.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencyStats {
    /// Instants processed, counted per torus (an instant where two tori had events counts
    /// twice).
    pub instants: u64,
    /// Events processed in those instants, all tori together.
    pub events: u64,
    /// Median processing latency of one instant on one torus (ns).
    pub instant_p50_ns: u64,
    /// 95th percentile of the instant latency (ns).
    pub instant_p95_ns: u64,
    /// 99th percentile of the instant latency (ns).
    pub instant_p99_ns: u64,
    /// Longest instant (ns).
    pub instant_max_ns: u64,
    /// Wall time the braid spent processing (tori in parallel) per event (ns; 0 with no
    /// event).
    pub ns_per_event: f64,
    /// Events processed per second of that wall time (0 when no time was measured).
    pub events_per_sec: f64,
    /// Exchanges timed.
    pub exchanges: u64,
    /// Median latency of one exchange (ns).
    pub exchange_p50_ns: u64,
    /// 95th percentile of the exchange latency (ns).
    pub exchange_p95_ns: u64,
    /// 99th percentile of the exchange latency (ns).
    pub exchange_p99_ns: u64,
    /// Longest exchange (ns).
    pub exchange_max_ns: u64,
    /// Mean exchange latency (ns).
    pub exchange_mean_ns: f64,
}

impl LatencyStats {
    /// `busy_ns`: wall time spent processing `events`.
    pub(crate) fn from_histograms(
        instant: &LatencyHistogram,
        exchange: &LatencyHistogram,
        events: u64,
        busy_ns: u64,
    ) -> LatencyStats {
        let busy = busy_ns as f64;
        LatencyStats {
            instants: instant.count(),
            events,
            instant_p50_ns: instant.quantile(0.50),
            instant_p95_ns: instant.quantile(0.95),
            instant_p99_ns: instant.quantile(0.99),
            instant_max_ns: instant.max_ns(),
            ns_per_event: if events == 0 {
                0.0
            } else {
                busy / events as f64
            },
            events_per_sec: if busy_ns == 0 {
                0.0
            } else {
                events as f64 * 1e9 / busy
            },
            exchanges: exchange.count(),
            exchange_p50_ns: exchange.quantile(0.50),
            exchange_p95_ns: exchange.quantile(0.95),
            exchange_p99_ns: exchange.quantile(0.99),
            exchange_max_ns: exchange.max_ns(),
            exchange_mean_ns: exchange.mean_ns(),
        }
    }
}

/// Everything a braid run reports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BraidStats {
    /// The braid's clock.
    pub now: u32,
    /// The current interval.
    pub interval: u32,
    /// Exchanges done so far.
    pub exchanges: u64,
    /// Face cells whose projected value differed from the receiver's by more than
    /// `tol_boundary`, over all applied projections.
    pub boundary_violations: u64,
    /// Applied projections whose relative event-count difference exceeded `tol_events`.
    pub global_violations: u64,
    /// Projections whose hash did not verify (each is a violation and was ignored).
    pub hash_mismatches: u64,
    /// Corrective events injected.
    pub corrective_events: u64,
    /// Corrective events dropped at `max_pending` (also counted in the receiver's
    /// `events_dropped`).
    pub corrective_dropped: u64,
    /// Critical applications.
    pub critical: u64,
    /// The starting interval, then the interval after each exchange.
    pub interval_history: Vec<u32>,
    /// Disturbances (violating exchanges) and how many exchanges each took to clear.
    pub convergence: Convergence,
    /// Timing of instants and exchanges.
    pub latency: LatencyStats,
    /// Per torus: counters, processes, edges and digest.
    pub tori: Vec<TorusStats>,
}

impl BraidStats {
    /// Events processed by all tori.
    pub fn events_processed(&self) -> u64 {
        self.tori.iter().map(|t| t.events_processed).sum()
    }

    /// Events dropped by all tori.
    pub fn events_dropped(&self) -> u64 {
        self.tori.iter().map(|t| t.events_dropped).sum()
    }
}
