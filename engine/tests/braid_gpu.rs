//! Braids on every GPU backend (wgpu, CUDA) against the CPU backend (SPEC §0: integer work
//! is bit-identical): random braid configs (every builder, 1 to 4 tori, small `max_pending`
//! so the drop rule cuts, corrective events, injections at later instants than the calendar
//! covers) run in several `run_until` pieces on both, and after every piece the digest of
//! every torus, every statistics counter, the interval history and the convergence agree.
//! A backend that cannot run here is skipped with a printed reason, unless
//! `WARPGRID_REQUIRE_WGPU=1` (CI, on lavapipe) or `WARPGRID_REQUIRE_CUDA=1` makes that a
//! failure.

use warpgrid_engine::braid::{
    Braid, BraidConfig, BraidStats, EdgesBuilder, InjectBuilder, TorusConfig,
};
use warpgrid_engine::rng::SplitMix64;
use warpgrid_engine::{BackendKind, Device};

#[path = "braid/generate.rs"]
mod generate;
use generate::{pick, random_braid};

#[path = "gpu/open.rs"]
mod gpu_open;
use gpu_open::{gpus, open};

/// Statistics without the timings (which differ run to run and backend to backend); the
/// counts behind the timings (instants with events per torus, events, exchanges) stay.
fn counters(braid: &Braid) -> BraidStats {
    let mut s = braid.stats();
    let l = s.latency;
    s.latency = Default::default();
    s.latency.instants = l.instants;
    s.latency.events = l.events;
    s.latency.exchanges = l.exchanges;
    s
}

/// Runs `config` on the CPU and on `gpu` to each of `pieces` in turn, comparing after each.
/// Returns the final statistics.
fn compare(config: &BraidConfig, gpu: &Device, pieces: &[u32]) -> BraidStats {
    let mut cpu = Braid::new(config).unwrap();
    let mut dev = Braid::new_on(gpu, config).unwrap();
    assert_eq!(cpu.digests(), dev.digests(), "initial digests, {config:?}");
    for &t in pieces {
        cpu.run_until(t).unwrap();
        dev.run_until_on(gpu, t).unwrap();
        for (i, (a, b)) in cpu.tori().iter().zip(dev.tori()).enumerate() {
            let diff = |what: &str, x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| {
                let kind = gpu.kind();
                panic!("torus {i} {what} at {t}: cpu {x:?}\n {kind} {y:?}\n{config:?}")
            };
            let (pa, pb) = (a.pending_events(), b.pending_events());
            if pa != pb {
                let only_a: Vec<_> = pa.iter().filter(|e| !pb.contains(e)).collect();
                let only_b: Vec<_> = pb.iter().filter(|e| !pa.contains(e)).collect();
                diff("pending", &only_a, &only_b);
            }
            for c in 0..a.cells() {
                if a.process(c) != b.process(c) {
                    diff(&format!("process {c}"), &a.process(c), &b.process(c));
                }
                if a.out_edges(c) != b.out_edges(c) {
                    diff(&format!("edges of {c}"), &a.out_edges(c), &b.out_edges(c));
                }
            }
        }
        let (c, d) = (counters(&cpu), counters(&dev));
        assert_eq!(c, d, "{} at {t}: {config:?}", gpu.kind());
    }
    counters(&dev)
}

#[test]
fn random_braids_agree_with_the_cpu() {
    for gpu in gpus() {
        random_braids_agree_with_the_cpu_on(&gpu);
    }
}

fn random_braids_agree_with_the_cpu_on(gpu: &Device) {
    let mut rng = SplitMix64::new(77);
    let (mut exchanges, mut dropped, mut corrective, mut boundary) = (0, 0, 0, 0);
    let mut tori = std::collections::BTreeSet::new();
    for _ in 0..14 {
        let mut config = random_braid(&mut rng);
        config.instants = config.instants.min(160);
        let mut pieces = Vec::new();
        let mut t = 0;
        while t < config.instants {
            t = (t + pick(&mut rng, 1, 70) as u32).min(config.instants);
            pieces.push(t);
        }
        let s = compare(&config, gpu, &pieces);
        exchanges += s.exchanges;
        dropped += s.events_dropped();
        corrective += s.corrective_events;
        boundary += s.boundary_violations;
        tori.insert(config.tori);
    }
    // The generator must exercise exchanges, the drop rule and corrective events, with one
    // torus and with several.
    assert!(
        exchanges > 20 && dropped > 100 && corrective > 20 && boundary > 20,
        "{exchanges} {dropped} {corrective} {boundary}"
    );
    assert!(tori.contains(&1) && tori.len() > 1, "{tori:?}");
}

#[test]
fn dense_instants_with_drops_agree_with_the_cpu() {
    for gpu in gpus() {
        dense_instants_with_drops_agree_with_the_cpu_on(&gpu);
    }
}

fn dense_instants_with_drops_agree_with_the_cpu_on(gpu: &Device) {
    // Neighbour edges (3 out-edges a cell), a population well over max_pending: every
    // instant emits more than fits and the drop rule keeps the smallest (cut by delay, then
    // destination, then source, then payload).
    for (dims, max_pending, count, tori) in [
        ([8, 8, 8], 700, 600, 2),
        ([12, 6, 5], 2000, 2000, 3),
        ([4, 4, 4], 50, 50, 1),
        // More than 65535 cells: the cut over cells must not be one long loop.
        ([66, 32, 32], 3000, 3000, 1),
    ] {
        let config = BraidConfig::new(
            TorusConfig::new(dims)
                .with_max_pending(max_pending)
                .with_inject(InjectBuilder::Random {
                    count,
                    seed: 9,
                    at: 0,
                }),
        )
        .with_tori(tori)
        .with_adaptive_interval(10, 5, 40);
        let s = compare(&config, gpu, &[3, 17, 40, 41, 90]);
        assert!(s.events_dropped() > 1000, "{dims:?}: {s:?}");
        assert!(s.events_processed() > 2000, "{dims:?}");
    }
}

#[test]
fn far_injections_and_idle_stretches_agree_with_the_cpu() {
    for gpu in gpus() {
        far_injections_and_idle_stretches_agree_with_the_cpu_on(&gpu);
    }
}

fn far_injections_and_idle_stretches_agree_with_the_cpu_on(gpu: &Device) {
    // Listed injections far beyond max_delay (they wait on the host), fixed interval with
    // exchanges over idle stretches, run in many small pieces and some long ones.
    let events = (0..40)
        .map(|i| {
            [
                i,
                2 * i,
                3 * i,
                i + 1,
                0,
                0,
                (i * 37) % 200 - 100,
                (i * 13) % 300,
            ]
        })
        .collect();
    let config = BraidConfig::new(
        TorusConfig::new([5, 4, 3])
            .with_max_delay(3)
            .with_max_pending(2000)
            .with_inject(InjectBuilder::List { events }),
    )
    .with_tori(3)
    .with_fixed_interval(7);
    let pieces: Vec<u32> = (1..30).chain([60, 61, 200, 333, 340]).collect();
    let s = compare(&config, gpu, &pieces);
    assert!(s.exchanges >= 40 && s.events_processed() > 40, "{s:?}");
}

#[test]
fn a_run_alternating_backends_agrees() {
    for gpu in gpus() {
        a_run_alternating_backends_agrees_on(&gpu);
    }
}

fn a_run_alternating_backends_agrees_on(gpu: &Device) {
    let cpu_device = Device::cpu().unwrap();
    let mut rng = SplitMix64::new(5);
    let config = random_braid(&mut rng).with_tori(3);
    let mut reference = Braid::new(&config).unwrap();
    let mut mixed = Braid::new(&config).unwrap();
    for (k, t) in [10, 25, 40, 70, 71, 120].into_iter().enumerate() {
        reference.run_until(t).unwrap();
        let device = if k % 2 == 0 { gpu } else { &cpu_device };
        mixed.run_until_on(device, t).unwrap();
        assert_eq!(counters(&reference), counters(&mixed), "at {t}");
    }
}

#[test]
fn a_braid_too_large_for_the_adapter_is_refused_by_name() {
    for gpu in gpus() {
        a_braid_too_large_for_the_adapter_is_refused_by_name_on(&gpu);
    }
}

fn a_braid_too_large_for_the_adapter_is_refused_by_name_on(gpu: &Device) {
    // 2^24 pending events a torus: hundreds of MiB per buffer on 8 tori.
    let config =
        BraidConfig::new(TorusConfig::new([4, 4, 4]).with_max_pending(1 << 24)).with_tori(8);
    match Braid::new_on(gpu, &config) {
        Ok(mut braid) => braid.run_until_on(gpu, 5).unwrap(),
        Err(e) => {
            let msg = e.to_string();
            eprintln!("refused on {}: {msg}", gpu.kind());
            // wgpu names its binding limit; CUDA has none here, only its memory.
            let reason = match gpu.kind() {
                BackendKind::Cuda => "out of device memory",
                _ => "max_storage_buffer_binding_size",
            };
            assert!(msg.contains(reason), "{msg}");
        }
    }
}

#[test]
fn a_braid_past_the_kernels_32_bit_indices_is_refused_by_name_on_cuda() {
    let Some(cuda) = open(BackendKind::Cuda, "WARPGRID_REQUIRE_CUDA") else {
        return;
    };
    // 2 tori of 2^28 pending events with 3 out-edges a cell: the emission buffer would hold
    // 2 · 3 · 2^28 events of 3 words, more than braid.cu's u32 indices reach. Refused
    // before anything is allocated.
    let config =
        BraidConfig::new(TorusConfig::new([4, 4, 4]).with_max_pending(1 << 28)).with_tori(2);
    let err = Braid::new_on(&cuda, &config).unwrap_err().to_string();
    assert!(
        err.contains("em buffer") && err.contains("32-bit words"),
        "{err}"
    );
}

#[test]
fn a_braid_moving_between_gpu_backends_agrees() {
    let devices = gpus();
    if devices.len() < 2 {
        eprintln!("skipped: needs two GPU backends here");
        return;
    }
    let mut rng = SplitMix64::new(11);
    let config = random_braid(&mut rng).with_tori(2);
    let mut reference = Braid::new(&config).unwrap();
    let mut mixed = Braid::new_on(&devices[1], &config).unwrap();
    for (k, t) in [10, 25, 40, 70, 71, 120].into_iter().enumerate() {
        reference.run_until(t).unwrap();
        mixed.run_until_on(&devices[k % 2], t).unwrap();
        assert_eq!(counters(&reference), counters(&mixed), "at {t}");
        assert_eq!(reference.digests(), mixed.digests(), "at {t}");
    }
}

#[test]
fn a_hot_cell_agrees_with_the_cpu() {
    for gpu in gpus() {
        a_hot_cell_agrees_with_the_cpu_on(&gpu);
    }
}

fn a_hot_cell_agrees_with_the_cpu_on(gpu: &Device) {
    // 3500 events at one cell with 20 out-edges: 70000 emitted events from one run. It used
    // to be applied by one invocation, which lavapipe stops after 65535 loop iterations;
    // now the run is applied in chunks over several rounds and must agree with the CPU.
    // They arrive at instant 5, after other events and exchanges of the same call.
    let events = (0..3_500i64)
        .map(|i| [0, 0, 0, i % 5, i % 3, i % 7, (i * 7919) % 1001 - 500, 5])
        .chain((0..40).map(|i| [i, i / 3, 1, 2, 2, 2, i * 5 - 100, i % 4]))
        .collect();
    let edges = (1..=20i64)
        .map(|k| [0, 0, 0, k % 4, k / 4 % 4, k / 16, 1])
        .collect();
    let config = BraidConfig::new(
        TorusConfig::new([4, 4, 4])
            .with_max_pending(80_000)
            .with_edges(EdgesBuilder::List { edges })
            .with_inject(InjectBuilder::List { events }),
    )
    .with_tori(2)
    .with_fixed_interval(2);
    let s = compare(&config, gpu, &[8]);
    assert!(s.events_processed() >= 2 * 3_540, "{s:?}");
}

#[test]
fn hot_cells_with_long_runs_and_cuts_agree_with_the_cpu() {
    for gpu in gpus() {
        hot_cells_with_long_runs_and_cuts_agree_with_the_cpu_on(&gpu);
    }
}

fn hot_cells_with_long_runs_and_cuts_agree_with_the_cpu_on(gpu: &Device) {
    // 30000 events at cell 0 in one instant (from 64 sources, 21 payloads: many equal
    // events), and a cycle of list edges that keeps cells 0, 1, 2 and 16 hot: runs of
    // thousands to tens of thousands of events every instant, longer than one tile of the
    // ordering and one apply chunk, more emitted than max_pending, so the drop rule's cut
    // falls inside one hot cell's emissions (down to the payload, among equal events).
    // Before chunked apply and merge-pass ordering, lavapipe stopped these loops.
    let events = (0..30_000i64)
        .map(|i| {
            [
                0,
                0,
                0,
                i % 4,
                i / 4 % 4,
                i / 16 % 4,
                (i * 7919) % 21 - 10,
                1,
            ]
        })
        .collect();
    let edges = vec![
        [0, 0, 0, 1, 0, 0, 1],
        [0, 0, 0, 2, 0, 0, 2],
        [0, 0, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 0, 1],
        [0, 1, 0, 0, 0, 0, 2],
        [0, 1, 0, 1, 0, 0, 3],
    ];
    let config = BraidConfig::new(
        TorusConfig::new([4, 4, 4])
            .with_max_pending(50_000)
            .with_edges(EdgesBuilder::List { edges })
            .with_inject(InjectBuilder::List { events }),
    )
    .with_tori(2)
    .with_fixed_interval(4);
    let s = compare(&config, gpu, &[2, 3, 7, 12, 30]);
    assert!(s.events_dropped() > 10_000, "{s:?}");
    assert!(s.events_processed() > 200_000, "{s:?}");
}
