//! `warpgrid info`: what backends exist here, why the others do not, which one is chosen.

use anyhow::Result;
use serde_json::json;
use warpgrid::engine::backend::wgpu::AUTO_SKIP_REASON;
use warpgrid::engine::{BackendKind, probe_all};

use super::Global;

pub fn run(global: &Global) -> Result<()> {
    let probes = probe_all();
    let requested = global.backend()?;
    let selected = global.device();
    if global.json {
        let backends: Vec<_> = probes
            .iter()
            .map(|p| match &p.status {
                Ok(d) if p.kind == BackendKind::Wgpu => json!({
                    "name": p.kind.name(), "available": true, "device": d,
                    "auto": false, "note": AUTO_SKIP_REASON,
                }),
                Ok(d) => json!({"name": p.kind.name(), "available": true, "device": d}),
                Err(u) => json!({"name": p.kind.name(), "available": false, "reason": u.reason}),
            })
            .collect();
        let selected_json = match &selected {
            Ok(d) => {
                json!({"backend": d.kind().name(), "device": d.describe(), "threads": d.threads()})
            }
            Err(e) => json!({"error": format!("{e:#}")}),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "version": env!("CARGO_PKG_VERSION"),
                "requested": requested.name(),
                "backends": backends,
                "selected": selected_json,
            }))?
        );
    } else {
        println!("warpgrid {}", env!("CARGO_PKG_VERSION"));
        println!("backends, in auto's order of preference:");
        for p in &probes {
            match &p.status {
                Ok(d) if p.kind == BackendKind::Wgpu => println!(
                    "  {:<5} available: {d}\n        ({AUTO_SKIP_REASON})",
                    p.kind.name()
                ),
                Ok(d) => println!("  {:<5} available: {d}", p.kind.name()),
                Err(u) => println!("  {:<5} unavailable: {}", p.kind.name(), u.reason),
            }
        }
        if let Ok(d) = &selected {
            println!(
                "selected: {} (requested {requested}): {}",
                d.kind(),
                d.describe()
            );
        }
    }
    selected.map(drop)
}
