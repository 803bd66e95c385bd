//! Graph conformance on the GPU backends, wgpu and CUDA (SPEC §0, §2): spread and recall on
//! generated graphs against the CPU reference — activations within 1e-5 absolute, the same
//! result sets and order except where scores tie within 1e-6, the same hops and first hops —
//! and each backend's result reproducible run to run. A backend that cannot run here is
//! skipped with a printed reason, unless `WARPGRID_REQUIRE_WGPU=1` (CI, on lavapipe) or
//! `WARPGRID_REQUIRE_CUDA=1` makes that a failure.

use std::time::Duration;

use warpgrid_engine::graph::{
    Decay, Evaluation, Graph, GraphBuilder, GraphConfig, LatencyPredictor, ManualClock, NodeKind,
    RecallMode, RecallParams, RecallResult, Seed, SpreadParams, SpreadResult, generate,
};
use warpgrid_engine::{BackendKind, Device};

#[path = "gpu/open.rs"]
mod gpu_open;
use gpu_open::{gpus, open, wgpu};

const ACTIVATION_TOLERANCE: f32 = 1e-5;
const TIE: f32 = 1e-6;

/// Same nodes in the same order (positions may swap only between scores within 1e-6), values
/// within 1e-5, same first hops.
fn assert_close(what: &str, cpu: &[(u32, f32, f32, u32)], gpu: &[(u32, f32, f32, u32)]) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: hit counts differ");
    let mut by_node: Vec<_> = cpu.to_vec();
    by_node.sort_by_key(|h| h.0);
    for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        if c.0 != g.0 {
            assert!(
                (c.1 - g.1).abs() <= TIE,
                "{what}: position {i}: node {} vs {} with scores {} and {}",
                c.0,
                g.0,
                c.1,
                g.1
            );
        }
        let twin = by_node
            .binary_search_by_key(&g.0, |h| h.0)
            .map(|j| by_node[j])
            .unwrap_or_else(|_| panic!("{what}: node {} only on the gpu", g.0));
        assert!(
            (twin.1 - g.1).abs() <= ACTIVATION_TOLERANCE
                && (twin.2 - g.2).abs() <= ACTIVATION_TOLERANCE,
            "{what}: node {}: cpu {:?}, gpu {:?}",
            g.0,
            twin,
            g
        );
        assert_eq!(twin.3, g.3, "{what}: node {}: first hop", g.0);
    }
}

fn spread_hits(r: &SpreadResult) -> Vec<(u32, f32, f32, u32)> {
    r.hits
        .iter()
        .map(|h| (h.node, h.activation, h.confidence, h.first_hop))
        .collect()
}

fn recall_hits(r: &RecallResult) -> Vec<(u32, f32, f32, u32)> {
    r.hits
        .iter()
        .map(|h| (h.node, h.score, h.activation, h.first_hop))
        .collect()
}

fn graphs() -> Vec<(&'static str, Graph)> {
    let ba = generate::barabasi_albert(3000, 4, 24, 7, GraphConfig::default()).unwrap();
    let flat = generate::uniform(
        2000,
        16000,
        9,
        8,
        GraphConfig {
            hierarchical: false,
            ..GraphConfig::default()
        },
    )
    .unwrap();
    vec![
        ("barabasi_albert(3000, 4)", ba.build().unwrap()),
        ("uniform(2000, 16000), odd dim", flat.build().unwrap()),
    ]
}

fn spread_params() -> Vec<(&'static str, SpreadParams)> {
    vec![
        ("default", SpreadParams::default()),
        (
            "8 hops, power decay, refractory",
            SpreadParams {
                max_hops: 8,
                decay: Decay::Power { exponent: 0.5 },
                refractory: true,
                ..SpreadParams::default()
            },
        ),
        (
            "every hop by push",
            SpreadParams {
                evaluation: Evaluation::Push,
                ..SpreadParams::default()
            },
        ),
        (
            "every hop by pull",
            SpreadParams {
                evaluation: Evaluation::Pull,
                max_hops: 5,
                ..SpreadParams::default()
            },
        ),
        (
            "linear decay, low thresholds",
            SpreadParams {
                max_hops: 6,
                decay: Decay::Linear { slope: 0.1 },
                thresholds: [0.001, 0.002, 0.004],
                ..SpreadParams::default()
            },
        ),
    ]
}

#[test]
fn spread_on_the_gpus_matches_the_cpu_reference() {
    for gpu in gpus() {
        spread_matches_the_cpu_reference(&gpu);
    }
}

fn spread_matches_the_cpu_reference(gpu: &Device) {
    let cpu = Device::cpu().unwrap();
    for (gname, graph) in graphs() {
        let gname = format!("{}: {gname}", gpu.kind());
        let n = graph.node_count() as u32;
        let seed_sets = [
            vec![Seed::full(0)],
            vec![
                Seed::new(n / 2, 0.7),
                Seed::new(n / 3, 0.4),
                Seed::new(n / 2, 0.6),
            ],
            (0..40).map(|i| Seed::new(i * 37 % n, 0.3)).collect(),
        ];
        for (pname, params) in spread_params() {
            for seeds in &seed_sets {
                let what = format!("{gname}, {pname}, {} seeds", seeds.len());
                let want = graph.spread(&cpu, seeds, &params).unwrap();
                let got = graph.spread(gpu, seeds, &params).unwrap();
                assert_eq!(got.hops_done, want.hops_done, "{what}: hops_done");
                assert_close(&what, &spread_hits(&want), &spread_hits(&got));
                // Reproducible run to run on the device.
                assert_eq!(graph.spread(gpu, seeds, &params).unwrap(), got, "{what}");
            }
        }
    }
}

#[test]
fn recall_single_and_batched_on_the_gpus_matches_the_cpu_reference() {
    for gpu in gpus() {
        recall_matches_the_cpu_reference(&gpu);
    }
}

fn recall_matches_the_cpu_reference(gpu: &Device) {
    let cpu = Device::cpu().unwrap();
    for (gname, graph) in graphs() {
        let gname = format!("{}: {gname}", gpu.kind());
        let queries = generate::queries_near(&graph, 70, 0.05, 3).unwrap();
        let d = graph.dim();
        // seeds_k 600 chooses seeds on the host (above the device's top-k limit).
        for (mode, seeds_k) in [
            (RecallMode::Similarity, 100),
            (RecallMode::Spreading, 100),
            (RecallMode::Hybrid, 100),
            (RecallMode::Hybrid, 600),
        ] {
            let params = RecallParams {
                mode,
                k: 50,
                seeds_k,
                budget: Duration::ZERO,
                ..RecallParams::default()
            };
            let clock = ManualClock::new();
            let mut p = LatencyPredictor::new();
            let want = graph
                .recall_batch(&cpu, &queries, &params, &clock, &mut p)
                .unwrap();
            // 70 queries: one group of 64 lanes and one of 6.
            let got = graph
                .recall_batch(gpu, &queries, &params, &clock, &mut p)
                .unwrap();
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                let what = format!("{gname}, {mode:?}, query {i}");
                assert_eq!((g.partial, g.hops_done), (false, w.hops_done), "{what}");
                assert_close(&what, &recall_hits(w), &recall_hits(g));
                for (wh, gh) in w.hits.iter().zip(&g.hits) {
                    if wh.node == gh.node {
                        assert_eq!(wh.sim.is_some(), gh.sim.is_some(), "{what}");
                    }
                }
            }
            // One query alone on the device gives what it gave in the batch.
            for i in [0, 69] {
                let alone = graph
                    .recall(gpu, &queries[i * d..(i + 1) * d], &params, &clock, &mut p)
                    .unwrap();
                assert_eq!(alone, got[i], "{gname}, {mode:?}, query {i} alone");
            }
        }
    }
}

#[test]
fn the_budget_truncates_on_the_gpus_as_on_the_cpu() {
    let graph = &graphs()[0].1;
    for gpu in gpus() {
        budget_truncates(graph, &gpu);
    }
}

fn budget_truncates(graph: &Graph, gpu: &Device) {
    let queries = generate::queries_near(graph, 3, 0.05, 4).unwrap();
    let params = RecallParams {
        budget: Duration::from_millis(1),
        ..RecallParams::default()
    };
    // Every clock reading is 10 ms after the last: the budget is spent before hop 1.
    let clock = ManualClock::with_tick(Duration::from_millis(10));
    let got = graph
        .recall_batch(gpu, &queries, &params, &clock, &mut LatencyPredictor::new())
        .unwrap();
    for r in got {
        assert!(r.partial, "{}", gpu.kind());
        assert_eq!(r.hops_done, 0);
        assert!(r.hits.iter().all(|h| h.first_hop == 0));
    }
}

/// Tables run on wgpu now (their conformance is tests/conformance.rs); this only checks that
/// the graph device opens them too.
#[test]
fn tables_open_on_the_same_wgpu_device() {
    let Some(gpu) = wgpu() else { return };
    let mut table =
        warpgrid_engine::Table::create(&gpu, warpgrid_engine::TableConfig::new("t")).unwrap();
    let mut batch = table.batch();
    batch.put(1, &[7; 8]).unwrap();
    batch.get(1).unwrap();
    let r = table.apply(&batch).unwrap();
    assert_eq!(
        r.get(1),
        Some(warpgrid_engine::table::Outcome::Value(&[7; 8]))
    );
}

/// CUDA runs every workload in this version: a small table (put, get, link, related,
/// delete) and a braid. The table conformance suite (tests/conformance.rs) compares tables
/// on CUDA with the CPU in depth; engine/tests/braid_gpu.rs does the same for braids.
#[test]
fn cuda_runs_tables_and_braids() {
    let Some(cuda) = open(BackendKind::Cuda, "WARPGRID_REQUIRE_CUDA") else {
        return;
    };
    cuda.supports(warpgrid_engine::Workload::Tables).unwrap();
    let mut table =
        warpgrid_engine::Table::create(&cuda, warpgrid_engine::TableConfig::new("t")).unwrap();
    let mut batch = table.batch();
    batch.put(1, &[7; 8]).unwrap();
    batch.put(2, &[9; 8]).unwrap();
    batch.link(1, 2, 0.5).unwrap();
    batch.get(1).unwrap();
    batch.get_related(1, 0.1, 10).unwrap();
    batch.delete(2).unwrap();
    batch.get_related(1, 0.1, 10).unwrap();
    let r = table.apply(&batch).unwrap();
    assert_eq!(
        r.get(3),
        Some(warpgrid_engine::table::Outcome::Value(&[7; 8]))
    );
    let related = |op| match r.get(op) {
        Some(warpgrid_engine::table::Outcome::Related(rel)) => {
            rel.partners().map(|(k, s, _)| (k, s)).collect::<Vec<_>>()
        }
        other => panic!("op {op}: {other:?}"),
    };
    assert_eq!(related(4), vec![(2, 0.5)]);
    assert_eq!(related(6), vec![]);
    assert_eq!(table.stats().items, 1);
    cuda.supports(warpgrid_engine::Workload::Braids).unwrap();
    let config =
        warpgrid_engine::braid::BraidConfig::new(warpgrid_engine::braid::TorusConfig::new([
            4, 4, 4,
        ]));
    let mut braid = warpgrid_engine::braid::Braid::new_on(&cuda, &config).unwrap();
    braid.run_until_on(&cuda, 3).unwrap();
    assert_eq!(braid.now(), 3);
}

#[test]
fn a_hub_past_a_software_adapters_loop_limit_is_refused_not_wrong() {
    let Some(gpu) = wgpu() else { return };
    let Device::Wgpu(_) = &gpu else {
        unreachable!()
    };
    if !gpu.describe().contains("Cpu") {
        eprintln!("skipped: the adapter is a GPU (no loop limit)");
        return;
    }
    let mut b = GraphBuilder::new(GraphConfig {
        hierarchical: false,
        ..GraphConfig::default()
    });
    let hub = b.add_node(NodeKind::Concept, None);
    for _ in 0..65_001 {
        let v = b.add_node(NodeKind::Concept, None);
        b.add_edge(v, hub, 0.5);
    }
    let graph = b.build().unwrap();
    let err = graph
        .spread(&gpu, &[Seed::full(1)], &SpreadParams::default())
        .unwrap_err();
    assert!(err.to_string().contains("65,535"), "{err}");
    // The CPU backend runs it.
    let cpu = Device::cpu().unwrap();
    assert!(
        graph
            .spread(&cpu, &[Seed::full(1)], &SpreadParams::default())
            .is_ok()
    );
}
