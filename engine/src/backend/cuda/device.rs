//! An opened CUDA device: one context and one stream per engine, kernels compiled once per
//! process for the device's own architecture (cubins, cached on disk:
//! [`super::kernel_cache`]), plain device allocations, pinned host
//! staging reused across batches, and one synchronisation per batch.
//!
//! Work is queued on the stream without waiting: [`CudaDevice::write`] (host → device through
//! pinned staging), [`CudaDevice::zero`], [`CudaDevice::copy`] and [`CudaDevice::launch`].
//! [`CudaDevice::finish`] then copies the regions a batch needs back into pinned memory and
//! synchronises the stream once; it is where an asynchronous device fault shows up. Every
//! driver call's status is checked, and a device that faulted (a sticky error such as an
//! illegal address leaves the context unusable) refuses every later operation with the
//! first fault's reason.
//!
//! All work runs on one stream, so ordering between copies and launches is the stream's;
//! cudarc's per-buffer event tracking is switched off (it only matters with several streams).
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{CUdeviceptr, CUresult};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, DriverError, LaunchConfig,
    result,
};

use super::{driver, kernel_cache, nvrtc};
use crate::backend::gpu_table::Scratch;
use crate::backend::memory::MemoryAccount;
use crate::backend::{BackendKind, DeviceConfig};
use crate::error::BackendError;

/// An opened CUDA device. Cloning gives another handle to the same device.
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    description: String,
    /// NVRTC's (real) architecture for this device, e.g. `sm_90`.
    arch: String,
    cache_dir: Option<PathBuf>,
    /// Loaded modules by kernel file, and functions by (file, kernel).
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<(&'static str, &'static str), CudaFunction>>,
    /// The first sticky fault, after which the device refuses work.
    fault: Mutex<Option<String>>,
    /// Table state held, against `DeviceConfig::memory_limit`.
    memory: MemoryAccount,
    /// Batch buffers of tables, kept between batches (one set per concurrent batch).
    table_scratch: Mutex<Vec<Scratch<CudaDevice>>>,
    staging: Mutex<Staging>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("device", &self.inner.description)
            .finish_non_exhaustive()
    }
}

/// A plain device allocation (no managed memory), freed on drop.
pub struct DeviceBuffer {
    ptr: CUdeviceptr,
    bytes: u64,
    device: Arc<Inner>,
}

impl DeviceBuffer {
    /// The device address, for a kernel's buffer struct.
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }

    /// The device address `offset` bytes in.
    pub(crate) fn at(&self, offset: u64) -> u64 {
        debug_assert!(offset <= self.bytes);
        self.ptr + offset
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.ptr == 0 {
            return;
        }
        let _ = self.device.ctx.bind_to_thread();
        // SAFETY: `ptr` came from cuMemAlloc in this context and is freed once; cuMemFree
        // waits for work still using it.
        if let Err(e) = unsafe { result::free_sync(self.ptr) } {
            tracing::warn!("CUDA: freeing {} bytes failed: {e}", self.bytes);
        }
    }
}

/// Pinned (page-locked) host memory, grown on demand and reused. `upload` is filled by the
/// host and read by queued copies, so it is only reused after a synchronisation; `cursor`
/// is how much of it the queued copies of this batch still need.
struct Staging {
    upload: Option<Pinned>,
    cursor: usize,
    download: Option<Pinned>,
}

struct Pinned {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the pinned block is plain host memory owned by this struct, only touched under
// the `staging` mutex.
unsafe impl Send for Pinned {}

impl Pinned {
    fn new(ctx: &CudaContext, len: usize) -> Result<Pinned, DriverError> {
        ctx.bind_to_thread()?;
        // SAFETY: a fresh allocation of `len` bytes (flags 0: cached, readable by the host
        // at full speed — write-combined memory is slow to read back).
        let ptr = unsafe { result::malloc_host(len, 0) }? as *mut u8;
        Ok(Pinned { ptr, len })
    }

    fn slice(&mut self, at: usize, len: usize) -> &mut [u8] {
        assert!(at + len <= self.len);
        // SAFETY: in bounds of the allocation, and `&mut self` makes it exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemHostAlloc and freed once.
        let _ = unsafe { result::free_host(self.ptr as *mut c_void) };
    }
}

/// The parameters of one launch: pointers to the values, which outlive it.
pub(crate) struct Args<'a> {
    ptrs: [*mut c_void; 8],
    len: usize,
    _values: std::marker::PhantomData<&'a ()>,
}

impl<'a> Args<'a> {
    pub(crate) fn new() -> Args<'a> {
        Args {
            ptrs: [std::ptr::null_mut(); 8],
            len: 0,
            _values: std::marker::PhantomData,
        }
    }

    /// Appends one parameter: a `#[repr(C)]` value laid out as the kernel declares it.
    pub(crate) fn arg<T: DeviceRepr>(mut self, value: &'a T) -> Args<'a> {
        assert!(
            self.len < self.ptrs.len(),
            "a kernel takes at most 8 parameters here"
        );
        self.ptrs[self.len] = value as *const T as *mut c_void;
        self.len += 1;
        self
    }
}

/// A region to read back in [`CudaDevice::finish`]: `bytes` bytes at `offset` of a buffer.
pub(crate) type Region<'a> = (&'a DeviceBuffer, u64, u64);

fn driver_error(what: &str, e: DriverError) -> BackendError {
    if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        return BackendError::Device {
            backend: BackendKind::Cuda,
            reason: format!("{what}: out of device memory"),
        };
    }
    BackendError::Device {
        backend: BackendKind::Cuda,
        reason: format!("{what}: {e}"),
    }
}

/// Errors after which the context cannot be used again (CUDA's "sticky" errors).
fn is_sticky(e: &DriverError) -> bool {
    matches!(
        e.0,
        CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
            | CUresult::CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUresult::CUDA_ERROR_MISALIGNED_ADDRESS
            | CUresult::CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUresult::CUDA_ERROR_INVALID_PC
            | CUresult::CUDA_ERROR_LAUNCH_FAILED
            | CUresult::CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUresult::CUDA_ERROR_ECC_UNCORRECTABLE
            | CUresult::CUDA_ERROR_UNKNOWN
    )
}

/// Launch geometry: `threads` per block over `(x, y)` blocks (y > 1 past the x limit).
pub(crate) fn grid(invocations: u64, threads: u32) -> LaunchConfig {
    const MAX_X: u64 = (1 << 31) - 1;
    let blocks = invocations.div_ceil(u64::from(threads)).max(1);
    let (x, y) = if blocks <= MAX_X {
        (blocks, 1)
    } else {
        (MAX_X, blocks.div_ceil(MAX_X))
    };
    LaunchConfig {
        grid_dim: (x as u32, y as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaDevice {
    pub(crate) fn open(config: &DeviceConfig) -> Result<CudaDevice, BackendError> {
        let unavailable = |reason: String| BackendError::Unavailable {
            backend: BackendKind::Cuda,
            reason,
        };
        let description = driver::find_device().map_err(|u| unavailable(u.reason))?;
        nvrtc::available().map_err(unavailable)?;
        let opened = std::panic::catch_unwind(|| -> Result<_, DriverError> {
            let ctx = CudaContext::new(0)?;
            // One stream per engine: tracking buffer use across streams is not needed.
            // SAFETY: every buffer of this device is used on `stream` only.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream()?;
            let (major, minor) = ctx.compute_capability()?;
            Ok((ctx, stream, format!("sm_{major}{minor}")))
        });
        let (ctx, stream, arch) = match opened {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(unavailable(format!("cannot open device 0: {e}"))),
            Err(_) => return Err(unavailable("the CUDA driver panicked".into())),
        };
        Ok(CudaDevice {
            inner: Arc::new(Inner {
                ctx,
                stream,
                description,
                arch,
                cache_dir: kernel_cache::directory(),
                modules: Mutex::new(HashMap::new()),
                functions: Mutex::new(HashMap::new()),
                fault: Mutex::new(None),
                memory: MemoryAccount::new(BackendKind::Cuda, config.memory_limit),
                table_scratch: Mutex::new(Vec::new()),
                staging: Mutex::new(Staging {
                    upload: None,
                    cursor: 0,
                    download: None,
                }),
            }),
        })
    }

    pub(crate) fn describe_device(&self) -> String {
        let limit = match self.inner.memory.limit() {
            Some(b) => format!(", memory limit {b} bytes"),
            None => String::new(),
        };
        format!(
            "{}; kernels for {}{limit}",
            self.inner.description, self.inner.arch
        )
    }

    /// Two handles are the same device when they share their inner state.
    pub(crate) fn same_as(&self, other: &CudaDevice) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Bytes of table state (slots and values of every shard) held on the device.
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.inner.memory.held()
    }

    /// Accounts `bytes` more table state against the memory limit, or fails with nothing
    /// accounted.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<(), BackendError> {
        self.inner.memory.reserve(bytes)
    }

    /// Returns `bytes` of table state to the account.
    pub(crate) fn release(&self, bytes: u64) {
        self.inner.memory.release(bytes);
    }

    /// The pool of table batch buffers.
    pub(crate) fn table_scratch(&self) -> std::sync::MutexGuard<'_, Vec<Scratch<CudaDevice>>> {
        self.inner
            .table_scratch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Frees the batch buffers tables keep between batches.
    pub(crate) fn release_table_scratch(&self) {
        self.table_scratch().clear();
    }

    /// Fails with the device's first fault, if it had one.
    fn healthy(&self, what: &str) -> Result<(), BackendError> {
        let fault = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
        match fault.as_ref() {
            Some(f) => Err(BackendError::Device {
                backend: BackendKind::Cuda,
                reason: format!("{what}: the device faulted earlier and is unusable: {f}"),
            }),
            None => Ok(()),
        }
    }

    /// Converts a driver status, remembering a sticky fault.
    fn check<T>(&self, what: &str, r: Result<T, DriverError>) -> Result<T, BackendError> {
        r.map_err(|e| {
            if is_sticky(&e) {
                let mut fault = self.inner.fault.lock().unwrap_or_else(|p| p.into_inner());
                fault.get_or_insert_with(|| format!("{what}: {e}"));
            }
            driver_error(what, e)
        })
    }

    fn bind(&self, what: &str) -> Result<(), BackendError> {
        self.healthy(what)?;
        self.check(what, self.inner.ctx.bind_to_thread())
    }

    /// The kernel `name` of `kernels/<file>`, compiled and loaded on first use.
    pub(crate) fn function(
        &self,
        file: &'static str,
        name: &'static str,
    ) -> Result<CudaFunction, BackendError> {
        let mut functions = self
            .inner
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(f) = functions.get(&(file, name)) {
            return Ok(f.clone());
        }
        let what = format!("loading kernel {name} of kernels/{file}");
        self.bind(&what)?;
        let module = self.module(file)?;
        let f = self.check(&what, module.load_function(name))?;
        functions.insert((file, name), f.clone());
        Ok(f)
    }

    fn module(&self, file: &'static str) -> Result<Arc<CudaModule>, BackendError> {
        let mut modules = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(file) {
            return Ok(Arc::clone(m));
        }
        let source = nvrtc::KERNELS
            .iter()
            .find(|k| k.file == file)
            .map(|k| k.source)
            .ok_or_else(|| BackendError::Device {
                backend: BackendKind::Cuda,
                reason: format!("kernels/{file} is not built into this binary"),
            })?;
        let dir = self.inner.cache_dir.as_deref();
        let arch = &self.inner.arch;
        let compile_error = |reason: String| BackendError::Device {
            backend: BackendKind::Cuda,
            reason: format!("compiling kernels/{file} for {arch}: {reason}"),
        };
        let what = format!("loading kernels/{file}");
        let load = |cubin: Vec<u8>| {
            self.inner
                .ctx
                .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
        };
        let (cubin, origin) =
            kernel_cache::cubin(dir, file, source, arch).map_err(compile_error)?;
        let module = match (load(cubin), origin) {
            (Ok(m), _) => m,
            // A cached entry the driver refuses: forget it and compile afresh.
            (Err(_), kernel_cache::Origin::Cache) => {
                kernel_cache::forget(dir, file, source, arch);
                let (cubin, _) =
                    kernel_cache::cubin(None, file, source, arch).map_err(compile_error)?;
                self.check(&what, load(cubin))?
            }
            (Err(e), kernel_cache::Origin::Compiled) => return Err(driver_error(&what, e)),
        };
        modules.insert(file, Arc::clone(&module));
        Ok(module)
    }

    /// A zeroed device buffer of `bytes` bytes (at least 4, so every buffer has an address).
    pub(crate) fn buffer(&self, what: &str, bytes: u64) -> Result<DeviceBuffer, BackendError> {
        let what = format!("allocating {what} ({bytes} bytes)");
        self.bind(&what)?;
        let len = bytes.max(4);
        let size = usize::try_from(len)
            .map_err(|_| driver_error(&what, DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY)))?;
        // SAFETY: a fresh allocation; it is zeroed on the stream before any use.
        let ptr = self.check(&what, unsafe { result::malloc_sync(size) })?;
        let buf = DeviceBuffer {
            ptr,
            bytes: len,
            device: Arc::clone(&self.inner),
        };
        self.zero(&buf, 0, len)?;
        Ok(buf)
    }

    /// A device buffer holding `data`.
    pub(crate) fn upload<T: bytemuck::Pod>(
        &self,
        what: &str,
        data: &[T],
    ) -> Result<DeviceBuffer, BackendError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buf = self.buffer(what, bytes.len() as u64)?;
        self.write(&buf, 0, data)?;
        Ok(buf)
    }

    /// Queues a copy of `data` to `offset` bytes into `dst`, through pinned staging.
    pub(crate) fn write<T: bytemuck::Pod>(
        &self,
        dst: &DeviceBuffer,
        offset: u64,
        data: &[T],
    ) -> Result<(), BackendError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.is_empty() {
            return Ok(());
        }
        let what = "copying to the device";
        assert!(
            offset + bytes.len() as u64 <= dst.bytes,
            "{what}: out of bounds"
        );
        self.bind(what)?;
        let mut staging = self.inner.staging.lock().unwrap_or_else(|p| p.into_inner());
        let need = staging.cursor + bytes.len();
        if staging.upload.as_ref().is_none_or(|p| p.len < need) {
            // The queued copies still read the old block: let them finish first.
            self.check(what, self.inner.stream.synchronize())?;
            staging.cursor = 0;
            let len = bytes.len().next_power_of_two().max(1 << 20);
            staging.upload = None;
            staging.upload = Some(self.check(what, Pinned::new(&self.inner.ctx, len))?);
        }
        let at = staging.cursor;
        let pinned = staging.upload.as_mut().expect("allocated above");
        let src = pinned.slice(at, bytes.len());
        src.copy_from_slice(bytes);
        // SAFETY: `src` is pinned memory that stays untouched until the next
        // synchronisation (the cursor only grows until then); the destination is in bounds.
        let queued = unsafe {
            result::memcpy_htod_async(dst.at(offset), &*src, self.inner.stream.cu_stream())
        };
        staging.cursor = at + bytes.len().next_multiple_of(256);
        self.check(what, queued)
    }

    /// Queues zeroing `bytes` bytes at `offset` of `dst`.
    pub(crate) fn zero(
        &self,
        dst: &DeviceBuffer,
        offset: u64,
        bytes: u64,
    ) -> Result<(), BackendError> {
        assert!(offset + bytes <= dst.bytes, "zeroing out of bounds");
        self.bind("clearing a buffer")?;
        // SAFETY: in bounds of a live allocation, on this device's stream.
        let r = unsafe {
            result::memset_d8_async(
                dst.at(offset),
                0,
                bytes as usize,
                self.inner.stream.cu_stream(),
            )
        };
        self.check("clearing a buffer", r)
    }

    /// Queues a copy of `bytes` bytes from `src` at `src_offset` to `dst` at `dst_offset`.
    pub(crate) fn copy(
        &self,
        src: &DeviceBuffer,
        src_offset: u64,
        dst: &DeviceBuffer,
        dst_offset: u64,
        bytes: u64,
    ) -> Result<(), BackendError> {
        assert!(
            src_offset + bytes <= src.bytes && dst_offset + bytes <= dst.bytes,
            "copying out of bounds"
        );
        if bytes == 0 {
            return Ok(());
        }
        self.bind("copying on the device")?;
        // SAFETY: both ranges are in bounds of live allocations of this context, on this
        // device's stream.
        let r = unsafe {
            result::memcpy_dtod_async(
                dst.at(dst_offset),
                src.at(src_offset),
                bytes as usize,
                self.inner.stream.cu_stream(),
            )
        };
        self.check("copying on the device", r)
    }

    /// Queues kernel `f` over `cfg` with `args` (the kernel's parameters, in order).
    pub(crate) fn launch(
        &self,
        what: &str,
        f: &CudaFunction,
        cfg: LaunchConfig,
        mut args: Args<'_>,
    ) -> Result<(), BackendError> {
        self.bind(what)?;
        // SAFETY: `args` points at values that outlive this call, whose types mirror the
        // kernel's parameters (`#[repr(C)]` structs, their sizes unit-tested); every
        // address they carry is a live allocation of this device, bounded by the params.
        let r = unsafe {
            result::launch_kernel(
                f.cu_function(),
                cfg.grid_dim,
                cfg.block_dim,
                cfg.shared_mem_bytes,
                self.inner.stream.cu_stream(),
                &mut args.ptrs[..args.len],
            )
        };
        self.check(what, r)
    }

    /// Copies `regions` back and waits for everything queued so far: the one
    /// synchronisation of a batch. Returns the regions' bytes, concatenated in order.
    pub(crate) fn finish(
        &self,
        what: &str,
        regions: &[Region<'_>],
    ) -> Result<Vec<u8>, BackendError> {
        self.bind(what)?;
        let total: usize = regions.iter().map(|r| r.2 as usize).sum();
        let mut staging = self.inner.staging.lock().unwrap_or_else(|p| p.into_inner());
        if staging.download.as_ref().is_none_or(|p| p.len < total) {
            // Nothing queued reads the download block outside `finish`, which waits.
            staging.download = None;
            let len = total.next_power_of_two().max(1 << 20);
            staging.download = Some(self.check(what, Pinned::new(&self.inner.ctx, len))?);
        }
        let pinned = staging.download.as_mut().expect("allocated above");
        let mut at = 0;
        for &(buf, offset, bytes) in regions {
            assert!(
                offset + bytes <= buf.bytes,
                "{what}: read-back out of bounds"
            );
            let dst = pinned.slice(at, bytes as usize);
            // SAFETY: pinned destination in bounds; it is read only after the
            // synchronisation below.
            let r = unsafe {
                result::memcpy_dtoh_async(dst, buf.at(offset), self.inner.stream.cu_stream())
            };
            self.check(what, r)?;
            at += bytes as usize;
        }
        self.check(what, self.inner.stream.synchronize())?;
        staging.cursor = 0;
        let pinned = staging.download.as_mut().expect("allocated above");
        Ok(pinned.slice(0, total).to_vec())
    }

    /// Waits for everything queued (a batch with nothing to read back).
    pub(crate) fn synchronize(&self, what: &str) -> Result<(), BackendError> {
        self.finish(what, &[]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_every_invocation() {
        let g = grid(1000, 256);
        assert_eq!((g.grid_dim, g.block_dim), ((4, 1, 1), (256, 1, 1)));
        assert_eq!(grid(0, 64).grid_dim, (1, 1, 1));
        let big = (1u64 << 31) * 256 + 1;
        let g = grid(big, 256);
        let covered = u64::from(g.grid_dim.0) * u64::from(g.grid_dim.1) * 256;
        assert!(covered >= big && g.grid_dim.1 == 2);
    }
}
