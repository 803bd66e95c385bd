//! `warpgrid graph build|info|spread` (SPEC §2.2, §5): a hand-computed spread through the CLI,
//! the JSON field names of SPEC §5, labels as seeds, and bad input naming file, line and field.

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
        (vec!["--seed", "9"], "9"),
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
