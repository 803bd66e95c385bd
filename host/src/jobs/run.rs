//! Runs a [`Job`]: each table behind its own submission queue, YCSB steps as pipelined
//! client threads, every read checked, braids on the device's worker pool, and a report of
//! throughput and latency (and, for braids, their statistics, digests and exchange history;
//! for graphs, recall statistics), with each table's per-shard load at the end.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use warpgrid_engine::braid::{Braid, BraidStats};
use warpgrid_engine::graph::{Graph, GraphConfig, RecallMode, RecallParams, generate};
use warpgrid_engine::rng::SplitMix64;
use warpgrid_engine::{Batch, Device, Outcome, Table, TableConfig};

use super::{Job, JobError, Step};
use crate::OpsReader;
use crate::braidfile::load_braid_config;
use crate::cache::CacheConfig;
use crate::metrics::{Histogram, HistogramSnapshot, Registry};

/// The latency histogram of job step `step`'s operations (YCSB operations, or recalls),
/// from submission to result as the client measures it: the `warpgrid_job_op_latency_ns`
/// series labelled with the step.
pub fn op_latency(registry: &Registry, step: usize) -> Histogram {
    registry.histogram_with(
        "warpgrid_job_op_latency_ns",
        "per job operation (a YCSB operation or a recall), from submission to result, \
         measured by the client",
        &[("step", &step.to_string())],
    )
}
use crate::queue::{Client, Queue, QueueConfig, Ticket};
use crate::recall::{PendingRecall, RecallQueue, RecallQueueConfig};
use crate::ycsb::{Distribution, Workload, YcsbOp, fill_value, fnv1a64, key_of, value_version};

/// Where a job is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// 1-based step number, of `steps`.
    pub step: usize,
    /// Steps in the job.
    pub steps: usize,
    /// What the step is doing now.
    pub label: &'a str,
    /// Work done of `total` (operations, events, instants: the step's own unit).
    pub done: u64,
    /// Work the step will do.
    pub total: u64,
}

/// What one step did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based step number.
    pub step: usize,
    /// The step's `kind` in the job file.
    pub kind: &'static str,
    /// What the step did, in words.
    pub label: String,
    /// Operations done: table operations, braid events processed, or recalls.
    pub ops: u64,
    /// Wall time of the step (a graph step: of its recalls, the graph's build excluded).
    pub seconds: f64,
    /// `ops / seconds`.
    pub ops_per_s: f64,
    /// Per operation, measured by the client from submission to result (YCSB runs).
    /// YCSB runs and graph recalls; in the metrics as `warpgrid_job_op_latency_ns{step}`.
    pub latency_ns: Option<HistogramSnapshot>,
    /// A caveat about the figures (emulated scans).
    pub note: Option<String>,
    /// Braid steps: the braid's statistics at the end of the step (absent for other steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub braid: Option<BraidStepReport>,
    /// Graph steps: the graph and its recalls (absent for other steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphStepReport>,
}

/// What a graph step recalled from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphStepReport {
    /// The `.wgraph` file as resolved, or the generator and its parameters.
    pub source: String,
    /// Nodes of the graph.
    pub nodes: usize,
    /// Directed edges.
    pub edges: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Seconds to load or generate the graph and prepare it on the device.
    pub build_s: f64,
    /// `similarity`, `spreading` or `hybrid`.
    pub mode: &'static str,
    /// Recalls done.
    pub recalls: u64,
    /// Batches the recall queue ran them in.
    pub batches: u64,
    /// Recalls per batch on average.
    pub mean_batch: f64,
    /// Recalls the latency budget cut short.
    pub partial: u64,
    /// Hits per recall, on average.
    pub mean_hits: f64,
    /// Hops per recall, on average.
    pub mean_hops: f64,
    /// FNV-1a 64 over every recall's hits in query order (node u32, score f32 bits, both
    /// little-endian), as 16 lowercase hex digits: equal run to run on one backend when no
    /// recall was partial.
    pub results_digest: String,
}

/// The braid's counters just after one exchange (cumulative since the braid was built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExchangePoint {
    /// The exchange's number (1 = the first).
    pub exchange: u64,
    /// The instant it happened at.
    pub instant: u32,
    /// The interval after it (the adaptive rule's choice).
    pub interval: u32,
    /// Boundary violations (face cells over `tol_boundary`).
    pub boundary_violations: u64,
    /// Global violations (event counts over `tol_events`).
    pub global_violations: u64,
    /// Corrective events injected.
    pub corrective_events: u64,
    /// Critical applications.
    pub critical: u64,
    /// Events processed by all tori.
    pub events_processed: u64,
}

/// What a braid step ended with: the fields of `warpgrid braid run --json` (SPEC §5) that
/// identify a run, plus the events it processed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BraidStepReport {
    /// The braid config, as resolved against the job file's directory.
    pub config: String,
    /// The braid's clock: the first instant not yet processed.
    pub now: u32,
    /// The current exchange interval, in instants.
    pub interval: u32,
    /// Exchanges done.
    pub exchanges: u64,
    /// Boundary violations (face cells over `tol_boundary`).
    pub boundary_violations: u64,
    /// Global violations (event counts over `tol_events`).
    pub global_violations: u64,
    /// Projections whose hash did not verify.
    pub hash_mismatches: u64,
    /// Corrective events injected.
    pub corrective_events: u64,
    /// Corrective events dropped at `max_pending`.
    pub corrective_dropped: u64,
    /// Critical applications.
    pub critical: u64,
    /// Events processed, over all tori.
    pub events_processed: u64,
    /// Events dropped at `max_pending`, over all tori.
    pub events_dropped: u64,
    /// Events per second of the braid's processing wall time (exchanges excluded).
    pub events_per_s: f64,
    /// The starting interval, then the interval after each exchange.
    pub interval_history: Vec<u32>,
    /// The counters after exchanges, in order: after every one, or after every 2nd, 4th,
    /// ... in a long run (at most 512 points).
    pub history: Vec<ExchangePoint>,
    /// Per torus.
    pub tori: Vec<BraidTorusReport>,
}

/// One torus at the end of a braid step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BraidTorusReport {
    /// FNV-1a 64 digest (SPEC §3.1) as 16 lowercase hex digits.
    pub digest: String,
    /// Events processed.
    pub events_processed: u64,
    /// Events dropped at `max_pending`.
    pub events_dropped: u64,
    /// Events pending at the end of the step.
    pub pending: u64,
    /// Number of processes.
    pub processes: u32,
    /// Number of edges.
    pub edges: u32,
}

impl BraidStepReport {
    /// The report of a braid with statistics `s`, read from `config`; `history` is empty
    /// (the runner fills it).
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
            interval_history: s.interval_history.clone(),
            history: Vec::new(),
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
    /// The table's name.
    pub name: String,
    /// Keys stored.
    pub items: u64,
    /// Items / slots.
    pub load_factor: f64,
    /// Coefficient of variation of items across shards.
    pub cv: f64,
    /// Shard doublings over the table's life.
    pub resizes: u64,
    /// Links stored.
    pub links: u64,
    /// Host cache hits / lookups, when the cache was on.
    pub cache_hit_rate: Option<f64>,
    /// Per shard, in shard order.
    pub shards: Vec<ShardLoad>,
}

/// One shard of a table at the end of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardLoad {
    /// Keys stored.
    pub items: u64,
    /// Slots allocated.
    pub slots: u64,
    /// Operations routed to it over the table's life.
    pub ops: u64,
}

/// The report of a whole job.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// The job's `name`, or its file.
    pub name: String,
    /// The device it ran on, in words (backend and adapter).
    pub device: String,
    /// One per step, in order.
    pub steps: Vec<StepReport>,
    /// Every table the job created, by name.
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
            shards: st
                .shards
                .iter()
                .map(|s| ShardLoad {
                    items: s.items,
                    slots: s.slots,
                    ops: s.ops,
                })
                .collect(),
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
            graph: None,
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
            let latency = op_latency(ctx.registry, index);
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
            progress(&label, 0, target as u64);
            let device = ctx.device;
            let history = run_braid_traced(
                &mut braid,
                target,
                &mut |b, to| b.run_until_on(device, to),
                &mut |at| progress(&label, at as u64, target as u64),
            )
            .map_err(fail)?;
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
            let mut braid_report = BraidStepReport::new(shown, &stats);
            braid_report.history = history;
            report.braid = Some(braid_report);
            Ok(report)
        }
        Step::GraphRecall {
            graph,
            nodes,
            links,
            dim,
            seed,
            queries,
            noise,
            clients,
            window,
            k,
            mode,
            budget_ms,
        } => {
            let mode = RecallMode::parse(mode).ok_or_else(|| {
                format!("mode = {mode:?}: expected \"similarity\", \"spreading\" or \"hybrid\"")
            })?;
            if !(budget_ms.is_finite() && *budget_ms >= 0.0) {
                return Err(format!(
                    "budget_ms = {budget_ms}: expected a number of milliseconds >= 0 (0 = no budget)"
                ));
            }
            if *queries == 0 {
                return Err("queries = 0: expected at least 1".into());
            }
            if !(noise.is_finite() && *noise >= 0.0) {
                return Err(format!("noise = {noise}: expected a finite number >= 0"));
            }
            let params = RecallParams {
                k: *k,
                mode,
                budget: Duration::from_secs_f64(budget_ms / 1e3),
                ..RecallParams::default()
            };
            params.validate().map_err(|e| e.to_string())?;
            progress("graph: build", 0, *queries as u64);
            let (g, source) = match graph {
                Some(file) => {
                    let path = ctx.base.join(file);
                    let g = Graph::load(&path).map_err(|e| e.to_string())?;
                    (g, path.display().to_string())
                }
                None => {
                    let b = generate::barabasi_albert(
                        *nodes,
                        *links,
                        *dim,
                        *seed,
                        GraphConfig::default(),
                    )
                    .map_err(|e| format!("nodes/links/dim: {e}"))?;
                    let g = b.build().map_err(|e| e.to_string())?;
                    let source =
                        format!("generated (Barabasi-Albert, {links} links per node, seed {seed})");
                    (g, source)
                }
            };
            let qs = generate::queries_near(&g, *queries, *noise, seed ^ 0x5155_4552)
                .map_err(|e| e.to_string())?;
            let (n_nodes, n_edges, d) = (g.node_count(), g.edge_count(), g.dim());
            let queue = RecallQueue::start(
                Arc::new(g),
                ctx.device.clone(),
                RecallQueueConfig {
                    params,
                    name: format!("step{index}"),
                    ..RecallQueueConfig::default()
                },
                ctx.registry,
            )
            .map_err(|e| e.to_string())?;
            let build_s = start.elapsed().as_secs_f64();
            let latency = op_latency(ctx.registry, index);
            let label = format!(
                "graph recall: {queries} queries, {}, k {k}, {clients} clients x {window} in flight",
                mode.name()
            );
            let clients = (*clients).clamp(1, *queries);
            let window = (*window).max(1);
            let done = AtomicU64::new(0);
            let recall_start = Instant::now();
            let results = std::thread::scope(|s| {
                let handles: Vec<_> = (0..clients)
                    .map(|c| {
                        let (queue, qs, latency, done) = (&queue, &qs, latency.clone(), &done);
                        s.spawn(move || {
                            recall_client(queue, qs, d, c, clients, window, &latency, done)
                        })
                    })
                    .collect();
                loop {
                    let finished = handles.iter().all(|h| h.is_finished());
                    progress(&label, done.load(Ordering::Relaxed), *queries as u64);
                    if finished {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut all = vec![None; *queries];
                for h in handles {
                    let mine = h
                        .join()
                        .map_err(|_| "a recall client thread panicked".to_string())??;
                    for (i, r) in mine {
                        all[i] = Some(r);
                    }
                }
                Ok::<_, String>(all)
            })?;
            let end = Instant::now();
            let qstats = queue.stats();
            queue.shutdown();
            let mut bytes = Vec::new();
            let (mut hits, mut hops, mut partial) = (0u64, 0u64, 0u64);
            for r in results.iter().flatten() {
                hits += r.hits.len() as u64;
                hops += u64::from(r.hops_done);
                partial += u64::from(r.partial);
                for h in &r.hits {
                    bytes.extend_from_slice(&h.node.to_le_bytes());
                    bytes.extend_from_slice(&h.score.to_bits().to_le_bytes());
                }
            }
            let recalls = *queries as u64;
            let seconds = end.duration_since(recall_start).as_secs_f64();
            Ok(StepReport {
                step: index,
                kind: step.kind(),
                label,
                ops: recalls,
                seconds,
                ops_per_s: if seconds > 0.0 {
                    recalls as f64 / seconds
                } else {
                    0.0
                },
                latency_ns: Some(latency.snapshot()),
                note: None,
                braid: None,
                graph: Some(GraphStepReport {
                    source,
                    nodes: n_nodes,
                    edges: n_edges,
                    dim: d,
                    build_s,
                    mode: mode.name(),
                    recalls,
                    batches: qstats.batches,
                    mean_batch: if qstats.batches > 0 {
                        qstats.recalls as f64 / qstats.batches as f64
                    } else {
                        0.0
                    },
                    partial,
                    mean_hits: hits as f64 / recalls as f64,
                    mean_hops: hops as f64 / recalls as f64,
                    results_digest: format!("{:016x}", fnv1a64(&bytes)),
                }),
            })
        }
    }
}

/// One recall client of a graph step: queries `c, c + clients, ...`, keeping `window` in
/// flight, recording each recall's latency (submission to result). Returns `(query, result)`.
#[allow(clippy::too_many_arguments)]
fn recall_client(
    queue: &RecallQueue,
    qs: &[f32],
    d: usize,
    c: usize,
    clients: usize,
    window: usize,
    latency: &Histogram,
    done: &AtomicU64,
) -> Result<Vec<(usize, warpgrid_engine::graph::RecallResult)>, String> {
    let n = qs.len() / d;
    let mut out = Vec::with_capacity(n / clients + 1);
    let mut inflight: VecDeque<(usize, PendingRecall, Instant)> = VecDeque::new();
    let mut finish = |(i, p, t): (usize, PendingRecall, Instant)| -> Result<(), String> {
        let r = p.wait().map_err(|e| format!("query {i}: {e}"))?;
        latency.record_duration(t.elapsed());
        done.fetch_add(1, Ordering::Relaxed);
        out.push((i, r));
        Ok(())
    };
    for i in (c..n).step_by(clients) {
        let t = Instant::now();
        let p = queue
            .submit(&qs[i * d..(i + 1) * d])
            .map_err(|e| format!("query {i}: {e}"))?;
        inflight.push_back((i, p, t));
        if inflight.len() >= window {
            finish(inflight.pop_front().expect("non-empty"))?;
        }
    }
    while let Some(x) = inflight.pop_front() {
        finish(x)?;
    }
    Ok(out)
}

/// Runs `braid` to instant `target` by calls of `advance` (a `run_until` on some device or
/// thread pool), each ending just after an exchange or after a hundredth of the run, and
/// records the counters after exchanges ([`ExchangePoint`]): after every one until 512 are
/// kept, then after every 2nd, 4th, ... (halving the kept points each time they reach
/// 512). `progress` gets the clock after each call. The braid ends exactly as one
/// `run_until(target)` would leave it (results never depend on how a run is cut).
pub fn run_braid_traced<E>(
    braid: &mut Braid,
    target: u32,
    advance: &mut dyn FnMut(&mut Braid, u32) -> Result<(), E>,
    progress: &mut dyn FnMut(u32),
) -> Result<Vec<ExchangePoint>, E> {
    const MAX_POINTS: usize = 512;
    let chunk = u64::from((target / 100).max(1));
    let mut history: Vec<ExchangePoint> = Vec::new();
    let (mut seen, mut stride) = (0u64, 1u64);
    while braid.now() < target {
        let next_exchange = u64::from(braid.last_exchange()) + u64::from(braid.interval());
        let to = (next_exchange + 1)
            .min(u64::from(braid.now()) + chunk)
            .min(u64::from(target)) as u32;
        let before = braid.last_exchange();
        advance(braid, to)?;
        progress(braid.now());
        if braid.last_exchange() == before {
            continue;
        }
        seen += 1;
        if !seen.is_multiple_of(stride) {
            continue;
        }
        let s = braid.stats();
        history.push(ExchangePoint {
            exchange: s.exchanges,
            instant: braid.last_exchange(),
            interval: s.interval,
            boundary_violations: s.boundary_violations,
            global_violations: s.global_violations,
            corrective_events: s.corrective_events,
            critical: s.critical,
            events_processed: s.events_processed(),
        });
        if history.len() >= MAX_POINTS {
            let mut keep = false;
            history.retain(|_| {
                keep = !keep;
                !keep
            });
            stride *= 2;
        }
    }
    Ok(history)
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
