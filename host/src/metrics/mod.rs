//! Metrics (SPEC §4): counters, gauges and latency histograms in a [`Registry`], read back
//! as a typed snapshot, as JSON ([`Registry::snapshot_json`]) or as Prometheus text
//! ([`Registry::prometheus_text`]), and served over HTTP by a [`MetricsServer`].
//!
//! ```no_run
//! use warpgrid_host::metrics::{MetricsServer, Registry};
//!
//! let registry = Registry::new();
//! let ops = registry.counter_with("warpgrid_ops_total", "Operations applied.", &[("table", "t")]);
//! let latency = registry.histogram("warpgrid_op_latency_ns", "Latency of one operation, ns.");
//! ops.inc();
//! latency.record(1_250);
//! let server = MetricsServer::start(registry.clone(), "127.0.0.1:9100")?;
//! // ... GET http://127.0.0.1:9100/metrics ...
//! server.stop();
//! # Ok::<(), warpgrid_host::metrics::MetricsError>(())
//! ```
//!
//! Files, one job each:
//! - `registry.rs`: names to series, kinds, the typed snapshot;
//! - `labels.rs`: name rules and normalised label sets;
//! - `scalar.rs`: [`Counter`] and [`Gauge`];
//! - `histogram.rs`: [`Histogram`] (bucket scheme and error bound in its docs);
//! - `json.rs` and `prometheus.rs`: the two renderings (format choices in their docs);
//! - `http.rs` and `server.rs`: the HTTP/1.1 endpoint and its thread;
//! - `error.rs`: [`MetricsError`].
//!
//! Updating a handle is lock-free and allocation-free; only finding or creating a series
//! takes the registry's lock, so look handles up once and keep them.

mod error;
mod histogram;
mod http;
mod json;
mod labels;
mod prometheus;
mod registry;
mod scalar;
mod server;

pub use error::MetricsError;
pub use histogram::{
    BUCKETS, Histogram, HistogramSnapshot, RELATIVE_ERROR_DIVISOR, SUB_BUCKETS, bucket_bounds,
    bucket_index, rank_of,
};
pub use labels::{is_valid_label_name, is_valid_metric_name};
pub use prometheus::PROMETHEUS_CONTENT_TYPE;
pub use registry::{MetricKind, MetricSnapshot, MetricValue, Registry};
pub use scalar::{Counter, Gauge};
pub use server::MetricsServer;

#[cfg(test)]
mod test;
