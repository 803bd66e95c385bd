//! Shard tables on the wgpu backend (SPEC §1): the device operations of the GPU table order
//! ([`crate::backend::gpu_table`], shared with CUDA) on wgpu, running `shaders/table.wgsl`.
//! Design: docs/wgpu.md, "Tables on the device".
//!
//! What is wgpu's own: a list of steps becomes one command encoder (one bind group and one
//! compute pass per launch, each launch's `Params` at its own 256-byte-aligned offset of one
//! uniform buffer, written with the queue before the submit), workgroup counts split over
//! `(x, y)` past the adapter's per-dimension limit, read-backs through one `MAP_READ`
//! staging buffer, and the arena and buffer caps of the adapter's storage-binding limit.

use std::num::NonZeroU64;
use std::sync::Arc;

use super::WgpuDevice;
use super::buffers::map_read;
use crate::backend::BackendKind;
use crate::backend::gpu_table::{GpuShards, Kernel, Params, Read, Scratch, Step, TableDevice};
use crate::error::BackendError;

const SHADER: &str = include_str!("../../../../../shaders/table.wgsl");

/// The shards of one table on a wgpu device.
pub type WgpuShards = GpuShards<WgpuDevice>;

/// The pipeline (and label) of kernel `k`: `table_` and its entry point.
fn pipeline_name(k: Kernel) -> &'static str {
    match k {
        Kernel::Route => "table_kv_route",
        Kernel::Sort => "table_kv_sort",
        Kernel::SortLocal => "table_kv_sort_local",
        Kernel::WalkChunks => "table_kv_walk_chunks",
        Kernel::WalkCarry => "table_kv_walk_carry",
        Kernel::Walk => "table_kv_walk",
        Kernel::PeakBlocks => "table_kv_peak_blocks",
        Kernel::PeakScan => "table_kv_peak_scan",
        Kernel::Peak => "table_kv_peak",
        Kernel::Commit => "table_kv_commit",
        Kernel::Rehash => "table_kv_rehash",
        Kernel::Insert => "table_kv_insert",
        Kernel::LinkRoute => "table_link_route",
        Kernel::LinkSort => "table_link_sort",
        Kernel::RelCount => "table_rel_count",
        Kernel::LinkScanBlocks => "table_link_scan_blocks",
        Kernel::LinkScanCarry => "table_link_scan_carry",
        Kernel::LinkScanApply => "table_link_scan_apply",
        Kernel::RelPairs => "table_rel_pairs",
        Kernel::RelExist => "table_rel_exist",
        Kernel::RelSpan => "table_rel_span",
        Kernel::LinkKeepOld => "table_link_keep_old",
        Kernel::LinkKeepEvents => "table_link_keep_events",
        Kernel::LinkWriteOld => "table_link_write_old",
        Kernel::LinkWriteEvents => "table_link_write_events",
    }
}

/// What a wgpu device keeps with a set of batch buffers: the uniform buffer of the launches'
/// params and the `MAP_READ` staging buffer.
#[derive(Default)]
pub struct WgpuCache {
    params: Option<wgpu::Buffer>,
    staging: Option<wgpu::Buffer>,
}

/// `slot` holding a buffer of at least `bytes` with `usage`, reallocated larger when it does
/// not.
fn cached<'a>(
    gpu: &WgpuDevice,
    slot: &'a mut Option<wgpu::Buffer>,
    label: &str,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> Result<&'a wgpu::Buffer, BackendError> {
    if slot.as_ref().is_none_or(|b| b.size() < bytes) {
        *slot = None;
        *slot = Some(gpu.scoped(&format!("allocating {label}"), || {
            gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(16).next_power_of_two(),
                usage,
                mapped_at_creation: false,
            })
        })?);
    }
    Ok(slot.as_ref().expect("set above"))
}

impl WgpuDevice {
    /// Frees the batch buffers tables keep between batches.
    pub(crate) fn release_table_scratch(&self) {
        self.table_scratch().clear();
    }

    fn table_pipelines(&self) -> Result<Vec<Arc<wgpu::ComputePipeline>>, BackendError> {
        Kernel::ALL
            .iter()
            .map(|&k| self.pipeline(pipeline_name(k), SHADER, k.entry()))
            .collect()
    }

    /// `(x, y)` workgroups making `groups` (y > 1 past the per-dimension limit).
    fn split_groups(&self, groups: u64) -> (u32, u32) {
        let max = u64::from(self.limits().max_compute_workgroups_per_dimension.max(1));
        if groups <= max {
            (groups as u32, 1)
        } else {
            (max as u32, groups.div_ceil(max) as u32)
        }
    }
}

impl TableDevice for WgpuDevice {
    type Buf = wgpu::Buffer;
    type Cache = WgpuCache;
    const KIND: BackendKind = BackendKind::Wgpu;
    const LIMIT_NAME: &'static str = "the adapter's storage binding limit";

    fn arena_cap(&self) -> u64 {
        self.buffer_limit()
    }

    fn buffer_limit(&self) -> u64 {
        self.limits()
            .max_storage_buffer_binding_size
            .min(self.limits().max_buffer_size)
    }

    /// Not on a CPU adapter: llvmpipe's workgroup barriers cost more than the global passes
    /// they save (a 1M-op batch sorts in 8.9 s instead of 7.3 s).
    fn local_sort(&self) -> bool {
        !self.is_cpu_adapter()
    }

    fn alloc(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer, BackendError> {
        self.scoped(&format!("allocating {label}"), || {
            self.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(16).next_multiple_of(4),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    fn size(buf: &wgpu::Buffer) -> u64 {
        buf.size()
    }

    fn reserve(&self, bytes: u64) -> Result<(), BackendError> {
        WgpuDevice::reserve(self, bytes)
    }

    fn release(&self, bytes: u64) {
        WgpuDevice::release(self, bytes);
    }

    fn submit(
        &self,
        what: &str,
        cache: &mut WgpuCache,
        steps: &[Step<'_, wgpu::Buffer>],
        reads: &[Read<'_, wgpu::Buffer>],
    ) -> Result<Vec<u32>, BackendError> {
        let pipelines = if steps.iter().any(|s| matches!(s, Step::Run { .. })) {
            self.table_pipelines()?
        } else {
            Vec::new()
        };
        // Every launch's params at its own aligned offset of one uniform buffer.
        let stride = u64::from(self.limits().min_uniform_buffer_offset_alignment).max(256);
        let size = std::mem::size_of::<Params>();
        let mut params = Vec::new();
        for s in steps {
            if let Step::Run { params: p, .. } = s {
                let at = params.len();
                params.resize(at + stride as usize, 0);
                params[at..at + size].copy_from_slice(bytemuck::bytes_of(p));
            }
        }
        let read_bytes: u64 = reads.iter().map(|r| r.2 * 4).sum();
        let WgpuCache {
            params: params_slot,
            staging: staging_slot,
        } = cache;
        let params_buf = if params.is_empty() {
            None
        } else {
            Some(cached(
                self,
                params_slot,
                "table params",
                params.len() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            )?)
        };
        let staging = if read_bytes > 0 {
            Some(cached(
                self,
                staging_slot,
                "table staging",
                read_bytes,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )?)
        } else {
            None
        };
        let mut encoder = self
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("table batch"),
            });
        self.scoped(&format!("encoding {what}"), || {
            let queue = self.queue();
            if let Some(buf) = params_buf {
                queue.write_buffer(buf, 0, &params);
            }
            let mut variant = 0u64;
            let mut ran = false;
            for s in steps {
                match s {
                    Step::Write { buf, words } => {
                        // Queue writes land before this submit's commands: a write must
                        // come before every command of its list.
                        debug_assert!(!ran, "a write after a command in one list of steps");
                        queue.write_buffer(buf, 0, bytemuck::cast_slice(words));
                    }
                    Step::Clear { buf, bytes } => {
                        ran = true;
                        encoder.clear_buffer(buf, 0, Some(*bytes));
                    }
                    Step::Copy {
                        from,
                        from_at,
                        to,
                        to_at,
                        bytes,
                    } => {
                        ran = true;
                        encoder.copy_buffer_to_buffer(from, *from_at, to, *to_at, *bytes);
                    }
                    Step::Run {
                        kernel,
                        binds,
                        groups,
                        ..
                    } => {
                        ran = true;
                        let pipeline = &pipelines[kernel.index()];
                        let mut entries = Vec::with_capacity(binds.len() + 1);
                        entries.push(wgpu::BindGroupEntry {
                            binding: 0,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: params_buf.expect("a launch has params"),
                                offset: variant * stride,
                                size: NonZeroU64::new(size as u64),
                            }),
                        });
                        variant += 1;
                        for &(binding, buf) in binds {
                            entries.push(wgpu::BindGroupEntry {
                                binding,
                                resource: buf.as_entire_binding(),
                            });
                        }
                        let label = pipeline_name(*kernel);
                        let group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(label),
                            layout: &pipeline.get_bind_group_layout(0),
                            entries: &entries,
                        });
                        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some(label),
                            timestamp_writes: None,
                        });
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, &group, &[]);
                        let (x, y) = self.split_groups(*groups);
                        pass.dispatch_workgroups(x, y, 1);
                    }
                }
            }
            if let Some(staging) = staging {
                let mut at = 0;
                for &(buf, offset, words) in reads {
                    encoder.copy_buffer_to_buffer(buf, offset, staging, at, words * 4);
                    at += words * 4;
                }
            }
        })?;
        self.submit_and_wait(what, encoder)?;
        match staging {
            Some(staging) => Ok(bytemuck::pod_collect_to_vec(&map_read(
                self, staging, read_bytes,
            )?)),
            None => Ok(Vec::new()),
        }
    }

    fn take_scratch(&self) -> Scratch<WgpuDevice> {
        self.table_scratch().pop().unwrap_or_default()
    }

    fn return_scratch(&self, scratch: Scratch<WgpuDevice>) {
        self.table_scratch().push(scratch);
    }
}

#[cfg(test)]
mod test;
