//! Spreading on the CUDA device: the launch sequence of `super::super::gpu::hops`, with the
//! kernels of `kernels/graph.cu`.
#![allow(unsafe_code)]

use cudarc::driver::DeviceRepr;

use super::{FILE, Resident, THREADS, invocations};
use crate::backend::cuda::{Args, CudaDevice, DeviceBuffer, grid};
use crate::graph::Graph;
use crate::graph::error::GraphError;
use crate::graph::params::{MAX_HOPS, Seed, SpreadParams, Tier};
use crate::graph::spread::{self, HopGate, HopMethod, Outcome, Scratch, UNSET};

pub(super) const KERNELS: &[&str] = &[
    "pull_all",
    "mark_targets",
    "pull_touched",
    "retire",
    "seed",
    "gather",
];

/// `Hop` of graph.cu (64 bytes, as the wgpu uniform).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Hop {
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

/// `HopBuffers` of graph.cu: device addresses, in the struct's order.
#[repr(C)]
#[derive(Clone, Copy)]
struct HopBuffers {
    offsets: u64,
    in_sources: u64,
    in_weights: u64,
    cur: u64,
    next: u64,
    state: u64,
    lists: u64,
    stats: u64,
    out_targets: u64,
}

// SAFETY: plain `#[repr(C)]` values laid out as the kernels' structs.
unsafe impl DeviceRepr for Hop {}
// SAFETY: as above; addresses are u64 like CUDA's 64-bit pointers.
unsafe impl DeviceRepr for HopBuffers {}

/// Counters at the start of `stats` (graph.cu's `NEXT_COUNT` ..); the lanes' flags follow.
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
    /// Δ ping-pong: hop k reads `delta[(k - 1) % 2]` and writes `delta[k % 2]`.
    delta: [DeviceBuffer; 2],
    /// `(a, first_hop + 1)` per node-lane.
    state: DeviceBuffer,
    /// Node flags, then two frontier lists, the touched list and the activated list.
    lists: DeviceBuffer,
    stats: DeviceBuffer,
    seeds: Option<(DeviceBuffer, usize)>,
}

impl HopWork {
    fn new(dev: &CudaDevice, n: usize, lanes: usize) -> Result<HopWork, GraphError> {
        let nl = (n * lanes * 4) as u64;
        Ok(HopWork {
            lanes,
            delta: [dev.buffer("delta", nl)?, dev.buffer("delta", nl)?],
            state: dev.buffer("activation state", 2 * nl)?,
            lists: dev.buffer("node lists", (5 * n * 4) as u64)?,
            stats: dev.buffer("hop counters", ((STATS_WORDS + lanes) * 4) as u64)?,
            seeds: None,
        })
    }

    fn take(res: &Resident, n: usize, lanes: usize) -> Result<HopWork, GraphError> {
        let mut pool = res.hop_work.lock().unwrap_or_else(|p| p.into_inner());
        match pool.iter().position(|w| w.lanes >= lanes) {
            Some(i) => Ok(pool.swap_remove(i)),
            None => {
                drop(pool);
                HopWork::new(&res.dev, n, lanes)
            }
        }
    }

    fn give_back(self, res: &Resident) {
        res.hop_work
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self);
    }

    /// The buffers of hop `k` (reading Δ(k-1)).
    fn buffers(&self, res: &Resident, k: usize) -> HopBuffers {
        HopBuffers {
            offsets: res.offsets.ptr(),
            in_sources: res.in_sources.ptr(),
            in_weights: res.in_weights.ptr(),
            cur: self.delta[(k + 1) % 2].ptr(),
            next: self.delta[k % 2].ptr(),
            state: self.state.ptr(),
            lists: self.lists.ptr(),
            stats: self.stats.ptr(),
            out_targets: res.out_targets.ptr(),
        }
    }
}

/// SPEC §2.2 for `lanes` seed lists at once on the device. Leaves `a`, `first_hop`,
/// `hops_done` and `stopped` in `scratch` exactly as `spread::propagate` does.
pub(crate) fn propagate<'s>(
    graph: &Graph,
    dev: &CudaDevice,
    scratch: &mut Scratch,
    lanes: usize,
    seeds: &dyn Fn(usize) -> &'s [Seed],
    params: &SpreadParams,
    gate: &mut dyn HopGate,
) -> Result<Outcome, GraphError> {
    let n = graph.node_count();
    let res = graph.cuda_resident(dev)?;
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
    let dev = &res.dev;
    let n = graph.node_count();
    let nl = (n * lanes) as u64 * 4;
    let kernel = |name| dev.function(FILE, name);
    let (pull_all, mark, pull_touched) = (
        kernel("pull_all")?,
        kernel("mark_targets")?,
        kernel("pull_touched")?,
    );
    let (retire, seed, gather) = (kernel("retire")?, kernel("seed")?, kernel("gather")?);
    let frontier_off = [n as u32, 2 * n as u32];
    let (touched_off, activated_off) = (3 * n as u32, 4 * n as u32);

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
    dev.zero(&w.delta[0], 0, nl)?;
    dev.zero(&w.delta[1], 0, nl)?;
    dev.zero(&w.state, 0, 2 * nl)?;
    dev.zero(&w.lists, 0, (n * 4) as u64)?;
    dev.zero(&w.stats, 0, w.stats.bytes())?;
    if w.seeds.as_ref().is_none_or(|s| s.1 < entries.len()) {
        let cap = entries.len().next_power_of_two().max(64);
        w.seeds = Some((dev.buffer("seeds", (cap * 8) as u64)?, cap));
    }
    let (seed_buf, _) = w.seeds.as_ref().expect("sized above");
    dev.write(seed_buf, 0, &entries)?;
    for at in [frontier_off[0], activated_off] {
        dev.write(&w.lists, u64::from(at) * 4, &seeded)?;
    }
    dev.write(
        &w.stats,
        (ACTIVATED_COUNT * 4) as u64,
        &[seeded.len() as u32],
    )?;
    let seed_params = Hop {
        nodes: n as u32,
        lanes: lanes as u32,
        frontier_len: entries.len() as u32,
        bit: frontier_bit(0),
        ..Hop::default()
    };
    // The seeds write Δ(0), the `cur` of hop 1.
    let seed_bufs = w.buffers(res, 1);
    let seed_ptr = seed_buf.ptr();
    dev.launch(
        "launching the seeds",
        &seed,
        grid(entries.len() as u64, THREADS),
        Args::new().arg(&seed_params).arg(&seed_bufs).arg(&seed_ptr),
    )?;

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
        let h = Hop {
            nodes: n as u32,
            lanes: lanes as u32,
            hop: k,
            refractory: u32::from(params.refractory),
            dk: params.decay.factor(k),
            theta: params.threshold(Tier::of_hop(k)),
            frontier_len: frontier_len as u32,
            frontier_off: frontier_off[(k as usize + 1) % 2],
            next_off: frontier_off[k as usize % 2],
            touched_off,
            activated_off,
            bit: frontier_bit(k),
            prev_bit: frontier_bit(k - 1),
            pad: [0; 3],
        };
        let b = w.buffers(res, k as usize);
        let what = "launching a spreading hop";
        // The counters of the frontier being built, the touched count, the flags.
        dev.zero(&w.stats, 0, 12)?;
        dev.zero(&w.stats, (STATS_WORDS * 4) as u64, lanes as u64 * 4)?;
        match plan.method {
            HopMethod::Pull => {
                let cfg = grid((n * lanes) as u64, THREADS);
                dev.launch(what, &pull_all, cfg, Args::new().arg(&h).arg(&b))?;
            }
            HopMethod::Push => {
                let cfg = grid(frontier_len as u64, THREADS);
                dev.launch(what, &mark, cfg, Args::new().arg(&h).arg(&b))?;
                // At most min(frontier edges, nodes) nodes are marked.
                let bound = frontier_edges.min(n as u64) * lanes as u64;
                let cfg = grid(bound, THREADS);
                dev.launch(what, &pull_touched, cfg, Args::new().arg(&h).arg(&b))?;
            }
        }
        let cfg = grid((frontier_len * lanes) as u64, THREADS);
        dev.launch(what, &retire, cfg, Args::new().arg(&h).arg(&b))?;
        let stats_bytes = ((STATS_WORDS + lanes) * 4) as u64;
        let bytes = dev.finish("reading a hop's counters", &[(&w.stats, 0, stats_bytes)])?;
        let stats: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
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
    let h = Hop {
        nodes: n as u32,
        lanes: lanes as u32,
        activated_off,
        ..Hop::default()
    };
    // `cur` = delta[0], `next` = delta[1].
    let b = w.buffers(res, 1);
    let cfg = grid((activated * lanes) as u64, THREADS);
    dev.launch(
        "gathering the activations",
        &gather,
        cfg,
        Args::new().arg(&h).arg(&b),
    )?;
    let vals = (activated * lanes * 4) as u64;
    let bytes = dev.finish(
        "reading the activations",
        &[
            (&w.delta[0], 0, vals),
            (&w.delta[1], 0, vals),
            (&w.lists, u64::from(activated_off) * 4, activated as u64 * 4),
        ],
    )?;
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The structs have graph.cu's sizes (`Hop`: 16 words; `HopBuffers`: 9 pointers).
    #[test]
    fn launch_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<Hop>(), 64);
        assert_eq!(std::mem::size_of::<HopBuffers>(), 9 * 8);
    }
}
