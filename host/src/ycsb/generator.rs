//! YCSB's number generators, reimplemented from their algorithms on top of
//! [`SplitMix64`]: `ZipfianGenerator` ([`Zipfian`]), `ScrambledZipfianGenerator`
//! ([`ScrambledZipfian`]), `SkewedLatestGenerator` ([`SkewedLatest`]) and YCSB's 64-bit FNV
//! hash ([`fnv1a64`]). `UniformLongGenerator` is one `below` call and lives in the stream.
//!
//! The zipfian algorithm is Gray et al., "Quickly Generating Billion-Record Synthetic
//! Databases" (SIGMOD 1994), as YCSB uses it: with `zeta(n, θ) = Σ_{i=1..n} 1/i^θ`,
//! `α = 1/(1-θ)` and `η = (1 - (2/n)^(1-θ)) / (1 - zeta(2, θ)/zeta(n, θ))`, a uniform
//! `u ∈ [0, 1)` gives item 0 when `u·zeta(n) < 1`, item 1 when `u·zeta(n) < 1 + 0.5^θ`, and
//! otherwise `⌊n·(η·u - η + 1)^α⌋`. The two fast paths are exact, so item 0 has probability
//! `1/zeta(n)` and item 1 `0.5^θ/zeta(n)`.

use std::sync::{Mutex, OnceLock, PoisonError};

use warpgrid_engine::rng::SplitMix64;

/// YCSB's zipfian constant θ (`ZipfianGenerator.ZIPFIAN_CONSTANT`).
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// The item space the scrambled zipfian draws from before hashing
/// (`ScrambledZipfianGenerator.ITEM_COUNT` as YCSB computed [`SCRAMBLED_ZETAN`] for it).
pub const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;

/// `zeta(SCRAMBLED_ITEM_COUNT, 0.99)`, precomputed by YCSB
/// (`ScrambledZipfianGenerator.ZETAN`) so the scrambled generator starts in O(1).
pub const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

const FNV_OFFSET_BASIS_64: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME_64: u64 = 0x0000_0100_0000_01B3;

/// FNV-1a, 64-bit, over `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS_64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME_64)
    })
}

/// YCSB's `Utils.fnvhash64`: FNV-1a over the 8 little-endian bytes of `val`, then Java's
/// `Math.abs` of the signed result. The one difference: Java's `abs(Long.MIN_VALUE)` stays
/// negative, here it is 2^63.
pub(crate) fn ycsb_fnvhash64(val: u64) -> u64 {
    (fnv1a64(&val.to_le_bytes()) as i64).unsigned_abs()
}

/// `Σ_{i=from..to} 1/(i+1)^θ + initial`: zeta over items `from..to`, continued from
/// `initial` (YCSB's `zetastatic(st, n, theta, initialsum)`, same summation order).
fn zeta_range(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    let mut sum = initial;
    for i in from..to {
        sum += 1.0 / ((i + 1) as f64).powf(theta);
    }
    sum
}

/// `zeta(n, θ) = Σ_{i=1..n} 1/i^θ`. It is O(n) (about 0.2 s for n = 10^7), so values for
/// n ≥ 65,536 are cached for the process, keyed by `(n, θ)`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    const CACHE_FROM: u64 = 1 << 16;
    const CACHE_ENTRIES: usize = 32;
    static CACHE: OnceLock<Mutex<Vec<(u64, u64, f64)>>> = OnceLock::new();

    if n < CACHE_FROM {
        return zeta_range(0, n, theta, 0.0);
    }
    let cache = CACHE.get_or_init(Mutex::default);
    let bits = theta.to_bits();
    let hit = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|&&(cn, cb, _)| cn == n && cb == bits)
        .map(|&(_, _, z)| z);
    if let Some(z) = hit {
        return z;
    }
    // Computed outside the lock: two threads may both compute it, and get the same value.
    let z = zeta_range(0, n, theta, 0.0);
    let mut entries = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if entries.len() >= CACHE_ENTRIES {
        entries.remove(0);
    }
    entries.push((n, bits, z));
    z
}

/// Gray's η for `items` items.
fn eta(items: u64, theta: f64, zeta2: f64, zetan: f64) -> f64 {
    (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
}

/// YCSB's `ZipfianGenerator`: items `min..=max`, `min` the most popular, then `min + 1`, ...
///
/// The item count can grow between draws ([`Zipfian::next_in`]); zeta is then extended
/// incrementally, O(new items), as YCSB does.
#[derive(Debug, Clone)]
pub struct Zipfian {
    base: u64,
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    /// `1 + 0.5^θ`: the bound of the item-1 fast path.
    second_bound: f64,
    zetan: f64,
    eta: f64,
    /// The item count `zetan` and `eta` were computed for.
    count_for_zeta: u64,
}

impl Zipfian {
    /// Items `0..items` with θ = 0.99. Computes zeta(items): O(items) once, then cached.
    ///
    /// # Panics
    /// If `items` is 0.
    pub fn new(items: u64) -> Zipfian {
        assert!(
            items > 0,
            "a zipfian distribution needs at least 1 item, got 0"
        );
        Zipfian::with_range(0, items - 1, ZIPFIAN_CONSTANT)
    }

    /// Items `min..=max` with zipfian constant `theta`.
    ///
    /// # Panics
    /// If `min > max`, the range holds 2^64 items, or `theta` is not in (0, 1).
    pub fn with_range(min: u64, max: u64, theta: f64) -> Zipfian {
        let items = item_count(min, max);
        Zipfian::with_zetan(min, max, theta, zeta(items, theta))
    }

    /// Items `min..=max` with a precomputed `zetan = zeta(max - min + 1, theta)`.
    pub(crate) fn with_zetan(min: u64, max: u64, theta: f64, zetan: f64) -> Zipfian {
        assert!(
            theta > 0.0 && theta < 1.0,
            "zipfian constant must be in (0, 1), got {theta}"
        );
        let items = item_count(min, max);
        let zeta2 = zeta_range(0, 2, theta, 0.0);
        Zipfian {
            base: min,
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2,
            second_bound: 1.0 + 0.5f64.powf(theta),
            zetan,
            eta: eta(items, theta, zeta2, zetan),
            count_for_zeta: items,
        }
    }

    /// The item count given at construction.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// zeta(n, θ) for the item count of the last draw (the constructed count before any).
    pub fn zetan(&self) -> f64 {
        self.zetan
    }

    /// Draws from the constructed item count (YCSB's `nextValue`).
    pub fn next(&mut self, rng: &mut SplitMix64) -> u64 {
        self.next_in(rng, self.items)
    }

    /// Draws from `min..min + item_count` (YCSB's `nextLong(itemcount)`). A larger count than
    /// the last one extends zeta incrementally; a smaller one recomputes it (cached for large
    /// counts).
    ///
    /// # Panics
    /// If `item_count` is 0.
    pub fn next_in(&mut self, rng: &mut SplitMix64, item_count: u64) -> u64 {
        assert!(
            item_count > 0,
            "a zipfian draw needs at least 1 item, got 0"
        );
        if item_count != self.count_for_zeta {
            self.zetan = if item_count > self.count_for_zeta {
                zeta_range(self.count_for_zeta, item_count, self.theta, self.zetan)
            } else {
                zeta(item_count, self.theta)
            };
            self.count_for_zeta = item_count;
            self.eta = eta(item_count, self.theta, self.zeta2, self.zetan);
        }
        let u = rng.unit_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return self.base;
        }
        if uz < self.second_bound {
            return self.base + 1;
        }
        let x = item_count as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        // The formula stays below item_count in exact arithmetic; the clamp only guards f64
        // rounding (a NaN casts to 0).
        self.base + (x as u64).min(item_count - 1)
    }
}

fn item_count(min: u64, max: u64) -> u64 {
    assert!(min <= max, "empty item range {min}..={max}");
    (max - min)
        .checked_add(1)
        .expect("an item range holds at most 2^64 - 1 items")
}

/// YCSB's `ScrambledZipfianGenerator`: a zipfian draw over [`SCRAMBLED_ITEM_COUNT`] items
/// (θ = 0.99, zeta precomputed as [`SCRAMBLED_ZETAN`]), hashed with YCSB's FNV-1a 64 and
/// reduced modulo the item count of `min..=max`. The popular items land scattered over the
/// range, and construction is O(1) whatever the range.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    zipf: Zipfian,
    min: u64,
    item_count: u64,
}

impl ScrambledZipfian {
    /// Items `min..=max`.
    ///
    /// # Panics
    /// If `min > max` or the range holds 2^64 items.
    pub fn new(min: u64, max: u64) -> ScrambledZipfian {
        ScrambledZipfian {
            // YCSB: new ZipfianGenerator(0, ITEM_COUNT, 0.99, ZETAN).
            zipf: Zipfian::with_zetan(0, SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN),
            min,
            item_count: item_count(min, max),
        }
    }

    /// The next item in `min..=max`.
    pub fn next(&mut self, rng: &mut SplitMix64) -> u64 {
        self.min + ycsb_fnvhash64(self.zipf.next(rng)) % self.item_count
    }
}

/// YCSB's `SkewedLatestGenerator`: `last - zipfian(last)`, where `last` is the highest
/// acknowledged key number, so the newest record is the most popular, the one before it
/// next, and so on. As in YCSB, the zipfian draw is in `0..last`, so the result is in
/// `1..=last` (key number 0 is never chosen once `last > 0`).
#[derive(Debug, Clone)]
pub(crate) struct SkewedLatest {
    zipf: Zipfian,
}

impl SkewedLatest {
    /// `last`: the highest acknowledged key number at the start (record count - 1).
    pub(crate) fn new(last: u64) -> SkewedLatest {
        SkewedLatest {
            zipf: Zipfian::new(last.max(1)),
        }
    }

    /// The next key number in `1..=last` (`0` when `last` is 0: one record, nothing to skew).
    pub(crate) fn next(&mut self, rng: &mut SplitMix64, last: u64) -> u64 {
        if last == 0 {
            return 0;
        }
        last - self.zipf.next_in(rng, last)
    }
}
