//! One shard's append-only WAL file.
//!
//! Opening validates the file record by record. An intact prefix is kept; a torn or corrupt
//! tail is cut off (and the cut made durable) and reported, never silently kept or skipped
//! past.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::WalError;
use super::record::{Record, decode_prefix, frames_in};

/// What opening a WAL cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TailReport {
    /// Bytes of intact records kept.
    pub valid_bytes: u64,
    /// Bytes of the torn or corrupt tail that were cut.
    pub dropped_bytes: u64,
    /// Records the cut tail held, as far as its length fields tell (0 when nothing was cut).
    pub dropped_records: u64,
}

/// An open shard WAL, positioned at its end.
#[derive(Debug)]
pub struct ShardWal {
    path: PathBuf,
    file: File,
    /// A second handle on the same file, for fsyncs from another thread.
    sync_handle: std::sync::Arc<File>,
    len: u64,
}

fn io<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(std::io::Error) -> WalError + 'p {
    move |source| WalError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

impl ShardWal {
    /// Opens (creating if missing) the WAL at `path` for a table of `value_bytes` values,
    /// calls `visit` for every intact record in order, cuts any torn or corrupt tail, and
    /// reports what was cut.
    pub fn open(
        path: &Path,
        value_bytes: usize,
        visit: impl FnMut(Record<'_>),
    ) -> Result<(ShardWal, TailReport), WalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path, "open the WAL"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io(path, "read the WAL"))?;
        let valid = decode_prefix(&bytes, value_bytes, visit);
        let report = TailReport {
            valid_bytes: valid as u64,
            dropped_bytes: (bytes.len() - valid) as u64,
            dropped_records: if valid < bytes.len() {
                frames_in(&bytes[valid..])
            } else {
                0
            },
        };
        if report.dropped_bytes > 0 {
            file.set_len(valid as u64)
                .map_err(io(path, "cut the WAL's torn tail"))?;
            file.sync_all()
                .map_err(io(path, "sync the WAL after cutting its tail"))?;
        }
        let sync_handle = std::sync::Arc::new(
            file.try_clone()
                .map_err(io(path, "open the WAL for fsync"))?,
        );
        Ok((
            ShardWal {
                path: path.to_owned(),
                file,
                sync_handle,
                len: valid as u64,
            },
            report,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the WAL.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends encoded records (one write: a batch's group commit for this shard).
    pub fn append(&mut self, encoded: &[u8]) -> Result<(), WalError> {
        self.file
            .write_all(encoded)
            .map_err(io(&self.path, "append to the WAL"))?;
        self.len += encoded.len() as u64;
        Ok(())
    }

    /// A handle for fsyncing this WAL from another thread.
    pub(crate) fn sync_handle(&self) -> std::sync::Arc<File> {
        std::sync::Arc::clone(&self.sync_handle)
    }

    /// Forces the appended bytes to the disk.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.file
            .sync_data()
            .map_err(io(&self.path, "fsync the WAL"))
    }

    /// Cuts the WAL back to its first `len` bytes, durably (undoing an append, or dropping
    /// records recovery will not replay).
    pub fn truncate_to(&mut self, len: u64) -> Result<(), WalError> {
        self.file
            .set_len(len)
            .map_err(io(&self.path, "cut the WAL back"))?;
        self.file
            .sync_all()
            .map_err(io(&self.path, "sync the WAL after cutting it back"))?;
        self.len = len;
        Ok(())
    }

    /// Empties the WAL durably (after a checkpoint made its records redundant).
    pub fn truncate(&mut self) -> Result<(), WalError> {
        self.file
            .set_len(0)
            .map_err(io(&self.path, "truncate the WAL"))?;
        self.file
            .sync_all()
            .map_err(io(&self.path, "sync the truncated WAL"))?;
        self.len = 0;
        Ok(())
    }
}
