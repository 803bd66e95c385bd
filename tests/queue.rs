//! The submission queue (SPEC §4): many clients pipelining mixed operations get exactly the
//! results their own submission order allows, every submission completes exactly once,
//! nothing hangs; the host cache never returns a stale value; backpressure and shutdown
//! apply nothing half-way.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Rng;
use warpgrid::host::cache::CacheConfig;
use warpgrid::host::metrics::Registry;
use warpgrid::host::queue::{Backpressure, Queue, QueueConfig, QueueError, Ticket};
use warpgrid::{Batch, Device, Outcome, Table, TableConfig};

/// Aborts the test binary if a test hangs (a hang is the failure we guard against).
fn watchdog(secs: u64) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    std::thread::spawn(move || {
        for _ in 0..secs * 10 {
            std::thread::sleep(Duration::from_millis(100));
            if flag.load(Ordering::Relaxed) {
                return;
            }
        }
        eprintln!("queue test hung for {secs} s");
        std::process::abort();
    });
    done
}

fn queue(config: QueueConfig) -> (Queue, Registry) {
    let device = Device::cpu().unwrap();
    let table = Table::create(&device, TableConfig::new("q").with_shards(8)).unwrap();
    let registry = Registry::new();
    (Queue::start(table, config, &registry), registry)
}

/// Value written by `client` as its `seq`-th write.
fn value(client: u64, seq: u64) -> [u8; 8] {
    (client << 40 | seq).to_le_bytes()
}

fn decode(v: &[u8]) -> (u64, u64) {
    let x = u64::from_le_bytes(v.try_into().unwrap());
    (x >> 40, x & ((1 << 40) - 1))
}

const SHARED: u64 = 1 << 50;
const SHARED_KEYS: u64 = 64;

/// What a client expects of one ticket.
enum Expect {
    /// Own keys: exactly this (None = missing / absent, Some = value).
    Own(&'static str, Option<[u8; 8]>),
    /// Shared keys: a get may see another client's write, but an own value only if it is
    /// at least `floor`, this client's last put there (`u64::MAX` when its last op there was
    /// a delete or it never wrote the key: then no own value may appear).
    SharedGet {
        key: u64,
        floor: u64,
    },
    Any,
}

/// One client: pipelines random operations over its own keys and the shared ones, keeping
/// up to `window` in flight, and checks every result. Returns its last write per shared key
/// (`None` = its last op there was a delete).
fn client_run(
    queue: &Queue,
    id: u64,
    ops: usize,
    window: u64,
    seed: u64,
) -> HashMap<u64, Option<u64>> {
    let mut c = queue.client();
    let mut rng = Rng::new(seed);
    let own = |k: u64| (id + 1) << 32 | k;
    let mut model: HashMap<u64, [u8; 8]> = HashMap::new();
    let mut last_write: HashMap<u64, Option<u64>> = HashMap::new();
    let mut seq = 0u64;
    let mut inflight: std::collections::VecDeque<(Ticket, Expect)> = Default::default();
    let check = |c: &mut warpgrid::host::queue::Client, t: Ticket, e: Expect| {
        let o = c
            .wait(t)
            .unwrap_or_else(|err| panic!("client {id}: ticket {t:?} failed: {err}"));
        match e {
            Expect::Own(op, want) => {
                let got = match o {
                    Outcome::Value(v) => Some(<[u8; 8]>::try_from(v).unwrap()),
                    Outcome::Ok | Outcome::Missing | Outcome::Absent => None,
                    Outcome::Deleted => Some([0xDE; 8]),
                    other => panic!("client {id}: unexpected {other:?}"),
                };
                assert_eq!(got, want, "client {id}: {op} on own key, ticket {t:?}");
            }
            Expect::SharedGet { key, floor } => {
                if let Outcome::Value(v) = o {
                    let (writer, s) = decode(v);
                    assert!(
                        writer < 1000,
                        "client {id}: shared key {key} holds a value nobody wrote"
                    );
                    if writer == id {
                        assert!(
                            s >= floor,
                            "client {id}: stale read of shared key {key}: own write {s}, floor {floor}"
                        );
                    }
                }
            }
            Expect::Any => {}
        }
    };
    for _ in 0..ops {
        let roll = rng.below(100);
        let shared = roll.is_multiple_of(4);
        let key = if shared {
            SHARED + rng.below(SHARED_KEYS)
        } else {
            own(rng.below(300))
        };
        let (t, e) = if roll < 40 {
            seq += 1;
            let v = value(id, seq);
            let t = c.put(key, &v).unwrap();
            if shared {
                last_write.insert(key, Some(seq));
                (t, Expect::Any)
            } else {
                model.insert(key, v);
                (t, Expect::Own("put", None))
            }
        } else if roll < 85 {
            let t = c.get(key).unwrap();
            if shared {
                let floor = match last_write.get(&key) {
                    Some(Some(s)) => *s,
                    _ => u64::MAX,
                };
                (t, Expect::SharedGet { key, floor })
            } else {
                (t, Expect::Own("get", model.get(&key).copied()))
            }
        } else {
            let t = c.delete(key).unwrap();
            if shared {
                last_write.insert(key, None);
                (t, Expect::Any)
            } else {
                let existed = model.remove(&key).is_some();
                (t, Expect::Own("delete", existed.then_some([0xDE; 8])))
            }
        };
        inflight.push_back((t, e));
        while inflight.len() as u64 >= window {
            let (t, e) = inflight.pop_front().unwrap();
            check(&mut c, t, e);
        }
    }
    while let Some((t, e)) = inflight.pop_front() {
        check(&mut c, t, e);
    }
    // Final read of every own key, through the queue.
    for k in 0..300 {
        let t = c.get(own(k)).unwrap();
        check(
            &mut c,
            t,
            Expect::Own("final get", model.get(&own(k)).copied()),
        );
    }
    last_write
}

fn stress(clients: u64, ops: usize, config: QueueConfig) {
    let done = watchdog(240);
    let (queue, registry) = queue(config);
    let lasts: Vec<HashMap<u64, Option<u64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|id| {
                let q = queue.clone();
                s.spawn(move || client_run(&q, id, ops, 1 + id % 256, 1000 + id))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Final state of the shared keys: the last write of whoever wrote last, so its value must
    // be some client's last write there (a client that wrote again replaced its older value),
    // or missing only if some client's last op there was a delete.
    let mut b = queue.batch();
    for k in 0..SHARED_KEYS {
        b.get(SHARED + k).unwrap();
    }
    let r = queue.apply(b).unwrap();
    for k in 0..SHARED_KEYS {
        let key = SHARED + k;
        match r.get(k as usize).unwrap() {
            Outcome::Value(v) => {
                let (writer, s) = decode(v);
                assert_eq!(
                    lasts[writer as usize].get(&key),
                    Some(&Some(s)),
                    "shared key {key}: final value is not its writer's last write"
                );
            }
            Outcome::Missing => {
                assert!(
                    lasts.iter().any(|l| l.get(&key) == Some(&None))
                        || lasts.iter().all(|l| !l.contains_key(&key)),
                    "shared key {key} missing but nobody's last op deleted it"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // The JSON snapshot has every metric the queue promises, labelled with its table.
    let snapshot = registry.snapshot_json();
    let metrics = snapshot["metrics"].as_array().unwrap();
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m["name"] == name && m["labels"]["table"] == "q")
    };
    for name in [
        "warpgrid_queue_ops_total",
        "warpgrid_queue_submissions_total",
        "warpgrid_queue_batches_total",
        "warpgrid_queue_batch_ops",
        "warpgrid_queue_op_latency_ns",
        "warpgrid_queue_depth",
        "warpgrid_queue_ops_per_second",
        "warpgrid_cache_hits_total",
        "warpgrid_cache_lookups_total",
        "warpgrid_cache_hit_rate",
        "warpgrid_table_shard_cv",
    ] {
        assert!(find(name).is_some(), "snapshot lacks {name}: {snapshot}");
    }
    let latency = &find("warpgrid_queue_op_latency_ns").unwrap()["value"];
    for q in ["p50", "p95", "p99", "p999"] {
        assert!(latency[q].as_u64().unwrap() > 0, "latency {q}: {latency}");
    }
    let counted = find("warpgrid_queue_ops_total").unwrap()["value"]
        .as_u64()
        .unwrap();
    // Every client ran its `ops` operations plus 300 final reads, all through the queue, and
    // the shared-key check above added one more batch.
    assert_eq!(
        counted,
        clients * (ops as u64 + 300) + SHARED_KEYS,
        "operations counted by the queue"
    );
    let table = queue
        .shutdown()
        .expect("the first shutdown returns the table");
    assert!(table.table().stats().items > 0);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn many_pipelining_clients_get_what_their_order_allows() {
    stress(24, 4_000, QueueConfig::default());
}

#[test]
fn the_host_cache_never_returns_a_stale_value() {
    let cache = CacheConfig {
        enabled: Some(true),
        capacity: 256,
        put_sample: 2,
        get_sample: 2,
    };
    stress(
        24,
        4_000,
        QueueConfig {
            cache,
            ..QueueConfig::default()
        },
    );
}

#[test]
fn tiny_chunks_tiny_queue_and_tiny_batches_still_agree() {
    let config = QueueConfig {
        capacity: 2,
        max_batch: 16,
        flush_at: 1,
        deadline: Duration::from_micros(50),
        ..QueueConfig::default()
    };
    stress(32, 1_500, config);
}

#[test]
fn busy_submissions_are_not_applied() {
    let done = watchdog(120);
    let (queue, _) = queue(QueueConfig {
        capacity: 1,
        ..QueueConfig::default()
    });
    // Keep the dispatcher busy with large batches while trying to submit small ones.
    let mut big_pending = Vec::new();
    let mut busy = 0;
    let mut accepted = Vec::new();
    for round in 0..50u64 {
        let mut big = queue.batch();
        for k in 0..200_000u64 {
            big.put(round << 32 | k, &[1; 8]).unwrap();
        }
        big_pending.push(queue.submit(big).unwrap());
        let mut small = queue.batch();
        small.put(1 << 60 | round, &[2; 8]).unwrap();
        match queue.try_submit(small) {
            Ok(p) => accepted.push((round, p)),
            Err(QueueError::Busy) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    for p in big_pending {
        p.wait().unwrap();
    }
    let accepted: Vec<u64> = accepted
        .into_iter()
        .map(|(r, p)| {
            p.wait().unwrap();
            r
        })
        .collect();
    assert!(
        busy > 0,
        "a one-slot queue behind 200k-op batches never answered Busy"
    );
    for round in 0..50u64 {
        let got = queue.get(1 << 60 | round).unwrap();
        assert_eq!(
            got.is_some(),
            accepted.contains(&round),
            "round {round}: a Busy submission was applied, or an accepted one lost"
        );
    }
    // A Busy client keeps its operation out of the queue too.
    let mut c = queue.client();
    c.set_backpressure(Backpressure::Fail);
    let t = c.put(7, &[7; 8]).unwrap();
    assert_eq!(c.wait(t).unwrap(), Outcome::Ok);
    done.store(true, Ordering::Relaxed);
}

#[test]
fn shutdown_runs_what_came_before_and_fails_the_rest_cleanly() {
    let done = watchdog(120);
    let (queue, _) = queue(QueueConfig::default());
    let stop = AtomicBool::new(false);
    let outcome = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8u64)
            .map(|id| {
                let (q, stop) = (queue.clone(), &stop);
                s.spawn(move || {
                    // Each worker writes its keys in order; after the first Closed, every
                    // later submission must be Closed too, and all earlier ones applied.
                    let mut applied = 0u64;
                    let mut closed = false;
                    for k in 0..u64::MAX {
                        if stop.load(Ordering::Relaxed) && closed {
                            break;
                        }
                        let mut b = q.batch();
                        b.put(id << 32 | k, &[1; 8]).unwrap();
                        match q.apply(b) {
                            Ok(_) => {
                                assert!(!closed, "worker {id}: applied after Closed");
                                applied = k + 1;
                            }
                            Err(QueueError::Closed) => closed = true,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (id, applied)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let table = queue
            .shutdown()
            .expect("table back")
            .into_memory()
            .expect("an in-memory table");
        stop.store(true, Ordering::Relaxed);
        let applied: Vec<(u64, u64)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        (table, applied)
    });
    let (mut table, applied) = outcome;
    assert!(matches!(queue.shutdown(), Err(QueueError::Closed)));
    assert!(matches!(queue.put(1, &[0; 8]), Err(QueueError::Closed)));
    let mut b = Batch::new(8);
    for &(id, n) in &applied {
        for k in 0..n + 2 {
            b.get(id << 32 | k).unwrap();
        }
    }
    let r = table.apply(&b).unwrap();
    let mut i = 0;
    for &(id, n) in &applied {
        for k in 0..n + 2 {
            let present = matches!(r.get(i), Some(Outcome::Value(_)));
            assert_eq!(
                present,
                k < n,
                "worker {id} key {k}: table disagrees with what completed"
            );
            i += 1;
        }
    }
    done.store(true, Ordering::Relaxed);
}

#[test]
fn dropping_every_handle_ends_the_dispatcher() {
    let done = watchdog(60);
    let (queue, registry) = queue(QueueConfig::default());
    let mut c = queue.client();
    let t = c.put(1, &[1; 8]).unwrap();
    assert_eq!(c.wait(t).unwrap(), Outcome::Ok);
    let ops = registry.counter_with(
        "warpgrid_queue_ops_total",
        "operations completed by the queue",
        &[("table", "q")],
    );
    assert_eq!(ops.get(), 1);
    drop(c);
    drop(queue);
    // Nothing to assert beyond not hanging: the dispatcher's recv disconnects.
    done.store(true, Ordering::Relaxed);
}
