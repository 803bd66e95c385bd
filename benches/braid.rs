//! Criterion bench of SPEC §7 row 5: a braid of three 32³ tori with neighbour edges and a
//! sustained event population, warpgrid (three tori, and one torus alone) beside the
//! heap-ordered single-thread reference kernel, on the workloads of `warpgrid::bench::braid`
//! (`neighbour-ring`: fan-out 1, population held at `max_pending`; `neighbours`: fan-out 3,
//! capped by `max_pending`). `warpgrid bench braid` runs the same workloads and prints the
//! ratios, the bars and the memory check.
//!
//! Every braid is first warmed up to the config's warm-up instant, where warpgrid's digests
//! must equal the reference's (the bench panics otherwise). Each iteration then advances the
//! warm braid by one exchange interval (warpgrid; the reference by one instant). The
//! workloads are in a steady state, so every iteration does the same work; the throughput is
//! the events of a first, untimed iteration. An iteration of one interval keeps every braid
//! segment whole: shorter calls would split segments and add the idle tail at a segment's
//! end (a third torus running alone on one of two threads) more often than a run does.
//!
//! `WARPGRID_BENCH_QUICK=1` uses the quick config (16³ tori).

use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use warpgrid::Device;
use warpgrid::bench::braid::BraidBenchConfig;
use warpgrid::engine::braid::Braid;
use warpgrid::engine::braid::reference::ReferenceBraid;

fn config() -> BraidBenchConfig {
    if std::env::var_os("WARPGRID_BENCH_QUICK").is_some() {
        BraidBenchConfig::quick()
    } else {
        BraidBenchConfig::full()
    }
}

fn processed(b: &Braid) -> u64 {
    b.tori().iter().map(|t| t.events_processed()).sum()
}

fn braid(c: &mut Criterion) {
    let cfg = config();
    let device = Device::cpu().expect("the cpu backend is always available");
    for &shape in &cfg.shapes {
        let mut group = c.benchmark_group(format!("braid_{}", shape.name()));
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        let step = cfg.interval;
        for tori in [3, 1] {
            let bc = cfg.braid_config(shape, tori);
            let name = if tori == 1 { "1_torus" } else { "3_tori" };
            let mut fast = Braid::new_on(&device, &bc).unwrap();
            fast.run_until_on(&device, cfg.warmup).unwrap();
            let mut slow = ReferenceBraid::new(&bc).unwrap();
            slow.run_until(cfg.warmup).unwrap();
            assert_eq!(
                fast.digests(),
                slow.stats().digests,
                "{} {tori} tori: warpgrid and the reference differ at instant {}",
                shape.name(),
                cfg.warmup
            );
            let before = processed(&fast);
            fast.run_until_on(&device, fast.now() + step).unwrap();
            group.throughput(Throughput::Elements(processed(&fast) - before));
            group.bench_function(BenchmarkId::new("warpgrid", name), |b| {
                b.iter(|| fast.run_until_on(&device, fast.now() + step).unwrap());
            });
            if tori == 3 {
                let before: u64 = slow.stats().events_processed.iter().sum();
                slow.run_until(slow.now() + 1).unwrap();
                let after: u64 = slow.stats().events_processed.iter().sum();
                group.throughput(Throughput::Elements(after - before));
                // About a second an iteration: room for ten samples.
                group.measurement_time(Duration::from_secs(12));
                group.bench_function(BenchmarkId::new("heap_reference", name), |b| {
                    b.iter(|| slow.run_until(slow.now() + 1).unwrap())
                });
                group.measurement_time(Duration::from_secs(5));
            }
        }
        group.finish();
    }
}

criterion_group!(benches, braid);
criterion_main!(benches);
