//! Timing smoke test of SPEC §7's graph bar (single recall P95 < 1 ms on a 10k-node /
//! 100k-edge Barabási–Albert graph on this machine). Ignored by default: timings belong to
//! release builds on a quiet machine (`cargo test --release -- --ignored --nocapture`). The
//! criterion bench and `warpgrid bench graph` are the measurements of record.

use std::time::{Duration, Instant};

use warpgrid_engine::graph::{GraphConfig, LatencyPredictor, RecallParams, SystemClock, generate};

use super::common::device;

#[test]
#[ignore = "timing; run in release with --ignored"]
fn single_recall_latency_on_10k_ba() {
    let threads = std::env::var("WG_PERF_THREADS").map_or_else(
        |_| std::thread::available_parallelism().map_or(2, usize::from),
        |t| t.parse().expect("a thread count"),
    );
    let dev = device(threads);
    let dims: Vec<usize> = std::env::var("WG_PERF_DIMS").map_or(vec![64, 384], |v| {
        v.split(',')
            .map(|d| d.parse().expect("a dimension"))
            .collect()
    });
    for dim in dims {
        let g = generate::barabasi_albert(10_000, 5, dim, 1, GraphConfig::default())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(g.edge_count(), 99_950);
        let queries = generate::queries_near(&g, 1_000, 0.05, 2).unwrap();
        let clock = SystemClock::new();
        let mut pred = LatencyPredictor::new();
        let p = RecallParams {
            budget: Duration::ZERO,
            ..RecallParams::default()
        };
        let mut times = Vec::with_capacity(1000);
        let mut hits = 0;
        let mut hops = 0;
        for (i, q) in queries.chunks_exact(dim).enumerate() {
            let t = Instant::now();
            let r = g.recall(&dev, q, &p, &clock, &mut pred).unwrap();
            if i >= 50 {
                times.push(t.elapsed());
            }
            hits += r.hits.len();
            hops += r.hops_done;
        }
        times.sort();
        let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
        println!(
            "d={dim} threads={threads}: P50 {:?} P95 {:?} P99 {:?}; mean hits {:.1}, mean hops {:.2}",
            pct(0.50),
            pct(0.95),
            pct(0.99),
            hits as f64 / 1000.0,
            hops as f64 / 1000.0
        );
        if std::env::var_os("WG_PERF_NO_BATCH").is_some() {
            continue;
        }
        // Batched throughput.
        let t = Instant::now();
        let batch = g
            .recall_batch(&dev, &queries, &p, &clock, &mut pred)
            .unwrap();
        let el = t.elapsed();
        assert_eq!(batch.len(), 1000);
        println!(
            "d={dim}: batch of 1000 in {el:?} = {:.0} recalls/s",
            1000.0 / el.as_secs_f64()
        );
        let s = pred.stats();
        println!(
            "predictor: {} hops, {} scored, {} within 20%, |error| buckets {:?}",
            s.hops_observed, s.predictions, s.within_20_percent, s.error_buckets
        );
    }
}
