//! `warpgrid graph build|info|spread|recall` (SPEC §2.2, §2.3, §5): a hand-computed spread and
//! recall through the CLI, recall equal to the engine's, the JSON field names of SPEC §5,
//! labels as seeds, and bad input naming file, line and field.

use std::path::Path;

use warpgrid::Device;
use warpgrid::engine::graph::{
    GraphConfig, LatencyPredictor, ManualClock, NpyDtype, NpyMatrix, RecallParams, generate,
};

mod common;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = common::warpgrid_with_stdin(args, "");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn graph_spread_through_the_cli_gives_the_hand_computed_activations() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = write(
        dir.path(),
        "nodes.tsv",
        "# id kind label\n0\tconcept\tdog\n1\tconcept\tanimal\n2\tepisode\twalk\n3\tconcept\tcat\n",
    );
    let edges = write(
        dir.path(),
        "edges.tsv",
        "0\t1\t0.9\n2\t0\t0.8\n0\t2\t0.5\n3\t1\t0.9\n1\t3\t0.7\n",
    );
    let g = dir.path().join("g.wgraph");
    let g = g.to_str().unwrap();
    let (ok, out, err) = run(&[
        "graph", "build", "--nodes", &nodes, "--edges", &edges, "-o", g,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("4 nodes, 5 edges"), "{out}");
    let (ok, out, _) = run(&["--json", "graph", "info", g]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["nodes"].as_u64(),
            v["edges"].as_u64(),
            v["episodes"].as_u64()
        ),
        (Some(4), Some(5), Some(1))
    );
    let (ok, out, err) = run(&["graph", "spread", g, "--seed", "dog", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // dog -> animal: w' = f32(0.9 * 0.4) (concept -> concept), D(1) = f32(exp(-0.7));
    // dog -> walk: w' = f32(0.5 * 0.6) (concept -> episode). Hop 2 contributions fall below
    // theta(Warm) = 0.05, so the spread stops after evaluating hop 2.
    let d1 = (-0.7f64).exp() as f32;
    let animal = (1.0f32 * (0.9f64 * 0.4) as f32) * d1;
    let walk = (1.0f32 * (0.5f64 * 0.6) as f32) * d1;
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{out}");
    assert_eq!(
        (hits[0]["node"].as_u64(), hits[0]["activation"].as_f64()),
        (Some(0), Some(1.0))
    );
    assert_eq!(hits[1]["label"], "animal");
    assert_eq!(hits[1]["activation"].as_f64().unwrap() as f32, animal);
    assert_eq!(
        hits[1]["confidence"].as_f64().unwrap() as f32,
        animal * 0.95
    );
    assert_eq!(hits[1]["first_hop"], 1);
    assert_eq!(hits[2]["activation"].as_f64().unwrap() as f32, walk);
    assert_eq!(v["hops_done"], 2);
    let (_, out, _) = run(&["graph", "spread", g, "--seed", "0:0.5", "--top", "1"]);
    assert_eq!(out.lines().count(), 2, "header and one hit: {out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("0\tdog\t0.500000"),
        "{out}"
    );
}

#[test]
fn bad_graph_input_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = write(dir.path(), "nodes.tsv", "0\tconcept\n1\tconcept\n");
    let out = dir.path().join("g.wgraph");
    let out = out.to_str().unwrap();
    let cases = [
        ("edges.tsv", "0\t1\t0.5\n1\t0\t1.5\n", ":2"),
        ("edges.tsv", "0\t1\t0.5\n0\t7\t0.5\n", ":2"),
        ("edges.tsv", "0\t1\tNaN\n", ":1"),
    ];
    for (name, text, want) in cases {
        let edges = write(dir.path(), name, text);
        let (ok, _, err) = run(&[
            "graph", "build", "--nodes", &nodes, "--edges", &edges, "-o", out,
        ]);
        assert!(!ok, "{text:?}");
        assert!(err.contains(&format!("edges.tsv{want}")), "{text:?}: {err}");
    }
    let bad_nodes = write(dir.path(), "bad-nodes.tsv", "0\tconcept\n1\tthing\n");
    let edges = write(dir.path(), "edges.tsv", "0\t1\t0.5\n");
    let (ok, _, err) = run(&[
        "graph", "build", "--nodes", &bad_nodes, "--edges", &edges, "-o", out,
    ]);
    assert!(!ok && err.contains("bad-nodes.tsv:2"), "{err}");
    let (ok, _, _) = run(&[
        "graph", "build", "--nodes", &nodes, "--edges", &edges, "-o", out,
    ]);
    assert!(ok);
    for (args, want) in [
        (vec!["--seed", "fox"], "no node has the label"),
        (vec!["--seed", "9"], "node 9 is out of range"),
        (vec!["--seed-label", "0"], "no node has the label \"0\""),
        (vec![], "give at least one --seed"),
        (
            vec!["--seed", "0", "--no-hierarchical"],
            "graph build --no-hierarchical",
        ),
        (
            vec!["--seed", "0", "--multipliers", "1,1,1,1"],
            "rebuild it with `graph build --multipliers 1,1,1,1`",
        ),
        (vec!["--seed", "0", "--max-hops", "0"], "--max-hops"),
        (vec!["--seed", "0", "--decay", "cubic:2"], "--decay"),
        (
            vec!["--seed", "0", "--thresholds", "0.1,0.2"],
            "--thresholds",
        ),
    ] {
        let mut a = vec!["graph", "spread", out];
        a.extend(args.iter().copied());
        let (ok, _, err) = run(&a);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }
}

fn write_npy(path: &Path, rows: usize, cols: usize, data: Vec<f32>, dtype: NpyDtype) -> String {
    NpyMatrix {
        rows,
        cols,
        dtype,
        data,
    }
    .write(path, dtype)
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// A three-node graph with 2-d embeddings: e0 = (1, 0), e1 = (0, 1), e2 = (0.6, 0.8).
fn tiny_embedded_graph(dir: &Path) -> String {
    let nodes = write(
        dir,
        "nodes.tsv",
        "0\tconcept\tx\n1\tconcept\ty\n2\tepisode\txy\n",
    );
    let edges = write(dir, "edges.tsv", "0\t1\t0.5\n");
    let emb = write_npy(
        &dir.join("emb.npy"),
        3,
        2,
        vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8],
        NpyDtype::F32,
    );
    let g = dir.join("g.wgraph").to_str().unwrap().to_owned();
    let (ok, _, err) = run(&[
        "graph",
        "build",
        "--nodes",
        &nodes,
        "--edges",
        &edges,
        "--embeddings",
        &emb,
        "-o",
        &g,
    ]);
    assert!(ok, "{err}");
    g
}

#[test]
fn graph_recall_in_similarity_mode_gives_the_hand_computed_hits() {
    let dir = tempfile::tempdir().unwrap();
    let g = tiny_embedded_graph(dir.path());
    // Query (2, 0) normalises to (1, 0): sims 1, 0 and f16(0.6) = 0.60009766; node 1 is below
    // θs = 0.4. a0 = 1 / (1 + exp(-(sim - 0.4) / 0.5)).
    let q = write_npy(
        &dir.path().join("q.npy"),
        1,
        2,
        vec![2.0, 0.0],
        NpyDtype::F16,
    );
    let (ok, out, err) = run(&[
        "graph",
        "recall",
        &g,
        "--queries",
        &q,
        "--mode",
        "similarity",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let query = &v["queries"][0];
    assert_eq!(query["partial"], false);
    assert_eq!(query["hops_done"], 0);
    let hits = query["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{out}");
    let a0 =
        |sim: f64| (1.0 / (1.0 + (-(sim - f64::from(0.4f32)) / f64::from(0.5f32)).exp())) as f32;
    // 0.6 rounded to f16 (bits 0x38cd): 1229 / 2048.
    let sim2 = 1229.0f32 / 2048.0;
    for (hit, (node, label, sim)) in hits.iter().zip([(0, "x", 1.0f32), (2, "xy", sim2)]) {
        assert_eq!(hit["node"], node);
        assert_eq!(hit["label"], label);
        assert_eq!(hit["score"].as_f64().unwrap() as f32, sim);
        assert_eq!(hit["sim"].as_f64().unwrap() as f32, sim);
        assert_eq!(
            hit["activation"].as_f64().unwrap() as f32,
            a0(f64::from(sim))
        );
        assert_eq!(
            hit["confidence"].as_f64().unwrap() as f32,
            a0(f64::from(sim))
        );
        assert_eq!(hit["first_hop"], 0);
    }
    // TSV: a header, a line per query, a line per hit.
    let (ok, out, err) = run(&[
        "graph",
        "recall",
        &g,
        "--queries",
        &q,
        "--mode",
        "similarity",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].starts_with("# query 0: 2 hits"), "{out}");
    assert!(lines[2].starts_with("0\t1\t0\tx\t1.000000\t"), "{out}");
    assert!(lines[3].starts_with("0\t2\t2\txy\t0.600098\t"), "{out}");
}

#[test]
fn graph_recall_through_the_cli_equals_the_engine_for_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let builder = generate::barabasi_albert(400, 3, 16, 11, GraphConfig::default()).unwrap();
    let (nodes, edges, emb) = (
        dir.path().join("n.tsv"),
        dir.path().join("e.tsv"),
        dir.path().join("x.npy"),
    );
    builder.write_tsv(&nodes, &edges, Some(&emb)).unwrap();
    let g = dir.path().join("g.wgraph");
    let (ok, _, err) = run(&[
        "graph",
        "build",
        "--nodes",
        nodes.to_str().unwrap(),
        "--edges",
        edges.to_str().unwrap(),
        "--embeddings",
        emb.to_str().unwrap(),
        "-o",
        g.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let graph = warpgrid::engine::graph::Graph::load(&g).unwrap();
    let queries = generate::queries_near(&graph, 70, 0.05, 5).unwrap();
    let q = write_npy(
        &dir.path().join("q.npy"),
        70,
        16,
        queries.clone(),
        NpyDtype::F32,
    );
    let device = Device::cpu().unwrap();
    for mode in ["similarity", "spreading", "hybrid"] {
        // Budget 0: the CLI batches the queries; with the default budget it runs them one by
        // one. Neither budget is reached on this graph, so both equal the engine's results.
        for budget in ["0", "10000"] {
            let (ok, out, err) = run(&[
                "--json",
                "graph",
                "recall",
                g.to_str().unwrap(),
                "--queries",
                &q,
                "--mode",
                mode,
                "--k",
                "25",
                "--budget-ms",
                budget,
            ]);
            assert!(ok, "{err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let got = v["queries"].as_array().unwrap();
            assert_eq!(got.len(), 70);
            let params = RecallParams {
                k: 25,
                mode: warpgrid::engine::graph::RecallMode::parse(mode).unwrap(),
                budget: std::time::Duration::ZERO,
                ..RecallParams::default()
            };
            let clock = ManualClock::new();
            let mut predictor = LatencyPredictor::new();
            for (i, row) in queries.chunks_exact(16).enumerate() {
                let want = graph
                    .recall(&device, row, &params, &clock, &mut predictor)
                    .unwrap();
                let hits = got[i]["hits"].as_array().unwrap();
                assert_eq!(hits.len(), want.hits.len(), "{mode} query {i}");
                assert_eq!(got[i]["hops_done"], want.hops_done, "{mode} query {i}");
                assert_eq!(got[i]["partial"], false);
                for (h, w) in hits.iter().zip(&want.hits) {
                    assert_eq!(h["node"], w.node);
                    assert_eq!(h["score"].as_f64().unwrap() as f32, w.score);
                    assert_eq!(h["activation"].as_f64().unwrap() as f32, w.activation);
                    assert_eq!(h["confidence"].as_f64().unwrap() as f32, w.confidence);
                    assert_eq!(h["sim"].as_f64().map(|s| s as f32), w.sim);
                    assert_eq!(h["first_hop"], w.first_hop);
                }
            }
            assert!(
                got.iter().any(|q| q["hops_done"].as_u64().unwrap() > 1) || mode == "similarity",
                "the queries should spread at least two hops"
            );
        }
    }
}

#[test]
fn bad_recall_input_names_the_file_and_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let g = tiny_embedded_graph(dir.path());
    let good = write_npy(
        &dir.path().join("good.npy"),
        1,
        2,
        vec![1.0, 0.0],
        NpyDtype::F32,
    );
    let wide = write_npy(
        &dir.path().join("wide.npy"),
        1,
        3,
        vec![1.0, 0.0, 0.0],
        NpyDtype::F32,
    );
    let zero = write_npy(
        &dir.path().join("zero.npy"),
        2,
        2,
        vec![1.0, 0.0, 0.0, 0.0],
        NpyDtype::F32,
    );
    let truncated = dir.path().join("short.npy");
    let bytes = std::fs::read(dir.path().join("good.npy")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 2]).unwrap();
    let truncated = truncated.to_str().unwrap().to_owned();
    let missing = dir.path().join("nope.npy").to_str().unwrap().to_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--queries", &wide], "wide.npy: shape (1, 3)"),
        (vec!["--queries", &zero], "zero.npy: query 1"),
        (vec!["--queries", &truncated], "short.npy"),
        (vec!["--queries", &missing], "nope.npy"),
        (vec!["--queries", &good, "--mode", "fuzzy"], "--mode fuzzy"),
        (vec!["--queries", &good, "--k", "0"], "--k"),
        (vec!["--queries", &good, "--k", "1001"], "--k"),
        (vec!["--queries", &good, "--seeds-k", "0"], "--seeds-k"),
        (
            vec!["--queries", &good, "--temperature", "0"],
            "--temperature",
        ),
        (vec!["--queries", &good, "--budget-ms", "-1"], "--budget-ms"),
        (vec!["--queries", &good, "--decay", "exp"], "--decay"),
    ];
    for (args, want) in cases {
        let mut a = vec!["graph", "recall", &g];
        a.extend(args.iter().copied());
        let (ok, out, err) = run(&a);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A graph without embeddings cannot be recalled from.
    let nodes = write(dir.path(), "plain-nodes.tsv", "0\tconcept\n1\tconcept\n");
    let edges = write(dir.path(), "plain-edges.tsv", "0\t1\t0.5\n");
    let plain = dir.path().join("plain.wgraph").to_str().unwrap().to_owned();
    let (ok, _, _) = run(&[
        "graph", "build", "--nodes", &nodes, "--edges", &edges, "-o", &plain,
    ]);
    assert!(ok);
    let (ok, _, err) = run(&["graph", "recall", &plain, "--queries", &good]);
    assert!(!ok && err.contains("no embeddings"), "{err}");
}

/// `warpgrid graph spread ... | head -c 100`: the reader leaves long before the output ends;
/// the command exits quietly instead of panicking on the broken pipe.
#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let n = 6000;
    let nodes: String = (0..n)
        .map(|v| format!("{v}\tconcept\tnode-{v}\n"))
        .collect();
    let edges: String = (1..n).map(|v| format!("0\t{v}\t1\n")).collect();
    let nodes = write(dir.path(), "nodes.tsv", &nodes);
    let edges = write(dir.path(), "edges.tsv", &edges);
    let g = dir.path().join("g.wgraph").to_str().unwrap().to_owned();
    let (ok, _, err) = run(&[
        "graph",
        "build",
        "--nodes",
        &nodes,
        "--edges",
        &edges,
        "-o",
        &g,
        "--no-hierarchical",
    ]);
    assert!(ok, "{err}");
    // About 6000 hits of ~40 bytes: far more than a pipe holds, so later writes must fail.
    let script = format!(
        "{} graph spread {g} --seed 0 --json | head -c 100 >/dev/null",
        env!("CARGO_BIN_EXE_warpgrid")
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {script}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(o.status.success(), "{stderr}");
}
