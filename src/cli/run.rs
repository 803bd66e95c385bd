//! `warpgrid run JOB.toml`: a batch job (table and braid steps) with progress and a report at
//! the end.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use warpgrid::host::jobs::{BraidStepReport, Job, JobReport, run_job};
use warpgrid::host::metrics::{MetricsServer, Registry};

use super::Global;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (TOML; see docs/jobs.md).
    job: String,
    /// Serve the job's metrics as Prometheus text at http://ADDR/metrics while it runs.
    #[arg(long)]
    metrics_addr: Option<String>,
}

pub fn run(global: &Global, args: &RunArgs) -> Result<()> {
    let job = Job::load(Path::new(&args.job))?;
    let device = global.device()?;
    let registry = Registry::new();
    let _server = serve(&registry, args.metrics_addr.as_deref())?;
    let bar = progress_bar();
    let mut last_step = 0;
    let report = run_job(&job, &args.job, &device, &registry, &mut |p| {
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
        let path = Path::new(&args.job)
            .parent()
            .unwrap_or(Path::new("."))
            .join(path);
        std::fs::write(&path, &json)
            .with_context(|| format!("{}: cannot write the report", path.display()))?;
    }
    if global.json {
        println!("{json}");
    } else {
        print!("{}", render(&report));
    }
    Ok(())
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
