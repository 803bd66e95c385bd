//! warpgrid-engine: the compute layer of warpgrid.
//!
//! It owns the state of every workload (today: shard tables) in flat, structure-of-arrays
//! buffers, and the backends that run operations on them. The CPU backend (rayon) is the
//! reference; the wgpu and CUDA backends plug into the same per-workload trait
//! ([`backend::TableBackend`]) and are reported as unavailable until they are built.
//!
//! The host runtime (queue, durability, file formats) lives in `warpgrid-host`; the facade
//! crate `warpgrid` re-exports both.
#![warn(missing_docs)]

pub mod backend;
pub mod braid;
pub mod error;
pub mod graph;
pub mod rng;
pub mod table;

pub use backend::{
    BackendKind, Device, DeviceConfig, ProbeReport, Unavailable, Workload, probe_all,
};
pub use braid::{
    Braid, BraidConfig, BraidError, BraidStats, EdgesBuilder, InjectBuilder, ProcessesBuilder,
    Torus, TorusConfig,
};
pub use error::{BackendError, TableError};
pub use graph::{
    Clock, Decay, Evaluation, Graph, GraphBuilder, GraphConfig, GraphError, LatencyPredictor,
    ManualClock, Multipliers, NodeKind, RecallHit, RecallMode, RecallParams, RecallResult, Seed,
    SpreadHit, SpreadParams, SpreadResult, SystemClock,
};
pub use table::{
    Batch, BatchResults, OpCode, Outcome, RelatedHit, ShardStats, Table, TableConfig, TableStats,
};
