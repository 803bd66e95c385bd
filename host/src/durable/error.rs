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
    /// A setting that does not parse.
    #[error("invalid {field}: {reason}")]
    InvalidSetting { field: &'static str, reason: String },
}
