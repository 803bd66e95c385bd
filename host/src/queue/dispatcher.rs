//! The dispatcher thread: coalesces waiting submissions into one engine batch, runs it
//! (answering cache hits without the table), and completes every submission.
//!
//! Batch cut: the dispatcher takes everything already waiting, up to `max_batch` operations.
//! If that is less than half the recent average (an EWMA of launched batch sizes) it holds
//! the batch open for more, but never past `deadline` after it started gathering. A lone
//! client therefore never waits for a deadline, and a busy queue launches full batches.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use hashbrown::HashSet;
use warpgrid_engine::{BackendKind, Batch, BatchResults, OpCode, Outcome};

use super::{DispatchState, Msg, QueueConfig, QueueError, QueueResults, Store, Submission};
use crate::cache::HostCache;
use crate::metrics::{Counter, Gauge, Histogram, Registry};

/// The queue's metrics, labelled with the table's name.
pub(super) struct QueueMetrics {
    ops: Counter,
    submissions: Counter,
    batches: Counter,
    failed: Counter,
    batch_ops: Histogram,
    latency_ns: Histogram,
    depth: Gauge,
    cache_hits: Counter,
    cache_lookups: Counter,
    cache_hit_rate: Gauge,
    shard_cv: Gauge,
    ops_per_second: Gauge,
}

impl QueueMetrics {
    pub(super) fn new(registry: &Registry, table: &str) -> QueueMetrics {
        let l: &[(&str, &str)] = &[("table", table)];
        QueueMetrics {
            ops: registry.counter_with(
                "warpgrid_queue_ops_total",
                "operations completed by the queue",
                l,
            ),
            submissions: registry.counter_with(
                "warpgrid_queue_submissions_total",
                "submissions completed",
                l,
            ),
            batches: registry.counter_with(
                "warpgrid_queue_batches_total",
                "engine batches launched",
                l,
            ),
            failed: registry.counter_with(
                "warpgrid_queue_failed_submissions_total",
                "submissions that failed",
                l,
            ),
            batch_ops: registry.histogram_with(
                "warpgrid_queue_batch_ops",
                "operations per launched batch",
                l,
            ),
            latency_ns: registry.histogram_with(
                "warpgrid_queue_op_latency_ns",
                "nanoseconds from an operation's submission to its completion",
                l,
            ),
            depth: registry.gauge_with(
                "warpgrid_queue_depth",
                "submissions waiting in the queue",
                l,
            ),
            cache_hits: registry.counter_with(
                "warpgrid_cache_hits_total",
                "gets answered by the host cache",
                l,
            ),
            cache_lookups: registry.counter_with(
                "warpgrid_cache_lookups_total",
                "gets looked up in the host cache",
                l,
            ),
            cache_hit_rate: registry.gauge_with(
                "warpgrid_cache_hit_rate",
                "host cache hits / lookups",
                l,
            ),
            shard_cv: registry.gauge_with(
                "warpgrid_table_shard_cv",
                "coefficient of variation of items per shard",
                l,
            ),
            ops_per_second: registry.gauge_with(
                "warpgrid_queue_ops_per_second",
                "operations completed per second, over the last half second or more",
                l,
            ),
        }
    }
}

/// Closes the queue when the dispatcher ends, normally or by a panic: sets `closed`, then
/// drains every submission still queued (each completes with `Closed` as it drops).
struct Closer {
    rx: Receiver<Msg>,
    state: Arc<DispatchState>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        while let Ok(late) = self.rx.try_recv() {
            drop(late);
        }
    }
}

pub(super) struct Dispatcher {
    table: Store,
    closer: Closer,
    state: Arc<DispatchState>,
    config: QueueConfig,
    cache: Option<HostCache>,
    subs: Vec<Submission>,
    ops: usize,
    merged: Batch,
    /// Average ops per launched batch (EWMA), the yardstick for holding a batch open.
    ewma: f64,
    written: HashSet<u64>,
    launched: u64,
    cache_seen: (u64, u64),
    /// Start and operation count of the current ops/s window.
    rate_window: (Instant, u64),
}

impl Dispatcher {
    pub(super) fn new(
        table: Store,
        rx: Receiver<Msg>,
        state: Arc<DispatchState>,
        config: QueueConfig,
    ) -> Dispatcher {
        let on = config
            .cache
            .enabled
            .unwrap_or(table.table().device().kind() != BackendKind::Cpu);
        let cache = on.then(|| HostCache::new(&config.cache, table.table().value_bytes()));
        let merged = table.table().batch();
        Dispatcher {
            table,
            closer: Closer {
                rx,
                state: Arc::clone(&state),
            },
            state,
            config,
            cache,
            subs: Vec::new(),
            ops: 0,
            merged,
            ewma: 1.0,
            written: HashSet::new(),
            launched: 0,
            cache_seen: (0, 0),
            rate_window: (Instant::now(), 0),
        }
    }

    /// Runs until shut down or until every handle is gone; returns the table.
    pub(super) fn run(mut self) -> Store {
        loop {
            self.state.idle.store(true, Ordering::SeqCst);
            let Ok(msg) = self.closer.rx.recv() else {
                break;
            };
            self.state.idle.store(false, Ordering::SeqCst);
            let shutdown = self.take(msg) || self.gather();
            self.launch();
            if shutdown {
                break;
            }
        }
        // Submissions still queued raced with the shutdown: the closer drains them, and each
        // completes with `Closed` as it drops.
        let Dispatcher { table, closer, .. } = self;
        drop(closer);
        table
    }

    /// Takes one message; whether it asks to shut down.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Submit(s) => {
                self.ops += s.batch.len();
                self.subs.push(*s);
                false
            }
            Msg::Shutdown => true,
        }
    }

    /// Gathers more submissions for the batch; whether a shutdown arrived.
    fn gather(&mut self) -> bool {
        let start = Instant::now();
        loop {
            while self.ops < self.config.max_batch {
                match self.closer.rx.try_recv() {
                    Ok(m) => {
                        if self.take(m) {
                            return true;
                        }
                    }
                    Err(_) => break,
                }
            }
            let elapsed = start.elapsed();
            if self.ops >= self.config.max_batch
                || (self.ops as f64) >= self.ewma * 0.5
                || elapsed >= self.config.deadline
            {
                return false;
            }
            match self.closer.rx.recv_timeout(self.config.deadline - elapsed) {
                Ok(m) => {
                    if self.take(m) {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Runs the gathered submissions as one batch and completes each.
    fn launch(&mut self) {
        if self.subs.is_empty() {
            return;
        }
        let m = &self.state.metrics;
        m.depth.set(self.closer.rx.len() as f64);
        m.batch_ops.record(self.ops as u64);
        m.batches.inc();
        self.ewma = 0.8 * self.ewma + 0.2 * self.ops as f64;
        let mut subs = std::mem::take(&mut self.subs);
        self.ops = 0;
        let result = if subs.len() == 1 {
            self.apply(&subs[0].batch)
        } else {
            let mut merged = std::mem::take(&mut self.merged);
            merged.clear();
            for s in &subs {
                merged
                    .extend_from(&s.batch)
                    .expect("submissions are checked against the table");
            }
            let r = self.apply(&merged);
            self.merged = merged;
            r
        };
        let _span = tracing::debug_span!("queue_complete", submissions = subs.len()).entered();
        match result {
            Ok(results) => {
                let results = Arc::new(results);
                let mut offset = 0;
                for s in subs.drain(..) {
                    let len = s.batch.len();
                    self.completed(&s);
                    s.complete(Ok(QueueResults {
                        results: Arc::clone(&results),
                        offset,
                        len,
                    }));
                    offset += len;
                }
            }
            // One submission must not fail another: run them one by one. (A durable
            // table's log or fsync failure is not about one submission: it fails them all.)
            Err(QueueError::Table(_)) if subs.len() > 1 => {
                for s in subs.drain(..) {
                    let r = self.apply(&s.batch);
                    self.finish_one(s, r);
                }
            }
            Err(e) => {
                for s in subs.drain(..) {
                    self.finish_one(s, Err(e.clone()));
                }
            }
        }
        self.subs = subs;
        self.launched += 1;
        let (since, ops_then) = self.rate_window;
        let elapsed = since.elapsed().as_secs_f64();
        if elapsed >= 0.5 {
            let ops_now = self.state.metrics.ops.get();
            self.state
                .metrics
                .ops_per_second
                .set((ops_now - ops_then) as f64 / elapsed);
            self.rate_window = (Instant::now(), ops_now);
        }
        if self.launched % 64 == 1 {
            self.state
                .metrics
                .shard_cv
                .set(self.table.table().stats().cv);
        }
    }

    fn finish_one(&mut self, s: Submission, r: Result<BatchResults, QueueError>) {
        match r {
            Ok(results) => {
                let len = s.batch.len();
                self.completed(&s);
                s.complete(Ok(QueueResults {
                    results: Arc::new(results),
                    offset: 0,
                    len,
                }));
            }
            Err(e) => {
                self.state.metrics.failed.inc();
                s.complete(Err(e));
            }
        }
    }

    fn completed(&self, s: &Submission) {
        let m = &self.state.metrics;
        let n = s.batch.len() as u64;
        m.ops.add(n);
        m.submissions.inc();
        m.latency_ns
            .record_n(s.created.elapsed().as_nanos() as u64, n);
    }

    /// Applies `batch`, answering gets from the cache where that is exact.
    fn apply(&mut self, batch: &Batch) -> Result<BatchResults, QueueError> {
        let _span =
            tracing::debug_span!("queue_launch", table = %self.table.table().name(), ops = batch.len())
                .entered();
        let Some(cache) = self.cache.as_mut() else {
            return self.table.apply(batch);
        };
        let (codes, keys) = (batch.codes(), batch.keys());
        self.written.clear();
        let mut hit_at = Vec::new();
        let mut hit_bytes = Vec::new();
        for i in 0..batch.len() {
            match codes[i] {
                // Exact only if nothing earlier in this batch writes the key.
                OpCode::Get if !self.written.contains(&keys[i]) => {
                    if let Some(v) = cache.lookup(keys[i]) {
                        hit_at.push(i as u32);
                        hit_bytes.extend_from_slice(v);
                    }
                }
                OpCode::Put | OpCode::Delete => {
                    self.written.insert(keys[i]);
                }
                _ => {}
            }
        }
        let result = if hit_at.is_empty() {
            let r = self.table.apply(batch)?;
            update_cache(cache, batch, &r);
            r
        } else {
            let mut rest = Batch::with_capacity(batch.value_bytes(), batch.len() - hit_at.len());
            let mut hits = hit_at.iter().peekable();
            for i in 0..batch.len() {
                if hits.next_if(|&&h| h as usize == i).is_none() {
                    rest.push_op_from(batch, i)?;
                }
            }
            let r = if rest.is_empty() {
                BatchResults::new()
            } else {
                self.table.apply(&rest)?
            };
            update_cache(cache, &rest, &r);
            let vb = batch.value_bytes();
            let hits: Vec<(u32, &[u8])> = hit_at
                .iter()
                .enumerate()
                .map(|(j, &at)| (at, &hit_bytes[j * vb..(j + 1) * vb]))
                .collect();
            BatchResults::with_hits(&r, batch.len(), &hits)
        };
        let (hits, lookups) = cache.hit_counts();
        let m = &self.state.metrics;
        m.cache_hits.add(hits - self.cache_seen.0);
        m.cache_lookups.add(lookups - self.cache_seen.1);
        self.cache_seen = (hits, lookups);
        if lookups > 0 {
            m.cache_hit_rate.set(hits as f64 / lookups as f64);
        }
        Ok(result)
    }
}

/// Brings the cache up to date with an applied batch, in batch order.
fn update_cache(cache: &mut HostCache, batch: &Batch, results: &BatchResults) {
    for (i, outcome) in results.iter().enumerate() {
        let key = batch.keys()[i];
        match (batch.codes()[i], outcome) {
            (OpCode::Put, _) => cache.on_put(key, batch.put_value_bytes(i)),
            (OpCode::Delete, _) => cache.on_delete(key),
            (OpCode::Get, Outcome::Value(v)) => cache.on_get(key, v),
            _ => {}
        }
    }
}
