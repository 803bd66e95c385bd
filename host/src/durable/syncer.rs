//! The thread that fsyncs a table's log.
//!
//! Under `fsync = always` a batch asks for an fsync right after its append and waits for it
//! only after the batch has been applied in memory, so the fsync and the in-memory work
//! overlap. Under `interval=<ms>` a batch only marks the log dirty, and the thread fsyncs it
//! at most `ms` after the first unsynced write, whether or not more batches come.
//!
//! Tickets: every request gets the next number; `synced` is the highest request an fsync
//! has covered. An fsync covers every write that returned before it started, so a request
//! made after an append is satisfied by the first fsync that starts after the request.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    requested: u64,
    synced: u64,
    /// When the oldest write not yet covered by an fsync was made (interval policy).
    dirty_since: Option<Instant>,
    /// The first fsync failure; after it the log is never reported synced again.
    failed: Option<(std::io::ErrorKind, String)>,
    /// An fsync is running.
    syncing: bool,
    closing: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the sync thread.
    work: Condvar,
    /// Wakes waiters when an fsync finished.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A log's sync thread; dropping it ends the thread (after the fsync in progress, if any).
#[derive(Debug)]
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread for `file`; with `interval`, dirty marks are fsynced within it.
    pub(crate) fn start(file: Arc<File>, interval: Option<Duration>) -> Syncer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let inner = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("warpgrid-wal-sync".into())
            .spawn(move || run(&inner, &file, interval))
            .expect("spawning the WAL sync thread");
        Syncer {
            shared,
            thread: Some(thread),
        }
    }

    /// Asks for an fsync of everything written so far; wait for it with the returned ticket.
    pub(crate) fn request(&self) -> u64 {
        let mut s = self.shared.lock();
        s.requested += 1;
        self.shared.work.notify_one();
        s.requested
    }

    /// Waits until the fsync for `ticket` finished; its error if it (or an earlier one) failed.
    pub(crate) fn wait(&self, ticket: u64) -> Result<(), std::io::Error> {
        let mut s = self.shared.lock();
        loop {
            if let Some((kind, msg)) = &s.failed {
                return Err(std::io::Error::new(*kind, msg.clone()));
            }
            if s.synced >= ticket {
                return Ok(());
            }
            s = self
                .shared
                .done
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Records a write that the interval policy must fsync in time.
    pub(crate) fn mark_dirty(&self) {
        let mut s = self.shared.lock();
        if s.dirty_since.is_none() {
            s.dirty_since = Some(Instant::now());
            self.shared.work.notify_one();
        }
    }

    /// Whether every write marked or requested so far is covered by a finished fsync.
    pub(crate) fn caught_up(&self) -> bool {
        let s = self.shared.lock();
        s.failed.is_none() && s.dirty_since.is_none() && !s.syncing && s.synced >= s.requested
    }

    /// A background fsync's failure, if one happened.
    pub(crate) fn failure(&self) -> Option<std::io::Error> {
        let s = self.shared.lock();
        s.failed
            .as_ref()
            .map(|(kind, msg)| std::io::Error::new(*kind, msg.clone()))
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, file: &File, interval: Option<Duration>) {
    let mut s = shared.lock();
    loop {
        if s.failed.is_some() {
            // Nothing more is synced: waiters see the failure.
            if s.closing {
                return;
            }
            s = shared.work.wait(s).unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let due = interval.and_then(|i| s.dirty_since.map(|since| since + i));
        if s.requested > s.synced || due.is_some_and(|d| Instant::now() >= d) {
            let target = s.requested;
            s.dirty_since = None;
            s.syncing = true;
            drop(s);
            let result = file.sync_data();
            s = shared.lock();
            s.syncing = false;
            match result {
                Ok(()) => s.synced = s.synced.max(target),
                Err(e) => {
                    if s.failed.is_none() {
                        s.failed = Some((e.kind(), e.to_string()));
                    }
                }
            }
            shared.done.notify_all();
            continue;
        }
        if s.closing {
            return;
        }
        s = match due {
            Some(d) => {
                let wait = d.saturating_duration_since(Instant::now());
                shared
                    .work
                    .wait_timeout(s, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared.work.wait(s).unwrap_or_else(PoisonError::into_inner),
        };
    }
}
