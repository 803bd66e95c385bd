//! Activation graphs (SPEC §2, §5, §6) on the CPU backend: one test binary, one module per
//! area. Every test asserts results the spec defines (hand-computed values, or a separate
//! sequential reference implementation with exact f32 equality), never just "it runs".

// Shared helpers: devices with a chosen thread count, small graph builders, and the
// straightforward sequential reference of SPEC §2.2 / §2.3.
#[path = "graph/common.rs"]
mod common;

// Hand-computed small graphs for each rule of §2.2 and §2.1 (decays, tiers, multipliers,
// refractory, clamping, early stop, ties, duplicate seeds and edges, summation order).
#[path = "graph/rules.rs"]
mod rules;

// Randomised graphs and parameters against the reference; push vs pull; thread counts.
#[path = "graph/property.rs"]
mod property;

// Recall (§2.3): seeding, modes, boost, filtering, ranking, batches, the latency budget.
#[path = "graph/recall.rs"]
mod recall;

// Files (§5, §6): nodes.tsv, edges.tsv, .npy, .wgraph round trips and every bad input.
#[path = "graph/files.rs"]
mod files;

// The seeded generators, rebuilt independently from their documented definition.
#[path = "graph/generate.rs"]
mod generate;

// Timing smoke test of the performance bar (ignored by default; run with --ignored).
#[path = "graph/perf.rs"]
mod perf;
