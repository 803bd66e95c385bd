//! Invariant: one name and label set is one series, whoever asks and in whatever label order;
//! a name has one kind; bad names panic without harming the registry; the snapshot and its
//! JSON list every series sorted by name, then labels.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use serde_json::json;

use crate::metrics::{
    Counter, Gauge, Histogram, MetricKind, MetricValue, Registry, is_valid_label_name,
    is_valid_metric_name,
};

#[test]
fn counter_get_or_create_returns_the_same_series() {
    let r = Registry::new();
    let a = r.counter("warpgrid_ops_total", "Operations.");
    let b = r.counter("warpgrid_ops_total", "Another help text, ignored.");
    a.inc();
    b.add(41);
    assert_eq!(a.get(), 42);
    assert_eq!(b.get(), 42);
    let snap = r.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].help, "Operations.", "the first help text stays");
    assert_eq!(snap[0].value, MetricValue::Counter(42));
}

#[test]
fn labels_make_separate_series_and_their_order_does_not_matter() {
    let r = Registry::new();
    let t = r.counter_with("ops_total", "h", &[("table", "t"), ("shard", "3")]);
    let same = r.counter_with("ops_total", "h", &[("shard", "3"), ("table", "t")]);
    let other = r.counter_with("ops_total", "h", &[("table", "u"), ("shard", "3")]);
    let bare = r.counter("ops_total", "h");
    t.add(2);
    same.add(3);
    other.inc();
    assert_eq!(t.get(), 5);
    assert_eq!(other.get(), 1);
    assert_eq!(bare.get(), 0);
    let labels: Vec<_> = r.snapshot().into_iter().map(|s| s.labels).collect();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        labels,
        vec![
            vec![],
            vec![pair("shard", "3"), pair("table", "t")],
            vec![pair("shard", "3"), pair("table", "u")],
        ]
    );
}

#[test]
fn an_empty_label_value_is_no_label() {
    let r = Registry::new();
    let a = r.gauge_with("depth", "h", &[("queue", "")]);
    let b = r.gauge("depth", "h");
    a.set(7.0);
    assert_eq!(b.get(), 7.0);
    assert_eq!(r.snapshot().len(), 1);
}

#[test]
fn gauge_set_add_get() {
    let r = Registry::new();
    let g = r.gauge("load_factor", "h");
    assert_eq!(g.get(), 0.0);
    g.set(0.5);
    g.add(0.25);
    g.add(-1.0);
    assert_eq!(g.get(), -0.25);
    assert_eq!(r.gauge("load_factor", "h").get(), -0.25);
    g.set(f64::NAN);
    assert!(r.gauge("load_factor", "h").get().is_nan());
}

#[test]
fn concurrent_gauge_adds_and_counter_incs_are_exact() {
    let r = Registry::new();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let r = r.clone();
            thread::spawn(move || {
                // Looked up from every thread: get-or-create must hand out one series.
                let g = r.gauge("g", "h");
                let c = r.counter_with("c_total", "h", &[("k", "v")]);
                for _ in 0..10_000 {
                    g.add(1.0);
                    c.inc();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(r.gauge("g", "h").get(), 80_000.0);
    assert_eq!(r.counter_with("c_total", "h", &[("k", "v")]).get(), 80_000);
    assert_eq!(r.snapshot().len(), 2);
}

#[test]
fn histogram_get_or_create_returns_the_same_series() {
    let r = Registry::new();
    r.histogram_with("lat_ns", "h", &[("op", "get")]).record(10);
    r.histogram_with("lat_ns", "h", &[("op", "get")]).record(20);
    r.histogram_with("lat_ns", "h", &[("op", "put")]).record(30);
    let h = r.histogram_with("lat_ns", "h", &[("op", "get")]);
    assert_eq!((h.count(), h.sum()), (2, 30));
}

#[test]
fn clones_of_a_registry_share_it() {
    let r = Registry::new();
    let r2 = r.clone();
    r2.counter("x_total", "h").inc();
    assert_eq!(r.counter("x_total", "h").get(), 1);
}

#[test]
#[should_panic(
    expected = "metric lat is already registered as a histogram; cannot register it again as a counter"
)]
fn kind_mismatch_panics() {
    let r = Registry::new();
    r.histogram("lat", "h");
    r.counter("lat", "h");
}

#[test]
#[should_panic(expected = "invalid metric name \"1bad\"")]
fn invalid_metric_name_panics() {
    Registry::new().counter("1bad", "h");
}

#[test]
#[should_panic(expected = "invalid label name \"ta-ble\"")]
fn invalid_label_name_panics() {
    Registry::new().counter_with("ok_total", "h", &[("ta-ble", "t")]);
}

#[test]
#[should_panic(expected = "label \"table\" given twice")]
fn duplicate_label_panics() {
    Registry::new().counter_with("ok_total", "h", &[("table", "t"), ("table", "u")]);
}

#[test]
#[should_panic(expected = "starts with \"__\"")]
fn reserved_label_prefix_panics() {
    Registry::new().gauge_with("g", "h", &[("__name__", "x")]);
}

#[test]
#[should_panic(expected = "label name \"quantile\" is reserved")]
fn quantile_label_on_a_histogram_panics() {
    Registry::new().histogram_with("lat", "h", &[("quantile", "0.5")]);
}

#[test]
#[should_panic(expected = "would expose samples named lat_count, which metric lat already exposes")]
fn sample_name_clash_panics() {
    let r = Registry::new();
    r.histogram("lat", "h");
    r.counter("lat_count", "h");
}

#[test]
fn a_panic_leaves_the_registry_usable() {
    let r = Registry::new();
    r.counter("a_total", "h").inc();
    let result = catch_unwind(AssertUnwindSafe(|| r.gauge("a_total", "h")));
    assert!(result.is_err());
    let result = catch_unwind(AssertUnwindSafe(|| r.gauge("bad name", "h")));
    assert!(result.is_err());
    r.counter("a_total", "h").inc();
    r.gauge("b", "h").set(1.0);
    assert_eq!(r.counter("a_total", "h").get(), 2);
    assert_eq!(r.snapshot().len(), 2);
}

#[test]
fn name_rules() {
    for ok in ["a", "_", ":", "warpgrid_ops_total", "a:b_c9", "A"] {
        assert!(is_valid_metric_name(ok), "{ok}");
    }
    for bad in ["", "9a", "a-b", "a b", "é", "a.b"] {
        assert!(!is_valid_metric_name(bad), "{bad}");
    }
    for ok in ["a", "_x", "table", "A9"] {
        assert!(is_valid_label_name(ok), "{ok}");
    }
    for bad in ["", "9a", "a:b", "a-b"] {
        assert!(!is_valid_label_name(bad), "{bad}");
    }
}

/// Name, labels and kind of one series.
type Row = (String, Vec<(String, String)>, MetricKind);

#[test]
fn snapshot_is_sorted_by_name_then_labels() {
    let r = Registry::new();
    r.gauge_with("b", "h", &[("k", "2")]);
    r.histogram("c", "h");
    r.gauge_with("b", "h", &[("k", "1")]);
    r.counter("a_total", "h");
    r.gauge("b", "h");
    let order: Vec<Row> = r
        .snapshot()
        .into_iter()
        .map(|s| (s.name, s.labels, s.value.kind()))
        .collect();
    let l = |v: &str| vec![("k".to_owned(), v.to_owned())];
    assert_eq!(
        order,
        vec![
            ("a_total".to_owned(), vec![], MetricKind::Counter),
            ("b".to_owned(), vec![], MetricKind::Gauge),
            ("b".to_owned(), l("1"), MetricKind::Gauge),
            ("b".to_owned(), l("2"), MetricKind::Gauge),
            ("c".to_owned(), vec![], MetricKind::Histogram),
        ]
    );
}

#[test]
fn snapshot_json_lists_every_series() {
    let r = Registry::new();
    r.counter_with("warpgrid_ops_total", "Operations.", &[("table", "t")])
        .add(12);
    r.gauge("warpgrid_queue_depth", "Queue depth.").set(3.5);
    r.gauge("warpgrid_nan", "").set(f64::NAN);
    let h = r.histogram("warpgrid_lat_ns", "Latency.");
    for v in [5, 5, 5, 9] {
        h.record(v);
    }
    r.histogram("warpgrid_empty", "Nothing yet.");
    let expected = json!({"metrics": [
        {"name": "warpgrid_empty", "kind": "histogram", "help": "Nothing yet.", "labels": {},
         "value": {"count": 0, "sum": 0, "min": 0, "max": 0,
                   "p50": 0, "p95": 0, "p99": 0, "p999": 0}},
        {"name": "warpgrid_lat_ns", "kind": "histogram", "help": "Latency.", "labels": {},
         "value": {"count": 4, "sum": 24, "min": 5, "max": 9,
                   "p50": 5, "p95": 9, "p99": 9, "p999": 9}},
        {"name": "warpgrid_nan", "kind": "gauge", "help": "", "labels": {}, "value": null},
        {"name": "warpgrid_ops_total", "kind": "counter", "help": "Operations.",
         "labels": {"table": "t"}, "value": 12},
        {"name": "warpgrid_queue_depth", "kind": "gauge", "help": "Queue depth.", "labels": {},
         "value": 3.5},
    ]});
    assert_eq!(r.snapshot_json(), expected);
}

#[test]
fn handles_and_registry_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Registry>();
    check::<Counter>();
    check::<Gauge>();
    check::<Histogram>();
}
