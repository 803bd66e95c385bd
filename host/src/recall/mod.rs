//! The recall queue (SPEC §2.3 "Batched recall", §4): many threads ask recalls of one graph;
//! a dispatcher thread coalesces whatever is waiting into one batched recall (one similarity
//! product, one multi-vector propagation) and completes each request with its own result.
//!
//! - Batch size adapts ([`sizer`]): an EWMA of the time per batch and the P95 of recall
//!   latency (submission to completion) over windows of at most 500 recalls keep the P95
//!   under [`RecallQueueConfig::target_p95`] while batches grow as far as that allows.
//! - Batches form naturally: while one batch runs, requests queue; the next batch takes all
//!   of them up to the limit. An idle queue runs a lone request at once.
//! - A request's result is the one [`Graph::recall`] gives for its query alone (bit for bit),
//!   except that the latency budget, if any, is the batch's (SPEC §2.3: a stop makes every
//!   query still spreading partial).
//! - Bounded: `capacity` requests wait at most; [`RecallQueue::submit`] then blocks and
//!   [`RecallQueue::try_submit`] answers [`RecallQueueError::Busy`].
//! - A query is checked when submitted (dimension, finite, not all zero), so a bad one never
//!   fails a batch of good ones.
//! - Metrics (labelled `graph`): recall latency histogram (P50/P95/P99 in ns), recalls per
//!   batch, recalls, batches, partial results, the batch limit, and the latency predictor's
//!   hop predictions and its share within 20 % (the SPEC's prediction-error metric).

mod dispatcher;
pub mod sizer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use warpgrid_engine::Device;
use warpgrid_engine::graph::{Clock, Graph, GraphError, RecallParams, RecallResult, SystemClock};

use crate::metrics::{HistogramSnapshot, Registry};
use dispatcher::{Dispatcher, RecallMetrics};
pub use sizer::{BatchSizer, Decision, SizerConfig};

/// Settings of a recall queue.
#[derive(Debug, Clone)]
pub struct RecallQueueConfig {
    /// The recall parameters of every request (one queue per parameter set).
    pub params: RecallParams,
    /// The P95 of recall latency (submission to completion) the batch size is kept under.
    pub target_p95: Duration,
    /// Batch limit at the start (recalls per batch).
    pub initial_batch: usize,
    /// Smallest batch limit.
    pub min_batch: usize,
    /// Largest batch limit.
    pub max_batch: usize,
    /// Recalls between evaluations of the batch limit.
    pub eval_every: usize,
    /// Requests that may wait before submitters block or get `Busy`.
    pub capacity: usize,
    /// The `graph` label of the metrics.
    pub name: String,
}

impl Default for RecallQueueConfig {
    fn default() -> Self {
        RecallQueueConfig {
            params: RecallParams::default(),
            target_p95: Duration::from_millis(5),
            initial_batch: 8,
            min_batch: 1,
            max_batch: 256,
            eval_every: 500,
            capacity: 4096,
            name: "graph".into(),
        }
    }
}

impl RecallQueueConfig {
    fn validate(&self) -> Result<(), RecallQueueError> {
        let bad = |field: &'static str, reason: String| {
            Err(RecallQueueError::Config(format!("{field}: {reason}")))
        };
        if self.min_batch == 0 || self.min_batch > self.max_batch {
            return bad(
                "min_batch/max_batch",
                format!(
                    "expected 1 <= min_batch <= max_batch, got {} and {}",
                    self.min_batch, self.max_batch
                ),
            );
        }
        if self.eval_every == 0 || self.eval_every > 500 {
            return bad(
                "eval_every",
                format!("expected 1..=500 recalls, got {}", self.eval_every),
            );
        }
        if self.capacity == 0 {
            return bad("capacity", "expected at least 1".into());
        }
        if self.target_p95.is_zero() {
            return bad("target_p95", "expected a positive duration".into());
        }
        self.params
            .validate()
            .map_err(|e| RecallQueueError::Config(e.to_string()))
    }
}

/// Why a recall request did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RecallQueueError {
    /// The queue is full and the caller asked not to block.
    #[error("the recall queue is full (busy); retry later or submit with blocking")]
    Busy,
    /// The queue was shut down before the request ran.
    #[error("the recall queue is shut down; the request was not run")]
    Closed,
    /// The query cannot be recalled (wrong dimension, NaN, all zero); nothing was queued.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The queue's settings are invalid (named field).
    #[error("recall queue config: {0}")]
    Config(String),
    /// The engine failed the batch the request was in.
    #[error("recall failed: {0}")]
    Graph(String),
}

/// What the dispatcher receives.
enum Msg {
    Recall(Request),
    /// Run what is queued, then stop.
    Stop,
}

/// One waiting recall.
struct Request {
    query: Vec<f32>,
    submitted: Instant,
    reply: Option<Arc<Slot>>,
}

impl Request {
    fn complete(&mut self, result: Result<RecallResult, RecallQueueError>) {
        if let Some(slot) = self.reply.take() {
            slot.fill(result);
        }
    }
}

impl Drop for Request {
    /// A request dropped unanswered (the queue closed under it) completes as `Closed`, so no
    /// waiter blocks forever.
    fn drop(&mut self) {
        self.complete(Err(RecallQueueError::Closed));
    }
}

/// Where a request's result is left for its waiter.
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Result<RecallResult, RecallQueueError>>>,
    ready: Condvar,
}

impl Slot {
    fn fill(&self, result: Result<RecallResult, RecallQueueError>) {
        *self.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        self.ready.notify_one();
    }
}

/// A submitted recall; [`wait`](PendingRecall::wait) returns its result.
pub struct PendingRecall {
    slot: Arc<Slot>,
}

impl PendingRecall {
    /// Blocks until the recall completes.
    pub fn wait(self) -> Result<RecallResult, RecallQueueError> {
        let mut guard = self.slot.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = guard.take() {
                return r;
            }
            guard = self
                .slot
                .ready
                .wait(guard)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Figures of a recall queue at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecallQueueStats {
    /// Recalls completed.
    pub recalls: u64,
    /// Batches run.
    pub batches: u64,
    /// Recalls the latency budget cut short.
    pub partials: u64,
    /// The adaptive batch limit now.
    pub batch_limit: usize,
    /// Recall latency, submission to completion, in ns.
    pub latency_ns: HistogramSnapshot,
    /// Recalls per batch.
    pub batch_recalls: HistogramSnapshot,
    /// Hops whose time the latency predictor predicted.
    pub hop_predictions: u64,
    /// Of those, predictions within 20 % of the actual time.
    pub hop_predictions_within_20_percent: u64,
}

/// A queue of recalls over one graph; see the module docs. Share it (`Arc`) among threads.
pub struct RecallQueue {
    tx: Sender<Msg>,
    dim: usize,
    closed: Arc<AtomicBool>,
    metrics: RecallMetrics,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl RecallQueue {
    /// Starts a queue over `graph` on `device`, timing budgets with the system clock.
    pub fn start(
        graph: Arc<Graph>,
        device: Device,
        config: RecallQueueConfig,
        registry: &Registry,
    ) -> Result<RecallQueue, RecallQueueError> {
        RecallQueue::start_with_clock(
            graph,
            device,
            config,
            registry,
            Arc::new(SystemClock::new()),
        )
    }

    /// [`start`](RecallQueue::start) with the clock the latency budget reads (tests inject a
    /// manual one to make truncation deterministic). Latency metrics use the system clock.
    pub fn start_with_clock(
        graph: Arc<Graph>,
        device: Device,
        config: RecallQueueConfig,
        registry: &Registry,
        clock: Arc<dyn Clock>,
    ) -> Result<RecallQueue, RecallQueueError> {
        config.validate()?;
        if graph.dim() == 0 {
            return Err(RecallQueueError::Config(
                "graph: it has no embeddings, so it cannot be recalled from".into(),
            ));
        }
        graph.prepare(&device)?;
        let (tx, rx) = crossbeam_channel::bounded(config.capacity);
        let metrics = RecallMetrics::new(registry, &config.name);
        let closed = Arc::new(AtomicBool::new(false));
        let dim = graph.dim();
        let dispatcher = Dispatcher::new(graph, device, config, clock, metrics.clone(), rx);
        let closer = dispatcher::Closer(Arc::clone(&closed));
        let handle = std::thread::Builder::new()
            .name("warpgrid-recall".into())
            .spawn(move || {
                // Marks the queue closed however the dispatcher ends (a panic included).
                let _closer = closer;
                dispatcher.run();
            })
            .map_err(|e| RecallQueueError::Config(format!("cannot start the dispatcher: {e}")))?;
        Ok(RecallQueue {
            tx,
            dim,
            closed,
            metrics,
            dispatcher: Mutex::new(Some(handle)),
        })
    }

    /// The query dimension the graph takes.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn request(&self, query: &[f32]) -> Result<(Request, PendingRecall), RecallQueueError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RecallQueueError::Closed);
        }
        check_query(query, self.dim)?;
        let slot = Arc::new(Slot::default());
        let request = Request {
            query: query.to_vec(),
            submitted: Instant::now(),
            reply: Some(Arc::clone(&slot)),
        };
        Ok((request, PendingRecall { slot }))
    }

    /// Queues a recall of `query`, blocking while the queue is full.
    pub fn submit(&self, query: &[f32]) -> Result<PendingRecall, RecallQueueError> {
        let (request, pending) = self.request(query)?;
        match self.tx.send(Msg::Recall(request)) {
            Ok(()) => Ok(pending),
            Err(e) => {
                defuse(e.into_inner());
                Err(RecallQueueError::Closed)
            }
        }
    }

    /// Queues a recall of `query`, or answers `Busy` at once when the queue is full.
    pub fn try_submit(&self, query: &[f32]) -> Result<PendingRecall, RecallQueueError> {
        let (request, pending) = self.request(query)?;
        match self.tx.try_send(Msg::Recall(request)) {
            Ok(()) => Ok(pending),
            Err(TrySendError::Full(m)) => {
                defuse(m);
                Err(RecallQueueError::Busy)
            }
            Err(TrySendError::Disconnected(m)) => {
                defuse(m);
                Err(RecallQueueError::Closed)
            }
        }
    }

    /// Submits and waits.
    pub fn recall(&self, query: &[f32]) -> Result<RecallResult, RecallQueueError> {
        self.submit(query)?.wait()
    }

    /// Requests waiting now.
    pub fn depth(&self) -> usize {
        self.tx.len()
    }

    /// Figures of the queue now.
    pub fn stats(&self) -> RecallQueueStats {
        self.metrics.stats()
    }

    /// Runs every request already queued, then stops the dispatcher. Later submissions
    /// answer `Closed`. Called by drop too.
    pub fn shutdown(&self) {
        let handle = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            self.closed.store(true, Ordering::Release);
            // Fails only if the dispatcher is gone already.
            let _ = self.tx.send(Msg::Stop);
            if h.join().is_err() {
                tracing::error!("the recall dispatcher panicked");
            }
        }
    }
}

impl Drop for RecallQueue {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A request the channel handed back unsent: its waiter gets the error from the caller, so
/// its drop must not fill the slot.
fn defuse(m: Msg) {
    if let Msg::Recall(mut r) = m {
        r.reply = None;
    }
}

/// A query the engine can recall: `dim` finite values, not all zero.
fn check_query(query: &[f32], dim: usize) -> Result<(), RecallQueueError> {
    if query.len() != dim {
        return Err(RecallQueueError::InvalidQuery(format!(
            "dimension {} does not match the graph's embeddings ({dim})",
            query.len()
        )));
    }
    if let Some(i) = query.iter().position(|x| !x.is_finite()) {
        return Err(RecallQueueError::InvalidQuery(format!(
            "component {i} is {}, not a finite number",
            query[i]
        )));
    }
    if query.iter().all(|&x| x == 0.0) {
        return Err(RecallQueueError::InvalidQuery(
            "an all-zero query has no direction to recall".into(),
        ));
    }
    Ok(())
}

impl From<GraphError> for RecallQueueError {
    fn from(e: GraphError) -> Self {
        RecallQueueError::Graph(e.to_string())
    }
}
