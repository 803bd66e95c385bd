//! Metric and label names (the Prometheus data model's rules) and [`LabelSet`], the
//! normalised labels of one series.
//!
//! Names are static strings written by programmers, so a bad one panics with a message that
//! names it; label *values* may come from users (table names) and any UTF-8 is accepted.

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Panics unless `name` is a valid metric name.
pub(crate) fn check_metric_name(name: &str) {
    assert!(
        is_valid_metric_name(name),
        "invalid metric name {name:?}: a metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*"
    );
}

/// The labels of one series, sorted by label name, without empty values (Prometheus treats
/// `{a=""}` as no label `a`, so keeping it would expose two series that are one).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    /// Normalises `labels` of metric `metric`.
    ///
    /// # Panics
    ///
    /// When a label name is invalid, starts with `__` (reserved by Prometheus), is one of
    /// `reserved` (labels the exposition adds itself, such as `quantile`), or appears twice.
    pub(crate) fn new(metric: &str, labels: &[(&str, &str)], reserved: &[&str]) -> Self {
        let mut set: Vec<(String, String)> = Vec::with_capacity(labels.len());
        for &(name, value) in labels {
            assert!(
                is_valid_label_name(name),
                "metric {metric}: invalid label name {name:?}: a label name must match \
                 [a-zA-Z_][a-zA-Z0-9_]*"
            );
            assert!(
                !name.starts_with("__"),
                "metric {metric}: label name {name:?} starts with \"__\", which Prometheus \
                 reserves for its own use"
            );
            assert!(
                !reserved.contains(&name),
                "metric {metric}: label name {name:?} is reserved for this kind of metric \
                 (the exposition adds it)"
            );
            assert!(
                labels.iter().filter(|(n, _)| *n == name).count() == 1,
                "metric {metric}: label {name:?} given twice"
            );
            if !value.is_empty() {
                set.push((name.to_owned(), value.to_owned()));
            }
        }
        set.sort();
        LabelSet(set)
    }

    /// The `(name, value)` pairs, sorted by name.
    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}
