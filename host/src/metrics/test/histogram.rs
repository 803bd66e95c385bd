//! Invariant: every quantile a [`Histogram`] reports is within `x / 32` of the exact
//! nearest-rank quantile `x` of the values recorded, over the whole `u64` range; count, min
//! and max are exact, and sum is exact (saturating at `u64::MAX`), also when many threads
//! record at once.

use std::thread;
use std::time::Duration;

use crate::metrics::{
    BUCKETS, Histogram, HistogramSnapshot, RELATIVE_ERROR_DIVISOR, SUB_BUCKETS, bucket_bounds,
    bucket_index,
};

/// splitmix64: a small deterministic generator for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

const QS: [f64; 14] = [
    0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 0.99999, 1.0,
];

/// Records `values`, then checks every figure against the sorted values.
fn check_against_exact(what: &str, values: &[u64]) {
    let h = Histogram::new();
    for &v in values {
        h.record(v);
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    assert_eq!(h.count(), n, "{what}: count");
    let sum = sorted.iter().fold(0u64, |acc, &v| acc.saturating_add(v));
    assert_eq!(h.sum(), sum, "{what}: sum");
    assert_eq!(h.min(), sorted[0], "{what}: min");
    assert_eq!(h.max(), *sorted.last().unwrap(), "{what}: max");
    for q in QS {
        // Nearest rank, computed here independently of `rank_of`.
        let rank = ((q * n as f64).ceil() as u64).max(1).min(n);
        let exact = sorted[(rank - 1) as usize];
        let got = h.quantile(q);
        let bound = exact / RELATIVE_ERROR_DIVISOR;
        assert!(
            got.abs_diff(exact) <= bound,
            "{what}: quantile {q}: got {got}, exact {exact}, allowed error {bound}"
        );
    }
    let s = h.snapshot();
    let expected = HistogramSnapshot {
        count: n,
        sum,
        min: sorted[0],
        max: *sorted.last().unwrap(),
        p50: h.quantile(0.5),
        p95: h.quantile(0.95),
        p99: h.quantile(0.99),
        p999: h.quantile(0.999),
    };
    assert_eq!(s, expected, "{what}: snapshot");
}

#[test]
fn buckets_tile_the_u64_range_with_bounded_width() {
    let mut next_lo = 0u64;
    for i in 0..BUCKETS {
        let (lo, width) = bucket_bounds(i);
        assert_eq!(
            lo,
            next_lo,
            "bucket {i} does not start where bucket {} ends",
            i.wrapping_sub(1)
        );
        let hi = lo + (width - 1);
        assert_eq!(bucket_index(lo), i, "lowest value of bucket {i}");
        assert_eq!(bucket_index(hi), i, "highest value of bucket {i}");
        assert!(
            width == 1 || width <= lo / SUB_BUCKETS as u64,
            "bucket {i}: width {width} too wide for a bucket starting at {lo}"
        );
        next_lo = hi.wrapping_add(1);
    }
    assert_eq!(next_lo, 0, "the last bucket must end at u64::MAX");
    assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    assert_eq!(bucket_index(0), 0);
}

#[test]
fn bucket_index_is_monotonic_on_random_pairs() {
    let mut rng = Rng(7);
    for _ in 0..100_000 {
        let a = rng.next() >> (rng.next() % 64);
        let b = rng.next() >> (rng.next() % 64);
        let (lo, hi) = (a.min(b), a.max(b));
        assert!(bucket_index(lo) <= bucket_index(hi), "{lo} and {hi}");
    }
}

#[test]
fn quantiles_of_uniform_values_are_within_the_bound() {
    let mut rng = Rng(1);
    let values: Vec<u64> = (0..100_000).map(|_| rng.next() % 1_000_000).collect();
    check_against_exact("uniform 0..1e6", &values);
}

#[test]
fn quantiles_of_exponential_values_are_within_the_bound() {
    let mut rng = Rng(2);
    let values: Vec<u64> = (0..100_000)
        .map(|_| (-rng.unit().ln() * 50_000.0) as u64)
        .collect();
    check_against_exact("exponential, mean 5e4", &values);
}

#[test]
fn quantiles_of_constant_values_are_exact() {
    for v in [0, 1, 15, 16, 17, 12_345, 1 << 40, u64::MAX - 1, u64::MAX] {
        let values = vec![v; 1_000];
        check_against_exact(&format!("constant {v}"), &values);
        let h = Histogram::new();
        h.record_n(v, 1_000);
        for q in QS {
            assert_eq!(
                h.quantile(q),
                v,
                "constant {v}: quantile {q} of a constant is clamped to it"
            );
        }
    }
}

#[test]
fn quantiles_of_small_values_are_exact() {
    let mut rng = Rng(3);
    let values: Vec<u64> = (0..10_000)
        .map(|_| rng.next() % SUB_BUCKETS as u64)
        .collect();
    let h = Histogram::new();
    values.iter().for_each(|&v| h.record(v));
    let mut sorted = values;
    sorted.sort_unstable();
    for q in QS {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        assert_eq!(h.quantile(q), sorted[rank - 1], "quantile {q}");
    }
}

#[test]
fn quantiles_over_the_full_range_are_within_the_bound() {
    let mut rng = Rng(4);
    let mut values: Vec<u64> = (0..100_000)
        .map(|_| rng.next() >> (rng.next() % 64))
        .collect();
    values.extend([0, 0, u64::MAX, u64::MAX, 1, u64::MAX - 1]);
    check_against_exact("log-uniform over u64, with 0 and u64::MAX", &values);
}

#[test]
fn quantiles_near_u64_max_are_within_the_bound() {
    let mut rng = Rng(5);
    let values: Vec<u64> = (0..50_000)
        .map(|_| u64::MAX - rng.next() % (1 << 62))
        .collect();
    check_against_exact("near u64::MAX", &values);
}

#[test]
fn quantiles_of_a_bimodal_mix_are_within_the_bound() {
    let mut rng = Rng(6);
    let values: Vec<u64> = (0..60_000)
        .map(|i| {
            if i % 10 == 0 {
                10_000_000 + rng.next() % 1_000_000
            } else {
                200 + rng.next() % 50
            }
        })
        .collect();
    check_against_exact("bimodal", &values);
}

#[test]
fn empty_histogram_reads_zero() {
    let h = Histogram::new();
    assert_eq!(h.count(), 0);
    assert_eq!(h.sum(), 0);
    assert_eq!(h.min(), 0);
    assert_eq!(h.max(), 0);
    assert_eq!(h.quantile(0.99), 0);
    assert_eq!(h.snapshot(), HistogramSnapshot::default());
    h.record_n(5, 0);
    assert_eq!(h.count(), 0, "record_n with n = 0 records nothing");
}

#[test]
#[should_panic(expected = "histogram quantile must be in [0, 1], got 1.5")]
fn quantile_outside_unit_interval_panics() {
    Histogram::new().quantile(1.5);
}

#[test]
fn record_n_equals_n_records() {
    let a = Histogram::new();
    let b = Histogram::new();
    let mut rng = Rng(8);
    for _ in 0..1_000 {
        let v = rng.next() >> (rng.next() % 64);
        let n = rng.next() % 5;
        a.record_n(v, n);
        (0..n).for_each(|_| b.record(v));
    }
    assert_eq!(a.snapshot(), b.snapshot());
}

#[test]
fn sum_saturates_at_u64_max() {
    let h = Histogram::new();
    h.record(u64::MAX);
    assert_eq!(h.sum(), u64::MAX);
    h.record(1);
    assert_eq!(h.sum(), u64::MAX, "overflowing add saturates");
    let g = Histogram::new();
    g.record_n(u64::MAX / 2, 3);
    assert_eq!(g.sum(), u64::MAX, "overflowing value * n saturates");
    assert_eq!(g.count(), 3);
}

#[test]
fn record_duration_records_nanoseconds() {
    let h = Histogram::new();
    h.record_duration(Duration::from_micros(3));
    h.record_duration(Duration::MAX);
    assert_eq!(h.min(), 3_000);
    assert_eq!(h.max(), u64::MAX);
}

#[test]
fn clones_share_one_histogram() {
    let h = Histogram::new();
    let c = h.clone();
    c.record(42);
    assert_eq!(h.count(), 1);
    assert_eq!(h.max(), 42);
}

#[test]
fn concurrent_recording_from_8_threads_is_exact() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 50_000;
    let value = |t: u64, i: u64| {
        let mut rng = Rng(t * 1_000_003 + i);
        rng.next() >> (24 + rng.next() % 40)
    };
    let shared = Histogram::new();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = shared.clone();
            thread::spawn(move || {
                for i in 0..PER_THREAD {
                    h.record(value(t, i));
                }
                h.record_n(t, 10);
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let sequential = Histogram::new();
    let mut sum = 0u64;
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            sequential.record(value(t, i));
            sum += value(t, i);
        }
        sequential.record_n(t, 10);
        sum += t * 10;
    }
    assert_eq!(shared.count(), THREADS * (PER_THREAD + 10));
    assert_eq!(shared.sum(), sum);
    assert_eq!(shared.snapshot(), sequential.snapshot());
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Histogram>();
}
