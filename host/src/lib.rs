//! warpgrid-host: the host runtime around the engine — file formats today; the submission
//! queue, durability, caches, metrics and the job runner as their issues land.
#![forbid(unsafe_code)]

pub mod hex;
pub mod opsfile;

pub use opsfile::{OpsError, OpsReader, write_outcome};
