// Shard tables on the device (SPEC §1.1, §1.2): one batch of PUT / GET / DELETE with the
// sequential-equivalence contract. CPU sibling: engine/src/backend/cpu/kv.rs (`kv_apply`) and
// shard.rs; host side: engine/src/backend/wgpu/table/mod.rs; design: docs/wgpu.md, "Tables on
// the device".
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
    chunk_base: u32,   // per walk chunk 3 words (kv_walk_chunks), then 2 (kv_walk_carry)
    chunks: u32,       // walk chunks
    _pad0: u32,
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

// Per chunk c: for the key of its last record, (1, state, slot) when that key's run starts in
// the chunk (its state after the chunk, from the probe), else (0, effect, 0) (the chunk is all
// one key continuing a run: what the chunk does to it, NONE for nothing).
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
    for (var q = t; q < end; q = q + 1u) {
        let e = effect_of(records[q].w);
        if (e != NONE) { effect = e; }
    }
    let at = p.chunk_base + 3u * c;
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

// One invocation: the state (state, slot) entering every chunk whose first record continues a
// run, in chunk order.
@compute @workgroup_size(1)
fn kv_walk_carry() {
    let carry = p.chunk_base + 3u * p.chunks;
    for (var c = 1u; c < p.chunks; c = c + 1u) {
        if (is_head(c * CHUNK)) { continue; }
        let prev = p.chunk_base + 3u * (c - 1u);
        if (work[prev] == 1u) {
            work[carry + 2u * c] = work[prev + 1u];
            work[carry + 2u * c + 1u] = work[prev + 2u];
        } else {
            let effect = work[prev + 1u];
            let before = work[carry + 2u * (c - 1u)];
            work[carry + 2u * c] = select(effect, before, effect == NONE);
            work[carry + 2u * c + 1u] = work[carry + 2u * (c - 1u) + 1u];
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
    if (head) {
        slot = probe(s, lo, hi);
        state = select(1u, 0u, slot == NONE);
    } else {
        let carry = p.chunk_base + 3u * p.chunks + 2u * (r / CHUNK);
        state = work[carry];
        slot = work[carry + 1u];
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
        } else {
            if (state == 0u) {
                results[pos] = ST_ABSENT;
            } else {
                results[pos] = ST_DELETED;
                delta = -1i;
            }
            state = 0u;
        }
        work[p.delta_base + pos] = bitcast<u32>(delta);
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
