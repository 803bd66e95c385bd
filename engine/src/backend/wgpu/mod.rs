//! The wgpu backend: WGSL compute (shaders/*.wgsl) on whatever adapter wgpu finds —
//! Vulkan, Metal, DX12, or Mesa's software Vulkan (lavapipe) in CI.
//!
//! - Headless: the instance comes from `InstanceDescriptor::new_without_display_handle_from_env`
//!   (so `WGPU_BACKEND` is honoured) and the adapter from
//!   `initialize_adapter_from_env_or_default` (so `WGPU_ADAPTER_NAME` is too).
//! - The device is opened with the adapter's own limits (wgpu's defaults would cap storage
//!   bindings at 128 MiB even on a GPU that allows more), and no optional feature.
//! - Every creation and dispatch runs inside validation and out-of-memory error scopes
//!   (`WgpuDevice::scoped`); an error there is an `Err`, never a panic. An uncaptured error
//!   (outside any scope) is logged and remembered, and a lost device is remembered: the next
//!   operation reports it.
//! - Pipelines are created once per device and cached by name (`WgpuDevice::pipeline`).
//!
//! What runs here: graphs (`crate::graph::gpu`), shard tables (`table`, link halves on the
//! host for now) and braids (`crate::braid::gpu`). `Auto` picks a GPU adapter but passes over
//! a software one ([`SOFTWARE_ADAPTER_SKIP`]).

mod buffers;
mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) use buffers::{Readback, storage_buffer, uniform_buffer, zeroed_storage_buffer};

pub use table::WgpuShards;

use super::memory::MemoryAccount;
use super::{BackendKind, DeviceConfig, Unavailable};
use crate::error::BackendError;

/// Why `Auto` passes over an adapter that emulates a GPU on the CPU (lavapipe, llvmpipe,
/// WARP): the CPU backend runs the same work natively, many times faster.
pub const SOFTWARE_ADAPTER_SKIP: &str = "auto does not pick a software adapter: it emulates a GPU on \
     the CPU, and the cpu backend runs the same work faster; ask for it with --backend wgpu";

/// An opened wgpu adapter and device. Cloning gives another handle to the same device.
#[derive(Clone)]
pub struct WgpuDevice {
    inner: Arc<Inner>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Compute pipelines by name, created on first use.
    pipelines: Mutex<HashMap<&'static str, Arc<wgpu::ComputePipeline>>>,
    /// The first error the device reported outside a scope, or its loss.
    fault: Arc<Mutex<Option<String>>>,
    /// Table state held, against `DeviceConfig::memory_limit`.
    memory: MemoryAccount,
    /// Batch buffers of tables, kept between batches (one set per concurrent batch).
    table_scratch: Mutex<Vec<super::gpu_table::Scratch<WgpuDevice>>>,
}

impl std::fmt::Debug for WgpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuDevice")
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .finish_non_exhaustive()
    }
}

/// One line about an adapter: name, API, device type, driver.
fn describe_adapter(info: &wgpu::AdapterInfo) -> String {
    let driver = [info.driver.as_str(), info.driver_info.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{} ({:?}, {:?}{})",
        info.name,
        info.backend,
        info.device_type,
        if driver.is_empty() {
            String::new()
        } else {
            format!(", {driver}")
        }
    )
}

/// Finds the adapter wgpu would use, catching a panic from a broken driver stack.
fn find_adapter() -> Result<(wgpu::Instance, wgpu::Adapter), Unavailable> {
    let found = std::panic::catch_unwind(|| {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
            &instance, None,
        ));
        adapter.map(|a| (instance, a))
    });
    match found {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(Unavailable {
            reason: format!(
                "no wgpu adapter found ({e}); on a machine without a GPU install Mesa's \
                 software Vulkan driver (apt-get install mesa-vulkan-drivers libvulkan1)"
            ),
        }),
        Err(_) => Err(Unavailable {
            reason: "the graphics driver stack panicked while wgpu looked for an adapter".into(),
        }),
    }
}

/// The adapter wgpu would use, and why `Auto` would pass over it (a software adapter).
pub(super) fn probe() -> Result<(String, Option<String>), Unavailable> {
    let (_, adapter) = find_adapter()?;
    let info = adapter.get_info();
    let skip = (info.device_type == wgpu::DeviceType::Cpu).then(|| SOFTWARE_ADAPTER_SKIP.into());
    Ok((describe_adapter(&info), skip))
}

impl WgpuDevice {
    pub(crate) fn open(config: &DeviceConfig) -> Result<WgpuDevice, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: BackendKind::Wgpu,
            reason,
        };
        let (_instance, adapter) = find_adapter().map_err(|u| unavailable(u.reason))?;
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("warpgrid"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("the adapter refused a device: {e}")))?;
        let fault = Arc::new(Mutex::new(None::<String>));
        let on_error = Arc::clone(&fault);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            tracing::error!("wgpu error outside an error scope: {e}");
            let mut f = on_error.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| e.to_string());
        }));
        let on_lost = Arc::clone(&fault);
        device.set_device_lost_callback(move |reason, message| {
            let mut f = on_lost.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
        });
        Ok(WgpuDevice {
            inner: Arc::new(Inner {
                device,
                queue,
                info: adapter.get_info(),
                limits,
                pipelines: Mutex::new(HashMap::new()),
                fault,
                memory: MemoryAccount::new(BackendKind::Wgpu, config.memory_limit),
                table_scratch: Mutex::new(Vec::new()),
            }),
        })
    }

    pub(crate) fn describe_device(&self) -> String {
        let l = &self.inner.limits;
        let limit = match self.inner.memory.limit() {
            Some(b) => format!(", memory limit {b} bytes"),
            None => String::new(),
        };
        format!(
            "{}; storage binding <= {} MiB, buffer <= {} MiB{limit}",
            describe_adapter(&self.inner.info),
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        )
    }

    /// Bytes of table state currently held on the device.
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.inner.memory.held()
    }

    /// Accounts `bytes` more table state against the memory limit, or fails with nothing
    /// accounted.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<(), BackendError> {
        self.inner.memory.reserve(bytes)
    }

    /// The pool of table batch buffers.
    fn table_scratch(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<super::gpu_table::Scratch<WgpuDevice>>> {
        self.inner
            .table_scratch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Returns `bytes` of table state to the account.
    pub(crate) fn release(&self, bytes: u64) {
        self.inner.memory.release(bytes);
    }

    pub(crate) fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    pub(crate) fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Whether the adapter is a CPU (lavapipe / llvmpipe, WARP, SwiftShader).
    pub(crate) fn is_cpu_adapter(&self) -> bool {
        self.inner.info.device_type == wgpu::DeviceType::Cpu
    }

    pub(crate) fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// Two devices are the same when they share their inner state.
    pub(crate) fn same_as(&self, other: &WgpuDevice) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// An error the device reported outside a scope, or its loss, if any.
    fn fault(&self) -> Option<String> {
        self.inner
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` inside validation and out-of-memory error scopes: whatever wgpu reports
    /// there comes back as an `Err` naming `what`. A device that faulted earlier refuses.
    pub(crate) fn scoped<R>(&self, what: &str, f: impl FnOnce() -> R) -> Result<R, BackendError> {
        if let Some(fault) = self.fault() {
            return Err(device_error(what, &fault));
        }
        let oom = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = oom {
            return Err(BackendError::Device {
                backend: BackendKind::Wgpu,
                reason: format!("{what}: out of device memory: {e}"),
            });
        }
        if let Some(e) = validation {
            return Err(device_error(what, &e.to_string()));
        }
        Ok(out)
    }

    /// The compute pipeline `name` (entry point `entry` of `wgsl`), created on first use.
    pub(crate) fn pipeline(
        &self,
        name: &'static str,
        wgsl: &str,
        entry: &str,
    ) -> Result<Arc<wgpu::ComputePipeline>, BackendError> {
        let mut cache = self
            .inner
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(name) {
            return Ok(Arc::clone(p));
        }
        let device = &self.inner.device;
        let pipeline = self.scoped(&format!("creating the {name} pipeline"), || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        })?;
        let pipeline = Arc::new(pipeline);
        cache.insert(name, Arc::clone(&pipeline));
        Ok(pipeline)
    }

    /// Submits `encoder` and waits for the device to finish it.
    pub(crate) fn submit_and_wait(
        &self,
        what: &str,
        encoder: wgpu::CommandEncoder,
    ) -> Result<(), BackendError> {
        let index = self.scoped(what, || self.inner.queue.submit([encoder.finish()]))?;
        self.inner
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| device_error(what, &e.to_string()))?;
        match self.fault() {
            Some(fault) => Err(device_error(what, &fault)),
            None => Ok(()),
        }
    }
}

pub(crate) fn device_error(what: &str, reason: &str) -> BackendError {
    BackendError::Device {
        backend: BackendKind::Wgpu,
        reason: format!("{what}: {reason}"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
