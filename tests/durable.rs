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
    open_on(dir, create, &Device::cpu().unwrap())
}

fn open_on(dir: &std::path::Path, create: bool, device: &Device) -> DurableTable {
    let options = DurableOptions {
        create,
        ..DurableOptions::default()
    };
    DurableTable::open(dir, device, config(), &options).unwrap()
}

/// The wgpu device, or `None` (skip, with the reason) unless `WARPGRID_REQUIRE_WGPU=1`.
fn wgpu() -> Option<Device> {
    let config = DeviceConfig {
        backend: warpgrid::BackendKind::Wgpu,
        ..DeviceConfig::default()
    };
    match Device::open(&config) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("WARPGRID_REQUIRE_WGPU").as_deref() == Ok("1") => {
            panic!("WARPGRID_REQUIRE_WGPU=1 but wgpu cannot run: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no wgpu backend here ({e})");
            None
        }
    }
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
    let cpu = Device::cpu().unwrap();
    reopen_rounds(&|_| cpu.clone());
}

/// The same on the wgpu backend, alternating with the CPU one: snapshots written from the
/// device are read back on the host and the other way round.
#[test]
fn reopening_across_the_wgpu_and_cpu_backends_gives_back_every_batch() {
    let Some(gpu) = wgpu() else { return };
    let cpu = Device::cpu().unwrap();
    reopen_rounds(&|round| {
        if round % 2 == 0 {
            gpu.clone()
        } else {
            cpu.clone()
        }
    });
}

fn reopen_rounds(device_of_round: &dyn Fn(usize) -> Device) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(5);
    let mut model = Model::new(SHARDS, VB, 0.8, 16);
    for round in 0..6 {
        let mut t = open_on(dir.path(), round == 0, &device_of_round(round));
        assert_same(&mut t, &model, &format!("round {round} after reopen"));
        for b in 0..20 {
            let n = 1 + rng.index(300);
            let ops = random_ops(&mut rng, n);
            t.apply(&batch_of(VB, &ops)).unwrap();
            model.apply_all(&ops);
            if (round == 2 || round == 4) && b == 10 {
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

#[test]
fn the_interval_policy_syncs_in_the_background_within_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let options = DurableOptions {
        create: true,
        fsync: FsyncPolicy::Interval(std::time::Duration::from_millis(50)),
        ..DurableOptions::default()
    };
    let mut t =
        DurableTable::open(dir.path(), &Device::cpu().unwrap(), config(), &options).unwrap();
    let ops: Vec<Op> = (0..100).map(|k| Op::Put(k, vec![3; VB])).collect();
    let applied = std::time::Instant::now();
    t.apply(&batch_of(VB, &ops)).unwrap();
    if applied.elapsed() < std::time::Duration::from_millis(40) {
        assert!(!t.is_synced(), "acknowledged at once, before any fsync");
    }
    // No more batches come: the sync thread alone must make the batch durable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.is_synced() {
        assert!(
            std::time::Instant::now() < deadline,
            "an idle table's interval sync never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(t);
    assert_eq!(open(dir.path(), false).stats().items, 100);
}

#[test]
fn a_queue_over_a_durable_table_logs_one_group_commit_per_launch_and_loses_nothing() {
    use warpgrid::host::metrics::Registry;
    use warpgrid::host::queue::{Queue, QueueConfig};
    let dir = tempfile::tempdir().unwrap();
    let clients = 8u64;
    let per_client = 600u64;
    let registry = Registry::new();
    let queue = Queue::start(open(dir.path(), true), QueueConfig::default(), &registry);
    std::thread::scope(|s| {
        for c in 0..clients {
            let queue = queue.clone();
            s.spawn(move || {
                let mut client = queue.client();
                let tickets: Vec<_> = (0..per_client)
                    .map(|i| {
                        client
                            .put(c << 32 | i, &(c * 1000 + i).to_le_bytes())
                            .unwrap()
                    })
                    .collect();
                for t in tickets {
                    client.wait(t).expect("every put is acknowledged");
                }
            });
        }
    });
    let launched = registry
        .counter_with(
            "warpgrid_queue_batches_total",
            "engine batches launched",
            &[("table", "d")],
        )
        .get();
    let submissions = queue.submissions();
    let store = queue.shutdown().unwrap();
    drop(
        store
            .into_durable()
            .expect("the queue gives the durable table back"),
    );
    let t = open(dir.path(), false);
    assert_eq!(t.stats().items, clients * per_client);
    assert_eq!(
        t.recovery().batches_replayed,
        launched,
        "one commit per launched batch"
    );
    assert!(
        launched <= submissions,
        "{launched} launches for {submissions} submissions"
    );
    let mut t = t;
    let reads: Vec<Op> = (0..clients)
        .flat_map(|c| (0..per_client).map(move |i| Op::Get(c << 32 | i)))
        .collect();
    let got = t.apply(&batch_of(VB, &reads)).unwrap();
    for (i, op) in reads.iter().enumerate() {
        let Op::Get(k) = op else { unreachable!() };
        let want = ((k >> 32) * 1000 + (k & 0xffff_ffff)).to_le_bytes();
        assert_eq!(
            Expect::from_outcome(&got.get(i).unwrap()),
            Expect::Value(want.to_vec()),
            "key {k}"
        );
    }
}

/// The child half of the disk-full test: run only by that test, in a process whose file size
/// limit makes the log's appends fail (`ulimit -f`, with SIGXFSZ ignored).
#[test]
#[ignore = "run by a_full_disk_fails_the_write_with_the_path_and_keeps_the_table"]
fn disk_full_child() {
    let Some(dir) = std::env::var_os("WARPGRID_DISK_FULL_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut t = open(&dir, true);
    let mut model = Model::new(SHARDS, VB, 0.8, 16);
    let mut acked = 0u64;
    let err = loop {
        let ops: Vec<Op> = (0..100)
            .map(|i| Op::Put(acked * 100 + i, (acked * 100 + i).to_le_bytes().to_vec()))
            .collect();
        match t.apply(&batch_of(VB, &ops)) {
            Ok(_) => {
                model.apply_all(&ops);
                acked += 1;
                println!("acked {acked}");
            }
            Err(e) => break e.to_string(),
        }
        assert!(acked < 100_000, "the file size limit never hit");
    };
    assert!(err.contains("table.wal"), "the error names the log: {err}");
    // Reads still work, and show exactly the acknowledged batches.
    assert_same(&mut t, &model, "after the failed append");
    // The table is not poisoned: the next write fails for the same reason, not another.
    let more: Vec<Op> = (0..100)
        .map(|i| Op::Put(1 << 40 | i, vec![1; VB]))
        .collect();
    let again = t.apply(&batch_of(VB, &more)).unwrap_err().to_string();
    assert!(again.contains("table.wal"), "{again}");
    assert!(t.poisoned().is_none());
    println!("child done: {acked} batches acknowledged");
}

#[test]
fn a_full_disk_fails_the_write_with_the_path_and_keeps_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // `ulimit -f` makes writes past the limit fail with EFBIG, as a full disk fails them with
    // ENOSPC: a real error from the kernel, mid-write, with no special filesystem.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "trap '' XFSZ; ulimit -f 64; exec \"$0\" --ignored --exact disk_full_child --nocapture",
        )
        .arg(&exe)
        .env("WARPGRID_DISK_FULL_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child done"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: u64 = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("acked "))
        .next_back()
        .unwrap()
        .parse()
        .unwrap();
    // Reopened without the limit: exactly the acknowledged batches, and writable again.
    let mut t = open(dir.path(), false);
    assert_eq!(t.stats().items, acked * 100);
    assert_eq!(
        t.recovery().dropped_bytes,
        0,
        "the failed append was cut back"
    );
    t.apply(&batch_of(VB, &[Op::Put(1 << 41, vec![2; VB])]))
        .unwrap();
}

/// Runs the warpgrid binary as an unprivileged user (as root, permission bits stop nothing:
/// the run drops to `nobody` through `setpriv`; otherwise it runs as the caller). The binary
/// is copied beside the data first, so the unprivileged user can reach it.
fn run_unprivileged(work: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let exe = work.join("warpgrid-bin");
    if !exe.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_warpgrid"), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    let mut child = cmd
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn is_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Hands `path` (recursively) to the unprivileged user of [`run_unprivileged`].
fn give_away(path: &std::path::Path) {
    if is_root() {
        let ok = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown failed");
    }
}

fn puts(range: std::ops::Range<u64>) -> String {
    range.map(|k| format!("put {k} {k:016x}\n")).collect()
}

#[test]
fn a_table_the_user_may_not_write_is_an_error_naming_the_file_and_nothing_changes() {
    let work = tempfile::tempdir().unwrap();
    chmod(work.path(), 0o755);
    let d = work.path().join("data");
    let ds = d.to_str().unwrap();
    let o = common::warpgrid_with_stdin(
        &["kv", "apply", "--dir", ds, "--table", "t", "--create", "-"],
        &puts(0..50),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = d.join("t");
    let wal = std::fs::read(t.join(WAL_FILE)).unwrap();
    // Read-only files in a read-only directory, owned by someone else when we are root.
    chmod(&t.join(WAL_FILE), 0o444);
    chmod(&t.join("warpgrid-table.json"), 0o444);
    chmod(&t, 0o555);
    let o = run_unprivileged(
        work.path(),
        &["kv", "apply", "--dir", ds, "--table", "t", "-"],
        &puts(50..60),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("table.wal") && err.to_lowercase().contains("permission denied"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(t.join(WAL_FILE)).unwrap(),
        wal,
        "nothing written"
    );
    chmod(&t, 0o755);
}

#[test]
fn a_failed_automatic_checkpoint_is_a_warning_and_the_table_keeps_working() {
    let work = tempfile::tempdir().unwrap();
    chmod(work.path(), 0o755);
    let d = work.path().join("data");
    let ds = d.to_str().unwrap();
    std::fs::create_dir(&d).unwrap();
    give_away(&d);
    let o = run_unprivileged(
        work.path(),
        &["kv", "apply", "--dir", ds, "--table", "t", "--create", "-"],
        &puts(0..10),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The log stays writable, but no snapshot can be created in the directory.
    let t = d.join("t");
    chmod(&t, 0o555);
    let mut input = puts(10..400);
    input.extend((0..400).map(|k| format!("get {k}\n")));
    let o = run_unprivileged(
        work.path(),
        &[
            "kv",
            "apply",
            "--dir",
            ds,
            "--table",
            "t",
            "--checkpoint-bytes",
            "2000",
            "--batch",
            "50",
            "-",
        ],
        &input,
    );
    chmod(&t, 0o755);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("automatic checkpoint failed")
            && err.contains(".snap")
            && err.to_lowercase().contains("permission denied"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let values: Vec<&str> = stdout.lines().skip(390).collect();
    assert_eq!(values.len(), 400);
    for (k, line) in values.iter().enumerate() {
        assert_eq!(*line, format!("value {k:016x}"), "reads after the failure");
    }
    let t = DurableTable::open(
        &t,
        &Device::cpu().unwrap(),
        TableConfig::new("t"),
        &DurableOptions::default(),
    )
    .unwrap();
    assert_eq!(t.stats().items, 400, "every batch survived");
}
