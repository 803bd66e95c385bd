//! Seeded graph generators for tests and benches: Barabási–Albert and uniform random graphs
//! with random embeddings, and queries near stored embeddings. Every random number comes from
//! one [`SplitMix64`] in the documented order, so docs/graphs.md is enough to rebuild the
//! exact same graph in any language.

use half::slice::HalfFloatSliceExt;

use super::Graph;
use super::build::GraphBuilder;
use super::config::{GraphConfig, NodeKind};
use super::error::GraphError;
use crate::rng::SplitMix64;

/// A weight in (0, 1]: `1 - unit_f64()`.
fn weight(rng: &mut SplitMix64) -> f64 {
    1.0 - rng.unit_f64()
}

/// Kinds: one draw per node, `next_u64() & 1`: 0 concept, 1 episode.
fn kinds(b: &mut GraphBuilder, n: usize, rng: &mut SplitMix64) {
    for _ in 0..n {
        let kind = if rng.next_u64() & 1 == 0 {
            NodeKind::Concept
        } else {
            NodeKind::Episode
        };
        b.add_node(kind, None);
    }
}

/// Embeddings: `n × dim` draws, row-major, each `(2 · unit_f64() - 1) as f32`; normalised
/// by the build like any input. `dim = 0`: none (no draws).
fn embeddings(b: &mut GraphBuilder, n: usize, dim: usize, rng: &mut SplitMix64) {
    if dim == 0 {
        return;
    }
    let rows: Vec<f32> = (0..n * dim)
        .map(|_| (2.0 * rng.unit_f64() - 1.0) as f32)
        .collect();
    b.embeddings(dim, rows);
}

fn check(field: &'static str, ok: bool, reason: String) -> Result<(), GraphError> {
    if ok {
        Ok(())
    } else {
        Err(GraphError::argument(field, reason))
    }
}

/// A uniform random directed graph: `n` nodes, `edges` draws of `(u, v, w)`
/// (`u = below(n)`, `v = below(n)`, `w = 1 - unit_f64()`; duplicates merge at build, self
/// loops stay), then embeddings of dimension `dim` (0 = none).
///
/// Draw order: kinds, edges, embeddings.
pub fn uniform(
    n: usize,
    edges: usize,
    dim: usize,
    seed: u64,
    config: GraphConfig,
) -> Result<GraphBuilder, GraphError> {
    check("n", n >= 1, format!("expected at least 1 node, got {n}"))?;
    let mut rng = SplitMix64::new(seed);
    let mut b = GraphBuilder::new(config);
    kinds(&mut b, n, &mut rng);
    for _ in 0..edges {
        let u = rng.below(n as u64) as u32;
        let v = rng.below(n as u64) as u32;
        let w = weight(&mut rng);
        b.add_edge(u, v, w);
    }
    embeddings(&mut b, n, dim, &mut rng);
    Ok(b)
}

/// A Barabási–Albert graph with both directions of every link: nodes `0..m` start
/// unconnected; node `v = m` links to all of them; each later node `v` links to `m` distinct
/// earlier nodes drawn with probability proportional to degree (uniform picks
/// `ends[below(len)]` from the list of link endpoints, a repeat is drawn again). Each link
/// `v — t`, in the order the targets were drawn, adds `v -> t` then `t -> v`, each with its own
/// weight `1 - unit_f64()`, and appends `t`, then `v`, to `ends`. Every node's endpoints
/// are appended after all its targets are drawn. `2 · m · (n - m)` directed edges.
///
/// Draw order: kinds, then the links node by node (targets, then weights), then embeddings.
pub fn barabasi_albert(
    n: usize,
    m: usize,
    dim: usize,
    seed: u64,
    config: GraphConfig,
) -> Result<GraphBuilder, GraphError> {
    check(
        "m",
        m >= 1 && m < n,
        format!("expected 1 <= m < n, got m = {m}, n = {n}"),
    )?;
    let mut rng = SplitMix64::new(seed);
    let mut b = GraphBuilder::new(config);
    kinds(&mut b, n, &mut rng);
    let mut ends: Vec<u32> = Vec::with_capacity(2 * m * (n - m));
    let mut targets: Vec<u32> = Vec::with_capacity(m);
    for v in m..n {
        targets.clear();
        if v == m {
            targets.extend(0..m as u32);
        } else {
            while targets.len() < m {
                let t = ends[rng.below(ends.len() as u64) as usize];
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
        for &t in &targets {
            let w_out = weight(&mut rng);
            let w_back = weight(&mut rng);
            b.add_edge(v as u32, t, w_out);
            b.add_edge(t, v as u32, w_back);
        }
        for &t in &targets {
            ends.push(t);
            ends.push(v as u32);
        }
    }
    embeddings(&mut b, n, dim, &mut rng);
    Ok(b)
}

/// `count` queries near stored embeddings: for each, a node `embedded[below(len)]`, then its
/// stored (f16) embedding widened to f32 plus `noise · (2 · unit_f64() - 1)` per component.
/// Returned row-major (`count × dim`). The graph must have embeddings.
pub fn queries_near(
    graph: &Graph,
    count: usize,
    noise: f32,
    seed: u64,
) -> Result<Vec<f32>, GraphError> {
    let dim = graph.dim();
    let embedded = &graph.emb.embedded;
    check(
        "graph",
        dim > 0 && !embedded.is_empty(),
        "the graph has no embeddings".into(),
    )?;
    let mut rng = SplitMix64::new(seed);
    let mut out = vec![0.0f32; count * dim];
    for row in out.chunks_exact_mut(dim) {
        let v = embedded[rng.below(embedded.len() as u64) as usize];
        graph.emb.row(v).convert_to_f32_slice(row);
        for x in row.iter_mut() {
            *x += noise * (2.0 * rng.unit_f64() - 1.0) as f32;
        }
    }
    Ok(out)
}
