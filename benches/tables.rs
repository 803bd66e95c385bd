//! Criterion bench of SPEC §7 row 1: batch PUT then GET of uniform random u64 keys to 8-byte
//! values, warpgrid beside hashbrown (one thread) and DashMap (all threads) in one run.
//! `warpgrid bench kv` runs the same code (`warpgrid::bench::kv`) and prints the ratios.
//!
//! `WARPGRID_BENCH_KEYS` sets the key count (default 4,000,000).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warpgrid::bench::kv::{build_batches, run_dashmap, run_hashbrown, run_warpgrid};
use warpgrid::workload::uniform_keys;
use warpgrid::{BatchResults, Device};

fn keys() -> usize {
    std::env::var("WARPGRID_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000)
}

fn tables(c: &mut Criterion) {
    let n = keys();
    let keys = uniform_keys(n, 42);
    let (put, get) = build_batches(&keys);
    let device = Device::cpu().expect("the cpu backend is always available");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(device.threads())
        .build()
        .unwrap();
    let mut results = BatchResults::new();

    let mut group = c.benchmark_group("kv_put_then_get");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * n as u64));
    group.bench_function(BenchmarkId::new("warpgrid", n), |b| {
        b.iter(|| run_warpgrid(&device, 24, &put, &get, &mut results).unwrap());
    });
    group.bench_function(BenchmarkId::new("hashbrown_1_thread", n), |b| {
        b.iter(|| run_hashbrown(&keys).unwrap());
    });
    group.bench_function(BenchmarkId::new("dashmap_all_threads", n), |b| {
        b.iter(|| run_dashmap(&pool, &keys).unwrap());
    });
    group.finish();
}

criterion_group!(benches, tables);
criterion_main!(benches);
