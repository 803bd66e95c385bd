//! Durable tables (SPEC §1.3): reopening gives back exactly the acknowledged batches, links
//! included; a torn WAL tail costs only the batches it cut; a corrupt snapshot is an error
//! naming the file; a refused batch leaves neither the table nor its WAL changed.

mod common;

use common::Rng;
use common::model::{Expect, Model, Op, batch_of};
use warpgrid::host::durable::{DurableOptions, DurableTable, FsyncPolicy, WAL_FILE};
use warpgrid::{Device, DeviceConfig, TableConfig};

const VB: usize = 8;
const SHARDS: u32 = 4;

fn config() -> TableConfig {
    TableConfig::new("d").with_shards(SHARDS)
}

fn open(dir: &std::path::Path, create: bool) -> DurableTable {
    let options = DurableOptions {
        create,
        ..DurableOptions::default()
    };
    DurableTable::open(dir, &Device::cpu().unwrap(), config(), &options).unwrap()
}

fn random_ops(rng: &mut Rng, n: usize) -> Vec<Op> {
    (0..n)
        .map(|_| {
            let k = rng.below(200);
            match rng.below(10) {
                0..=4 => Op::Put(k, rng.bytes(VB)),
                5 => Op::Delete(k),
                6 => Op::Link(
                    k,
                    k + 1 + rng.below(20),
                    (rng.below(1000) + 1) as f32 / 1000.0,
                ),
                7 => Op::Unlink(k, k + 1 + rng.below(20)),
                8 => Op::Related(k, 0.0, 50),
                _ => Op::Get(k),
            }
        })
        .collect()
}

/// Every key's value and related keys in `table` equal the model's.
fn assert_same(table: &mut DurableTable, model: &Model, ctx: &str) {
    let ops: Vec<Op> = (0..222)
        .flat_map(|k| [Op::Get(k), Op::Related(k, 0.0, 1000)])
        .collect();
    let got = table.apply(&batch_of(VB, &ops)).unwrap();
    let mut m = model.clone();
    for (i, (op, want)) in ops.iter().zip(m.apply_all(&ops)).enumerate() {
        let have = Expect::from_outcome(&got.get(i).unwrap());
        assert!(
            have.same(&want),
            "{ctx}: {op:?}: got {have:?}, want {want:?}"
        );
    }
    assert_eq!(table.stats().items, model.len() as u64, "{ctx}: items");
}

#[test]
fn reopening_gives_back_every_batch_with_links_across_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let mut model = Model::new(SHARDS, VB, 0.8, 16);
    for round in 0..6 {
        let mut t = open(dir.path(), round == 0);
        assert_same(&mut t, &model, &format!("round {round} after reopen"));
        for b in 0..20 {
            let n = 1 + rng.index(300);
            let ops = random_ops(&mut rng, n);
            t.apply(&batch_of(VB, &ops)).unwrap();
            model.apply_all(&ops);
            if round == 2 && b == 10 {
                t.checkpoint().unwrap();
                assert_eq!(t.wal_bytes(), 0, "a checkpoint empties the log");
            }
        }
        assert_same(&mut t, &model, &format!("round {round} before close"));
    }
    let t = open(dir.path(), false);
    assert!(
        t.recovery().snapshot_entries > 0 && t.recovery().batches_replayed > 0,
        "{:?}",
        t.recovery()
    );
    assert_eq!(t.recovery().dropped_bytes, 0);
}

#[test]
fn a_torn_wal_tail_costs_only_the_batches_it_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(9);
    let mut models = vec![Model::new(SHARDS, VB, 0.8, 16)];
    let mut sizes = Vec::new();
    {
        let mut t = open(dir.path(), true);
        for _ in 0..8 {
            let ops: Vec<Op> = random_ops(&mut rng, 40)
                .into_iter()
                .filter(|o| !matches!(o, Op::Get(_) | Op::Related(..)))
                .collect();
            t.apply(&batch_of(VB, &ops)).unwrap();
            let mut m = models.last().unwrap().clone();
            m.apply_all(&ops);
            models.push(m);
            sizes.push(t.wal_bytes());
        }
    }
    let log = dir.path().join(WAL_FILE);
    let pristine = std::fs::read(&log).unwrap();
    // Cut the log at every byte of its last two batches: the state must be the model after
    // the last batch that survives whole, and later batches must be gone.
    let from = sizes[sizes.len() - 3] as usize;
    for cut in from..=pristine.len() {
        std::fs::write(&log, &pristine[..cut]).unwrap();
        let intact = sizes.iter().take_while(|&&w| w as usize <= cut).count();
        let mut t = open(dir.path(), false);
        assert_same(&mut t, &models[intact], &format!("cut at {cut}"));
        let r = t.recovery().clone();
        assert_eq!(r.batches_replayed as usize, intact, "cut at {cut}: {r:?}");
        let at_boundary = sizes.contains(&(cut as u64));
        assert_eq!(
            r.dropped_bytes > 0,
            !at_boundary,
            "cut at {cut}: a cut inside a batch must be reported, one between batches cuts nothing: {r:?}"
        );
    }
}

#[test]
fn a_corrupt_snapshot_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut t = open(dir.path(), true);
        let ops: Vec<Op> = (0..100).map(|k| Op::Put(k, vec![k as u8; VB])).collect();
        t.apply(&batch_of(VB, &ops)).unwrap();
        t.checkpoint().unwrap();
    }
    let snap = dir.path().join("shard-0002.snap");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&snap, &bytes).unwrap();
    let options = DurableOptions::default();
    let err = DurableTable::open(dir.path(), &Device::cpu().unwrap(), config(), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shard-0002.snap") && err.contains("corrupt snapshot"),
        "{err}"
    );
}

#[test]
fn a_refused_batch_changes_neither_table_nor_wal() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::open(&DeviceConfig {
        memory_limit: Some(64 << 10),
        ..DeviceConfig::default()
    })
    .unwrap();
    let options = DurableOptions {
        create: true,
        fsync: FsyncPolicy::Always,
        ..DurableOptions::default()
    };
    let mut t = DurableTable::open(dir.path(), &device, config(), &options).unwrap();
    let small: Vec<Op> = (0..50).map(|k| Op::Put(k, vec![1; VB])).collect();
    t.apply(&batch_of(VB, &small)).unwrap();
    let wal = t.wal_bytes();
    let big: Vec<Op> = (1000..100_000).map(|k| Op::Put(k, vec![2; VB])).collect();
    let err = t.apply(&batch_of(VB, &big)).unwrap_err().to_string();
    assert!(err.contains("out of memory"), "{err}");
    assert_eq!(
        t.wal_bytes(),
        wal,
        "the refused batch was taken back out of the log"
    );
    assert_eq!(t.stats().items, 50);
    drop(t);
    let t = open(dir.path(), false);
    assert_eq!(t.stats().items, 50);
}

#[test]
fn conflicting_settings_and_foreign_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), true));
    let options = DurableOptions::default();
    let err = DurableTable::open(
        dir.path(),
        &Device::cpu().unwrap(),
        config().with_shards(8),
        &options,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("created with shards = 4, not 8"),
        "{err}"
    );
    let err = DurableTable::open(
        &dir.path().join("nothing"),
        &Device::cpu().unwrap(),
        config(),
        &options,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no table here; add --create"),
        "{err}"
    );
}

#[test]
fn a_wal_past_the_threshold_checkpoints_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let options = DurableOptions {
        create: true,
        checkpoint_bytes: 4 << 10,
        ..DurableOptions::default()
    };
    let mut model = Model::new(SHARDS, VB, 0.8, 16);
    {
        let mut t =
            DurableTable::open(dir.path(), &Device::cpu().unwrap(), config(), &options).unwrap();
        let mut rng = Rng::new(3);
        for _ in 0..30 {
            let ops = random_ops(&mut rng, 100);
            t.apply(&batch_of(VB, &ops)).unwrap();
            model.apply_all(&ops);
            assert!(t.wal_bytes() <= 4 << 10, "{}", t.wal_bytes());
        }
        assert!(
            t.last_checkpoint().is_some(),
            "no automatic checkpoint happened"
        );
    }
    assert!(dir.path().join("shard-0000.snap").exists());
    let mut t = open(dir.path(), false);
    assert!(t.recovery().snapshot_entries > 0);
    assert_same(&mut t, &model, "after automatic checkpoints");
}
