//! Workload builders (SPEC §3.3): turn a validated [`TorusConfig`] into the processes, edges
//! (in creation order, duplicates included) and injections of torus `i` of a braid. Every
//! random choice comes from splitmix64 ([`crate::rng::SplitMix64`]), seeded with `seed + i`
//! for each builder. Both kernels (the parallel one and [`super::reference`]) start from
//! this description, so they build the same lattice.

use super::config::{EdgesBuilder, InjectBuilder, ProcessesBuilder, TorusConfig};
use super::event::Event;
use super::lattice::Lattice;
use crate::rng::SplitMix64;

/// What a torus starts with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// Cells with a process, ascending, no duplicates.
    pub processes: Vec<u32>,
    /// `(from, to, delay)` in creation order; a later `(from, to)` replaces the delay of an
    /// earlier one and keeps its position.
    pub edges: Vec<(u32, u32, u32)>,
    /// Events pending at instant 0.
    pub injections: Vec<Event>,
}

impl Workload {
    /// The workload of torus `index` (0-based) of a braid built from `config`, which must be
    /// valid ([`TorusConfig::validate`]).
    pub fn build(config: &TorusConfig, index: u32) -> Workload {
        let lattice = config.lattice();
        Workload {
            processes: processes(&config.processes, lattice, index),
            edges: edges(&config.edges, lattice, config.max_delay, index),
            injections: injections(&config.inject, lattice, index),
        }
    }
}

fn generator(seed: u64, index: u32) -> SplitMix64 {
    SplitMix64::new(seed.wrapping_add(index as u64))
}

fn processes(builder: &ProcessesBuilder, lattice: Lattice, index: u32) -> Vec<u32> {
    match builder {
        ProcessesBuilder::All => (0..lattice.cells).collect(),
        ProcessesBuilder::Fraction { p, seed } => {
            let mut rng = generator(*seed, index);
            (0..lattice.cells).filter(|_| rng.unit_f64() < *p).collect()
        }
        ProcessesBuilder::List { cells } => {
            let mut ids: Vec<u32> = cells
                .iter()
                .map(|&[x, y, z]| lattice.cell(x, y, z))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        }
    }
}

fn edges(
    builder: &EdgesBuilder,
    lattice: Lattice,
    max_delay: u32,
    index: u32,
) -> Vec<(u32, u32, u32)> {
    match builder {
        EdgesBuilder::Neighbors { delay } => {
            let mut out = Vec::with_capacity(lattice.cells as usize * 3);
            for c in 0..lattice.cells {
                let [x, y, z] = lattice.coords(c).map(|v| v as i64);
                out.push((c, lattice.cell(x + 1, y, z), *delay));
                out.push((c, lattice.cell(x, y + 1, z), *delay));
                out.push((c, lattice.cell(x, y, z + 1), *delay));
            }
            out
        }
        EdgesBuilder::Random { per_cell, seed } => {
            let mut rng = generator(*seed, index);
            let cells = lattice.cells as u64;
            let mut out = Vec::with_capacity(lattice.cells as usize * *per_cell as usize);
            for c in 0..lattice.cells {
                for _ in 0..*per_cell {
                    let to = (rng.next_u64() % cells) as u32;
                    let delay = 1 + (rng.next_u64() % max_delay as u64) as u32;
                    out.push((c, to, delay));
                }
            }
            out
        }
        EdgesBuilder::List { edges } => edges
            .iter()
            .map(|e| {
                (
                    lattice.cell(e[0], e[1], e[2]),
                    lattice.cell(e[3], e[4], e[5]),
                    e[6] as u32,
                )
            })
            .collect(),
    }
}

fn injections(builder: &InjectBuilder, lattice: Lattice, index: u32) -> Vec<Event> {
    match builder {
        InjectBuilder::None => Vec::new(),
        InjectBuilder::Random { count, seed, at } => {
            let mut rng = generator(*seed, index);
            let cells = lattice.cells as u64;
            (0..*count)
                .map(|_| {
                    let dst = (rng.next_u64() % cells) as u32;
                    let src = (rng.next_u64() % cells) as u32;
                    let payload = (rng.next_u64() % 513) as i32 - 256;
                    Event {
                        t: *at as u32,
                        dst,
                        src,
                        payload,
                    }
                })
                .collect()
        }
        InjectBuilder::List { events } => events
            .iter()
            .map(|e| Event {
                t: e[7] as u32,
                dst: lattice.cell(e[0], e[1], e[2]),
                src: lattice.cell(e[3], e[4], e[5]),
                payload: e[6] as i32,
            })
            .collect(),
    }
}
