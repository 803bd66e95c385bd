// Braided tori (SPEC §3) on the device: every torus of a braid processes its instant t in
// one dispatch per step. CPU siblings: engine/src/braid/torus/instant.rs (`process_instant`,
// `merge`, `select_smallest`), torus/calendar.rs (`push`, `earliest`), projection.rs
// (`fill`). The host side is engine/src/braid/gpu.rs, which documents the buffers.
//
// One instant, in dispatch order (the host encodes many instants per submit; once the
// clock reaches `end` every step does nothing):
//   braid_begin_instant   the events of slot t: n_t per torus, indirect dispatch size
//   braid_count_dst       events per destination cell
//   braid_scan_cells      exclusive prefix sum over cells (one workgroup per torus)
//   braid_scatter_dst     events grouped by destination (into `em`, free until emission)
//   braid_order_runs      each run ordered by (src, payload) in tiles of TILE events into
//                         `sorted`
//   braid_merge_pass, braid_next_pass (per merge pass)
//                         sorted blocks of TILE << pass merged pairwise, `sorted` <-> `em`
//   braid_order_done      the ordered instant back into `sorted` if it ended in `em`
//   braid_process_instant apply round G_ROUND: every (torus, dst) run applies its next chunk
//                         of SPEC §3.1's update in order, adapts the out-edge delays in
//                         order, emits into `em` (one contiguous block per run)
//   braid_end_round       next round; while runs have chunks left, G_HOLD makes every other
//                         step do nothing, so the next encoded instants run the rounds
//   braid_plan_merge      counters, the capacity budget, indirect size over `em`
//   braid_count_delays    emitted events per delay (instant)
//   braid_cut (x7, a workgroup per torus) with braid_count_keys (x6) between: when over
//                         capacity, the cut key (delay, dst, src, payload byte by byte)
//                         below which emitted events are kept
//   braid_alloc           frees slot t's pages, gives pages to the slots that grow
//   braid_merge           kept events appended into their slots (order inside a slot is
//                         top: an instant is grouped and sorted when processed)
//   braid_advance         next clock: earliest pending instant of any torus, capped at end
// Injections (initial, far-future, corrective) use braid_plan_inject, braid_count_delays,
// braid_alloc and braid_merge. Exchanges use braid_project.
//
// Only 32-bit integers; wrapping arithmetic is what SPEC §3.1 asks for. Lavapipe (CI) ends
// every loop of an invocation once the invocation has made 65535 loop iterations in all, so
// no invocation loops over more than a tile (TILE), a binary search, an apply chunk (about
// BUDGET), the out-edges of a cell or its share (1/256) of the cells of one torus.

const WG: u32 = 64u;
const NONE: u32 = 0xFFFFFFFFu;
const SIGN: u32 = 0x80000000u;

// ctl: GLOBALS words, then per torus `ctl_stride` words: HEAD fields, slot counts (slots
// words), histogram per delay (slots words), 256 bins of a payload byte (the cut).
const G_CLOCK: u32 = 0u;
const G_DONE: u32 = 1u;
// Non-zero when a loop ended before its bound (lavapipe's loop limiter, see the top).
const G_FAULT: u32 = 2u;
// The longest destination run of the instant (any torus), set by braid_scan_cells.
const G_MAXRUN: u32 = 3u;
// Merge passes encoded so far this instant (braid_next_pass counts them).
const G_PASS: u32 = 4u;
// The apply round under way, and how many the instant needs (its longest run in chunks).
const G_ROUND: u32 = 5u;
const G_ROUNDS: u32 = 6u;
// Non-zero while an instant's runs still have chunks to apply: every kernel but
// braid_process_instant and braid_end_round does nothing, so the steps encoded for the next
// instants carry on the rounds until the instant is applied.
const G_HOLD: u32 = 7u;
const GLOBALS: u32 = 16u;
const C_PROC_LO: u32 = 0u;
const C_PROC_HI: u32 = 1u;
const C_DROP_LO: u32 = 2u;
const C_DROP_HI: u32 = 3u;
const C_PENDING: u32 = 4u;
const C_NT: u32 = 5u;
const C_EM: u32 = 6u;
const C_NEED: u32 = 7u;
const C_LEVEL: u32 = 8u;
const C_CUT_D: u32 = 9u;
const C_CUT_DST: u32 = 10u;
const C_CUT_SRC: u32 = 11u;
const C_KEEP_D: u32 = 12u;
const C_FREE: u32 = 13u;
const C_INSTANTS: u32 = 14u;
const C_INJ_COUNT: u32 = 15u;
const C_INJ_DROPPED: u32 = 16u;
const C_SELECT: u32 = 17u;
// Events still waiting on the host (beyond the ring): they count in pending.
const C_FAR: u32 = 18u;
// Levels 3 to 6 of the cut: the cut payload (biased), a byte a level from the top; events
// equal to the whole cut key kept so far.
const C_CUT_PAY: u32 = 19u;
const C_CUT_TAKEN: u32 = 20u;
const HEAD: u32 = 32u;
// Selection levels: 0 delay, 1 dst, 2 src, 3 to 6 the payload's bytes; 7: nothing left to
// cut.
const LEVEL_DONE: u32 = 7u;
// Runs are ordered in tiles of TILE events, then merged pairwise (braid_merge_pass).
const TILE: u32 = 256u;
// Loop iterations one invocation of braid_process_instant makes per round, about: a run is
// applied in chunks of BUDGET / (out-degree + 1) events.
const BUDGET: u32 = 4096u;

// cells: per (torus, cell) CELL words.
const CELL: u32 = 6u;
const K_COUNT: u32 = 0u;
const K_START: u32 = 1u;
const K_CURSOR: u32 = 2u;
const K_BIN: u32 = 3u;
const K_EM_BASE: u32 = 4u;
const K_EM_LEN: u32 = 5u;

struct Params {
    tori: u32,
    cells: u32,
    // max_delay + 1: slot of instant t is t % slots.
    slots: u32,
    max_delay: u32,
    max_pending: u32,
    // Events per page: 1 << page_shift.
    page_shift: u32,
    pages_per_slot: u32,
    // Pages per torus.
    pages: u32,
    // Emitted-event capacity per torus.
    em_cap: u32,
    dx: u32,
    dy: u32,
    dz: u32,
    ctl_stride: u32,
    // The run stops before this instant.
    end: u32,
    // Words per torus in `pages`: slots * pages_per_slot table, then the top stack.
    pages_stride: u32,
    // Words per torus in `proj`: acc sum, face at x = 0, face at x = X-1.
    proj_stride: u32,
}

@group(0) @binding(0) var<uniform> prm: Params;
@group(0) @binding(1) var<storage, read_write> ctl: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> cells: array<atomic<u32>>;
// Per (torus, cell): state, acc (i32 bits), received, has_process.
@group(0) @binding(3) var<storage, read_write> procs: array<u32>;
// Per torus cells + 1 offsets into `edges` (absolute).
@group(0) @binding(4) var<storage, read> edge_start: array<u32>;
// Per edge: to, delay.
@group(0) @binding(5) var<storage, read_write> edges: array<u32>;
// Per torus max_pending events (dst, src, payload) of the instant, grouped by dst.
@group(0) @binding(6) var<storage, read_write> sorted: array<u32>;
// Per torus em_cap emitted (or injected) events, 3 words each: to | (delay & 0xFF) << 24,
// src | (delay >> 8) << 24, payload (cells < 2^24, delay <= 1024). Before emission, the
// instant's events grouped by dst (dst, src, payload).
@group(0) @binding(7) var<storage, read_write> em: array<u32>;
// Per torus `pages` pages of events (dst, src, payload).
@group(0) @binding(8) var<storage, read_write> pool: array<u32>;
@group(0) @binding(9) var<storage, read_write> pages: array<u32>;
// Indirect dispatch sizes: over the instant's events at 0, over `em` at 3.
@group(0) @binding(10) var<storage, read_write> dispatch: array<u32>;
@group(0) @binding(11) var<storage, read_write> proj: array<atomic<u32>>;

var<workgroup> wg_acc: atomic<u32>;
var<workgroup> wg_flag: u32;
var<workgroup> wg_hold: u32;
var<workgroup> wg_sums: array<u32, 256>;
// braid_cut: the chunk where the count passes `need`, and the count before it.
var<workgroup> wg_pick: vec2<u32>;

fn at(torus: u32, field: u32) -> u32 {
    return GLOBALS + torus * prm.ctl_stride + field;
}

fn ld(i: u32) -> u32 {
    return atomicLoad(&ctl[i]);
}

fn st(i: u32, v: u32) {
    atomicStore(&ctl[i], v);
}

// Adds v to the u64 counter whose low word is at i.
fn add64(i: u32, v: u32) {
    let lo = ld(i);
    let sum = lo + v;
    st(i, sum);
    if (sum < lo) {
        st(i + 1u, ld(i + 1u) + 1u);
    }
}

fn slot_count(torus: u32, s: u32) -> u32 {
    return at(torus, HEAD + s);
}

fn hist(torus: u32, d: u32) -> u32 {
    return at(torus, HEAD + prm.slots + d);
}

fn pay_bin(torus: u32, b: u32) -> u32 {
    return at(torus, HEAD + 2u * prm.slots + b);
}

// Bit position of the payload byte that cut level `level` (3 to 6) bins.
fn pay_shift(level: u32) -> u32 {
    return 8u * (6u - level);
}

// Biased payload p agrees with the cut payload on the bytes above level `level`'s.
fn pay_prefix_ok(level: u32, p: u32, cut: u32) -> bool {
    if (level == 3u) {
        return true;
    }
    let s = pay_shift(level) + 8u;
    return (p >> s) == (cut >> s);
}

fn cell_at(torus: u32, c: u32, field: u32) -> u32 {
    return (torus * prm.cells + c) * CELL + field;
}

// Index (in events) in `pool` of event j of slot s.
fn slot_event(torus: u32, s: u32, j: u32) -> u32 {
    let page = pages[torus * prm.pages_stride + s * prm.pages_per_slot + (j >> prm.page_shift)];
    let mask = (1u << prm.page_shift) - 1u;
    return ((torus * prm.pages + page) << prm.page_shift) | (j & mask);
}

const LOW24: u32 = 0xFFFFFFu;

// Word index in `em` of event i of a torus.
fn em_at(torus: u32, i: u32) -> u32 {
    return (torus * prm.em_cap + i) * 3u;
}

fn em_put(w: u32, delay: u32, to: u32, src: u32, payload: u32) {
    em[w] = to | (delay << 24u);
    em[w + 1u] = src | ((delay >> 8u) << 24u);
    em[w + 2u] = payload;
}

fn em_delay(w: u32) -> u32 {
    return (em[w] >> 24u) | ((em[w + 1u] >> 24u) << 8u);
}

// Records that a loop stopped at `reached` before its bound `bound`: the adapter cut it
// short (lavapipe stops all loops of an invocation after 65535 iterations in all). The host
// turns this into an error instead of a wrong result.
fn check_loop(reached: u32, bound: u32) {
    if (reached < bound) {
        atomicMax(&ctl[G_FAULT], 1u);
    }
}

// Thread li of a 256-thread workgroup takes the li-th chunk [c0, c1) of the torus's cells
// and leaves the sum of their `field` in wg_sums[li]; returns (c0, c1). The caller
// synchronises before reading wg_sums.
fn sum_cell_chunk(torus: u32, li: u32, field: u32) -> vec2<u32> {
    let chunk = (prm.cells + 255u) / 256u;
    let c0 = min(li * chunk, prm.cells);
    let c1 = min(c0 + chunk, prm.cells);
    var sum = 0u;
    var c = c0;
    for (; c < c1; c = c + 1u) {
        sum = sum + atomicLoad(&cells[cell_at(torus, c, field)]);
    }
    check_loop(c, c1);
    wg_sums[li] = sum;
    return vec2<u32>(c0, c1);
}

// The instant is between apply rounds (see G_HOLD).
fn holding() -> bool {
    return ld(G_HOLD) != 0u;
}

// holding(), uniform over the workgroup (for kernels with barriers).
fn holding_wg(li: u32) -> bool {
    if (li == 0u) {
        wg_hold = ld(G_HOLD);
    }
    return workgroupUniformLoad(&wg_hold) != 0u;
}

fn groups_for(n: u32) -> u32 {
    return min((n + WG - 1u) / WG, 65535u);
}

fn biased(p: u32) -> u32 {
    return p ^ SIGN;
}

@compute @workgroup_size(64)
fn braid_begin_instant(@builtin(local_invocation_index) li: u32) {
    if (holding_wg(li)) {
        return;
    }
    let done = ld(G_DONE) != 0u;
    let s = ld(G_CLOCK) % prm.slots;
    if (li < prm.tori) {
        var n = 0u;
        if (!done) {
            n = ld(slot_count(li, s));
        }
        st(at(li, C_NT), n);
        st(at(li, C_EM), 0u);
        st(at(li, C_PENDING), ld(at(li, C_PENDING)) - n);
        atomicMax(&wg_acc, n);
    }
    workgroupBarrier();
    if (li == 0u) {
        st(G_MAXRUN, 0u);
        st(G_PASS, 0u);
        dispatch[0] = groups_for(atomicLoad(&wg_acc));
        dispatch[1] = prm.tori;
        dispatch[2] = 1u;
    }
}

@compute @workgroup_size(64)
fn braid_count_dst(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let torus = gid.y;
    let n = ld(at(torus, C_NT));
    let s = ld(G_CLOCK) % prm.slots;
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        let dst = pool[slot_event(torus, s, j) * 3u];
        atomicAdd(&cells[cell_at(torus, dst, K_COUNT)], 1u);
    }
}

// Exclusive prefix sum of the per-cell counts of one torus: K_START and K_CURSOR.
@compute @workgroup_size(256)
fn braid_scan_cells(@builtin(local_invocation_index) li: u32,
                    @builtin(workgroup_id) wid: vec3<u32>) {
    let torus = wid.y;
    if (holding_wg(li)) {
        return;
    }
    if (li == 0u) {
        wg_flag = ld(at(torus, C_NT));
    }
    let n = workgroupUniformLoad(&wg_flag);
    if (n == 0u) {
        return;
    }
    let range = sum_cell_chunk(torus, li, K_COUNT);
    let c0 = range.x;
    let c1 = range.y;
    var c = c0;
    workgroupBarrier();
    if (li == 0u) {
        var run = 0u;
        for (var k = 0u; k < 256u; k = k + 1u) {
            let v = wg_sums[k];
            wg_sums[k] = run;
            run = run + v;
        }
    }
    workgroupBarrier();
    var run = wg_sums[li];
    var longest = 0u;
    for (c = c0; c < c1; c = c + 1u) {
        atomicStore(&cells[cell_at(torus, c, K_START)], run);
        atomicStore(&cells[cell_at(torus, c, K_CURSOR)], run);
        // Counts go back to zero for the next instant (the run's length is then
        // cursor - start, once the events are scattered).
        let k = atomicExchange(&cells[cell_at(torus, c, K_COUNT)], 0u);
        longest = max(longest, k);
        run = run + k;
    }
    check_loop(c, c1);
    atomicMax(&ctl[G_MAXRUN], longest);
}

@compute @workgroup_size(64)
fn braid_scatter_dst(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let torus = gid.y;
    let n = ld(at(torus, C_NT));
    let s = ld(G_CLOCK) % prm.slots;
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        let e = slot_event(torus, s, j) * 3u;
        let dst = pool[e];
        let pos = atomicAdd(&cells[cell_at(torus, dst, K_CURSOR)], 1u);
        let o = em_at(torus, pos);
        em[o] = dst;
        em[o + 1u] = pool[e + 1u];
        em[o + 2u] = pool[e + 2u];
    }
}

// (src, payload as signed) of event 1 before that of event 2 (the order inside a run).
fn key_less(s1: u32, p1: u32, s2: u32, p2: u32) -> bool {
    return s1 < s2 || (s1 == s2 && biased(p1) < biased(p2));
}

// Word w of the instant's event i, in `em` or in `sorted` (the merge passes go back and
// forth between the two).
fn ev_get(in_em: bool, torus: u32, i: u32, w: u32) -> u32 {
    if (in_em) {
        return em[em_at(torus, i) + w];
    }
    return sorted[(torus * prm.max_pending + i) * 3u + w];
}

fn ev_put(in_em: bool, torus: u32, i: u32, dst: u32, src: u32, pay: u32) {
    if (in_em) {
        let o = em_at(torus, i);
        em[o] = dst;
        em[o + 1u] = src;
        em[o + 2u] = pay;
    } else {
        let o = (torus * prm.max_pending + i) * 3u;
        sorted[o] = dst;
        sorted[o + 1u] = src;
        sorted[o + 2u] = pay;
    }
}

// Orders each destination's run by (src, payload as signed) in tiles of TILE events (from
// the run's start): every event counts the events of its tile that come before it (ties by
// position) and moves from `em` (grouped by dst) to its place in `sorted`. The merge passes
// then merge the tiles of the longer runs.
@compute @workgroup_size(64)
fn braid_order_runs(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let torus = gid.y;
    let n = ld(at(torus, C_NT));
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        let o = em_at(torus, j);
        let dst = em[o];
        let src = em[o + 1u];
        let pay = em[o + 2u];
        let start = atomicLoad(&cells[cell_at(torus, dst, K_START)]);
        let end = atomicLoad(&cells[cell_at(torus, dst, K_CURSOR)]);
        let t0 = start + (j - start) / TILE * TILE;
        let t1 = min(t0 + TILE, end);
        var rank = 0u;
        var k = t0;
        for (; k < t1; k = k + 1u) {
            let q = em_at(torus, k);
            let s2 = em[q + 1u];
            let p2 = em[q + 2u];
            if (key_less(s2, p2, src, pay) || (s2 == src && p2 == pay && k < j)) {
                rank = rank + 1u;
            }
        }
        check_loop(k, t1);
        ev_put(false, torus, t0 + rank, dst, src, pay);
    }
}

// Merge pass G_PASS: within every run, sorted blocks of TILE << G_PASS events (from the
// run's start) merge pairwise into the other buffer (pass 0 reads `sorted`, pass 1 `em`,
// ...). Each event finds its place by a binary search in the other block of its pair
// (left-block events before equal right-block ones), so no invocation loops more than about
// 32 times. A pass does nothing when no run of the instant is longer than its blocks.
@compute @workgroup_size(64)
fn braid_merge_pass(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let merge = ld(G_PASS);
    // Blocks of 2^31 events would overflow (runs are far shorter: max_pending).
    if (merge >= 23u) {
        return;
    }
    let width = TILE << merge;
    if (ld(G_MAXRUN) <= width) {
        return;
    }
    let from_em = (merge & 1u) != 0u;
    let torus = gid.y;
    let n = ld(at(torus, C_NT));
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        let dst = ev_get(from_em, torus, j, 0u);
        let src = ev_get(from_em, torus, j, 1u);
        let pay = ev_get(from_em, torus, j, 2u);
        let start = atomicLoad(&cells[cell_at(torus, dst, K_START)]);
        let end = atomicLoad(&cells[cell_at(torus, dst, K_CURSOR)]);
        var out = j;
        if (end - start > width) {
            let pb = start + (j - start) / (2u * width) * (2u * width);
            let mid = min(pb + width, end);
            let hi = min(mid + width, end);
            let left = j < mid;
            // The other block: [mid, hi) for a left event, [pb, mid) for a right one; pos is
            // the first of its events that goes after this one.
            var lo = mid;
            var up = hi;
            if (!left) {
                lo = pb;
                up = mid;
            }
            var steps = 0u;
            for (; lo < up && steps < 40u; steps = steps + 1u) {
                let m = lo + (up - lo) / 2u;
                let s2 = ev_get(from_em, torus, m, 1u);
                let p2 = ev_get(from_em, torus, m, 2u);
                var before: bool;
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
            // 40 steps cover any block: stopping with lo < up means the adapter cut it.
            if (lo < up) {
                atomicMax(&ctl[G_FAULT], 1u);
            }
            out = j + lo - mid;
        }
        ev_put(!from_em, torus, out, dst, src, pay);
    }
}

// Counts the merge passes encoded (so far) this instant.
@compute @workgroup_size(64)
fn braid_next_pass(@builtin(local_invocation_index) li: u32) {
    if (li == 0u && !holding()) {
        st(G_PASS, ld(G_PASS) + 1u);
    }
}

// After the merge passes: when an odd number of them did something, the ordered instant is
// in `em`; it goes back to `sorted` (emission writes `em`).
@compute @workgroup_size(64)
fn braid_order_done(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let passes = min(ld(G_PASS), 23u);
    let longest = ld(G_MAXRUN);
    var done = 0u;
    for (var p = 0u; p < passes; p = p + 1u) {
        if (longest > (TILE << p)) {
            done = done + 1u;
        }
    }
    if ((done & 1u) == 0u) {
        return;
    }
    let torus = gid.y;
    let n = ld(at(torus, C_NT));
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        let o = em_at(torus, j);
        ev_put(false, torus, j, em[o], em[o + 1u], em[o + 2u]);
    }
}

// Apply round G_ROUND of the instant: every (torus, dst) run applies its chunk G_ROUND (of
// BUDGET / (out-degree + 1) events; the invocation at the chunk's first event) of SPEC
// §3.1's update, in the run's total order. The process state and the out-edge delays carry
// over between rounds in their buffers; each run's block of `em` is reserved in round 0.
@compute @workgroup_size(64)
fn braid_process_instant(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let torus = gid.y;
    let n = ld(at(torus, C_NT));
    let base = torus * prm.max_pending;
    let round = ld(G_ROUND);
    for (var j = gid.x; j < n; j = j + nwg.x * WG) {
        // Every event of a run has the run's dst.
        let dst = sorted[(base + j) * 3u];
        let start = atomicLoad(&cells[cell_at(torus, dst, K_START)]);
        let count = atomicLoad(&cells[cell_at(torus, dst, K_CURSOR)]) - start;
        let row = torus * (prm.cells + 1u) + dst;
        let chunk = max(1u, BUDGET / (edge_start[row + 1u] - edge_start[row] + 1u));
        let rel = j - start;
        if (rel % chunk == 0u && rel / chunk == round) {
            if (round == 0u) {
                atomicMax(&ctl[G_ROUNDS], (count + chunk - 1u) / chunk);
            }
            process_chunk(torus, dst, base + start, count, rel, min(chunk, count - rel));
        }
    }
}

// Events a0 .. a0 + len of the run of `dst` (count events from event r0 of `sorted`).
fn process_chunk(torus: u32, dst: u32, r0: u32, count: u32, a0: u32, len: u32) {
    let a1 = a0 + len;
    // The process update; each event's output replaces its src (no longer needed).
    let pi = (torus * prm.cells + dst) * 4u;
    if (procs[pi + 3u] != 0u) {
        var state = procs[pi];
        var acc = bitcast<i32>(procs[pi + 1u]);
        var a = a0;
        for (; a < a1; a = a + 1u) {
            let p = sorted[(r0 + a) * 3u + 2u];
            state = (state * 31u + p) ^ (state >> 3u);
            acc = acc + bitcast<i32>(p);
            sorted[(r0 + a) * 3u + 1u] = bitcast<u32>(i32(state & 0xFFu) + 1);
        }
        check_loop(a, a1);
        procs[pi] = state;
        procs[pi + 1u] = bitcast<u32>(acc);
        procs[pi + 2u] = procs[pi + 2u] + len;
    } else {
        var a = a0;
        for (; a < a1; a = a + 1u) {
            let p = bitcast<i32>(sorted[(r0 + a) * 3u + 2u]);
            sorted[(r0 + a) * 3u + 1u] = bitcast<u32>(p + 1);
        }
        check_loop(a, a1);
    }
    // Each out-edge in order: its delay adapts event by event; one contiguous block of
    // `em` per run, edge-major (event a of edge e at (e - e0) * count + a).
    let row = torus * (prm.cells + 1u) + dst;
    let e0 = edge_start[row];
    let e1 = edge_start[row + 1u];
    var em0: u32;
    if (a0 == 0u) {
        let total = count * (e1 - e0);
        em0 = atomicAdd(&ctl[at(torus, C_EM)], total);
        atomicStore(&cells[cell_at(torus, dst, K_EM_BASE)], em0);
        atomicStore(&cells[cell_at(torus, dst, K_EM_LEN)], total);
    } else {
        em0 = atomicLoad(&cells[cell_at(torus, dst, K_EM_BASE)]);
    }
    var e = e0;
    for (; e < e1; e = e + 1u) {
        let to = edges[e * 2u];
        var d = edges[e * 2u + 1u];
        var a = a0;
        for (; a < a1; a = a + 1u) {
            let p = bitcast<i32>(sorted[(r0 + a) * 3u + 2u]);
            if (p > 0) {
                d = max(1u, d - 1u);
            } else {
                d = min(prm.max_delay, d + 1u);
            }
            em_put(em_at(torus, em0 + (e - e0) * count + a), d, to, dst,
                   sorted[(r0 + a) * 3u + 1u]);
        }
        check_loop(a, a1);
        edges[e * 2u + 1u] = d;
    }
    check_loop(e, e1);
}

// After an apply round: the next round, holding the rest of the pipeline (G_HOLD) while
// some run has chunks left; else the instant goes on.
@compute @workgroup_size(64)
fn braid_end_round(@builtin(local_invocation_index) li: u32) {
    if (li == 0u) {
        let next = ld(G_ROUND) + 1u;
        if (next < ld(G_ROUNDS)) {
            st(G_ROUND, next);
            st(G_HOLD, 1u);
        } else {
            st(G_ROUND, 0u);
            st(G_ROUNDS, 0u);
            st(G_HOLD, 0u);
        }
    }
}

// Sets the indirect size over `em` to the largest count of any torus.
fn dispatch_em(li: u32, m: u32) {
    if (li < prm.tori) {
        atomicMax(&wg_acc, m);
    }
    workgroupBarrier();
    if (li == 0u) {
        dispatch[3] = groups_for(atomicLoad(&wg_acc));
        dispatch[4] = prm.tori;
        dispatch[5] = 1u;
    }
}

// After processing: counters, and the capacity rule. With more emitted events than room
// (max_pending minus what is still pending), only the smallest in total order are kept.
@compute @workgroup_size(64)
fn braid_plan_merge(@builtin(local_invocation_index) li: u32) {
    if (holding_wg(li)) {
        return;
    }
    var m = 0u;
    if (li < prm.tori) {
        let n = ld(at(li, C_NT));
        m = ld(at(li, C_EM));
        add64(at(li, C_PROC_LO), n);
        if (n > 0u) {
            st(at(li, C_INSTANTS), ld(at(li, C_INSTANTS)) + 1u);
        }
        let budget = prm.max_pending - ld(at(li, C_PENDING)) - ld(at(li, C_FAR));
        if (m > budget) {
            add64(at(li, C_DROP_LO), m - budget);
            st(at(li, C_SELECT), 1u);
            st(at(li, C_LEVEL), 0u);
            st(at(li, C_CUT_PAY), 0u);
            st(at(li, C_CUT_TAKEN), 0u);
            st(at(li, C_NEED), budget);
        } else {
            st(at(li, C_SELECT), 0u);
            st(at(li, C_LEVEL), LEVEL_DONE);
        }
    }
    dispatch_em(li, m);
}

// Host-written injections (in `em`, delay = instant - clock, C_INJ_COUNT of them) go in
// whole; C_INJ_DROPPED corrective events the host found no room for are counted dropped.
@compute @workgroup_size(64)
fn braid_plan_inject(@builtin(local_invocation_index) li: u32) {
    var m = 0u;
    if (li < prm.tori) {
        m = ld(at(li, C_INJ_COUNT));
        st(at(li, C_EM), m);
        st(at(li, C_NT), 0u);
        add64(at(li, C_DROP_LO), ld(at(li, C_INJ_DROPPED)));
        st(at(li, C_INJ_COUNT), 0u);
        st(at(li, C_INJ_DROPPED), 0u);
        st(at(li, C_SELECT), 0u);
        st(at(li, C_LEVEL), LEVEL_DONE);
    }
    dispatch_em(li, m);
}

@compute @workgroup_size(64)
fn braid_count_delays(@builtin(global_invocation_id) gid: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let torus = gid.y;
    let m = ld(at(torus, C_EM));
    for (var i = gid.x; i < m; i = i + nwg.x * WG) {
        let d = em_delay(em_at(torus, i));
        atomicAdd(&ctl[hist(torus, d)], 1u);
    }
}

// Level 1: per destination among the events at the cut delay; level 2: per source among
// those at the cut (delay, dst); levels 3 to 6: per payload byte among those at the cut
// (delay, dst, src) and the bytes of the cut payload found so far.
@compute @workgroup_size(64)
fn braid_count_keys(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let torus = gid.y;
    let level = ld(at(torus, C_LEVEL));
    if (level == 0u || level >= LEVEL_DONE) {
        return;
    }
    let cut_src = ld(at(torus, C_CUT_SRC));
    let cut_pay = ld(at(torus, C_CUT_PAY));
    let m = ld(at(torus, C_EM));
    let cut_d = ld(at(torus, C_CUT_D));
    let cut_dst = ld(at(torus, C_CUT_DST));
    for (var i = gid.x; i < m; i = i + nwg.x * WG) {
        let w = em_at(torus, i);
        if (em_delay(w) != cut_d) {
            continue;
        }
        if (level == 1u) {
            atomicAdd(&cells[cell_at(torus, em[w] & LOW24, K_BIN)], 1u);
        } else if ((em[w] & LOW24) != cut_dst) {
            continue;
        } else if (level == 2u) {
            atomicAdd(&cells[cell_at(torus, em[w + 1u] & LOW24, K_BIN)], 1u);
        } else if ((em[w + 1u] & LOW24) == cut_src) {
            let p = biased(em[w + 2u]);
            if (pay_prefix_ok(level, p, cut_pay)) {
                atomicAdd(&ctl[pay_bin(torus, (p >> pay_shift(level)) & 0xFFu)], 1u);
            }
        }
    }
}

// One workgroup per torus: finds the key at this level below which `need` events lie, and
// subtracts what lies below it from `need`. Level 0 is over delays (one thread); levels 1
// and 2 are over cells: each thread sums a chunk of the bins, thread 0 finds the chunk where
// the count passes `need`, that chunk's thread finds the cell, and every thread clears its
// chunk.
@compute @workgroup_size(256)
fn braid_cut(@builtin(local_invocation_index) li: u32,
             @builtin(workgroup_id) wid: vec3<u32>) {
    let torus = wid.y;
    if (holding_wg(li)) {
        return;
    }
    if (li == 0u) {
        wg_flag = ld(at(torus, C_LEVEL));
    }
    let level = workgroupUniformLoad(&wg_flag);
    if (level == LEVEL_DONE) {
        return;
    }
    let need = ld(at(torus, C_NEED));
    if (level == 0u) {
        if (li == 0u) {
            var cum = 0u;
            for (var d = 0u; d < prm.slots; d = d + 1u) {
                let h = ld(hist(torus, d));
                if (cum + h > need) {
                    st(at(torus, C_CUT_D), d);
                    st(at(torus, C_KEEP_D), need - cum);
                    break;
                }
                cum = cum + h;
            }
            st(at(torus, C_NEED), need - cum);
            st(at(torus, C_LEVEL), 1u);
        }
        return;
    }
    if (level >= 3u) {
        // 256 bins of one payload byte: thread 0 finds the byte, then each thread clears
        // one bin.
        if (li == 0u) {
            var cum = 0u;
            var pick = 255u;
            for (var b = 0u; b < 256u; b = b + 1u) {
                let h = ld(pay_bin(torus, b));
                if (cum + h > need) {
                    pick = b;
                    break;
                }
                cum = cum + h;
            }
            st(at(torus, C_CUT_PAY), ld(at(torus, C_CUT_PAY)) | (pick << pay_shift(level)));
            st(at(torus, C_NEED), need - cum);
            st(at(torus, C_LEVEL), level + 1u);
        }
        workgroupBarrier();
        st(pay_bin(torus, li), 0u);
        return;
    }
    let range = sum_cell_chunk(torus, li, K_BIN);
    let c0 = range.x;
    let c1 = range.y;
    var c = c0;
    workgroupBarrier();
    if (li == 0u) {
        var cum = 0u;
        var pick = 255u;
        for (var k = 0u; k < 256u; k = k + 1u) {
            if (cum + wg_sums[k] > need) {
                pick = k;
                break;
            }
            cum = cum + wg_sums[k];
        }
        wg_pick = vec2<u32>(pick, cum);
    }
    workgroupBarrier();
    if (li == wg_pick.x) {
        var cum = wg_pick.y;
        var found = NONE;
        for (c = c0; c < c1; c = c + 1u) {
            let b = atomicLoad(&cells[cell_at(torus, c, K_BIN)]);
            if (cum + b > need) {
                found = c;
                break;
            }
            cum = cum + b;
        }
        if (level == 1u) {
            st(at(torus, C_CUT_DST), found);
        } else {
            st(at(torus, C_CUT_SRC), found);
        }
        st(at(torus, C_NEED), need - cum);
        st(at(torus, C_LEVEL), level + 1u);
    }
    workgroupBarrier();
    for (c = c0; c < c1; c = c + 1u) {
        atomicStore(&cells[cell_at(torus, c, K_BIN)], 0u);
    }
    check_loop(c, c1);
}

// One thread per torus: frees the processed slot's pages, then gives each slot that grows
// the pages its kept events need, and clears the delay histogram.
@compute @workgroup_size(64)
fn braid_alloc(@builtin(local_invocation_index) li: u32) {
    if (li >= prm.tori || holding()) {
        return;
    }
    let torus = li;
    let clock = ld(G_CLOCK);
    let page = 1u << prm.page_shift;
    let table = torus * prm.pages_stride;
    let stack = table + prm.slots * prm.pages_per_slot;
    var top = ld(at(torus, C_FREE));
    let n = ld(at(torus, C_NT));
    if (n > 0u) {
        let s = clock % prm.slots;
        let used = (n + page - 1u) >> prm.page_shift;
        for (var q = 0u; q < used; q = q + 1u) {
            pages[stack + top] = pages[table + s * prm.pages_per_slot + q];
            top = top + 1u;
        }
        st(slot_count(torus, s), 0u);
        st(at(torus, C_NT), 0u);
    }
    let selecting = ld(at(torus, C_SELECT)) != 0u;
    let cut_d = ld(at(torus, C_CUT_D));
    let keep_d = ld(at(torus, C_KEEP_D));
    var total = 0u;
    for (var d = 0u; d < prm.slots; d = d + 1u) {
        let h = ld(hist(torus, d));
        st(hist(torus, d), 0u);
        var add = h;
        if (selecting && d == cut_d) {
            add = keep_d;
        } else if (selecting && d > cut_d) {
            add = 0u;
        }
        if (add == 0u) {
            continue;
        }
        let s = (clock + d) % prm.slots;
        let old = ld(slot_count(torus, s));
        let first_page = (old + page - 1u) >> prm.page_shift;
        let last_page = (old + add + page - 1u) >> prm.page_shift;
        for (var q = first_page; q < last_page; q = q + 1u) {
            top = top - 1u;
            pages[table + s * prm.pages_per_slot + q] = pages[stack + top];
        }
        total = total + add;
    }
    st(at(torus, C_FREE), top);
    st(at(torus, C_PENDING), ld(at(torus, C_PENDING)) + total);
}

@compute @workgroup_size(64)
fn braid_merge(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    if (holding()) {
        return;
    }
    let torus = gid.y;
    let m = ld(at(torus, C_EM));
    let clock = ld(G_CLOCK);
    let selecting = ld(at(torus, C_SELECT)) != 0u;
    let cut_d = ld(at(torus, C_CUT_D));
    let cut_dst = ld(at(torus, C_CUT_DST));
    let cut_src = ld(at(torus, C_CUT_SRC));
    let need = ld(at(torus, C_NEED));
    let cut_pay = ld(at(torus, C_CUT_PAY));
    for (var i = gid.x; i < m; i = i + nwg.x * WG) {
        let w = em_at(torus, i);
        let d = em_delay(w);
        let to = em[w] & LOW24;
        let src = em[w + 1u] & LOW24;
        let pay = em[w + 2u];
        var keep = true;
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
                keep = atomicAdd(&ctl[at(torus, C_CUT_TAKEN)], 1u) < need;
            }
        }
        if (keep) {
            let s = (clock + d) % prm.slots;
            let pos = atomicAdd(&ctl[slot_count(torus, s)], 1u);
            let e = slot_event(torus, s, pos) * 3u;
            pool[e] = to;
            pool[e + 1u] = src;
            pool[e + 2u] = pay;
        }
    }
}

// The next instant: the earliest pending instant of any torus after the clock, or `end`
// (and done) when there is none below it.
@compute @workgroup_size(64)
fn braid_advance(@builtin(local_invocation_index) li: u32) {
    if (holding_wg(li)) {
        return;
    }
    if (li == 0u) {
        atomicStore(&wg_acc, NONE);
    }
    workgroupBarrier();
    let clock = ld(G_CLOCK);
    let done = ld(G_DONE) != 0u;
    if (li < prm.tori && !done) {
        for (var d = 1u; d < prm.slots; d = d + 1u) {
            if (ld(slot_count(li, (clock + d) % prm.slots)) != 0u) {
                atomicMin(&wg_acc, clock + d);
                break;
            }
        }
    }
    workgroupBarrier();
    if (li == 0u && !done) {
        let next = atomicLoad(&wg_acc);
        if (next >= prm.end) {
            st(G_CLOCK, prm.end);
            st(G_DONE, 1u);
        } else {
            st(G_CLOCK, next);
        }
    }
}

// Exchange inputs: wrapping acc sum, face at x = 0 (0 where no process) and face at
// x = X-1, per torus. `proj` must be zero before.
@compute @workgroup_size(64)
fn braid_project(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let torus = gid.y;
    let face = prm.dy * prm.dz;
    let o = torus * prm.proj_stride;
    for (var c = gid.x; c < prm.cells; c = c + nwg.x * WG) {
        let pi = (torus * prm.cells + c) * 4u;
        var acc = 0u;
        if (procs[pi + 3u] != 0u) {
            acc = procs[pi + 1u];
        }
        atomicAdd(&proj[o], acc);
        if (c < face) {
            atomicStore(&proj[o + 1u + c], acc);
        }
        if (c >= (prm.dx - 1u) * face) {
            atomicStore(&proj[o + 1u + face + c - (prm.dx - 1u) * face], acc);
        }
    }
}
