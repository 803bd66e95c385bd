//! Similarity of queries to the embedded rows (one dispatch per row chunk) and the top-k
//! choice of every query's seed candidates on the device (`topk_tiles` rounds).

use super::{Resident, SHADER, bind_group, bytes_of, dispatch, encoder, entry, invocations};
use crate::backend::wgpu::{Readback, WgpuDevice, uniform_buffer, zeroed_storage_buffer};
use crate::graph::Graph;
use crate::graph::device_order::{decode_top_k, give_back, take_fitting};
use crate::graph::error::GraphError;

/// Candidates one `topk_tiles` workgroup sorts (the shader's `TILE`).
pub(crate) const TILE: usize = 1024;
/// The largest k the device selects; a larger `seeds_k` selects on the host.
pub(crate) const MAX_DEVICE_K: usize = TILE / 2;

/// The constants of a similarity dispatch, laid out as `Sim` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SimUniform {
    rows: u32,
    queries: u32,
    dim: u32,
    row_words: u32,
    row_base: u32,
    pad: [u32; 3],
}

/// The constants of one top-k round, laid out as `Topk` in the shader.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TopkUniform {
    queries: u32,
    count: u32,
    k: u32,
    from_sims: u32,
    theta: f32,
    tiles: u32,
    pad: [u32; 2],
}

/// Buffers of a similarity (and top-k) call, kept for the next call.
pub(super) struct SimWork {
    /// Capacity in (row, query) pairs.
    pairs: usize,
    queries: wgpu::Buffer,
    query_floats: usize,
    sims: wgpu::Buffer,
    /// Candidate lists, ping-pong between top-k rounds.
    cands: [wgpu::Buffer; 2],
    /// One uniform buffer per row chunk (similarity) and per top-k round.
    sim_uniforms: Vec<wgpu::Buffer>,
    topk_uniforms: Vec<wgpu::Buffer>,
    readback: Readback,
}

impl SimWork {
    fn new(gpu: &WgpuDevice, rows: usize, q: usize, dim: usize) -> Result<SimWork, GraphError> {
        let pairs = rows.max(1) * q;
        // A first round keeps at most k <= TILE / 2 of every tile of TILE candidates.
        let cand_bytes = (rows.div_ceil(TILE) * MAX_DEVICE_K * q * 8) as u64;
        Ok(SimWork {
            pairs,
            queries: zeroed_storage_buffer(gpu, "queries", (q * dim * 4) as u64)?,
            query_floats: q * dim,
            sims: zeroed_storage_buffer(gpu, "similarities", (pairs * 4) as u64)?,
            cands: [
                zeroed_storage_buffer(gpu, "top-k candidates", cand_bytes)?,
                zeroed_storage_buffer(gpu, "top-k candidates", cand_bytes)?,
            ],
            sim_uniforms: Vec::new(),
            topk_uniforms: Vec::new(),
            readback: Readback::default(),
        })
    }

    fn take(res: &Resident, rows: usize, q: usize, dim: usize) -> Result<SimWork, GraphError> {
        let fits = |w: &SimWork| w.pairs >= rows.max(1) * q && w.query_floats >= q * dim;
        match take_fitting(&res.sim_work, fits) {
            Some(w) => Ok(w),
            None => SimWork::new(&res.gpu, rows, q, dim),
        }
    }

    fn uniform(
        list: &mut Vec<wgpu::Buffer>,
        gpu: &WgpuDevice,
        i: usize,
        contents: &[u8],
    ) -> Result<(), GraphError> {
        while list.len() <= i {
            list.push(uniform_buffer(gpu, "graph params", contents)?);
        }
        gpu.queue().write_buffer(&list[i], 0, contents);
        Ok(())
    }
}

/// Records the similarity dispatches (one per row chunk) of `q` queries into `work.sims`.
fn encode_similarities(
    graph: &Graph,
    res: &Resident,
    work: &mut SimWork,
    encoder: &mut wgpu::CommandEncoder,
    queries: &[f32],
    q: usize,
) -> Result<(), GraphError> {
    let gpu = &res.gpu;
    let rows = graph.emb.embedded.len();
    invocations("similarity", rows * q)?;
    let pipeline = gpu.pipeline("graph_similarity", SHADER, "similarity")?;
    gpu.queue()
        .write_buffer(&work.queries, 0, bytes_of(queries));
    for (c, chunk) in res.row_chunks.iter().enumerate() {
        let base = c * res.chunk_rows;
        let chunk_rows = res.chunk_rows.min(rows - base);
        let params = SimUniform {
            rows: chunk_rows as u32,
            queries: q as u32,
            dim: graph.dim() as u32,
            row_words: res.row_words,
            row_base: base as u32,
            pad: [0; 3],
        };
        SimWork::uniform(&mut work.sim_uniforms, gpu, c, bytemuck::bytes_of(&params))?;
        let group = bind_group(
            gpu,
            &pipeline,
            "similarity",
            &[
                entry(10, &work.sim_uniforms[c]),
                entry(11, chunk),
                entry(12, &work.queries),
                entry(13, &work.sims),
            ],
        )?;
        gpu.scoped("dispatching similarity", || {
            dispatch(gpu, encoder, &pipeline, &group, (chunk_rows * q) as u32)
        })?;
    }
    Ok(())
}

/// `out[j * q + i] = dot(query i, e[embedded[j]])`: the similarity matrix of CPU
/// `Embeddings::similarities`, computed on the device and read back whole (for a `seeds_k`
/// above [`MAX_DEVICE_K`]; [`top_candidates`] reads back only the candidates). Called
/// through `Accel`, which sizes `out` and handles no rows or no queries.
pub(crate) fn similarities(
    graph: &Graph,
    gpu: &WgpuDevice,
    queries: &[f32],
    q: usize,
    out: &mut [f32],
) -> Result<(), GraphError> {
    let rows = graph.emb.embedded.len();
    let res = graph.resident(gpu)?;
    let mut work = SimWork::take(&res, rows, q, graph.dim())?;
    let mut enc = encoder(gpu);
    let done = encode_similarities(graph, &res, &mut work, &mut enc, queries, q).and_then(|()| {
        let bytes = (rows * q * 4) as u64;
        Ok(work.readback.finish(gpu, enc, &[(&work.sims, 0, bytes)])?)
    });
    let bytes = done?;
    give_back(&res.sim_work, work);
    out.copy_from_slice(bytemuck::cast_slice(&bytes));
    Ok(())
}

/// Per query, its best `k` embedded nodes with sim >= `theta`, by sim descending (f32 total
/// order) then node ascending: `out[i]` holds query i's `(sim, node)`, best first (fewer
/// than `k` when fewer pass `theta`). Called through `Accel`, which checks `k` (at most
/// [`MAX_DEVICE_K`]), clears `out` and handles no rows or no queries.
pub(crate) fn top_candidates(
    graph: &Graph,
    gpu: &WgpuDevice,
    queries: &[f32],
    q: usize,
    k: usize,
    theta: f32,
    out: &mut [Vec<(f32, u32)>],
) -> Result<(), GraphError> {
    let rows = graph.emb.embedded.len();
    if u32::try_from(rows.div_ceil(TILE)).is_err()
        || rows.div_ceil(TILE) > gpu.limits().max_compute_workgroups_per_dimension as usize
        || q > gpu.limits().max_compute_workgroups_per_dimension as usize
    {
        return Err(GraphError::Device(format!(
            "top-k over {rows} rows and {q} queries needs more workgroups than the adapter \
             allows in one dimension ({})",
            gpu.limits().max_compute_workgroups_per_dimension
        )));
    }
    let res = graph.resident(gpu)?;
    let mut work = SimWork::take(&res, rows, q, graph.dim())?;
    let keys = run_top_k(graph, &res, &mut work, queries, q, k, theta)?;
    give_back(&res.sim_work, work);
    decode_top_k(bytemuck::cast_slice(&keys[..q * k * 8]), q, k, out);
    Ok(())
}

/// Similarity, then top-k rounds until one list of `k` per query is left, all in one
/// submit; returns the final lists' bytes (`q × k` key pairs).
fn run_top_k(
    graph: &Graph,
    res: &Resident,
    work: &mut SimWork,
    queries: &[f32],
    q: usize,
    k: usize,
    theta: f32,
) -> Result<Vec<u8>, GraphError> {
    let gpu = &res.gpu;
    let mut enc = encoder(gpu);
    encode_similarities(graph, res, work, &mut enc, queries, q)?;
    let pipeline = gpu.pipeline("graph_topk_tiles", SHADER, "topk_tiles")?;
    let mut count = graph.emb.embedded.len();
    let mut round = 0;
    loop {
        let tiles = count.div_ceil(TILE);
        let params = TopkUniform {
            queries: q as u32,
            count: count as u32,
            k: k as u32,
            from_sims: u32::from(round == 0),
            theta,
            tiles: tiles as u32,
            pad: [0; 2],
        };
        SimWork::uniform(
            &mut work.topk_uniforms,
            gpu,
            round,
            bytemuck::bytes_of(&params),
        )?;
        let (input, output) = (&work.cands[(round + 1) % 2], &work.cands[round % 2]);
        let group = bind_group(
            gpu,
            &pipeline,
            "top-k",
            &[
                entry(30, &work.topk_uniforms[round]),
                entry(31, &work.sims),
                entry(32, &res.embedded),
                entry(33, input),
                entry(34, output),
            ],
        )?;
        gpu.scoped("dispatching top-k", || {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(tiles as u32, q as u32, 1);
        })?;
        count = tiles * k;
        if tiles == 1 {
            break;
        }
        round += 1;
    }
    let last = &work.cands[round % 2];
    Ok(work
        .readback
        .finish(gpu, enc, &[(last, 0, (q * k * 8) as u64)])?)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::backend::wgpu::tests::wgpu;
    use crate::graph::accel::Accel;
    use crate::graph::generate;
    use crate::graph::result::rank;

    /// The device's top-k equals the host's selection over the device's own similarity
    /// matrix: every rank, tie (dimension 1 makes every sim ±1) and threshold, across
    /// several merge rounds (3000 rows are three tiles; k = 512 needs three rounds).
    #[test]
    fn device_top_k_equals_host_selection_over_the_same_similarities() {
        let Some(gpu) = wgpu() else { return };
        for dim in [1, 24] {
            let graph = generate::barabasi_albert(3000, 3, dim, 5, Default::default())
                .unwrap()
                .build()
                .unwrap();
            let q = 3;
            let queries = generate::queries_near(&graph, q, 0.1, 9).unwrap();
            let mut sims = Vec::new();
            let dev = Accel::Wgpu(&gpu);
            dev.similarities(&graph, &queries, q, &mut sims).unwrap();
            if dim == 24 {
                // Rows uploaded in chunks of 1,000 (as past a binding limit): same bits.
                let whole = graph.gpu.lock().unwrap().take();
                let chunked = Resident::upload(&graph, &gpu, 1000 * 12 * 4).unwrap();
                assert_eq!(chunked.row_chunks.len(), 3);
                *graph.gpu.lock().unwrap() = Some(std::sync::Arc::new(chunked));
                let mut by_chunks = Vec::new();
                dev.similarities(&graph, &queries, q, &mut by_chunks)
                    .unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&by_chunks), bits(&sims), "similarities by row chunks");
                *graph.gpu.lock().unwrap() = whole;
            }
            let mut top = Vec::new();
            for k in [1, 5, 100, 512] {
                for theta in [-2.0, 0.0, 0.3, 2.0] {
                    dev.top_candidates(&graph, &queries, q, k, theta, &mut top)
                        .unwrap();
                    for (i, got) in top.iter().enumerate() {
                        let mut want: Vec<(f32, u32)> = graph
                            .emb
                            .embedded
                            .iter()
                            .enumerate()
                            .map(|(j, &v)| (sims[j * q + i], v))
                            .filter(|&(s, _)| s >= theta)
                            .collect();
                        want.sort_by(|a, b| rank(a.0, a.1, b.0, b.1));
                        want.truncate(k);
                        let what = format!("dim {dim}, k {k}, theta {theta}, query {i}");
                        assert_eq!(got.len(), want.len(), "{what}");
                        for (g, w) in got.iter().zip(&want) {
                            assert_eq!((g.0.to_bits(), g.1), (w.0.to_bits(), w.1), "{what}");
                        }
                    }
                }
            }
        }
    }
}
