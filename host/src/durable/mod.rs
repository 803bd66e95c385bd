//! Durability building blocks for tables (SPEC §1.3): the write-ahead-log record format, a
//! per-shard WAL file that recovers its intact prefix, fsync policies, and the table
//! directory's manifest.
//!
//! Not yet wired into tables: durable tables (`--dir`), group commit through the queue,
//! snapshots, recovery and `kv checkpoint` come with the rest of the durability issue; see
//! `docs/durability.md` for the design these pieces serve.

mod error;
mod manifest;
mod policy;
mod record;
mod wal;

pub use error::WalError;
pub use manifest::{MANIFEST_FILE, Manifest};
pub use policy::FsyncPolicy;
pub use record::{HEADER_BYTES, Record, WalOp, decode_prefix, encode};
pub use wal::{ShardWal, TailReport};

#[cfg(test)]
mod test;
