//! [`Registry`]: the named metrics of a process, created on first use and read back as a
//! typed [`MetricSnapshot`] list (which the JSON and Prometheus renderings are built from).
//!
//! A *family* is a metric name with its kind and help; a *series* is one label set of a
//! family. The registry takes a lock only to find or create a series, never to update one:
//! callers keep the handle and update it lock-free.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::histogram::{Histogram, HistogramSnapshot};
use super::labels::{LabelSet, check_metric_name};
use super::scalar::{Counter, Gauge};

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum MetricKind {
    /// A count that only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observed values (quantiles, sum and count).
    Histogram,
}

impl MetricKind {
    /// `"counter"`, `"gauge"` or `"histogram"` (the JSON snapshot's `kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }

    /// Labels the exposition adds itself to this kind, so callers may not use them.
    fn reserved_labels(self) -> &'static [&'static str] {
        match self {
            MetricKind::Histogram => &["quantile"],
            MetricKind::Counter | MetricKind::Gauge => &[],
        }
    }

    /// The sample names a family of this kind exposes in the Prometheus text.
    fn sample_names(self, name: &str) -> Vec<String> {
        match self {
            MetricKind::Counter | MetricKind::Gauge => vec![name.to_owned()],
            MetricKind::Histogram => {
                vec![
                    name.to_owned(),
                    format!("{name}_sum"),
                    format!("{name}_count"),
                ]
            }
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value of one series at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum MetricValue {
    /// A counter's value.
    Counter(u64),
    /// A gauge's value.
    Gauge(f64),
    /// A histogram's quantiles, sum and count.
    Histogram(HistogramSnapshot),
}

impl MetricValue {
    /// The kind of metric this value belongs to.
    pub fn kind(&self) -> MetricKind {
        match self {
            MetricValue::Counter(_) => MetricKind::Counter,
            MetricValue::Gauge(_) => MetricKind::Gauge,
            MetricValue::Histogram(_) => MetricKind::Histogram,
        }
    }
}

/// One series of a [`Registry::snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSnapshot {
    /// The metric's name (Prometheus syntax).
    pub name: String,
    /// The help text given at registration.
    pub help: String,
    /// Sorted by label name; labels given with an empty value are left out.
    pub labels: Vec<(String, String)>,
    /// The value at the moment of the snapshot.
    pub value: MetricValue,
}

/// A handle of any kind.
#[derive(Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Series {
    fn new(kind: MetricKind) -> Self {
        match kind {
            MetricKind::Counter => Series::Counter(Counter::new()),
            MetricKind::Gauge => Series::Gauge(Gauge::new()),
            MetricKind::Histogram => Series::Histogram(Histogram::new()),
        }
    }

    fn value(&self) -> MetricValue {
        match self {
            Series::Counter(c) => MetricValue::Counter(c.get()),
            Series::Gauge(g) => MetricValue::Gauge(g.get()),
            Series::Histogram(h) => MetricValue::Histogram(h.snapshot()),
        }
    }
}

struct Family {
    kind: MetricKind,
    help: String,
    series: BTreeMap<LabelSet, Series>,
}

#[derive(Default)]
struct Families {
    by_name: BTreeMap<String, Family>,
    /// Every sample name exposed (`x`, `x_sum`, `x_count` for a histogram `x`) and the family
    /// that exposes it, so that two families never expose the same sample name.
    sample_owner: BTreeMap<String, String>,
}

impl Families {
    /// The series `name{labels}` if it exists; an error message if `name` has another kind.
    fn find(
        &self,
        name: &str,
        labels: &LabelSet,
        kind: MetricKind,
    ) -> Result<Option<Series>, String> {
        match self.by_name.get(name) {
            None => Ok(None),
            Some(family) if family.kind != kind => Err(kind_mismatch(name, family.kind, kind)),
            Some(family) => Ok(family.series.get(labels).cloned()),
        }
    }

    fn get_or_insert(
        &mut self,
        name: &str,
        help: &str,
        labels: LabelSet,
        kind: MetricKind,
    ) -> Result<Series, String> {
        if !self.by_name.contains_key(name) {
            let samples = kind.sample_names(name);
            if let Some((sample, owner)) = samples
                .iter()
                .find_map(|s| self.sample_owner.get(s).map(|owner| (s, owner)))
            {
                return Err(format!(
                    "metric {name} ({kind}) would expose samples named {sample}, which metric \
                     {owner} already exposes; rename one of them"
                ));
            }
            for sample in samples {
                self.sample_owner.insert(sample, name.to_owned());
            }
            let family = Family {
                kind,
                help: help.to_owned(),
                series: BTreeMap::new(),
            };
            self.by_name.insert(name.to_owned(), family);
        }
        let family = self.by_name.get_mut(name).expect("family inserted above");
        if family.kind != kind {
            return Err(kind_mismatch(name, family.kind, kind));
        }
        Ok(family
            .series
            .entry(labels)
            .or_insert_with(|| Series::new(kind))
            .clone())
    }
}

fn kind_mismatch(name: &str, existing: MetricKind, asked: MetricKind) -> String {
    format!(
        "metric {name} is already registered as a {existing}; cannot register it again as a \
         {asked} (one name, one kind)"
    )
}

/// The metrics of a process (or of a test). Cloning gives another handle to the same
/// registry; it is `Send + Sync`.
///
/// `counter`, `gauge` and `histogram` get the series of that name (and labels), creating it
/// on first use: asking twice gives two handles to one series. Look a handle up once and keep
/// it; updating it takes no lock.
///
/// The first registration of a name fixes its kind and help text; a later call with another
/// help text gets the same series and the first help text stays.
///
/// # Panics
///
/// These are programming errors, and panic with a message naming the metric:
/// - a name that does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`;
/// - a label name that does not match `[a-zA-Z_][a-zA-Z0-9_]*`, starts with `__`, is given
///   twice, or is `quantile` on a histogram (the exposition adds that label);
/// - a name already registered with another kind;
/// - a name whose Prometheus samples would clash with another metric's (a histogram `x`
///   exposes `x_sum` and `x_count`, so a counter named `x_count` cannot exist beside it).
///
/// A panic leaves the registry unchanged and usable.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<RwLock<Families>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("families", &self.read().by_name.len())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name` (no labels). Convention: counter names end in `_total`.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// The counter `name{labels}`.
    pub fn counter_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.series(name, help, labels, MetricKind::Counter) {
            Series::Counter(c) => c,
            _ => unreachable!("series() checks the kind"),
        }
    }

    /// The gauge `name` (no labels).
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.gauge_with(name, help, &[])
    }

    /// The gauge `name{labels}`.
    pub fn gauge_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.series(name, help, labels, MetricKind::Gauge) {
            Series::Gauge(g) => g,
            _ => unreachable!("series() checks the kind"),
        }
    }

    /// The histogram `name` (no labels).
    pub fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.histogram_with(name, help, &[])
    }

    /// The histogram `name{labels}`.
    pub fn histogram_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Histogram {
        match self.series(name, help, labels, MetricKind::Histogram) {
            Series::Histogram(h) => h,
            _ => unreachable!("series() checks the kind"),
        }
    }

    /// Every series with its current value, sorted by name, then by labels (as sorted
    /// `(name, value)` pairs). Values are read after the lock is released, one series at a
    /// time, so the list is not one instant across series.
    pub fn snapshot(&self) -> Vec<MetricSnapshot> {
        let series: Vec<(String, String, LabelSet, Series)> = {
            let families = self.read();
            families
                .by_name
                .iter()
                .flat_map(|(name, family)| {
                    family.series.iter().map(move |(labels, series)| {
                        (
                            name.clone(),
                            family.help.clone(),
                            labels.clone(),
                            series.clone(),
                        )
                    })
                })
                .collect()
        };
        series
            .into_iter()
            .map(|(name, help, labels, series)| MetricSnapshot {
                name,
                help,
                labels: labels.pairs().to_vec(),
                value: series.value(),
            })
            .collect()
    }

    /// Finds or creates a series, panicking (with no lock held) on a programming error.
    fn series(&self, name: &str, help: &str, labels: &[(&str, &str)], kind: MetricKind) -> Series {
        check_metric_name(name);
        let labels = LabelSet::new(name, labels, kind.reserved_labels());
        let found = self.read().find(name, &labels, kind);
        let result = match found {
            Ok(Some(series)) => Ok(series),
            Ok(None) => self.write().get_or_insert(name, help, labels, kind),
            Err(message) => Err(message),
        };
        result.unwrap_or_else(|message| panic!("{message}"))
    }

    fn read(&self) -> RwLockReadGuard<'_, Families> {
        // Nothing panics while the lock is held, and every change is complete before it
        // is made visible, so a poisoned lock still guards consistent data.
        self.families.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Families> {
        self.families
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many handles to this registry exist (tests use it to see a server thread end).
    #[cfg(test)]
    pub(crate) fn handle_count(&self) -> usize {
        Arc::strong_count(&self.families)
    }
}
