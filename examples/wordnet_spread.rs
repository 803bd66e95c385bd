//! Spreading activation over WordNet 3.0: imports the database (Debian's `wordnet-base`
//! installs it in /usr/share/wordnet), then spreads from a few synsets, one at a time and
//! all together, and prints the top hits of each spread.
//!
//! ```text
//! cargo run --release --example wordnet_spread                       # /usr/share/wordnet
//! cargo run --release --example wordnet_spread -- DIR [LABEL...]     # e.g. dog.n.01 cat.n.01
//! cargo run --release --example wordnet_spread -- LABEL...
//! ```
//!
//! The graph is built with every direction multiplier 1 (`hierarchical = false`), so that
//! activation travels two hops with the default decay and thresholds; with the SPEC's
//! concept -> concept multiplier 0.4 it stops after one.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use warpgrid::Device;
use warpgrid::engine::graph::{Graph, GraphConfig, Seed, SpreadParams};
use warpgrid::host::wordnet::{self, ImportOptions};

const DEFAULT_DIR: &str = "/usr/share/wordnet";
const DEFAULT_LABELS: [&str; 3] = ["dog.n.01", "cat.n.01", "run.v.01"];
/// Hits printed per spread.
const TOP: usize = 8;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, labels) = match args.split_first() {
        Some((first, rest)) if first.contains('/') || Path::new(first).is_dir() => {
            (PathBuf::from(first), rest.to_vec())
        }
        _ => (PathBuf::from(DEFAULT_DIR), args),
    };
    let labels = if labels.is_empty() {
        DEFAULT_LABELS.map(str::to_owned).to_vec()
    } else {
        labels
    };
    if !dir.join("data.noun").is_file() {
        eprintln!(
            "{}: no WordNet database here (data.noun is missing); install it with \
             `apt-get install wordnet-base` or pass the directory that holds data.noun, \
             index.noun, ... as the first argument",
            dir.display()
        );
        return ExitCode::from(2);
    }
    match run(&dir, &labels) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path, labels: &[String]) -> Result<(), Box<dyn Error>> {
    let options = ImportOptions {
        config: GraphConfig {
            hierarchical: false,
            ..GraphConfig::default()
        },
        ..ImportOptions::default()
    };
    let start = Instant::now();
    let (graph, report) = wordnet::import(dir, &options)?;
    println!(
        "imported {} in {:.2} s: {} synsets, {} pointers, {} edges",
        dir.display(),
        start.elapsed().as_secs_f64(),
        report.total_synsets(),
        report.pointers,
        graph.edge_count()
    );
    let device = Device::cpu()?;
    let seeds = labels
        .iter()
        .map(|l| {
            graph
                .find_label(l)
                .map(Seed::full)
                .ok_or_else(|| format!("no synset is labelled {l:?} (labels look like dog.n.01)"))
        })
        .collect::<Result<Vec<Seed>, _>>()?;
    for (label, seed) in labels.iter().zip(&seeds) {
        spread(&graph, &device, label, std::slice::from_ref(seed))?;
    }
    if seeds.len() > 1 {
        spread(&graph, &device, &labels.join(" + "), &seeds)?;
    }
    Ok(())
}

/// Spreads from `seeds` with the default parameters and prints the top hits.
fn spread(
    graph: &Graph,
    device: &Device,
    name: &str,
    seeds: &[Seed],
) -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let result = graph.spread(device, seeds, &SpreadParams::default())?;
    println!(
        "\nspread from {name}: {} nodes activated, {} hops, {:.2} ms",
        result.hits.len(),
        result.hops_done,
        start.elapsed().as_secs_f64() * 1e3
    );
    for hit in result.hits.iter().take(TOP) {
        println!(
            "  {:<28} activation {:.4}  hop {}",
            hit.label.as_deref().unwrap_or("-"),
            hit.activation,
            hit.first_hop
        );
    }
    Ok(())
}
