//! The CUDA backend's place. Its kernels (kernels/*.cu, compiled with NVRTC through cudarc)
//! arrive with their own issue; until then the probe says so, and `Auto` moves on.

use super::Unavailable;

pub(super) fn probe() -> Result<String, Unavailable> {
    Err(Unavailable {
        reason: "not built: this version of warpgrid has no CUDA backend yet (tables run on cpu)"
            .into(),
    })
}
