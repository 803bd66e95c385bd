//! The device's error handling: a bad shader or an oversized buffer is an `Err` naming what
//! was being done, never a panic, and the device keeps working afterwards.

use super::{WgpuDevice, storage_buffer, zeroed_storage_buffer};
use crate::backend::{BackendKind, Device, DeviceConfig};
use crate::error::BackendError;

/// The wgpu device for a unit test, or `None` (skip, with the reason printed) unless
/// `WARPGRID_REQUIRE_WGPU=1` makes its absence a failure.
pub(crate) fn wgpu() -> Option<WgpuDevice> {
    let config = DeviceConfig {
        backend: BackendKind::Wgpu,
        ..DeviceConfig::default()
    };
    match Device::open(&config) {
        Ok(Device::Wgpu(g)) => Some(g),
        Ok(_) => unreachable!("asked for wgpu"),
        Err(e) if std::env::var("WARPGRID_REQUIRE_WGPU").as_deref() == Ok("1") => {
            panic!("WARPGRID_REQUIRE_WGPU=1 but wgpu cannot run: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no wgpu backend here ({e})");
            None
        }
    }
}

const GOOD: &str = "@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@compute @workgroup_size(1) fn main() { x[0] = 7u; }";

#[test]
fn validation_errors_are_errors_and_the_device_keeps_working() {
    let Some(gpu) = wgpu() else { return };
    // A type error in the shader.
    let bad = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }";
    match gpu.pipeline("test_bad_shader", bad, "main") {
        Err(BackendError::Device { backend, reason }) => {
            assert_eq!(backend, BackendKind::Wgpu);
            assert!(reason.contains("test_bad_shader"), "{reason}");
        }
        other => panic!("a bad shader gave {other:?}"),
    }
    // An entry point that does not exist.
    assert!(gpu.pipeline("test_no_entry", GOOD, "nowhere").is_err());
    // More than one binding may hold.
    let limit = gpu.limits().max_storage_buffer_binding_size;
    let err = zeroed_storage_buffer(&gpu, "too big", limit + 4).unwrap_err();
    assert!(err.to_string().contains("storage binding limit"), "{err}");

    // The device still runs a good kernel and reads its result back.
    let pipeline = gpu.pipeline("test_good", GOOD, "main").unwrap();
    let buf = storage_buffer(&gpu, "x", &[0u8; 4]).unwrap();
    let group = gpu
        .scoped("bind", || {
            gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: buf.as_entire_binding(),
                }],
            })
        })
        .unwrap();
    let mut encoder = gpu
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    let bytes = super::Readback::default()
        .finish(&gpu, encoder, &[(&buf, 0, 4)])
        .unwrap();
    assert_eq!(bytes[..4], 7u32.to_le_bytes());
}
