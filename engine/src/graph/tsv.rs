//! Readers of `nodes.tsv` (`id kind [label]`) and `edges.tsv` (`src dst weight`) (SPEC §5):
//! UTF-8, TAB-separated, a line whose first non-blank character is `#` is a comment, blank
//! lines are ignored, a trailing `\r` is dropped. Line numbers in errors count every line
//! from 1, comments and blanks included.

use std::path::Path;
use std::sync::Arc;

use super::config::NodeKind;
use super::error::GraphError;
use super::{MAX_EDGES, MAX_NODES};

/// An edge as read: source, destination, raw weight in (0, 1].
pub(crate) type RawEdge = (u32, u32, f64);

/// The data lines of a text file: `(line number, text)`.
fn data_lines<'a>(
    path: &'a Path,
    bytes: &'a [u8],
) -> impl Iterator<Item = Result<(u64, &'a str), GraphError>> + 'a {
    // The empty piece after a final newline is a blank line, so it is skipped like one.
    let mut lines = bytes.split(|&b| b == b'\n').enumerate();
    std::iter::from_fn(move || {
        for (i, raw) in lines.by_ref() {
            let line = i as u64 + 1;
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(e) => {
                    return Some(Err(GraphError::line(
                        path,
                        line,
                        "line",
                        format!("not valid UTF-8 at byte {}", e.valid_up_to()),
                    )));
                }
            };
            let text = text.strip_suffix('\r').unwrap_or(text);
            let trimmed = text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            return Some(Ok((line, text)));
        }
        None
    })
}

fn read(path: &Path) -> Result<Vec<u8>, GraphError> {
    std::fs::read(path).map_err(|e| GraphError::io(path, "read", e))
}

/// A node id: decimal digits only, below 2^31.
fn parse_id(path: &Path, line: u64, field: &'static str, s: &str) -> Result<u32, GraphError> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GraphError::line(
            path,
            line,
            field,
            format!("expected a node id (decimal digits), got {s:?}"),
        ));
    }
    match s.parse::<u64>() {
        Ok(id) if id < MAX_NODES as u64 => Ok(id as u32),
        _ => Err(GraphError::line(
            path,
            line,
            field,
            format!("node id {s} is above the largest id {}", MAX_NODES - 1),
        )),
    }
}

/// The nodes of a graph: kinds and labels by id.
#[derive(Debug)]
pub(crate) struct Nodes {
    pub kinds: Vec<NodeKind>,
    pub labels: Vec<Option<Arc<str>>>,
}

/// Reads `nodes.tsv`. Ids may come in any order but must be exactly `0..N-1`, each once.
pub(crate) fn read_nodes(path: &Path) -> Result<Nodes, GraphError> {
    let bytes = read(path)?;
    let mut rows: Vec<(u32, NodeKind, Option<Arc<str>>, u64)> = Vec::new();
    for item in data_lines(path, &bytes) {
        let (line, text) = item?;
        let fields: Vec<&str> = text.split('\t').collect();
        if !(2..=3).contains(&fields.len()) {
            return Err(GraphError::line(
                path,
                line,
                "line",
                format!(
                    "expected 2 or 3 TAB-separated fields (id, kind, optional label), got {}",
                    fields.len()
                ),
            ));
        }
        let id = parse_id(path, line, "id", fields[0])?;
        let kind_text = fields[1].trim();
        let Some(kind) = NodeKind::parse(kind_text) else {
            return Err(GraphError::line(
                path,
                line,
                "kind",
                format!("expected concept or episode, got {kind_text:?}"),
            ));
        };
        let label = fields
            .get(2)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(Arc::from);
        if rows.len() >= MAX_NODES {
            return Err(GraphError::line(
                path,
                line,
                "id",
                format!("more than {MAX_NODES} nodes"),
            ));
        }
        rows.push((id, kind, label, line));
    }
    let n = rows.len();
    let mut seen_at = vec![0u64; n];
    for &(id, _, _, line) in &rows {
        let Some(first) = seen_at.get_mut(id as usize) else {
            return Err(GraphError::line(
                path,
                line,
                "id",
                format!(
                    "node id {id} out of range: the file defines {n} nodes, so ids must be \
                     dense 0..={}",
                    n.saturating_sub(1)
                ),
            ));
        };
        if *first != 0 {
            return Err(GraphError::line(
                path,
                line,
                "id",
                format!("node id {id} defined twice (first on line {first})"),
            ));
        }
        *first = line;
    }
    let mut kinds = vec![NodeKind::Concept; n];
    let mut labels = vec![None; n];
    for (id, kind, label, _) in rows {
        kinds[id as usize] = kind;
        labels[id as usize] = label;
    }
    Ok(Nodes { kinds, labels })
}

/// Reads `edges.tsv` for a graph of `nodes` nodes (`nodes_path` names the nodes file in
/// range errors).
pub(crate) fn read_edges(
    path: &Path,
    nodes: usize,
    nodes_path: &Path,
) -> Result<Vec<RawEdge>, GraphError> {
    let bytes = read(path)?;
    let mut edges = Vec::new();
    let range = |line: u64, field: &'static str, id: u32| {
        GraphError::line(
            path,
            line,
            field,
            format!(
                "node id {id} out of range: {} defines {nodes} nodes (ids 0..={})",
                nodes_path.display(),
                nodes.saturating_sub(1)
            ),
        )
    };
    for item in data_lines(path, &bytes) {
        let (line, text) = item?;
        let fields: Vec<&str> = text.split('\t').collect();
        if fields.len() != 3 {
            return Err(GraphError::line(
                path,
                line,
                "line",
                format!(
                    "expected 3 TAB-separated fields (src, dst, weight), got {}",
                    fields.len()
                ),
            ));
        }
        let src = parse_id(path, line, "src", fields[0])?;
        if src as usize >= nodes {
            return Err(range(line, "src", src));
        }
        let dst = parse_id(path, line, "dst", fields[1])?;
        if dst as usize >= nodes {
            return Err(range(line, "dst", dst));
        }
        let w_text = fields[2].trim();
        let w: f64 = w_text.parse().map_err(|_| {
            GraphError::line(
                path,
                line,
                "weight",
                format!("expected a number in (0, 1], got {w_text:?}"),
            )
        })?;
        if !w.is_finite() {
            return Err(GraphError::line(
                path,
                line,
                "weight",
                format!("weight must be finite, got {w_text}"),
            ));
        }
        if !(w > 0.0 && w <= 1.0) {
            return Err(GraphError::line(
                path,
                line,
                "weight",
                format!("weight must be in (0, 1], got {w_text}"),
            ));
        }
        if edges.len() >= MAX_EDGES {
            return Err(GraphError::line(
                path,
                line,
                "line",
                format!("more than {MAX_EDGES} edges"),
            ));
        }
        edges.push((src, dst, w));
    }
    Ok(edges)
}
