//! warpgrid: a GPU-first compute engine for shard tables, activation graphs and braided tori.
//!
//! This facade re-exports the two layers — [`engine`] (state and backends) and [`host`]
//! (file formats and, as they land, the submission queue, durability and metrics) — and
//! holds what the CLI and the benches share: workload generators and the side-by-side
//! benchmarks against peer libraries.
//!
//! ```
//! use warpgrid::{Batch, Device, Outcome, Table, TableConfig};
//!
//! let device = Device::cpu()?;
//! let mut table = Table::create(&device, TableConfig::new("users"))?;
//! let mut batch = table.batch();
//! batch.put(7, &42u64.to_le_bytes())?;
//! batch.get(7)?;
//! batch.delete(7)?;
//! let results = table.apply(&batch)?;
//! assert_eq!(results.get(1), Some(Outcome::Value(&42u64.to_le_bytes())));
//! assert_eq!(results.get(2), Some(Outcome::Deleted));
//! # Ok::<(), warpgrid::TableError>(())
//! ```
#![warn(missing_docs)]

pub use warpgrid_engine as engine;
pub use warpgrid_host as host;

pub use warpgrid_engine::{
    BackendError, BackendKind, Batch, BatchResults, Device, DeviceConfig, Outcome, ShardStats,
    Table, TableConfig, TableError, TableStats,
};

pub mod bench;

/// The README's examples, compiled and run as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The user guide's Rust examples (docs/guide.md), compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/guide.md")]
pub struct GuideDoctests;
pub mod workload;
