//! One torus (SPEC §3.1), hand-worked on 2×2×2 lattices: the process update with wrapping,
//! `out = p + 1` without a process, delay adaptation both ways and at both bounds, the order
//! of events within an instant (a multiset), `step` and `run_until`, `InvalidTime`, `Full`,
//! the capacity drop rule, and the digest byte for byte. Every case runs on the parallel
//! kernel and on the heap reference, which must both give the hand-computed answer.

use warpgrid_engine::braid::reference::ReferenceTorus;
use warpgrid_engine::braid::{
    BraidError, EdgesBuilder, Event, InjectBuilder, Process, ProcessesBuilder, Torus, TorusConfig,
};

/// What the tests need from a kernel.
trait Kernel: Sized {
    fn build(config: &TorusConfig) -> Result<Self, BraidError>;
    fn inject_at(&mut self, dst: u32, src: u32, payload: i32, at: u32) -> Result<(), BraidError>;
    fn inject(&mut self, dst: u32, src: u32, payload: i32) -> Result<(), BraidError>;
    fn step(&mut self) -> Result<Option<u32>, BraidError>;
    fn run_until(&mut self, t: u32) -> Result<(), BraidError>;
    fn now(&self) -> u32;
    fn processed(&self) -> u64;
    fn dropped(&self) -> u64;
    fn pending(&self) -> u64;
    fn process(&self, cell: u32) -> Option<Process>;
    fn out_edges(&self, cell: u32) -> Vec<(u32, u32)>;
    fn pending_events(&self) -> Vec<Event>;
    fn digest(&self) -> u64;
}

macro_rules! kernel {
    ($t:ty) => {
        impl Kernel for $t {
            fn build(config: &TorusConfig) -> Result<Self, BraidError> {
                <$t>::new(config)
            }
            fn inject_at(
                &mut self,
                dst: u32,
                src: u32,
                payload: i32,
                at: u32,
            ) -> Result<(), BraidError> {
                <$t>::inject_at(self, dst, src, payload, at)
            }
            fn inject(&mut self, dst: u32, src: u32, payload: i32) -> Result<(), BraidError> {
                <$t>::inject(self, dst, src, payload)
            }
            fn step(&mut self) -> Result<Option<u32>, BraidError> {
                <$t>::step(self)
            }
            fn run_until(&mut self, t: u32) -> Result<(), BraidError> {
                <$t>::run_until(self, t)
            }
            fn now(&self) -> u32 {
                <$t>::now(self)
            }
            fn processed(&self) -> u64 {
                self.events_processed()
            }
            fn dropped(&self) -> u64 {
                self.events_dropped()
            }
            fn pending(&self) -> u64 {
                <$t>::pending(self)
            }
            fn process(&self, cell: u32) -> Option<Process> {
                <$t>::process(self, cell)
            }
            fn out_edges(&self, cell: u32) -> Vec<(u32, u32)> {
                <$t>::out_edges(self, cell)
            }
            fn pending_events(&self) -> Vec<Event> {
                <$t>::pending_events(self)
            }
            fn digest(&self) -> u64 {
                <$t>::digest(self)
            }
        }
    };
}
kernel!(Torus);
kernel!(ReferenceTorus);

/// Runs a case on both kernels.
macro_rules! both {
    ($name:ident, $case:ident) => {
        mod $name {
            #[test]
            fn parallel_kernel() {
                super::$case::<warpgrid_engine::braid::Torus>();
            }
            #[test]
            fn heap_reference() {
                super::$case::<warpgrid_engine::braid::reference::ReferenceTorus>();
            }
        }
    };
}

/// Cell id on a 2×2×2 lattice.
fn c(x: u32, y: u32, z: u32) -> u32 {
    x * 4 + y * 2 + z
}

fn ev(t: u32, dst: u32, src: u32, payload: i32) -> Event {
    Event {
        t,
        dst,
        src,
        payload,
    }
}

/// A 2×2×2 torus with processes on the listed cells, the listed edges
/// `(from, to, delay)` (cell ids), no injections.
fn lattice(
    max_delay: u32,
    max_pending: u64,
    processes: &[u32],
    edges: &[(u32, u32, u32)],
) -> TorusConfig {
    let xyz = |id: u32| [(id / 4) as i64, ((id / 2) % 2) as i64, (id % 2) as i64];
    TorusConfig::new([2, 2, 2])
        .with_max_delay(max_delay)
        .with_max_pending(max_pending)
        .with_processes(ProcessesBuilder::List {
            cells: processes.iter().map(|&p| xyz(p)).collect(),
        })
        .with_edges(EdgesBuilder::List {
            edges: edges
                .iter()
                .map(|&(f, t, d)| {
                    let [a, b, cc] = xyz(f);
                    let [x, y, z] = xyz(t);
                    [a, b, cc, x, y, z, d as i64]
                })
                .collect(),
        })
}

fn process_update_formula_and_wrapping<K: Kernel>() {
    let mut k = K::build(&lattice(8, 64, &[c(0, 0, 0), c(0, 1, 0)], &[(0, 1, 3)])).unwrap();
    // Injected out of order: (src 1, -1) is processed before (src 3, 5).
    k.inject(0, 3, 5).unwrap();
    k.inject(0, 1, -1).unwrap();
    // acc wrapping at cell 2: i32::MAX then 1.
    k.inject(2, 0, i32::MAX).unwrap();
    k.inject(2, 5, 1).unwrap();
    assert_eq!(k.step().unwrap(), Some(0));
    // state: 0 -> (0·31 + 0xFFFFFFFF) ^ 0 = 0xFFFFFFFF -> (0xFFFFFFFF·31 + 5) ^ 0x1FFFFFFF.
    assert_eq!(
        k.process(0),
        Some(Process {
            state: 0xE000_0019,
            acc: 4,
            received: 2
        })
    );
    assert_eq!(
        k.process(2),
        Some(Process {
            state: 0x7000_001D,
            acc: i32::MIN,
            received: 2
        })
    );
    // First event (p = -1): delay 3 -> 4, out 0xFF + 1 = 256. Second (p = 5): 4 -> 3,
    // out 0x19 + 1 = 26.
    assert_eq!(k.out_edges(0), vec![(1, 3)]);
    assert_eq!(k.pending_events(), vec![ev(3, 1, 0, 26), ev(4, 1, 0, 256)]);
    assert_eq!(
        (k.now(), k.processed(), k.dropped(), k.pending()),
        (1, 4, 0, 2)
    );
}
both!(process_update, process_update_formula_and_wrapping);

fn out_is_payload_plus_one_without_a_process<K: Kernel>() {
    let mut k = K::build(&lattice(8, 64, &[], &[(1, 2, 2)])).unwrap();
    k.inject(1, 4, -1).unwrap();
    k.inject(1, 0, i32::MAX).unwrap();
    k.step().unwrap();
    assert_eq!(k.process(1), None);
    // (src 0, MAX): p > 0, delay 2 -> 1, out wraps to MIN. (src 4, -1): delay 1 -> 2, out 0.
    assert_eq!(
        k.pending_events(),
        vec![ev(1, 2, 1, i32::MIN), ev(2, 2, 1, 0)]
    );
    assert_eq!(k.out_edges(1), vec![(2, 2)]);
}
both!(no_process, out_is_payload_plus_one_without_a_process);

fn delays_adapt_both_ways_within_bounds<K: Kernel>() {
    let mut k = K::build(&lattice(3, 64, &[], &[(0, 1, 1), (0, 2, 3)])).unwrap();
    k.inject_at(0, 7, 7, 0).unwrap();
    k.inject_at(0, 7, 0, 10).unwrap();
    k.inject_at(0, 7, 0, 20).unwrap();
    k.run_until(1).unwrap();
    assert_eq!(
        k.out_edges(0),
        vec![(1, 1), (2, 2)],
        "p > 0: down, but not below 1"
    );
    // Each emission uses the delay just set; out = p + 1.
    assert_eq!(
        k.pending_events(),
        vec![
            ev(1, 1, 0, 8),
            ev(2, 2, 0, 8),
            ev(10, 0, 7, 0),
            ev(20, 0, 7, 0)
        ]
    );
    k.run_until(11).unwrap();
    assert_eq!(k.out_edges(0), vec![(1, 2), (2, 3)], "p = 0: up");
    assert_eq!(
        k.pending_events(),
        vec![ev(12, 1, 0, 1), ev(13, 2, 0, 1), ev(20, 0, 7, 0)]
    );
    k.run_until(21).unwrap();
    assert_eq!(
        k.out_edges(0),
        vec![(1, 3), (2, 3)],
        "up, but not above max_delay"
    );
    assert_eq!(k.pending_events(), vec![ev(23, 1, 0, 1), ev(23, 2, 0, 1)]);
}
both!(delay_adaptation, delays_adapt_both_ways_within_bounds);

fn an_instant_is_a_multiset_in_total_order<K: Kernel>() {
    let mut k = K::build(&lattice(4, 64, &[0], &[(0, 1, 1), (1, 2, 2)])).unwrap();
    // Identical events at a process: both processed, in turn.
    k.inject(0, 5, 9).unwrap();
    k.inject(0, 5, 9).unwrap();
    // Identical events without a process: both kept, both processed, identical output.
    k.inject(1, 3, 4).unwrap();
    k.inject(1, 3, 4).unwrap();
    k.step().unwrap();
    assert_eq!(
        k.process(0),
        Some(Process {
            state: 289,
            acc: 18,
            received: 2
        })
    );
    // Cell 1's edge went 2 -> 1 -> 1.
    assert_eq!(
        k.pending_events(),
        vec![
            ev(1, 1, 0, 10),
            ev(1, 1, 0, 34),
            ev(1, 2, 1, 5),
            ev(1, 2, 1, 5)
        ]
    );
    assert_eq!(k.processed(), 4);
}
both!(multiset, an_instant_is_a_multiset_in_total_order);

/// The process update of SPEC §3.1 applied to a sequence of payloads.
fn fold_state(payloads: &[i32]) -> (u32, i32) {
    payloads.iter().fold((0u32, 0i32), |(s, a), &p| {
        (
            s.wrapping_mul(31).wrapping_add(p as u32) ^ (s >> 3),
            a.wrapping_add(p),
        )
    })
}

fn events_at_one_cell_go_by_src_then_signed_payload<K: Kernel>() {
    let order = [(1u32, i32::MIN), (1, -3), (1, 5), (2, -100), (2, 1), (6, 0)];
    let (state, acc) = fold_state(&order.map(|(_, p)| p));
    let mut digests = Vec::new();
    for rotation in 0..order.len() {
        let mut k = K::build(&lattice(4, 64, &[3], &[])).unwrap();
        let mut shuffled = order.to_vec();
        shuffled.rotate_left(rotation);
        shuffled.reverse();
        for (src, p) in shuffled {
            k.inject(3, src, p).unwrap();
        }
        k.step().unwrap();
        assert_eq!(
            k.process(3),
            Some(Process {
                state,
                acc,
                received: 6
            })
        );
        digests.push(k.digest());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
}
both!(
    total_order,
    events_at_one_cell_go_by_src_then_signed_payload
);

fn step_jumps_to_the_earliest_pending_instant<K: Kernel>() {
    let mut k = K::build(&lattice(4, 64, &[0], &[])).unwrap();
    assert_eq!(k.step().unwrap(), None);
    assert_eq!(k.now(), 0);
    k.inject_at(0, 1, 1, 9).unwrap();
    k.inject_at(0, 1, 1, 5).unwrap();
    assert_eq!(k.step().unwrap(), Some(5));
    assert_eq!((k.now(), k.processed()), (6, 1));
    assert_eq!(k.step().unwrap(), Some(9));
    assert_eq!(k.now(), 10);
    assert_eq!(k.step().unwrap(), None);
    assert_eq!(k.now(), 10);
}
both!(step, step_jumps_to_the_earliest_pending_instant);

fn run_until_processes_only_instants_below_t<K: Kernel>() {
    let mut k = K::build(&lattice(4, 64, &[0], &[])).unwrap();
    k.inject_at(0, 1, 1, 2).unwrap();
    k.inject_at(0, 1, 1, 5).unwrap();
    k.run_until(5).unwrap();
    assert_eq!((k.now(), k.processed(), k.pending()), (5, 1, 1));
    k.run_until(3).unwrap();
    assert_eq!((k.now(), k.processed()), (5, 1), "now = max(now, t)");
    k.run_until(6).unwrap();
    assert_eq!((k.now(), k.processed(), k.pending()), (6, 2, 0));
    k.run_until(1000).unwrap();
    assert_eq!(k.now(), 1000);

    // Emissions that land below t are processed in the same call: a ping-pong 0 <-> 1.
    let mut k = K::build(&lattice(4, 64, &[], &[(0, 1, 1), (1, 0, 1)])).unwrap();
    k.inject(0, 0, 1).unwrap();
    k.run_until(10).unwrap();
    assert_eq!(k.processed(), 10);
    assert_eq!(k.pending_events(), vec![ev(10, 0, 1, 11)]);
}
both!(run_until, run_until_processes_only_instants_below_t);

fn injection_in_the_past_is_invalid_time<K: Kernel>() {
    let mut k = K::build(&lattice(4, 64, &[0], &[])).unwrap();
    k.run_until(5).unwrap();
    assert_eq!(
        k.inject_at(0, 0, 1, 4),
        Err(BraidError::InvalidTime { at: 4, now: 5 })
    );
    assert_eq!(k.pending(), 0);
    k.inject_at(0, 0, 1, 5).unwrap();
    k.inject(0, 0, 2).unwrap();
    assert_eq!(k.pending_events(), vec![ev(5, 0, 0, 1), ev(5, 0, 0, 2)]);
    assert_eq!(
        k.inject(8, 0, 1),
        Err(BraidError::InvalidCell { cell: 8, cells: 8 })
    );
    assert_eq!(
        k.inject(0, 9, 1),
        Err(BraidError::InvalidCell { cell: 9, cells: 8 })
    );
}
both!(invalid_time, injection_in_the_past_is_invalid_time);

fn injection_beyond_max_pending_is_full<K: Kernel>() {
    let mut k = K::build(&lattice(4, 2, &[0], &[])).unwrap();
    k.inject(0, 0, 1).unwrap();
    k.inject_at(0, 0, 1, 100).unwrap();
    assert_eq!(
        k.inject(0, 0, 1),
        Err(BraidError::Full {
            max_pending: 2,
            pending: 2,
            adding: 1
        })
    );
    assert_eq!(k.pending(), 2);
    k.step().unwrap();
    k.inject(0, 0, 1).unwrap();
}
both!(full, injection_beyond_max_pending_is_full);

fn the_greatest_emitted_events_are_dropped<K: Kernel>() {
    // Cut by delay and by destination: cell 0 (no process) has edges to 3 (delay 2), 1 and 2
    // (delay 5); one event waits at instant 10.
    let mut k = K::build(&lattice(8, 4, &[], &[(0, 3, 2), (0, 1, 5), (0, 2, 5)])).unwrap();
    k.inject(0, 7, 10).unwrap();
    k.inject(0, 7, -10).unwrap();
    k.inject_at(5, 5, 0, 10).unwrap();
    k.step().unwrap();
    // p = -10 first: delays 3, 6, 6; then p = 10: 2, 5, 5. Emitted, in total order:
    // (2,3,0,11) (3,3,0,-9) (5,1,0,11) (5,2,0,11) (6,1,0,-9) (6,2,0,-9); room for 3.
    assert_eq!(
        k.pending_events(),
        vec![
            ev(2, 3, 0, 11),
            ev(3, 3, 0, -9),
            ev(5, 1, 0, 11),
            ev(10, 5, 5, 0)
        ]
    );
    assert_eq!((k.dropped(), k.pending()), (3, 4));
    assert_eq!(
        k.out_edges(0),
        vec![(3, 2), (1, 5), (2, 5)],
        "delays adapt even for dropped emissions"
    );

    // Cut inside one (t, dst, src) by signed payload: two far events leave room for 3 of 4.
    let mut k = K::build(&lattice(1, 5, &[], &[(0, 1, 1), (0, 2, 1)])).unwrap();
    k.inject(0, 7, -3).unwrap();
    k.inject(0, 7, 1).unwrap();
    k.inject_at(6, 6, 0, 20).unwrap();
    k.inject_at(6, 6, 0, 21).unwrap();
    k.step().unwrap();
    assert_eq!(
        k.pending_events(),
        vec![
            ev(1, 1, 0, -2),
            ev(1, 1, 0, 2),
            ev(1, 2, 0, -2),
            ev(20, 6, 6, 0),
            ev(21, 6, 6, 0)
        ]
    );
    assert_eq!(k.dropped(), 1);
}
both!(drop_rule, the_greatest_emitted_events_are_dropped);

/// FNV-1a 64, written out again for the test.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn le(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn digest_of_a_tiny_state<K: Kernel>() {
    let mut k = K::build(&lattice(8, 64, &[0, 5], &[(0, 1, 2), (0, 4, 3), (5, 0, 1)])).unwrap();
    k.inject_at(0, 5, 7, 1).unwrap();
    k.inject(5, 5, -3).unwrap();
    #[rustfmt::skip]
    let start = le(&[
        0, 0, 0,                                   // now, processed, dropped
        0, 0, 0, 0,   5, 0, 0, 0,                  // processes (cell, state, acc, received)
        0, 1, 2,   0, 4, 3,   5, 0, 1,             // edges (from, to, delay)
        0, 5, 5, (-3i32) as u32,   1, 0, 5, 7,     // pending (t, dst, src, payload)
    ]);
    assert_eq!(k.digest(), fnv(&start));
    k.step().unwrap();
    // (0,5,5,-3) at cell 5: state 0xFFFFFFFD, acc -3, out 0xFD + 1 = 254, edge 5->0: 1 -> 2.
    #[rustfmt::skip]
    let after = le(&[
        1, 1, 0,
        0, 0, 0, 0,   5, 0xFFFF_FFFD, (-3i32) as u32, 1,
        0, 1, 2,   0, 4, 3,   5, 0, 2,
        1, 0, 5, 7,   2, 0, 5, 254,
    ]);
    assert_eq!(k.digest(), fnv(&after));
}
both!(digest, digest_of_a_tiny_state);

#[test]
fn builders_that_inject_more_than_max_pending_are_full() {
    let config =
        TorusConfig::new([2, 2, 2])
            .with_max_pending(3)
            .with_inject(InjectBuilder::Random {
                count: 4,
                seed: 1,
                at: 0,
            });
    assert_eq!(
        Torus::new(&config).unwrap_err(),
        BraidError::Full {
            max_pending: 3,
            pending: 0,
            adding: 4
        }
    );
    assert!(ReferenceTorus::new(&config).is_err());
    let config = config.with_inject(InjectBuilder::Random {
        count: 3,
        seed: 1,
        at: 0,
    });
    assert_eq!(Torus::new(&config).unwrap().pending(), 3);
}
