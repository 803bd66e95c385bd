//! A pool of threads that fsync a batch's WAL files at the same time.
//!
//! One fsync per touched shard is the price of per-shard WALs. Issued together, they can
//! share the file system's journal commit; one after another they cannot. Threads are started
//! once per table, not per batch.

use std::fs::File;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

type Job = (Arc<File>, Sender<std::io::Result<()>>);

/// Fsync workers; dropping the pool ends them.
#[derive(Debug)]
pub(crate) struct SyncPool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl SyncPool {
    pub(crate) fn new(threads: usize) -> SyncPool {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = unbounded();
        let workers = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("warpgrid-fsync-{i}"))
                    .spawn(move || {
                        for (file, done) in rx {
                            let _ = done.send(file.sync_data());
                        }
                    })
                    .expect("spawning an fsync thread")
            })
            .collect();
        SyncPool {
            jobs: Some(tx),
            workers,
        }
    }

    /// Fsyncs every file at once; returns each file's result, in order.
    pub(crate) fn sync_all(&self, files: &[Arc<File>]) -> Vec<std::io::Result<()>> {
        let jobs = self.jobs.as_ref().expect("the pool lives until dropped");
        let waits: Vec<Receiver<std::io::Result<()>>> = files
            .iter()
            .map(|f| {
                let (tx, rx) = bounded(1);
                jobs.send((Arc::clone(f), tx))
                    .expect("fsync workers outlive the pool");
                rx
            })
            .collect();
        waits
            .into_iter()
            .map(|rx| {
                rx.recv()
                    .unwrap_or_else(|_| Err(std::io::Error::other("an fsync thread ended")))
            })
            .collect()
    }
}

impl Drop for SyncPool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
