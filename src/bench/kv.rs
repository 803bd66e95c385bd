//! Table throughput (SPEC §7 row 1): a batch PUT then GET of N uniform random u64 keys to
//! 8-byte values, on warpgrid, on hashbrown (one thread, op by op) and on DashMap (every
//! thread of the same pool size), interleaved run by run so drift hits all three alike.
//!
//! Every system starts from an empty map with no capacity hint, so growth is part of the PUT
//! phase for all three. Every GET's answer is checked; a wrong answer fails the bench.
//! warpgrid's timing covers `Table::apply` only; building the batch (copying the keys and
//! values into its arrays) is timed separately and reported as `batch_build_s`.

use std::hint::black_box;
use std::time::Instant;

use dashmap::DashMap;
use hashbrown::HashMap;
use rayon::prelude::*;
use serde::Serialize;

use crate::workload::{uniform_keys, value_of};
use crate::{Batch, BatchResults, Device, Outcome, Table, TableConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct KvBenchConfig {
    /// Keys put then got (uniform random u64, 8-byte values).
    pub keys: usize,
    /// Shards of warpgrid's table.
    pub shards: u32,
    /// Measured repeats, the systems interleaved; figures are medians.
    pub repeats: usize,
    /// Seed of the keys.
    pub seed: u64,
}

impl KvBenchConfig {
    /// SPEC §7: 4M keys, 24 shards, median of 5.
    pub fn full() -> Self {
        KvBenchConfig {
            keys: 4_000_000,
            shards: 24,
            repeats: 5,
            seed: 42,
        }
    }

    /// A smoke run: 500k keys, median of 3.
    pub fn quick() -> Self {
        KvBenchConfig {
            keys: 500_000,
            repeats: 3,
            ..Self::full()
        }
    }
}

/// One system's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SystemResult {
    /// The system (`warpgrid` with its backend, `hashbrown`, `dashmap`).
    pub system: &'static str,
    /// Threads it ran on.
    pub threads: usize,
    /// Seconds of the PUT phase, per repeat.
    pub put_s: Vec<f64>,
    /// Seconds of the GET phase, per repeat.
    pub get_s: Vec<f64>,
    /// Million PUTs per second (median repeat).
    pub put_mops: f64,
    /// Million GETs per second (median repeat).
    pub get_mops: f64,
    /// Million operations per second over both phases (median times).
    pub total_mops: f64,
}

/// A ratio of warpgrid to one peer, and the bar it is held to.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// The peer (`hashbrown` or `dashmap`).
    pub peer: &'static str,
    /// warpgrid's PUT rate over the peer's.
    pub put: f64,
    /// warpgrid's GET rate over the peer's.
    pub get: f64,
    /// warpgrid's rate over both phases over the peer's; the figure held to the bar.
    pub total: f64,
    /// The bar: 1.5 against hashbrown, 2.0 against DashMap.
    pub bar: f64,
    /// Whether `total >= bar`.
    pub met: bool,
}

/// Everything the table bench measured (`warpgrid bench`), as its JSON report holds it.
#[derive(Debug, Clone, Serialize)]
pub struct KvReport {
    /// Always `kv`.
    pub bench: &'static str,
    /// Keys put then got.
    pub keys: usize,
    /// Bytes per value (8).
    pub value_bytes: usize,
    /// Shards of warpgrid's table.
    pub shards: u32,
    /// Measured repeats.
    pub repeats: usize,
    /// The device, as [`Device::describe`] gives it.
    pub device: String,
    /// Seconds to build warpgrid's PUT and GET batches (not part of its timing).
    pub batch_build_s: f64,
    /// Per system: warpgrid, hashbrown, DashMap.
    pub systems: Vec<SystemResult>,
    /// warpgrid against each peer.
    pub ratios: Vec<Ratio>,
}

fn mops(ops: usize, s: f64) -> f64 {
    ops as f64 / s / 1e6
}

/// The PUT and GET batches for `keys`.
pub fn build_batches(keys: &[u64]) -> (Batch, Batch) {
    let mut put = Batch::with_capacity(8, keys.len());
    let mut get = Batch::with_capacity(8, keys.len());
    for &k in keys {
        put.put(k, &value_of(k)).expect("generated keys are valid");
        get.get(k).expect("generated keys are valid");
    }
    (put, get)
}

/// One warpgrid run on a fresh table: (put seconds, get seconds). `results` is reused
/// across runs, as a batch user reuses it across batches.
pub fn run_warpgrid(
    device: &Device,
    shards: u32,
    put: &Batch,
    get: &Batch,
    results: &mut BatchResults,
) -> Result<(f64, f64), String> {
    let mut table = Table::create(device, TableConfig::new("bench").with_shards(shards))
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    table.apply_into(put, results).map_err(|e| e.to_string())?;
    let put_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    table.apply_into(get, results).map_err(|e| e.to_string())?;
    let get_s = t.elapsed().as_secs_f64();
    for (i, r) in results.iter().enumerate() {
        let want = value_of(get.keys()[i]);
        if r != Outcome::Value(&want) {
            return Err(format!("warpgrid returned {r:?} for key {}", get.keys()[i]));
        }
    }
    Ok((put_s, get_s))
}

/// One hashbrown run, op by op on one thread.
pub fn run_hashbrown(keys: &[u64]) -> Result<(f64, f64), String> {
    let t = Instant::now();
    let mut map: HashMap<u64, [u8; 8]> = HashMap::new();
    for &k in keys {
        map.insert(k, value_of(k));
    }
    let put_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut bad = 0usize;
    for &k in keys {
        bad += usize::from(black_box(map.get(&k)) != Some(&value_of(k)));
    }
    let get_s = t.elapsed().as_secs_f64();
    if bad != 0 {
        return Err(format!("hashbrown returned {bad} wrong values"));
    }
    Ok((put_s, get_s))
}

/// One DashMap run, op by op from every thread of `pool`.
pub fn run_dashmap(pool: &rayon::ThreadPool, keys: &[u64]) -> Result<(f64, f64), String> {
    pool.install(|| {
        let t = Instant::now();
        let map: DashMap<u64, [u8; 8]> = DashMap::new();
        keys.par_iter().for_each(|&k| {
            map.insert(k, value_of(k));
        });
        let put_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let bad: usize = keys
            .par_iter()
            .map(|&k| usize::from(map.get(&k).map(|v| *v) != Some(value_of(k))))
            .sum();
        let get_s = t.elapsed().as_secs_f64();
        if bad != 0 {
            return Err(format!("dashmap returned {bad} wrong values"));
        }
        Ok((put_s, get_s))
    })
}

/// Runs the three systems `repeats` times, interleaved, and reports medians and ratios.
pub fn run(
    device: &Device,
    cfg: &KvBenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<KvReport, String> {
    let keys = uniform_keys(cfg.keys, cfg.seed);
    let t = Instant::now();
    let (put, get) = build_batches(&keys);
    let batch_build_s = t.elapsed().as_secs_f64();
    let threads = device.threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let mut times: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    let mut results = BatchResults::new();
    for r in 0..cfg.repeats {
        progress(&format!("run {}/{}: warpgrid", r + 1, cfg.repeats));
        let (p, g) = run_warpgrid(device, cfg.shards, &put, &get, &mut results)?;
        times[0].0.push(p);
        times[0].1.push(g);
        progress(&format!("run {}/{}: hashbrown", r + 1, cfg.repeats));
        let (p, g) = run_hashbrown(&keys)?;
        times[1].0.push(p);
        times[1].1.push(g);
        progress(&format!("run {}/{}: dashmap", r + 1, cfg.repeats));
        let (p, g) = run_dashmap(&pool, &keys)?;
        times[2].0.push(p);
        times[2].1.push(g);
    }
    let n = cfg.keys;
    let systems: Vec<SystemResult> = [
        (super::warpgrid_label(device), threads),
        ("hashbrown", 1),
        ("dashmap", threads),
    ]
    .into_iter()
    .zip(times)
    .map(|((system, threads), (put_s, get_s))| {
        let (p, g) = (super::median(&put_s), super::median(&get_s));
        SystemResult {
            system,
            threads,
            put_mops: mops(n, p),
            get_mops: mops(n, g),
            total_mops: mops(2 * n, p + g),
            put_s,
            get_s,
        }
    })
    .collect();
    let ratio = |peer: usize, bar: f64| {
        let (w, o) = (&systems[0], &systems[peer]);
        let total = w.total_mops / o.total_mops;
        Ratio {
            peer: o.system,
            put: w.put_mops / o.put_mops,
            get: w.get_mops / o.get_mops,
            total,
            bar,
            met: total >= bar,
        }
    };
    let ratios = vec![ratio(1, 1.5), ratio(2, 2.0)];
    Ok(KvReport {
        bench: "kv",
        keys: n,
        value_bytes: 8,
        shards: cfg.shards,
        repeats: cfg.repeats,
        device: device.describe(),
        batch_build_s,
        systems,
        ratios,
    })
}

/// The report as a text table.
pub fn render(r: &KvReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "kv: batch PUT then GET of {} uniform u64 keys -> {} B values, {} shards, median of {}",
        r.keys, r.value_bytes, r.shards, r.repeats
    );
    let _ = writeln!(s, "device: {}", r.device);
    let _ = writeln!(
        s,
        "{:<14} {:>7} {:>12} {:>12} {:>12}",
        "system", "threads", "put Mops/s", "get Mops/s", "all Mops/s"
    );
    for x in &r.systems {
        let _ = writeln!(
            s,
            "{:<14} {:>7} {:>12.2} {:>12.2} {:>12.2}",
            x.system, x.threads, x.put_mops, x.get_mops, x.total_mops
        );
    }
    for q in &r.ratios {
        let _ = writeln!(
            s,
            "warpgrid / {:<9}  put {:>5.2}x  get {:>5.2}x  all {:>5.2}x   bar >= {:.1}x: {}",
            q.peer,
            q.put,
            q.get,
            q.total,
            q.bar,
            if q.met { "met" } else { "NOT met" }
        );
    }
    let _ = writeln!(
        s,
        "(building the two warpgrid batches took {:.3} s, not included above)",
        r.batch_build_s
    );
    s
}
