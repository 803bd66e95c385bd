//! Tests of the metrics layer, one file per area.

/// Histogram buckets, quantiles against exact ones, concurrent recording.
mod histogram;
/// The Prometheus text, checked by a strict parser written here.
mod prometheus;
/// Get-or-create semantics, labels, kinds, name rules, the JSON snapshot.
mod registry;
/// The HTTP endpoint on loopback: routes, errors, start and stop.
mod server;
