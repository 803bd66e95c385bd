//! A fixed-size latency histogram (log-linear buckets, 32 per power of two, so a reported
//! percentile is within 1/32 of the true value). It never grows, so a braid's memory stays
//! fixed over a run. Timings are statistics only: nothing in a run depends on them.

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Nanosecond latencies.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl LatencyHistogram {
    /// An empty histogram (its buckets are allocated once, here).
    pub fn new() -> LatencyHistogram {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros();
        let mant = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
        (exp - SUB_BITS + 1) as usize * SUB + mant
    }

    /// The largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let exp = (i / SUB) as u32 + SUB_BITS - 1;
        let mant = (i % SUB) as u64;
        let lo = (1u64 << exp) | (mant << (exp - SUB_BITS));
        lo + ((1u64 << (exp - SUB_BITS)) - 1)
    }

    /// Records one latency of `ns` nanoseconds.
    pub fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
        self.count += 1;
        self.sum_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values recorded (ns).
    pub fn sum_ns(&self) -> u128 {
        self.sum_ns
    }

    /// Largest value recorded (ns; 0 when empty).
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// Mean of the values recorded (ns; 0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// The `q`-quantile (0 < q <= 1): the upper bound of the bucket holding the
    /// `ceil(q·count)`-th smallest value, capped at the maximum seen; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                return Self::upper(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 40, u64::MAX / 3, u64::MAX]) {
            let i = LatencyHistogram::index(v);
            assert!(i >= last, "index not monotone at {v}");
            assert!(i < BUCKETS);
            assert!(LatencyHistogram::upper(i) >= v);
            assert!(LatencyHistogram::upper(i) as f64 <= v as f64 * (1.0 + 1.0 / 32.0) + 1.0);
            last = i;
        }
    }

    #[test]
    fn quantiles_within_a_bucket() {
        let mut h = LatencyHistogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        for (q, exact) in [(0.5, 500_000.0), (0.95, 950_000.0), (0.99, 990_000.0)] {
            let got = h.quantile(q) as f64;
            assert!(
                got >= exact && got <= exact * 1.04,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.count(), 1000);
        let mut m = LatencyHistogram::new();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(
            (m.count(), m.sum_ns(), m.max_ns()),
            (2000, 2 * h.sum_ns(), 1_000_000)
        );
        assert_eq!(m.quantile(0.5), h.quantile(0.5));
        assert_eq!(LatencyHistogram::new().quantile(0.5), 0);
    }
}
