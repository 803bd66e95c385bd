//! The durability promise (SPEC §1.3, issue 4): with `fsync = always`, whatever kills the
//! process, every acknowledged write is there after restart, and the state is exactly the
//! result of a prefix of the operations sent (never a half-applied batch). A child
//! `warpgrid kv apply --dir` is fed random batches on a pipe, prints each batch's results only
//! once it is durable, and is SIGKILLed at a random moment, round after round.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::model::{Expect, Model, Op};
use common::{Rng, hex, result_line, warpgrid_with_stdin};

const KEYS: u64 = 60;

fn line_of(op: &Op) -> String {
    match op {
        Op::Put(k, v) => format!("put {k} {}", hex(v)),
        Op::Delete(k) => format!("del {k}"),
        Op::Link(a, b, s) => format!("link {a} {b} {s}"),
        Op::Unlink(a, b) => format!("unlink {a} {b}"),
        other => unreachable!("{other:?}"),
    }
}

fn random_op(rng: &mut Rng, version: u64) -> Op {
    let k = rng.below(KEYS);
    let other = (k + 1 + rng.below(KEYS - 1)) % KEYS;
    match rng.below(10) {
        0..=5 => Op::Put(k, version.to_le_bytes().to_vec()),
        6 => Op::Delete(k),
        7 | 8 => Op::Link(k, other, ((rng.below(1000) + 1) as f32 / 1000.0).max(0.001)),
        _ => Op::Unlink(k, other),
    }
}

/// What a model shows for every key: its value and its related keys.
fn view(model: &Model) -> Vec<Expect> {
    let mut m = model.clone();
    (0..KEYS)
        .flat_map(|k| [Op::Get(k), Op::Related(k, 0.0, 1000)])
        .map(|op| m.apply(&op))
        .collect()
}

/// The same view read from the table on disk, through a fresh process.
fn observe(dir: &str) -> Vec<String> {
    let queries: String = (0..KEYS)
        .map(|k| format!("get {k}\nrelated {k} 0 1000\n"))
        .collect();
    let o = warpgrid_with_stdin(
        &["kv", "apply", "--dir", dir, "--table", "t", "-"],
        &queries,
    );
    assert!(
        o.status.success(),
        "reopening failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn sigkill_never_loses_an_acknowledged_write_nor_applies_half_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    let mut rng = Rng::new(2026);
    let mut model = Model::new(4, 8, 0.8, 16);
    let mut version = 0u64;
    let rounds = if cfg!(debug_assertions) { 6 } else { 12 };
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_warpgrid"))
            .args([
                "kv", "apply", "--dir", &d, "--table", "t", "--create", "--shards", "4", "--fsync",
                "always", "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The operations of this round, written in bursts of random size.
        let ops: Vec<Op> = (0..2_000)
            .map(|_| {
                version += 1;
                random_op(&mut rng, version)
            })
            .collect();
        let mut stdin = child.stdin.take().unwrap();
        let bursts: Vec<usize> = (0..200).map(|_| 1 + rng.index(40)).collect();
        let lines: Vec<String> = ops.iter().map(line_of).collect();
        let (sent_tx, sent_rx) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let mut at = 0;
            for b in bursts {
                let end = (at + b).min(lines.len());
                let text: String = lines[at..end].iter().map(|l| format!("{l}\n")).collect();
                if stdin
                    .write_all(text.as_bytes())
                    .and_then(|()| stdin.flush())
                    .is_err()
                {
                    break;
                }
                at = end;
                let _ = sent_tx.send(at);
                std::thread::sleep(Duration::from_micros(300));
                if at == lines.len() {
                    break;
                }
            }
        });
        // Count acknowledged results, then kill at a random point.
        let kill_after = rng.index(ops.len());
        let mut acked = 0;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while acked < kill_after {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            acked += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        drop(out);
        writer.join().unwrap();
        let sent = sent_rx.try_iter().last().unwrap_or(0).max(acked);
        // The table must equal the model after some prefix P of this round's operations,
        // with acked <= P <= sent.
        let seen = observe(&d);
        let mut candidate = model.clone();
        candidate.apply_all(&ops[..acked]);
        let mut p = acked;
        loop {
            let want: Vec<String> = view(&candidate).iter().map(result_line).collect();
            if want == seen {
                break;
            }
            assert!(
                p < sent,
                "round {round}: after SIGKILL (acked {acked}, sent {sent}) the table matches no prefix of the operations"
            );
            candidate.apply(&ops[p]);
            p += 1;
        }
        eprintln!(
            "round {round}: acked {acked}, sent {sent}, state = prefix {p}, {} keys",
            candidate.len()
        );
        model = candidate;
    }
}
