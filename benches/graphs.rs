//! Criterion bench of SPEC §7 row 4: recall and spreading on a Barabási–Albert graph of 10k
//! nodes and ~100k edges: single recall, batched recall, and spreads on warpgrid beside the
//! sequential reference and the sprs CSR mat-vec peer, in one run. `warpgrid bench graph`
//! runs the same code (`warpgrid::bench::graph`), checks the results against each other and
//! prints percentiles and ratios.
//!
//! `WARPGRID_BENCH_NODES` and `WARPGRID_BENCH_DIM` change the graph (default 10,000 nodes,
//! dimension 384).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warpgrid::Device;
use warpgrid::bench::graph::{
    GraphBenchConfig, SequentialSpread, SprsSpread, build_graph, build_queries, recall_seeds,
    run_batched, spaced_seeds, unbudgeted,
};
use warpgrid::engine::graph::{LatencyPredictor, Seed, SystemClock};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn graphs(c: &mut Criterion) {
    let full = GraphBenchConfig::full();
    let cfg = GraphBenchConfig {
        nodes: env("WARPGRID_BENCH_NODES", full.nodes),
        dim: env("WARPGRID_BENCH_DIM", full.dim),
        ..full
    };
    let device = Device::cpu().expect("the cpu backend is always available");
    let graph = build_graph(&cfg).expect("the bench graph builds");
    let queries = build_queries(&graph, &cfg).expect("the bench queries build");
    let d = graph.dim();
    let params = unbudgeted();
    let clock = SystemClock::new();
    let label = format!("{}n_{}e_d{}", graph.node_count(), graph.edge_count(), d);

    let mut group = c.benchmark_group("graph_recall");
    let mut predictor = LatencyPredictor::new();
    let mut next = queries.chunks_exact(d).cycle();
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("single", &label), |b| {
        b.iter(|| {
            let q = next.next().expect("a cycle never ends");
            black_box(
                graph
                    .recall(&device, q, &params, &clock, &mut predictor)
                    .unwrap(),
            )
        });
    });
    for batch in [64, 1000.min(cfg.queries)] {
        let mut predictor = LatencyPredictor::new();
        let part = &queries[..batch * d];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(format!("batch_{batch}"), &label), |b| {
            b.iter(|| {
                black_box(
                    run_batched(&device, &graph, part, batch, &params, &mut predictor).unwrap(),
                )
            });
        });
    }
    group.finish();

    let small: Vec<Vec<Seed>> = queries
        .chunks_exact(d)
        .take(cfg.spread_queries)
        .map(|q| recall_seeds(&device, &graph, q, &params).unwrap())
        .collect();
    let large = vec![spaced_seeds(&graph, cfg.large_seeds)];
    let sp = &params.spread;
    let mut sequential = SequentialSpread::new();
    let mut sprs = SprsSpread::new(&graph).unwrap();
    for (name, lists) in [("recall_seeds", &small), ("spaced_seeds", &large)] {
        let mut group = c.benchmark_group(format!("graph_spread_{name}"));
        group.throughput(Throughput::Elements(lists.len() as u64));
        group.bench_function(BenchmarkId::new("warpgrid", &label), |b| {
            b.iter(|| {
                for l in lists {
                    black_box(graph.spread(&device, l, sp).unwrap());
                }
            });
        });
        group.bench_function(BenchmarkId::new("sequential_1_thread", &label), |b| {
            b.iter(|| {
                for l in lists {
                    black_box(sequential.spread(&graph, l, sp));
                }
            });
        });
        group.bench_function(BenchmarkId::new("sprs_csr_mat_vec", &label), |b| {
            b.iter(|| {
                for l in lists {
                    black_box(sprs.spread(&graph, l, sp));
                }
            });
        });
        group.finish();
    }
}

criterion_group!(benches, graphs);
criterion_main!(benches);
