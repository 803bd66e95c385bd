//! Error types of the engine, one enum per layer: [`BackendError`] for device selection and
//! memory, [`TableError`] for shard tables (which wraps the backend's).

use crate::backend::BackendKind;

/// Errors from choosing or using a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend the user asked for cannot run here.
    #[error("backend {backend} is unavailable: {reason}")]
    Unavailable {
        backend: BackendKind,
        reason: String,
    },
    /// An operation would take the device past its configured memory limit.
    #[error(
        "out of memory on the {backend} backend: needed {needed} more bytes, {available} available; \
         the operation was not applied (raise the memory limit or use fewer or smaller tables)"
    )]
    OutOfMemory {
        backend: BackendKind,
        needed: u64,
        available: u64,
    },
    /// An allocation the device (or host) could not make, with no configured limit involved.
    #[error(
        "out of memory on the {backend} backend: could not allocate {bytes} bytes; \
         the operation was not applied"
    )]
    AllocationFailed { backend: BackendKind, bytes: u64 },
    /// The backend does not run this kind of work (yet); nothing was done.
    #[error("the {backend} backend does not run {what} in this version; use --backend cpu")]
    Unsupported {
        backend: BackendKind,
        what: &'static str,
    },
    /// The device reported an error (validation, out of memory, lost device) while doing
    /// the operation named in `reason`; the operation did not complete.
    #[error("{backend} device error: {reason}")]
    Device {
        backend: BackendKind,
        reason: String,
    },
    /// A setting of the backend is invalid.
    #[error("invalid backend setting {field}: {reason}")]
    InvalidSetting { field: &'static str, reason: String },
}

/// Errors from shard-table operations. A batch that returns an error changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// `u64::MAX` and `u64::MAX - 1` are reserved as empty and tombstone markers.
    #[error("invalid key {key}: keys {} and {} are reserved", u64::MAX - 1, u64::MAX)]
    InvalidKey { key: u64 },
    /// A value of the wrong length for the table.
    #[error("invalid value length: expected {expected} bytes, got {actual}")]
    InvalidValueLength { expected: usize, actual: usize },
    /// A link that cannot exist (a key to itself) or a bad strength / bound.
    #[error("invalid link {a} -> {b}: {reason}")]
    InvalidLink { a: u64, b: u64, reason: String },
    /// A `GetRelated` argument outside its range.
    #[error("invalid related query on key {key}: {reason}")]
    InvalidRelated { key: u64, reason: String },
    /// A table setting outside its range.
    #[error("invalid table setting {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    /// A batch built for a table of another value size.
    #[error("batch built for {batch} byte values applied to a table of {table} byte values")]
    BatchMismatch { batch: usize, table: usize },
    /// More operations in one batch than the device index can address.
    #[error("batch too large: at most {max} operations per batch")]
    BatchTooLarge { max: usize },
    #[error("no table named {name:?}")]
    NoSuchTable { name: String },
    #[error("a table named {name:?} already exists")]
    TableExists { name: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
}
