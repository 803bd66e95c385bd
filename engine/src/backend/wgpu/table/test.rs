//! Tables on the wgpu device against the CPU reference, where the conformance suite does not
//! reach: batches past 2^20 device operations with very long runs of one key, shards split
//! over many small arenas, and a refused batch (past the adapter's binding limit) leaving
//! values, links and statistics unchanged. Each test skips, with a line on stderr, when no
//! adapter is present (unless `WARPGRID_REQUIRE_WGPU=1`).

use super::*;
use crate::backend::cpu::{CpuDevice, CpuShards};
use crate::backend::gpu_table::{
    BLOCK, CHUNK, MAX_SHARDS, TILE, WORKGROUP, layout, links, new_arenas,
};
use crate::backend::{Device, DeviceConfig, TableBackend};
use crate::table::Outcome;
use crate::table::{Batch, BatchResults, TableConfig};

fn gpu() -> Option<WgpuDevice> {
    match WgpuDevice::open(&DeviceConfig::default()) {
        Ok(d) => Some(d),
        Err(e) => {
            assert_ne!(
                std::env::var("WARPGRID_REQUIRE_WGPU").as_deref(),
                Ok("1"),
                "WARPGRID_REQUIRE_WGPU=1 but no wgpu device: {e}"
            );
            eprintln!("skipped: no wgpu device: {e}");
            None
        }
    }
}

fn cpu() -> CpuDevice {
    match Device::cpu().unwrap() {
        Device::Cpu(d) => d,
        _ => unreachable!(),
    }
}

/// The same table on both backends.
struct Pair {
    gpu: WgpuDevice,
    cpu: CpuDevice,
    g: WgpuShards,
    c: CpuShards,
    config: TableConfig,
    epoch: u64,
}

impl Pair {
    fn new(gpu: WgpuDevice, config: TableConfig, cap: Option<u64>) -> Pair {
        let cpu = cpu();
        let mut g = gpu.create_shards(&config).unwrap();
        if let Some(cap) = cap {
            // Re-lay the empty table out over arenas of at most `cap` bytes.
            let slots: Vec<u64> = g.shards.iter().map(|m| m.slots).collect();
            let (at, lens) = layout::<WgpuDevice>(&slots, g.w, cap).unwrap();
            g.arenas = new_arenas(&gpu, &lens, g.w).unwrap();
            for (m, (arena, base)) in g.shards.iter_mut().zip(at) {
                (m.arena, m.base) = (arena, base);
            }
            g.cap = cap;
        }
        let c = cpu.create_shards(&config).unwrap();
        Pair {
            gpu,
            cpu,
            g,
            c,
            config,
            epoch: 0,
        }
    }

    /// Applies `batch` to both and asserts equal results and statistics.
    fn apply(&mut self, batch: &Batch, ctx: &str) {
        self.epoch += 1;
        let mut rg = BatchResults::new();
        let mut rc = BatchResults::new();
        self.gpu
            .apply(&mut self.g, &self.config, batch, self.epoch, &mut rg)
            .unwrap_or_else(|e| panic!("{ctx}: wgpu: {e}"));
        self.cpu
            .apply(&mut self.c, &self.config, batch, self.epoch, &mut rc)
            .unwrap();
        let (og, oc): (Vec<Outcome<'_>>, Vec<Outcome<'_>>) =
            (rg.iter().collect(), rc.iter().collect());
        assert_eq!(og.len(), oc.len(), "{ctx}: result count");
        for (i, (a, b)) in og.iter().zip(&oc).enumerate() {
            assert_eq!(
                a,
                b,
                "{ctx}: op {i} ({:?} {})",
                batch.codes()[i],
                batch.keys()[i]
            );
        }
        assert_eq!(
            self.gpu.shard_stats(&self.g),
            self.cpu.shard_stats(&self.c),
            "{ctx}: statistics"
        );
    }
}

/// Entries and link halves of one shard, sorted (the export order is unspecified).
type Export = (Vec<(u64, Vec<u8>)>, Vec<(u64, u64, u32)>);

impl Pair {
    fn export(&self, shard: usize, on_gpu: bool) -> Export {
        let (mut entries, mut halves) = (Vec::new(), Vec::new());
        let mut entry = |k: u64, v: &[u8]| entries.push((k, v.to_vec()));
        let mut link = |a: u64, b: u64, s: f32| halves.push((a, b, s.to_bits()));
        if on_gpu {
            self.gpu
                .export_shard(&self.g, shard, &mut entry, &mut link)
                .unwrap();
        } else {
            self.cpu
                .export_shard(&self.c, shard, &mut entry, &mut link)
                .unwrap();
        }
        entries.sort_unstable();
        halves.sort_unstable();
        (entries, halves)
    }
}

/// A small xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random mixed operations over `space` keys, a quarter of them on key 7.
fn mixed(rng: &mut Rng, n: usize, space: u64, w: usize) -> Batch {
    let mut b = Batch::with_capacity(4 * w, n);
    for _ in 0..n {
        let k = if rng.below(4) == 0 {
            7
        } else {
            rng.below(space)
        };
        match rng.below(10) {
            0..=3 => {
                let v: Vec<u8> = (0..4 * w).map(|_| rng.next() as u8).collect();
                b.put(k, &v).unwrap();
            }
            4..=5 => b.get(k).unwrap(),
            6 => b.delete(k).unwrap(),
            7 => {
                let p = rng.below(space);
                if p != k {
                    b.link(k, p, (1 + rng.below(10)) as f32 / 10.0).unwrap();
                }
            }
            8 => b.unlink(k, rng.below(space) ^ 1).unwrap_or(()),
            _ => b.get_related(k, 0.2, rng.below(5) as u32).unwrap(),
        }
    }
    b
}

#[test]
fn batches_past_two_to_the_twenty_device_ops() {
    let Some(gpu) = gpu() else { return };
    let config = TableConfig::new("big").with_shards(3);
    let mut pair = Pair::new(gpu, config, None);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let b = mixed(&mut rng, 20_000, 5_000, 2);
    pair.apply(&b, "warm-up");
    let b = mixed(&mut rng, 1_200_000, 100_000, 2);
    pair.apply(&b, "1.2M ops");
    // The sort this adapter does not use by default, so both are tested wherever one runs.
    pair.g.local_sort = !pair.g.local_sort;
    let b = mixed(&mut rng, 300_000, 100_000, 2);
    pair.apply(&b, "300k ops, the other sort");
}

#[test]
fn shards_split_over_many_small_arenas() {
    let Some(gpu) = gpu() else { return };
    // 64 KiB per arena buffer: 5461 slots of 12 bytes, so the 8 shards spread over several
    // arenas as they grow (to 4096 slots each), and rehashes move shards between arenas.
    let config = TableConfig::new("arenas").with_shards(8);
    let mut pair = Pair::new(gpu, config, Some(64 << 10));
    assert!(pair.g.arenas.len() == 1);
    let mut rng = Rng(0xfeed_f00d_1234_5678);
    for round in 0..12 {
        let b = mixed(&mut rng, 6_000, 24_000, 2);
        pair.apply(&b, &format!("round {round}"));
    }
    assert!(
        pair.g.arenas.len() >= 3,
        "expected several arenas, got {}",
        pair.g.arenas.len()
    );
    let mut all = Batch::new(8);
    for k in 0..24_000 {
        all.get(k).unwrap();
        all.get_related(k, 0.0, u32::MAX).unwrap();
    }
    pair.apply(&all, "final reads");
    for shard in 0..8 {
        assert_eq!(
            pair.export(shard, true),
            pair.export(shard, false),
            "export of shard {shard}"
        );
    }
}

#[test]
fn a_refused_batch_changes_nothing() {
    let Some(gpu) = gpu() else { return };
    let config = TableConfig::new("refused").with_shards(2);
    let mut pair = Pair::new(gpu.clone(), config, Some(64 << 10));
    let mut rng = Rng(0x5151_5151_5151_5151);
    let fill = mixed(&mut rng, 3_000, 2_000, 2);
    pair.apply(&fill, "fill");
    let stats = gpu.shard_stats(&pair.g);
    let bytes = gpu.allocated_bytes();
    // Deletes, links and unlinks, then more keys than a shard of at most 64 KiB holds.
    let mut b = Batch::new(8);
    for k in 0..200 {
        b.delete(k).unwrap();
        b.link(k + 1, k + 1_000, 0.5).unwrap();
        b.unlink(k + 2, k + 3).unwrap();
    }
    for k in 0..20_000u64 {
        b.put(10_000 + k, &k.to_le_bytes()).unwrap();
    }
    let mut r = BatchResults::new();
    let err = gpu
        .apply(&mut pair.g, &pair.config, &b, 99, &mut r)
        .expect_err("a shard past the arena limit must be refused");
    assert!(
        err.to_string().contains("storage binding limit"),
        "the error names the limit: {err}"
    );
    assert_eq!(
        gpu.shard_stats(&pair.g),
        stats,
        "statistics after the refusal"
    );
    assert_eq!(
        gpu.allocated_bytes(),
        bytes,
        "table bytes after the refusal"
    );
    let mut all = Batch::new(8);
    for k in 0..2_000 {
        all.get(k).unwrap();
        all.get_related(k, 0.0, u32::MAX).unwrap();
    }
    pair.apply(&all, "reads after the refusal");
}

/// Link-heavy batches against the CPU: results, statistics and every shard's export (links
/// included) after each batch, on arenas small enough that shards move as they grow. A hub
/// key with thousands of partners makes runs longer than any chunk or scan block, and the
/// hub is deleted and relinked inside a batch.
#[test]
fn links_and_their_exports_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let config = TableConfig::new("links").with_shards(5);
    let mut pair = Pair::new(gpu, config, Some(64 << 10));
    let mut rng = Rng(0x0bad_cafe_f00d_0001);
    let check_exports = |pair: &Pair, ctx: &str| {
        for shard in 0..5 {
            assert_eq!(
                pair.export(shard, true),
                pair.export(shard, false),
                "{ctx}: export of shard {shard}"
            );
        }
    };
    for round in 0..6 {
        let mut b = mixed(&mut rng, 4_000, 600, 2);
        // A hub linked to 3000 keys, queried, deleted, relinked and queried again.
        let hub = 1_000_000 + round;
        for p in 0..3_000u64 {
            b.link(hub, p, (1 + (p + round) % 10) as f32 / 10.0)
                .unwrap();
            if p % 1_000 == 999 {
                b.get_related(hub, 0.0, u32::MAX).unwrap();
                b.get_related(hub, 0.5, 7).unwrap();
            }
        }
        if round % 2 == 1 {
            b.delete(hub).unwrap();
            b.get_related(hub, 0.0, u32::MAX).unwrap();
            b.link(hub, 3, 0.25).unwrap();
            b.put(hub, &[1; 8]).unwrap();
            b.get_related(hub, 0.0, u32::MAX).unwrap();
            b.get_related(3, 0.0, u32::MAX).unwrap();
        }
        pair.apply(&b, &format!("round {round}"));
        check_exports(&pair, &format!("round {round}"));
    }
    let mut all = Batch::new(8);
    for k in (0..600).chain(1_000_000..1_000_006) {
        all.get_related(k, 0.0, u32::MAX).unwrap();
    }
    pair.apply(&all, "final related sweep");
}

#[test]
fn every_kernel_entry_point_is_in_the_shader() {
    for k in Kernel::ALL {
        let entry = k.entry();
        assert_eq!(pipeline_name(k), format!("table_{entry}"));
        assert!(
            SHADER.contains(&format!("fn {entry}(")),
            "no entry point {entry} in shaders/table.wgsl"
        );
        assert!(
            SHADER.contains(&format!("@workgroup_size({})\nfn {entry}(", k.threads())),
            "{entry}: workgroup size {} in shaders/table.wgsl",
            k.threads()
        );
    }
    // `Params` mirrors the shader's struct: 48 u32 fields.
    assert_eq!(std::mem::size_of::<Params>(), 192);
    for (what, value) in [
        ("const CHUNK: u32 = ", CHUNK),
        ("const TILE: u32 = ", TILE),
        ("const BLOCK: u32 = ", u64::from(BLOCK)),
        ("const WORKGROUP: u32 = ", u64::from(WORKGROUP)),
        ("const MAX_SHARDS: u32 = ", u64::from(MAX_SHARDS)),
        ("const SCAN_BLOCK: u32 = ", links::SCAN_BLOCK),
    ] {
        assert!(
            SHADER.contains(&format!("{what}{value}u;")),
            "shaders/table.wgsl must declare {what}{value}u"
        );
    }
}

#[test]
fn table_bytes_follow_create_growth_clone_and_drop() {
    let Some(gpu) = gpu() else { return };
    let device = Device::Wgpu(gpu);
    let w = 2u64;
    let mut table =
        crate::Table::create(&device, TableConfig::new("bytes").with_shards(4)).unwrap();
    assert_eq!(device.table_bytes(), 4 * 16 * (12 + 4 * w));
    let mut b = table.batch();
    for k in 0..100u64 {
        b.put(k, &k.to_le_bytes()).unwrap();
    }
    table.apply(&b).unwrap();
    let slots = table.stats().slots;
    assert!(slots > 64, "the shards grew: {slots} slots");
    assert_eq!(device.table_bytes(), slots * (12 + 4 * w));
    let copy = table.try_clone().unwrap();
    assert_eq!(device.table_bytes(), 2 * slots * (12 + 4 * w));
    drop(copy);
    drop(table);
    assert_eq!(device.table_bytes(), 0);
}
