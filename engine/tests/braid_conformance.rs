//! The parallel kernel against the heap reference on many random lattices (SPEC §3.1: equal
//! digests are how implementations prove they agree): random dims, delays, process
//! fractions, random and listed edges, injections (also mid-run, also refused ones), small
//! `max_pending` to force drops, instants large enough to be split over threads; digests
//! compared every few instants, on rayon pools of 1 and 4 threads. Then whole braids against
//! the reference braid, and braids across thread counts.

use rayon::ThreadPoolBuilder;
use warpgrid_engine::braid::reference::{ReferenceBraid, ReferenceTorus};
use warpgrid_engine::braid::{Braid, BraidConfig, InjectBuilder, Torus, TorusConfig};
use warpgrid_engine::rng::SplitMix64;

#[path = "braid/generate.rs"]
mod generate;
use generate::{pick, random_braid, random_config};

/// Runs both kernels side by side through random `run_until`, `step` and `inject` calls,
/// comparing everything observable after each.
fn compare(config: &TorusConfig, rng: &mut SplitMix64) -> (u64, u64) {
    let mut fast = Torus::new(config).unwrap();
    let mut slow = ReferenceTorus::new(config).unwrap();
    assert_eq!(fast.digest(), slow.digest(), "initial digest, {config:?}");
    let cells = fast.cells();
    let end = pick(rng, 20, 120) as u32;
    while fast.now() < end {
        match rng.below(4) {
            0 => assert_eq!(fast.step(), slow.step()),
            1 => {
                let (dst, src) = (
                    rng.below(cells as u64) as u32,
                    rng.below(cells as u64) as u32,
                );
                let payload = rng.next_u64() as i32;
                let at = (fast.now() as u64 + rng.below(200)).saturating_sub(3) as u32;
                assert_eq!(
                    fast.inject_at(dst, src, payload, at),
                    slow.inject_at(dst, src, payload, at)
                );
            }
            _ => {
                let t = fast.now() + pick(rng, 0, 6) as u32;
                assert_eq!(fast.run_until(t), slow.run_until(t));
            }
        }
        assert_eq!(fast.now(), slow.now());
        assert_eq!(fast.pending(), slow.pending());
        assert_eq!(fast.events_processed(), slow.events_processed());
        assert_eq!(fast.events_dropped(), slow.events_dropped());
        assert_eq!(
            fast.digest(),
            slow.digest(),
            "digest at {}, {config:?}",
            fast.now()
        );
    }
    assert_eq!(fast.pending_events(), slow.pending_events());
    (fast.events_processed(), fast.events_dropped())
}

fn kernels_agree_on_random_lattices(threads: usize, seed: u64) {
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut rng = SplitMix64::new(seed);
    let (mut processed, mut dropped) = (0, 0);
    pool.install(|| {
        for i in 0..60 {
            let config = random_config(&mut rng, i % 6 == 5);
            let (p, d) = compare(&config, &mut rng);
            processed += p;
            dropped += d;
        }
    });
    // The generator must actually exercise processing and the drop rule.
    assert!(processed > 100_000, "only {processed} events processed");
    assert!(dropped > 1_000, "only {dropped} events dropped");
}

#[test]
fn kernels_agree_on_random_lattices_one_thread() {
    kernels_agree_on_random_lattices(1, 11);
}

#[test]
fn kernels_agree_on_random_lattices_four_threads() {
    kernels_agree_on_random_lattices(4, 12);
}

#[test]
fn dense_instants_split_over_threads_agree_with_the_reference() {
    // Neighbour edges, every cell a process, a population capped by max_pending: instants of
    // tens of thousands of events, split over 4 threads, concentrated by the drop rule.
    let pool = ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    pool.install(|| {
        for (dims, max_pending, count) in
            [([16, 16, 16], 60_000, 8_000), ([32, 8, 8], 50_000, 50_000)]
        {
            let config = TorusConfig::new(dims)
                .with_max_pending(max_pending)
                .with_inject(InjectBuilder::Random {
                    count,
                    seed: 3,
                    at: 0,
                });
            let mut fast = Torus::new(&config).unwrap();
            let mut slow = ReferenceTorus::new(&config).unwrap();
            for t in [1, 2, 3, 5, 8, 13, 21] {
                fast.run_until(t).unwrap();
                slow.run_until(t).unwrap();
                assert_eq!(fast.digest(), slow.digest(), "{dims:?} at {t}");
            }
            assert!(fast.events_dropped() > 0);
        }
    });
}

#[test]
fn braids_agree_with_the_reference_braid() {
    let pool = ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let mut rng = SplitMix64::new(21);
    let (mut exchanges, mut boundary, mut global, mut corrective) = (0, 0, 0, 0);
    pool.install(|| {
        for _ in 0..40 {
            let config = random_braid(&mut rng);
            let mut braid = Braid::new(&config).unwrap();
            let mut reference = ReferenceBraid::new(&config).unwrap();
            let mut t = 0;
            while t < config.instants {
                t = (t + pick(&mut rng, 1, 60) as u32).min(config.instants);
                braid.run_until(t).unwrap();
                reference.run_until(t).unwrap();
                let (s, r) = (braid.stats(), reference.stats());
                assert_eq!(
                    s.tori.iter().map(|t| t.digest).collect::<Vec<_>>(),
                    r.digests,
                    "{config:?} at {t}"
                );
                assert_eq!(
                    (
                        s.exchanges,
                        s.boundary_violations,
                        s.global_violations,
                        s.corrective_events
                    ),
                    (
                        r.exchanges,
                        r.boundary_violations,
                        r.global_violations,
                        r.corrective_events
                    )
                );
                assert_eq!(
                    (s.corrective_dropped, s.critical, s.hash_mismatches),
                    (r.corrective_dropped, r.critical, r.hash_mismatches)
                );
                assert_eq!(s.interval_history, r.interval_history);
                assert_eq!(
                    s.tori.iter().map(|t| t.events_dropped).collect::<Vec<_>>(),
                    r.events_dropped
                );
            }
            let s = braid.stats();
            exchanges += s.exchanges;
            boundary += s.boundary_violations;
            global += s.global_violations;
            corrective += s.corrective_events;
        }
    });
    assert!(
        exchanges > 100 && boundary > 100 && global > 10 && corrective > 100,
        "{exchanges} {boundary} {global} {corrective}"
    );
}

#[test]
fn braids_are_deterministic_across_thread_counts() {
    let mut rng = SplitMix64::new(33);
    let mut configs: Vec<BraidConfig> = (0..6).map(|_| random_braid(&mut rng)).collect();
    configs.push(
        BraidConfig::new(
            TorusConfig::new([16, 16, 16])
                .with_max_pending(40_000)
                .with_inject(InjectBuilder::Random {
                    count: 10_000,
                    seed: 5,
                    at: 0,
                }),
        )
        .with_adaptive_interval(10, 5, 50)
        .with_instants(40),
    );
    for config in configs {
        let run = |threads: usize| {
            let pool = ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut braid = Braid::new(&config).unwrap();
                braid.run().unwrap();
                let mut s = braid.stats();
                s.latency = Default::default();
                s
            })
        };
        let one = run(1);
        assert_eq!(one, run(4), "{config:?}");
        assert_eq!(one, run(2), "{config:?}");
    }
}
