//! Many clients, single operations (SPEC §7 row 2): N client threads each keep up to
//! `window` single operations in flight through the host submission queue, on a YCSB
//! workload (B by default: 95 % read, 5 % update, zipfian); beside them, in the same run, the
//! same threads issue the same operations straight into a DashMap.
//!
//! Each client's operations are generated before the clock starts (YCSB's scrambled
//! zipfian costs a `powf` per draw, which would otherwise be part of both figures). Every
//! read's value is checked to be one the workload wrote for that key.

use std::collections::VecDeque;
use std::sync::Barrier;
use std::time::Instant;

use dashmap::DashMap;
use serde::Serialize;
use warpgrid_host::metrics::Registry;
use warpgrid_host::queue::{Queue, QueueConfig, Ticket};
use warpgrid_host::ycsb::{Workload, YcsbOp, fill_value, value_version};

use crate::{Batch, Device, Outcome, Table, TableConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct ClientsBenchConfig {
    /// Client threads.
    pub clients: usize,
    /// Single operations each client keeps in flight.
    pub window: usize,
    /// Records loaded before the run (key numbers `0..records`).
    pub records: u64,
    /// Operations in all, split evenly over the clients.
    pub ops: u64,
    /// The YCSB workload (B by default).
    pub workload: Workload,
    /// Measured repeats, the queue and DashMap interleaved.
    pub repeats: usize,
    /// Seed of the operation streams (client `i` draws from `seed + i`).
    pub seed: u64,
}

impl ClientsBenchConfig {
    /// SPEC §7 row 2: 24 clients, 256 in flight each, YCSB-B over 1M records.
    pub fn full(clients: usize) -> Self {
        ClientsBenchConfig {
            clients,
            window: 256,
            records: 1_000_000,
            ops: 4_800_000,
            workload: Workload::B,
            repeats: 3,
            seed: 7,
        }
    }

    /// A smoke run: 100k records, 480k operations, one repeat.
    pub fn quick(clients: usize) -> Self {
        ClientsBenchConfig {
            records: 100_000,
            ops: 480_000,
            repeats: 1,
            ..Self::full(clients)
        }
    }
}

/// Everything the many-clients bench measured (`warpgrid bench`), as its JSON report holds
/// it.
#[derive(Debug, Clone, Serialize)]
pub struct ClientsReport {
    /// Always `kv-clients`.
    pub bench: &'static str,
    /// The workload, as `ycsb-b` and the like.
    pub workload: String,
    /// Client threads.
    pub clients: usize,
    /// Single operations each client keeps in flight.
    pub window: usize,
    /// Records loaded.
    pub records: u64,
    /// Operations run per repeat, all clients together.
    pub ops: u64,
    /// Measured repeats.
    pub repeats: usize,
    /// The device, as [`Device::describe`] gives it.
    pub device: String,
    /// Seconds per repeat through the queue.
    pub queue_s: Vec<f64>,
    /// Seconds per repeat into the DashMap.
    pub dashmap_s: Vec<f64>,
    /// Million operations per second through the queue (median repeat).
    pub queue_mops: f64,
    /// Million operations per second into the DashMap (median repeat).
    pub dashmap_mops: f64,
    /// `queue_mops / dashmap_mops`.
    pub ratio: f64,
    /// SPEC §7: at least 10M ops/s through the queue on the 2-core box.
    pub bar_mops: f64,
    /// Whether `queue_mops >= bar_mops`.
    pub bar_met: bool,
    /// Batches the queue ran in the last repeat.
    pub queue_batches: u64,
    /// Median operation latency through the queue in the last repeat (ns).
    pub latency_ns_p50: u64,
    /// 99th percentile operation latency through the queue in the last repeat (ns).
    pub latency_ns_p99: u64,
}

/// One client's operations: reads and writes of keys (YCSB updates and inserts are writes).
#[derive(Clone, Copy)]
struct Op {
    key: u64,
    write: Option<u64>,
}

fn client_ops(cfg: &ClientsBenchConfig) -> Result<Vec<Vec<Op>>, String> {
    let per = cfg.ops / cfg.clients as u64;
    (0..cfg.clients)
        .map(|c| {
            let spec = cfg.workload.spec().with_counts(cfg.records, per);
            let stream = spec.stream(cfg.seed + c as u64).map_err(|e| e.to_string())?;
            stream
                .map(|op| match op {
                    YcsbOp::Read { key } => Ok(Op { key, write: None }),
                    YcsbOp::Update { key, version } | YcsbOp::Insert { key, version } => {
                        Ok(Op { key, write: Some(version) })
                    }
                    other => Err(format!(
                        "workload {} issues {:?}, which this bench does not run (only reads, updates, inserts)",
                        cfg.workload,
                        other.kind()
                    )),
                })
                .collect()
        })
        .collect()
}

fn value(key: u64, version: u64) -> [u8; 8] {
    let mut v = [0u8; 8];
    fill_value(key, version, &mut v);
    v
}

/// Runs `client` on one thread per client's operations, all released together. Returns the
/// seconds from the release until the last thread ended, and the sum of the wrong answers
/// the threads counted.
fn timed_clients(ops: &[Vec<Op>], client: impl Fn(&[Op]) -> usize + Sync) -> (f64, usize) {
    let barrier = Barrier::new(ops.len() + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = ops
            .iter()
            .map(|mine| {
                let (barrier, client) = (&barrier, &client);
                s.spawn(move || {
                    barrier.wait();
                    client(mine)
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let bad = workers
            .into_iter()
            .map(|w| w.join().expect("client thread"))
            .sum();
        (t.elapsed().as_secs_f64(), bad)
    })
}

/// One run through the queue: seconds, and the queue's batch count.
fn run_queue(
    device: &Device,
    cfg: &ClientsBenchConfig,
    ops: &[Vec<Op>],
) -> Result<(f64, u64, u64, u64), String> {
    let mut table =
        Table::create(device, TableConfig::new("clients")).map_err(|e| e.to_string())?;
    let spec = cfg.workload.spec().with_counts(cfg.records, 1);
    let mut load = Batch::with_capacity(8, cfg.records as usize);
    for op in spec.load() {
        if let YcsbOp::Insert { key, version } = op {
            load.put(key, &value(key, version))
                .map_err(|e| e.to_string())?;
        }
    }
    table.apply(&load).map_err(|e| e.to_string())?;
    let registry = Registry::new();
    let queue = Queue::start(table, QueueConfig::default(), &registry);
    let (secs, bad) = timed_clients(ops, |mine| {
        let mut c = queue.client();
        let mut window: VecDeque<(Ticket, Op)> = VecDeque::with_capacity(cfg.window);
        let mut bad = 0usize;
        let mut check = |c: &mut warpgrid_host::queue::Client, t: Ticket, op: Op| {
            let o = c.wait(t).expect("the queue completes every ticket");
            bad += usize::from(match (op.write, o) {
                (Some(_), Outcome::Ok) => false,
                (None, Outcome::Value(v)) => value_version(op.key, v).is_none(),
                _ => true,
            });
        };
        for &op in mine {
            let t = match op.write {
                Some(version) => c.put(op.key, &value(op.key, version)),
                None => c.get(op.key),
            }
            .expect("valid operations");
            window.push_back((t, op));
            if window.len() >= cfg.window {
                let (t, op) = window.pop_front().expect("non-empty");
                check(&mut c, t, op);
            }
        }
        while let Some((t, op)) = window.pop_front() {
            check(&mut c, t, op);
        }
        bad
    });
    let labels = [("table", "clients")];
    let batches = registry
        .counter_with(
            "warpgrid_queue_batches_total",
            "engine batches launched",
            &labels,
        )
        .get();
    let lat = registry
        .histogram_with(
            "warpgrid_queue_op_latency_ns",
            "nanoseconds from an operation's submission to its completion",
            &labels,
        )
        .snapshot();
    queue.shutdown().map_err(|e| e.to_string())?;
    if bad != 0 {
        return Err(format!(
            "{bad} operations through the queue returned a wrong result"
        ));
    }
    Ok((secs, batches, lat.p50, lat.p99))
}

/// One run straight into DashMap, same threads, same operations.
fn run_dashmap(cfg: &ClientsBenchConfig, ops: &[Vec<Op>]) -> Result<f64, String> {
    let map: DashMap<u64, [u8; 8]> = DashMap::new();
    let spec = cfg.workload.spec().with_counts(cfg.records, 1);
    for op in spec.load() {
        if let YcsbOp::Insert { key, version } = op {
            map.insert(key, value(key, version));
        }
    }
    let (secs, bad) = timed_clients(ops, |mine| {
        let mut bad = 0usize;
        for &op in mine {
            match op.write {
                Some(version) => {
                    map.insert(op.key, value(op.key, version));
                }
                None => {
                    let ok = map
                        .get(&op.key)
                        .is_some_and(|v| value_version(op.key, &*v).is_some());
                    bad += usize::from(!ok);
                }
            }
        }
        bad
    });
    if bad != 0 {
        return Err(format!("{bad} DashMap reads returned a wrong result"));
    }
    Ok(secs)
}

/// Runs both, interleaved, `repeats` times.
pub fn run(
    device: &Device,
    cfg: &ClientsBenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<ClientsReport, String> {
    if cfg.clients == 0 || cfg.window == 0 {
        return Err("clients and window must be at least 1".into());
    }
    progress("generating operations");
    let ops = client_ops(cfg)?;
    let total: u64 = ops.iter().map(|o| o.len() as u64).sum();
    let (mut queue_s, mut dashmap_s) = (Vec::new(), Vec::new());
    let (mut batches, mut p50, mut p99) = (0, 0, 0);
    for r in 0..cfg.repeats {
        progress(&format!("run {}/{}: queue", r + 1, cfg.repeats));
        let (s, b, l50, l99) = run_queue(device, cfg, &ops)?;
        queue_s.push(s);
        (batches, p50, p99) = (b, l50, l99);
        progress(&format!("run {}/{}: dashmap", r + 1, cfg.repeats));
        dashmap_s.push(run_dashmap(cfg, &ops)?);
    }
    let q = total as f64 / super::median(&queue_s) / 1e6;
    let d = total as f64 / super::median(&dashmap_s) / 1e6;
    Ok(ClientsReport {
        bench: "kv-clients",
        workload: format!("ycsb-{}", cfg.workload),
        clients: cfg.clients,
        window: cfg.window,
        records: cfg.records,
        ops: total,
        repeats: cfg.repeats,
        device: device.describe(),
        queue_s,
        dashmap_s,
        queue_mops: q,
        dashmap_mops: d,
        ratio: q / d,
        bar_mops: 10.0,
        bar_met: q >= 10.0,
        queue_batches: batches,
        latency_ns_p50: p50,
        latency_ns_p99: p99,
    })
}

/// The report as the text `warpgrid bench` prints.
pub fn render(r: &ClientsReport) -> String {
    format!(
        "kv --clients: {} clients x {} in flight, {} over {} records, {} single ops, median of {}\n\
         device: {}\n\
         queue    {:>8.2} Mops/s   ({} batches in the last run, op latency p50 {} us, p99 {} us)\n\
         dashmap  {:>8.2} Mops/s   (same threads, same operations, direct calls)\n\
         queue / dashmap {:.2}x;  bar >= {:.0} Mops/s through the queue: {}\n",
        r.clients,
        r.window,
        r.workload,
        r.records,
        r.ops,
        r.repeats,
        r.device,
        r.queue_mops,
        r.queue_batches,
        r.latency_ns_p50 / 1000,
        r.latency_ns_p99 / 1000,
        r.dashmap_mops,
        r.ratio,
        r.bar_mops,
        if r.bar_met { "met" } else { "NOT met" }
    )
}
