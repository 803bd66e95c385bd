// Shard tables on the device (SPEC §1.1, §1.2): one batch of PUT / GET / DELETE with the
// sequential-equivalence contract. CPU sibling: engine/src/backend/cpu/kv.rs (`kv_apply`) and
// shard.rs; host side: engine/src/backend/gpu_table/ (the order, shared with CUDA) and
// engine/src/backend/wgpu/table/; design: docs/wgpu.md, "Tables on the device".
//
// Only 32-bit integers: a key is two words (lo, hi). Order of one batch:
//   kv_route                 op i -> sort record (shard, key hi, key lo, i); ops per shard
//   kv_sort, kv_sort_local   bitonic sort of the records, ascending: kv_sort is one global pass
//                            (k, j); kv_sort_local does every j < 512 of a stage (or stages
//                            2..512 when k = 0) in workgroup memory, 512 records per group
//   kv_walk_chunks/_carry/kv_walk
//                            each key run in batch order, cut into chunks of CHUNK records:
//                            the state entering a chunk that continues a run comes from a scan
//                            of per-chunk effects; one invocation per run segment probes the
//                            shard (or takes the carried state), applies its ops in order
//                            (results, per-op item delta) and, at the run's end, records the
//                            key's final state
//   kv_peak_blocks/_scan/kv_peak
//                            per shard, the peak of the running item count in batch order
//   kv_commit                deletes (tombstones) and value updates of keys already stored
//   kv_rehash                a grown or purged shard: every stored key into its new region
//   kv_insert                keys the batch created, into their shard's (new) region
//
// Slots: `slots[3g] = tag` (EMPTY 0, TOMB 1, FULL 2), `slots[3g+1] = lo`, `slots[3g+2] = hi`,
// value words at `values[g * w ..]`; shard s owns slots base..base+mask of its arena.
// Linear probing from key_hash(k, SLOT_SEED) & mask; every shard keeps an EMPTY slot.

const ROUTE_SEED: u32 = 0x9E3779B9u;
const SLOT_SEED: u32 = 0x7F4A7C15u;
const EMPTY: u32 = 0u;
const TOMB: u32 = 1u;
const FULL: u32 = 2u;
const NONE: u32 = 0xFFFFFFFFu;

const OP_PUT: u32 = 0u;
const OP_GET: u32 = 1u;
const OP_DELETE: u32 = 2u;
// A link, unlink or related query's slot in the key walk: it counts in its key's shard and
// reads nothing (a related query's own value is a separate OP_GET).
const OP_NOP: u32 = 3u;
// Flag of an op counted in its shard's `ops` statistic (a related query's probes are not).
const COUNTED: u32 = 0x100u;

// Status codes: table::Status.
const ST_OK: u32 = 0u;
const ST_VALUE: u32 = 1u;
const ST_MISSING: u32 = 2u;
const ST_DELETED: u32 = 3u;
const ST_ABSENT: u32 = 4u;

const WORKGROUP: u32 = 256u;
// Records per walk chunk: no invocation walks more than this many operations. (Mesa's
// llvmpipe, behind lavapipe, ends a shader's loops after 65535 iterations in total, so a
// loop's length must not grow with the batch: a hot key's run is walked chunk by chunk.)
const CHUNK: u32 = 256u;
// Operations per block of the peak scan, and most shards (a workgroup array).
const BLOCK: u32 = 256u;
const MAX_SHARDS: u32 = 1024u;

// Mirrored field for field by `Params` in table/mod.rs.
struct Params {
    n: u32,            // device operations in the batch
    n_pow2: u32,       // sort records (n rounded up to a power of two)
    nshards: u32,
    w: u32,            // value words
    arena: u32,        // the arena this dispatch works on
    arena2: u32,       // kv_rehash: the new arena
    k: u32,            // kv_sort: bitonic stage
    j: u32,            // kv_sort: bitonic distance
    value_base: u32,   // put values start at batch[value_base]
    blocks: u32,       // peak blocks
    delta_base: u32,   // per-op deltas start at work[delta_base]
    matrix_base: u32,  // block x shard sums start at work[matrix_base]
    count: u32,        // kv_rehash: slots in the old arena
    chunk_base: u32,   // per walk chunk 4 words (kv_walk_chunks), then 3 (kv_walk_carry)
    chunks: u32,       // walk chunks
    st_base: u32,      // per record 3 words at work[st_base]: state after it, slot, last delete
    // Links (the link_* and rel_* kernels; see "Links" below).
    link_base: u32,    // link and unlink ops at batch[link_base], 4 words each
    ev_n: u32,         // half events (2 per link or unlink)
    ev_pow2: u32,      // events sorted (ev_n rounded up to a power of two)
    halves_n: u32,     // link halves stored before the batch
    rel_base: u32,     // related queries at batch[rel_base], 4 words each
    rel_n: u32,        // related queries
    pairs_n: u32,      // (query, candidate) pairs
    pairs_pow2: u32,   // pairs sorted
    sort_pow2: u32,    // link_sort: records of the buffer being sorted
    scan_src: u32,     // link_scan_*: lflat[scan_src..+scan_n] scanned into lflat[scan_dst..]
    scan_dst: u32,
    scan_n: u32,
    scan_tmp: u32,     // per block sums
    scan_sum: u32,     // 1: sum the values, 0: count the nonzero ones
    keep_old: u32,     // lflat regions: per old half its final strength (0: dropped)
    keep_ev: u32,      // per event its final strength (0: not kept)
    scan_old: u32,     // exclusive prefix counts of keep_old (halves_n + 1 words)
    scan_ev: u32,      // of keep_ev (ev_n + 1 words)
    rel_cnt: u32,      // per related query its candidates
    rel_off: u32,      // their exclusive prefix sums (rel_n + 1 words)
    rel_lbo: u32,      // per query its first old half
    rel_lbe: u32,      // per query its first half event
    rel_a: u32,        // per query its old halves
    rel_span: u32,     // per query (first pair, hits) in the sorted pairs
    sort_base: u32,    // link_sort: first vec4 of the records sorted
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
    _pad6: u32,
    _pad7: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Per shard s: info[2s] = (arena, base, mask, rebuild) before the batch, info[2s+1] = after.
@group(0) @binding(1) var<storage, read> info: array<vec4<u32>>;
// Per op 4 words (code | COUNTED, key lo, key hi, put value index), then put values.
@group(0) @binding(2) var<storage, read> batch: array<u32>;
@group(0) @binding(3) var<storage, read_write> records: array<vec4<u32>>;
// Per record 2 words, written at the last record of a key's run (old slot + 1 or 0; final:
// 0 absent, 1 old value, 2 + put index), then per-op deltas (i32), then the block x shard
// matrix, then the walk chunks' effects and carried states.
@group(0) @binding(4) var<storage, read_write> work: array<u32>;
// Per shard: ops, inserts, removes, peak delta.
@group(0) @binding(5) var<storage, read_write> counters: array<atomic<i32>>;
// Status per op, then value words per op.
@group(0) @binding(6) var<storage, read_write> results: array<u32>;
@group(0) @binding(7) var<storage, read> old_slots: array<u32>;
@group(0) @binding(8) var<storage, read> old_values: array<u32>;
@group(0) @binding(9) var<storage, read_write> slots: array<atomic<u32>>;
@group(0) @binding(10) var<storage, read_write> values: array<u32>;

var<workgroup> run: array<i32, MAX_SHARDS>;
// Records kv_sort_local sorts in workgroup memory (2 per invocation).
const TILE: u32 = 512u;
var<workgroup> tile: array<vec4<u32>, TILE>;

// MurmurHash3's 32-bit finaliser (route.rs `fmix32`).
fn fmix32(x: u32) -> u32 {
    var h = x;
    h = h ^ (h >> 16u);
    h = h * 0x85ebca6bu;
    h = h ^ (h >> 13u);
    h = h * 0xc2b2ae35u;
    h = h ^ (h >> 16u);
    return h;
}

fn key_hash(lo: u32, hi: u32, seed: u32) -> u32 {
    return fmix32(lo ^ fmix32(hi ^ seed));
}

fn shard_of(lo: u32, hi: u32) -> u32 {
    return key_hash(lo, hi, ROUTE_SEED) % p.nshards;
}

fn flat(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * WORKGROUP;
}

fn less(a: vec4<u32>, b: vec4<u32>) -> bool {
    if (a.x != b.x) { return a.x < b.x; }
    if (a.y != b.y) { return a.y < b.y; }
    if (a.z != b.z) { return a.z < b.z; }
    return a.w < b.w;
}

fn same_key(a: u32, b: u32) -> bool {
    let x = records[a];
    let y = records[b];
    return x.y == y.y && x.z == y.z;
}

// Whether record r starts a key's run.
fn is_head(r: u32) -> bool {
    return r == 0u || !same_key(r, r - 1u);
}

// Whether record r ends a key's run.
fn is_tail(r: u32) -> bool {
    return r + 1u >= p.n || !same_key(r, r + 1u);
}

// The slot of key (lo, hi) in shard s before the batch, or NONE.
fn probe(s: u32, lo: u32, hi: u32) -> u32 {
    let before = info[2u * s];
    var i = key_hash(lo, hi, SLOT_SEED) & before.z;
    loop {
        let g = before.y + i;
        let t = old_slots[3u * g];
        if (t == EMPTY) { return NONE; }
        if (t == FULL && old_slots[3u * g + 1u] == lo && old_slots[3u * g + 2u] == hi) {
            return g;
        }
        i = (i + 1u) & before.z;
    }
    return NONE;
}

// What operation `pos` does to its key's state: NONE (a read), or the state it sets
// (0 absent, 2 + put index).
fn effect_of(pos: u32) -> u32 {
    let code = batch[4u * pos] & 0xFFu;
    if (code == OP_PUT) { return 2u + batch[4u * pos + 3u]; }
    if (code == OP_DELETE) { return 0u; }
    return NONE;
}

// Claims a free slot for a key absent from the region (base, mask), stores the key there and
// returns the slot (the caller writes the value).
fn claim_slot(lo: u32, hi: u32, base: u32, mask: u32) -> u32 {
    var i = key_hash(lo, hi, SLOT_SEED) & mask;
    var claimed = NONE;
    loop {
        let g = base + i;
        var t = atomicLoad(&slots[3u * g]);
        while (t != FULL) {
            let r = atomicCompareExchangeWeak(&slots[3u * g], t, FULL);
            if (r.exchanged) {
                claimed = g;
                break;
            }
            t = r.old_value;
        }
        if (claimed != NONE) { break; }
        i = (i + 1u) & mask;
    }
    atomicStore(&slots[3u * claimed + 1u], lo);
    atomicStore(&slots[3u * claimed + 2u], hi);
    return claimed;
}

@compute @workgroup_size(256)
fn kv_route(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= p.n_pow2) { return; }
    if (i >= p.n) {
        records[i] = vec4<u32>(NONE, NONE, NONE, NONE);
        return;
    }
    let code = batch[4u * i];
    let lo = batch[4u * i + 1u];
    let hi = batch[4u * i + 2u];
    let s = shard_of(lo, hi);
    records[i] = vec4<u32>(s, hi, lo, i);
    if ((code & COUNTED) != 0u) {
        atomicAdd(&counters[4u * s], 1);
    }
}

@compute @workgroup_size(256)
fn kv_sort(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= p.n_pow2 / 2u) { return; }
    let lo = 2u * p.j * (i / p.j) + (i % p.j);
    let hi = lo + p.j;
    let a = records[lo];
    let b = records[hi];
    let ascending = (lo & p.k) == 0u;
    if (ascending == less(b, a)) {
        records[lo] = b;
        records[hi] = a;
    }
}

// Stage k of the bitonic sort for every distance j < TILE, or (k = 0) stages 2..TILE, on the
// TILE records of one workgroup. n_pow2 is at least TILE.
@compute @workgroup_size(256)
fn kv_sort_local(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let base = (wid.x + wid.y * groups.x) * TILE;
    if (base >= p.n_pow2) { return; }
    tile[lid] = records[base + lid];
    tile[lid + 256u] = records[base + lid + 256u];
    workgroupBarrier();
    var k = select(p.k, 2u, p.k == 0u);
    let last = select(p.k, TILE, p.k == 0u);
    while (k <= last) {
        var j = min(k / 2u, TILE / 2u);
        while (j > 0u) {
            let lo = 2u * j * (lid / j) + (lid % j);
            let hi = lo + j;
            let a = tile[lo];
            let b = tile[hi];
            let ascending = ((base + lo) & k) == 0u;
            if (ascending == less(b, a)) {
                tile[lo] = b;
                tile[hi] = a;
            }
            workgroupBarrier();
            j = j / 2u;
        }
        k = k * 2u;
    }
    records[base + lid] = tile[lid];
    records[base + lid + 256u] = tile[lid + 256u];
}

// Per chunk c: for the key of its last record, (1, state, slot, last delete) when that key's
// run starts in the chunk (its state after the chunk, from the probe), else (0, effect, 0,
// last delete) (the chunk is all one key continuing a run: what the chunk does to it, NONE for
// nothing). The last delete is the batch position of the chunk's last delete of the key, or
// NONE.
@compute @workgroup_size(256)
fn kv_walk_chunks(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) groups: vec3<u32>) {
    let c = flat(gid, groups);
    if (c >= p.chunks) { return; }
    let start = c * CHUNK;
    let end = min(p.n, start + CHUNK);
    let last = records[end - 1u];
    if (info[2u * last.x].x != p.arena) { return; }
    var t = end - 1u;
    while (t > start && same_key(t - 1u, end - 1u)) { t = t - 1u; }
    var effect = NONE;
    var deleted = NONE;
    for (var q = t; q < end; q = q + 1u) {
        let pos = records[q].w;
        let e = effect_of(pos);
        if (e != NONE) { effect = e; }
        if (e == 0u) { deleted = pos; }
    }
    let at = p.chunk_base + 4u * c;
    work[at + 3u] = deleted;
    if (is_head(t)) {
        let slot = probe(last.x, last.z, last.y);
        var state = select(1u, 0u, slot == NONE);
        if (effect != NONE) { state = effect; }
        work[at] = 1u;
        work[at + 1u] = state;
        work[at + 2u] = slot;
    } else {
        work[at] = 0u;
        work[at + 1u] = effect;
        work[at + 2u] = 0u;
    }
}

// One invocation: the state (state, slot, last delete) entering every chunk whose first record
// continues a run, in chunk order.
@compute @workgroup_size(1)
fn kv_walk_carry() {
    let carry = p.chunk_base + 4u * p.chunks;
    for (var c = 1u; c < p.chunks; c = c + 1u) {
        if (is_head(c * CHUNK)) { continue; }
        let prev = p.chunk_base + 4u * (c - 1u);
        let into = carry + 3u * c;
        let deleted = work[prev + 3u];
        if (work[prev] == 1u) {
            work[into] = work[prev + 1u];
            work[into + 1u] = work[prev + 2u];
            work[into + 2u] = deleted;
        } else {
            let was = carry + 3u * (c - 1u);
            let effect = work[prev + 1u];
            work[into] = select(effect, work[was], effect == NONE);
            work[into + 1u] = work[was + 1u];
            work[into + 2u] = select(deleted, work[was + 2u], deleted == NONE);
        }
    }
}

// One invocation per run segment (a run's head, or the first record of a chunk continuing a
// run): applies the segment's operations in batch order.
@compute @workgroup_size(256)
fn kv_walk(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) groups: vec3<u32>) {
    let r = flat(gid, groups);
    if (r >= p.n) { return; }
    let first = records[r];
    let s = first.x;
    if (info[2u * s].x != p.arena) { return; }
    let head = is_head(r);
    if (!head && r % CHUNK != 0u) { return; }
    let lo = first.z;
    let hi = first.y;
    // state: 0 absent, 1 the stored value (at `slot`), 2 + a put's value.
    var slot = NONE;
    var state = 0u;
    var deleted = NONE;
    if (head) {
        slot = probe(s, lo, hi);
        state = select(1u, 0u, slot == NONE);
    } else {
        let carry = p.chunk_base + 4u * p.chunks + 3u * (r / CHUNK);
        state = work[carry];
        slot = work[carry + 1u];
        deleted = work[carry + 2u];
    }
    let w = p.w;
    let end = min(p.n, (r / CHUNK + 1u) * CHUNK);
    var q = r;
    for (; q < end; q = q + 1u) {
        let rec = records[q];
        if (rec.y != hi || rec.z != lo) { break; }
        let pos = rec.w;
        let code = batch[4u * pos] & 0xFFu;
        var delta = 0i;
        if (code == OP_PUT) {
            if (state == 0u) { delta = 1i; }
            state = 2u + batch[4u * pos + 3u];
            results[pos] = ST_OK;
        } else if (code == OP_GET) {
            if (state == 0u) {
                results[pos] = ST_MISSING;
            } else {
                results[pos] = ST_VALUE;
                let out = p.n + pos * w;
                if (state == 1u) {
                    for (var k = 0u; k < w; k = k + 1u) {
                        results[out + k] = old_values[slot * w + k];
                    }
                } else {
                    let at = p.value_base + (state - 2u) * w;
                    for (var k = 0u; k < w; k = k + 1u) {
                        results[out + k] = batch[at + k];
                    }
                }
            }
        } else if (code == OP_DELETE) {
            if (state == 0u) {
                results[pos] = ST_ABSENT;
            } else {
                results[pos] = ST_DELETED;
                delta = -1i;
            }
            state = 0u;
            deleted = pos;
        } else {
            results[pos] = ST_OK;
        }
        work[p.delta_base + pos] = bitcast<u32>(delta);
        // What the link kernels look up: the key's state after this op, and its last delete.
        let st = p.st_base + 3u * q;
        work[st] = state;
        work[st + 1u] = slot;
        work[st + 2u] = deleted;
    }
    let tail = q - 1u;
    if (!is_tail(tail)) { return; }
    work[2u * tail] = select(slot + 1u, 0u, slot == NONE);
    work[2u * tail + 1u] = state;
    if (slot == NONE && state != 0u) {
        atomicAdd(&counters[4u * s + 1u], 1);
    }
    if (slot != NONE && state == 0u) {
        atomicAdd(&counters[4u * s + 2u], 1);
    }
}

// Block b's sum of deltas per shard, in batch order: work[matrix_base + b * nshards + s].
@compute @workgroup_size(64)
fn kv_peak_blocks(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let b = wid.x + wid.y * groups.x;
    if (b >= p.blocks) { return; }
    for (var s = lid; s < p.nshards; s = s + 64u) { run[s] = 0i; }
    workgroupBarrier();
    if (lid == 0u) {
        let end = min(p.n, (b + 1u) * BLOCK);
        for (var i = b * BLOCK; i < end; i = i + 1u) {
            let d = bitcast<i32>(work[p.delta_base + i]);
            if (d != 0i) {
                let s = shard_of(batch[4u * i + 1u], batch[4u * i + 2u]);
                run[s] = run[s] + d;
            }
        }
    }
    workgroupBarrier();
    for (var s = lid; s < p.nshards; s = s + 64u) {
        work[p.matrix_base + b * p.nshards + s] = bitcast<u32>(run[s]);
    }
}

// Per shard: the matrix column becomes its exclusive prefix sum (the running delta before
// each block).
@compute @workgroup_size(256)
fn kv_peak_scan(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= p.nshards) { return; }
    var acc = 0i;
    for (var b = 0u; b < p.blocks; b = b + 1u) {
        let at = p.matrix_base + b * p.nshards + s;
        let v = bitcast<i32>(work[at]);
        work[at] = bitcast<u32>(acc);
        acc = acc + v;
    }
}

// Per shard the largest running delta after any of its operations (counters[4s + 3]).
@compute @workgroup_size(64)
fn kv_peak(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let b = wid.x + wid.y * groups.x;
    if (b >= p.blocks) { return; }
    for (var s = lid; s < p.nshards; s = s + 64u) { run[s] = 0i; }
    workgroupBarrier();
    if (lid == 0u) {
        let end = min(p.n, (b + 1u) * BLOCK);
        for (var i = b * BLOCK; i < end; i = i + 1u) {
            let d = bitcast<i32>(work[p.delta_base + i]);
            if (d != 0i) {
                let s = shard_of(batch[4u * i + 1u], batch[4u * i + 2u]);
                run[s] = run[s] + d;
                if (d > 0i) {
                    let base = bitcast<i32>(work[p.matrix_base + b * p.nshards + s]);
                    atomicMax(&counters[4u * s + 3u], base + run[s]);
                }
            }
        }
    }
}

// Keys stored before the batch: a delete leaves a tombstone, a put writes its value in place.
@compute @workgroup_size(256)
fn kv_commit(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let r = flat(gid, groups);
    if (r >= p.n) { return; }
    let s = records[r].x;
    if (info[2u * s].x != p.arena || !is_tail(r)) { return; }
    let old = work[2u * r];
    if (old == 0u) { return; }
    let g = old - 1u;
    let fin = work[2u * r + 1u];
    if (fin == 0u) {
        atomicStore(&slots[3u * g], TOMB);
    } else if (fin >= 2u) {
        let at = p.value_base + (fin - 2u) * p.w;
        for (var k = 0u; k < p.w; k = k + 1u) {
            values[g * p.w + k] = batch[at + k];
        }
    }
}

// Every stored key of a shard marked for rebuild, from old arena `arena` into its region of
// new arena `arena2`.
@compute @workgroup_size(256)
fn kv_rehash(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let g = flat(gid, groups);
    if (g >= p.count) { return; }
    if (old_slots[3u * g] != FULL) { return; }
    let lo = old_slots[3u * g + 1u];
    let hi = old_slots[3u * g + 2u];
    let s = shard_of(lo, hi);
    let after = info[2u * s + 1u];
    if (info[2u * s].w == 0u || after.x != p.arena2) { return; }
    let to = claim_slot(lo, hi, after.y, after.z);
    for (var k = 0u; k < p.w; k = k + 1u) {
        values[to * p.w + k] = old_values[g * p.w + k];
    }
}

// Keys the batch created (absent before, present after), into their shard's final region.
@compute @workgroup_size(256)
fn kv_insert(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let r = flat(gid, groups);
    if (r >= p.n) { return; }
    let rec = records[r];
    let after = info[2u * rec.x + 1u];
    if (after.x != p.arena || !is_tail(r)) { return; }
    let fin = work[2u * r + 1u];
    if (work[2u * r] != 0u || fin < 2u) { return; }
    let to = claim_slot(rec.z, rec.y, after.y, after.z);
    let at = p.value_base + (fin - 2u) * p.w;
    for (var k = 0u; k < p.w; k = k + 1u) {
        values[to * p.w + k] = batch[at + k];
    }
}

// ---------------------------------------------------------------------------------------
// Links (SPEC §1.2). CPU sibling: the link halves of engine/src/backend/cpu/shard.rs and the
// related queries of kv.rs; host side: engine/src/backend/gpu_table/links.rs.
//
// A link half is two vec4 (a, b) = ((shard of owner, owner hi, owner lo, partner hi),
// (partner lo, strength bits, 0, 0)); the table's halves are one array sorted by (a, b), i.e.
// by (owner's shard, owner, partner). A half event (one per half of a link or unlink) has the
// same a and b = (partner lo, batch position, strength bits or 0 for an unlink, 0), so events
// sorted by (a, b) are grouped per half in batch order, next to where the half sorts. A second
// copy of the events, sorted by owner and time, (shard of owner, owner hi, owner lo, batch
// position), (partner hi, partner lo, strength bits or 0, 0), follows at lwork[2 * ev_pow2]:
// a related query's candidates among the events are the ones of its key between its key's
// last delete and the query, a contiguous run there.
//
// The state of the pair {o, p} at batch position t is decided by the latest of: its last
// event before t (a link sets the strength, an unlink removes it), the last delete of o and
// of p before t (a delete removes every link of its key); with none of them, it is the state
// before the batch. The key walk records per sort record the key's state after it and its
// last delete (work[st_base]), so both are one binary search away.
//
//   link_route               link and unlink ops -> half events; link_sort sorts them (and,
//                            bound to the pairs buffer, the related pairs)
//   rel_count                per related query, its candidates: old halves and events it owns
//   link_scan_blocks/_carry/_apply
//                            exclusive prefix sums over lflat (counts per block, a scan over
//                            the blocks in one invocation, per block the prefix)
//   rel_pairs                per (query, candidate): whether it is the pair's state at the
//                            query, linked, strong enough, both keys' deletes before; the
//                            partner's state at the query from the walk (a put's value copied)
//   rel_exist                per table arena, partners whose value is stored: probe, copy
//   rel_span                 per query, its run in the sorted pairs and its hits (<= max)
//   link_keep_old/_events    the batch's final state of every old half and of every half the
//                            batch's events touch
//   link_write_old/_events   the kept halves, merged in order into the new halves array
//                            (prefix counts of both sides), and the halves per shard

// Link state before the batch (read) and after it (written by the merge).
@group(0) @binding(11) var<storage, read> halves: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read_write> new_halves: array<vec4<u32>>;
// The half events of the batch, by pair then by time (link_sort sorts whatever is bound here).
@group(0) @binding(13) var<storage, read_write> lwork: array<vec4<u32>>;
// Flags, prefix counts and per-query words of the link kernels (regions in Params).
@group(0) @binding(14) var<storage, read_write> lflat: array<u32>;
// Per (query, candidate) pair: a = (query position, !strength, partner hi, partner lo) or
// all NONE when it is no hit; b = (pair index, 0 / 1: value at slot b.z / 2: probe, b.z, 0).
@group(0) @binding(16) var<storage, read_write> pairs: array<vec4<u32>>;
// Per pair its partner's value words.
@group(0) @binding(17) var<storage, read_write> pvals: array<u32>;

const NONE4: vec4<u32> = vec4<u32>(0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu);
// Elements per block of the link scans.
const SCAN_BLOCK: u32 = 256u;

fn less8(x0: vec4<u32>, x1: vec4<u32>, y0: vec4<u32>, y1: vec4<u32>) -> bool {
    if (any(x0 != y0)) { return less(x0, y0); }
    return less(x1, y1);
}

// First event >= (x0, x1), in 0..ev_n (at most 32 steps).
fn ev_lower(x0: vec4<u32>, x1: vec4<u32>) -> u32 {
    var lo = 0u;
    var hi = p.ev_n;
    while (lo < hi) {
        let mid = lo + (hi - lo) / 2u;
        if (less8(lwork[2u * mid], lwork[2u * mid + 1u], x0, x1)) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

// First event of the by-time copy >= (x0, x1), in 0..ev_n.
fn tev_lower(x0: vec4<u32>, x1: vec4<u32>) -> u32 {
    let base = 2u * p.ev_pow2;
    var lo = 0u;
    var hi = p.ev_n;
    while (lo < hi) {
        let mid = lo + (hi - lo) / 2u;
        if (less8(lwork[base + 2u * mid], lwork[base + 2u * mid + 1u], x0, x1)) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

// First old half >= (x0, x1), in 0..halves_n.
fn half_lower(x0: vec4<u32>, x1: vec4<u32>) -> u32 {
    var lo = 0u;
    var hi = p.halves_n;
    while (lo < hi) {
        let mid = lo + (hi - lo) / 2u;
        if (less8(halves[2u * mid], halves[2u * mid + 1u], x0, x1)) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

// First pair >= (x0, x1), in 0..pairs_pow2.
fn pair_lower(x0: vec4<u32>, x1: vec4<u32>) -> u32 {
    var lo = 0u;
    var hi = p.pairs_pow2;
    while (lo < hi) {
        let mid = lo + (hi - lo) / 2u;
        if (less8(pairs[2u * mid], pairs[2u * mid + 1u], x0, x1)) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

// Key (lo, hi) just before batch position t, from the walk: (state, slot, last delete) after
// its last op before t (state 0 absent, 1 stored at slot, 2 + put index), or all NONE when
// no op of the key comes before t (its state is the stored one, its last delete none).
fn key_at(lo: u32, hi: u32, t: u32) -> vec3<u32> {
    let want = vec4<u32>(shard_of(lo, hi), hi, lo, t);
    var a = 0u;
    var b = p.n;
    while (a < b) {
        let mid = a + (b - a) / 2u;
        if (less(records[mid], want)) { a = mid + 1u; } else { b = mid; }
    }
    if (a == 0u || any(records[a - 1u].xyz != want.xyz)) { return vec3<u32>(NONE, NONE, NONE); }
    let st = p.st_base + 3u * (a - 1u);
    return vec3<u32>(work[st], work[st + 1u], work[st + 2u]);
}

// Whether a delete (a batch position, NONE for none) came after the event at te (NONE: the
// half as stored before the batch, which any delete of the batch comes after).
fn deleted_since(deleted: u32, te: u32) -> bool {
    return deleted != NONE && (te == NONE || deleted > te);
}

// Half events: link or unlink j / 2 (batch[link_base + 4j'] = op, partner lo, partner hi,
// strength bits or 0) gives (key -> partner) at 2j' and (partner -> key) at 2j' + 1.
@compute @workgroup_size(256)
fn link_route(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat(gid, groups);
    if (j >= p.ev_pow2) { return; }
    let by_time = 2u * p.ev_pow2 + 2u * j;
    if (j >= p.ev_n) {
        lwork[2u * j] = NONE4;
        lwork[2u * j + 1u] = NONE4;
        lwork[by_time] = NONE4;
        lwork[by_time + 1u] = NONE4;
        return;
    }
    let at = p.link_base + 4u * (j / 2u);
    let op = batch[at];
    var o = vec2<u32>(batch[4u * op + 1u], batch[4u * op + 2u]);
    var q = vec2<u32>(batch[at + 1u], batch[at + 2u]);
    if ((j & 1u) == 1u) {
        let x = o;
        o = q;
        q = x;
    }
    let s = shard_of(o.x, o.y);
    let strength = batch[at + 3u];
    lwork[2u * j] = vec4<u32>(s, o.y, o.x, q.y);
    lwork[2u * j + 1u] = vec4<u32>(q.x, op, strength, 0u);
    lwork[by_time] = vec4<u32>(s, o.y, o.x, op);
    lwork[by_time + 1u] = vec4<u32>(q.y, q.x, strength, 0u);
}

// One global pass (k, j) of a bitonic sort of the 8-word records bound at lwork.
@compute @workgroup_size(256)
fn link_sort(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= p.sort_pow2 / 2u) { return; }
    let lo = 2u * p.j * (i / p.j) + (i % p.j);
    let hi = lo + p.j;
    let x = p.sort_base + 2u * lo;
    let y = p.sort_base + 2u * hi;
    let a0 = lwork[x];
    let a1 = lwork[x + 1u];
    let b0 = lwork[y];
    let b1 = lwork[y + 1u];
    if (((lo & p.k) == 0u) == less8(b0, b1, a0, a1)) {
        lwork[x] = b0;
        lwork[x + 1u] = b1;
        lwork[y] = a0;
        lwork[y + 1u] = a1;
    }
}

// Related query q (batch[rel_base + 4q] = position t, min strength bits, max, 0): its
// candidates are its key's events after the key's last delete before t and before t (a run
// of the by-time copy), and its key's old halves when no delete of the key came before t
// (none at all when max is 0).
@compute @workgroup_size(256)
fn rel_count(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let q = flat(gid, groups);
    if (q >= p.rel_n) { return; }
    let t = batch[p.rel_base + 4u * q];
    let lo = batch[4u * t + 1u];
    let hi = batch[4u * t + 2u];
    let first = vec4<u32>(shard_of(lo, hi), hi, lo, 0u);
    let last = vec4<u32>(first.xyz, NONE);
    let zero = vec4<u32>(0u);
    // No real half reaches (owner, NONE, NONE): the partner would be the reserved u64::MAX.
    let lbo = half_lower(first, zero);
    var old = half_lower(last, NONE4) - lbo;
    let deleted = key_at(lo, hi, t).z;
    var since = 0u;
    if (deleted != NONE) {
        old = 0u;
        since = deleted + 1u;
    }
    let lbe = tev_lower(vec4<u32>(first.xyz, since), zero);
    var events = tev_lower(vec4<u32>(first.xyz, t), zero) - lbe;
    if (batch[p.rel_base + 4u * q + 2u] == 0u) {
        old = 0u;
        events = 0u;
    }
    lflat[p.rel_cnt + q] = old + events;
    lflat[p.rel_lbo + q] = lbo;
    lflat[p.rel_lbe + q] = lbe;
    lflat[p.rel_a + q] = old;
}

fn scan_value(i: u32) -> u32 {
    let v = lflat[p.scan_src + i];
    if (p.scan_sum == 1u) { return v; }
    return select(0u, 1u, v != 0u);
}

// Block b's total (SCAN_BLOCK elements) at lflat[scan_tmp + b].
@compute @workgroup_size(256)
fn link_scan_blocks(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) groups: vec3<u32>) {
    let b = flat(gid, groups);
    if (b * SCAN_BLOCK >= p.scan_n) { return; }
    let end = min(p.scan_n, (b + 1u) * SCAN_BLOCK);
    var sum = 0u;
    for (var i = b * SCAN_BLOCK; i < end; i = i + 1u) { sum = sum + scan_value(i); }
    lflat[p.scan_tmp + b] = sum;
}

// One invocation: the block totals become exclusive prefixes; the grand total goes to
// lflat[scan_dst + scan_n].
@compute @workgroup_size(1)
fn link_scan_carry() {
    let blocks = (p.scan_n + SCAN_BLOCK - 1u) / SCAN_BLOCK;
    var acc = 0u;
    for (var b = 0u; b < blocks; b = b + 1u) {
        let v = lflat[p.scan_tmp + b];
        lflat[p.scan_tmp + b] = acc;
        acc = acc + v;
    }
    lflat[p.scan_dst + p.scan_n] = acc;
}

// Per block: the exclusive prefix of every element.
@compute @workgroup_size(256)
fn link_scan_apply(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) groups: vec3<u32>) {
    let b = flat(gid, groups);
    if (b * SCAN_BLOCK >= p.scan_n) { return; }
    let end = min(p.scan_n, (b + 1u) * SCAN_BLOCK);
    var acc = lflat[p.scan_tmp + b];
    for (var i = b * SCAN_BLOCK; i < end; i = i + 1u) {
        let v = scan_value(i);
        lflat[p.scan_dst + i] = acc;
        acc = acc + v;
    }
}

// Pair x: candidate x - rel_off[q] of the query q whose range holds x. A candidate stands for
// its partner when it is the pair's latest state before the query (an old half with no event
// before the query, or the last such event); it is a hit when that state is a link, strong
// enough, not undone by a later delete of either key, and the partner exists then.
@compute @workgroup_size(256)
fn rel_pairs(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let x = flat(gid, groups);
    if (x >= p.pairs_pow2) { return; }
    pairs[2u * x + 1u] = vec4<u32>(x, 0u, 0u, 0u);
    if (x >= p.pairs_n) {
        pairs[2u * x] = NONE4;
        return;
    }
    // The last query whose first pair is at most x (one with no pairs shares its successor's).
    var lo = 0u;
    var hi = p.rel_n - 1u;
    while (lo < hi) {
        let mid = hi - (hi - lo) / 2u;
        if (lflat[p.rel_off + mid] <= x) { lo = mid; } else { hi = mid - 1u; }
    }
    let q = lo;
    let c = x - lflat[p.rel_off + q];
    let t = batch[p.rel_base + 4u * q];
    let min_bits = batch[p.rel_base + 4u * q + 1u];
    let old = lflat[p.rel_a + q];
    var a0: vec4<u32>;
    var plo: u32;
    var strength: u32;
    var te: u32;
    var stands: bool;
    if (c < old) {
        let h = lflat[p.rel_lbo + q] + c;
        a0 = halves[2u * h];
        let a1 = halves[2u * h + 1u];
        plo = a1.x;
        strength = a1.y;
        te = NONE;
        stands = ev_lower(a0, vec4<u32>(plo, 0u, 0u, 0u)) == ev_lower(a0, vec4<u32>(plo, t, 0u, 0u));
    } else {
        // An event of the key's run in the by-time copy stands for its partner when it is the
        // pair's last event before t (in the by-pair order, just before (pair, t)).
        let e = 2u * p.ev_pow2 + 2u * (lflat[p.rel_lbe + q] + c - old);
        let b0 = lwork[e];
        let b1 = lwork[e + 1u];
        a0 = vec4<u32>(b0.xyz, b1.x);
        plo = b1.y;
        strength = b1.z;
        te = b0.w;
        let last = ev_lower(a0, vec4<u32>(plo, t, 0u, 0u));
        stands = lwork[2u * (last - 1u) + 1u].y == te;
    }
    let phi = a0.w;
    var hit = stands && strength != 0u && strength >= min_bits;
    var mark = 0u;
    var arg = 0u;
    if (hit) {
        let own = key_at(a0.z, a0.y, t);
        let other = key_at(plo, phi, t);
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
                let src = p.value_base + (other.x - 2u) * p.w;
                for (var k = 0u; k < p.w; k = k + 1u) { pvals[x * p.w + k] = batch[src + k]; }
            }
        }
    }
    if (hit) {
        pairs[2u * x] = vec4<u32>(t, ~strength, phi, plo);
        pairs[2u * x + 1u] = vec4<u32>(x, mark, arg, 0u);
    } else {
        pairs[2u * x] = NONE4;
    }
}

// Pairs whose partner (in a shard of this table arena) had no op before the query, or whose
// value is the stored one: probe for it, copy its value.
@compute @workgroup_size(256)
fn rel_exist(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let x = flat(gid, groups);
    if (x >= p.pairs_n) { return; }
    let a = pairs[2u * x];
    let b = pairs[2u * x + 1u];
    if (a.x == NONE || b.y == 0u) { return; }
    let s = shard_of(a.w, a.z);
    if (info[2u * s].x != p.arena) { return; }
    var g = b.z;
    if (b.y == 2u) {
        g = probe(s, a.w, a.z);
        if (g == NONE) {
            pairs[2u * x] = NONE4;
            return;
        }
    }
    for (var k = 0u; k < p.w; k = k + 1u) { pvals[x * p.w + k] = old_values[g * p.w + k]; }
}

// Query q's hits: the first min(max, count) pairs of its run in the sorted pairs (strongest
// first, ties by partner) -> lflat[rel_span + 2q] = (first, hits).
@compute @workgroup_size(256)
fn rel_span(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) groups: vec3<u32>) {
    let q = flat(gid, groups);
    if (q >= p.rel_n) { return; }
    let t = batch[p.rel_base + 4u * q];
    let most = batch[p.rel_base + 4u * q + 2u];
    let zero = vec4<u32>(0u);
    let first = pair_lower(vec4<u32>(t, 0u, 0u, 0u), zero);
    let end = pair_lower(vec4<u32>(t + 1u, 0u, 0u, 0u), zero);
    lflat[p.rel_span + 2u * q] = first;
    lflat[p.rel_span + 2u * q + 1u] = min(most, end - first);
}

// The final strength of the pair (a0, plo) whose latest event is `last` (none when it equals
// `first`) and whose stored strength is `stored` (0: none): 0 when the batch leaves it
// unlinked.
fn final_strength(a0: vec4<u32>, plo: u32, stored: u32, first: u32, last: u32) -> u32 {
    var strength = stored;
    var te = NONE;
    if (last > first) {
        let e = lwork[2u * (last - 1u) + 1u];
        strength = e.z;
        te = e.y;
    }
    if (strength == 0u) { return 0u; }
    let own = key_at(a0.z, a0.y, p.n);
    let other = key_at(plo, a0.w, p.n);
    if (deleted_since(own.z, te) || deleted_since(other.z, te)) { return 0u; }
    return strength;
}

// Old half i: its strength after the batch, or 0 -> lflat[keep_old + i].
@compute @workgroup_size(256)
fn link_keep_old(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= p.halves_n) { return; }
    let a0 = halves[2u * i];
    let a1 = halves[2u * i + 1u];
    let first = ev_lower(a0, vec4<u32>(a1.x, 0u, 0u, 0u));
    let last = ev_lower(a0, vec4<u32>(a1.x, NONE, 0u, 0u));
    lflat[p.keep_old + i] = final_strength(a0, a1.x, a1.y, first, last);
}

// Event j, when it is the last of a half not stored before: the half's strength after the
// batch, or 0 -> lflat[keep_ev + j]. (A stored half's final state is its old entry's.)
@compute @workgroup_size(256)
fn link_keep_events(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat(gid, groups);
    if (j >= p.ev_n) { return; }
    let a0 = lwork[2u * j];
    let plo = lwork[2u * j + 1u].x;
    var keep = 0u;
    let last = ev_lower(a0, vec4<u32>(plo, NONE, 0u, 0u));
    if (j + 1u == last) {
        let h = half_lower(a0, vec4<u32>(plo, 0u, 0u, 0u));
        let stored = h < p.halves_n && all(halves[2u * h] == a0) && halves[2u * h + 1u].x == plo;
        if (!stored) { keep = final_strength(a0, plo, 0u, j, last); }
    }
    lflat[p.keep_ev + j] = keep;
}

fn write_half(at: u32, a0: vec4<u32>, plo: u32, strength: u32) {
    new_halves[2u * at] = a0;
    new_halves[2u * at + 1u] = vec4<u32>(plo, strength, 0u, 0u);
    atomicAdd(&counters[4u * p.nshards + a0.x], 1);
}

// A kept old half goes after the kept old halves before it and the kept events of smaller
// halves.
@compute @workgroup_size(256)
fn link_write_old(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat(gid, groups);
    if (i >= p.halves_n) { return; }
    let strength = lflat[p.keep_old + i];
    if (strength == 0u) { return; }
    let a0 = halves[2u * i];
    let plo = halves[2u * i + 1u].x;
    let e = ev_lower(a0, vec4<u32>(plo, 0u, 0u, 0u));
    write_half(lflat[p.scan_old + i] + lflat[p.scan_ev + e], a0, plo, strength);
}

// A kept event's half goes after the kept events before it and the kept old halves smaller
// than it.
@compute @workgroup_size(256)
fn link_write_events(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat(gid, groups);
    if (j >= p.ev_n) { return; }
    let strength = lflat[p.keep_ev + j];
    if (strength == 0u) { return; }
    let a0 = lwork[2u * j];
    let plo = lwork[2u * j + 1u].x;
    let h = half_lower(a0, vec4<u32>(plo, 0u, 0u, 0u));
    write_half(lflat[p.scan_ev + j] + lflat[p.scan_old + h], a0, plo, strength);
}
