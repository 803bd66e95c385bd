//! `warpgrid graph import-wordnet` (issue 5 item 7): the fixture database through the CLI,
//! its summary and JSON, a hand-computed spread from a WordNet label, bad arguments and a
//! missing database named in the error; and the real WordNet 3.0 when it is installed.

mod common;

#[path = "../host/tests/wordnet/fixture.rs"]
mod fixture;

use std::path::Path;

fn run(args: &[&str]) -> (bool, String, String) {
    let o = common::warpgrid_with_stdin(args, "");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn import_prints_the_report_and_spread_finds_the_neighbours_of_dog() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write(dir.path());
    let g = dir.path().join("wn.wgraph");
    let (db, g) = (dir.path().to_str().unwrap(), g.to_str().unwrap());
    let (ok, out, err) = run(&["graph", "import-wordnet", db, "-o", g]);
    assert!(ok, "{err}");
    assert!(
        out.contains(
            ": 21 synsets (8 noun, 5 verb, 6 adj incl. 3 satellites, 2 adv), 33 pointers (12 \
             lexical) -> 32 edges added, 29 after merging duplicates; skipped 1 pointers from a \
             synset to itself and 0 of relations with weight 0\n"
        ),
        "{out}"
    );
    assert!(out.contains("\nhypernym\t@\t1\t3\n"), "{out}");
    assert!(
        out.contains("\nmember_of_domain_topic\t-c\t0.2\t1\n"),
        "{out}"
    );

    let (ok, out, err) = run(&[
        "--json", "graph", "spread", g, "--seed", "dog.n.01", "--top", "10",
    ]);
    assert!(ok, "{err}");
    let v = json(&out);
    // Hop 1 from dog.n.01 (concept -> concept, m = 0.4): hypernym 1.0, member holonym 0.8,
    // derivation 0.6 (to the verb chase), domain topic 0.5. Hop 2 contributions stay below
    // theta(Warm) = 0.05 (at most 0.199 * 0.4 * exp(-1.4)), so the spread stops there.
    let d1 = (-0.7f64).exp() as f32;
    let expected = [
        ("dog.n.01", 1.0f32, 0),
        ("canine.n.01", (1.0f32 * (1.0f64 * 0.4) as f32) * d1, 1),
        ("pack.n.01", (1.0f32 * (0.8f64 * 0.4) as f32) * d1, 1),
        ("chase.v.01", (1.0f32 * (0.6f64 * 0.4) as f32) * d1, 1),
        ("zoology.n.01", (1.0f32 * (0.5f64 * 0.4) as f32) * d1, 1),
    ];
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), expected.len(), "{out}");
    for (hit, (label, activation, hop)) in hits.iter().zip(expected) {
        assert_eq!(hit["label"], label, "{out}");
        assert_eq!(
            hit["activation"].as_f64().unwrap() as f32,
            activation,
            "{label}"
        );
        assert_eq!(hit["first_hop"], hop, "{label}");
    }
    assert_eq!(v["hops_done"], 2);
}

#[test]
fn import_json_reports_counts_weights_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write(dir.path());
    let g = dir.path().join("wn.wgraph");
    let (db, g) = (dir.path().to_str().unwrap(), g.to_str().unwrap());
    let (ok, out, err) = run(&[
        "graph",
        "import-wordnet",
        db,
        "-o",
        g,
        "--json",
        "--no-hierarchical",
        "--weight",
        "antonym=0",
        "--weight",
        "@=0.5",
    ]);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(
        (v["nodes"].as_u64(), v["edges"].as_u64()),
        (Some(21), Some(25))
    );
    assert_eq!(v["synsets"]["noun"], 8);
    assert_eq!(v["synsets"]["adj"], 6);
    assert_eq!(v["satellites"], 3);
    assert_eq!(
        (v["pointers"].as_u64(), v["edges_added"].as_u64()),
        (Some(33), Some(28))
    );
    assert_eq!(
        (v["skipped_self"].as_u64(), v["skipped_disabled"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(v["hierarchical"], false);
    let relations = v["relations"].as_array().unwrap();
    assert_eq!(relations.len(), 26);
    assert_eq!(relations[0]["name"], "hypernym");
    assert_eq!(relations[0]["weight"], 0.5);
    assert_eq!(relations[0]["edges"], 3);
    let antonym = relations.iter().find(|r| r["symbol"] == "!").unwrap();
    assert_eq!(
        (antonym["weight"].as_f64(), antonym["edges"].as_u64()),
        (Some(0.0), Some(0))
    );

    let (ok, out, _) = run(&["--json", "graph", "info", g]);
    assert!(ok);
    let v = json(&out);
    assert_eq!(
        (v["concepts"].as_u64(), v["episodes"].as_u64()),
        (Some(13), Some(8))
    );
    assert_eq!(v["multipliers"], serde_json::json!([1.0, 1.0, 1.0, 1.0]));
}

#[test]
fn bad_arguments_and_a_missing_database_fail_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("wn.wgraph");
    let g = g.to_str().unwrap();
    let missing = dir.path().join("none");
    let (ok, _, err) = run(&[
        "graph",
        "import-wordnet",
        missing.to_str().unwrap(),
        "-o",
        g,
    ]);
    assert!(!ok);
    assert!(err.contains("none/data.noun: cannot read"), "{err}");
    assert!(!Path::new(g).exists(), "nothing written");

    fixture::write(dir.path());
    let db = dir.path().to_str().unwrap();
    let (ok, _, err) = run(&[
        "graph",
        "import-wordnet",
        db,
        "-o",
        g,
        "--weight",
        "hypernym=2",
    ]);
    assert!(!ok);
    assert!(
        err.contains("--weight hypernym=2: invalid weight for relation hypernym"),
        "{err}"
    );
    let (ok, _, err) = run(&[
        "graph",
        "import-wordnet",
        db,
        "-o",
        g,
        "--multipliers",
        "1,2",
    ]);
    assert!(!ok);
    assert!(err.contains("--multipliers 1,2: expected 4"), "{err}");
    let (ok, _, err) = run(&[
        "graph",
        "import-wordnet",
        db,
        "-o",
        g,
        "--multipliers",
        "1,1,1,0",
    ]);
    assert!(!ok);
    assert!(
        err.contains("multiplier EE must be finite and > 0"),
        "{err}"
    );
    assert!(!Path::new(g).exists(), "nothing written");
}

#[test]
fn the_real_wordnet_imports_and_spreads_from_dog() {
    let db = "/usr/share/wordnet";
    if !Path::new(db).join("data.noun").exists() {
        eprintln!("skipped: {db}/data.noun not found (apt-get install wordnet-base)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("wordnet.wgraph");
    let g = g.to_str().unwrap();
    let (ok, out, err) = run(&["--json", "graph", "import-wordnet", db, "-o", g]);
    assert!(ok, "{err}");
    let v = json(&out);
    assert_eq!(
        (v["nodes"].as_u64(), v["edges"].as_u64()),
        (Some(117_659), Some(361_638))
    );
    let (ok, out, err) = run(&[
        "--json", "graph", "spread", g, "--seed", "dog.n.01", "--top", "3",
    ]);
    assert!(ok, "{err}");
    let v = json(&out);
    let labels: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["label"].as_str().unwrap())
        .collect();
    // The two hypernyms tie (weight 1.0) and come in node order.
    assert_eq!(labels, ["dog.n.01", "domestic_animal.n.01", "canine.n.02"]);
}
