//! `warpgrid info`: what backends exist here, why the others do not, which one is chosen.

use anyhow::Result;
use serde_json::json;
use warpgrid::engine::probe_all;

use super::Global;

pub fn run(global: &Global) -> Result<()> {
    let probes = probe_all();
    let requested = global.backend()?;
    let selected = global.device();
    if global.json {
        let backends: Vec<_> = probes
            .iter()
            .map(|p| match &p.status {
                Ok(d) => match &p.auto_skip {
                    Some(why) => json!({
                        "name": p.kind.name(), "available": true, "device": d,
                        "auto": false, "note": why,
                    }),
                    None => {
                        json!({"name": p.kind.name(), "available": true, "device": d, "auto": true})
                    }
                },
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
                Ok(d) => match &p.auto_skip {
                    Some(why) => println!("  {:<5} available: {d}\n        ({why})", p.kind.name()),
                    None => println!("  {:<5} available: {d}", p.kind.name()),
                },
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
