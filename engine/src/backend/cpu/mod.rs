//! The CPU backend: the reference implementation of every operation, on rayon.
//!
//! State lives in host memory in the same flat layout a device backend uses; work runs on a
//! dedicated rayon pool (`--threads`), so warpgrid never competes with a caller's own pool.

mod kv;
mod prefetch;
mod shard;

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::memory::MemoryAccount;
use super::{BackendKind, DeviceConfig, TableBackend};
use crate::error::{BackendError, TableError};
use crate::table::route::initial_slots;
use crate::table::{Batch, BatchResults, ShardStats, TableConfig};
use kv::KvScratch;
use shard::{CpuShard, shard_bytes};

/// A description of the CPU backend before it is opened.
pub(crate) fn describe() -> String {
    format!(
        "host cpu, {} hardware threads (rayon)",
        rayon_threads_default()
    )
}

fn rayon_threads_default() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The shards of one table on the CPU backend.
#[derive(Debug)]
pub struct CpuShards {
    shards: Vec<CpuShard>,
}

/// The CPU "device": a rayon pool and an account of the table memory it holds.
#[derive(Debug, Clone)]
pub struct CpuDevice {
    inner: Arc<Inner>,
}

struct Inner {
    pool: rayon::ThreadPool,
    threads: usize,
    /// Table state (keys and values arrays) held, against `DeviceConfig::memory_limit`.
    memory: MemoryAccount,
    /// Routing buffers kept between batches (one set per concurrent batch).
    scratch: Mutex<Vec<KvScratch>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuDevice")
            .field("threads", &self.threads)
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

impl CpuDevice {
    pub(crate) fn new(config: &DeviceConfig) -> Result<CpuDevice, BackendError> {
        let threads = if config.threads == 0 {
            rayon_threads_default()
        } else {
            config.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("warpgrid-cpu-{i}"))
            .build()
            .map_err(|e| BackendError::InvalidSetting {
                field: "threads",
                reason: format!("cannot start {threads} worker threads: {e}"),
            })?;
        Ok(CpuDevice {
            inner: Arc::new(Inner {
                pool,
                threads,
                memory: MemoryAccount::new(BackendKind::Cpu, config.memory_limit),
                scratch: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Worker threads of the device's rayon pool.
    pub fn threads(&self) -> usize {
        self.inner.threads
    }

    pub(crate) fn describe_device(&self) -> String {
        let limit = match self.inner.memory.limit() {
            Some(b) => format!(", memory limit {b} bytes"),
            None => String::new(),
        };
        format!(
            "host cpu, {} worker threads (rayon){limit}",
            self.inner.threads
        )
    }

    /// Bytes of table state currently held.
    pub fn allocated_bytes(&self) -> u64 {
        self.inner.memory.held()
    }

    /// The error for a host allocation of `bytes` that failed.
    pub(crate) fn allocation_failed(&self, bytes: u64) -> BackendError {
        BackendError::AllocationFailed {
            backend: BackendKind::Cpu,
            bytes,
        }
    }

    /// Accounts `bytes` more against the memory limit, or fails with nothing accounted.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<(), BackendError> {
        self.inner.memory.reserve(bytes)
    }

    /// Runs `f` on the device's worker pool.
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.inner.pool.install(f)
    }

    pub(crate) fn take_scratch(&self) -> KvScratch {
        self.inner
            .scratch
            .lock()
            .map(|mut v| v.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub(crate) fn release_scratch(&self) {
        if let Ok(mut pool) = self.inner.scratch.lock() {
            pool.clear();
        }
    }

    pub(crate) fn return_scratch(&self, scratch: KvScratch) {
        if let Ok(mut pool) = self.inner.scratch.lock() {
            pool.push(scratch);
        }
    }

    pub(crate) fn release(&self, bytes: u64) {
        self.inner.memory.release(bytes);
    }
}

impl TableBackend for CpuDevice {
    type Shards = CpuShards;

    fn create_shards(&self, config: &TableConfig) -> Result<CpuShards, TableError> {
        let slots = initial_slots(config.capacity, config.shards, config.max_load);
        let w = config.value_words();
        let bytes = shard_bytes(slots, w) * u64::from(config.shards);
        self.reserve(bytes)?;
        let shards: Option<Vec<CpuShard>> = self.inner.pool.install(|| {
            (0..config.shards)
                .into_par_iter()
                .map(|_| CpuShard::new(slots, w, config.max_load))
                .collect()
        });
        match shards {
            Some(shards) => Ok(CpuShards { shards }),
            None => {
                self.release(bytes);
                Err(self.allocation_failed(bytes).into())
            }
        }
    }

    fn apply(
        &self,
        shards: &mut CpuShards,
        config: &TableConfig,
        batch: &Batch,
        epoch: u64,
        results: &mut BatchResults,
    ) -> Result<(), TableError> {
        let shards = &mut shards.shards;
        // kv_apply enters the pool itself, only for batches worth the hand-off.
        Ok(kv::kv_apply(
            self,
            shards,
            config.max_load,
            batch,
            epoch,
            results,
        )?)
    }

    fn shard_stats(&self, shards: &CpuShards) -> Vec<ShardStats> {
        shards
            .shards
            .iter()
            .map(|s| ShardStats {
                items: s.items(),
                slots: s.slots(),
                ops: s.ops,
                resizes: s.resizes,
                link_halves: s.link_halves(),
            })
            .collect()
    }

    fn export_shard(
        &self,
        shards: &CpuShards,
        shard: usize,
        entry: &mut dyn FnMut(u64, &[u8]),
        link: &mut dyn FnMut(u64, u64, f32),
    ) -> Result<(), TableError> {
        shards.shards[shard].export(entry, link);
        Ok(())
    }

    fn try_clone_shards(&self, shards: &CpuShards) -> Result<CpuShards, TableError> {
        let bytes: u64 = shards.shards.iter().map(CpuShard::bytes).sum();
        self.reserve(bytes)?;
        let copy: Option<Vec<CpuShard>> = shards.shards.iter().map(CpuShard::try_clone).collect();
        match copy {
            Some(shards) => Ok(CpuShards { shards }),
            None => {
                self.release(bytes);
                Err(self.allocation_failed(bytes).into())
            }
        }
    }

    fn drop_shards(&self, shards: CpuShards) {
        self.release(shards.shards.iter().map(CpuShard::bytes).sum());
    }
}
