//! Durable PUT (SPEC §7 row 3): batches of PUTs into a durable table with `fsync = always`,
//! beside the same batches written by a minimal loop (the same WAL records, one write and one
//! fsync per batch, into one file): the cost of durability against its limit. warpgrid runs
//! twice: into a table created with room for the run (the bar: what durability costs), and
//! into one that grows from empty (what a bulk load costs, growth included). The three
//! rotate which runs first in each repeat; ratios are of the medians. Also the time
//! to reopen (recover) a table of many keys from its WALs and from its snapshots.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use warpgrid_host::durable::{DurableOptions, DurableTable, FsyncPolicy, Record, WalOp, encode};

use crate::workload::{uniform_keys, value_of};
use crate::{Batch, Device, TableConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct DurableBenchConfig {
    /// Batches per run.
    pub batches: usize,
    /// Puts per batch (8-byte values, uniform random keys).
    pub batch_ops: usize,
    /// Shards of the table.
    pub shards: u32,
    /// Keys of the table whose reopening is timed.
    pub recovery_keys: usize,
    /// Measured repeats; the three sides rotate which runs first.
    pub repeats: usize,
}

impl DurableBenchConfig {
    /// SPEC §7 row 3: 200 batches of 4096 puts into 24 shards, median of 5; recovery of 4M
    /// keys.
    pub fn full() -> Self {
        DurableBenchConfig {
            batches: 200,
            batch_ops: 4096,
            shards: 24,
            recovery_keys: 4_000_000,
            repeats: 5,
        }
    }

    /// A smoke run: 40 batches of 1024 puts, recovery of 200k keys, one repeat.
    pub fn quick() -> Self {
        DurableBenchConfig {
            batches: 40,
            batch_ops: 1024,
            recovery_keys: 200_000,
            repeats: 1,
            ..Self::full()
        }
    }
}

/// Everything the durable-put bench measured (`warpgrid bench`), as its JSON report holds
/// it.
#[derive(Debug, Clone, Serialize)]
pub struct DurableReport {
    /// Always `kv-durable`.
    pub bench: &'static str,
    /// Batches per run.
    pub batches: usize,
    /// Puts per batch.
    pub batch_ops: usize,
    /// Shards of the table.
    pub shards: u32,
    /// The device, as [`Device::describe`] gives it.
    pub device: String,
    /// Into a table created with room for every key of the run (the cost of durability).
    pub warpgrid_batches_per_s: f64,
    /// Into a table that grows from empty (durability plus the table's own growth).
    pub growing_batches_per_s: f64,
    /// The minimal loop: the same WAL records, one write and one fsync per batch, into one
    /// file (the limit).
    pub limit_batches_per_s: f64,
    /// `warpgrid_batches_per_s / limit_batches_per_s`: the bar's ratio.
    pub ratio: f64,
    /// `growing_batches_per_s / limit_batches_per_s`.
    pub growing_ratio: f64,
    /// The bar `ratio` is held to (at least 0.8).
    pub bar: f64,
    /// Whether `ratio >= bar`.
    pub bar_met: bool,
    /// Keys of the recovered table.
    pub recovery_keys: usize,
    /// Seconds to reopen it from its log alone.
    pub recovery_from_wal_s: f64,
    /// Seconds to reopen it from its snapshots, after a checkpoint.
    pub recovery_from_snapshots_s: f64,
}

fn batches(cfg: &DurableBenchConfig, seed: u64) -> Vec<Batch> {
    let keys = uniform_keys(cfg.batches * cfg.batch_ops, seed);
    keys.chunks(cfg.batch_ops)
        .map(|c| {
            let mut b = Batch::with_capacity(8, c.len());
            for &k in c {
                b.put(k, &value_of(k)).expect("valid keys");
            }
            b
        })
        .collect()
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Seconds for warpgrid to apply `batches` durably in a fresh table under `dir`, created
/// with room for `capacity` keys (0: the default, so it grows as the batches arrive).
fn run_warpgrid(
    device: &Device,
    dir: &Path,
    shards: u32,
    capacity: u64,
    batches: &[Batch],
) -> Result<f64, String> {
    let options = DurableOptions {
        fsync: FsyncPolicy::Always,
        create: true,
        checkpoint_bytes: u64::MAX,
    };
    let mut t = DurableTable::open(
        dir,
        device,
        TableConfig::new("bench")
            .with_shards(shards)
            .with_capacity(capacity.max(TableConfig::new("d").capacity)),
        &options,
    )
    .map_err(io)?;
    let start = Instant::now();
    for b in batches {
        t.apply(b).map_err(io)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds for the minimal loop: encode each batch's records, one write, one fsync.
fn run_limit(path: &Path, batches: &[Batch]) -> Result<f64, String> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut buf = Vec::new();
    let mut seq = 0u64;
    let start = Instant::now();
    for b in batches {
        buf.clear();
        for i in 0..b.len() {
            encode(
                &Record {
                    seq,
                    op: WalOp::Put,
                    key: b.keys()[i],
                    payload: b.put_value_bytes(i),
                },
                &mut buf,
            );
            seq += 1;
        }
        f.write_all(&buf).map_err(io)?;
        f.sync_data().map_err(io)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds to reopen a table of `keys` keys from its WALs, then (after a checkpoint) from
/// its snapshots.
fn run_recovery(
    device: &Device,
    dir: &Path,
    cfg: &DurableBenchConfig,
) -> Result<(f64, f64), String> {
    let keys = uniform_keys(cfg.recovery_keys, 99);
    let config = TableConfig::new("recover").with_shards(cfg.shards);
    {
        let options = DurableOptions {
            fsync: FsyncPolicy::Never,
            create: true,
            checkpoint_bytes: u64::MAX,
        };
        let mut t = DurableTable::open(dir, device, config.clone(), &options).map_err(io)?;
        for c in keys.chunks(1 << 16) {
            let mut b = Batch::with_capacity(8, c.len());
            for &k in c {
                b.put(k, &value_of(k)).map_err(io)?;
            }
            t.apply(&b).map_err(io)?;
        }
        t.sync().map_err(io)?;
    }
    let options = DurableOptions::default();
    let start = Instant::now();
    let mut t = DurableTable::open(dir, device, config.clone(), &options).map_err(io)?;
    let from_wal = start.elapsed().as_secs_f64();
    if t.stats().items != keys.len() as u64 {
        return Err(format!(
            "recovered {} of {} keys",
            t.stats().items,
            keys.len()
        ));
    }
    t.checkpoint().map_err(io)?;
    drop(t);
    let start = Instant::now();
    let t = DurableTable::open(dir, device, config, &options).map_err(io)?;
    let from_snap = start.elapsed().as_secs_f64();
    if t.stats().items != keys.len() as u64 {
        return Err(format!(
            "recovered {} of {} keys from snapshots",
            t.stats().items,
            keys.len()
        ));
    }
    Ok((from_wal, from_snap))
}

/// Runs the bench in fresh directories under `work` (on the disk being measured).
pub fn run(
    device: &Device,
    cfg: &DurableBenchConfig,
    work: &Path,
    mut progress: impl FnMut(&str),
) -> Result<DurableReport, String> {
    // Seconds per run of each side: warpgrid with a table sized for the run, warpgrid with
    // a table that grows from empty, and the minimal loop.
    let mut secs: [Vec<f64>; 3] = Default::default();
    let keys = (cfg.batches * cfg.batch_ops) as u64;
    for r in 0..cfg.repeats {
        let bs = batches(cfg, 7 + r as u64);
        let dir = work.join(format!("warpgrid-durable-bench-{r}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Rotate which side goes first, so none always meets the disk in the same state.
        for k in 0..3 {
            let side = (r + k) % 3;
            progress(&format!(
                "run {}/{}: {}",
                r + 1,
                cfg.repeats,
                ["warpgrid (sized)", "warpgrid (growing)", "minimal WAL loop"][side]
            ));
            let t = match side {
                0 => run_warpgrid(device, &dir.join("sized"), cfg.shards, keys, &bs)?,
                1 => run_warpgrid(device, &dir.join("growing"), cfg.shards, 0, &bs)?,
                _ => run_limit(&dir.join("limit.wal"), &bs)?,
            };
            secs[side].push(t);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    progress("recovery");
    let dir = work.join("warpgrid-durable-bench-recovery");
    let _ = std::fs::remove_dir_all(&dir);
    let (from_wal, from_snap) = run_recovery(device, &dir, cfg)?;
    let _ = std::fs::remove_dir_all(&dir);
    let n = cfg.batches as f64;
    let rate = |s: &[f64]| n / super::median(s);
    let (sized, growing, limit) = (rate(&secs[0]), rate(&secs[1]), rate(&secs[2]));
    Ok(DurableReport {
        bench: "kv-durable",
        batches: cfg.batches,
        batch_ops: cfg.batch_ops,
        shards: cfg.shards,
        device: device.describe(),
        warpgrid_batches_per_s: sized,
        growing_batches_per_s: growing,
        limit_batches_per_s: limit,
        ratio: sized / limit,
        growing_ratio: growing / limit,
        bar: 0.8,
        bar_met: sized / limit >= 0.8,
        recovery_keys: cfg.recovery_keys,
        recovery_from_wal_s: from_wal,
        recovery_from_snapshots_s: from_snap,
    })
}

/// The report as the text `warpgrid bench` prints.
pub fn render(r: &DurableReport) -> String {
    format!(
        "kv durable: {} batches of {} PUTs (u64 -> 8 B), fsync always, {} shards\n\
         device: {}\n\
         warpgrid, sized   {:>9.1} batches/s ({:.0} PUT/s; table created with room for the run)\n\
         warpgrid, growing {:>9.1} batches/s ({:.0} PUT/s; table grows from empty)\n\
         minimal WAL       {:>9.1} batches/s (same records, one write + one fsync per batch, one file)\n\
         sized / limit   {:.2}x;  bar >= {:.1}x: {}\n\
         growing / limit {:.2}x  (the table's growth is not hidden behind the fsync)\n\
         recovery of {} keys: {:.3} s from the WAL, {:.3} s from snapshots\n",
        r.batches,
        r.batch_ops,
        r.shards,
        r.device,
        r.warpgrid_batches_per_s,
        r.warpgrid_batches_per_s * r.batch_ops as f64,
        r.growing_batches_per_s,
        r.growing_batches_per_s * r.batch_ops as f64,
        r.limit_batches_per_s,
        r.ratio,
        r.bar,
        if r.bar_met { "met" } else { "NOT met" },
        r.growing_ratio,
        r.recovery_keys,
        r.recovery_from_wal_s,
        r.recovery_from_snapshots_s
    )
}
