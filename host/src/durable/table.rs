//! A durable table: a [`Table`] whose writes go to per-shard WALs first, with snapshots,
//! recovery and fsync policies (SPEC §1.3).
//!
//! A batch: its write operations are encoded into the WAL of their key's shard (sequence
//! numbers `base..base + len`), each touched shard gets a commit record `(base, shards,
//! len)`, the records are appended (one write per shard), the batch is applied in memory, and
//! under `fsync = always` the touched WALs are fsynced in parallel before the results are
//! returned. If the table refuses the batch (out of memory), the WALs are cut back: nothing of
//! it is logged or applied. If an fsync fails after the batch was applied, the table takes no
//! more writes until reopened (reads still work), and the error names the file.
//!
//! Opening replays snapshots, then every batch whose commit reached all its shards, in order,
//! stopping at the first that did not. Each WAL is cut after the last record it replayed, so
//! a later append never sits behind a hole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use warpgrid_engine::table::route::shard_of;
use warpgrid_engine::{Batch, BatchResults, Device, OpCode, Table, TableConfig, TableStats};

use super::record::{HEADER_BYTES, Record, WalOp, encode};
use super::snapshot::{self, ShardImage};
use super::syncer::SyncPool;
use super::{FsyncPolicy, Manifest, ShardWal, TailReport, WalError};

/// How a durable table is opened.
#[derive(Debug, Clone)]
pub struct DurableOptions {
    pub fsync: FsyncPolicy,
    /// A WAL larger than this triggers a checkpoint after the batch that grew it.
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
    pub snapshot_entries: u64,
    pub snapshot_link_halves: u64,
    pub wal_records: u64,
    pub batches_replayed: u64,
    /// Batches found in some WAL but not complete in all their shards (never acknowledged).
    pub batches_dropped: u64,
    /// Bytes and records cut from WAL tails (torn, corrupt, or after an incomplete batch).
    pub dropped_bytes: u64,
    pub dropped_records: u64,
    pub seconds: f64,
}

/// A table with a data directory.
#[derive(Debug)]
pub struct DurableTable {
    table: Table,
    dir: PathBuf,
    wals: Vec<ShardWal>,
    policy: FsyncPolicy,
    checkpoint_bytes: u64,
    next_seq: u64,
    encoded: Vec<Vec<u8>>,
    unsynced: bool,
    last_sync: Instant,
    poisoned: Option<String>,
    recovery: RecoveryReport,
    last_checkpoint: Option<SystemTime>,
    syncer: SyncPool,
}

fn wal_path(dir: &Path, s: usize) -> PathBuf {
    dir.join(format!("shard-{s:04}.wal"))
}

fn snap_path(dir: &Path, s: usize) -> PathBuf {
    dir.join(format!("shard-{s:04}.snap"))
}

/// One WAL record kept for replay.
struct Kept {
    seq: u64,
    op: WalOp,
    key: u64,
    payload: Vec<u8>,
    shard: usize,
    /// Offset just past this record in its WAL.
    end: u64,
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
        let mut table = Table::create(device, config)?;
        let mut report = RecoveryReport::default();
        let mut restore = Batch::new(vb);
        for s in 0..shards {
            if let Some(image) = snapshot::read(&snap_path(dir, s), vb)? {
                report.snapshot_entries += image.entries.len() as u64;
                report.snapshot_link_halves += image.halves.len() as u64;
                for (k, v) in &image.entries {
                    restore.put(*k, v)?;
                }
                // Each link has a half in both keys' shards: restore it once, from the lower key.
                for &(a, b, st) in &image.halves {
                    if a < b {
                        restore.link(a, b, st)?;
                    }
                }
            }
        }
        // Read every WAL's intact prefix.
        let mut kept: Vec<Kept> = Vec::new();
        let mut wals = Vec::with_capacity(shards);
        for s in 0..shards {
            let mut end = 0u64;
            let (wal, tail): (ShardWal, TailReport) = ShardWal::open(&wal_path(dir, s), vb, |r| {
                end += (HEADER_BYTES + 17 + r.payload.len()) as u64;
                kept.push(Kept {
                    seq: r.seq,
                    op: r.op,
                    key: r.key,
                    payload: r.payload.to_vec(),
                    shard: s,
                    end,
                });
            })?;
            report.dropped_bytes += tail.dropped_bytes;
            report.dropped_records += tail.dropped_records;
            wals.push(wal);
        }
        report.wal_records = kept.len() as u64;
        // Batches: base -> (shards needed, operations, commits seen).
        let mut batches: BTreeMap<u64, (u32, u64, u32)> = BTreeMap::new();
        for k in kept.iter().filter(|k| k.op == WalOp::Commit) {
            let need = u32::from_le_bytes(k.payload[0..4].try_into().expect("4 bytes"));
            let ops = u64::from(u32::from_le_bytes(
                k.payload[4..8].try_into().expect("4 bytes"),
            ));
            batches.entry(k.key).or_insert((need, ops, 0)).2 += 1;
        }
        kept.sort_by_key(|k| k.seq);
        // Replay in sequence order while every record belongs to a complete batch.
        let mut cutoff = u64::MAX;
        let mut replayed_batches = std::collections::BTreeSet::new();
        for k in &kept {
            let batch = batches
                .range(..=k.seq)
                .next_back()
                .filter(|(base, b)| k.seq < *base + b.1 + shards as u64);
            let complete = batch.is_some_and(|(_, b)| b.2 == b.0);
            if !complete {
                cutoff = k.seq;
                break;
            }
            let (base, _) = batch.expect("complete implies found");
            replayed_batches.insert(*base);
            let p = &k.payload;
            match k.op {
                WalOp::Put => restore.put(k.key, p)?,
                WalOp::Delete => restore.delete(k.key)?,
                WalOp::Link => {
                    let partner = u64::from_le_bytes(p[0..8].try_into().expect("8 bytes"));
                    restore.link(
                        k.key,
                        partner,
                        f32::from_le_bytes(p[8..12].try_into().expect("4 bytes")),
                    )?;
                }
                WalOp::Unlink => restore.unlink(
                    k.key,
                    u64::from_le_bytes(p[0..8].try_into().expect("8 bytes")),
                )?,
                WalOp::Commit => {}
            }
        }
        report.batches_replayed = replayed_batches.len() as u64;
        report.batches_dropped = batches
            .keys()
            .filter(|b| !replayed_batches.contains(b))
            .count() as u64;
        // Cut every WAL after the last record it replayed.
        for (s, wal) in wals.iter_mut().enumerate() {
            let keep = kept
                .iter()
                .filter(|k| k.shard == s && k.seq < cutoff)
                .map(|k| k.end)
                .max()
                .unwrap_or(0);
            if keep < wal.len() {
                let dropped = wal.len() - keep;
                report.dropped_bytes += dropped;
                report.dropped_records += kept
                    .iter()
                    .filter(|k| k.shard == s && k.seq >= cutoff)
                    .count() as u64;
                wal.truncate_to(keep)?;
            }
        }
        if !restore.is_empty() {
            table.apply(&restore)?;
        }
        let next_seq = kept
            .iter()
            .filter(|k| k.seq < cutoff)
            .map(|k| k.seq + 1)
            .max()
            .unwrap_or(0);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(DurableTable {
            table,
            dir: dir.to_owned(),
            wals,
            policy: options.fsync,
            checkpoint_bytes: options.checkpoint_bytes,
            // Leave room for the commit records' sequence numbers of the last batch.
            next_seq: next_seq + shards as u64,
            encoded: vec![Vec::new(); shards],
            unsynced: false,
            last_sync: Instant::now(),
            poisoned: None,
            recovery: report,
            last_checkpoint: None,
            syncer: SyncPool::new(shards.min(32)),
        })
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> TableStats {
        self.table.stats()
    }

    /// What opening the table found.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Bytes in each shard's WAL.
    pub fn wal_bytes(&self) -> Vec<u64> {
        self.wals.iter().map(ShardWal::len).collect()
    }

    pub fn last_checkpoint(&self) -> Option<SystemTime> {
        self.last_checkpoint
    }

    /// Logs and applies `batch`; returns once it is durable under the fsync policy. On an
    /// error nothing of the batch is applied, except after a failed fsync (see the module).
    pub fn apply(&mut self, batch: &Batch) -> Result<BatchResults, WalError> {
        if let Some(why) = &self.poisoned {
            return Err(WalError::Poisoned(why.clone()));
        }
        let shards = self.wals.len();
        let (codes, keys) = (batch.codes(), batch.keys());
        let base = self.next_seq;
        for e in &mut self.encoded {
            e.clear();
        }
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
            let s = shard_of(keys[i], shards as u32) as usize;
            encode(
                &Record {
                    seq: base + i as u64,
                    op,
                    key: keys[i],
                    payload,
                },
                &mut self.encoded[s],
            );
        }
        let touched: Vec<usize> = (0..shards)
            .filter(|&s| !self.encoded[s].is_empty())
            .collect();
        if touched.is_empty() {
            return Ok(self.table.apply(batch)?);
        }
        let mut commit = [0u8; 8];
        commit[..4].copy_from_slice(&(touched.len() as u32).to_le_bytes());
        commit[4..].copy_from_slice(&(batch.len() as u32).to_le_bytes());
        for &s in &touched {
            let seq = base + batch.len() as u64 + s as u64;
            encode(
                &Record {
                    seq,
                    op: WalOp::Commit,
                    key: base,
                    payload: &commit,
                },
                &mut self.encoded[s],
            );
        }
        let before: Vec<u64> = touched.iter().map(|&s| self.wals[s].len()).collect();
        let mut appended = 0;
        let mut failure = None;
        for &s in &touched {
            if let Err(e) = self.wals[s].append(&self.encoded[s]) {
                failure = Some(e);
                break;
            }
            appended += 1;
        }
        let results = match failure {
            Some(e) => Err(e),
            None => self.table.apply(batch).map_err(WalError::from),
        };
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                // Take the batch back out of the WALs: nothing of it stays.
                for (&s, &len) in touched.iter().zip(&before).take(appended) {
                    if let Err(cut) = self.wals[s].truncate_to(len) {
                        self.poisoned = Some(cut.to_string());
                    }
                }
                return Err(e);
            }
        };
        self.next_seq = base + batch.len() as u64 + shards as u64;
        self.unsynced = true;
        let due = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
            FsyncPolicy::Never => false,
        };
        if due {
            self.sync_now(&touched)?;
        }
        if self.wals.iter().any(|w| w.len() > self.checkpoint_bytes) {
            self.checkpoint()?;
        }
        Ok(results)
    }

    /// Fsyncs the WALs of `shards` in parallel (all WALs when a policy deferred syncs).
    fn sync_now(&mut self, shards: &[usize]) -> Result<(), WalError> {
        let all: Vec<usize> = (0..self.wals.len()).collect();
        let which = if matches!(self.policy, FsyncPolicy::Always) {
            shards
        } else {
            &all
        };
        let targets: Vec<usize> = (0..self.wals.len()).filter(|s| which.contains(s)).collect();
        let handles: Vec<_> = targets
            .iter()
            .map(|&s| self.wals[s].sync_handle())
            .collect();
        let results: Vec<Result<(), WalError>> = self
            .syncer
            .sync_all(&handles)
            .into_iter()
            .zip(&targets)
            .map(|(r, &s)| {
                r.map_err(|source| WalError::Io {
                    path: self.wals[s].path().to_owned(),
                    op: "fsync the WAL",
                    source,
                })
            })
            .collect();
        if let Some(e) = results.into_iter().find_map(Result::err) {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Fsyncs whatever a deferred policy has not yet synced.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if self.unsynced {
            self.sync_now(&[])
        } else {
            Ok(())
        }
    }

    /// Writes every shard's snapshot atomically, then empties the WALs.
    pub fn checkpoint(&mut self) -> Result<(), WalError> {
        let vb = self.table.value_bytes();
        for s in 0..self.wals.len() {
            let mut image = ShardImage::default();
            self.table.export_shard(
                s,
                |k, v| image.entries.push((k, v.to_vec())),
                |a, b, st| image.halves.push((a, b, st)),
            );
            snapshot::write(&snap_path(&self.dir, s), vb, &image)?;
        }
        for wal in &mut self.wals {
            wal.truncate()?;
        }
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
