//! YCSB core workloads A–F: the operation mix, key choice and key naming of YCSB's
//! `CoreWorkload` (brianfrankcooper/YCSB), reimplemented on [`SplitMix64`] so the same seed
//! always gives the same operations.
//!
//! A run has two phases, as in YCSB:
//! - **load** ([`WorkloadSpec::load`]): insert key numbers `0..record_count` in order, each
//!   as [`key_of`]`(keynum)` with version 0;
//! - **run** ([`OpStream`]): `operation_count` operations drawn from the workload's mix.
//!
//! | workload | mix                        | request distribution |
//! |----------|----------------------------|----------------------|
//! | A        | 50% read, 50% update       | zipfian              |
//! | B        | 95% read, 5% update        | zipfian              |
//! | C        | 100% read                  | zipfian              |
//! | D        | 95% read, 5% insert        | latest               |
//! | E        | 95% scan, 5% insert        | zipfian (scan length uniform 1..=100) |
//! | F        | 50% read, 50% read-modify-write | zipfian         |
//!
//! How each step follows YCSB:
//! - **operation choice**: `DiscreteGenerator` over the positive proportions in YCSB's order
//!   (read, update, insert, scan, read-modify-write): one uniform draw, walked through the
//!   normalised weights.
//! - **`zipfian`**: [`ScrambledZipfian`] over key numbers `0..=record_count +
//!   expected_new_keys`, with `expected_new_keys = ⌊operation_count × insert fraction × 2⌋`
//!   (YCSB's fudge factor 2, so the modulus, and with it which keys are hot, does not shift
//!   as inserts arrive); a draw above the last inserted key number is discarded and redrawn
//!   (`CoreWorkload.nextKeynum`).
//! - **`latest`**: YCSB's `SkewedLatestGenerator` over the acknowledged insert counter:
//!   `last - zipfian(last)` with `last` the highest inserted key number, zeta extended
//!   incrementally as inserts land.
//! - **`uniform`**: `UniformLongGenerator` over the *loaded* key numbers `0..record_count`;
//!   as in YCSB, records inserted during the run are never chosen.
//! - **insert**: the next key number of the insert counter, starting at `record_count`.
//!   The stream acknowledges it at once (YCSB's `AcknowledgedCounterGenerator` with one
//!   client thread), so later operations may target it: apply operations in stream order.
//! - **scan**: a start key chosen like any other key, then a length uniform in
//!   `min_scan_len..=max_scan_len`.
//!
//! **Scans.** A YCSB scan reads the `len` records whose keys sort at or after the start
//! key. warpgrid tables have no key order and no range scan, so [`YcsbOp::Scan`] cannot be
//! executed as YCSB means it: a runner must report workload E as unsupported, or emulate it
//! and label the result as an emulation (for example, `len` point reads), never present it
//! as a YCSB E number.
//!
//! **Deviations from YCSB** (beyond the random source, which is [`SplitMix64`] rather than
//! `java.util.Random`, and keys being u64, see [`key_of`]):
//! - Gray's η is recomputed with the item count of the draw when the count changes; YCSB
//!   keeps the constructor's count in η (a negligible difference while inserts are a small
//!   fraction of the records). A count that shrinks recomputes zeta; YCSB keeps the stale one.
//! - The zipfian result is clamped to the last item against f64 rounding.
//! - Key numbers are u64 throughout; YCSB truncates them to `int` in `nextKeynum`.
//! - Proportions are normalised before computing `expected_new_keys`; YCSB uses the raw
//!   insert proportion (the same when they sum to 1, as A–F do).
//! - With one record, `latest` always returns key number 0; YCSB cannot build that generator.
//!
//! Determinism: a stream is a pure function of its [`WorkloadSpec`] and seed, on a given
//! platform. The zipfian inverse uses `f64::powf`; a libm that rounds `pow` differently could,
//! rarely, move a draw to a neighbouring item.

mod generator;
mod value;

#[cfg(test)]
mod test;

use std::fmt;
use std::str::FromStr;

use warpgrid_engine::rng::SplitMix64;
use warpgrid_engine::table::route::{EMPTY_KEY, TOMBSTONE_KEY};

pub use generator::{
    SCRAMBLED_ITEM_COUNT, SCRAMBLED_ZETAN, ScrambledZipfian, ZIPFIAN_CONSTANT, Zipfian, fnv1a64,
    zeta,
};
pub use value::{YCSB_VALUE_BYTES, fill_value, value_for, value_version};

use generator::SkewedLatest;

/// The warpgrid key of YCSB key number `keynum`.
///
/// YCSB with `insertorder=hashed` (its default) names a record `"user" + fnvhash64(keynum)`.
/// warpgrid keys are u64, so the key is the FNV-1a 64 hash of the 8 little-endian bytes of
/// `keynum` itself. YCSB's decimal suffix is the Java `Math.abs` of the same hash read as a
/// signed long; the key here keeps all 64 bits. The two values warpgrid tables reserve,
/// [`EMPTY_KEY`] (`u64::MAX`) and [`TOMBSTONE_KEY`] (`u64::MAX - 1`), are replaced by the hash
/// xor 2 (`u64::MAX - 2` and `u64::MAX - 3`), so a key is never reserved. The map is
/// injective over every key number a test has checked (`0..1_000_000`); a key number whose
/// hash is `u64::MAX - 2` or `u64::MAX - 3` would collide with a replaced one.
pub fn key_of(keynum: u64) -> u64 {
    avoid_reserved(fnv1a64(&keynum.to_le_bytes()))
}

fn avoid_reserved(h: u64) -> u64 {
    if h == EMPTY_KEY || h == TOMBSTONE_KEY {
        h ^ 2
    } else {
        h
    }
}

/// How a workload picks the record an operation targets (YCSB's `requestdistribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Distribution {
    /// Every loaded record equally likely.
    Uniform,
    /// Scrambled zipfian (θ = 0.99): a few records, scattered over the key space, are hot.
    Zipfian,
    /// Skewed towards the most recently inserted records.
    Latest,
}

impl Distribution {
    /// YCSB's property value: `uniform`, `zipfian` or `latest`.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
            Distribution::Latest => "latest",
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Distribution {
    type Err = YcsbError;

    /// `uniform`, `zipfian` or `latest`, any case.
    fn from_str(s: &str) -> Result<Distribution, YcsbError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" => Ok(Distribution::Zipfian),
            "latest" => Ok(Distribution::Latest),
            _ => Err(YcsbError::UnknownDistribution { name: s.to_owned() }),
        }
    }
}

/// The YCSB core workloads (the `workloads/workloada`..`workloadf` property files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Update heavy: 50% read, 50% update, zipfian.
    A,
    /// Read mostly: 95% read, 5% update, zipfian.
    B,
    /// Read only: 100% read, zipfian.
    C,
    /// Read latest: 95% read, 5% insert, latest.
    D,
    /// Short ranges: 95% scan, 5% insert, zipfian, scan length uniform 1..=100.
    E,
    /// Read-modify-write: 50% read, 50% read-modify-write, zipfian.
    F,
}

impl Workload {
    /// A to F.
    pub const ALL: [Workload; 6] = [
        Workload::A,
        Workload::B,
        Workload::C,
        Workload::D,
        Workload::E,
        Workload::F,
    ];

    /// `"a"` to `"f"`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::D => "d",
            Workload::E => "e",
            Workload::F => "f",
        }
    }

    /// The workload's property file as a spec, with its `recordcount` and `operationcount`
    /// (1000 each; set real sizes with [`WorkloadSpec::with_counts`]). `maxscanlength` is
    /// 100 for E (its file) and YCSB's default 1000 elsewhere, where no scans are drawn.
    pub fn spec(self) -> WorkloadSpec {
        let base = WorkloadSpec {
            read: 0.0,
            update: 0.0,
            insert: 0.0,
            scan: 0.0,
            rmw: 0.0,
            distribution: Distribution::Zipfian,
            min_scan_len: 1,
            max_scan_len: 1000,
            record_count: 1000,
            operation_count: 1000,
        };
        match self {
            Workload::A => WorkloadSpec {
                read: 0.5,
                update: 0.5,
                ..base
            },
            Workload::B => WorkloadSpec {
                read: 0.95,
                update: 0.05,
                ..base
            },
            Workload::C => WorkloadSpec { read: 1.0, ..base },
            Workload::D => WorkloadSpec {
                read: 0.95,
                insert: 0.05,
                distribution: Distribution::Latest,
                ..base
            },
            Workload::E => WorkloadSpec {
                scan: 0.95,
                insert: 0.05,
                max_scan_len: 100,
                ..base
            },
            Workload::F => WorkloadSpec {
                read: 0.5,
                rmw: 0.5,
                ..base
            },
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = YcsbError;

    /// `a`..`f` or `workloada`..`workloadf`, any case.
    fn from_str(s: &str) -> Result<Workload, YcsbError> {
        let lower = s.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("workload").unwrap_or(&lower);
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| YcsbError::UnknownWorkload { name: s.to_owned() })
    }
}

/// A YCSB `CoreWorkload` configuration: the proportions of each operation (weights, not
/// necessarily summing to 1; YCSB normalises them), the request distribution, the scan
/// lengths and the sizes of the two phases.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// `readproportion`.
    pub read: f64,
    /// `updateproportion`.
    pub update: f64,
    /// `insertproportion`.
    pub insert: f64,
    /// `scanproportion`.
    pub scan: f64,
    /// `readmodifywriteproportion`.
    pub rmw: f64,
    /// `requestdistribution`.
    pub distribution: Distribution,
    /// `minscanlength` (YCSB default 1).
    pub min_scan_len: u64,
    /// `maxscanlength` (YCSB default 1000; 100 in workload E).
    pub max_scan_len: u64,
    /// `recordcount`: records inserted by the load phase.
    pub record_count: u64,
    /// `operationcount`: operations in the run phase.
    pub operation_count: u64,
}

impl WorkloadSpec {
    /// The same spec with other phase sizes.
    pub fn with_counts(self, record_count: u64, operation_count: u64) -> WorkloadSpec {
        WorkloadSpec {
            record_count,
            operation_count,
            ..self
        }
    }

    /// The proportions in YCSB's order, with their operation kinds.
    fn proportions(&self) -> [(OpKind, f64); 5] {
        [
            (OpKind::Read, self.read),
            (OpKind::Update, self.update),
            (OpKind::Insert, self.insert),
            (OpKind::Scan, self.scan),
            (OpKind::ReadModifyWrite, self.rmw),
        ]
    }

    /// Checks what [`OpStream::new`] needs: at least one record, finite non-negative
    /// proportions with a positive sum, `1 <= min_scan_len <= max_scan_len`, and key numbers
    /// that cannot overflow.
    pub fn validate(&self) -> Result<(), YcsbError> {
        if self.record_count == 0 {
            return Err(YcsbError::NoRecords);
        }
        for (kind, p) in self.proportions() {
            if !p.is_finite() || p < 0.0 {
                return Err(YcsbError::BadProportion {
                    op: kind.name(),
                    value: p,
                });
            }
        }
        if self.proportions().iter().all(|&(_, p)| p == 0.0) {
            return Err(YcsbError::NoOperations);
        }
        if self.min_scan_len == 0 || self.min_scan_len > self.max_scan_len {
            return Err(YcsbError::BadScanLength {
                min: self.min_scan_len,
                max: self.max_scan_len,
            });
        }
        if self.key_space_end().is_none() {
            return Err(YcsbError::KeySpaceOverflow {
                record_count: self.record_count,
                operation_count: self.operation_count,
            });
        }
        Ok(())
    }

    /// The insert share of the normalised proportions.
    fn insert_fraction(&self) -> f64 {
        let sum: f64 = self.proportions().iter().map(|&(_, p)| p).sum();
        self.insert / sum
    }

    /// The last key number the zipfian chooser can draw: `record_count + expected_new_keys`
    /// (YCSB's `insertstart + insertcount + expectednewkeys`); `None` if the key numbers of
    /// the run, or the count of that range, could overflow u64.
    fn key_space_end(&self) -> Option<u64> {
        let expected_new_keys = (self.operation_count as f64 * self.insert_fraction() * 2.0) as u64;
        if self.insert > 0.0 {
            // Every operation could be an insert: the insert counter must not overflow.
            self.record_count.checked_add(self.operation_count)?;
        }
        self.record_count
            .checked_add(expected_new_keys)
            .filter(|&end| end < u64::MAX)
    }

    /// The load phase: `Insert { key: key_of(keynum), version: 0 }` for key numbers
    /// `0..record_count`, in order.
    pub fn load(&self) -> impl Iterator<Item = YcsbOp> + use<> {
        (0..self.record_count).map(|keynum| YcsbOp::Insert {
            key: key_of(keynum),
            version: 0,
        })
    }

    /// The run phase with `seed`: [`OpStream::new`].
    pub fn stream(&self, seed: u64) -> Result<OpStream, YcsbError> {
        OpStream::new(self, seed)
    }
}

/// The kind of a YCSB operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`YcsbOp::Read`].
    Read,
    /// [`YcsbOp::Update`].
    Update,
    /// [`YcsbOp::Insert`].
    Insert,
    /// [`YcsbOp::Scan`].
    Scan,
    /// [`YcsbOp::ReadModifyWrite`].
    ReadModifyWrite,
}

impl OpKind {
    /// `read`, `update`, `insert`, `scan` or `read-modify-write`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::ReadModifyWrite => "read-modify-write",
        }
    }
}

/// One YCSB operation. Keys are [`key_of`] of a key number. Writes carry the version whose
/// [`value_for`] they store: 0 for the load phase, the operation's 1-based index in the run
/// phase, so every write of a run writes a distinct value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum YcsbOp {
    /// Read the record.
    Read {
        /// The table key ([`key_of`] of the key number).
        key: u64,
    },
    /// Overwrite the record with version `version`.
    Update {
        /// The table key ([`key_of`] of the key number).
        key: u64,
        /// Version the written value encodes ([`value_for`]).
        version: u64,
    },
    /// Insert a new record with version `version`.
    Insert {
        /// The table key ([`key_of`] of the key number).
        key: u64,
        /// Version the written value encodes ([`value_for`]).
        version: u64,
    },
    /// Read `len` records whose keys sort at or after `start`. warpgrid tables cannot do this
    /// (see the module docs): report it unsupported, or emulate it and say so.
    Scan {
        /// The first table key ([`key_of`] of the key number).
        start: u64,
        /// Number of records to read.
        len: u64,
    },
    /// Read the record, then overwrite it with version `version`.
    ReadModifyWrite {
        /// The table key ([`key_of`] of the key number).
        key: u64,
        /// Version the written value encodes ([`value_for`]).
        version: u64,
    },
}

impl YcsbOp {
    /// The operation's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            YcsbOp::Read { .. } => OpKind::Read,
            YcsbOp::Update { .. } => OpKind::Update,
            YcsbOp::Insert { .. } => OpKind::Insert,
            YcsbOp::Scan { .. } => OpKind::Scan,
            YcsbOp::ReadModifyWrite { .. } => OpKind::ReadModifyWrite,
        }
    }

    /// The key the operation targets (a scan's start key).
    pub fn key(&self) -> u64 {
        match *self {
            YcsbOp::Read { key }
            | YcsbOp::Update { key, .. }
            | YcsbOp::Insert { key, .. }
            | YcsbOp::ReadModifyWrite { key, .. } => key,
            YcsbOp::Scan { start, .. } => start,
        }
    }
}

/// How key numbers are chosen (YCSB's `keychooser`).
#[derive(Debug, Clone)]
enum KeyChooser {
    /// `UniformLongGenerator(0, record_count - 1)`.
    Uniform { records: u64 },
    /// `ScrambledZipfianGenerator(0, record_count + expected_new_keys)`.
    Zipfian(ScrambledZipfian),
    /// `SkewedLatestGenerator(insert counter)`.
    Latest(SkewedLatest),
}

/// The run phase of a workload: `operation_count` operations, deterministic in the seed.
///
/// It tracks the insert counter itself: inserts take key numbers `record_count`,
/// `record_count + 1`, ... and are acknowledged at once, so the choosers (`latest` above
/// all) see them from the next operation on.
#[derive(Debug, Clone)]
pub struct OpStream {
    rng: SplitMix64,
    /// The positive proportions in YCSB's order, normalised.
    mix: Vec<(OpKind, f64)>,
    keys: KeyChooser,
    min_scan_len: u64,
    max_scan_len: u64,
    record_count: u64,
    operation_count: u64,
    /// Operations yielded so far.
    issued: u64,
    /// The highest inserted key number (YCSB's acknowledged counter `lastValue`).
    last_keynum: u64,
}

impl OpStream {
    /// The run phase of `spec` with `seed`. O(1) for `uniform` and `zipfian`; O(record count)
    /// once for `latest` (zeta, cached for later streams of the same size).
    pub fn new(spec: &WorkloadSpec, seed: u64) -> Result<OpStream, YcsbError> {
        spec.validate()?;
        let sum: f64 = spec.proportions().iter().map(|&(_, p)| p).sum();
        let mix = spec
            .proportions()
            .into_iter()
            .filter(|&(_, p)| p > 0.0)
            .map(|(kind, p)| (kind, p / sum))
            .collect();
        let last_keynum = spec.record_count - 1;
        let keys = match spec.distribution {
            Distribution::Uniform => KeyChooser::Uniform {
                records: spec.record_count,
            },
            Distribution::Zipfian => {
                let end = spec.key_space_end().ok_or(YcsbError::KeySpaceOverflow {
                    record_count: spec.record_count,
                    operation_count: spec.operation_count,
                })?;
                KeyChooser::Zipfian(ScrambledZipfian::new(0, end))
            }
            Distribution::Latest => KeyChooser::Latest(SkewedLatest::new(last_keynum)),
        };
        Ok(OpStream {
            rng: SplitMix64::new(seed),
            mix,
            keys,
            min_scan_len: spec.min_scan_len,
            max_scan_len: spec.max_scan_len,
            record_count: spec.record_count,
            operation_count: spec.operation_count,
            issued: 0,
            last_keynum,
        })
    }

    /// Records loaded before the run.
    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// Operations in the run.
    pub fn operation_count(&self) -> u64 {
        self.operation_count
    }

    /// Operations yielded so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Records that exist after the operations yielded so far: loaded plus inserted.
    pub fn key_count(&self) -> u64 {
        self.last_keynum + 1
    }

    /// `DiscreteGenerator.nextValue`: one uniform draw walked through the weights.
    fn choose_kind(&mut self) -> OpKind {
        let mut val = self.rng.unit_f64();
        for &(kind, p) in &self.mix {
            if val < p {
                return kind;
            }
            val -= p;
        }
        // Only reachable through rounding of the normalised weights.
        self.mix.last().map_or(OpKind::Read, |&(kind, _)| kind)
    }

    /// `CoreWorkload.nextKeynum`: draw until the key number exists.
    fn next_keynum(&mut self) -> u64 {
        loop {
            let keynum = match &mut self.keys {
                KeyChooser::Uniform { records } => self.rng.below(*records),
                KeyChooser::Zipfian(z) => z.next(&mut self.rng),
                KeyChooser::Latest(l) => l.next(&mut self.rng, self.last_keynum),
            };
            if keynum <= self.last_keynum {
                return keynum;
            }
        }
    }
}

impl Iterator for OpStream {
    type Item = YcsbOp;

    fn next(&mut self) -> Option<YcsbOp> {
        if self.issued == self.operation_count {
            return None;
        }
        self.issued += 1;
        let version = self.issued;
        let op = match self.choose_kind() {
            OpKind::Read => YcsbOp::Read {
                key: key_of(self.next_keynum()),
            },
            OpKind::Update => YcsbOp::Update {
                key: key_of(self.next_keynum()),
                version,
            },
            OpKind::Insert => {
                // validate() guarantees record_count + operation_count fits in u64.
                self.last_keynum += 1;
                YcsbOp::Insert {
                    key: key_of(self.last_keynum),
                    version,
                }
            }
            OpKind::Scan => {
                let start = key_of(self.next_keynum());
                let len =
                    self.min_scan_len + self.rng.below(self.max_scan_len - self.min_scan_len + 1);
                YcsbOp::Scan { start, len }
            }
            OpKind::ReadModifyWrite => YcsbOp::ReadModifyWrite {
                key: key_of(self.next_keynum()),
                version,
            },
        };
        Some(op)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.operation_count - self.issued;
        (
            usize::try_from(left).unwrap_or(usize::MAX),
            usize::try_from(left).ok(),
        )
    }
}

/// Errors from parsing and validating YCSB workloads.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum YcsbError {
    /// A workload name other than `a`..`f`.
    UnknownWorkload {
        /// The name given.
        name: String,
    },
    /// A distribution name other than `uniform`, `zipfian`, `latest`.
    UnknownDistribution {
        /// The name given.
        name: String,
    },
    /// `record_count` is 0.
    NoRecords,
    /// A proportion is negative, infinite or NaN.
    BadProportion {
        /// The operation the proportion is for (`read`, `update`, ...).
        op: &'static str,
        /// The proportion given.
        value: f64,
    },
    /// Every proportion is 0.
    NoOperations,
    /// The scan length range is empty or starts at 0.
    BadScanLength {
        /// Shortest scan given.
        min: u64,
        /// Longest scan given.
        max: u64,
    },
    /// The insert counter or the zipfian key space could pass u64::MAX.
    KeySpaceOverflow {
        /// Records of the load phase.
        record_count: u64,
        /// Operations of the run phase.
        operation_count: u64,
    },
}

impl fmt::Display for YcsbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            YcsbError::UnknownWorkload { name } => write!(
                f,
                "unknown ycsb workload {name:?}: expected one of a, b, c, d, e, f"
            ),
            YcsbError::UnknownDistribution { name } => write!(
                f,
                "unknown request distribution {name:?}: expected uniform, zipfian or latest"
            ),
            YcsbError::NoRecords => {
                f.write_str("record count is 0: a ycsb run needs at least 1 loaded record")
            }
            YcsbError::BadProportion { op, value } => write!(
                f,
                "{op} proportion is {value}: proportions must be finite and at least 0"
            ),
            YcsbError::NoOperations => f.write_str(
                "every operation proportion is 0: give read, update, insert, scan or \
                 read-modify-write a positive proportion",
            ),
            YcsbError::BadScanLength { min, max } => write!(
                f,
                "scan length range {min}..={max} is invalid: need 1 <= min scan length <= max \
                 scan length"
            ),
            YcsbError::KeySpaceOverflow {
                record_count,
                operation_count,
            } => write!(
                f,
                "record count {record_count} plus operation count {operation_count} overflows \
                 the u64 key numbers of the inserts: lower the operation count"
            ),
        }
    }
}

impl std::error::Error for YcsbError {}
