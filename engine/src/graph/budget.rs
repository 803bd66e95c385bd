//! The latency budget of recall (SPEC §2.3): an injectable [`Clock`], the online
//! [`LatencyPredictor`] of hop times, and the gate that stops a spread before a hop that
//! would overrun the budget.
//!
//! Model: `time ≈ α + β·edges + γ·nodes`, with `edges` and `nodes` the work of the hop as
//! planned ([`HopPlan`]), one model per evaluation method (push and pull cost differently
//! per edge). It is fitted by least squares over the hops observed so far, with exponential
//! forgetting (each older observation weighs `FORGET` times the next) and a small ridge, by
//! solving the 3×3 normal equations in f64.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::spread::{HopGate, HopMethod, HopPlan};

/// A monotonic clock: time since an arbitrary origin.
pub trait Clock: Send + Sync {
    /// Time elapsed since the clock's origin.
    fn now(&self) -> Duration;
}

/// The real clock ([`Instant`]-based).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock for tests: it moves only when told, plus a fixed `tick` after every reading, so
/// a recall sees a deterministic sequence of times.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
    tick: AtomicU64,
}

impl ManualClock {
    /// Starts at 0 with no tick.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Every reading returns the current time, then advances it by `tick`.
    pub fn with_tick(tick: Duration) -> ManualClock {
        let c = ManualClock::new();
        c.tick.store(duration_nanos(tick), Ordering::Relaxed);
        c
    }

    /// Sets the time of the next reading to `t` (even if earlier than the last reading).
    pub fn set(&self, t: Duration) {
        self.nanos.store(duration_nanos(t), Ordering::Relaxed);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(duration_nanos(by), Ordering::Relaxed);
    }

    /// The time the next reading returns (does not tick).
    pub fn peek(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        let tick = self.tick.load(Ordering::Relaxed);
        Duration::from_nanos(self.nanos.fetch_add(tick, Ordering::Relaxed))
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Weight of an observation relative to the next one.
const FORGET: f64 = 0.98;
/// Ridge added to the diagonal of the normal equations.
const RIDGE: f64 = 1e-6;
/// Observations of a method before its model predicts.
const MIN_OBSERVATIONS: u64 = 3;
/// Features are scaled to thousands of edges / nodes, times to microseconds.
const FEATURE_SCALE: f64 = 1e-3;

/// Upper bounds of the |relative error| buckets of [`PredictorStats::error_buckets`]; the
/// last bucket holds everything above the last bound.
pub const ERROR_BUCKET_BOUNDS: [f64; 6] = [0.05, 0.10, 0.20, 0.50, 1.0, 2.0];

/// One least-squares model `t = α + β·edges + γ·nodes`.
#[derive(Debug, Clone, Default)]
struct LinearModel {
    xtx: [[f64; 3]; 3],
    xty: [f64; 3],
    observations: u64,
}

impl LinearModel {
    fn features(plan: &HopPlan) -> [f64; 3] {
        [
            1.0,
            plan.edges as f64 * FEATURE_SCALE,
            plan.nodes as f64 * FEATURE_SCALE,
        ]
    }

    fn observe(&mut self, plan: &HopPlan, micros: f64) {
        let x = Self::features(plan);
        for i in 0..3 {
            for j in 0..3 {
                self.xtx[i][j] = FORGET * self.xtx[i][j] + x[i] * x[j];
            }
            self.xty[i] = FORGET * self.xty[i] + x[i] * micros;
        }
        self.observations += 1;
    }

    /// The predicted microseconds, `None` before `MIN_OBSERVATIONS`.
    fn predict(&self, plan: &HopPlan) -> Option<f64> {
        if self.observations < MIN_OBSERVATIONS {
            return None;
        }
        let mut m = self.xtx;
        for (i, row) in m.iter_mut().enumerate() {
            row[i] += RIDGE;
        }
        let beta = solve3(m, self.xty)?;
        let x = Self::features(plan);
        let t = beta[0] * x[0] + beta[1] * x[1] + beta[2] * x[2];
        Some(t.max(0.0))
    }
}

/// Solves `m · x = b` by Gaussian elimination with partial pivoting.
fn solve3(mut m: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = m[col];
        for row in col + 1..3 {
            let f = m[row][col] / pivot_row[col];
            for (x, p) in m[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let mut s = b[row];
        for k in row + 1..3 {
            s -= m[row][k] * x[k];
        }
        x[row] = s / m[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Counters of the predictor, for metrics (SPEC §2.3: the prediction error distribution and
/// the partial-result count).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PredictorStats {
    /// Hops whose time was observed.
    pub hops_observed: u64,
    /// Hops that had a prediction to score.
    pub predictions: u64,
    /// Of those, predictions with |predicted − actual| / actual < 20 %.
    pub within_20_percent: u64,
    /// Predictions by |relative error|, bucketed by [`ERROR_BUCKET_BOUNDS`] (7 buckets).
    pub error_buckets: [u64; 7],
    /// Recalls (or batches) stopped early by the budget.
    pub partial_stops: u64,
}

/// The online hop-time model of one graph (SPEC §2.3). Keep one per graph (and per kind of
/// call, if batched and single recalls share a graph); it is cheap to update.
#[derive(Debug, Clone, Default)]
pub struct LatencyPredictor {
    push: LinearModel,
    pull: LinearModel,
    stats: PredictorStats,
    last_error: Option<f64>,
}

impl LatencyPredictor {
    /// A predictor that has seen no hop: it predicts nothing until it has seen three hops of
    /// a method.
    pub fn new() -> LatencyPredictor {
        LatencyPredictor::default()
    }

    fn model(&self, method: HopMethod) -> &LinearModel {
        match method {
            HopMethod::Push => &self.push,
            HopMethod::Pull => &self.pull,
        }
    }

    /// The predicted time of a hop, `None` until the model has seen three hops of its method.
    pub fn predict(&self, plan: &HopPlan) -> Option<Duration> {
        self.model(plan.method)
            .predict(plan)
            .map(|us| Duration::from_secs_f64(us * 1e-6))
    }

    /// Records that a hop planned as `plan` took `actual`, scoring the prediction made
    /// before it (if any) and then updating the model.
    pub fn observe(&mut self, plan: &HopPlan, actual: Duration) {
        let micros = actual.as_secs_f64() * 1e6;
        if let Some(pred) = self.model(plan.method).predict(plan) {
            // A hop observed as taking no time at all cannot be scored relatively.
            if micros > 0.0 {
                let err = (pred - micros) / micros;
                self.last_error = Some(err);
                self.stats.predictions += 1;
                let abs = err.abs();
                if abs < 0.20 {
                    self.stats.within_20_percent += 1;
                }
                let bucket = ERROR_BUCKET_BOUNDS
                    .iter()
                    .position(|&b| abs < b)
                    .unwrap_or(ERROR_BUCKET_BOUNDS.len());
                self.stats.error_buckets[bucket] += 1;
            }
        }
        self.stats.hops_observed += 1;
        match plan.method {
            HopMethod::Push => self.push.observe(plan, micros),
            HopMethod::Pull => self.pull.observe(plan, micros),
        }
    }

    /// The relative error `(predicted − actual) / actual` of the last scored hop.
    pub fn last_error(&self) -> Option<f64> {
        self.last_error
    }

    /// Prediction counters: how many were scored, how close they were, partial stops.
    pub fn stats(&self) -> &PredictorStats {
        &self.stats
    }

    pub(crate) fn count_partial(&mut self) {
        self.stats.partial_stops += 1;
    }
}

/// Stops a propagation before a hop when `elapsed + predicted > budget` (zero budget: never)
/// and feeds every hop's time to the predictor.
pub(crate) struct BudgetGate<'a> {
    pub clock: &'a dyn Clock,
    pub predictor: &'a mut LatencyPredictor,
    pub budget: Duration,
    /// When the recall began (its similarity step counts against the budget).
    pub start: Duration,
    hop_start: Duration,
}

impl<'a> BudgetGate<'a> {
    pub fn new(
        clock: &'a dyn Clock,
        predictor: &'a mut LatencyPredictor,
        budget: Duration,
        start: Duration,
    ) -> BudgetGate<'a> {
        BudgetGate {
            clock,
            predictor,
            budget,
            start,
            hop_start: start,
        }
    }
}

impl HopGate for BudgetGate<'_> {
    fn before_hop(&mut self, plan: &HopPlan) -> bool {
        // Predict first, so that the hop's measured time starts after the model's work.
        let predicted = if self.budget.is_zero() {
            Duration::ZERO
        } else {
            self.predictor.predict(plan).unwrap_or(Duration::ZERO)
        };
        let now = self.clock.now();
        if !self.budget.is_zero() {
            let elapsed = now.saturating_sub(self.start);
            if elapsed + predicted > self.budget {
                self.predictor.count_partial();
                return false;
            }
        }
        self.hop_start = now;
        true
    }

    fn after_hop(&mut self, plan: &HopPlan) {
        let actual = self.clock.now().saturating_sub(self.hop_start);
        self.predictor.observe(plan, actual);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn plan(edges: u64, nodes: u64) -> HopPlan {
        HopPlan {
            hop: 1,
            method: HopMethod::Pull,
            edges,
            nodes,
        }
    }

    #[test]
    fn learns_an_exact_linear_law() {
        // t = 5 µs + 2 µs per 1000 edges + 3 µs per 1000 nodes.
        let law = |e: u64, n: u64| 5.0 + 2.0 * e as f64 / 1e3 + 3.0 * n as f64 / 1e3;
        let mut p = LatencyPredictor::new();
        assert_eq!(p.predict(&plan(1000, 1000)), None);
        for (e, n) in [
            (1000, 10),
            (5000, 400),
            (20000, 90),
            (300, 3000),
            (7000, 7000),
        ] {
            p.observe(&plan(e, n), Duration::from_secs_f64(law(e, n) * 1e-6));
        }
        let got = p.predict(&plan(12000, 2500)).unwrap().as_secs_f64() * 1e6;
        let want = law(12000, 2500);
        assert!((got - want).abs() / want < 1e-3, "got {got}, want {want}");
        // Observations 4 and 5 were scored; the law is exact, so both land within 20 %.
        assert_eq!(p.stats().hops_observed, 5);
        assert_eq!(p.stats().predictions, 2);
        assert_eq!(p.stats().within_20_percent, 2);
        assert_eq!(p.stats().error_buckets[0], 2);
    }

    #[test]
    fn manual_clock_ticks_after_each_reading() {
        let c = ManualClock::with_tick(Duration::from_millis(2));
        assert_eq!(c.now(), Duration::ZERO);
        assert_eq!(c.now(), Duration::from_millis(2));
        c.advance(Duration::from_millis(10));
        assert_eq!(c.now(), Duration::from_millis(14));
        assert_eq!(c.peek(), Duration::from_millis(16));
    }

    #[test]
    fn solve3_solves() {
        let m = [[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]];
        let x = [1.0, -2.0, 0.5];
        let b = [
            2.0 * x[0] + x[1],
            x[0] + 3.0 * x[1] + x[2],
            x[1] + 4.0 * x[2],
        ];
        let got = solve3(m, b).unwrap();
        for i in 0..3 {
            assert!((got[i] - x[i]).abs() < 1e-12);
        }
    }
}
