//! Activation graphs (SPEC §2): weighted semantic graphs with spreading activation and
//! similarity-seeded recall.
//!
//! [`Graph`] holds one graph in host memory in the flat layout a device backend uploads:
//! CSR out-edges and their transpose (in-edges, for pull) with effective weights `w'`, node
//! kinds, labels and f16 embeddings. It is built from `nodes.tsv` / `edges.tsv` / `.npy`
//! ([`Graph::from_tsv`]) or in memory ([`GraphBuilder`]), and saved to / loaded from a
//! `.wgraph` file ([`Graph::save`], [`Graph::load`]). Operations run on a [`Device`]:
//! [`Graph::spread`], [`Graph::recall`], [`Graph::recall_batch`].
//!
//! Module map: `config` (kinds, multipliers), `build` (validation, CSR, transpose), `tsv`
//! and `npy` (input files), `wgraph` (the binary format), `embed` (normalisation, f16,
//! similarity), `params` (spread and recall parameters), `spread` (the propagation engine),
//! `recall`, `budget` (clock and latency predictor), `result`, `generate` (seeded graphs).

mod accel;
mod budget;
mod build;
mod config;
mod cuda;
mod device_order;
mod embed;
mod error;
pub mod generate;
mod gpu;
pub mod npy;
mod params;
mod recall;
mod result;
mod spread;
mod tsv;
mod wgraph;

pub use budget::{
    Clock, ERROR_BUCKET_BOUNDS, LatencyPredictor, ManualClock, PredictorStats, SystemClock,
};
pub use build::GraphBuilder;
pub use config::{GraphConfig, Multipliers, NodeKind};
pub use embed::{MAX_DIM, dot};
pub use error::GraphError;
pub use npy::{NpyDtype, NpyMatrix};
pub use params::{
    Decay, Evaluation, MAX_HOPS, MAX_K, RecallMode, RecallParams, Seed, SpreadParams, Tier,
};
pub use recall::{LANE_MEMORY, MAX_LANES};
pub use result::{RecallHit, RecallResult, SpreadHit, SpreadResult};
pub use spread::{HopMethod, HopPlan};
pub use wgraph::{WGRAPH_MAGIC, WGRAPH_VERSION};

use std::path::Path;
use std::sync::{Arc, Mutex};

use half::f16;

use crate::backend::Device;
use embed::Embeddings;
use spread::{NoGate, Scratch};

/// Largest node count (SPEC §2.1: N <= 2^31).
pub const MAX_NODES: usize = 1 << 31;
/// Largest edge count: CSR offsets are u32 on every backend (SPEC §0).
pub const MAX_EDGES: usize = u32::MAX as usize;

/// A compressed sparse row adjacency: row `u` is `nbrs[offsets[u]..offsets[u+1]]` with the
/// matching `weights` (effective weights `w'`).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Csr {
    pub offsets: Vec<u32>,
    pub nbrs: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Csr {
    #[inline]
    pub fn row(&self, u: u32) -> (&[u32], &[f32]) {
        let lo = self.offsets[u as usize] as usize;
        let hi = self.offsets[u as usize + 1] as usize;
        (&self.nbrs[lo..hi], &self.weights[lo..hi])
    }

    #[inline]
    pub fn degree(&self, u: u32) -> u32 {
        self.offsets[u as usize + 1] - self.offsets[u as usize]
    }

    /// The transpose: row `v` lists the sources `u` of edges `u -> v` in ascending order
    /// (a stable counting sort over rows taken in ascending order).
    pub fn transpose(&self, nodes: usize) -> Csr {
        let mut counts = vec![0u32; nodes + 1];
        for &v in &self.nbrs {
            counts[v as usize + 1] += 1;
        }
        for i in 0..nodes {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut cursor = counts;
        let mut nbrs = vec![0u32; self.nbrs.len()];
        let mut weights = vec![0.0f32; self.nbrs.len()];
        for u in 0..nodes {
            let (targets, ws) = self.row(u as u32);
            for (&v, &w) in targets.iter().zip(ws) {
                let at = cursor[v as usize] as usize;
                nbrs[at] = u as u32;
                weights[at] = w;
                cursor[v as usize] += 1;
            }
        }
        Csr {
            offsets,
            nbrs,
            weights,
        }
    }
}

/// Reusable buffers of spread and recall calls.
#[derive(Debug, Default)]
pub(crate) struct Work {
    pub spread: Scratch,
    pub recall: recall::RecallBufs,
}

/// One activation graph in host memory (SPEC §2.1). Immutable once built; share it with
/// `Arc` to run calls from many threads (each call takes its own working buffers).
pub struct Graph {
    config: GraphConfig,
    kinds: Vec<NodeKind>,
    labels: Vec<Option<Arc<str>>>,
    pub(crate) out: Csr,
    pub(crate) inc: Csr,
    pub(crate) emb: Embeddings,
    work: Mutex<Vec<Work>>,
    /// The graph's buffers on the wgpu device it last ran on.
    gpu: Mutex<Option<Arc<gpu::Resident>>>,
    /// The graph's buffers on the CUDA device it last ran on.
    cuda: Mutex<Option<Arc<cuda::Resident>>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.node_count())
            .field("edges", &self.edge_count())
            .field("dim", &self.dim())
            .field("embedded", &self.embedded_count())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Graph {
    pub(crate) fn from_parts(
        config: GraphConfig,
        kinds: Vec<NodeKind>,
        labels: Vec<Option<Arc<str>>>,
        out: Csr,
        emb: Embeddings,
    ) -> Graph {
        let inc = out.transpose(kinds.len());
        Graph {
            config,
            kinds,
            labels,
            out,
            inc,
            emb,
            work: Mutex::new(Vec::new()),
            gpu: Mutex::new(None),
            cuda: Mutex::new(None),
        }
    }

    /// Builds a graph from `nodes.tsv`, `edges.tsv` and optionally a `.npy` of embeddings
    /// (SPEC §5). Every error names the file, line and field.
    pub fn from_tsv(
        nodes: &Path,
        edges: &Path,
        embeddings: Option<&Path>,
        config: &GraphConfig,
    ) -> Result<Graph, GraphError> {
        build::from_files(nodes, edges, embeddings, config)
    }

    /// Writes the graph to a `.wgraph` file (written to a temporary name, then renamed).
    pub fn save(&self, path: &Path) -> Result<(), GraphError> {
        wgraph::save(self, path)
    }

    /// Reads a `.wgraph` file in one pass, checking its header and checksums.
    pub fn load(path: &Path) -> Result<Graph, GraphError> {
        wgraph::load(path)
    }

    /// The settings the effective weights were built with.
    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// Number of nodes; ids are `0..node_count()`.
    pub fn node_count(&self) -> usize {
        self.kinds.len()
    }

    /// Directed edges after merging duplicates.
    pub fn edge_count(&self) -> usize {
        self.out.nbrs.len()
    }

    /// Embedding dimension (0 when the graph has no embeddings).
    pub fn dim(&self) -> usize {
        self.emb.dim
    }

    /// Nodes that have an embedding (a non-zero row).
    pub fn embedded_count(&self) -> usize {
        self.emb.embedded.len()
    }

    /// # Panics
    /// If `v` is not a node.
    pub fn kind(&self, v: u32) -> NodeKind {
        self.kinds[v as usize]
    }

    /// # Panics
    /// If `v` is not a node.
    pub fn label(&self, v: u32) -> Option<&str> {
        self.labels[v as usize].as_deref()
    }

    /// The node with this label, the lowest id if several share it (a linear scan).
    pub fn find_label(&self, label: &str) -> Option<u32> {
        self.labels
            .iter()
            .position(|l| l.as_deref() == Some(label))
            .map(|v| v as u32)
    }

    pub(crate) fn label_arc(&self, v: u32) -> Option<Arc<str>> {
        self.labels[v as usize].clone()
    }

    /// The stored (normalised, f16) embedding of `v`, `None` when it has none.
    ///
    /// # Panics
    /// If `v` is not a node.
    pub fn embedding(&self, v: u32) -> Option<&[f16]> {
        assert!((v as usize) < self.node_count(), "node {v} out of range");
        if self.emb.dim == 0 || self.emb.embedded.binary_search(&v).is_err() {
            return None;
        }
        Some(self.emb.row(v))
    }

    /// Out-edges of `u`: targets in ascending order and their effective weights `w'`.
    ///
    /// # Panics
    /// If `u` is not a node.
    pub fn out_edges(&self, u: u32) -> (&[u32], &[f32]) {
        self.out.row(u)
    }

    /// In-edges of `v`: sources in ascending order and their effective weights `w'`.
    ///
    /// # Panics
    /// If `v` is not a node.
    pub fn in_edges(&self, v: u32) -> (&[u32], &[f32]) {
        self.inc.row(v)
    }

    /// Spreads activation from `seeds` (SPEC §2.2) on `device`. Returns every node with
    /// activation > 0, by activation descending then node ascending.
    pub fn spread(
        &self,
        device: &Device,
        seeds: &[Seed],
        params: &SpreadParams,
    ) -> Result<SpreadResult, GraphError> {
        params.validate()?;
        params::validate_seeds(seeds, self.node_count())?;
        let _span = tracing::debug_span!("graph_spread", seeds = seeds.len()).entered();
        let mut work = self.take_work();
        let result = on_device(device, |threads| {
            let s = &mut work.spread;
            match accel::Accel::of(device) {
                Some(a) => {
                    a.propagate(self, s, 1, &|_| seeds, params, &mut NoGate)?;
                }
                None => {
                    spread::propagate(self, s, 1, &|_| seeds, params, threads, &mut NoGate);
                }
            }
            let result = result::spread_result(self, s, params);
            s.reset();
            Ok(result)
        });
        self.return_work(work);
        result
    }

    /// Readies `device` for this graph: on a GPU backend, uploads the graph and builds the
    /// pipelines now rather than in the first call (whose latency budget would count them);
    /// nothing to do on the CPU.
    pub fn prepare(&self, device: &Device) -> Result<(), GraphError> {
        match accel::Accel::of(device) {
            Some(a) => a.prepare(self),
            None => Ok(()),
        }
    }

    pub(crate) fn take_work(&self) -> Work {
        self.work
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default()
    }

    pub(crate) fn return_work(&self, work: Work) {
        if let Ok(mut pool) = self.work.lock() {
            pool.push(work);
        }
    }

    /// Frees the working buffers kept between calls (sized by the largest batch seen).
    pub fn release_buffers(&self) {
        if let Ok(mut pool) = self.work.lock() {
            pool.clear();
        }
    }
}

/// Runs `f(threads)` on the device's workers.
///
/// Graph operations take the [`Device`] per call, as tables take it at creation: the CPU
/// backend's rayon pool is the device's, so graph work never runs on (or competes with) a
/// caller's own pool, `--threads` applies to it, and a test picks the thread count by
/// opening a device with it.
pub(crate) fn on_device<R: Send>(device: &Device, f: impl FnOnce(usize) -> R + Send) -> R {
    match device {
        Device::Cpu(d) => {
            let threads = d.threads();
            d.install(move || f(threads))
        }
        // The host-side parts of GPU work run on the global pool.
        Device::Wgpu(_) | Device::Cuda(_) => f(rayon::current_num_threads()),
    }
}
