//! `warpgrid graph build|info|spread|recall`: activation graphs (SPEC §2, §5).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use warpgrid::engine::graph::{
    Decay, Graph, GraphConfig, LatencyPredictor, MAX_LANES, Multipliers, NpyMatrix, RecallMode,
    RecallParams, RecallResult, Seed, SpreadParams, SpreadResult, SystemClock,
};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum GraphCmd {
    /// Builds a .wgraph from nodes.tsv, edges.tsv and optional embeddings (.npy).
    Build(BuildArgs),
    /// Imports the WordNet 3.0 database (data.* and index.* in DIR) as a .wgraph.
    ImportWordnet(super::wordnet::ImportWordnetArgs),
    /// Prints a .wgraph's size, kinds and embedding dimension.
    Info(InfoArgs),
    /// Spreads activation from seeds and prints the activated nodes.
    Spread(SpreadArgs),
    /// Recalls the nodes nearest to each query of a .npy (similarity seeds, then spreading).
    Recall(RecallArgs),
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
    #[arg(long = "seed")]
    seeds: Vec<String>,
    /// A seed by label only (`dog.n.01`, `dog.n.01:0.5`), for labels that look like ids.
    #[arg(long = "seed-label")]
    seed_labels: Vec<String>,
    #[command(flatten)]
    rules: SpreadRules,
    /// Print only the first N hits.
    #[arg(long)]
    top: Option<usize>,
}

/// The spread flags of SPEC §2.2a, shared by `spread` and `recall`.
#[derive(Debug, Args)]
pub struct SpreadRules {
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
    /// Checked against the graph: direction multipliers are applied when the graph is built
    /// (`graph build --no-hierarchical`), so a different setting here is an error.
    #[arg(long)]
    no_hierarchical: bool,
    /// Checked against the graph, like --no-hierarchical (EC,CE,CC,EE).
    #[arg(long)]
    multipliers: Option<String>,
}

#[derive(Debug, Args)]
pub struct RecallArgs {
    graph: PathBuf,
    /// Queries: a .npy of shape (Q, d), float32 or float16.
    #[arg(long)]
    queries: PathBuf,
    /// Results per query (1..=1000).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Similarity seeds at most.
    #[arg(long, default_value_t = 100)]
    seeds_k: usize,
    /// Similarity threshold of a seed.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.4)]
    sim_threshold: f32,
    /// Temperature of the sigmoid seeding.
    #[arg(long, default_value_t = 0.5)]
    temperature: f32,
    /// similarity, spreading or hybrid.
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Hits with a lower confidence are dropped.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    min_confidence: f32,
    /// Latency budget of each query in milliseconds (0 = none).
    #[arg(long, allow_negative_numbers = true, default_value_t = 10.0)]
    budget_ms: f64,
    #[command(flatten)]
    rules: SpreadRules,
}

pub fn run(global: &Global, cmd: GraphCmd) -> Result<()> {
    match cmd {
        GraphCmd::Build(args) => build(global, &args),
        GraphCmd::ImportWordnet(args) => super::wordnet::import(global, &args),
        GraphCmd::Info(args) => info(global, &args),
        GraphCmd::Spread(args) => spread(global, &args),
        GraphCmd::Recall(args) => recall(global, &args),
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

/// Labels to node ids, built once per command (a graph may have 100k+ labels).
struct LabelIndex<'g> {
    graph: &'g Graph,
    ids: HashMap<&'g str, u32>,
}

impl<'g> LabelIndex<'g> {
    fn new(graph: &'g Graph) -> LabelIndex<'g> {
        let mut ids = HashMap::with_capacity(graph.node_count());
        for v in (0..graph.node_count() as u32).rev() {
            // Reverse order so that the lowest id wins for a repeated label.
            if let Some(l) = graph.label(v) {
                ids.insert(l, v);
            }
        }
        LabelIndex { graph, ids }
    }
}

/// A seed flag's value: `NODE[:A0]` where NODE is an id (when `ids_too`) or a label.
fn seed(labels: &LabelIndex<'_>, flag: &str, text: &str, ids_too: bool) -> Result<Seed> {
    let (node, a0) = match text.rsplit_once(':') {
        Some((n, a)) if a.parse::<f32>().is_ok() => (n, Some(a)),
        _ => (text, None),
    };
    let id = match node.parse::<u32>() {
        Ok(id) if ids_too => {
            if id as usize >= labels.graph.node_count() {
                bail!(
                    "{flag} {text}: node {id} is out of range (the graph has {} nodes)",
                    labels.graph.node_count()
                );
            }
            id
        }
        _ => *labels
            .ids
            .get(node)
            .with_context(|| format!("{flag} {text}: no node has the label {node:?}"))?,
    };
    Ok(match a0 {
        Some(a) => Seed::new(id, a.parse().expect("checked above")),
        None => Seed::full(id),
    })
}

impl SpreadRules {
    /// The spread parameters these flags give, after checking the build-time flags against
    /// the graph.
    fn params(&self, graph: &Graph) -> Result<SpreadParams> {
        self.check_multipliers(graph)?;
        let t = numbers("--thresholds", &self.thresholds, 3)?;
        let c = numbers("--confidence-factors", &self.confidence_factors, 3)?;
        let params = SpreadParams {
            max_hops: self.max_hops,
            decay: decay(&self.decay)?,
            thresholds: [t[0] as f32, t[1] as f32, t[2] as f32],
            confidence_factors: [c[0] as f32, c[1] as f32, c[2] as f32],
            refractory: self.refractory,
            ..SpreadParams::default()
        };
        params.validate()?;
        Ok(params)
    }

    /// Multipliers are baked into the stored effective weights: flags that ask for others
    /// than the graph was built with are refused rather than silently ignored.
    fn check_multipliers(&self, graph: &Graph) -> Result<()> {
        let built = graph.config();
        if self.no_hierarchical && built.hierarchical {
            bail!(
                "--no-hierarchical: the graph was built with direction multipliers {:?}; \
                 they are applied at build time, so rebuild it with `graph build --no-hierarchical`",
                built.effective_multipliers().to_array()
            );
        }
        if let Some(m) = &self.multipliers {
            let v = numbers("--multipliers", m, 4)?;
            let have = built.effective_multipliers().to_array();
            if v[..] != have[..] {
                bail!(
                    "--multipliers {m}: the graph was built with {have:?}; multipliers are \
                     applied at build time, so rebuild it with `graph build --multipliers {m}`"
                );
            }
        }
        Ok(())
    }
}

fn spread(global: &Global, args: &SpreadArgs) -> Result<()> {
    if args.seeds.is_empty() && args.seed_labels.is_empty() {
        bail!("graph spread: give at least one --seed or --seed-label");
    }
    let graph = Graph::load(&args.graph)?;
    let labels = LabelIndex::new(&graph);
    let mut seeds: Vec<Seed> = Vec::with_capacity(args.seeds.len() + args.seed_labels.len());
    for s in &args.seeds {
        seeds.push(seed(&labels, "--seed", s, true)?);
    }
    for s in &args.seed_labels {
        seeds.push(seed(&labels, "--seed-label", s, false)?);
    }
    let params = args.rules.params(&graph)?;
    let device = global.device()?;
    graph.prepare(&device)?;
    let mut result = graph.spread(&device, &seeds, &params)?;
    if let Some(n) = args.top {
        result.hits.truncate(n);
    }
    print!("{}", render_spread(&result, global.json)?);
    Ok(())
}

fn recall_params(args: &RecallArgs, graph: &Graph) -> Result<RecallParams> {
    let mode = RecallMode::parse(&args.mode).with_context(|| {
        format!(
            "--mode {}: expected similarity, spreading or hybrid",
            args.mode
        )
    })?;
    if !(args.budget_ms.is_finite() && args.budget_ms >= 0.0) {
        bail!("--budget-ms {}: expected a number >= 0", args.budget_ms);
    }
    let params = RecallParams {
        k: args.k,
        seeds_k: args.seeds_k,
        sim_threshold: args.sim_threshold,
        temperature: args.temperature,
        mode,
        min_confidence: args.min_confidence,
        budget: Duration::from_secs_f64(args.budget_ms / 1e3),
        spread: args.rules.params(graph)?,
    };
    params.validate()?;
    Ok(params)
}

/// Reads the queries and checks them against the graph, naming the file in every error.
fn read_queries(path: &Path, graph: &Graph) -> Result<NpyMatrix> {
    let q = NpyMatrix::read(path)?;
    if graph.dim() == 0 {
        bail!(
            "{}: the graph has no embeddings, so it cannot be recalled from; \
             build it with --embeddings",
            path.display()
        );
    }
    if q.cols != graph.dim() {
        bail!(
            "{}: shape ({}, {}): the queries have dimension {} but the graph's embeddings \
             have dimension {}",
            path.display(),
            q.rows,
            q.cols,
            q.cols,
            graph.dim()
        );
    }
    for (row, values) in q.data.chunks_exact(q.cols).enumerate() {
        if let Some(col) = values.iter().position(|x| !x.is_finite()) {
            bail!(
                "{}: query {row}, column {col}: {} is not a finite number",
                path.display(),
                values[col]
            );
        }
        if values.iter().all(|&x| x == 0.0) {
            bail!(
                "{}: query {row}: an all-zero query has no direction to recall",
                path.display()
            );
        }
    }
    Ok(q)
}

/// `graph recall`: with a latency budget every query runs alone with its own budget (a
/// batch shares one budget, SPEC §2.3); without one, the queries run as batches, which gives
/// the same results faster.
fn recall(global: &Global, args: &RecallArgs) -> Result<()> {
    let graph = Graph::load(&args.graph)?;
    let params = recall_params(args, &graph)?;
    let queries = read_queries(&args.queries, &graph)?;
    let device = global.device()?;
    graph.prepare(&device)?;
    let clock = SystemClock::new();
    let mut predictor = LatencyPredictor::new();
    let d = queries.cols;
    let mut results = Vec::with_capacity(queries.rows);
    let per_call = if params.budget.is_zero() {
        MAX_LANES
    } else {
        1
    };
    for chunk in queries.data.chunks(per_call * d) {
        results.extend(graph.recall_batch(&device, chunk, &params, &clock, &mut predictor)?);
    }
    print!("{}", render_recall(&results, global.json)?);
    Ok(())
}

fn render_recall(results: &[RecallResult], as_json: bool) -> Result<String> {
    if as_json {
        let queries: Vec<_> = results
            .iter()
            .map(|r| {
                let hits: Vec<_> = r
                    .hits
                    .iter()
                    .map(|h| {
                        json!({
                            "node": h.node,
                            "label": h.label.as_deref(),
                            "score": h.score,
                            "activation": h.activation,
                            "confidence": h.confidence,
                            "sim": h.sim,
                            "first_hop": h.first_hop,
                        })
                    })
                    .collect();
                json!({"hits": hits, "partial": r.partial, "hops_done": r.hops_done})
            })
            .collect();
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({ "queries": queries }))?
        ));
    }
    let mut out =
        String::from("# query\trank\tnode\tlabel\tscore\tactivation\tconfidence\tsim\tfirst_hop\n");
    for (q, r) in results.iter().enumerate() {
        out.push_str(&format!(
            "# query {q}: {} hits, hops_done {}{}\n",
            r.hits.len(),
            r.hops_done,
            if r.partial { ", partial" } else { "" }
        ));
        for (rank, h) in r.hits.iter().enumerate() {
            let sim = h.sim.map_or_else(|| "-".to_owned(), |s| format!("{s:.6}"));
            out.push_str(&format!(
                "{q}\t{}\t{}\t{}\t{:.6}\t{:.6}\t{:.6}\t{sim}\t{}\n",
                rank + 1,
                h.node,
                h.label.as_deref().unwrap_or("-"),
                h.score,
                h.activation,
                h.confidence,
                h.first_hop
            ));
        }
    }
    Ok(out)
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
