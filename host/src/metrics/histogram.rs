//! [`Histogram`]: a lock-free, log-bucketed (HDR-style) histogram of `u64` values, and its
//! [`HistogramSnapshot`].
//!
//! # Buckets
//!
//! Values `0..16` each get their own bucket. Above that, every power of two `[2^e, 2^(e+1))`
//! (`e = 4..=63`) is cut into [`SUB_BUCKETS`] = 16 equal linear sub-buckets of width
//! `2^(e-4)`, so the whole `u64` range is covered by [`BUCKETS`] = 976 buckets:
//!
//! ```text
//! v < 16:   index = v                                   (exact)
//! v >= 16:  e = v.ilog2()                               (position of the top bit, 4..=63)
//!           index = (e - 3) * 16 + ((v >> (e - 4)) & 15)
//! ```
//!
//! # Error bound
//!
//! A quantile is reported as the middle of the bucket that holds the value of that rank,
//! clamped to the exact `[min, max]` seen. A bucket starting at `lo >= 16` has width
//! `w = 2^(e-4) <= lo / 16`, and its middle is at most `w / 2` from any value in it, so for
//! the true quantile `x`:
//!
//! ```text
//! |quantile(q) - x| <= x / 32        (relative error <= 1/32 = 3.125%; exact below 16)
//! ```
//!
//! The true quantile is the nearest-rank one: the value of rank `max(1, ceil(q * count))` in
//! the sorted values ([`rank_of`]). `count`, `min` and `max` are exact; `sum` is exact up to
//! `u64::MAX` and then saturates there.
//!
//! # Recording
//!
//! [`Histogram::record`] takes no lock and allocates nothing: it picks the calling thread's
//! stripe (one of [`STRIPES`], assigned round-robin to threads on first use) and does one
//! `fetch_add` on a bucket, one on the stripe's sum, and a `fetch_min`/`fetch_max` only when
//! the value is a new extreme. Stripes are cache-line aligned so that threads recording at
//! the same time do not fight over the same lines; readers merge the stripes.
//!
//! # Memory ordering
//!
//! Everything is `Relaxed`: a histogram is a statistic, not a synchronisation point. A reader
//! running while others record sees each record whole in the bucket counts it reads, but may
//! see its bucket before its sum (or the reverse). Once the recording threads are joined (or
//! otherwise synchronised with), every figure is exact.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 4;
/// Linear sub-buckets per power of two.
pub const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Number of buckets covering `0..=u64::MAX`.
pub const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB_BUCKETS;
/// Divisor of the relative error bound: `|quantile(q) - x| <= x / RELATIVE_ERROR_DIVISOR`.
pub const RELATIVE_ERROR_DIVISOR: u64 = 2 * SUB_BUCKETS as u64;
/// Independent copies of the counters, so that concurrent recorders rarely share a line.
pub const STRIPES: usize = 4;

/// The bucket holding `v`.
#[inline]
pub fn bucket_index(v: u64) -> usize {
    if v < SUB_BUCKETS as u64 {
        return v as usize;
    }
    let e = v.ilog2();
    let sub = (v >> (e - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    (e - SUB_BITS + 1) as usize * SUB_BUCKETS + sub
}

/// The smallest value in bucket `index` and the bucket's width (`hi = lo + width - 1`).
///
/// # Panics
///
/// When `index >= BUCKETS`.
pub fn bucket_bounds(index: usize) -> (u64, u64) {
    assert!(
        index < BUCKETS,
        "bucket index {index} out of range 0..{BUCKETS}"
    );
    if index < SUB_BUCKETS {
        return (index as u64, 1);
    }
    let e = (index / SUB_BUCKETS) as u32 + SUB_BITS - 1;
    let sub = (index % SUB_BUCKETS) as u64;
    let width = 1u64 << (e - SUB_BITS);
    ((1u64 << e) + sub * width, width)
}

/// The value reported for a quantile that falls in bucket `index`: its middle.
fn bucket_middle(index: usize) -> u64 {
    let (lo, width) = bucket_bounds(index);
    lo + width / 2
}

/// The 1-based rank whose value is the `q` quantile of `count` values (nearest rank):
/// `max(1, ceil(q * count))`, at most `count`. `count` must be non-zero.
pub fn rank_of(q: f64, count: u64) -> u64 {
    ((q * count as f64).ceil() as u64).clamp(1, count)
}

/// Figures of a histogram at one moment. All zero for an empty histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct HistogramSnapshot {
    /// Number of values recorded.
    pub count: u64,
    /// Sum of the recorded values, saturating at `u64::MAX`.
    pub sum: u64,
    /// Smallest value recorded (exact).
    pub min: u64,
    /// Largest value recorded (exact).
    pub max: u64,
    /// Median (bucketed: within 1/32 of the true nearest-rank value).
    pub p50: u64,
    /// 95th percentile (bucketed like `p50`).
    pub p95: u64,
    /// 99th percentile (bucketed like `p50`).
    pub p99: u64,
    /// 99.9th percentile (bucketed like `p50`).
    pub p999: u64,
}

/// One copy of the counters; see the module docs.
#[repr(align(128))]
struct Stripe {
    sum: AtomicU64,
    sum_saturated: AtomicBool,
    min: AtomicU64,
    max: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Stripe {
    fn new() -> Self {
        Stripe {
            sum: AtomicU64::new(0),
            sum_saturated: AtomicBool::new(false),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The calling thread's stripe.
fn stripe_of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

/// A histogram of `u64` values (typically latencies in nanoseconds, or sizes). Cloning gives
/// another handle to the same histogram. See the module docs for buckets and error bound.
#[derive(Clone)]
pub struct Histogram {
    stripes: Arc<[Stripe]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Histogram").field(&self.snapshot()).finish()
    }
}

impl Histogram {
    /// An empty histogram, not in any registry.
    pub fn new() -> Self {
        Histogram {
            stripes: (0..STRIPES).map(|_| Stripe::new()).collect(),
        }
    }

    /// Records one value. Lock-free, no allocation.
    #[inline]
    pub fn record(&self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` occurrences of `v` (nothing when `n == 0`). Lock-free, no allocation.
    #[inline]
    pub fn record_n(&self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        let s = &self.stripes[stripe_of_thread()];
        s.buckets[bucket_index(v)].fetch_add(n, Relaxed);
        let (add, mul_overflow) = v.overflowing_mul(n);
        let before = s.sum.fetch_add(add, Relaxed);
        if mul_overflow || before.checked_add(add).is_none() {
            s.sum_saturated.store(true, Relaxed);
        }
        if v < s.min.load(Relaxed) {
            s.min.fetch_min(v, Relaxed);
        }
        if v > s.max.load(Relaxed) {
            s.max.fetch_max(v, Relaxed);
        }
    }

    /// Records a duration in nanoseconds (saturating at `u64::MAX` ns, about 584 years).
    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.stripes
            .iter()
            .flat_map(|s| s.buckets.iter())
            .map(|b| b.load(Relaxed))
            .sum()
    }

    /// Sum of the values recorded, saturating at `u64::MAX`.
    pub fn sum(&self) -> u64 {
        self.stripes.iter().fold(0u64, |acc, s| {
            if s.sum_saturated.load(Relaxed) {
                u64::MAX
            } else {
                acc.saturating_add(s.sum.load(Relaxed))
            }
        })
    }

    /// Smallest value recorded; 0 when empty.
    pub fn min(&self) -> u64 {
        let m = self.stripes.iter().map(|s| s.min.load(Relaxed)).min();
        match m {
            Some(m) if m != u64::MAX || self.count() > 0 => m,
            _ => 0,
        }
    }

    /// Largest value recorded; 0 when empty.
    pub fn max(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.max.load(Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// The `q` quantile (nearest rank, see [`rank_of`]) within the documented bound:
    /// `|result - x| <= x / 32` for the true quantile `x`. `quantile(0.0)` is the exact
    /// minimum and `quantile(1.0)` the exact maximum; 0 when empty.
    ///
    /// # Panics
    ///
    /// When `q` is not in `[0, 1]` (NaN included): that is a programming error.
    pub fn quantile(&self, q: f64) -> u64 {
        self.merged().quantile(q)
    }

    /// Count, sum, min, max and the 0.5/0.95/0.99/0.999 quantiles, from one pass over the
    /// buckets (so they agree with each other even while others record).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let m = self.merged();
        if m.count == 0 {
            return HistogramSnapshot::default();
        }
        HistogramSnapshot {
            count: m.count,
            sum: self.sum(),
            min: m.min,
            max: m.max,
            p50: m.quantile(0.5),
            p95: m.quantile(0.95),
            p99: m.quantile(0.99),
            p999: m.quantile(0.999),
        }
    }

    /// The stripes added together into one set of buckets.
    fn merged(&self) -> Merged {
        let mut buckets = [0u64; BUCKETS];
        let mut min = u64::MAX;
        let mut max = 0;
        for s in self.stripes.iter() {
            for (total, b) in buckets.iter_mut().zip(s.buckets.iter()) {
                *total += b.load(Relaxed);
            }
            min = min.min(s.min.load(Relaxed));
            max = max.max(s.max.load(Relaxed));
        }
        let count = buckets.iter().sum();
        Merged {
            buckets,
            count,
            min,
            max,
        }
    }
}

/// Buckets of all stripes, read once.
struct Merged {
    buckets: [u64; BUCKETS],
    count: u64,
    min: u64,
    max: u64,
}

impl Merged {
    fn quantile(&self, q: f64) -> u64 {
        assert!(
            (0.0..=1.0).contains(&q),
            "histogram quantile must be in [0, 1], got {q}"
        );
        if self.count == 0 {
            return 0;
        }
        let rank = rank_of(q, self.count);
        // A record in flight can show its bucket before its min/max; keep the range sane.
        let (min, max) = (self.min.min(self.max), self.max.max(self.min));
        if rank == 1 {
            return min;
        }
        if rank == self.count {
            return max;
        }
        let mut seen = 0u64;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_middle(index).clamp(min, max);
            }
        }
        max
    }
}
