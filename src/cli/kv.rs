//! `warpgrid kv apply` and `warpgrid kv stats`: ops files against a shard table.
//!
//! Until durable tables land, a table lives in memory for one command, and `--dir` (and the
//! options only a durable table has) are refused rather than ignored.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use warpgrid::host::{OpsReader, write_outcome};
use warpgrid::{Batch, Table, TableConfig, TableStats};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Applies an ops file (or `-` for stdin) and prints one result line per operation.
    Apply(ApplyArgs),
    /// Prints a table's statistics (for an in-memory table: after applying an ops file).
    Stats(StatsArgs),
}

/// Which table, and how to create it.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// Data directory of a durable table (not available yet: durability has its own issue).
    #[arg(long)]
    dir: Option<String>,
    /// Table name, [a-z0-9_-]{1,64}.
    #[arg(long, default_value = "main")]
    table: String,
    /// Create the table (an in-memory table is always created).
    #[arg(long)]
    create: bool,
    /// Shards, 1..=1024.
    #[arg(long, default_value_t = TableConfig::DEFAULT_SHARDS)]
    shards: u32,
    /// Bytes per value: a multiple of 4 in 4..=256.
    #[arg(long, default_value_t = TableConfig::DEFAULT_VALUE_BYTES)]
    value_bytes: u32,
    /// Expected number of keys (sizes the shards up front).
    #[arg(long, default_value_t = 0)]
    capacity: u64,
    /// Load factor at which a shard doubles, 0.5..=0.95.
    #[arg(long, default_value_t = TableConfig::DEFAULT_MAX_LOAD)]
    max_load: f64,
    /// fsync policy of a durable table: always, interval=<ms> or never.
    #[arg(long)]
    fsync: Option<String>,
}

impl TableArgs {
    /// The in-memory table these arguments describe, refusing what needs durability.
    fn create_table(&self, global: &Global) -> Result<Table> {
        if let Some(dir) = &self.dir {
            bail!(
                "--dir {dir}: durable tables are not available in this version of warpgrid; \
                 omit --dir to run on an in-memory table that lives for this command"
            );
        }
        if let Some(policy) = &self.fsync {
            bail!(
                "--fsync {policy}: an fsync policy applies to durable tables (--dir), which are not available yet"
            );
        }
        let config = TableConfig::new(self.table.clone())
            .with_shards(self.shards)
            .with_value_bytes(self.value_bytes)
            .with_capacity(self.capacity)
            .with_max_load(self.max_load);
        let device = global.device()?;
        Table::create(&device, config).context("creating the table")
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Operations per batch (a batch also ends when piped input pauses).
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Ops file, or `-` for standard input.
    input: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    table: TableArgs,
    /// Ops file (or `-`) to apply to the in-memory table before reporting.
    input: Option<String>,
}

pub fn run(global: &Global, cmd: KvCmd) -> Result<()> {
    match cmd {
        KvCmd::Apply(args) => apply(global, &args),
        KvCmd::Stats(args) => stats(global, &args),
    }
}

/// The input, its name for messages, and whether it is a pipe or terminal (where a pause
/// in the input should end a batch).
fn open_input(path: &str) -> Result<(Box<dyn Read>, String, bool)> {
    if path == "-" {
        let stdin = io::stdin();
        let interactive = stdin.is_terminal() || !is_regular_stdin();
        Ok((Box::new(stdin), "<stdin>".into(), interactive))
    } else {
        let file = File::open(path).with_context(|| format!("{path}: cannot open the ops file"))?;
        // A FIFO or a process substitution pauses like a pipe; only a regular file does not.
        let interactive = !file.metadata().is_ok_and(|m| m.is_file());
        Ok((Box::new(file), path.into(), interactive))
    }
}

fn is_regular_stdin() -> bool {
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.is_file())
}

/// Applies every batch of `input` to `table`, handing each batch's results to `each`.
fn apply_all(
    table: &mut Table,
    input: &str,
    batch_limit: usize,
    mut each: impl FnMut(&Batch, &warpgrid::BatchResults) -> Result<()>,
) -> Result<()> {
    let (reader, name, interactive) = open_input(input)?;
    let mut reader = OpsReader::new(reader, name, table.value_bytes(), batch_limit)
        .end_batches_on_pause(interactive);
    let mut batch = table.batch();
    loop {
        // A batch with a bad line is never applied: parsing fails before `apply`.
        let more = reader.next_batch(&mut batch)?;
        if !batch.is_empty() {
            let results = table.apply(&batch).context("applying a batch")?;
            each(&batch, &results)?;
        }
        if !more {
            return Ok(());
        }
    }
}

fn apply(global: &Global, args: &ApplyArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch 0: a batch needs at least one operation");
    }
    let mut table = args.table.create_table(global)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut text = String::new();
    apply_all(&mut table, &args.input, args.batch, |_, results| {
        text.clear();
        for r in results.iter() {
            write_outcome(&r, &mut text);
            text.push('\n');
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    })
}

fn stats(global: &Global, args: &StatsArgs) -> Result<()> {
    let mut table = args.table.create_table(global)?;
    match &args.input {
        Some(input) => apply_all(&mut table, input, 1 << 16, |_, _| Ok(()))?,
        None => bail!(
            "kv stats needs a table: durable tables (--dir) are not available yet, so give an \
             ops file to build an in-memory table and report its statistics"
        ),
    }
    let st = table.stats();
    if global.json {
        println!("{}", serde_json::to_string_pretty(&stats_json(&st))?);
    } else {
        print!("{}", render_stats(table.name(), &st));
    }
    Ok(())
}

/// The JSON of SPEC §5 (`items`, `shards`, `load_factor`, `cv`, `resizes`) plus links and ops.
pub fn stats_json(st: &TableStats) -> serde_json::Value {
    let shards: Vec<_> = st
        .shards
        .iter()
        .map(|s| json!({"items": s.items, "slots": s.slots, "ops": s.ops, "resizes": s.resizes, "link_halves": s.link_halves}))
        .collect();
    json!({
        "items": st.items,
        "slots": st.slots,
        "shards": shards,
        "load_factor": st.load_factor,
        "cv": st.cv,
        "resizes": st.resizes,
        "links": st.links,
        "ops": st.ops,
    })
}

pub fn render_stats(name: &str, st: &TableStats) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table {name}: {} items in {} shards, {} slots, load {:.3}, cv {:.4}, {} resizes, {} links, {} ops",
        st.items,
        st.shards.len(),
        st.slots,
        st.load_factor,
        st.cv,
        st.resizes,
        st.links,
        st.ops
    );
    let _ = writeln!(
        s,
        "{:>5} {:>10} {:>10} {:>6} {:>10} {:>7}",
        "shard", "items", "slots", "load", "ops", "resizes"
    );
    for (i, sh) in st.shards.iter().enumerate() {
        let _ = writeln!(
            s,
            "{i:>5} {:>10} {:>10} {:>6.3} {:>10} {:>7}",
            sh.items,
            sh.slots,
            sh.items as f64 / sh.slots as f64,
            sh.ops,
            sh.resizes
        );
    }
    s
}
