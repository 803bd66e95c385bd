//! The CUDA backend: CUDA C kernels (`kernels/*.cu`) compiled at run time with NVRTC through
//! cudarc (`dynamic-loading`, so warpgrid builds and runs without a CUDA toolkit or driver).
//!
//! In this version the kernels exist for graphs (`kernels/graph.cu`, the siblings of
//! `shaders/graph.wgsl`) and compile in CI ([`nvrtc`]), and the probe finds the driver and the
//! device without ever panicking; the device implementation that runs them is not built yet,
//! so the probe reports the device it found and why it cannot be used, and `Auto` moves on.

mod driver;
pub mod nvrtc;

use super::Unavailable;

pub(super) fn probe() -> Result<String, Unavailable> {
    let device = driver::find_device()?;
    Err(Unavailable {
        reason: format!(
            "found {device}, but this version of warpgrid does not run work on CUDA yet (its \
             kernels are compile-checked only)"
        ),
    })
}
