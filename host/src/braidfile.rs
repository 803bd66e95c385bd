//! The braid config file (SPEC §5): TOML mapped one to one onto the engine's
//! [`BraidConfig`]. Unknown keys are errors; a syntax or type error names the file, line and
//! column; a value out of range names the file and the field (the engine checks ranges).

use std::path::Path;

use serde::Deserialize;
use warpgrid_engine::braid::{
    BraidConfig, BraidError, EdgesBuilder, InjectBuilder, ProcessesBuilder, TorusConfig,
};

/// Why a braid config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BraidFileError {
    /// The file could not be read.
    #[error("{path}: cannot read the braid config: {source}")]
    Io {
        /// The config file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type (with line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The config file's path.
        path: String,
        /// The problem, with its line and column.
        message: String,
    },
    /// A value out of range (the field is named).
    #[error("{path}: {source}")]
    Invalid {
        /// The config file's path.
        path: String,
        /// The engine's error, naming the field.
        #[source]
        source: BraidError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    dims: Option<[u32; 3]>,
    tori: Option<u32>,
    max_delay: Option<u32>,
    max_pending: Option<u64>,
    instants: Option<u32>,
    braid: Option<BraidForm>,
    processes: Option<ProcessesForm>,
    edges: Option<EdgesForm>,
    inject: Option<InjectForm>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BraidForm {
    interval: Option<u32>,
    adaptive: Option<bool>,
    min_interval: Option<u32>,
    max_interval: Option<u32>,
    tol_boundary: Option<u32>,
    tol_events: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum ProcessesForm {
    All,
    Fraction { p: f64, seed: u64 },
    List { cells: Vec<[i64; 3]> },
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum EdgesForm {
    Neighbors {
        #[serde(default = "one")]
        delay: u32,
    },
    Random {
        per_cell: u32,
        seed: u64,
    },
    List {
        edges: Vec<[i64; 7]>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum InjectForm {
    Random {
        count: u64,
        seed: u64,
        #[serde(default)]
        at: u64,
    },
    List {
        events: Vec<[i64; 8]>,
    },
}

/// Parses a braid config from `text`; `path` names it in errors. The result is validated.
pub fn parse_braid_config(text: &str, path: &str) -> Result<BraidConfig, BraidFileError> {
    let form: FileForm = toml::from_str(text).map_err(|e| BraidFileError::Parse {
        path: path.to_owned(),
        message: parse_message(text, &e),
    })?;
    let mut torus = TorusConfig::new(form.dims.unwrap_or(TorusConfig::DEFAULT_DIMS));
    if let Some(d) = form.max_delay {
        torus = torus.with_max_delay(d);
    }
    if let Some(p) = form.max_pending {
        torus = torus.with_max_pending(p);
    }
    torus.processes = match form.processes {
        None | Some(ProcessesForm::All) => ProcessesBuilder::All,
        Some(ProcessesForm::Fraction { p, seed }) => ProcessesBuilder::Fraction { p, seed },
        Some(ProcessesForm::List { cells }) => ProcessesBuilder::List { cells },
    };
    torus.edges = match form.edges {
        None => EdgesBuilder::default(),
        Some(EdgesForm::Neighbors { delay }) => EdgesBuilder::Neighbors { delay },
        Some(EdgesForm::Random { per_cell, seed }) => EdgesBuilder::Random { per_cell, seed },
        Some(EdgesForm::List { edges }) => EdgesBuilder::List { edges },
    };
    torus.inject = match form.inject {
        None => InjectBuilder::None,
        Some(InjectForm::Random { count, seed, at }) => InjectBuilder::Random { count, seed, at },
        Some(InjectForm::List { events }) => InjectBuilder::List { events },
    };
    let mut config = BraidConfig::new(torus);
    if let Some(t) = form.tori {
        config.tori = t;
    }
    if let Some(n) = form.instants {
        config.instants = n;
    }
    if let Some(b) = form.braid {
        config.interval = b.interval.unwrap_or(config.interval);
        config.adaptive = b.adaptive.unwrap_or(config.adaptive);
        config.min_interval = b.min_interval.unwrap_or(config.min_interval);
        config.max_interval = b.max_interval.unwrap_or(config.max_interval);
        config.tol_boundary = b.tol_boundary.unwrap_or(config.tol_boundary);
        config.tol_events = b.tol_events.unwrap_or(config.tol_events);
    }
    config
        .validate()
        .map_err(|source| BraidFileError::Invalid {
            path: path.to_owned(),
            source,
        })?;
    Ok(config)
}

/// Reads and parses the braid config at `path`.
pub fn load_braid_config(path: &Path) -> Result<BraidConfig, BraidFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BraidFileError::Io {
        path: name.clone(),
        source,
    })?;
    parse_braid_config(&text, &name)
}

/// The TOML error as "line L, column C: message" (the crate's own text spans lines).
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const EXAMPLE: &str = r#"
dims = [8, 4, 4]
tori = 2
max_delay = 16
max_pending = 4096
instants = 500
[braid]
interval = 100
adaptive = false
tol_boundary = 5
tol_events = 0.2
[processes]
kind = "fraction"
p = 0.5
seed = 3
[edges]
kind = "random"
per_cell = 2
seed = 9
[inject]
kind = "random"
count = 100
seed = 7
"#;

    #[test]
    fn every_section_maps_onto_the_engine_config() {
        let c = parse_braid_config(EXAMPLE, "b.toml").unwrap();
        assert_eq!(c.torus.dims, [8, 4, 4]);
        assert_eq!((c.tori, c.instants), (2, 500));
        assert_eq!((c.torus.max_delay, c.torus.max_pending), (16, 4096));
        assert_eq!((c.interval, c.adaptive), (100, false));
        assert_eq!((c.tol_boundary, c.tol_events), (5, 0.2));
        assert_eq!(
            c.torus.processes,
            ProcessesBuilder::Fraction { p: 0.5, seed: 3 }
        );
        assert_eq!(
            c.torus.edges,
            EdgesBuilder::Random {
                per_cell: 2,
                seed: 9
            }
        );
        assert_eq!(
            c.torus.inject,
            InjectBuilder::Random {
                count: 100,
                seed: 7,
                at: 0
            }
        );
    }

    #[test]
    fn an_empty_file_gives_the_spec_defaults() {
        let c = parse_braid_config("", "b.toml").unwrap();
        assert_eq!(c, BraidConfig::new(TorusConfig::new([32, 32, 32])));
        assert_eq!(c.torus.edges, EdgesBuilder::Neighbors { delay: 1 });
        assert_eq!(c.torus.inject, InjectBuilder::None);
    }

    #[test]
    fn lists_are_read_as_given() {
        let c = parse_braid_config(
            r#"
dims = [4, 4, 4]
[processes]
kind = "list"
cells = [[0, 0, 0], [-1, 5, 2]]
[edges]
kind = "list"
edges = [[0, 0, 0, 1, 0, 0, 3]]
[inject]
kind = "list"
events = [[0, 0, 0, 1, 1, 1, -7, 2]]
"#,
            "b.toml",
        )
        .unwrap();
        assert_eq!(
            c.torus.processes,
            ProcessesBuilder::List {
                cells: vec![[0, 0, 0], [-1, 5, 2]]
            }
        );
        assert_eq!(
            c.torus.edges,
            EdgesBuilder::List {
                edges: vec![[0, 0, 0, 1, 0, 0, 3]]
            }
        );
        assert_eq!(
            c.torus.inject,
            InjectBuilder::List {
                events: vec![[0, 0, 0, 1, 1, 1, -7, 2]]
            }
        );
    }

    #[test]
    fn bad_files_name_the_file_line_and_field() {
        let cases: &[(&str, &str)] = &[
            ("dims = [32, 32]\n", "line 1"),
            ("tori = 3\ncolour = 1\n", "unknown field `colour`"),
            ("[braid]\nintervl = 5\n", "unknown field `intervl`"),
            ("[edges]\nkind = \"grid\"\n", "unknown variant `grid`"),
            (
                "[edges]\nkind = \"random\"\nper_cell = 1\n",
                "missing field `seed`",
            ),
            (
                "[edges]\nkind = \"neighbors\"\ndelay = 2\nseed = 1\n",
                "unknown field `seed`",
            ),
            ("tori = \"three\"\n", "line 1"),
            ("dims = [1, 32, 32]\n", "dims"),
            ("tori = 0\n", "tori"),
            (
                "max_delay = 8\n[edges]\nkind = \"neighbors\"\ndelay = 9\n",
                "edges.delay",
            ),
            ("[braid]\ninterval = 50\n", "braid.interval"),
        ];
        for (text, want) in cases {
            let err = parse_braid_config(text, "conf/b.toml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("conf/b.toml: "), "{text:?}: {err}");
            assert!(err.contains(want), "{text:?}: want {want:?} in {err}");
        }
        let err = parse_braid_config("\n\ntori = 3\ncolour = 1\n", "b.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4"), "{err}");
    }
}
