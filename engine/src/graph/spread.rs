//! The propagation engine of SPEC §2.2 on the CPU: synchronous hops over the CSR graph,
//! for one or many activation vectors at once ("lanes": lane q of node v lives at
//! `v * lanes + q`, so a batch of recalls is one multi-vector propagation).
//!
//! Each hop is evaluated either by **pull** (every node sums over its in-edges, read from the
//! transpose in ascending source order) or by **push** (the frontier, in ascending node
//! order, scatters over its out-edges). Both add the contributions to a node in ascending
//! source order — the only order SPEC §2.2 allows — so they give the same bits. Work is split
//! by *destination* ranges: each partition owns a contiguous range of nodes and writes only
//! its own state, so no two tasks touch the same accumulator and the result does not depend
//! on the number of threads. Push partitions each read the whole frontier and keep the edges
//! into their range.
//!
//! Buffers live in a [`Scratch`] that the graph keeps between calls; a call leaves it zeroed.

use rayon::prelude::*;

use super::Graph;
use super::params::{Evaluation, MAX_HOPS, Seed, SpreadParams, Tier};

/// `first_hop` of a node that has no activation yet.
pub(crate) const UNSET: u8 = u8::MAX;

/// Nodes per pull partition at least (smaller graphs run as one partition).
const PULL_MIN_NODES: usize = 1024;
/// Pull partitions per worker thread (work stealing evens out skewed in-degrees).
const PULL_PARTS_PER_THREAD: usize = 8;
/// Frontier edge-lanes below which a push runs as one partition on the calling thread.
const PUSH_MIN_PARALLEL_EDGES: u64 = 16 * 1024;
/// Push while the frontier's out-edges are below `1 / PUSH_FRACTION` of all edges.
const PUSH_FRACTION: u64 = 8;

/// How one hop is evaluated, with the size of the work: the predictor's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopPlan {
    /// The hop, 1..=H.
    pub hop: u32,
    /// Push or pull.
    pub method: HopMethod,
    /// Edge-lanes the method reads: push, the frontier's out-edges × lanes; pull, all
    /// edges × lanes.
    pub edges: u64,
    /// Node-lanes the method visits: push, the frontier × lanes; pull, all nodes × lanes.
    pub nodes: u64,
}

/// The two evaluation methods of a hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HopMethod {
    /// Push: each frontier node adds its contribution to its out-neighbours.
    Push,
    /// Pull: each node sums its in-neighbours' contributions over the transpose.
    Pull,
}

/// Decides, before each hop, whether to run it (the latency budget), and sees what it cost.
pub(crate) trait HopGate {
    /// `false` stops the propagation before `plan.hop` (the result is partial).
    fn before_hop(&mut self, plan: &HopPlan) -> bool;
    /// Called after the hop of [`before_hop`](HopGate::before_hop) ran.
    fn after_hop(&mut self, plan: &HopPlan);
}

/// A gate that runs every hop.
pub(crate) struct NoGate;

impl HopGate for NoGate {
    fn before_hop(&mut self, _: &HopPlan) -> bool {
        true
    }
    fn after_hop(&mut self, _: &HopPlan) {}
}

/// Buffers of one partition of a hop.
#[derive(Debug, Default)]
struct Part {
    /// Push: destinations touched in this hop (then sorted).
    touched: Vec<u32>,
    /// Nodes of the partition whose Δk is non-zero in some lane, ascending.
    frontier: Vec<u32>,
    /// Per lane: some Δk of the partition is non-zero.
    alive: Vec<bool>,
    /// Pull with several lanes: the running sums of one node.
    sums: Vec<f32>,
    /// Push with several lanes: `(lane, Δ)` of the lanes of one source with Δ > 0.
    on: Vec<(u32, f32)>,
}

/// Working state of a propagation over `nodes × lanes` activations. Zeroed between calls.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    nodes: usize,
    lanes: usize,
    /// `a[v * lanes + q]`.
    pub a: Vec<f32>,
    /// Δ(k-1): zero except at `frontier` nodes.
    cur: Vec<f32>,
    /// Δk being built: all zero at the start of a hop.
    next: Vec<f32>,
    /// Push accumulators: zero except at touched nodes during a hop.
    sum: Vec<f32>,
    /// Push: node touched in this hop.
    touched: Vec<bool>,
    /// Pull with several lanes: node is in the frontier (set during a hop only).
    in_frontier: Vec<bool>,
    /// `first_hop[v * lanes + q]`, `UNSET` when a is 0.
    pub first_hop: Vec<u8>,
    /// Nodes with a non-zero Δ(k-1) in some lane, ascending.
    frontier: Vec<u32>,
    parts: Vec<Part>,
    /// Per lane: the last hop evaluated while the lane was running.
    pub hops_done: Vec<u32>,
    /// Per lane: Δ became all zero (the lane is finished).
    pub stopped: Vec<bool>,
}

impl Scratch {
    /// Sizes the buffers for `nodes × lanes` (they are all zero / unset already).
    pub(crate) fn prepare(&mut self, nodes: usize, lanes: usize) {
        let n = nodes * lanes;
        self.nodes = nodes;
        self.lanes = lanes;
        for v in [&mut self.a, &mut self.cur, &mut self.next, &mut self.sum] {
            v.truncate(n);
            v.resize(n, 0.0);
        }
        self.first_hop.truncate(n);
        self.first_hop.resize(n, UNSET);
        self.touched.truncate(nodes);
        self.touched.resize(nodes, false);
        self.in_frontier.truncate(nodes);
        self.in_frontier.resize(nodes, false);
        self.frontier.clear();
        self.hops_done.clear();
        self.hops_done.resize(lanes, 0);
        self.stopped.clear();
        self.stopped.resize(lanes, false);
    }

    /// Returns every buffer to zero / unset for the next call.
    pub fn reset(&mut self) {
        let nodes = self.nodes;
        let lanes = self.lanes;
        if nodes * lanes >= 1 << 16 {
            self.a.par_iter_mut().for_each(|x| *x = 0.0);
            self.first_hop.par_iter_mut().for_each(|x| *x = UNSET);
        } else {
            self.a.fill(0.0);
            self.first_hop.fill(UNSET);
        }
        for &u in &self.frontier {
            let u = u as usize;
            self.cur[u * lanes..(u + 1) * lanes].fill(0.0);
        }
        self.frontier.clear();
    }

    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// After [`seed`]: the seeded nodes, ascending, leaving `a` and `first_hop` seeded but
    /// Δ0 and the frontier empty again (a device propagation keeps those on the device).
    pub(crate) fn take_seeded(&mut self) -> Vec<u32> {
        let lanes = self.lanes;
        for &u in &self.frontier {
            let u = u as usize;
            self.cur[u * lanes..(u + 1) * lanes].fill(0.0);
        }
        std::mem::take(&mut self.frontier)
    }
}

/// What a propagation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The gate stopped it before a hop.
    pub partial: bool,
}

/// Runs SPEC §2.2 for `lanes` seed lists at once (`seeds(q)` gives lane q's seeds) and
/// leaves `a`, `first_hop` and `hops_done` in `scratch`. Parameters and seeds are already
/// validated. Runs on the current rayon pool; `threads` sizes the partitions.
pub(crate) fn propagate<'s>(
    graph: &Graph,
    scratch: &mut Scratch,
    lanes: usize,
    seeds: &dyn Fn(usize) -> &'s [Seed],
    params: &SpreadParams,
    threads: usize,
    gate: &mut dyn HopGate,
) -> Outcome {
    let n = graph.node_count();
    scratch.prepare(n, lanes);
    seed(scratch, lanes, seeds, params.threshold(Tier::Hot));

    let mut decay = [0.0f32; MAX_HOPS as usize];
    for k in 1..=params.max_hops {
        decay[k as usize - 1] = params.decay.factor(k);
    }
    let mut outcome = Outcome { partial: false };
    for k in 1..=params.max_hops {
        let plan = plan_hop(graph, scratch, k, params.evaluation, lanes);
        if !gate.before_hop(&plan) {
            outcome.partial = true;
            break;
        }
        let rule = HopRule {
            hop: k as u8,
            dk: decay[k as usize - 1],
            theta: params.threshold(Tier::of_hop(k)),
            refractory: params.refractory,
        };
        run_hop(graph, scratch, &rule, &plan, threads);
        gate.after_hop(&plan);
        let mut running = false;
        for q in 0..lanes {
            if scratch.stopped[q] {
                continue;
            }
            scratch.hops_done[q] = k;
            let alive = scratch.parts.iter().any(|p| p.alive[q]);
            scratch.stopped[q] = !alive;
            running |= alive;
        }
        if !running {
            break;
        }
    }
    outcome
}

/// `a[v] = min(1, a[v] + a0)` for each seed in order (a0 < θ(Hot) ignored), Δ0 = a,
/// first_hop = 0 where a > 0.
pub(crate) fn seed<'s>(
    scratch: &mut Scratch,
    lanes: usize,
    seeds: &dyn Fn(usize) -> &'s [Seed],
    hot: f32,
) {
    for q in 0..lanes {
        for s in seeds(q) {
            if s.a0 < hot {
                continue;
            }
            let i = s.node as usize * lanes + q;
            scratch.a[i] = (scratch.a[i] + s.a0).min(1.0);
            scratch.frontier.push(s.node);
        }
    }
    scratch.frontier.sort_unstable();
    scratch.frontier.dedup();
    for &v in &scratch.frontier {
        let base = v as usize * lanes;
        for i in base..base + lanes {
            if scratch.a[i] > 0.0 {
                scratch.cur[i] = scratch.a[i];
                scratch.first_hop[i] = 0;
            }
        }
    }
}

/// Chooses push or pull for hop k and sizes its work.
fn plan_hop(graph: &Graph, scratch: &Scratch, k: u32, eval: Evaluation, lanes: usize) -> HopPlan {
    let frontier_edges: u64 = scratch
        .frontier
        .iter()
        .map(|&u| u64::from(graph.out.degree(u)))
        .sum();
    hop_plan(
        graph,
        k,
        eval,
        scratch.frontier.len(),
        frontier_edges,
        lanes as u64,
    )
}

/// The plan of hop k from the frontier's size (nodes, and their out-edges): push while the
/// frontier's out-edges are a small part of the graph (or as `eval` demands), else pull.
pub(crate) fn hop_plan(
    graph: &Graph,
    k: u32,
    eval: Evaluation,
    frontier: usize,
    frontier_edges: u64,
    lanes: u64,
) -> HopPlan {
    let total_edges = graph.edge_count() as u64;
    let method = match eval {
        Evaluation::Push => HopMethod::Push,
        Evaluation::Pull => HopMethod::Pull,
        Evaluation::Auto => {
            if frontier_edges * PUSH_FRACTION < total_edges + graph.node_count() as u64 {
                HopMethod::Push
            } else {
                HopMethod::Pull
            }
        }
    };
    match method {
        HopMethod::Push => HopPlan {
            hop: k,
            method,
            edges: frontier_edges * lanes,
            nodes: frontier as u64 * lanes,
        },
        HopMethod::Pull => HopPlan {
            hop: k,
            method,
            edges: total_edges * lanes,
            nodes: graph.node_count() as u64 * lanes,
        },
    }
}

/// The constants of one hop.
struct HopRule {
    hop: u8,
    /// D(k).
    dk: f32,
    /// θ(tier(k)).
    theta: f32,
    refractory: bool,
}

/// The state one partition may write: its node range of every per-node array.
struct PartState<'a> {
    /// First node of the range.
    lo: usize,
    a: &'a mut [f32],
    next: &'a mut [f32],
    first_hop: &'a mut [u8],
    sum: &'a mut [f32],
    touched: &'a mut [bool],
    part: &'a mut Part,
}

/// Evaluates one hop: Δ(k-1) in `cur` (non-zero only on `frontier`) gives Δk, then Δk
/// becomes `cur` and its non-zero nodes the new `frontier`.
fn run_hop(graph: &Graph, s: &mut Scratch, rule: &HopRule, plan: &HopPlan, threads: usize) {
    let n = s.nodes;
    let lanes = s.lanes;
    let method = plan.method;
    let parts = match method {
        HopMethod::Pull => (n / PULL_MIN_NODES).clamp(1, threads * PULL_PARTS_PER_THREAD),
        HopMethod::Push => {
            if plan.edges < PUSH_MIN_PARALLEL_EDGES {
                1
            } else {
                threads.clamp(1, n.max(1))
            }
        }
    };
    let chunk = n.div_ceil(parts).max(1);
    let parts = n.div_ceil(chunk).max(1);
    if s.parts.len() < parts {
        s.parts.resize_with(parts, Part::default);
    }
    for p in &mut s.parts {
        p.alive.clear();
        p.alive.resize(lanes, false);
        p.frontier.clear();
        if p.sums.len() != lanes {
            p.sums.resize(lanes, 0.0);
        }
    }

    // A pull over several lanes skips sources outside the frontier (all their lanes are
    // zero) with one flag test instead of a pass over their lanes.
    let flag_frontier = method == HopMethod::Pull && lanes > 1;
    if flag_frontier {
        for &u in &s.frontier {
            s.in_frontier[u as usize] = true;
        }
    }
    let cur = &s.cur[..];
    let frontier = &s.frontier[..];
    let in_frontier = &s.in_frontier[..];
    let run = |st: PartState<'_>| match method {
        HopMethod::Pull => pull_part(graph, cur, in_frontier, lanes, rule, st),
        HopMethod::Push => push_part(graph, cur, frontier, lanes, rule, st),
    };
    if parts == 1 {
        run(PartState {
            lo: 0,
            a: &mut s.a,
            next: &mut s.next,
            first_hop: &mut s.first_hop,
            sum: &mut s.sum,
            touched: &mut s.touched,
            part: &mut s.parts[0],
        });
    } else {
        let cl = chunk * lanes;
        s.a.par_chunks_mut(cl)
            .zip(s.next.par_chunks_mut(cl))
            .zip(s.first_hop.par_chunks_mut(cl))
            .zip(s.sum.par_chunks_mut(cl))
            .zip(s.touched.par_chunks_mut(chunk))
            .zip(s.parts[..parts].par_iter_mut())
            .enumerate()
            .for_each(|(i, (((((a, next), first_hop), sum), touched), part))| {
                run(PartState {
                    lo: i * chunk,
                    a,
                    next,
                    first_hop,
                    sum,
                    touched,
                    part,
                });
            });
    }

    if flag_frontier {
        for &u in &s.frontier {
            s.in_frontier[u as usize] = false;
        }
    }
    // Δ(k-1) is spent: zero it where it was non-zero, then Δk becomes current.
    if frontier.len() * 4 > n {
        s.cur.par_iter_mut().for_each(|x| *x = 0.0);
    } else {
        for &u in &s.frontier {
            let u = u as usize;
            s.cur[u * lanes..(u + 1) * lanes].fill(0.0);
        }
    }
    std::mem::swap(&mut s.cur, &mut s.next);
    s.frontier.clear();
    for p in &s.parts[..parts] {
        s.frontier.extend_from_slice(&p.frontier);
    }
}

/// Applies the sum `sum` of lane q of node `v` (local index `li` in the partition):
/// SPEC §2.2's update. Returns whether Δk is non-zero.
#[inline]
fn apply(st: &mut PartState<'_>, i: usize, q: usize, sum: f32, rule: &HopRule) -> bool {
    let old = st.a[i];
    if sum > 0.0 && !(rule.refractory && old > 0.0) {
        let new = (old + sum).min(1.0);
        let delta = new - old;
        st.a[i] = new;
        st.next[i] = delta;
        if st.first_hop[i] == UNSET {
            st.first_hop[i] = rule.hop;
        }
        if delta > 0.0 {
            st.part.alive[q] = true;
            return true;
        }
    }
    false
}

/// The contribution `c = (Δ · w') · D(k)` of one edge if `c >= θ`, else +0.
///
/// Pull adds this for *every* in-edge, without testing `Δ > 0` first: that gives the same
/// bits as adding only the kept contributions of active sources, because an inactive
/// source has Δ = +0, so `c = +0` (w' and D(k) are finite and >= 0), and a rejected
/// contribution is +0 as well; adding +0 leaves a sum unchanged unless the sum is -0, and a
/// sum that starts at +0 and adds only values >= +0 never is. Without the data-dependent
/// branches (taken about half the time on a large frontier) the loop runs about twice as
/// fast, and the lanes of a batch vectorise.
#[inline(always)]
fn kept(d: f32, w: f32, dk: f32, theta: f32) -> f32 {
    let c = (d * w) * dk;
    if c >= theta { c } else { 0.0 }
}

/// Pull over the partition's nodes: each sums its in-edges in ascending source order. With
/// several lanes, `in_frontier` flags the sources that have a non-zero Δ in some lane.
fn pull_part(
    graph: &Graph,
    cur: &[f32],
    in_frontier: &[bool],
    lanes: usize,
    rule: &HopRule,
    mut st: PartState<'_>,
) {
    let count = st.touched.len();
    let (dk, theta) = (rule.dk, rule.theta);
    for li in 0..count {
        let v = st.lo + li;
        let (srcs, ws) = graph.inc.row(v as u32);
        let mut active = false;
        if lanes == 1 {
            let mut s = 0.0f32;
            for (&u, &w) in srcs.iter().zip(ws) {
                s += kept(cur[u as usize], w, dk, theta);
            }
            active = apply(&mut st, li, 0, s, rule);
        } else {
            let mut sums = std::mem::take(&mut st.part.sums);
            sums.fill(0.0);
            for (&u, &w) in srcs.iter().zip(ws) {
                if !in_frontier[u as usize] {
                    continue;
                }
                let base = u as usize * lanes;
                for (s, &d) in sums.iter_mut().zip(&cur[base..base + lanes]) {
                    *s += kept(d, w, dk, theta);
                }
            }
            for (q, &s) in sums.iter().enumerate() {
                active |= apply(&mut st, li * lanes + q, q, s, rule);
            }
            st.part.sums = sums;
        }
        if active {
            st.part.frontier.push(v as u32);
        }
    }
}

/// Push from the whole frontier (ascending) into the partition's node range, then apply the
/// sums of the touched nodes in ascending order.
fn push_part(
    graph: &Graph,
    cur: &[f32],
    frontier: &[u32],
    lanes: usize,
    rule: &HopRule,
    mut st: PartState<'_>,
) {
    let lo = st.lo as u32;
    let count = st.touched.len() as u32;
    let (dk, theta) = (rule.dk, rule.theta);
    let mut touched = std::mem::take(&mut st.part.touched);
    touched.clear();
    // The lanes of the source with Δ > 0, listed once per source rather than tested again
    // at every out-edge (a batch's sources are active in a few of its lanes).
    let mut on = std::mem::take(&mut st.part.on);
    for &u in frontier {
        let (targets, ws) = graph.out.row(u);
        let base = u as usize * lanes;
        on.clear();
        for (q, &d) in cur[base..base + lanes].iter().enumerate() {
            if d > 0.0 {
                on.push((q as u32, d));
            }
        }
        for (&v, &w) in targets.iter().zip(ws) {
            let li = v.wrapping_sub(lo);
            if li >= count {
                continue;
            }
            let li = li as usize;
            for &(q, d) in &on {
                let c = (d * w) * dk;
                if c >= theta {
                    if !st.touched[li] {
                        st.touched[li] = true;
                        touched.push(v);
                    }
                    st.sum[li * lanes + q as usize] += c;
                }
            }
        }
    }
    st.part.on = on;
    touched.sort_unstable();
    for &v in &touched {
        let li = (v - lo) as usize;
        st.touched[li] = false;
        let mut active = false;
        for q in 0..lanes {
            let i = li * lanes + q;
            let s = st.sum[i];
            st.sum[i] = 0.0;
            active |= apply(&mut st, i, q, s, rule);
        }
        if active {
            st.part.frontier.push(v);
        }
    }
    st.part.touched = touched;
}
