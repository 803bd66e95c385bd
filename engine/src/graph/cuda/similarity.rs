//! Similarity of queries to the embedded rows and the top-k choice of every query's seed
//! candidates on the CUDA device: the launch sequence of `super::super::gpu::similarity`.
#![allow(unsafe_code)]

use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::{FILE, Resident, THREADS, invocations};
use crate::backend::cuda::{Args, CudaDevice, DeviceBuffer, grid};
use crate::graph::Graph;
use crate::graph::device_order::{decode_top_k, give_back, take_fitting};
use crate::graph::error::GraphError;
use crate::graph::gpu::{MAX_DEVICE_K, TILE};

pub(super) const KERNELS: &[&str] = &["similarity", "topk_tiles"];

/// Threads of a `topk_tiles` block (graph.cu's `TOPK_GROUP`).
const TOPK_GROUP: u32 = 256;

/// `Sim` of graph.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct Sim {
    rows: u32,
    queries: u32,
    dim: u32,
    row_words: u32,
    row_base: u32,
    pad: [u32; 3],
}

/// `Topk` of graph.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct Topk {
    queries: u32,
    count: u32,
    k: u32,
    from_sims: u32,
    theta: f32,
    tiles: u32,
    pad: [u32; 2],
}

// SAFETY: plain `#[repr(C)]` values laid out as graph.cu's structs.
unsafe impl DeviceRepr for Sim {}
// SAFETY: as above.
unsafe impl DeviceRepr for Topk {}

/// Buffers of a similarity (and top-k) call, kept for the next call.
pub(super) struct SimWork {
    /// Capacity in (row, query) pairs.
    pairs: usize,
    queries: DeviceBuffer,
    query_floats: usize,
    sims: DeviceBuffer,
    /// Candidate lists, ping-pong between top-k rounds.
    cands: [DeviceBuffer; 2],
}

impl SimWork {
    fn new(dev: &CudaDevice, rows: usize, q: usize, dim: usize) -> Result<SimWork, GraphError> {
        let pairs = rows.max(1) * q;
        // A first round keeps at most k <= TILE / 2 of every tile of TILE candidates.
        let cand_bytes = (rows.div_ceil(TILE) * MAX_DEVICE_K * q * 8) as u64;
        Ok(SimWork {
            pairs,
            queries: dev.buffer("queries", (q * dim * 4) as u64)?,
            query_floats: q * dim,
            sims: dev.buffer("similarities", (pairs * 4) as u64)?,
            cands: [
                dev.buffer("top-k candidates", cand_bytes)?,
                dev.buffer("top-k candidates", cand_bytes)?,
            ],
        })
    }

    fn take(res: &Resident, rows: usize, q: usize, dim: usize) -> Result<SimWork, GraphError> {
        let fits = |w: &SimWork| w.pairs >= rows.max(1) * q && w.query_floats >= q * dim;
        match take_fitting(&res.sim_work, fits) {
            Some(w) => Ok(w),
            None => SimWork::new(&res.dev, rows, q, dim),
        }
    }
}

/// Queues the similarity launch of `q` queries into `work.sims`.
fn launch_similarities(
    graph: &Graph,
    res: &Resident,
    work: &SimWork,
    queries: &[f32],
    q: usize,
) -> Result<(), GraphError> {
    let dev = &res.dev;
    let rows = graph.emb.embedded.len();
    invocations("similarity", rows * q)?;
    let kernel = dev.function(FILE, "similarity")?;
    dev.write(&work.queries, 0, queries)?;
    let p = Sim {
        rows: rows as u32,
        queries: q as u32,
        dim: graph.dim() as u32,
        row_words: res.row_words,
        row_base: 0,
        pad: [0; 3],
    };
    let (r, qs, s) = (res.rows.ptr(), work.queries.ptr(), work.sims.ptr());
    let args = Args::new().arg(&p).arg(&r).arg(&qs).arg(&s);
    dev.launch(
        "launching similarity",
        &kernel,
        grid((rows * q) as u64, THREADS),
        args,
    )?;
    Ok(())
}

/// `out[j * q + i] = dot(query i, e[embedded[j]])`, computed on the device and read back
/// whole (for a `seeds_k` above [`MAX_DEVICE_K`]). Called through `Accel`, which sizes `out`
/// and handles no rows or no queries.
pub(crate) fn similarities(
    graph: &Graph,
    dev: &CudaDevice,
    queries: &[f32],
    q: usize,
    out: &mut [f32],
) -> Result<(), GraphError> {
    let rows = graph.emb.embedded.len();
    let res = graph.cuda_resident(dev)?;
    let work = SimWork::take(&res, rows, q, graph.dim())?;
    launch_similarities(graph, &res, &work, queries, q)?;
    let bytes = dev.finish(
        "reading similarities",
        &[(&work.sims, 0, (rows * q * 4) as u64)],
    )?;
    give_back(&res.sim_work, work);
    out.copy_from_slice(&bytemuck::pod_collect_to_vec::<u8, f32>(&bytes));
    Ok(())
}

/// Per query, its best `k` embedded nodes with sim >= `theta`, by sim descending (f32 total
/// order) then node ascending, best first. Called through `Accel`, which checks `k` (at
/// most [`MAX_DEVICE_K`]), clears `out` and handles no rows or no queries.
pub(crate) fn top_candidates(
    graph: &Graph,
    dev: &CudaDevice,
    queries: &[f32],
    q: usize,
    k: usize,
    theta: f32,
    out: &mut [Vec<(f32, u32)>],
) -> Result<(), GraphError> {
    let rows = graph.emb.embedded.len();
    // The grid's y dimension is the query (at most 65,535 blocks).
    if q > 65_535 || u32::try_from(rows.div_ceil(TILE)).is_err() {
        return Err(GraphError::Device(format!(
            "top-k over {rows} rows and {q} queries: at most 65,535 queries per launch"
        )));
    }
    let res = graph.cuda_resident(dev)?;
    let work = SimWork::take(&res, rows, q, graph.dim())?;
    let keys = run_top_k(graph, &res, &work, queries, q, k, theta)?;
    give_back(&res.sim_work, work);
    decode_top_k(&bytemuck::pod_collect_to_vec(&keys[..q * k * 8]), q, k, out);
    Ok(())
}

/// Similarity, then top-k rounds until one list of `k` per query is left, one
/// synchronisation; returns the final lists' bytes (`q × k` key pairs).
fn run_top_k(
    graph: &Graph,
    res: &Resident,
    work: &SimWork,
    queries: &[f32],
    q: usize,
    k: usize,
    theta: f32,
) -> Result<Vec<u8>, GraphError> {
    let dev = &res.dev;
    launch_similarities(graph, res, work, queries, q)?;
    let kernel = dev.function(FILE, "topk_tiles")?;
    let mut count = graph.emb.embedded.len();
    let mut round = 0;
    loop {
        let tiles = count.div_ceil(TILE);
        let p = Topk {
            queries: q as u32,
            count: count as u32,
            k: k as u32,
            from_sims: u32::from(round == 0),
            theta,
            tiles: tiles as u32,
            pad: [0; 2],
        };
        let input = work.cands[(round + 1) % 2].ptr();
        let output = work.cands[round % 2].ptr();
        let (sims, embedded) = (work.sims.ptr(), res.embedded.ptr());
        let cfg = LaunchConfig {
            grid_dim: (tiles as u32, q as u32, 1),
            block_dim: (TOPK_GROUP, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = Args::new()
            .arg(&p)
            .arg(&sims)
            .arg(&embedded)
            .arg(&input)
            .arg(&output);
        dev.launch("launching top-k", &kernel, cfg, args)?;
        count = tiles * k;
        if tiles == 1 {
            break;
        }
        round += 1;
    }
    let last = &work.cands[round % 2];
    Ok(dev.finish(
        "reading the top-k candidates",
        &[(last, 0, (q * k * 8) as u64)],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<Sim>(), 32);
        assert_eq!(std::mem::size_of::<Topk>(), 32);
    }
}
