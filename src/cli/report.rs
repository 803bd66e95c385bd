//! Report directories (`--report DIR` on `run`, `bench`, `braid run` and `demo`): SVG charts
//! drawn with plotters, `report.json` holding the command's own JSON report and the exact
//! values every chart plots, and an `index.html` that shows the charts.
//!
//! Charts are data first: a [`Chart`] is a title, axis labels and a [`Plot`] (grouped bars
//! over categories, or lines of points); [`ReportDir::add`] draws it and keeps it for
//! `report.json`, so nothing is drawn that the JSON does not hold. Every figure comes from
//! the run that writes the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

/// Chart size in pixels.
const SIZE: (u32, u32) = (860, 460);
/// Series colours, in order (colour-blind-safe, after Okabe and Ito).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
];
const FONT: &str = "sans-serif";

/// One bar series: a value per category.
#[derive(Debug, Clone, Serialize)]
pub struct BarSeries {
    pub name: String,
    pub values: Vec<f64>,
}

/// One line series: `(x, y)` points in order.
#[derive(Debug, Clone, Serialize)]
pub struct LineSeries {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What a chart plots.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plot {
    /// Bars grouped by category, one bar per series in each group.
    Bars {
        categories: Vec<String>,
        series: Vec<BarSeries>,
        /// Logarithmic value axis (bars start at its lower end).
        log_y: bool,
    },
    /// Lines over a numeric x axis.
    Lines {
        series: Vec<LineSeries>,
        log_y: bool,
        /// How x values are labelled: `plain`, or `nines` (x = -log10(1 - q) for a quantile
        /// q, labelled as percentiles: 1 is p90, 2 is p99, 3 is p99.9).
        x_scale: &'static str,
    },
}

/// A chart: a file name in the report directory, words, and its data.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub file: String,
    pub title: String,
    /// A sentence under the chart in index.html: what it shows and where the data is from.
    pub caption: String,
    pub x_label: String,
    pub y_label: String,
    #[serde(flatten)]
    pub plot: Plot,
}

/// A report directory being written.
pub struct ReportDir {
    dir: PathBuf,
    charts: Vec<Chart>,
}

impl ReportDir {
    /// Checks that `dir` can be a report directory (creating it if missing) before any work
    /// runs, so a bad `--report` fails at once.
    pub fn create(dir: &Path) -> Result<ReportDir> {
        if dir.exists() && !dir.is_dir() {
            bail!(
                "--report {}: expected a directory (it is created if missing), but a file is there; \
                 choose another path",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--report {}: cannot create the directory", dir.display()))?;
        let probe = dir.join(".warpgrid-report-probe");
        std::fs::write(&probe, b"").with_context(|| {
            format!("--report {}: cannot write in the directory", dir.display())
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(ReportDir {
            dir: dir.to_path_buf(),
            charts: Vec::new(),
        })
    }

    /// Draws `chart` into its SVG file and keeps its data for `report.json`. A chart with
    /// no data point is skipped.
    pub fn add(&mut self, chart: Chart) -> Result<()> {
        let empty = match &chart.plot {
            Plot::Bars { series, .. } => series.iter().all(|s| s.values.is_empty()),
            Plot::Lines { series, .. } => series.iter().all(|s| s.points.is_empty()),
        };
        if empty {
            return Ok(());
        }
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            draw(&root, &chart).map_err(|e| anyhow!("drawing {}: {e}", chart.file))?;
            root.present()
                .map_err(|e| anyhow!("drawing {}: {e}", chart.file))?;
        }
        let path = self.dir.join(&chart.file);
        std::fs::write(&path, svg).with_context(|| format!("{}: cannot write", path.display()))?;
        self.charts.push(chart);
        Ok(())
    }

    /// Writes `report.json` (`{"command", "title", "report": <the command's JSON>, "charts":
    /// [...]}`) and `index.html`, whose summary is `summary` (preformatted text); returns
    /// the path of index.html.
    pub fn finish(
        self,
        command: &str,
        title: &str,
        summary: &str,
        report: &serde_json::Value,
    ) -> Result<PathBuf> {
        let json = serde_json::json!({
            "command": command,
            "title": title,
            "report": report,
            "charts": self.charts,
        });
        let path = self.dir.join("report.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        let index = self.dir.join("index.html");
        std::fs::write(&index, self.html(title, summary))
            .with_context(|| format!("{}: cannot write", index.display()))?;
        Ok(index)
    }

    fn html(&self, title: &str, summary: &str) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
             <title>{t}</title>\n<style>\n\
             body {{ font-family: sans-serif; margin: 2em auto; max-width: 900px; color: #222; }}\n\
             figure {{ margin: 2em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}\n\
             figcaption {{ color: #555; font-size: 0.9em; }}\n\
             pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }}\n\
             </style>\n</head>\n<body>\n<h1>{t}</h1>\n<pre>{summary}</pre>\n\
             <p>The data of every chart, and the command's whole report: \
             <a href=\"report.json\">report.json</a>.</p>\n",
            t = escape(title),
            summary = escape(summary),
        );
        for c in &self.charts {
            let _ = write!(
                s,
                "<figure>\n<img src=\"{f}\" alt=\"{t}\"/>\n<figcaption>{cap}</figcaption>\n</figure>\n",
                f = escape(&c.file),
                t = escape(&c.title),
                cap = escape(&c.caption),
            );
        }
        s.push_str("</body>\n</html>\n");
        s
    }
}

/// Escapes text for HTML and XML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    match &chart.plot {
        Plot::Bars {
            categories,
            series,
            log_y,
        } => draw_bars(root, chart, categories, series, *log_y),
        Plot::Lines {
            series,
            log_y,
            x_scale,
        } => draw_lines(root, chart, series, *log_y, x_scale),
    }
}

/// The value axis: `[lo, hi]` covering `values`, from 0 (linear) or the power of ten below
/// the smallest positive value (log).
fn value_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let vs: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    if log {
        let pos: Vec<f64> = vs.iter().copied().filter(|&v| v > 0.0).collect();
        let min = pos.iter().copied().fold(f64::INFINITY, f64::min);
        let max = pos.iter().copied().fold(0.0, f64::max);
        if !min.is_finite() {
            return (1.0, 10.0);
        }
        let lo = 10f64.powf(min.log10().floor());
        let hi = 10f64.powf((max * 1.5).log10().ceil()).max(lo * 10.0);
        (lo, hi)
    } else {
        let max = vs.iter().copied().fold(0.0, f64::max);
        (0.0, if max > 0.0 { max * 1.15 } else { 1.0 })
    }
}

/// A short number: 3 significant digits, with k/M/G suffixes.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if x.abs() >= 100.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{x:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    s + suffix
}

/// Height of the band above the plot that holds the title and the legend.
const HEADER: u32 = 62;

/// The title, and a row of colour swatches and series names under it; returns the area
/// below them for the plot.
fn header<'a, DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    names: &[&str],
) -> std::result::Result<DrawingArea<DB, Shift>, Box<dyn std::error::Error + 'a>>
where
    DB::ErrorType: 'static,
{
    let (top, body) = root.split_vertically(HEADER);
    top.draw(&Text::new(
        title.to_string(),
        (SIZE.0 as i32 / 2, 10),
        TextStyle::from((FONT, 20)).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    let mut x = 86;
    for (i, name) in names.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        top.draw(&Rectangle::new([(x, 40), (x + 14, 52)], c.filled()))?;
        top.draw(&Text::new(
            name.to_string(),
            (x + 20, 46),
            TextStyle::from((FONT, 13)).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += 40 + 8 * name.len() as i32;
    }
    Ok(body)
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    categories: &[String],
    series: &[BarSeries],
    log_y: bool,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = categories.len().max(1) as f64;
    let (lo, hi) = value_range(series.iter().flat_map(|s| s.values.iter().copied()), log_y);
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    let body = header(root, &chart.title, &names)?;
    let mut builder = ChartBuilder::on(&body);
    builder
        .margin(14)
        .margin_top(4)
        .x_label_area_size(48)
        .y_label_area_size(72);
    let many = categories.len() > 12;
    // Bars, the value printed above each when there are few.
    let label_values = categories.len() * series.len() <= 16;
    if log_y {
        let mut c = builder.build_cartesian_2d(0f64..n, (lo..hi).log_scale())?;
        // Non-positive values have no place on a log axis.
        let bars = Bars {
            chart,
            categories,
            series,
            base: lo,
            label_values,
            many,
        };
        bars.draw(root, &mut c, |v| v.is_finite() && v > 0.0)
    } else {
        let mut c = builder.build_cartesian_2d(0f64..n, lo..hi)?;
        let bars = Bars {
            chart,
            categories,
            series,
            base: 0.0,
            label_values,
            many,
        };
        bars.draw(root, &mut c, f64::is_finite)
    }
}

/// The bars of one chart, drawn the same way on a linear or a log y axis.
struct Bars<'a> {
    chart: &'a Chart,
    categories: &'a [String],
    series: &'a [BarSeries],
    /// Where the bars start: 0, or the floor of a log axis.
    base: f64,
    /// Print each bar's value above it (when there are few bars).
    label_values: bool,
    /// Many categories: small labels.
    many: bool,
}

impl Bars<'_> {
    /// Mesh, bars (those whose value `keep`s) and category labels on `c`.
    fn draw<DB: DrawingBackend, Y>(
        &self,
        root: &DrawingArea<DB, Shift>,
        c: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
        keep: impl Fn(f64) -> bool,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let (chart, base) = (self.chart, self.base);
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(&chart.y_label)
            .y_label_formatter(&|v| short(*v))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        let slot = 0.8 / self.series.len().max(1) as f64;
        for (j, s) in self.series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            for (i, &v) in s.values.iter().enumerate() {
                if !keep(v) {
                    continue;
                }
                let x0 = i as f64 + 0.1 + j as f64 * slot;
                let x1 = x0 + slot * 0.92;
                c.draw_series(std::iter::once(Rectangle::new(
                    [(x0, base), (x1, v)],
                    color.filled(),
                )))?;
                if self.label_values {
                    let (px, py) = c.backend_coord(&((x0 + x1) / 2.0, v));
                    root.draw(&Text::new(
                        short(v),
                        (px, py - 3),
                        TextStyle::from((FONT, 12)).pos(Pos::new(HPos::Center, VPos::Bottom)),
                    ))?;
                }
            }
        }
        category_labels(
            root,
            &c.backend_coord(&(0.0, base)),
            self.categories,
            |i| c.backend_coord(&(i as f64 + 0.5, base)).0,
            self.many,
            &chart.x_label,
        )
    }
}

/// Category names under the bars (every one; small when there are many), and the x axis
/// description under them.
fn category_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    origin: &(i32, i32),
    categories: &[String],
    x_of: impl Fn(usize) -> i32,
    many: bool,
    x_label: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let size = if many { 11 } else { 13 };
    for (i, name) in categories.iter().enumerate() {
        root.draw(&Text::new(
            name.clone(),
            (x_of(i), origin.1 + 6),
            TextStyle::from((FONT, size)).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    let mid = (x_of(0) + x_of(categories.len().saturating_sub(1))) / 2;
    root.draw(&Text::new(
        x_label.to_string(),
        (mid, origin.1 + 26),
        TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Center, VPos::Top)),
    ))?;
    Ok(())
}

/// A percentile label for a `nines` x value: 1 is p90, 2 is p99, 3 is p99.9.
fn nines_label(x: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    let s = format!("{q:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("p{s}")
}

/// The `nines` x value of a quantile `q` in [0, 1): `-log10(1 - q)`.
pub fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    series: &[LineSeries],
    log_y: bool,
    x_scale: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if x_scale == "nines" {
        x0 = 0.0;
        x1 = (x1 - 1e-6).ceil().max(1.0);
    } else if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let (lo, hi) = value_range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        log_y,
    );
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    let body = header(root, &chart.title, &names)?;
    let mut builder = ChartBuilder::on(&body);
    builder
        .margin(14)
        .margin_top(4)
        .x_label_area_size(48)
        .y_label_area_size(72);
    let nines_axis = x_scale == "nines";
    let x_fmt = move |x: &f64| {
        if nines_axis {
            nines_label(*x)
        } else {
            short(*x)
        }
    };
    let x_labels = if nines_axis { x1 as usize + 1 } else { 10 };
    // Points are marked when a series is short enough for them to stay apart.
    let dots = |s: &LineSeries| s.points.len() <= 60;
    if log_y {
        let mut c = builder.build_cartesian_2d(x0..x1, (lo..hi).log_scale())?;
        c.configure_mesh()
            .x_desc(&chart.x_label)
            .y_desc(&chart.y_label)
            .x_labels(x_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v| short(*v))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for (j, s) in series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1 > 0.0).collect();
            c.draw_series(plotters::series::LineSeries::new(
                pts.clone(),
                color.stroke_width(2),
            ))?;
            if dots(s) {
                c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
    } else {
        let mut c = builder.build_cartesian_2d(x0..x1, lo..hi)?;
        c.configure_mesh()
            .x_desc(&chart.x_label)
            .y_desc(&chart.y_label)
            .x_labels(x_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v| short(*v))
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()?;
        for (j, s) in series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            c.draw_series(plotters::series::LineSeries::new(
                s.points.clone(),
                color.stroke_width(2),
            ))?;
            if dots(s) {
                c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short(1234.0), "1.23k");
        assert_eq!(short(12_500_000.0), "12.5M");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(100.0), "100");
    }

    #[test]
    fn nines_labels() {
        assert_eq!(nines_label(nines(0.5)), "p50");
        assert_eq!(nines_label(2.0), "p99");
        assert_eq!(nines_label(3.0), "p99.9");
    }
}
