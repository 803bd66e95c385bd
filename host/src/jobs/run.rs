//! Runs a [`Job`]: each table behind its own submission queue, YCSB steps as pipelined
//! client threads, every read checked, braids on the device's worker pool, and a report of
//! throughput and latency (and, for braids, their statistics and digests).

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use warpgrid_engine::braid::{Braid, BraidStats};
use warpgrid_engine::rng::SplitMix64;
use warpgrid_engine::{Batch, Device, Outcome, Table, TableConfig};

use super::{Job, JobError, Step};
use crate::OpsReader;
use crate::braidfile::load_braid_config;
use crate::cache::CacheConfig;
use crate::metrics::{Histogram, HistogramSnapshot, Registry};
use crate::queue::{Client, Queue, QueueConfig, Ticket};
use crate::ycsb::{Distribution, Workload, YcsbOp, fill_value, key_of, value_version};

/// Where a job is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// 1-based step number, of `steps`.
    pub step: usize,
    pub steps: usize,
    pub label: &'a str,
    pub done: u64,
    pub total: u64,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub kind: &'static str,
    pub label: String,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_s: f64,
    /// Per operation, measured by the client from submission to result (YCSB runs).
    pub latency_ns: Option<HistogramSnapshot>,
    pub note: Option<String>,
    /// Braid steps: the braid's statistics at the end of the step (absent for other steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub braid: Option<BraidStepReport>,
}

/// What a braid step ended with: the fields of `warpgrid braid run --json` (SPEC §5) that
/// identify a run, plus the events it processed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BraidStepReport {
    /// The braid config, as resolved against the job file's directory.
    pub config: String,
    pub now: u32,
    pub interval: u32,
    pub exchanges: u64,
    pub boundary_violations: u64,
    pub global_violations: u64,
    pub hash_mismatches: u64,
    pub corrective_events: u64,
    pub corrective_dropped: u64,
    pub critical: u64,
    /// Over all tori.
    pub events_processed: u64,
    pub events_dropped: u64,
    /// Events per second of the braid's processing wall time (exchanges excluded).
    pub events_per_s: f64,
    pub tori: Vec<BraidTorusReport>,
}

/// One torus at the end of a braid step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BraidTorusReport {
    /// FNV-1a 64 digest (SPEC §3.1) as 16 lowercase hex digits.
    pub digest: String,
    pub events_processed: u64,
    pub events_dropped: u64,
    pub pending: u64,
    pub processes: u32,
    pub edges: u32,
}

impl BraidStepReport {
    pub fn new(config: String, s: &BraidStats) -> BraidStepReport {
        BraidStepReport {
            config,
            now: s.now,
            interval: s.interval,
            exchanges: s.exchanges,
            boundary_violations: s.boundary_violations,
            global_violations: s.global_violations,
            hash_mismatches: s.hash_mismatches,
            corrective_events: s.corrective_events,
            corrective_dropped: s.corrective_dropped,
            critical: s.critical,
            events_processed: s.events_processed(),
            events_dropped: s.events_dropped(),
            events_per_s: s.latency.events_per_sec,
            tori: s
                .tori
                .iter()
                .map(|t| BraidTorusReport {
                    digest: format!("{:016x}", t.digest),
                    events_processed: t.events_processed,
                    events_dropped: t.events_dropped,
                    pending: t.pending,
                    processes: t.processes,
                    edges: t.edges,
                })
                .collect(),
        }
    }
}

/// A table at the end of the job.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub name: String,
    pub items: u64,
    pub load_factor: f64,
    pub cv: f64,
    pub resizes: u64,
    pub links: u64,
    /// Host cache hits / lookups, when the cache was on.
    pub cache_hit_rate: Option<f64>,
}

/// The report of a whole job.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub name: String,
    pub device: String,
    pub steps: Vec<StepReport>,
    pub tables: Vec<TableReport>,
    /// Every metric of the run (the registry's JSON snapshot).
    pub metrics: serde_json::Value,
}

struct Ctx<'a> {
    file: &'a str,
    base: &'a Path,
    device: &'a Device,
    registry: &'a Registry,
    queues: BTreeMap<String, (Queue, bool)>,
}

/// Runs `job` (read from `file`, whose directory resolves relative paths) on `device`,
/// with metrics in `registry`, calling `progress` as work completes.
pub fn run_job(
    job: &Job,
    file: &str,
    device: &Device,
    registry: &Registry,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<JobReport, JobError> {
    let base = Path::new(file).parent().unwrap_or(Path::new("."));
    let mut ctx = Ctx {
        file,
        base,
        device,
        registry,
        queues: BTreeMap::new(),
    };
    let mut steps = Vec::new();
    let n = job.steps.len();
    for (i, step) in job.steps.iter().enumerate() {
        let err = |message: String| JobError::Step {
            file: file.to_owned(),
            step: i + 1,
            kind: step.kind(),
            message,
        };
        let mut report = |label: &str, done: u64, total: u64| {
            progress(Progress {
                step: i + 1,
                steps: n,
                label,
                done,
                total,
            });
        };
        let r = run_step(&mut ctx, i + 1, step, &mut report).map_err(err)?;
        steps.push(r);
    }
    let mut tables = Vec::new();
    for (name, (queue, cache)) in std::mem::take(&mut ctx.queues) {
        let table = queue.shutdown().map_err(|e| JobError::Step {
            file: file.to_owned(),
            step: n,
            kind: "finish",
            message: format!("table {name}: {e}"),
        })?;
        let st = table.table().stats();
        let labels = [("table", name.as_str())];
        let hits = registry
            .counter_with(
                "warpgrid_cache_hits_total",
                "gets answered by the host cache",
                &labels,
            )
            .get();
        let lookups = registry
            .counter_with(
                "warpgrid_cache_lookups_total",
                "gets looked up in the host cache",
                &labels,
            )
            .get();
        tables.push(TableReport {
            name,
            items: st.items,
            load_factor: st.load_factor,
            cv: st.cv,
            resizes: st.resizes,
            links: st.links,
            cache_hit_rate: (cache && lookups > 0).then(|| hits as f64 / lookups as f64),
        });
    }
    Ok(JobReport {
        name: job.name.clone().unwrap_or_else(|| file.to_owned()),
        device: device.describe(),
        steps,
        tables,
        metrics: registry.snapshot_json(),
    })
}

fn run_step(
    ctx: &mut Ctx<'_>,
    index: usize,
    step: &Step,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<StepReport, String> {
    let start = Instant::now();
    let finish_at = |label: String,
                     ops: u64,
                     latency: Option<HistogramSnapshot>,
                     note: Option<String>,
                     end: Instant| {
        let seconds = end.duration_since(start).as_secs_f64();
        StepReport {
            step: index,
            kind: step.kind(),
            label,
            ops,
            seconds,
            ops_per_s: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            latency_ns: latency,
            note,
            braid: None,
        }
    };
    let finish =
        |label: String, ops: u64, latency: Option<HistogramSnapshot>, note: Option<String>| {
            finish_at(label, ops, latency, note, Instant::now())
        };
    match step {
        Step::CreateTable {
            table,
            shards,
            value_bytes,
            capacity,
            max_load,
            cache,
        } => {
            if ctx.queues.contains_key(table) {
                return Err(format!("table {table:?} already exists in this job"));
            }
            let config = TableConfig::new(table.clone())
                .with_shards(*shards)
                .with_value_bytes(*value_bytes)
                .with_capacity(*capacity)
                .with_max_load(*max_load);
            let t = Table::create(ctx.device, config).map_err(|e| e.to_string())?;
            let cache_on = cache.unwrap_or(ctx.device.kind() != warpgrid_engine::BackendKind::Cpu);
            let qc = QueueConfig {
                cache: CacheConfig {
                    enabled: Some(cache_on),
                    ..CacheConfig::default()
                },
                ..QueueConfig::default()
            };
            let queue = Queue::start(t, qc, ctx.registry);
            ctx.queues.insert(table.clone(), (queue, cache_on));
            Ok(finish(
                format!("create table {table}: {shards} shards, {value_bytes} B values"),
                0,
                None,
                None,
            ))
        }
        Step::ApplyOps { table, ops, batch } => {
            let queue = queue_of(ctx, table)?;
            let path = ctx.base.join(ops);
            let file = std::fs::File::open(&path)
                .map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
            let total = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut reader = OpsReader::new(
                file,
                path.display().to_string(),
                queue.value_bytes(),
                (*batch).max(1),
            );
            let (mut n, mut b) = (0u64, queue.batch());
            loop {
                let more = reader.next_batch(&mut b).map_err(|e| e.to_string())?;
                if !b.is_empty() {
                    n += b.len() as u64;
                    let done = std::mem::replace(&mut b, queue.batch());
                    queue.apply(done).map_err(|e| e.to_string())?;
                    progress(&format!("apply {ops}"), n, total.max(n));
                }
                if !more {
                    break;
                }
            }
            Ok(finish(format!("apply {ops} to {table}"), n, None, None))
        }
        Step::YcsbLoad {
            table,
            workload,
            records,
        } => {
            let queue = queue_of(ctx, table)?;
            let w: Workload = workload.parse().map_err(|e| format!("{e}"))?;
            let spec = w.spec().with_counts((*records).max(1), 1);
            let vb = queue.value_bytes();
            let mut batch = Batch::with_capacity(vb, 1 << 16);
            let mut value = vec![0u8; vb];
            let mut done = 0u64;
            for op in spec.load() {
                if let YcsbOp::Insert { key, version } = op {
                    fill_value(key, version, &mut value);
                    batch.put(key, &value).map_err(|e| e.to_string())?;
                }
                if batch.len() == 1 << 16 {
                    done += batch.len() as u64;
                    queue
                        .apply(std::mem::replace(
                            &mut batch,
                            Batch::with_capacity(vb, 1 << 16),
                        ))
                        .map_err(|e| e.to_string())?;
                    progress(&format!("ycsb load {w}"), done, *records);
                }
            }
            done += batch.len() as u64;
            if !batch.is_empty() {
                queue.apply(batch).map_err(|e| e.to_string())?;
            }
            progress(&format!("ycsb load {w}"), done, *records);
            Ok(finish(
                format!("ycsb-{w} load: {records} records into {table}"),
                done,
                None,
                None,
            ))
        }
        Step::YcsbRun {
            table,
            workload,
            records,
            operations,
            clients,
            window,
            seed,
            distribution,
            scan,
        } => {
            let queue = queue_of(ctx, table)?;
            let w: Workload = workload.parse().map_err(|e| format!("{e}"))?;
            let clients = (*clients).max(1);
            let per = (*operations / clients as u64).max(1);
            let mut spec = w.spec().with_counts((*records).max(1), per);
            if let Some(d) = distribution {
                spec.distribution = d.parse::<Distribution>().map_err(|e| format!("{e}"))?;
            }
            let emulate_scans = match scan.as_deref() {
                None => false,
                Some("emulate-point-reads") => true,
                Some(other) => {
                    return Err(format!(
                        "scan = {other:?}: the only choice is \"emulate-point-reads\""
                    ));
                }
            };
            if spec.scan > 0.0 && !emulate_scans {
                return Err(format!(
                    "workload {w} is {:.0}% range scans, and shard tables have no key order or range scan; \
                     set scan = \"emulate-point-reads\" to run each scan as that many point reads (reported as an emulation)",
                    spec.scan * 100.0
                ));
            }
            spec.validate().map_err(|e| format!("{e}"))?;
            let latency = ctx.registry.histogram_with(
                "warpgrid_job_op_latency_ns",
                "per YCSB operation, from submission to result, measured by the client",
                &[("step", &index.to_string())],
            );
            let done = AtomicU64::new(0);
            let total = per * clients as u64;
            let label = format!("ycsb-{w} run");
            let outcome: Result<(u64, Instant), String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..clients)
                    .map(|c| {
                        let (queue, spec, latency, done) =
                            (queue.clone(), &spec, latency.clone(), &done);
                        let client_seed = seed.wrapping_mul(1_000_003).wrapping_add(c as u64);
                        s.spawn(move || {
                            let stream = spec.stream(client_seed).map_err(|e| format!("{e}"))?;
                            let mut runner = YcsbClient::new(
                                queue.client(),
                                queue.value_bytes(),
                                *window,
                                latency,
                                client_seed,
                                *records,
                            );
                            for op in stream {
                                runner.issue(op)?;
                                if runner.issued.is_multiple_of(1024) {
                                    done.fetch_add(1024, Ordering::Relaxed);
                                }
                            }
                            runner.drain()?;
                            Ok::<(u64, Instant), String>((runner.issued, Instant::now()))
                        })
                    })
                    .collect();
                let mut ops = 0;
                let mut end = start;
                let mut first_error = None;
                loop {
                    let finished = handles.iter().all(|h| h.is_finished());
                    progress(&label, done.load(Ordering::Relaxed).min(total), total);
                    if finished {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                for h in handles {
                    match h
                        .join()
                        .map_err(|_| "a client thread panicked".to_string())
                        .and_then(|r| r)
                    {
                        Ok((n, at)) => {
                            ops += n;
                            end = end.max(at);
                        }
                        Err(e) => first_error = first_error.or(Some(e)),
                    }
                }
                first_error.map_or(Ok((ops, end)), Err)
            });
            let (ops, end) = outcome?;
            progress(&label, total, total);
            let note = emulate_scans.then(|| {
                "scans emulated as point reads of random loaded records (tables have no range scan): \
                 not comparable to YCSB-E figures"
                    .to_string()
            });
            Ok(finish_at(
                format!(
                    "ycsb-{w} run: {ops} ops, {clients} clients x {window} in flight, {}",
                    spec.distribution
                ),
                ops,
                Some(latency.snapshot()),
                note,
                end,
            ))
        }
        Step::BraidRun { config, instants } => {
            let path = ctx.base.join(config);
            let shown = path.display().to_string();
            let mut bc = load_braid_config(&path).map_err(|e| e.to_string())?;
            if let Some(n) = *instants {
                bc.instants = n;
                bc.validate()
                    .map_err(|e| format!("instants = {n} (the step's): {e}"))?;
            }
            let fail = |e: warpgrid_engine::braid::BraidError| format!("{shown}: {e}");
            let mut braid = Braid::new_on(ctx.device, &bc).map_err(fail)?;
            let target = bc.instants;
            let [x, y, z] = bc.torus.dims;
            let label = format!("braid {config}: {} tori of {x}x{y}x{z}", bc.tori);
            // About a hundred calls, so progress moves; the result does not depend on them.
            let chunk = (target / 100).max(1);
            let mut at = 0u32;
            progress(&label, 0, target as u64);
            while at < target {
                at = at.saturating_add(chunk).min(target);
                braid.run_until_on(ctx.device, at).map_err(fail)?;
                progress(&label, at as u64, target as u64);
            }
            let end = Instant::now();
            let stats = braid.stats();
            record_braid_metrics(ctx.registry, index, &stats);
            let mut report = finish_at(
                format!("{label}, to instant {target}"),
                stats.events_processed(),
                None,
                None,
                end,
            );
            report.braid = Some(BraidStepReport::new(shown, &stats));
            Ok(report)
        }
    }
}

/// A braid step's counters as metrics, labelled with the step number.
fn record_braid_metrics(registry: &Registry, step: usize, s: &BraidStats) {
    let step = step.to_string();
    let labels = [("step", step.as_str())];
    for (name, help, value) in [
        (
            "warpgrid_braid_events_total",
            "events processed by a braid step, all tori",
            s.events_processed(),
        ),
        (
            "warpgrid_braid_events_dropped_total",
            "events dropped at max_pending by a braid step, all tori",
            s.events_dropped(),
        ),
        (
            "warpgrid_braid_exchanges_total",
            "projection exchanges of a braid step",
            s.exchanges,
        ),
        (
            "warpgrid_braid_boundary_violations_total",
            "boundary violations found by a braid step's exchanges",
            s.boundary_violations,
        ),
        (
            "warpgrid_braid_global_violations_total",
            "global violations found by a braid step's exchanges",
            s.global_violations,
        ),
    ] {
        registry.counter_with(name, help, &labels).add(value);
    }
    registry
        .gauge_with(
            "warpgrid_braid_events_per_second",
            "events per second of a braid step's processing wall time",
            &labels,
        )
        .set(s.latency.events_per_sec);
}

fn queue_of(ctx: &Ctx<'_>, table: &str) -> Result<Queue, String> {
    ctx.queues
        .get(table)
        .map(|(q, _)| q.clone())
        .ok_or_else(|| {
            format!(
                "no table {table:?}: create it in an earlier create_table step ({})",
                ctx.file
            )
        })
}

/// What a finished ticket must show.
#[derive(Clone, Copy)]
enum Check {
    /// A read of a key the workload wrote: a value it wrote for that key.
    Read(u64),
    Write,
}

/// One pipelining YCSB client.
struct YcsbClient {
    client: Client,
    value: Vec<u8>,
    window: usize,
    /// Tickets in flight; the last ticket of an operation carries its start time.
    inflight: VecDeque<(Ticket, Check, Option<Instant>)>,
    ops_in_flight: usize,
    latency: Histogram,
    rng: SplitMix64,
    records: u64,
    issued: u64,
}

impl YcsbClient {
    fn new(
        client: Client,
        value_bytes: usize,
        window: usize,
        latency: Histogram,
        seed: u64,
        records: u64,
    ) -> Self {
        YcsbClient {
            client,
            value: vec![0; value_bytes],
            window: window.max(1),
            inflight: VecDeque::new(),
            ops_in_flight: 0,
            latency,
            rng: SplitMix64::new(seed ^ 0x5CA2_0000),
            records: records.max(1),
            issued: 0,
        }
    }

    fn read(&mut self, key: u64, start: Option<Instant>) -> Result<(), String> {
        let t = self.client.get(key).map_err(|e| e.to_string())?;
        self.inflight.push_back((t, Check::Read(key), start));
        Ok(())
    }

    fn write(&mut self, key: u64, version: u64, start: Option<Instant>) -> Result<(), String> {
        fill_value(key, version, &mut self.value);
        let t = self
            .client
            .put(key, &self.value)
            .map_err(|e| e.to_string())?;
        self.inflight.push_back((t, Check::Write, start));
        Ok(())
    }

    fn issue(&mut self, op: YcsbOp) -> Result<(), String> {
        let start = Some(Instant::now());
        match op {
            YcsbOp::Read { key } => self.read(key, start)?,
            YcsbOp::Update { key, version } | YcsbOp::Insert { key, version } => {
                self.write(key, version, start)?
            }
            YcsbOp::ReadModifyWrite { key, version } => {
                self.read(key, None)?;
                self.write(key, version, start)?;
            }
            YcsbOp::Scan { start: first, len } => {
                // The emulation: the start record, then len - 1 random loaded records.
                for _ in 1..len {
                    let k = key_of(self.rng.below(self.records));
                    self.read(k, None)?;
                }
                self.read(first, start)?;
            }
        }
        self.issued += 1;
        self.ops_in_flight += 1;
        while self.ops_in_flight >= self.window {
            self.complete_one()?;
        }
        Ok(())
    }

    /// Waits for the oldest operation's tickets.
    fn complete_one(&mut self) -> Result<(), String> {
        while let Some((t, check, start)) = self.inflight.pop_front() {
            let outcome = self.client.wait(t).map_err(|e| e.to_string())?;
            match (check, outcome) {
                (Check::Write, Outcome::Ok) => {}
                (Check::Read(key), Outcome::Value(v)) if value_version(key, v).is_some() => {}
                (Check::Read(key), other) => {
                    return Err(format!("read of key {key} returned {other:?}"));
                }
                (Check::Write, other) => return Err(format!("a write returned {other:?}")),
            }
            if let Some(s) = start {
                self.latency.record_duration(s.elapsed());
                self.ops_in_flight -= 1;
                return Ok(());
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), String> {
        while self.ops_in_flight > 0 {
            self.complete_one()?;
        }
        Ok(())
    }
}
