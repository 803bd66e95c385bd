//! [`Registry::prometheus_text`]: the Prometheus text exposition format, version 0.0.4.
//!
//! Choices, for a scraper's point of view:
//! - Families come sorted by name, series by labels; each family gets one `# HELP` and one
//!   `# TYPE` line before its samples. An empty help text gives `# HELP name` alone.
//! - **Counters** are exposed under the registered name as is, with `# TYPE name counter`.
//!   No suffix is ever added or removed: name a counter `..._total` (for example
//!   `warpgrid_ops_total`) and that is the name scraped, never `..._total_total`.
//! - **Gauges**: `# TYPE name gauge`.
//! - **Histograms** are exposed as a Prometheus `summary` (precomputed quantiles, since the
//!   log buckets are finer than any useful `le` list): one sample per quantile
//!   `name{...,quantile="q"}` for q = 0 (the exact minimum), 0.5, 0.95, 0.99, 0.999 and 1 (the
//!   exact maximum), then `name_sum{...}` and `name_count{...}`. An empty histogram shows
//!   `NaN` quantiles (as the official clients do), sum 0 and count 0.
//! - Label values escape `\` as `\\`, `"` as `\"` and newline as `\n`; help text escapes `\`
//!   and newline.
//! - Integers (counters, sums, counts, quantile values) are printed as integers. Gauges are
//!   printed as the shortest decimal that reads back to the same `f64` (`1.0`, `1e-7`,
//!   `1.5e300`), with `NaN`, `+Inf` and `-Inf` for the non-finite values.

use std::fmt::Write as _;

use super::histogram::HistogramSnapshot;
use super::registry::{MetricKind, MetricSnapshot, MetricValue, Registry};

/// Content type of [`Registry::prometheus_text`], for an HTTP response.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Registry {
    /// Every series in the Prometheus text exposition format 0.0.4 (see the module docs of
    /// `metrics::prometheus` for the choices made). Empty for an empty registry.
    pub fn prometheus_text(&self) -> String {
        render(&self.snapshot())
    }
}

/// Renders a snapshot (sorted by name, as [`Registry::snapshot`] returns it).
pub(crate) fn render(snapshot: &[MetricSnapshot]) -> String {
    let mut out = String::with_capacity(snapshot.len() * 96);
    let mut family: Option<&str> = None;
    for series in snapshot {
        if family != Some(series.name.as_str()) {
            family = Some(&series.name);
            write_header(&mut out, series);
        }
        match series.value {
            MetricValue::Counter(v) => {
                write_sample(&mut out, &series.name, &series.labels, None, v)
            }
            MetricValue::Gauge(v) => write_sample(
                &mut out,
                &series.name,
                &series.labels,
                None,
                format_float(v),
            ),
            MetricValue::Histogram(h) => write_summary(&mut out, series, &h),
        }
    }
    out
}

fn write_header(out: &mut String, series: &MetricSnapshot) {
    let name = &series.name;
    out.push_str("# HELP ");
    out.push_str(name);
    if !series.help.is_empty() {
        out.push(' ');
        escape_help(out, &series.help);
    }
    let kind = match series.value.kind() {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "summary",
    };
    let _ = writeln!(out, "\n# TYPE {name} {kind}");
}

/// Reads one figure of a snapshot.
type Field = fn(&HistogramSnapshot) -> u64;

/// The quantile samples of a histogram: label value and the snapshot field.
const QUANTILES: [(&str, Field); 6] = [
    ("0", |h| h.min),
    ("0.5", |h| h.p50),
    ("0.95", |h| h.p95),
    ("0.99", |h| h.p99),
    ("0.999", |h| h.p999),
    ("1", |h| h.max),
];

fn write_summary(out: &mut String, series: &MetricSnapshot, h: &HistogramSnapshot) {
    let name = &series.name;
    for (q, field) in QUANTILES {
        let label = Some(("quantile", q));
        if h.count == 0 {
            write_sample(out, name, &series.labels, label, "NaN");
        } else {
            write_sample(out, name, &series.labels, label, field(h));
        }
    }
    write_sample(out, &format!("{name}_sum"), &series.labels, None, h.sum);
    write_sample(out, &format!("{name}_count"), &series.labels, None, h.count);
}

/// `name{labels,extra} value\n`, or `name value\n` with no labels.
fn write_sample(
    out: &mut String,
    name: &str,
    labels: &[(String, String)],
    extra: Option<(&str, &str)>,
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    let all = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra);
    for (i, (k, v)) in all.enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if !labels.is_empty() || extra.is_some() {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Appends `value` with `\`, `"` and newline escaped, as label values require.
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `help` with `\` and newline escaped, as `# HELP` lines require.
pub(crate) fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// An `f64` as Prometheus (Go's `strconv.ParseFloat`) reads it back exactly.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // `Debug` is the shortest round-tripping form, with an exponent for very large or
        // small magnitudes (`1e300` rather than 301 digits).
        format!("{v:?}")
    }
}
