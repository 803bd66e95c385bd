//! The adaptive batch limit of the recall queue (SPEC §2.3 "Batched recall").
//!
//! A recall's latency, from submission to completion, is its wait for the batch running when
//! it arrived plus its own batch: about two batch times under load. Bigger batches give more
//! recalls per second (one similarity product, one propagation for many queries) and longer
//! batch times. The sizer keeps the P95 of recall latency under a target while letting the
//! batch grow as far as that allows:
//! - every batch updates an EWMA of the time per batch and of the batch size;
//! - every `eval_every` (500) recalls at most, it looks at the P95 of that window's
//!   latencies:
//!   - above the target, when the batches themselves are too slow (two EWMA batch times
//!     pass the target): shrink in proportion (`limit · target / p95`), by at most half;
//!   - above the target while batches are fast enough, the time went into waiting: more
//!     work arrives than the queue serves, and a smaller batch would only serve less. If the
//!     limit bound the batches, grow as below (throughput is what shortens the wait);
//!     otherwise keep;
//!   - under 80 % of the target, and the limit was what bounded the batches (most batches
//!     were full, so more work was waiting): grow, by at most a quarter, and only as far as
//!     the EWMA predicts two batch times still fit in 90 % of the target;
//!   - otherwise keep the limit;
//! - the limit stays within `min..=max`.
//!
//! Both steps are damped (at most ×0.5 or ×1.25 per evaluation) so that one noisy window
//! cannot swing the batch size; the window of 500 recalls keeps the P95 meaningful.

use std::time::Duration;

/// Weight of the newest batch in the EWMAs.
const EWMA_ALPHA: f64 = 0.2;
/// Most a limit shrinks in one evaluation (×0.5) and grows (×1.25).
const MAX_SHRINK: f64 = 0.5;
const MAX_GROW: f64 = 1.25;
/// Grow only when the window's P95 is under this share of the target ...
const GROW_BELOW: f64 = 0.8;
/// ... and aim the predicted latency at this share of it.
const GROW_AIM: f64 = 0.9;
/// Share of a window's batches that must have been full for the limit to count as binding.
const BINDING_SHARE: f64 = 0.5;

/// Settings of a [`BatchSizer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizerConfig {
    /// The P95 of recall latency the limit is kept under.
    pub target_p95: Duration,
    /// Batch limit at the start (recalls per batch).
    pub initial: usize,
    /// Smallest batch limit.
    pub min: usize,
    /// Largest batch limit.
    pub max: usize,
    /// Recalls between evaluations (the "at most every 500 queries").
    pub eval_every: usize,
}

/// What the last evaluation did, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The limit was lowered: latency was over the target.
    Shrink,
    /// The limit was raised: latency had room and the limit was binding.
    Grow,
    /// The limit stayed.
    Keep,
}

/// The adaptive batch limit; see the module docs.
#[derive(Debug, Clone)]
pub struct BatchSizer {
    config: SizerConfig,
    limit: usize,
    /// EWMA of seconds per batch and of recalls per batch (None before the first batch).
    ewma_batch_s: Option<f64>,
    ewma_size: f64,
    /// Latencies (ns) of the recalls since the last evaluation.
    window: Vec<u64>,
    window_batches: u32,
    window_full: u32,
    evaluations: u64,
    last: Option<Decision>,
}

impl BatchSizer {
    /// # Panics
    ///
    /// When `min` is 0, `min > max`, or `eval_every` is 0 (the queue validates first).
    pub fn new(config: SizerConfig) -> BatchSizer {
        assert!(config.min >= 1 && config.min <= config.max && config.eval_every >= 1);
        BatchSizer {
            limit: config.initial.clamp(config.min, config.max),
            config,
            ewma_batch_s: None,
            ewma_size: 0.0,
            window: Vec::with_capacity(config.eval_every + 1024),
            window_batches: 0,
            window_full: 0,
            evaluations: 0,
            last: None,
        }
    }

    /// Most recalls the next batch may take.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The EWMA of seconds per batch, once a batch has been seen.
    pub fn ewma_batch_seconds(&self) -> Option<f64> {
        self.ewma_batch_s
    }

    /// Evaluations of the limit so far.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// What the last evaluation did, if any.
    pub fn last_decision(&self) -> Option<Decision> {
        self.last
    }

    /// Records a batch of `size` recalls that took `service` to run, whose recalls took
    /// `latencies` (ns) from submission to completion; evaluates when the window is full.
    pub fn observe(&mut self, size: usize, service: Duration, latencies: &[u64]) {
        let s = service.as_secs_f64();
        self.ewma_batch_s = Some(match self.ewma_batch_s {
            None => s,
            Some(e) => e + EWMA_ALPHA * (s - e),
        });
        self.ewma_size = if self.window_batches == 0 && self.evaluations == 0 {
            size as f64
        } else {
            self.ewma_size + EWMA_ALPHA * (size as f64 - self.ewma_size)
        };
        self.window.extend_from_slice(latencies);
        self.window_batches += 1;
        if size >= self.limit {
            self.window_full += 1;
        }
        if self.window.len() >= self.config.eval_every {
            self.evaluate();
        }
    }

    fn evaluate(&mut self) {
        // In nanoseconds, so that ratios of round figures stay exact.
        let target = self.config.target_p95.as_nanos() as f64;
        let p95 = percentile(&mut self.window, 0.95) as f64;
        let binding = f64::from(self.window_full) >= BINDING_SHARE * f64::from(self.window_batches);
        let old = self.limit;
        let old_f = old as f64;
        // Two batch times (the wait for the running batch, then one's own) at the EWMA.
        let two_batches = self.ewma_batch_s.map_or(0.0, |b| 2.0 * b * 1e9);
        let overloaded = p95 > target && two_batches <= target;
        let decision = if p95 > target && !overloaded {
            let factor = (target / p95).max(MAX_SHRINK);
            self.limit = ((old_f * factor).floor() as usize).min(old - 1);
            Decision::Shrink
        } else if (p95 < GROW_BELOW * target || overloaded) && binding {
            // The most each rule allows; a step is at least one recall when all allow it.
            // Under overload the window's P95 is queueing, not batch time: only the EWMA
            // guard and the damping bound the step.
            let by_window = if overloaded {
                f64::INFINITY
            } else {
                old_f * GROW_AIM * target / p95.max(1.0)
            };
            let by_damping = (old_f * MAX_GROW).floor().max(old_f + 1.0);
            // The EWMA's guard: two batch times at the new size must fit in the aim.
            let by_ewma = self.ewma_batch_s.map_or(f64::INFINITY, |batch_s| {
                let per_recall_ns = batch_s * 1e9 / self.ewma_size.max(1.0);
                GROW_AIM * target / (2.0 * per_recall_ns.max(1e-3))
            });
            let grown = by_window.min(by_damping).min(by_ewma).floor() as usize;
            if grown > old {
                self.limit = grown;
                Decision::Grow
            } else {
                Decision::Keep
            }
        } else {
            Decision::Keep
        };
        self.limit = self.limit.clamp(self.config.min, self.config.max);
        self.last = Some(if self.limit == old {
            Decision::Keep
        } else {
            decision
        });
        self.evaluations += 1;
        self.window.clear();
        self.window_batches = 0;
        self.window_full = 0;
    }
}

/// The nearest-rank `q` quantile of `xs` (reorders it; 0 for an empty slice).
fn percentile(xs: &mut [u64], q: f64) -> u64 {
    if xs.is_empty() {
        return 0;
    }
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    *xs.select_nth_unstable(rank - 1).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(target_us: u64) -> SizerConfig {
        SizerConfig {
            target_p95: Duration::from_micros(target_us),
            initial: 8,
            min: 1,
            max: 256,
            eval_every: 500,
        }
    }

    /// Feeds `n` full batches of the current limit whose recalls all took `latency_us`.
    fn feed(s: &mut BatchSizer, batches: usize, batch_us: u64, latency_us: u64) {
        for _ in 0..batches {
            let size = s.limit();
            s.observe(
                size,
                Duration::from_micros(batch_us),
                &vec![latency_us * 1000; size],
            );
        }
    }

    #[test]
    fn evaluates_only_after_eval_every_recalls() {
        let mut s = BatchSizer::new(config(1000));
        // 62 batches of 8 = 496 recalls: no evaluation yet, even at 10x the target with
        // batches (1 ms each) too slow for it.
        feed(&mut s, 62, 1000, 10_000);
        assert_eq!((s.evaluations(), s.limit()), (0, 8));
        feed(&mut s, 1, 1000, 10_000);
        assert_eq!(s.evaluations(), 1);
        assert_eq!(s.last_decision(), Some(Decision::Shrink));
    }

    #[test]
    fn shrinks_in_proportion_but_at_most_by_half_and_never_below_min() {
        let mut s = BatchSizer::new(SizerConfig {
            initial: 100,
            ..config(1000)
        });
        // Batches of 600 us (two of them pass the 1 ms target), P95 1.25x the target:
        // 100 -> 80.
        feed(&mut s, 5, 600, 1250);
        assert_eq!(s.limit(), 80);
        // 10x the target: halved, not cut to a tenth.
        feed(&mut s, 7, 600, 10_000);
        assert_eq!(s.limit(), 40);
        for _ in 0..20 {
            feed(&mut s, 500, 600, 10_000);
        }
        assert_eq!(s.limit(), 1);
    }

    #[test]
    fn grows_by_at_most_a_quarter_only_while_the_limit_binds() {
        let mut s = BatchSizer::new(config(10_000));
        // Full batches far under the target, cheap batches: 8 -> 10 (x1.25).
        feed(&mut s, 63, 10, 100);
        assert_eq!((s.limit(), s.last_decision()), (10, Some(Decision::Grow)));
        // Batches of 2 under a limit of 10: demand, not the limit, sets the size: keep.
        for _ in 0..250 {
            s.observe(2, Duration::from_micros(10), &[100_000, 100_000]);
        }
        assert_eq!((s.limit(), s.last_decision()), (10, Some(Decision::Keep)));
    }

    /// More work than the queue serves: the P95 is over the target because recalls wait,
    /// while a batch takes 100 us. Shrinking would serve less and lengthen the wait; the
    /// limit grows instead, damped, up to where two batch times fill 90 % of the target.
    #[test]
    fn under_overload_the_limit_grows_toward_throughput() {
        let mut s = BatchSizer::new(config(1000));
        // Full batches of 8 taking 100 us (12.5 us a recall); P95 5 ms from waiting.
        feed(&mut s, 63, 100, 5000);
        assert_eq!((s.limit(), s.last_decision()), (10, Some(Decision::Grow)));
        for _ in 0..40 {
            let b = s.limit() as u64;
            feed(&mut s, 500usize.div_ceil(b as usize), 12 * b + 4, 5000);
        }
        // Two batches of b fill 90 % of 1 ms at about b = 36.
        assert!((30..=40).contains(&s.limit()), "settled at {}", s.limit());
    }

    #[test]
    fn between_the_bands_the_limit_is_kept() {
        let mut s = BatchSizer::new(config(1000));
        // P95 at 90 % of the target: neither over it nor under 80 % of it.
        feed(&mut s, 63, 100, 900);
        assert_eq!((s.limit(), s.last_decision()), (8, Some(Decision::Keep)));
    }

    #[test]
    fn the_ewma_caps_growth_at_what_fits_the_target() {
        let mut s = BatchSizer::new(SizerConfig {
            initial: 100,
            ..config(1000)
        });
        // Window P95 far under target (100 us), but batches of 100 take 400 us: two batch
        // times at 112 recalls would be 0.9 ms = 90 % of 1 ms. Growth stops there, not at 125.
        feed(&mut s, 5, 400, 100);
        assert_eq!(s.limit(), 112);
    }

    /// A simulated saturated system (every batch full): a batch of b takes 50 + 20·b us and a
    /// recall waits about two batch times. From either side the limit settles where two batch
    /// times are within the target, and the last windows' P95 is under it.
    #[test]
    fn converges_under_the_target_from_both_sides() {
        for initial in [1, 256] {
            let mut s = BatchSizer::new(SizerConfig {
                initial,
                ..config(2000)
            });
            let mut last_p95 = 0;
            while s.evaluations() < 60 {
                let b = s.limit() as u64;
                let batch_us = 50 + 20 * b;
                last_p95 = 2 * batch_us;
                feed(&mut s, 1, batch_us, last_p95);
            }
            let b = s.limit();
            // 2 (50 + 20 b) <= 2000  <=>  b <= 47.5; growth aims at 90 %: b near 42.
            assert!((38..=47).contains(&b), "from {initial}: settled at {b}");
            assert!(last_p95 <= 2000, "from {initial}: p95 {last_p95} us");
        }
    }
}
