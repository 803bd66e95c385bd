//! Invariant: recall follows SPEC §2.3 exactly — similarity seeds (top seeds_k, ties by id,
//! θs), sigmoid a0, the three modes, the seed boost, hybrid averaging, the min_confidence
//! filter, ranking and k — whether a query runs alone or in a batch (bit-identical), and
//! the latency budget truncates at hop boundaries deterministically under a manual clock.

use std::time::Duration;

use half::f16;
use warpgrid_engine::graph::{
    Decay, Evaluation, Graph, GraphBuilder, GraphConfig, GraphError, HopMethod, HopPlan,
    LatencyPredictor, ManualClock, NodeKind, RecallMode, RecallParams, SpreadParams, SystemClock,
    generate,
};

use super::common::{device, flat, recall_hits, reference_recall};

/// Four nodes in 2-d: e0 = (1, 0), e1 = (3, 4) → (0.6, 0.8), node 2 none, e3 = (0, 1).
/// Edges 0 -> 2 (0.5), 1 -> 2 (0.5), 2 -> 3 (1), flat multipliers.
fn small() -> Graph {
    let mut b = GraphBuilder::new(flat());
    for label in ["zero", "one", "two", "three"] {
        b.add_node(NodeKind::Concept, Some(label));
    }
    b.add_edge(0, 2, 0.5)
        .add_edge(1, 2, 0.5)
        .add_edge(2, 3, 1.0);
    b.embeddings(2, vec![1.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 1.0]);
    b.build().unwrap()
}

fn sigmoid_a0(sim: f32, theta: f32, t: f32) -> f32 {
    (1.0 / (1.0 + (-(f64::from(sim) - f64::from(theta)) / f64::from(t)).exp())) as f32
}

fn recall(g: &Graph, q: &[f32], p: &RecallParams) -> warpgrid_engine::graph::RecallResult {
    let mut pred = LatencyPredictor::new();
    g.recall(&device(1), q, p, &SystemClock::new(), &mut pred)
        .unwrap()
}

#[test]
fn embeddings_are_normalised_then_rounded_to_f16() {
    let g = small();
    assert_eq!(g.dim(), 2);
    assert_eq!(g.embedded_count(), 3);
    assert_eq!(
        g.embedding(1).unwrap(),
        &[f16::from_f32(0.6), f16::from_f32(0.8)]
    );
    assert_eq!(g.embedding(2), None, "a zero row is no embedding");
}

#[test]
fn similarity_mode_by_hand() {
    let g = small();
    let sim1 = f16::from_f32(0.6).to_f32(); // dot((1, 0), e1) with e1 stored as f16
    let a0_0 = sigmoid_a0(1.0, 0.4, 0.5);
    let a0_1 = sigmoid_a0(sim1, 0.4, 0.5);
    assert!((a0_0 - 0.768_525).abs() < 1e-5 && (a0_1 - 0.599_0).abs() < 1e-3);
    let p = RecallParams {
        mode: RecallMode::Similarity,
        ..RecallParams::default()
    };
    // The query's length does not matter: it is normalised.
    let r = recall(&g, &[2.0, 0.0], &p);
    assert_eq!(
        recall_hits(&r),
        vec![
            (0, 1.0, a0_0, a0_0, Some(1.0), 0),
            (1, sim1, a0_1, a0_1, Some(sim1), 0)
        ]
    );
    assert_eq!(r.hits[0].label.as_deref(), Some("zero"));
    assert_eq!((r.partial, r.hops_done), (false, 0));
    // min_confidence filters on a0; k cuts.
    let r = recall(
        &g,
        &[1.0, 0.0],
        &RecallParams {
            min_confidence: 0.7,
            ..p.clone()
        },
    );
    assert_eq!(r.hits.iter().map(|h| h.node).collect::<Vec<_>>(), vec![0]);
    let r = recall(&g, &[1.0, 0.0], &RecallParams { k: 1, ..p.clone() });
    assert_eq!(r.hits.len(), 1);
    // θs above every sim: no seeds, no hits.
    let r = recall(
        &g,
        &[1.0, 0.0],
        &RecallParams {
            sim_threshold: 1.01,
            ..p
        },
    );
    assert!(r.hits.is_empty());
}

#[test]
fn spreading_and_hybrid_modes_by_hand() {
    let g = small();
    let sim1 = f16::from_f32(0.6).to_f32();
    let a0 = sigmoid_a0(1.0, 0.4, 0.5);
    let a1 = sigmoid_a0(sim1, 0.4, 0.5);
    let d1 = (-0.7f64).exp() as f32;
    let d2 = (-1.4f64).exp() as f32;
    // Hop 1: node 2 sums its sources in ascending order.
    let a2 = (0.0 + (a0 * 0.5) * d1) + (a1 * 0.5) * d1;
    // Hop 2: node 3.
    let a3 = (a2 * 1.0) * d2;
    assert!(a2 > 0.05 && a3 > 0.05);
    let boost = |c: f32| (c * 1.1).min(1.0);
    let c0 = boost(a0 * 1.0);
    let c1 = boost(a1 * 1.0);
    let c2 = a2 * 0.95;
    let c3 = a3 * 0.95; // 0.0796 < min_confidence 0.1: dropped
    assert!(c3 < 0.1);
    let p = RecallParams {
        mode: RecallMode::Spreading,
        ..RecallParams::default()
    };
    let r = recall(&g, &[1.0, 0.0], &p);
    assert_eq!(
        recall_hits(&r),
        vec![
            (0, a0 * c0, a0, c0, Some(1.0), 0),
            (1, a1 * c1, a1, c1, Some(sim1), 0),
            (2, a2 * c2, a2, c2, None, 1)
        ]
    );
    assert_eq!((r.partial, r.hops_done), (false, 3));

    let p = RecallParams {
        mode: RecallMode::Hybrid,
        min_confidence: 0.05,
        ..RecallParams::default()
    };
    let r = recall(&g, &[1.0, 0.0], &p);
    let h0 = (a0 * c0 + 1.0) / 2.0;
    let h1 = (a1 * c1 + sim1) / 2.0;
    assert_eq!(
        recall_hits(&r),
        vec![
            (0, h0, a0, c0, Some(1.0), 0),
            (1, h1, a1, c1, Some(sim1), 0),
            (2, a2 * c2, a2, c2, None, 1),
            (3, a3 * c3, a3, c3, None, 2)
        ]
    );
    // The reference implementation agrees.
    assert_eq!(
        recall_hits(&r),
        reference_recall(&g, &[1.0, 0.0], &p, None).0
    );
}

#[test]
fn seed_boost_is_capped_at_one() {
    let g = small();
    let p = RecallParams {
        mode: RecallMode::Spreading,
        temperature: 0.01, // a0 of node 0 rounds to 1.0
        ..RecallParams::default()
    };
    let r = recall(&g, &[1.0, 0.0], &p);
    assert_eq!(r.hits[0].node, 0);
    assert_eq!(r.hits[0].activation, 1.0);
    assert_eq!(r.hits[0].confidence, 1.0);
    assert_eq!(r.hits[0].score, 1.0);
}

#[test]
fn seeds_tie_by_id_and_seeds_k_cuts() {
    let mut b = GraphBuilder::new(flat());
    for _ in 0..4 {
        b.add_node(NodeKind::Episode, None);
    }
    // Nodes 3 and 1 have the same direction, node 0 a worse one.
    b.embeddings(2, vec![1.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0, 0.0]);
    let g = b.build().unwrap();
    let p = RecallParams {
        mode: RecallMode::Similarity,
        ..RecallParams::default()
    };
    let r = recall(&g, &[1.0, 0.0], &p);
    assert_eq!(
        r.hits.iter().map(|h| h.node).collect::<Vec<_>>(),
        vec![1, 3, 0]
    );
    assert_eq!(r.hits[0].score, r.hits[1].score);
    let r = recall(&g, &[1.0, 0.0], &RecallParams { seeds_k: 1, ..p });
    assert_eq!(r.hits.iter().map(|h| h.node).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn bad_queries_and_arguments_are_errors() {
    let g = small();
    let dev = device(1);
    let clock = SystemClock::new();
    let mut pred = LatencyPredictor::new();
    let p = RecallParams::default();
    let err = |q: &[f32], p: &RecallParams, pred: &mut LatencyPredictor| {
        g.recall_batch(&dev, q, p, &clock, pred).unwrap_err()
    };
    assert!(matches!(
        err(&[0.0, 0.0], &p, &mut pred),
        GraphError::InvalidQuery { index: 0, .. }
    ));
    assert!(matches!(
        err(&[1.0, 0.0, f32::NAN, 1.0], &p, &mut pred),
        GraphError::InvalidQuery { index: 1, .. }
    ));
    assert!(
        err(&[1.0, 0.0, 1.0], &p, &mut pred)
            .to_string()
            .contains("--queries")
    );
    assert!(matches!(
        g.recall(&dev, &[1.0, 0.0, 0.0], &p, &clock, &mut pred),
        Err(GraphError::InvalidQuery { .. })
    ));
    for (bad, flag) in [
        (RecallParams { k: 0, ..p.clone() }, "--k"),
        (
            RecallParams {
                k: 1001,
                ..p.clone()
            },
            "--k",
        ),
        (
            RecallParams {
                seeds_k: 0,
                ..p.clone()
            },
            "--seeds-k",
        ),
        (
            RecallParams {
                temperature: 0.0,
                ..p.clone()
            },
            "--temperature",
        ),
        (
            RecallParams {
                sim_threshold: f32::NAN,
                ..p.clone()
            },
            "--sim-threshold",
        ),
        (
            RecallParams {
                min_confidence: f32::INFINITY,
                ..p.clone()
            },
            "--min-confidence",
        ),
        (
            RecallParams {
                spread: SpreadParams {
                    max_hops: 0,
                    ..SpreadParams::default()
                },
                ..p.clone()
            },
            "--max-hops",
        ),
    ] {
        let e = err(&[1.0, 0.0], &bad, &mut pred).to_string();
        assert!(e.contains(flag), "{flag}: {e}");
    }
    let no_emb = super::common::graph(2, &[(0, 1, 1.0)]);
    let e = no_emb
        .recall_batch(&dev, &[1.0], &p, &clock, &mut pred)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no embeddings"), "{e}");
}

fn random_graph() -> Graph {
    generate::barabasi_albert(3_000, 4, 32, 7, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap()
}

/// Parameters that keep spreading going for several hops on the random graph.
fn lively(mode: RecallMode, evaluation: Evaluation) -> RecallParams {
    RecallParams {
        k: 50,
        seeds_k: 20,
        sim_threshold: 0.3,
        mode,
        min_confidence: 0.001,
        budget: Duration::ZERO,
        spread: SpreadParams {
            max_hops: 6,
            decay: Decay::Linear { slope: 0.1 },
            thresholds: [0.01, 0.002, 0.004],
            evaluation,
            ..SpreadParams::default()
        },
        ..RecallParams::default()
    }
}

#[test]
fn batch_equals_one_at_a_time_and_the_reference() {
    let g = random_graph();
    let dim = g.dim();
    let queries = generate::queries_near(&g, 12, 0.6, 99).unwrap();
    let clock = SystemClock::new();
    for mode in [
        RecallMode::Similarity,
        RecallMode::Spreading,
        RecallMode::Hybrid,
    ] {
        let mut reference = Vec::new();
        for q in queries.chunks_exact(dim) {
            let p = lively(mode, Evaluation::Auto);
            reference.push(reference_recall(&g, q, &p, None));
        }
        assert!(
            reference.iter().filter(|(h, _)| h.len() > 5).count() > 6,
            "most queries find several hits"
        );
        for threads in [1, 4] {
            let dev = device(threads);
            for evaluation in [Evaluation::Push, Evaluation::Pull, Evaluation::Auto] {
                let p = lively(mode, evaluation);
                let mut pred = LatencyPredictor::new();
                let batch = g
                    .recall_batch(&dev, &queries, &p, &clock, &mut pred)
                    .unwrap();
                assert_eq!(batch.len(), 12);
                for (i, q) in queries.chunks_exact(dim).enumerate() {
                    let single = g.recall(&dev, q, &p, &clock, &mut pred).unwrap();
                    assert_eq!(batch[i], single, "{mode:?} {evaluation:?} query {i}");
                    assert_eq!(recall_hits(&single), reference[i].0, "{mode:?} query {i}");
                    assert_eq!(single.hops_done, reference[i].1);
                    assert!(!single.partial);
                }
            }
        }
    }
}

/// Chain 0 -> 1 -> ... -> 5 (weight 1), only node 0 embedded: spreading goes 5 hops.
fn chain_with_embedding() -> Graph {
    let mut b = GraphBuilder::new(flat());
    for _ in 0..6 {
        b.add_node(NodeKind::Concept, None);
    }
    for u in 0..5 {
        b.add_edge(u, u + 1, 1.0);
    }
    let mut rows = vec![0.0; 12];
    rows[0] = 1.0;
    b.embeddings(2, rows);
    b.build().unwrap()
}

fn chain_params(budget: Duration) -> RecallParams {
    RecallParams {
        mode: RecallMode::Spreading,
        budget,
        spread: SpreadParams {
            max_hops: 8,
            decay: Decay::Linear { slope: 0.0 },
            evaluation: Evaluation::Push,
            ..SpreadParams::default()
        },
        ..RecallParams::default()
    }
}

#[test]
fn budget_stops_before_the_hop_that_would_overrun() {
    let g = chain_with_embedding();
    let dev = device(2);
    // Each clock reading advances 1 ms: start 0, hop 1 at 1..2, hop 2 at 3..4, and before
    // hop 3 the elapsed time is 5 ms > 4.5 ms (the untrained model predicts nothing).
    let clock = ManualClock::with_tick(Duration::from_millis(1));
    let mut pred = LatencyPredictor::new();
    let p = chain_params(Duration::from_micros(4_500));
    let r = g.recall(&dev, &[1.0, 0.0], &p, &clock, &mut pred).unwrap();
    assert!(r.partial);
    assert_eq!(r.hops_done, 2);
    let (want, hops) = reference_recall(&g, &[1.0, 0.0], &p, Some(3));
    assert_eq!(recall_hits(&r), want);
    assert_eq!(hops, 2);
    assert_eq!(r.hits.len(), 3, "seed and two hops");
    assert_eq!(pred.stats().partial_stops, 1);
    assert_eq!(pred.stats().hops_observed, 2);
}

#[test]
fn a_trained_predictor_stops_before_the_first_hop() {
    let g = chain_with_embedding();
    let dev = device(1);
    let mut pred = LatencyPredictor::new();
    for (edges, nodes) in [(1, 1), (10, 3), (100, 30), (5, 50)] {
        for method in [HopMethod::Push, HopMethod::Pull] {
            let plan = HopPlan {
                hop: 1,
                method,
                edges,
                nodes,
            };
            pred.observe(&plan, Duration::from_millis(10));
        }
    }
    let plan = HopPlan {
        hop: 1,
        method: HopMethod::Push,
        edges: 1,
        nodes: 1,
    };
    let predicted = pred.predict(&plan).unwrap();
    assert!(
        (predicted.as_secs_f64() - 0.010).abs() < 1e-4,
        "{predicted:?}"
    );
    // A frozen clock: elapsed 0, predicted 10 ms > 5 ms.
    let clock = ManualClock::new();
    let p = chain_params(Duration::from_millis(5));
    let r = g.recall(&dev, &[1.0, 0.0], &p, &clock, &mut pred).unwrap();
    assert!(r.partial);
    assert_eq!(r.hops_done, 0);
    let (want, _) = reference_recall(&g, &[1.0, 0.0], &p, Some(1));
    assert_eq!(recall_hits(&r), want);
    assert_eq!(r.hits.len(), 1);
    // The same with a 20 ms budget runs every hop.
    let p = chain_params(Duration::from_millis(20));
    let r = g.recall(&dev, &[1.0, 0.0], &p, &clock, &mut pred).unwrap();
    assert!(!r.partial);
    assert_eq!(r.hops_done, 6);
    assert_eq!(r.hits.len(), 6);
}

#[test]
fn zero_budget_means_none() {
    let g = chain_with_embedding();
    let clock = ManualClock::with_tick(Duration::from_secs(1));
    let mut pred = LatencyPredictor::new();
    let r = g
        .recall(
            &device(1),
            &[1.0, 0.0],
            &chain_params(Duration::ZERO),
            &clock,
            &mut pred,
        )
        .unwrap();
    assert!(!r.partial);
    assert_eq!(r.hops_done, 6);
}

#[test]
fn prediction_errors_are_recorded() {
    let g = chain_with_embedding();
    let dev = device(1);
    // Every hop takes exactly 1 ms on this clock; after three observations the model
    // predicts 1 ms, and every later hop is scored within 20 %.
    let clock = ManualClock::with_tick(Duration::from_millis(1));
    let mut pred = LatencyPredictor::new();
    for _ in 0..3 {
        let r = g
            .recall(
                &dev,
                &[1.0, 0.0],
                &chain_params(Duration::ZERO),
                &clock,
                &mut pred,
            )
            .unwrap();
        assert_eq!(r.hops_done, 6);
    }
    let s = pred.stats();
    assert_eq!(s.hops_observed, 18);
    assert_eq!(s.predictions, 15);
    assert_eq!(s.within_20_percent, 15);
    assert_eq!(s.error_buckets[0], 15);
    assert!(pred.last_error().unwrap().abs() < 1e-3);
    assert_eq!(s.partial_stops, 0);
}

#[test]
fn batch_budget_stops_every_running_query() {
    let g = chain_with_embedding();
    let clock = ManualClock::with_tick(Duration::from_millis(1));
    let mut pred = LatencyPredictor::new();
    // Query 2 points at no embedded node: no seeds, it finishes at hop 1 and is complete.
    let queries = [1.0, 0.0, 1.0, 0.5, -1.0, 0.0];
    let r = g
        .recall_batch(
            &device(2),
            &queries,
            &chain_params(Duration::from_micros(4_500)),
            &clock,
            &mut pred,
        )
        .unwrap();
    assert_eq!(r.len(), 3);
    for q in &r[..2] {
        assert!(q.partial);
        assert_eq!(q.hops_done, 2);
    }
    assert!(!r[2].partial);
    assert_eq!(r[2].hops_done, 1);
    assert!(r[2].hits.is_empty());
}
