//! Throughput of the parallel torus kernel against the heap reference on the bench workload
//! of SPEC §7 (3 tori of 32³, neighbour edges, a sustained population). Not a bench (that is
//! `benches/braid.rs`): an ignored test that prints events/s and checks the digests agree, so
//! a quick measurement needs no extra tooling:
//! `cargo test -p warpgrid-engine --release --test braid_throughput -- --ignored --nocapture`.

use std::time::Instant;

use warpgrid_engine::braid::reference::ReferenceBraid;
use warpgrid_engine::braid::{Braid, BraidConfig, InjectBuilder, TorusConfig};

/// CPU seconds used by this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the command name.
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn config(instants: u32) -> BraidConfig {
    let torus = TorusConfig::new([32, 32, 32]).with_inject(InjectBuilder::Random {
        count: 4096,
        seed: 7,
        at: 0,
    });
    BraidConfig::new(torus).with_instants(instants)
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn braid_events_per_second_against_the_heap_reference() {
    let warm = std::env::var("BRAID_WARM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30u32);
    let measure = std::env::var("BRAID_INSTANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30u32);
    let cfg = config(warm + measure);

    let mut fast = Braid::new(&cfg).unwrap();
    fast.run_until(warm).unwrap();
    let e0: u64 = fast.tori().iter().map(|t| t.events_processed()).sum();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    fast.run_until(warm + measure).unwrap();
    let fast_s = start.elapsed().as_secs_f64();
    let fast_cpu = cpu_seconds() - cpu0;
    let fast_events: u64 = fast
        .tori()
        .iter()
        .map(|t| t.events_processed())
        .sum::<u64>()
        - e0;

    if std::env::var_os("BRAID_NO_REFERENCE").is_some() {
        let st = fast.stats();
        println!(
            "threads {} | parallel kernel {:.1} M events/s, {:.2} CPUs busy, {:.1} ns CPU per event | instant p50 {} us",
            rayon::current_num_threads(),
            fast_events as f64 / fast_s / 1e6,
            fast_cpu / fast_s,
            fast_cpu * 1e9 / fast_events as f64,
            st.latency.instant_p50_ns / 1000
        );
        return;
    }
    let mut slow = ReferenceBraid::new(&cfg).unwrap();
    slow.run_until(warm).unwrap();
    let r0: u64 = slow.tori().iter().map(|t| t.events_processed()).sum();
    let start = Instant::now();
    slow.run_until(warm + measure).unwrap();
    let slow_s = start.elapsed().as_secs_f64();
    let slow_events: u64 = slow
        .tori()
        .iter()
        .map(|t| t.events_processed())
        .sum::<u64>()
        - r0;

    assert_eq!(fast_events, slow_events);
    assert_eq!(fast.digests(), slow.stats().digests);
    let f = fast_events as f64 / fast_s;
    let s = slow_events as f64 / slow_s;
    let st = fast.stats();
    println!(
        "threads {} | events {} in {} instants | parallel kernel {:.1} M events/s ({:.3} s) | heap reference {:.1} M events/s ({:.3} s) | ratio {:.2}x | instant p50 {} us p99 {} us | dropped {}",
        rayon::current_num_threads(),
        fast_events,
        measure,
        f / 1e6,
        fast_s,
        s / 1e6,
        slow_s,
        f / s,
        st.latency.instant_p50_ns / 1000,
        st.latency.instant_p99_ns / 1000,
        st.events_dropped(),
    );
}
