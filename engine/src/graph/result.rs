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
    /// The node id.
    pub node: u32,
    /// The node's label, if it has one.
    pub label: Option<Arc<str>>,
    /// Final activation, in (0, 1].
    pub activation: f32,
    /// `activation · factor(tier(first_hop))`.
    pub confidence: f32,
    /// The hop at which the node first received activation (0 for seeds).
    pub first_hop: u32,
}

/// Every node with activation > 0, by activation descending then node ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct SpreadResult {
    /// The activated nodes, in that order.
    pub hits: Vec<SpreadHit>,
    /// The last hop evaluated (the all-zero hop that stopped the spread counts).
    pub hops_done: u32,
}

/// One hit of a recall.
#[derive(Debug, Clone, PartialEq)]
pub struct RecallHit {
    /// The node id.
    pub node: u32,
    /// The node's label, if it has one.
    pub label: Option<Arc<str>>,
    /// The ranking score: sim in similarity mode, `activation · confidence` in spreading mode,
    /// and for a seed in hybrid mode the mean of that and its sim.
    pub score: f32,
    /// Final activation in (0, 1] (a0 in similarity mode).
    pub activation: f32,
    /// `activation · factor(tier(first_hop))` (a0 in similarity mode).
    pub confidence: f32,
    /// The similarity of a seed; `None` for a node reached only by spreading.
    pub sim: Option<f32>,
    /// The hop at which the node first received activation (0 for seeds).
    pub first_hop: u32,
}

/// The hits of one recall, by score descending then node ascending, at most `k`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecallResult {
    /// The hits, in that order.
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
/// Hits at or above which they are sorted in parallel.
const PARALLEL_SORT: usize = 1 << 14;

/// The sort key of a hit with activation `a > 0`: ascending keys are activation
/// descending, then node ascending — [`rank`]'s order, since a positive f32's bits order as
/// its value (the high half is the complement of the bits).
#[inline]
fn rank_key(a: f32, v: usize) -> u64 {
    debug_assert!(a > 0.0);
    (u64::from(!a.to_bits()) << 32) | v as u64
}

/// The spread result of lane 0 of `s` (a one-lane propagation).
///
/// The activated nodes are collected as [`rank_key`]s, sorted (8-byte keys rather than the
/// hits themselves), and the hits built in that order. Small lists sort on this thread
/// rather than waking the pool; keys are distinct, so any sort gives the same list.
pub(crate) fn spread_result(graph: &Graph, s: &Scratch, params: &SpreadParams) -> SpreadResult {
    let n = graph.node_count();
    let a = &s.a[..n];
    let mut keys: Vec<u64> = if n >= PARALLEL_SCAN {
        a.par_iter()
            .enumerate()
            .filter(|(_, a)| **a > 0.0)
            .map(|(v, &a)| rank_key(a, v))
            .collect()
    } else {
        let mut keys = Vec::new();
        for (v, &a) in a.iter().enumerate() {
            if a > 0.0 {
                keys.push(rank_key(a, v));
            }
        }
        keys
    };
    if keys.len() >= PARALLEL_SORT {
        keys.par_sort_unstable();
    } else {
        keys.sort_unstable();
    }
    let hit = |&key: &u64| {
        let v = (key & u64::from(u32::MAX)) as usize;
        let a = s.a[v];
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
    };
    let hits = if keys.len() >= PARALLEL_SORT {
        keys.par_iter().map(hit).collect()
    } else {
        keys.iter().map(hit).collect()
    };
    SpreadResult {
        hits,
        hops_done: s.hops_done[0],
    }
}
