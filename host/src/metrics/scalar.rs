//! [`Counter`] (a monotonic `u64`) and [`Gauge`] (an `f64` that goes up and down): single
//! atomics behind an `Arc`, so a handle is cheap to clone and to share between threads.
//!
//! All operations are `Relaxed` and lock-free: a metric is a statistic, not a
//! synchronisation point.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A monotonic count (operations, bytes, errors). Cloning gives another handle to the same
/// count. It wraps around after `u64::MAX`, which Prometheus reads as a counter reset.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    value: Arc<AtomicU64>,
}

impl Counter {
    /// A counter at zero, not in any registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.value.fetch_add(1, Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

/// A value that goes up and down (queue depth, load factor, CV). Stored as the bits of an
/// `f64` in an `AtomicU64`. Cloning gives another handle to the same value.
#[derive(Debug, Clone)]
pub struct Gauge {
    bits: Arc<AtomicU64>,
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge {
            bits: Arc::new(AtomicU64::new(0f64.to_bits())),
        }
    }
}

impl Gauge {
    /// A gauge at zero, not in any registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        self.bits.store(v.to_bits(), Relaxed);
    }

    /// Adds `delta` (negative to subtract), atomically with respect to other `add`s.
    #[inline]
    pub fn add(&self, delta: f64) {
        // The closure always returns Some, so this cannot fail.
        let _ = self.bits.fetch_update(Relaxed, Relaxed, |b| {
            Some((f64::from_bits(b) + delta).to_bits())
        });
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.bits.load(Relaxed))
    }
}
