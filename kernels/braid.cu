// Braided tori (SPEC §3) in CUDA C: the siblings of shaders/braid.wgsl, kernel for entry
// point, same names, same layouts, same algorithms, so one host orchestration (the step lists
// of engine/src/braid/gpu.rs) drives either. CPU siblings: engine/src/braid/torus/instant.rs
// (`process_instant`, `merge`, `select_smallest`), torus/calendar.rs (`push`, `earliest`),
// projection.rs (`fill`). The order of one instant, the `ctl` fields and the cell, event and
// page layouts are braid.wgsl's (its header comment) and gpu.rs's (its module doc).
//
// Launch: every kernel is `kernel(BraidParams p, BraidBuffers b)`. BraidParams is the WGSL
// uniform `Params` (binding 0) byte for byte (the Rust `Params` of braid/gpu.rs: 16 u32,
// 64 bytes), so the host uploads the same bytes. BraidBuffers holds the storage bindings in
// binding order (a kernel reads only the fields its WGSL entry point binds, `Kernel::bindings`
// in gpu.rs; the others may be null):
//   binding 1  ctl         u32 *        clock, flags, per torus counters and bins (atomics)
//   binding 2  cells       u32 *        per (torus, cell) CELL words (atomics)
//   binding 3  procs       u32 *        per (torus, cell): state, acc, received, has_process
//   binding 4  edge_start  const u32 *  per torus cells + 1 absolute offsets into edges
//   binding 5  edges       u32 *        per edge: to, delay
//   binding 6  sorted      u32 *        per torus max_pending events of the instant
//   binding 7  em          u32 *        per torus em_cap emitted (or injected) events
//   binding 8  pool        u32 *        per torus `pages` pages of events
//   binding 9  pages       u32 *        per torus page tables, then the free stack
//   binding 10 dispatch    u32 *        indirect sizes (written; see below)
//   binding 11 proj        u32 *        per torus exchange inputs (atomics)
// Blocks are the WGSL workgroups: blockDim.x = 256 for braid_scan_cells and braid_cut (one
// block per torus: grid (1, tori)), 64 for every other kernel. "Single" steps are one block
// (grid (1, 1), tori <= 64 threads used); the "Indirect" steps have grid (x, tori), torus =
// blockIdx.y, and loop over their events with a grid stride, so any x is correct: WGSL reads x
// from `dispatch` (indirect dispatch), which CUDA cannot do from a device buffer; the host may
// launch them with x = groups_for(the most events possible: max_pending at dispatch word 0,
// em_cap at word 3) and let blocks past the count return at once. The kernels still write
// `dispatch` as the WGSL does. No kernel needs a buffer length (no arrayLength).
//
// WGSL atomics map to CUDA atomics (atomicAdd, atomicMax, atomicMin, atomicExch) and volatile
// loads and stores (atomicLoad / atomicStore). `var<workgroup>` becomes __shared__, which CUDA
// does not zero as WGSL does: wg_acc, the one variable the WGSL relies on being zero, is
// cleared here before its first use. workgroupUniformLoad(&v) is __syncthreads() then a read
// of v; no thread returns before a barrier its block still reaches (in the kernels with
// barriers every early return is uniform over the block). i32 arithmetic wraps (done in u32), as in WGSL.
//
// Lavapipe workarounds kept so the host order is the same for both backends, where CUDA could
// do better later: a run is applied in rounds of BUDGET / (out-degree + 1) events, G_HOLD
// making the next encoded instants carry the rounds (a CUDA thread could apply a whole run);
// runs are ordered in tiles of TILE then merge passes (a block-wide sort could do it in one
// launch); check_loop (G_FAULT) never fires on CUDA; the indirect sizes could drive the grid
// through a device-side launch or a CUDA graph instead of an upper bound.

typedef unsigned int u32;

#define WG 64u
#define NONE 0xFFFFFFFFu
#define SIGN 0x80000000u

// ctl: GLOBALS words, then per torus `ctl_stride` words: HEAD fields, slot counts (slots
// words), histogram per delay (slots words), 256 bins of a payload byte (the cut).
#define G_CLOCK 0u
#define G_DONE 1u
// Non-zero when a loop ended before its bound (lavapipe's loop limiter; never on CUDA).
#define G_FAULT 2u
// The longest destination run of the instant (any torus), set by braid_scan_cells.
#define G_MAXRUN 3u
// Merge passes encoded so far this instant (braid_next_pass counts them).
#define G_PASS 4u
// The apply round under way, and how many the instant needs (its longest run in chunks).
#define G_ROUND 5u
#define G_ROUNDS 6u
// Non-zero while an instant's runs still have chunks to apply (see braid.wgsl).
#define G_HOLD 7u
#define GLOBALS 16u
#define C_PROC_LO 0u
#define C_PROC_HI 1u
#define C_DROP_LO 2u
#define C_DROP_HI 3u
#define C_PENDING 4u
#define C_NT 5u
#define C_EM 6u
#define C_NEED 7u
#define C_LEVEL 8u
#define C_CUT_D 9u
#define C_CUT_DST 10u
#define C_CUT_SRC 11u
#define C_KEEP_D 12u
#define C_FREE 13u
#define C_INSTANTS 14u
#define C_INJ_COUNT 15u
#define C_INJ_DROPPED 16u
#define C_SELECT 17u
// Events still waiting on the host (beyond the ring): they count in pending.
#define C_FAR 18u
// Levels 3 to 6 of the cut: the cut payload (biased), a byte a level from the top; events
// equal to the whole cut key kept so far.
#define C_CUT_PAY 19u
#define C_CUT_TAKEN 20u
#define HEAD 32u
// Selection levels: 0 delay, 1 dst, 2 src, 3 to 6 the payload's bytes; 7: nothing left to
// cut.
#define LEVEL_DONE 7u
// Runs are ordered in tiles of TILE events, then merged pairwise (braid_merge_pass).
#define TILE 256u
// Loop iterations one thread of braid_process_instant makes per round, about: a run is
// applied in chunks of BUDGET / (out-degree + 1) events.
#define BUDGET 4096u

// cells: per (torus, cell) CELL words.
#define CELL 6u
#define K_COUNT 0u
#define K_START 1u
#define K_CURSOR 2u
#define K_BIN 3u
#define K_EM_BASE 4u
#define K_EM_LEN 5u

#define LOW24 0xFFFFFFu

// The WGSL `Params`, field for field.
struct BraidParams {
    u32 tori;
    u32 cells;
    // max_delay + 1: slot of instant t is t % slots.
    u32 slots;
    u32 max_delay;
    u32 max_pending;
    // Events per page: 1 << page_shift.
    u32 page_shift;
    u32 pages_per_slot;
    // Pages per torus.
    u32 pages;
    // Emitted-event capacity per torus.
    u32 em_cap;
    u32 dx;
    u32 dy;
    u32 dz;
    u32 ctl_stride;
    // The run stops before this instant.
    u32 end;
    // Words per torus in `pages`: slots * pages_per_slot table, then the top stack.
    u32 pages_stride;
    // Words per torus in `proj`: acc sum, face at x = 0, face at x = X-1.
    u32 proj_stride;
};

static_assert(sizeof(BraidParams) == 64,
              "BraidParams must match braid.wgsl's Params (16 u32, 64 bytes)");

// The storage bindings 1..11 of braid.wgsl, in binding order.
struct BraidBuffers {
    u32 *ctl;
    u32 *cells;
    u32 *procs;
    const u32 *edge_start;
    u32 *edges;
    u32 *sorted;
    u32 *em;
    u32 *pool;
    u32 *pages;
    u32 *dispatch;
    u32 *proj;
};

__shared__ u32 wg_acc;
__shared__ u32 wg_flag;
__shared__ u32 wg_hold;
__shared__ u32 wg_sums[256];
// braid_cut: the chunk where the count passes `need`, and the count before it.
__shared__ u32 wg_pick[2];

// atomicLoad / atomicStore of WGSL: a 32-bit access the compiler may not cache or split.
__device__ static u32 load_u32(const u32 *p) {
    return *(const volatile u32 *)p;
}

__device__ static void store_u32(u32 *p, u32 v) {
    *(volatile u32 *)p = v;
}

__device__ static u32 min_u32(u32 a, u32 b) {
    return a < b ? a : b;
}

__device__ static u32 max_u32(u32 a, u32 b) {
    return a > b ? a : b;
}

// The WGSL global_invocation_id.x (the thread's place within its torus).
__device__ static u32 gid_x() {
    return blockIdx.x * blockDim.x + threadIdx.x;
}

// The stride of the grid-stride loops (WGSL num_workgroups.x * WG).
__device__ static u32 grid_stride() {
    return gridDim.x * blockDim.x;
}

__device__ static u32 at(const BraidParams &p, u32 torus, u32 field) {
    return GLOBALS + torus * p.ctl_stride + field;
}

__device__ static u32 ld(const BraidBuffers &b, u32 i) {
    return load_u32(&b.ctl[i]);
}

__device__ static void st(const BraidBuffers &b, u32 i, u32 v) {
    store_u32(&b.ctl[i], v);
}

// Adds v to the u64 counter whose low word is at i.
__device__ static void add64(const BraidBuffers &b, u32 i, u32 v) {
    u32 lo = ld(b, i);
    u32 sum = lo + v;
    st(b, i, sum);
    if (sum < lo) {
        st(b, i + 1u, ld(b, i + 1u) + 1u);
    }
}

__device__ static u32 slot_count(const BraidParams &p, u32 torus, u32 s) {
    return at(p, torus, HEAD + s);
}

__device__ static u32 hist(const BraidParams &p, u32 torus, u32 d) {
    return at(p, torus, HEAD + p.slots + d);
}

__device__ static u32 pay_bin(const BraidParams &p, u32 torus, u32 bin) {
    return at(p, torus, HEAD + 2u * p.slots + bin);
}

// Bit position of the payload byte that cut level `level` (3 to 6) bins.
__device__ static u32 pay_shift(u32 level) {
    return 8u * (6u - level);
}

// Biased payload v agrees with the cut payload on the bytes above level `level`'s.
__device__ static bool pay_prefix_ok(u32 level, u32 v, u32 cut) {
    if (level == 3u) {
        return true;
    }
    u32 s = pay_shift(level) + 8u;
    return (v >> s) == (cut >> s);
}

__device__ static u32 cell_at(const BraidParams &p, u32 torus, u32 c, u32 field) {
    return (torus * p.cells + c) * CELL + field;
}

// Index (in events) in `pool` of event j of slot s.
__device__ static u32 slot_event(const BraidParams &p, const BraidBuffers &b, u32 torus, u32 s,
                                 u32 j) {
    u32 page = b.pages[torus * p.pages_stride + s * p.pages_per_slot + (j >> p.page_shift)];
    u32 mask = (1u << p.page_shift) - 1u;
    return ((torus * p.pages + page) << p.page_shift) | (j & mask);
}

// Word index in `em` of event i of a torus.
__device__ static u32 em_at(const BraidParams &p, u32 torus, u32 i) {
    return (torus * p.em_cap + i) * 3u;
}

__device__ static void em_put(const BraidBuffers &b, u32 w, u32 delay, u32 to, u32 src,
                              u32 payload) {
    b.em[w] = to | (delay << 24);
    b.em[w + 1u] = src | ((delay >> 8) << 24);
    b.em[w + 2u] = payload;
}

__device__ static u32 em_delay(const BraidBuffers &b, u32 w) {
    return (b.em[w] >> 24) | ((b.em[w + 1u] >> 24) << 8);
}

// Records that a loop stopped at `reached` before its bound `bound` (on lavapipe, its loop
// limiter; a CUDA loop always reaches its bound). The host turns this into an error.
__device__ static void check_loop(const BraidBuffers &b, u32 reached, u32 bound) {
    if (reached < bound) {
        atomicMax(&b.ctl[G_FAULT], 1u);
    }
}

// Thread li of a 256-thread block takes the li-th chunk [c0, c1) of the torus's cells and
// leaves the sum of their `field` in wg_sums[li]; sets (c0, c1). The caller synchronises
// before reading wg_sums.
__device__ static void sum_cell_chunk(const BraidParams &p, const BraidBuffers &b, u32 torus,
                                      u32 li, u32 field, u32 &c0, u32 &c1) {
    u32 chunk = (p.cells + 255u) / 256u;
    c0 = min_u32(li * chunk, p.cells);
    c1 = min_u32(c0 + chunk, p.cells);
    u32 sum = 0u;
    u32 c = c0;
    for (; c < c1; c = c + 1u) {
        sum = sum + load_u32(&b.cells[cell_at(p, torus, c, field)]);
    }
    check_loop(b, c, c1);
    wg_sums[li] = sum;
}

// The instant is between apply rounds (see G_HOLD).
__device__ static bool holding(const BraidBuffers &b) {
    return ld(b, G_HOLD) != 0u;
}

// holding(), uniform over the block (for kernels with barriers): WGSL's
// workgroupUniformLoad, a barrier then the read. Every thread of the block must call it.
__device__ static bool holding_wg(const BraidBuffers &b, u32 li) {
    if (li == 0u) {
        wg_hold = ld(b, G_HOLD);
    }
    __syncthreads();
    return wg_hold != 0u;
}

__device__ static u32 groups_for(u32 n) {
    return min_u32((n + WG - 1u) / WG, 65535u);
}

__device__ static u32 biased(u32 v) {
    return v ^ SIGN;
}

// One block of 64 (Single).
extern "C" __global__ void braid_begin_instant(BraidParams p, BraidBuffers b) {
    u32 li = threadIdx.x;
    // WGSL zeroes workgroup memory; the barrier in holding_wg orders this before atomicMax.
    if (li == 0u) {
        wg_acc = 0u;
    }
    if (holding_wg(b, li)) {
        return;
    }
    bool done = ld(b, G_DONE) != 0u;
    u32 s = ld(b, G_CLOCK) % p.slots;
    if (li < p.tori) {
        u32 n = 0u;
        if (!done) {
            n = ld(b, slot_count(p, li, s));
        }
        st(b, at(p, li, C_NT), n);
        st(b, at(p, li, C_EM), 0u);
        st(b, at(p, li, C_PENDING), ld(b, at(p, li, C_PENDING)) - n);
        atomicMax(&wg_acc, n);
    }
    __syncthreads();
    if (li == 0u) {
        st(b, G_MAXRUN, 0u);
        st(b, G_PASS, 0u);
        b.dispatch[0] = groups_for(load_u32(&wg_acc));
        b.dispatch[1] = p.tori;
        b.dispatch[2] = 1u;
    }
}

// Events per destination cell. Grid (x, tori), 64 threads.
extern "C" __global__ void braid_count_dst(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 torus = blockIdx.y;
    u32 n = ld(b, at(p, torus, C_NT));
    u32 s = ld(b, G_CLOCK) % p.slots;
    for (u32 j = gid_x(); j < n; j = j + grid_stride()) {
        u32 dst = b.pool[slot_event(p, b, torus, s, j) * 3u];
        atomicAdd(&b.cells[cell_at(p, torus, dst, K_COUNT)], 1u);
    }
}

// Exclusive prefix sum of the per-cell counts of one torus: K_START and K_CURSOR. One block
// of 256 per torus (grid (1, tori)).
extern "C" __global__ void braid_scan_cells(BraidParams p, BraidBuffers b) {
    u32 li = threadIdx.x;
    u32 torus = blockIdx.y;
    if (holding_wg(b, li)) {
        return;
    }
    if (li == 0u) {
        wg_flag = ld(b, at(p, torus, C_NT));
    }
    __syncthreads();
    u32 n = wg_flag;
    if (n == 0u) {
        return;
    }
    u32 c0;
    u32 c1;
    sum_cell_chunk(p, b, torus, li, K_COUNT, c0, c1);
    __syncthreads();
    if (li == 0u) {
        u32 run = 0u;
        for (u32 k = 0u; k < 256u; k = k + 1u) {
            u32 v = wg_sums[k];
            wg_sums[k] = run;
            run = run + v;
        }
    }
    __syncthreads();
    u32 run = wg_sums[li];
    u32 longest = 0u;
    u32 c = c0;
    for (; c < c1; c = c + 1u) {
        store_u32(&b.cells[cell_at(p, torus, c, K_START)], run);
        store_u32(&b.cells[cell_at(p, torus, c, K_CURSOR)], run);
        // Counts go back to zero for the next instant (the run's length is then
        // cursor - start, once the events are scattered).
        u32 k = atomicExch(&b.cells[cell_at(p, torus, c, K_COUNT)], 0u);
        longest = max_u32(longest, k);
        run = run + k;
    }
    check_loop(b, c, c1);
    atomicMax(&b.ctl[G_MAXRUN], longest);
}

// Events grouped by destination, into `em`. Grid (x, tori), 64 threads.
extern "C" __global__ void braid_scatter_dst(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 torus = blockIdx.y;
    u32 n = ld(b, at(p, torus, C_NT));
    u32 s = ld(b, G_CLOCK) % p.slots;
    for (u32 j = gid_x(); j < n; j = j + grid_stride()) {
        u32 e = slot_event(p, b, torus, s, j) * 3u;
        u32 dst = b.pool[e];
        u32 pos = atomicAdd(&b.cells[cell_at(p, torus, dst, K_CURSOR)], 1u);
        u32 o = em_at(p, torus, pos);
        b.em[o] = dst;
        b.em[o + 1u] = b.pool[e + 1u];
        b.em[o + 2u] = b.pool[e + 2u];
    }
}

// (src, payload as signed) of event 1 before that of event 2 (the order inside a run).
__device__ static bool key_less(u32 s1, u32 p1, u32 s2, u32 p2) {
    return s1 < s2 || (s1 == s2 && biased(p1) < biased(p2));
}

// Word w of the instant's event i, in `em` or in `sorted` (the merge passes go back and
// forth between the two).
__device__ static u32 ev_get(const BraidParams &p, const BraidBuffers &b, bool in_em, u32 torus,
                             u32 i, u32 w) {
    if (in_em) {
        return b.em[em_at(p, torus, i) + w];
    }
    return b.sorted[(torus * p.max_pending + i) * 3u + w];
}

__device__ static void ev_put(const BraidParams &p, const BraidBuffers &b, bool in_em,
                              u32 torus, u32 i, u32 dst, u32 src, u32 pay) {
    if (in_em) {
        u32 o = em_at(p, torus, i);
        b.em[o] = dst;
        b.em[o + 1u] = src;
        b.em[o + 2u] = pay;
    } else {
        u32 o = (torus * p.max_pending + i) * 3u;
        b.sorted[o] = dst;
        b.sorted[o + 1u] = src;
        b.sorted[o + 2u] = pay;
    }
}

// Orders each destination's run by (src, payload as signed) in tiles of TILE events (from
// the run's start): every event counts the events of its tile that come before it (ties by
// position) and moves from `em` (grouped by dst) to its place in `sorted`. Grid (x, tori),
// 64 threads.
extern "C" __global__ void braid_order_runs(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 torus = blockIdx.y;
    u32 n = ld(b, at(p, torus, C_NT));
    for (u32 j = gid_x(); j < n; j = j + grid_stride()) {
        u32 o = em_at(p, torus, j);
        u32 dst = b.em[o];
        u32 src = b.em[o + 1u];
        u32 pay = b.em[o + 2u];
        u32 start = load_u32(&b.cells[cell_at(p, torus, dst, K_START)]);
        u32 end = load_u32(&b.cells[cell_at(p, torus, dst, K_CURSOR)]);
        u32 t0 = start + (j - start) / TILE * TILE;
        u32 t1 = min_u32(t0 + TILE, end);
        u32 rank = 0u;
        u32 k = t0;
        for (; k < t1; k = k + 1u) {
            u32 q = em_at(p, torus, k);
            u32 s2 = b.em[q + 1u];
            u32 p2 = b.em[q + 2u];
            if (key_less(s2, p2, src, pay) || (s2 == src && p2 == pay && k < j)) {
                rank = rank + 1u;
            }
        }
        check_loop(b, k, t1);
        ev_put(p, b, false, torus, t0 + rank, dst, src, pay);
    }
}

// Merge pass G_PASS: within every run, sorted blocks of TILE << G_PASS events (from the
// run's start) merge pairwise into the other buffer (pass 0 reads `sorted`, pass 1 `em`,
// ...), each event placed by a binary search in the other block of its pair (left-block
// events before equal right-block ones). Grid (x, tori), 64 threads.
extern "C" __global__ void braid_merge_pass(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 merge = ld(b, G_PASS);
    // Blocks of 2^31 events would overflow (runs are far shorter: max_pending).
    if (merge >= 23u) {
        return;
    }
    u32 width = TILE << merge;
    if (ld(b, G_MAXRUN) <= width) {
        return;
    }
    bool from_em = (merge & 1u) != 0u;
    u32 torus = blockIdx.y;
    u32 n = ld(b, at(p, torus, C_NT));
    for (u32 j = gid_x(); j < n; j = j + grid_stride()) {
        u32 dst = ev_get(p, b, from_em, torus, j, 0u);
        u32 src = ev_get(p, b, from_em, torus, j, 1u);
        u32 pay = ev_get(p, b, from_em, torus, j, 2u);
        u32 start = load_u32(&b.cells[cell_at(p, torus, dst, K_START)]);
        u32 end = load_u32(&b.cells[cell_at(p, torus, dst, K_CURSOR)]);
        u32 out = j;
        if (end - start > width) {
            u32 pb = start + (j - start) / (2u * width) * (2u * width);
            u32 mid = min_u32(pb + width, end);
            u32 hi = min_u32(mid + width, end);
            bool left = j < mid;
            // The other block: [mid, hi) for a left event, [pb, mid) for a right one; lo
            // ends at the first of its events that goes after this one.
            u32 lo = mid;
            u32 up = hi;
            if (!left) {
                lo = pb;
                up = mid;
            }
            u32 steps = 0u;
            for (; lo < up && steps < 40u; steps = steps + 1u) {
                u32 m = lo + (up - lo) / 2u;
                u32 s2 = ev_get(p, b, from_em, torus, m, 1u);
                u32 p2 = ev_get(p, b, from_em, torus, m, 2u);
                bool before;
                if (left) {
                    before = key_less(s2, p2, src, pay);
                } else {
                    before = !key_less(src, pay, s2, p2);
                }
                if (before) {
                    lo = m + 1u;
                } else {
                    up = m;
                }
            }
            // 40 steps cover any block: stopping with lo < up means the loop was cut.
            if (lo < up) {
                atomicMax(&b.ctl[G_FAULT], 1u);
            }
            out = j + lo - mid;
        }
        ev_put(p, b, !from_em, torus, out, dst, src, pay);
    }
}

// Counts the merge passes encoded (so far) this instant. One block of 64 (Single).
extern "C" __global__ void braid_next_pass(BraidParams, BraidBuffers b) {
    u32 li = threadIdx.x;
    if (li == 0u && !holding(b)) {
        st(b, G_PASS, ld(b, G_PASS) + 1u);
    }
}

// After the merge passes: when an odd number of them did something, the ordered instant is
// in `em`; it goes back to `sorted` (emission writes `em`). Grid (x, tori), 64 threads.
extern "C" __global__ void braid_order_done(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 passes = min_u32(ld(b, G_PASS), 23u);
    u32 longest = ld(b, G_MAXRUN);
    u32 done = 0u;
    for (u32 q = 0u; q < passes; q = q + 1u) {
        if (longest > (TILE << q)) {
            done = done + 1u;
        }
    }
    if ((done & 1u) == 0u) {
        return;
    }
    u32 torus = blockIdx.y;
    u32 n = ld(b, at(p, torus, C_NT));
    for (u32 j = gid_x(); j < n; j = j + grid_stride()) {
        u32 o = em_at(p, torus, j);
        ev_put(p, b, false, torus, j, b.em[o], b.em[o + 1u], b.em[o + 2u]);
    }
}

// Events a0 .. a0 + len of the run of `dst` (count events from event r0 of `sorted`).
__device__ static void process_chunk(const BraidParams &p, const BraidBuffers &b, u32 torus,
                                     u32 dst, u32 r0, u32 count, u32 a0, u32 len) {
    u32 a1 = a0 + len;
    // The process update; each event's output replaces its src (no longer needed).
    u32 pi = (torus * p.cells + dst) * 4u;
    if (b.procs[pi + 3u] != 0u) {
        u32 state = b.procs[pi];
        // acc is an i32 that wraps: kept as its u32 bits.
        u32 acc = b.procs[pi + 1u];
        u32 a = a0;
        for (; a < a1; a = a + 1u) {
            u32 pay = b.sorted[(r0 + a) * 3u + 2u];
            state = (state * 31u + pay) ^ (state >> 3);
            acc = acc + pay;
            b.sorted[(r0 + a) * 3u + 1u] = (state & 0xFFu) + 1u;
        }
        check_loop(b, a, a1);
        b.procs[pi] = state;
        b.procs[pi + 1u] = acc;
        b.procs[pi + 2u] = b.procs[pi + 2u] + len;
    } else {
        u32 a = a0;
        for (; a < a1; a = a + 1u) {
            // payload + 1 as a wrapping i32, in u32 bits.
            b.sorted[(r0 + a) * 3u + 1u] = b.sorted[(r0 + a) * 3u + 2u] + 1u;
        }
        check_loop(b, a, a1);
    }
    // Each out-edge in order: its delay adapts event by event; one contiguous block of
    // `em` per run, edge-major (event a of edge e at (e - e0) * count + a).
    u32 row = torus * (p.cells + 1u) + dst;
    u32 e0 = b.edge_start[row];
    u32 e1 = b.edge_start[row + 1u];
    u32 em0;
    if (a0 == 0u) {
        u32 total = count * (e1 - e0);
        em0 = atomicAdd(&b.ctl[at(p, torus, C_EM)], total);
        store_u32(&b.cells[cell_at(p, torus, dst, K_EM_BASE)], em0);
        store_u32(&b.cells[cell_at(p, torus, dst, K_EM_LEN)], total);
    } else {
        em0 = load_u32(&b.cells[cell_at(p, torus, dst, K_EM_BASE)]);
    }
    u32 e = e0;
    for (; e < e1; e = e + 1u) {
        u32 to = b.edges[e * 2u];
        u32 d = b.edges[e * 2u + 1u];
        u32 a = a0;
        for (; a < a1; a = a + 1u) {
            int pay = (int)b.sorted[(r0 + a) * 3u + 2u];
            if (pay > 0) {
                d = max_u32(1u, d - 1u);
            } else {
                d = min_u32(p.max_delay, d + 1u);
            }
            em_put(b, em_at(p, torus, em0 + (e - e0) * count + a), d, to, dst,
                   b.sorted[(r0 + a) * 3u + 1u]);
        }
        check_loop(b, a, a1);
        b.edges[e * 2u + 1u] = d;
    }
    check_loop(b, e, e1);
}

// Apply round G_ROUND of the instant: every (torus, dst) run applies its chunk G_ROUND (of
// BUDGET / (out-degree + 1) events; the thread at the chunk's first event) of SPEC §3.1's
// update, in the run's total order. Runs while holding (no holding check, as in the WGSL).
// Grid (x, tori), 64 threads.
extern "C" __global__ void braid_process_instant(BraidParams p, BraidBuffers b) {
    u32 torus = blockIdx.y;
    u32 n = ld(b, at(p, torus, C_NT));
    u32 base = torus * p.max_pending;
    u32 round = ld(b, G_ROUND);
    for (u32 j = gid_x(); j < n; j = j + grid_stride()) {
        // Every event of a run has the run's dst.
        u32 dst = b.sorted[(base + j) * 3u];
        u32 start = load_u32(&b.cells[cell_at(p, torus, dst, K_START)]);
        u32 count = load_u32(&b.cells[cell_at(p, torus, dst, K_CURSOR)]) - start;
        u32 row = torus * (p.cells + 1u) + dst;
        u32 chunk = max_u32(1u, BUDGET / (b.edge_start[row + 1u] - b.edge_start[row] + 1u));
        u32 rel = j - start;
        if (rel % chunk == 0u && rel / chunk == round) {
            if (round == 0u) {
                atomicMax(&b.ctl[G_ROUNDS], (count + chunk - 1u) / chunk);
            }
            process_chunk(p, b, torus, dst, base + start, count, rel, min_u32(chunk, count - rel));
        }
    }
}

// After an apply round: the next round, holding the rest of the pipeline (G_HOLD) while
// some run has chunks left; else the instant goes on. One block of 64 (Single).
extern "C" __global__ void braid_end_round(BraidParams, BraidBuffers b) {
    u32 li = threadIdx.x;
    if (li == 0u) {
        u32 next = ld(b, G_ROUND) + 1u;
        if (next < ld(b, G_ROUNDS)) {
            st(b, G_ROUND, next);
            st(b, G_HOLD, 1u);
        } else {
            st(b, G_ROUND, 0u);
            st(b, G_ROUNDS, 0u);
            st(b, G_HOLD, 0u);
        }
    }
}

// Sets the indirect size over `em` to the largest count of any torus. Every thread of the
// block must call it. (wg_acc is cleared first: WGSL's zeroed workgroup memory.)
__device__ static void dispatch_em(const BraidParams &p, const BraidBuffers &b, u32 li, u32 m) {
    if (li == 0u) {
        wg_acc = 0u;
    }
    __syncthreads();
    if (li < p.tori) {
        atomicMax(&wg_acc, m);
    }
    __syncthreads();
    if (li == 0u) {
        b.dispatch[3] = groups_for(load_u32(&wg_acc));
        b.dispatch[4] = p.tori;
        b.dispatch[5] = 1u;
    }
}

// After processing: counters, and the capacity rule. With more emitted events than room
// (max_pending minus what is still pending), only the smallest in total order are kept.
// One block of 64 (Single).
extern "C" __global__ void braid_plan_merge(BraidParams p, BraidBuffers b) {
    u32 li = threadIdx.x;
    if (holding_wg(b, li)) {
        return;
    }
    u32 m = 0u;
    if (li < p.tori) {
        u32 n = ld(b, at(p, li, C_NT));
        m = ld(b, at(p, li, C_EM));
        add64(b, at(p, li, C_PROC_LO), n);
        if (n > 0u) {
            st(b, at(p, li, C_INSTANTS), ld(b, at(p, li, C_INSTANTS)) + 1u);
        }
        u32 budget = p.max_pending - ld(b, at(p, li, C_PENDING)) - ld(b, at(p, li, C_FAR));
        if (m > budget) {
            add64(b, at(p, li, C_DROP_LO), m - budget);
            st(b, at(p, li, C_SELECT), 1u);
            st(b, at(p, li, C_LEVEL), 0u);
            st(b, at(p, li, C_CUT_PAY), 0u);
            st(b, at(p, li, C_CUT_TAKEN), 0u);
            st(b, at(p, li, C_NEED), budget);
        } else {
            st(b, at(p, li, C_SELECT), 0u);
            st(b, at(p, li, C_LEVEL), LEVEL_DONE);
        }
    }
    dispatch_em(p, b, li, m);
}

// Host-written injections (in `em`, delay = instant - clock, C_INJ_COUNT of them) go in
// whole; C_INJ_DROPPED corrective events the host found no room for are counted dropped.
// One block of 64 (Single); no holding check, as in the WGSL.
extern "C" __global__ void braid_plan_inject(BraidParams p, BraidBuffers b) {
    u32 li = threadIdx.x;
    u32 m = 0u;
    if (li < p.tori) {
        m = ld(b, at(p, li, C_INJ_COUNT));
        st(b, at(p, li, C_EM), m);
        st(b, at(p, li, C_NT), 0u);
        add64(b, at(p, li, C_DROP_LO), ld(b, at(p, li, C_INJ_DROPPED)));
        st(b, at(p, li, C_INJ_COUNT), 0u);
        st(b, at(p, li, C_INJ_DROPPED), 0u);
        st(b, at(p, li, C_SELECT), 0u);
        st(b, at(p, li, C_LEVEL), LEVEL_DONE);
    }
    dispatch_em(p, b, li, m);
}

// Emitted events per delay. Grid (x, tori), 64 threads.
extern "C" __global__ void braid_count_delays(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 torus = blockIdx.y;
    u32 m = ld(b, at(p, torus, C_EM));
    for (u32 i = gid_x(); i < m; i = i + grid_stride()) {
        u32 d = em_delay(b, em_at(p, torus, i));
        atomicAdd(&b.ctl[hist(p, torus, d)], 1u);
    }
}

// Level 1: per destination among the events at the cut delay; level 2: per source among
// those at the cut (delay, dst); levels 3 to 6: per payload byte among those at the cut
// (delay, dst, src) and the bytes of the cut payload found so far. Grid (x, tori), 64
// threads.
extern "C" __global__ void braid_count_keys(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 torus = blockIdx.y;
    u32 level = ld(b, at(p, torus, C_LEVEL));
    if (level == 0u || level >= LEVEL_DONE) {
        return;
    }
    u32 cut_src = ld(b, at(p, torus, C_CUT_SRC));
    u32 cut_pay = ld(b, at(p, torus, C_CUT_PAY));
    u32 m = ld(b, at(p, torus, C_EM));
    u32 cut_d = ld(b, at(p, torus, C_CUT_D));
    u32 cut_dst = ld(b, at(p, torus, C_CUT_DST));
    for (u32 i = gid_x(); i < m; i = i + grid_stride()) {
        u32 w = em_at(p, torus, i);
        if (em_delay(b, w) != cut_d) {
            continue;
        }
        if (level == 1u) {
            atomicAdd(&b.cells[cell_at(p, torus, b.em[w] & LOW24, K_BIN)], 1u);
        } else if ((b.em[w] & LOW24) != cut_dst) {
            continue;
        } else if (level == 2u) {
            atomicAdd(&b.cells[cell_at(p, torus, b.em[w + 1u] & LOW24, K_BIN)], 1u);
        } else if ((b.em[w + 1u] & LOW24) == cut_src) {
            u32 v = biased(b.em[w + 2u]);
            if (pay_prefix_ok(level, v, cut_pay)) {
                atomicAdd(&b.ctl[pay_bin(p, torus, (v >> pay_shift(level)) & 0xFFu)], 1u);
            }
        }
    }
}

// One block of 256 per torus (grid (1, tori)): finds the key at this level below which
// `need` events lie, and subtracts what lies below it from `need`. Level 0 is over delays
// (one thread); levels 1 and 2 are over cells: each thread sums a chunk of the bins, thread 0
// finds the chunk where the count passes `need`, that chunk's thread finds the cell, and
// every thread clears its chunk.
extern "C" __global__ void braid_cut(BraidParams p, BraidBuffers b) {
    u32 li = threadIdx.x;
    u32 torus = blockIdx.y;
    if (holding_wg(b, li)) {
        return;
    }
    if (li == 0u) {
        wg_flag = ld(b, at(p, torus, C_LEVEL));
    }
    __syncthreads();
    u32 level = wg_flag;
    if (level == LEVEL_DONE) {
        return;
    }
    u32 need = ld(b, at(p, torus, C_NEED));
    if (level == 0u) {
        if (li == 0u) {
            u32 cum = 0u;
            for (u32 d = 0u; d < p.slots; d = d + 1u) {
                u32 h = ld(b, hist(p, torus, d));
                if (cum + h > need) {
                    st(b, at(p, torus, C_CUT_D), d);
                    st(b, at(p, torus, C_KEEP_D), need - cum);
                    break;
                }
                cum = cum + h;
            }
            st(b, at(p, torus, C_NEED), need - cum);
            st(b, at(p, torus, C_LEVEL), 1u);
        }
        return;
    }
    if (level >= 3u) {
        // 256 bins of one payload byte: thread 0 finds the byte, then each thread clears
        // one bin.
        if (li == 0u) {
            u32 cum = 0u;
            u32 pick = 255u;
            for (u32 bin = 0u; bin < 256u; bin = bin + 1u) {
                u32 h = ld(b, pay_bin(p, torus, bin));
                if (cum + h > need) {
                    pick = bin;
                    break;
                }
                cum = cum + h;
            }
            st(b, at(p, torus, C_CUT_PAY),
               ld(b, at(p, torus, C_CUT_PAY)) | (pick << pay_shift(level)));
            st(b, at(p, torus, C_NEED), need - cum);
            st(b, at(p, torus, C_LEVEL), level + 1u);
        }
        __syncthreads();
        st(b, pay_bin(p, torus, li), 0u);
        return;
    }
    u32 c0;
    u32 c1;
    sum_cell_chunk(p, b, torus, li, K_BIN, c0, c1);
    __syncthreads();
    if (li == 0u) {
        u32 cum = 0u;
        u32 pick = 255u;
        for (u32 k = 0u; k < 256u; k = k + 1u) {
            if (cum + wg_sums[k] > need) {
                pick = k;
                break;
            }
            cum = cum + wg_sums[k];
        }
        wg_pick[0] = pick;
        wg_pick[1] = cum;
    }
    __syncthreads();
    u32 c = c0;
    if (li == wg_pick[0]) {
        u32 cum = wg_pick[1];
        u32 found = NONE;
        for (c = c0; c < c1; c = c + 1u) {
            u32 bin = load_u32(&b.cells[cell_at(p, torus, c, K_BIN)]);
            if (cum + bin > need) {
                found = c;
                break;
            }
            cum = cum + bin;
        }
        if (level == 1u) {
            st(b, at(p, torus, C_CUT_DST), found);
        } else {
            st(b, at(p, torus, C_CUT_SRC), found);
        }
        st(b, at(p, torus, C_NEED), need - cum);
        st(b, at(p, torus, C_LEVEL), level + 1u);
    }
    __syncthreads();
    for (c = c0; c < c1; c = c + 1u) {
        store_u32(&b.cells[cell_at(p, torus, c, K_BIN)], 0u);
    }
    check_loop(b, c, c1);
}

// One thread per torus: frees the processed slot's pages, then gives each slot that grows
// the pages its kept events need, and clears the delay histogram. One block of 64 (Single).
extern "C" __global__ void braid_alloc(BraidParams p, BraidBuffers b) {
    u32 li = threadIdx.x;
    if (li >= p.tori || holding(b)) {
        return;
    }
    u32 torus = li;
    u32 clock = ld(b, G_CLOCK);
    u32 page = 1u << p.page_shift;
    u32 table = torus * p.pages_stride;
    u32 stack = table + p.slots * p.pages_per_slot;
    u32 top = ld(b, at(p, torus, C_FREE));
    u32 n = ld(b, at(p, torus, C_NT));
    if (n > 0u) {
        u32 s = clock % p.slots;
        u32 used = (n + page - 1u) >> p.page_shift;
        for (u32 q = 0u; q < used; q = q + 1u) {
            b.pages[stack + top] = b.pages[table + s * p.pages_per_slot + q];
            top = top + 1u;
        }
        st(b, slot_count(p, torus, s), 0u);
        st(b, at(p, torus, C_NT), 0u);
    }
    bool selecting = ld(b, at(p, torus, C_SELECT)) != 0u;
    u32 cut_d = ld(b, at(p, torus, C_CUT_D));
    u32 keep_d = ld(b, at(p, torus, C_KEEP_D));
    u32 total = 0u;
    for (u32 d = 0u; d < p.slots; d = d + 1u) {
        u32 h = ld(b, hist(p, torus, d));
        st(b, hist(p, torus, d), 0u);
        u32 add = h;
        if (selecting && d == cut_d) {
            add = keep_d;
        } else if (selecting && d > cut_d) {
            add = 0u;
        }
        if (add == 0u) {
            continue;
        }
        u32 s = (clock + d) % p.slots;
        u32 old = ld(b, slot_count(p, torus, s));
        u32 first_page = (old + page - 1u) >> p.page_shift;
        u32 last_page = (old + add + page - 1u) >> p.page_shift;
        for (u32 q = first_page; q < last_page; q = q + 1u) {
            top = top - 1u;
            b.pages[table + s * p.pages_per_slot + q] = b.pages[stack + top];
        }
        total = total + add;
    }
    st(b, at(p, torus, C_FREE), top);
    st(b, at(p, torus, C_PENDING), ld(b, at(p, torus, C_PENDING)) + total);
}

// Kept events appended into their slots. Grid (x, tori), 64 threads.
extern "C" __global__ void braid_merge(BraidParams p, BraidBuffers b) {
    if (holding(b)) {
        return;
    }
    u32 torus = blockIdx.y;
    u32 m = ld(b, at(p, torus, C_EM));
    u32 clock = ld(b, G_CLOCK);
    bool selecting = ld(b, at(p, torus, C_SELECT)) != 0u;
    u32 cut_d = ld(b, at(p, torus, C_CUT_D));
    u32 cut_dst = ld(b, at(p, torus, C_CUT_DST));
    u32 cut_src = ld(b, at(p, torus, C_CUT_SRC));
    u32 need = ld(b, at(p, torus, C_NEED));
    u32 cut_pay = ld(b, at(p, torus, C_CUT_PAY));
    for (u32 i = gid_x(); i < m; i = i + grid_stride()) {
        u32 w = em_at(p, torus, i);
        u32 d = em_delay(b, w);
        u32 to = b.em[w] & LOW24;
        u32 src = b.em[w + 1u] & LOW24;
        u32 pay = b.em[w + 2u];
        bool keep = true;
        if (selecting) {
            if (d != cut_d) {
                keep = d < cut_d;
            } else if (to != cut_dst) {
                keep = to < cut_dst;
            } else if (src != cut_src) {
                keep = src < cut_src;
            } else if (biased(pay) != cut_pay) {
                keep = biased(pay) < cut_pay;
            } else {
                // Events equal to the whole cut key are the same event: any `need` of them.
                keep = atomicAdd(&b.ctl[at(p, torus, C_CUT_TAKEN)], 1u) < need;
            }
        }
        if (keep) {
            u32 s = (clock + d) % p.slots;
            u32 pos = atomicAdd(&b.ctl[slot_count(p, torus, s)], 1u);
            u32 e = slot_event(p, b, torus, s, pos) * 3u;
            b.pool[e] = to;
            b.pool[e + 1u] = src;
            b.pool[e + 2u] = pay;
        }
    }
}

// The next instant: the earliest pending instant of any torus after the clock, or `end`
// (and done) when there is none below it. One block of 64 (Single).
extern "C" __global__ void braid_advance(BraidParams p, BraidBuffers b) {
    u32 li = threadIdx.x;
    if (holding_wg(b, li)) {
        return;
    }
    if (li == 0u) {
        wg_acc = NONE;
    }
    __syncthreads();
    u32 clock = ld(b, G_CLOCK);
    bool done = ld(b, G_DONE) != 0u;
    if (li < p.tori && !done) {
        for (u32 d = 1u; d < p.slots; d = d + 1u) {
            if (ld(b, slot_count(p, li, (clock + d) % p.slots)) != 0u) {
                atomicMin(&wg_acc, clock + d);
                break;
            }
        }
    }
    __syncthreads();
    if (li == 0u && !done) {
        u32 next = load_u32(&wg_acc);
        if (next >= p.end) {
            st(b, G_CLOCK, p.end);
            st(b, G_DONE, 1u);
        } else {
            st(b, G_CLOCK, next);
        }
    }
}

// Exchange inputs: wrapping acc sum, face at x = 0 (0 where no process) and face at
// x = X-1, per torus. `proj` must be zero before. Grid (x, tori), 64 threads.
extern "C" __global__ void braid_project(BraidParams p, BraidBuffers b) {
    u32 torus = blockIdx.y;
    u32 face = p.dy * p.dz;
    u32 o = torus * p.proj_stride;
    for (u32 c = gid_x(); c < p.cells; c = c + grid_stride()) {
        u32 pi = (torus * p.cells + c) * 4u;
        u32 acc = 0u;
        if (b.procs[pi + 3u] != 0u) {
            acc = b.procs[pi + 1u];
        }
        atomicAdd(&b.proj[o], acc);
        if (c < face) {
            store_u32(&b.proj[o + 1u + c], acc);
        }
        if (c >= (p.dx - 1u) * face) {
            store_u32(&b.proj[o + 1u + face + c - (p.dx - 1u) * face], acc);
        }
    }
}
