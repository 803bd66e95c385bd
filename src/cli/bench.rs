//! `warpgrid bench`: the side-by-side benchmarks, printed as a table and written as JSON.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
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
    for (suite, what) in [
        (Suite::Graph, "activation graphs"),
        (Suite::Braid, "braided tori"),
    ] {
        if args.suite == suite {
            bail!(
                "bench {}: {what} are not implemented in this version, so there is nothing to measure",
                what
            );
        }
    }
    if args.suite == Suite::All {
        eprintln!("bench all: running kv (graph and braid workloads are not implemented yet)");
    }
    let device = global.device()?;
    if let Some(clients) = args.clients {
        return run_clients(global, args, &device, clients);
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
        let report = durable::run(&device, &cfg, &work, |m| {
            bar.set_message(format!("kv --durable {m}"))
        })
        .map_err(anyhow::Error::msg)?;
        bar.finish_and_clear();
        return emit(global, &args.out, &report, &durable::render(&report));
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
    let report = kv::run(&device, &cfg, |m| bar.set_message(format!("kv {m}")))
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    emit(global, &args.out, &report, &kv::render(&report))
}

fn run_clients(
    global: &Global,
    args: &BenchArgs,
    device: &warpgrid::Device,
    clients: usize,
) -> Result<()> {
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
    let report = clients::run(device, &cfg, |m| {
        bar.set_message(format!("kv --clients {m}"))
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    emit(global, &args.out, &report, &clients::render(&report))
}

/// Writes a suite's JSON report to `out`, and prints it (`--json`) or its text table.
fn emit(global: &Global, out: &str, report: &impl serde::Serialize, text: &str) -> Result<()> {
    let json = serde_json::to_string_pretty(&serde_json::json!({ "suites": [report] }))?;
    std::fs::write(out, &json).with_context(|| format!("{out}: cannot write the JSON report"))?;
    if global.json {
        println!("{json}");
    } else {
        print!("{text}");
        println!("JSON report: {out}");
    }
    Ok(())
}
