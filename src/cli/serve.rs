//! `warpgrid serve-metrics`: serves this process's metrics (build and backend information
//! until a job feeds more) as Prometheus text, until interrupted or `--seconds` pass.

use anyhow::Result;
use clap::Args;
use warpgrid::host::metrics::Registry;

use super::Global;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:9100 (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9100")]
    addr: String,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    seconds: Option<u64>,
}

pub fn run(global: &Global, args: &ServeArgs) -> Result<()> {
    let device = global.device()?;
    let registry = Registry::new();
    let version = env!("CARGO_PKG_VERSION");
    registry
        .gauge_with(
            "warpgrid_build_info",
            "always 1; labels name the version and the backend in use",
            &[("version", version), ("backend", device.kind().name())],
        )
        .set(1.0);
    registry
        .gauge(
            "warpgrid_device_threads",
            "worker threads of the backend in use",
        )
        .set(device.threads() as f64);
    let server = super::run::serve(&registry, Some(&args.addr))?;
    match args.seconds {
        Some(s) => std::thread::sleep(std::time::Duration::from_secs(s)),
        None => loop {
            std::thread::park();
        },
    }
    drop(server);
    Ok(())
}
