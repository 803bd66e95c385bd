//! Random torus and braid configs for the braid conformance tests (CPU against the
//! reference kernel, and wgpu against the CPU): every builder, small `max_pending` to force
//! drops, injections at later instants, edge lists with repeated `(from, to)`.

#![allow(dead_code)]

use warpgrid_engine::braid::{
    BraidConfig, EdgesBuilder, InjectBuilder, ProcessesBuilder, TorusConfig,
};
use warpgrid_engine::rng::SplitMix64;

pub fn pick(rng: &mut SplitMix64, lo: u64, hi: u64) -> u64 {
    lo + rng.below(hi - lo + 1)
}

pub fn coord(rng: &mut SplitMix64) -> i64 {
    pick(rng, 0, 40) as i64 - 20
}

/// A random torus config; `big` makes dense instants that get split over threads, on a
/// lattice of more than 2^16 cells every other time (the kernel's 12-byte event form; smaller
/// lattices use the 8-byte form).
pub fn random_config(rng: &mut SplitMix64, big: bool) -> TorusConfig {
    let dims = if big && rng.below(2) == 0 {
        [66, 32, 32]
    } else if big {
        [16, 16, 16]
    } else {
        [
            pick(rng, 2, 9) as u32,
            pick(rng, 2, 9) as u32,
            pick(rng, 2, 9) as u32,
        ]
    };
    let cells: u64 = dims.iter().map(|&d| d as u64).product();
    let max_delay = *[1u32, 2, 3, 5, 8, 16, 64]
        .get(rng.below(7) as usize)
        .unwrap();
    let max_pending = if big {
        pick(rng, 5_000, 40_000)
    } else {
        pick(rng, 4, 3 * cells + 50)
    };
    let processes = match rng.below(3) {
        0 => ProcessesBuilder::All,
        1 => ProcessesBuilder::Fraction {
            p: rng.unit_f64(),
            seed: rng.next_u64(),
        },
        _ => ProcessesBuilder::List {
            cells: (0..pick(rng, 0, cells))
                .map(|_| [coord(rng), coord(rng), coord(rng)])
                .collect(),
        },
    };
    let edges = match rng.below(3) {
        0 => EdgesBuilder::Neighbors {
            delay: pick(rng, 1, max_delay as u64) as u32,
        },
        1 => EdgesBuilder::Random {
            per_cell: pick(rng, 0, 4) as u32,
            seed: rng.next_u64(),
        },
        _ => EdgesBuilder::List {
            edges: (0..pick(rng, 0, 3 * cells))
                .map(|_| {
                    let mut e = [0i64; 7];
                    for v in &mut e[..6] {
                        *v = coord(rng);
                    }
                    e[6] = pick(rng, 1, max_delay as u64) as i64;
                    e
                })
                .collect(),
        },
    };
    let count = pick(rng, 0, max_pending.min(if big { 30_000 } else { 200 }));
    let inject = match rng.below(3) {
        0 => InjectBuilder::Random {
            count,
            seed: rng.next_u64(),
            at: pick(rng, 0, 3),
        },
        1 => InjectBuilder::List {
            events: (0..count)
                .map(|_| {
                    let payload = match rng.below(4) {
                        0 => i32::MIN as i64,
                        1 => i32::MAX as i64,
                        _ => pick(rng, 0, 2000) as i64 - 1000,
                    };
                    [
                        coord(rng),
                        coord(rng),
                        coord(rng),
                        coord(rng),
                        coord(rng),
                        coord(rng),
                        payload,
                        pick(rng, 0, 150) as i64,
                    ]
                })
                .collect(),
        },
        _ => InjectBuilder::None,
    };
    TorusConfig {
        dims,
        max_delay,
        max_pending,
        processes,
        edges,
        inject,
    }
}

pub fn random_braid(rng: &mut SplitMix64) -> BraidConfig {
    let mut torus = random_config(rng, false);
    torus.max_pending = torus.max_pending.max(200);
    let min = pick(rng, 1, 20) as u32;
    let max = min + pick(rng, 0, 60) as u32;
    let mut config = BraidConfig::new(torus)
        .with_tori(pick(rng, 1, 4) as u32)
        .with_tolerances(pick(rng, 0, 20) as u32, rng.unit_f64() * 0.3);
    config = if rng.below(4) == 0 {
        config.with_fixed_interval(pick(rng, 1, 40) as u32)
    } else {
        config.with_adaptive_interval(pick(rng, min as u64, max as u64) as u32, min, max)
    };
    config.instants = pick(rng, 50, 300) as u32;
    config
}
