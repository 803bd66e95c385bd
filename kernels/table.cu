// Shard tables (SPEC §1.1, §1.2) in CUDA C: the siblings of shaders/table.wgsl, kernel for
// entry point, same names, same layouts, same algorithms, so one host order
// (engine/src/backend/gpu_table/, shared by the wgpu and CUDA backends) drives either. CPU
// sibling: engine/src/backend/cpu/kv.rs (`kv_apply`) and shard.rs; design: docs/wgpu.md,
// "Tables on the device", and docs/cuda.md, "Tables on CUDA". The order of one batch, the
// record, work, slot and link-half layouts are table.wgsl's (its header comment and its
// "Links" section); in short:
//   kv_route; kv_sort / kv_sort_local (bitonic); kv_walk_chunks, kv_walk_carry, kv_walk;
//   link_route, link_sort (half events by pair, then by time); rel_count and a link scan
//   (related candidates); kv_peak_blocks, kv_peak_scan, kv_peak (only when a shard may grow);
//   then rel_pairs, rel_exist, link_sort (the pairs), rel_span; link_keep_old/_events, two
//   link scans, link_write_old/_events (the merged halves); kv_commit, kv_rehash, kv_insert.
//   A link scan is link_scan_blocks, link_scan_carry, link_scan_apply.
//
// Launch: every kernel is `kernel(TableParams p, TableBuffers b)`. TableParams is the WGSL
// uniform `Params` (binding 0) byte for byte (the Rust `Params` of gpu_table: 48 u32, 192
// bytes), so the host uploads the same bytes. TableBuffers holds the storage bindings in
// binding order; a kernel reads only the fields its WGSL entry point binds (the others may be
// null):
//   binding 1  info        const Word4 *   per shard (arena, base, mask, rebuild) before, after
//   binding 2  batch       const u32 *     4 words per op, put values, links, related queries
//   binding 3  records     Word4 *         n_pow2 sort records (shard, key hi, key lo, op)
//   binding 4  work        u32 *           final states, deltas, peak matrix, walk chunks,
//                                          per-record states (st_base)
//   binding 5  counters    int *           per shard: ops, inserts, removes, peak delta; then
//                                          per shard its link halves (at 4 * nshards)
//   binding 6  results     u32 *           status per op, then value words per op
//   binding 7  old_slots   const u32 *     the arena read (kv_walk*, rel_exist, kv_rehash's
//   binding 8  old_values  const u32 *     old arena)
//   binding 9  slots       u32 *           the arena written (kv_commit, kv_rehash's new
//   binding 10 values      u32 *           arena, kv_insert)
//   binding 11 halves      const Word4 *   the link halves before the batch (2 per half)
//   binding 12 new_halves  Word4 *         the merged halves after it
//   binding 13 lwork       Word4 *         half events by pair, then by time; or (link_sort
//                                          bound to the pairs) the records being sorted
//   binding 14 lflat       u32 *           flags, prefix counts, per-query words
//   (binding 15 is not used by table.wgsl)
//   binding 16 pairs       Word4 *         related (query, candidate) pairs (2 per pair)
//   binding 17 pvals       u32 *           per pair its partner's value words
// Block sizes and grids are the WGSL workgroup sizes and dispatches: blockDim.x = 256 for
// every kernel but kv_peak_blocks and kv_peak (64) and kv_walk_carry and link_scan_carry (1,
// one block of one thread). A 2-D grid (x, y) numbers invocations like graph.cu's
// flat_index() (the WGSL `flat`), and the one-block-per-group kernels (kv_sort_local,
// kv_peak_blocks, kv_peak) number blocks blockIdx.x + blockIdx.y * gridDim.x. No kernel needs
// a buffer length (no arrayLength).
//
// WGSL atomics on `slots` and `counters` map to CUDA atomics (atomicAdd, atomicMax, atomicCAS)
// and volatile loads and stores (atomicLoad / atomicStore); workgroup arrays to __shared__
// (CUDA does not zero shared memory as WGSL does; every array here is written before it is
// read, and no thread returns early before a barrier its block still reaches). i32 sums wrap
// (u32 arithmetic), as in WGSL.
//
// Lavapipe workarounds kept so the host order is the same for both backends, where CUDA could
// do better later: runs are walked in chunks of CHUNK records with the state carried by the
// single-thread kv_walk_carry (a CUDA thread could walk a whole run, or a parallel scan could
// carry it); the peak and its block sums loop in one thread per block; the link scans carry
// their block sums in one thread; shards are packed into arenas (on CUDA the only arena limit
// is the kernels' 32-bit indexing, so one arena holds up to 2^32 words); the bitonic sorts'
// global passes could be fewer with larger shared tiles (link_sort has no local variant).

typedef unsigned int u32;

#define ROUTE_SEED 0x9E3779B9u
#define SLOT_SEED 0x7F4A7C15u
#define EMPTY 0u
#define TOMB 1u
#define FULL 2u
#define NONE 0xFFFFFFFFu

#define OP_PUT 0u
#define OP_GET 1u
#define OP_DELETE 2u
// A link, unlink or related query's slot in the key walk: it counts in its key's shard and
// reads nothing (a related query's own value is a separate OP_GET).
#define OP_NOP 3u
// Flag of an op counted in its shard's `ops` statistic (a related query's probes are not).
#define COUNTED 0x100u

// Status codes: table::Status.
#define ST_OK 0u
#define ST_VALUE 1u
#define ST_MISSING 2u
#define ST_DELETED 3u
#define ST_ABSENT 4u

#define WORKGROUP 256u
// Records per walk chunk (see the top of table.wgsl).
#define CHUNK 256u
// Operations per block of the peak scan, and most shards (a shared array).
#define BLOCK 256u
#define MAX_SHARDS 1024u
// Records kv_sort_local sorts in shared memory (2 per thread).
#define TILE 512u

// The WGSL vec4<u32> of `info` and `records` (16-byte stride in both).
struct alignas(16) Word4 {
    u32 x;
    u32 y;
    u32 z;
    u32 w;
};

// The WGSL `Params`, field for field.
struct TableParams {
    u32 n;           // device operations in the batch
    u32 n_pow2;      // sort records (n rounded up to a power of two)
    u32 nshards;
    u32 w;           // value words
    u32 arena;       // the arena this launch works on
    u32 arena2;      // kv_rehash: the new arena
    u32 k;           // kv_sort, link_sort: bitonic stage
    u32 j;           // kv_sort, link_sort: bitonic distance
    u32 value_base;  // put values start at batch[value_base]
    u32 blocks;      // peak blocks
    u32 delta_base;  // per-op deltas start at work[delta_base]
    u32 matrix_base; // block x shard sums start at work[matrix_base]
    u32 count;       // kv_rehash: slots in the old arena
    u32 chunk_base;  // per walk chunk 4 words (kv_walk_chunks), then 3 (kv_walk_carry)
    u32 chunks;      // walk chunks
    u32 st_base;     // per record 3 words at work[st_base]: state after it, slot, last delete
    // Links (the link_* and rel_* kernels).
    u32 link_base;   // link and unlink ops at batch[link_base], 4 words each
    u32 ev_n;        // half events (2 per link or unlink)
    u32 ev_pow2;     // events sorted (ev_n rounded up to a power of two)
    u32 halves_n;    // link halves stored before the batch
    u32 rel_base;    // related queries at batch[rel_base], 4 words each
    u32 rel_n;       // related queries
    u32 pairs_n;     // (query, candidate) pairs
    u32 pairs_pow2;  // pairs sorted
    u32 sort_pow2;   // link_sort: records of the buffer being sorted
    u32 scan_src;    // link_scan_*: lflat[scan_src..+scan_n] scanned into lflat[scan_dst..]
    u32 scan_dst;
    u32 scan_n;
    u32 scan_tmp;    // per block sums
    u32 scan_sum;    // 1: sum the values, 0: count the nonzero ones
    u32 keep_old;    // lflat regions: per old half its final strength (0: dropped)
    u32 keep_ev;     // per event its final strength (0: not kept)
    u32 scan_old;    // exclusive prefix counts of keep_old (halves_n + 1 words)
    u32 scan_ev;     // of keep_ev (ev_n + 1 words)
    u32 rel_cnt;     // per related query its candidates
    u32 rel_off;     // their exclusive prefix sums (rel_n + 1 words)
    u32 rel_lbo;     // per query its first old half
    u32 rel_lbe;     // per query its first half event
    u32 rel_a;       // per query its old halves
    u32 rel_span;    // per query (first pair, hits) in the sorted pairs
    u32 sort_base;   // link_sort: first Word4 of the records sorted
    u32 _pad1;
    u32 _pad2;
    u32 _pad3;
    u32 _pad4;
    u32 _pad5;
    u32 _pad6;
    u32 _pad7;
};

static_assert(sizeof(Word4) == 16, "Word4 must be a WGSL vec4<u32>");
static_assert(sizeof(TableParams) == 192,
              "TableParams must match table.wgsl's Params (48 u32, 192 bytes)");

// The storage bindings 1..17 of table.wgsl, in binding order (table.wgsl has no binding 15).
struct TableBuffers {
    const Word4 *info;
    const u32 *batch;
    Word4 *records;
    u32 *work;
    int *counters;
    u32 *results;
    const u32 *old_slots;
    const u32 *old_values;
    u32 *slots;
    u32 *values;
    const Word4 *halves;
    Word4 *new_halves;
    Word4 *lwork;
    u32 *lflat;
    Word4 *pairs;
    u32 *pvals;
};

static_assert(sizeof(TableBuffers) == 16 * sizeof(void *),
              "TableBuffers must be the 16 device addresses of the Rust TableBuffers");

__device__ static u32 flat_index() {
    return blockIdx.x * blockDim.x + threadIdx.x
        + blockIdx.y * gridDim.x * blockDim.x;
}

// The workgroup number of a 2-D dispatch (wid.x + wid.y * groups.x).
__device__ static u32 group_index() {
    return blockIdx.x + blockIdx.y * gridDim.x;
}

// atomicLoad / atomicStore of WGSL: a 32-bit access the compiler may not cache or split.
__device__ static u32 load_u32(const u32 *p) {
    return *(const volatile u32 *)p;
}

__device__ static void store_u32(u32 *p, u32 v) {
    *(volatile u32 *)p = v;
}

// Wrapping i32 addition (WGSL's i32 `+`).
__device__ static int add_i32(int a, int b) {
    return (int)((u32)a + (u32)b);
}

// MurmurHash3's 32-bit finaliser (route.rs `fmix32`).
__device__ static u32 fmix32(u32 x) {
    u32 h = x;
    h = h ^ (h >> 16);
    h = h * 0x85ebca6bu;
    h = h ^ (h >> 13);
    h = h * 0xc2b2ae35u;
    h = h ^ (h >> 16);
    return h;
}

__device__ static u32 key_hash(u32 lo, u32 hi, u32 seed) {
    return fmix32(lo ^ fmix32(hi ^ seed));
}

__device__ static u32 shard_of(const TableParams &p, u32 lo, u32 hi) {
    return key_hash(lo, hi, ROUTE_SEED) % p.nshards;
}

__device__ static bool less(Word4 a, Word4 b) {
    if (a.x != b.x) {
        return a.x < b.x;
    }
    if (a.y != b.y) {
        return a.y < b.y;
    }
    if (a.z != b.z) {
        return a.z < b.z;
    }
    return a.w < b.w;
}

__device__ static bool same_key(const TableBuffers &b, u32 x, u32 y) {
    Word4 a = b.records[x];
    Word4 c = b.records[y];
    return a.y == c.y && a.z == c.z;
}

// Whether record r starts a key's run.
__device__ static bool is_head(const TableBuffers &b, u32 r) {
    return r == 0u || !same_key(b, r, r - 1u);
}

// Whether record r ends a key's run.
__device__ static bool is_tail(const TableParams &p, const TableBuffers &b, u32 r) {
    return r + 1u >= p.n || !same_key(b, r, r + 1u);
}

// The slot of key (lo, hi) in shard s before the batch, or NONE.
__device__ static u32 probe(const TableBuffers &b, u32 s, u32 lo, u32 hi) {
    Word4 before = b.info[2u * s];
    u32 i = key_hash(lo, hi, SLOT_SEED) & before.z;
    for (;;) {
        u32 g = before.y + i;
        u32 t = b.old_slots[3u * g];
        if (t == EMPTY) {
            return NONE;
        }
        if (t == FULL && b.old_slots[3u * g + 1u] == lo && b.old_slots[3u * g + 2u] == hi) {
            return g;
        }
        i = (i + 1u) & before.z;
    }
}

// What operation `pos` does to its key's state: NONE (a read), or the state it sets
// (0 absent, 2 + put index).
__device__ static u32 effect_of(const TableBuffers &b, u32 pos) {
    u32 code = b.batch[4u * pos] & 0xFFu;
    if (code == OP_PUT) {
        return 2u + b.batch[4u * pos + 3u];
    }
    if (code == OP_DELETE) {
        return 0u;
    }
    return NONE;
}

// Claims a free slot for a key absent from the region (base, mask), stores the key there and
// returns the slot (the caller writes the value). WGSL's atomicCompareExchangeWeak may fail
// spuriously and retry; atomicCAS does not, which claims the same slots.
__device__ static u32 claim_slot(const TableBuffers &b, u32 lo, u32 hi, u32 base, u32 mask) {
    u32 i = key_hash(lo, hi, SLOT_SEED) & mask;
    u32 claimed = NONE;
    for (;;) {
        u32 g = base + i;
        u32 t = load_u32(&b.slots[3u * g]);
        while (t != FULL) {
            u32 old = atomicCAS(&b.slots[3u * g], t, FULL);
            if (old == t) {
                claimed = g;
                break;
            }
            t = old;
        }
        if (claimed != NONE) {
            break;
        }
        i = (i + 1u) & mask;
    }
    store_u32(&b.slots[3u * claimed + 1u], lo);
    store_u32(&b.slots[3u * claimed + 2u], hi);
    return claimed;
}

// Op i -> sort record (shard, key hi, key lo, i), padding records NONE; ops per shard.
extern "C" __global__ void kv_route(TableParams p, TableBuffers b) {
    u32 i = flat_index();
    if (i >= p.n_pow2) {
        return;
    }
    if (i >= p.n) {
        b.records[i] = Word4{NONE, NONE, NONE, NONE};
        return;
    }
    u32 code = b.batch[4u * i];
    u32 lo = b.batch[4u * i + 1u];
    u32 hi = b.batch[4u * i + 2u];
    u32 s = shard_of(p, lo, hi);
    b.records[i] = Word4{s, hi, lo, i};
    if ((code & COUNTED) != 0u) {
        atomicAdd(&b.counters[4u * s], 1);
    }
}

// One global pass (stage k, distance j) of the bitonic sort.
extern "C" __global__ void kv_sort(TableParams p, TableBuffers b) {
    u32 i = flat_index();
    if (i >= p.n_pow2 / 2u) {
        return;
    }
    u32 lo = 2u * p.j * (i / p.j) + (i % p.j);
    u32 hi = lo + p.j;
    Word4 x = b.records[lo];
    Word4 y = b.records[hi];
    bool ascending = (lo & p.k) == 0u;
    if (ascending == less(y, x)) {
        b.records[lo] = y;
        b.records[hi] = x;
    }
}

// Stage k of the bitonic sort for every distance j < TILE, or (k = 0) stages 2..TILE, on the
// TILE records of one block. n_pow2 is at least TILE. 256 threads.
extern "C" __global__ void kv_sort_local(TableParams p, TableBuffers b) {
    __shared__ Word4 tile[TILE];
    u32 lid = threadIdx.x;
    u32 base = group_index() * TILE;
    // Uniform over the block: every thread returns or none does.
    if (base >= p.n_pow2) {
        return;
    }
    tile[lid] = b.records[base + lid];
    tile[lid + 256u] = b.records[base + lid + 256u];
    __syncthreads();
    u32 k = p.k == 0u ? 2u : p.k;
    u32 last = p.k == 0u ? TILE : p.k;
    while (k <= last) {
        u32 j = k / 2u < TILE / 2u ? k / 2u : TILE / 2u;
        while (j > 0u) {
            u32 lo = 2u * j * (lid / j) + (lid % j);
            u32 hi = lo + j;
            Word4 x = tile[lo];
            Word4 y = tile[hi];
            bool ascending = ((base + lo) & k) == 0u;
            if (ascending == less(y, x)) {
                tile[lo] = y;
                tile[hi] = x;
            }
            __syncthreads();
            j = j / 2u;
        }
        k = k * 2u;
    }
    b.records[base + lid] = tile[lid];
    b.records[base + lid + 256u] = tile[lid + 256u];
}

// Per chunk c: for the key of its last record, (1, state, slot, last delete) when that key's
// run starts in the chunk (its state after the chunk, from the probe), else (0, effect, 0,
// last delete) (the chunk is all one key continuing a run: what the chunk does to it, NONE for
// nothing). The last delete is the batch position of the chunk's last delete of the key, or
// NONE.
extern "C" __global__ void kv_walk_chunks(TableParams p, TableBuffers b) {
    u32 c = flat_index();
    if (c >= p.chunks) {
        return;
    }
    u32 start = c * CHUNK;
    u32 end = p.n < start + CHUNK ? p.n : start + CHUNK;
    Word4 last = b.records[end - 1u];
    if (b.info[2u * last.x].x != p.arena) {
        return;
    }
    u32 t = end - 1u;
    while (t > start && same_key(b, t - 1u, end - 1u)) {
        t = t - 1u;
    }
    u32 effect = NONE;
    u32 deleted = NONE;
    for (u32 q = t; q < end; q = q + 1u) {
        u32 pos = b.records[q].w;
        u32 e = effect_of(b, pos);
        if (e != NONE) {
            effect = e;
        }
        if (e == 0u) {
            deleted = pos;
        }
    }
    u32 at = p.chunk_base + 4u * c;
    b.work[at + 3u] = deleted;
    if (is_head(b, t)) {
        u32 slot = probe(b, last.x, last.z, last.y);
        u32 state = slot == NONE ? 0u : 1u;
        if (effect != NONE) {
            state = effect;
        }
        b.work[at] = 1u;
        b.work[at + 1u] = state;
        b.work[at + 2u] = slot;
    } else {
        b.work[at] = 0u;
        b.work[at + 1u] = effect;
        b.work[at + 2u] = 0u;
    }
}

// One thread (one block of one): the state (state, slot, last delete) entering every chunk
// whose first record continues a run, in chunk order.
extern "C" __global__ void kv_walk_carry(TableParams p, TableBuffers b) {
    if (flat_index() != 0u) {
        return;
    }
    u32 carry = p.chunk_base + 4u * p.chunks;
    for (u32 c = 1u; c < p.chunks; c = c + 1u) {
        if (is_head(b, c * CHUNK)) {
            continue;
        }
        u32 prev = p.chunk_base + 4u * (c - 1u);
        u32 into = carry + 3u * c;
        u32 deleted = b.work[prev + 3u];
        if (b.work[prev] == 1u) {
            b.work[into] = b.work[prev + 1u];
            b.work[into + 1u] = b.work[prev + 2u];
            b.work[into + 2u] = deleted;
        } else {
            u32 was = carry + 3u * (c - 1u);
            u32 effect = b.work[prev + 1u];
            b.work[into] = effect == NONE ? b.work[was] : effect;
            b.work[into + 1u] = b.work[was + 1u];
            b.work[into + 2u] = deleted == NONE ? b.work[was + 2u] : deleted;
        }
    }
}

// One thread per run segment (a run's head, or the first record of a chunk continuing a
// run): applies the segment's operations in batch order.
extern "C" __global__ void kv_walk(TableParams p, TableBuffers b) {
    u32 r = flat_index();
    if (r >= p.n) {
        return;
    }
    Word4 first = b.records[r];
    u32 s = first.x;
    if (b.info[2u * s].x != p.arena) {
        return;
    }
    bool head = is_head(b, r);
    if (!head && r % CHUNK != 0u) {
        return;
    }
    u32 lo = first.z;
    u32 hi = first.y;
    // state: 0 absent, 1 the stored value (at `slot`), 2 + a put's value.
    u32 slot = NONE;
    u32 state = 0u;
    u32 deleted = NONE;
    if (head) {
        slot = probe(b, s, lo, hi);
        state = slot == NONE ? 0u : 1u;
    } else {
        u32 carry = p.chunk_base + 4u * p.chunks + 3u * (r / CHUNK);
        state = b.work[carry];
        slot = b.work[carry + 1u];
        deleted = b.work[carry + 2u];
    }
    u32 w = p.w;
    u32 end = p.n < (r / CHUNK + 1u) * CHUNK ? p.n : (r / CHUNK + 1u) * CHUNK;
    u32 q = r;
    for (; q < end; q = q + 1u) {
        Word4 rec = b.records[q];
        if (rec.y != hi || rec.z != lo) {
            break;
        }
        u32 pos = rec.w;
        u32 code = b.batch[4u * pos] & 0xFFu;
        int delta = 0;
        if (code == OP_PUT) {
            if (state == 0u) {
                delta = 1;
            }
            state = 2u + b.batch[4u * pos + 3u];
            b.results[pos] = ST_OK;
        } else if (code == OP_GET) {
            if (state == 0u) {
                b.results[pos] = ST_MISSING;
            } else {
                b.results[pos] = ST_VALUE;
                u32 out = p.n + pos * w;
                if (state == 1u) {
                    for (u32 k = 0u; k < w; k = k + 1u) {
                        b.results[out + k] = b.old_values[slot * w + k];
                    }
                } else {
                    u32 at = p.value_base + (state - 2u) * w;
                    for (u32 k = 0u; k < w; k = k + 1u) {
                        b.results[out + k] = b.batch[at + k];
                    }
                }
            }
        } else if (code == OP_DELETE) {
            if (state == 0u) {
                b.results[pos] = ST_ABSENT;
            } else {
                b.results[pos] = ST_DELETED;
                delta = -1;
            }
            state = 0u;
            deleted = pos;
        } else {
            b.results[pos] = ST_OK;
        }
        b.work[p.delta_base + pos] = (u32)delta;
        // What the link kernels look up: the key's state after this op, and its last delete.
        u32 st = p.st_base + 3u * q;
        b.work[st] = state;
        b.work[st + 1u] = slot;
        b.work[st + 2u] = deleted;
    }
    u32 tail = q - 1u;
    if (!is_tail(p, b, tail)) {
        return;
    }
    b.work[2u * tail] = slot == NONE ? 0u : slot + 1u;
    b.work[2u * tail + 1u] = state;
    if (slot == NONE && state != 0u) {
        atomicAdd(&b.counters[4u * s + 1u], 1);
    }
    if (slot != NONE && state == 0u) {
        atomicAdd(&b.counters[4u * s + 2u], 1);
    }
}

// Block b's sum of deltas per shard, in batch order: work[matrix_base + b * nshards + s].
// 64 threads.
extern "C" __global__ void kv_peak_blocks(TableParams p, TableBuffers b) {
    __shared__ int run[MAX_SHARDS];
    u32 lid = threadIdx.x;
    u32 blk = group_index();
    // Uniform over the block: every thread returns or none does.
    if (blk >= p.blocks) {
        return;
    }
    for (u32 s = lid; s < p.nshards; s = s + 64u) {
        run[s] = 0;
    }
    __syncthreads();
    if (lid == 0u) {
        u32 end = p.n < (blk + 1u) * BLOCK ? p.n : (blk + 1u) * BLOCK;
        for (u32 i = blk * BLOCK; i < end; i = i + 1u) {
            int d = (int)b.work[p.delta_base + i];
            if (d != 0) {
                u32 s = shard_of(p, b.batch[4u * i + 1u], b.batch[4u * i + 2u]);
                run[s] = add_i32(run[s], d);
            }
        }
    }
    __syncthreads();
    for (u32 s = lid; s < p.nshards; s = s + 64u) {
        b.work[p.matrix_base + blk * p.nshards + s] = (u32)run[s];
    }
}

// Per shard: the matrix column becomes its exclusive prefix sum (the running delta before
// each block). One thread per shard, numbered by x alone (as the WGSL gid.x).
extern "C" __global__ void kv_peak_scan(TableParams p, TableBuffers b) {
    u32 s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= p.nshards) {
        return;
    }
    int acc = 0;
    for (u32 blk = 0u; blk < p.blocks; blk = blk + 1u) {
        u32 at = p.matrix_base + blk * p.nshards + s;
        int v = (int)b.work[at];
        b.work[at] = (u32)acc;
        acc = add_i32(acc, v);
    }
}

// Per shard the largest running delta after any of its operations (counters[4s + 3]).
// 64 threads.
extern "C" __global__ void kv_peak(TableParams p, TableBuffers b) {
    __shared__ int run[MAX_SHARDS];
    u32 lid = threadIdx.x;
    u32 blk = group_index();
    // Uniform over the block: every thread returns or none does.
    if (blk >= p.blocks) {
        return;
    }
    for (u32 s = lid; s < p.nshards; s = s + 64u) {
        run[s] = 0;
    }
    __syncthreads();
    if (lid == 0u) {
        u32 end = p.n < (blk + 1u) * BLOCK ? p.n : (blk + 1u) * BLOCK;
        for (u32 i = blk * BLOCK; i < end; i = i + 1u) {
            int d = (int)b.work[p.delta_base + i];
            if (d != 0) {
                u32 s = shard_of(p, b.batch[4u * i + 1u], b.batch[4u * i + 2u]);
                run[s] = add_i32(run[s], d);
                if (d > 0) {
                    int base = (int)b.work[p.matrix_base + blk * p.nshards + s];
                    atomicMax(&b.counters[4u * s + 3u], add_i32(base, run[s]));
                }
            }
        }
    }
}

// Keys stored before the batch: a delete leaves a tombstone, a put writes its value in place.
extern "C" __global__ void kv_commit(TableParams p, TableBuffers b) {
    u32 r = flat_index();
    if (r >= p.n) {
        return;
    }
    u32 s = b.records[r].x;
    if (b.info[2u * s].x != p.arena || !is_tail(p, b, r)) {
        return;
    }
    u32 old = b.work[2u * r];
    if (old == 0u) {
        return;
    }
    u32 g = old - 1u;
    u32 fin = b.work[2u * r + 1u];
    if (fin == 0u) {
        store_u32(&b.slots[3u * g], TOMB);
    } else if (fin >= 2u) {
        u32 at = p.value_base + (fin - 2u) * p.w;
        for (u32 k = 0u; k < p.w; k = k + 1u) {
            b.values[g * p.w + k] = b.batch[at + k];
        }
    }
}

// Every stored key of a shard marked for rebuild, from old arena `arena` (old_slots,
// old_values) into its region of new arena `arena2` (slots, values).
extern "C" __global__ void kv_rehash(TableParams p, TableBuffers b) {
    u32 g = flat_index();
    if (g >= p.count) {
        return;
    }
    if (b.old_slots[3u * g] != FULL) {
        return;
    }
    u32 lo = b.old_slots[3u * g + 1u];
    u32 hi = b.old_slots[3u * g + 2u];
    u32 s = shard_of(p, lo, hi);
    Word4 after = b.info[2u * s + 1u];
    if (b.info[2u * s].w == 0u || after.x != p.arena2) {
        return;
    }
    u32 to = claim_slot(b, lo, hi, after.y, after.z);
    for (u32 k = 0u; k < p.w; k = k + 1u) {
        b.values[to * p.w + k] = b.old_values[g * p.w + k];
    }
}

// Keys the batch created (absent before, present after), into their shard's final region.
extern "C" __global__ void kv_insert(TableParams p, TableBuffers b) {
    u32 r = flat_index();
    if (r >= p.n) {
        return;
    }
    Word4 rec = b.records[r];
    Word4 after = b.info[2u * rec.x + 1u];
    if (after.x != p.arena || !is_tail(p, b, r)) {
        return;
    }
    u32 fin = b.work[2u * r + 1u];
    if (b.work[2u * r] != 0u || fin < 2u) {
        return;
    }
    u32 to = claim_slot(b, rec.z, rec.y, after.y, after.z);
    u32 at = p.value_base + (fin - 2u) * p.w;
    for (u32 k = 0u; k < p.w; k = k + 1u) {
        b.values[to * p.w + k] = b.batch[at + k];
    }
}

// ---------------------------------------------------------------------------------------
// Links (SPEC §1.2): table.wgsl's "Links" section, kernel for entry point. A link half is two
// Word4 (a, b) = ((shard of owner, owner hi, owner lo, partner hi), (partner lo, strength
// bits, 0, 0)); a half event has the same a and b = (partner lo, batch position, strength bits
// or 0, 0); the by-time copy of the events starts at lwork[2 * ev_pow2].

// Elements per block of the link scans.
#define SCAN_BLOCK 256u

__device__ static Word4 none4() {
    return Word4{NONE, NONE, NONE, NONE};
}

__device__ static Word4 word4(u32 x, u32 y, u32 z, u32 w) {
    return Word4{x, y, z, w};
}

__device__ static bool same4(Word4 a, Word4 b) {
    return a.x == b.x && a.y == b.y && a.z == b.z && a.w == b.w;
}

__device__ static bool less8(Word4 x0, Word4 x1, Word4 y0, Word4 y1) {
    if (!same4(x0, y0)) {
        return less(x0, y0);
    }
    return less(x1, y1);
}

// First event >= (x0, x1), in 0..ev_n (at most 32 steps).
__device__ static u32 ev_lower(const TableParams &p, const TableBuffers &b, Word4 x0, Word4 x1) {
    u32 lo = 0u;
    u32 hi = p.ev_n;
    while (lo < hi) {
        u32 mid = lo + (hi - lo) / 2u;
        if (less8(b.lwork[2u * mid], b.lwork[2u * mid + 1u], x0, x1)) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// First event of the by-time copy >= (x0, x1), in 0..ev_n.
__device__ static u32 tev_lower(const TableParams &p, const TableBuffers &b, Word4 x0, Word4 x1) {
    u32 base = 2u * p.ev_pow2;
    u32 lo = 0u;
    u32 hi = p.ev_n;
    while (lo < hi) {
        u32 mid = lo + (hi - lo) / 2u;
        if (less8(b.lwork[base + 2u * mid], b.lwork[base + 2u * mid + 1u], x0, x1)) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// First old half >= (x0, x1), in 0..halves_n.
__device__ static u32 half_lower(const TableParams &p, const TableBuffers &b, Word4 x0, Word4 x1) {
    u32 lo = 0u;
    u32 hi = p.halves_n;
    while (lo < hi) {
        u32 mid = lo + (hi - lo) / 2u;
        if (less8(b.halves[2u * mid], b.halves[2u * mid + 1u], x0, x1)) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// First pair >= (x0, x1), in 0..pairs_pow2.
__device__ static u32 pair_lower(const TableParams &p, const TableBuffers &b, Word4 x0, Word4 x1) {
    u32 lo = 0u;
    u32 hi = p.pairs_pow2;
    while (lo < hi) {
        u32 mid = lo + (hi - lo) / 2u;
        if (less8(b.pairs[2u * mid], b.pairs[2u * mid + 1u], x0, x1)) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// Key (lo, hi) just before batch position t, from the walk: (state, slot, last delete) after
// its last op before t (state 0 absent, 1 stored at slot, 2 + put index), or all NONE when
// no op of the key comes before t (its state is the stored one, its last delete none).
// Returned as (x, y, z) of a Word4 (w unused).
__device__ static Word4 key_at(const TableParams &p, const TableBuffers &b, u32 lo, u32 hi,
                               u32 t) {
    Word4 want = word4(shard_of(p, lo, hi), hi, lo, t);
    u32 a = 0u;
    u32 e = p.n;
    while (a < e) {
        u32 mid = a + (e - a) / 2u;
        if (less(b.records[mid], want)) {
            a = mid + 1u;
        } else {
            e = mid;
        }
    }
    if (a == 0u) {
        return none4();
    }
    Word4 before = b.records[a - 1u];
    if (before.x != want.x || before.y != want.y || before.z != want.z) {
        return none4();
    }
    u32 st = p.st_base + 3u * (a - 1u);
    return word4(b.work[st], b.work[st + 1u], b.work[st + 2u], 0u);
}

// Whether a delete (a batch position, NONE for none) came after the event at te (NONE: the
// half as stored before the batch, which any delete of the batch comes after).
__device__ static bool deleted_since(u32 deleted, u32 te) {
    return deleted != NONE && (te == NONE || deleted > te);
}

// Half events: link or unlink j / 2 (batch[link_base + 4j'] = op, partner lo, partner hi,
// strength bits or 0) gives (key -> partner) at 2j' and (partner -> key) at 2j' + 1.
extern "C" __global__ void link_route(TableParams p, TableBuffers b) {
    u32 j = flat_index();
    if (j >= p.ev_pow2) {
        return;
    }
    u32 by_time = 2u * p.ev_pow2 + 2u * j;
    if (j >= p.ev_n) {
        b.lwork[2u * j] = none4();
        b.lwork[2u * j + 1u] = none4();
        b.lwork[by_time] = none4();
        b.lwork[by_time + 1u] = none4();
        return;
    }
    u32 at = p.link_base + 4u * (j / 2u);
    u32 op = b.batch[at];
    u32 o_lo = b.batch[4u * op + 1u];
    u32 o_hi = b.batch[4u * op + 2u];
    u32 q_lo = b.batch[at + 1u];
    u32 q_hi = b.batch[at + 2u];
    if ((j & 1u) == 1u) {
        u32 x = o_lo;
        o_lo = q_lo;
        q_lo = x;
        x = o_hi;
        o_hi = q_hi;
        q_hi = x;
    }
    u32 s = shard_of(p, o_lo, o_hi);
    u32 strength = b.batch[at + 3u];
    b.lwork[2u * j] = word4(s, o_hi, o_lo, q_hi);
    b.lwork[2u * j + 1u] = word4(q_lo, op, strength, 0u);
    b.lwork[by_time] = word4(s, o_hi, o_lo, op);
    b.lwork[by_time + 1u] = word4(q_hi, q_lo, strength, 0u);
}

// One global pass (k, j) of a bitonic sort of the 8-word records bound at lwork (the host
// binds the pairs buffer there to sort the related pairs).
extern "C" __global__ void link_sort(TableParams p, TableBuffers b) {
    u32 i = flat_index();
    if (i >= p.sort_pow2 / 2u) {
        return;
    }
    u32 lo = 2u * p.j * (i / p.j) + (i % p.j);
    u32 hi = lo + p.j;
    u32 x = p.sort_base + 2u * lo;
    u32 y = p.sort_base + 2u * hi;
    Word4 a0 = b.lwork[x];
    Word4 a1 = b.lwork[x + 1u];
    Word4 b0 = b.lwork[y];
    Word4 b1 = b.lwork[y + 1u];
    if (((lo & p.k) == 0u) == less8(b0, b1, a0, a1)) {
        b.lwork[x] = b0;
        b.lwork[x + 1u] = b1;
        b.lwork[y] = a0;
        b.lwork[y + 1u] = a1;
    }
}

// Related query q (batch[rel_base + 4q] = position t, min strength bits, max, 0): its
// candidates are its key's events after the key's last delete before t and before t (a run
// of the by-time copy), and its key's old halves when no delete of the key came before t
// (none at all when max is 0).
extern "C" __global__ void rel_count(TableParams p, TableBuffers b) {
    u32 q = flat_index();
    if (q >= p.rel_n) {
        return;
    }
    u32 t = b.batch[p.rel_base + 4u * q];
    u32 lo = b.batch[4u * t + 1u];
    u32 hi = b.batch[4u * t + 2u];
    Word4 first = word4(shard_of(p, lo, hi), hi, lo, 0u);
    Word4 last = word4(first.x, first.y, first.z, NONE);
    Word4 zero = word4(0u, 0u, 0u, 0u);
    // No real half reaches (owner, NONE, NONE): the partner would be the reserved u64::MAX.
    u32 lbo = half_lower(p, b, first, zero);
    u32 old = half_lower(p, b, last, none4()) - lbo;
    u32 deleted = key_at(p, b, lo, hi, t).z;
    u32 since = 0u;
    if (deleted != NONE) {
        old = 0u;
        since = deleted + 1u;
    }
    u32 lbe = tev_lower(p, b, word4(first.x, first.y, first.z, since), zero);
    u32 events = tev_lower(p, b, word4(first.x, first.y, first.z, t), zero) - lbe;
    if (b.batch[p.rel_base + 4u * q + 2u] == 0u) {
        old = 0u;
        events = 0u;
    }
    b.lflat[p.rel_cnt + q] = old + events;
    b.lflat[p.rel_lbo + q] = lbo;
    b.lflat[p.rel_lbe + q] = lbe;
    b.lflat[p.rel_a + q] = old;
}

__device__ static u32 scan_value(const TableParams &p, const TableBuffers &b, u32 i) {
    u32 v = b.lflat[p.scan_src + i];
    if (p.scan_sum == 1u) {
        return v;
    }
    return v != 0u ? 1u : 0u;
}

// Block b's total (SCAN_BLOCK elements) at lflat[scan_tmp + b].
extern "C" __global__ void link_scan_blocks(TableParams p, TableBuffers b) {
    u32 blk = flat_index();
    if (blk * SCAN_BLOCK >= p.scan_n) {
        return;
    }
    u32 end = p.scan_n < (blk + 1u) * SCAN_BLOCK ? p.scan_n : (blk + 1u) * SCAN_BLOCK;
    u32 sum = 0u;
    for (u32 i = blk * SCAN_BLOCK; i < end; i = i + 1u) {
        sum = sum + scan_value(p, b, i);
    }
    b.lflat[p.scan_tmp + blk] = sum;
}

// One thread (one block of one): the block totals become exclusive prefixes; the grand total
// goes to lflat[scan_dst + scan_n].
extern "C" __global__ void link_scan_carry(TableParams p, TableBuffers b) {
    if (flat_index() != 0u) {
        return;
    }
    u32 blocks = (p.scan_n + SCAN_BLOCK - 1u) / SCAN_BLOCK;
    u32 acc = 0u;
    for (u32 blk = 0u; blk < blocks; blk = blk + 1u) {
        u32 v = b.lflat[p.scan_tmp + blk];
        b.lflat[p.scan_tmp + blk] = acc;
        acc = acc + v;
    }
    b.lflat[p.scan_dst + p.scan_n] = acc;
}

// Per block: the exclusive prefix of every element.
extern "C" __global__ void link_scan_apply(TableParams p, TableBuffers b) {
    u32 blk = flat_index();
    if (blk * SCAN_BLOCK >= p.scan_n) {
        return;
    }
    u32 end = p.scan_n < (blk + 1u) * SCAN_BLOCK ? p.scan_n : (blk + 1u) * SCAN_BLOCK;
    u32 acc = b.lflat[p.scan_tmp + blk];
    for (u32 i = blk * SCAN_BLOCK; i < end; i = i + 1u) {
        u32 v = scan_value(p, b, i);
        b.lflat[p.scan_dst + i] = acc;
        acc = acc + v;
    }
}

// Pair x: candidate x - rel_off[q] of the query q whose range holds x. A candidate stands for
// its partner when it is the pair's latest state before the query (an old half with no event
// before the query, or the last such event); it is a hit when that state is a link, strong
// enough, not undone by a later delete of either key, and the partner exists then.
extern "C" __global__ void rel_pairs(TableParams p, TableBuffers b) {
    u32 x = flat_index();
    if (x >= p.pairs_pow2) {
        return;
    }
    b.pairs[2u * x + 1u] = word4(x, 0u, 0u, 0u);
    if (x >= p.pairs_n) {
        b.pairs[2u * x] = none4();
        return;
    }
    // The last query whose first pair is at most x (one with no pairs shares its successor's).
    u32 lo = 0u;
    u32 hi = p.rel_n - 1u;
    while (lo < hi) {
        u32 mid = hi - (hi - lo) / 2u;
        if (b.lflat[p.rel_off + mid] <= x) {
            lo = mid;
        } else {
            hi = mid - 1u;
        }
    }
    u32 q = lo;
    u32 c = x - b.lflat[p.rel_off + q];
    u32 t = b.batch[p.rel_base + 4u * q];
    u32 min_bits = b.batch[p.rel_base + 4u * q + 1u];
    u32 old = b.lflat[p.rel_a + q];
    Word4 a0 = word4(0u, 0u, 0u, 0u);
    u32 plo = 0u;
    u32 strength = 0u;
    u32 te = 0u;
    bool stands = false;
    if (c < old) {
        u32 h = b.lflat[p.rel_lbo + q] + c;
        a0 = b.halves[2u * h];
        Word4 a1 = b.halves[2u * h + 1u];
        plo = a1.x;
        strength = a1.y;
        te = NONE;
        stands = ev_lower(p, b, a0, word4(plo, 0u, 0u, 0u))
            == ev_lower(p, b, a0, word4(plo, t, 0u, 0u));
    } else {
        // An event of the key's run in the by-time copy stands for its partner when it is the
        // pair's last event before t (in the by-pair order, just before (pair, t)).
        u32 e = 2u * p.ev_pow2 + 2u * (b.lflat[p.rel_lbe + q] + c - old);
        Word4 b0 = b.lwork[e];
        Word4 b1 = b.lwork[e + 1u];
        a0 = word4(b0.x, b0.y, b0.z, b1.x);
        plo = b1.y;
        strength = b1.z;
        te = b0.w;
        u32 last = ev_lower(p, b, a0, word4(plo, t, 0u, 0u));
        stands = b.lwork[2u * (last - 1u) + 1u].y == te;
    }
    u32 phi = a0.w;
    bool hit = stands && strength != 0u && strength >= min_bits;
    u32 mark = 0u;
    u32 arg = 0u;
    if (hit) {
        Word4 own = key_at(p, b, a0.z, a0.y, t);
        Word4 other = key_at(p, b, plo, phi, t);
        hit = !deleted_since(own.z, te) && !deleted_since(other.z, te);
        if (hit) {
            if (other.x == NONE) {
                mark = 2u;
            } else if (other.x == 0u) {
                hit = false;
            } else if (other.x == 1u) {
                mark = 1u;
                arg = other.y;
            } else {
                u32 src = p.value_base + (other.x - 2u) * p.w;
                for (u32 k = 0u; k < p.w; k = k + 1u) {
                    b.pvals[x * p.w + k] = b.batch[src + k];
                }
            }
        }
    }
    if (hit) {
        b.pairs[2u * x] = word4(t, ~strength, phi, plo);
        b.pairs[2u * x + 1u] = word4(x, mark, arg, 0u);
    } else {
        b.pairs[2u * x] = none4();
    }
}

// Pairs whose partner (in a shard of this table arena) had no op before the query, or whose
// value is the stored one: probe for it, copy its value.
extern "C" __global__ void rel_exist(TableParams p, TableBuffers b) {
    u32 x = flat_index();
    if (x >= p.pairs_n) {
        return;
    }
    Word4 a = b.pairs[2u * x];
    Word4 c = b.pairs[2u * x + 1u];
    if (a.x == NONE || c.y == 0u) {
        return;
    }
    u32 s = shard_of(p, a.w, a.z);
    if (b.info[2u * s].x != p.arena) {
        return;
    }
    u32 g = c.z;
    if (c.y == 2u) {
        g = probe(b, s, a.w, a.z);
        if (g == NONE) {
            b.pairs[2u * x] = none4();
            return;
        }
    }
    for (u32 k = 0u; k < p.w; k = k + 1u) {
        b.pvals[x * p.w + k] = b.old_values[g * p.w + k];
    }
}

// Query q's hits: the first min(max, count) pairs of its run in the sorted pairs (strongest
// first, ties by partner) -> lflat[rel_span + 2q] = (first, hits).
extern "C" __global__ void rel_span(TableParams p, TableBuffers b) {
    u32 q = flat_index();
    if (q >= p.rel_n) {
        return;
    }
    u32 t = b.batch[p.rel_base + 4u * q];
    u32 most = b.batch[p.rel_base + 4u * q + 2u];
    Word4 zero = word4(0u, 0u, 0u, 0u);
    u32 first = pair_lower(p, b, word4(t, 0u, 0u, 0u), zero);
    u32 end = pair_lower(p, b, word4(t + 1u, 0u, 0u, 0u), zero);
    b.lflat[p.rel_span + 2u * q] = first;
    b.lflat[p.rel_span + 2u * q + 1u] = most < end - first ? most : end - first;
}

// The final strength of the pair (a0, plo) whose latest event is `last` (none when it equals
// `first`) and whose stored strength is `stored` (0: none): 0 when the batch leaves it
// unlinked.
__device__ static u32 final_strength(const TableParams &p, const TableBuffers &b, Word4 a0,
                                     u32 plo, u32 stored, u32 first, u32 last) {
    u32 strength = stored;
    u32 te = NONE;
    if (last > first) {
        Word4 e = b.lwork[2u * (last - 1u) + 1u];
        strength = e.z;
        te = e.y;
    }
    if (strength == 0u) {
        return 0u;
    }
    Word4 own = key_at(p, b, a0.z, a0.y, p.n);
    Word4 other = key_at(p, b, plo, a0.w, p.n);
    if (deleted_since(own.z, te) || deleted_since(other.z, te)) {
        return 0u;
    }
    return strength;
}

// Old half i: its strength after the batch, or 0 -> lflat[keep_old + i].
extern "C" __global__ void link_keep_old(TableParams p, TableBuffers b) {
    u32 i = flat_index();
    if (i >= p.halves_n) {
        return;
    }
    Word4 a0 = b.halves[2u * i];
    Word4 a1 = b.halves[2u * i + 1u];
    u32 first = ev_lower(p, b, a0, word4(a1.x, 0u, 0u, 0u));
    u32 last = ev_lower(p, b, a0, word4(a1.x, NONE, 0u, 0u));
    b.lflat[p.keep_old + i] = final_strength(p, b, a0, a1.x, a1.y, first, last);
}

// Event j, when it is the last of a half not stored before: the half's strength after the
// batch, or 0 -> lflat[keep_ev + j]. (A stored half's final state is its old entry's.)
extern "C" __global__ void link_keep_events(TableParams p, TableBuffers b) {
    u32 j = flat_index();
    if (j >= p.ev_n) {
        return;
    }
    Word4 a0 = b.lwork[2u * j];
    u32 plo = b.lwork[2u * j + 1u].x;
    u32 keep = 0u;
    u32 last = ev_lower(p, b, a0, word4(plo, NONE, 0u, 0u));
    if (j + 1u == last) {
        u32 h = half_lower(p, b, a0, word4(plo, 0u, 0u, 0u));
        bool stored = h < p.halves_n && same4(b.halves[2u * h], a0)
            && b.halves[2u * h + 1u].x == plo;
        if (!stored) {
            keep = final_strength(p, b, a0, plo, 0u, j, last);
        }
    }
    b.lflat[p.keep_ev + j] = keep;
}

__device__ static void write_half(const TableParams &p, const TableBuffers &b, u32 at, Word4 a0,
                                  u32 plo, u32 strength) {
    b.new_halves[2u * at] = a0;
    b.new_halves[2u * at + 1u] = word4(plo, strength, 0u, 0u);
    atomicAdd(&b.counters[4u * p.nshards + a0.x], 1);
}

// A kept old half goes after the kept old halves before it and the kept events of smaller
// halves.
extern "C" __global__ void link_write_old(TableParams p, TableBuffers b) {
    u32 i = flat_index();
    if (i >= p.halves_n) {
        return;
    }
    u32 strength = b.lflat[p.keep_old + i];
    if (strength == 0u) {
        return;
    }
    Word4 a0 = b.halves[2u * i];
    u32 plo = b.halves[2u * i + 1u].x;
    u32 e = ev_lower(p, b, a0, word4(plo, 0u, 0u, 0u));
    write_half(p, b, b.lflat[p.scan_old + i] + b.lflat[p.scan_ev + e], a0, plo, strength);
}

// A kept event's half goes after the kept events before it and the kept old halves smaller
// than it.
extern "C" __global__ void link_write_events(TableParams p, TableBuffers b) {
    u32 j = flat_index();
    if (j >= p.ev_n) {
        return;
    }
    u32 strength = b.lflat[p.keep_ev + j];
    if (strength == 0u) {
        return;
    }
    Word4 a0 = b.lwork[2u * j];
    u32 plo = b.lwork[2u * j + 1u].x;
    u32 h = half_lower(p, b, a0, word4(plo, 0u, 0u, 0u));
    write_half(p, b, b.lflat[p.scan_ev + j] + b.lflat[p.scan_old + h], a0, plo, strength);
}
