//! The recall queue's dispatcher thread: takes what is waiting (up to the sizer's limit),
//! runs it as one batched recall, completes each request, feeds the sizer and the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::Receiver;
use warpgrid_engine::Device;
use warpgrid_engine::graph::{Clock, Graph, LatencyPredictor, PredictorStats};

use super::sizer::{BatchSizer, SizerConfig};
use super::{Msg, RecallQueueConfig, RecallQueueError, RecallQueueStats, Request};
use crate::metrics::{Counter, Gauge, Histogram, Registry};

/// Marks the queue closed when dropped, so submitters stop queueing once the dispatcher has
/// ended, normally or by a panic.
pub(super) struct Closer(pub Arc<AtomicBool>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The queue's metrics, labelled with the graph's name.
#[derive(Clone)]
pub(super) struct RecallMetrics {
    recalls: Counter,
    batches: Counter,
    partials: Counter,
    latency_ns: Histogram,
    batch_recalls: Histogram,
    batch_limit: Gauge,
    hop_predictions: Counter,
    hop_within_20: Counter,
    within_20_ratio: Gauge,
}

impl RecallMetrics {
    pub(super) fn new(registry: &Registry, graph: &str) -> RecallMetrics {
        let l: &[(&str, &str)] = &[("graph", graph)];
        RecallMetrics {
            recalls: registry.counter_with(
                "warpgrid_recall_total",
                "recalls completed by the recall queue",
                l,
            ),
            batches: registry.counter_with(
                "warpgrid_recall_batches_total",
                "batched recalls launched",
                l,
            ),
            partials: registry.counter_with(
                "warpgrid_recall_partial_total",
                "recalls cut short by the latency budget (partial = true)",
                l,
            ),
            latency_ns: registry.histogram_with(
                "warpgrid_recall_latency_ns",
                "nanoseconds from a recall's submission to its completion",
                l,
            ),
            batch_recalls: registry.histogram_with(
                "warpgrid_recall_batch_recalls",
                "recalls per launched batch",
                l,
            ),
            batch_limit: registry.gauge_with(
                "warpgrid_recall_batch_limit",
                "the adaptive limit of recalls per batch",
                l,
            ),
            hop_predictions: registry.counter_with(
                "warpgrid_recall_hop_predictions_total",
                "spreading hops whose time the latency predictor predicted",
                l,
            ),
            hop_within_20: registry.counter_with(
                "warpgrid_recall_hop_predictions_within_20pct_total",
                "of those, predictions within 20 % of the measured time",
                l,
            ),
            within_20_ratio: registry.gauge_with(
                "warpgrid_recall_prediction_within_20pct_ratio",
                "share of hop predictions within 20 % of the measured time (goal: 0.95)",
                l,
            ),
        }
    }

    pub(super) fn stats(&self) -> RecallQueueStats {
        RecallQueueStats {
            recalls: self.recalls.get(),
            batches: self.batches.get(),
            partials: self.partials.get(),
            batch_limit: self.batch_limit.get() as usize,
            latency_ns: self.latency_ns.snapshot(),
            batch_recalls: self.batch_recalls.snapshot(),
            hop_predictions: self.hop_predictions.get(),
            hop_predictions_within_20_percent: self.hop_within_20.get(),
        }
    }

    /// Adds what the predictor scored since `before`.
    fn count_predictions(&self, before: &PredictorStats, after: &PredictorStats) {
        self.hop_predictions
            .add(after.predictions - before.predictions);
        self.hop_within_20
            .add(after.within_20_percent - before.within_20_percent);
        if after.predictions > 0 {
            self.within_20_ratio
                .set(after.within_20_percent as f64 / after.predictions as f64);
        }
    }
}

pub(super) struct Dispatcher {
    graph: Arc<Graph>,
    device: Device,
    config: RecallQueueConfig,
    clock: Arc<dyn Clock>,
    metrics: RecallMetrics,
    rx: Receiver<Msg>,
    sizer: BatchSizer,
    predictor: LatencyPredictor,
    /// Reused buffers: the batch's requests, its queries row-major, its latencies (ns).
    batch: Vec<Request>,
    queries: Vec<f32>,
    latencies: Vec<u64>,
}

impl Dispatcher {
    pub(super) fn new(
        graph: Arc<Graph>,
        device: Device,
        config: RecallQueueConfig,
        clock: Arc<dyn Clock>,
        metrics: RecallMetrics,
        rx: Receiver<Msg>,
    ) -> Dispatcher {
        let sizer = BatchSizer::new(SizerConfig {
            target_p95: config.target_p95,
            initial: config.initial_batch,
            min: config.min_batch,
            max: config.max_batch,
            eval_every: config.eval_every,
        });
        metrics.batch_limit.set(sizer.limit() as f64);
        let max = config.max_batch;
        let dim = graph.dim();
        Dispatcher {
            graph,
            device,
            config,
            clock,
            metrics,
            rx,
            sizer,
            predictor: LatencyPredictor::new(),
            batch: Vec::with_capacity(max),
            queries: Vec::with_capacity(max * dim),
            latencies: Vec::with_capacity(max),
        }
    }

    /// Runs batches until told to stop (or every sender is gone), then runs what is still
    /// queued and returns.
    pub(super) fn run(mut self) {
        let mut stopping = false;
        loop {
            if self.batch.is_empty() && !stopping {
                match self.rx.recv() {
                    Ok(Msg::Recall(r)) => self.batch.push(r),
                    Ok(Msg::Stop) | Err(_) => stopping = true,
                }
            }
            while self.batch.len() < self.sizer.limit() {
                match self.rx.try_recv() {
                    Ok(Msg::Recall(r)) => self.batch.push(r),
                    Ok(Msg::Stop) => stopping = true,
                    Err(_) => break,
                }
            }
            if self.batch.is_empty() {
                if stopping {
                    return;
                }
                continue;
            }
            self.run_batch();
        }
    }

    fn run_batch(&mut self) {
        let n = self.batch.len();
        let _span = tracing::debug_span!("recall_batch", recalls = n).entered();
        self.queries.clear();
        for r in &self.batch {
            self.queries.extend_from_slice(&r.query);
        }
        let before = self.predictor.stats().clone();
        let started = Instant::now();
        let results = self.graph.recall_batch(
            &self.device,
            &self.queries,
            &self.config.params,
            &*self.clock,
            &mut self.predictor,
        );
        let finished = Instant::now();
        let service = finished.duration_since(started);
        self.latencies.clear();
        self.latencies.extend(self.batch.iter().map(|r| {
            u64::try_from(finished.duration_since(r.submitted).as_nanos()).unwrap_or(u64::MAX)
        }));
        // Metrics first, then completions: a waiter that reads the stats after its result
        // sees its own recall counted.
        let partials = results
            .as_ref()
            .map_or(0, |rs| rs.iter().filter(|r| r.partial).count());
        for &ns in &self.latencies {
            self.metrics.latency_ns.record(ns);
        }
        self.metrics.partials.add(partials as u64);
        self.metrics.recalls.add(n as u64);
        self.metrics.batches.inc();
        self.metrics.batch_recalls.record(n as u64);
        self.metrics
            .count_predictions(&before, self.predictor.stats());
        self.sizer.observe(n, service, &self.latencies);
        self.metrics.batch_limit.set(self.sizer.limit() as f64);
        match results {
            Ok(results) => {
                for (request, result) in self.batch.iter_mut().zip(results) {
                    request.complete(Ok(result));
                }
            }
            Err(e) => {
                // Queries are checked at submission, so this is an engine failure.
                tracing::error!("recall batch of {n} failed: {e}");
                let e = RecallQueueError::from(e);
                for request in &mut self.batch {
                    request.complete(Err(e.clone()));
                }
            }
        }
        self.batch.clear();
    }
}
