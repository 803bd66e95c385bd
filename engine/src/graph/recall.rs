//! Recall (SPEC §2.3): similarity seeds, then spreading, scoring, filtering and ranking, for
//! one query or a batch. A batch is one similarity matrix product and one multi-vector
//! propagation (one lane per query); a query's result is the same bits either way, because
//! every per-query number is computed by the same expression in the same order.
//!
//! A batch runs in groups of at most [`MAX_LANES`] queries (one product and one
//! propagation per group), fewer on large graphs so that the propagation's buffers
//! (17 bytes per node and lane) stay within [`LANE_MEMORY`]; groups run one after another.
//!
//! Budget in a batch: the batch is timed as a whole from its start; a hop that would overrun
//! stops every query of the group still spreading, and each of them is `partial` (later
//! groups then find the budget spent too).

use rayon::prelude::*;

use super::accel::{Accel, MAX_DEVICE_K};
use super::budget::{BudgetGate, Clock, LatencyPredictor};
use super::error::GraphError;
use super::params::{MIN_SEED_ACTIVATION, RecallMode, RecallParams, SEED_BOOST, Seed, Tier};
use super::result::{RecallHit, RecallResult, rank};
use super::spread::{self, Scratch};
use super::{Graph, embed, on_device};

/// Queries per propagation of a batch (lanes of the multi-vector propagation).
pub const MAX_LANES: usize = 64;
/// Bytes of propagation buffers a batch group may use (at least one lane is always run).
pub const LANE_MEMORY: usize = 256 << 20;
/// Bytes of propagation state per node and lane: a, Δ(k-1), Δk, push sums (f32) and
/// first_hop (u8).
const BYTES_PER_NODE_LANE: usize = 17;

/// Queries per group for a graph of `nodes` nodes.
fn group_size(nodes: usize) -> usize {
    (LANE_MEMORY / (nodes.max(1) * BYTES_PER_NODE_LANE)).clamp(1, MAX_LANES)
}

/// Working buffers of recall calls, kept between calls.
#[derive(Debug, Default)]
pub(crate) struct RecallBufs {
    /// The normalised queries, `q × dim`.
    queries: Vec<f32>,
    /// The queries of a group times 2^112 (see `embed::dot_scaled`).
    scaled: Vec<f32>,
    /// Similarities, node-major over the embedded nodes.
    sims: Vec<f32>,
    /// Nodes activated in some lane of a group, ascending.
    activated: Vec<u32>,
    /// Per query, the top candidates the device chose (wgpu).
    top: Vec<Vec<(f32, u32)>>,
    lanes: Vec<Lane>,
}

/// Per-query buffers.
#[derive(Debug, Default)]
struct Lane {
    /// `(sim, node)` candidates for seeding.
    cands: Vec<(f32, u32)>,
    /// The seeds in rank order.
    seeds: Vec<Seed>,
    /// The sim of each seed, in the same order.
    seed_order_sims: Vec<f32>,
    /// `(node, sim)` of the seeds, by node (for lookups).
    seed_sims: Vec<(u32, f32)>,
    hits: Vec<Hit>,
}

/// A scored hit before the final cut.
#[derive(Debug, Clone, Copy)]
struct Hit {
    node: u32,
    score: f32,
    activation: f32,
    confidence: f32,
    sim: Option<f32>,
    first_hop: u32,
}

impl Graph {
    /// Recalls the nodes nearest to `query` (dimension [`dim`](Graph::dim)) per SPEC §2.3.
    ///
    /// `clock` and `predictor` drive the latency budget (`params.budget`, zero = none): the
    /// spread stops before a hop when the time since the call began plus the predictor's
    /// estimate of the hop passes the budget, and the result is `partial`. Every hop's time
    /// is fed back to the predictor.
    pub fn recall(
        &self,
        device: &crate::backend::Device,
        query: &[f32],
        params: &RecallParams,
        clock: &dyn Clock,
        predictor: &mut LatencyPredictor,
    ) -> Result<RecallResult, GraphError> {
        if query.len() != self.dim() {
            return Err(GraphError::InvalidQuery {
                index: 0,
                reason: format!(
                    "dimension {} does not match the graph's embeddings ({})",
                    query.len(),
                    self.dim()
                ),
            });
        }
        let mut results = self.recall_batch(device, query, params, clock, predictor)?;
        Ok(results.pop().expect("one query gives one result"))
    }

    /// Recalls a batch of queries given row-major (`queries.len() / dim` rows of `dim`), as
    /// one similarity product and one multi-vector propagation. Result `i` is bit-identical
    /// to [`recall`](Graph::recall) of row `i` alone, except that the budget (if any) is the
    /// batch's: a stop makes every query still spreading partial.
    pub fn recall_batch(
        &self,
        device: &crate::backend::Device,
        queries: &[f32],
        params: &RecallParams,
        clock: &dyn Clock,
        predictor: &mut LatencyPredictor,
    ) -> Result<Vec<RecallResult>, GraphError> {
        params.validate()?;
        let d = self.dim();
        if d == 0 {
            return Err(GraphError::argument(
                "--queries",
                "the graph has no embeddings; build it with --embeddings to recall",
            ));
        }
        if !queries.len().is_multiple_of(d) {
            return Err(GraphError::argument(
                "--queries",
                format!(
                    "{} values is not a whole number of rows of dimension {d}",
                    queries.len()
                ),
            ));
        }
        let q = queries.len() / d;
        let start = clock.now();
        let mut work = self.take_work();
        let bufs = &mut work.recall;
        bufs.queries.clear();
        bufs.queries.extend_from_slice(queries);
        for (index, row) in bufs.queries.chunks_exact_mut(d).enumerate() {
            match embed::normalise(row) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = "the query is a zero vector; it has no direction".to_string();
                    self.return_work(work);
                    return Err(GraphError::InvalidQuery { index, reason });
                }
                Err(problem) => {
                    let reason = problem.to_string();
                    self.return_work(work);
                    return Err(GraphError::InvalidQuery { index, reason });
                }
            }
        }
        let _span = tracing::debug_span!("graph_recall", queries = q).entered();
        let gpu = Accel::of(device);
        let results = on_device(device, |threads| {
            let super::Work { spread: s, recall } = &mut work;
            let mut results = Vec::with_capacity(q);
            let size = group_size(self.node_count());
            for first in (0..q).step_by(size) {
                let group = first..(first + size).min(q);
                let exec = Exec { threads, gpu };
                let r = run(
                    self, recall, s, group, params, exec, clock, predictor, start,
                );
                match r {
                    Ok(r) => results.extend(r),
                    Err(e) => {
                        s.reset();
                        return Err(e);
                    }
                }
            }
            Ok(results)
        });
        self.return_work(work);
        results
    }
}

/// Where a group's device work runs: the CPU pool's threads, or a GPU.
#[derive(Clone, Copy)]
struct Exec<'d> {
    threads: usize,
    gpu: Option<Accel<'d>>,
}

#[allow(clippy::too_many_arguments)]
fn run(
    graph: &Graph,
    bufs: &mut RecallBufs,
    s: &mut Scratch,
    group: std::ops::Range<usize>,
    params: &RecallParams,
    exec: Exec<'_>,
    clock: &dyn Clock,
    predictor: &mut LatencyPredictor,
    start: std::time::Duration,
) -> Result<Vec<RecallResult>, GraphError> {
    let d = graph.dim();
    let q = group.len();
    let queries = &bufs.queries[group.start * d..group.end * d];
    if bufs.lanes.len() < q {
        bufs.lanes.resize_with(q, Lane::default);
    }
    match exec.gpu {
        // The device chooses every query's candidates; only those come back.
        Some(g) if params.seeds_k <= MAX_DEVICE_K => {
            let (k, theta) = (params.seeds_k, params.sim_threshold);
            g.top_candidates(graph, queries, q, k, theta, &mut bufs.top)?;
            for (lane, top) in bufs.lanes.iter_mut().zip(&mut bufs.top) {
                std::mem::swap(&mut lane.cands, top);
                seeds_from_candidates(lane, params);
            }
        }
        gpu => {
            match gpu {
                Some(g) => g.similarities(graph, queries, q, &mut bufs.sims)?,
                None => graph
                    .emb
                    .similarities(queries, q, &mut bufs.scaled, &mut bufs.sims),
            }
            let lanes = &mut bufs.lanes[..q];
            let sims = &bufs.sims[..];
            let embedded = &graph.emb.embedded[..];
            if q == 1 {
                choose_seeds(&mut lanes[0], 0, 1, sims, embedded, params);
            } else {
                lanes
                    .par_iter_mut()
                    .enumerate()
                    .for_each(|(i, lane)| choose_seeds(lane, i, q, sims, embedded, params));
            }
        }
    }
    let lanes = &mut bufs.lanes[..q];

    if params.mode == RecallMode::Similarity {
        let one = |lane: &mut Lane| similarity_result(graph, lane, params);
        return Ok(if q == 1 {
            vec![one(&mut lanes[0])]
        } else {
            lanes.par_iter_mut().map(one).collect()
        });
    }

    let mut gate = BudgetGate::new(clock, predictor, params.budget, start);
    let lanes_ro: &[Lane] = lanes;
    let seeds = |i: usize| &lanes_ro[i].seeds[..];
    let outcome = match exec.gpu {
        Some(g) => g.propagate(graph, s, q, &seeds, &params.spread, &mut gate)?,
        None => spread::propagate(graph, s, q, &seeds, &params.spread, exec.threads, &mut gate),
    };
    // The nodes any lane activated, found in one pass over the node-major state, so that
    // each lane's results visit those rather than every node (with many lanes, a lane's
    // column of every node touches a cache line per node).
    let activated = &mut bufs.activated;
    activated.clear();
    if q > 1 {
        for (v, row) in s.a.chunks_exact(q).enumerate() {
            if row.iter().any(|&a| a > 0.0) {
                activated.push(v as u32);
            }
        }
    }
    let s_ro: &Scratch = s;
    let activated: &[u32] = activated;
    let one = |(i, lane): (usize, &mut Lane)| {
        let mut r = spreading_result(graph, lane, s_ro, i, activated, params);
        // A query that had finished before the budget stopped the group is complete.
        r.partial = outcome.partial && !s_ro.stopped[i];
        r
    };
    let results = if q == 1 {
        vec![one((0, &mut lanes[0]))]
    } else {
        lanes.par_iter_mut().enumerate().map(one).collect()
    };
    s.reset();
    Ok(results)
}

/// The top `seeds_k` embedded nodes by similarity (ties by id) with sim >= θs, and their
/// a0; seeds with a0 < 0.01 dropped.
fn choose_seeds(
    lane: &mut Lane,
    i: usize,
    q: usize,
    sims: &[f32],
    embedded: &[u32],
    params: &RecallParams,
) {
    let theta = params.sim_threshold;
    lane.cands.clear();
    for (j, &v) in embedded.iter().enumerate() {
        let sim = sims[j * q + i];
        if sim >= theta {
            lane.cands.push((sim, v));
        }
    }
    let by_rank = |a: &(f32, u32), b: &(f32, u32)| rank(a.0, a.1, b.0, b.1);
    if lane.cands.len() > params.seeds_k {
        lane.cands
            .select_nth_unstable_by(params.seeds_k - 1, by_rank);
        lane.cands.truncate(params.seeds_k);
    }
    lane.cands.sort_unstable_by(by_rank);
    seeds_from_candidates(lane, params);
}

/// The seeds and their a0 from `lane.cands`, the top candidates in rank order; seeds with
/// a0 < 0.01 dropped.
fn seeds_from_candidates(lane: &mut Lane, params: &RecallParams) {
    lane.seeds.clear();
    lane.seed_order_sims.clear();
    lane.seed_sims.clear();
    for &(sim, v) in &lane.cands {
        let a0 = params.seed_activation(sim);
        if a0 < MIN_SEED_ACTIVATION {
            continue;
        }
        lane.seeds.push(Seed::new(v, a0));
        lane.seed_order_sims.push(sim);
        lane.seed_sims.push((v, sim));
    }
    lane.seed_sims.sort_unstable_by_key(|&(v, _)| v);
}

/// Keeps the first `k` hits of `hits` by score descending, node ascending, as results.
fn finish(graph: &Graph, hits: &mut [Hit], k: usize) -> Vec<RecallHit> {
    let by_rank = |a: &Hit, b: &Hit| rank(a.score, a.node, b.score, b.node);
    let hits = if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, by_rank);
        &mut hits[..k]
    } else {
        hits
    };
    hits.sort_unstable_by(by_rank);
    hits.iter()
        .map(|h| RecallHit {
            node: h.node,
            label: graph.label_arc(h.node),
            score: h.score,
            activation: h.activation,
            confidence: h.confidence,
            sim: h.sim,
            first_hop: h.first_hop,
        })
        .collect()
}

/// Similarity mode: score = sim, activation = confidence = a0, first_hop 0.
fn similarity_result(graph: &Graph, lane: &mut Lane, params: &RecallParams) -> RecallResult {
    lane.hits.clear();
    for (seed, &sim) in lane.seeds.iter().zip(&lane.seed_order_sims) {
        if seed.a0 >= params.min_confidence {
            lane.hits.push(Hit {
                node: seed.node,
                score: sim,
                activation: seed.a0,
                confidence: seed.a0,
                sim: Some(sim),
                first_hop: 0,
            });
        }
    }
    RecallResult {
        hits: finish(graph, &mut lane.hits, params.k),
        partial: false,
        hops_done: 0,
    }
}

impl Lane {
    fn sim_of(&self, v: u32) -> Option<f32> {
        self.seed_sims
            .binary_search_by_key(&v, |&(n, _)| n)
            .ok()
            .map(|i| self.seed_sims[i].1)
    }
}

/// Spreading and hybrid modes: every activated node of lane `i`, scored and filtered.
/// `activated` lists (ascending) the nodes activated in some lane when there are several;
/// a single lane scans every node.
fn spreading_result(
    graph: &Graph,
    lane: &mut Lane,
    s: &Scratch,
    i: usize,
    activated: &[u32],
    params: &RecallParams,
) -> RecallResult {
    let lanes = s.lanes();
    lane.hits.clear();
    if lanes == 1 {
        for (v, &a) in s.a[..graph.node_count()].iter().enumerate() {
            if a > 0.0 {
                score_hit(lane, s, v, v, a, params);
            }
        }
    } else {
        for &v in activated {
            let at = v as usize * lanes + i;
            let a = s.a[at];
            if a > 0.0 {
                score_hit(lane, s, v as usize, at, a, params);
            }
        }
    }
    RecallResult {
        hits: finish(graph, &mut lane.hits, params.k),
        partial: false,
        hops_done: s.hops_done[i],
    }
}

/// Scores node `v` (state index `at`, activation `a > 0`) for a lane and keeps it if its
/// confidence passes `min_confidence`.
#[inline]
fn score_hit(lane: &mut Lane, s: &Scratch, v: usize, at: usize, a: f32, params: &RecallParams) {
    let hybrid = params.mode == RecallMode::Hybrid;
    let spread = &params.spread;
    let first_hop = u32::from(s.first_hop[at]);
    let mut confidence = a * spread.factor(Tier::of_hop(first_hop));
    let sim = lane.sim_of(v as u32);
    if sim.is_some() {
        confidence = (confidence * SEED_BOOST).min(1.0);
    }
    let mut score = a * confidence;
    if let (true, Some(sim)) = (hybrid, sim) {
        score = (score + sim) / 2.0;
    }
    if confidence >= params.min_confidence {
        lane.hits.push(Hit {
            node: v as u32,
            score,
            activation: a,
            confidence,
            sim,
            first_hop,
        });
    }
}
