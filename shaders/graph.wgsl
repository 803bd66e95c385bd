// Spreading (SPEC §2.2): one pull hop for every node and lane, and the similarity of
// normalised queries to the f16 embeddings. CPU siblings: engine/src/graph/spread.rs
// (`pull_part`, `apply`) and engine/src/graph/embed.rs (`similarities`).
//
// Layout (as on the CPU): lane q of node v lives at v * lanes + q. The in-edges of v are
// in_sources[in_offsets[v] .. in_offsets[v + 1]], ascending by source, so the sum of a node
// adds its contributions in ascending source order, the order SPEC §2.2 requires.

const UNSET: u32 = 255u;
const WORKGROUP: u32 = 64u;

struct Hop {
    nodes: u32,
    lanes: u32,
    hop: u32,
    refractory: u32,
    dk: f32,
    theta: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> hop: Hop;
@group(0) @binding(1) var<storage, read> in_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> in_sources: array<u32>;
@group(0) @binding(3) var<storage, read> in_weights: array<f32>;
@group(0) @binding(4) var<storage, read> cur: array<f32>;
@group(0) @binding(5) var<storage, read_write> next: array<f32>;
@group(0) @binding(6) var<storage, read_write> act: array<f32>;
@group(0) @binding(7) var<storage, read_write> first_hop: array<u32>;
@group(0) @binding(8) var<storage, read_write> alive: array<atomic<u32>>;

// The flat index of an invocation of a dispatch that may use two dimensions (more than
// 65535 workgroups).
fn flat(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

@compute @workgroup_size(64)
fn pull_hop(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    let lanes = hop.lanes;
    if (i >= hop.nodes * lanes) {
        return;
    }
    let v = i / lanes;
    let q = i % lanes;
    var s = 0.0;
    for (var e = in_offsets[v]; e < in_offsets[v + 1u]; e = e + 1u) {
        let d = cur[in_sources[e] * lanes + q];
        if (d > 0.0) {
            // Two roundings, in this order: (Δ · w') · D(k).
            let c = (d * in_weights[e]) * hop.dk;
            if (c >= hop.theta) {
                s = s + c;
            }
        }
    }
    let old = act[i];
    var delta = 0.0;
    if (s > 0.0 && !(hop.refractory != 0u && old > 0.0)) {
        let updated = min(1.0, old + s);
        delta = updated - old;
        act[i] = updated;
        if (first_hop[i] == UNSET) {
            first_hop[i] = hop.hop;
        }
    }
    next[i] = delta;
    if (delta > 0.0) {
        atomicOr(&alive[q], 1u);
    }
}

struct Sim {
    rows: u32,
    queries: u32,
    dim: u32,
    // u32 words per packed f16 row: ceil(dim / 2).
    row_words: u32,
}

// Bindings 10.. so that both entry points can live in one module (each pipeline's layout
// holds only the bindings its entry point uses).
@group(0) @binding(10) var<uniform> sim: Sim;
@group(0) @binding(11) var<storage, read> rows: array<u32>;
@group(0) @binding(12) var<storage, read> queries: array<f32>;
@group(0) @binding(13) var<storage, read_write> sims: array<f32>;

// sims[j * queries + i] = dot(query i, row j), the row widened from f16 to f32; the sum
// runs in ascending component order (SPEC §2.2a leaves the order free).
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
    sims[t] = s;
}
