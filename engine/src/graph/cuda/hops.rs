//! Spreading on the CUDA device: the device steps of `device_order` (seed, hop, gather) as
//! launches of `kernels/graph.cu`, the siblings of the wgpu dispatches in `gpu::hops`.
#![allow(unsafe_code)]

use cudarc::driver::{CudaFunction, DeviceRepr};

use super::{FILE, Resident, THREADS, invocations};
use crate::backend::cuda::{Args, CudaDevice, DeviceBuffer, grid};
use crate::graph::Graph;
use crate::graph::device_order::{
    self, ACTIVATED_COUNT, Hop, HopDevice, STATS_WORDS, Seeding, give_back, list_offsets,
    take_fitting,
};
use crate::graph::error::GraphError;
use crate::graph::params::{Seed, SpreadParams};
use crate::graph::spread::{HopGate, HopMethod, Outcome, Scratch};

pub(super) const KERNELS: &[&str] = &[
    "pull_all",
    "mark_targets",
    "pull_touched",
    "retire",
    "seed",
    "gather",
];

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

// SAFETY: plain `#[repr(C)]` values laid out as graph.cu's `Hop`.
unsafe impl DeviceRepr for Hop {}
// SAFETY: as above, `HopBuffers`; addresses are u64 like CUDA's 64-bit pointers.
unsafe impl DeviceRepr for HopBuffers {}

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
        match take_fitting(&res.hop_work, |w: &HopWork| w.lanes >= lanes) {
            Some(w) => Ok(w),
            None => HopWork::new(&res.dev, n, lanes),
        }
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

/// SPEC §2.2 for `lanes` seed lists at once on the device (`device_order::propagate`).
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
    let outcome = CudaHops::new(&res, &mut work, n, lanes).and_then(|mut hops| {
        device_order::propagate(graph, &mut hops, scratch, lanes, seeds, params, gate)
    });
    if outcome.is_ok() {
        give_back(&res.hop_work, work);
    }
    outcome
}

/// One spread's device side: the work buffers and the kernels.
struct CudaHops<'a> {
    res: &'a Resident,
    w: &'a mut HopWork,
    n: usize,
    lanes: usize,
    pull_all: CudaFunction,
    mark: CudaFunction,
    pull_touched: CudaFunction,
    retire: CudaFunction,
    seed: CudaFunction,
    gather: CudaFunction,
}

impl<'a> CudaHops<'a> {
    fn new(
        res: &'a Resident,
        w: &'a mut HopWork,
        n: usize,
        lanes: usize,
    ) -> Result<CudaHops<'a>, GraphError> {
        let kernel = |name| res.dev.function(FILE, name);
        Ok(CudaHops {
            pull_all: kernel("pull_all")?,
            mark: kernel("mark_targets")?,
            pull_touched: kernel("pull_touched")?,
            retire: kernel("retire")?,
            seed: kernel("seed")?,
            gather: kernel("gather")?,
            res,
            w,
            n,
            lanes,
        })
    }
}

impl HopDevice for CudaHops<'_> {
    fn seed(&mut self, seeding: &Seeding<'_>) -> Result<(), GraphError> {
        let (dev, w) = (&self.res.dev, &mut *self.w);
        let nl = (self.n * self.lanes) as u64 * 4;
        dev.zero(&w.delta[0], 0, nl)?;
        dev.zero(&w.delta[1], 0, nl)?;
        dev.zero(&w.state, 0, 2 * nl)?;
        dev.zero(&w.lists, 0, (self.n * 4) as u64)?;
        dev.zero(&w.stats, 0, w.stats.bytes())?;
        let entries = seeding.entries;
        if w.seeds.as_ref().is_none_or(|s| s.1 < entries.len()) {
            let cap = entries.len().next_power_of_two().max(64);
            w.seeds = Some((dev.buffer("seeds", (cap * 8) as u64)?, cap));
        }
        let (seed_buf, _) = w.seeds.as_ref().expect("sized above");
        dev.write(seed_buf, 0, entries)?;
        let (frontier_off, _, activated_off) = list_offsets(self.n);
        for at in [frontier_off[0], activated_off] {
            dev.write(&w.lists, u64::from(at) * 4, seeding.nodes)?;
        }
        let activated = [seeding.nodes.len() as u32];
        dev.write(&w.stats, (ACTIVATED_COUNT * 4) as u64, &activated)?;
        // The seeds write Δ(0), the `cur` of hop 1.
        let b = w.buffers(self.res, 1);
        let seeds = seed_buf.ptr();
        let args = Args::new().arg(&seeding.hop).arg(&b).arg(&seeds);
        let cfg = grid(entries.len() as u64, THREADS);
        dev.launch("launching the seeds", &self.seed, cfg, args)?;
        Ok(())
    }

    fn hop(
        &mut self,
        h: &Hop,
        method: HopMethod,
        touched_bound: u64,
    ) -> Result<Vec<u32>, GraphError> {
        let (dev, w) = (&self.res.dev, &*self.w);
        let b = w.buffers(self.res, h.hop as usize);
        let lanes = self.lanes as u64;
        let what = "launching a spreading hop";
        // The counters of the frontier being built, the touched count, the flags.
        dev.zero(&w.stats, 0, 12)?;
        dev.zero(&w.stats, (STATS_WORDS * 4) as u64, lanes * 4)?;
        let launch = |f: &CudaFunction, count: u64| {
            dev.launch(what, f, grid(count, THREADS), Args::new().arg(h).arg(&b))
        };
        match method {
            HopMethod::Pull => launch(&self.pull_all, self.n as u64 * lanes)?,
            HopMethod::Push => {
                launch(&self.mark, u64::from(h.frontier_len))?;
                launch(&self.pull_touched, touched_bound)?;
            }
        }
        launch(&self.retire, u64::from(h.frontier_len) * lanes)?;
        let stats_bytes = (STATS_WORDS as u64 + lanes) * 4;
        let bytes = dev.finish("reading a hop's counters", &[(&w.stats, 0, stats_bytes)])?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn gather(&mut self, h: &Hop, activated: usize) -> Result<Vec<u32>, GraphError> {
        let (dev, w) = (&self.res.dev, &*self.w);
        // `cur` = delta[0], `next` = delta[1].
        let b = w.buffers(self.res, 1);
        let cfg = grid((activated * self.lanes) as u64, THREADS);
        let args = Args::new().arg(h).arg(&b);
        dev.launch("gathering the activations", &self.gather, cfg, args)?;
        let vals = (activated * self.lanes * 4) as u64;
        let nodes_at = u64::from(h.activated_off) * 4;
        let bytes = dev.finish(
            "reading the activations",
            &[
                (&w.delta[0], 0, vals),
                (&w.delta[1], 0, vals),
                (&w.lists, nodes_at, activated as u64 * 4),
            ],
        )?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `HopBuffers` has graph.cu's size (9 pointers; `Hop` is checked in device_order).
    #[test]
    fn launch_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<HopBuffers>(), 9 * 8);
    }
}
