//! The submission queue (SPEC §4): many client threads, one table, batched launches.
//!
//! A [`Queue`] owns a table through a dispatcher thread. Clients submit operations; the
//! dispatcher coalesces everything waiting into one engine batch, applies it, and completes
//! every submission. See `README.md` beside this file for the protocol and its guarantees:
//! - every submission completes exactly once (with its results, or an error);
//! - one client's submissions take effect in its submission order; clients interleave;
//! - a submission is atomic: applied whole or not at all;
//! - the queue is bounded: a full queue blocks the submitter or answers [`QueueError::Busy`].
//!
//! Two ways in:
//! - [`Queue::apply`] / [`Queue::submit`] (and `put`/`get`/`delete`) from any thread, for
//!   whole batches or single blocking calls;
//! - a [`Client`] per thread ([`Queue::client`]) for pipelined single operations: each call
//!   returns a [`Ticket`] at once, [`Client::wait`] returns its result.

mod client;
mod dispatcher;
mod store;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use warpgrid_engine::{Batch, BatchResults, Outcome, TableError};

use crate::cache::CacheConfig;
use crate::metrics::Registry;
pub use client::{Backpressure, Client, Ticket};
pub use store::Store;

/// Settings of a queue. The batching knobs trade latency for throughput:
/// - `max_batch`: most operations per launch (a larger submission still runs whole);
/// - `deadline`: how long the dispatcher may hold a small batch open for more operations
///   when recent batches were larger (the bound on the first operation's wait);
/// - `flush_at`: a [`Client`] sends its buffered single operations as one submission when
///   this many are waiting, or at once when the dispatcher is idle, or when it waits;
/// - `capacity`: submissions the queue holds before submitters block or get `Busy`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Submissions the queue holds before submitters block or get `Busy` (default 4096).
    pub capacity: usize,
    /// Most operations per launch (default 65,536).
    pub max_batch: usize,
    /// Longest a small batch is held open for more operations (default 200 µs).
    pub deadline: Duration,
    /// Buffered single operations at which a [`Client`] sends them (default 128).
    pub flush_at: usize,
    /// The host cache in front of the table (default: on for device backends only).
    pub cache: CacheConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 4096,
            max_batch: 1 << 16,
            deadline: Duration::from_micros(200),
            flush_at: 128,
            cache: CacheConfig::default(),
        }
    }
}

/// Why a submission did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue is full and the caller asked not to block.
    #[error("the queue is full (busy); retry later or submit with blocking backpressure")]
    Busy,
    /// The queue was shut down before the submission ran; nothing of it was applied.
    #[error("the queue is shut down; the submission was not applied")]
    Closed,
    /// A ticket whose results were released (results are kept until a later chunk is waited for).
    #[error("ticket {0} was released: wait for tickets in submission order")]
    Released(u64),
    /// The table refused the submission (nothing of it was applied).
    #[error(transparent)]
    Table(#[from] TableError),
    /// A durable table could not log or sync the batch (the message names the file). If the
    /// log write failed, nothing was applied; if its fsync failed, the table takes no more
    /// writes until reopened.
    #[error("{0}")]
    Durable(String),
}

/// The results of one submission: a range of a shared batch's results.
#[derive(Debug, Clone)]
pub struct QueueResults {
    results: Arc<BatchResults>,
    offset: usize,
    len: usize,
}

impl QueueResults {
    /// Number of results: the submission's number of operations.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the submission had no operation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The result of the submission's operation `i`.
    pub fn get(&self, i: usize) -> Option<Outcome<'_>> {
        if i < self.len {
            self.results.get(self.offset + i)
        } else {
            None
        }
    }

    /// The results in the submission's order.
    pub fn iter(&self) -> impl Iterator<Item = Outcome<'_>> + '_ {
        (0..self.len).map(|i| self.results.get(self.offset + i).expect("in range"))
    }
}

/// Where a submission's completion goes.
enum Reply {
    /// A pipelining client's completion slot; `first` is the ticket of its first operation.
    Slot { slot: Arc<Slot>, first: u64 },
    /// A one-shot waiter.
    Once(Sender<Result<QueueResults, QueueError>>),
}

impl Reply {
    fn send(self, len: usize, result: Result<QueueResults, QueueError>) {
        match self {
            Reply::Slot { slot, first } => slot.push(Completion {
                first,
                len: len as u64,
                result,
            }),
            // A waiter that went away does not want the result.
            Reply::Once(tx) => drop(tx.send(result)),
        }
    }
}

/// One submission on its way through the queue. Completing it consumes the reply; dropping
/// it unprocessed (shutdown, a dispatcher that died) completes it with `Closed`, so every
/// submission completes exactly once and no waiter can hang.
pub(crate) struct Submission {
    batch: Batch,
    reply: Option<Reply>,
    created: Instant,
}

impl Submission {
    fn complete(mut self, result: Result<QueueResults, QueueError>) {
        if let Some(reply) = self.reply.take() {
            reply.send(self.batch.len(), result);
        }
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.send(self.batch.len(), Err(QueueError::Closed));
        }
    }
}

enum Msg {
    /// Boxed: channel slots stay small, and a failed send hands back a pointer.
    Submit(Box<Submission>),
    Shutdown,
}

/// A finished chunk of a client: tickets `first..first + len`.
struct Completion {
    first: u64,
    len: u64,
    result: Result<QueueResults, QueueError>,
}

/// A client's completion slot: completions pushed by the dispatcher, taken by the client.
/// `waiting` records whether the client sleeps on `ready`, so the dispatcher makes the
/// wake-up system call only when someone is there to wake.
#[derive(Default)]
struct Slot {
    done: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Default)]
struct SlotState {
    done: Vec<Completion>,
    waiting: bool,
}

impl Slot {
    fn push(&self, c: Completion) {
        let mut state = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.done.push(c);
        if state.waiting {
            self.ready.notify_one();
        }
    }

    /// Blocks until at least one completion is there, and takes them all into `into`.
    fn take_into(&self, into: &mut Vec<Completion>) {
        let mut state = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while state.done.is_empty() {
            state.waiting = true;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.waiting = false;
        into.append(&mut state.done);
    }
}

/// What the handles share. The dispatcher holds only `state`, never the sender, so the
/// channel disconnects (and the dispatcher ends) once every handle and client is gone.
struct Shared {
    tx: Sender<Msg>,
    /// A second receiver, used only to drain submissions that arrive after the dispatcher
    /// closed (see [`Queue::send`]).
    reaper: Receiver<Msg>,
    value_bytes: usize,
    config: QueueConfig,
    join: Mutex<Option<JoinHandle<Store>>>,
    state: Arc<DispatchState>,
    submitted: AtomicU64,
}

/// What the dispatcher shares with the handles.
struct DispatchState {
    /// Set while the dispatcher waits for work: a client then sends at once.
    idle: AtomicBool,
    /// Set (then the channel drained) once the dispatcher stops taking submissions.
    closed: AtomicBool,
    metrics: dispatcher::QueueMetrics,
}

/// A cloneable, `Send + Sync` handle to a table's submission queue.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("value_bytes", &self.shared.value_bytes)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Starts the dispatcher, which owns `table` (a [`Table`](warpgrid_engine::Table) or a durable table, see
    /// [`Store`]) until [`shutdown`](Queue::shutdown). Metrics go to `registry` (labelled
    /// with the table's name).
    pub fn start(table: impl Into<Store>, config: QueueConfig, registry: &Registry) -> Queue {
        let table: Store = table.into();
        let (tx, rx): (Sender<Msg>, Receiver<Msg>) =
            crossbeam_channel::bounded(config.capacity.max(1));
        let value_bytes = table.table().value_bytes();
        let state = Arc::new(DispatchState {
            idle: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            metrics: dispatcher::QueueMetrics::new(registry, table.table().name()),
        });
        let reaper = rx.clone();
        let worker = dispatcher::Dispatcher::new(table, rx, Arc::clone(&state), config.clone());
        let shared = Arc::new(Shared {
            tx,
            reaper,
            value_bytes,
            config,
            join: Mutex::new(None),
            state,
            submitted: AtomicU64::new(0),
        });
        let handle = std::thread::Builder::new()
            .name("warpgrid-dispatch".into())
            .spawn(move || worker.run())
            .expect("spawning the dispatcher thread");
        *shared.join.lock().expect("fresh mutex") = Some(handle);
        Queue { shared }
    }

    /// Bytes per value of the queue's table.
    pub fn value_bytes(&self) -> usize {
        self.shared.value_bytes
    }

    /// The settings the queue was started with.
    pub fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    /// A new empty batch for this queue's table.
    pub fn batch(&self) -> Batch {
        Batch::new(self.shared.value_bytes)
    }

    /// A pipelining client for the calling thread.
    pub fn client(&self) -> Client {
        Client::new(self.clone())
    }

    fn send(&self, msg: Msg, backpressure: Backpressure) -> Result<(), (Msg, QueueError)> {
        let sent = match backpressure {
            Backpressure::Block => self
                .shared
                .tx
                .send(msg)
                .map_err(|e| (e.0, QueueError::Closed)),
            Backpressure::Fail => self.shared.tx.try_send(msg).map_err(|e| match e {
                TrySendError::Full(m) => (m, QueueError::Busy),
                TrySendError::Disconnected(m) => (m, QueueError::Closed),
            }),
        };
        if sent.is_ok() {
            self.shared.submitted.fetch_add(1, Ordering::Relaxed);
            // Close protocol: the dispatcher sets `closed`, fences, then drains the channel.
            // A message sent after that drain is seen here instead (both sides fence), and
            // drained by its sender: every submission still completes exactly once.
            fence(Ordering::SeqCst);
            if self.shared.state.closed.load(Ordering::SeqCst) {
                while let Ok(late) = self.shared.reaper.try_recv() {
                    drop(late);
                }
            }
        }
        sent
    }

    fn check(&self, batch: &Batch) -> Result<(), QueueError> {
        if batch.value_bytes() != self.shared.value_bytes {
            return Err(TableError::BatchMismatch {
                batch: batch.value_bytes(),
                table: self.shared.value_bytes,
            }
            .into());
        }
        Ok(())
    }

    /// Submits a batch and returns at once; [`Pending::wait`] gives its results.
    pub fn submit(&self, batch: Batch) -> Result<Pending, QueueError> {
        self.submit_with(batch, Backpressure::Block)
    }

    /// [`submit`](Queue::submit), answering [`QueueError::Busy`] instead of blocking when
    /// the queue is full (the batch is handed back in neither case: build it again).
    pub fn try_submit(&self, batch: Batch) -> Result<Pending, QueueError> {
        self.submit_with(batch, Backpressure::Fail)
    }

    fn submit_with(&self, batch: Batch, bp: Backpressure) -> Result<Pending, QueueError> {
        self.check(&batch)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sub = Submission {
            batch,
            reply: Some(Reply::Once(tx)),
            created: Instant::now(),
        };
        match self.send(Msg::Submit(Box::new(sub)), bp) {
            Ok(()) => Ok(Pending { rx }),
            Err((msg, e)) => {
                // Not sent: it must not complete (the caller gets `e` here).
                if let Msg::Submit(mut s) = msg {
                    s.reply = None;
                }
                Err(e)
            }
        }
    }

    /// Applies a batch through the queue and waits for its results.
    pub fn apply(&self, batch: Batch) -> Result<QueueResults, QueueError> {
        self.submit(batch)?.wait()
    }

    /// Upserts one key and waits.
    pub fn put(&self, key: u64, value: &[u8]) -> Result<(), QueueError> {
        let mut b = self.batch();
        b.put(key, value)?;
        self.apply(b).map(drop)
    }

    /// Reads one key and waits.
    pub fn get(&self, key: u64) -> Result<Option<Vec<u8>>, QueueError> {
        let mut b = self.batch();
        b.get(key)?;
        let r = self.apply(b)?;
        Ok(match r.get(0) {
            Some(Outcome::Value(v)) => Some(v.to_vec()),
            _ => None,
        })
    }

    /// Deletes one key and waits; whether it existed.
    pub fn delete(&self, key: u64) -> Result<bool, QueueError> {
        let mut b = self.batch();
        b.delete(key)?;
        Ok(matches!(self.apply(b)?.get(0), Some(Outcome::Deleted)))
    }

    /// Submissions sent so far (the registry has the full metrics).
    pub fn submissions(&self) -> u64 {
        self.shared.submitted.load(Ordering::Relaxed)
    }

    /// Runs everything submitted before this call, stops the dispatcher and returns the
    /// table. Submissions racing with the shutdown either run or fail with `Closed`;
    /// later ones fail with `Closed`. Only the first call gets the table.
    pub fn shutdown(&self) -> Result<Store, QueueError> {
        // If the dispatcher is already gone the send fails; the join below still works.
        let _ = self.shared.tx.send(Msg::Shutdown);
        let handle = self
            .shared
            .join
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match handle {
            Some(h) => h.join().map_err(|_| QueueError::Closed),
            None => Err(QueueError::Closed),
        }
    }
}

/// A submitted batch whose results are not yet taken.
#[derive(Debug)]
pub struct Pending {
    rx: Receiver<Result<QueueResults, QueueError>>,
}

impl Pending {
    /// Blocks until the batch ran (or failed).
    pub fn wait(self) -> Result<QueueResults, QueueError> {
        self.rx.recv().unwrap_or(Err(QueueError::Closed))
    }
}
