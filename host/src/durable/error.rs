//! Errors of the durability layer; each names the file or directory it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O call failed (disk full, permissions, ...).
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// No table in this directory, and it was not asked to create one.
    #[error("{}: no table here; add --create (or DurableOptions::create) to create it", path.display())]
    NoTable { path: PathBuf },
    /// A directory that holds files but no warpgrid manifest.
    #[error("{}: not a warpgrid table directory ({reason}); use an empty or new directory", path.display())]
    NotWarpgrid { path: PathBuf, reason: String },
    /// Opening a table with settings that differ from the ones it was created with.
    #[error(
        "{}: the table was created with {field} = {stored}, not {requested}; open it with its own settings",
        path.display()
    )]
    Conflict {
        path: PathBuf,
        field: &'static str,
        stored: String,
        requested: String,
    },
    /// A snapshot whose checksum or layout is wrong: never skipped, always an error.
    #[error("{}: corrupt snapshot ({reason}); restore it from a backup or remove the table directory", path.display())]
    CorruptSnapshot { path: PathBuf, reason: String },
    /// The table refused a batch (nothing of it was applied or logged).
    #[error(transparent)]
    Table(#[from] warpgrid_engine::TableError),
    /// An earlier write failed after the batch was applied in memory; the table takes no more
    /// writes until reopened (reads still work).
    #[error("the table takes no more writes after an earlier failure ({0}); reopen it")]
    Poisoned(String),
    /// A setting that does not parse.
    #[error("invalid {field}: {reason}")]
    InvalidSetting { field: &'static str, reason: String },
}
