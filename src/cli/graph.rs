//! `warpgrid graph build|info|spread`: activation graphs (SPEC §2, §5). `graph recall` is not
//! in the CLI yet (the engine has it: `Graph::recall`, `Graph::recall_batch`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use warpgrid::engine::graph::{
    Decay, Graph, GraphConfig, Multipliers, Seed, SpreadParams, SpreadResult,
};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum GraphCmd {
    /// Builds a .wgraph from nodes.tsv, edges.tsv and optional embeddings (.npy).
    Build(BuildArgs),
    /// Prints a .wgraph's size, kinds and embedding dimension.
    Info(InfoArgs),
    /// Spreads activation from seeds and prints the activated nodes.
    Spread(SpreadArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[arg(long)]
    nodes: PathBuf,
    #[arg(long)]
    edges: PathBuf,
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// Output file.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// All direction multipliers 1 (they shape the stored effective weights).
    #[arg(long)]
    no_hierarchical: bool,
    /// Direction multipliers EC,CE,CC,EE (default 0.8,0.6,0.4,0.3).
    #[arg(long)]
    multipliers: Option<String>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    graph: PathBuf,
}

#[derive(Debug, Args)]
pub struct SpreadArgs {
    graph: PathBuf,
    /// A seed: node id or label, optionally with its activation (`17`, `17:0.5`, `dog.n.01`).
    #[arg(long = "seed", required = true)]
    seeds: Vec<String>,
    #[arg(long, default_value_t = 4)]
    max_hops: u32,
    /// exp:R, power:E or linear:S.
    #[arg(long, default_value = "exp:0.7")]
    decay: String,
    #[arg(long)]
    refractory: bool,
    /// Thresholds of the Hot, Warm and Cold tiers.
    #[arg(long, default_value = "0.01,0.05,0.1")]
    thresholds: String,
    /// Confidence factors of the Hot, Warm and Cold tiers.
    #[arg(long, default_value = "1.0,0.95,0.9")]
    confidence_factors: String,
    /// Print only the first N hits.
    #[arg(long)]
    top: Option<usize>,
}

pub fn run(global: &Global, cmd: GraphCmd) -> Result<()> {
    match cmd {
        GraphCmd::Build(args) => build(global, &args),
        GraphCmd::Info(args) => info(global, &args),
        GraphCmd::Spread(args) => spread(global, &args),
    }
}

/// `A,B,C[,D]` as exactly `n` finite numbers.
fn numbers(flag: &str, text: &str, n: usize) -> Result<Vec<f64>> {
    let values: Vec<f64> = text
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .with_context(|| format!("{flag} {text}: {p:?} is not a finite number"))
        })
        .collect::<Result<_>>()?;
    if values.len() != n {
        bail!("{flag} {text}: expected {n} comma-separated numbers");
    }
    Ok(values)
}

fn build(global: &Global, args: &BuildArgs) -> Result<()> {
    let mut config = GraphConfig {
        hierarchical: !args.no_hierarchical,
        ..GraphConfig::default()
    };
    if let Some(m) = &args.multipliers {
        let v = numbers("--multipliers", m, 4)?;
        config.multipliers = Multipliers::from_array([v[0], v[1], v[2], v[3]]);
    }
    config.validate()?;
    let graph = Graph::from_tsv(
        &args.nodes,
        &args.edges,
        args.embeddings.as_deref(),
        &config,
    )?;
    graph.save(&args.output)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&info_json(&graph))?);
    } else {
        println!(
            "built {}: {} nodes, {} edges, {} embeddings of dimension {}",
            args.output.display(),
            graph.node_count(),
            graph.edge_count(),
            graph.embedded_count(),
            graph.dim()
        );
    }
    Ok(())
}

fn info_json(g: &Graph) -> serde_json::Value {
    let concepts = (0..g.node_count() as u32)
        .filter(|&v| g.kind(v).name() == "concept")
        .count();
    json!({
        "nodes": g.node_count(),
        "edges": g.edge_count(),
        "concepts": concepts,
        "episodes": g.node_count() - concepts,
        "dim": g.dim(),
        "embedded": g.embedded_count(),
        "hierarchical": g.config().hierarchical,
        "multipliers": g.config().effective_multipliers().to_array(),
    })
}

fn info(global: &Global, args: &InfoArgs) -> Result<()> {
    let g = Graph::load(&args.graph)?;
    let v = info_json(&g);
    if global.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {} nodes ({} concept, {} episode), {} edges, {} embeddings of dimension {}, \
             multipliers EC,CE,CC,EE = {:?}",
            args.graph.display(),
            v["nodes"],
            v["concepts"],
            v["episodes"],
            v["edges"],
            v["embedded"],
            v["dim"],
            g.config().effective_multipliers().to_array()
        );
    }
    Ok(())
}

fn decay(text: &str) -> Result<Decay> {
    let bad = || format!("--decay {text}: expected exp:R, power:E or linear:S");
    let (kind, value) = text.split_once(':').with_context(bad)?;
    let v: f64 = value
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .with_context(bad)?;
    Ok(match kind {
        "exp" => Decay::Exponential { rate: v },
        "power" => Decay::Power { exponent: v },
        "linear" => Decay::Linear { slope: v },
        _ => bail!(bad()),
    })
}

fn seed(graph: &Graph, text: &str) -> Result<Seed> {
    let (node, a0) = match text.rsplit_once(':') {
        Some((n, a)) if a.parse::<f32>().is_ok() => (n, Some(a)),
        _ => (text, None),
    };
    let id = match node.parse::<u32>() {
        Ok(id) => id,
        Err(_) => graph
            .find_label(node)
            .with_context(|| format!("--seed {text}: no node has the label {node:?}"))?,
    };
    Ok(match a0 {
        Some(a) => Seed::new(id, a.parse().expect("checked above")),
        None => Seed::full(id),
    })
}

fn spread(global: &Global, args: &SpreadArgs) -> Result<()> {
    let graph = Graph::load(&args.graph)?;
    let seeds: Vec<Seed> = args
        .seeds
        .iter()
        .map(|s| seed(&graph, s))
        .collect::<Result<_>>()?;
    let t = numbers("--thresholds", &args.thresholds, 3)?;
    let c = numbers("--confidence-factors", &args.confidence_factors, 3)?;
    let params = SpreadParams {
        max_hops: args.max_hops,
        decay: decay(&args.decay)?,
        thresholds: [t[0] as f32, t[1] as f32, t[2] as f32],
        confidence_factors: [c[0] as f32, c[1] as f32, c[2] as f32],
        refractory: args.refractory,
        ..SpreadParams::default()
    };
    let device = global.device()?;
    let mut result = graph.spread(&device, &seeds, &params)?;
    if let Some(n) = args.top {
        result.hits.truncate(n);
    }
    print!("{}", render_spread(&result, global.json)?);
    Ok(())
}

fn render_spread(r: &SpreadResult, as_json: bool) -> Result<String> {
    if as_json {
        let hits: Vec<_> = r
            .hits
            .iter()
            .map(|h| {
                json!({
                    "node": h.node,
                    "label": h.label.as_deref(),
                    "activation": h.activation,
                    "confidence": h.confidence,
                    "first_hop": h.first_hop,
                })
            })
            .collect();
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({"hits": hits, "hops_done": r.hops_done}))?
        ));
    }
    let mut out = format!(
        "# node\tlabel\tactivation\tconfidence\tfirst_hop ({} hops done)\n",
        r.hops_done
    );
    for h in &r.hits {
        out.push_str(&format!(
            "{}\t{}\t{:.6}\t{:.6}\t{}\n",
            h.node,
            h.label.as_deref().unwrap_or("-"),
            h.activation,
            h.confidence,
            h.first_hop
        ));
    }
    Ok(out)
}
