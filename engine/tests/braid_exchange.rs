//! The braid (SPEC §3.2), hand-worked: projection fields and hash, application around the
//! braid, boundary violations and the corrective events that make faces agree, global
//! violations (counted, not corrected), critical applications, hash mismatches (ignored
//! projections), corrective events dropped at `max_pending`, the adaptive interval shrinking
//! and growing within its bounds, the exchange schedule (an idle braid still exchanges; a run
//! to N makes no exchange at N), and the end-of-clock limit. Each braid scenario is also run
//! on the reference braid, which must agree counter for counter and digest for digest.

use warpgrid_engine::braid::reference::ReferenceBraid;
use warpgrid_engine::braid::{
    Braid, BraidConfig, BraidError, Event, Projection, Torus, TorusConfig, Workload,
};

fn config(dims: [u32; 3], tori: u32) -> BraidConfig {
    BraidConfig::new(
        TorusConfig::new(dims)
            .with_max_delay(8)
            .with_max_pending(64),
    )
    .with_tori(tori)
}

fn cells(dims: [u32; 3]) -> u32 {
    dims.iter().product()
}

/// Every cell a process, no edges, the given injections.
fn all_processes(dims: [u32; 3], injections: &[(u32, u32, u32, i32)]) -> Workload {
    Workload {
        processes: (0..cells(dims)).collect(),
        edges: vec![],
        injections: injections
            .iter()
            .map(|&(t, dst, src, payload)| Event {
                t,
                dst,
                src,
                payload,
            })
            .collect(),
    }
}

/// A process at cell 0 with an edge to itself, fed one event: one event per instant forever.
fn self_loop() -> Workload {
    Workload {
        processes: vec![0],
        edges: vec![(0, 0, 1)],
        injections: vec![Event {
            t: 0,
            dst: 0,
            src: 0,
            payload: 1,
        }],
    }
}

fn empty() -> Workload {
    Workload::default()
}

/// Runs the braid and the reference braid to each target in turn and checks they agree.
fn agree(config: &BraidConfig, workloads: &[Workload], targets: &[u32]) -> Braid {
    let mut braid = Braid::from_workloads(config, workloads).unwrap();
    let mut reference = ReferenceBraid::from_workloads(config, workloads).unwrap();
    for &t in targets {
        braid.run_until(t).unwrap();
        reference.run_until(t).unwrap();
        let (s, r) = (braid.stats(), reference.stats());
        assert_eq!(s.now, r.now);
        assert_eq!(s.interval, r.interval);
        assert_eq!(s.exchanges, r.exchanges);
        assert_eq!(s.boundary_violations, r.boundary_violations);
        assert_eq!(s.global_violations, r.global_violations);
        assert_eq!(s.hash_mismatches, r.hash_mismatches);
        assert_eq!(s.corrective_events, r.corrective_events);
        assert_eq!(s.corrective_dropped, r.corrective_dropped);
        assert_eq!(s.critical, r.critical);
        assert_eq!(s.interval_history, r.interval_history);
        assert_eq!(
            s.tori.iter().map(|t| t.digest).collect::<Vec<_>>(),
            r.digests,
            "digests at {t}"
        );
        assert!(braid.tori().iter().all(|torus| torus.now() == braid.now()));
    }
    braid
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[test]
fn projection_fields_and_hash() {
    let dims = [2, 2, 2];
    // cell (0,1,0) = 2 gets acc 5; (1,0,0) = 4 gets acc -7 (not on the x = 0 face).
    let w = all_processes(dims, &[(0, 2, 0, 5), (0, 4, 0, -7), (3, 1, 1, 0)]);
    let mut torus = Torus::from_workload(&config(dims, 1).torus, &w).unwrap();
    torus.run_until(1).unwrap();
    let p = Projection::extract(&torus, 3);
    assert_eq!(
        (
            p.torus,
            p.now,
            p.events_processed,
            p.pending,
            p.processes,
            p.edges
        ),
        (3, 1, 2, 1, 8, 0)
    );
    assert_eq!(p.face, vec![0, 0, 5, 0]);
    let mut constraints = [0i32; 16];
    constraints[..6].copy_from_slice(&[2, 8, 0, 1, 1, -2]);
    assert_eq!(p.constraints, constraints);
    let mut bytes = Vec::new();
    for v in [3u32, 1, 2, 1, 8, 0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for v in p.face.iter().chain(constraints.iter()) {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(p.hash, fnv(&bytes));
    assert_eq!(p.compute_hash(), p.hash);

    // events_processed enters the hash as a wrapping u32.
    let mut q = p.clone();
    q.events_processed += 1 << 32;
    assert_eq!(q.compute_hash(), p.hash);
}

#[test]
fn boundary_violations_inject_corrective_events_that_make_faces_agree() {
    let dims = [2, 2, 2];
    let cfg = config(dims, 2)
        .with_fixed_interval(5)
        .with_tolerances(10, 1.0);
    // Torus 0: x = 0 face acc [100, 0, 0, 5]. Torus 1: x = 1 face acc [20, 0, 0, -30].
    let w0 = all_processes(dims, &[(0, 0, 0, 100), (0, 3, 0, 5)]);
    let w1 = all_processes(dims, &[(0, 4, 0, 20), (0, 7, 0, -30)]);
    let braid = agree(&cfg, &[w0.clone(), w1.clone()], &[5]);
    assert_eq!(
        braid.stats().exchanges,
        0,
        "a run to 5 makes no exchange at 5"
    );

    let braid = agree(&cfg, &[w0.clone(), w1.clone()], &[5, 6]);
    let s = braid.stats();
    // P0 -> torus 1: diffs 80, 0, 0, 35 (> 10 twice). P1 -> torus 0: all zero.
    assert_eq!(
        (s.exchanges, s.boundary_violations, s.corrective_events),
        (1, 2, 2)
    );
    assert_eq!(
        (
            s.global_violations,
            s.critical,
            s.hash_mismatches,
            s.corrective_dropped
        ),
        (0, 0, 0, 0)
    );
    // The corrective events (5, 4, 4, 80) and (5, 7, 7, 35) were processed at instant 5.
    let t1 = &braid.tori()[1];
    assert_eq!(t1.process(4).unwrap().acc, 100);
    assert_eq!(t1.process(7).unwrap().acc, 5);
    assert_eq!(t1.events_processed(), 4);

    // The next exchange finds the faces equal: the disturbance converged in one exchange.
    let braid = agree(&cfg, &[w0, w1], &[6, 11]);
    let s = braid.stats();
    assert_eq!(
        (s.exchanges, s.boundary_violations, s.corrective_events),
        (2, 2, 2)
    );
    assert_eq!(
        (s.convergence.disturbances, s.convergence.converged),
        (1, 1)
    );
    assert_eq!((s.convergence.last, s.convergence.ongoing), (Some(1), None));
}

#[test]
fn global_violations_are_counted_not_corrected_and_critical() {
    let dims = [2, 2, 2];
    let cfg = config(dims, 2).with_fixed_interval(10);
    let braid = agree(&cfg, &[self_loop(), empty()], &[11]);
    let s = braid.stats();
    // 10 events against 0, both ways: two global violations, both critical.
    assert_eq!(
        (
            s.global_violations,
            s.critical,
            s.boundary_violations,
            s.corrective_events
        ),
        (2, 2, 0, 0)
    );
    assert_eq!(braid.tori()[1].pending(), 0);
    assert_eq!(braid.tori()[0].events_processed(), 11);
    // Within tolerance: 10 against 10 is no violation; 10 against 9 with tol 0.10 neither.
    let mut slow = self_loop();
    slow.injections[0].t = 1;
    let braid = agree(&cfg, &[self_loop(), slow.clone()], &[11]);
    assert_eq!(braid.stats().global_violations, 0);
    let braid = agree(&cfg.with_tolerances(10, 0.05), &[self_loop(), slow], &[11]);
    assert_eq!(braid.stats().global_violations, 2, "|10 - 9| > 0.05 · 10");
}

#[test]
fn more_than_ten_boundary_violations_is_critical() {
    let dims = [2, 4, 4];
    let cfg = config(dims, 2).with_fixed_interval(5);
    let face_x0 = |n: u32, payload: i32| -> Vec<(u32, u32, u32, i32)> {
        (0..n).map(|i| (0, i, 0, payload)).collect() // cells 0..16 are the x = 0 face
    };
    for (n, critical) in [(10u32, 0u64), (11, 1)] {
        // Equal event counts, so no global violation; torus 1's events leave acc at 0.
        let w0 = all_processes(dims, &face_x0(n, 50));
        let w1 = all_processes(dims, &face_x0(n, 0));
        let braid = agree(&cfg, &[w0, w1], &[6]);
        let s = braid.stats();
        assert_eq!(
            (s.boundary_violations, s.corrective_events),
            (n as u64, n as u64)
        );
        assert_eq!(s.critical, critical, "{n} boundary violations");
    }
}

#[test]
fn a_corrupted_projection_is_a_violation_and_is_ignored() {
    let dims = [2, 2, 2];
    let sender = Torus::from_workload(
        &config(dims, 1).torus,
        &all_processes(dims, &[(0, 0, 0, 100)]),
    )
    .unwrap();
    let mut sender = sender;
    sender.run_until(1).unwrap();
    let mut receiver =
        Torus::from_workload(&config(dims, 1).torus, &all_processes(dims, &[])).unwrap();
    receiver.run_until(1).unwrap();
    let mut p = Projection::extract(&sender, 0);
    p.face[1] = 7; // corrupted in transit: the hash no longer matches
    let app = p.apply(&mut receiver, 10, 0.10);
    assert!(!app.hash_ok && app.violated() && !app.critical());
    assert_eq!(
        (
            app.boundary_violations,
            app.corrective_events,
            app.global_violation
        ),
        (0, 0, false)
    );
    assert_eq!(receiver.pending(), 0, "ignored: no corrective event");
    // Re-hashed, the same projection is applied: two boundary violations (100 and 7).
    p.hash = p.compute_hash();
    let app = p.apply(&mut receiver, 10, 0.10);
    assert!(app.hash_ok && app.violated());
    assert_eq!((app.boundary_violations, app.corrective_events), (1, 1));
    assert!(app.global_violation, "1 event against 0");
    assert_eq!(
        receiver.pending_events(),
        vec![Event {
            t: 1,
            dst: 4,
            src: 4,
            payload: 100
        }]
    );
}

#[test]
fn corrective_events_at_max_pending_are_dropped_and_counted() {
    let dims = [2, 2, 2];
    let mut cfg = config(dims, 2)
        .with_fixed_interval(5)
        .with_tolerances(10, 1.0);
    cfg.torus.max_pending = 2;
    let w0 = all_processes(dims, &[(0, 0, 0, 50)]);
    let w1 = all_processes(dims, &[(100, 1, 1, 0), (100, 2, 2, 0)]);
    let braid = agree(&cfg, &[w0, w1], &[6]);
    let s = braid.stats();
    assert_eq!(
        (
            s.boundary_violations,
            s.corrective_events,
            s.corrective_dropped
        ),
        (1, 0, 1)
    );
    assert_eq!(s.tori[1].events_dropped, 1);
    assert_eq!(s.tori[1].pending, 2);
}

#[test]
fn adaptive_interval_shrinks_to_its_minimum_under_violations() {
    let cfg = config([2, 2, 2], 2).with_adaptive_interval(100, 50, 200);
    let braid = agree(&cfg, &[self_loop(), empty()], &[400]);
    let s = braid.stats();
    // Exchanges at 100, 180, 244, 295, 345, 395: floor(i · 0.8), never below 50.
    assert_eq!(s.interval_history, vec![100, 80, 64, 51, 50, 50, 50]);
    assert_eq!(
        (s.exchanges, s.interval, braid.last_exchange()),
        (6, 50, 395)
    );
    assert_eq!(s.convergence.ongoing, Some(6));
}

#[test]
fn adaptive_interval_grows_to_its_maximum_when_clean() {
    let cfg = config([2, 2, 2], 3).with_adaptive_interval(100, 100, 300);
    let braid = agree(&cfg, &[empty(), empty(), empty()], &[1600]);
    let s = braid.stats();
    // max(i + 1, floor(i · 1.2)), never above 300; exchanges at 100, 220, 364, 536, 742,
    // 989, 1285, 1585.
    assert_eq!(
        s.interval_history,
        vec![100, 120, 144, 172, 206, 247, 296, 300, 300]
    );
    assert_eq!((s.exchanges, braid.last_exchange()), (8, 1585));
    // Small intervals grow by at least one.
    let cfg = config([2, 2, 2], 1).with_adaptive_interval(3, 1, 10);
    let braid = agree(&cfg, &[empty()], &[60]);
    assert_eq!(
        braid.stats().interval_history[..9],
        [3, 4, 5, 6, 7, 8, 9, 10, 10]
    );
}

#[test]
fn one_violation_shrinks_then_holds_then_grows_the_interval() {
    // One torus applies its own projection. Its first exchange finds a boundary violation
    // (x = 0 face acc 50 against x = 1 acc 0), whose corrective event makes every later
    // exchange clean: the rate after exchange k is 1/k. It shrinks the interval while
    // 1/k > 0.05 (k <= 19, bounded by min 10), holds it for 0.025 <= 1/k <= 0.05
    // (k = 20..=40) and grows it from k = 41.
    let dims = [2, 2, 2];
    let cfg = config(dims, 1).with_adaptive_interval(100, 10, 10_000);
    let w = all_processes(dims, &[(0, 0, 0, 50)]);
    let braid = agree(&cfg, &[w], &[800]);
    let s = braid.stats();
    let mut want = vec![100, 80, 64, 51, 40, 32, 25, 20, 16, 12, 10];
    want.extend([10; 30]);
    want.extend([12, 14, 16, 19]);
    assert_eq!(s.interval_history, want);
    assert_eq!((s.exchanges, braid.last_exchange()), (44, 792));
    assert_eq!(
        (
            s.boundary_violations,
            s.corrective_events,
            s.global_violations
        ),
        (1, 1, 0)
    );
    assert_eq!(
        (s.convergence.disturbances, s.convergence.last),
        (1, Some(1))
    );
}

#[test]
fn an_idle_braid_exchanges_on_schedule_and_never_at_the_target() {
    let cfg = config([2, 2, 2], 3).with_fixed_interval(10);
    let mut braid = Braid::from_workloads(&cfg, &[empty(), empty(), empty()]).unwrap();
    braid.run_until(35).unwrap();
    assert_eq!(
        (braid.stats().exchanges, braid.now(), braid.last_exchange()),
        (3, 35, 30)
    );
    braid.run_until(40).unwrap();
    assert_eq!(
        (braid.stats().exchanges, braid.now()),
        (3, 40),
        "no exchange at 40 yet"
    );
    braid.run_until(41).unwrap();
    assert_eq!((braid.stats().exchanges, braid.last_exchange()), (4, 40));
    braid.run_until(20).unwrap();
    assert_eq!(braid.now(), 41, "the clock never goes back");
    assert!(braid.tori().iter().all(|t| t.now() == 41));
    assert_eq!(braid.stats().interval_history, vec![10; 5]);

    // A braid never jumps over an exchange to reach a distant event.
    let far = Workload {
        injections: vec![Event {
            t: 95,
            dst: 1,
            src: 1,
            payload: 3,
        }],
        ..all_processes([2, 2, 2], &[])
    };
    let braid = agree(&cfg, &[far, empty(), empty()], &[100]);
    let s = braid.stats();
    assert_eq!(s.exchanges, 9);
    assert_eq!(s.tori[0].events_processed, 1);
    assert_eq!(s.latency.instants, 1, "one instant had events");
    assert_eq!(s.latency.exchanges, 9);
}

#[test]
fn runs_end_before_the_end_of_the_clock() {
    let mut cfg = config([2, 2, 2], 2).with_fixed_interval(u32::MAX / 2);
    cfg.instants = 10;
    let limit = u32::MAX - 8 + 1; // 2^32 - max_delay
    let mut braid = Braid::new(&cfg).unwrap();
    assert_eq!(
        braid.run_until(limit),
        Err(BraidError::TimeLimit {
            instant: limit as u64,
            limit
        })
    );
    braid.run_until(limit - 1).unwrap();
    assert_eq!(braid.now(), limit - 1);
    assert_eq!(braid.stats().exchanges, 1);
    let mut torus = Torus::new(&cfg.torus).unwrap();
    assert!(matches!(
        torus.run_until(limit),
        Err(BraidError::TimeLimit { .. })
    ));
    assert!(matches!(
        torus.inject_at(0, 0, 1, limit),
        Err(BraidError::TimeLimit { .. })
    ));
}
