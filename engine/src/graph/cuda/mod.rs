//! Graphs on the CUDA backend, with `kernels/graph.cu` (the siblings of `shaders/graph.wgsl`).
//!
//! The same algorithm as the wgpu backend (`super::gpu`), launch for dispatch: the CSR in
//! both directions and the embedding rows stay on the device; similarity and the top-k
//! rounds run there and only `queries × k` candidates come back; every hop is a pull over
//! every (node, lane) or, for a small frontier, a push (`mark_targets` then
//! `pull_touched`), chosen by the CPU backend's rule (`spread::hop_plan`) on the frontier
//! the device counted; per hop one synchronisation, reading back the frontier's size and
//! the lanes' alive flags; at the end only the activated nodes return.
//!
//! What differs from wgpu: no binding limit (the rows are one buffer), no bind groups (a
//! launch takes its parameters and a struct of buffer addresses), and pinned staging.
//!
//! Not yet run on a GPU (no session building it had one); `engine/tests/graph_cuda.rs`
//! checks it against the CPU backend wherever a CUDA device is present.

use std::sync::{Arc, Mutex};

use super::Graph;
use super::error::GraphError;
use crate::backend::cuda::{CudaDevice, DeviceBuffer};

mod hops;
mod similarity;

use hops::HopWork;
pub(crate) use hops::propagate;
use similarity::SimWork;
pub(crate) use similarity::{similarities, top_candidates};

const FILE: &str = "graph.cu";
/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;

/// The graph's state on one CUDA device.
pub(crate) struct Resident {
    dev: CudaDevice,
    /// In-edge offsets (n + 1), then out-edge offsets (n + 1).
    offsets: DeviceBuffer,
    in_sources: DeviceBuffer,
    in_weights: DeviceBuffer,
    out_targets: DeviceBuffer,
    /// Embedded rows in `embedded` order, f16 pairs packed in u32.
    rows: DeviceBuffer,
    row_words: u32,
    /// The node of each embedded row.
    embedded: DeviceBuffer,
    hop_work: Mutex<Vec<HopWork>>,
    sim_work: Mutex<Vec<SimWork>>,
}

impl Resident {
    fn upload(graph: &Graph, dev: &CudaDevice) -> Result<Resident, GraphError> {
        let d = graph.dim();
        let row_words = d.div_ceil(2);
        let mut rows = vec![0u32; graph.emb.embedded.len() * row_words];
        for (packed, &v) in rows
            .chunks_exact_mut(row_words.max(1))
            .zip(&graph.emb.embedded)
        {
            for (w, pair) in packed.iter_mut().zip(graph.emb.row(v).chunks(2)) {
                let lo = u32::from(pair[0].to_bits());
                let hi = pair.get(1).map_or(0, |h| u32::from(h.to_bits()));
                *w = lo | hi << 16;
            }
        }
        let offsets = [&graph.inc.offsets[..], &graph.out.offsets[..]].concat();
        let resident = Resident {
            dev: dev.clone(),
            offsets: dev.upload("edge offsets", &offsets)?,
            in_sources: dev.upload("in-edge sources", &graph.inc.nbrs)?,
            in_weights: dev.upload("in-edge weights", &graph.inc.weights)?,
            out_targets: dev.upload("out-edge targets", &graph.out.nbrs)?,
            rows: dev.upload("embedding rows", &rows)?,
            row_words: row_words as u32,
            embedded: dev.upload("embedded nodes", &graph.emb.embedded)?,
            hop_work: Mutex::new(Vec::new()),
            sim_work: Mutex::new(Vec::new()),
        };
        dev.synchronize("uploading a graph")?;
        Ok(resident)
    }
}

impl Graph {
    /// The graph's buffers on `dev`, uploaded on first use.
    fn cuda_resident(&self, dev: &CudaDevice) -> Result<Arc<Resident>, GraphError> {
        let mut slot = self.cuda.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.as_ref().filter(|r| r.dev.same_as(dev)) {
            return Ok(Arc::clone(r));
        }
        let r = Arc::new(Resident::upload(self, dev)?);
        *slot = Some(Arc::clone(&r));
        Ok(r)
    }
}

/// Uploads the graph and compiles (or loads from the PTX cache) its kernels, so that no
/// later call pays for them.
pub(crate) fn prepare(graph: &Graph, dev: &CudaDevice) -> Result<(), GraphError> {
    graph.cuda_resident(dev)?;
    for name in hops::KERNELS.iter().chain(similarity::KERNELS) {
        dev.function(FILE, name)?;
    }
    Ok(())
}

/// `count` invocations as a u32 (the kernels index with 32 bits), or the error.
fn invocations(what: &str, count: usize) -> Result<u32, GraphError> {
    u32::try_from(count).map_err(|_| {
        GraphError::Device(format!(
            "{what}: {count} invocations is more than one launch indexes (2^32)"
        ))
    })
}
