//! Spreading on the device: every hop by pull, or by push (mark the frontier's
//! out-neighbours, pull only those) for a small frontier; seeding from the host, the
//! activated nodes gathered back at the end.

use std::sync::Arc;

use super::{Resident, SHADER, bind_group, bytes_of, dispatch, encoder, entry, invocations};
use crate::backend::wgpu::{Readback, WgpuDevice, uniform_buffer, zeroed_storage_buffer};
use crate::graph::Graph;
use crate::graph::error::GraphError;
use crate::graph::params::{MAX_HOPS, Seed, SpreadParams, Tier};
use crate::graph::spread::{self, HopGate, HopMethod, Outcome, Scratch, UNSET};

/// The constants of one hop, laid out as `Hop` in the shader.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct HopUniform {
    nodes: u32,
    lanes: u32,
    hop: u32,
    refractory: u32,
    dk: f32,
    theta: f32,
    frontier_len: u32,
    frontier_off: u32,
    next_off: u32,
    touched_off: u32,
    activated_off: u32,
    bit: u32,
    prev_bit: u32,
    pad: [u32; 3],
}

/// Counters at the start of the `stats` buffer (the shader's `NEXT_COUNT` ..); the lanes'
/// alive flags follow.
const STATS_WORDS: usize = 4;
const NEXT_COUNT: usize = 0;
const NEXT_EDGES: usize = 1;
const ACTIVATED_COUNT: usize = 3;

/// The flag bit of the frontier built by hop `k` (the seeds are hop 0).
fn frontier_bit(k: u32) -> u32 {
    2 << (k & 1)
}

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
        let zero = HopUniform::default();
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
        let mut pool = res.hop_work.lock().unwrap_or_else(|p| p.into_inner());
        match pool.iter().position(|w| w.lanes >= lanes) {
            Some(i) => Ok(pool.swap_remove(i)),
            None => {
                drop(pool);
                HopWork::new(&res.gpu, n, lanes)
            }
        }
    }

    fn give_back(self, res: &Resident) {
        res.hop_work
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self);
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

/// SPEC §2.2 for `lanes` seed lists at once on the device. Leaves `a`, `first_hop`,
/// `hops_done` and `stopped` in `scratch` exactly as `spread::propagate` does.
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
    let outcome = run_hops(graph, &res, &mut work, scratch, lanes, seeds, params, gate);
    if outcome.is_ok() {
        work.give_back(&res);
    }
    outcome
}

/// The offsets of the node lists in `lists` (after n flags).
struct ListOffsets {
    frontier: [u32; 2],
    touched: u32,
    activated: u32,
}

#[allow(clippy::too_many_arguments)]
fn run_hops<'s>(
    graph: &Graph,
    res: &Resident,
    w: &mut HopWork,
    scratch: &mut Scratch,
    lanes: usize,
    seeds: &dyn Fn(usize) -> &'s [Seed],
    params: &SpreadParams,
    gate: &mut dyn HopGate,
) -> Result<Outcome, GraphError> {
    let gpu = &res.gpu;
    let n = graph.node_count();
    let nl = (n * lanes) as u64 * 4;
    let p = HopPipelines::get(gpu)?;
    let offs = ListOffsets {
        frontier: [n as u32, 2 * n as u32],
        touched: 3 * n as u32,
        activated: 4 * n as u32,
    };

    // Seeding on the host (SPEC §2.2: in order, clamped at 1), uploaded as (index, a).
    spread::seed(scratch, lanes, seeds, params.threshold(Tier::Hot));
    let seeded = scratch.take_seeded();
    let mut entries: Vec<[u32; 2]> = Vec::new();
    for &u in &seeded {
        for q in 0..lanes {
            let i = u as usize * lanes + q;
            if scratch.a[i] > 0.0 {
                entries.push([i as u32, scratch.a[i].to_bits()]);
            }
        }
    }
    let mut frontier_edges: u64 = seeded.iter().map(|&u| u64::from(graph.out.degree(u))).sum();
    let mut frontier_len = seeded.len();

    // Clear what the last call left, then upload the seeds.
    let mut enc = encoder(gpu);
    enc.clear_buffer(&w.delta[0], 0, Some(nl));
    enc.clear_buffer(&w.delta[1], 0, Some(nl));
    enc.clear_buffer(&w.state, 0, Some(2 * nl));
    enc.clear_buffer(&w.lists, 0, Some((n * 4) as u64));
    enc.clear_buffer(&w.stats, 0, None);
    gpu.scoped("clearing the spreading buffers", || {
        gpu.queue().submit([enc.finish()])
    })?;
    w.seed_buffer(gpu, entries.len())?;
    let (seed_buf, _) = w.seeds.as_ref().expect("sized above");
    let queue = gpu.queue();
    queue.write_buffer(seed_buf, 0, bytes_of(&entries));
    for at in [offs.frontier[0], offs.activated] {
        queue.write_buffer(&w.lists, u64::from(at) * 4, bytes_of(&seeded));
    }
    let activated = [seeded.len() as u32];
    queue.write_buffer(&w.stats, (ACTIVATED_COUNT * 4) as u64, bytes_of(&activated));
    let seed_params = HopUniform {
        nodes: n as u32,
        lanes: lanes as u32,
        frontier_len: entries.len() as u32,
        bit: frontier_bit(0),
        ..HopUniform::default()
    };
    queue.write_buffer(&w.seed_uniform, 0, bytemuck::bytes_of(&seed_params));

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
    // [k % 2]: the groups of hop k (reading delta[(k - 1) % 2]).
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
    let seed_group = bind_group(
        gpu,
        &p.seed,
        "seed",
        &[
            entry(0, &w.seed_uniform),
            entry(4, &w.delta[0]),
            entry(6, &w.state),
            entry(7, &w.lists),
            entry(20, seed_buf),
        ],
    )?;
    let mut pending = Some(encoder(gpu));
    gpu.scoped("dispatching the seeds", || {
        let enc = pending.as_mut().expect("just made");
        dispatch(gpu, enc, &p.seed, &seed_group, entries.len() as u32);
    })?;

    let mut outcome = Outcome { partial: false };
    let mut activated = seeded.len();
    for k in 1..=params.max_hops.min(MAX_HOPS) {
        let plan = spread::hop_plan(
            graph,
            k,
            params.evaluation,
            frontier_len,
            frontier_edges,
            lanes as u64,
        );
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
            frontier_len: frontier_len as u32,
            frontier_off: offs.frontier[(k as usize + 1) % 2],
            next_off: offs.frontier[k as usize % 2],
            touched_off: offs.touched,
            activated_off: offs.activated,
            bit: frontier_bit(k),
            prev_bit: frontier_bit(k - 1),
            pad: [0; 3],
        };
        queue.write_buffer(&w.uniform, 0, bytemuck::bytes_of(&consts));
        let mut enc = pending.take().unwrap_or_else(|| encoder(gpu));
        let side = k as usize % 2;
        gpu.scoped("dispatching a spreading hop", || {
            // The counters of the frontier being built, the touched count, the flags.
            enc.clear_buffer(&w.stats, 0, Some(12));
            enc.clear_buffer(&w.stats, (STATS_WORDS * 4) as u64, Some(lanes as u64 * 4));
            match plan.method {
                HopMethod::Pull => {
                    dispatch(
                        gpu,
                        &mut enc,
                        &p.pull_all,
                        &pull_all[side],
                        (n * lanes) as u32,
                    );
                }
                HopMethod::Push => {
                    dispatch(gpu, &mut enc, &p.mark, &mark, frontier_len as u32);
                    // At most min(frontier edges, nodes) nodes are marked.
                    let bound = (frontier_edges.min(n as u64) as usize * lanes) as u32;
                    dispatch(gpu, &mut enc, &p.pull_touched, &pull_touched[side], bound);
                }
            }
            dispatch(
                gpu,
                &mut enc,
                &p.retire,
                &retire[side],
                (frontier_len * lanes) as u32,
            );
        })?;
        let stats_bytes = ((STATS_WORDS + lanes) * 4) as u64;
        let bytes = w.readback.finish(gpu, enc, &[(&w.stats, 0, stats_bytes)])?;
        let stats: &[u32] = bytemuck::cast_slice(&bytes[..stats_bytes as usize]);
        frontier_len = stats[NEXT_COUNT] as usize;
        frontier_edges = u64::from(stats[NEXT_EDGES]);
        activated = stats[ACTIVATED_COUNT] as usize;
        gate.after_hop(&plan);
        let mut running = false;
        for (q, &flag) in stats[STATS_WORDS..].iter().enumerate() {
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

    // The activated nodes' (a, first_hop + 1), compacted into the Δ buffers.
    let consts = HopUniform {
        nodes: n as u32,
        lanes: lanes as u32,
        activated_off: offs.activated,
        ..HopUniform::default()
    };
    queue.write_buffer(&w.uniform, 0, bytemuck::bytes_of(&consts));
    let gather = bind_group(
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
    let mut enc = pending.take().unwrap_or_else(|| encoder(gpu));
    gpu.scoped("gathering the activations", || {
        dispatch(
            gpu,
            &mut enc,
            &p.gather,
            &gather,
            (activated * lanes) as u32,
        );
    })?;
    let vals = (activated * lanes * 4) as u64;
    let bytes = w.readback.finish(
        gpu,
        enc,
        &[
            (&w.delta[0], 0, vals),
            (&w.delta[1], 0, vals),
            (
                &w.lists,
                u64::from(offs.activated) * 4,
                activated as u64 * 4,
            ),
        ],
    )?;
    let words: &[u32] = bytemuck::cast_slice(&bytes[..(2 * vals) as usize + activated * 4]);
    let (a, rest) = words.split_at(activated * lanes);
    let (first, nodes) = rest.split_at(activated * lanes);
    for (j, &v) in nodes.iter().enumerate() {
        for q in 0..lanes {
            let i = v as usize * lanes + q;
            scratch.a[i] = f32::from_bits(a[j * lanes + q]);
            let f = first[j * lanes + q];
            scratch.first_hop[i] = if f == 0 { UNSET } else { (f - 1) as u8 };
        }
    }
    Ok(outcome)
}
