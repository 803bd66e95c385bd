//! Defines warpgrid's command line interface and dispatches to one module per command.

mod bench;
mod braid;
mod demo;
mod graph;
mod info;
mod kv;
mod progress;
mod report;
mod run;
mod serve;
mod wordnet;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use warpgrid::{BackendKind, Device, DeviceConfig};

#[derive(Debug, Parser)]
#[command(
    name = "warpgrid",
    version,
    about = "GPU-first compute engine: shard tables, activation graphs, braided tori"
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Flags every command accepts, before or after the subcommand.
#[derive(Debug, Args)]
pub struct Global {
    /// Backend: auto, cpu, wgpu or cuda.
    #[arg(long, global = true, env = "WARPGRID_BACKEND", default_value = "auto")]
    backend: String,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    /// Worker threads of the CPU backend (0 = one per core).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
}

impl Global {
    fn backend(&self) -> Result<BackendKind> {
        self.backend
            .parse::<BackendKind>()
            .context("--backend (or WARPGRID_BACKEND)")
    }

    fn device(&self) -> Result<Device> {
        let config = DeviceConfig {
            backend: self.backend()?,
            threads: self.threads,
            memory_limit: None,
        };
        Device::open(&config).context("opening the backend")
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Backends found (and why others are not), devices, and the one chosen.
    Info,
    /// Shard tables: apply operations, report statistics.
    Kv {
        #[command(subcommand)]
        cmd: kv::KvCmd,
    },
    /// Braided tori: run a braid config and report its statistics and digests.
    Braid {
        #[command(subcommand)]
        cmd: braid::BraidCmd,
    },
    /// Activation graphs: build, inspect, spread.
    Graph {
        #[command(subcommand)]
        cmd: graph::GraphCmd,
    },
    /// Side-by-side benchmarks against peer libraries.
    Bench(bench::BenchArgs),
    /// Runs the demo job (a YCSB table, graph recall, a braid; the job of examples/demo.toml)
    /// and prints its report.
    Demo(demo::DemoArgs),
    /// Runs a batch job (a TOML file of steps) with progress, and prints a report.
    Run(run::RunArgs),
    /// Serves metrics as Prometheus text at http://ADDR/metrics.
    ServeMetrics(serve::ServeArgs),
}

pub fn parse() -> Cli {
    Cli::parse()
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Info => info::run(&cli.global),
        Cmd::Kv { cmd } => kv::run(&cli.global, cmd),
        Cmd::Braid { cmd } => braid::run(&cli.global, cmd),
        Cmd::Graph { cmd } => graph::run(&cli.global, cmd),
        Cmd::Bench(args) => bench::run(&cli.global, &args),
        Cmd::Demo(args) => demo::run(&cli.global, &args),
        Cmd::Run(args) => run::run(&cli.global, &args),
        Cmd::ServeMetrics(args) => serve::run(&cli.global, &args),
    }
}
