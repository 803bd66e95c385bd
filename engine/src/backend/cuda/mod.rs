//! The CUDA backend: CUDA C kernels (`kernels/*.cu`) compiled at run time with NVRTC through
//! cudarc (`dynamic-loading`, so warpgrid builds and runs without a CUDA toolkit or driver).
//!
//! - `driver` finds the driver and device without ever panicking.
//! - [`nvrtc`] carries every kernel source and compiles it (CI compiles each for `compute_90`
//!   without a GPU); the device loads cubins for its own `sm_XY`, which [`kernel_cache`]
//!   keeps on disk, keyed by source, options and NVRTC version.
//! - [`CudaDevice`] is one context and one stream, plain allocations, pinned staging and one
//!   synchronisation per batch.
//!
//! What runs here in this version: every workload. Activation graphs (`crate::graph::cuda`,
//! with `kernels/graph.cu`), braided tori (`crate::braid::cuda`, with `kernels/braid.cu`,
//! driven by the same host order as wgpu) and shard tables (`table.rs`, with
//! `kernels/table.cu`, driven by the GPU table order shared with wgpu,
//! `crate::backend::gpu_table`).
//!
//! None of this has run on a GPU yet: no session building it had one. So `Auto` passes over
//! CUDA ([`AUTO_SKIP`]) until it has been validated on one; `--backend cuda` asks for it.

mod device;
mod driver;
pub mod kernel_cache;
pub mod nvrtc;
mod table;

pub use device::CudaDevice;
pub(crate) use device::{Args, DeviceBuffer, grid};
pub use table::CudaShards;

use super::Unavailable;

/// Why `Auto` passes over a CUDA device in this version.
pub const AUTO_SKIP: &str = "auto does not pick CUDA yet: it runs every workload (tables, \
     graphs, braids) but has not been validated on a GPU; ask for it with --backend cuda";

/// The device CUDA would use, and why `Auto` passes over it.
pub(super) fn probe() -> Result<(String, Option<String>), Unavailable> {
    let device = driver::find_device()?;
    nvrtc::available().map_err(|reason| Unavailable {
        reason: format!("found {device}, but {reason}"),
    })?;
    Ok((device, Some(AUTO_SKIP.into())))
}
