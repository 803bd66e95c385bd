//! Errors of the durability layer; each names the file or directory it is about.

use std::path::PathBuf;

/// Errors of a durable table: its files, its settings and the writes it refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O call failed (disk full, permissions, ...).
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, as a verb phrase (`read the manifest`, ...).
        op: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No table in this directory, and it was not asked to create one.
    #[error("{}: no table here; add --create (or DurableOptions::create) to create it", path.display())]
    NoTable {
        /// The directory.
        path: PathBuf,
    },
    /// A directory that holds files but no warpgrid manifest.
    #[error("{}: not a warpgrid table directory ({reason}); use an empty or new directory", path.display())]
    NotWarpgrid {
        /// The directory.
        path: PathBuf,
        /// What was found instead of a manifest.
        reason: String,
    },
    /// Opening a table with settings that differ from the ones it was created with.
    #[error(
        "{}: the table was created with {field} = {stored}, not {requested}; open it with its own settings",
        path.display()
    )]
    Conflict {
        /// The table directory.
        path: PathBuf,
        /// The setting that differs (`value_bytes`, `shards`, ...).
        field: &'static str,
        /// Its value in the manifest.
        stored: String,
        /// The value asked for.
        requested: String,
    },
    /// A snapshot whose checksum or layout is wrong: never skipped, always an error.
    #[error("{}: corrupt snapshot ({reason}); restore it from a backup or remove the table directory", path.display())]
    CorruptSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong: the checksum, or the field of the layout.
        reason: String,
    },
    /// The table refused a batch (nothing of it was applied or logged).
    #[error(transparent)]
    Table(#[from] warpgrid_engine::TableError),
    /// An earlier write failed after the batch was applied in memory; the table takes no more
    /// writes until reopened (reads still work).
    #[error("the table takes no more writes after an earlier failure ({0}); reopen it")]
    Poisoned(String),
    /// A setting that does not parse (e.g. `--fsync`).
    #[error("invalid {field}: {reason}")]
    InvalidSetting {
        /// Name of the setting.
        field: &'static str,
        /// The accepted spellings and the value given.
        reason: String,
    },
}
