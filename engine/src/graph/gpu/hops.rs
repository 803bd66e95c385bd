//! Spreading on the wgpu device: the device steps of `device_order` (seed, hop, gather)
//! as dispatches of `shaders/graph.wgsl` — every hop by pull, or by push (mark the frontier's
//! out-neighbours, pull only those) for a small frontier.

use std::sync::Arc;

use super::{Resident, SHADER, bind_group, bytes_of, dispatch, encoder, entry, invocations};
use crate::backend::wgpu::{Readback, WgpuDevice, uniform_buffer, zeroed_storage_buffer};
use crate::graph::Graph;
use crate::graph::device_order::{
    self, ACTIVATED_COUNT, Hop, HopDevice, STATS_WORDS, Seeding, give_back, list_offsets,
    take_fitting,
};
use crate::graph::error::GraphError;
use crate::graph::params::{Seed, SpreadParams};
use crate::graph::spread::{HopGate, HopMethod, Outcome, Scratch};

/// Spreading buffers for up to `lanes` lanes of one graph, kept for later calls.
pub(super) struct HopWork {
    lanes: usize,
    uniform: wgpu::Buffer,
    seed_uniform: wgpu::Buffer,
    /// Δ ping-pong: hop k reads `delta[(k - 1) % 2]` and writes `delta[k % 2]`.
    delta: [wgpu::Buffer; 2],
    /// `(a, first_hop + 1)` per node-lane.
    state: wgpu::Buffer,
    /// Node flags, then two frontier lists, the touched list and the activated list.
    lists: wgpu::Buffer,
    stats: wgpu::Buffer,
    seeds: Option<(wgpu::Buffer, usize)>,
    readback: Readback,
}

impl HopWork {
    fn new(gpu: &WgpuDevice, n: usize, lanes: usize) -> Result<HopWork, GraphError> {
        let nl = (n * lanes * 4) as u64;
        let zero = Hop::default();
        Ok(HopWork {
            lanes,
            uniform: uniform_buffer(gpu, "hop params", bytemuck::bytes_of(&zero))?,
            seed_uniform: uniform_buffer(gpu, "seed params", bytemuck::bytes_of(&zero))?,
            delta: [
                zeroed_storage_buffer(gpu, "delta", nl)?,
                zeroed_storage_buffer(gpu, "delta", nl)?,
            ],
            state: zeroed_storage_buffer(gpu, "activation state", 2 * nl)?,
            lists: zeroed_storage_buffer(gpu, "node lists", (5 * n * 4) as u64)?,
            stats: zeroed_storage_buffer(gpu, "hop counters", ((STATS_WORDS + lanes) * 4) as u64)?,
            seeds: None,
            readback: Readback::default(),
        })
    }

    fn take(res: &Resident, n: usize, lanes: usize) -> Result<HopWork, GraphError> {
        match take_fitting(&res.hop_work, |w: &HopWork| w.lanes >= lanes) {
            Some(w) => Ok(w),
            None => HopWork::new(&res.gpu, n, lanes),
        }
    }

    /// The seed upload buffer, grown to hold `entries` (index, a) pairs.
    fn seed_buffer(&mut self, gpu: &WgpuDevice, entries: usize) -> Result<(), GraphError> {
        if self.seeds.as_ref().is_none_or(|s| s.1 < entries) {
            let cap = entries.next_power_of_two().max(64);
            let buf = zeroed_storage_buffer(gpu, "seeds", (cap * 8) as u64)?;
            self.seeds = Some((buf, cap));
        }
        Ok(())
    }
}

/// The spreading pipelines of the shader.
struct HopPipelines {
    pull_all: Arc<wgpu::ComputePipeline>,
    mark: Arc<wgpu::ComputePipeline>,
    pull_touched: Arc<wgpu::ComputePipeline>,
    retire: Arc<wgpu::ComputePipeline>,
    seed: Arc<wgpu::ComputePipeline>,
    gather: Arc<wgpu::ComputePipeline>,
}

impl HopPipelines {
    fn get(gpu: &WgpuDevice) -> Result<HopPipelines, GraphError> {
        Ok(HopPipelines {
            pull_all: gpu.pipeline("graph_pull_all", SHADER, "pull_all")?,
            mark: gpu.pipeline("graph_mark_targets", SHADER, "mark_targets")?,
            pull_touched: gpu.pipeline("graph_pull_touched", SHADER, "pull_touched")?,
            retire: gpu.pipeline("graph_retire", SHADER, "retire")?,
            seed: gpu.pipeline("graph_seed", SHADER, "seed")?,
            gather: gpu.pipeline("graph_gather", SHADER, "gather")?,
        })
    }
}

/// SPEC §2.2 for `lanes` seed lists at once on the device (`device_order::propagate`).
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
    invocations("spread", n * lanes)?;
    invocations("spread", 5 * n)?;
    scratch.prepare(n, lanes);
    let mut work = HopWork::take(&res, n, lanes)?;
    let outcome = WgpuHops::new(&res, &mut work, n, lanes).and_then(|mut dev| {
        device_order::propagate(graph, &mut dev, scratch, lanes, seeds, params, gate)
    });
    if outcome.is_ok() {
        give_back(&res.hop_work, work);
    }
    outcome
}

/// One spread's device side: the work buffers, the pipelines, their bind groups (made once
/// per call), and the encoder that carries the seeds into the first hop's submit.
struct WgpuHops<'a> {
    res: &'a Resident,
    w: &'a mut HopWork,
    n: usize,
    lanes: usize,
    p: HopPipelines,
    /// `[k % 2]`: the groups of hop k (reading `delta[(k - 1) % 2]`).
    pull_all: [wgpu::BindGroup; 2],
    pull_touched: [wgpu::BindGroup; 2],
    retire: [wgpu::BindGroup; 2],
    mark: wgpu::BindGroup,
    pending: Option<wgpu::CommandEncoder>,
}

impl<'a> WgpuHops<'a> {
    fn new(
        res: &'a Resident,
        w: &'a mut HopWork,
        n: usize,
        lanes: usize,
    ) -> Result<WgpuHops<'a>, GraphError> {
        let gpu = &res.gpu;
        let p = HopPipelines::get(gpu)?;
        let hop_group = |pipeline: &wgpu::ComputePipeline, k: usize| {
            bind_group(
                gpu,
                pipeline,
                "spreading hop",
                &[
                    entry(0, &w.uniform),
                    entry(1, &res.offsets),
                    entry(2, &res.in_sources),
                    entry(3, &res.in_weights),
                    entry(4, &w.delta[(k + 1) % 2]),
                    entry(5, &w.delta[k % 2]),
                    entry(6, &w.state),
                    entry(7, &w.lists),
                    entry(8, &w.stats),
                ],
            )
        };
        let pull_all = [hop_group(&p.pull_all, 0)?, hop_group(&p.pull_all, 1)?];
        let pull_touched = [
            hop_group(&p.pull_touched, 0)?,
            hop_group(&p.pull_touched, 1)?,
        ];
        let retire_group = |k: usize| {
            bind_group(
                gpu,
                &p.retire,
                "retire",
                &[
                    entry(0, &w.uniform),
                    entry(4, &w.delta[(k + 1) % 2]),
                    entry(7, &w.lists),
                ],
            )
        };
        let retire = [retire_group(0)?, retire_group(1)?];
        let mark = bind_group(
            gpu,
            &p.mark,
            "mark targets",
            &[
                entry(0, &w.uniform),
                entry(1, &res.offsets),
                entry(7, &w.lists),
                entry(8, &w.stats),
                entry(9, &res.out_targets),
            ],
        )?;
        Ok(WgpuHops {
            res,
            w,
            n,
            lanes,
            p,
            pull_all,
            pull_touched,
            retire,
            mark,
            pending: None,
        })
    }
}

impl HopDevice for WgpuHops<'_> {
    fn seed(&mut self, seeding: &Seeding<'_>) -> Result<(), GraphError> {
        let (gpu, w) = (&self.res.gpu, &mut *self.w);
        let nl = (self.n * self.lanes) as u64 * 4;
        let mut enc = encoder(gpu);
        enc.clear_buffer(&w.delta[0], 0, Some(nl));
        enc.clear_buffer(&w.delta[1], 0, Some(nl));
        enc.clear_buffer(&w.state, 0, Some(2 * nl));
        enc.clear_buffer(&w.lists, 0, Some((self.n * 4) as u64));
        enc.clear_buffer(&w.stats, 0, None);
        gpu.scoped("clearing the spreading buffers", || {
            gpu.queue().submit([enc.finish()])
        })?;
        w.seed_buffer(gpu, seeding.entries.len())?;
        let (seed_buf, _) = w.seeds.as_ref().expect("sized above");
        let queue = gpu.queue();
        queue.write_buffer(seed_buf, 0, bytes_of(seeding.entries));
        let (frontier_off, _, activated_off) = list_offsets(self.n);
        for at in [frontier_off[0], activated_off] {
            queue.write_buffer(&w.lists, u64::from(at) * 4, bytes_of(seeding.nodes));
        }
        let activated = [seeding.nodes.len() as u32];
        queue.write_buffer(&w.stats, (ACTIVATED_COUNT * 4) as u64, bytes_of(&activated));
        queue.write_buffer(&w.seed_uniform, 0, bytemuck::bytes_of(&seeding.hop));
        let group = bind_group(
            gpu,
            &self.p.seed,
            "seed",
            &[
                entry(0, &w.seed_uniform),
                entry(4, &w.delta[0]),
                entry(6, &w.state),
                entry(7, &w.lists),
                entry(20, seed_buf),
            ],
        )?;
        // Submitted with the first hop (or the gather).
        let mut enc = encoder(gpu);
        let count = seeding.entries.len() as u32;
        gpu.scoped("dispatching the seeds", || {
            dispatch(gpu, &mut enc, &self.p.seed, &group, count);
        })?;
        self.pending = Some(enc);
        Ok(())
    }

    fn hop(
        &mut self,
        h: &Hop,
        method: HopMethod,
        touched_bound: u64,
    ) -> Result<Vec<u32>, GraphError> {
        let (gpu, w, p) = (&self.res.gpu, &mut *self.w, &self.p);
        gpu.queue()
            .write_buffer(&w.uniform, 0, bytemuck::bytes_of(h));
        let mut enc = self.pending.take().unwrap_or_else(|| encoder(gpu));
        let side = h.hop as usize % 2;
        let lanes = self.lanes;
        gpu.scoped("dispatching a spreading hop", || {
            // The counters of the frontier being built, the touched count, the flags.
            enc.clear_buffer(&w.stats, 0, Some(12));
            enc.clear_buffer(&w.stats, (STATS_WORDS * 4) as u64, Some(lanes as u64 * 4));
            match method {
                HopMethod::Pull => {
                    let count = (self.n * lanes) as u32;
                    dispatch(gpu, &mut enc, &p.pull_all, &self.pull_all[side], count);
                }
                HopMethod::Push => {
                    dispatch(gpu, &mut enc, &p.mark, &self.mark, h.frontier_len);
                    let group = &self.pull_touched[side];
                    dispatch(gpu, &mut enc, &p.pull_touched, group, touched_bound as u32);
                }
            }
            let count = h.frontier_len * lanes as u32;
            dispatch(gpu, &mut enc, &p.retire, &self.retire[side], count);
        })?;
        let stats_bytes = ((STATS_WORDS + lanes) * 4) as u64;
        let bytes = w.readback.finish(gpu, enc, &[(&w.stats, 0, stats_bytes)])?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[..stats_bytes as usize]))
    }

    fn gather(&mut self, h: &Hop, activated: usize) -> Result<Vec<u32>, GraphError> {
        let (gpu, w, p) = (&self.res.gpu, &mut *self.w, &self.p);
        gpu.queue()
            .write_buffer(&w.uniform, 0, bytemuck::bytes_of(h));
        let group = bind_group(
            gpu,
            &p.gather,
            "gather",
            &[
                entry(0, &w.uniform),
                entry(4, &w.delta[0]),
                entry(5, &w.delta[1]),
                entry(6, &w.state),
                entry(7, &w.lists),
                entry(8, &w.stats),
            ],
        )?;
        let mut enc = self.pending.take().unwrap_or_else(|| encoder(gpu));
        let count = (activated * self.lanes) as u32;
        gpu.scoped("gathering the activations", || {
            dispatch(gpu, &mut enc, &p.gather, &group, count);
        })?;
        let vals = (activated * self.lanes * 4) as u64;
        let nodes_at = u64::from(h.activated_off) * 4;
        let bytes = w.readback.finish(
            gpu,
            enc,
            &[
                (&w.delta[0], 0, vals),
                (&w.delta[1], 0, vals),
                (&w.lists, nodes_at, activated as u64 * 4),
            ],
        )?;
        let total = (2 * vals) as usize + activated * 4;
        Ok(bytemuck::pod_collect_to_vec(&bytes[..total]))
    }
}
