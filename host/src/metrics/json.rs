//! [`Registry::snapshot_json`]: every series as JSON, for the API and `GET /metrics.json`.
//!
//! ```text
//! {"metrics": [
//!   {"name": "warpgrid_ops_total", "kind": "counter", "help": "...",
//!    "labels": {"table": "t"}, "value": 12},
//!   {"name": "warpgrid_queue_depth", "kind": "gauge", "help": "...", "labels": {}, "value": 3.0},
//!   {"name": "warpgrid_op_latency_ns", "kind": "histogram", "help": "...", "labels": {},
//!    "value": {"count": 9, "sum": 4100, "min": 80, "max": 2000,
//!              "p50": 330, "p95": 2000, "p99": 2000, "p999": 2000}}
//! ]}
//! ```
//!
//! Series are sorted by name, then by labels. A gauge that is NaN or infinite is `null`
//! (JSON has no such numbers). An empty histogram has every figure 0.

use serde_json::{Map, Value, json};

use super::registry::{MetricValue, Registry};

impl Registry {
    /// Every series with its kind, help, labels and value (see the module docs of
    /// `metrics::json` for the shape).
    pub fn snapshot_json(&self) -> Value {
        let metrics: Vec<Value> = self
            .snapshot()
            .into_iter()
            .map(|s| {
                let labels: Map<String, Value> = s
                    .labels
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                let value = match s.value {
                    MetricValue::Counter(v) => json!(v),
                    MetricValue::Gauge(v) => json!(v),
                    MetricValue::Histogram(h) => json!(h),
                };
                json!({
                    "name": s.name,
                    "kind": s.value.kind().as_str(),
                    "help": s.help,
                    "labels": labels,
                    "value": value,
                })
            })
            .collect();
        json!({ "metrics": metrics })
    }
}
