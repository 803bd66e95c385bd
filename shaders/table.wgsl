// Shard tables on the device (SPEC §1.1, §1.2): one batch of PUT / GET / DELETE with the
// sequential-equivalence contract. CPU sibling: engine/src/backend/cpu/kv.rs (`kv_apply`) and
// shard.rs; host side: engine/src/backend/wgpu/table/mod.rs; design: docs/wgpu.md, "Tables on
// the device".
//
// Only 32-bit integers: a key is two words (lo, hi). Order of one batch:
//   kv_route                 op i -> sort record (shard, key hi, key lo, i); ops per shard
//   kv_sort                  one bitonic pass (k, j) over the records, ascending
//   kv_walk                  one invocation per key run: probe the shard, apply the run's ops in
//                            batch order (results, per-op item delta, the key's final state)
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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Per shard s: info[2s] = (arena, base, mask, rebuild) before the batch, info[2s+1] = after.
@group(0) @binding(1) var<storage, read> info: array<vec4<u32>>;
// Per op 4 words (code | COUNTED, key lo, key hi, put value index), then put values.
@group(0) @binding(2) var<storage, read> batch: array<u32>;
@group(0) @binding(3) var<storage, read_write> records: array<vec4<u32>>;
// Per record 2 words (old slot + 1 or 0; final: 0 absent, 1 old value, 2 + put index), then
// per-op deltas (i32), then the block x shard matrix.
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

// Whether record r starts a key's run.
fn is_head(r: u32) -> bool {
    if (r == 0u) { return true; }
    let a = records[r];
    let b = records[r - 1u];
    return a.y != b.y || a.z != b.z;
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

@compute @workgroup_size(256)
fn kv_walk(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) groups: vec3<u32>) {
    let r = flat(gid, groups);
    if (r >= p.n) { return; }
    let head = records[r];
    let s = head.x;
    let before = info[2u * s];
    if (before.x != p.arena || !is_head(r)) { return; }
    let lo = head.z;
    let hi = head.y;
    // The key's state before the batch.
    var slot = NONE;
    var i = key_hash(lo, hi, SLOT_SEED) & before.z;
    loop {
        let g = before.y + i;
        let t = old_slots[3u * g];
        if (t == EMPTY) { break; }
        if (t == FULL && old_slots[3u * g + 1u] == lo && old_slots[3u * g + 2u] == hi) {
            slot = g;
            break;
        }
        i = (i + 1u) & before.z;
    }
    // Its operations in batch order. src: 0 absent, 1 the stored value, 2 + a put's value.
    var src = select(0u, 1u, slot != NONE);
    let w = p.w;
    for (var q = r; q < p.n; q = q + 1u) {
        let rec = records[q];
        if (rec.y != hi || rec.z != lo) { break; }
        let pos = rec.w;
        let code = batch[4u * pos] & 0xFFu;
        var delta = 0i;
        if (code == OP_PUT) {
            if (src == 0u) { delta = 1i; }
            src = 2u + batch[4u * pos + 3u];
            results[pos] = ST_OK;
        } else if (code == OP_GET) {
            if (src == 0u) {
                results[pos] = ST_MISSING;
            } else {
                results[pos] = ST_VALUE;
                let out = p.n + pos * w;
                if (src == 1u) {
                    for (var k = 0u; k < w; k = k + 1u) {
                        results[out + k] = old_values[slot * w + k];
                    }
                } else {
                    let at = p.value_base + (src - 2u) * w;
                    for (var k = 0u; k < w; k = k + 1u) {
                        results[out + k] = batch[at + k];
                    }
                }
            }
        } else {
            if (src == 0u) {
                results[pos] = ST_ABSENT;
            } else {
                results[pos] = ST_DELETED;
                delta = -1i;
            }
            src = 0u;
        }
        work[p.delta_base + pos] = bitcast<u32>(delta);
    }
    work[2u * r] = select(slot + 1u, 0u, slot == NONE);
    work[2u * r + 1u] = src;
    if (slot == NONE && src != 0u) {
        atomicAdd(&counters[4u * s + 1u], 1);
    }
    if (slot != NONE && src == 0u) {
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
    if (info[2u * s].x != p.arena || !is_head(r)) { return; }
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
    if (after.x != p.arena || !is_head(r)) { return; }
    let fin = work[2u * r + 1u];
    if (work[2u * r] != 0u || fin < 2u) { return; }
    let to = claim_slot(rec.z, rec.y, after.y, after.z);
    let at = p.value_base + (fin - 2u) * p.w;
    for (var k = 0u; k < p.w; k = k + 1u) {
        values[to * p.w + k] = batch[at + k];
    }
}
