//! A table's append-only write-ahead log: one file, `table.wal`, holding the records of every
//! shard, one group commit (records, then a commit record) per batch.
//!
//! Opening validates the file record by record and batch by batch. Whole batches are kept
//! and handed to the caller in order; a torn or corrupt tail, or a batch whose commit record
//! never made it, is cut off (and the cut made durable) and reported, never silently kept or
//! skipped past.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::WalError;
use super::record::{Record, Records, WalOp, frames_in};

/// What opening a log kept and cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TailReport {
    /// Bytes of whole batches kept.
    pub valid_bytes: u64,
    /// Whole batches kept (and handed to the caller).
    pub batches: u64,
    /// Write records in those batches (commit records not counted).
    pub records: u64,
    /// Bytes cut: a torn or corrupt tail, and any batch whose commit did not make it.
    pub dropped_bytes: u64,
    /// Records the cut held: intact ones of an uncommitted batch, plus the frames of a torn
    /// tail as far as its length fields tell (0 when nothing was cut).
    pub dropped_records: u64,
    /// Batches cut: 1 when the cut held records of a batch that was never committed.
    pub batches_dropped: u64,
    /// The sequence number the next batch may start at.
    pub next_seq: u64,
}

/// Splits `bytes` into whole batches, calling `visit(base, records)` for each in order, and
/// reports where the whole batches end. A commit must match the records before it: their
/// count, `base <= seq < base + operations`, and its own `seq = base + operations`.
pub fn scan_batches<'a>(
    bytes: &'a [u8],
    value_bytes: usize,
    mut visit: impl FnMut(u64, &[Record<'a>]),
) -> TailReport {
    let mut records = Records::new(bytes, value_bytes);
    let mut pending: Vec<Record<'a>> = Vec::new();
    let mut report = TailReport::default();
    for (r, end) in records.by_ref() {
        if r.op != WalOp::Commit {
            pending.push(r);
            continue;
        }
        let base = r.key;
        let logged = u32::from_le_bytes(r.payload[0..4].try_into().expect("4 bytes"));
        let ops = u64::from(u32::from_le_bytes(
            r.payload[4..8].try_into().expect("4 bytes"),
        ));
        let matches = !pending.is_empty()
            && pending.len() == logged as usize
            && base.checked_add(ops) == Some(r.seq)
            && pending.iter().all(|p| p.seq >= base && p.seq < r.seq);
        if !matches {
            break;
        }
        visit(base, &pending);
        report.batches += 1;
        report.records += pending.len() as u64;
        report.valid_bytes = end as u64;
        report.next_seq = r.seq + 1;
        pending.clear();
    }
    let cut = &bytes[report.valid_bytes as usize..];
    report.dropped_bytes = cut.len() as u64;
    let torn = &bytes[records.offset()..];
    // Intact records of an uncommitted batch, plus the torn frames after them.
    let intact_after = frames_in(&bytes[report.valid_bytes as usize..records.offset()]);
    report.dropped_records = if cut.is_empty() {
        0
    } else {
        intact_after + if torn.is_empty() { 0 } else { frames_in(torn) }
    };
    report.batches_dropped = u64::from(intact_after > 0);
    report
}

/// An open table log, positioned at its end.
#[derive(Debug)]
pub struct Wal {
    path: PathBuf,
    file: File,
    /// A second handle on the same file, for fsyncs from the sync thread.
    sync_handle: Arc<File>,
    len: u64,
}

fn io<'p>(path: &'p Path, op: &'static str) -> impl FnOnce(std::io::Error) -> WalError + 'p {
    move |source| WalError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

impl Wal {
    /// Opens (creating if missing) the log at `path` for a table of `value_bytes` values,
    /// calls `visit(base, records)` for every whole batch in order, cuts everything after
    /// the last whole batch, and reports what was kept and cut.
    pub fn open(
        path: &Path,
        value_bytes: usize,
        visit: impl FnMut(u64, &[Record<'_>]),
    ) -> Result<(Wal, TailReport), WalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io(path, "open the WAL"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io(path, "read the WAL"))?;
        let report = scan_batches(&bytes, value_bytes, visit);
        if report.dropped_bytes > 0 {
            file.set_len(report.valid_bytes)
                .map_err(io(path, "cut the WAL's torn tail"))?;
            file.sync_all()
                .map_err(io(path, "sync the WAL after cutting its tail"))?;
        }
        let sync_handle = Arc::new(
            file.try_clone()
                .map_err(io(path, "open the WAL for fsync"))?,
        );
        Ok((
            Wal {
                path: path.to_owned(),
                file,
                sync_handle,
                len: report.valid_bytes,
            },
            report,
        ))
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends encoded records: one write, a batch's group commit. On an error some bytes
    /// may have reached the file: cut back with [`truncate_to`](Wal::truncate_to).
    pub fn append(&mut self, encoded: &[u8]) -> Result<(), WalError> {
        self.file
            .write_all(encoded)
            .map_err(io(&self.path, "append to the WAL"))?;
        self.len += encoded.len() as u64;
        Ok(())
    }

    /// A handle for fsyncing the log from another thread.
    pub(crate) fn sync_handle(&self) -> Arc<File> {
        Arc::clone(&self.sync_handle)
    }

    /// Forces the appended bytes to the disk.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.file
            .sync_data()
            .map_err(io(&self.path, "fsync the WAL"))
    }

    /// Cuts the log back to its first `len` bytes, durably (undoing an append).
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
}
