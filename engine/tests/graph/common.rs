//! Helpers of the graph tests, and a straightforward sequential reference implementation of
//! SPEC §2.2 (spread) and §2.3 (recall), written from the spec text independently of the
//! engine's push/pull/partition machinery.

#![allow(dead_code)]

use std::collections::BTreeMap;

use half::f16;
use warpgrid_engine::backend::{BackendKind, Device, DeviceConfig};
use warpgrid_engine::graph::{
    Decay, Evaluation, Graph, GraphBuilder, GraphConfig, NodeKind, RecallMode, RecallParams, Seed,
    SpreadParams, SpreadResult, Tier, dot,
};

/// A CPU device with `threads` workers.
pub fn device(threads: usize) -> Device {
    Device::open(&DeviceConfig {
        backend: BackendKind::Cpu,
        threads,
        ..DeviceConfig::default()
    })
    .expect("cpu device")
}

/// Flat multipliers (every m = 1), so w' = f32(w).
pub fn flat() -> GraphConfig {
    GraphConfig {
        hierarchical: false,
        ..GraphConfig::default()
    }
}

/// A graph of `n` concept nodes and the given raw edges, flat multipliers.
pub fn graph(n: usize, edges: &[(u32, u32, f64)]) -> Graph {
    let mut b = GraphBuilder::new(flat());
    for _ in 0..n {
        b.add_node(NodeKind::Concept, None);
    }
    for &(u, v, w) in edges {
        b.add_edge(u, v, w);
    }
    b.build().expect("valid graph")
}

/// Decay 1 at every hop (linear, slope 0): contributions are `Δ · w'` exactly.
pub fn no_decay() -> SpreadParams {
    SpreadParams {
        decay: Decay::Linear { slope: 0.0 },
        ..SpreadParams::default()
    }
}

/// Spreads with push, pull and auto on 1 and 4 threads, asserts all six results are equal,
/// and returns it.
pub fn spread_all_ways(g: &Graph, seeds: &[Seed], params: &SpreadParams) -> SpreadResult {
    let mut first: Option<SpreadResult> = None;
    for threads in [1, 4] {
        let d = device(threads);
        for evaluation in [Evaluation::Push, Evaluation::Pull, Evaluation::Auto] {
            let p = SpreadParams {
                evaluation,
                ..params.clone()
            };
            let r = g.spread(&d, seeds, &p).expect("spread");
            match &first {
                None => first = Some(r),
                Some(f) => assert_eq!(&r, f, "{evaluation:?} on {threads} threads differs"),
            }
        }
    }
    first.expect("at least one run")
}

/// `(node, activation, confidence, first_hop)` of each hit, in result order.
pub fn hits(r: &SpreadResult) -> Vec<(u32, f32, f32, u32)> {
    r.hits
        .iter()
        .map(|h| (h.node, h.activation, h.confidence, h.first_hop))
        .collect()
}

/// The state SPEC §2.2 defines after a spread.
#[derive(Debug, Clone, PartialEq)]
pub struct RefSpread {
    pub a: Vec<f32>,
    pub first_hop: Vec<Option<u32>>,
    pub hops_done: u32,
}

/// SPEC §2.2 literally: every hop visits every node v and sums over the edges u -> v in
/// ascending (u, edge position) order, found by scanning all of CSR in order. `stop_before`
/// cuts the loop before that hop (the latency budget's partial result).
pub fn reference_spread(
    g: &Graph,
    seeds: &[Seed],
    p: &SpreadParams,
    stop_before: Option<u32>,
) -> RefSpread {
    let n = g.node_count();
    let mut a = vec![0.0f32; n];
    let mut first_hop = vec![None; n];
    for s in seeds {
        if s.a0 < p.thresholds[0] {
            continue;
        }
        let v = s.node as usize;
        a[v] = (a[v] + s.a0).min(1.0);
    }
    let mut delta = a.clone();
    for v in 0..n {
        if a[v] > 0.0 {
            first_hop[v] = Some(0);
        }
    }
    // In-edges of each node in ascending (source, position) order.
    let mut incoming: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for u in 0..n as u32 {
        let (targets, ws) = g.out_edges(u);
        for (&v, &w) in targets.iter().zip(ws) {
            incoming[v as usize].push((u, w));
        }
    }
    let mut hops_done = 0;
    for k in 1..=p.max_hops {
        if stop_before == Some(k) {
            break;
        }
        let kf = f64::from(k);
        let dk = match p.decay {
            Decay::Exponential { rate } => (-rate * kf).exp() as f32,
            Decay::Power { exponent } => (kf + 1.0).powf(-exponent) as f32,
            Decay::Linear { slope } => (1.0 - slope * kf).max(0.0) as f32,
        };
        let theta = p.thresholds[Tier::of_hop(k) as usize];
        let mut next = vec![0.0f32; n];
        for v in 0..n {
            let mut s = 0.0f32;
            for &(u, w) in &incoming[v] {
                let d = delta[u as usize];
                if d > 0.0 {
                    let c = (d * w) * dk;
                    if c >= theta {
                        s += c;
                    }
                }
            }
            if s > 0.0 && !(p.refractory && a[v] > 0.0) {
                let new = (a[v] + s).min(1.0);
                next[v] = new - a[v];
                a[v] = new;
                if first_hop[v].is_none() {
                    first_hop[v] = Some(k);
                }
            }
        }
        hops_done = k;
        delta = next;
        if delta.iter().all(|&d| d == 0.0) {
            break;
        }
    }
    RefSpread {
        a,
        first_hop,
        hops_done,
    }
}

/// The spread result the reference state gives: hits sorted by activation desc, node asc.
pub fn reference_hits(g: &Graph, r: &RefSpread, p: &SpreadParams) -> Vec<(u32, f32, f32, u32)> {
    let mut out: Vec<(u32, f32, f32, u32)> = (0..g.node_count())
        .filter(|&v| r.a[v] > 0.0)
        .map(|v| {
            let fh = r.first_hop[v].expect("activated nodes have a first hop");
            let conf = r.a[v] * p.confidence_factors[Tier::of_hop(fh) as usize];
            (v as u32, r.a[v], conf, fh)
        })
        .collect();
    out.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    out
}

/// One expected recall hit: `(node, score, activation, confidence, sim, first_hop)`.
pub type RefHit = (u32, f32, f32, f32, Option<f32>, u32);

/// SPEC §2.3 literally, on top of [`reference_spread`].
pub fn reference_recall(
    g: &Graph,
    query: &[f32],
    p: &RecallParams,
    stop_before: Option<u32>,
) -> (Vec<RefHit>, u32) {
    let d = g.dim();
    // normalise(q) in f32: q_i / sqrt(dot(q, q)).
    let norm = dot(query, query).sqrt();
    let q: Vec<f32> = query.iter().map(|x| x / norm).collect();
    let mut sims: Vec<(f32, u32)> = Vec::new();
    let mut row = vec![0.0f32; d];
    for v in 0..g.node_count() as u32 {
        if let Some(e) = g.embedding(v) {
            for (r, x) in row.iter_mut().zip(e) {
                *r = f16::to_f32(*x);
            }
            sims.push((dot(&q, &row), v));
        }
    }
    sims.retain(|&(s, _)| s >= p.sim_threshold);
    sims.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    sims.truncate(p.seeds_k);
    let mut seeds = Vec::new();
    let mut seed_sim = BTreeMap::new();
    for &(s, v) in &sims {
        let x = -(f64::from(s) - f64::from(p.sim_threshold)) / f64::from(p.temperature);
        let a0 = (1.0 / (1.0 + x.exp())) as f32;
        if a0 < 0.01 {
            continue;
        }
        seeds.push(Seed::new(v, a0));
        seed_sim.insert(v, s);
    }
    let mut out: Vec<RefHit> = Vec::new();
    let hops_done;
    if p.mode == RecallMode::Similarity {
        for s in &seeds {
            let sim = seed_sim[&s.node];
            if s.a0 >= p.min_confidence {
                out.push((s.node, sim, s.a0, s.a0, Some(sim), 0));
            }
        }
        hops_done = 0;
    } else {
        let r = reference_spread(g, &seeds, &p.spread, stop_before);
        hops_done = r.hops_done;
        for v in 0..g.node_count() {
            if r.a[v] <= 0.0 {
                continue;
            }
            let fh = r.first_hop[v].expect("activated");
            let mut conf = r.a[v] * p.spread.confidence_factors[Tier::of_hop(fh) as usize];
            let sim = seed_sim.get(&(v as u32)).copied();
            if sim.is_some() {
                conf = (conf * 1.1).min(1.0);
            }
            let mut score = r.a[v] * conf;
            if let (RecallMode::Hybrid, Some(s)) = (p.mode, sim) {
                score = (score + s) / 2.0;
            }
            if conf >= p.min_confidence {
                out.push((v as u32, score, r.a[v], conf, sim, fh));
            }
        }
    }
    out.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    out.truncate(p.k);
    (out, hops_done)
}

/// The fields of recall hits as [`RefHit`]s.
pub fn recall_hits(r: &warpgrid_engine::graph::RecallResult) -> Vec<RefHit> {
    r.hits
        .iter()
        .map(|h| {
            (
                h.node,
                h.score,
                h.activation,
                h.confidence,
                h.sim,
                h.first_hop,
            )
        })
        .collect()
}
