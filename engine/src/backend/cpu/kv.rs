//! `kv_apply`: one batch of table operations on the CPU backend, in parallel across shards,
//! with the result the sequential order defines (SPEC §1.2).
//!
//! How a batch flows:
//! 1. **Route** (parallel over chunks of the batch): each chunk counting-sorts its operations
//!    by shard into `items` (operation indices, batch order kept inside each shard). A link or
//!    unlink becomes two items, one per key's shard (the second flagged [`MIRROR`]), because
//!    each shard keeps its own half of a link. Related queries are not routed (step 4).
//! 2. **Plan growth**: from the puts routed to each shard, reserve every doubling the batch
//!    could need, so running out of memory fails the batch before anything changes.
//! 3. **Segments** (parallel over shards): the batch is cut at runs of related queries; in a
//!    segment every shard walks its items in batch order. Everything a shard-local walk
//!    cannot see is a delete's removal of its key's *other* halves: those go to an outbox
//!    as `(owner, partner, stamp)` and are applied at the end of the segment, removing a half
//!    only if it was written before the delete (stamps are batch-global op order), which is
//!    exactly what the sequential order would leave.
//! 4. **Related queries** read across shards, so each run of them is answered between
//!    segments (parallel over the queries), when every earlier operation has landed.
//! 5. **Reassemble** (parallel over chunks): results return to batch order by replaying the
//!    routing with per-shard cursors.
//!
//! Batches of at most [`SEQUENTIAL_MAX`] operations skip the machinery and run one by one.

use rayon::prelude::*;

use super::shard::{CpuShard, GrowthPlan, copy_words, shard_bytes};
use crate::error::BackendError;
use crate::table::route::{ShardRouter, shard_of};
use crate::table::{Batch, BatchResults, OpCode, RelatedHit, RelatedSpan, Status};

/// Flag on a routed item: the second half of a link or unlink (the partner's shard).
const MIRROR: u32 = 1 << 31;
/// How many items ahead a shard walk prefetches the home slot (enough misses in flight to
/// cover memory latency, few enough that the lines are still cached when used).
const PREFETCH_AHEAD: usize = 12;
/// Batches up to this size run sequentially on the calling thread: below it, routing and
/// handing shards to the pool cost more than a second thread gains (measured on the 2-core
/// box: `docs/perf/README.md`).
pub const SEQUENTIAL_MAX: usize = 16_384;

/// A delete's removal of the half `owner -> partner`, for the owner's shard.
#[derive(Debug, Clone, Copy)]
struct Removal {
    owner: u64,
    partner: u64,
    stamp: u128,
}

/// Batch-global order of an operation: batch epoch, then position (never wraps).
#[inline]
fn stamp(epoch: u64, op: usize) -> u128 {
    (u128::from(epoch) << 32) | op as u128
}

/// One routed operation, copied out of the batch so a shard walks dense memory.
#[derive(Debug, Clone, Copy)]
struct Item {
    /// The key this shard acts on (for a link's mirror half: the partner).
    key: u64,
    /// Operation index in the batch, `| MIRROR` for a link's second half.
    op: u32,
    code: OpCode,
}

impl Default for Item {
    fn default() -> Self {
        Item {
            key: 0,
            op: 0,
            code: OpCode::Get,
        }
    }
}

/// Operations `start..end` of the batch, counting-sorted by shard.
#[derive(Default)]
struct RoutedChunk {
    start: usize,
    end: usize,
    /// Items grouped by shard, batch order within a shard.
    items: Vec<Item>,
    /// `items[offsets[s]..offsets[s + 1]]` are shard `s`'s.
    offsets: Vec<u32>,
    /// Puts routed to each shard.
    puts: Vec<u32>,
    /// The puts' values, grouped by shard like `items` (`put_offsets[s]` words in).
    put_values: Vec<u32>,
    put_offsets: Vec<u32>,
    /// The shard of every routed item, in batch order (replayed by reassembly).
    shard_seq: Vec<u16>,
}

/// Routes operations `start..end` into `chunk`, reusing its buffers.
fn route_chunk(chunk: &mut RoutedChunk, batch: &Batch, start: usize, end: usize, shards: u32) {
    let (codes, keys) = (batch.codes(), batch.keys());
    let n = shards as usize;
    let router = ShardRouter::new(shards);
    let RoutedChunk {
        items,
        offsets,
        puts,
        put_values,
        put_offsets,
        shard_seq,
        ..
    } = chunk;
    chunk.start = start;
    chunk.end = end;
    reset(offsets, n + 1, 0);
    reset(puts, n, 0);
    shard_seq.clear();
    for i in start..end {
        let s = match codes[i] {
            OpCode::GetRelated => continue,
            OpCode::Link | OpCode::Unlink => {
                let s2 = router.shard(batch.aux(i).partner);
                shard_seq.push(router.shard(keys[i]) as u16);
                shard_seq.push(s2 as u16);
                offsets[s2 as usize + 1] += 1;
                offsets[router.shard(keys[i]) as usize + 1] += 1;
                continue;
            }
            OpCode::Put => {
                let s = router.shard(keys[i]);
                puts[s as usize] += 1;
                s
            }
            OpCode::Get | OpCode::Delete => router.shard(keys[i]),
        };
        shard_seq.push(s as u16);
        offsets[s as usize + 1] += 1;
    }
    for s in 0..n {
        offsets[s + 1] += offsets[s];
    }
    let w = batch.value_words();
    reset(put_offsets, n + 1, 0);
    for s in 0..n {
        put_offsets[s + 1] = put_offsets[s] + puts[s] * w as u32;
    }
    let mut cursor = offsets.clone();
    let mut put_cursor = put_offsets.clone();
    reset(items, offsets[n] as usize, Item::default());
    reset(put_values, put_offsets[n] as usize, 0);
    let mut q = 0;
    for i in start..end {
        let code = codes[i];
        match code {
            OpCode::GetRelated => continue,
            OpCode::Link | OpCode::Unlink => {
                let partner = batch.aux(i).partner;
                for (flag, key, s) in [
                    (0, keys[i], shard_seq[q]),
                    (MIRROR, partner, shard_seq[q + 1]),
                ] {
                    items[cursor[s as usize] as usize] = Item {
                        key,
                        op: i as u32 | flag,
                        code,
                    };
                    cursor[s as usize] += 1;
                }
                q += 2;
            }
            _ => {
                let s = shard_seq[q] as usize;
                items[cursor[s] as usize] = Item {
                    key: keys[i],
                    op: i as u32,
                    code,
                };
                cursor[s] += 1;
                if code == OpCode::Put {
                    let at = put_cursor[s] as usize;
                    copy_words(&mut put_values[at..at + w], batch.put_value(i));
                    put_cursor[s] += w as u32;
                }
                q += 1;
            }
        }
    }
}

/// Empties `v` and fills it with `len` copies of `x`, keeping its allocation.
fn reset<T: Clone>(v: &mut Vec<T>, len: usize, x: T) {
    v.clear();
    v.resize(len, x);
}

/// Buffers of one batch's routing and walks, kept by the device between batches so that a
/// batch does not page-fault tens of megabytes of fresh memory.
#[derive(Default)]
pub(crate) struct KvScratch {
    chunks: Vec<RoutedChunk>,
    runs: Vec<ShardRun>,
    /// Shard of each operation, for the sequential path.
    shard_ids: Vec<u16>,
}

/// What one shard produced, in the order of its items.
#[derive(Default)]
struct ShardRun {
    /// Per chunk, the next item of this shard to process.
    cursors: Vec<usize>,
    /// Per chunk, the next word of this shard's put values.
    put_cursors: Vec<usize>,
    status: Vec<Status>,
    /// `value_words` per item, filled for gets that found their key.
    values: Vec<u32>,
    outbox: Vec<Removal>,
    plan: GrowthPlan,
}

/// Everything the walk of one operation needs besides the shard.
struct Ctx<'a> {
    batch: &'a Batch,
    epoch: u64,
    reads: bool,
}

impl Ctx<'_> {
    /// Applies `item` to `shard` (`value`: a put's value); returns its status and stores a
    /// found value in the run.
    #[inline]
    fn step(&self, shard: &mut CpuShard, item: Item, value: &[u32], run: &mut ShardRun) -> Status {
        let mirror = item.op & MIRROR != 0;
        let i = (item.op & !MIRROR) as usize;
        let key = item.key;
        if !mirror {
            shard.ops += 1;
        }
        match item.code {
            OpCode::Put => {
                shard.put(key, value, &mut run.plan);
                Status::Ok
            }
            OpCode::Get => match shard.find(key) {
                Some(slot) => {
                    if self.reads {
                        let w = self.batch.value_words();
                        let at = run.status.len() * w;
                        copy_words(&mut run.values[at..at + w], shard.value(slot));
                    }
                    Status::Value
                }
                None => Status::Missing,
            },
            OpCode::Delete => {
                let existed = shard.delete(key);
                if shard.has_links() {
                    for h in shard.take_links(key).unwrap_or_default() {
                        let stamp = stamp(self.epoch, i);
                        run.outbox.push(Removal {
                            owner: h.partner,
                            partner: key,
                            stamp,
                        });
                    }
                }
                if existed {
                    Status::Deleted
                } else {
                    Status::Absent
                }
            }
            OpCode::Link => {
                let a = self.batch.aux(i);
                let partner = if mirror {
                    self.batch.keys()[i]
                } else {
                    a.partner
                };
                shard.link_half(key, partner, a.strength, stamp(self.epoch, i));
                Status::Ok
            }
            OpCode::Unlink => {
                let partner = if mirror {
                    self.batch.keys()[i]
                } else {
                    self.batch.aux(i).partner
                };
                shard.unlink_half(key, partner, u128::MAX);
                Status::Ok
            }
            OpCode::GetRelated => unreachable!("related queries are not routed"),
        }
    }
}

/// Reserves each shard's growth buffers for up to `new_keys[s]` new keys. Returns the plans
/// and the bytes reserved, or the out-of-memory error (nothing reserved then).
fn plan_growth(
    shards: &[CpuShard],
    new_keys: &[u64],
    max_load: f64,
    value_words: usize,
    device: &super::CpuDevice,
) -> Result<(Vec<GrowthPlan>, u64), BackendError> {
    let sizes: Vec<Vec<u64>> = shards
        .iter()
        .zip(new_keys)
        .map(|(s, &n)| GrowthPlan::sizes(s.slots(), s.items(), n, max_load))
        .collect();
    let bytes: u64 = sizes
        .iter()
        .flatten()
        .map(|&s| shard_bytes(s, value_words))
        .sum();
    if bytes == 0 {
        return Ok((shards.iter().map(|_| GrowthPlan::default()).collect(), 0));
    }
    device.reserve(bytes)?;
    let plans: Option<Vec<GrowthPlan>> = sizes
        .par_iter()
        .map(|s| GrowthPlan::reserve(s, value_words))
        .collect();
    match plans {
        Some(plans) => Ok((plans, bytes)),
        None => {
            device.release(bytes);
            Err(device.allocation_failed(bytes))
        }
    }
}

/// [`plan_growth`] for the worst case (every put a new key); when that does not fit,
/// again for the puts that really are new (distinct keys absent from their shard), so a
/// table at its memory limit still takes updates. Both counts bound the batch's peak.
fn plan_growth_for_puts(
    shards: &[CpuShard],
    worst: &[u64],
    exact: impl FnOnce() -> Vec<u64>,
    max_load: f64,
    value_words: usize,
    device: &super::CpuDevice,
) -> Result<(Vec<GrowthPlan>, u64), BackendError> {
    match plan_growth(shards, worst, max_load, value_words, device) {
        Err(BackendError::OutOfMemory { .. }) => {
            plan_growth(shards, &exact(), max_load, value_words, device)
        }
        other => other,
    }
}

/// Distinct keys among `puts` (one shard's puts) that `shard` does not hold.
fn new_put_keys<'a>(shard: &CpuShard, puts: impl Iterator<Item = &'a u64>) -> u64 {
    let mut fresh = hashbrown::HashSet::new();
    for &k in puts {
        if shard.find(k).is_none() {
            fresh.insert(k);
        }
    }
    fresh.len() as u64
}

/// Applies `batch` to `shards`. On `Err` nothing changed.
pub(crate) fn kv_apply(
    device: &super::CpuDevice,
    shards: &mut [CpuShard],
    max_load: f64,
    batch: &Batch,
    epoch: u64,
    results: &mut BatchResults,
) -> Result<(), BackendError> {
    let n = batch.len();
    let w = batch.value_words();
    results.reset(n, w, batch.reads_values());
    let bytes_before: u64 = shards.iter().map(CpuShard::bytes).sum();
    let reserved = if n <= SEQUENTIAL_MAX {
        let mut scratch = device.take_scratch();
        let router = ShardRouter::new(shards.len() as u32);
        let sid = &mut scratch.shard_ids;
        sid.clear();
        sid.extend(batch.keys().iter().map(|&k| router.shard(k) as u16));
        let mut puts = vec![0u64; shards.len()];
        for (code, &s) in batch.codes().iter().zip(sid.iter()) {
            if *code == OpCode::Put {
                puts[s as usize] += 1;
            }
        }
        let exact = || {
            (0..shards.len())
                .map(|s| {
                    let keys = (0..n)
                        .filter(|&i| batch.codes()[i] == OpCode::Put && sid[i] as usize == s)
                        .map(|i| &batch.keys()[i]);
                    new_put_keys(&shards[s], keys)
                })
                .collect()
        };
        let planned = plan_growth_for_puts(shards, &puts, exact, max_load, w, device);
        let result = planned.map(|(plans, reserved)| {
            apply_sequential(shards, plans, batch, &scratch.shard_ids, epoch, results);
            reserved
        });
        device.return_scratch(scratch);
        result.inspect_err(|_| results.reset(0, w, false))?
    } else {
        let mut scratch = device.take_scratch();
        let reserved = device.install(|| {
            apply_parallel(
                device,
                shards,
                max_load,
                batch,
                epoch,
                results,
                &mut scratch,
            )
        });
        device.return_scratch(scratch);
        reserved.inspect_err(|_| results.reset(0, w, false))?
    };
    let grown = shards.iter().map(CpuShard::bytes).sum::<u64>() - bytes_before;
    debug_assert!(grown <= reserved, "a shard grew past its growth plan");
    device.release(reserved.saturating_sub(grown));
    Ok(())
}

/// One by one, in batch order, on the calling thread: the definition itself, and the fast
/// path for batches too small to repay routing (no thread hand-offs, results written in
/// place, the next keys' home slots prefetched). `sid[i]` is operation `i`'s shard.
fn apply_sequential(
    shards: &mut [CpuShard],
    mut plans: Vec<GrowthPlan>,
    batch: &Batch,
    sid: &[u16],
    epoch: u64,
    results: &mut BatchResults,
) {
    let (codes, keys) = (batch.codes(), batch.keys());
    let w = batch.value_words();
    let ctx = Ctx {
        batch,
        epoch,
        reads: false,
    };
    let mut run = ShardRun::default();
    for i in 0..batch.len() {
        if let Some(&ahead) = sid.get(i + PREFETCH_AHEAD) {
            shards[ahead as usize].prefetch(keys[i + PREFETCH_AHEAD]);
        }
        let (key, s) = (keys[i], sid[i] as usize);
        let status = match codes[i] {
            OpCode::Get => {
                shards[s].ops += 1;
                match shards[s].find(key) {
                    Some(slot) => {
                        copy_words(
                            &mut results.values[i * w..(i + 1) * w],
                            shards[s].value(slot),
                        );
                        Status::Value
                    }
                    None => Status::Missing,
                }
            }
            OpCode::Put => {
                shards[s].ops += 1;
                shards[s].put(key, batch.put_value(i), &mut plans[s]);
                Status::Ok
            }
            OpCode::GetRelated => {
                shards[s].ops += 1;
                answer_related(shards, batch, i, results);
                Status::Related
            }
            code @ (OpCode::Delete | OpCode::Link | OpCode::Unlink) => {
                // `step` never grows a shard for these, so the run needs no growth plan.
                let st = ctx.step(
                    &mut shards[s],
                    Item {
                        key,
                        op: i as u32,
                        code,
                    },
                    &[],
                    &mut run,
                );
                if code != OpCode::Delete {
                    let partner = batch.aux(i).partner;
                    let s2 = shard_of(partner, shards.len() as u32) as usize;
                    let mirror = Item {
                        key: partner,
                        op: i as u32 | MIRROR,
                        code,
                    };
                    ctx.step(&mut shards[s2], mirror, &[], &mut run);
                }
                // Sequentially, a delete's removals of its partners' halves apply at once.
                for r in run.outbox.drain(..) {
                    let owner = shard_of(r.owner, shards.len() as u32) as usize;
                    shards[owner].unlink_half(r.owner, r.partner, u128::MAX);
                }
                run.status.clear();
                st
            }
        };
        results.status[i] = status;
    }
}

fn apply_parallel(
    device: &super::CpuDevice,
    shards: &mut [CpuShard],
    max_load: f64,
    batch: &Batch,
    epoch: u64,
    results: &mut BatchResults,
    scratch: &mut KvScratch,
) -> Result<u64, BackendError> {
    let n = batch.len();
    let w = batch.value_words();
    let nshards = shards.len();
    let reads = !results.values.is_empty();

    // 1. Route.
    let chunk_len = n.div_ceil(device.threads() * 8).max(8192);
    let KvScratch { chunks, runs, .. } = scratch;
    chunks.resize_with(n.div_ceil(chunk_len), RoutedChunk::default);
    chunks.par_iter_mut().enumerate().for_each(|(c, ch)| {
        route_chunk(
            ch,
            batch,
            c * chunk_len,
            ((c + 1) * chunk_len).min(n),
            nshards as u32,
        );
    });
    let chunks = &chunks[..n.div_ceil(chunk_len)];

    // 2. Plan growth.
    let mut new_keys = vec![0u64; nshards];
    let mut totals = vec![0usize; nshards];
    for ch in chunks {
        for s in 0..nshards {
            new_keys[s] += u64::from(ch.puts[s]);
            totals[s] += (ch.offsets[s + 1] - ch.offsets[s]) as usize;
        }
    }
    let exact = || {
        shards
            .par_iter()
            .enumerate()
            .map(|(s, shard)| {
                let puts = chunks.iter().flat_map(|ch| {
                    ch.items[ch.offsets[s] as usize..ch.offsets[s + 1] as usize]
                        .iter()
                        .filter(|it| it.code == OpCode::Put)
                        .map(|it| &it.key)
                });
                new_put_keys(shard, puts)
            })
            .collect()
    };
    let (plans, reserved) = plan_growth_for_puts(shards, &new_keys, exact, max_load, w, device)?;
    runs.resize_with(nshards, ShardRun::default);
    let runs = &mut runs[..nshards];
    for (s, (run, plan)) in runs.iter_mut().zip(plans).enumerate() {
        run.cursors.clear();
        run.cursors
            .extend(chunks.iter().map(|ch| ch.offsets[s] as usize));
        run.put_cursors.clear();
        run.put_cursors
            .extend(chunks.iter().map(|ch| ch.put_offsets[s] as usize));
        run.status.clear();
        run.status.reserve(totals[s]);
        reset(&mut run.values, if reads { totals[s] * w } else { 0 }, 0);
        run.outbox.clear();
        run.plan = plan;
    }

    // 3 and 4. Segments, cut at runs of related queries.
    let ctx = Ctx {
        batch,
        epoch,
        reads,
    };
    let codes = batch.codes();
    let mut lo = 0;
    while lo < n {
        let hi = codes[lo..]
            .iter()
            .position(|&c| c == OpCode::GetRelated)
            .map_or(n, |p| lo + p);
        if hi > lo {
            run_segment(shards, runs, chunks, &ctx, hi);
        }
        let end = codes[hi..]
            .iter()
            .position(|&c| c != OpCode::GetRelated)
            .map_or(n, |p| hi + p);
        if end > hi {
            answer_related_run(shards, batch, hi..end, results);
        }
        lo = end;
    }

    // Growth buffers the batch reserved but did not use go now, not with the scratch.
    for run in runs.iter_mut() {
        run.plan = GrowthPlan::default();
    }

    // 5. Reassemble.
    let mut bases = Vec::with_capacity(chunks.len());
    let mut base = vec![0usize; nshards];
    for ch in chunks {
        bases.push(base.clone());
        for (s, b) in base.iter_mut().enumerate() {
            *b += (ch.offsets[s + 1] - ch.offsets[s]) as usize;
        }
    }
    let fill = |c: usize, status: &mut [Status], values: &mut [u32]| {
        let ch = &chunks[c];
        let mut cur = bases[c].clone();
        let mut q = 0;
        for (j, i) in (ch.start..ch.end).enumerate() {
            match codes[i] {
                OpCode::GetRelated => {}
                OpCode::Link | OpCode::Unlink => {
                    let (s, s2) = (ch.shard_seq[q] as usize, ch.shard_seq[q + 1] as usize);
                    status[j] = runs[s].status[cur[s]];
                    cur[s] += 1;
                    cur[s2] += 1;
                    q += 2;
                }
                _ => {
                    let s = ch.shard_seq[q] as usize;
                    let st = runs[s].status[cur[s]];
                    status[j] = st;
                    if st == Status::Value && reads {
                        let k = cur[s];
                        copy_words(
                            &mut values[j * w..(j + 1) * w],
                            &runs[s].values[k * w..(k + 1) * w],
                        );
                    }
                    cur[s] += 1;
                    q += 1;
                }
            }
        }
    };
    if reads {
        results
            .status
            .par_chunks_mut(chunk_len)
            .zip(results.values.par_chunks_mut(chunk_len * w))
            .enumerate()
            .for_each(|(c, (st, vals))| fill(c, st, vals));
    } else {
        results
            .status
            .par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(c, st)| fill(c, st, &mut []));
    }
    Ok(reserved)
}

/// Every shard walks its items with operation index below `hi`; then deletes' removals of
/// remote link halves are applied.
fn run_segment(
    shards: &mut [CpuShard],
    runs: &mut [ShardRun],
    chunks: &[RoutedChunk],
    ctx: &Ctx<'_>,
    hi: usize,
) {
    shards
        .par_iter_mut()
        .zip(runs.par_iter_mut())
        .enumerate()
        .for_each(|(s, (shard, run))| {
            for (c, ch) in chunks.iter().enumerate() {
                if ch.start >= hi {
                    break;
                }
                let end = ch.offsets[s + 1] as usize;
                let w = ctx.batch.value_words();
                let (mut k, mut pk) = (run.cursors[c], run.put_cursors[c]);
                while k < end {
                    if let Some(ahead) = ch
                        .items
                        .get(k + PREFETCH_AHEAD)
                        .filter(|_| k + PREFETCH_AHEAD < end)
                    {
                        shard.prefetch(ahead.key);
                    }
                    let item = ch.items[k];
                    if (item.op & !MIRROR) as usize >= hi {
                        break;
                    }
                    let value = if item.code == OpCode::Put {
                        pk += w;
                        &ch.put_values[pk - w..pk]
                    } else {
                        &[]
                    };
                    let status = ctx.step(shard, item, value, run);
                    run.status.push(status);
                    k += 1;
                }
                run.cursors[c] = k;
                run.put_cursors[c] = pk;
            }
        });
    let nshards = shards.len() as u32;
    let mut inbox: Vec<Vec<Removal>> = Vec::new();
    for run in runs.iter_mut() {
        for r in run.outbox.drain(..) {
            if inbox.is_empty() {
                inbox = vec![Vec::new(); nshards as usize];
            }
            inbox[shard_of(r.owner, nshards) as usize].push(r);
        }
    }
    if !inbox.is_empty() {
        shards.par_iter_mut().zip(inbox).for_each(|(shard, rs)| {
            for r in rs {
                shard.unlink_half(r.owner, r.partner, r.stamp);
            }
        });
    }
}

/// One related query's answer before it is stored.
struct RelatedAnswer {
    found: bool,
    value: Vec<u32>,
    hits: Vec<RelatedHit>,
    hit_values: Vec<u32>,
}

/// Answers related query `i` against the shards' current state.
fn related_answer(shards: &[CpuShard], batch: &Batch, i: usize) -> RelatedAnswer {
    let nshards = shards.len() as u32;
    let key = batch.keys()[i];
    let a = batch.aux(i);
    let home = &shards[shard_of(key, nshards) as usize];
    let slot = home.find(key);
    let mut halves: Vec<_> = home
        .links_of(key)
        .iter()
        .filter(|h| h.strength >= a.strength)
        .copied()
        .collect();
    halves.sort_unstable_by(|x, y| {
        y.strength
            .total_cmp(&x.strength)
            .then(x.partner.cmp(&y.partner))
    });
    let mut hits = Vec::new();
    let mut hit_values = Vec::new();
    for h in halves {
        if hits.len() >= a.max as usize {
            break;
        }
        let other = &shards[shard_of(h.partner, nshards) as usize];
        if let Some(ps) = other.find(h.partner) {
            hits.push(RelatedHit {
                key: h.partner,
                strength: h.strength,
            });
            hit_values.extend_from_slice(other.value(ps));
        }
    }
    RelatedAnswer {
        found: slot.is_some(),
        value: slot.map(|s| home.value(s).to_vec()).unwrap_or_default(),
        hits,
        hit_values,
    }
}

fn store_related(results: &mut BatchResults, i: usize, ans: &RelatedAnswer, w: usize) {
    results.status[i] = Status::Related;
    if ans.found {
        results.values[i * w..(i + 1) * w].copy_from_slice(&ans.value);
    }
    results.related.push(RelatedSpan {
        op: i as u32,
        start: results.hits.len() as u32,
        len: ans.hits.len() as u32,
        found: ans.found,
    });
    results.hits.extend_from_slice(&ans.hits);
    results.hit_values.extend_from_slice(&ans.hit_values);
}

fn answer_related(shards: &mut [CpuShard], batch: &Batch, i: usize, results: &mut BatchResults) {
    let ans = related_answer(shards, batch, i);
    store_related(results, i, &ans, batch.value_words());
}

/// Answers the related queries `range` (all of them related queries) in parallel.
fn answer_related_run(
    shards: &mut [CpuShard],
    batch: &Batch,
    range: std::ops::Range<usize>,
    results: &mut BatchResults,
) {
    let nshards = shards.len() as u32;
    let answers: Vec<RelatedAnswer> = {
        let view: &[CpuShard] = shards;
        range
            .clone()
            .into_par_iter()
            .map(|i| related_answer(view, batch, i))
            .collect()
    };
    for (i, ans) in range.zip(answers) {
        shards[shard_of(batch.keys()[i], nshards) as usize].ops += 1;
        store_related(results, i, &ans, batch.value_words());
    }
}
