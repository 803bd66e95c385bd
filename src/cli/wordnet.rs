//! `warpgrid graph import-wordnet DIR -o G.wgraph`: the WordNet 3.0 database as an activation
//! graph (synsets as nodes labelled `dog.n.01`, pointers as weighted edges; see
//! `docs/wordnet.md` and `warpgrid::host::wordnet`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use warpgrid::engine::graph::{Graph, Multipliers};
use warpgrid::host::wordnet::{self, ImportOptions, ImportReport, Pos, Relation};

use super::Global;

#[derive(Debug, Args)]
pub struct ImportWordnetArgs {
    /// Directory of the WordNet 3.0 files data.* and index.* (Debian: /usr/share/wordnet).
    dir: PathBuf,
    /// Output file (.wgraph).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// All direction multipliers 1 (they shape the stored effective weights).
    #[arg(long)]
    no_hierarchical: bool,
    /// Direction multipliers EC,CE,CC,EE (default 0.8,0.6,0.4,0.3).
    #[arg(long)]
    multipliers: Option<String>,
    /// A relation's edge weight, NAME=W or SYMBOL=W (`hypernym=0.9`, `!=0`); 0 leaves the
    /// relation out. Repeatable; the others keep the table of docs/wordnet.md.
    #[arg(long = "weight", value_name = "RELATION=W")]
    weights: Vec<String>,
}

/// Checks the arguments and turns them into import options.
fn options(args: &ImportWordnetArgs) -> Result<ImportOptions> {
    let mut options = ImportOptions::default();
    options.config.hierarchical = !args.no_hierarchical;
    if let Some(text) = &args.multipliers {
        options.config.multipliers = Multipliers::from_array(multipliers(text)?);
    }
    options.config.validate()?;
    for w in &args.weights {
        options
            .weights
            .set_from_text(w)
            .with_context(|| format!("--weight {w}"))?;
    }
    Ok(options)
}

/// `EC,CE,CC,EE` as four finite numbers.
fn multipliers(text: &str) -> Result<[f64; 4]> {
    let values = text
        .split(',')
        .map(|p| p.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
        .collect::<Option<Vec<f64>>>();
    match values.as_deref() {
        Some(&[ec, ce, cc, ee]) => Ok([ec, ce, cc, ee]),
        _ => bail!("--multipliers {text}: expected 4 comma-separated finite numbers EC,CE,CC,EE"),
    }
}

/// Imports the database, saves the graph and prints what was made.
pub fn import(global: &Global, args: &ImportWordnetArgs) -> Result<()> {
    let options = options(args)?;
    let start = Instant::now();
    let (graph, report) = wordnet::import(&args.dir, &options)?;
    let imported = start.elapsed().as_secs_f64();
    graph.save(&args.output)?;
    if global.json {
        let v = summary_json(&graph, &report, &options, imported);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!(
            "{}",
            summary_text(args, &graph, &report, &options, imported)
        );
    }
    Ok(())
}

fn summary_json(
    graph: &Graph,
    report: &ImportReport,
    options: &ImportOptions,
    seconds: f64,
) -> serde_json::Value {
    let synsets: serde_json::Map<String, serde_json::Value> = Pos::ALL
        .iter()
        .map(|&p| (p.name().to_owned(), json!(report.synsets_of(p))))
        .collect();
    let relations: Vec<_> = Relation::ALL
        .iter()
        .map(|&r| {
            json!({
                "name": r.name(),
                "symbol": r.symbol(),
                "weight": options.weights.get(r),
                "edges": report.edges_of(r),
            })
        })
        .collect();
    json!({
        "nodes": graph.node_count(),
        "edges": graph.edge_count(),
        "synsets": synsets,
        "satellites": report.satellites,
        "pointers": report.pointers,
        "lexical_pointers": report.lexical_pointers,
        "edges_added": report.edges_added(),
        "skipped_self": report.skipped_self,
        "skipped_disabled": report.skipped_disabled,
        "relations": relations,
        "hierarchical": graph.config().hierarchical,
        "multipliers": graph.config().effective_multipliers().to_array(),
        "import_seconds": seconds,
    })
}

fn summary_text(
    args: &ImportWordnetArgs,
    graph: &Graph,
    report: &ImportReport,
    options: &ImportOptions,
    seconds: f64,
) -> String {
    let mut out = format!(
        "imported {} into {} in {seconds:.2} s: {} synsets ({} noun, {} verb, {} adj incl. {} \
         satellites, {} adv), {} pointers ({} lexical) -> {} edges added, {} after merging \
         duplicates; skipped {} pointers from a synset to itself and {} of relations with weight \
         0\n",
        args.dir.display(),
        args.output.display(),
        report.total_synsets(),
        report.synsets_of(Pos::Noun),
        report.synsets_of(Pos::Verb),
        report.synsets_of(Pos::Adj),
        report.satellites,
        report.synsets_of(Pos::Adv),
        report.pointers,
        report.lexical_pointers,
        report.edges_added(),
        graph.edge_count(),
        report.skipped_self,
        report.skipped_disabled,
    );
    out.push_str("# relation\tsymbol\tweight\tedges\n");
    for r in Relation::ALL {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            r.name(),
            r.symbol(),
            options.weights.get(r),
            report.edges_of(r)
        ));
    }
    out
}
