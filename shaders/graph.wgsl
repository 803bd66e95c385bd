// Graphs (SPEC §2): spreading hops, the similarity of normalised queries to the f16
// embeddings, and the top-k choice of recall seeds. CPU siblings: engine/src/graph/spread.rs
// (`pull_part`, `push_part`, `apply`), engine/src/graph/embed.rs (`similarities`) and
// engine/src/graph/recall.rs (`choose_seeds`). Host side: engine/src/graph/gpu.rs.
//
// Layout (as on the CPU): lane q of node v lives at v * lanes + q. The in-edges of v are
// in_sources[in_offsets[v] .. in_offsets[v + 1]], ascending by source, so the sum of a node
// adds its contributions in ascending source order, the order SPEC §2.2 requires.
//
// A hop is `pull_all` (every node) or, for a small frontier, `mark_targets` then
// `pull_touched`: the frontier marks its out-neighbours and only those are pulled. A node
// outside the marked set has no active in-source, so its sum is +0 and a full pull would
// leave it unchanged: both ways give the same bits. Every hop then runs `retire`, which
// zeroes Δ(k-1) at the old frontier, so the Δ buffer the next hop writes is all zero.

const WORKGROUP: u32 = 64u;

// Per-node flag bits in `lists[v]`.
const TOUCHED: u32 = 1u;      // marked by this hop's frontier (push)
const EVER: u32 = 8u;         // in some frontier so far: listed in the activated list
// Bits 2 and 4: in the frontier built by an even / odd hop (`hop.bit`, `hop.prev_bit`).

// Counters in `stats`.
const NEXT_COUNT: u32 = 0u;   // nodes in the frontier being built
const NEXT_EDGES: u32 = 1u;   // their out-edges
const TOUCHED_COUNT: u32 = 2u;
const ACTIVATED_COUNT: u32 = 3u;
const ALIVE: u32 = 4u;        // + lane: Δk non-zero somewhere in the lane

struct Hop {
    nodes: u32,
    lanes: u32,
    // The hop k, stored in first_hop as k + 1 (0 = not activated yet).
    hop: u32,
    refractory: u32,
    dk: f32,
    theta: f32,
    // The frontier of hop k - 1: lists[frontier_off .. frontier_off + frontier_len].
    frontier_len: u32,
    frontier_off: u32,
    // Where this hop lists its frontier, the touched nodes, and every activated node.
    next_off: u32,
    touched_off: u32,
    activated_off: u32,
    // Flag bit of this hop's frontier, and of the previous one (cleared by `retire`).
    bit: u32,
    prev_bit: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> hop: Hop;
// in_offsets (nodes + 1) then out_offsets (nodes + 1).
@group(0) @binding(1) var<storage, read> offsets: array<u32>;
@group(0) @binding(2) var<storage, read> in_sources: array<u32>;
@group(0) @binding(3) var<storage, read> in_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> cur: array<f32>;
@group(0) @binding(5) var<storage, read_write> next: array<f32>;
// state[2 i] = a (f32 bits), state[2 i + 1] = first_hop + 1.
@group(0) @binding(6) var<storage, read_write> state: array<u32>;
// Node flags [0, n), then the node lists at the offsets in `hop`.
@group(0) @binding(7) var<storage, read_write> lists: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> stats: array<atomic<u32>>;
@group(0) @binding(9) var<storage, read> out_targets: array<u32>;

// The flat index of an invocation of a dispatch that may use two dimensions (more than
// 65535 workgroups).
fn flat(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

fn out_degree(v: u32) -> u32 {
    let base = hop.nodes + 1u;
    return offsets[base + v + 1u] - offsets[base + v];
}

// SPEC §2.2's update of lane q of node v: the sum of its kept in-contributions, then
// a, Δk and first_hop; a node with Δk > 0 joins the next frontier (once).
fn pull_node(v: u32, q: u32) {
    let lanes = hop.lanes;
    let i = v * lanes + q;
    var s = 0.0;
    for (var e = offsets[v]; e < offsets[v + 1u]; e = e + 1u) {
        let d = cur[in_sources[e] * lanes + q];
        if (d > 0.0) {
            // Two roundings, in this order: (Δ · w') · D(k).
            let c = (d * in_weights[e]) * hop.dk;
            if (c >= hop.theta) {
                s = s + c;
            }
        }
    }
    let old = bitcast<f32>(state[2u * i]);
    var delta = 0.0;
    if (s > 0.0 && !(hop.refractory != 0u && old > 0.0)) {
        let updated = min(1.0, old + s);
        delta = updated - old;
        state[2u * i] = bitcast<u32>(updated);
        if (state[2u * i + 1u] == 0u) {
            state[2u * i + 1u] = hop.hop + 1u;
        }
    }
    next[i] = delta;
    if (delta > 0.0) {
        atomicOr(&stats[ALIVE + q], 1u);
        let was = atomicOr(&lists[v], hop.bit | EVER);
        if ((was & hop.bit) == 0u) {
            let at = atomicAdd(&stats[NEXT_COUNT], 1u);
            atomicStore(&lists[hop.next_off + at], v);
            atomicAdd(&stats[NEXT_EDGES], out_degree(v));
        }
        if ((was & EVER) == 0u) {
            let at = atomicAdd(&stats[ACTIVATED_COUNT], 1u);
            atomicStore(&lists[hop.activated_off + at], v);
        }
    }
}

// Pull: every (node, lane).
@compute @workgroup_size(64)
fn pull_all(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= hop.nodes * hop.lanes) {
        return;
    }
    pull_node(i / hop.lanes, i % hop.lanes);
}

// Push, first half: each frontier node marks its out-neighbours (each listed once).
@compute @workgroup_size(64)
fn mark_targets(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>) {
    let f = flat(gid, groups);
    if (f >= hop.frontier_len) {
        return;
    }
    let u = atomicLoad(&lists[hop.frontier_off + f]);
    let base = hop.nodes + 1u;
    for (var e = offsets[base + u]; e < offsets[base + u + 1u]; e = e + 1u) {
        let v = out_targets[e];
        let was = atomicOr(&lists[v], TOUCHED);
        if ((was & TOUCHED) == 0u) {
            let at = atomicAdd(&stats[TOUCHED_COUNT], 1u);
            atomicStore(&lists[hop.touched_off + at], v);
        }
    }
}

// Push, second half: pull every (marked node, lane). The dispatch covers an upper bound.
@compute @workgroup_size(64)
fn pull_touched(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let t = i / hop.lanes;
    let q = i % hop.lanes;
    if (t >= atomicLoad(&stats[TOUCHED_COUNT])) {
        return;
    }
    let v = atomicLoad(&lists[hop.touched_off + t]);
    pull_node(v, q);
    if (q == 0u) {
        atomicAnd(&lists[v], ~TOUCHED);
    }
}

// After the pull: Δ(k-1) back to zero at the old frontier, which leaves its flag.
@compute @workgroup_size(64)
fn retire(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= hop.frontier_len * hop.lanes) {
        return;
    }
    let u = atomicLoad(&lists[hop.frontier_off + i / hop.lanes]);
    let q = i % hop.lanes;
    cur[u * hop.lanes + q] = 0.0;
    if (q == 0u) {
        atomicAnd(&lists[u], ~hop.prev_bit);
    }
}

// The seeds: `seeds[2 j]` = flat index, `seeds[2 j + 1]` = a (bits), for j < frontier_len;
// the seeded nodes are already listed (by the host) at frontier_off and activated_off.
@group(0) @binding(20) var<storage, read> seeds: array<u32>;

@compute @workgroup_size(64)
fn seed(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat(gid, groups);
    if (j >= hop.frontier_len) {
        return;
    }
    let i = seeds[2u * j];
    let a = seeds[2u * j + 1u];
    state[2u * i] = a;
    state[2u * i + 1u] = 1u;
    cur[i] = bitcast<f32>(a);
    atomicOr(&lists[i / hop.lanes], hop.bit | EVER);
}

// At the end: the (a, first_hop) pairs of the activated nodes, compacted into `cur` and
// `next` in activated-list order, so only those come back to the host.
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let j = i / hop.lanes;
    let q = i % hop.lanes;
    if (j >= atomicLoad(&stats[ACTIVATED_COUNT])) {
        return;
    }
    let v = atomicLoad(&lists[hop.activated_off + j]);
    let at = v * hop.lanes + q;
    cur[i] = bitcast<f32>(state[2u * at]);
    next[i] = bitcast<f32>(state[2u * at + 1u]);
}

struct Sim {
    rows: u32,
    queries: u32,
    dim: u32,
    // u32 words per packed f16 row: ceil(dim / 2).
    row_words: u32,
    // This chunk's first row in the similarity matrix (rows are uploaded in chunks so that
    // no binding passes the adapter's limit).
    row_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Bindings 10.. so that every entry point can live in one module (each pipeline's layout
// holds only the bindings its entry point uses).
@group(0) @binding(10) var<uniform> sim: Sim;
@group(0) @binding(11) var<storage, read> rows: array<u32>;
@group(0) @binding(12) var<storage, read> queries: array<f32>;
@group(0) @binding(13) var<storage, read_write> sims: array<f32>;

// sims[(row_base + j) * queries + i] = dot(query i, row j of the chunk), the row widened
// from f16 to f32; the sum runs in ascending component order (SPEC §2.2a leaves it free).
@compute @workgroup_size(64)
fn similarity(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>) {
    let t = flat(gid, groups);
    if (t >= sim.rows * sim.queries) {
        return;
    }
    let j = t / sim.queries;
    let i = t % sim.queries;
    let row = j * sim.row_words;
    let query = i * sim.dim;
    var s = 0.0;
    for (var w = 0u; w < sim.row_words; w = w + 1u) {
        let pair = unpack2x16float(rows[row + w]);
        let k = 2u * w;
        s = s + pair.x * queries[query + k];
        if (k + 1u < sim.dim) {
            s = s + pair.y * queries[query + k + 1u];
        }
    }
    sims[(sim.row_base + j) * sim.queries + i] = s;
}

// Top-k seeds (SPEC §2.3): per query, the k best (sim, node) with sim >= θs, by sim
// descending (f32 total order) then node ascending. A candidate is a key pair
// (!order(sim), node): ascending keys are that rank. Each workgroup sorts a tile of
// TILE candidates of one query in workgroup memory (bitonic) and keeps its first k; tiles
// of k-lists are merged the same way until one list per query is left.
const TILE: u32 = 1024u;
const TOPK_GROUP: u32 = 256u;
const NONE: u32 = 0xffffffffu;

struct Topk {
    queries: u32,
    // Candidates per query in the input (rows, or tiles × k of the previous round).
    count: u32,
    k: u32,
    // 1: the input is the similarity matrix; 0: candidate lists.
    from_sims: u32,
    theta: f32,
    // Tiles per query in this round (the output holds tiles × k per query).
    tiles: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(30) var<uniform> topk: Topk;
@group(0) @binding(31) var<storage, read> topk_sims: array<f32>;
@group(0) @binding(32) var<storage, read> embedded: array<u32>;
@group(0) @binding(33) var<storage, read> cand_in: array<vec2<u32>>;
@group(0) @binding(34) var<storage, read_write> cand_out: array<vec2<u32>>;

var<workgroup> tile: array<vec2<u32>, TILE>;

// f32 bits to a u32 that orders as `f32::total_cmp`.
fn total_order(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn before(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x < b.x || (a.x == b.x && a.y < b.y);
}

@compute @workgroup_size(256)
fn topk_tiles(@builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(workgroup_id) wid: vec3<u32>) {
    let query = wid.y;
    let t = wid.x;
    for (var r = 0u; r < TILE / TOPK_GROUP; r = r + 1u) {
        let slot = lid.x + r * TOPK_GROUP;
        let c = t * TILE + slot;
        var key = vec2<u32>(NONE, NONE);
        if (c < topk.count) {
            if (topk.from_sims != 0u) {
                let s = topk_sims[c * topk.queries + query];
                if (s >= topk.theta) {
                    key = vec2<u32>(~total_order(s), embedded[c]);
                }
            } else {
                key = cand_in[query * topk.count + c];
            }
        }
        tile[slot] = key;
    }
    workgroupBarrier();
    for (var size = 2u; size <= TILE; size = size * 2u) {
        for (var stride = size / 2u; stride > 0u; stride = stride / 2u) {
            for (var r = 0u; r < TILE / (2u * TOPK_GROUP); r = r + 1u) {
                // The pair (lo, lo + stride) of comparator p.
                let p = lid.x + r * TOPK_GROUP;
                let lo = (p / stride) * stride * 2u + p % stride;
                let hi = lo + stride;
                let ascending = (lo & size) == 0u;
                let a = tile[lo];
                let b = tile[hi];
                if (before(b, a) == ascending) {
                    tile[lo] = b;
                    tile[hi] = a;
                }
            }
            workgroupBarrier();
        }
    }
    for (var j = lid.x; j < topk.k; j = j + TOPK_GROUP) {
        cand_out[(query * topk.tiles + t) * topk.k + j] = tile[j];
    }
}
