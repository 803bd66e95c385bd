//! The wgpu backend's place. Its WGSL shaders (shaders/*.wgsl) arrive with their own issue;
//! until then the probe says so, and `Auto` moves on.

use super::Unavailable;

pub(super) fn probe() -> Result<String, Unavailable> {
    Err(Unavailable {
        reason: "not built: this version of warpgrid has no wgpu backend yet (tables run on cpu)"
            .into(),
    })
}
