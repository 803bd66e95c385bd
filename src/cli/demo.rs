//! `warpgrid demo`: a table workload on generated data, with a short report — what a new
//! user runs first to see the engine work end to end.
//!
//! Phases: load N keys in one batch; a read-mostly mix (95 % get, 5 % put, uniform keys) in
//! batches of 64k; link each of 10k keys to three others and ask for their related keys;
//! delete 1 % of the keys. Every read is checked against the values the demo wrote.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use warpgrid::workload::{SplitMix64, uniform_keys, value_of};
use warpgrid::{Batch, Outcome, Table, TableConfig};

use super::{Global, kv::render_stats, progress};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keys to load.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Operations in the read-mostly phase.
    #[arg(long, default_value_t = 2_000_000)]
    mix_ops: usize,
}

struct Phase {
    name: &'static str,
    ops: usize,
    secs: f64,
}

pub fn run(global: &Global, args: &DemoArgs) -> Result<()> {
    if args.keys < 100 {
        bail!("--keys {}: the demo needs at least 100 keys", args.keys);
    }
    let device = global.device()?;
    let mut table = Table::create(&device, TableConfig::new("demo"))?;
    let keys = uniform_keys(args.keys, 2026);
    let mut rng = SplitMix64::new(7);
    let mut phases = Vec::new();
    let bar = progress::spinner();
    let timed = |phases: &mut Vec<Phase>,
                 name,
                 table: &mut Table,
                 batch: &Batch|
     -> Result<warpgrid::BatchResults> {
        bar.set_message(name);
        let t = Instant::now();
        let r = table.apply(batch)?;
        phases.push(Phase {
            name,
            ops: batch.len(),
            secs: t.elapsed().as_secs_f64(),
        });
        Ok(r)
    };

    let mut load = Batch::with_capacity(8, keys.len());
    for &k in &keys {
        load.put(k, &value_of(k))?;
    }
    timed(&mut phases, "load (put)", &mut table, &load)?;

    let mut mix_secs = 0.0;
    let mut wrong = 0usize;
    let mut done = 0;
    while done < args.mix_ops {
        let n = (args.mix_ops - done).min(1 << 16);
        let mut b = Batch::with_capacity(8, n);
        for _ in 0..n {
            let k = keys[rng.below(keys.len() as u64) as usize];
            if rng.below(100) < 5 {
                b.put(k, &value_of(k))?
            } else {
                b.get(k)?
            }
        }
        let t = Instant::now();
        let r = table.apply(&b)?;
        mix_secs += t.elapsed().as_secs_f64();
        for (i, o) in r.iter().enumerate() {
            if let Outcome::Value(v) = o {
                wrong += usize::from(v != value_of(b.keys()[i]));
            } else if o != Outcome::Ok {
                wrong += 1;
            }
        }
        done += n;
    }
    phases.push(Phase {
        name: "mix (95% get, 5% put)",
        ops: args.mix_ops,
        secs: mix_secs,
    });

    let linked = keys.len().min(10_000);
    let mut links = Batch::new(8);
    for i in 0..linked {
        for j in 1..=3u64 {
            let partner = keys[(i as u64 * 7919 + j * 104_729) as usize % keys.len()];
            if partner != keys[i] {
                links.link(keys[i], partner, 0.25 * j as f32)?;
            }
        }
    }
    timed(&mut phases, "link (3 per key)", &mut table, &links)?;
    let mut related = Batch::new(8);
    for &k in &keys[..linked] {
        related.get_related(k, 0.1, 10)?;
    }
    let r = timed(&mut phases, "related", &mut table, &related)?;
    let partners: usize = r
        .iter()
        .map(|o| {
            if let Outcome::Related(x) = o {
                x.len()
            } else {
                0
            }
        })
        .sum();

    let mut dels = Batch::new(8);
    for &k in keys.iter().step_by(100) {
        dels.delete(k)?;
    }
    timed(&mut phases, "delete (1% of keys)", &mut table, &dels)?;
    bar.finish_and_clear();

    let st = table.stats();
    println!(
        "warpgrid demo: shard table, {} keys, u64 -> 8 B values",
        keys.len()
    );
    println!("backend: {} ({})", device.kind(), device.describe());
    println!(
        "{:<24} {:>10} {:>10} {:>12}",
        "phase", "ops", "seconds", "Mops/s"
    );
    for p in &phases {
        println!(
            "{:<24} {:>10} {:>10.4} {:>12.2}",
            p.name,
            p.ops,
            p.secs,
            p.ops as f64 / p.secs / 1e6
        );
    }
    println!("related queries returned {partners} partners for {linked} keys");
    println!(
        "table: {} items, load {:.3}, shard cv {:.4}, {} resizes, {} links",
        st.items, st.load_factor, st.cv, st.resizes, st.links
    );
    if global.json {
        print!("{}", render_stats("demo", &st));
    }
    if wrong != 0 {
        bail!("{wrong} reads returned a wrong answer");
    }
    println!("every read returned the value written: ok");
    Ok(())
}
