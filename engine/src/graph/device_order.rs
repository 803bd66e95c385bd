//! The host side of graph work on a GPU, shared by the wgpu (`gpu`) and CUDA (`cuda`)
//! backends, whose kernels (`shaders/graph.wgsl`, `kernels/graph.cu`) have the same names,
//! buffers and constants:
//! - the order of a spread ([`propagate`]): seeding, the per-hop choice of pull or push and
//!   the latency gate, early stop, and the read-back of the activated nodes; a backend only
//!   provides the three device steps of [`HopDevice`];
//! - the decoding of the top-k lists a device reads back ([`decode_top_k`]);
//! - the pools of work buffers kept with a graph between calls ([`take_fitting`]).

use std::sync::Mutex;

use super::Graph;
use super::error::GraphError;
use super::params::{MAX_HOPS, Seed, SpreadParams, Tier};
use super::spread::{self, HopGate, HopMethod, Outcome, Scratch, UNSET};

/// The constants of one hop, laid out as `Hop` in both the shader and the kernel (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Hop {
    pub nodes: u32,
    pub lanes: u32,
    pub hop: u32,
    pub refractory: u32,
    pub dk: f32,
    pub theta: f32,
    pub frontier_len: u32,
    pub frontier_off: u32,
    pub next_off: u32,
    pub touched_off: u32,
    pub activated_off: u32,
    pub bit: u32,
    pub prev_bit: u32,
    pub pad: [u32; 3],
}

/// Counters at the start of the `stats` buffer (the kernels' `NEXT_COUNT` ..); the lanes'
/// alive flags follow.
pub(crate) const STATS_WORDS: usize = 4;
const NEXT_COUNT: usize = 0;
const NEXT_EDGES: usize = 1;
/// Where the seeds' count of activated nodes goes before the first hop.
pub(crate) const ACTIVATED_COUNT: usize = 3;

/// The flag bit of the frontier built by hop `k` (the seeds are hop 0).
fn frontier_bit(k: u32) -> u32 {
    2 << (k & 1)
}

/// The offsets (in words) of the node lists in the `lists` buffer, after `n` node flags:
/// two frontiers (ping-pong), the touched list, the activated list. `lists` holds `5 n`.
pub(crate) fn list_offsets(n: usize) -> ([u32; 2], u32, u32) {
    let n = n as u32;
    ([n, 2 * n], 3 * n, 4 * n)
}

/// What the seeding uploads: `(index, a bits)` per seeded node-lane with a > 0, and the
/// seeded nodes (the first frontier and the first activated nodes).
pub(crate) struct Seeding<'a> {
    pub entries: &'a [[u32; 2]],
    pub nodes: &'a [u32],
    /// The seed kernel's constants (`frontier_len` = entries).
    pub hop: Hop,
}

/// The device steps of a spread; [`propagate`] orders them.
pub(crate) trait HopDevice {
    /// Clears what the last call left (Δ both sides, state, the node flags, the counters),
    /// uploads the seeds, writes the seeded nodes at the first frontier and the activated
    /// list and their count at [`ACTIVATED_COUNT`], and queues the seed kernel, which writes
    /// Δ(0) (the `cur` of hop 1).
    fn seed(&mut self, seeding: &Seeding<'_>) -> Result<(), GraphError>;

    /// Runs hop `h.hop` by `method` (pull over every node-lane; push: mark the frontier's
    /// targets, then pull the `touched_bound` node-lanes at most that were marked), then
    /// retires the old frontier. Returns the `stats` words: [`STATS_WORDS`] counters, then one
    /// alive flag per lane.
    fn hop(
        &mut self,
        h: &Hop,
        method: HopMethod,
        touched_bound: u64,
    ) -> Result<Vec<u32>, GraphError>;

    /// Gathers the `activated` nodes' `a` and `first_hop + 1` and returns, as words, the
    /// `activated × lanes` values of `a`, the same of `first_hop + 1`, then the nodes.
    fn gather(&mut self, h: &Hop, activated: usize) -> Result<Vec<u32>, GraphError>;
}

/// SPEC §2.2 for `lanes` seed lists at once on a device. Leaves `a`, `first_hop`,
/// `hops_done` and `stopped` in `scratch` exactly as `spread::propagate` does; `scratch` is
/// prepared for `n` nodes and `lanes` lanes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn propagate<'s>(
    graph: &Graph,
    dev: &mut dyn HopDevice,
    scratch: &mut Scratch,
    lanes: usize,
    seeds: &dyn Fn(usize) -> &'s [Seed],
    params: &SpreadParams,
    gate: &mut dyn HopGate,
) -> Result<Outcome, GraphError> {
    let n = graph.node_count();
    let (frontier_off, touched_off, activated_off) = list_offsets(n);

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
    dev.seed(&Seeding {
        entries: &entries,
        nodes: &seeded,
        hop: Hop {
            nodes: n as u32,
            lanes: lanes as u32,
            frontier_len: entries.len() as u32,
            bit: frontier_bit(0),
            ..Hop::default()
        },
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
        // At most min(frontier edges, nodes) nodes are marked.
        let touched_bound = frontier_edges.min(n as u64) * lanes as u64;
        let stats = dev.hop(&h, plan.method, touched_bound)?;
        frontier_len = stats[NEXT_COUNT] as usize;
        frontier_edges = u64::from(stats[NEXT_EDGES]);
        activated = stats[ACTIVATED_COUNT] as usize;
        gate.after_hop(&plan);
        let mut running = false;
        for (q, &flag) in stats[STATS_WORDS..STATS_WORDS + lanes].iter().enumerate() {
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

    // The activated nodes' (a, first_hop + 1), compacted on the device.
    let h = Hop {
        nodes: n as u32,
        lanes: lanes as u32,
        activated_off,
        ..Hop::default()
    };
    let words = dev.gather(&h, activated)?;
    let (a, rest) = words.split_at(activated * lanes);
    let (first, nodes) = rest.split_at(activated * lanes);
    for (j, &v) in nodes[..activated].iter().enumerate() {
        for q in 0..lanes {
            let i = v as usize * lanes + q;
            scratch.a[i] = f32::from_bits(a[j * lanes + q]);
            let f = first[j * lanes + q];
            scratch.first_hop[i] = if f == 0 { UNSET } else { (f - 1) as u8 };
        }
    }
    Ok(outcome)
}

/// Every query's top-k lists as read back (`q × k` key pairs `(!total_order(sim), node)`,
/// a list ending early at a `(NONE, NONE)` pair) into `(sim, node)`, best first.
pub(crate) fn decode_top_k(keys: &[u32], q: usize, k: usize, out: &mut [Vec<(f32, u32)>]) {
    const NONE: u32 = u32::MAX;
    for (i, list) in out.iter_mut().enumerate().take(q) {
        for pair in keys[2 * i * k..2 * (i + 1) * k].chunks_exact(2) {
            let (key, node) = (pair[0], pair[1]);
            if key == NONE && node == NONE {
                break;
            }
            list.push((from_total_order(!key), node));
        }
    }
}

/// Takes from `pool` a set of work buffers that `fits`, or `None` (the caller allocates).
/// Buffers go back with [`give_back`] after a successful call; a failed call drops them.
pub(crate) fn take_fitting<T>(pool: &Mutex<Vec<T>>, fits: impl Fn(&T) -> bool) -> Option<T> {
    let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
    let i = pool.iter().position(fits)?;
    Some(pool.swap_remove(i))
}

/// Returns work buffers to their pool.
pub(crate) fn give_back<T>(pool: &Mutex<Vec<T>>, work: T) {
    pool.lock().unwrap_or_else(|p| p.into_inner()).push(work);
}

/// The inverse of the kernels' `total_order` (f32 bits to a u32 ordered like `total_cmp`).
fn from_total_order(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 {
        key & 0x7fff_ffff
    } else {
        !key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_is_the_kernels_64_bytes_and_total_order_inverts() {
        assert_eq!(std::mem::size_of::<Hop>(), 64);
        let total_order = |v: f32| {
            let b = v.to_bits();
            if b & 0x8000_0000 != 0 {
                !b
            } else {
                b | 0x8000_0000
            }
        };
        for v in [-2.5f32, -0.0, 0.0, 1e-30, 0.75, 3.0] {
            assert_eq!(from_total_order(total_order(v)).to_bits(), v.to_bits());
        }
        let mut out = vec![Vec::new(); 2];
        let keys = [
            !total_order(0.5),
            7,
            u32::MAX,
            u32::MAX,
            !total_order(0.9),
            1,
            !total_order(0.1),
            2,
        ];
        decode_top_k(&keys, 2, 2, &mut out);
        assert_eq!(out, vec![vec![(0.5, 7)], vec![(0.9, 1), (0.1, 2)]]);
    }
}
