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
        /// The backend that was asked for.
        backend: BackendKind,
        /// Why it cannot run (no adapter, driver missing, not compiled in, ...).
        reason: String,
    },
    /// An operation would take the device past its configured memory limit.
    #[error(
        "out of memory on the {backend} backend: needed {needed} more bytes, {available} available; \
         the operation was not applied (raise the memory limit or use fewer or smaller tables)"
    )]
    OutOfMemory {
        /// The backend whose limit was hit.
        backend: BackendKind,
        /// Bytes the operation needed beyond what is already allocated.
        needed: u64,
        /// Bytes still free under the limit.
        available: u64,
    },
    /// An allocation the device (or host) could not make, with no configured limit involved.
    #[error(
        "out of memory on the {backend} backend: could not allocate {bytes} bytes; \
         the operation was not applied"
    )]
    AllocationFailed {
        /// The backend that failed to allocate.
        backend: BackendKind,
        /// Size of the failed allocation, in bytes.
        bytes: u64,
    },
    /// The backend does not run this kind of work (yet); nothing was done.
    #[error("the {backend} backend does not run {what} in this version; use --backend cpu")]
    Unsupported {
        /// The backend that was asked to run it.
        backend: BackendKind,
        /// The kind of work ([`Workload::name`](crate::Workload::name): "activation graphs", ...).
        what: &'static str,
    },
    /// The device reported an error (validation, out of memory, lost device) while doing
    /// the operation named in `reason`; the operation did not complete.
    #[error("{backend} device error: {reason}")]
    Device {
        /// The backend whose device failed.
        backend: BackendKind,
        /// The operation that was running and the device's message.
        reason: String,
    },
    /// A setting of the backend is invalid.
    #[error("invalid backend setting {field}: {reason}")]
    InvalidSetting {
        /// Name of the setting.
        field: &'static str,
        /// What is wrong with it: the expected range and the value given.
        reason: String,
    },
}

/// Errors from shard-table operations. A batch that returns an error changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// `u64::MAX` and `u64::MAX - 1` are reserved as empty and tombstone markers.
    #[error("invalid key {key}: keys {} and {} are reserved", u64::MAX - 1, u64::MAX)]
    InvalidKey {
        /// The reserved key that was passed.
        key: u64,
    },
    /// A value of the wrong length for the table.
    #[error("invalid value length: expected {expected} bytes, got {actual}")]
    InvalidValueLength {
        /// The table's value size, in bytes.
        expected: usize,
        /// Length of the value given, in bytes.
        actual: usize,
    },
    /// A link that cannot exist (a key to itself) or a bad strength / bound.
    #[error("invalid link {a} -> {b}: {reason}")]
    InvalidLink {
        /// Source key of the link.
        a: u64,
        /// Target key of the link.
        b: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A `GetRelated` argument outside its range.
    #[error("invalid related query on key {key}: {reason}")]
    InvalidRelated {
        /// The key the query starts from.
        key: u64,
        /// Which argument is out of range, and its range.
        reason: String,
    },
    /// A table setting outside its range.
    #[error("invalid table setting {field}: {reason}")]
    InvalidConfig {
        /// Name of the [`TableConfig`](crate::TableConfig) field.
        field: &'static str,
        /// The expected range and the value given.
        reason: String,
    },
    /// A batch built for a table of another value size.
    #[error("batch built for {batch} byte values applied to a table of {table} byte values")]
    BatchMismatch {
        /// Value size the batch was built for, in bytes.
        batch: usize,
        /// The table's value size, in bytes.
        table: usize,
    },
    /// More operations in one batch than the device index can address.
    #[error("batch too large: at most {max} operations per batch")]
    BatchTooLarge {
        /// Most operations one batch may hold.
        max: usize,
    },
    /// No table of this name exists on the device.
    #[error("no table named {name:?}")]
    NoSuchTable {
        /// The name looked up.
        name: String,
    },
    /// A table of this name already exists; names are unique per device.
    #[error("a table named {name:?} already exists")]
    TableExists {
        /// The name asked for.
        name: String,
    },
    /// The backend failed (out of memory, device error, unsupported); see [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}
