//! The recall queue (SPEC §2.3 "Batched recall", §4): concurrent requests coalesce into
//! batches whose per-request results equal a recall alone, the adaptive limit moves the way
//! the rules say, the budget's partial results are counted, bad queries and bad settings are
//! refused without touching other requests, and shutdown completes every request.

use std::sync::Arc;
use std::time::Duration;

use warpgrid_engine::Device;
use warpgrid_engine::graph::{
    Graph, GraphConfig, LatencyPredictor, ManualClock, RecallParams, RecallResult, generate,
};
use warpgrid_host::metrics::Registry;
use warpgrid_host::recall::{RecallQueue, RecallQueueConfig, RecallQueueError};

const DIM: usize = 16;

fn graph() -> Arc<Graph> {
    let b = generate::barabasi_albert(2000, 4, DIM, 3, GraphConfig::default()).unwrap();
    Arc::new(b.build().unwrap())
}

fn unbudgeted() -> RecallParams {
    RecallParams {
        budget: Duration::ZERO,
        ..RecallParams::default()
    }
}

fn alone(graph: &Graph, device: &Device, query: &[f32], params: &RecallParams) -> RecallResult {
    let clock = ManualClock::new();
    graph
        .recall(device, query, params, &clock, &mut LatencyPredictor::new())
        .unwrap()
}

/// A queue over `graph` on a CPU device, with a fresh registry.
fn start(graph: &Arc<Graph>, config: RecallQueueConfig) -> RecallQueue {
    RecallQueue::start(
        Arc::clone(graph),
        Device::cpu().unwrap(),
        config,
        &Registry::new(),
    )
    .unwrap()
}

/// Queues every row of `queries` at once from this thread, then waits for all of them.
fn recall_all(queue: &RecallQueue, queries: &[f32]) -> Vec<RecallResult> {
    let pending: Vec<_> = queries
        .chunks(DIM)
        .map(|q| queue.submit(q).unwrap())
        .collect();
    pending.into_iter().map(|p| p.wait().unwrap()).collect()
}

#[test]
fn concurrent_recalls_coalesce_and_each_equals_its_recall_alone() {
    let graph = graph();
    let device = Device::cpu().unwrap();
    let registry = Registry::new();
    let config = RecallQueueConfig {
        params: unbudgeted(),
        name: "ba2000".into(),
        ..RecallQueueConfig::default()
    };
    let queue = Arc::new(
        RecallQueue::start(Arc::clone(&graph), device.clone(), config, &registry).unwrap(),
    );
    let threads = 8;
    let per_thread = 120;
    let queries = generate::queries_near(&graph, threads * per_thread, 0.05, 9).unwrap();
    let results: Vec<Vec<RecallResult>> = std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(per_thread * DIM)
            .map(|mine| {
                let queue = Arc::clone(&queue);
                s.spawn(move || {
                    // Pipelined: submit all, then wait, so that requests pile up into batches.
                    let pending: Vec<_> =
                        mine.chunks(DIM).map(|q| queue.submit(q).unwrap()).collect();
                    pending
                        .into_iter()
                        .map(|p| p.wait().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let params = unbudgeted();
    for (t, got) in results.iter().enumerate() {
        for (i, r) in got.iter().enumerate() {
            let row = (t * per_thread + i) * DIM;
            let want = alone(&graph, &device, &queries[row..row + DIM], &params);
            assert_eq!(r, &want, "thread {t} query {i}");
        }
    }
    let n = (threads * per_thread) as u64;
    let stats = queue.stats();
    assert_eq!(stats.recalls, n);
    assert_eq!(stats.partials, 0);
    assert_eq!(stats.latency_ns.count, n);
    assert_eq!(stats.batch_recalls.count, stats.batches);
    assert_eq!(stats.batch_recalls.sum, n);
    assert!(
        stats.batches < n,
        "pipelined requests should share batches: {} batches for {n} recalls",
        stats.batches
    );
    assert!(stats.latency_ns.p50 <= stats.latency_ns.p95);
    assert!(stats.latency_ns.p95 <= stats.latency_ns.p99);
    let text = registry.prometheus_text();
    for name in [
        "warpgrid_recall_total{graph=\"ba2000\"} 960",
        "warpgrid_recall_partial_total{graph=\"ba2000\"} 0",
        "warpgrid_recall_latency_ns_count{graph=\"ba2000\"} 960",
        "warpgrid_recall_batch_limit{graph=\"ba2000\"}",
        "warpgrid_recall_prediction_within_20pct_ratio",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}

#[test]
fn an_unreachable_target_shrinks_the_batch_limit_to_the_minimum() {
    let graph = graph();
    let config = RecallQueueConfig {
        params: unbudgeted(),
        target_p95: Duration::from_nanos(1),
        initial_batch: 8,
        ..RecallQueueConfig::default()
    };
    let queue = start(&graph, config);
    let queries = generate::queries_near(&graph, 2000, 0.05, 1).unwrap();
    recall_all(&queue, &queries);
    // Three windows of 500 over a target no recall can meet: 8 -> 4 -> 2 -> 1.
    assert_eq!(queue.stats().batch_limit, 1);
}

#[test]
fn a_target_far_above_the_latency_grows_the_limit_while_batches_are_full() {
    let graph = graph();
    let config = RecallQueueConfig {
        params: unbudgeted(),
        target_p95: Duration::from_secs(60),
        initial_batch: 8,
        ..RecallQueueConfig::default()
    };
    let queue = start(&graph, config);
    let queries = generate::queries_near(&graph, 3000, 0.05, 2).unwrap();
    // One thread queues everything at once: the queue always holds more than a batch.
    recall_all(&queue, &queries);
    let limit = queue.stats().batch_limit;
    assert!(limit > 8, "the limit should have grown from 8, is {limit}");
}

#[test]
fn the_budget_cuts_every_recall_of_a_batch_and_the_partials_are_counted() {
    let graph = graph();
    let registry = Registry::new();
    let config = RecallQueueConfig {
        params: RecallParams {
            budget: Duration::from_millis(1),
            ..RecallParams::default()
        },
        ..RecallQueueConfig::default()
    };
    // Every reading of this clock is a second later than the last: the budget is spent
    // before the first hop, so each recall keeps only its similarity seeds.
    let clock = Arc::new(ManualClock::with_tick(Duration::from_secs(1)));
    let queue = RecallQueue::start_with_clock(
        Arc::clone(&graph),
        Device::cpu().unwrap(),
        config,
        &registry,
        clock,
    )
    .unwrap();
    let queries = generate::queries_near(&graph, 50, 0.05, 4).unwrap();
    for r in recall_all(&queue, &queries) {
        assert!(r.partial);
        assert_eq!(r.hops_done, 0);
        assert!(r.hits.iter().all(|h| h.first_hop == 0 && h.sim.is_some()));
    }
    assert_eq!(queue.stats().partials, 50);
}

#[test]
fn bad_queries_are_refused_at_submission_and_do_not_disturb_others() {
    let graph = graph();
    let device = Device::cpu().unwrap();
    let queue = RecallQueue::start(
        Arc::clone(&graph),
        device.clone(),
        RecallQueueConfig {
            params: unbudgeted(),
            ..RecallQueueConfig::default()
        },
        &Registry::new(),
    )
    .unwrap();
    let good = generate::queries_near(&graph, 1, 0.05, 5).unwrap();
    let pending = queue.submit(&good).unwrap();
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    for (query, want) in [
        (vec![1.0f32; DIM - 1], "dimension 15"),
        (nan, "component 3 is NaN"),
        (vec![0.0f32; DIM], "all-zero"),
    ] {
        match queue.submit(&query) {
            Err(RecallQueueError::InvalidQuery(m)) => assert!(m.contains(want), "{m}"),
            Err(e) => panic!("{want}: wrong error {e}"),
            Ok(_) => panic!("{want}: accepted"),
        }
    }
    assert_eq!(
        pending.wait().unwrap(),
        alone(&graph, &device, &good, &unbudgeted())
    );
    assert_eq!(queue.stats().recalls, 1);
}

#[test]
fn shutdown_runs_what_is_queued_then_refuses_more() {
    let graph = graph();
    let queue = start(
        &graph,
        RecallQueueConfig {
            params: unbudgeted(),
            ..RecallQueueConfig::default()
        },
    );
    let queries = generate::queries_near(&graph, 300, 0.05, 6).unwrap();
    let pending: Vec<_> = queries
        .chunks(DIM)
        .map(|q| queue.submit(q).unwrap())
        .collect();
    queue.shutdown();
    for p in pending {
        assert!(p.wait().is_ok());
    }
    assert_eq!(queue.recall(&queries[..DIM]), Err(RecallQueueError::Closed));
    assert_eq!(
        queue.try_submit(&queries[..DIM]).err(),
        Some(RecallQueueError::Closed)
    );
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let graph = graph();
    let device = Device::cpu().unwrap();
    let cases: Vec<(RecallQueueConfig, &str)> = vec![
        (
            RecallQueueConfig {
                min_batch: 0,
                ..RecallQueueConfig::default()
            },
            "min_batch",
        ),
        (
            RecallQueueConfig {
                min_batch: 9,
                max_batch: 8,
                ..RecallQueueConfig::default()
            },
            "min_batch",
        ),
        (
            RecallQueueConfig {
                eval_every: 501,
                ..RecallQueueConfig::default()
            },
            "eval_every",
        ),
        (
            RecallQueueConfig {
                capacity: 0,
                ..RecallQueueConfig::default()
            },
            "capacity",
        ),
        (
            RecallQueueConfig {
                target_p95: Duration::ZERO,
                ..RecallQueueConfig::default()
            },
            "target_p95",
        ),
        (
            RecallQueueConfig {
                params: RecallParams {
                    k: 0,
                    ..RecallParams::default()
                },
                ..RecallQueueConfig::default()
            },
            "--k",
        ),
    ];
    for (config, want) in cases {
        match RecallQueue::start(Arc::clone(&graph), device.clone(), config, &Registry::new()) {
            Err(RecallQueueError::Config(m)) => assert!(m.contains(want), "{want}: {m}"),
            Err(e) => panic!("{want}: wrong error {e}"),
            Ok(_) => panic!("{want}: accepted"),
        }
    }
    let plain = Arc::new(
        generate::uniform(10, 20, 0, 1, GraphConfig::default())
            .unwrap()
            .build()
            .unwrap(),
    );
    match RecallQueue::start(
        plain,
        device,
        RecallQueueConfig::default(),
        &Registry::new(),
    ) {
        Err(RecallQueueError::Config(m)) => assert!(m.contains("no embeddings"), "{m}"),
        _ => panic!("a graph without embeddings was accepted"),
    }
}
