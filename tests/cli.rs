//! The `warpgrid` binary end to end: `kv apply` prints exactly what a sequential dictionary
//! gives for any mix of operations and any batch size; bad input exits non-zero naming the
//! file, line and field and applies nothing of its batch; the other commands report what
//! they promise (SPEC §5, §6).

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::model::{Model, Op};
use common::{Rng, hex, result_line, warpgrid_with_stdin};

fn warpgrid() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warpgrid"));
    c.env_remove("WARPGRID_BACKEND");
    c
}

fn run(args: &[&str]) -> Output {
    warpgrid().args(args).output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8 output")
}

/// A random ops file over `keys` keys and the output a sequential dictionary gives for it.
fn generate(seed: u64, ops: usize, keys: u64, value_bytes: usize) -> (String, String) {
    let mut rng = Rng::new(seed);
    let mut model = Model::new(24, value_bytes, 0.8, 16);
    let mut text = String::from("# generated ops file\n");
    let mut want = String::new();
    let key = |rng: &mut Rng| rng.below(keys) * 7_919 + 3;
    for n in 0..ops {
        if n % 1000 == 999 {
            text.push_str("\n# a comment and a blank line count as lines\n");
        }
        let roll = rng.below(100);
        let (op, line) = if roll < 35 {
            let (k, v) = (key(&mut rng), rng.bytes(value_bytes));
            let line = if rng.chance(1, 2) {
                format!("put {k} {}", hex(&v))
            } else {
                format!("put\t{k}\t{}", hex(&v).to_uppercase())
            };
            (Op::Put(k, v), line)
        } else if roll < 65 {
            let k = key(&mut rng);
            (Op::Get(k), format!("get {k}"))
        } else if roll < 78 {
            let k = key(&mut rng);
            (Op::Delete(k), format!("del {k}"))
        } else if roll < 88 {
            let (a, b) = (key(&mut rng), key(&mut rng));
            if a == b {
                continue;
            }
            let s = format!("{:.3}", (rng.below(1000) + 1) as f32 / 1000.0);
            (
                Op::Link(a, b, s.parse().unwrap()),
                format!("link {a} {b} {s}"),
            )
        } else if roll < 92 {
            let (a, b) = (key(&mut rng), key(&mut rng));
            if a == b {
                continue;
            }
            (Op::Unlink(a, b), format!("unlink {a} {b}"))
        } else {
            let k = key(&mut rng);
            match rng.below(3) {
                0 => (Op::Related(k, 0.1, 10), format!("related {k}")),
                1 => (Op::Related(k, 0.25, 10), format!("related {k} 0.25")),
                _ => (Op::Related(k, 0.0, 3), format!("related {k} 0 3")),
            }
        };
        text.push_str(&line);
        text.push('\n');
        want.push_str(&result_line(&model.apply(&op)));
        want.push('\n');
    }
    (text, want)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn kv_apply_prints_what_a_sequential_dictionary_gives_for_any_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let (text, want) = generate(11, 20_000, 400, 8);
    let path = write(dir.path(), "ops.txt", &text);
    for batch in ["4096", "1", "7", "100000"] {
        let o = run(&["kv", "apply", "--batch", batch, &path]);
        assert!(o.status.success(), "batch {batch}: {}", stderr(&o));
        assert!(
            stdout(&o) == want,
            "batch {batch}: output differs from the sequential model"
        );
    }
}

#[test]
fn kv_apply_handles_a_one_million_operation_file() {
    let dir = tempfile::tempdir().unwrap();
    let (text, want) = generate(12, 1_000_000, 200_000, 8);
    let path = write(dir.path(), "big.txt", &text);
    let o = run(&["kv", "apply", &path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = stdout(&o);
    assert_eq!(got.lines().count(), 1_000_000);
    assert!(got == want, "output differs from the sequential model");
}

#[test]
fn kv_apply_reads_stdin_and_other_value_sizes() {
    let (text, want) = generate(13, 3_000, 100, 12);
    let o = warpgrid_with_stdin(
        &["kv", "apply", "--value-bytes", "12", "--shards", "3", "-"],
        &text,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o) == want);
}

/// Runs `kv apply` on `text` and checks the error names `line` and `field`, and that
/// nothing of the failing batch was printed (it was never applied).
fn assert_rejected(text: &str, line: usize, field: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.txt", text);
    let o = run(&["kv", "apply", &path]);
    assert!(!o.status.success(), "accepted bad input {text:?}");
    let err = stderr(&o);
    let want = format!("{path}:{line}: field {field}:");
    assert!(err.contains(&want), "error {err:?} should contain {want:?}");
    assert_eq!(
        stdout(&o),
        "",
        "a batch with a bad line must not be applied"
    );
}

#[test]
fn bad_lines_are_rejected_with_file_line_and_field() {
    let ok = "put 1 0011223344556677\n";
    assert_rejected(
        &format!("{ok}# c\n\nput 18446744073709551615 0011223344556677\n"),
        4,
        "key",
    );
    assert_rejected(&format!("{ok}get 18446744073709551614\n"), 2, "key");
    assert_rejected(&format!("{ok}get -1\n"), 2, "key");
    assert_rejected(&format!("{ok}get 99999999999999999999\n"), 2, "key");
    assert_rejected(&format!("{ok}put 2 00112233\n"), 2, "value");
    assert_rejected(&format!("{ok}put 2 001122334455667g\n"), 2, "value");
    assert_rejected(&format!("{ok}put 2 00112233445566778899\n"), 2, "value");
    assert_rejected(&format!("{ok}frob 2\n"), 2, "op");
    assert_rejected(&format!("{ok}get 1 2\n"), 2, "op");
    assert_rejected(&format!("{ok}put 1\n"), 2, "op");
    assert_rejected(&format!("{ok}link 1 2 0\n"), 2, "strength");
    assert_rejected(&format!("{ok}link 1 2 1.01\n"), 2, "strength");
    assert_rejected(&format!("{ok}link 1 2 nan\n"), 2, "strength");
    assert_rejected(&format!("{ok}link 1 2 -inf\n"), 2, "strength");
    assert_rejected(&format!("{ok}link 1 1 0.5\n"), 2, "b");
    assert_rejected(&format!("{ok}link 1 x 0.5\n"), 2, "b");
    assert_rejected(&format!("{ok}unlink 18446744073709551614 2\n"), 2, "a");
    assert_rejected(&format!("{ok}related 1 1.5\n"), 2, "min");
    assert_rejected(&format!("{ok}related 1 0.5 many\n"), 2, "max");
}

#[test]
fn batches_before_a_bad_line_stand_and_its_own_batch_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "ops.txt",
        "put 1 0011223344556677\nget 1\nput 2 zz\nget 1\n",
    );
    let o = run(&["kv", "apply", "--batch", "1", &path]);
    assert!(!o.status.success());
    assert_eq!(stdout(&o), "ok\nvalue 0011223344556677\n");
    assert!(stderr(&o).contains(":3: field value:"));
    let o = run(&["kv", "apply", "--batch", "2", &path]);
    assert_eq!(stdout(&o), "ok\nvalue 0011223344556677\n");
    let o = run(&["kv", "apply", "--batch", "3", &path]);
    assert_eq!(stdout(&o), "");
}

#[test]
fn durable_tables_need_create_and_keep_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(&["kv", "apply", "--dir", d, "--table", "t", "-"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no table here; add --create"),
        "{}",
        stderr(&o)
    );
    let ops = write(
        dir.path(),
        "ops.txt",
        "put 7 0011223344556677\nlink 7 8 0.5\n",
    );
    let o = run(&[
        "kv", "apply", "--dir", d, "--table", "t", "--create", "--shards", "3", &ops,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let get = write(
        dir.path(),
        "get.txt",
        "get 7\nrelated 7 0 5\nput 8 ffeeddccbbaa9988\nrelated 7 0 5\n",
    );
    let o = run(&["kv", "apply", "--dir", d, "--table", "t", &get]);
    assert_eq!(
        stdout(&o),
        "value 0011223344556677\nrelated 0011223344556677\nok\nrelated 0011223344556677 8:0.500000:ffeeddccbbaa9988\n",
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "kv",
        "stats",
        "--dir",
        d,
        "--table",
        "t",
        "--value-bytes",
        "16",
    ]);
    assert!(
        stderr(&o).contains("created with value_bytes = 8, not 16"),
        "{}",
        stderr(&o)
    );
    let o = run(&["kv", "checkpoint", "--dir", d, "--table", "t"]);
    assert!(
        stdout(&o).contains("checkpointed") && stdout(&o).contains("2 items"),
        "{}",
        stdout(&o)
    );
    let o = run(&["--json", "kv", "stats", "--dir", d, "--table", "t"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["items"].as_u64(), v["shards"].as_array().unwrap().len()),
        (Some(2), 3)
    );
    assert_eq!(v["wal_bytes"], serde_json::json!(0));
    assert_eq!(v["fsync"], "always");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let checkpointed = v["last_checkpoint_unix"]
        .as_f64()
        .expect("a checkpoint time");
    assert!(
        (now - checkpointed).abs() < 600.0,
        "the checkpoint just written: {checkpointed} vs now {now}"
    );
    assert!(v["recovery"]["snapshot_entries"].as_u64().unwrap() == 2);
    let o = run(&["kv", "apply", "--fsync", "always", "-"]);
    assert!(
        stderr(&o).contains("--fsync always: an fsync policy applies to durable tables"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "kv",
        "apply",
        "--dir",
        d,
        "--table",
        "t",
        "--fsync",
        "sometimes",
        "-",
    ]);
    assert!(stderr(&o).contains("invalid fsync"), "{}", stderr(&o));
    let o = run(&["kv", "stats"]);
    assert!(stderr(&o).contains("kv stats needs a table"));
}

#[test]
fn bad_table_and_backend_settings_are_errors_naming_the_setting() {
    for (args, want) in [
        (
            &["--shards", "0"][..],
            "invalid table setting shards: expected 1..=1024, got 0",
        ),
        (&["--shards", "1025"][..], "shards: expected 1..=1024"),
        (
            &["--value-bytes", "6"][..],
            "value_bytes: expected a multiple of 4 in 4..=256, got 6",
        ),
        (&["--value-bytes", "260"][..], "value_bytes"),
        (&["--max-load", "0.99"][..], "max_load: expected 0.5..=0.95"),
        (
            &["--capacity", "10000000000000000000"][..],
            "capacity: expected at most 1099511627776 keys",
        ),
        (
            &["--table", "Bad Name"][..],
            "name: expected 1 to 64 characters",
        ),
        (
            &["--backend", "tpu"][..],
            "expected one of auto, cpu, wgpu, cuda, got \"tpu\"",
        ),
    ] {
        let o = run(&[&["kv", "apply"][..], args, &["-"]].concat());
        assert!(!o.status.success(), "{args:?} accepted");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = warpgrid()
        .env("WARPGRID_BACKEND", "nope")
        .args(["info"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("WARPGRID_BACKEND"));
}

#[test]
fn an_unavailable_backend_is_an_error_with_its_reason_never_a_fallback() {
    for b in ["cuda", "wgpu"] {
        let o = run(&["--backend", b, "info"]);
        if o.status.success() {
            assert!(
                stdout(&o).contains(&format!("selected: {b}")),
                "{}",
                stdout(&o)
            );
        } else {
            assert!(
                stderr(&o).contains(&format!("backend {b} is unavailable: ")),
                "{}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn info_reports_every_backend_and_the_choice() {
    let o = run(&["info", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cuda", "wgpu", "cpu"]);
    for b in v["backends"].as_array().unwrap() {
        assert!(b["available"].as_bool().unwrap() || !b["reason"].as_str().unwrap().is_empty());
    }
    assert!(v["selected"]["backend"].is_string());
    let o = run(&["--threads", "3", "--backend", "cpu", "info"]);
    assert!(
        stdout(&o).contains("selected: cpu (requested cpu): host cpu, 3 worker threads"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn kv_stats_reports_the_spec_fields_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for k in 0..1000u64 {
        let _ = writeln!(text, "put {k} {:016x}", k);
    }
    for k in 0..100u64 {
        let _ = writeln!(text, "del {k}");
    }
    text.push_str("link 500 501 0.5\n");
    let path = write(dir.path(), "ops.txt", &text);
    // --json after the subcommand, and before it.
    for args in [
        &["kv", "stats", "--shards", "4", "--json", &path][..],
        &["--json", "kv", "stats", "--shards", "4", &path][..],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["items"], 900);
        assert_eq!(v["links"], 1);
        let shards = v["shards"].as_array().unwrap();
        assert_eq!(shards.len(), 4);
        let mut items = [0u64; 4];
        for k in 100..1000u64 {
            items[common::model::shard(k, 4)] += 1;
        }
        for (s, sh) in shards.iter().enumerate() {
            assert_eq!(sh["items"].as_u64().unwrap(), items[s], "shard {s}");
            assert!(sh["slots"].as_u64().unwrap().is_power_of_two());
        }
        let ops: u64 = shards.iter().map(|s| s["ops"].as_u64().unwrap()).sum();
        assert_eq!(ops, 1101);
        let slots: u64 = shards.iter().map(|s| s["slots"].as_u64().unwrap()).sum();
        assert!((v["load_factor"].as_f64().unwrap() - 900.0 / slots as f64).abs() < 1e-12);
        assert!(v["cv"].as_f64().unwrap() > 0.0 && v["cv"].as_f64().unwrap() < 0.2);
        assert!(v["resizes"].as_u64().unwrap() >= 4 * 5);
    }
}

#[test]
fn bench_kv_prints_the_side_by_side_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let o = run(&[
        "bench",
        "kv",
        "--quick",
        "--keys",
        "20000",
        "--repeats",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for system in [
        "warpgrid",
        "hashbrown",
        "dashmap",
        "warpgrid / hashbrown",
        "warpgrid / dashmap",
    ] {
        assert!(text.contains(system), "{text}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let suite = &v["suites"][0];
    assert_eq!(suite["keys"], 20000);
    assert_eq!(suite["systems"].as_array().unwrap().len(), 3);
    assert!(suite["ratios"][1]["total"].as_f64().unwrap() > 0.0);
}

/// Regression (review of issue 2): a batch read from a FIFO ends when the writer pauses, as
/// it does on stdin; before, the results waited for the writer to close.
#[test]
fn a_fifo_input_ends_batches_when_the_writer_pauses() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ops.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = warpgrid()
        .args(["kv", "apply", fifo.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer
        .write_all(b"put 1 0011223344556677\nget 1\n")
        .unwrap();
    writer.flush().unwrap();
    // Read the two result lines while the writer stays open; a hang here is the bug.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for _ in 0..2 {
            let _ = tx.send(lines.next().map(Result::unwrap));
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no result while the writer paused");
    let second = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("no result while the writer paused");
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (Some("ok"), Some("value 0011223344556677"))
    );
    drop(writer);
    assert!(child.wait().unwrap().success());
}
