//! Buffer helpers of the wgpu backend: storage and uniform buffers made from host data, and a
//! reusable staging buffer for reading results back.

use wgpu::util::DeviceExt;

use super::{WgpuDevice, device_error};
use crate::error::BackendError;

/// A storage buffer holding `contents` (at least 4 bytes: wgpu refuses empty bindings),
/// readable and writable by shaders and a copy source and destination.
pub(crate) fn storage_buffer(
    gpu: &WgpuDevice,
    label: &str,
    contents: &[u8],
) -> Result<wgpu::Buffer, BackendError> {
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if contents.len() as u64 > limit {
        return Err(BackendError::Device {
            backend: super::BackendKind::Wgpu,
            reason: format!(
                "{label}: {} bytes is more than the adapter's storage binding limit of {limit} \
                 bytes",
                contents.len()
            ),
        });
    }
    let padded;
    let contents = if contents.len() < 4 {
        padded = [contents, &[0u8; 4][contents.len()..]].concat();
        &padded[..]
    } else {
        contents
    };
    gpu.scoped(&format!("allocating {label}"), || {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    })
}

/// A zeroed storage buffer of `bytes` bytes (at least 4), like [`storage_buffer`], refused
/// with the limit in the message when it is larger than one binding may be.
pub(crate) fn zeroed_storage_buffer(
    gpu: &WgpuDevice,
    label: &str,
    bytes: u64,
) -> Result<wgpu::Buffer, BackendError> {
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if bytes > limit {
        return Err(BackendError::Device {
            backend: super::BackendKind::Wgpu,
            reason: format!(
                "{label}: {bytes} bytes is more than the adapter's storage binding limit of \
                 {limit} bytes"
            ),
        });
    }
    gpu.scoped(&format!("allocating {label}"), || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

/// A uniform buffer holding `contents`, rewritable with `queue.write_buffer`.
pub(crate) fn uniform_buffer(
    gpu: &WgpuDevice,
    label: &str,
    contents: &[u8],
) -> Result<wgpu::Buffer, BackendError> {
    gpu.scoped(&format!("allocating {label}"), || {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    })
}

/// A staging buffer for reading results back, grown when a larger read needs it.
#[derive(Default)]
pub(crate) struct Readback {
    staging: Option<wgpu::Buffer>,
}

impl Readback {
    /// Copies the first `bytes` of `src` to the host (one submit, one wait).
    pub(crate) fn read(
        &mut self,
        gpu: &WgpuDevice,
        src: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        self.finish(gpu, encoder, &[(src, 0, bytes.max(4))])
    }

    /// Submits `encoder` with copies of `regions` (`(buffer, offset, bytes)`, each a multiple
    /// of 4 bytes) appended, waits, and returns the regions' bytes one after another: the
    /// work and its results in one submit.
    pub(crate) fn finish(
        &mut self,
        gpu: &WgpuDevice,
        mut encoder: wgpu::CommandEncoder,
        regions: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<u8>, BackendError> {
        let bytes: u64 = regions.iter().map(|r| r.2).sum::<u64>().max(4);
        if self.staging.as_ref().is_none_or(|b| b.size() < bytes) {
            self.staging = Some(gpu.scoped("allocating a staging buffer", || {
                gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: bytes.next_power_of_two(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })?);
        }
        let staging = self.staging.as_ref().expect("set above");
        let mut at = 0;
        for &(src, offset, len) in regions {
            if len > 0 {
                encoder.copy_buffer_to_buffer(src, offset, staging, at, len);
            }
            at += len;
        }
        gpu.submit_and_wait("copying results back", encoder)?;
        map_read(gpu, staging, bytes)
    }
}

/// The first `bytes` of the mappable `staging`, once the submit that filled it has completed.
pub(crate) fn map_read(
    gpu: &WgpuDevice,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>, BackendError> {
    let slice = staging.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| device_error("mapping results", &e.to_string()))?;
    rx.recv()
        .map_err(|_| device_error("mapping results", "the map callback never ran"))?
        .map_err(|e| device_error("mapping results", &e.to_string()))?;
    let out = slice
        .get_mapped_range()
        .map_err(|e| device_error("mapping results", &e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(out)
}
