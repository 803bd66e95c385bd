//! Braided tori (SPEC §3): discrete-event simulation on 3-D toroidal lattices, several tori
//! run in lockstep and kept consistent by periodic projection exchange.
//!
//! - [`Torus`]: one lattice kernel, processing a whole instant at a time in parallel over
//!   destination cells, bit-identical to the one-event-at-a-time order (`torus/`).
//! - [`Braid`]: T tori on a shared clock with the exchange schedule, projections, violations,
//!   corrective events and the adaptive interval (`lockstep.rs`, `projection.rs`,
//!   `adaptive.rs`), and its statistics (`stats.rs`, `convergence.rs`, `latency.rs`).
//! - [`TorusConfig`] / [`BraidConfig`] and the workload builders of SPEC §3.3
//!   (`config.rs`, `workload.rs`).
//! - [`reference`](mod@reference): the ancestor's heap-ordered single-thread kernel, the yardstick for
//!   digests and for the bench.
//!
//! Design notes and what is not done yet: `docs/braids.md`.

mod adaptive;
mod config;
mod convergence;
mod cuda;
mod error;
mod event;
mod fnv;
mod gpu;
mod latency;
mod lattice;
mod lockstep;
mod projection;
pub mod reference;
mod resident;
mod stats;
mod torus;
mod workload;

pub use adaptive::{IntervalControl, WINDOW as ADAPTIVE_WINDOW};
pub use config::{BraidConfig, EdgesBuilder, InjectBuilder, ProcessesBuilder, TorusConfig};
pub use convergence::Convergence;
pub use error::BraidError;
pub use event::Event;
pub use fnv::Fnv1a;
pub use latency::LatencyHistogram;
pub use lattice::Lattice;
pub use lockstep::Braid;
pub use projection::{Application, CONSTRAINTS, CRITICAL_BOUNDARY_VIOLATIONS, Projection};
pub use stats::{BraidStats, LatencyStats};
pub use torus::{Process, Torus, TorusStats};
pub use workload::Workload;
