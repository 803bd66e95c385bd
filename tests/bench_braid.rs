//! `warpgrid bench braid` (SPEC §7 row 5, issue 6): the bench runs warpgrid's braid and the
//! heap reference on the same workloads and fails unless they agree (digests, event and
//! exchange counters); its workloads are what it says they are. No timing is asserted.
//!
//! The full measurement recorded in docs/perf/README.md is the ignored test below:
//! `cargo test --release --test bench_braid -- --ignored --nocapture`.

use warpgrid::Device;
use warpgrid::bench::braid::{self, BraidBenchConfig, Shape, ring_edges};
use warpgrid::engine::braid::reference::ReferenceBraid;
use warpgrid::engine::braid::{Braid, EdgesBuilder, Torus};

/// The quick config on an 8³ lattice.
fn small() -> BraidBenchConfig {
    BraidBenchConfig {
        dims: [8, 8, 8],
        max_pending: 1 << 12,
        neighbours_inject: 64,
        warmup: 6,
        measure: 8,
        reference_measure: 4,
        long_factor: 3,
        interval: 5,
        ..BraidBenchConfig::quick()
    }
}

#[test]
fn the_bench_checks_warpgrid_against_the_reference() {
    let cfg = small();
    let device = Device::cpu().unwrap();
    let mut messages = 0;
    let report = braid::run(&device, &cfg, |_| messages += 1).unwrap();
    assert!(messages > 0);
    assert_eq!(report.workloads.len(), 2);
    for w in &report.workloads {
        let names: Vec<_> = w.systems.iter().map(|s| (s.system, s.tori)).collect();
        assert_eq!(
            names,
            [
                ("warpgrid", 3),
                ("warpgrid", 1),
                ("heap reference", 3),
                ("heap reference", 1)
            ]
        );
        // The reported check digests are the braids' own, computed here independently.
        for c in &w.checks {
            assert_eq!(c.instant, cfg.check_instant());
            let bc = cfg.braid_config(w.workload, c.tori);
            let mut fast = Braid::new(&bc).unwrap();
            fast.run_until(c.instant).unwrap();
            let mut slow = ReferenceBraid::new(&bc).unwrap();
            slow.run_until(c.instant).unwrap();
            let want: Vec<String> = slow
                .stats()
                .digests
                .iter()
                .map(|d| format!("{d:016x}"))
                .collect();
            assert_eq!(c.digests, want, "{:?} {} tori", w.workload, c.tori);
            let hex: Vec<String> = fast.digests().iter().map(|d| format!("{d:016x}")).collect();
            assert_eq!(c.digests, hex);
            let processed: Vec<u64> = fast.tori().iter().map(Torus::events_processed).collect();
            assert_eq!(c.events_processed, processed);
        }
        // Event counts: the timed windows cover what they say, and the reference's window
        // is a prefix of warpgrid's (same instants, same events there).
        let [w3, w1, r3, r1] = &w.systems[..] else {
            unreachable!()
        };
        assert_eq!((w3.from, w3.to), (cfg.warmup, cfg.run_length()));
        assert_eq!((r3.from, r3.to), (cfg.warmup, cfg.check_instant()));
        assert!(w3.events >= r3.events && r3.events > 0);
        assert!(w1.events >= r1.events && r1.events > 0);
        assert_eq!(w3.pending.len(), 3);
        assert_eq!(w1.pending.len(), 1);
        let m = &w.memory;
        assert_eq!(m.run_length, cfg.run_length());
        assert_eq!(m.long_run_length, cfg.run_length() * cfg.long_factor);
        assert!(m.braid_bytes_at_l > 0 && m.braid_bytes_at_long > 0);
        assert_eq!(w.bars.len(), 2);
        match w.workload {
            // Fan-out 1: the population stays at max_pending; only corrective events that
            // meet a full torus are dropped.
            Shape::NeighbourRing => {
                assert_eq!(w3.pending, vec![cfg.max_pending; 3]);
                assert_eq!(m.long_run_pending, vec![cfg.max_pending; 3]);
                let corrective_max = u64::from(cfg.dims[1] * cfg.dims[2])
                    * u64::from(cfg.run_length().div_ceil(cfg.interval))
                    * 3;
                assert!(w3.dropped <= corrective_max, "{}", w3.dropped);
            }
            // Fan-out 3: capped at max_pending, two emissions of three dropped.
            Shape::Neighbours => {
                assert_eq!(w3.pending, vec![cfg.max_pending; 3]);
                assert!(w3.dropped >= w3.events, "{} {}", w3.dropped, w3.events);
            }
        }
    }
    let text = braid::render(&report);
    assert!(text.contains("workload neighbour-ring"), "{text}");
    assert!(text.contains("heap reference"), "{text}");
    assert!(text.contains("peak RSS"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["bench"], "braid");
    assert_eq!(json["workloads"][0]["workload"], "neighbour-ring");
    assert_eq!(
        json["workloads"][0]["checks"][0]["digests"][0]
            .as_str()
            .unwrap()
            .len(),
        16
    );
}

#[test]
fn the_ring_gives_every_cell_one_edge_to_a_lattice_neighbour() {
    let dims = [6, 5, 4];
    let edges = ring_edges(dims);
    assert_eq!(edges.len(), 6 * 5 * 4);
    for (i, e) in edges.iter().enumerate() {
        let step = [e[3] - e[0], e[4] - e[1], e[5] - e[2]];
        let axis = ((e[0] + e[1] + e[2]) % 3) as usize;
        let mut want = [0; 3];
        want[axis] = 1;
        assert_eq!(step, want, "edge {i}");
        assert_eq!(e[6], 1);
    }
    let cfg = small();
    let t = cfg.torus_config(Shape::NeighbourRing);
    assert!(matches!(t.edges, EdgesBuilder::List { .. }));
    let torus = Torus::new(&t).unwrap();
    assert_eq!(torus.edges(), 512);
    assert_eq!(torus.pending(), cfg.max_pending);
}

#[test]
fn braids_on_a_device_pool_match_braids_on_the_callers_pool() {
    use warpgrid::{BackendKind, DeviceConfig};
    let cfg = small().braid_config(Shape::Neighbours, 3);
    let mut plain = Braid::new(&cfg).unwrap();
    plain.run_until(25).unwrap();
    for threads in [1, 3] {
        let device = Device::open(&DeviceConfig {
            backend: BackendKind::Cpu,
            threads,
            memory_limit: None,
        })
        .unwrap();
        let mut on = Braid::new_on(&device, &cfg).unwrap();
        on.run_until_on(&device, 25).unwrap();
        assert_eq!(on.digests(), plain.digests(), "{threads} threads");
        assert!(on.memory_bytes() > 0);
    }
}

#[test]
fn the_bench_refuses_a_reference_window_longer_than_the_timed_one() {
    let cfg = BraidBenchConfig {
        reference_measure: 9,
        measure: 8,
        ..small()
    };
    let err = braid::run(&Device::cpu().unwrap(), &cfg, |_| {}).unwrap_err();
    assert!(err.contains("reference_measure"), "{err}");
}

/// The measurement recorded in docs/perf/README.md (the function `warpgrid bench braid`
/// calls, with the full config). Writes `WARPGRID_BENCH_OUT` (default
/// `target/bench-braid.json`).
#[test]
#[ignore = "measurement: cargo test --release --test bench_braid -- --ignored --nocapture"]
fn full_braid_bench() {
    let cfg = if std::env::var_os("WARPGRID_BENCH_QUICK").is_some() {
        BraidBenchConfig::quick()
    } else {
        BraidBenchConfig::full()
    };
    let device = Device::cpu().unwrap();
    let report = braid::run(&device, &cfg, |m| eprintln!("  {m}")).unwrap();
    print!("{}", braid::render(&report));
    let out = std::env::var("WARPGRID_BENCH_OUT").unwrap_or("target/bench-braid.json".into());
    let json = serde_json::to_string_pretty(&serde_json::json!({ "suites": [report] })).unwrap();
    std::fs::write(&out, json).unwrap();
    println!("JSON report: {out}");
}
