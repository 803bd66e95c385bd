//! Invariant: the generators are exactly what docs/graphs.md defines — rebuilt here from
//! that text with the engine's SplitMix64, they give the same nodes, edges, weights and
//! embeddings — and the same seed always gives the same graph.

use warpgrid_engine::graph::{Graph, GraphBuilder, GraphConfig, NodeKind, generate};
use warpgrid_engine::rng::SplitMix64;

fn kinds(r: &mut SplitMix64, b: &mut GraphBuilder, n: usize) {
    for _ in 0..n {
        let k = if r.next_u64() & 1 == 0 {
            NodeKind::Concept
        } else {
            NodeKind::Episode
        };
        b.add_node(k, None);
    }
}

fn embeddings(r: &mut SplitMix64, b: &mut GraphBuilder, n: usize, dim: usize) {
    let rows: Vec<f32> = (0..n * dim)
        .map(|_| (2.0 * r.unit_f64() - 1.0) as f32)
        .collect();
    b.embeddings(dim, rows);
}

fn same(a: &Graph, b: &Graph) {
    assert_eq!(a.node_count(), b.node_count());
    assert_eq!(a.edge_count(), b.edge_count());
    for v in 0..a.node_count() as u32 {
        assert_eq!(a.kind(v), b.kind(v));
        assert_eq!(a.out_edges(v), b.out_edges(v));
        assert_eq!(a.embedding(v), b.embedding(v));
    }
}

#[test]
fn uniform_is_the_documented_procedure() {
    let (n, e, dim, seed) = (500, 4_000, 16, 77);
    let got = generate::uniform(n, e, dim, seed, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    let mut r = SplitMix64::new(seed);
    let mut b = GraphBuilder::new(GraphConfig::default());
    kinds(&mut r, &mut b, n);
    for _ in 0..e {
        let u = r.below(n as u64) as u32;
        let v = r.below(n as u64) as u32;
        let w = 1.0 - r.unit_f64();
        b.add_edge(u, v, w);
    }
    embeddings(&mut r, &mut b, n, dim);
    same(&got, &b.build().unwrap());
    assert!(got.edge_count() <= e && got.edge_count() > e * 9 / 10);
}

#[test]
fn barabasi_albert_is_the_documented_procedure() {
    let (n, m, dim, seed) = (1_000, 5, 8, 3);
    let got = generate::barabasi_albert(n, m, dim, seed, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    let mut r = SplitMix64::new(seed);
    let mut b = GraphBuilder::new(GraphConfig::default());
    kinds(&mut r, &mut b, n);
    let mut ends: Vec<u32> = Vec::new();
    for v in m..n {
        let mut targets: Vec<u32> = Vec::new();
        if v == m {
            targets = (0..m as u32).collect();
        } else {
            while targets.len() < m {
                let t = ends[r.below(ends.len() as u64) as usize];
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
        for &t in &targets {
            let w_out = 1.0 - r.unit_f64();
            let w_back = 1.0 - r.unit_f64();
            b.add_edge(v as u32, t, w_out);
            b.add_edge(t, v as u32, w_back);
        }
        for &t in &targets {
            ends.push(t);
            ends.push(v as u32);
        }
    }
    embeddings(&mut r, &mut b, n, dim);
    same(&got, &b.build().unwrap());
    // Both directions of every link, no duplicates: 2·m·(n − m) edges.
    assert_eq!(got.edge_count(), 2 * m * (n - m));
    // Preferential attachment: the oldest nodes collect far more links than the average
    // (2·m): node 0 has more than three times as many.
    let degree0 = got.out_edges(0).0.len();
    assert!(degree0 > 3 * 2 * m, "node 0 has degree {degree0}");
}

#[test]
fn same_seed_same_graph_other_seed_other_graph() {
    let a = generate::barabasi_albert(300, 3, 4, 1, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    let b = generate::barabasi_albert(300, 3, 4, 1, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    same(&a, &b);
    let c = generate::barabasi_albert(300, 3, 4, 2, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    assert!((0..300).any(|v| a.out_edges(v) != c.out_edges(v)));
}

#[test]
fn generator_arguments_are_checked() {
    assert!(generate::barabasi_albert(5, 5, 0, 1, GraphConfig::default()).is_err());
    assert!(generate::barabasi_albert(5, 0, 0, 1, GraphConfig::default()).is_err());
    assert!(generate::uniform(0, 5, 0, 1, GraphConfig::default()).is_err());
    let g = generate::uniform(10, 0, 0, 1, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    assert!(
        generate::queries_near(&g, 1, 0.1, 1).is_err(),
        "no embeddings"
    );
}

#[test]
fn queries_near_are_the_documented_procedure() {
    let g = generate::uniform(100, 10, 6, 9, GraphConfig::default())
        .unwrap()
        .build()
        .unwrap();
    let q = generate::queries_near(&g, 3, 0.25, 4).unwrap();
    let embedded: Vec<u32> = (0..100).filter(|&v| g.embedding(v).is_some()).collect();
    let mut r = SplitMix64::new(4);
    let mut want = Vec::new();
    for _ in 0..3 {
        let v = embedded[r.below(embedded.len() as u64) as usize];
        for x in g.embedding(v).unwrap() {
            want.push(x.to_f32() + 0.25 * (2.0 * r.unit_f64() - 1.0) as f32);
        }
    }
    assert_eq!(q, want);
}
