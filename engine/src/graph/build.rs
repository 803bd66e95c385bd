//! Building a [`Graph`]: validation of nodes, edges and embeddings, duplicate merging, the
//! effective weights `w' = f32(w · m)`, CSR and its transpose, and embedding normalisation.
//! [`GraphBuilder`] builds from memory; [`from_files`] from `nodes.tsv` / `edges.tsv` / `.npy`.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::config::{GraphConfig, Multipliers, NodeKind};
use super::embed::{self, Embeddings, MAX_DIM, RowProblem};
use super::error::GraphError;
use super::npy::NpyMatrix;
use super::tsv::{self, RawEdge};
use super::{Csr, Graph, MAX_EDGES, MAX_NODES};

/// Builds a graph in memory: add nodes (ids are dense, in order of addition), edges with raw
/// weights in (0, 1], and optionally raw embeddings; [`build`](GraphBuilder::build) checks
/// everything and applies SPEC §2.1.
#[derive(Debug, Clone)]
pub struct GraphBuilder {
    config: GraphConfig,
    kinds: Vec<NodeKind>,
    labels: Vec<Option<Arc<str>>>,
    edges: Vec<RawEdge>,
    embeddings: Option<(usize, Vec<f32>)>,
}

impl GraphBuilder {
    /// An empty graph of the given settings (nodes, edges and embeddings are added next).
    pub fn new(config: GraphConfig) -> GraphBuilder {
        GraphBuilder {
            config,
            kinds: Vec::new(),
            labels: Vec::new(),
            edges: Vec::new(),
            embeddings: None,
        }
    }

    /// Adds a node and returns its id (an empty label is no label).
    pub fn add_node(&mut self, kind: NodeKind, label: Option<&str>) -> u32 {
        let id = self.kinds.len() as u32;
        self.kinds.push(kind);
        self.labels
            .push(label.filter(|l| !l.is_empty()).map(Arc::from));
        id
    }

    /// Adds the edge `from -> to` with raw weight `weight` (checked by `build`).
    pub fn add_edge(&mut self, from: u32, to: u32, weight: f64) -> &mut GraphBuilder {
        self.edges.push((from, to, weight));
        self
    }

    /// Sets the raw (not yet normalised) embeddings: `rows.len() / dim` rows, one per node.
    pub fn embeddings(&mut self, dim: usize, rows: Vec<f32>) -> &mut GraphBuilder {
        self.embeddings = Some((dim, rows));
        self
    }

    /// Nodes added so far; the next node gets this id.
    pub fn node_count(&self) -> usize {
        self.kinds.len()
    }

    /// Writes the parts as `nodes.tsv` and `edges.tsv` (and the raw embeddings as a float32
    /// `.npy`), the input of [`Graph::from_tsv`]. Weights are printed in Rust's shortest
    /// round-trip form, so reading the files back builds the same graph bit for bit.
    pub fn write_tsv(
        &self,
        nodes: &Path,
        edges: &Path,
        embeddings: Option<&Path>,
    ) -> Result<(), GraphError> {
        use std::fmt::Write as _;
        let mut text = String::from("# id\tkind\tlabel\n");
        for (v, (kind, label)) in self.kinds.iter().zip(&self.labels).enumerate() {
            match label {
                Some(l) => writeln!(text, "{v}\t{kind}\t{l}"),
                None => writeln!(text, "{v}\t{kind}"),
            }
            .expect("writing to a String");
        }
        std::fs::write(nodes, &text).map_err(|e| GraphError::io(nodes, "write", e))?;
        text.clear();
        text.push_str("# src\tdst\tweight\n");
        for &(u, v, w) in &self.edges {
            writeln!(text, "{u}\t{v}\t{w}").expect("writing to a String");
        }
        std::fs::write(edges, &text).map_err(|e| GraphError::io(edges, "write", e))?;
        if let Some(path) = embeddings {
            let Some((dim, rows)) = &self.embeddings else {
                return Err(GraphError::argument(
                    "--embeddings",
                    "the builder has no embeddings to write",
                ));
            };
            let m = NpyMatrix {
                rows: rows.len() / (*dim).max(1),
                cols: *dim,
                dtype: super::npy::NpyDtype::F32,
                data: rows.clone(),
            };
            m.write(path, super::npy::NpyDtype::F32)?;
        }
        Ok(())
    }

    /// Checks the parts and builds the graph.
    pub fn build(self) -> Result<Graph, GraphError> {
        self.config.validate()?;
        let n = self.kinds.len();
        if n > MAX_NODES {
            return Err(GraphError::invalid(
                "nodes",
                format!("{n} nodes, at most {MAX_NODES}"),
            ));
        }
        if self.edges.len() > MAX_EDGES {
            return Err(GraphError::invalid(
                "edges",
                format!("{} edges, at most {MAX_EDGES}", self.edges.len()),
            ));
        }
        for (i, &(u, v, w)) in self.edges.iter().enumerate() {
            for (end, id) in [("source", u), ("destination", v)] {
                if id as usize >= n {
                    return Err(GraphError::invalid(
                        "edges",
                        format!(
                            "edge {i} ({u} -> {v}): {end} {id} out of range, the graph has {n} \
                             nodes"
                        ),
                    ));
                }
            }
            if !(w.is_finite() && w > 0.0 && w <= 1.0) {
                return Err(GraphError::invalid(
                    "edges",
                    format!("edge {i} ({u} -> {v}): weight must be finite and in (0, 1], got {w}"),
                ));
            }
        }
        let emb = match self.embeddings {
            None => Embeddings::default(),
            Some((dim, mut rows)) => {
                if !(1..=MAX_DIM).contains(&dim) {
                    return Err(GraphError::invalid(
                        "embeddings",
                        format!("dimension must be in 1..={MAX_DIM}, got {dim}"),
                    ));
                }
                if rows.len() != n * dim {
                    return Err(GraphError::invalid(
                        "embeddings",
                        format!(
                            "{} values is not {n} nodes × dimension {dim} = {}",
                            rows.len(),
                            n * dim
                        ),
                    ));
                }
                normalise_rows(dim, &mut rows).map_err(|(row, p)| {
                    GraphError::invalid("embeddings", format!("row {row}: {p}"))
                })?;
                Embeddings::from_normalised(dim, &rows)
            }
        };
        Ok(assemble(
            self.config,
            self.kinds,
            self.labels,
            self.edges,
            emb,
        ))
    }
}

/// Reads the three input files and builds the graph.
pub(crate) fn from_files(
    nodes_path: &Path,
    edges_path: &Path,
    embeddings_path: Option<&Path>,
    config: &GraphConfig,
) -> Result<Graph, GraphError> {
    config.validate()?;
    let nodes = tsv::read_nodes(nodes_path)?;
    let n = nodes.kinds.len();
    let edges = tsv::read_edges(edges_path, n, nodes_path)?;
    let emb = match embeddings_path {
        None => Embeddings::default(),
        Some(path) => {
            let mut m = NpyMatrix::read(path)?;
            if m.rows != n {
                return Err(GraphError::npy(
                    path,
                    "shape",
                    format!(
                        "({}, {}) has {} rows but {} defines {n} nodes; expected shape ({n}, d)",
                        m.rows,
                        m.cols,
                        m.rows,
                        nodes_path.display()
                    ),
                ));
            }
            if !(1..=MAX_DIM).contains(&m.cols) {
                return Err(GraphError::npy(
                    path,
                    "shape",
                    format!(
                        "({}, {}): the dimension must be in 1..={MAX_DIM}",
                        m.rows, m.cols
                    ),
                ));
            }
            normalise_rows(m.cols, &mut m.data)
                .map_err(|(row, p)| GraphError::npy(path, "data", format!("row {row}: {p}")))?;
            Embeddings::from_normalised(m.cols, &m.data)
        }
    };
    Ok(assemble(*config, nodes.kinds, nodes.labels, edges, emb))
}

/// Normalises every row in place; on failure, the lowest failing row.
fn normalise_rows(dim: usize, rows: &mut [f32]) -> Result<(), (usize, RowProblem)> {
    let first_bad = rows
        .par_chunks_mut(dim)
        .enumerate()
        .filter_map(|(i, row)| embed::normalise(row).err().map(|p| (i, p)))
        .min_by_key(|(i, _)| *i);
    match first_bad {
        Some(bad) => Err(bad),
        None => Ok(()),
    }
}

/// Merges duplicates (keeping the largest weight), applies the multipliers and lays out CSR.
fn assemble(
    config: GraphConfig,
    kinds: Vec<NodeKind>,
    labels: Vec<Option<Arc<str>>>,
    edges: Vec<RawEdge>,
    emb: Embeddings,
) -> Graph {
    let out = csr(&kinds, edges, &config.effective_multipliers());
    Graph::from_parts(config, kinds, labels, out, emb)
}

/// CSR of validated edges: rows by source, targets ascending, one edge per (u, v) with the
/// largest raw weight, `w' = f32(w · m(kind u, kind v))` with the product in f64.
fn csr(kinds: &[NodeKind], edges: Vec<RawEdge>, m: &Multipliers) -> Csr {
    let n = kinds.len();
    let mut starts = vec![0usize; n + 1];
    for &(u, _, _) in &edges {
        starts[u as usize + 1] += 1;
    }
    for i in 0..n {
        starts[i + 1] += starts[i];
    }
    let mut cursor = starts.clone();
    let mut rows: Vec<(u32, f64)> = vec![(0, 0.0); edges.len()];
    for (u, v, w) in edges {
        rows[cursor[u as usize]] = (v, w);
        cursor[u as usize] += 1;
    }
    drop(cursor);
    // Sort each row by target, the largest weight first among duplicates.
    {
        let mut rest = &mut rows[..];
        let mut slices = Vec::with_capacity(n);
        for u in 0..n {
            let (row, tail) = rest.split_at_mut(starts[u + 1] - starts[u]);
            slices.push(row);
            rest = tail;
        }
        slices.into_par_iter().for_each(|row| {
            row.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        });
    }
    let mut offsets = Vec::with_capacity(n + 1);
    let mut nbrs = Vec::with_capacity(rows.len());
    let mut weights = Vec::with_capacity(rows.len());
    offsets.push(0u32);
    for u in 0..n {
        let ku = kinds[u];
        let mut last = None;
        for &(v, w) in &rows[starts[u]..starts[u + 1]] {
            if last == Some(v) {
                continue;
            }
            last = Some(v);
            nbrs.push(v);
            weights.push((w * m.get(ku, kinds[v as usize])) as f32);
        }
        offsets.push(nbrs.len() as u32);
    }
    Csr {
        offsets,
        nbrs,
        weights,
    }
}
