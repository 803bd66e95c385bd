//! The graph bench's own correctness checks (issue 5 item 9), on small graphs: its
//! sequential reference gives warpgrid's spread results bit for bit, its sprs peer computes
//! the same hops (bit for bit where SPEC §2.2 drops nothing and D(k) = 1), its comparisons
//! catch a difference, a whole bench run passes its batched-equals-single and
//! budgeted-equals-unbudgeted checks, and `warpgrid bench graph` writes the JSON report.
//! No timing is asserted.

use warpgrid::bench::graph::{
    self, GraphBenchConfig, SequentialSpread, SprsSpread, build_graph, build_queries, recall_seeds,
    same_recall, same_spread, spaced_seeds, unbudgeted,
};
use warpgrid::engine::graph::{
    Decay, Evaluation, Graph, LatencyPredictor, Seed, SpreadParams, SystemClock,
};
use warpgrid::{BackendKind, Device, DeviceConfig};

fn device(threads: usize) -> Device {
    Device::open(&DeviceConfig {
        backend: BackendKind::Cpu,
        threads,
        ..DeviceConfig::default()
    })
    .expect("cpu device")
}

fn tiny() -> GraphBenchConfig {
    GraphBenchConfig {
        nodes: 400,
        m: 3,
        dim: 16,
        queries: 40,
        batch_sizes: vec![1, 7, 40],
        spread_queries: 12,
        large_seeds: 40,
        large_runs: 2,
        repeats: 2,
        ..GraphBenchConfig::quick()
    }
}

/// Seed lists of every kind the bench uses, plus duplicates and a weak seed.
fn seed_lists(dev: &Device, g: &Graph, cfg: &GraphBenchConfig) -> Vec<Vec<Seed>> {
    let queries = build_queries(g, cfg).unwrap();
    let mut lists: Vec<Vec<Seed>> = queries
        .chunks_exact(g.dim())
        .take(cfg.spread_queries)
        .map(|q| recall_seeds(dev, g, q, &unbudgeted()).unwrap())
        .collect();
    assert!(lists.iter().any(|l| !l.is_empty()), "some query seeds");
    lists.push(spaced_seeds(g, cfg.large_seeds));
    lists.push(spaced_seeds(g, g.node_count()));
    lists.push(vec![
        Seed::new(5, 0.6),
        Seed::new(5, 0.7),
        Seed::new(9, 0.001),
    ]);
    lists
}

#[test]
fn the_sequential_reference_equals_warpgrid_bit_for_bit() {
    let cfg = tiny();
    let g = build_graph(&cfg).unwrap();
    let mut reference = SequentialSpread::new();
    for threads in [1, 3] {
        let dev = device(threads);
        for list in seed_lists(&dev, &g, &cfg) {
            for (evaluation, refractory, decay) in [
                (Evaluation::Auto, false, Decay::default()),
                (Evaluation::Push, true, Decay::default()),
                (Evaluation::Pull, false, Decay::Power { exponent: 0.5 }),
                (Evaluation::Pull, false, Decay::Linear { slope: 0.0 }),
            ] {
                let p = SpreadParams {
                    evaluation,
                    refractory,
                    decay,
                    max_hops: 6,
                    ..SpreadParams::default()
                };
                let want = g.spread(&dev, &list, &p).unwrap();
                let got = reference.spread(&g, &list, &p);
                if let Err(e) = same_spread(&want, &got) {
                    panic!("{threads} threads, {p:?}, seeds {list:?}: {e}");
                }
            }
        }
    }
}

#[test]
fn the_sprs_peer_does_the_same_hops() {
    let cfg = tiny();
    let g = build_graph(&cfg).unwrap();
    let dev = device(2);
    let mut sprs = SprsSpread::new(&g).unwrap();
    // With D(k) = 1 and every threshold 0, SPEC §2.2 drops no contribution, and a row of
    // the mat-vec adds `w' · Δ` in ascending source order: the same bits as warpgrid.
    let exact = SpreadParams {
        decay: Decay::Linear { slope: 0.0 },
        thresholds: [0.0; 3],
        ..SpreadParams::default()
    };
    let lists = seed_lists(&dev, &g, &cfg);
    for list in &lists {
        let want = g.spread(&dev, list, &exact).unwrap();
        let got = sprs.spread(&g, list, &exact);
        if let Err(e) = same_spread(&want, &got) {
            panic!("seeds {list:?}: {e}");
        }
    }
    // With the defaults it differs: it cannot drop single contributions under θ. After one
    // hop it activates every node warpgrid does (its sum includes every contribution
    // warpgrid keeps), at least as much up to rounding (it multiplies by D(k) once per sum
    // rather than once per contribution).
    let one_hop = SpreadParams {
        max_hops: 1,
        ..SpreadParams::default()
    };
    for list in &lists {
        let want = g.spread(&dev, list, &one_hop).unwrap();
        let got = sprs.spread(&g, list, &one_hop);
        for h in &want.hits {
            let x = got.hits.iter().find(|x| x.node == h.node);
            assert!(
                x.is_some_and(|x| x.activation >= h.activation * (1.0 - 1e-5)),
                "{h:?} {x:?}"
            );
        }
    }
}

#[test]
fn the_comparisons_catch_a_difference() {
    let cfg = tiny();
    let g = build_graph(&cfg).unwrap();
    let dev = device(2);
    let list = spaced_seeds(&g, 20);
    let p = SpreadParams::default();
    let want = g.spread(&dev, &list, &p).unwrap();
    assert_eq!(same_spread(&want, &want.clone()), Ok(()));
    let mut bad = want.clone();
    let h = bad.hits.last_mut().unwrap();
    h.activation = f32::from_bits(h.activation.to_bits() + 1);
    assert!(same_spread(&want, &bad).is_err());
    let mut bad = want.clone();
    bad.hops_done += 1;
    assert!(same_spread(&want, &bad).is_err());

    let queries = build_queries(&g, &cfg).unwrap();
    let q = &queries[..g.dim()];
    let r = g
        .recall(
            &dev,
            q,
            &unbudgeted(),
            &SystemClock::new(),
            &mut LatencyPredictor::new(),
        )
        .unwrap();
    assert!(!r.hits.is_empty());
    assert_eq!(same_recall(&r, &r.clone()), Ok(()));
    let mut bad = r.clone();
    bad.hits[0].score = f32::from_bits(bad.hits[0].score.to_bits() ^ 1);
    assert!(same_recall(&r, &bad).is_err());
    let mut bad = r.clone();
    bad.partial = true;
    assert!(same_recall(&r, &bad).is_err());
}

#[test]
fn a_bench_run_passes_its_own_checks() {
    let cfg = tiny();
    let dev = device(2);
    let mut steps = Vec::new();
    let r = graph::run(&dev, &cfg, |m| steps.push(m.to_string())).unwrap();
    assert!(steps.iter().any(|s| s.contains("batched")), "{steps:?}");
    assert_eq!((r.nodes, r.edges, r.dim), (400, 2 * 3 * (400 - 3), 16));
    assert!(r.batch_equal_single);
    assert_eq!(r.batched.len(), 3);
    assert!(r.batched.iter().all(|b| b.recalls_per_s > 0.0));
    assert_eq!(r.budgeted.recalls, cfg.queries * cfg.repeats);
    assert_eq!(
        r.budgeted.partial + r.budgeted.complete_equal_unbudgeted,
        r.budgeted.recalls
    );
    let l = &r.single.latency;
    assert!(0.0 < l.p50_us && l.p50_us <= l.p95_us && l.p95_us <= l.p99_us);
    assert!(l.p99_us <= l.max_us);
    assert_eq!(l.p95_us_by_repeat.len(), cfg.repeats);
    assert_eq!(r.spread.len(), 2);
    for c in &r.spread {
        assert!(c.sequential_equal, "{}", c.case);
        assert_eq!(c.systems.len(), 4);
        assert!(
            c.systems
                .iter()
                .all(|s| s.us_per_spread > 0.0 && s.hops > 0)
        );
        assert!(c.sprs_diff.activated_sprs > 0);
    }
    assert_eq!(r.spread[1].spreads, cfg.large_runs);
    assert!(r.predictor.hops_observed > 0);
    // The recall queue served every recall asked of it (each result is checked inside the
    // run against the query's single recall; a mismatch fails the run).
    let q = &r.queue;
    assert!(q.results_equal);
    assert_eq!(
        q.recalls,
        cfg.queue_recalls.div_ceil(q.clients) as u64 * q.clients as u64
    );
    assert!(q.batches >= 1 && q.batches <= q.recalls);
    assert!((1..=256).contains(&q.final_batch_limit));
    let text = graph::render(&r);
    for needle in [
        "single recall",
        "P95",
        "sequential",
        "sprs csr",
        "predictor",
        "recall queue",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn warpgrid_bench_graph_writes_the_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_warpgrid"))
        .env_remove("WARPGRID_BACKEND")
        .args(["bench", "graph", "--quick", "--nodes", "600", "--dim", "24"])
        .args(["--repeats", "1", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("single recall"), "{text}");
    assert!(text.contains("warpgrid / sequential"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let s = &v["suites"][0];
    assert_eq!(s["bench"], "graph");
    assert_eq!(
        (s["nodes"].as_u64(), s["dim"].as_u64()),
        (Some(600), Some(24))
    );
    assert!(s["single"]["latency"]["p95_us"].as_f64().unwrap() > 0.0);
    assert!(s["single"]["bar_met"].is_boolean());
    assert_eq!(s["batch_equal_single"], true);
    assert!(s["batched"][0]["recalls_per_s"].as_f64().unwrap() > 0.0);
    let case = &s["spread"][0];
    assert_eq!(case["sequential_equal"], true);
    let systems: Vec<&str> = case["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["warpgrid", "warpgrid", "sequential", "sprs csr"]);
    assert!(case["speedup_vs_sequential"].as_f64().unwrap() > 0.0);
    assert!(s["predictor"]["fraction_within_20_percent"].is_number());

    let o = std::process::Command::new(env!("CARGO_BIN_EXE_warpgrid"))
        .args(["bench", "graph", "--dim", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dim"));
}
