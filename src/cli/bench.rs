//! `warpgrid bench`: the side-by-side benchmarks, printed as a table and written as JSON.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use warpgrid::bench::braid::{self, BraidBenchConfig};
use warpgrid::bench::graph::{self, GraphBenchConfig};
use warpgrid::bench::kv::{self, KvBenchConfig};

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
}

pub fn run(global: &Global, args: &BenchArgs) -> Result<()> {
    if args.suite == Suite::All {
        eprintln!("bench all: running kv, then graph, then braid");
    }
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
    emit(global, &args.out, &reports)
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
