//! Invariant: the text and `.npy` inputs of SPEC §5 build the graph the builder builds; a
//! `.wgraph` round trip changes nothing; and every bad input of SPEC §6 is an error that
//! names the file, the line (text files) and the field.

use std::path::{Path, PathBuf};

use half::f16;
use warpgrid_engine::graph::{
    Graph, GraphBuilder, GraphConfig, GraphError, NodeKind, NpyDtype, NpyMatrix, Seed,
    SpreadParams, WGRAPH_MAGIC, generate,
};

use super::common::{device, hits};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// A `.npy` v1.0 file with a hand-written header.
fn npy(descr: &str, fortran: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    npy_version(1, descr, fortran, shape, data)
}

fn npy_version(major: u8, descr: &str, fortran: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n");
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16s(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| f16::from_f32(*x).to_bits().to_le_bytes())
        .collect()
}

const NODES: &str = "# id\tkind\tlabel\n\
                     0\tconcept\tdog.n.01\n\
                     \n\
                     2\tepisode\r\n\
                     1\tepisode\twalk in the park\n\
                     # trailing comment\n";
const EDGES: &str = "# src dst weight\n0\t1\t0.5\n1\t2\t1\n1\t2\t0.25\n2\t0\t1e-3\n";

fn build_three(dir: &Dir, emb: Option<&Path>) -> Result<Graph, GraphError> {
    let n = dir.file("nodes.tsv", NODES);
    let e = dir.file("edges.tsv", EDGES);
    Graph::from_tsv(&n, &e, emb, &GraphConfig::default())
}

#[test]
fn tsv_and_npy_build_the_same_graph_as_the_builder() {
    let dir = Dir::new();
    let emb = dir.file(
        "e.npy",
        npy(
            "<f4",
            "False",
            "(3, 2)",
            &f32s(&[3.0, 4.0, 0.0, 0.0, 0.0, -2.0]),
        ),
    );
    let g = build_three(&dir, Some(&emb)).unwrap();
    let mut b = GraphBuilder::new(GraphConfig::default());
    b.add_node(NodeKind::Concept, Some("dog.n.01"));
    b.add_node(NodeKind::Episode, Some("walk in the park"));
    b.add_node(NodeKind::Episode, None);
    b.add_edge(0, 1, 0.5)
        .add_edge(1, 2, 1.0)
        .add_edge(1, 2, 0.25)
        .add_edge(2, 0, 1e-3);
    b.embeddings(2, vec![3.0, 4.0, 0.0, 0.0, 0.0, -2.0]);
    let want = b.build().unwrap();
    same_graph(&g, &want);
    assert_eq!(g.label(0), Some("dog.n.01"));
    assert_eq!(g.label(2), None);
    assert_eq!(g.kind(2), NodeKind::Episode);
    assert_eq!(g.find_label("walk in the park"), Some(1));
    // concept -> episode 0.6, episode -> episode 0.3 (duplicate: largest weight), e -> c 0.8.
    assert_eq!(g.out_edges(0).1, &[(0.5f64 * 0.6) as f32]);
    assert_eq!(g.out_edges(1).1, &[(1.0f64 * 0.3) as f32]);
    assert_eq!(g.out_edges(2).1, &[(1e-3f64 * 0.8) as f32]);
    assert_eq!(
        g.embedding(0).unwrap(),
        &[f16::from_f32(0.6), f16::from_f32(0.8)]
    );
    assert_eq!(g.embedding(1), None);
    assert_eq!(g.embedding(2).unwrap(), &[f16::ZERO, f16::from_f32(-1.0)]);
}

#[test]
fn f16_and_v2_v3_npy_files_are_accepted() {
    let dir = Dir::new();
    let values = [3.0, 4.0, 0.0, 0.0, 0.0, -2.0];
    let reference = {
        let p = dir.file("f4.npy", npy("<f4", "False", "(3, 2)", &f32s(&values)));
        build_three(&dir, Some(&p)).unwrap()
    };
    for (name, bytes) in [
        ("f2.npy", npy("<f2", "False", "(3, 2)", &f16s(&values))),
        (
            "v2.npy",
            npy_version(2, "<f4", "False", "(3, 2)", &f32s(&values)),
        ),
        (
            "v3.npy",
            npy_version(3, "<f2", "False", "(3,2)", &f16s(&values)),
        ),
    ] {
        let p = dir.file(name, bytes);
        let g = build_three(&dir, Some(&p)).unwrap();
        same_graph(&g, &reference);
    }
    // The writer's output reads back the same.
    let m = NpyMatrix {
        rows: 3,
        cols: 2,
        dtype: NpyDtype::F32,
        data: values.to_vec(),
    };
    let p = dir.path("w.npy");
    m.write(&p, NpyDtype::F16).unwrap();
    let back = NpyMatrix::read(&p).unwrap();
    assert_eq!((back.rows, back.cols, back.dtype), (3, 2, NpyDtype::F16));
    assert_eq!(back.data, values);
}

fn same_graph(a: &Graph, b: &Graph) {
    assert_eq!(a.node_count(), b.node_count());
    assert_eq!(a.edge_count(), b.edge_count());
    assert_eq!(a.dim(), b.dim());
    assert_eq!(a.config(), b.config());
    for v in 0..a.node_count() as u32 {
        assert_eq!(a.kind(v), b.kind(v));
        assert_eq!(a.label(v), b.label(v));
        assert_eq!(a.out_edges(v), b.out_edges(v));
        assert_eq!(a.in_edges(v), b.in_edges(v));
        let bits = |g: &Graph| {
            g.embedding(v)
                .map(|e| e.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(bits(a), bits(b), "embedding of {v}");
    }
}

#[test]
fn wgraph_round_trip_changes_nothing() {
    let dir = Dir::new();
    let g = generate::barabasi_albert(2_000, 3, 24, 5, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    let p = dir.path("g.wgraph");
    g.save(&p).unwrap();
    let back = Graph::load(&p).unwrap();
    same_graph(&g, &back);
    let dev = device(2);
    let seeds = [Seed::full(3), Seed::new(1500, 0.5)];
    assert_eq!(
        hits(&g.spread(&dev, &seeds, &SpreadParams::default()).unwrap()),
        hits(&back.spread(&dev, &seeds, &SpreadParams::default()).unwrap())
    );
    // Labels, no embeddings, not hierarchical.
    let three = build_three(&dir, None).unwrap();
    three.save(&p).unwrap();
    same_graph(&three, &Graph::load(&p).unwrap());
    let mut flat = GraphBuilder::new(GraphConfig {
        hierarchical: false,
        ..GraphConfig::default()
    });
    flat.add_node(NodeKind::Episode, Some("ünïcode ✓"));
    let flat = flat.build().unwrap();
    flat.save(&p).unwrap();
    same_graph(&flat, &Graph::load(&p).unwrap());
    // Saving is atomic: no temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn builder_tsv_writer_round_trips() {
    let dir = Dir::new();
    let b = generate::uniform(300, 2_000, 8, 11, GraphConfig::default()).unwrap();
    let (n, e, x) = (dir.path("n.tsv"), dir.path("e.tsv"), dir.path("x.npy"));
    b.write_tsv(&n, &e, Some(&x)).unwrap();
    let from_files = Graph::from_tsv(&n, &e, Some(&x), &GraphConfig::default()).unwrap();
    same_graph(&from_files, &b.build().unwrap());
}

/// Asserts a `Line` error at `line` for `field`, whose message names the file.
fn line_error(e: GraphError, file: &Path, line: u64, field: &str) {
    let msg = e.to_string();
    match e {
        GraphError::Line {
            path,
            line: l,
            field: f,
            ..
        } => {
            assert_eq!((path.as_path(), l, f), (file, line, field), "{msg}");
            assert!(msg.contains(&format!("{}:{line}: field {field}", file.display())));
        }
        other => panic!("expected a line error, got {other:?}"),
    }
}

#[test]
fn bad_nodes_files() {
    let dir = Dir::new();
    let edges = dir.file("edges.tsv", "");
    for (text, line, field, words) in [
        ("0\tconcept\n1\tconcpt\n", 2, "kind", "concept or episode"),
        ("0\tconcept\n# c\nx1\tepisode\n", 3, "id", "node id"),
        ("0\tconcept\n-1\tepisode\n", 2, "id", "node id"),
        ("0\tconcept\n2\tepisode\n", 2, "id", "dense"),
        (
            "0\tconcept\n\n0\tepisode\n",
            3,
            "id",
            "twice (first on line 1)",
        ),
        ("0\n", 1, "line", "2 or 3"),
        ("0\tconcept\tlabel\textra\n", 1, "line", "2 or 3"),
        ("0 concept\n", 1, "line", "TAB"),
        ("0\tconcept\n3000000000\tconcept\n", 2, "id", "largest id"),
    ] {
        let nodes = dir.file("nodes.tsv", text);
        let e = Graph::from_tsv(&nodes, &edges, None, &GraphConfig::default()).unwrap_err();
        assert!(e.to_string().contains(words), "{text:?}: {e}");
        line_error(e, &nodes, line, field);
    }
    let nodes = dir.file("nodes.tsv", b"0\tconcept\n1\tepisode\t\xff\n");
    let e = Graph::from_tsv(&nodes, &edges, None, &GraphConfig::default()).unwrap_err();
    line_error(e, &nodes, 2, "line");
    let missing = dir.path("missing.tsv");
    let e = Graph::from_tsv(&missing, &edges, None, &GraphConfig::default()).unwrap_err();
    assert!(
        matches!(&e, GraphError::Io { path, .. } if path == &missing),
        "{e}"
    );
}

#[test]
fn bad_edges_files() {
    let dir = Dir::new();
    let nodes = dir.file("nodes.tsv", "0\tconcept\n1\tepisode\n2\tconcept\n");
    for (text, line, field, words) in [
        ("0\t1\t0.5\n3\t1\t0.5\n", 2, "src", "out of range"),
        (
            "0\t1\t0.5\n\n1\t7\t0.5\n",
            3,
            "dst",
            "nodes.tsv defines 3 nodes",
        ),
        ("0\t1\t0\n", 1, "weight", "(0, 1]"),
        ("0\t1\t1.5\n", 1, "weight", "(0, 1]"),
        ("0\t1\t-0.25\n", 1, "weight", "(0, 1]"),
        ("0\t1\tNaN\n", 1, "weight", "finite"),
        ("0\t1\tinf\n", 1, "weight", "finite"),
        ("0\t1\theavy\n", 1, "weight", "expected a number"),
        ("0\t1\n", 1, "line", "3 TAB-separated"),
        ("0\t1\t0.5\t9\n", 1, "line", "3 TAB-separated"),
        ("#\n0\tone\t0.5\n", 2, "dst", "node id"),
    ] {
        let edges = dir.file("edges.tsv", text);
        let e = Graph::from_tsv(&nodes, &edges, None, &GraphConfig::default()).unwrap_err();
        assert!(e.to_string().contains(words), "{text:?}: {e}");
        line_error(e, &edges, line, field);
    }
}

#[test]
fn bad_npy_files() {
    let dir = Dir::new();
    let six = f32s(&[1.0; 6]);
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "magic",
            b"NUMPY\x01\x00\x00\x00\x00".to_vec(),
            "magic",
            "not a .npy",
        ),
        (
            "version",
            npy_version(4, "<f4", "False", "(3, 2)", &six),
            "version",
            "4.0",
        ),
        (
            "f8",
            npy("<f8", "False", "(3, 1)", &[0u8; 24]),
            "descr",
            "'<f8'",
        ),
        (
            "big-endian",
            npy(">f4", "False", "(3, 2)", &six),
            "descr",
            "'>f4'",
        ),
        ("int", npy("<i4", "False", "(3, 2)", &six), "descr", "'<i4'"),
        (
            "fortran",
            npy("<f4", "True", "(3, 2)", &six),
            "fortran_order",
            "Fortran",
        ),
        ("1-d", npy("<f4", "False", "(6,)", &six), "shape", "2-d"),
        (
            "3-d",
            npy("<f4", "False", "(3, 1, 2)", &six),
            "shape",
            "2-d",
        ),
        (
            "rows",
            npy("<f4", "False", "(2, 3)", &six),
            "shape",
            "defines 3 nodes",
        ),
        (
            "dim0",
            npy("<f4", "False", "(3, 0)", &[]),
            "shape",
            "1..=4096",
        ),
        (
            "dim-big",
            npy("<f4", "False", "(3, 5000)", &f32s(&vec![1.0; 15_000])),
            "shape",
            "1..=4096",
        ),
        (
            "trailing",
            npy("<f4", "False", "(3, 2)", &f32s(&[1.0; 7])),
            "data",
            "longer",
        ),
        (
            "nan",
            npy(
                "<f4",
                "False",
                "(3, 2)",
                &f32s(&[1.0, 1.0, 1.0, f32::NAN, 1.0, 1.0]),
            ),
            "data",
            "row 1 column 1",
        ),
        (
            "inf16",
            npy(
                "<f2",
                "False",
                "(3, 2)",
                &f16s(&[1.0, 1.0, 1.0, 1.0, f32::INFINITY, 1.0]),
            ),
            "data",
            "row 2 column 0",
        ),
        (
            "overflow",
            npy(
                "<f4",
                "False",
                "(3, 2)",
                &f32s(&[1.0, 1.0, 3e30, 3e30, 1.0, 1.0]),
            ),
            "data",
            "row 1",
        ),
        (
            "header",
            b"\x93NUMPY\x01\x00\x10\x00{'descr'".to_vec(),
            "header",
            "",
        ),
        (
            "keys",
            {
                let mut v = npy("<f4", "False", "(3, 2)", &six);
                let at = v.windows(7).position(|w| w == b"'shape'").unwrap();
                v[at + 5] = b'y';
                v
            },
            "header",
            "shapy",
        ),
    ];
    for (name, bytes, field, words) in cases {
        let p = dir.file(&format!("{name}.npy"), bytes);
        let e = build_three(&dir, Some(&p)).unwrap_err();
        let msg = e.to_string();
        match &e {
            GraphError::Npy { path, field: f, .. } => {
                assert_eq!((path, *f), (&p, field), "{name}: {msg}");
            }
            GraphError::Truncated { path, section, .. } => {
                assert_eq!((path, *section), (&p, field), "{name}: {msg}");
            }
            other => panic!("{name}: unexpected {other:?}"),
        }
        assert!(msg.contains(words), "{name}: {msg}");
        assert!(msg.contains(&p.display().to_string()), "{name}: {msg}");
    }
    // Truncated data.
    let p = dir.file("short.npy", npy("<f4", "False", "(3, 2)", &f32s(&[1.0; 5])));
    match build_three(&dir, Some(&p)).unwrap_err() {
        GraphError::Truncated {
            section,
            needed,
            available,
            ..
        } => {
            assert_eq!(section, "data");
            assert_eq!(needed - available, 4);
        }
        other => panic!("{other:?}"),
    }
}

/// Saves a small graph and returns its bytes.
fn wgraph_bytes(dir: &Dir) -> (PathBuf, Vec<u8>) {
    let g = generate::uniform(50, 200, 4, 3, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    let p = dir.path("g.wgraph");
    g.save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    (p, bytes)
}

/// Rewrites a header field and its checksum.
fn patch_header(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
    let crc = crc32c::crc32c(&bytes[..192]);
    bytes[192..196].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn bad_wgraph_files() {
    let dir = Dir::new();
    let (p, good) = wgraph_bytes(&dir);
    assert_eq!(&good[..8], &WGRAPH_MAGIC);
    let load = |bytes: &[u8]| {
        std::fs::write(&p, bytes).unwrap();
        Graph::load(&p).unwrap_err()
    };
    // Not a wgraph.
    let e = load(b"nodes\tedges\n");
    assert!(
        matches!(&e, GraphError::Format { field: "magic", .. }),
        "{e}"
    );
    // Truncated anywhere: header, or inside any section.
    let sections = [
        "kinds",
        "label_lens",
        "label_text",
        "out_offsets",
        "out_targets",
        "out_weights",
        "embeddings",
    ];
    let mut seen = std::collections::BTreeSet::new();
    for cut in [3usize, 100, 199, 200, 230, good.len() - 1] {
        match load(&good[..cut]) {
            GraphError::Truncated { path, section, .. } => {
                assert_eq!(path, p);
                assert!(
                    section == "header" || sections.contains(&section),
                    "{section}"
                );
                seen.insert(section);
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    assert!(
        seen.contains("header") && seen.contains("embeddings"),
        "{seen:?}"
    );
    // One flipped bit in each section: a checksum error naming it.
    let mut offset = 200u64;
    for (i, name) in sections.iter().enumerate() {
        let len = u64::from_le_bytes(good[80 + 16 * i..88 + 16 * i].try_into().unwrap());
        if len > 0 {
            let mut bad = good.clone();
            bad[(offset + len / 2) as usize] ^= 0x10;
            match load(&bad) {
                GraphError::Checksum { section, .. } => assert_eq!(section, *name),
                other => panic!("{name}: {other:?}"),
            }
        }
        offset += len.div_ceil(8) * 8;
    }
    assert_eq!(offset as usize, good.len());
    // A flipped bit in the header.
    let mut bad = good.clone();
    bad[17] ^= 1;
    assert!(matches!(
        load(&bad),
        GraphError::Checksum {
            section: "header",
            ..
        }
    ));
    // Another version.
    let mut bad = good.clone();
    patch_header(&mut bad, 8, &2u32.to_le_bytes());
    let e = load(&bad);
    assert!(
        matches!(
            &e,
            GraphError::Format {
                field: "version",
                ..
            }
        ),
        "{e}"
    );
    // Counts that disagree with the section lengths.
    let mut bad = good.clone();
    patch_header(&mut bad, 16, &51u64.to_le_bytes());
    let e = load(&bad);
    assert!(
        matches!(
            &e,
            GraphError::Format {
                field: "sections",
                ..
            }
        ),
        "{e}"
    );
    // Bytes after the last section.
    let mut bad = good.clone();
    bad.extend_from_slice(&[0; 8]);
    let e = load(&bad);
    assert!(
        matches!(
            &e,
            GraphError::Format {
                field: "length",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(&p.display().to_string()));
    // The good bytes still load.
    std::fs::write(&p, &good).unwrap();
    assert_eq!(Graph::load(&p).unwrap().node_count(), 50);
}

#[test]
fn bad_graphs_in_memory() {
    let mut b = GraphBuilder::new(GraphConfig::default());
    b.add_node(NodeKind::Concept, None);
    b.add_edge(0, 1, 0.5);
    let e = b.build().unwrap_err().to_string();
    assert!(
        e.contains("edge 0 (0 -> 1)") && e.contains("out of range"),
        "{e}"
    );
    for w in [0.0, 1.01, f64::NAN, f64::INFINITY] {
        let mut b = GraphBuilder::new(GraphConfig::default());
        b.add_node(NodeKind::Concept, None);
        b.add_edge(0, 0, w);
        assert!(b.build().unwrap_err().to_string().contains("(0, 1]"));
    }
    let mut b = GraphBuilder::new(GraphConfig::default());
    b.add_node(NodeKind::Concept, None);
    b.embeddings(3, vec![1.0, 2.0]);
    assert!(
        b.build()
            .unwrap_err()
            .to_string()
            .contains("1 nodes × dimension 3")
    );
    let mut b = GraphBuilder::new(GraphConfig::default());
    b.add_node(NodeKind::Concept, None);
    b.embeddings(2, vec![1.0, f32::NAN]);
    assert!(
        b.build()
            .unwrap_err()
            .to_string()
            .contains("row 0: column 1")
    );
}
