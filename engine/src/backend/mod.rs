//! Backend selection and the per-workload trait every backend implements.
//!
//! A backend is one way of running warpgrid's operations: `cpu` (rayon, the reference),
//! `wgpu` (WGSL compute on Vulkan/Metal/DX12) and `cuda` (CUDA C through NVRTC). Every backend
//! always exists as a [`BackendKind`]; whether it can run here is a run-time [`probe`](probe_all)
//! that returns [`Unavailable`] with a reason, never a panic and never a `cfg`.
//!
//! Selection rules (SPEC §0): `Auto` takes CUDA if a driver and device are present, else wgpu
//! if an adapter is present, else CPU. An explicitly requested backend that cannot run is an
//! error naming the reason, never a silent fallback. In this version `Auto` passes over a
//! backend that would be slower or incomplete here, saying why in `warpgrid info`: a
//! software wgpu adapter ([`wgpu::SOFTWARE_ADAPTER_SKIP`]) and CUDA, which runs every
//! workload but has not been validated on a GPU yet ([`cuda::AUTO_SKIP`]).

pub mod cpu;
pub mod cuda;
pub(crate) mod gpu_table;
mod memory;
pub mod wgpu;

use std::fmt;
use std::str::FromStr;

use crate::error::{BackendError, TableError};
use crate::table::{Batch, BatchResults, ShardStats, TableConfig};

/// Which backend to use. `Auto` resolves to the best available one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BackendKind {
    /// The best backend available here, by SPEC §0's order (see [`Device::open`]).
    #[default]
    Auto,
    /// Rayon on the host: the reference every other backend is checked against.
    Cpu,
    /// WGSL compute through wgpu (Vulkan, Metal, DX12, or lavapipe in CI).
    Wgpu,
    /// CUDA C kernels compiled by NVRTC, on an NVIDIA GPU.
    Cuda,
}

impl BackendKind {
    /// The concrete backends, in `Auto`'s order of preference.
    pub const CONCRETE: [BackendKind; 3] = [BackendKind::Cuda, BackendKind::Wgpu, BackendKind::Cpu];

    /// The name the CLI and `WARPGRID_BACKEND` use: `auto`, `cpu`, `wgpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The backend named by `WARPGRID_BACKEND`, `Auto` when unset.
    pub fn from_env() -> Result<BackendKind, BackendError> {
        match std::env::var("WARPGRID_BACKEND") {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(BackendKind::Auto),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            other => Err(BackendError::InvalidSetting {
                field: "backend",
                reason: format!("expected one of auto, cpu, wgpu, cuda, got {other:?}"),
            }),
        }
    }
}

/// Why a backend cannot run on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// What is missing, in words a user can act on (e.g. which driver to install).
    pub reason: String,
}

/// What probing one backend found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The backend probed (never `Auto`).
    pub kind: BackendKind,
    /// `Ok(description of the device)` or why it is unavailable.
    pub status: Result<String, Unavailable>,
    /// Why `Auto` passes over this backend although it is available (a software wgpu
    /// adapter); `None` when Auto would take it or it is unavailable.
    pub auto_skip: Option<String>,
}

/// Probes every concrete backend, in `Auto`'s order of preference. Never panics.
pub fn probe_all() -> Vec<ProbeReport> {
    BackendKind::CONCRETE
        .iter()
        .map(|&kind| match probe(kind) {
            Ok((description, auto_skip)) => ProbeReport {
                kind,
                status: Ok(description),
                auto_skip,
            },
            Err(u) => ProbeReport {
                kind,
                status: Err(u),
                auto_skip: None,
            },
        })
        .collect()
}

/// The backend's device description and, when `Auto` would pass over it, why.
fn probe(kind: BackendKind) -> Result<(String, Option<String>), Unavailable> {
    match kind {
        BackendKind::Cuda => cuda::probe(),
        BackendKind::Wgpu => wgpu::probe(),
        BackendKind::Cpu => Ok((cpu::describe(), None)),
        BackendKind::Auto => unreachable!("auto is not a concrete backend"),
    }
}

/// The kinds of work a backend may or may not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Shard tables (SPEC §1).
    Tables,
    /// Activation graphs: similarity, spreading, recall (SPEC §2).
    Graphs,
    /// Braided tori (SPEC §3).
    Braids,
}

impl Workload {
    /// The workload's name in messages ("shard tables", ...).
    pub fn name(self) -> &'static str {
        match self {
            Workload::Tables => "shard tables",
            Workload::Graphs => "activation graphs",
            Workload::Braids => "braided tori",
        }
    }
}

/// Settings of a device, whatever its backend.
#[derive(Debug, Clone, Default)]
pub struct DeviceConfig {
    /// Which backend to open; `Auto` picks by SPEC §0's order.
    pub backend: BackendKind,
    /// Worker threads of the CPU backend (0 = one per core).
    pub threads: usize,
    /// Upper bound on the bytes of table state the device may hold (None = what the memory
    /// allows). A batch whose worst-case growth would pass it fails with `OutOfMemory`.
    pub memory_limit: Option<u64>,
}

/// An opened device of one concrete backend. Tables and other state are created on it.
///
/// Adding a backend adds a variant here and an arm to each workload's dispatch; nothing
/// else in the engine changes shape.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Device {
    /// The CPU backend (rayon worker pool).
    Cpu(cpu::CpuDevice),
    /// A wgpu adapter and device.
    Wgpu(wgpu::WgpuDevice),
    /// A CUDA context and stream on device 0.
    Cuda(cuda::CudaDevice),
}

impl Device {
    /// Opens the backend `config.backend` asks for, resolving `Auto` by the rules of SPEC §0.
    pub fn open(config: &DeviceConfig) -> Result<Device, BackendError> {
        match config.backend {
            BackendKind::Auto => {
                for kind in BackendKind::CONCRETE {
                    // A software wgpu adapter is passed over (wgpu::SOFTWARE_ADAPTER_SKIP).
                    if matches!(probe(kind), Ok((_, None))) {
                        return Device::open_kind(kind, config);
                    }
                }
                unreachable!("the cpu backend is always available")
            }
            kind => {
                if let Err(u) = probe(kind) {
                    return Err(BackendError::Unavailable {
                        backend: kind,
                        reason: u.reason,
                    });
                }
                Device::open_kind(kind, config)
            }
        }
    }

    /// The CPU backend with default settings.
    pub fn cpu() -> Result<Device, BackendError> {
        Device::open(&DeviceConfig {
            backend: BackendKind::Cpu,
            ..DeviceConfig::default()
        })
    }

    fn open_kind(kind: BackendKind, config: &DeviceConfig) -> Result<Device, BackendError> {
        match kind {
            BackendKind::Cpu => Ok(Device::Cpu(cpu::CpuDevice::new(config)?)),
            BackendKind::Wgpu => Ok(Device::Wgpu(wgpu::WgpuDevice::open(config)?)),
            BackendKind::Cuda => Ok(Device::Cuda(cuda::CudaDevice::open(config)?)),
            BackendKind::Auto => unreachable!("auto is resolved before opening"),
        }
    }

    /// Whether this device runs `workload`; `Err` ([`BackendError::Unsupported`]) says why
    /// not. Every backend runs every workload in this version; a backend added part way
    /// answers here, and the conformance suites skip what it does not run.
    pub fn supports(&self, workload: Workload) -> Result<(), BackendError> {
        let _ = workload;
        Ok(())
    }

    /// The concrete backend of this device (never `Auto`).
    pub fn kind(&self) -> BackendKind {
        match self {
            Device::Cpu(_) => BackendKind::Cpu,
            Device::Wgpu(_) => BackendKind::Wgpu,
            Device::Cuda(_) => BackendKind::Cuda,
        }
    }

    /// A one-line description of the device (for `warpgrid info` and reports).
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu(d) => d.describe_device(),
            Device::Wgpu(d) => d.describe_device(),
            Device::Cuda(d) => d.describe_device(),
        }
    }

    /// Bytes of table state (keys and values arrays) the device holds: what its memory
    /// limit is checked against.
    pub fn table_bytes(&self) -> u64 {
        match self {
            Device::Cpu(d) => d.allocated_bytes(),
            Device::Wgpu(d) => d.allocated_bytes(),
            Device::Cuda(d) => d.allocated_bytes(),
        }
    }

    /// Frees the working buffers the device keeps between batches (sized by the largest
    /// batch seen). The next batch allocates them again.
    pub fn release_cached_buffers(&self) {
        match self {
            Device::Cpu(d) => d.release_scratch(),
            Device::Wgpu(d) => d.release_table_scratch(),
            // Graph working buffers live with each graph (`Graph::release_buffers`).
            Device::Cuda(d) => d.release_table_scratch(),
        }
    }

    /// Worker threads (CPU) or the equivalent degree of host parallelism.
    pub fn threads(&self) -> usize {
        match self {
            Device::Cpu(d) => d.threads(),
            // Host-side work of a GPU device runs on the global rayon pool.
            Device::Wgpu(_) | Device::Cuda(_) => rayon::current_num_threads(),
        }
    }
}

/// The shard-table operations a backend implements.
///
/// The backend owns the layout of the shards' state (`Shards`); the engine owns validation,
/// routing rules and statistics formulas, so every backend computes the same thing.
/// Contract of `apply`: the batch behaves exactly as if its operations ran one by one in
/// batch order (SPEC §1.2); on `Err` nothing was applied.
pub trait TableBackend {
    /// The device-resident state of all shards of one table.
    type Shards: Send;

    /// Allocates the empty shards of a table.
    fn create_shards(&self, config: &TableConfig) -> Result<Self::Shards, TableError>;

    /// Applies one validated batch, writing its results into `results` (reusing its
    /// buffers). `epoch` increases with every batch applied to the table.
    fn apply(
        &self,
        shards: &mut Self::Shards,
        config: &TableConfig,
        batch: &Batch,
        epoch: u64,
        results: &mut BatchResults,
    ) -> Result<(), TableError>;

    /// Per-shard statistics, in shard order.
    fn shard_stats(&self, shards: &Self::Shards) -> Vec<ShardStats>;

    /// Visits every entry of shard `shard` (`key`, value bytes), then every link half the
    /// shard stores (`owner`, `partner`, `strength`), in an unspecified order. For snapshots.
    /// On `Err` (a device that cannot read its state back) the visit is incomplete and must
    /// not be used.
    fn export_shard(
        &self,
        shards: &Self::Shards,
        shard: usize,
        entry: &mut dyn FnMut(u64, &[u8]),
        link: &mut dyn FnMut(u64, u64, f32),
    ) -> Result<(), TableError>;

    /// A deep copy of the shards (may fail for lack of memory, hence no `Clone`).
    fn try_clone_shards(&self, shards: &Self::Shards) -> Result<Self::Shards, TableError>;

    /// Releases the shards' memory.
    fn drop_shards(&self, shards: Self::Shards);
}
