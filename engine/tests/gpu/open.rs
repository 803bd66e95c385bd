//! Opening the GPU backends in a test: a backend that cannot run here is skipped with the
//! reason printed, unless its `WARPGRID_REQUIRE_*` variable is 1 (CI sets
//! `WARPGRID_REQUIRE_WGPU=1`; a machine with an NVIDIA GPU sets `WARPGRID_REQUIRE_CUDA=1`).

use warpgrid_engine::{BackendKind, Device, DeviceConfig};

/// The device of `backend`, or `None` (with the reason printed) when it cannot run here
/// and `require` (an environment variable) is not set to 1.
pub fn open(backend: BackendKind, require: &str) -> Option<Device> {
    let config = DeviceConfig {
        backend,
        ..DeviceConfig::default()
    };
    match Device::open(&config) {
        Ok(d) => Some(d),
        Err(e) if std::env::var(require).as_deref() == Ok("1") => {
            panic!("{require}=1 but {backend} cannot run: {e}")
        }
        Err(e) => {
            eprintln!("skipped on {backend}: {e}");
            None
        }
    }
}

/// The wgpu device, if it runs here.
#[allow(dead_code)] // not every test crate that includes this module uses every function
pub fn wgpu() -> Option<Device> {
    open(BackendKind::Wgpu, "WARPGRID_REQUIRE_WGPU")
}

/// The CUDA device, if it runs here.
#[allow(dead_code)]
pub fn cuda() -> Option<Device> {
    open(BackendKind::Cuda, "WARPGRID_REQUIRE_CUDA")
}

/// Every GPU backend that runs here.
#[allow(dead_code)]
pub fn gpus() -> Vec<Device> {
    [wgpu(), cuda()].into_iter().flatten().collect()
}
