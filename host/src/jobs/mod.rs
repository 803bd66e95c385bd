//! Job files (SPEC §5): a batch job as a list of steps over tables and braids, run by
//! [`run_job`].
//!
//! ```toml
//! name = "ycsb-b"                 # optional, for the report
//! report = "ycsb-b.json"          # optional: where `warpgrid run` writes the JSON report
//!
//! [[steps]]
//! kind = "create_table"           # a table, behind its own submission queue
//! table = "usertable"
//! shards = 24                     # optional, like every setting below
//! value_bytes = 8
//! capacity = 1000000
//!
//! [[steps]]
//! kind = "ycsb_load"              # YCSB's load phase: records 0..records in order
//! table = "usertable"
//! workload = "b"
//! records = 1000000
//!
//! [[steps]]
//! kind = "ycsb_run"               # YCSB's run phase through the queue, pipelined clients
//! table = "usertable"
//! workload = "b"
//! records = 1000000               # must match the load
//! operations = 2000000
//! clients = 8
//! window = 64                     # operations each client keeps in flight
//!
//! [[steps]]
//! kind = "apply_ops"              # an ops file (SPEC §5), relative to the job file
//! table = "usertable"
//! ops = "extra.ops"
//!
//! [[steps]]
//! kind = "braid_run"              # a braid (SPEC §3) from a braid config file (SPEC §5),
//! config = "braid.toml"           # relative to the job file
//! instants = 2000                 # optional: run to this instant instead of the config's
//!
//! [[steps]]
//! kind = "graph_recall"           # recalls over an activation graph (SPEC §2.3) through a
//! nodes = 10000                   # recall queue: a generated Barabási–Albert graph, or
//! dim = 64                        # graph = "g.wgraph" (relative to the job file)
//! queries = 2000                  # queries near stored embeddings, from `clients` threads
//! ```
//! Unknown keys are errors. A braid step runs on the job's device (its worker pool) and
//! reports the braid's statistics and the digest of every torus, the same figures as
//! `warpgrid braid run` on the same config. The braid config is always its own file (the
//! one `warpgrid braid run` takes, like `apply_ops` takes an ops file): a step and the CLI
//! then read a config the same way, and its errors keep the config's own lines and fields.
//! A graph step recalls through a [`RecallQueue`](crate::recall::RecallQueue) from
//! pipelining client threads, like a YCSB step through a table's queue.

mod run;

use std::path::Path;

use serde::Deserialize;

pub use run::{
    BraidStepReport, BraidTorusReport, ExchangePoint, GraphStepReport, JobReport, Progress,
    ShardLoad, StepReport, TableReport, op_latency, run_braid_traced, run_job,
};

/// A parsed job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The job's name in the report (default: the job file's path).
    #[serde(default)]
    pub name: Option<String>,
    /// Where to write the JSON report (relative to the job file).
    #[serde(default)]
    pub report: Option<String>,
    /// The steps, run in order.
    pub steps: Vec<Step>,
}

/// One step of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Creates a table, behind its own submission queue; later steps name it.
    CreateTable {
        /// Name of the table (unique in the job).
        table: String,
        /// Number of shards (default 24).
        #[serde(default = "default_shards")]
        shards: u32,
        /// Bytes per value, a multiple of 4 in 4..=256 (default 8).
        #[serde(default = "default_value_bytes")]
        value_bytes: u32,
        /// Expected number of keys (default 0: shards start small and grow).
        #[serde(default)]
        capacity: u64,
        /// Load factor a shard may reach before it doubles (default 0.8).
        #[serde(default = "default_max_load")]
        max_load: f64,
        /// Host cache: unset = the backend's default (off on cpu).
        #[serde(default)]
        cache: Option<bool>,
    },
    /// Applies an ops file (SPEC §5) to a table, in batches through its queue.
    ApplyOps {
        /// The table, created by an earlier step.
        table: String,
        /// The ops file, relative to the job file.
        ops: String,
        /// Operations per submitted batch (default 4096; 0 is taken as 1).
        #[serde(default = "default_batch")]
        batch: usize,
    },
    /// YCSB's load phase: inserts records `0..records` in order.
    YcsbLoad {
        /// The table, created by an earlier step.
        table: String,
        /// YCSB workload letter (`a` to `f`).
        workload: String,
        /// Number of records to insert.
        records: u64,
    },
    /// YCSB's run phase through the table's queue, from pipelined client threads.
    YcsbRun {
        /// The table, loaded by an earlier step.
        table: String,
        /// YCSB workload letter (`a` to `f`).
        workload: String,
        /// Number of records loaded (must match the load step).
        records: u64,
        /// Operations to run, all clients together.
        operations: u64,
        /// Client threads (default 8).
        #[serde(default = "default_clients")]
        clients: usize,
        /// Operations each client keeps in flight (default 64).
        #[serde(default = "default_window")]
        window: usize,
        /// Seed of the operation stream (default 0).
        #[serde(default)]
        seed: u64,
        /// `uniform`, `zipfian` or `latest`, overriding the workload's.
        #[serde(default)]
        distribution: Option<String>,
        /// Workload E only: tables have no range scan, so E runs only if the job asks for
        /// `scan = "emulate-point-reads"` (each scan becomes `len` point reads of the next key
        /// numbers, reported as an emulation).
        #[serde(default)]
        scan: Option<String>,
    },
    /// Runs a braid: `config` is a braid config file (SPEC §5) relative to the job file;
    /// `instants` (optional) overrides the config's `instants`.
    BraidRun {
        /// The braid config file, relative to the job file.
        config: String,
        /// Instant to run to instead of the config's `instants`.
        #[serde(default)]
        instants: Option<u32>,
    },
    /// Recalls over an activation graph (SPEC §2.3) through a recall queue: `graph` (a
    /// `.wgraph` file relative to the job file) or, without it, a Barabási–Albert graph of
    /// `nodes` nodes, `links` links per new node and embeddings of dimension `dim`, generated
    /// from `seed`. `queries` queries near stored embeddings (each component moved by up to
    /// `noise`) are recalled by `clients` threads, each keeping `window` recalls in flight.
    GraphRecall {
        /// A `.wgraph` file relative to the job file; without it a graph is generated.
        #[serde(default)]
        graph: Option<String>,
        /// Nodes of the generated graph (default 10000).
        #[serde(default = "default_nodes")]
        nodes: usize,
        /// Links per new node of the generated graph (default 4).
        #[serde(default = "default_links")]
        links: usize,
        /// Embedding dimension of the generated graph (default 64).
        #[serde(default = "default_dim")]
        dim: usize,
        /// Seed of the generated graph and of the queries (default 0).
        #[serde(default)]
        seed: u64,
        /// Number of queries (default 1000).
        #[serde(default = "default_queries")]
        queries: usize,
        /// Largest change of each query component from its stored embedding (default 0.1).
        #[serde(default = "default_noise")]
        noise: f32,
        /// Client threads (default 4).
        #[serde(default = "default_graph_clients")]
        clients: usize,
        /// Recalls each client keeps in flight (default 4).
        #[serde(default = "default_graph_window")]
        window: usize,
        /// Results per recall (1..=1000).
        #[serde(default = "default_k")]
        k: usize,
        /// `similarity`, `spreading` or `hybrid`.
        #[serde(default = "default_mode")]
        mode: String,
        /// The latency budget per recall batch in ms (0 = none).
        #[serde(default = "default_budget_ms")]
        budget_ms: f64,
    },
}

fn default_nodes() -> usize {
    10_000
}
fn default_links() -> usize {
    4
}
fn default_dim() -> usize {
    64
}
fn default_queries() -> usize {
    1000
}
fn default_noise() -> f32 {
    0.1
}
fn default_graph_clients() -> usize {
    4
}
fn default_graph_window() -> usize {
    4
}
fn default_k() -> usize {
    10
}
fn default_mode() -> String {
    "hybrid".into()
}
fn default_budget_ms() -> f64 {
    10.0
}

fn default_shards() -> u32 {
    24
}
fn default_value_bytes() -> u32 {
    8
}
fn default_max_load() -> f64 {
    0.8
}
fn default_batch() -> usize {
    4096
}
fn default_clients() -> usize {
    8
}
fn default_window() -> usize {
    64
}

/// A problem with a job file or one of its steps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job file could not be read.
    #[error("{file}: cannot read the job file")]
    Read {
        /// The job file's path.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The job file is not valid TOML, does not match the schema, or has no step.
    #[error("{file}: {message}")]
    Parse {
        /// The job file's path.
        file: String,
        /// The problem, with its line and column where known.
        message: String,
    },
    /// A step is invalid or failed while running; earlier steps ran.
    #[error("{file}: step {step} ({kind}): {message}")]
    Step {
        /// The job file's path.
        file: String,
        /// Index of the step in the file, from 1.
        step: usize,
        /// The step's kind (`create_table`, `ycsb_run`, ...).
        kind: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl Step {
    /// The step's `kind` as spelled in the job file.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::CreateTable { .. } => "create_table",
            Step::ApplyOps { .. } => "apply_ops",
            Step::YcsbLoad { .. } => "ycsb_load",
            Step::YcsbRun { .. } => "ycsb_run",
            Step::BraidRun { .. } => "braid_run",
            Step::GraphRecall { .. } => "graph_recall",
        }
    }
}

impl Job {
    /// Reads and parses a job file (TOML), naming the file and the place of any error.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| JobError::Read {
            file: file.clone(),
            source,
        })?;
        Job::parse(&text, &file)
    }

    /// Parses the text of a job file; `file` names it in errors.
    ///
    /// # Errors
    /// [`JobError::Parse`] with the line and column of a TOML or schema error, or when the job
    /// has no step.
    pub fn parse(text: &str, file: &str) -> Result<Job, JobError> {
        let job: Job = toml::from_str(text).map_err(|e| JobError::Parse {
            file: file.to_owned(),
            message: parse_message(text, &e),
        })?;
        if job.steps.is_empty() {
            return Err(JobError::Parse {
                file: file.to_owned(),
                message: "a job needs at least one [[steps]]".into(),
            });
        }
        Ok(job)
    }
}

/// The TOML error as "line L, column C: message" (the crate's own text spans several lines).
/// An error inside a step points at the step's `[[steps]]` line.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
