//! Invariant: on random graphs, seeds and parameters, the stored CSR is exactly the merged
//! raw edges with `w' = f32(w · m)`, and every spread (push, pull, auto; 1 and 4 threads;
//! run after run) equals the sequential reference of SPEC §2.2 bit for bit.

use std::collections::BTreeMap;

use warpgrid_engine::graph::{
    Decay, Evaluation, Graph, GraphBuilder, GraphConfig, Multipliers, NodeKind, Seed, SpreadParams,
    generate,
};
use warpgrid_engine::rng::SplitMix64;

use super::common::{device, hits, reference_hits, reference_spread};

struct Case {
    kinds: Vec<NodeKind>,
    edges: Vec<(u32, u32, f64)>,
    config: GraphConfig,
}

fn random_case(seed: u64, n: usize, edges: usize) -> Case {
    let mut r = SplitMix64::new(seed);
    let kinds: Vec<NodeKind> = (0..n)
        .map(|_| {
            if r.below(2) == 0 {
                NodeKind::Concept
            } else {
                NodeKind::Episode
            }
        })
        .collect();
    let mut list = Vec::with_capacity(edges);
    for _ in 0..edges {
        let u = r.below(n as u64) as u32;
        // Some locality so duplicates happen.
        let v = if r.below(4) == 0 {
            (u + 1) % n as u32
        } else {
            r.below(n as u64) as u32
        };
        // Weights on a coarse grid (duplicates tie sometimes) and in (0, 1].
        let w = (1 + r.below(1000)) as f64 / 1000.0;
        list.push((u, v, w));
    }
    let config = match r.below(3) {
        0 => GraphConfig::default(),
        1 => GraphConfig {
            hierarchical: false,
            ..GraphConfig::default()
        },
        _ => GraphConfig {
            hierarchical: true,
            multipliers: Multipliers::from_array([0.9, 0.7, 0.55, 0.35]),
        },
    };
    Case {
        kinds,
        edges: list,
        config,
    }
}

fn build(c: &Case) -> Graph {
    let mut b = GraphBuilder::new(c.config);
    for &k in &c.kinds {
        b.add_node(k, None);
    }
    for &(u, v, w) in &c.edges {
        b.add_edge(u, v, w);
    }
    b.build().unwrap()
}

#[test]
fn csr_is_the_merged_edges_with_effective_weights() {
    for seed in 0..20 {
        let c = random_case(seed, 40 + seed as usize * 7, 300);
        let g = build(&c);
        let m = if c.config.hierarchical {
            c.config.multipliers
        } else {
            Multipliers::FLAT
        };
        let mut best: BTreeMap<(u32, u32), f64> = BTreeMap::new();
        for &(u, v, w) in &c.edges {
            let e = best.entry((u, v)).or_insert(w);
            if w > *e {
                *e = w;
            }
        }
        let want: Vec<(u32, u32, f32)> = best
            .iter()
            .map(|(&(u, v), &w)| {
                let mul = m.get(c.kinds[u as usize], c.kinds[v as usize]);
                (u, v, (w * mul) as f32)
            })
            .collect();
        let mut got = Vec::new();
        for u in 0..g.node_count() as u32 {
            let (t, w) = g.out_edges(u);
            got.extend(t.iter().zip(w).map(|(&v, &w)| (u, v, w)));
        }
        assert_eq!(got, want, "seed {seed}");
        // The transpose lists the same edges by destination, sources ascending.
        let mut by_dst: Vec<(u32, u32, f32)> = Vec::new();
        for v in 0..g.node_count() as u32 {
            let (s, w) = g.in_edges(v);
            assert!(s.windows(2).all(|p| p[0] < p[1]), "sources ascending");
            by_dst.extend(s.iter().zip(w).map(|(&u, &w)| (u, v, w)));
        }
        by_dst.sort_by_key(|&(u, v, _)| (u, v));
        assert_eq!(by_dst, want, "transpose of seed {seed}");
    }
}

fn random_params(r: &mut SplitMix64) -> SpreadParams {
    let unit = |r: &mut SplitMix64| r.unit_f64();
    let decay = match r.below(3) {
        0 => Decay::Exponential {
            rate: 0.05 + 0.8 * unit(r),
        },
        1 => Decay::Power {
            exponent: 0.1 + 1.5 * unit(r),
        },
        _ => Decay::Linear {
            slope: 0.3 * unit(r),
        },
    };
    let small = |r: &mut SplitMix64| (0.03 * unit(r)) as f32;
    SpreadParams {
        max_hops: 1 + r.below(8) as u32,
        decay,
        thresholds: [small(r), small(r), small(r)],
        confidence_factors: [
            (0.5 + 0.5 * unit(r)) as f32,
            (0.5 + 0.5 * unit(r)) as f32,
            (0.5 + 0.5 * unit(r)) as f32,
        ],
        refractory: r.below(3) == 0,
        evaluation: Evaluation::Auto,
    }
}

fn random_seeds(r: &mut SplitMix64, n: usize) -> Vec<Seed> {
    let count = 1 + r.below(12) as usize;
    let mut seeds: Vec<Seed> = (0..count)
        .map(|_| {
            let a0 = (1.0 - r.unit_f64()) as f32; // (0, 1]
            // Some tiny activations, below θ(Hot).
            let a0 = if r.below(6) == 0 { a0 * 0.02 } else { a0 };
            Seed::new(r.below(n as u64) as u32, a0.max(f32::MIN_POSITIVE))
        })
        .collect();
    // A duplicate seed now and then.
    if r.below(3) == 0 {
        seeds.push(seeds[0]);
    }
    seeds
}

#[test]
fn spread_equals_the_reference_on_random_graphs() {
    let devices = [device(1), device(4)];
    let mut r = SplitMix64::new(0x5eed);
    let mut compared = 0;
    for case in 0..36u64 {
        let (n, e) = match case % 3 {
            0 => (60, 240),
            1 => (700, 7_000),
            _ => (3_000, 45_000),
        };
        let c = random_case(1000 + case, n, e);
        let g = build(&c);
        for _ in 0..3 {
            let p = random_params(&mut r);
            let seeds = random_seeds(&mut r, n);
            let reference = reference_spread(&g, &seeds, &p, None);
            let want = reference_hits(&g, &reference, &p);
            for dev in &devices {
                for evaluation in [Evaluation::Push, Evaluation::Pull, Evaluation::Auto] {
                    let q = SpreadParams {
                        evaluation,
                        ..p.clone()
                    };
                    let got = g.spread(dev, &seeds, &q).unwrap();
                    assert_eq!(
                        hits(&got),
                        want,
                        "case {case} {evaluation:?} threads {}",
                        dev.threads()
                    );
                    assert_eq!(got.hops_done, reference.hops_done, "case {case}");
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 36 * 3 * 2 * 3);
}

#[test]
fn spread_reaches_deep_into_a_large_graph_identically_on_any_thread_count() {
    // Parameters that keep the spread alive for many hops, so big frontiers (pull, and
    // parallel push partitions) are exercised.
    let g = generate::barabasi_albert(20_000, 6, 0, 42, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    let p = SpreadParams {
        max_hops: 8,
        decay: Decay::Linear { slope: 0.05 },
        thresholds: [0.0, 0.0005, 0.001],
        ..SpreadParams::default()
    };
    let seeds = [Seed::full(17), Seed::new(9_999, 0.8), Seed::new(123, 0.3)];
    let reference = reference_spread(&g, &seeds, &p, None);
    let want = reference_hits(&g, &reference, &p);
    assert!(want.len() > 15_000, "the spread covers most of the graph");
    for threads in [1, 2, 4] {
        let dev = device(threads);
        for evaluation in [Evaluation::Push, Evaluation::Pull, Evaluation::Auto] {
            let q = SpreadParams {
                evaluation,
                ..p.clone()
            };
            for _run in 0..2 {
                let got = g.spread(&dev, &seeds, &q).unwrap();
                assert_eq!(hits(&got), want, "{evaluation:?} on {threads} threads");
                assert_eq!(got.hops_done, reference.hops_done);
            }
        }
    }
}
