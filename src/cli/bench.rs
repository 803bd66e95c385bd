//! `warpgrid bench`: the side-by-side benchmarks, printed as a table and written as JSON;
//! `--report DIR` adds charts (throughput beside the peers, latency percentiles).

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use warpgrid::bench::braid::{self, BraidBenchConfig};
use warpgrid::bench::graph::{self, GraphBenchConfig};
use warpgrid::bench::kv::{self, KvBenchConfig};

use super::report::{BarSeries, Chart, LineSeries, Plot, ReportDir, nines};
use super::{Global, progress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    Kv,
    Graph,
    Braid,
    All,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which workload to measure.
    #[arg(value_enum, default_value = "all")]
    suite: Suite,
    /// Smaller inputs and fewer repeats (a smoke test, not a measurement).
    #[arg(long)]
    quick: bool,
    /// Keys for the kv suite (default 4,000,000; --quick 500,000).
    #[arg(long)]
    keys: Option<usize>,
    /// Nodes of the graph suite's Barabasi-Albert graph (default 10,000; --quick 2,000).
    #[arg(long)]
    nodes: Option<usize>,
    /// Embedding dimension of the graph suite (default 384; --quick 64).
    #[arg(long)]
    dim: Option<usize>,
    /// Repeats per system; the median is reported.
    #[arg(long)]
    repeats: Option<usize>,
    /// Run the many-clients bench instead: this many client threads, each keeping
    /// `--window` single operations in flight through the submission queue (YCSB-B).
    #[arg(long)]
    clients: Option<usize>,
    /// Measure durable PUT batches (fsync always) against a minimal WAL loop instead.
    #[arg(long)]
    durable: bool,
    /// Directory for the durable bench's files (default: the system temp directory).
    #[arg(long)]
    dir: Option<String>,
    /// Operations each client keeps in flight (with --clients).
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "warpgrid-bench.json")]
    out: String,
    /// Write a report directory: SVG charts, report.json (their data) and index.html.
    #[arg(long, value_name = "DIR")]
    report: Option<std::path::PathBuf>,
}

pub fn run(global: &Global, args: &BenchArgs) -> Result<()> {
    if args.suite == Suite::All {
        eprintln!("bench all: running kv, then graph, then braid");
    }
    let report_dir = args.report.as_deref().map(ReportDir::create).transpose()?;
    let device = global.device()?;
    let mut reports = Vec::new();
    if matches!(args.suite, Suite::Kv | Suite::All) {
        reports.push(run_kv(args, &device)?);
    }
    if matches!(args.suite, Suite::Graph | Suite::All) {
        reports.push(run_graph(args, &device)?);
    }
    if matches!(args.suite, Suite::Braid | Suite::All) {
        reports.push(run_braid(args, &device)?);
    }
    emit(global, &args.out, &reports)?;
    if let Some(mut dir) = report_dir {
        let mut text = String::new();
        for (suite, t) in &reports {
            text.push_str(t);
            for chart in charts(suite) {
                dir.add(chart)?;
            }
        }
        let suites: Vec<&serde_json::Value> = reports.iter().map(|(v, _)| v).collect();
        let index = dir.finish(
            "bench",
            &format!("warpgrid bench on {}", device.describe()),
            &text,
            &serde_json::json!({ "suites": suites }),
        )?;
        if !global.json {
            println!("report: {}", index.display());
        }
    }
    Ok(())
}

/// A number field of a JSON object (NaN when missing).
fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// A system's name with its thread count, as the bench tables print it.
fn system_name(s: &serde_json::Value) -> String {
    let name = s["system"].as_str().unwrap_or("?");
    match s["threads"].as_u64() {
        Some(t) => format!("{name} ({t} thr)"),
        None => name.to_string(),
    }
}

/// The charts of one suite's JSON report (by its `bench` field).
fn charts(suite: &serde_json::Value) -> Vec<Chart> {
    let device = suite["device"].as_str().unwrap_or("?");
    let empty = Vec::new();
    let arr = |v: &serde_json::Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    match suite["bench"].as_str().unwrap_or("") {
        "kv" => {
            let systems = arr(suite, "systems");
            vec![Chart {
                file: "kv-throughput.svg".into(),
                title: "Table batches beside the peers".into(),
                caption: format!(
                    "Millions of PUTs and GETs per second of {} keys in one batch each, warpgrid \
                     on {device} beside hashbrown and DashMap in the same run (median of {} repeats).",
                    suite["keys"], suite["repeats"]
                ),
                x_label: "system".into(),
                y_label: "M ops/s".into(),
                plot: Plot::Bars {
                    categories: systems.iter().map(system_name).collect(),
                    series: vec![
                        BarSeries {
                            name: "put".into(),
                            values: systems.iter().map(|s| num(s, "put_mops")).collect(),
                        },
                        BarSeries {
                            name: "get".into(),
                            values: systems.iter().map(|s| num(s, "get_mops")).collect(),
                        },
                    ],
                    log_y: false,
                },
            }]
        }
        "kv-clients" => vec![Chart {
            file: "kv-clients-throughput.svg".into(),
            title: "Pipelining clients beside DashMap".into(),
            caption: format!(
                "Millions of single operations per second from {} clients (YCSB-{}), through \
                 warpgrid's submission queue on {device} and straight into DashMap; warpgrid's \
                 latency p50 {:.1} us, p99 {:.1} us.",
                suite["clients"],
                suite["workload"].as_str().unwrap_or("?"),
                num(suite, "latency_ns_p50") / 1e3,
                num(suite, "latency_ns_p99") / 1e3
            ),
            x_label: "system".into(),
            y_label: "M ops/s".into(),
            plot: Plot::Bars {
                categories: vec!["warpgrid queue".into(), "dashmap".into()],
                series: vec![BarSeries {
                    name: "M ops/s".into(),
                    values: vec![num(suite, "queue_mops"), num(suite, "dashmap_mops")],
                }],
                log_y: false,
            },
        }],
        "kv-durable" => vec![Chart {
            file: "kv-durable-throughput.svg".into(),
            title: "Durable PUT batches beside a minimal WAL loop".into(),
            caption: format!(
                "Batches of {} PUTs per second with fsync always: warpgrid into a table sized \
                 for the run and one growing from empty, beside a hand-written WAL loop with one \
                 fsync per batch in the same run.",
                suite["batch_ops"]
            ),
            x_label: "system".into(),
            y_label: "batches/s".into(),
            plot: Plot::Bars {
                categories: vec![
                    "warpgrid (sized)".into(),
                    "warpgrid (growing)".into(),
                    "minimal WAL loop".into(),
                ],
                series: vec![BarSeries {
                    name: "batches/s".into(),
                    values: vec![
                        num(suite, "warpgrid_batches_per_s"),
                        num(suite, "growing_batches_per_s"),
                        num(suite, "limit_batches_per_s"),
                    ],
                }],
                log_y: false,
            },
        }],
        "graph" => {
            let mut out = Vec::new();
            let cases = arr(suite, "spread");
            if let Some(first) = cases.first() {
                let systems = arr(first, "systems");
                out.push(Chart {
                    file: "graph-spread.svg".into(),
                    title: "Spreads beside the peers".into(),
                    caption: format!(
                        "Microseconds per spread (lower is better) of warpgrid on {device} \
                         beside the sequential reference and sprs CSR mat-vec hops in the same \
                         run, {} nodes, {} edges.",
                        suite["nodes"], suite["edges"]
                    ),
                    x_label: "system".into(),
                    y_label: "us per spread".into(),
                    plot: Plot::Bars {
                        categories: systems.iter().map(system_name).collect(),
                        series: cases
                            .iter()
                            .map(|c| BarSeries {
                                name: c["case"].as_str().unwrap_or("?").to_string(),
                                values: arr(c, "systems")
                                    .iter()
                                    .map(|s| num(s, "us_per_spread"))
                                    .collect(),
                            })
                            .collect(),
                        log_y: true,
                    },
                });
            }
            let lat = |l: &serde_json::Value| -> Vec<(f64, f64)> {
                [(0.5, "p50_us"), (0.95, "p95_us"), (0.99, "p99_us")]
                    .iter()
                    .map(|&(q, k)| (nines(q), num(l, k)))
                    .collect()
            };
            out.push(Chart {
                file: "graph-recall-latency.svg".into(),
                title: "Single recall latency".into(),
                caption: format!(
                    "P50, P95 and P99 of single recalls ({} queries, one call each) without a \
                     budget and with the budgeted run's budget, on {device}.",
                    suite["queries"]
                ),
                x_label: "percentile".into(),
                y_label: "latency (us)".into(),
                plot: Plot::Lines {
                    series: vec![
                        LineSeries {
                            name: "unbudgeted".into(),
                            points: lat(&suite["single"]["latency"]),
                        },
                        LineSeries {
                            name: "budgeted".into(),
                            points: lat(&suite["budgeted"]["latency"]),
                        },
                    ],
                    log_y: true,
                    x_scale: "nines",
                },
            });
            let batched = arr(suite, "batched");
            out.push(Chart {
                file: "graph-batched.svg".into(),
                title: "Batched recall throughput".into(),
                caption: "Recalls per second by batch size (one similarity product and one \
                          multi-vector propagation per batch)."
                    .into(),
                x_label: "recalls per batch".into(),
                y_label: "recalls/s".into(),
                plot: Plot::Lines {
                    series: vec![LineSeries {
                        name: "recalls/s".into(),
                        points: batched
                            .iter()
                            .map(|b| (num(b, "batch"), num(b, "recalls_per_s")))
                            .collect(),
                    }],
                    log_y: false,
                    x_scale: "plain",
                },
            });
            out
        }
        "braid" => {
            let workloads = arr(suite, "workloads");
            let Some(first) = workloads.first() else {
                return empty;
            };
            let label = |s: &serde_json::Value| {
                format!(
                    "{} ({} tori)",
                    s["system"].as_str().unwrap_or("?"),
                    s["tori"].as_u64().unwrap_or(0)
                )
            };
            vec![Chart {
                file: "braid-throughput.svg".into(),
                title: "Braid events beside the heap-ordered reference".into(),
                caption: format!(
                    "Millions of events per second of warpgrid's braid on {device} (three tori \
                     and one) beside the heap-ordered single-thread reference kernel in the same \
                     run, per workload."
                ),
                x_label: "system".into(),
                y_label: "M events/s".into(),
                plot: Plot::Bars {
                    categories: arr(first, "systems").iter().map(label).collect(),
                    series: workloads
                        .iter()
                        .map(|w| BarSeries {
                            name: w["workload"].as_str().unwrap_or("?").to_string(),
                            values: arr(w, "systems")
                                .iter()
                                .map(|s| num(s, "events_per_s") / 1e6)
                                .collect(),
                        })
                        .collect(),
                    log_y: false,
                },
            }]
        }
        _ => empty,
    }
}

/// A suite's JSON report and its text table.
type Report = (serde_json::Value, String);

fn report(r: &impl serde::Serialize, text: String) -> Result<Report> {
    Ok((serde_json::to_value(r)?, text))
}

fn run_kv(args: &BenchArgs, device: &warpgrid::Device) -> Result<Report> {
    if let Some(clients) = args.clients {
        return run_clients(args, device, clients);
    }
    if args.durable {
        use warpgrid::bench::durable::{self, DurableBenchConfig};
        let cfg = if args.quick {
            DurableBenchConfig::quick()
        } else {
            DurableBenchConfig::full()
        };
        let work = args
            .dir
            .as_ref()
            .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
        let bar = progress::spinner();
        let r = durable::run(device, &cfg, &work, |m| {
            bar.set_message(format!("kv --durable {m}"))
        })
        .map_err(anyhow::Error::msg)?;
        bar.finish_and_clear();
        return report(&r, durable::render(&r));
    }
    let mut cfg = if args.quick {
        KvBenchConfig::quick()
    } else {
        KvBenchConfig::full()
    };
    if let Some(k) = args.keys {
        cfg.keys = k.max(1);
    }
    if let Some(r) = args.repeats {
        cfg.repeats = r.max(1);
    }
    let bar = progress::spinner();
    let r = kv::run(device, &cfg, |m| bar.set_message(format!("kv {m}")))
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    report(&r, kv::render(&r))
}

/// SPEC §7 row 5: three tori, one torus and the heap reference on the same workloads.
fn run_braid(args: &BenchArgs, device: &warpgrid::Device) -> Result<Report> {
    let cfg = if args.quick {
        BraidBenchConfig::quick()
    } else {
        BraidBenchConfig::full()
    };
    let bar = progress::spinner();
    let r = braid::run(device, &cfg, |m| bar.set_message(format!("braid {m}")))
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    report(&r, braid::render(&r))
}

fn run_graph(args: &BenchArgs, device: &warpgrid::Device) -> Result<Report> {
    let mut cfg = if args.quick {
        GraphBenchConfig::quick()
    } else {
        GraphBenchConfig::full()
    };
    if let Some(n) = args.nodes {
        if n <= cfg.m {
            bail!(
                "--nodes: expected more than {} (the links per new node), got {n}",
                cfg.m
            );
        }
        cfg.nodes = n;
    }
    if let Some(d) = args.dim {
        if !(1..=warpgrid::engine::graph::MAX_DIM).contains(&d) {
            bail!(
                "--dim: expected 1..={}, got {d}",
                warpgrid::engine::graph::MAX_DIM
            );
        }
        cfg.dim = d;
    }
    if let Some(r) = args.repeats {
        cfg.repeats = r.max(1);
    }
    let bar = progress::spinner();
    let r = graph::run(device, &cfg, |m| bar.set_message(format!("graph {m}")))
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    report(&r, graph::render(&r))
}

fn run_clients(args: &BenchArgs, device: &warpgrid::Device, clients: usize) -> Result<Report> {
    use warpgrid::bench::clients::{self, ClientsBenchConfig};
    let mut cfg = if args.quick {
        ClientsBenchConfig::quick(clients)
    } else {
        ClientsBenchConfig::full(clients)
    };
    cfg.window = args.window;
    if let Some(k) = args.keys {
        cfg.records = k.max(1) as u64;
    }
    if let Some(r) = args.repeats {
        cfg.repeats = r.max(1);
    }
    let bar = progress::spinner();
    let r = clients::run(device, &cfg, |m| {
        bar.set_message(format!("kv --clients {m}"))
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    report(&r, clients::render(&r))
}

/// Writes the suites' JSON report to `out`, and prints it (`--json`) or their text tables.
fn emit(global: &Global, out: &str, reports: &[Report]) -> Result<()> {
    let suites: Vec<&serde_json::Value> = reports.iter().map(|(v, _)| v).collect();
    let json = serde_json::to_string_pretty(&serde_json::json!({ "suites": suites }))?;
    std::fs::write(out, &json).with_context(|| format!("{out}: cannot write the JSON report"))?;
    if global.json {
        println!("{json}");
    } else {
        for (_, text) in reports {
            print!("{text}");
        }
        println!("JSON report: {out}");
    }
    Ok(())
}
