//! `warpgrid braid run CONFIG.toml [--instants N]`: runs a braid (SPEC §3) and prints its
//! statistics and the digest of every torus (`--json`: the fields of SPEC §5); `--report DIR`
//! adds charts of the interval and the violations over the exchanges, events per torus and
//! latency.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use warpgrid::engine::braid::{Braid, BraidStats};
use warpgrid::host::braidfile::load_braid_config;
use warpgrid::host::jobs::{BraidStepReport, run_braid_traced};

use super::Global;
use super::progress::spinner;
use super::report::{Chart, LineSeries, Plot, ReportDir, nines};

#[derive(Debug, Subcommand)]
pub enum BraidCmd {
    /// Runs a braid config to its `instants` (or --instants) and prints statistics and digests.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The braid config (TOML, SPEC §5).
    config: PathBuf,
    /// Run to this instant instead of the config's `instants`.
    #[arg(long)]
    instants: Option<u32>,
    /// Write a report directory: SVG charts, report.json (their data) and index.html.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

pub fn run(global: &Global, cmd: BraidCmd) -> Result<()> {
    match cmd {
        BraidCmd::Run(args) => run_braid(global, &args),
    }
}

/// The rayon pool braids run on: `--threads` workers (0: one per core).
fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("warpgrid-braid-{i}"))
        .build()
        .context("starting the braid's worker threads")
}

fn run_braid(global: &Global, args: &RunArgs) -> Result<()> {
    let mut config = load_braid_config(&args.config)?;
    if let Some(n) = args.instants {
        config.instants = n;
        config
            .validate()
            .with_context(|| format!("--instants {n}"))?;
    }
    let report_dir = args.report.as_deref().map(ReportDir::create).transpose()?;
    let pool = pool(global.threads)?;
    // The CPU backend runs on this command's own pool (`--threads`); a GPU backend, picked
    // by auto or asked for, runs on its device.
    let device = match global.device()? {
        warpgrid::Device::Cpu(_) => None,
        d => Some(d),
    };
    let mut braid = match &device {
        Some(d) => Braid::new_on(d, &config)?,
        None => pool.install(|| Braid::new(&config))?,
    };
    let bar = spinner();
    let target = config.instants;
    let history = run_braid_traced(
        &mut braid,
        target,
        &mut |b, to| match &device {
            Some(d) => b.run_until_on(d, to),
            None => pool.install(|| b.run_until(to)),
        },
        &mut |at| bar.set_message(format!("instant {at} of {target}")),
    )?;
    bar.finish_and_clear();
    let stats = braid.stats();
    let json = stats_json(&stats);
    let text = render(&stats, pool.current_num_threads());
    if global.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{text}");
    }
    if let Some(mut dir) = report_dir {
        let mut b = BraidStepReport::new(args.config.display().to_string(), &stats);
        b.history = history;
        for chart in super::run::braid_charts("run", &b) {
            dir.add(chart)?;
        }
        let l = &stats.latency;
        let pct = |p50: u64, p95: u64, p99: u64| {
            vec![
                (nines(0.5), us(p50)),
                (nines(0.95), us(p95)),
                (nines(0.99), us(p99)),
            ]
        };
        dir.add(Chart {
            file: "braid-latency.svg".into(),
            title: "Braid latency".into(),
            caption: format!(
                "P50, P95 and P99 of the time to process one instant on all tori ({} instants) \
                 and of one exchange ({} exchanges).",
                l.instants, l.exchanges
            ),
            x_label: "percentile".into(),
            y_label: "latency (us)".into(),
            plot: Plot::Lines {
                series: vec![
                    LineSeries {
                        name: "instant".into(),
                        points: pct(l.instant_p50_ns, l.instant_p95_ns, l.instant_p99_ns),
                    },
                    LineSeries {
                        name: "exchange".into(),
                        points: pct(l.exchange_p50_ns, l.exchange_p95_ns, l.exchange_p99_ns),
                    },
                ],
                log_y: true,
                x_scale: "nines",
            },
        })?;
        let mut report = json;
        report["history"] = serde_json::to_value(&b.history)?;
        let index = dir.finish(
            "braid run",
            &format!("warpgrid braid run {}", args.config.display()),
            &text,
            &report,
        )?;
        if !global.json {
            println!("report: {}", index.display());
        }
    }
    Ok(())
}

/// `braid run --json` (SPEC §5), with the convergence and hash-mismatch counts added.
pub fn stats_json(s: &BraidStats) -> serde_json::Value {
    let l = &s.latency;
    let c = &s.convergence;
    json!({
        "now": s.now,
        "interval": s.interval,
        "exchanges": s.exchanges,
        "boundary_violations": s.boundary_violations,
        "global_violations": s.global_violations,
        "hash_mismatches": s.hash_mismatches,
        "corrective_events": s.corrective_events,
        "corrective_dropped": s.corrective_dropped,
        "critical": s.critical,
        "interval_history": s.interval_history,
        "convergence": {
            "disturbances": c.disturbances,
            "converged": c.converged,
            "last": c.last,
            "max": c.max,
            "mean": c.mean,
            "ongoing": c.ongoing,
        },
        "tori": s.tori.iter().map(|t| json!({
            "digest": format!("{:016x}", t.digest),
            "now": t.now,
            "events_processed": t.events_processed,
            "events_dropped": t.events_dropped,
            "pending": t.pending,
            "processes": t.processes,
            "edges": t.edges,
        })).collect::<Vec<_>>(),
        "latency": {
            "instants": l.instants,
            "events": l.events,
            "instant_p50_ns": l.instant_p50_ns,
            "instant_p95_ns": l.instant_p95_ns,
            "instant_p99_ns": l.instant_p99_ns,
            "instant_max_ns": l.instant_max_ns,
            "ns_per_event": l.ns_per_event,
            "events_per_sec": l.events_per_sec,
            "exchanges": l.exchanges,
            "exchange_p50_ns": l.exchange_p50_ns,
            "exchange_p95_ns": l.exchange_p95_ns,
            "exchange_p99_ns": l.exchange_p99_ns,
            "exchange_max_ns": l.exchange_max_ns,
            "exchange_mean_ns": l.exchange_mean_ns,
        },
    })
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

pub fn render(s: &BraidStats, threads: usize) -> String {
    let l = &s.latency;
    let c = &s.convergence;
    let history = if s.interval_history.len() <= 12 {
        format!("{:?}", s.interval_history)
    } else {
        let n = s.interval_history.len();
        format!(
            "{:?} ... {:?} ({n} values)",
            &s.interval_history[..6],
            &s.interval_history[n - 4..]
        )
    };
    let mut out = format!(
        "braid of {} tori at instant {} (cpu, {threads} threads)\n\
         events: {} processed, {} dropped; {:.1} M events/s, {:.1} ns per event\n\
         instants: {} processed; latency p50 {:.1} us, p95 {:.1} us, p99 {:.1} us\n\
         exchanges: {} (p50 {:.1} us, p95 {:.1} us); interval {} now, history {history}\n\
         violations: {} boundary, {} global, {} hash mismatches; {} corrective events \
         ({} dropped); {} critical applications\n\
         convergence: {} disturbances, {} converged (mean {:.1}, max {} exchanges){}\n",
        s.tori.len(),
        s.now,
        s.events_processed(),
        s.events_dropped(),
        l.events_per_sec / 1e6,
        l.ns_per_event,
        l.instants,
        us(l.instant_p50_ns),
        us(l.instant_p95_ns),
        us(l.instant_p99_ns),
        s.exchanges,
        us(l.exchange_p50_ns),
        us(l.exchange_p95_ns),
        s.interval,
        s.boundary_violations,
        s.global_violations,
        s.hash_mismatches,
        s.corrective_events,
        s.corrective_dropped,
        s.critical,
        c.disturbances,
        c.converged,
        c.mean,
        c.max,
        match c.ongoing {
            Some(n) => format!("; one ongoing for {n} exchanges"),
            None => String::new(),
        }
    );
    for (i, t) in s.tori.iter().enumerate() {
        out.push_str(&format!(
            "torus {i}: digest {:016x}  processed {}  dropped {}  pending {}  processes {}  edges {}\n",
            t.digest, t.events_processed, t.events_dropped, t.pending, t.processes, t.edges
        ));
    }
    out
}
