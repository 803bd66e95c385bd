//! Invariant: `prometheus_text` is valid text exposition format 0.0.4, checked by a strict
//! parser written here: every family has one HELP and one TYPE before its samples, every
//! sample line is `name{labels} value` with valid names, escaped label values and a float
//! Prometheus reads, sample names belong to their family, and no series appears twice. The
//! values read back are the values set.

use std::collections::BTreeSet;

use crate::metrics::{Registry, is_valid_label_name, is_valid_metric_name};

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Family {
    name: String,
    help: String,
    kind: String,
    samples: Vec<Sample>,
}

/// Parses the text strictly (stricter than Prometheus: no blank lines, comments, timestamps
/// or trailing commas, since the renderer never writes them).
fn parse(text: &str) -> Result<Vec<Family>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text
        .strip_suffix('\n')
        .ok_or("text does not end with a newline")?;
    let mut families: Vec<Family> = Vec::new();
    let mut help_seen = false;
    let mut series_seen = BTreeSet::new();
    for (no, line) in body.split('\n').enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", no + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !is_valid_metric_name(name) {
                return Err(at(format!("invalid metric name {name:?}")));
            }
            if families.iter().any(|f| f.name == name) {
                return Err(at(format!("second HELP for {name}")));
            }
            families.push(Family {
                name: name.to_owned(),
                help: unescape(help, false).map_err(at)?,
                kind: String::new(),
                samples: Vec::new(),
            });
            help_seen = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            let family = families
                .last_mut()
                .filter(|f| f.name == name && help_seen)
                .ok_or_else(|| at(format!("TYPE for {name} not right after its HELP")))?;
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind:?}")));
            }
            family.kind = kind.to_owned();
            help_seen = false;
        } else if line.starts_with('#') {
            return Err(at("unexpected comment".into()));
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let family = families
                .last_mut()
                .filter(|f| !f.kind.is_empty() && !help_seen)
                .ok_or_else(|| at("sample before its family's HELP and TYPE".into()))?;
            check_belongs(family, &sample).map_err(at)?;
            let mut key_labels = sample.labels.clone();
            key_labels.sort();
            if !series_seen.insert((sample.name.clone(), key_labels)) {
                return Err(at("duplicate series".into()));
            }
            family.samples.push(sample);
        }
    }
    if let Some(f) = families
        .iter()
        .find(|f| f.kind.is_empty() || f.samples.is_empty())
    {
        return Err(format!("family {} has no TYPE or no samples", f.name));
    }
    Ok(families)
}

/// Whether a sample's name (and the `quantile` label) fit its family's type.
fn check_belongs(family: &Family, sample: &Sample) -> Result<(), String> {
    let f = &family.name;
    let has_quantile = sample.labels.iter().any(|(k, _)| k == "quantile");
    let ok = match family.kind.as_str() {
        "summary" if sample.name == *f => has_quantile,
        "summary" => {
            !has_quantile
                && (sample.name == format!("{f}_sum") || sample.name == format!("{f}_count"))
        }
        _ => sample.name == *f,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sample {} does not belong to {} family {f}",
            sample.name, family.kind
        ))
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value after the name")?;
    let name = &line[..name_end];
    if !is_valid_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut s) = rest.strip_prefix('{') {
        loop {
            let (label, after) = s.split_once("=\"").ok_or("label without =\"")?;
            if !is_valid_label_name(label) {
                return Err(format!("invalid label name {label:?}"));
            }
            if labels.iter().any(|(k, _): &(String, String)| k == label) {
                return Err(format!("label {label} twice"));
            }
            let (raw, after) = split_quoted(after)?;
            labels.push((label.to_owned(), unescape(raw, true)?));
            if let Some(a) = after.strip_prefix(',') {
                s = a;
            } else if let Some(a) = after.strip_prefix('}') {
                rest = a;
                break;
            } else {
                return Err("expected , or } after a label value".into());
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Splits at the first `"` that is not escaped: (raw value, rest after the quote).
fn split_quoted(s: &str) -> Result<(&str, &str), String> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (escaped, c) {
            (false, '\\') => escaped = true,
            (false, '"') => return Ok((&s[..i], &s[i + 1..])),
            (false, '\n') => return Err("raw newline in a label value".into()),
            _ => escaped = false,
        }
    }
    Err("unterminated label value".into())
}

/// Undoes the escapes: `\\`, `\n`, and `\"` where `quotes` (label values); any other
/// backslash sequence is an error.
fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '"' && quotes {
            return Err("unescaped quote".into());
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// A float as Prometheus writes and reads them: decimal or exponent notation, `NaN`,
/// `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = s.bytes().any(|b| b.is_ascii_digit());
    if !digits
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return Err(format!("value {s:?} is not a float"));
    }
    s.parse().map_err(|_| format!("value {s:?} is not a float"))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn family<'a>(families: &'a [Family], name: &str) -> &'a Family {
    families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

#[test]
fn strict_parser_rejects_malformed_text() {
    let good = "# HELP a_total Ops.\n# TYPE a_total counter\na_total{t=\"x\"} 1\n";
    assert!(parse(good).is_ok(), "{:?}", parse(good));
    let bad = [
        ("no trailing newline", "# HELP a h\n# TYPE a gauge\na 1"),
        ("no HELP", "# TYPE a gauge\na 1\n"),
        ("no TYPE", "# HELP a h\na 1\n"),
        (
            "sample of another family",
            "# HELP a h\n# TYPE a gauge\nb 1\n",
        ),
        (
            "duplicate series",
            "# HELP a h\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
        ),
        (
            "family twice",
            "# HELP a h\n# TYPE a gauge\na 1\n# HELP a h\n# TYPE a gauge\na{x=\"1\"} 1\n",
        ),
        (
            "unescaped quote",
            "# HELP a h\n# TYPE a gauge\na{x=\"a\"b\"} 1\n",
        ),
        (
            "bad escape",
            "# HELP a h\n# TYPE a gauge\na{x=\"a\\tb\"} 1\n",
        ),
        (
            "bad label name",
            "# HELP a h\n# TYPE a gauge\na{x-y=\"1\"} 1\n",
        ),
        ("bad metric name", "# HELP 1a h\n# TYPE 1a gauge\n1a 1\n"),
        ("bad value", "# HELP a h\n# TYPE a gauge\na nan\n"),
        ("two spaces", "# HELP a h\n# TYPE a gauge\na  1\n"),
        ("timestamp", "# HELP a h\n# TYPE a gauge\na 1 1700000000\n"),
        (
            "summary without quantile",
            "# HELP a h\n# TYPE a summary\na 1\n",
        ),
        (
            "summary quantile on _sum",
            "# HELP a h\n# TYPE a summary\na_sum{quantile=\"0.5\"} 1\n",
        ),
        ("unknown type", "# HELP a h\n# TYPE a thing\na 1\n"),
    ];
    for (what, text) in bad {
        assert!(parse(text).is_err(), "the parser accepted {what}: {text:?}");
    }
}

#[test]
fn text_of_every_kind_parses_strictly_and_reads_back() {
    let r = Registry::new();
    let tricky = "quote \" backslash \\ newline \n end, ünïcode {x=\"y\"}";
    r.counter_with(
        "warpgrid_ops_total",
        "Operations applied.",
        &[("table", "t")],
    )
    .add(12);
    r.counter_with("warpgrid_ops_total", "", &[("table", tricky)])
        .add(3);
    r.counter("warpgrid_ops_total", "").inc();
    r.gauge_with(
        "warpgrid_queue_depth",
        "Help with \\ and\nnewline.",
        &[("shard", "3")],
    )
    .set(7.0);
    r.gauge("warpgrid:weird_gauge", "").set(f64::NEG_INFINITY);
    let h = r.histogram_with("warpgrid_latency_ns", "Latency.", &[("op", "get")]);
    for v in 1..=1000 {
        h.record(v);
    }
    r.histogram_with("warpgrid_latency_ns", "Latency.", &[("op", "put")]);
    r.counter(
        "warpgrid_latency",
        "A name the summary's samples do not clash with.",
    )
    .inc();

    let text = r.prometheus_text();
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "warpgrid:weird_gauge",
            "warpgrid_latency",
            "warpgrid_latency_ns",
            "warpgrid_ops_total",
            "warpgrid_queue_depth"
        ]
    );

    let ops = family(&families, "warpgrid_ops_total");
    assert_eq!(
        (ops.kind.as_str(), ops.help.as_str()),
        ("counter", "Operations applied.")
    );
    let got: Vec<(Vec<(String, String)>, f64)> = ops
        .samples
        .iter()
        .map(|s| (s.labels.clone(), s.value))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![], 1.0),
            // Sorted by label value: "quote ..." before "t".
            (pairs(&[("table", tricky)]), 3.0),
            (pairs(&[("table", "t")]), 12.0),
        ]
    );

    let depth = family(&families, "warpgrid_queue_depth");
    assert_eq!(
        (depth.kind.as_str(), depth.help.as_str()),
        ("gauge", "Help with \\ and\nnewline.")
    );
    assert_eq!(depth.samples[0].value, 7.0);
    assert_eq!(
        family(&families, "warpgrid:weird_gauge").samples[0].value,
        f64::NEG_INFINITY
    );

    let lat = family(&families, "warpgrid_latency_ns");
    assert_eq!(lat.kind, "summary");
    let get: Vec<(String, Option<String>, f64)> = lat
        .samples
        .iter()
        .filter(|s| s.labels.contains(&("op".to_owned(), "get".to_owned())))
        .map(|s| {
            let q = s.labels.iter().find(|(k, _)| k == "quantile");
            (s.name.clone(), q.map(|(_, v)| v.clone()), s.value)
        })
        .collect();
    let snap = h.snapshot();
    let row =
        |name: &str, q: Option<&str>, v: u64| (name.to_owned(), q.map(str::to_owned), v as f64);
    let n = "warpgrid_latency_ns";
    assert_eq!(
        get,
        vec![
            row(n, Some("0"), 1),
            row(n, Some("0.5"), snap.p50),
            row(n, Some("0.95"), snap.p95),
            row(n, Some("0.99"), snap.p99),
            row(n, Some("0.999"), snap.p999),
            row(n, Some("1"), 1000),
            row("warpgrid_latency_ns_sum", None, 500_500),
            row("warpgrid_latency_ns_count", None, 1000),
        ]
    );
    // Ranks 500, 950, 990 fall in buckets [496, 511], [928, 959], [960, 991]: their middles.
    assert_eq!((snap.p50, snap.p95, snap.p99), (504, 944, 976));
    let put_quantiles: Vec<f64> = lat
        .samples
        .iter()
        .filter(|s| s.name == "warpgrid_latency_ns" && s.labels[0].1 == "put")
        .map(|s| s.value)
        .collect();
    assert_eq!(put_quantiles.len(), 6);
    assert!(
        put_quantiles.iter().all(|v| v.is_nan()),
        "an empty summary has NaN quantiles"
    );
}

#[test]
fn exact_text_of_a_small_registry() {
    let r = Registry::new();
    r.counter_with("warpgrid_ops_total", "Operations.", &[("table", "a\"b")])
        .add(5);
    r.gauge("warpgrid_cv", "Shard CV.").set(0.25);
    let h = r.histogram("warpgrid_batch_size", "Batch sizes.");
    h.record(4);
    h.record(8);
    let expected = "\
# HELP warpgrid_batch_size Batch sizes.
# TYPE warpgrid_batch_size summary
warpgrid_batch_size{quantile=\"0\"} 4
warpgrid_batch_size{quantile=\"0.5\"} 4
warpgrid_batch_size{quantile=\"0.95\"} 8
warpgrid_batch_size{quantile=\"0.99\"} 8
warpgrid_batch_size{quantile=\"0.999\"} 8
warpgrid_batch_size{quantile=\"1\"} 8
warpgrid_batch_size_sum 12
warpgrid_batch_size_count 2
# HELP warpgrid_cv Shard CV.
# TYPE warpgrid_cv gauge
warpgrid_cv 0.25
# HELP warpgrid_ops_total Operations.
# TYPE warpgrid_ops_total counter
warpgrid_ops_total{table=\"a\\\"b\"} 5
";
    assert_eq!(r.prometheus_text(), expected);
}

#[test]
fn floats_are_written_so_they_read_back_exactly() {
    let cases = [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (123_456_789.0, "123456789.0"),
        (1e300, "1e300"),
        (1.5e-7, "1.5e-7"),
        (f64::MAX, "1.7976931348623157e308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
    ];
    for (v, text) in cases {
        let r = Registry::new();
        r.gauge("g", "").set(v);
        let out = r.prometheus_text();
        assert_eq!(out, format!("# HELP g\n# TYPE g gauge\ng {text}\n"));
        let back = parse(&out).unwrap()[0].samples[0].value;
        assert!(
            back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()),
            "{v}: {back}"
        );
    }
}

#[test]
fn counters_are_exposed_under_their_own_name() {
    let r = Registry::new();
    r.counter("warpgrid_ops_total", "h").add(u64::MAX);
    r.counter("warpgrid_events", "h").inc();
    let text = r.prometheus_text();
    assert!(
        text.contains("\nwarpgrid_ops_total 18446744073709551615\n"),
        "{text}"
    );
    assert!(text.contains("\nwarpgrid_events 1\n"), "{text}");
    assert!(!text.contains("_total_total"), "{text}");
    parse(&text).unwrap();
}

#[test]
fn empty_registry_gives_empty_text() {
    assert_eq!(Registry::new().prometheus_text(), "");
}
