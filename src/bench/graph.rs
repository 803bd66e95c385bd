//! Activation graphs (SPEC §7 row 4): recall and spreading on a Barabási–Albert graph of 10k
//! nodes and ~100k edges, beside two peers in the same run: a straightforward sequential
//! implementation of SPEC §2.2 ([`SequentialSpread`], one thread, pull over the transpose
//! every hop) and the same hops done with the `sprs` crate's CSR mat-vec ([`SprsSpread`]).
//!
//! Measured in one run, repeats interleaved:
//! - single recall latency over every query, one call each, with no budget (the full work),
//!   P50/P95/P99/max, held to the bar P95 < 1 ms; and the same with the default 10 ms budget,
//!   counting partial results (whose predictor's accuracy is reported too);
//! - where a single recall's time goes: the similarity-only recall of the same queries and
//!   the spread of the seeds it picks, each timed alone;
//! - batched recall throughput for several batch sizes;
//! - spreads from the seeds a recall picks (small frontiers) and from 1,000 seeds (a large
//!   frontier), on warpgrid, the sequential reference and sprs;
//! - recalls through the host's recall queue (`warpgrid_host::recall`): client threads each
//!   keeping a few recalls in flight, the queue coalescing them into batches whose size it
//!   adapts to a P95 target; one run after the repeats, every result checked.
//!
//! Correctness is part of the bench: the sequential reference must give warpgrid's spread
//! results bit for bit, batched recalls must equal single ones, and a budgeted recall that
//! was not cut short must equal the unbudgeted one; any difference fails the run.
//!
//! The sprs peer is the "same hops" in cost (a mat-vec of the transposed effective weights
//! per hop, then SPEC §2.2's update), not the same math: a mat-vec sums *every* incoming
//! contribution, so it cannot drop the single contributions `c < θ` that SPEC §2.2 drops.
//! It keeps a node's sum when the sum reaches θ instead, and multiplies by `D(k)` once per
//! sum rather than once per contribution. Its activations are compared loosely (nodes that
//! differ, largest activation difference), and reported.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sprs::CsMatI;

use crate::engine::graph::{
    Graph, GraphConfig, LatencyPredictor, MAX_K, PredictorStats, RecallMode, RecallParams,
    RecallResult, Seed, SpreadHit, SpreadParams, SpreadResult, SystemClock, Tier, generate,
};
use crate::{BackendKind, Device, DeviceConfig};

/// SPEC §7's bar on the 2-core box: single recall P95 under 1 ms.
pub const BAR_P95_US: f64 = 1000.0;
/// SPEC §2.3's goal for the latency predictor: 95 % of hops predicted within 20 %.
pub const PREDICTOR_GOAL: f64 = 0.95;

/// What to run.
#[derive(Debug, Clone)]
pub struct GraphBenchConfig {
    /// Nodes of the Barabási–Albert graph.
    pub nodes: usize,
    /// Links per new node: `2 · m · (nodes − m)` directed edges.
    pub m: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Queries, made by `generate::queries_near` from stored embeddings plus noise.
    pub queries: usize,
    /// Per-component noise of the queries.
    pub noise: f32,
    /// Batch sizes of the batched-recall measurement (each runs every query).
    pub batch_sizes: Vec<usize>,
    /// Spreads of the small-frontier case: the seeds of this many queries' recalls.
    pub spread_queries: usize,
    /// Seeds of the large-frontier case (evenly spaced node ids, a0 = 1).
    pub large_seeds: usize,
    /// Times the large-frontier spread runs per repeat (it is one spread; this steadies it).
    pub large_runs: usize,
    /// Measured repeats, interleaved; figures are medians over them.
    pub repeats: usize,
    /// Seed of the graph, its embeddings and the queries.
    pub seed: u64,
    /// Client threads of the recall-queue run.
    pub queue_clients: usize,
    /// Recalls each client keeps in flight.
    pub queue_window: usize,
    /// The P95 latency the queue's batch sizer aims under.
    pub queue_target: Duration,
    /// Recalls in all, the queries cycled.
    pub queue_recalls: usize,
}

impl GraphBenchConfig {
    /// SPEC §7: 10k nodes, ~100k edges (`barabasi_albert(10_000, 5)`: 99,950), 1,000
    /// queries, median of 5. Dimension 384, the size of common small sentence-embedding
    /// models (e.g. all-MiniLM-L6-v2); the similarity scan is most of a recall's time, so
    /// this is the harder of the usual sizes (see docs/perf for 64).
    pub fn full() -> Self {
        GraphBenchConfig {
            nodes: 10_000,
            m: 5,
            dim: 384,
            queries: 1_000,
            noise: 0.05,
            batch_sizes: vec![8, 64, 256, 1_000],
            spread_queries: 100,
            large_seeds: 1_000,
            large_runs: 20,
            repeats: 5,
            seed: 42,
            queue_clients: 8,
            queue_window: 1,
            queue_target: Duration::from_millis(5),
            queue_recalls: 5_000,
        }
    }

    /// A smoke run: 2,000 nodes, dimension 64, 200 queries, one repeat.
    pub fn quick() -> Self {
        GraphBenchConfig {
            nodes: 2_000,
            dim: 64,
            queries: 200,
            batch_sizes: vec![8, 64, 200],
            spread_queries: 50,
            large_seeds: 200,
            large_runs: 5,
            repeats: 1,
            queue_recalls: 600,
            ..Self::full()
        }
    }
}

/// Latency percentiles of single recalls, in microseconds (medians over the repeats).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median latency (µs).
    pub p50_us: f64,
    /// 95th percentile latency (µs).
    pub p95_us: f64,
    /// 99th percentile latency (µs).
    pub p99_us: f64,
    /// Slowest recall (µs).
    pub max_us: f64,
    /// Mean latency (µs).
    pub mean_us: f64,
    /// P95 of each repeat.
    pub p95_us_by_repeat: Vec<f64>,
}

/// Single recalls, one call per query, no budget.
#[derive(Debug, Clone, Serialize)]
pub struct SingleRecall {
    /// The recall mode (`hybrid` by default).
    pub mode: &'static str,
    /// Results per recall.
    pub k: usize,
    /// Latency of one recall.
    pub latency: Latency,
    /// Similarity seeds per recall, on average.
    pub mean_seeds: f64,
    /// Hits per recall, on average.
    pub mean_hits: f64,
    /// Hops per recall, on average.
    pub mean_hops: f64,
    /// The bar: [`BAR_P95_US`].
    pub bar_p95_us: f64,
    /// Whether the P95 is under the bar.
    pub bar_met: bool,
}

/// Single recalls with the default latency budget.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetedRecall {
    /// The latency budget of each recall (ms).
    pub budget_ms: f64,
    /// Latency of one budgeted recall.
    pub latency: Latency,
    /// Partial results over all repeats.
    pub partial: usize,
    /// Recalls run over all repeats.
    pub recalls: usize,
    /// Complete results, each checked equal to the unbudgeted result.
    pub complete_equal_unbudgeted: usize,
}

/// Where a single recall's time goes, measured by timing its parts alone.
#[derive(Debug, Clone, Serialize)]
pub struct Phases {
    /// Similarity-only recall (normalise, similarity scan, seed choice, ranking).
    pub similarity_only: Latency,
    /// `Graph::spread` of the seeds the recall picks.
    pub spread_of_seeds: Latency,
}

/// Recalls through the host's recall queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRun {
    /// Client threads.
    pub clients: usize,
    /// Recalls each client keeps in flight.
    pub window: usize,
    /// The P95 target given to the queue (ms).
    pub target_p95_ms: f64,
    /// Recalls completed.
    pub recalls: u64,
    /// Wall time of the run (s).
    pub s: f64,
    /// Recalls per second of wall time.
    pub recalls_per_s: f64,
    /// `recalls_per_s` over the single recalls' rate.
    pub vs_single: f64,
    /// Median latency, submission to completion, from the queue's histogram (µs).
    pub p50_us: f64,
    /// 95th percentile latency, submission to completion (µs).
    pub p95_us: f64,
    /// 99th percentile latency, submission to completion (µs).
    pub p99_us: f64,
    /// Batches the queue ran.
    pub batches: u64,
    /// Recalls per batch, on average.
    pub mean_batch: f64,
    /// The adaptive batch limit at the end of the run.
    pub final_batch_limit: usize,
    /// Every result equals the single recall of its query.
    pub results_equal: bool,
}

/// Batched recall throughput for one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BatchResult {
    /// Recalls per batch.
    pub batch: usize,
    /// Seconds to run every query in batches of `batch`, per repeat.
    pub s: Vec<f64>,
    /// Recalls per second (median over the repeats).
    pub recalls_per_s: f64,
    /// `recalls_per_s` over the single recalls' rate (1 / mean latency).
    pub vs_single: f64,
}

/// One system's spread timings in one case.
#[derive(Debug, Clone, Serialize)]
pub struct SpreadSystem {
    /// The system (`warpgrid` with its backend, `sequential`, `sprs csr`).
    pub system: &'static str,
    /// Threads it ran on.
    pub threads: usize,
    /// Seconds for all the case's spreads, per repeat.
    pub s: Vec<f64>,
    /// Microseconds per spread (median over the repeats).
    pub us_per_spread: f64,
    /// Hops this system evaluated over the case's spreads.
    pub hops: u64,
    /// Microseconds per hop evaluated.
    pub us_per_hop: f64,
}

/// How far the sprs variant's activations are from warpgrid's (summed over the case).
#[derive(Debug, Clone, Serialize)]
pub struct SprsDiff {
    /// Nodes warpgrid activated.
    pub activated_warpgrid: usize,
    /// Nodes sprs activated.
    pub activated_sprs: usize,
    /// Nodes activated by one of the two only.
    pub activated_by_one_only: usize,
    /// The largest |activation difference| over nodes both activated.
    pub max_abs_activation_diff: f32,
}

/// One spreading case: every system runs the same seed lists.
#[derive(Debug, Clone, Serialize)]
pub struct SpreadCase {
    /// The case's name: `recall seeds` (small frontiers) or `spaced seeds` (one large one).
    pub case: &'static str,
    /// Spreads run per repeat and system.
    pub spreads: usize,
    /// Seeds per spread, on average.
    pub mean_seeds: f64,
    /// Hops per spread on warpgrid, on average.
    pub mean_hops: f64,
    /// Nodes activated per spread on warpgrid, on average.
    pub mean_activated: f64,
    /// Each system's timings.
    pub systems: Vec<SpreadSystem>,
    /// Sequential time over warpgrid's (all threads).
    pub speedup_vs_sequential: f64,
    /// sprs time over warpgrid's (all threads).
    pub speedup_vs_sprs: f64,
    /// Every spread of the case gave the sequential reference's results: bit for bit on the
    /// CPU backend, within SPEC §0's tolerance on a GPU backend (`sequential_check` says which).
    pub sequential_equal: bool,
    /// How `sequential_equal` was judged: `bit for bit` or `within 1e-5`.
    pub sequential_check: &'static str,
    /// How far sprs's activations are from warpgrid's.
    pub sprs_diff: SprsDiff,
}

/// The latency predictor after the budgeted run (SPEC §2.3's metrics).
#[derive(Debug, Clone, Serialize)]
pub struct PredictorReport {
    /// Hops whose time was observed.
    pub hops_observed: u64,
    /// Hops that had a prediction to score.
    pub predictions: u64,
    /// Predictions within 20 % of the actual time.
    pub within_20_percent: u64,
    /// `within_20_percent / predictions`.
    pub fraction_within_20_percent: f64,
    /// The goal for that fraction ([`PREDICTOR_GOAL`]).
    pub goal: f64,
    /// Whether the fraction reached the goal.
    pub goal_met: bool,
    /// Upper bounds 5 %, 10 %, 20 %, 50 %, 100 %, 200 %, then the rest.
    pub error_buckets: [u64; 7],
    /// Recalls the budget stopped early.
    pub partial_stops: u64,
}

/// Everything the graph bench measured (`warpgrid bench`), as its JSON report holds it.
#[derive(Debug, Clone, Serialize)]
pub struct GraphBenchReport {
    /// Always `graph`.
    pub bench: &'static str,
    /// Nodes of the bench graph.
    pub nodes: usize,
    /// Directed edges of the bench graph.
    pub edges: usize,
    /// Links per new node of the Barabási–Albert generator.
    pub m: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Queries recalled.
    pub queries: usize,
    /// Per-component noise of the queries.
    pub noise: f32,
    /// Measured repeats.
    pub repeats: usize,
    /// The device, as [`Device::describe`] gives it.
    pub device: String,
    /// Threads of the rayon pool.
    pub threads: usize,
    /// H of every spread (SPEC §2.2's default, 4).
    pub max_hops: u32,
    /// Building the graph and the queries (not part of any figure).
    pub build_s: f64,
    /// Single recalls without budget.
    pub single: SingleRecall,
    /// Single recalls with the default budget.
    pub budgeted: BudgetedRecall,
    /// Where a single recall's time goes.
    pub phases: Phases,
    /// Batched recall throughput, per batch size.
    pub batched: Vec<BatchResult>,
    /// Every batched result equals the single result of its query.
    pub batch_equal_single: bool,
    /// The spreading cases.
    pub spread: Vec<SpreadCase>,
    /// The latency predictor after the budgeted run.
    pub predictor: PredictorReport,
    /// Recalls through the recall queue.
    pub queue: QueueRun,
}

/// The bench graph: `barabasi_albert(nodes, m, dim, seed)` with the default (hierarchical)
/// multipliers.
pub fn build_graph(cfg: &GraphBenchConfig) -> Result<Graph, String> {
    generate::barabasi_albert(cfg.nodes, cfg.m, cfg.dim, cfg.seed, GraphConfig::default())
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())
}

/// The bench queries (`cfg.queries × dim`, row-major).
pub fn build_queries(graph: &Graph, cfg: &GraphBenchConfig) -> Result<Vec<f32>, String> {
    generate::queries_near(graph, cfg.queries, cfg.noise, cfg.seed ^ 0x5eed)
        .map_err(|e| e.to_string())
}

/// The recall parameters of the bench: SPEC §2.3's defaults with no budget.
pub fn unbudgeted() -> RecallParams {
    RecallParams {
        budget: Duration::ZERO,
        ..RecallParams::default()
    }
}

/// The seeds a (spreading or hybrid) recall of `query` picks, in rank order, with their a0:
/// the hits of a similarity-only recall asking for every seed.
pub fn recall_seeds(
    device: &Device,
    graph: &Graph,
    query: &[f32],
    params: &RecallParams,
) -> Result<Vec<Seed>, String> {
    let p = RecallParams {
        mode: RecallMode::Similarity,
        k: params.seeds_k.min(MAX_K),
        min_confidence: 0.0,
        budget: Duration::ZERO,
        ..params.clone()
    };
    let r = graph
        .recall(
            device,
            query,
            &p,
            &SystemClock::new(),
            &mut LatencyPredictor::new(),
        )
        .map_err(|e| e.to_string())?;
    Ok(r.hits
        .iter()
        .map(|h| Seed::new(h.node, h.activation))
        .collect())
}

/// `count` seeds with a0 = 1 at evenly spaced node ids (0, n/count, 2n/count, ...).
pub fn spaced_seeds(graph: &Graph, count: usize) -> Vec<Seed> {
    let n = graph.node_count();
    let count = count.clamp(1, n.max(1));
    (0..count)
        .map(|i| Seed::full((i * n / count) as u32))
        .collect()
}

/// Every node with `a > 0` as a hit, by activation descending then node ascending (SPEC
/// §2.2's result).
fn hits_of(graph: &Graph, a: &[f32], first_hop: &[u32], params: &SpreadParams) -> Vec<SpreadHit> {
    let mut hits: Vec<SpreadHit> = (0..a.len())
        .filter(|&v| a[v] > 0.0)
        .map(|v| SpreadHit {
            node: v as u32,
            label: graph.label(v as u32).map(Arc::from),
            activation: a[v],
            confidence: a[v] * params.factor(Tier::of_hop(first_hop[v])),
            first_hop: first_hop[v],
        })
        .collect();
    hits.sort_unstable_by(|x, y| {
        y.activation
            .total_cmp(&x.activation)
            .then(x.node.cmp(&y.node))
    });
    hits
}

/// SPEC §2.2 written straight from the pseudocode, on one thread: every hop visits every
/// node and sums its in-edges (the graph's transpose, sources ascending) whose source has
/// a non-zero Δ(k-1). Buffers are kept between calls.
#[derive(Debug, Default)]
pub struct SequentialSpread {
    a: Vec<f32>,
    delta: Vec<f32>,
    next: Vec<f32>,
    first_hop: Vec<u32>,
}

impl SequentialSpread {
    /// Empty buffers; they grow to the graph's size on the first spread.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spreads `seeds` (valid for the graph) by `params`.
    pub fn spread(&mut self, g: &Graph, seeds: &[Seed], p: &SpreadParams) -> SpreadResult {
        let n = g.node_count();
        for v in [&mut self.a, &mut self.delta, &mut self.next] {
            v.clear();
            v.resize(n, 0.0);
        }
        self.first_hop.clear();
        self.first_hop.resize(n, u32::MAX);
        let (a, delta, next, first_hop) = (
            &mut self.a,
            &mut self.delta,
            &mut self.next,
            &mut self.first_hop,
        );
        for s in seeds {
            if s.a0 < p.threshold(Tier::Hot) {
                continue;
            }
            let v = s.node as usize;
            a[v] = (a[v] + s.a0).min(1.0);
        }
        for v in 0..n {
            delta[v] = a[v];
            if a[v] > 0.0 {
                first_hop[v] = 0;
            }
        }
        let mut hops_done = 0;
        for k in 1..=p.max_hops {
            let dk = p.decay.factor(k);
            let theta = p.threshold(Tier::of_hop(k));
            let mut any = false;
            for v in 0..n {
                let (srcs, ws) = g.in_edges(v as u32);
                let mut s = 0.0f32;
                for (&u, &w) in srcs.iter().zip(ws) {
                    let d = delta[u as usize];
                    if d > 0.0 {
                        let c = (d * w) * dk;
                        if c >= theta {
                            s += c;
                        }
                    }
                }
                next[v] = 0.0;
                if s > 0.0 && !(p.refractory && a[v] > 0.0) {
                    let new = (a[v] + s).min(1.0);
                    next[v] = new - a[v];
                    a[v] = new;
                    if first_hop[v] == u32::MAX {
                        first_hop[v] = k;
                    }
                    any |= next[v] > 0.0;
                }
            }
            hops_done = k;
            std::mem::swap(delta, next);
            if !any {
                break;
            }
        }
        SpreadResult {
            hits: hits_of(g, a, first_hop, p),
            hops_done,
        }
    }
}

/// The same hops with sprs: `y = Wᵀ · Δ(k-1)` by `sprs::prod::mul_acc_mat_vec_csr` over the
/// transposed effective weights (row v holds `w'(u, v)` for every edge `u -> v`), then
/// `S = y · D(k)` and SPEC §2.2's update where `S >= θ(tier(k))`. Differs from SPEC §2.2 in
/// that every contribution is summed (none is dropped for being under θ on its own) and
/// `D(k)` multiplies the sum; see the module docs.
#[derive(Debug)]
pub struct SprsSpread {
    wt: CsMatI<f32, u32, u32>,
    a: Vec<f32>,
    delta: Vec<f32>,
    y: Vec<f32>,
    first_hop: Vec<u32>,
}

impl SprsSpread {
    /// Builds `Wᵀ` as an sprs CSR matrix (u32 indices, as warpgrid's CSR) from the graph.
    pub fn new(g: &Graph) -> Result<Self, String> {
        let n = g.node_count();
        let e = g.edge_count();
        let mut indptr = Vec::with_capacity(n + 1);
        let mut indices = Vec::with_capacity(e);
        let mut data = Vec::with_capacity(e);
        indptr.push(0u32);
        for v in 0..n as u32 {
            let (srcs, ws) = g.in_edges(v);
            indices.extend_from_slice(srcs);
            data.extend_from_slice(ws);
            indptr.push(indices.len() as u32);
        }
        let wt = CsMatI::try_new((n, n), indptr, indices, data)
            .map_err(|(_, _, _, e)| format!("sprs rejected the transposed graph: {e}"))?;
        Ok(SprsSpread {
            wt,
            a: Vec::new(),
            delta: Vec::new(),
            y: Vec::new(),
            first_hop: Vec::new(),
        })
    }

    /// Spreads `seeds` (valid for the graph) by `params`, the sprs way.
    pub fn spread(&mut self, g: &Graph, seeds: &[Seed], p: &SpreadParams) -> SpreadResult {
        let n = g.node_count();
        for v in [&mut self.a, &mut self.delta, &mut self.y] {
            v.clear();
            v.resize(n, 0.0);
        }
        self.first_hop.clear();
        self.first_hop.resize(n, u32::MAX);
        for s in seeds {
            if s.a0 < p.threshold(Tier::Hot) {
                continue;
            }
            let v = s.node as usize;
            self.a[v] = (self.a[v] + s.a0).min(1.0);
        }
        for v in 0..n {
            self.delta[v] = self.a[v];
            if self.a[v] > 0.0 {
                self.first_hop[v] = 0;
            }
        }
        let mut hops_done = 0;
        for k in 1..=p.max_hops {
            let dk = p.decay.factor(k);
            let theta = p.threshold(Tier::of_hop(k));
            self.y.fill(0.0);
            sprs::prod::mul_acc_mat_vec_csr(self.wt.view(), &self.delta[..], &mut self.y[..]);
            let mut any = false;
            for v in 0..n {
                let s = self.y[v] * dk;
                self.delta[v] = 0.0;
                if s > 0.0 && s >= theta && !(p.refractory && self.a[v] > 0.0) {
                    let new = (self.a[v] + s).min(1.0);
                    self.delta[v] = new - self.a[v];
                    self.a[v] = new;
                    if self.first_hop[v] == u32::MAX {
                        self.first_hop[v] = k;
                    }
                    any |= self.delta[v] > 0.0;
                }
            }
            hops_done = k;
            if !any {
                break;
            }
        }
        SpreadResult {
            hits: hits_of(g, &self.a, &self.first_hop, p),
            hops_done,
        }
    }
}

/// `Ok` when `got` is `want` bit for bit (hits, their order, hops); otherwise the first
/// difference.
pub fn same_spread(want: &SpreadResult, got: &SpreadResult) -> Result<(), String> {
    if want.hops_done != got.hops_done {
        return Err(format!("hops_done {} != {}", want.hops_done, got.hops_done));
    }
    if want.hits.len() != got.hits.len() {
        return Err(format!(
            "{} hits != {} hits",
            want.hits.len(),
            got.hits.len()
        ));
    }
    for (i, (x, y)) in want.hits.iter().zip(&got.hits).enumerate() {
        let same = x.node == y.node
            && x.activation.to_bits() == y.activation.to_bits()
            && x.confidence.to_bits() == y.confidence.to_bits()
            && x.first_hop == y.first_hop
            && x.label == y.label;
        if !same {
            return Err(format!("hit {i}: {x:?} != {y:?}"));
        }
    }
    Ok(())
}

/// `Ok` when `got` is `want` within SPEC §0's cross-backend tolerance: the same hops and
/// the same nodes in the same order, except positions whose activations tie within 1e-6, each
/// node's activation within 1e-5 and the same first hop; otherwise the first difference.
/// How a GPU backend's spread is checked against the CPU reference.
pub fn close_spread(want: &SpreadResult, got: &SpreadResult) -> Result<(), String> {
    const TOLERANCE: f32 = 1e-5;
    const TIE: f32 = 1e-6;
    if want.hops_done != got.hops_done {
        return Err(format!("hops_done {} != {}", want.hops_done, got.hops_done));
    }
    if want.hits.len() != got.hits.len() {
        return Err(format!(
            "{} hits != {} hits",
            want.hits.len(),
            got.hits.len()
        ));
    }
    let by_node: std::collections::HashMap<u32, &SpreadHit> =
        got.hits.iter().map(|h| (h.node, h)).collect();
    for (i, (x, y)) in want.hits.iter().zip(&got.hits).enumerate() {
        if x.node != y.node && (x.activation - y.activation).abs() > TIE {
            return Err(format!("hit {i}: node {} != node {}", x.node, y.node));
        }
        let Some(z) = by_node.get(&x.node) else {
            return Err(format!("hit {i}: node {} is missing", x.node));
        };
        if (x.activation - z.activation).abs() > TOLERANCE || x.first_hop != z.first_hop {
            return Err(format!("hit {i}: {x:?} != {z:?}"));
        }
    }
    Ok(())
}

/// `Ok` when two recall results are the same bits; otherwise the first difference.
pub fn same_recall(want: &RecallResult, got: &RecallResult) -> Result<(), String> {
    if (want.partial, want.hops_done) != (got.partial, got.hops_done) {
        return Err(format!(
            "partial/hops_done ({}, {}) != ({}, {})",
            want.partial, want.hops_done, got.partial, got.hops_done
        ));
    }
    if want.hits.len() != got.hits.len() {
        return Err(format!(
            "{} hits != {} hits",
            want.hits.len(),
            got.hits.len()
        ));
    }
    for (i, (x, y)) in want.hits.iter().zip(&got.hits).enumerate() {
        let same = x.node == y.node
            && x.score.to_bits() == y.score.to_bits()
            && x.activation.to_bits() == y.activation.to_bits()
            && x.confidence.to_bits() == y.confidence.to_bits()
            && x.sim.map(f32::to_bits) == y.sim.map(f32::to_bits)
            && x.first_hop == y.first_hop
            && x.label == y.label;
        if !same {
            return Err(format!("hit {i}: {x:?} != {y:?}"));
        }
    }
    Ok(())
}

/// Adds the difference between warpgrid's and sprs's activations of one spread to `d`.
fn add_sprs_diff(d: &mut SprsDiff, warpgrid: &SpreadResult, sprs: &SpreadResult) {
    let mut w: Vec<(u32, f32)> = warpgrid
        .hits
        .iter()
        .map(|h| (h.node, h.activation))
        .collect();
    let mut s: Vec<(u32, f32)> = sprs.hits.iter().map(|h| (h.node, h.activation)).collect();
    w.sort_unstable_by_key(|x| x.0);
    s.sort_unstable_by_key(|x| x.0);
    d.activated_warpgrid += w.len();
    d.activated_sprs += s.len();
    let (mut i, mut j) = (0, 0);
    while i < w.len() || j < s.len() {
        match (w.get(i), s.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                d.max_abs_activation_diff = d.max_abs_activation_diff.max((x.1 - y.1).abs());
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                d.activated_by_one_only += 1;
                i += 1;
            }
            (Some(_), None) => {
                d.activated_by_one_only += 1;
                i += 1;
            }
            _ => {
                d.activated_by_one_only += 1;
                j += 1;
            }
        }
    }
}

/// The value at quantile `q` of sorted `xs` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Percentiles of each repeat's latencies (seconds), medians over the repeats, in µs.
fn latency(runs: &[Vec<f64>]) -> Latency {
    let mut p = [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for run in runs {
        let mut v = run.clone();
        v.sort_by(f64::total_cmp);
        p[0].push(quantile(&v, 0.50) * 1e6);
        p[1].push(quantile(&v, 0.95) * 1e6);
        p[2].push(quantile(&v, 0.99) * 1e6);
        p[3].push(v.last().copied().unwrap_or(f64::NAN) * 1e6);
        p[4].push(v.iter().sum::<f64>() / v.len().max(1) as f64 * 1e6);
    }
    Latency {
        p50_us: super::median(&p[0]),
        p95_us: super::median(&p[1]),
        p99_us: super::median(&p[2]),
        max_us: super::median(&p[3]),
        mean_us: super::median(&p[4]),
        p95_us_by_repeat: p[1].clone(),
    }
}

/// One recall of every query, timed one by one. Returns the latencies (seconds).
fn time_single(
    device: &Device,
    graph: &Graph,
    queries: &[f32],
    params: &RecallParams,
    predictor: &mut LatencyPredictor,
    mut check: impl FnMut(usize, &RecallResult) -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    let clock = SystemClock::new();
    let mut times = Vec::with_capacity(queries.len() / graph.dim().max(1));
    for (i, q) in queries.chunks_exact(graph.dim()).enumerate() {
        let t = Instant::now();
        let r = graph
            .recall(device, q, params, &clock, predictor)
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64());
        check(i, &r)?;
    }
    Ok(times)
}

/// Runs every query through `recall_batch` in batches of `batch`: (seconds, results).
pub fn run_batched(
    device: &Device,
    graph: &Graph,
    queries: &[f32],
    batch: usize,
    params: &RecallParams,
    predictor: &mut LatencyPredictor,
) -> Result<(f64, Vec<RecallResult>), String> {
    let clock = SystemClock::new();
    let d = graph.dim();
    let mut out = Vec::with_capacity(queries.len() / d.max(1));
    let t = Instant::now();
    for chunk in queries.chunks(batch.max(1) * d) {
        let r = graph
            .recall_batch(device, chunk, params, &clock, predictor)
            .map_err(|e| e.to_string())?;
        out.extend(r);
    }
    Ok((t.elapsed().as_secs_f64(), out))
}

/// The spreading systems of a case, in report order.
const SPREAD_SYSTEMS: [&str; 4] = ["warpgrid", "warpgrid", "sequential", "sprs csr"];

/// Runs the graph bench: builds the graph and queries, then `cfg.repeats` interleaved
/// repeats of every measurement, checking results as it goes.
pub fn run(
    device: &Device,
    cfg: &GraphBenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<GraphBenchReport, String> {
    if cfg.dim == 0 || cfg.queries == 0 || cfg.repeats == 0 {
        return Err("the graph bench needs dim, queries and repeats >= 1".into());
    }
    progress("building the graph");
    let t = Instant::now();
    let graph = Arc::new(build_graph(cfg)?);
    let queries = build_queries(&graph, cfg)?;
    let build_s = t.elapsed().as_secs_f64();
    let d = graph.dim();
    let nq = cfg.queries;
    let threads = device.threads();
    // The first spread row runs on the bench's device; on a GPU its name says which.
    let warpgrid_label = super::warpgrid_label(device);
    let params = unbudgeted();
    let budgeted = RecallParams::default();
    let similarity = RecallParams {
        mode: RecallMode::Similarity,
        ..params.clone()
    };
    let spread_params = &params.spread;
    // A one-thread CPU device, for warpgrid's spread on one thread beside the peers.
    let one = Device::open(&DeviceConfig {
        backend: BackendKind::Cpu,
        threads: 1,
        ..DeviceConfig::default()
    })
    .map_err(|e| e.to_string())?;

    // Reference results: one untimed pass (it also warms caches and buffers).
    progress("single recalls: reference pass");
    let mut predictor = LatencyPredictor::new();
    let mut reference = Vec::with_capacity(nq);
    time_single(device, &graph, &queries, &params, &mut predictor, |_, r| {
        reference.push(r.clone());
        Ok(())
    })?;
    let mut seeds = Vec::with_capacity(nq);
    for q in queries.chunks_exact(d) {
        seeds.push(recall_seeds(device, &graph, q, &params)?);
    }

    // Spreading cases: the seed lists, checked once on every system before timing.
    let small: Vec<Vec<Seed>> = seeds.iter().take(cfg.spread_queries).cloned().collect();
    let large = spaced_seeds(&graph, cfg.large_seeds);
    let cases: [(&'static str, Vec<Vec<Seed>>, usize); 2] = [
        ("recall seeds", small, 1),
        ("spaced seeds", vec![large], cfg.large_runs.max(1)),
    ];
    let mut sequential = SequentialSpread::new();
    let mut sprs = SprsSpread::new(&graph)?;
    let mut case_hops = Vec::new();
    let mut case_stats = Vec::new();
    for (name, lists, _) in &cases {
        progress(&format!("spread '{name}': checking the three systems"));
        let mut hops = [0u64; 4];
        let mut diff = SprsDiff {
            activated_warpgrid: 0,
            activated_sprs: 0,
            activated_by_one_only: 0,
            max_abs_activation_diff: 0.0,
        };
        let mut seeds_total = 0;
        for (i, list) in lists.iter().enumerate() {
            let w = graph
                .spread(device, list, spread_params)
                .map_err(|e| e.to_string())?;
            let w1 = graph
                .spread(&one, list, spread_params)
                .map_err(|e| e.to_string())?;
            let s = sequential.spread(&graph, list, spread_params);
            let x = sprs.spread(&graph, list, spread_params);
            same_spread(&w, &w1)
                .map_err(|e| format!("spread '{name}' #{i}: 1 thread differs: {e}"))?;
            let check = if device.kind() == BackendKind::Cpu {
                same_spread(&s, &w)
            } else {
                close_spread(&s, &w)
            };
            check.map_err(|e| {
                format!("spread '{name}' #{i}: warpgrid differs from the sequential reference: {e}")
            })?;
            add_sprs_diff(&mut diff, &w, &x);
            for (h, r) in hops.iter_mut().zip([&w, &w1, &s, &x]) {
                *h += u64::from(r.hops_done);
            }
            seeds_total += list.len();
        }
        case_hops.push(hops);
        case_stats.push((diff, seeds_total));
    }

    let mut single_runs = Vec::new();
    let mut budget_runs = Vec::new();
    let mut sim_runs = Vec::new();
    let mut spread_runs = Vec::new();
    let mut batch_s = vec![Vec::new(); cfg.batch_sizes.len()];
    let mut spread_s = vec![vec![Vec::new(); 4]; cases.len()];
    let mut budget_predictor = LatencyPredictor::new();
    let mut batch_predictor = LatencyPredictor::new();
    let (mut partial, mut complete_equal) = (0, 0);
    let mut bad: Option<String> = None;
    for r in 0..cfg.repeats {
        let tag = format!("run {}/{}", r + 1, cfg.repeats);
        progress(&format!("{tag}: single recalls"));
        single_runs.push(time_single(
            device,
            &graph,
            &queries,
            &params,
            &mut predictor,
            |i, got| {
                same_recall(&reference[i], got)
                    .map_err(|e| format!("query {i}: a repeated recall differs: {e}"))
            },
        )?);
        progress(&format!("{tag}: single recalls, 10 ms budget"));
        budget_runs.push(time_single(
            device,
            &graph,
            &queries,
            &budgeted,
            &mut budget_predictor,
            |i, got| {
                if got.partial {
                    partial += 1;
                    return Ok(());
                }
                same_recall(&reference[i], got).map_err(|e| {
                    format!(
                        "query {i}: a complete budgeted recall differs from the unbudgeted one: {e}"
                    )
                })?;
                complete_equal += 1;
                Ok(())
            },
        )?);
        progress(&format!("{tag}: phases"));
        sim_runs.push(time_single(
            device,
            &graph,
            &queries,
            &similarity,
            &mut LatencyPredictor::new(),
            |_, r| {
                black_box(r);
                Ok(())
            },
        )?);
        let mut times = Vec::with_capacity(nq);
        for list in &seeds {
            let t = Instant::now();
            let r = graph
                .spread(device, list, spread_params)
                .map_err(|e| e.to_string())?;
            times.push(t.elapsed().as_secs_f64());
            black_box(r);
        }
        spread_runs.push(times);
        for (b, &batch) in cfg.batch_sizes.iter().enumerate() {
            progress(&format!("{tag}: batched recalls of {batch}"));
            let (s, results) = run_batched(
                device,
                &graph,
                &queries,
                batch,
                &params,
                &mut batch_predictor,
            )?;
            batch_s[b].push(s);
            if bad.is_none() {
                for (i, (want, got)) in reference.iter().zip(&results).enumerate() {
                    if let Err(e) = same_recall(want, got) {
                        bad = Some(format!(
                            "query {i} in batches of {batch} differs from its single recall: {e}"
                        ));
                        break;
                    }
                }
            }
            if results.len() != nq {
                bad = Some(format!(
                    "batches of {batch} returned {} results for {nq} queries",
                    results.len()
                ));
            }
        }
        if let Some(e) = bad.take() {
            return Err(e);
        }
        for (c, (name, lists, runs)) in cases.iter().enumerate() {
            progress(&format!("{tag}: spread '{name}'"));
            let timed = |f: &mut dyn FnMut(&[Seed]) -> Result<SpreadResult, String>| {
                let t = Instant::now();
                for _ in 0..*runs {
                    for list in lists {
                        black_box(f(list)?);
                    }
                }
                Ok::<f64, String>(t.elapsed().as_secs_f64())
            };
            let s0 = timed(&mut |l| {
                graph
                    .spread(device, l, spread_params)
                    .map_err(|e| e.to_string())
            })?;
            let s1 = timed(&mut |l| {
                graph
                    .spread(&one, l, spread_params)
                    .map_err(|e| e.to_string())
            })?;
            let s2 = timed(&mut |l| Ok(sequential.spread(&graph, l, spread_params)))?;
            let s3 = timed(&mut |l| Ok(sprs.spread(&graph, l, spread_params)))?;
            for (v, s) in spread_s[c].iter_mut().zip([s0, s1, s2, s3]) {
                v.push(s);
            }
        }
    }

    let single_lat = latency(&single_runs);
    let mean_seeds = seeds.iter().map(Vec::len).sum::<usize>() as f64 / nq as f64;
    let mean_hits = reference.iter().map(|r| r.hits.len()).sum::<usize>() as f64 / nq as f64;
    let mean_hops = reference
        .iter()
        .map(|r| r.hops_done as usize)
        .sum::<usize>() as f64
        / nq as f64;
    let single_rate = 1e6 / single_lat.mean_us;
    let batched = cfg
        .batch_sizes
        .iter()
        .zip(batch_s)
        .map(|(&batch, s)| {
            let recalls_per_s = nq as f64 / super::median(&s);
            BatchResult {
                batch,
                s,
                recalls_per_s,
                vs_single: recalls_per_s / single_rate,
            }
        })
        .collect();
    let spread = cases
        .iter()
        .zip(spread_s)
        .zip(case_hops.iter().zip(case_stats))
        .map(
            |(((name, lists, runs), times), (hops, (diff, seeds_total)))| {
                let spreads = lists.len() * runs;
                let systems: Vec<SpreadSystem> = (0..4)
                    .map(|i| {
                        let med = super::median(&times[i]);
                        let h = hops[i] * *runs as u64;
                        SpreadSystem {
                            system: if i == 0 {
                                warpgrid_label
                            } else {
                                SPREAD_SYSTEMS[i]
                            },
                            threads: if i == 0 { threads } else { 1 },
                            s: times[i].clone(),
                            us_per_spread: med / spreads as f64 * 1e6,
                            hops: h,
                            us_per_hop: med / h.max(1) as f64 * 1e6,
                        }
                    })
                    .collect();
                let activated = diff.activated_warpgrid as f64 / lists.len() as f64;
                SpreadCase {
                    case: name,
                    spreads,
                    mean_seeds: seeds_total as f64 / lists.len() as f64,
                    mean_hops: hops[0] as f64 / lists.len() as f64,
                    mean_activated: activated,
                    speedup_vs_sequential: systems[2].us_per_spread / systems[0].us_per_spread,
                    speedup_vs_sprs: systems[3].us_per_spread / systems[0].us_per_spread,
                    systems,
                    sequential_equal: true,
                    sequential_check: if device.kind() == BackendKind::Cpu {
                        "bit for bit"
                    } else {
                        "within 1e-5"
                    },
                    sprs_diff: diff,
                }
            },
        )
        .collect();
    progress("recalls through the recall queue");
    let queue = run_queue(device, &graph, &queries, &reference, cfg, single_rate)?;
    let st: &PredictorStats = budget_predictor.stats();
    let fraction = st.within_20_percent as f64 / st.predictions.max(1) as f64;
    Ok(GraphBenchReport {
        bench: "graph",
        nodes: graph.node_count(),
        edges: graph.edge_count(),
        m: cfg.m,
        dim: d,
        queries: nq,
        noise: cfg.noise,
        repeats: cfg.repeats,
        device: device.describe(),
        threads,
        max_hops: spread_params.max_hops,
        build_s,
        single: SingleRecall {
            mode: params.mode.name(),
            k: params.k,
            bar_met: single_lat.p95_us < BAR_P95_US,
            latency: single_lat,
            mean_seeds,
            mean_hits,
            mean_hops,
            bar_p95_us: BAR_P95_US,
        },
        budgeted: BudgetedRecall {
            budget_ms: budgeted.budget.as_secs_f64() * 1e3,
            latency: latency(&budget_runs),
            partial,
            recalls: nq * cfg.repeats,
            complete_equal_unbudgeted: complete_equal,
        },
        phases: Phases {
            similarity_only: latency(&sim_runs),
            spread_of_seeds: latency(&spread_runs),
        },
        batched,
        batch_equal_single: true,
        spread,
        predictor: PredictorReport {
            hops_observed: st.hops_observed,
            predictions: st.predictions,
            within_20_percent: st.within_20_percent,
            fraction_within_20_percent: fraction,
            goal: PREDICTOR_GOAL,
            goal_met: st.predictions > 0 && fraction >= PREDICTOR_GOAL,
            error_buckets: st.error_buckets,
            partial_stops: st.partial_stops,
        },
        queue,
    })
}

/// `cfg.queue_clients` threads, each keeping `cfg.queue_window` recalls in flight through one
/// recall queue until `cfg.queue_recalls` are done; every result is checked against the
/// reference single recall of its query.
fn run_queue(
    device: &Device,
    graph: &Arc<Graph>,
    queries: &[f32],
    reference: &[RecallResult],
    cfg: &GraphBenchConfig,
    single_rate: f64,
) -> Result<QueueRun, String> {
    use warpgrid_host::metrics::Registry;
    use warpgrid_host::recall::{RecallQueue, RecallQueueConfig};
    let d = graph.dim();
    let nq = reference.len();
    let queue = RecallQueue::start(
        Arc::clone(graph),
        device.clone(),
        RecallQueueConfig {
            params: unbudgeted(),
            target_p95: cfg.queue_target,
            ..RecallQueueConfig::default()
        },
        &Registry::new(),
    )
    .map_err(|e| e.to_string())?;
    let clients = cfg.queue_clients.max(1);
    let per_client = cfg.queue_recalls.div_ceil(clients);
    let start = Instant::now();
    let checked: Result<(), String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let queue = &queue;
                scope.spawn(move || -> Result<(), String> {
                    let mut in_flight = std::collections::VecDeque::new();
                    for j in 0..per_client {
                        let i = (c * per_client + j) % nq;
                        let p = queue
                            .submit(&queries[i * d..(i + 1) * d])
                            .map_err(|e| e.to_string())?;
                        in_flight.push_back((i, p));
                        if in_flight.len() >= cfg.queue_window.max(1) {
                            let (i, p) = in_flight.pop_front().expect("not empty");
                            let r = p.wait().map_err(|e| e.to_string())?;
                            same_recall(&reference[i], &r)?;
                        }
                    }
                    for (i, p) in in_flight {
                        let r = p.wait().map_err(|e| e.to_string())?;
                        same_recall(&reference[i], &r)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| "a queue client panicked".to_string())?
        })
    });
    let s = start.elapsed().as_secs_f64();
    checked.map_err(|e| format!("recall queue: {e}"))?;
    let st = queue.stats();
    let recalls_per_s = st.recalls as f64 / s;
    Ok(QueueRun {
        clients,
        window: cfg.queue_window,
        target_p95_ms: cfg.queue_target.as_secs_f64() * 1e3,
        recalls: st.recalls,
        s,
        recalls_per_s,
        vs_single: recalls_per_s / single_rate,
        p50_us: st.latency_ns.p50 as f64 / 1e3,
        p95_us: st.latency_ns.p95 as f64 / 1e3,
        p99_us: st.latency_ns.p99 as f64 / 1e3,
        batches: st.batches,
        mean_batch: st.recalls as f64 / st.batches.max(1) as f64,
        final_batch_limit: st.batch_limit,
        results_equal: true,
    })
}

/// The report as a text table.
pub fn render(r: &GraphBenchReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let lat = |l: &Latency| {
        format!(
            "P50 {:>6.0} us  P95 {:>6.0} us  P99 {:>6.0} us  max {:>6.0} us",
            l.p50_us, l.p95_us, l.p99_us, l.max_us
        )
    };
    let _ = writeln!(
        s,
        "graph: {} nodes, {} edges (Barabasi-Albert, m = {}), dim {}, {} queries (noise {}), median of {}",
        r.nodes, r.edges, r.m, r.dim, r.queries, r.noise, r.repeats
    );
    let _ = writeln!(s, "device: {}", r.device);
    let x = &r.single;
    let _ = writeln!(
        s,
        "single recall ({}, k {}, no budget): {}   bar P95 < {:.0} us: {}",
        x.mode,
        x.k,
        lat(&x.latency),
        x.bar_p95_us,
        if x.bar_met { "met" } else { "NOT met" }
    );
    let _ = writeln!(
        s,
        "  per query: {:.2} seeds, {:.2} hits, {:.2} hops; P95 by repeat {:?} us",
        x.mean_seeds,
        x.mean_hits,
        x.mean_hops,
        x.latency
            .p95_us_by_repeat
            .iter()
            .map(|v| v.round() as u64)
            .collect::<Vec<_>>()
    );
    let _ = writeln!(
        s,
        "  parts timed alone: similarity-only recall {}",
        lat(&r.phases.similarity_only)
    );
    let _ = writeln!(
        s,
        "                     spread of its seeds    {}",
        lat(&r.phases.spread_of_seeds)
    );
    let b = &r.budgeted;
    let _ = writeln!(
        s,
        "single recall, {} ms budget:   {}   partial {} of {}, the {} complete equal the unbudgeted results",
        b.budget_ms,
        lat(&b.latency),
        b.partial,
        b.recalls,
        b.complete_equal_unbudgeted
    );
    let _ = writeln!(
        s,
        "{:<16} {:>12} {:>10}",
        "batch size", "recalls/s", "x single"
    );
    let _ = writeln!(
        s,
        "{:<16} {:>12.0} {:>9.2}x",
        "1 (single)",
        1e6 / x.latency.mean_us,
        1.0
    );
    for q in &r.batched {
        let _ = writeln!(
            s,
            "{:<16} {:>12.0} {:>9.2}x",
            q.batch, q.recalls_per_s, q.vs_single
        );
    }
    let _ = writeln!(
        s,
        "every batched result equals the single recall of its query: {}",
        if r.batch_equal_single { "yes" } else { "NO" }
    );
    for c in &r.spread {
        let _ = writeln!(
            s,
            "spread '{}': {} spreads, {:.1} seeds, {:.2} hops, {:.1} nodes activated each (max {} hops)",
            c.case, c.spreads, c.mean_seeds, c.mean_hops, c.mean_activated, r.max_hops
        );
        let _ = writeln!(
            s,
            "  {:<14} {:>7} {:>12} {:>10}",
            "system", "threads", "us/spread", "us/hop"
        );
        for y in &c.systems {
            let _ = writeln!(
                s,
                "  {:<14} {:>7} {:>12.2} {:>10.2}",
                y.system, y.threads, y.us_per_spread, y.us_per_hop
            );
        }
        let d = &c.sprs_diff;
        let _ = writeln!(
            s,
            "  warpgrid / sequential {:.1}x faster, warpgrid / sprs {:.1}x faster; sequential == warpgrid {}: {}",
            c.speedup_vs_sequential,
            c.speedup_vs_sprs,
            c.sequential_check,
            if c.sequential_equal { "yes" } else { "NO" }
        );
        let _ = writeln!(
            s,
            "  sprs (sums every contribution): {} vs {} activations, {} nodes in one only, max |diff| {:.4}",
            d.activated_sprs,
            d.activated_warpgrid,
            d.activated_by_one_only,
            d.max_abs_activation_diff
        );
    }
    let p = &r.predictor;
    let _ = writeln!(
        s,
        "latency predictor (budgeted run): {} hops, {} scored, {:.1}% within 20% (goal {:.0}%): {}; |error| < 5/10/20/50/100/200%/more: {:?}; {} partial stops",
        p.hops_observed,
        p.predictions,
        p.fraction_within_20_percent * 100.0,
        p.goal * 100.0,
        if p.goal_met { "met" } else { "NOT met" },
        p.error_buckets,
        p.partial_stops
    );
    let q = &r.queue;
    let _ = writeln!(
        s,
        "recall queue: {} clients x {} in flight, P95 target {:.1} ms: {} recalls in {:.2} s = {:.0} recalls/s ({:.2}x single); latency P50 {:.0} us P95 {:.0} us P99 {:.0} us; {} batches of {:.1} on average, final limit {}; every result equals its single recall: {}",
        q.clients,
        q.window,
        q.target_p95_ms,
        q.recalls,
        q.s,
        q.recalls_per_s,
        q.vs_single,
        q.p50_us,
        q.p95_us,
        q.p99_us,
        q.batches,
        q.mean_batch,
        q.final_batch_limit,
        if q.results_equal { "yes" } else { "NO" }
    );
    s
}
