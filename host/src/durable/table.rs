//! A durable table: a [`Table`] whose writes go to its write-ahead log first, with
//! snapshots, recovery and fsync policies (SPEC §1.3). See `docs/durability.md`.
//!
//! A batch: its write operations are encoded (sequence numbers `base + i`) and followed by a
//! commit record, all appended to the table's log in one write. Under `fsync = always` the
//! sync thread is asked for an fsync at once; the batch is applied in memory meanwhile, and
//! the results are returned only when the fsync is done. If the table refuses the batch (out
//! of memory), or the append fails (disk full), the log is cut back: nothing of the batch is
//! logged or applied. If an fsync fails, the table takes no more writes until reopened
//! (reads still work), and the error names the file.
//!
//! Opening loads every shard's snapshot, then replays the log's whole batches in order; the
//! log is cut after the last whole batch, so a later append never sits behind a torn one.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use warpgrid_engine::{Batch, BatchResults, Device, OpCode, Table, TableConfig, TableStats};

use super::record::{Record, WalOp, encode};
use super::snapshot::{self, ShardImage};
use super::syncer::Syncer;
use super::{FsyncPolicy, Manifest, Wal, WalError};

/// The log's file name in a table directory.
pub const WAL_FILE: &str = "table.wal";

/// How a durable table is opened.
#[derive(Debug, Clone)]
pub struct DurableOptions {
    /// When the log is fsynced (default `always`).
    pub fsync: FsyncPolicy,
    /// A log larger than this triggers a checkpoint after the batch that grew it.
    pub checkpoint_bytes: u64,
    /// Create the directory and table if they do not exist.
    pub create: bool,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            fsync: FsyncPolicy::Always,
            checkpoint_bytes: 64 << 20,
            create: false,
        }
    }
}

/// What opening found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryReport {
    /// Entries loaded from the snapshot.
    pub snapshot_entries: u64,
    /// Link halves loaded from the snapshot.
    pub snapshot_link_halves: u64,
    /// Write records replayed from the log.
    pub wal_records: u64,
    /// Committed batches replayed from the log.
    pub batches_replayed: u64,
    /// Batches found in the log whose commit did not make it (never acknowledged).
    pub batches_dropped: u64,
    /// Bytes cut from the log's tail (torn, corrupt, or an uncommitted batch).
    pub dropped_bytes: u64,
    /// Records cut from the log's tail.
    pub dropped_records: u64,
    /// Wall time of the whole open, in seconds.
    pub seconds: f64,
}

/// A table with a data directory.
#[derive(Debug)]
pub struct DurableTable {
    table: Table,
    dir: PathBuf,
    wal: Wal,
    syncer: Syncer,
    policy: FsyncPolicy,
    checkpoint_bytes: u64,
    next_seq: u64,
    /// The batch being logged (reused).
    encoded: Vec<u8>,
    /// Bytes appended since the last fsync this table waited for.
    unsynced: bool,
    poisoned: Option<String>,
    /// Log length at which the next automatic checkpoint is due.
    checkpoint_due: u64,
    /// Why the last automatic checkpoint failed, if it did.
    checkpoint_error: Option<String>,
    recovery: RecoveryReport,
    last_checkpoint: Option<SystemTime>,
}

fn snap_path(dir: &Path, s: usize) -> PathBuf {
    dir.join(format!("shard-{s:04}.snap"))
}

/// Runs `job(s)` for every shard `s` on a few threads; the results in shard order.
fn per_shard<T: Send>(shards: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8)
        .min(shards.max(1));
    let mut out: Vec<Option<T>> = (0..shards).map(|_| None).collect();
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(shards.div_ceil(threads).max(1)).enumerate() {
            let job = &job;
            let first = t * shards.div_ceil(threads).max(1);
            scope.spawn(move || {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(job(first + i));
                }
            });
        }
    });
    out.into_iter()
        .map(|r| r.expect("every shard ran"))
        .collect()
}

/// Adds one logged operation to the replay batch.
fn replay(restore: &mut Batch, r: &Record<'_>) -> Result<(), WalError> {
    let p = r.payload;
    let partner = || u64::from_le_bytes(p[0..8].try_into().expect("8 bytes"));
    match r.op {
        WalOp::Put => restore.put(r.key, p)?,
        WalOp::Delete => restore.delete(r.key)?,
        WalOp::Link => restore.link(
            r.key,
            partner(),
            f32::from_le_bytes(p[8..12].try_into().expect("4 bytes")),
        )?,
        WalOp::Unlink => restore.unlink(r.key, partner())?,
        WalOp::Commit => {}
    }
    Ok(())
}

impl DurableTable {
    /// Opens (or, with `options.create`, creates) the table in `dir` on `device`.
    pub fn open(
        dir: &Path,
        device: &Device,
        config: TableConfig,
        options: &DurableOptions,
    ) -> Result<DurableTable, WalError> {
        let started = Instant::now();
        config.validate()?;
        Manifest::new(&config.name, config.shards, config.value_bytes)
            .open_dir(dir, options.create)?;
        let (shards, vb) = (config.shards as usize, config.value_bytes as usize);
        let mut report = RecoveryReport::default();
        let images = per_shard(shards, |s| snapshot::read(&snap_path(dir, s), vb));
        // The last checkpoint is when the newest snapshot was written.
        let last_checkpoint = (0..shards)
            .filter_map(|s| {
                std::fs::metadata(snap_path(dir, s))
                    .and_then(|m| m.modified())
                    .ok()
            })
            .max();
        let mut restore = Batch::new(vb);
        for image in images {
            let Some(image) = image? else { continue };
            report.snapshot_entries += image.keys.len() as u64;
            report.snapshot_link_halves += image.halves.len() as u64;
            for (k, v) in image.keys.iter().zip(image.values.chunks_exact(vb)) {
                restore.put(*k, v)?;
            }
            // Each link has a half in both keys' shards: restore it once, from the lower key.
            for &(a, b, st) in &image.halves {
                if a < b {
                    restore.link(a, b, st)?;
                }
            }
        }
        let mut replay_error = None;
        let (wal, tail) = Wal::open(&dir.join(WAL_FILE), vb, |_, records| {
            for r in records {
                if let Err(e) = replay(&mut restore, r) {
                    replay_error.get_or_insert(e);
                }
            }
        })?;
        if let Some(e) = replay_error {
            return Err(e);
        }
        report.wal_records = tail.records;
        report.batches_replayed = tail.batches;
        report.batches_dropped = tail.batches_dropped;
        report.dropped_bytes = tail.dropped_bytes;
        report.dropped_records = tail.dropped_records;
        // Size the table for what it is about to hold, so recovery does not grow it step by step.
        let config = TableConfig {
            capacity: config.capacity.max(report.snapshot_entries),
            ..config
        };
        let mut table = Table::create(device, config)?;
        if !restore.is_empty() {
            table.apply(&restore)?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        let interval = match options.fsync {
            FsyncPolicy::Interval(d) => Some(d),
            FsyncPolicy::Always | FsyncPolicy::Never => None,
        };
        Ok(DurableTable {
            table,
            dir: dir.to_owned(),
            syncer: Syncer::start(wal.sync_handle(), interval),
            wal,
            policy: options.fsync,
            checkpoint_bytes: options.checkpoint_bytes,
            next_seq: tail.next_seq,
            encoded: Vec::new(),
            unsynced: false,
            poisoned: None,
            checkpoint_due: options.checkpoint_bytes,
            checkpoint_error: None,
            recovery: report,
            last_checkpoint,
        })
    }

    /// The table in memory (reads go straight to it).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The table's data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's path.
    pub fn wal_path(&self) -> &Path {
        self.wal.path()
    }

    /// The fsync policy it was opened with.
    pub fn policy(&self) -> FsyncPolicy {
        self.policy
    }

    /// The table's statistics.
    pub fn stats(&self) -> TableStats {
        self.table.stats()
    }

    /// What opening the table found.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Bytes in the log.
    pub fn wal_bytes(&self) -> u64 {
        self.wal.len()
    }

    /// When the last checkpoint was written (this session's, or the snapshots found at open).
    pub fn last_checkpoint(&self) -> Option<SystemTime> {
        self.last_checkpoint
    }

    /// Why the last automatic checkpoint failed, if it did (cleared by one that succeeds).
    /// The table works on; its log keeps growing until a checkpoint succeeds.
    pub fn checkpoint_error(&self) -> Option<&str> {
        self.checkpoint_error.as_deref()
    }

    /// Whether every acknowledged batch is on the disk: always so under `fsync = always`;
    /// under `interval=<ms>` once the sync thread has caught up; under `never` after
    /// [`sync`](DurableTable::sync).
    pub fn is_synced(&self) -> bool {
        match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(_) => self.syncer.caught_up(),
            FsyncPolicy::Never => !self.unsynced,
        }
    }

    /// Why the table takes no more writes, if it does not.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn fsync_failed(&mut self, source: std::io::Error) -> WalError {
        let e = WalError::Io {
            path: self.wal.path().to_owned(),
            op: "fsync the WAL",
            source,
        };
        self.poisoned = Some(e.to_string());
        e
    }

    /// Encodes `batch`'s writes and its commit record into `self.encoded`; whether there
    /// were any.
    fn encode(&mut self, batch: &Batch) -> bool {
        let (codes, keys) = (batch.codes(), batch.keys());
        let base = self.next_seq;
        self.encoded.clear();
        let mut logged = 0u32;
        let mut link = [0u8; 12];
        for i in 0..batch.len() {
            let (op, payload): (WalOp, &[u8]) = match codes[i] {
                OpCode::Put => (WalOp::Put, batch.put_value_bytes(i)),
                OpCode::Delete => (WalOp::Delete, &[]),
                OpCode::Link => {
                    let a = batch.aux(i);
                    link[..8].copy_from_slice(&a.partner.to_le_bytes());
                    link[8..].copy_from_slice(&a.strength.to_le_bytes());
                    (WalOp::Link, &link)
                }
                OpCode::Unlink => {
                    link[..8].copy_from_slice(&batch.aux(i).partner.to_le_bytes());
                    (WalOp::Unlink, &link[..8])
                }
                OpCode::Get | OpCode::GetRelated => continue,
            };
            encode(
                &Record {
                    seq: base + i as u64,
                    op,
                    key: keys[i],
                    payload,
                },
                &mut self.encoded,
            );
            logged += 1;
        }
        if logged == 0 {
            return false;
        }
        let mut commit = [0u8; 8];
        commit[..4].copy_from_slice(&logged.to_le_bytes());
        commit[4..].copy_from_slice(&(batch.len() as u32).to_le_bytes());
        encode(
            &Record {
                seq: base + batch.len() as u64,
                op: WalOp::Commit,
                key: base,
                payload: &commit,
            },
            &mut self.encoded,
        );
        true
    }

    /// Logs and applies `batch`; returns once it is durable under the fsync policy. On an
    /// error nothing of the batch is applied, except after a failed fsync (see the module).
    pub fn apply(&mut self, batch: &Batch) -> Result<BatchResults, WalError> {
        if let Some(why) = &self.poisoned {
            return Err(WalError::Poisoned(why.clone()));
        }
        if let Some(e) = self.syncer.failure() {
            return Err(self.fsync_failed(e));
        }
        if !self.encode(batch) {
            return Ok(self.table.apply(batch)?);
        }
        let before = self.wal.len();
        if let Err(e) = self.wal.append(&self.encoded) {
            // Part of the batch may have reached the file: take it back out.
            if let Err(cut) = self.wal.truncate_to(before) {
                self.poisoned = Some(cut.to_string());
            }
            return Err(e);
        }
        let ticket = match self.policy {
            FsyncPolicy::Always => Some(self.syncer.request()),
            FsyncPolicy::Interval(_) => {
                self.syncer.mark_dirty();
                None
            }
            FsyncPolicy::Never => None,
        };
        let applied = self.table.apply(batch);
        let synced = ticket.map(|t| self.syncer.wait(t));
        let results = match applied {
            Ok(r) => r,
            Err(e) => {
                // Refused (nothing applied): take the batch back out of the log.
                if let Err(cut) = self.wal.truncate_to(before) {
                    self.poisoned = Some(cut.to_string());
                }
                return Err(e.into());
            }
        };
        self.next_seq += batch.len() as u64 + 1;
        match synced {
            Some(Err(e)) => return Err(self.fsync_failed(e)),
            Some(Ok(())) => {}
            None => self.unsynced = true,
        }
        if self.wal.len() > self.checkpoint_due {
            // The batch is durable and applied whatever happens here: a failed automatic
            // checkpoint is reported, not returned, and retried once the log has grown by
            // another `checkpoint_bytes`.
            match self.checkpoint() {
                Ok(()) => self.checkpoint_error = None,
                Err(e) => {
                    tracing::warn!(error = %e, "automatic checkpoint failed");
                    self.checkpoint_error = Some(e.to_string());
                    self.checkpoint_due = self.wal.len().saturating_add(self.checkpoint_bytes);
                }
            }
        }
        Ok(results)
    }

    /// Fsyncs whatever a deferred policy has not yet synced.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if !self.unsynced {
            return Ok(());
        }
        let ticket = self.syncer.request();
        match self.syncer.wait(ticket) {
            Ok(()) => {
                self.unsynced = false;
                Ok(())
            }
            Err(e) => Err(self.fsync_failed(e)),
        }
    }

    /// Writes every shard's snapshot atomically (in parallel), then empties the log.
    pub fn checkpoint(&mut self) -> Result<(), WalError> {
        let vb = self.table.value_bytes();
        let (table, dir) = (&self.table, &self.dir);
        let written = per_shard(table.config().shards as usize, |s| {
            let mut image = ShardImage::default();
            table.export_shard(
                s,
                |k, v| {
                    image.keys.push(k);
                    image.values.extend_from_slice(v);
                },
                |a, b, st| image.halves.push((a, b, st)),
            )?;
            snapshot::write(&snap_path(dir, s), vb, &image)
        });
        written.into_iter().collect::<Result<Vec<()>, _>>()?;
        self.wal.truncate_to(0)?;
        self.checkpoint_due = self.checkpoint_bytes;
        self.unsynced = false;
        self.last_checkpoint = Some(SystemTime::now());
        Ok(())
    }
}

impl Drop for DurableTable {
    fn drop(&mut self) {
        // A deferred policy's last writes go to the disk when the table closes.
        let _ = self.sync();
    }
}
