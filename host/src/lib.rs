//! warpgrid-host: the host runtime around the engine — file formats today; the submission
//! queue, durability, caches, metrics and the job runner as their issues land.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod braidfile;
pub mod cache;
pub mod durable;
pub mod hex;
pub mod jobs;
pub mod metrics;
pub mod opsfile;
pub mod queue;
pub mod recall;
pub mod wordnet;
pub mod ycsb;

pub use opsfile::{OpsError, OpsReader, write_outcome};
