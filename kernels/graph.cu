// Graphs (SPEC §2) in CUDA C: the siblings of shaders/graph.wgsl, kernel for entry point,
// same names, same layouts, same algorithms. CPU siblings: engine/src/graph/spread.rs
// (`pull_part`, `push_part`, `apply`), engine/src/graph/embed.rs (`similarities`),
// engine/src/graph/recall.rs (`choose_seeds`).
//
// Layout (as on the CPU): lane q of node v lives at v * lanes + q. The in-edges of v are
// in_sources[in_offsets[v] .. in_offsets[v + 1]], ascending by source, so a node's sum adds
// its contributions in ascending source order, the order SPEC §2.2 requires. Products and
// sums use __fmul_rn / __fadd_rn (never fused), and the module is compiled with
// --fmad=false as well.
//
// A hop is `pull_all` (every node) or, for a small frontier, `mark_targets` then
// `pull_touched`; `retire` then zeroes Δ(k-1) at the old frontier (see graph.wgsl).

typedef unsigned int u32;

#define TOUCHED 1u
#define EVER 8u

#define NEXT_COUNT 0
#define NEXT_EDGES 1
#define TOUCHED_COUNT 2
#define ACTIVATED_COUNT 3
#define ALIVE 4

struct Hop {
    u32 nodes;
    u32 lanes;
    u32 hop;
    u32 refractory;
    float dk;
    float theta;
    u32 frontier_len;
    u32 frontier_off;
    u32 next_off;
    u32 touched_off;
    u32 activated_off;
    u32 bit;
    u32 prev_bit;
    u32 pad0, pad1, pad2;
};

// The buffers of a hop: offsets = in_offsets (nodes + 1) then out_offsets (nodes + 1);
// state[2 i] = a (f32 bits), state[2 i + 1] = first_hop + 1; lists = node flags [0, n), then
// the node lists at the offsets in `Hop`.
struct HopBuffers {
    const u32 *offsets;
    const u32 *in_sources;
    const float *in_weights;
    float *cur;
    float *next;
    u32 *state;
    u32 *lists;
    u32 *stats;
    const u32 *out_targets;
};

__device__ static u32 flat_index() {
    return blockIdx.x * blockDim.x + threadIdx.x
        + blockIdx.y * gridDim.x * blockDim.x;
}

__device__ static u32 out_degree(const Hop &h, const HopBuffers &b, u32 v) {
    u32 base = h.nodes + 1u;
    return b.offsets[base + v + 1u] - b.offsets[base + v];
}

// SPEC §2.2's update of lane q of node v (graph.wgsl `pull_node`).
__device__ static void pull_node(const Hop &h, const HopBuffers &b, u32 v, u32 q) {
    u32 lanes = h.lanes;
    u32 i = v * lanes + q;
    float s = 0.0f;
    for (u32 e = b.offsets[v]; e < b.offsets[v + 1u]; e++) {
        float d = b.cur[b.in_sources[e] * lanes + q];
        if (d > 0.0f) {
            // Two roundings, in this order: (Δ · w') · D(k).
            float c = __fmul_rn(__fmul_rn(d, b.in_weights[e]), h.dk);
            if (c >= h.theta) {
                s = __fadd_rn(s, c);
            }
        }
    }
    float old = __uint_as_float(b.state[2u * i]);
    float delta = 0.0f;
    if (s > 0.0f && !(h.refractory != 0u && old > 0.0f)) {
        float updated = fminf(1.0f, __fadd_rn(old, s));
        delta = __fsub_rn(updated, old);
        b.state[2u * i] = __float_as_uint(updated);
        if (b.state[2u * i + 1u] == 0u) {
            b.state[2u * i + 1u] = h.hop + 1u;
        }
    }
    b.next[i] = delta;
    if (delta > 0.0f) {
        atomicOr(&b.stats[ALIVE + q], 1u);
        u32 was = atomicOr(&b.lists[v], h.bit | EVER);
        if ((was & h.bit) == 0u) {
            u32 at = atomicAdd(&b.stats[NEXT_COUNT], 1u);
            b.lists[h.next_off + at] = v;
            atomicAdd(&b.stats[NEXT_EDGES], out_degree(h, b, v));
        }
        if ((was & EVER) == 0u) {
            u32 at = atomicAdd(&b.stats[ACTIVATED_COUNT], 1u);
            b.lists[h.activated_off + at] = v;
        }
    }
}

// Pull: every (node, lane).
extern "C" __global__ void pull_all(Hop h, HopBuffers b) {
    u32 i = flat_index();
    if (i >= h.nodes * h.lanes) {
        return;
    }
    pull_node(h, b, i / h.lanes, i % h.lanes);
}

// Push, first half: each frontier node marks its out-neighbours (each listed once).
extern "C" __global__ void mark_targets(Hop h, HopBuffers b) {
    u32 f = flat_index();
    if (f >= h.frontier_len) {
        return;
    }
    u32 u = b.lists[h.frontier_off + f];
    u32 base = h.nodes + 1u;
    for (u32 e = b.offsets[base + u]; e < b.offsets[base + u + 1u]; e++) {
        u32 v = b.out_targets[e];
        u32 was = atomicOr(&b.lists[v], TOUCHED);
        if ((was & TOUCHED) == 0u) {
            u32 at = atomicAdd(&b.stats[TOUCHED_COUNT], 1u);
            b.lists[h.touched_off + at] = v;
        }
    }
}

// Push, second half: pull every (marked node, lane). The launch covers an upper bound.
extern "C" __global__ void pull_touched(Hop h, HopBuffers b) {
    u32 i = flat_index();
    u32 t = i / h.lanes;
    u32 q = i % h.lanes;
    if (t >= *(volatile u32 *)&b.stats[TOUCHED_COUNT]) {
        return;
    }
    u32 v = b.lists[h.touched_off + t];
    pull_node(h, b, v, q);
    if (q == 0u) {
        atomicAnd(&b.lists[v], ~TOUCHED);
    }
}

// After the pull: Δ(k-1) back to zero at the old frontier, which leaves its flag.
extern "C" __global__ void retire(Hop h, HopBuffers b) {
    u32 i = flat_index();
    if (i >= h.frontier_len * h.lanes) {
        return;
    }
    u32 u = b.lists[h.frontier_off + i / h.lanes];
    u32 q = i % h.lanes;
    b.cur[u * h.lanes + q] = 0.0f;
    if (q == 0u) {
        atomicAnd(&b.lists[u], ~h.prev_bit);
    }
}

// The seeds: seeds[2 j] = flat index, seeds[2 j + 1] = a (bits), for j < frontier_len.
extern "C" __global__ void seed(Hop h, HopBuffers b, const u32 *seeds) {
    u32 j = flat_index();
    if (j >= h.frontier_len) {
        return;
    }
    u32 i = seeds[2u * j];
    u32 a = seeds[2u * j + 1u];
    b.state[2u * i] = a;
    b.state[2u * i + 1u] = 1u;
    b.cur[i] = __uint_as_float(a);
    atomicOr(&b.lists[i / h.lanes], h.bit | EVER);
}

// At the end: (a, first_hop + 1) of the activated nodes, compacted into cur and next.
extern "C" __global__ void gather(Hop h, HopBuffers b) {
    u32 i = flat_index();
    u32 j = i / h.lanes;
    u32 q = i % h.lanes;
    if (j >= b.stats[ACTIVATED_COUNT]) {
        return;
    }
    u32 v = b.lists[h.activated_off + j];
    u32 at = v * h.lanes + q;
    b.cur[i] = __uint_as_float(b.state[2u * at]);
    b.next[i] = __uint_as_float(b.state[2u * at + 1u]);
}

struct Sim {
    u32 rows;
    u32 queries;
    u32 dim;
    u32 row_words;
    u32 row_base;
    u32 pad0, pad1, pad2;
};

__device__ static float half_to_float(u32 bits) {
    float f;
    unsigned short h = (unsigned short)bits;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// sims[(row_base + j) * queries + i] = dot(query i, row j of the chunk), the row widened from
// f16 to f32, summed in ascending component order.
extern "C" __global__ void similarity(Sim p, const u32 *rows, const float *queries,
                                      float *sims) {
    u32 t = flat_index();
    if (t >= p.rows * p.queries) {
        return;
    }
    u32 j = t / p.queries;
    u32 i = t % p.queries;
    const u32 *row = rows + (size_t)j * p.row_words;
    const float *query = queries + (size_t)i * p.dim;
    float s = 0.0f;
    for (u32 w = 0; w < p.row_words; w++) {
        u32 pair = row[w];
        u32 k = 2u * w;
        s = __fadd_rn(s, __fmul_rn(half_to_float(pair & 0xffffu), query[k]));
        if (k + 1u < p.dim) {
            s = __fadd_rn(s, __fmul_rn(half_to_float(pair >> 16), query[k + 1u]));
        }
    }
    sims[((size_t)p.row_base + j) * p.queries + i] = s;
}

// Top-k seeds (SPEC §2.3), as graph.wgsl `topk_tiles`: each block sorts a tile of TILE
// candidates (key pairs (!order(sim), node), ascending = rank order) in shared memory with a
// bitonic network and keeps its first k.
#define TILE 1024u
#define TOPK_GROUP 256u
#define NONE 0xffffffffu

struct Topk {
    u32 queries;
    u32 count;
    u32 k;
    u32 from_sims;
    float theta;
    u32 tiles;
    u32 pad0, pad1;
};

struct Key {
    u32 x;
    u32 y;
};

// f32 bits to a u32 that orders as `f32::total_cmp`.
__device__ static u32 total_order(float v) {
    u32 b = __float_as_uint(v);
    return (b & 0x80000000u) != 0u ? ~b : (b | 0x80000000u);
}

__device__ static bool before(Key a, Key b) {
    return a.x < b.x || (a.x == b.x && a.y < b.y);
}

extern "C" __global__ void topk_tiles(Topk p, const float *sims, const u32 *embedded,
                                      const Key *cand_in, Key *cand_out) {
    __shared__ Key tile[TILE];
    u32 query = blockIdx.y;
    u32 t = blockIdx.x;
    for (u32 r = 0; r < TILE / TOPK_GROUP; r++) {
        u32 slot = threadIdx.x + r * TOPK_GROUP;
        u32 c = t * TILE + slot;
        Key key = {NONE, NONE};
        if (c < p.count) {
            if (p.from_sims != 0u) {
                float s = sims[(size_t)c * p.queries + query];
                if (s >= p.theta) {
                    key.x = ~total_order(s);
                    key.y = embedded[c];
                }
            } else {
                key = cand_in[(size_t)query * p.count + c];
            }
        }
        tile[slot] = key;
    }
    __syncthreads();
    for (u32 size = 2u; size <= TILE; size *= 2u) {
        for (u32 stride = size / 2u; stride > 0u; stride /= 2u) {
            for (u32 r = 0; r < TILE / (2u * TOPK_GROUP); r++) {
                u32 c = threadIdx.x + r * TOPK_GROUP;
                u32 lo = (c / stride) * stride * 2u + c % stride;
                u32 hi = lo + stride;
                bool ascending = (lo & size) == 0u;
                Key a = tile[lo];
                Key b = tile[hi];
                if (before(b, a) == ascending) {
                    tile[lo] = b;
                    tile[hi] = a;
                }
            }
            __syncthreads();
        }
    }
    for (u32 j = threadIdx.x; j < p.k; j += TOPK_GROUP) {
        cand_out[((size_t)query * p.tiles + t) * p.k + j] = tile[j];
    }
}
