//! Results of spread and recall (the fields of SPEC §5's JSON), and the spread result's
//! assembly from the propagation state.

use std::cmp::Ordering;
use std::sync::Arc;

use rayon::prelude::*;

use super::Graph;
use super::params::{SpreadParams, Tier};
use super::spread::{Scratch, UNSET};

/// One activated node of a spread.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadHit {
    pub node: u32,
    pub label: Option<Arc<str>>,
    pub activation: f32,
    /// `activation · factor(tier(first_hop))`.
    pub confidence: f32,
    /// The hop at which the node first received activation (0 for seeds).
    pub first_hop: u32,
}

/// Every node with activation > 0, by activation descending then node ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadResult {
    pub hits: Vec<SpreadHit>,
    /// The last hop evaluated (the all-zero hop that stopped the spread counts).
    pub hops_done: u32,
}

/// One hit of a recall.
#[derive(Debug, Clone, PartialEq)]
pub struct RecallHit {
    pub node: u32,
    pub label: Option<Arc<str>>,
    pub score: f32,
    pub activation: f32,
    pub confidence: f32,
    /// The similarity of a seed; `None` for a node reached only by spreading.
    pub sim: Option<f32>,
    pub first_hop: u32,
}

/// The hits of one recall, by score descending then node ascending, at most `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecallResult {
    pub hits: Vec<RecallHit>,
    /// The latency budget stopped the spread before a hop.
    pub partial: bool,
    /// The last hop evaluated; 0 in similarity mode or when stopped before hop 1.
    pub hops_done: u32,
}

/// Descending by `key`, then ascending node: the order of every result list.
#[inline]
pub(crate) fn rank(a_key: f32, a_node: u32, b_key: f32, b_node: u32) -> Ordering {
    b_key.total_cmp(&a_key).then(a_node.cmp(&b_node))
}

/// Nodes at or above which result assembly scans in parallel.
const PARALLEL_SCAN: usize = 1 << 16;

/// The spread result of lane 0 of `s` (a one-lane propagation).
pub(crate) fn spread_result(graph: &Graph, s: &Scratch, params: &SpreadParams) -> SpreadResult {
    let hit = |v: usize| {
        let a = s.a[v];
        (a > 0.0).then(|| {
            let first_hop = s.first_hop[v];
            debug_assert_ne!(first_hop, UNSET);
            let first_hop = u32::from(first_hop);
            SpreadHit {
                node: v as u32,
                label: graph.label_arc(v as u32),
                activation: a,
                confidence: a * params.factor(Tier::of_hop(first_hop)),
                first_hop,
            }
        })
    };
    let n = graph.node_count();
    let mut hits: Vec<SpreadHit> = if n >= PARALLEL_SCAN {
        (0..n).into_par_iter().filter_map(hit).collect()
    } else {
        (0..n).filter_map(hit).collect()
    };
    hits.par_sort_unstable_by(|x, y| rank(x.activation, x.node, y.activation, y.node));
    SpreadResult {
        hits,
        hops_done: s.hops_done[0],
    }
}
