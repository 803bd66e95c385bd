//! Durability building blocks for tables (SPEC §1.3): the write-ahead-log record format, the
//! table's log file that recovers its whole batches, the thread that fsyncs it, per-shard
//! snapshots, fsync policies, and the table directory's manifest.
//!
//! [`DurableTable`] puts them together: write-ahead logging with group commit per batch,
//! snapshots, and recovery. See `docs/durability.md` for the design and what is still missing.

mod error;
mod manifest;
mod policy;
mod record;
mod snapshot;
mod syncer;
mod table;
mod wal;

pub use error::WalError;
pub use manifest::{MANIFEST_FILE, Manifest};
pub use policy::FsyncPolicy;
pub use record::{HEADER_BYTES, Record, Records, WalOp, decode_prefix, encode};
pub use snapshot::ShardImage;
pub use table::{DurableOptions, DurableTable, RecoveryReport, WAL_FILE};
pub use wal::{TailReport, Wal, scan_batches};

#[cfg(test)]
mod test;
