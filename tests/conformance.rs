//! Conformance of shard tables (SPEC §1.1, §1.2) on every backend.
//!
//! Invariant guarded: on every available backend, a batch of mixed operations returns
//! exactly what running its operations one by one, in batch order, on a plain sequential
//! model returns (`tests/common/model.rs`), and afterwards the table's contents, links and
//! statistics (items, slots, resizes, ops and link halves per shard, routed by the SPEC's
//! hash) equal the model's — across tiny (sequential-path) and huge (parallel-path) batches,
//! many shard resizes, every value size and shard count class, and failed batches (a
//! refused or out-of-memory batch changes nothing).
//!
//! Each test body runs once per backend listed in [`BACKENDS`]: `<name>_cpu`, `<name>_wgpu`,
//! `<name>_cuda`. A backend that cannot open here is skipped with a line on stderr, unless
//! its `WARPGRID_REQUIRE_*` variable is `1`, which turns the skip into a failure. The CPU
//! backend (the reference) is always required.

mod common;

use common::model::{self, Expect, MIN_SLOTS, Model, Op, batch_of, max_items, shard};
use common::{Rng, distinct_key};
use warpgrid_engine::backend::{BackendKind, Device, DeviceConfig, Workload};
use warpgrid_engine::error::{BackendError, TableError};
use warpgrid_engine::table::{BatchResults, Table, TableConfig};

// ---------------------------------------------------------------------------------------
// Backends, and the macro that runs one test body on each.

/// Every backend the suite runs on: (kind, its name, the variable that makes it required;
/// `None` = always required). Adding a backend's implementation needs no change here.
const BACKENDS: [(BackendKind, &str, Option<&str>); 3] = [
    (BackendKind::Cpu, "cpu", None),
    (BackendKind::Wgpu, "wgpu", Some("WARPGRID_REQUIRE_WGPU")),
    (BackendKind::Cuda, "cuda", Some("WARPGRID_REQUIRE_CUDA")),
];

/// Whether `s` is exactly `a` + "_" + `b` (const, so test names are checked at compile time).
const fn is_joined(s: &str, a: &str, b: &str) -> bool {
    let (s, a, b) = (s.as_bytes(), a.as_bytes(), b.as_bytes());
    if s.len() != a.len() + 1 + b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if s[i] != a[i] {
            return false;
        }
        i += 1;
    }
    if s[a.len()] != b'_' {
        return false;
    }
    let mut j = 0;
    while j < b.len() {
        if s[a.len() + 1 + j] != b[j] {
            return false;
        }
        j += 1;
    }
    true
}

/// Compile-time check that a `backend_test!` names one test per backend, in
/// [`BACKENDS`] order, each `<body>_<backend>`.
const fn check_test_names(body: &str, tests: &[&str]) {
    assert!(
        tests.len() == BACKENDS.len(),
        "backend_test!: one test name per entry of BACKENDS"
    );
    let mut i = 0;
    while i < tests.len() {
        assert!(
            is_joined(tests[i], body, BACKENDS[i].1),
            "backend_test!: test names must be <body>_<backend>, in BACKENDS order"
        );
        i += 1;
    }
}

/// Opens the backend of `test` (`<body>_<backend>`) and runs `body` on it, or skips.
fn run_on_backend(body_name: &str, test: &str, body: fn(&Device)) {
    let &(kind, name, require_var) = BACKENDS
        .iter()
        .find(|(_, name, _)| test == format!("{body_name}_{name}"))
        .unwrap_or_else(|| panic!("{test} is not {body_name}_<backend>"));
    assert_eq!(kind.name(), name, "BACKENDS names {kind:?} wrongly");
    match Device::open(&DeviceConfig {
        backend: kind,
        ..DeviceConfig::default()
    }) {
        Ok(device) => {
            assert_eq!(
                device.kind(),
                kind,
                "Device::open({kind}) opened another backend"
            );
            // Every backend runs shard tables in this version (CUDA since issue 8): one that
            // opens here runs the suite, and refusing tables is a failure.
            if let Err(why) = device.supports(Workload::Tables) {
                panic!("{body_name}: the {name} backend refuses shard tables: {why}");
            }
            body(&device);
        }
        Err(BackendError::Unavailable { backend, reason }) => {
            assert_eq!(
                backend, kind,
                "unavailability reported for the wrong backend"
            );
            match require_var {
                None => panic!("{body_name}: the {name} backend is always required: {reason}"),
                Some(var) if std::env::var(var).as_deref() == Ok("1") => {
                    panic!("{body_name}: {var}=1 but the {name} backend is unavailable: {reason}")
                }
                Some(_) => eprintln!("skipped {body_name} on {name}: {reason}"),
            }
        }
        Err(other) => panic!("{body_name}: opening the {name} backend failed: {other}"),
    }
}

/// `backend_test!(body => body_cpu, body_wgpu, body_cuda);` makes one `#[test]` per
/// backend of [`BACKENDS`] running `fn body(&Device)`. (Stable Rust cannot paste
/// identifiers, so the names are spelled out; a const check keeps them consistent.)
macro_rules! backend_test {
    ($body:ident => $($test:ident),+ $(,)?) => {
        const _: () = check_test_names(stringify!($body), &[$(stringify!($test)),+]);
        $(
            #[test]
            fn $test() {
                run_on_backend(stringify!($body), stringify!($test), $body);
            }
        )+
    };
}

backend_test!(random_mixed_batches => random_mixed_batches_cpu, random_mixed_batches_wgpu, random_mixed_batches_cuda);
backend_test!(growth_across_many_resizes => growth_across_many_resizes_cpu, growth_across_many_resizes_wgpu, growth_across_many_resizes_cuda);
backend_test!(growth_rule_is_exact => growth_rule_is_exact_cpu, growth_rule_is_exact_wgpu, growth_rule_is_exact_cuda);
backend_test!(capacity_hint_presizes_shards => capacity_hint_presizes_shards_cpu, capacity_hint_presizes_shards_wgpu, capacity_hint_presizes_shards_cuda);
backend_test!(value_sizes_and_shard_counts => value_sizes_and_shard_counts_cpu, value_sizes_and_shard_counts_wgpu, value_sizes_and_shard_counts_cuda);
backend_test!(mismatched_and_empty_batches_change_nothing => mismatched_and_empty_batches_change_nothing_cpu, mismatched_and_empty_batches_change_nothing_wgpu, mismatched_and_empty_batches_change_nothing_cuda);
backend_test!(out_of_memory_changes_nothing => out_of_memory_changes_nothing_cpu, out_of_memory_changes_nothing_wgpu, out_of_memory_changes_nothing_cuda);
backend_test!(clone_is_deep => clone_is_deep_cpu, clone_is_deep_wgpu, clone_is_deep_cuda);
backend_test!(one_million_op_batch => one_million_op_batch_cpu, one_million_op_batch_wgpu, one_million_op_batch_cuda);
backend_test!(links_in_every_interleaving => links_in_every_interleaving_cpu, links_in_every_interleaving_wgpu, links_in_every_interleaving_cuda);
backend_test!(hub_keys_with_thousands_of_partners => hub_keys_with_thousands_of_partners_cpu, hub_keys_with_thousands_of_partners_wgpu, hub_keys_with_thousands_of_partners_cuda);
backend_test!(links_beside_growth_and_refusals => links_beside_growth_and_refusals_cpu, links_beside_growth_and_refusals_wgpu, links_beside_growth_and_refusals_cuda);

#[test]
fn backend_list_names_every_concrete_backend() {
    let mut listed: Vec<BackendKind> = BACKENDS.iter().map(|b| b.0).collect();
    let mut concrete = BackendKind::CONCRETE.to_vec();
    listed.sort_by_key(|k| k.name());
    concrete.sort_by_key(|k| k.name());
    assert_eq!(listed, concrete);
    for (kind, name, _) in BACKENDS {
        assert_eq!(kind.name(), name);
    }
}

/// The model's routing (SPEC §1.1) against values computed by a separate Python script.
#[test]
fn routing_model_matches_reference_vectors() {
    // (key, key_hash(key, 0x9E3779B9), shard for 1, 3, 24, 1024 shards)
    let cases: [(u64, u32, [usize; 4]); 10] = [
        (0x0, 0xaa3e_5b61, [0, 0, 9, 865]),
        (0x1, 0x6f0b_28e6, [0, 2, 14, 230]),
        (0x2, 0x226e_b3e8, [0, 0, 0, 1000]),
        (0x3, 0xe7c2_db91, [0, 0, 9, 913]),
        (0xdead_beef, 0x11b3_01ab, [0, 2, 11, 427]),
        (0x1_0000_0000, 0x9941_cd2d, [0, 0, 21, 301]),
        (0xffff_ffff_ffff_fffd, 0x0768_1cf7, [0, 2, 23, 247]),
        (0x0123_4567_89ab_cdef, 0xa2f6_84d6, [0, 1, 22, 214]),
        (0xb3a_73ce_2ff2, 0x958c_e394, [0, 1, 4, 916]),
        (0x8000_0000_0000_0000, 0x6faf_45c4, [0, 2, 20, 452]),
    ];
    assert_eq!(model::fmix32(0), 0);
    assert_eq!(model::fmix32(1), 0x514e_28b7);
    for (k, h, shards) in cases {
        assert_eq!(model::key_hash(k, model::ROUTE_SEED), h, "key_hash({k:#x})");
        for (n, want) in [1u32, 3, 24, 1024].into_iter().zip(shards) {
            assert_eq!(shard(k, n), want, "shard({k:#x}, {n})");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Comparing a table with the model.

/// Creates a table and its model. Shards start at 16 slots for capacity 0; otherwise the
/// initial slots are read back (checked to be a power of two large enough for the hint).
fn new_table(device: &Device, config: &TableConfig) -> (Table, Model) {
    let ctx = format!("table {:?} on {}", config.name, device.kind());
    let table =
        Table::create(device, config.clone()).unwrap_or_else(|e| panic!("{ctx}: create: {e}"));
    let st = table.stats();
    assert_eq!(
        st.shards.len(),
        config.shards as usize,
        "{ctx}: shard count"
    );
    let per_shard = config.capacity.div_ceil(u64::from(config.shards));
    let slots = st.shards[0].slots;
    for (s, sh) in st.shards.iter().enumerate() {
        assert_eq!(
            (sh.items, sh.ops, sh.resizes, sh.link_halves),
            (0, 0, 0, 0),
            "{ctx}: new shard {s}"
        );
        assert_eq!(
            sh.slots, slots,
            "{ctx}: shards of a new table have equal slots"
        );
    }
    assert!(
        slots.is_power_of_two() && slots >= MIN_SLOTS,
        "{ctx}: initial slots {slots}"
    );
    if config.capacity == 0 {
        assert_eq!(
            slots, MIN_SLOTS,
            "{ctx}: capacity 0 starts shards at 16 slots"
        );
    } else {
        assert!(
            max_items(slots, config.max_load) >= per_shard,
            "{ctx}: capacity {} needs {per_shard} items per shard, {slots} slots hold {}",
            config.capacity,
            max_items(slots, config.max_load)
        );
    }
    let model = Model::new(
        config.shards,
        config.value_bytes as usize,
        config.max_load,
        slots,
    );
    (table, model)
}

/// The operations of `ops[..=i]` that touch a key of `ops[i]` (to explain a mismatch).
fn history(ops: &[Op], i: usize) -> String {
    let keys_of = |op: &Op| match *op {
        Op::Link(a, b, _) | Op::Unlink(a, b) => vec![a, b],
        ref other => vec![other.key()],
    };
    let mine = keys_of(&ops[i]);
    let related: Vec<String> = ops[..=i]
        .iter()
        .enumerate()
        .filter(|(_, op)| keys_of(op).iter().any(|k| mine.contains(k)))
        .map(|(j, op)| format!("  [{j}] {op:?}"))
        .collect();
    let skip = related.len().saturating_sub(24);
    related[skip..].join("\n")
}

/// Compares a backend's results with the model's, operation by operation.
fn compare(ctx: &str, ops: &[Op], want: &[Expect], got: &BatchResults) {
    assert_eq!(got.len(), ops.len(), "{ctx}: one result per operation");
    assert_eq!(
        got.statuses().len(),
        ops.len(),
        "{ctx}: one status per operation"
    );
    let mut mismatches = 0usize;
    let mut first = None;
    let mut n = 0usize;
    for (i, outcome) in got.iter().enumerate() {
        n += 1;
        let actual = Expect::from_outcome(&outcome);
        if !actual.same(&want[i]) {
            mismatches += 1;
            if first.is_none() {
                first = Some((i, actual));
            }
        }
    }
    if let Some((i, actual)) = first {
        panic!(
            "{ctx}: {mismatches} of {} results differ from the sequential model; first at op {i}:\n\
             op:       {:?}\nexpected: {:?}\nactual:   {:?}\nearlier ops on its keys in this batch:\n{}",
            ops.len(),
            ops[i],
            want[i],
            actual,
            history(ops, i)
        );
    }
    assert_eq!(
        n,
        ops.len(),
        "{ctx}: iter() yields one outcome per operation"
    );
    // Random access agrees with iteration.
    let stride = (ops.len() / 97).max(1);
    for i in (0..ops.len()).step_by(stride) {
        let o = got
            .get(i)
            .unwrap_or_else(|| panic!("{ctx}: get({i}) is None"));
        assert!(
            Expect::from_outcome(&o).same(&want[i]),
            "{ctx}: get({i}) disagrees with iter()"
        );
    }
    assert!(got.get(ops.len()).is_none(), "{ctx}: get(len) must be None");
}

/// Applies `ops` as one batch to the table and the model and compares results and stats.
fn run_batch(table: &mut Table, model: &mut Model, ops: &[Op], ctx: &str) {
    let batch = batch_of(model.value_bytes, ops);
    let got = table
        .apply(&batch)
        .unwrap_or_else(|e| panic!("{ctx}: batch of {} ops failed: {e}", ops.len()));
    let want = model.apply_all(ops);
    compare(ctx, ops, &want, &got);
    check_stats(table, model, ctx);
}

/// Table statistics against the model: per shard items (routed by SPEC §1.1), slots and
/// resizes (growth rule), ops, link halves; totals; and the sizing invariants.
fn check_stats(table: &Table, model: &Model, ctx: &str) {
    let st = table.stats();
    let want = model.shard_stats();
    assert_eq!(st.shards.len(), want.len(), "{ctx}: shard count");
    for (s, (g, w)) in st.shards.iter().zip(&want).enumerate() {
        assert_eq!(
            g.items, w.items,
            "{ctx}: items of shard {s} (routing or contents differ)"
        );
        assert_eq!(
            g.link_halves, w.link_halves,
            "{ctx}: link halves of shard {s}"
        );
        assert_eq!(g.ops, w.ops, "{ctx}: ops of shard {s}");
        assert!(
            g.slots.is_power_of_two() && g.slots >= MIN_SLOTS,
            "{ctx}: slots of shard {s} = {}",
            g.slots
        );
        assert!(
            g.items <= max_items(g.slots, model.max_load),
            "{ctx}: shard {s} holds {} items in {} slots, above max_load {}",
            g.items,
            g.slots,
            model.max_load
        );
        assert_eq!(
            (g.slots, g.resizes),
            (w.slots, w.resizes),
            "{ctx}: (slots, resizes) of shard {s}: a shard doubles exactly when an insert would \
             push its items past floor(slots * max_load)"
        );
    }
    assert_eq!(st.items, model.len() as u64, "{ctx}: total items");
    assert_eq!(st.links, model.link_count(), "{ctx}: links");
    assert_eq!(
        st.slots,
        want.iter().map(|s| s.slots).sum::<u64>(),
        "{ctx}: total slots"
    );
    assert_eq!(
        st.ops,
        want.iter().map(|s| s.ops).sum::<u64>(),
        "{ctx}: total ops"
    );
    assert_eq!(
        st.resizes,
        want.iter().map(|s| u64::from(s.resizes)).sum::<u64>(),
        "{ctx}: total resizes"
    );
    let load = st.items as f64 / st.slots as f64;
    assert!(
        (st.load_factor - load).abs() < 1e-12,
        "{ctx}: load factor {} vs {load}",
        st.load_factor
    );
    let n = want.len() as f64;
    let mean = st.items as f64 / n;
    let cv = if st.items == 0 {
        0.0
    } else {
        (want
            .iter()
            .map(|s| (s.items as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
            / mean
    };
    assert!(
        (st.cv - cv).abs() <= 1e-9 * cv.max(1.0),
        "{ctx}: cv {} vs {cv}",
        st.cv
    );
}

/// Final contents: every key ever touched read back with one Get batch, every touched key's
/// links read back with one related batch (min 0, no bound), then the statistics.
fn check_contents(table: &mut Table, model: &mut Model, ctx: &str) {
    let keys = model.touched();
    let gets: Vec<Op> = keys.iter().map(|&k| Op::Get(k)).collect();
    run_batch(
        table,
        model,
        &gets,
        &format!("{ctx}: final get of {} touched keys", keys.len()),
    );
    let related: Vec<Op> = keys
        .iter()
        .map(|&k| Op::Related(k, 0.0, u32::MAX))
        .collect();
    run_batch(
        table,
        model,
        &related,
        &format!("{ctx}: final related sweep"),
    );
}

// ---------------------------------------------------------------------------------------
// Workload generation.

/// Relative weights of the operations of a random batch.
#[derive(Debug, Clone, Copy)]
struct Mix {
    put: u64,
    get: u64,
    delete: u64,
    link: u64,
    unlink: u64,
    related: u64,
    /// Per mille: chance at each step to emit a run of 2..=40 consecutive related queries.
    related_runs: u64,
    /// Per mille: chance at each step to emit the "delete a linked key, re-put it, query"
    /// pattern.
    patterns: u64,
}

const BALANCED: Mix = Mix {
    put: 30,
    get: 20,
    delete: 12,
    link: 15,
    unlink: 5,
    related: 10,
    related_runs: 5,
    patterns: 5,
};
const NO_RELATED: Mix = Mix {
    put: 35,
    get: 25,
    delete: 15,
    link: 15,
    unlink: 10,
    related: 0,
    related_runs: 0,
    patterns: 0,
};
const MANY_RELATED: Mix = Mix {
    put: 20,
    get: 5,
    delete: 10,
    link: 20,
    unlink: 5,
    related: 40,
    related_runs: 20,
    patterns: 10,
};
const RELATED_RUNS: Mix = Mix {
    put: 25,
    get: 10,
    delete: 10,
    link: 20,
    unlink: 5,
    related: 0,
    related_runs: 150,
    patterns: 0,
};
const WRITE_HEAVY: Mix = Mix {
    put: 50,
    get: 5,
    delete: 25,
    link: 10,
    unlink: 5,
    related: 5,
    related_runs: 0,
    patterns: 20,
};
const LINKS_ONLY: Mix = Mix {
    put: 0,
    get: 0,
    delete: 5,
    link: 60,
    unlink: 20,
    related: 15,
    related_runs: 0,
    patterns: 0,
};

/// A seeded generator of operations over a pool of keys.
struct Gen {
    rng: Rng,
    pool: Vec<u64>,
    value_bytes: usize,
    shards: u32,
}

impl Gen {
    /// A pool of `pool` keys: edge keys first (0, 1, word boundaries, the largest
    /// non-reserved keys), then random ones.
    fn new(seed: u64, pool: usize, value_bytes: usize, shards: u32) -> Gen {
        let mut rng = Rng::new(seed);
        let mut keys = vec![
            0,
            1,
            2,
            u64::MAX - 2,
            1 << 32,
            (1 << 32) - 1,
            1 << 63,
            u64::MAX - 3,
            (1 << 32) + 1,
            0xFFFF_FFFF_0000_0000,
        ];
        let mut seen: std::collections::HashSet<u64> = keys.iter().copied().collect();
        while keys.len() < pool.max(keys.len()) {
            let k = if rng.chance(1, 4) {
                rng.below(1 << 20)
            } else {
                rng.key()
            };
            if seen.insert(k) {
                keys.push(k);
            }
        }
        Gen {
            rng,
            pool: keys,
            value_bytes,
            shards,
        }
    }

    /// A key of `pool[..space]`; a quarter of picks fall on its first 8 keys (hot keys).
    fn key(&mut self, space: usize) -> u64 {
        let space = space.clamp(2, self.pool.len());
        if self.rng.chance(1, 4) {
            self.pool[self.rng.index(space.min(8))]
        } else {
            self.pool[self.rng.index(space)]
        }
    }

    fn other_key(&mut self, a: u64, space: usize) -> u64 {
        loop {
            let b = self.key(space);
            if b != a {
                return b;
            }
        }
    }

    /// A key different from `a`, in another shard when the table has more than one.
    fn key_in_other_shard(&mut self, a: u64, space: usize) -> u64 {
        for _ in 0..64 {
            let b = self.other_key(a, space);
            if self.shards == 1 || shard(a, self.shards) != shard(b, self.shards) {
                return b;
            }
        }
        self.other_key(a, space)
    }

    fn value(&mut self) -> Vec<u8> {
        self.rng.bytes(self.value_bytes)
    }

    /// A strength in (0, 1], drawn to make ties and boundary values common.
    fn strength(&mut self) -> f32 {
        match self.rng.below(10) {
            0 => 1.0,
            1 => 0.5,
            2 => 0.1,
            3 => 0.25,
            4 => f32::MIN_POSITIVE,
            5 => 1.0 - f32::EPSILON / 2.0,
            6 => (1 + self.rng.below(10)) as f32 / 10.0,
            _ => (1 + self.rng.below(1000)) as f32 / 1000.0,
        }
    }

    fn min_strength(&mut self) -> f32 {
        match self.rng.below(8) {
            0 => 0.0,
            1 | 2 => 0.1,
            3 => 0.5,
            4 => 1.0,
            5 => (1 + self.rng.below(10)) as f32 / 10.0,
            _ => self.rng.below(1001) as f32 / 1000.0,
        }
    }

    fn max(&mut self) -> u32 {
        match self.rng.below(8) {
            0 => 0,
            1 => 1,
            2 => 3,
            3 | 4 => 10,
            5 => 100,
            6 => u32::MAX,
            _ => self.rng.below(20) as u32,
        }
    }

    fn related(&mut self, space: usize) -> Op {
        let k = self.key(space);
        let (min, max) = (self.min_strength(), self.max());
        Op::Related(k, min, max)
    }

    /// Link `a`–`b`, query, delete `a` (linked), query, re-put `a`, query again, relink in
    /// the other direction (replacing the strength), unlink — all in one batch.
    fn pattern(&mut self, space: usize, out: &mut Vec<Op>) {
        let a = self.key(space);
        let b = self.key_in_other_shard(a, space);
        let c = self.other_key(a, space);
        let (s1, s2) = (self.strength(), self.strength());
        let (va, vb, va2) = (self.value(), self.value(), self.value());
        out.extend([
            Op::Put(a, va),
            Op::Put(b, vb),
            Op::Link(a, b, s1),
            Op::Related(b, 0.0, 10),
            Op::Related(a, 0.0, 10),
            Op::Delete(a),
            Op::Related(b, 0.0, 10),
            Op::Related(a, 0.0, 10),
            Op::Get(a),
            Op::Put(a, va2),
            Op::Related(b, 0.0, 10),
            Op::Link(b, a, s2),
            Op::Link(c, a, s1),
            Op::Related(a, 0.0, u32::MAX),
            Op::Unlink(b, a),
            Op::Related(a, 0.0, 10),
            Op::Delete(b),
            Op::Delete(b),
            Op::Related(a, 0.1, 1),
            Op::Get(b),
        ]);
    }

    /// `n` operations over `pool[..space]` drawn by `mix`.
    fn ops(&mut self, n: usize, space: usize, mix: Mix) -> Vec<Op> {
        let total = mix.put + mix.get + mix.delete + mix.link + mix.unlink + mix.related;
        let mut out = Vec::with_capacity(n + 64);
        while out.len() < n {
            if mix.patterns > 0 && self.rng.chance(mix.patterns, 1000) {
                self.pattern(space, &mut out);
                continue;
            }
            if mix.related_runs > 0 && self.rng.chance(mix.related_runs, 1000) {
                for _ in 0..self.rng.range(2, 40) {
                    let op = self.related(space);
                    out.push(op);
                }
                continue;
            }
            if total == 0 {
                continue;
            }
            let r = self.rng.below(total);
            let weights = [
                mix.put,
                mix.get,
                mix.delete,
                mix.link,
                mix.unlink,
                mix.related,
            ];
            let mut kind = 0;
            let mut acc = 0;
            for (i, w) in weights.into_iter().enumerate() {
                acc += w;
                if r < acc {
                    kind = i;
                    break;
                }
            }
            let op = match kind {
                0 => {
                    let k = self.key(space);
                    Op::Put(k, self.value())
                }
                1 => Op::Get(self.key(space)),
                2 => Op::Delete(self.key(space)),
                3 => {
                    let a = self.key(space);
                    let b = if self.rng.chance(1, 2) {
                        self.key_in_other_shard(a, space)
                    } else {
                        self.other_key(a, space)
                    };
                    Op::Link(a, b, self.strength())
                }
                4 => {
                    let a = self.key(space);
                    let b = self.other_key(a, space);
                    Op::Unlink(a, b)
                }
                _ => self.related(space),
            };
            out.push(op);
        }
        out.truncate(n);
        out
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

/// Random mixed batches, tiny (1..=64 ops) and large (up to 100k ops), several seeds.
fn random_mixed_batches(device: &Device) {
    let large = 100_000;
    for seed in [1u64, 2, 3, 0xDEAD_BEEF] {
        let config = TableConfig::new("mixed");
        let (mut table, mut model) = new_table(device, &config);
        let mut g = Gen::new(seed, 8192, model.value_bytes, model.shards);
        let mixes = [
            BALANCED,
            NO_RELATED,
            MANY_RELATED,
            RELATED_RUNS,
            WRITE_HEAVY,
            LINKS_ONLY,
        ];
        let mut step = 0usize;
        let mut run = |table: &mut Table,
                       model: &mut Model,
                       g: &mut Gen,
                       n: usize,
                       space: usize,
                       mix: Mix| {
            let ops = g.ops(n, space, mix);
            let ctx = format!("seed {seed} batch {step} ({n} ops over {space} keys, {mix:?})");
            run_batch(table, model, &ops, &ctx);
            step += 1;
        };
        // Tiny batches on a small key space: many duplicates, absent deletes, re-puts.
        for i in 0..60 {
            let n = match i % 6 {
                0 => 1,
                1 => 64,
                2 => 63,
                3 => 2,
                _ => g.rng.range(1, 64) as usize,
            };
            let mix = mixes[i % mixes.len()];
            run(&mut table, &mut model, &mut g, n, 40, mix);
        }
        // Large batches (the parallel path), each followed by tiny ones on the same keys.
        let plan: [(usize, usize, Mix); 8] = [
            (65, 40, BALANCED),
            (2_000, 256, NO_RELATED),
            (10_000, 1_000, MANY_RELATED),
            (large, 4_000, BALANCED),
            (5_000, 500, RELATED_RUNS),
            (large, 8_000, WRITE_HEAVY),
            (20_000, 2_000, LINKS_ONLY),
            (large, 64, BALANCED),
        ];
        for (i, &(n, space, mix)) in plan.iter().enumerate() {
            run(&mut table, &mut model, &mut g, n, space, mix);
            for j in 0..4 {
                let n = g.rng.range(1, 64) as usize;
                run(
                    &mut table,
                    &mut model,
                    &mut g,
                    n,
                    space.min(64),
                    mixes[(i + j) % mixes.len()],
                );
            }
        }
        check_contents(&mut table, &mut model, &format!("seed {seed}"));
    }
}

/// ~1M distinct keys into 4 shards created with capacity 0, interleaved with deletes:
/// contents, and every shard's slots a power of two, items <= floor(slots * max_load),
/// resizes == log2(slots / 16).
fn growth_across_many_resizes(device: &Device) {
    let total = 1_000_000;
    let rounds = 8;
    let config = TableConfig::new("growth")
        .with_shards(4)
        .with_value_bytes(4);
    let (mut table, mut model) = new_table(device, &config);
    let mut rng = Rng::new(77);
    let mut next = 0u64;
    let mut live: Vec<u64> = Vec::new();
    for round in 0..rounds {
        let n = total / rounds;
        let ops: Vec<Op> = (0..n)
            .map(|_| {
                let k = distinct_key(next);
                next += 1;
                live.push(k);
                Op::Put(k, rng.bytes(4))
            })
            .collect();
        run_batch(
            &mut table,
            &mut model,
            &ops,
            &format!("growth round {round}: {n} new keys"),
        );
        // Delete ~6% of the live keys, read some back, re-put a few deleted ones.
        let mut ops = Vec::new();
        for _ in 0..live.len() / 16 {
            let i = rng.index(live.len());
            let k = live.swap_remove(i);
            ops.push(Op::Delete(k));
            if rng.chance(1, 8) {
                ops.push(Op::Get(k));
            }
            if rng.chance(1, 4) {
                ops.push(Op::Put(k, rng.bytes(4)));
                live.push(k);
            }
        }
        run_batch(
            &mut table,
            &mut model,
            &ops,
            &format!("growth round {round}: deletes"),
        );
        let st = table.stats();
        for (s, sh) in st.shards.iter().enumerate() {
            let doublings = (sh.slots / MIN_SLOTS).trailing_zeros();
            assert_eq!(
                sh.slots,
                MIN_SLOTS << doublings,
                "round {round}: shard {s} slots {}",
                sh.slots
            );
            assert_eq!(
                sh.resizes, doublings,
                "round {round}: shard {s}: resizes == log2(slots/16)"
            );
        }
    }
    let st = table.stats();
    assert!(
        st.shards.iter().all(|sh| sh.resizes >= 12),
        "expected many resizes, got {}",
        st.resizes
    );
    check_contents(&mut table, &mut model, "growth");
}

/// Single shard, one put per batch: slots double exactly when the insert would push items
/// past floor(slots * max_load), never on an update or after deletes below the peak; the
/// same sequence in one large batch ends with the same slots.
fn growth_rule_is_exact(device: &Device) {
    let n = 3_000u64;
    for max_load in [0.8, 0.5, 0.95, 0.7] {
        let config = TableConfig::new("exact")
            .with_shards(1)
            .with_value_bytes(8)
            .with_max_load(max_load);
        let (mut table, mut model) = new_table(device, &config);
        let mut rng = Rng::new(max_load.to_bits());
        let mut all_ops = Vec::new();
        let mut live: Vec<u64> = Vec::new();
        let (mut items, mut slots, mut resizes) = (0u64, MIN_SLOTS, 0u32);
        for i in 0..n {
            let mut op_list = vec![Op::Put(distinct_key(1 << 40 | i), rng.bytes(8))];
            if i % 97 == 0 && !live.is_empty() {
                // An update of an existing key (never grows).
                op_list.push(Op::Put(live[rng.index(live.len())], rng.bytes(8)));
            }
            if i % 211 == 0 {
                // Deletes, then new keys up to the previous peak (no growth needed).
                for _ in 0..(live.len() / 8) {
                    let k = live.swap_remove(rng.index(live.len()));
                    op_list.push(Op::Delete(k));
                }
            }
            for op in op_list {
                let ctx = format!("max_load {max_load}, put #{i}: {op:?}");
                let (grow, new_key) = match &op {
                    Op::Put(k, _) => {
                        let new = model.value(*k).is_none();
                        (new && items + 1 > max_items(slots, max_load), new)
                    }
                    _ => (false, false),
                };
                run_batch(&mut table, &mut model, std::slice::from_ref(&op), &ctx);
                match &op {
                    Op::Put(k, _) if new_key => {
                        items += 1;
                        live.push(*k);
                    }
                    Op::Delete(_) => items -= 1,
                    _ => {}
                }
                if grow {
                    slots *= 2;
                    resizes += 1;
                }
                let sh = table.stats().shards[0];
                assert_eq!(
                    (sh.items, sh.slots, sh.resizes),
                    (items, slots, resizes),
                    "{ctx}: (items, slots, resizes); grow expected: {grow}"
                );
                all_ops.push(op);
            }
        }
        // The same operations as one batch (the parallel path) reach the same state.
        let (mut t2, mut m2) = new_table(
            device,
            &TableConfig {
                name: "exact-one-batch".into(),
                ..config
            },
        );
        run_batch(
            &mut t2,
            &mut m2,
            &all_ops,
            &format!("max_load {max_load}: one batch"),
        );
        assert_eq!(
            t2.stats().shards[0].slots,
            slots,
            "max_load {max_load}: one-batch slots"
        );
        check_contents(&mut table, &mut model, &format!("max_load {max_load}"));
    }
}

/// A capacity hint sizes shards so that ceil(capacity / shards) keys per shard fit without
/// a resize.
fn capacity_hint_presizes_shards(device: &Device) {
    for (shards, capacity) in [(1u32, 1_000u64), (4, 10_000), (24, 100_000), (3, 13)] {
        let config = TableConfig::new("hinted")
            .with_shards(shards)
            .with_capacity(capacity);
        let (mut table, mut model) = new_table(device, &config);
        let per_shard = capacity.div_ceil(u64::from(shards));
        let mut count = vec![0u64; shards as usize];
        let mut rng = Rng::new(capacity);
        let mut ops = Vec::new();
        let mut i = 0u64;
        while count.iter().any(|&c| c < per_shard) {
            let k = distinct_key(i);
            i += 1;
            let s = shard(k, shards);
            if count[s] < per_shard {
                count[s] += 1;
                ops.push(Op::Put(k, rng.bytes(8)));
            }
        }
        let ctx = format!("{shards} shards, capacity {capacity}");
        run_batch(&mut table, &mut model, &ops, &ctx);
        assert_eq!(
            table.stats().resizes,
            0,
            "{ctx}: filling to the hint must not resize"
        );
        check_contents(&mut table, &mut model, &ctx);
    }
}

/// Value sizes 4, 8, 12, 256 with shard counts 1, 3, 24, 1024.
fn value_sizes_and_shard_counts(device: &Device) {
    let big = 6_000;
    for value_bytes in [4u32, 8, 12, 256] {
        for shards in [1u32, 3, 24, 1024] {
            let config = TableConfig::new("sizes")
                .with_shards(shards)
                .with_value_bytes(value_bytes);
            let (mut table, mut model) = new_table(device, &config);
            let seed = u64::from(value_bytes) << 32 | u64::from(shards);
            let mut g = Gen::new(seed, 4096, value_bytes as usize, shards);
            let plan: [(usize, usize, Mix); 7] = [
                (1, 8, BALANCED),
                (33, 40, MANY_RELATED),
                (big, 1_500, BALANCED),
                (64, 64, WRITE_HEAVY),
                (big, 3_000, RELATED_RUNS),
                (17, 40, NO_RELATED),
                (big, 4_000, WRITE_HEAVY),
            ];
            for (i, (n, space, mix)) in plan.into_iter().enumerate() {
                let ops = g.ops(n, space, mix);
                let ctx = format!(
                    "value_bytes {value_bytes}, shards {shards}, seed {seed:#x}, batch {i}"
                );
                run_batch(&mut table, &mut model, &ops, &ctx);
            }
            check_contents(
                &mut table,
                &mut model,
                &format!("value_bytes {value_bytes}, shards {shards}"),
            );
        }
    }
}

/// Reads every touched key (values and links) without going through the model, so a
/// snapshot can be compared before and after a failed batch.
fn snapshot(table: &mut Table, keys: &[u64]) -> Vec<Expect> {
    let mut b = table.batch();
    for &k in keys {
        b.get(k).unwrap();
        b.get_related(k, 0.0, u32::MAX).unwrap();
    }
    let r = table.apply(&b).expect("snapshot batch");
    r.iter().map(|o| Expect::from_outcome(&o)).collect()
}

/// Expects `table.apply(batch)` to fail and leave contents and statistics as they were.
fn assert_refused_unchanged(
    table: &mut Table,
    model: &mut Model,
    batch: &warpgrid_engine::table::Batch,
    ctx: &str,
) -> TableError {
    let stats_before = table.stats();
    let err = match table.apply(batch) {
        Ok(_) => panic!("{ctx}: the batch was expected to fail"),
        Err(e) => e,
    };
    assert_eq!(
        table.stats(),
        stats_before,
        "{ctx}: statistics changed by a failed batch"
    );
    check_stats(table, model, ctx);
    // Contents (values and links) equal the model: the snapshot goes through the model too.
    let keys = model.touched();
    let ops: Vec<Op> = keys
        .iter()
        .flat_map(|&k| [Op::Get(k), Op::Related(k, 0.0, u32::MAX)])
        .collect();
    let got = snapshot(table, &keys);
    let want = model.apply_all(&ops);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.same(w),
            "{ctx}: after the failed batch, {:?} gives {g:?}, expected {w:?}",
            ops[i]
        );
    }
    check_stats(table, model, ctx);
    err
}

/// A batch for another value size is refused and changes nothing; an empty batch returns
/// no results and changes nothing but the ops count (which it leaves too).
fn mismatched_and_empty_batches_change_nothing(device: &Device) {
    let config = TableConfig::new("mismatch")
        .with_shards(3)
        .with_value_bytes(8);
    let (mut table, mut model) = new_table(device, &config);
    let mut g = Gen::new(5, 512, 8, 3);
    let ops = g.ops(3_000, 300, BALANCED);
    run_batch(&mut table, &mut model, &ops, "mismatch: fill");
    for other in [4usize, 12, 256] {
        let mut g2 = Gen::new(6, 512, other, 3);
        let wrong = batch_of(other, &g2.ops(500, 300, WRITE_HEAVY));
        let err =
            assert_refused_unchanged(&mut table, &mut model, &wrong, &format!("mismatch {other}"));
        assert_eq!(
            err,
            TableError::BatchMismatch {
                batch: other,
                table: 8
            }
        );
    }
    let before = table.stats();
    let empty = table.batch();
    let r = table.apply(&empty).expect("an empty batch applies");
    assert_eq!(r.len(), 0);
    assert!(r.iter().next().is_none());
    assert_eq!(
        table.stats(),
        before,
        "an empty batch changes no statistics"
    );
    let ops = g.ops(64, 300, MANY_RELATED);
    run_batch(&mut table, &mut model, &ops, "mismatch: after refusals");
    check_contents(&mut table, &mut model, "mismatch");
}

fn expect_oom(err: &TableError, kind: BackendKind, ctx: &str) {
    match err {
        TableError::Backend(BackendError::OutOfMemory {
            backend,
            needed,
            available,
        }) => {
            assert_eq!(*backend, kind, "{ctx}: OutOfMemory names the backend");
            assert!(
                needed > available,
                "{ctx}: OutOfMemory with needed {needed} <= available {available}"
            );
        }
        other => panic!("{ctx}: expected OutOfMemory, got {other:?}"),
    }
}

/// With a device memory limit, a batch that would outgrow it fails with OutOfMemory and
/// changes nothing (values, links, stats, even the deletes and links before its puts); a
/// smaller batch afterwards works; at the limit, updates and re-puts of deleted keys work.
fn out_of_memory_changes_nothing(device: &Device) {
    let kind = device.kind();
    let limit = 4u64 << 20;
    let limited = Device::open(&DeviceConfig {
        backend: kind,
        memory_limit: Some(limit),
        ..DeviceConfig::default()
    })
    .unwrap_or_else(|e| panic!("opening {kind} with a memory limit: {e}"));
    let value_bytes = 64usize;
    let config = TableConfig::new("oom")
        .with_shards(4)
        .with_value_bytes(value_bytes as u32);
    let (mut table, mut model) = new_table(&limited, &config);
    let mut rng = Rng::new(99);
    let mut next = 0u64;
    let mut fresh = |rng: &mut Rng| {
        next += 1;
        Op::Put(distinct_key(next), rng.bytes(value_bytes))
    };
    // A populated table with links.
    let mut ops: Vec<Op> = (0..2_000).map(|_| fresh(&mut rng)).collect();
    let keys: Vec<u64> = ops.iter().map(Op::key).collect();
    for i in 0..500 {
        ops.push(Op::Link(keys[i], keys[(i * 7 + 1) % keys.len()], 0.5));
    }
    run_batch(&mut table, &mut model, &ops, "oom: fill");

    // A large batch that starts with deletes, links and unlinks, then outgrows the limit.
    let mut big = Vec::new();
    for i in 0..100 {
        big.push(Op::Delete(keys[i * 3]));
        big.push(Op::Link(keys[i * 3 + 1], keys[i * 3 + 2], 0.9));
        big.push(Op::Unlink(keys[i], keys[(i * 7 + 1) % keys.len()]));
        big.push(Op::Put(keys[i * 3 + 1], rng.bytes(value_bytes)));
    }
    for _ in 0..200_000 {
        big.push(fresh(&mut rng));
    }
    big.push(Op::Get(keys[0]));
    let err = assert_refused_unchanged(
        &mut table,
        &mut model,
        &batch_of(value_bytes, &big),
        "oom: large batch",
    );
    expect_oom(&err, kind, "oom: large batch");

    // A smaller batch afterwards still works.
    let mut small: Vec<Op> = (0..300).map(|_| fresh(&mut rng)).collect();
    small.extend((0..50).map(|i| Op::Delete(keys[i * 5])));
    small.extend((0..50).map(|i| Op::Link(keys[i * 5 + 1], keys[i * 5 + 2], 0.3)));
    small.extend((0..50).map(|i| Op::Related(keys[i * 5 + 1], 0.1, 10)));
    run_batch(
        &mut table,
        &mut model,
        &small,
        "oom: smaller batch after the failure",
    );

    // Fill with tiny mixed batches (the sequential path) until one fails.
    let mut failed = None;
    for round in 0..20_000 {
        let live = model.keys();
        let mut tiny = vec![Op::Delete(live[rng.index(live.len())])];
        tiny.extend((0..62).map(|_| fresh(&mut rng)));
        tiny.push(Op::Get(live[0]));
        let batch = batch_of(value_bytes, &tiny);
        let stats_before = table.stats();
        match table.apply(&batch) {
            Ok(got) => {
                let want = model.apply_all(&tiny);
                compare(&format!("oom: tiny fill {round}"), &tiny, &want, &got);
            }
            Err(e) => {
                assert_eq!(
                    table.stats(),
                    stats_before,
                    "oom: a failed tiny batch changed stats"
                );
                failed = Some((e, batch, round));
                break;
            }
        }
    }
    let (err, batch, round) = failed.expect("tiny batches never reached a 4 MiB memory limit");
    expect_oom(&err, kind, &format!("oom: tiny fill {round}"));
    let err = assert_refused_unchanged(
        &mut table,
        &mut model,
        &batch,
        "oom: tiny batch at the limit, again",
    );
    expect_oom(&err, kind, "oom: tiny batch at the limit, again");

    // At the limit: reads, deletes and unlinks need no memory.
    let live = model.keys();
    let mut ops: Vec<Op> = (0..64).map(|i| Op::Get(live[i * 5])).collect();
    ops.extend((0..16).map(|i| Op::Unlink(keys[i], keys[(i * 7 + 1) % keys.len()])));
    ops.extend((0..16).map(|i| Op::Related(keys[i * 3 + 1], 0.0, 100)));
    let deleted: Vec<u64> = (0..64).map(|i| live[live.len() - 1 - i * 3]).collect();
    ops.extend(deleted.iter().map(|&k| Op::Delete(k)));
    run_batch(
        &mut table,
        &mut model,
        &ops,
        "oom: reads and deletes at the limit",
    );
    // Re-putting the deleted keys brings every shard back to items it held before, so no
    // shard grows (even counting every put as a possible insert).
    let reput: Vec<Op> = deleted
        .iter()
        .map(|&k| Op::Put(k, rng.bytes(value_bytes)))
        .collect();
    run_batch(
        &mut table,
        &mut model,
        &reput,
        "oom: re-put of deleted keys at the limit",
    );
    // Updates of existing keys need no memory either: SPEC §1.1, a table never refuses a PUT
    // for lack of room while memory lasts, so they must apply exactly.
    let live = model.keys();
    let updates: Vec<Op> = (0..64)
        .map(|i| Op::Put(live[i * 7], rng.bytes(value_bytes)))
        .collect();
    run_batch(
        &mut table,
        &mut model,
        &updates,
        "oom: updates at the limit",
    );
    let updates: Vec<Op> = (0..5_000)
        .map(|i| Op::Put(live[i % live.len()], rng.bytes(value_bytes)))
        .collect();
    run_batch(
        &mut table,
        &mut model,
        &updates,
        "oom: a large batch of updates at the limit",
    );
    check_contents(&mut table, &mut model, "oom");
}

/// `try_clone` is a deep copy: writes to the clone and to the original stay apart.
fn clone_is_deep(device: &Device) {
    let config = TableConfig::new("clone")
        .with_shards(5)
        .with_value_bytes(12);
    let (mut table, mut model) = new_table(device, &config);
    let mut g = Gen::new(11, 1024, 12, 5);
    let ops = g.ops(5_000, 600, BALANCED);
    run_batch(&mut table, &mut model, &ops, "clone: fill");
    let mut copy = table.try_clone().expect("try_clone");
    let mut copy_model = model.clone();
    assert_eq!(copy.stats(), table.stats());
    let ops = g.ops(5_000, 600, WRITE_HEAVY);
    run_batch(
        &mut copy,
        &mut copy_model,
        &ops,
        "clone: writes to the clone",
    );
    let ops = g.ops(3_000, 600, MANY_RELATED);
    run_batch(
        &mut table,
        &mut model,
        &ops,
        "clone: writes to the original",
    );
    check_contents(&mut copy, &mut copy_model, "clone: the clone");
    check_contents(&mut table, &mut model, "clone: the original");
}

/// One mixed batch of 1M operations over ~200k keys (about 15 s in a debug build).
fn one_million_op_batch(device: &Device) {
    let n = 1_000_000;
    let space = 200_000;
    let config = TableConfig::new("million");
    let (mut table, mut model) = new_table(device, &config);
    let mut g = Gen::new(1_000_000, space, model.value_bytes, model.shards);
    let prefill = g.ops(
        space / 2,
        space,
        Mix {
            put: 1,
            ..NO_RELATED_ZERO
        },
    );
    run_batch(&mut table, &mut model, &prefill, "million: prefill");
    let ops = g.ops(n, space, BALANCED);
    run_batch(
        &mut table,
        &mut model,
        &ops,
        &format!("million: {n} mixed ops over {space} keys"),
    );
    check_contents(&mut table, &mut model, "million");
}

/// Links, unlinks, deletes, puts and related queries interleaved in one batch over a few
/// keys, so that nearly every operation meets an earlier one on the same pair or key:
/// relinks (strength updates), unlinks of linked and unlinked pairs, deletes of linked keys
/// before and after relinks, related queries between them with every min and max.
fn links_in_every_interleaving(device: &Device) {
    const CHURN: Mix = Mix {
        put: 12,
        get: 4,
        delete: 10,
        link: 30,
        unlink: 12,
        related: 25,
        related_runs: 10,
        patterns: 15,
    };
    for (shards, space, seed) in [(1u32, 6usize, 1u64), (3, 12, 2), (24, 40, 3), (7, 300, 4)] {
        let config = TableConfig::new("churn").with_shards(shards);
        let (mut table, mut model) = new_table(device, &config);
        let mut g = Gen::new(seed, space.max(16), model.value_bytes, shards);
        for (i, n) in [1usize, 2, 7, 64, 500, 3_000, 20_000, 300]
            .into_iter()
            .enumerate()
        {
            let ops = g.ops(n, space, CHURN);
            let ctx = format!("churn: {shards} shards over {space} keys, batch {i}");
            run_batch(&mut table, &mut model, &ops, &ctx);
        }
        // Hand-made: relink one pair many times, unlink and relink it, delete one end between.
        let (a, b) = (g.pool[0], g.pool[1]);
        let mut ops = vec![Op::Put(a, g.value()), Op::Put(b, g.value())];
        for k in 1..=50 {
            ops.push(Op::Link(
                if k % 2 == 0 { a } else { b },
                if k % 2 == 0 { b } else { a },
                k as f32 / 50.0,
            ));
            ops.push(Op::Related(a, 0.0, 10));
            match k % 7 {
                0 => ops.push(Op::Unlink(b, a)),
                3 => ops.push(Op::Delete(b)),
                4 => ops.push(Op::Put(b, g.value())),
                _ => {}
            }
            ops.push(Op::Related(b, (k % 5) as f32 / 5.0, 1));
        }
        run_batch(
            &mut table,
            &mut model,
            &ops,
            &format!("churn {shards}: one pair"),
        );
        check_contents(&mut table, &mut model, &format!("churn {shards}"));
    }
    // A key cannot be linked to itself (SPEC §1.2); the batch refuses it before any backend.
    let table = Table::create(device, TableConfig::new("selfish")).unwrap();
    let mut b = table.batch();
    assert!(matches!(
        b.link(5, 5, 0.5),
        Err(TableError::InvalidLink { .. })
    ));
    assert!(matches!(
        b.unlink(5, 5),
        Err(TableError::InvalidLink { .. })
    ));
    assert_eq!(b.len(), 0);
}

/// Hub keys with thousands of partners (runs far longer than any device chunk or scan block):
/// built in one batch with related queries between the links, then partners deleted, re-put,
/// unlinked and relinked, queries with every max (0, 1, 10, 3000, u32::MAX) and min, partners
/// that do and do not exist, and a hub deleted and relinked inside a batch.
fn hub_keys_with_thousands_of_partners(device: &Device) {
    let config = TableConfig::new("hubs").with_shards(5).with_value_bytes(12);
    let (mut table, mut model) = new_table(device, &config);
    let mut rng = Rng::new(77);
    let hubs = [distinct_key(1), distinct_key(2), 0, u64::MAX - 2];
    let partners: Vec<u64> = (10..3_010).map(distinct_key).collect();
    let value = |rng: &mut Rng| rng.bytes(12);
    let queries = |hub: u64, out: &mut Vec<Op>| {
        for (min, max) in [
            (0.0, 0),
            (0.0, 1),
            (0.1, 10),
            (0.5, 3_000),
            (0.0, u32::MAX),
            (1.0, 5),
        ] {
            out.push(Op::Related(hub, min, max));
        }
    };
    // Batch 1: every third partner exists; each hub links to every partner (strengths with
    // many ties), with queries every 500 links.
    let mut ops: Vec<Op> = partners
        .iter()
        .step_by(3)
        .map(|&p| Op::Put(p, value(&mut rng)))
        .collect();
    ops.push(Op::Put(hubs[0], value(&mut rng)));
    for (h, &hub) in hubs.iter().enumerate() {
        for (i, &p) in partners.iter().enumerate() {
            let strength = ((i * 7 + h) % 20 + 1) as f32 / 20.0;
            ops.push(if i % 2 == 0 {
                Op::Link(hub, p, strength)
            } else {
                Op::Link(p, hub, strength)
            });
            if i % 500 == 499 {
                queries(hub, &mut ops);
            }
        }
        queries(hub, &mut ops);
    }
    run_batch(&mut table, &mut model, &ops, "hubs: build");
    // Batch 2: partners appear and disappear, links change, a hub is deleted and relinked.
    let mut ops = Vec::new();
    for (i, &p) in partners.iter().enumerate() {
        match i % 6 {
            0 => ops.push(Op::Delete(p)),
            1 => ops.push(Op::Put(p, value(&mut rng))),
            2 => ops.push(Op::Unlink(hubs[0], p)),
            3 => ops.push(Op::Link(hubs[1], p, 1.0)),
            _ => {}
        }
        if i % 700 == 0 {
            queries(hubs[0], &mut ops);
            queries(hubs[1], &mut ops);
        }
    }
    queries(hubs[2], &mut ops);
    ops.push(Op::Delete(hubs[2]));
    queries(hubs[2], &mut ops);
    for &p in partners.iter().take(400) {
        ops.push(Op::Link(hubs[2], p, 0.75));
    }
    queries(hubs[2], &mut ops);
    queries(hubs[3], &mut ops);
    run_batch(&mut table, &mut model, &ops, "hubs: churn");
    // Batch 3: the hubs' partners queried from the partners' side, then the last hub deleted.
    let mut ops: Vec<Op> = partners
        .iter()
        .step_by(11)
        .map(|&p| Op::Related(p, 0.0, u32::MAX))
        .collect();
    ops.push(Op::Delete(hubs[3]));
    queries(hubs[3], &mut ops);
    run_batch(&mut table, &mut model, &ops, "hubs: partners' side");
    check_contents(&mut table, &mut model, "hubs");
}

/// Links in batches that also grow shards (rehash while links change), and refused batches
/// (memory limit) full of link changes leaving every link as it was.
fn links_beside_growth_and_refusals(device: &Device) {
    let config = TableConfig::new("grow-links").with_shards(6);
    let (mut table, mut model) = new_table(device, &config);
    let mut g = Gen::new(9, 20_000, model.value_bytes, 6);
    for (i, space) in [200usize, 2_000, 20_000].into_iter().enumerate() {
        // Mostly puts of new keys (every shard doubles several times) among links.
        let mut ops = g.ops(space, space, BALANCED);
        ops.extend(g.ops(
            space,
            space,
            Mix {
                put: 60,
                ..LINKS_ONLY
            },
        ));
        run_batch(&mut table, &mut model, &ops, &format!("grow-links {i}"));
    }
    check_contents(&mut table, &mut model, "grow-links");

    let kind = device.kind();
    let limited = Device::open(&DeviceConfig {
        backend: kind,
        memory_limit: Some(1 << 20),
        ..DeviceConfig::default()
    })
    .unwrap();
    let (mut table, mut model) =
        new_table(&limited, &TableConfig::new("refuse-links").with_shards(2));
    let mut g = Gen::new(10, 400, model.value_bytes, 2);
    let ops = g.ops(3_000, 400, LINKS_ONLY);
    run_batch(&mut table, &mut model, &ops, "refuse-links: fill");
    let mut big = g.ops(2_000, 400, LINKS_ONLY);
    big.extend((0..200_000u64).map(|i| Op::Put(distinct_key(1_000_000 + i), vec![1; 8])));
    big.extend(g.ops(500, 400, MANY_RELATED));
    let err = assert_refused_unchanged(&mut table, &mut model, &batch_of(8, &big), "refuse-links");
    expect_oom(&err, kind, "refuse-links");
    let ops = g.ops(2_000, 400, LINKS_ONLY);
    run_batch(&mut table, &mut model, &ops, "refuse-links: after");
    check_contents(&mut table, &mut model, "refuse-links");
}

const NO_RELATED_ZERO: Mix = Mix {
    put: 0,
    get: 0,
    delete: 0,
    link: 0,
    unlink: 0,
    related: 0,
    related_runs: 0,
    patterns: 0,
};
