//! The users' view (issue 10): the demo runs all three workloads and ends with its report;
//! `--report DIR` on `run`, `demo`, `braid run` and `bench` writes SVG charts (well-formed
//! XML with an `<svg>` root, showing every series its report.json holds), report.json (the
//! data the charts are drawn from, which is the run's own report) and an index.html that
//! shows every chart; a `--report` that is not a directory is refused before any work.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use xml::reader::{EventReader, XmlEvent};

fn warpgrid() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warpgrid"));
    c.env_remove("WARPGRID_BACKEND");
    c
}

fn run(args: &[&str]) -> Output {
    warpgrid().args(args).output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 output")
}

fn examples(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(file)
        .display()
        .to_string()
}

/// Parses `text` as XML: the root element's name, every attribute value, and all text.
fn parse_xml(text: &str, what: &str) -> (String, Vec<String>, String) {
    let mut root = None;
    let mut attrs = Vec::new();
    let mut all_text = String::new();
    for event in EventReader::from_str(text) {
        match event.unwrap_or_else(|e| panic!("{what} is not well-formed XML: {e}")) {
            XmlEvent::StartElement {
                name, attributes, ..
            } => {
                root.get_or_insert(name.local_name);
                attrs.extend(attributes.into_iter().map(|a| a.value));
            }
            XmlEvent::Characters(t) | XmlEvent::CData(t) => {
                all_text.push_str(&t);
                all_text.push('\n');
            }
            _ => {}
        }
    }
    (root.expect("a root element"), attrs, all_text)
}

/// Checks a report directory: report.json names every chart; each chart's SVG is XML with
/// an `<svg>` root that shows its title and every series name; index.html is XML that
/// shows every chart and links report.json; no SVG lies there that the JSON does not
/// hold. Returns report.json.
fn check_report_dir(dir: &Path, want_charts: &[&str]) -> Value {
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json")).expect("report.json is there"),
    )
    .expect("report.json is JSON");
    let charts = json["charts"].as_array().expect("a charts list");
    let files: Vec<&str> = charts.iter().map(|c| c["file"].as_str().unwrap()).collect();
    for want in want_charts {
        assert!(files.contains(want), "chart {want} missing: {files:?}");
    }
    for c in charts {
        let file = c["file"].as_str().unwrap();
        let svg = std::fs::read_to_string(dir.join(file)).expect("the chart's SVG is there");
        let (root, _, text) = parse_xml(&svg, file);
        assert_eq!(root, "svg", "{file}");
        assert!(
            text.contains(c["title"].as_str().unwrap()),
            "{file} lacks its title"
        );
        for s in c["series"].as_array().unwrap() {
            let name = s["name"].as_str().unwrap();
            assert!(text.contains(name), "{file} lacks series {name:?}");
        }
        match c["kind"].as_str().unwrap() {
            "bars" => {
                let n = c["categories"].as_array().unwrap().len();
                for s in c["series"].as_array().unwrap() {
                    assert_eq!(s["values"].as_array().unwrap().len(), n, "{file}");
                }
                for cat in c["categories"].as_array().unwrap() {
                    assert!(text.contains(cat.as_str().unwrap()), "{file}: {cat}");
                }
            }
            "lines" => {
                for s in c["series"].as_array().unwrap() {
                    assert!(!s["points"].as_array().unwrap().is_empty(), "{file}");
                }
            }
            other => panic!("{file}: unknown chart kind {other}"),
        }
    }
    let html = std::fs::read_to_string(dir.join("index.html")).expect("index.html is there");
    let (root, attrs, _) = parse_xml(&html, "index.html");
    assert_eq!(root, "html");
    for f in &files {
        assert!(attrs.iter().any(|a| a == f), "index.html does not show {f}");
    }
    assert!(attrs.iter().any(|a| a == "report.json"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".svg") {
            assert!(
                files.contains(&name.as_str()),
                "{name} is not in report.json"
            );
        }
    }
    json
}

fn chart<'a>(json: &'a Value, file: &str) -> &'a Value {
    json["charts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == file)
        .unwrap_or_else(|| panic!("no chart {file}"))
}

/// The torus digests a text report prints.
fn digests(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("torus "))
        .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
        .collect()
}

#[test]
fn the_demo_runs_all_three_workloads_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("demo-report");
    let o = run(&["demo", "--report", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "job demo: ",
        "ycsb-b load: 200000 records",
        "ycsb-b run: 400000 ops",
        "graph recall: 2000 queries, hybrid",
        "20000 nodes",
        "braid demo-braid.toml: 3 tori of 16x16x16, to instant 3000",
        "exchanges, interval",
        "boundary",
        "host cache ",
        "% hits",
        "report: ",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert_eq!(digests(&out).len(), 3, "{out}");

    let json = check_report_dir(
        &report,
        &[
            "throughput.svg",
            "latency.svg",
            "braid-interval-step5.svg",
            "braid-violations-step5.svg",
            "braid-tori-step5.svg",
            "shards-usertable.svg",
        ],
    );
    // The charts plot the run's own figures.
    let r = &json["report"];
    let steps = r["steps"].as_array().unwrap();
    let working: Vec<f64> = steps
        .iter()
        .filter(|s| s["ops"].as_u64().unwrap() > 0)
        .map(|s| s["ops_per_s"].as_f64().unwrap())
        .collect();
    let plotted: Vec<f64> = chart(&json, "throughput.svg")["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(plotted, working);
    let braid = &steps[4]["braid"];
    let history = braid["history"].as_array().unwrap();
    assert_eq!(
        history.len() as u64,
        braid["exchanges"].as_u64().unwrap(),
        "a point per exchange"
    );
    let last = history.last().unwrap();
    assert_eq!(last["boundary_violations"], braid["boundary_violations"]);
    assert_eq!(
        chart(&json, "braid-interval-step5.svg")["series"][0]["points"]
            .as_array()
            .unwrap()
            .len(),
        braid["interval_history"].as_array().unwrap().len()
    );
    let table = &r["tables"][0];
    assert_eq!(table["shards"].as_array().unwrap().len(), 24);
    let items: u64 = table["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["items"].as_u64().unwrap())
        .sum();
    assert_eq!(items, table["items"].as_u64().unwrap());
    assert!(table["cache_hit_rate"].as_f64().unwrap() > 0.0);
    let graph = &steps[3]["graph"];
    assert_eq!(graph["recalls"], 2000);
    assert_eq!(graph["nodes"], 20000);

    // `demo` is the job of examples/demo.toml: the same braid, digest for digest.
    let o = run(&["run", &examples("demo.toml")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(digests(&stdout(&o)), digests(&out));
}

#[test]
fn braid_run_reports_its_exchanges_without_changing_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("braid");
    let config = examples("demo-braid.toml");
    let o = run(&[
        "braid",
        "run",
        &config,
        "--instants",
        "600",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = check_report_dir(
        &report,
        &[
            "braid-interval-run.svg",
            "braid-violations-run.svg",
            "braid-tori-run.svg",
            "braid-latency.svg",
        ],
    );
    let r = &json["report"];
    assert_eq!(
        r["history"].as_array().unwrap().len() as u64,
        r["exchanges"].as_u64().unwrap()
    );
    // Stopping at every exchange gives the digests of a plain run.
    let plain = run(&["braid", "run", &config, "--instants", "600", "--json"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(plain["tori"], r["tori"]);
    assert_eq!(plain["boundary_violations"], r["boundary_violations"]);
    assert_eq!(plain["interval_history"], r["interval_history"]);
}

#[test]
fn bench_kv_reports_warpgrid_beside_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench");
    let out = dir.path().join("bench.json");
    let o = run(&[
        "bench",
        "kv",
        "--quick",
        "--keys",
        "20000",
        "--repeats",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = check_report_dir(&report, &["kv-throughput.svg"]);
    let c = chart(&json, "kv-throughput.svg");
    let cats: Vec<&str> = c["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(cats.iter().any(|c| c.starts_with("warpgrid")), "{cats:?}");
    assert!(cats.iter().any(|c| c.starts_with("hashbrown")), "{cats:?}");
    assert!(cats.iter().any(|c| c.starts_with("dashmap")), "{cats:?}");
    let systems = json["report"]["suites"][0]["systems"].as_array().unwrap();
    let puts: Vec<f64> = systems
        .iter()
        .map(|s| s["put_mops"].as_f64().unwrap())
        .collect();
    let plotted: Vec<f64> = c["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(plotted, puts);
}

#[test]
fn a_report_path_that_is_a_file_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "not a directory").unwrap();
    for args in [
        vec!["run", &examples("demo.toml")],
        vec!["braid", "run", &examples("demo-braid.toml")],
        vec!["bench", "kv", "--quick"],
        vec!["demo"],
    ] {
        let mut args: Vec<&str> = args.iter().map(|s| &**s).collect();
        args.extend(["--report", file.to_str().unwrap()]);
        let o = run(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("--report") && err.contains("expected a directory"),
            "{args:?}: {err}"
        );
        assert!(stdout(&o).is_empty(), "{args:?} ran: {}", stdout(&o));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a directory");
}

#[test]
fn bad_graph_steps_name_the_job_step_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    for (step, want) in [
        (
            "kind = \"graph_recall\"\nnodes = 100\nmode = \"fuzzy\"",
            "step 1 (graph_recall): mode = \"fuzzy\": expected",
        ),
        (
            "kind = \"graph_recall\"\nnodes = 100\ndim = 0",
            "step 1 (graph_recall): ",
        ),
        (
            "kind = \"graph_recall\"\ngraph = \"missing.wgraph\"",
            "missing.wgraph",
        ),
        (
            "kind = \"graph_recall\"\nnodes = 100\ncolour = 3",
            "line 1, column 1: unknown field `colour`",
        ),
    ] {
        std::fs::write(&job, format!("[[steps]]\n{step}\n")).unwrap();
        let o = run(&["run", job.to_str().unwrap()]);
        assert!(!o.status.success(), "{step}");
        let err = stderr(&o);
        assert!(
            err.contains("job.toml") && err.contains(want),
            "{step}: {err}"
        );
    }
}

#[test]
fn graph_steps_recall_from_a_wgraph_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut nodes = String::new();
    let mut edges = String::new();
    for i in 0..50u32 {
        nodes.push_str(&format!("{i}\tconcept\tn{i}\n"));
        edges.push_str(&format!("{i}\t{}\t0.5\n", (i + 1) % 50));
    }
    std::fs::write(d.join("nodes.tsv"), nodes).unwrap();
    std::fs::write(d.join("edges.tsv"), edges).unwrap();
    // A float32 .npy of shape (50, 4): node i points along axis i % 4.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (50, 4), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(h.len() as u16).to_le_bytes());
    npy.extend_from_slice(h.as_bytes());
    for i in 0..50 {
        for j in 0..4 {
            let v: f32 = if i % 4 == j { 1.0 } else { 0.1 };
            npy.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(d.join("emb.npy"), npy).unwrap();
    let g = d.join("g.wgraph");
    let o = run(&[
        "graph",
        "build",
        "--nodes",
        d.join("nodes.tsv").to_str().unwrap(),
        "--edges",
        d.join("edges.tsv").to_str().unwrap(),
        "--embeddings",
        d.join("emb.npy").to_str().unwrap(),
        "-o",
        g.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = d.join("job.toml");
    std::fs::write(
        &job,
        "[[steps]]\nkind = \"graph_recall\"\ngraph = \"g.wgraph\"\nqueries = 40\nclients = 2\n",
    )
    .unwrap();
    let o = run(&["run", job.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = &r["steps"][0]["graph"];
    assert_eq!(g["nodes"], 50);
    assert_eq!(g["edges"], 50);
    assert_eq!(g["dim"], 4);
    assert_eq!(g["recalls"], 40);
    assert!(g["source"].as_str().unwrap().ends_with("g.wgraph"));
    assert_eq!(r["steps"][0]["latency_ns"]["count"], 40);
    // Recall is reproducible run to run: the same results digest.
    let again = run(&["run", job.to_str().unwrap(), "--json"]);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    if g["partial"] == 0 && again["steps"][0]["graph"]["partial"] == 0 {
        assert_eq!(
            again["steps"][0]["graph"]["results_digest"],
            g["results_digest"]
        );
    }
}
