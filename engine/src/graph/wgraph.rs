//! The `.wgraph` file: a built graph, saved and loaded in one pass. All integers and floats
//! are little-endian. Copy of this table in docs/graphs.md.
//!
//! ```text
//! header (HEADER_LEN = 200 bytes)
//!   off  size  field
//!     0     8  magic          b"\x89WGRAPH\n"
//!     8     4  version        u32 = 1
//!    12     4  flags          u32, bit 0: hierarchical
//!    16     8  nodes          u64 N
//!    24     8  edges          u64 E (after merging duplicates)
//!    32     4  dim            u32 d (0 = no embeddings)
//!    36     4  reserved       0
//!    40    32  multipliers    4 × f64: EC, CE, CC, EE (as configured)
//!    72     8  label_bytes    u64 L
//!    80   112  sections       7 × { length u64, crc32c u32, reserved u32 = 0 }
//!   192     4  header_crc     crc32c of bytes 0..192
//!   196     4  reserved       0
//! sections, in order, each followed by zero padding to a multiple of 8 bytes
//!   0 kinds        N × u8        0 concept, 1 episode
//!   1 label_lens   N × u32       bytes of each label, 0 = none
//!   2 label_text   L bytes       the labels' UTF-8, concatenated in node order
//!   3 out_offsets  (N+1) × u32   CSR row starts, offsets[0] = 0, offsets[N] = E
//!   4 out_targets  E × u32       strictly ascending within a row
//!   5 out_weights  E × f32       effective weights w' (finite, > 0)
//!   6 embeddings   N·d × u16     f16 bits, rows normalised; zero row = no embedding
//! ```
//! A section's crc32c covers its bytes without padding. The transpose is not stored; it is
//! rebuilt at load (a stable counting sort, O(N + E)).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use half::f16;

use super::config::{GraphConfig, Multipliers, NodeKind};
use super::embed::{Embeddings, MAX_DIM};
use super::error::GraphError;
use super::{Csr, Graph, MAX_EDGES, MAX_NODES};

/// The first 8 bytes of a `.wgraph` file.
pub const WGRAPH_MAGIC: [u8; 8] = *b"\x89WGRAPH\n";
/// The format version this build writes and reads.
pub const WGRAPH_VERSION: u32 = 1;

const SECTIONS: usize = 7;
const SECTION_ENTRY: usize = size_of::<u64>() + 2 * size_of::<u32>();
const OFF_VERSION: usize = WGRAPH_MAGIC.len();
const OFF_FLAGS: usize = OFF_VERSION + size_of::<u32>();
const OFF_NODES: usize = OFF_FLAGS + size_of::<u32>();
const OFF_EDGES: usize = OFF_NODES + size_of::<u64>();
const OFF_DIM: usize = OFF_EDGES + size_of::<u64>();
const OFF_MULTIPLIERS: usize = OFF_DIM + 2 * size_of::<u32>();
const OFF_LABEL_BYTES: usize = OFF_MULTIPLIERS + 4 * size_of::<f64>();
const OFF_SECTIONS: usize = OFF_LABEL_BYTES + size_of::<u64>();
const OFF_HEADER_CRC: usize = OFF_SECTIONS + SECTIONS * SECTION_ENTRY;
/// Bytes of the header.
pub(crate) const HEADER_LEN: usize = OFF_HEADER_CRC + 2 * size_of::<u32>();
const _: () = assert!(HEADER_LEN == 200 && OFF_SECTIONS == 80 && OFF_HEADER_CRC == 192);

const SECTION_NAMES: [&str; SECTIONS] = [
    "kinds",
    "label_lens",
    "label_text",
    "out_offsets",
    "out_targets",
    "out_weights",
    "embeddings",
];

const FLAG_HIERARCHICAL: u32 = 1;

fn pad8(len: u64) -> u64 {
    len.div_ceil(8) * 8
}

/// Little-endian bytes of a slice of plain numbers (borrowed on little-endian hosts).
fn le_bytes<T: bytemuck::Pod>(v: &[T], to_le: impl Fn(T) -> T) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(v))
    } else {
        let swapped: Vec<T> = v.iter().map(|&x| to_le(x)).collect();
        Cow::Owned(bytemuck::cast_slice(&swapped).to_vec())
    }
}

/// Writes `graph` to `path` through a temporary file in the same directory, synced, then
/// renamed over `path`.
pub(crate) fn save(graph: &Graph, path: &Path) -> Result<(), GraphError> {
    let n = graph.node_count();
    let kinds: Vec<u8> = (0..n).map(|v| graph.kind(v as u32) as u8).collect();
    let mut label_lens = Vec::with_capacity(n);
    let mut label_text = Vec::new();
    for v in 0..n {
        let l = graph.label(v as u32).unwrap_or("");
        label_lens.push(u32::try_from(l.len()).map_err(|_| {
            GraphError::invalid("labels", format!("label of node {v} is over 4 GiB"))
        })?);
        label_text.extend_from_slice(l.as_bytes());
    }
    let emb_bits: Vec<u16> = graph.emb.data.iter().map(|x| x.to_bits()).collect();
    let sections: [Cow<'_, [u8]>; SECTIONS] = [
        Cow::Borrowed(&kinds[..]),
        le_bytes(&label_lens, u32::to_le),
        Cow::Borrowed(&label_text[..]),
        le_bytes(&graph.out.offsets, u32::to_le),
        le_bytes(&graph.out.nbrs, u32::to_le),
        le_bytes(&graph.out.weights, |x: f32| {
            f32::from_bits(x.to_bits().to_le())
        }),
        le_bytes(&emb_bits, u16::to_le),
    ];

    let config = graph.config();
    let mut header = [0u8; HEADER_LEN];
    header[..OFF_VERSION].copy_from_slice(&WGRAPH_MAGIC);
    put(&mut header, OFF_VERSION, &WGRAPH_VERSION.to_le_bytes());
    let flags = if config.hierarchical {
        FLAG_HIERARCHICAL
    } else {
        0
    };
    put(&mut header, OFF_FLAGS, &flags.to_le_bytes());
    put(&mut header, OFF_NODES, &(n as u64).to_le_bytes());
    put(
        &mut header,
        OFF_EDGES,
        &(graph.edge_count() as u64).to_le_bytes(),
    );
    put(&mut header, OFF_DIM, &(graph.dim() as u32).to_le_bytes());
    for (i, m) in config.multipliers.to_array().iter().enumerate() {
        put(&mut header, OFF_MULTIPLIERS + 8 * i, &m.to_le_bytes());
    }
    put(
        &mut header,
        OFF_LABEL_BYTES,
        &(label_text.len() as u64).to_le_bytes(),
    );
    for (i, s) in sections.iter().enumerate() {
        let at = OFF_SECTIONS + i * SECTION_ENTRY;
        put(&mut header, at, &(s.len() as u64).to_le_bytes());
        put(&mut header, at + 8, &crc32c::crc32c(s).to_le_bytes());
    }
    let crc = crc32c::crc32c(&header[..OFF_HEADER_CRC]);
    put(&mut header, OFF_HEADER_CRC, &crc.to_le_bytes());

    let tmp = path.with_extension("wgraph.tmp");
    let write = |tmp: &Path| -> std::io::Result<()> {
        let file = File::create(tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&header)?;
        for s in &sections {
            w.write_all(s)?;
            let pad = (pad8(s.len() as u64) - s.len() as u64) as usize;
            w.write_all(&[0u8; 8][..pad])?;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    };
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(GraphError::io(&tmp, "write", e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        GraphError::io(path, "rename", e)
    })
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads sections straight into typed buffers, tracking the offset for errors.
struct SectionReader<'a> {
    path: &'a Path,
    file: File,
    offset: u64,
    file_len: u64,
}

impl SectionReader<'_> {
    fn read_into(&mut self, section: &'static str, buf: &mut [u8]) -> Result<(), GraphError> {
        let needed = self.offset + buf.len() as u64;
        if needed > self.file_len {
            return Err(GraphError::Truncated {
                path: self.path.to_path_buf(),
                section,
                needed,
                available: self.file_len,
            });
        }
        self.file.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                GraphError::Truncated {
                    path: self.path.to_path_buf(),
                    section,
                    needed,
                    available: self.offset,
                }
            } else {
                GraphError::io(self.path, "read", e)
            }
        })?;
        self.offset = needed;
        Ok(())
    }

    /// Reads one section of `count` elements of `T`, checks its length and crc, and skips
    /// (and checks) its padding.
    fn section<T: bytemuck::Pod + Default>(
        &mut self,
        index: usize,
        count: u64,
        table: &[(u64, u32); SECTIONS],
    ) -> Result<Vec<T>, GraphError> {
        let name = SECTION_NAMES[index];
        let (len, crc) = table[index];
        let expected = count.checked_mul(size_of::<T>() as u64);
        if expected != Some(len) {
            return Err(GraphError::format(
                self.path,
                "sections",
                format!(
                    "section {name} is {len} bytes, but the header's counts give {}",
                    expected.map_or("an overflow".to_string(), |e| e.to_string())
                ),
            ));
        }
        if self.offset + pad8(len) > self.file_len {
            return Err(GraphError::Truncated {
                path: self.path.to_path_buf(),
                section: name,
                needed: self.offset + pad8(len),
                available: self.file_len,
            });
        }
        let mut v = vec![T::default(); count as usize];
        self.read_into(name, bytemuck::cast_slice_mut(&mut v))?;
        let actual = crc32c::crc32c(bytemuck::cast_slice(&v));
        if actual != crc {
            return Err(GraphError::Checksum {
                path: self.path.to_path_buf(),
                section: name,
                expected: crc,
                actual,
            });
        }
        let mut pad = [0u8; 8];
        let pad_len = (pad8(len) - len) as usize;
        self.read_into(name, &mut pad[..pad_len])?;
        if pad.iter().any(|&b| b != 0) {
            return Err(GraphError::format(
                self.path,
                name,
                "non-zero padding after the section",
            ));
        }
        Ok(v)
    }
}

/// Reads a `.wgraph` file: header, then each section straight into its array.
pub(crate) fn load(path: &Path) -> Result<Graph, GraphError> {
    let file = File::open(path).map_err(|e| GraphError::io(path, "open", e))?;
    let file_len = file
        .metadata()
        .map_err(|e| GraphError::io(path, "read", e))?
        .len();
    let mut r = SectionReader {
        path,
        file,
        offset: 0,
        file_len,
    };
    let mut header = [0u8; HEADER_LEN];
    if file_len < WGRAPH_MAGIC.len() as u64 {
        return Err(GraphError::Truncated {
            path: path.to_path_buf(),
            section: "header",
            needed: HEADER_LEN as u64,
            available: file_len,
        });
    }
    r.read_into("header", &mut header[..WGRAPH_MAGIC.len()])?;
    if header[..WGRAPH_MAGIC.len()] != WGRAPH_MAGIC {
        return Err(GraphError::format(
            path,
            "magic",
            "not a .wgraph file (build one with `warpgrid graph build`)",
        ));
    }
    r.read_into("header", &mut header[WGRAPH_MAGIC.len()..])?;
    let stored = u32_at(&header, OFF_HEADER_CRC);
    let actual = crc32c::crc32c(&header[..OFF_HEADER_CRC]);
    if stored != actual {
        return Err(GraphError::Checksum {
            path: path.to_path_buf(),
            section: "header",
            expected: stored,
            actual,
        });
    }
    let version = u32_at(&header, OFF_VERSION);
    if version != WGRAPH_VERSION {
        return Err(GraphError::format(
            path,
            "version",
            format!("version {version} is not supported: expected {WGRAPH_VERSION}"),
        ));
    }
    let flags = u32_at(&header, OFF_FLAGS);
    if flags & !FLAG_HIERARCHICAL != 0 {
        return Err(GraphError::format(
            path,
            "flags",
            format!("unknown flags {flags:#x}"),
        ));
    }
    let n = u64_at(&header, OFF_NODES);
    let e = u64_at(&header, OFF_EDGES);
    let dim = u64::from(u32_at(&header, OFF_DIM));
    let label_bytes = u64_at(&header, OFF_LABEL_BYTES);
    if n > MAX_NODES as u64 {
        return Err(GraphError::format(
            path,
            "nodes",
            format!("{n} nodes, at most {MAX_NODES}"),
        ));
    }
    if e > MAX_EDGES as u64 {
        return Err(GraphError::format(
            path,
            "edges",
            format!("{e} edges, at most {MAX_EDGES}"),
        ));
    }
    if dim > MAX_DIM as u64 {
        return Err(GraphError::format(
            path,
            "dim",
            format!("dimension {dim}, at most {MAX_DIM}"),
        ));
    }
    let mut mult = [0.0f64; 4];
    for (i, m) in mult.iter_mut().enumerate() {
        *m = f64::from_le_bytes(
            header[OFF_MULTIPLIERS + 8 * i..OFF_MULTIPLIERS + 8 * i + 8]
                .try_into()
                .expect("8 bytes"),
        );
    }
    let config = GraphConfig {
        hierarchical: flags & FLAG_HIERARCHICAL != 0,
        multipliers: Multipliers::from_array(mult),
    };
    config
        .validate()
        .map_err(|err| GraphError::format(path, "multipliers", err.to_string()))?;
    let mut table = [(0u64, 0u32); SECTIONS];
    for (i, entry) in table.iter_mut().enumerate() {
        let at = OFF_SECTIONS + i * SECTION_ENTRY;
        *entry = (u64_at(&header, at), u32_at(&header, at + 8));
    }
    // Every size is known now: a file too short is reported before reading further.
    let total: u64 = HEADER_LEN as u64 + table.iter().map(|&(len, _)| pad8(len)).sum::<u64>();
    if file_len > total {
        return Err(GraphError::format(
            path,
            "length",
            format!("{} bytes after the last section", file_len - total),
        ));
    }

    let kinds_raw: Vec<u8> = r.section(0, n, &table)?;
    let label_lens: Vec<u32> = r.section(1, n, &table)?;
    let label_text: Vec<u8> = r.section(2, label_bytes, &table)?;
    let offsets: Vec<u32> = r.section(3, n + 1, &table)?;
    let nbrs: Vec<u32> = r.section(4, e, &table)?;
    let weights: Vec<u32> = r.section(5, e, &table)?;
    let emb_bits: Vec<u16> = r.section(6, n * dim, &table)?;

    let bad = |field: &'static str, reason: String| GraphError::format(path, field, reason);
    let kinds = kinds_raw
        .iter()
        .enumerate()
        .map(|(v, &b)| {
            NodeKind::from_byte(b)
                .ok_or_else(|| bad("kinds", format!("node {v} has kind byte {b}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut labels = Vec::with_capacity(n as usize);
    let mut at = 0usize;
    for (v, &len) in label_lens.iter().enumerate() {
        let len = u32::from_le(len) as usize;
        let end = at + len;
        let Some(bytes) = label_text.get(at..end) else {
            return Err(bad(
                "label_lens",
                format!("label of node {v} runs past label_text"),
            ));
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|_| bad("label_text", format!("label of node {v} is not UTF-8")))?;
        labels.push((len > 0).then(|| Arc::<str>::from(text)));
        at = end;
    }
    if at != label_text.len() {
        return Err(bad(
            "label_lens",
            "label lengths do not add up to label_bytes".into(),
        ));
    }
    let offsets: Vec<u32> = offsets.into_iter().map(u32::from_le).collect();
    let nbrs: Vec<u32> = nbrs.into_iter().map(u32::from_le).collect();
    let weights: Vec<f32> = weights
        .into_iter()
        .map(|w| f32::from_bits(u32::from_le(w)))
        .collect();
    if offsets[0] != 0 || u64::from(offsets[n as usize]) != e {
        return Err(bad("out_offsets", format!("must run from 0 to {e}")));
    }
    for u in 0..n as usize {
        let (lo, hi) = (offsets[u] as usize, offsets[u + 1] as usize);
        if lo > hi || hi > nbrs.len() {
            return Err(bad("out_offsets", format!("row {u} is not increasing")));
        }
        let row = &nbrs[lo..hi];
        if let Some(&v) = row.iter().find(|&&v| u64::from(v) >= n) {
            return Err(bad(
                "out_targets",
                format!("edge {u} -> {v}: node out of range"),
            ));
        }
        if row.windows(2).any(|p| p[0] >= p[1]) {
            return Err(bad(
                "out_targets",
                format!("row {u} is not strictly ascending"),
            ));
        }
    }
    if let Some(i) = weights.iter().position(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(bad("out_weights", format!("weight {i} is {}", weights[i])));
    }
    let emb_data: Vec<f16> = emb_bits
        .into_iter()
        .map(|b| f16::from_bits(u16::from_le(b)))
        .collect();
    if let Some(i) = emb_data.iter().position(|x| !x.is_finite()) {
        return Err(bad(
            "embeddings",
            format!("component {i} is {}", emb_data[i]),
        ));
    }
    let out = Csr {
        offsets,
        nbrs,
        weights,
    };
    let emb = Embeddings::from_f16(dim as usize, emb_data);
    Ok(Graph::from_parts(config, kinds, labels, out, emb))
}
