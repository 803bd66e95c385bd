//! `warpgrid kv apply`, `kv stats` and `kv checkpoint`: ops files against a shard table.
//!
//! With `--dir D --table T` the table lives durably in `D/T` (SPEC §1.3): results of a batch
//! are printed only once the batch is durable under the fsync policy. Without `--dir` the
//! table lives in memory for the one command.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::Path;

use warpgrid::host::durable::{DurableOptions, DurableTable, FsyncPolicy, Manifest};
use warpgrid::host::{OpsReader, write_outcome};
use warpgrid::{Batch, Table, TableConfig, TableStats};

use super::Global;

#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Applies an ops file (or `-` for stdin) and prints one result line per operation.
    Apply(ApplyArgs),
    /// Prints a table's statistics (for an in-memory table: after applying an ops file).
    Stats(StatsArgs),
    /// Writes a durable table's snapshots and empties its WALs.
    Checkpoint(CheckpointArgs),
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    table: TableArgs,
}

/// Which table, and how to create it.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// Data directory: the table lives durably in DIR/TABLE (created with --create).
    #[arg(long)]
    dir: Option<String>,
    /// Table name, [a-z0-9_-]{1,64}.
    #[arg(long, default_value = "main")]
    table: String,
    /// Create the table if it does not exist (an in-memory table is always created).
    #[arg(long)]
    create: bool,
    /// Shards, 1..=1024 (default 24; a durable table's own when omitted).
    #[arg(long)]
    shards: Option<u32>,
    /// Bytes per value: a multiple of 4 in 4..=256 (default 8; a durable table's own when omitted).
    #[arg(long)]
    value_bytes: Option<u32>,
    /// Expected number of keys (sizes the shards up front).
    #[arg(long, default_value_t = 0)]
    capacity: u64,
    /// Load factor at which a shard doubles, 0.5..=0.95.
    #[arg(long, default_value_t = TableConfig::DEFAULT_MAX_LOAD)]
    max_load: f64,
    /// fsync policy of a durable table: always (default), interval=<ms> or never.
    #[arg(long)]
    fsync: Option<String>,
    /// Checkpoint a durable table when a shard's WAL passes this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    checkpoint_bytes: u64,
}

/// The table a command works on: in memory for the command, or durable in a directory.
pub enum Target {
    Memory(Table),
    Durable(Box<DurableTable>),
}

impl Target {
    fn value_bytes(&self) -> usize {
        self.table().value_bytes()
    }

    fn table(&self) -> &Table {
        match self {
            Target::Memory(t) => t,
            Target::Durable(d) => d.table(),
        }
    }

    fn apply(&mut self, batch: &Batch) -> Result<warpgrid::BatchResults> {
        Ok(match self {
            Target::Memory(t) => t.apply(batch).context("applying a batch")?,
            Target::Durable(d) => d.apply(batch).context("applying a batch")?,
        })
    }
}

impl TableArgs {
    fn config(&self, stored: Option<&Manifest>) -> TableConfig {
        let shards = self
            .shards
            .or(stored.map(|m| m.shards))
            .unwrap_or(TableConfig::DEFAULT_SHARDS);
        let value_bytes = self
            .value_bytes
            .or(stored.map(|m| m.value_bytes))
            .unwrap_or(TableConfig::DEFAULT_VALUE_BYTES);
        TableConfig::new(self.table.clone())
            .with_shards(shards)
            .with_value_bytes(value_bytes)
            .with_capacity(self.capacity)
            .with_max_load(self.max_load)
    }

    /// The table these arguments name: durable in `--dir`, else in memory for this command.
    fn open(&self, global: &Global) -> Result<Target> {
        let device = global.device()?;
        let Some(dir) = &self.dir else {
            if let Some(policy) = &self.fsync {
                bail!("--fsync {policy}: an fsync policy applies to durable tables; add --dir");
            }
            return Ok(Target::Memory(
                Table::create(&device, self.config(None)).context("creating the table")?,
            ));
        };
        let path = Path::new(dir).join(&self.table);
        let stored = Manifest::read(&path)?;
        let fsync: FsyncPolicy = self.fsync.as_deref().unwrap_or("always").parse()?;
        let options = DurableOptions {
            fsync,
            checkpoint_bytes: self.checkpoint_bytes,
            create: self.create,
        };
        let table = DurableTable::open(&path, &device, self.config(stored.as_ref()), &options)?;
        Ok(Target::Durable(Box::new(table)))
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
        KvCmd::Checkpoint(args) => checkpoint(global, &args),
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
    table: &mut Target,
    input: &str,
    batch_limit: usize,
    mut each: impl FnMut(&Batch, &warpgrid::BatchResults) -> Result<()>,
) -> Result<()> {
    let (reader, name, interactive) = open_input(input)?;
    let mut reader = OpsReader::new(reader, name, table.value_bytes(), batch_limit)
        .end_batches_on_pause(interactive);
    let mut batch = table.table().batch();
    let mut warned: Option<String> = None;
    loop {
        // A batch with a bad line is never applied: parsing fails before `apply`.
        let more = reader.next_batch(&mut batch)?;
        if !batch.is_empty() {
            // Durable tables return only once the batch is durable under their fsync policy.
            let results = table.apply(&batch)?;
            each(&batch, &results)?;
            if let Target::Durable(d) = table {
                let failed = d.checkpoint_error().map(str::to_owned);
                if failed.is_some() && failed != warned {
                    eprintln!(
                        "warpgrid: warning: automatic checkpoint failed (the batches are durable \
                         in the WAL; it is retried as the WAL grows): {}",
                        failed.as_deref().unwrap_or_default()
                    );
                }
                warned = failed;
            }
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
    let mut table = args.table.open(global)?;
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
    let mut table = args.table.open(global)?;
    match (&args.input, &table) {
        (Some(input), _) => apply_all(&mut table, input, 1 << 16, |_, _| Ok(()))?,
        (None, Target::Durable(_)) => {}
        (None, Target::Memory(_)) => bail!(
            "kv stats needs a table: give --dir for a durable table, or an ops file to build an \
             in-memory table and report its statistics"
        ),
    }
    let st = table.table().stats();
    if global.json {
        let mut json = stats_json(&st);
        if let Target::Durable(d) = &table {
            json["wal_bytes"] = serde_json::json!(d.wal_bytes());
            json["wal"] = serde_json::json!(d.wal_path());
            json["fsync"] = serde_json::json!(d.policy().to_string());
            json["last_checkpoint_unix"] = serde_json::json!(d.last_checkpoint().map(unix_seconds));
            json["recovery"] = serde_json::to_value(d.recovery())?;
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", render_stats(table.table().name(), &st));
        if let Target::Durable(d) = &table {
            let r = d.recovery();
            let checkpoint = match d.last_checkpoint() {
                Some(t) => format!(
                    "last checkpoint {:.0} s ago",
                    t.elapsed().unwrap_or_default().as_secs_f64()
                ),
                None => "never checkpointed".to_string(),
            };
            println!(
                "durable in {}: WAL {} bytes, fsync {}, {checkpoint}; opened from {} snapshot \
                 entries and {} WAL records ({} batches replayed, {} incomplete batches and {} \
                 bytes cut) in {:.3} s",
                d.dir().display(),
                d.wal_bytes(),
                d.policy(),
                r.snapshot_entries,
                r.wal_records,
                r.batches_replayed,
                r.batches_dropped,
                r.dropped_bytes,
                r.seconds
            );
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch (0 for times before it).
fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn checkpoint(global: &Global, args: &CheckpointArgs) -> Result<()> {
    let mut target = args.table.open(global)?;
    let Target::Durable(table) = &mut target else {
        bail!("kv checkpoint needs a durable table: give --dir D --table T");
    };
    let before = table.wal_bytes();
    table.checkpoint()?;
    println!(
        "checkpointed {}: {} items in snapshots, {before} WAL bytes released",
        table.dir().display(),
        table.stats().items
    );
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
