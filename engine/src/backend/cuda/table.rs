//! Shard tables on the CUDA backend (SPEC §1): the device operations of the GPU table order
//! ([`crate::backend::gpu_table`], shared with wgpu, which holds the sizes, the params, the
//! launch sequence of a batch, growth, commit-or-refuse and decoding) on one CUDA stream,
//! running `kernels/table.cu`, the sibling of `shaders/table.wgsl`. Design: docs/cuda.md,
//! "Tables on CUDA".
//!
//! What differs from wgpu (`backend/wgpu/table/`):
//! - no binding limit; the one size limit is the kernels' 32-bit indexing: an arena buffer
//!   or batch buffer of more than 2^32 words is refused by name, and running out of device
//!   memory is an error naming the allocation, with nothing applied;
//! - every kernel takes `(TableParams, TableBuffers)`: the 192 bytes of the WGSL uniform by
//!   value, and the device addresses of bindings 1 to 17 (no binding 15), null where the
//!   launch binds nothing;
//! - a list of steps is queued on the device's one stream (writes through pinned staging,
//!   clears, copies, launches) and ends with one read-back and one synchronisation
//!   ([`CudaDevice::finish`]), where a fault surfaces;
//! - the kernels are loaded once per set of batch buffers (on its first batch).
//!
//! Not yet run on a GPU (no session building it had one); the table conformance suite
//! (`tests/conformance.rs`) checks it against the CPU backend wherever a CUDA device is
//! present.
#![allow(unsafe_code)]

use cudarc::driver::{CudaFunction, DeviceRepr, LaunchConfig};

use super::{Args, CudaDevice, DeviceBuffer};
use crate::backend::BackendKind;
use crate::backend::gpu_table::{GpuShards, Kernel, Params, Read, Scratch, Step, TableDevice};
use crate::error::BackendError;

const FILE: &str = "table.cu";

/// The most bytes one buffer may hold: the kernels index 32-bit words with u32.
const MAX_BYTES: u64 = 4 << 32;

/// The shards of one table on a CUDA device.
pub type CudaShards = GpuShards<CudaDevice>;

/// `TableBuffers` of table.cu: the device addresses of bindings 1 to 14, 16 and 17 of
/// table.wgsl, in order (0 for a binding a launch does not bind).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TableBuffers {
    info: u64,
    batch: u64,
    records: u64,
    work: u64,
    counters: u64,
    results: u64,
    old_slots: u64,
    old_values: u64,
    slots: u64,
    values: u64,
    halves: u64,
    new_halves: u64,
    lwork: u64,
    lflat: u64,
    pairs: u64,
    pvals: u64,
}

impl TableBuffers {
    /// The struct for a launch binding `binds` (WGSL binding number, address).
    fn of(binds: impl IntoIterator<Item = (u32, u64)>) -> TableBuffers {
        let mut b = TableBuffers::default();
        for (binding, ptr) in binds {
            let field = match binding {
                1 => &mut b.info,
                2 => &mut b.batch,
                3 => &mut b.records,
                4 => &mut b.work,
                5 => &mut b.counters,
                6 => &mut b.results,
                7 => &mut b.old_slots,
                8 => &mut b.old_values,
                9 => &mut b.slots,
                10 => &mut b.values,
                11 => &mut b.halves,
                12 => &mut b.new_halves,
                13 => &mut b.lwork,
                14 => &mut b.lflat,
                16 => &mut b.pairs,
                17 => &mut b.pvals,
                other => unreachable!("table.wgsl has no storage binding {other}"),
            };
            *field = ptr;
        }
        b
    }
}

// SAFETY: `Params` is `#[repr(C)]`, 48 u32, laid out as table.cu's `TableParams` (192 bytes,
// static_assert'ed there, unit-tested here).
unsafe impl DeviceRepr for Params {}
// SAFETY: `#[repr(C)]`, 16 u64 addresses laid out as table.cu's `TableBuffers` of 16
// pointers (64-bit on every CUDA target; static_assert'ed there).
unsafe impl DeviceRepr for TableBuffers {}

/// The grid of a launch of `kernel` over `groups` blocks: `(x, y)` past the x limit, blocks
/// of the WGSL workgroup size. The kernels number blocks and threads as the WGSL does
/// (`flat_index()`, `group_index()`), so the split gives the same invocations.
fn launch_config(kernel: Kernel, groups: u64) -> LaunchConfig {
    const MAX_X: u64 = (1 << 31) - 1;
    let groups = groups.max(1);
    let (x, y) = if groups <= MAX_X {
        (groups, 1)
    } else {
        (MAX_X, groups.div_ceil(MAX_X))
    };
    LaunchConfig {
        grid_dim: (x as u32, y as u32, 1),
        block_dim: (kernel.threads(), 1, 1),
        shared_mem_bytes: 0,
    }
}

/// What a CUDA device keeps with a set of batch buffers: the table kernels, per kernel in
/// `Kernel::ALL` order, loaded on its first batch.
#[derive(Default)]
pub struct CudaCache {
    functions: Vec<CudaFunction>,
}

impl TableDevice for CudaDevice {
    type Buf = DeviceBuffer;
    type Cache = CudaCache;
    const KIND: BackendKind = BackendKind::Cuda;
    const LIMIT_NAME: &'static str = "what kernels/table.cu indexes with 32-bit words";

    fn arena_cap(&self) -> u64 {
        MAX_BYTES
    }

    fn buffer_limit(&self) -> u64 {
        MAX_BYTES
    }

    fn local_sort(&self) -> bool {
        true
    }

    fn alloc(&self, label: &str, bytes: u64) -> Result<DeviceBuffer, BackendError> {
        self.buffer(label, bytes.max(16).next_multiple_of(4))
    }

    fn size(buf: &DeviceBuffer) -> u64 {
        buf.bytes()
    }

    fn reserve(&self, bytes: u64) -> Result<(), BackendError> {
        CudaDevice::reserve(self, bytes)
    }

    fn release(&self, bytes: u64) {
        CudaDevice::release(self, bytes);
    }

    fn submit(
        &self,
        what: &str,
        cache: &mut CudaCache,
        steps: &[Step<'_, DeviceBuffer>],
        reads: &[Read<'_, DeviceBuffer>],
    ) -> Result<Vec<u32>, BackendError> {
        if cache.functions.is_empty() && steps.iter().any(|s| matches!(s, Step::Run { .. })) {
            cache.functions = Kernel::ALL
                .iter()
                .map(|k| self.function(FILE, k.entry()))
                .collect::<Result<_, _>>()?;
        }
        for s in steps {
            match s {
                Step::Write { buf, words } => self.write(buf, 0, words)?,
                Step::Clear { buf, bytes } => self.zero(buf, 0, *bytes)?,
                Step::Copy {
                    from,
                    from_at,
                    to,
                    to_at,
                    bytes,
                } => self.copy(from, *from_at, to, *to_at, *bytes)?,
                Step::Run {
                    kernel,
                    params,
                    binds,
                    groups,
                } => {
                    let buffers = TableBuffers::of(binds.iter().map(|&(b, buf)| (b, buf.ptr())));
                    let args = Args::new().arg(params).arg(&buffers);
                    self.launch(
                        what,
                        &cache.functions[kernel.index()],
                        launch_config(*kernel, *groups),
                        args,
                    )?;
                }
            }
        }
        let regions: Vec<_> = reads
            .iter()
            .map(|&(b, at, words)| (b, at, words * 4))
            .collect();
        let bytes = self.finish(what, &regions)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn take_scratch(&self) -> Scratch<CudaDevice> {
        self.table_scratch().pop().unwrap_or_default()
    }

    fn return_scratch(&self, scratch: Scratch<CudaDevice>) {
        self.table_scratch().push(scratch);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::backend::cuda::nvrtc;

    fn source() -> &'static str {
        nvrtc::KERNELS
            .iter()
            .find(|k| k.file == FILE)
            .map(|k| k.source)
            .expect("table.cu is built in")
    }

    #[test]
    fn params_and_buffers_mirror_the_kernel_structs() {
        // 48 u32 (TableParams, static_assert'ed to 192 bytes in table.cu) and 16 pointers.
        assert_eq!(std::mem::size_of::<Params>(), 192);
        assert_eq!(std::mem::size_of::<TableBuffers>(), 16 * 8);
        assert!(source().contains("struct TableParams {"));
        assert!(source().contains("struct TableBuffers {"));
        assert!(source().contains("sizeof(TableParams) == 192"));
        assert!(source().contains("sizeof(TableBuffers) == 16 * sizeof(void *)"));
    }

    #[test]
    fn every_kernel_is_a_kernel_of_table_cu_taking_params_and_buffers() {
        for k in Kernel::ALL {
            let decl = format!(
                "extern \"C\" __global__ void {}(TableParams p, TableBuffers b)",
                k.entry()
            );
            assert!(
                source().contains(&decl),
                "{decl} missing from kernels/table.cu"
            );
        }
        // And nothing else: every kernel of table.cu is launched by the table order.
        let kernels = source().matches("extern \"C\" __global__ void ").count();
        assert_eq!(kernels, Kernel::ALL.len());
    }

    #[test]
    fn kernel_order_and_block_sizes() {
        for (i, k) in Kernel::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
            let expected = match k {
                Kernel::PeakBlocks | Kernel::Peak => 64,
                Kernel::WalkCarry | Kernel::LinkScanCarry => 1,
                _ => 256,
            };
            assert_eq!(launch_config(*k, 3).block_dim, (expected, 1, 1), "{k:?}");
        }
    }

    #[test]
    fn grids_cover_every_group() {
        assert_eq!(launch_config(Kernel::Route, 0).grid_dim, (1, 1, 1));
        assert_eq!(
            launch_config(Kernel::Route, 70_000).grid_dim,
            (70_000, 1, 1)
        );
        let big = (1u64 << 31) + 5;
        let g = launch_config(Kernel::Walk, big).grid_dim;
        assert!(u64::from(g.0) * u64::from(g.1) >= big && g.1 == 2);
    }

    #[test]
    fn buffers_fill_their_binding_fields() {
        let b = TableBuffers::of([(1, 10), (7, 70), (14, 140), (16, 160), (17, 170)]);
        assert_eq!(
            b,
            TableBuffers {
                info: 10,
                old_slots: 70,
                lflat: 140,
                pairs: 160,
                pvals: 170,
                ..TableBuffers::default()
            }
        );
    }
}
