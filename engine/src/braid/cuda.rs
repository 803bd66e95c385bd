//! Braids on the CUDA backend: the buffers of a resident braid (`super::resident`, which
//! holds the layout, the steps and the host side shared with wgpu) as plain device
//! allocations, instants processed by `kernels/braid.cu` for all tori at once, the same
//! steps in the same order as on wgpu, launch for dispatch, one stream synchronisation per
//! batch of instants (where the host reads the clock back).
//!
//! What differs from wgpu (`gpu.rs`):
//! - no binding limit; the one size limit is the kernels' 32-bit indexing (a buffer of more
//!   than 2^32 words is refused by name), and running out of device memory is an error;
//! - every kernel takes `(BraidParams, BraidBuffers)`: the params by value (the bytes of the
//!   WGSL uniform) and the device addresses of bindings 1 to 11;
//! - CUDA cannot size a grid from a device buffer, so the steps WGSL dispatches indirectly
//!   get an upper-bound grid, `groups_for(max_pending)` for `dispatch` word 0 and
//!   `groups_for(em_cap)` for word 3 (at most 65535 blocks over `x`, the torus over `y`):
//!   the kernels loop with a grid stride and blocks past the count return at once, so the
//!   result is the same; the kernels still write `dispatch`;
//! - work is queued on the device's one stream: writes and launches are ordered by it, and
//!   a fault shows up at the next read-back (every run ends with one before it returns).
//!
//! Where CUDA could do better later (the lavapipe shapes kept so one host order drives
//! both): see the header of `kernels/braid.cu`.
//!
//! Not yet run on a GPU (no session building it had one); `engine/tests/braid_gpu.rs` checks
//! it against the CPU backend wherever a CUDA device is present.
#![allow(unsafe_code)]

use cudarc::driver::{CudaFunction, DeviceRepr, LaunchConfig};

use super::error::BraidError;
use super::resident::{BraidDevice, Init, Kernel, Launch, Params, Plan, Resident, device_error};
use super::resident::{WORKGROUP, groups_for};
use super::torus::Torus;
use crate::backend::BackendKind;
use crate::backend::cuda::{Args, CudaDevice, DeviceBuffer};

const FILE: &str = "braid.cu";

/// `BraidBuffers` of braid.cu: the device addresses of bindings 1 to 11, in order.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct BraidBuffers {
    ctl: u64,
    cells: u64,
    procs: u64,
    edge_start: u64,
    edges: u64,
    sorted: u64,
    em: u64,
    pool: u64,
    pages: u64,
    dispatch: u64,
    proj: u64,
}

// SAFETY: `Params` is `#[repr(C)]`, 16 u32, laid out as braid.cu's `BraidParams` (64 bytes,
// static_assert'ed there, unit-tested here).
unsafe impl DeviceRepr for Params {}
// SAFETY: `#[repr(C)]`, 11 u64 addresses laid out as braid.cu's `BraidBuffers` of 11
// pointers (64-bit on every CUDA target).
unsafe impl DeviceRepr for BraidBuffers {}

/// Threads per block of kernel `k`: the WGSL workgroup size.
fn threads(k: Kernel) -> u32 {
    match k {
        Kernel::ScanCells | Kernel::Cut => 256,
        _ => WORKGROUP,
    }
}

/// The most 32-bit words a buffer may hold: the kernels index them with u32.
const MAX_WORDS: u64 = 1 << 32;

/// A braid's buffers on one CUDA device.
pub(crate) struct CudaBraid {
    dev: CudaDevice,
    params: Params,
    /// Bindings 1 to 11 (binding `b` at `b - 1`).
    buffers: Vec<DeviceBuffer>,
    pointers: BraidBuffers,
    /// Per kernel, in `Kernel::ALL` order.
    functions: Vec<CudaFunction>,
}

impl std::fmt::Debug for CudaBraid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBraid")
            .field("dev", &self.dev)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl CudaBraid {
    pub(crate) fn on(&self, dev: &CudaDevice) -> bool {
        self.dev.same_as(dev)
    }

    fn buffer(&self, binding: usize) -> &DeviceBuffer {
        &self.buffers[binding - 1]
    }
}

/// The grid of step `(k, launch)` under `p`: WGSL's dispatch, or its upper bound for an
/// indirect one (braid.cu's header).
fn launch_config(p: &Params, k: Kernel, launch: Launch) -> LaunchConfig {
    let (x, y) = match launch {
        Launch::Single => (1, 1),
        Launch::PerTorus => (1, p.tori),
        // `dispatch` word 0: the instant's events, at most max_pending a torus.
        Launch::Indirect(0) => (groups_for(p.max_pending.into()), p.tori),
        // `dispatch` word 3: emitted or injected events, at most em_cap a torus.
        Launch::Indirect(12) => (groups_for(p.em_cap.into()), p.tori),
        Launch::Indirect(offset) => unreachable!("no indirect size at byte {offset}"),
        Launch::Cells => (groups_for(p.cells.into()), p.tori),
    };
    LaunchConfig {
        grid_dim: (x.max(1), y, 1),
        block_dim: (threads(k), 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Uploads `tori` (all at clock `now`) to `dev`. Refuses, naming the buffer, a braid whose
/// buffer the kernels' 32-bit indices cannot cover.
pub(crate) fn upload(
    dev: &CudaDevice,
    tori: &[Torus],
    now: u32,
) -> Result<Resident<CudaBraid>, BraidError> {
    let mut plan = Plan::new(tori, now);
    for (label, init) in &plan.buffers {
        let bytes = init.bytes();
        if bytes > MAX_WORDS * 4 {
            return Err(device_error(
                BackendKind::Cuda,
                format!(
                    "the braid's {label} buffer needs {bytes} bytes, more than kernels/braid.cu \
                     indexes with 32-bit words ({} bytes); use fewer tori, a smaller lattice, \
                     a smaller max_pending or fewer out-edges per cell, or --backend cpu",
                    MAX_WORDS * 4
                ),
            ));
        }
    }
    let mut buffers = Vec::with_capacity(plan.buffers.len());
    for (label, init) in std::mem::take(&mut plan.buffers) {
        let what = format!("braid {label}");
        buffers.push(match init {
            Init::Words(words) => dev.upload(&what, &words)?,
            Init::Zeroed(bytes) => dev.buffer(&what, bytes)?,
        });
    }
    let ptr = |binding: usize| buffers[binding - 1].ptr();
    let pointers = BraidBuffers {
        ctl: ptr(1),
        cells: ptr(2),
        procs: ptr(3),
        edge_start: ptr(4),
        edges: ptr(5),
        sorted: ptr(6),
        em: ptr(7),
        pool: ptr(8),
        pages: ptr(9),
        dispatch: ptr(10),
        proj: ptr(11),
    };
    let functions = Kernel::ALL
        .iter()
        .map(|k| dev.function(FILE, k.entry()))
        .collect::<Result<Vec<_>, _>>()?;
    let braid = CudaBraid {
        dev: dev.clone(),
        params: plan.params,
        buffers,
        pointers,
        functions,
    };
    Resident::new(braid, plan, now)
}

impl BraidDevice for CudaBraid {
    const KIND: BackendKind = BackendKind::Cuda;

    fn write_params(&mut self, params: &Params) -> Result<(), BraidError> {
        // Launches take the params by value: the next ones carry these.
        self.params = *params;
        Ok(())
    }

    fn write(&mut self, binding: usize, word: usize, values: &[u32]) -> Result<(), BraidError> {
        Ok(self
            .dev
            .write(self.buffer(binding), (word * 4) as u64, values)?)
    }

    fn run(
        &mut self,
        what: &str,
        steps: &[(Kernel, Launch)],
        times: u32,
    ) -> Result<(), BraidError> {
        let configs: Vec<_> = steps
            .iter()
            .map(|&(k, l)| launch_config(&self.params, k, l))
            .collect();
        for _ in 0..times {
            for (&(k, _), &cfg) in steps.iter().zip(&configs) {
                let args = Args::new().arg(&self.params).arg(&self.pointers);
                self.dev
                    .launch(what, &self.functions[k.index()], cfg, args)?;
            }
        }
        Ok(())
    }

    fn read(&mut self, binding: usize, words: Option<usize>) -> Result<Vec<u32>, BraidError> {
        let buf = self.buffer(binding);
        let bytes = words.map_or(buf.bytes(), |w| (w * 4) as u64);
        let out = self
            .dev
            .finish("reading braid state back", &[(buf, 0, bytes)])?;
        Ok(bytemuck::pod_collect_to_vec(&out))
    }

    fn loop_fault(params: &Params) -> String {
        format!(
            "a braid kernel reported a loop stopped before its bound, which CUDA never does \
             ({} cells, {} tori): a bug in kernels/braid.cu; nothing was changed; use \
             --backend cpu",
            params.cells, params.tori
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::backend::cuda::nvrtc;
    use crate::braid::resident::{INJECT, PROJECT, instant_steps};

    fn source() -> &'static str {
        nvrtc::KERNELS
            .iter()
            .find(|k| k.file == FILE)
            .map(|k| k.source)
            .expect("braid.cu is built in")
    }

    #[test]
    fn params_and_buffers_mirror_the_kernel_structs() {
        // 16 u32 (BraidParams, static_assert'ed to 64 bytes in braid.cu) and 11 pointers.
        assert_eq!(std::mem::size_of::<Params>(), 64);
        assert_eq!(std::mem::size_of::<BraidBuffers>(), 11 * 8);
        assert!(source().contains("struct BraidParams {"));
        assert!(source().contains("struct BraidBuffers {"));
    }

    #[test]
    fn every_kernel_is_a_kernel_of_braid_cu_taking_params_and_buffers() {
        for k in Kernel::ALL {
            let decl = format!("extern \"C\" __global__ void {}(BraidParams", k.entry());
            assert!(
                source().contains(&decl),
                "{decl} missing from kernels/braid.cu"
            );
        }
    }

    /// The grids of every step: block sizes and upper bounds as braid.cu's header says.
    #[test]
    fn grids_follow_the_kernels_header() {
        let params = Params {
            tori: 3,
            cells: 1 << 24,
            max_pending: 100_000,
            em_cap: 1 << 30,
            ..bytemuck::Zeroable::zeroed()
        };
        let config = |k, launch| {
            let c = launch_config(&params, k, launch);
            (c.grid_dim, c.block_dim)
        };
        for &(k, launch) in instant_steps(1 << 20).iter().chain(&INJECT).chain(&PROJECT) {
            let (grid, block) = config(k, launch);
            match k {
                Kernel::ScanCells | Kernel::Cut => {
                    assert_eq!((grid, block), ((1, 3, 1), (256, 1, 1)), "{k:?}")
                }
                Kernel::BeginInstant
                | Kernel::NextPass
                | Kernel::EndRound
                | Kernel::PlanMerge
                | Kernel::PlanInject
                | Kernel::Alloc
                | Kernel::Advance => assert_eq!((grid, block), ((1, 1, 1), (64, 1, 1)), "{k:?}"),
                Kernel::CountDelays | Kernel::CountKeys | Kernel::Merge => {
                    assert_eq!((grid, block), ((65535, 3, 1), (64, 1, 1)), "{k:?}")
                }
                Kernel::Project => assert_eq!((grid, block), ((65535, 3, 1), (64, 1, 1))),
                _ => assert_eq!(
                    (grid, block),
                    ((100_000u32.div_ceil(64), 3, 1), (64, 1, 1)),
                    "{k:?}"
                ),
            }
        }
    }
}
