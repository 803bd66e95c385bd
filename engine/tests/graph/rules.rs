//! Invariant: each rule of SPEC §2.1/§2.2/§2.2a gives, on a small graph, the values computed
//! here by hand (as the f32 expressions the spec writes, with their decimal value checked
//! too), identically with push, pull and auto evaluation on 1 and 4 threads.

use warpgrid_engine::graph::{
    Decay, GraphBuilder, GraphConfig, Multipliers, NodeKind, Seed, SpreadParams,
};

use super::common::{device, flat, graph, hits, no_decay, spread_all_ways};

fn d(k: f64, rate: f64) -> f32 {
    (-rate * k).exp() as f32
}

/// Chain 0 -> 1 -> 2 -> 3 -> 4, every weight 1.
fn chain() -> warpgrid_engine::graph::Graph {
    graph(5, &[(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0), (3, 4, 1.0)])
}

#[test]
fn exponential_decay_on_a_chain_stops_at_the_cold_threshold() {
    let g = chain();
    let r = spread_all_ways(&g, &[Seed::full(0)], &SpreadParams::default());
    let a1 = (1.0f32 * 1.0) * d(1.0, 0.7); // 0.4966 >= 0.05
    let a2 = (a1 * 1.0) * d(2.0, 0.7); // 0.1225 >= 0.05
    let c3 = (a2 * 1.0) * d(3.0, 0.7); // 0.0150 < θ(Cold) = 0.1
    assert!((a1 - 0.496_585).abs() < 1e-5 && (a2 - 0.122_456).abs() < 1e-5);
    assert!(c3 < 0.1);
    assert_eq!(
        hits(&r),
        vec![
            (0, 1.0, 1.0, 0),
            (1, a1, a1 * 0.95, 1),
            (2, a2, a2 * 0.95, 2)
        ]
    );
    // Hop 3 was evaluated and found nothing: it counts.
    assert_eq!(r.hops_done, 3);
}

#[test]
fn exponential_rate_is_configurable() {
    let g = chain();
    let p = SpreadParams {
        decay: Decay::Exponential { rate: 0.1 },
        max_hops: 2,
        ..SpreadParams::default()
    };
    let r = spread_all_ways(&g, &[Seed::full(0)], &p);
    let a1 = d(1.0, 0.1);
    let a2 = a1 * d(2.0, 0.1);
    assert!((a2 - 0.740_818).abs() < 1e-5);
    assert_eq!(
        hits(&r),
        vec![
            (0, 1.0, 1.0, 0),
            (1, a1, a1 * 0.95, 1),
            (2, a2, a2 * 0.95, 2)
        ]
    );
    assert_eq!(r.hops_done, 2, "max_hops ends it");
}

#[test]
fn power_decay() {
    let g = chain();
    let p = SpreadParams {
        decay: Decay::Power { exponent: 1.0 },
        ..SpreadParams::default()
    };
    let r = spread_all_ways(&g, &[Seed::full(0)], &p);
    // D(k) = (k + 1)^-1: 1/2, 1/3, 1/4.
    let a1 = 0.5f32;
    let a2 = a1 * (1.0f64 / 3.0) as f32; // 0.1667
    let a3 = a2 * 0.25; // 0.0417 < 0.1: not added
    assert!(a3 < 0.1);
    assert_eq!(
        hits(&r),
        vec![
            (0, 1.0, 1.0, 0),
            (1, a1, a1 * 0.95, 1),
            (2, a2, a2 * 0.95, 2)
        ]
    );
    assert_eq!(r.hops_done, 3);
}

#[test]
fn linear_decay_and_its_floor_at_zero() {
    let g = chain();
    let p = SpreadParams {
        decay: Decay::Linear { slope: 0.2 },
        ..SpreadParams::default()
    };
    let r = spread_all_ways(&g, &[Seed::full(0)], &p);
    let dk = |k: f64| (1.0 - 0.2 * k) as f32; // 0.8, 0.6, 0.4, 0.2
    let a1 = dk(1.0);
    let a2 = a1 * dk(2.0);
    let a3 = a2 * dk(3.0); // 0.192 >= 0.1 (Cold)
    let c4 = a3 * dk(4.0); // 0.0384 < 0.1
    assert!(a3 >= 0.1 && c4 < 0.1);
    assert_eq!(
        hits(&r),
        vec![
            (0, 1.0, 1.0, 0),
            (1, a1, a1 * 0.95, 1),
            (2, a2, a2 * 0.95, 2),
            (3, a3, a3 * 0.9, 3)
        ]
    );
    assert_eq!(r.hops_done, 4);

    // slope 2: D(1) = max(0, 1 - 2) = 0, so c = 0 < θ and nothing spreads.
    let p = SpreadParams {
        decay: Decay::Linear { slope: 2.0 },
        ..SpreadParams::default()
    };
    let r = spread_all_ways(&g, &[Seed::full(0)], &p);
    assert_eq!(hits(&r), vec![(0, 1.0, 1.0, 0)]);
    assert_eq!(r.hops_done, 1);
}

#[test]
fn decay_table_is_f64_rounded_once() {
    let p = SpreadParams {
        max_hops: 3,
        ..SpreadParams::default()
    };
    let expected: Vec<f32> = (1..=3)
        .map(|k| (-0.7 * f64::from(k)).exp() as f32)
        .collect();
    assert_eq!(p.decay_table(), expected);
}

#[test]
fn warm_threshold_is_inclusive() {
    // c = (1 · f32(0.05)) · 1 = θ(Warm) exactly: counted (c >= θ).
    let g = graph(3, &[(0, 1, 0.05), (0, 2, 0.049_999)]);
    let r = spread_all_ways(&g, &[Seed::full(0)], &no_decay());
    assert_eq!(0.05f64 as f32, 0.05f32);
    assert_eq!(hits(&r), vec![(0, 1.0, 1.0, 0), (1, 0.05, 0.05 * 0.95, 1)]);
}

#[test]
fn cold_threshold_applies_from_hop_three() {
    // 0.07 passes θ(Warm) = 0.05 at hop 2 ...
    let g = graph(3, &[(0, 1, 1.0), (1, 2, 0.07)]);
    let r = spread_all_ways(&g, &[Seed::full(0)], &no_decay());
    assert_eq!(
        hits(&r),
        vec![
            (0, 1.0, 1.0, 0),
            (1, 1.0, 0.95, 1),
            (2, 0.07, 0.07 * 0.95, 2)
        ]
    );
    // ... but not θ(Cold) = 0.1 at hop 3.
    let g = graph(4, &[(0, 1, 1.0), (1, 2, 1.0), (2, 3, 0.07)]);
    let r = spread_all_ways(&g, &[Seed::full(0)], &no_decay());
    assert_eq!(
        hits(&r),
        vec![(0, 1.0, 1.0, 0), (1, 1.0, 0.95, 1), (2, 1.0, 0.95, 2)]
    );
    assert_eq!(r.hops_done, 3);
}

#[test]
fn seed_below_the_hot_threshold_is_ignored() {
    let g = chain();
    let r = spread_all_ways(&g, &[Seed::new(0, 0.009), Seed::new(2, 0.01)], &no_decay());
    // 0.009 < θ(Hot) = 0.01 is ignored; 0.01 is not (and 2 -> 3 carries 0.01 < θ(Warm)).
    assert_eq!(hits(&r), vec![(2, 0.01, 0.01, 0)]);
    assert_eq!(r.hops_done, 1);
    // With only ignored seeds nothing is active: hop 1 is evaluated, finds nothing, stops.
    let r = spread_all_ways(&g, &[Seed::new(0, 0.005)], &no_decay());
    assert!(r.hits.is_empty());
    assert_eq!(r.hops_done, 1);
}

#[test]
fn thresholds_and_confidence_factors_are_configurable() {
    let g = chain();
    let p = SpreadParams {
        thresholds: [0.5, 0.3, 0.2],
        confidence_factors: [0.9, 0.5, 0.25],
        decay: Decay::Linear { slope: 0.25 },
        ..SpreadParams::default()
    };
    // Seed 0.4 < θ(Hot) = 0.5: ignored. Seed on 1 with a0 = 1 spreads 0.75, 0.375, ...
    let r = spread_all_ways(&g, &[Seed::new(0, 0.4), Seed::full(1)], &p);
    let a2 = 0.75f32; // >= 0.3
    let a3 = a2 * 0.5; // 0.375 >= 0.3
    let c4 = a3 * 0.25; // 0.094 < 0.2 (Cold)
    assert!(c4 < 0.2);
    assert_eq!(
        hits(&r),
        vec![(1, 1.0, 0.9, 0), (2, a2, a2 * 0.5, 1), (3, a3, a3 * 0.5, 2)]
    );
}

#[test]
fn cold_tier_confidence_uses_the_first_hop() {
    let g = graph(4, &[(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0), (0, 3, 0.5)]);
    let p = no_decay();
    let r = spread_all_ways(&g, &[Seed::new(0, 0.5)], &p);
    // Node 3: hop 1 gets 0.25 (first_hop 1, Warm); hop 3 adds 0.5 more. Its tier stays Warm.
    let got = hits(&r);
    let n3 = got.iter().find(|h| h.0 == 3).copied().unwrap();
    assert_eq!(n3, (3, 0.75, 0.75 * 0.95, 1));
    // Node 2 first reached at hop 2 (Warm); none Cold here. Make one Cold:
    let g = graph(4, &[(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0)]);
    let r = spread_all_ways(&g, &[Seed::new(0, 0.5)], &p);
    assert_eq!(
        hits(&r),
        vec![
            (0, 0.5, 0.5, 0),
            (1, 0.5, 0.5 * 0.95, 1),
            (2, 0.5, 0.5 * 0.95, 2),
            (3, 0.5, 0.5 * 0.9, 3)
        ]
    );
}

#[test]
fn direction_multipliers_take_the_product_in_f64() {
    let mut b = GraphBuilder::new(GraphConfig::default());
    let e0 = b.add_node(NodeKind::Episode, Some("e0"));
    let c1 = b.add_node(NodeKind::Concept, Some("c1"));
    let e2 = b.add_node(NodeKind::Episode, None);
    let c3 = b.add_node(NodeKind::Concept, None);
    b.add_edge(e0, c1, 0.7) // episode -> concept: 0.8
        .add_edge(c1, e2, 0.7) // concept -> episode: 0.6
        .add_edge(c1, c3, 0.7) // concept -> concept: 0.4
        .add_edge(e2, e0, 0.7); // episode -> episode: 0.3
    let g = b.clone().build().unwrap();
    let want = |m: f64| (0.7f64 * m) as f32;
    assert_eq!(g.out_edges(e0), (&[c1][..], &[want(0.8)][..]));
    assert_eq!(
        g.out_edges(c1),
        (&[e2, c3][..], &[want(0.6), want(0.4)][..])
    );
    assert_eq!(g.out_edges(e2), (&[e0][..], &[want(0.3)][..]));
    // The f64 product rounded once differs from the f32 product of f32 operands here.
    assert_ne!(want(0.3), 0.7f32 * 0.3f32);

    // Not hierarchical: every multiplier is 1.
    let g = {
        let mut b2 = GraphBuilder::new(flat());
        for k in [
            NodeKind::Episode,
            NodeKind::Concept,
            NodeKind::Episode,
            NodeKind::Concept,
        ] {
            b2.add_node(k, None);
        }
        b2.add_edge(0, 1, 0.7).add_edge(1, 2, 0.7);
        b2.build().unwrap()
    };
    assert_eq!(g.out_edges(0).1, &[0.7f32]);
    assert_eq!(g.out_edges(1).1, &[0.7f32]);

    // Configured multipliers.
    let mut b3 = GraphBuilder::new(GraphConfig {
        hierarchical: true,
        multipliers: Multipliers::from_array([0.5, 0.25, 0.125, 1.0]),
    });
    for k in [NodeKind::Episode, NodeKind::Concept, NodeKind::Episode] {
        b3.add_node(k, None);
    }
    b3.add_edge(0, 1, 1.0)
        .add_edge(1, 2, 1.0)
        .add_edge(2, 0, 1.0)
        .add_edge(1, 1, 1.0);
    let g = b3.build().unwrap();
    assert_eq!(g.out_edges(0).1, &[0.5f32]);
    assert_eq!(g.out_edges(1), (&[1u32, 2][..], &[0.125f32, 0.25][..]));
    assert_eq!(g.out_edges(2).1, &[1.0f32]);

    // Spreading uses w': e0 -> c1 carries 0.7·0.8.
    let g = b.build().unwrap();
    let r = spread_all_ways(&g, &[Seed::full(e0)], &no_decay());
    assert_eq!(r.hits[1].node, c1);
    assert_eq!(r.hits[1].activation, want(0.8));
}

#[test]
fn invalid_multipliers_are_rejected() {
    let mut b = GraphBuilder::new(GraphConfig {
        hierarchical: true,
        multipliers: Multipliers::from_array([0.5, 0.0, 0.4, 0.3]),
    });
    b.add_node(NodeKind::Concept, None);
    let e = b.build().unwrap_err().to_string();
    assert!(e.contains("--multipliers") && e.contains("CE"), "{e}");
}

#[test]
fn duplicate_edges_keep_the_largest_weight() {
    let g = graph(2, &[(0, 1, 0.3), (0, 1, 0.9), (0, 1, 0.5), (1, 1, 0.2)]);
    assert_eq!(g.edge_count(), 2);
    assert_eq!(g.out_edges(0), (&[1u32][..], &[0.9f32][..]));
    assert_eq!(g.in_edges(1), (&[0u32, 1][..], &[0.9f32, 0.2][..]));
}

#[test]
fn refractory_nodes_accept_no_more() {
    // 0 -> 1 -> 2 and 0 -> 2: node 2 is reached at hop 1, and again at hop 2 via 1.
    let g = graph(3, &[(0, 1, 0.5), (1, 2, 0.5), (0, 2, 0.25)]);
    let normal = spread_all_ways(&g, &[Seed::full(0)], &no_decay());
    assert_eq!(
        hits(&normal),
        vec![(0, 1.0, 1.0, 0), (1, 0.5, 0.475, 1), (2, 0.5, 0.475, 1)]
    );
    let p = SpreadParams {
        refractory: true,
        ..no_decay()
    };
    let r = spread_all_ways(&g, &[Seed::full(0)], &p);
    assert_eq!(
        hits(&r),
        vec![
            (0, 1.0, 1.0, 0),
            (1, 0.5, 0.475, 1),
            (2, 0.25, 0.25 * 0.95, 1)
        ]
    );
    // A seed that receives activation back through a cycle keeps its seed activation.
    let g = graph(2, &[(0, 1, 1.0), (1, 0, 1.0)]);
    let r = spread_all_ways(&g, &[Seed::new(0, 0.5)], &p);
    assert_eq!(hits(&r), vec![(0, 0.5, 0.5, 0), (1, 0.5, 0.475, 1)]);
    assert_eq!(r.hops_done, 2);
}

#[test]
fn activation_clamps_at_one_and_a_clamped_node_stops_propagating() {
    // Seeds 0 and 1 both feed 2 (S = 2 → 1); 2 feeds 3 with its Δ = 1.
    let g = graph(4, &[(0, 2, 1.0), (1, 2, 1.0), (2, 3, 0.5)]);
    let r = spread_all_ways(&g, &[Seed::full(0), Seed::full(1)], &no_decay());
    assert_eq!(
        hits(&r),
        vec![
            (0, 1.0, 1.0, 0),
            (1, 1.0, 1.0, 0),
            (2, 1.0, 0.95, 1),
            (3, 0.5, 0.475, 2)
        ]
    );
    // Seed 1 already at 1 receives 0.5 from seed 0 at hop 1: new = min(1, 1.5) = 1, Δ = 0,
    // so at hop 2 it sends nothing more to node 2 (which got 0.25 from Δ0 at hop 1).
    let g = graph(3, &[(0, 1, 1.0), (1, 2, 0.25)]);
    let r = spread_all_ways(&g, &[Seed::new(0, 0.5), Seed::full(1)], &no_decay());
    assert_eq!(
        hits(&r),
        vec![
            (1, 1.0, 1.0, 0),
            (0, 0.5, 0.5, 0),
            (2, 0.25, 0.25 * 0.95, 1)
        ]
    );
    assert_eq!(r.hops_done, 2);
}

#[test]
fn early_stop_and_max_hops() {
    let g = chain();
    let p = SpreadParams {
        max_hops: 2,
        ..no_decay()
    };
    let r = spread_all_ways(&g, &[Seed::full(0)], &p);
    assert_eq!(r.hits.len(), 3);
    assert_eq!(r.hops_done, 2);
    // With 32 hops allowed, the chain of 5 runs dry: hop 5 finds nothing.
    let p = SpreadParams {
        max_hops: 32,
        ..no_decay()
    };
    let r = spread_all_ways(&g, &[Seed::full(0)], &p);
    assert_eq!(r.hits.len(), 5);
    assert_eq!(r.hops_done, 5);
}

#[test]
fn ties_are_ordered_by_node_id() {
    let g = graph(4, &[(0, 3, 1.0), (0, 1, 1.0), (0, 2, 1.0)]);
    let r = spread_all_ways(&g, &[Seed::new(0, 0.5)], &no_decay());
    assert_eq!(
        r.hits.iter().map(|h| h.node).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(r.hits.iter().all(|h| h.activation == 0.5));
}

#[test]
fn duplicate_seeds_add_in_order_and_clamp() {
    let g = graph(2, &[]);
    let r = spread_all_ways(&g, &[Seed::new(0, 0.3), Seed::new(0, 0.4)], &no_decay());
    assert_eq!(r.hits[0].activation, 0.3f32 + 0.4f32);
    let r = spread_all_ways(
        &g,
        &[Seed::new(1, 0.7), Seed::new(1, 0.6), Seed::new(1, 0.1)],
        &no_decay(),
    );
    assert_eq!(hits(&r), vec![(1, 1.0, 1.0, 0)]);
}

#[test]
fn contributions_are_summed_in_ascending_source_order() {
    // Sources 0, 1, 2 send 0.11, 0.26, 0.22 (seeded in reverse order) into node 3. In f32,
    // ((0 + 0.11) + 0.26) + 0.22 differs from descending order; the spec fixes this one.
    let (x, y, z) = (0.11f32, 0.26f32, 0.22f32);
    let ascending = ((0.0 + x) + y) + z;
    assert_ne!(
        ascending,
        ((0.0 + z) + y) + x,
        "the test needs an order-sensitive sum"
    );
    let g = graph(4, &[(0, 3, 1.0), (1, 3, 1.0), (2, 3, 1.0)]);
    let p = SpreadParams {
        thresholds: [0.0, 0.0, 0.0],
        ..no_decay()
    };
    let seeds = [Seed::new(2, z), Seed::new(1, y), Seed::new(0, x)];
    let r = spread_all_ways(&g, &seeds, &p);
    assert_eq!(r.hits[0].node, 3);
    assert_eq!(r.hits[0].activation.to_bits(), ascending.to_bits());
}

#[test]
fn no_fused_multiply_add() {
    // c = (Δ · w') · D with two roundings; a fused multiply-add or one rounding would differ
    // for these operands.
    let (a0, w, rate) = (0.777_777_8f32, 0.333_333_34f64, 0.3f64);
    let dk = (-rate).exp() as f32;
    let two_roundings = (a0 * w as f32) * dk;
    let one_rounding = (f64::from(a0) * w * f64::from(dk)) as f32;
    assert_ne!(
        two_roundings, one_rounding,
        "operands must tell the difference"
    );
    let g = graph(2, &[(0, 1, w)]);
    let p = SpreadParams {
        decay: Decay::Exponential { rate },
        ..SpreadParams::default()
    };
    let r = spread_all_ways(&g, &[Seed::new(0, a0)], &p);
    assert_eq!(r.hits[1].activation.to_bits(), two_roundings.to_bits());
}

#[test]
fn bad_spread_arguments_are_errors() {
    let g = chain();
    let dev = device(1);
    let cases: Vec<(Vec<Seed>, SpreadParams, &str)> = vec![
        (vec![Seed::full(5)], SpreadParams::default(), "--seed"),
        (vec![Seed::new(0, 0.0)], SpreadParams::default(), "--seed"),
        (vec![Seed::new(0, 1.5)], SpreadParams::default(), "--seed"),
        (
            vec![Seed::new(0, f32::NAN)],
            SpreadParams::default(),
            "--seed",
        ),
        (
            vec![Seed::full(0)],
            SpreadParams {
                max_hops: 0,
                ..SpreadParams::default()
            },
            "--max-hops",
        ),
        (
            vec![Seed::full(0)],
            SpreadParams {
                max_hops: 33,
                ..SpreadParams::default()
            },
            "--max-hops",
        ),
        (
            vec![Seed::full(0)],
            SpreadParams {
                decay: Decay::Exponential { rate: f64::NAN },
                ..SpreadParams::default()
            },
            "--decay",
        ),
        (
            vec![Seed::full(0)],
            SpreadParams {
                thresholds: [0.01, -1.0, 0.1],
                ..SpreadParams::default()
            },
            "--thresholds",
        ),
        (
            vec![Seed::full(0)],
            SpreadParams {
                confidence_factors: [1.0, f32::INFINITY, 0.9],
                ..SpreadParams::default()
            },
            "--confidence-factors",
        ),
    ];
    for (seeds, p, flag) in cases {
        let e = g.spread(&dev, &seeds, &p).unwrap_err().to_string();
        assert!(e.contains(flag), "{flag}: {e}");
    }
}
