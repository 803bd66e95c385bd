// Shard tables (SPEC §1.1, §1.2) in CUDA C: the siblings of shaders/table.wgsl, kernel for
// entry point, same names, same layouts, same algorithms, so one host orchestration (the order
// and sizes of engine/src/backend/wgpu/table/mod.rs) drives either. CPU sibling:
// engine/src/backend/cpu/kv.rs (`kv_apply`) and shard.rs; design: docs/wgpu.md, "Tables on the
// device". The order of one batch, the record, work and slot layouts are table.wgsl's (its
// header comment); in short:
//   kv_route; kv_sort / kv_sort_local (bitonic); kv_walk_chunks, kv_walk_carry, kv_walk;
//   kv_peak_blocks, kv_peak_scan, kv_peak (only when a shard may grow); kv_commit, kv_rehash,
//   kv_insert.
//
// Launch: every kernel is `kernel(TableParams p, TableBuffers b)`. TableParams is the WGSL
// uniform `Params` (binding 0) byte for byte (the Rust `Params` of wgpu/table/mod.rs: 16 u32,
// 64 bytes), so the host uploads the same bytes. TableBuffers holds the storage bindings in
// binding order; a kernel reads only the fields its WGSL entry point binds (the others may be
// null):
//   binding 1  info        const Word4 *   per shard (arena, base, mask, rebuild) before, after
//   binding 2  batch       const u32 *     4 words per op, then put values
//   binding 3  records     Word4 *         n_pow2 sort records (shard, key hi, key lo, op)
//   binding 4  work        u32 *           final states, deltas, peak matrix, walk chunks
//   binding 5  counters    int *           per shard: ops, inserts, removes, peak delta
//   binding 6  results     u32 *           status per op, then value words per op
//   binding 7  old_slots   const u32 *     the arena read (kv_walk*, kv_rehash's old arena)
//   binding 8  old_values  const u32 *
//   binding 9  slots       u32 *           the arena written (kv_commit, kv_rehash's new
//   binding 10 values      u32 *           arena, kv_insert)
// Block sizes and grids are the WGSL workgroup sizes and dispatches: blockDim.x = 256 for
// kv_route, kv_sort, kv_sort_local, kv_walk_chunks, kv_walk, kv_peak_scan, kv_commit,
// kv_rehash, kv_insert; 64 for kv_peak_blocks and kv_peak; 1 for kv_walk_carry (one block).
// A 2-D grid (x, y) numbers invocations like graph.cu's flat_index() (the WGSL `flat`), and
// the one-block-per-group kernels (kv_sort_local, kv_peak_blocks, kv_peak) number blocks
// blockIdx.x + blockIdx.y * gridDim.x. No kernel needs a buffer length (no arrayLength).
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
// carry it); the peak and its block sums loop in one thread per block; shards are packed into
// arenas under the WGSL binding limit (CUDA has none: one arena would do); the bitonic sort's
// global passes could be fewer with larger shared tiles.

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
    u32 k;           // kv_sort: bitonic stage
    u32 j;           // kv_sort: bitonic distance
    u32 value_base;  // put values start at batch[value_base]
    u32 blocks;      // peak blocks
    u32 delta_base;  // per-op deltas start at work[delta_base]
    u32 matrix_base; // block x shard sums start at work[matrix_base]
    u32 count;       // kv_rehash: slots in the old arena
    u32 chunk_base;  // per walk chunk 3 words (kv_walk_chunks), then 2 (kv_walk_carry)
    u32 chunks;      // walk chunks
    u32 pad0;
};

static_assert(sizeof(Word4) == 16, "Word4 must be a WGSL vec4<u32>");
static_assert(sizeof(TableParams) == 64,
              "TableParams must match table.wgsl's Params (16 u32, 64 bytes)");

// The storage bindings 1..10 of table.wgsl, in binding order.
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
};

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

// Per chunk c: for the key of its last record, (1, state, slot) when that key's run starts in
// the chunk (its state after the chunk, from the probe), else (0, effect, 0) (the chunk is all
// one key continuing a run: what the chunk does to it, NONE for nothing).
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
    for (u32 q = t; q < end; q = q + 1u) {
        u32 e = effect_of(b, b.records[q].w);
        if (e != NONE) {
            effect = e;
        }
    }
    u32 at = p.chunk_base + 3u * c;
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

// One thread (one block of one): the state (state, slot) entering every chunk whose first
// record continues a run, in chunk order.
extern "C" __global__ void kv_walk_carry(TableParams p, TableBuffers b) {
    if (flat_index() != 0u) {
        return;
    }
    u32 carry = p.chunk_base + 3u * p.chunks;
    for (u32 c = 1u; c < p.chunks; c = c + 1u) {
        if (is_head(b, c * CHUNK)) {
            continue;
        }
        u32 prev = p.chunk_base + 3u * (c - 1u);
        if (b.work[prev] == 1u) {
            b.work[carry + 2u * c] = b.work[prev + 1u];
            b.work[carry + 2u * c + 1u] = b.work[prev + 2u];
        } else {
            u32 effect = b.work[prev + 1u];
            u32 before = b.work[carry + 2u * (c - 1u)];
            b.work[carry + 2u * c] = effect == NONE ? before : effect;
            b.work[carry + 2u * c + 1u] = b.work[carry + 2u * (c - 1u) + 1u];
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
    if (head) {
        slot = probe(b, s, lo, hi);
        state = slot == NONE ? 0u : 1u;
    } else {
        u32 carry = p.chunk_base + 3u * p.chunks + 2u * (r / CHUNK);
        state = b.work[carry];
        slot = b.work[carry + 1u];
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
        } else {
            if (state == 0u) {
                b.results[pos] = ST_ABSENT;
            } else {
                b.results[pos] = ST_DELETED;
                delta = -1;
            }
            state = 0u;
        }
        b.work[p.delta_base + pos] = (u32)delta;
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
