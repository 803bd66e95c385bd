//! Braid configuration and workload builders (SPEC §3.3, §6): every bad setting is refused
//! with an error naming its field; the builders draw from splitmix64 exactly as specified
//! (torus i of a braid seeded with `seed + i`), create edges in the specified order with
//! replacement keeping position, wrap list coordinates; the PHOLD-like preset keeps its
//! population.

use warpgrid_engine::braid::{
    Braid, BraidConfig, BraidError, EdgesBuilder, Event, InjectBuilder, ProcessesBuilder, Torus,
    TorusConfig, Workload,
};
use warpgrid_engine::rng::SplitMix64;

fn field_of(err: BraidError) -> String {
    match err {
        BraidError::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn bad_torus_settings_name_their_field() {
    let base = TorusConfig::new([4, 4, 4]);
    let cases: Vec<(TorusConfig, &str)> = vec![
        (TorusConfig::new([1, 4, 4]), "dims[0]"),
        (TorusConfig::new([4, 1025, 4]), "dims[1]"),
        (TorusConfig::new([4, 4, 0]), "dims[2]"),
        (TorusConfig::new([1024, 1024, 32]), "dims"),
        (base.clone().with_max_delay(0), "max_delay"),
        (base.clone().with_max_delay(1025), "max_delay"),
        (base.clone().with_max_pending(0), "max_pending"),
        (base.clone().with_max_pending((1 << 28) + 1), "max_pending"),
        (
            base.clone()
                .with_processes(ProcessesBuilder::Fraction { p: 1.5, seed: 0 }),
            "processes.p",
        ),
        (
            base.clone().with_processes(ProcessesBuilder::Fraction {
                p: f64::NAN,
                seed: 0,
            }),
            "processes.p",
        ),
        (
            base.clone()
                .with_edges(EdgesBuilder::Neighbors { delay: 0 }),
            "edges.delay",
        ),
        (
            base.clone()
                .with_edges(EdgesBuilder::Neighbors { delay: 65 }),
            "edges.delay",
        ),
        (
            base.clone().with_edges(EdgesBuilder::List {
                edges: vec![[0, 0, 0, 1, 1, 1, 3], [0, 0, 0, 1, 1, 1, -1]],
            }),
            "edges.edges[1][6] (delay)",
        ),
        (
            TorusConfig::new([1024, 1024, 16]).with_edges(EdgesBuilder::Random {
                per_cell: 17,
                seed: 0,
            }),
            "edges.per_cell",
        ),
        (
            base.clone().with_inject(InjectBuilder::List {
                events: vec![[0, 0, 0, 0, 0, 0, 1, -1]],
            }),
            "inject.events[0][7] (at)",
        ),
        (
            base.clone().with_inject(InjectBuilder::List {
                events: vec![[0, 0, 0, 0, 0, 0, 1 << 31, 0]],
            }),
            "inject.events[0][6] (payload)",
        ),
        (
            base.clone().with_inject(InjectBuilder::Random {
                count: 1,
                seed: 0,
                at: 1 << 32,
            }),
            "inject.at",
        ),
    ];
    for (config, field) in cases {
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains(field), "{err} should name {field}");
        assert_eq!(field_of(Torus::new(&config).unwrap_err()), field);
    }
    base.validate().unwrap();
}

#[test]
fn bad_braid_settings_name_their_field() {
    let base = BraidConfig::new(TorusConfig::new([4, 4, 4]));
    let mut cases: Vec<(BraidConfig, &str)> = vec![
        (base.clone().with_tori(0), "tori"),
        (base.clone().with_tori(65), "tori"),
        (base.clone().with_fixed_interval(0), "braid.interval"),
        (
            base.clone().with_adaptive_interval(50, 100, 10_000),
            "braid.interval",
        ),
        (
            base.clone().with_adaptive_interval(20_000, 100, 10_000),
            "braid.interval",
        ),
        (
            base.clone().with_adaptive_interval(100, 200, 150),
            "braid.max_interval",
        ),
        (
            base.clone().with_adaptive_interval(1, 0, 5),
            "braid.min_interval",
        ),
        (base.clone().with_tolerances(10, -0.5), "braid.tol_events"),
        (
            base.clone().with_tolerances(10, f64::INFINITY),
            "braid.tol_events",
        ),
        (base.clone().with_instants(u32::MAX - 63), "instants"),
    ];
    let mut bad_torus = base.clone();
    bad_torus.torus.max_delay = 2000;
    cases.push((bad_torus, "max_delay"));
    for (config, field) in cases {
        assert_eq!(
            field_of(Braid::new(&config).unwrap_err()),
            field,
            "{config:?}"
        );
    }
    // Outside the bounds is fine when the interval is fixed.
    Braid::new(&base.clone().with_fixed_interval(5)).unwrap();
    Braid::new(&base).unwrap();
}

#[test]
fn defaults_are_those_of_the_spec() {
    let c = BraidConfig::default();
    assert_eq!(
        (c.torus.dims, c.torus.max_delay, c.torus.max_pending),
        ([32, 32, 32], 64, 1 << 20)
    );
    assert_eq!(
        (c.tori, c.instants, c.interval, c.adaptive),
        (3, 10_000, 1000, true)
    );
    assert_eq!(
        (c.min_interval, c.max_interval, c.tol_boundary, c.tol_events),
        (100, 10_000, 10, 0.10)
    );
    assert_eq!(c.torus.processes, ProcessesBuilder::All);
    assert_eq!(c.torus.edges, EdgesBuilder::Neighbors { delay: 1 });
    assert_eq!(c.torus.inject, InjectBuilder::None);
}

#[test]
fn builders_draw_from_splitmix64_as_specified() {
    let dims = [3, 4, 5];
    let cells = 60u64;
    let config = TorusConfig::new(dims)
        .with_max_delay(7)
        .with_max_pending(100)
        .with_processes(ProcessesBuilder::Fraction { p: 0.3, seed: 40 })
        .with_edges(EdgesBuilder::Random {
            per_cell: 2,
            seed: 50,
        })
        .with_inject(InjectBuilder::Random {
            count: 9,
            seed: 60,
            at: 4,
        });
    for index in [0u32, 2] {
        let w = Workload::build(&config, index);
        let mut r = SplitMix64::new(40 + index as u64);
        let want: Vec<u32> = (0..60)
            .filter(|_| (r.next_u64() >> 11) as f64 * 2f64.powi(-53) < 0.3)
            .collect();
        assert_eq!(w.processes, want);
        let mut r = SplitMix64::new(50 + index as u64);
        let mut want = Vec::new();
        for c in 0..60 {
            for _ in 0..2 {
                let to = (r.next_u64() % cells) as u32;
                let delay = 1 + (r.next_u64() % 7) as u32;
                want.push((c, to, delay));
            }
        }
        assert_eq!(w.edges, want);
        let mut r = SplitMix64::new(60 + index as u64);
        let want: Vec<Event> = (0..9)
            .map(|_| {
                let dst = (r.next_u64() % cells) as u32;
                let src = (r.next_u64() % cells) as u32;
                let payload = (r.next_u64() % 513) as i32 - 256;
                Event {
                    t: 4,
                    dst,
                    src,
                    payload,
                }
            })
            .collect();
        assert_eq!(w.injections, want);
    }
    // Torus i of a braid is built from seed + i.
    let braid = Braid::new(&BraidConfig::new(config.clone()).with_tori(3)).unwrap();
    for i in 0..3 {
        let alone = Torus::from_workload(&config, &Workload::build(&config, i)).unwrap();
        assert_eq!(braid.tori()[i as usize].digest(), alone.digest());
    }
    assert_ne!(braid.tori()[0].digest(), braid.tori()[1].digest());
}

#[test]
fn neighbour_edges_lists_and_replacement() {
    let dims = [2, 3, 4];
    let torus =
        Torus::new(&TorusConfig::new(dims).with_edges(EdgesBuilder::Neighbors { delay: 3 }))
            .unwrap();
    assert_eq!(torus.edges(), 72);
    // Cell (1, 2, 3) = 23: to (0,2,3) = 11, (1,0,3) = 15, (1,2,0) = 20, in that order.
    assert_eq!(torus.out_edges(23), vec![(11, 3), (15, 3), (20, 3)]);
    assert_eq!(torus.out_edges(0), vec![(12, 3), (4, 3), (1, 3)]);
    assert_eq!(torus.processes(), 24);

    let lists = TorusConfig::new(dims)
        .with_processes(ProcessesBuilder::List {
            cells: vec![[-1, -1, -1], [1, 2, 3], [0, 0, 4]],
        })
        .with_edges(EdgesBuilder::List {
            edges: vec![
                [0, 0, 0, 0, 0, 1, 5],
                [0, 0, 0, 0, 1, 0, 6],
                [2, 3, 4, 0, 0, 1, 7], // the first edge again (wrapped): new delay, same place
                [0, 0, 0, 0, 0, 0, 1],
            ],
        })
        .with_inject(InjectBuilder::List {
            events: vec![[-2, 3, -4, 5, 6, 7, -9, 11]],
        });
    let torus = Torus::new(&lists).unwrap();
    assert_eq!(
        torus.processes(),
        2,
        "(-1,-1,-1) wraps to (1,2,3): one process"
    );
    assert!(torus.process(23).is_some() && torus.process(0).is_some());
    assert_eq!(torus.out_edges(0), vec![(1, 7), (4, 6), (0, 1)]);
    assert_eq!(torus.edges(), 3);
    // (-2,3,-4) wraps to (0,0,0); (5,6,7) to (1,0,3) = 15.
    assert_eq!(
        torus.pending_events(),
        vec![Event {
            t: 11,
            dst: 0,
            src: 15,
            payload: -9
        }]
    );
}

#[test]
fn phold_keeps_its_population() {
    let config = TorusConfig::phold([8, 8, 8], 2_000, 9);
    assert_eq!(
        config.edges,
        EdgesBuilder::Random {
            per_cell: 1,
            seed: 9
        }
    );
    let mut torus = Torus::new(&config).unwrap();
    assert_eq!(torus.edges(), 512);
    torus.run_until(500).unwrap();
    assert_eq!((torus.pending(), torus.events_dropped()), (2_000, 0));
    assert!(torus.events_processed() > 10_000);
}
