//! Graphs on the wgpu backend: the graph's in-edge CSR and embeddings resident on the device
//! (uploaded on first use, kept with the graph), similarity as one dispatch over every
//! (embedded row, query) pair, and spreading as one pull dispatch per hop over every
//! (node, lane), with `shaders/graph.wgsl`.
//!
//! The host keeps what is cheap and sequential: seeding, the per-hop budget gate, top-k seed
//! selection, scoring and ranking (the same code as the CPU backend, in `recall.rs` and
//! `result.rs`). Per hop the host reads back one flag per lane (is Δk non-zero?), which it
//! needs anyway for early stop and for the budget; `a` and `first_hop` come back once at the
//! end.
//!
//! Results agree with the CPU backend within SPEC tolerance, not bit for bit: the sums are
//! in the same order, but a shader compiler may fuse a multiply and an add.

use std::sync::Arc;

use super::Graph;
use super::error::GraphError;
use super::params::{MAX_HOPS, Seed, SpreadParams, Tier};
use super::spread::{HopGate, HopMethod, HopPlan, NoGate, Outcome, Scratch, UNSET};
use crate::backend::wgpu::{Readback, WgpuDevice, storage_buffer, uniform_buffer};
use crate::error::BackendError;

const SHADER: &str = include_str!("../../../shaders/graph.wgsl");
const WORKGROUP: u32 = 64;

/// The graph's state on one wgpu device.
pub(crate) struct Resident {
    gpu: WgpuDevice,
    in_offsets: wgpu::Buffer,
    in_sources: wgpu::Buffer,
    in_weights: wgpu::Buffer,
    /// Embedded rows, compacted in `embedded` order, f16 pairs packed in u32.
    rows: wgpu::Buffer,
    row_words: u32,
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
    fn upload(graph: &Graph, gpu: &WgpuDevice) -> Result<Resident, GraphError> {
        let inc = &graph.inc;
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
        Ok(Resident {
            gpu: gpu.clone(),
            in_offsets: storage_buffer(gpu, "in_offsets", bytes_of(&inc.offsets))?,
            in_sources: storage_buffer(gpu, "in_sources", bytes_of(&inc.nbrs))?,
            in_weights: storage_buffer(gpu, "in_weights", bytes_of(&inc.weights))?,
            rows: storage_buffer(gpu, "embedding rows", bytes_of(&rows))?,
            row_words: row_words as u32,
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
        let r = Arc::new(Resident::upload(self, gpu)?);
        *slot = Some(Arc::clone(&r));
        Ok(r)
    }
}

/// Uploads the graph and builds the pipelines on `gpu`, so that no later call pays for them
/// (a recall's latency budget would otherwise count the first call's shader compilation).
/// Drivers may finish compiling a pipeline only at its first dispatch (llvmpipe does), so
/// both kernels run once here, on an empty query and an empty seed list.
pub(crate) fn prepare(graph: &Graph, gpu: &WgpuDevice) -> Result<(), GraphError> {
    graph.resident(gpu)?;
    if graph.dim() > 0 {
        let mut sims = Vec::new();
        similarities(graph, gpu, &vec![0.0; graph.dim()], 1, &mut sims)?;
    }
    let params = SpreadParams {
        max_hops: 1,
        ..SpreadParams::default()
    };
    let mut scratch = Scratch::default();
    propagate(graph, gpu, &mut scratch, 1, &|_| &[], &params, &mut NoGate)?;
    Ok(())
}

/// `(x, y)` workgroups covering `invocations` (y > 1 past the per-dimension limit).
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

/// `count × 4` bytes as a u32 count that fits a dispatch, or the error naming the limit.
fn invocations(what: &str, count: usize) -> Result<u32, GraphError> {
    u32::try_from(count).map_err(|_| {
        GraphError::Device(format!(
            "{what}: {count} invocations is more than one wgpu dispatch covers (2^32)"
        ))
    })
}

/// `out[j * q + i] = dot(query i, e[embedded[j]])`: the similarity matrix of CPU
/// `Embeddings::similarities`, computed on the device.
pub(crate) fn similarities(
    graph: &Graph,
    gpu: &WgpuDevice,
    queries: &[f32],
    q: usize,
    out: &mut Vec<f32>,
) -> Result<(), GraphError> {
    let rows = graph.emb.embedded.len();
    out.clear();
    out.resize(rows * q, 0.0);
    if rows == 0 || q == 0 {
        return Ok(());
    }
    let res = graph.resident(gpu)?;
    let total = invocations("similarity", rows * q)?;
    let pipeline = gpu.pipeline("graph_similarity", SHADER, "similarity")?;
    let params = [rows as u32, q as u32, graph.dim() as u32, res.row_words];
    let uniform = uniform_buffer(gpu, "similarity params", bytes_of(&params))?;
    let query_buf = storage_buffer(gpu, "queries", bytes_of(queries))?;
    let sims = storage_buffer(gpu, "similarities", bytes_of(out))?;
    let (x, y) = workgroups(gpu, total);
    let mut encoder = gpu
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
    gpu.scoped("dispatching similarity", || {
        let group = gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("similarity"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                entry(10, &uniform),
                entry(11, &res.rows),
                entry(12, &query_buf),
                entry(13, &sims),
            ],
        });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    })?;
    gpu.submit_and_wait("similarity", encoder)?;
    let bytes = Readback::default().read(gpu, &sims, (out.len() * 4) as u64)?;
    out.copy_from_slice(bytemuck::cast_slice(&bytes));
    Ok(())
}

/// The constants of one hop, laid out as `Hop` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct HopUniform {
    nodes: u32,
    lanes: u32,
    hop: u32,
    refractory: u32,
    dk: f32,
    theta: f32,
    pad: [u32; 2],
}

/// SPEC §2.2 for `lanes` seed lists at once on the device, every hop by pull. Leaves `a`,
/// `first_hop`, `hops_done` and `stopped` in `scratch` exactly as `spread::propagate` does.
pub(crate) fn propagate<'s>(
    graph: &Graph,
    gpu: &WgpuDevice,
    scratch: &mut Scratch,
    lanes: usize,
    seeds: &dyn Fn(usize) -> &'s [Seed],
    params: &SpreadParams,
    gate: &mut dyn HopGate,
) -> Result<Outcome, GraphError> {
    let n = graph.node_count();
    let res = graph.resident(gpu)?;
    let total = invocations("spread", n * lanes)?;
    scratch.prepare(n, lanes);
    // Seeding on the host (SPEC §2.2: in order, clamped at 1), into a and Δ0.
    let hot = params.threshold(Tier::Hot);
    let mut cur = vec![0.0f32; n * lanes];
    let mut first: Vec<u32> = vec![u32::from(UNSET); n * lanes];
    for q in 0..lanes {
        for s in seeds(q) {
            if s.a0 >= hot {
                let i = s.node as usize * lanes + q;
                scratch.a[i] = (scratch.a[i] + s.a0).min(1.0);
            }
        }
    }
    for (i, &a) in scratch.a.iter().enumerate() {
        if a > 0.0 {
            cur[i] = a;
            first[i] = 0;
        }
    }
    let pipeline = gpu.pipeline("graph_pull_hop", SHADER, "pull_hop")?;
    let uniform = uniform_buffer(gpu, "hop params", bytes_of(&[0u32; 8]))?;
    let bufs = [
        storage_buffer(gpu, "delta a", bytes_of(&cur))?,
        storage_buffer(gpu, "delta b", bytes_of(&vec![0.0f32; n * lanes]))?,
    ];
    let act = storage_buffer(gpu, "activation", bytes_of(&scratch.a))?;
    let first_hop = storage_buffer(gpu, "first hop", bytes_of(&first))?;
    let alive = storage_buffer(gpu, "alive", bytes_of(&vec![0u32; lanes]))?;
    let layout = pipeline.get_bind_group_layout(0);
    let groups: Vec<wgpu::BindGroup> = (0..2)
        .map(|k| {
            gpu.scoped("creating the hop bind groups", || {
                gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("pull hop"),
                    layout: &layout,
                    entries: &[
                        entry(0, &uniform),
                        entry(1, &res.in_offsets),
                        entry(2, &res.in_sources),
                        entry(3, &res.in_weights),
                        entry(4, &bufs[k]),
                        entry(5, &bufs[1 - k]),
                        entry(6, &act),
                        entry(7, &first_hop),
                        entry(8, &alive),
                    ],
                })
            })
        })
        .collect::<Result<_, _>>()?;
    let (x, y) = workgroups(gpu, total);
    let mut readback = Readback::default();
    let zeros = vec![0u32; lanes];
    let mut outcome = Outcome { partial: false };
    for k in 1..=params.max_hops.min(MAX_HOPS) {
        let plan = HopPlan {
            hop: k,
            method: HopMethod::Pull,
            edges: graph.edge_count() as u64 * lanes as u64,
            nodes: (n * lanes) as u64,
        };
        if !gate.before_hop(&plan) {
            outcome.partial = true;
            break;
        }
        let consts = HopUniform {
            nodes: n as u32,
            lanes: lanes as u32,
            hop: k,
            refractory: u32::from(params.refractory),
            dk: params.decay.factor(k),
            theta: params.threshold(Tier::of_hop(k)),
            pad: [0; 2],
        };
        gpu.queue()
            .write_buffer(&uniform, 0, bytemuck::bytes_of(&consts));
        gpu.queue().write_buffer(&alive, 0, bytes_of(&zeros));
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        gpu.scoped("dispatching a spreading hop", || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &groups[(k as usize - 1) % 2], &[]);
            pass.dispatch_workgroups(x, y, 1);
        })?;
        gpu.submit_and_wait("spreading hop", encoder)?;
        let flags = readback.read(gpu, &alive, (lanes * 4) as u64)?;
        let flags: &[u32] = bytemuck::cast_slice(&flags[..lanes * 4]);
        gate.after_hop(&plan);
        let mut running = false;
        for (q, &flag) in flags.iter().enumerate() {
            if scratch.stopped[q] {
                continue;
            }
            scratch.hops_done[q] = k;
            scratch.stopped[q] = flag == 0;
            running |= flag != 0;
        }
        if !running {
            break;
        }
    }
    let bytes = readback.read(gpu, &act, (n * lanes * 4) as u64)?;
    scratch
        .a
        .copy_from_slice(bytemuck::cast_slice(&bytes[..n * lanes * 4]));
    let bytes = readback.read(gpu, &first_hop, (n * lanes * 4) as u64)?;
    let first: &[u32] = bytemuck::cast_slice(&bytes[..n * lanes * 4]);
    for (dst, &f) in scratch.first_hop.iter_mut().zip(first) {
        *dst = f as u8;
    }
    Ok(outcome)
}
