//! Braids on the wgpu backend: the buffers of a resident braid (`super::resident`, which
//! holds the layout, the steps and the host side shared with CUDA) as storage bindings,
//! instants processed by `shaders/braid.wgsl` for all tori at once, many instants per
//! submit (each batch of steps is one compute pass).
//!
//! What is wgpu's own: the adapter's binding limits (a braid whose buffer would exceed one
//! is refused, naming the limit), the bind groups (each entry point binds only the buffers
//! it uses, [`bindings`]), indirect dispatch from the `dispatch` buffer, and lavapipe's loop
//! limiter (`G_FAULT`), which the shader reports and the host turns into an error.

use std::sync::Arc;

use super::error::BraidError;
use super::resident::{
    BraidDevice, Init, Kernel, Launch, Params, Plan, Resident, WORKGROUP, device_error,
};
use super::torus::Torus;
use crate::backend::BackendKind;
use crate::backend::wgpu::{Readback, WgpuDevice};

const SHADER: &str = include_str!("../../../shaders/braid.wgsl");

/// The bindings entry point `k` uses (its automatic layout holds exactly these).
fn bindings(k: Kernel) -> &'static [u32] {
    match k {
        Kernel::BeginInstant | Kernel::PlanMerge | Kernel::PlanInject => &[0, 1, 10],
        Kernel::CountDst => &[0, 1, 2, 8, 9],
        Kernel::ScanCells | Kernel::Cut => &[0, 1, 2],
        Kernel::ScatterDst => &[0, 1, 2, 7, 8, 9],
        Kernel::OrderRuns | Kernel::MergePass => &[0, 1, 2, 6, 7],
        Kernel::OrderDone => &[0, 1, 6, 7],
        Kernel::NextPass | Kernel::EndRound => &[1],
        Kernel::ProcessInstant => &[0, 1, 2, 3, 4, 5, 6, 7],
        Kernel::CountDelays => &[0, 1, 7],
        Kernel::CountKeys => &[0, 1, 2, 7],
        Kernel::Alloc => &[0, 1, 9],
        Kernel::Merge => &[0, 1, 7, 8, 9],
        Kernel::Advance => &[0, 1],
        Kernel::Project => &[0, 3, 11],
    }
}

/// A braid's buffers on one wgpu device.
pub(crate) struct WgpuBraid {
    gpu: WgpuDevice,
    params: Params,
    uniform: wgpu::Buffer,
    /// Buffers by binding number (0 is the uniform).
    buffers: Vec<wgpu::Buffer>,
    /// Per kernel (in `Kernel::ALL` order): pipeline and bind group.
    kernels: Vec<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
    readback: Readback,
}

impl std::fmt::Debug for WgpuBraid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBraid")
            .field("gpu", &self.gpu)
            .finish_non_exhaustive()
    }
}

impl WgpuBraid {
    pub(crate) fn on(&self, gpu: &WgpuDevice) -> bool {
        self.gpu.same_as(gpu)
    }
}

/// Uploads `tori` (all at clock `now`) to `gpu`. Refuses, naming the limit, when a buffer
/// would exceed the adapter's storage binding or buffer size.
pub(crate) fn upload(
    gpu: &WgpuDevice,
    tori: &[Torus],
    now: u32,
) -> Result<Resident<WgpuBraid>, BraidError> {
    let mut plan = Plan::new(tori, now);
    let limits = gpu.limits();
    let binding = limits.max_storage_buffer_binding_size;
    let buffer = limits.max_buffer_size;
    let limit = binding.min(buffer).min(u32::MAX as u64);
    for (label, init) in &plan.buffers {
        let bytes = init.bytes();
        if bytes > limit {
            return Err(device_error(
                BackendKind::Wgpu,
                format!(
                    "the braid's {label} buffer needs {bytes} bytes, more than the adapter allows \
                     in one storage binding ({limit} bytes: max_storage_buffer_binding_size \
                     {binding}, max_buffer_size {buffer}); use fewer tori, a smaller lattice, \
                     a smaller max_pending or fewer out-edges per cell, or --backend cpu"
                ),
            ));
        }
    }
    let params = plan.params;
    let mut buffers = vec![make_buffer(
        gpu,
        "braid params",
        bytemuck::cast_slice(&[params]),
        true,
    )?];
    for (label, init) in std::mem::take(&mut plan.buffers) {
        let label = format!("braid {label}");
        buffers.push(match init {
            Init::Words(words) => make_buffer(gpu, &label, bytemuck::cast_slice(&words), false)?,
            Init::Zeroed(bytes) => zeroed(gpu, &label, bytes)?,
        });
    }
    let uniform = buffers[0].clone();
    let mut kernels = Vec::with_capacity(Kernel::ALL.len());
    for k in Kernel::ALL {
        let pipeline = gpu.pipeline(k.entry(), SHADER, k.entry())?;
        let layout = pipeline.get_bind_group_layout(0);
        let group = gpu.scoped(&format!("binding {}", k.entry()), || {
            let entries: Vec<_> = bindings(k)
                .iter()
                .map(|&b| wgpu::BindGroupEntry {
                    binding: b,
                    resource: buffers[b as usize].as_entire_binding(),
                })
                .collect();
            gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(k.entry()),
                layout: &layout,
                entries: &entries,
            })
        })?;
        kernels.push((pipeline, group));
    }
    let dev = WgpuBraid {
        gpu: gpu.clone(),
        params,
        uniform,
        buffers,
        kernels,
        readback: Readback::default(),
    };
    Resident::new(dev, plan, now)
}

impl WgpuBraid {
    fn kernel(&self, k: Kernel) -> &(Arc<wgpu::ComputePipeline>, wgpu::BindGroup) {
        &self.kernels[k.index()]
    }

    /// Encodes `steps`, `times` over, into one compute pass.
    fn encode(&self, encoder: &mut wgpu::CommandEncoder, steps: &[(Kernel, Launch)], times: u32) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        let dispatch = &self.buffers[10];
        let tori = self.params.tori;
        for _ in 0..times {
            for &(k, launch) in steps {
                let (pipeline, group) = self.kernel(k);
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                match launch {
                    Launch::Single => pass.dispatch_workgroups(1, 1, 1),
                    Launch::PerTorus => pass.dispatch_workgroups(1, tori, 1),
                    Launch::Indirect(offset) => pass.dispatch_workgroups_indirect(dispatch, offset),
                    Launch::Cells => pass.dispatch_workgroups(
                        self.params.cells.div_ceil(WORKGROUP).min(65535),
                        tori,
                        1,
                    ),
                }
            }
        }
    }
}

impl BraidDevice for WgpuBraid {
    const KIND: BackendKind = BackendKind::Wgpu;

    fn write_params(&mut self, params: &Params) -> Result<(), BraidError> {
        self.params = *params;
        self.gpu
            .queue()
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(params));
        Ok(())
    }

    fn write(&mut self, binding: usize, word: usize, values: &[u32]) -> Result<(), BraidError> {
        self.gpu.queue().write_buffer(
            &self.buffers[binding],
            (word * 4) as u64,
            bytemuck::cast_slice(values),
        );
        Ok(())
    }

    fn run(
        &mut self,
        what: &str,
        steps: &[(Kernel, Launch)],
        times: u32,
    ) -> Result<(), BraidError> {
        let mut encoder = self
            .gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
        self.gpu
            .scoped(what, || self.encode(&mut encoder, steps, times))?;
        self.gpu.submit_and_wait(what, encoder)?;
        Ok(())
    }

    fn read(&mut self, binding: usize, words: Option<usize>) -> Result<Vec<u32>, BraidError> {
        let words = words.unwrap_or((self.buffers[binding].size() / 4) as usize);
        let bytes = self
            .readback
            .read(&self.gpu, &self.buffers[binding], (words * 4) as u64)?;
        Ok(bytemuck::cast_slice(&bytes[..words * 4]).to_vec())
    }

    fn loop_fault(params: &Params) -> String {
        format!(
            "the adapter stopped a braid shader loop before its end (lavapipe ends every loop \
             of an invocation after 65535 iterations in all): a cell with more out-edges or \
             more events at the cut of the drop rule than this adapter can loop over in one \
             invocation ({} cells, {} tori); nothing was changed; use --backend cpu or a GPU",
            params.cells, params.tori
        )
    }
}

/// A storage (or uniform) buffer holding `bytes`.
fn make_buffer(
    gpu: &WgpuDevice,
    label: &str,
    bytes: &[u8],
    uniform: bool,
) -> Result<wgpu::Buffer, BraidError> {
    use wgpu::util::DeviceExt;
    let usage = if uniform {
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST
    } else {
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
    };
    let padded;
    let bytes = if bytes.len() < 4 {
        padded = [bytes, &[0u8; 4][bytes.len()..]].concat();
        &padded[..]
    } else {
        bytes
    };
    Ok(gpu.scoped(&format!("allocating {label}"), || {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage,
            })
    })?)
}

/// A zeroed storage buffer of `bytes` (at least 4), also usable for indirect dispatch.
fn zeroed(gpu: &WgpuDevice, label: &str, bytes: u64) -> Result<wgpu::Buffer, BraidError> {
    Ok(gpu.scoped(&format!("allocating {label}"), || {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::INDIRECT,
            mapped_at_creation: false,
        })
    })?)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::braid::resident::{INJECT, PROJECT, instant_steps};

    #[test]
    fn params_mirror_the_shader_struct() {
        // 16 u32 fields, as `struct Params` in shaders/braid.wgsl.
        assert_eq!(std::mem::size_of::<Params>(), 64);
        assert!(SHADER.contains("struct Params {"));
    }

    #[test]
    fn every_kernel_is_an_entry_point_of_the_shader() {
        for k in Kernel::ALL {
            let decl = format!("fn {}(", k.entry());
            assert!(
                SHADER.contains(&decl),
                "{decl} missing from shaders/braid.wgsl"
            );
            assert!(k.entry().starts_with("braid_"));
        }
        for (k, _) in instant_steps(1 << 20).iter().chain(&INJECT).chain(&PROJECT) {
            assert!(Kernel::ALL.contains(k));
        }
    }
}
