//! Graphs on the wgpu backend, with `shaders/graph.wgsl`.
//!
//! - The graph's CSR in both directions and its embeddings stay on the device (uploaded on
//!   first use, kept with the graph); the embedding rows are uploaded in chunks so that no
//!   binding passes the adapter's limit.
//! - Similarity is one dispatch per row chunk over every (row, query) pair; the top-k seed
//!   candidates of every query are then chosen on the device (`topk_tiles` rounds), so only
//!   `queries × k` candidates come back.
//! - Spreading runs every hop on the device: a pull over every (node, lane), or for a small
//!   frontier a push that marks the frontier's out-neighbours and pulls only those (same
//!   bits: see the shader). The choice is the CPU backend's rule (`spread::hop_plan`) on the
//!   frontier size the previous hop counted on the device. Per hop one submit, and one small
//!   read-back: the frontier's size and one flag per lane, which early stop and the latency
//!   budget need anyway. At the end only the activated nodes' `a` and `first_hop` return.
//! - Working buffers (Δ, state, node lists) are kept per graph and reused by later calls.
//!
//! The host keeps what is cheap and sequential: seeding, the per-hop budget gate, scoring
//! and ranking (the CPU backend's code, in `recall.rs` and `result.rs`).
//!
//! Results agree with the CPU backend within SPEC tolerance, not bit for bit: the sums are
//! in the same order, but a shader compiler may fuse a multiply and an add.

use std::sync::{Arc, Mutex};

use super::Graph;
use super::error::GraphError;
use super::params::{Evaluation, Seed, SpreadParams};
use super::spread::{NoGate, Scratch};
use crate::backend::wgpu::{WgpuDevice, storage_buffer};
use crate::error::BackendError;

mod hops;
mod similarity;

use hops::HopWork;
pub(crate) use hops::propagate;
use similarity::SimWork;
pub(crate) use similarity::{MAX_DEVICE_K, TILE, similarities, top_candidates};

const SHADER: &str = include_str!("../../../../shaders/graph.wgsl");
const WORKGROUP: u32 = 64;
/// Most in- or out-edges of one node on a CPU adapter: llvmpipe stops every loop of a shader
/// invocation after 65,535 iterations in total, and a hop loops over one node's edges.
const CPU_ADAPTER_MAX_DEGREE: u32 = 65_000;
/// The graph's state on one wgpu device.
pub(crate) struct Resident {
    gpu: WgpuDevice,
    /// In-edge offsets (n + 1), then out-edge offsets (n + 1).
    offsets: wgpu::Buffer,
    in_sources: wgpu::Buffer,
    in_weights: wgpu::Buffer,
    out_targets: wgpu::Buffer,
    /// Embedded rows in `embedded` order, f16 pairs packed in u32, in chunks of
    /// `chunk_rows` rows (each within the binding limit).
    row_chunks: Vec<wgpu::Buffer>,
    chunk_rows: usize,
    row_words: u32,
    /// The node of each embedded row.
    embedded: wgpu::Buffer,
    /// Spreading buffers of finished calls, for the next ones.
    hop_work: Mutex<Vec<HopWork>>,
    /// Similarity and top-k buffers of finished calls.
    sim_work: Mutex<Vec<SimWork>>,
}

impl From<BackendError> for GraphError {
    fn from(e: BackendError) -> Self {
        GraphError::Device(e.to_string())
    }
}

fn bytes_of<T: bytemuck::Pod>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

impl Resident {
    /// Uploads `graph`, its embedding rows in chunks of at most `chunk_bytes` (the
    /// adapter's binding limit; tests pass less).
    fn upload(graph: &Graph, gpu: &WgpuDevice, chunk_bytes: u64) -> Result<Resident, GraphError> {
        if gpu.is_cpu_adapter() {
            let most = |offsets: &[u32]| offsets.windows(2).map(|w| w[1] - w[0]).max();
            let degree = most(&graph.inc.offsets).max(most(&graph.out.offsets));
            if degree.is_some_and(|d| d > CPU_ADAPTER_MAX_DEGREE) {
                return Err(GraphError::Device(format!(
                    "a node has {} edges; a software Vulkan adapter (lavapipe) ends any shader \
                     loop after 65,535 iterations, so graphs with a node of more than {} in- or \
                     out-edges run on a GPU or on --backend cpu",
                    degree.unwrap_or(0),
                    CPU_ADAPTER_MAX_DEGREE
                )));
            }
        }
        let d = graph.dim();
        let row_words = d.div_ceil(2);
        let limit = chunk_bytes;
        let chunk_rows = ((limit / 4) as usize / row_words.max(1)).max(1);
        let mut row_chunks = Vec::new();
        for (c, nodes) in graph.emb.embedded.chunks(chunk_rows).enumerate() {
            let mut rows = vec![0u32; nodes.len() * row_words];
            for (packed, &v) in rows.chunks_exact_mut(row_words.max(1)).zip(nodes) {
                for (w, pair) in packed.iter_mut().zip(graph.emb.row(v).chunks(2)) {
                    let lo = u32::from(pair[0].to_bits());
                    let hi = pair.get(1).map_or(0, |h| u32::from(h.to_bits()));
                    *w = lo | hi << 16;
                }
            }
            let label = format!("embedding rows, chunk {c}");
            row_chunks.push(storage_buffer(gpu, &label, bytes_of(&rows))?);
        }
        let offsets = [&graph.inc.offsets[..], &graph.out.offsets[..]].concat();
        Ok(Resident {
            gpu: gpu.clone(),
            offsets: storage_buffer(gpu, "edge offsets", bytes_of(&offsets))?,
            in_sources: storage_buffer(gpu, "in-edge sources", bytes_of(&graph.inc.nbrs))?,
            in_weights: storage_buffer(gpu, "in-edge weights", bytes_of(&graph.inc.weights))?,
            out_targets: storage_buffer(gpu, "out-edge targets", bytes_of(&graph.out.nbrs))?,
            row_chunks,
            chunk_rows,
            row_words: row_words as u32,
            embedded: storage_buffer(gpu, "embedded nodes", bytes_of(&graph.emb.embedded))?,
            hop_work: Mutex::new(Vec::new()),
            sim_work: Mutex::new(Vec::new()),
        })
    }
}

impl Graph {
    /// The graph's buffers on `gpu`, uploaded on first use.
    fn resident(&self, gpu: &WgpuDevice) -> Result<Arc<Resident>, GraphError> {
        let mut slot = self.gpu.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.as_ref().filter(|r| r.gpu.same_as(gpu)) {
            return Ok(Arc::clone(r));
        }
        let limits = gpu.limits();
        let chunk_bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let r = Arc::new(Resident::upload(self, gpu, chunk_bytes)?);
        *slot = Some(Arc::clone(&r));
        Ok(r)
    }
}

/// Uploads the graph and builds the pipelines on `gpu`, so that no later call pays for them
/// (a recall's latency budget would otherwise count the first call's shader compilation).
/// Drivers may finish compiling a pipeline only at its first dispatch (llvmpipe does), so
/// every kernel runs once here: a similarity with top-k, and a one-seed spread by pull and
/// by push.
pub(crate) fn prepare(graph: &Graph, gpu: &WgpuDevice) -> Result<(), GraphError> {
    graph.resident(gpu)?;
    if graph.dim() > 0 {
        let mut top = Vec::new();
        let dev = crate::graph::accel::Accel::Wgpu(gpu);
        dev.top_candidates(graph, &vec![0.0; graph.dim()], 1, 1, 0.0, &mut top)?;
    }
    if graph.node_count() == 0 {
        return Ok(());
    }
    let seed = [Seed::new(0, 1.0)];
    for evaluation in [Evaluation::Pull, Evaluation::Push] {
        let params = SpreadParams {
            max_hops: 1,
            evaluation,
            ..SpreadParams::default()
        };
        let mut scratch = Scratch::default();
        propagate(
            graph,
            gpu,
            &mut scratch,
            1,
            &|_| &seed,
            &params,
            &mut NoGate,
        )?;
    }
    Ok(())
}

/// `(x, y)` workgroups of `size` covering `invocations` (y > 1 past the per-dimension limit).
fn workgroups(gpu: &WgpuDevice, invocations: u32) -> (u32, u32) {
    let groups = invocations.div_ceil(WORKGROUP).max(1);
    let max = gpu.limits().max_compute_workgroups_per_dimension.max(1);
    if groups <= max {
        (groups, 1)
    } else {
        (max, groups.div_ceil(max))
    }
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// `count` invocations as a u32 that fits a dispatch, or the error naming the limit.
fn invocations(what: &str, count: usize) -> Result<u32, GraphError> {
    u32::try_from(count).map_err(|_| {
        GraphError::Device(format!(
            "{what}: {count} invocations is more than one wgpu dispatch covers (2^32)"
        ))
    })
}

fn bind_group(
    gpu: &WgpuDevice,
    pipeline: &wgpu::ComputePipeline,
    label: &str,
    entries: &[wgpu::BindGroupEntry<'_>],
) -> Result<wgpu::BindGroup, GraphError> {
    Ok(gpu.scoped(&format!("creating the {label} bind group"), || {
        gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries,
        })
    })?)
}

/// Records one dispatch of `pipeline` over `count` invocations (64 per workgroup).
fn dispatch(
    gpu: &WgpuDevice,
    encoder: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    group: &wgpu::BindGroup,
    count: u32,
) {
    let (x, y) = workgroups(gpu, count);
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, group, &[]);
    pass.dispatch_workgroups(x, y, 1);
}

fn encoder(gpu: &WgpuDevice) -> wgpu::CommandEncoder {
    gpu.device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
}
