//! [`GraphError`]: every way building, loading or querying an activation graph can fail.
//!
//! Messages are lowercase and name the file, the line (text files) and the field, with the
//! expected and the actual value, and a fix where one is known (STYLE §8).

use std::path::{Path, PathBuf};

/// Errors of the activation-graph layer. A call that returns one changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Opening, reading or writing a file failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done (`"open"`, `"read"`, `"write"`, `"rename"`).
        action: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A bad line of a text file (`nodes.tsv`, `edges.tsv`). `line` counts every line from 1,
    /// comments and blanks included; `line` is 0 when the problem is the file as a whole.
    #[error("{}:{line}: field {field}: {reason}", path.display())]
    Line {
        /// The text file.
        path: PathBuf,
        /// Line number, from 1 (0: the file as a whole).
        line: u64,
        /// The column or part of the line at fault (`kind`, `weight`, ...).
        field: &'static str,
        /// The expected and the actual value.
        reason: String,
    },
    /// A bad `.npy` file (header, dtype, shape or data).
    #[error("{}: npy field {field}: {reason}", path.display())]
    Npy {
        /// The `.npy` file.
        path: PathBuf,
        /// The header key or part at fault (`descr`, `shape`, `data`, ...).
        field: &'static str,
        /// The expected and the actual value.
        reason: String,
    },
    /// A file ended before the named section was complete.
    #[error(
        "{}: truncated in section {section}: needed {needed} bytes, {available} available \
         (the file is cut short; rebuild or copy it again)",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The section being read.
        section: &'static str,
        /// Bytes the section needed.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// A stored checksum does not match the bytes read.
    #[error(
        "{}: checksum mismatch in {section}: stored {expected:#010x}, computed {actual:#010x} \
         (the file is corrupt; rebuild it with `warpgrid graph build`)",
        path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The section whose checksum failed.
        section: &'static str,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },
    /// A `.wgraph` header or section whose content is invalid (magic, version, counts).
    #[error("{}: wgraph field {field}: {reason}", path.display())]
    Format {
        /// The `.wgraph` file.
        path: PathBuf,
        /// The header field or section at fault.
        field: &'static str,
        /// The expected and the actual value.
        reason: String,
    },
    /// A graph built from parts in memory (no file) that breaks a rule of SPEC §2.1.
    #[error("invalid graph: {field}: {reason}")]
    InvalidGraph {
        /// The part at fault (`nodes`, `edges`, `embeddings`, `labels`).
        field: &'static str,
        /// The rule broken, with the expected and the actual value.
        reason: String,
    },
    /// A parameter of spread or recall outside its range (the CLI flag is named in `field`).
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument {
        /// The CLI flag of the parameter (`--max-hops`, `--k`, ...).
        field: &'static str,
        /// The expected range and the value given.
        reason: String,
    },
    /// The device failed the operation (wgpu or CUDA: validation, out of memory, lost
    /// device, a buffer over the adapter's limits). Nothing is left half-done in the graph.
    #[error("{0}")]
    Device(String),
    /// A recall query that cannot be used (`index` is its row in the batch).
    #[error("invalid query {index}: {reason}")]
    InvalidQuery {
        /// Row of the query in the batch, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl GraphError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> GraphError {
        GraphError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn line(
        path: &Path,
        line: u64,
        field: &'static str,
        reason: impl Into<String>,
    ) -> GraphError {
        GraphError::Line {
            path: path.to_path_buf(),
            line,
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn npy(path: &Path, field: &'static str, reason: impl Into<String>) -> GraphError {
        GraphError::Npy {
            path: path.to_path_buf(),
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn format(
        path: &Path,
        field: &'static str,
        reason: impl Into<String>,
    ) -> GraphError {
        GraphError::Format {
            path: path.to_path_buf(),
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn argument(field: &'static str, reason: impl Into<String>) -> GraphError {
        GraphError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> GraphError {
        GraphError::InvalidGraph {
            field,
            reason: reason.into(),
        }
    }
}
