//! `warpgrid demo`: the demo job (`examples/demo.toml` with its braid config
//! `examples/demo-braid.toml`, both built into the binary) run exactly as
//! `warpgrid run examples/demo.toml` runs it — so an installed binary, away from the source
//! tree, shows all three workloads too. The files are written to a temporary directory,
//! run, and removed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Global;

/// The demo job and the braid config it names, as in `examples/`.
const DEMO_JOB: &str = include_str!("../../examples/demo.toml");
const DEMO_BRAID: &str = include_str!("../../examples/demo-braid.toml");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Write a report directory: SVG charts, report.json (their data) and index.html.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Serve the job's metrics as Prometheus text at http://ADDR/metrics while it runs.
    #[arg(long)]
    metrics_addr: Option<String>,
}

/// Removes the demo's temporary directory however the run ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(global: &Global, args: &DemoArgs) -> Result<()> {
    let dir = TempDir(std::env::temp_dir().join(format!("warpgrid-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)
        .with_context(|| format!("{}: cannot create the demo's directory", dir.0.display()))?;
    let job = dir.0.join("demo.toml");
    for (path, text) in [
        (job.clone(), DEMO_JOB),
        (dir.0.join("demo-braid.toml"), DEMO_BRAID),
    ] {
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    super::run::run_file(
        global,
        &job.display().to_string(),
        args.metrics_addr.as_deref(),
        args.report.as_deref(),
    )
}
