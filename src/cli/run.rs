//! `warpgrid run JOB.toml`: a batch job (table, graph and braid steps) with progress and a
//! report at the end; `--report DIR` adds charts of it (throughput, latency by percentile,
//! the braid's interval and violations over exchanges, per-shard load) and an index.html.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use warpgrid::host::jobs::{BraidStepReport, GraphStepReport, Job, JobReport, op_latency, run_job};
use warpgrid::host::metrics::{MetricsServer, Registry};

use super::Global;
use super::report::{BarSeries, Chart, LineSeries, Plot, ReportDir, nines};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML; see docs/jobs.md).
    job: String,
    /// Serve the job's metrics as Prometheus text at http://ADDR/metrics while it runs.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Write a report directory: SVG charts, report.json (their data) and index.html.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

pub fn run(global: &Global, args: &RunArgs) -> Result<()> {
    run_file(
        global,
        &args.job,
        args.metrics_addr.as_deref(),
        args.report.as_deref(),
    )
}

/// Runs the job file `file` (the body of `warpgrid run`, and of `warpgrid demo`).
pub fn run_file(
    global: &Global,
    file: &str,
    metrics_addr: Option<&str>,
    report_dir: Option<&Path>,
) -> Result<()> {
    let job = Job::load(Path::new(file))?;
    let report_dir = report_dir.map(ReportDir::create).transpose()?;
    let device = global.device()?;
    let registry = Registry::new();
    let _server = serve(&registry, metrics_addr)?;
    let bar = progress_bar();
    let mut last_step = 0;
    let report = run_job(&job, file, &device, &registry, &mut |p| {
        if p.step != last_step {
            last_step = p.step;
            bar.reset();
        }
        bar.set_length(p.total.max(1));
        bar.set_position(p.done);
        bar.set_message(format!("step {}/{}: {}", p.step, p.steps, p.label));
    })?;
    bar.finish_and_clear();
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &job.report {
        let path = Path::new(file)
            .parent()
            .unwrap_or(Path::new("."))
            .join(path);
        std::fs::write(&path, &json)
            .with_context(|| format!("{}: cannot write the report", path.display()))?;
    }
    let text = render(&report);
    if global.json {
        println!("{json}");
    } else {
        print!("{text}");
    }
    if let Some(mut dir) = report_dir {
        for chart in charts(&report, &registry) {
            dir.add(chart)?;
        }
        let index = dir.finish(
            "run",
            &format!("warpgrid run: {}", report.name),
            &text,
            &serde_json::to_value(&report)?,
        )?;
        if !global.json {
            println!("report: {}", index.display());
        }
    }
    Ok(())
}

/// Quantiles of the latency-by-percentile charts.
const QUANTILES: [f64; 17] = [
    0.0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.98, 0.99, 0.995, 0.998,
    0.999,
];

/// The charts of a job report: throughput per step, latency by percentile (from the steps'
/// latency histograms in `registry`), each braid's interval and violations over its
/// exchanges, and each table's load per shard.
pub fn charts(r: &JobReport, registry: &Registry) -> Vec<Chart> {
    let mut out = Vec::new();
    let working: Vec<_> = r.steps.iter().filter(|s| s.ops > 0).collect();
    if !working.is_empty() {
        out.push(Chart {
            file: "throughput.svg".into(),
            title: "Throughput per step".into(),
            caption: format!(
                "Operations per second of each step of {} on {} (log scale): table operations \
                 for YCSB and ops steps, events for braids, recalls for graphs.",
                r.name, r.device
            ),
            x_label: "step".into(),
            y_label: "per second".into(),
            plot: Plot::Bars {
                categories: working
                    .iter()
                    .map(|s| format!("{} {}", s.step, s.kind))
                    .collect(),
                series: vec![BarSeries {
                    name: "ops/s".into(),
                    values: working.iter().map(|s| s.ops_per_s).collect(),
                }],
                log_y: true,
            },
        });
    }
    let latency: Vec<LineSeries> = r
        .steps
        .iter()
        .filter(|s| s.latency_ns.is_some_and(|l| l.count > 0))
        .map(|s| {
            let h = op_latency(registry, s.step);
            let mut qs = QUANTILES.to_vec();
            if h.count() >= 20_000 {
                qs.push(0.9999);
            }
            LineSeries {
                name: format!("{} {}", s.step, s.kind),
                points: qs
                    .iter()
                    .map(|&q| (nines(q), h.quantile(q) as f64 / 1e3))
                    .collect(),
            }
        })
        .collect();
    if !latency.is_empty() {
        out.push(Chart {
            file: "latency.svg".into(),
            title: "Latency by percentile".into(),
            caption: "Per operation (a recall for graph steps), from submission to result, as \
                      measured by the client threads; read from each step's latency histogram \
                      (values within 3.2 %). Both axes stretch the tail."
                .into(),
            x_label: "percentile".into(),
            y_label: "latency (us)".into(),
            plot: Plot::Lines {
                series: latency,
                log_y: true,
                x_scale: "nines",
            },
        });
    }
    for s in &r.steps {
        if let Some(b) = &s.braid {
            out.extend(braid_charts(&format!("step{}", s.step), b));
        }
    }
    for t in &r.tables {
        let items: u64 = t.shards.iter().map(|s| s.items).sum();
        let ops: u64 = t.shards.iter().map(|s| s.ops).sum();
        let share = |v: u64, total: u64| {
            if total > 0 {
                100.0 * v as f64 / total as f64
            } else {
                0.0
            }
        };
        out.push(Chart {
            file: format!("shards-{}.svg", t.name),
            title: format!("Load per shard of table {}", t.name),
            caption: format!(
                "Each shard's share of the table's {items} keys and of the {ops} operations \
                 routed to it; an even spread puts every bar near {:.2} % (shard CV {:.4}).",
                100.0 / t.shards.len().max(1) as f64,
                t.cv
            ),
            x_label: "shard".into(),
            y_label: "share of the table (%)".into(),
            plot: Plot::Bars {
                categories: (0..t.shards.len()).map(|i| i.to_string()).collect(),
                series: vec![
                    BarSeries {
                        name: "keys".into(),
                        values: t.shards.iter().map(|s| share(s.items, items)).collect(),
                    },
                    BarSeries {
                        name: "operations".into(),
                        values: t.shards.iter().map(|s| share(s.ops, ops)).collect(),
                    },
                ],
                log_y: false,
            },
        });
    }
    out
}

/// A braid's interval history and its violations per exchange (charts named `braid-*-TAG`).
pub fn braid_charts(tag: &str, b: &BraidStepReport) -> Vec<Chart> {
    let mut out = Vec::new();
    if b.interval_history.len() > 1 {
        out.push(Chart {
            file: format!("braid-interval-{tag}.svg"),
            title: "Braid exchange interval".into(),
            caption: format!(
                "The interval (instants between exchanges) at the start and after each of the \
                 {} exchanges, as the adaptive rule set it.",
                b.exchanges
            ),
            x_label: "exchange".into(),
            y_label: "interval (instants)".into(),
            plot: Plot::Lines {
                series: vec![LineSeries {
                    name: "interval".into(),
                    points: b
                        .interval_history
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (i as f64, f64::from(v)))
                        .collect(),
                }],
                log_y: false,
                x_scale: "plain",
            },
        });
    }
    if !b.history.is_empty() {
        // Per exchange: the counters' growth since the previous point, over the exchanges
        // it spans (1 unless the history was thinned).
        let per = |f: fn(&warpgrid::host::jobs::ExchangePoint) -> u64| -> Vec<(f64, f64)> {
            let mut prev = (0u64, 0u64);
            b.history
                .iter()
                .map(|p| {
                    let span = (p.exchange - prev.0).max(1) as f64;
                    let v = (f(p) - prev.1) as f64 / span;
                    prev = (p.exchange, f(p));
                    (p.exchange as f64, v)
                })
                .collect()
        };
        out.push(Chart {
            file: format!("braid-violations-{tag}.svg"),
            title: "Braid violations per exchange".into(),
            caption: format!(
                "Boundary and global violations found at each exchange (totals: {} boundary, \
                 {} global; {} corrective events injected for the boundary ones; {} critical \
                 applications).",
                b.boundary_violations, b.global_violations, b.corrective_events, b.critical
            ),
            x_label: "exchange".into(),
            y_label: "per exchange".into(),
            plot: Plot::Lines {
                series: vec![
                    LineSeries {
                        name: "boundary violations".into(),
                        points: per(|p| p.boundary_violations),
                    },
                    LineSeries {
                        name: "global violations".into(),
                        points: per(|p| p.global_violations),
                    },
                ],
                log_y: false,
                x_scale: "plain",
            },
        });
    }
    if !b.tori.is_empty() {
        out.push(Chart {
            file: format!("braid-tori-{tag}.svg"),
            title: "Events per torus".into(),
            caption: format!(
                "Events each torus processed and dropped (at max_pending) to instant {}.",
                b.now
            ),
            x_label: "torus".into(),
            y_label: "events".into(),
            plot: Plot::Bars {
                categories: (0..b.tori.len()).map(|i| i.to_string()).collect(),
                series: vec![
                    BarSeries {
                        name: "processed".into(),
                        values: b.tori.iter().map(|t| t.events_processed as f64).collect(),
                    },
                    BarSeries {
                        name: "dropped".into(),
                        values: b.tori.iter().map(|t| t.events_dropped as f64).collect(),
                    },
                ],
                log_y: false,
            },
        });
    }
    out
}

/// Starts the metrics endpoint if asked for; it stops when the returned server drops.
pub fn serve(registry: &Registry, addr: Option<&str>) -> Result<Option<MetricsServer>> {
    let Some(addr) = addr else { return Ok(None) };
    let server = MetricsServer::start(registry.clone(), addr)?;
    eprintln!("metrics: http://{}/metrics", server.local_addr());
    Ok(Some(server))
}

fn progress_bar() -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A braid step's statistics and digests, under its step line.
fn render_braid(s: &mut String, b: &BraidStepReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "      braid at instant {}: {} events processed, {} dropped; {} exchanges, interval {}; \
         violations {} boundary, {} global, {} hash mismatches; {} corrective events ({} dropped); \
         {} critical",
        b.now,
        b.events_processed,
        b.events_dropped,
        b.exchanges,
        b.interval,
        b.boundary_violations,
        b.global_violations,
        b.hash_mismatches,
        b.corrective_events,
        b.corrective_dropped,
        b.critical
    );
    for (i, t) in b.tori.iter().enumerate() {
        let _ = writeln!(
            s,
            "      torus {i}: digest {}  processed {}  dropped {}  pending {}  processes {}  edges {}",
            t.digest, t.events_processed, t.events_dropped, t.pending, t.processes, t.edges
        );
    }
}

/// A graph step's graph and recall statistics, under its step line.
fn render_graph(s: &mut String, g: &GraphStepReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "      graph {}: {} nodes, {} edges, dim {} (built in {:.2} s); {} recalls in {} batches \
         (mean {:.1}), {:.1} hits and {:.2} hops per recall, {} partial; results digest {}",
        g.source,
        g.nodes,
        g.edges,
        g.dim,
        g.build_s,
        g.recalls,
        g.batches,
        g.mean_batch,
        g.mean_hits,
        g.mean_hops,
        g.partial,
        g.results_digest
    );
}

/// The report as text: a line per step (braid steps add their statistics and digests),
/// then the tables.
pub fn render(r: &JobReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "job {}: {}", r.name, r.device);
    let _ = writeln!(
        s,
        "{:>4}  {:<60} {:>10} {:>9} {:>11} {:>9} {:>9} {:>9}",
        "step", "what", "ops", "seconds", "ops/s", "p50 us", "p99 us", "p99.9 us"
    );
    for st in &r.steps {
        let (p50, p99, p999) =
            st.latency_ns
                .map_or((String::new(), String::new(), String::new()), |l| {
                    (
                        format!("{:.1}", l.p50 as f64 / 1e3),
                        format!("{:.1}", l.p99 as f64 / 1e3),
                        format!("{:.1}", l.p999 as f64 / 1e3),
                    )
                });
        let _ = writeln!(
            s,
            "{:>4}  {:<60} {:>10} {:>9.3} {:>11.0} {:>9} {:>9} {:>9}",
            st.step, st.label, st.ops, st.seconds, st.ops_per_s, p50, p99, p999
        );
        if let Some(note) = &st.note {
            let _ = writeln!(s, "      note: {note}");
        }
        if let Some(b) = &st.braid {
            render_braid(&mut s, b);
        }
        if let Some(g) = &st.graph {
            render_graph(&mut s, g);
        }
    }
    for t in &r.tables {
        let cache = t
            .cache_hit_rate
            .map_or("off".to_string(), |h| format!("{:.1}% hits", h * 100.0));
        let _ = writeln!(
            s,
            "table {}: {} items, load {:.3}, shard cv {:.4}, {} resizes, {} links, host cache {cache}",
            t.name, t.items, t.load_factor, t.cv, t.resizes, t.links
        );
    }
    s
}
