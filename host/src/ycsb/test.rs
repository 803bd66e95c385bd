//! Tests of the YCSB generators: the zipfian draws match Gray's distribution, the scrambled
//! and latest choosers are skewed the way YCSB's are, workloads A–F have YCSB's mix, key
//! numbers stay in range, and the same seed always gives the same operations.

use std::collections::{HashMap, HashSet};

use super::generator::{SkewedLatest, ycsb_fnvhash64};
use super::*;

/// Maps keys back to key numbers `0..n`.
fn keynums(n: u64) -> HashMap<u64, u64> {
    (0..n).map(|k| (key_of(k), k)).collect()
}

/// An order-sensitive digest of a stream's operations.
fn fingerprint(ops: impl Iterator<Item = YcsbOp>) -> u64 {
    let mut bytes = Vec::new();
    for op in ops {
        let (tag, a, b) = match op {
            YcsbOp::Read { key } => (0u8, key, 0),
            YcsbOp::Update { key, version } => (1, key, version),
            YcsbOp::Insert { key, version } => (2, key, version),
            YcsbOp::Scan { start, len } => (3, start, len),
            YcsbOp::ReadModifyWrite { key, version } => (4, key, version),
        };
        bytes.push(tag);
        bytes.extend_from_slice(&a.to_le_bytes());
        bytes.extend_from_slice(&b.to_le_bytes());
    }
    fnv1a64(&bytes)
}

#[test]
fn fnv1a64_matches_reference_vectors() {
    // FNV-1a 64 test vectors (Fowler/Noll/Vo reference).
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn ycsb_fnvhash64_is_java_abs_of_fnv1a64() {
    for v in [0u64, 1, 7, 1_000, 123_456_789, SCRAMBLED_ITEM_COUNT] {
        let h = fnv1a64(&v.to_le_bytes()) as i64;
        assert_eq!(ycsb_fnvhash64(v), h.unsigned_abs());
        assert!(ycsb_fnvhash64(v) <= i64::MAX as u64);
    }
}

#[test]
fn zeta_matches_a_reverse_sum_and_the_cache_returns_the_same_value() {
    let reverse: f64 = (1..=1000u64)
        .rev()
        .map(|i| 1.0 / (i as f64).powf(0.99))
        .sum();
    assert!((zeta(1000, 0.99) - reverse).abs() < 1e-12);
    assert_eq!(zeta(2, 0.99), 1.0 + 0.5f64.powf(0.99));
    let n = (1 << 16) + 3;
    assert_eq!(zeta(n, 0.99).to_bits(), zeta(n, 0.99).to_bits());
    assert!(zeta(n, 0.99) > zeta(1000, 0.99));
}

#[test]
fn scrambled_zetan_is_zeta_of_the_scrambled_item_count() {
    // Euler–Maclaurin from zeta(M): Σ_{k=M+1..N} k^-s ≈ ∫_M^N x^-s dx + (f(N) - f(M))/2
    // + (f'(N) - f'(M))/12. YCSB's constant is zeta(10^10, 0.99); for the 10^16 that later
    // YCSB sources name it would be about 45.
    let s = ZIPFIAN_CONSTANT;
    let m = 1_000_000.0f64;
    let n = SCRAMBLED_ITEM_COUNT as f64;
    let f = |x: f64| x.powf(-s);
    let df = |x: f64| -s * x.powf(-s - 1.0);
    let tail = (n.powf(1.0 - s) - m.powf(1.0 - s)) / (1.0 - s)
        + (f(n) - f(m)) / 2.0
        + (df(n) - df(m)) / 12.0;
    let extrapolated = zeta(1_000_000, s) + tail;
    assert!(
        (extrapolated - SCRAMBLED_ZETAN).abs() < 1e-6,
        "zeta(10^10) ≈ {extrapolated}, constant {SCRAMBLED_ZETAN}"
    );
}

#[test]
fn zipfian_item_frequencies_match_gray() {
    const N: u64 = 1000;
    const SAMPLES: u64 = 1_000_000;
    let mut z = Zipfian::new(N);
    let mut rng = SplitMix64::new(11);
    let mut counts = vec![0u64; N as usize];
    for _ in 0..SAMPLES {
        let v = z.next(&mut rng);
        assert!(v < N, "zipfian drew {v}, outside 0..{N}");
        counts[v as usize] += 1;
    }
    let zn = zeta(N, 0.99);
    assert!((z.zetan() - zn).abs() < 1e-12);
    // Item 0: 1/zeta(n) ≈ 0.129, standard error ≈ 0.00034; item 1: 0.5^0.99/zeta(n).
    let p0 = counts[0] as f64 / SAMPLES as f64;
    let p1 = counts[1] as f64 / SAMPLES as f64;
    assert!(
        (p0 - 1.0 / zn).abs() < 0.002,
        "item 0: {p0} vs {}",
        1.0 / zn
    );
    assert!(
        (p1 - 0.5f64.powf(0.99) / zn).abs() < 0.002,
        "item 1: {p1} vs {}",
        0.5f64.powf(0.99) / zn
    );
    // The tail follows rank^-0.99 roughly: items 10..20 vs 100..110 differ ~10x.
    let band = |lo: usize| counts[lo..lo + 10].iter().sum::<u64>() as f64;
    let ratio = band(10) / band(100);
    assert!((6.0..14.0).contains(&ratio), "band ratio {ratio}");
    assert!(counts[N as usize - 1] > 0, "the last item is never drawn");
}

#[test]
fn zipfian_extends_zeta_incrementally_when_items_grow() {
    let mut z = Zipfian::new(1000);
    let mut rng = SplitMix64::new(5);
    let mut zero = 0u64;
    const SAMPLES: u64 = 500_000;
    for _ in 0..SAMPLES {
        let v = z.next_in(&mut rng, 1500);
        assert!(v < 1500);
        zero += u64::from(v == 0);
    }
    let z1500 = zeta(1500, 0.99);
    assert!((z.zetan() - z1500).abs() < 1e-9, "{} vs {z1500}", z.zetan());
    let p0 = zero as f64 / SAMPLES as f64;
    assert!(
        (p0 - 1.0 / z1500).abs() < 0.003,
        "item 0: {p0} vs {}",
        1.0 / z1500
    );
    // Shrinking recomputes.
    z.next_in(&mut rng, 900);
    assert!((z.zetan() - zeta(900, 0.99)).abs() < 1e-12);
}

#[test]
fn scrambled_zipfian_is_skewed_and_covers_the_range() {
    const N: u64 = 10_000;
    const SAMPLES: u64 = 200_000;
    let mut z = ScrambledZipfian::new(0, N - 1);
    let mut rng = SplitMix64::new(3);
    let mut counts = vec![0u64; N as usize];
    for _ in 0..SAMPLES {
        let v = z.next(&mut rng);
        assert!(v < N, "scrambled zipfian drew {v}, outside 0..{N}");
        counts[v as usize] += 1;
    }
    // The hottest key is not key 0 in general: the head is scattered.
    let hottest = (0..N as usize).max_by_key(|&i| counts[i]).unwrap();
    assert_eq!(
        hottest as u64,
        ycsb_fnvhash64(0) % N,
        "the hottest key is the hash of zipfian item 0"
    );
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = counts[..(N / 100) as usize].iter().sum();
    let share = top as f64 / SAMPLES as f64;
    // Uniform would give 1%; YCSB's scrambled zipfian gives the top 1% about 20%.
    assert!(share > 0.15, "top 1% of keys got {share}");
    let covered = counts.iter().filter(|&&c| c > 0).count();
    assert!(covered > 9_500, "only {covered} of {N} keys drawn");
}

#[test]
fn skewed_latest_stays_in_one_to_last() {
    let mut l = SkewedLatest::new(999);
    let mut rng = SplitMix64::new(9);
    let mut at_last = 0;
    for _ in 0..100_000 {
        let v = l.next(&mut rng, 999);
        assert!((1..=999).contains(&v), "latest drew {v}");
        at_last += u32::from(v == 999);
    }
    assert!(
        at_last > 10_000,
        "the newest key drawn {at_last} times of 100000"
    );
    assert_eq!(SkewedLatest::new(0).next(&mut rng, 0), 0);
}

#[test]
fn latest_favours_recent_inserts() {
    const RECORDS: u64 = 1000;
    const OPS: u64 = 200_000;
    let spec = Workload::D.spec().with_counts(RECORDS, OPS);
    let map = keynums(RECORDS + OPS);
    let mut stream = spec.stream(1).unwrap();
    let mut by_age = [0u64; 16];
    let (mut reads, mut recent, mut new_records) = (0u64, 0u64, 0u64);
    while let Some(last) = stream.key_count().checked_sub(1) {
        let Some(op) = stream.next() else { break };
        let YcsbOp::Read { key } = op else { continue };
        let keynum = map[&key];
        assert!(keynum <= last, "read of key number {keynum} > last {last}");
        let age = last - keynum;
        reads += 1;
        recent += u64::from(age < 10);
        new_records += u64::from(keynum >= RECORDS);
        if let Some(c) = by_age.get_mut(age as usize) {
            *c += 1;
        }
    }
    assert!(reads > 180_000);
    // The 10 newest of ~1000..11000 records: zeta(10)/zeta(n) ≈ 0.29..0.38; uniform: < 1%.
    let recent_share = recent as f64 / reads as f64;
    assert!(recent_share > 0.25, "10 newest keys got {recent_share}");
    assert!(by_age[0] > by_age[1] && by_age[1] > by_age[4] && by_age[4] > by_age[15]);
    let new_share = new_records as f64 / reads as f64;
    assert!(
        new_share > 0.3,
        "run-phase inserts got {new_share} of reads"
    );
}

#[test]
fn keynums_stay_in_range_for_every_workload_and_distribution() {
    const RECORDS: u64 = 500;
    const OPS: u64 = 50_000;
    let map = keynums(RECORDS + OPS);
    let mut specs: Vec<WorkloadSpec> = Workload::ALL.iter().map(|w| w.spec()).collect();
    for distribution in [
        Distribution::Uniform,
        Distribution::Zipfian,
        Distribution::Latest,
    ] {
        specs.push(WorkloadSpec {
            read: 0.6,
            update: 0.1,
            insert: 0.1,
            scan: 0.1,
            rmw: 0.1,
            distribution,
            ..Workload::E.spec()
        });
    }
    for spec in specs {
        let spec = spec.with_counts(RECORDS, OPS);
        let mut stream = spec.stream(42).unwrap();
        let mut next_insert = RECORDS;
        loop {
            let last = stream.key_count() - 1;
            let Some(op) = stream.next() else { break };
            let keynum = map[&op.key()];
            match op {
                YcsbOp::Insert { .. } => {
                    assert_eq!(keynum, next_insert, "{spec:?}");
                    next_insert += 1;
                }
                _ => assert!(
                    keynum <= last,
                    "{spec:?}: key number {keynum} > last {last}"
                ),
            }
            if spec.distribution == Distribution::Uniform {
                assert!(op.kind() == OpKind::Insert || keynum < RECORDS);
            }
            if let YcsbOp::Scan { len, .. } = op {
                assert!((spec.min_scan_len..=spec.max_scan_len).contains(&len));
            }
        }
        assert_eq!(stream.key_count(), next_insert);
    }
}

#[test]
fn workload_proportions_match_ycsb() {
    const OPS: u64 = 200_000;
    let expected = |w: Workload| -> [f64; 5] {
        match w {
            Workload::A => [0.5, 0.5, 0.0, 0.0, 0.0],
            Workload::B => [0.95, 0.05, 0.0, 0.0, 0.0],
            Workload::C => [1.0, 0.0, 0.0, 0.0, 0.0],
            Workload::D => [0.95, 0.0, 0.05, 0.0, 0.0],
            Workload::E => [0.0, 0.0, 0.05, 0.95, 0.0],
            Workload::F => [0.5, 0.0, 0.0, 0.0, 0.5],
        }
    };
    for w in Workload::ALL {
        let spec = w.spec().with_counts(10_000, OPS);
        let want_distribution = if w == Workload::D {
            Distribution::Latest
        } else {
            Distribution::Zipfian
        };
        assert_eq!(spec.distribution, want_distribution, "workload {w}");
        let mut counts = [0u64; 5];
        let (mut scans, mut scan_len_sum) = (0u64, 0u64);
        for op in spec.stream(7).unwrap() {
            let slot = match op.kind() {
                OpKind::Read => 0,
                OpKind::Update => 1,
                OpKind::Insert => 2,
                OpKind::Scan => 3,
                OpKind::ReadModifyWrite => 4,
            };
            counts[slot] += 1;
            if let YcsbOp::Scan { len, .. } = op {
                assert!((1..=100).contains(&len), "scan length {len}");
                scans += 1;
                scan_len_sum += len;
            }
        }
        assert_eq!(counts.iter().sum::<u64>(), OPS);
        for (slot, (&got, want)) in counts.iter().zip(expected(w)).enumerate() {
            let share = got as f64 / OPS as f64;
            assert!(
                (share - want).abs() < 0.01,
                "workload {w}: op {slot} share {share}, want {want}"
            );
            if want == 0.0 {
                assert_eq!(got, 0, "workload {w}: op {slot} must not occur");
            }
        }
        if scans > 0 {
            let mean = scan_len_sum as f64 / scans as f64;
            assert!((mean - 50.5).abs() < 1.0, "mean scan length {mean}");
        }
    }
}

#[test]
fn same_seed_gives_the_same_ops_and_another_seed_other_ops() {
    for w in Workload::ALL {
        let spec = w.spec().with_counts(2_000, 20_000);
        let a: Vec<YcsbOp> = spec.stream(99).unwrap().collect();
        let b: Vec<YcsbOp> = spec.stream(99).unwrap().collect();
        let c: Vec<YcsbOp> = spec.stream(100).unwrap().collect();
        assert_eq!(a, b, "workload {w}");
        assert_ne!(a, c, "workload {w}");
        let same = a.iter().zip(&c).filter(|(x, y)| x == y).count();
        assert!(
            same < a.len() / 2,
            "workload {w}: {same} ops equal across seeds"
        );
    }
}

#[test]
fn streams_are_stable_across_versions() {
    // Pinned digests of the first 10,000 ops: a change here changes every recorded run.
    let digest =
        |w: Workload| fingerprint(w.spec().with_counts(100_000, 10_000).stream(2024).unwrap());
    let got = [
        digest(Workload::A),
        digest(Workload::D),
        digest(Workload::E),
    ];
    assert_eq!(got, PINNED_DIGESTS, "got {got:#x?}");
}

const PINNED_DIGESTS: [u64; 3] = [
    0x6817_3a30_d33f_80f1,
    0x1d96_66ae_a6e4_edbf,
    0xb3eb_6a6e_aa22_d1ee,
];

#[test]
fn stream_yields_exactly_operation_count_ops_with_run_versions() {
    let spec = Workload::A.spec().with_counts(100, 1234);
    let mut stream = spec.stream(1).unwrap();
    assert_eq!(stream.size_hint(), (1234, Some(1234)));
    let ops: Vec<YcsbOp> = stream.by_ref().collect();
    assert_eq!(ops.len(), 1234);
    assert_eq!(stream.issued(), 1234);
    assert_eq!(stream.next(), None);
    for (i, op) in ops.iter().enumerate() {
        if let YcsbOp::Update { version, .. } = op {
            assert_eq!(*version, i as u64 + 1);
        }
    }
    assert_eq!(stream.record_count(), 100);
    assert_eq!(stream.operation_count(), 1234);
    assert_eq!(stream.key_count(), 100);
}

#[test]
fn load_phase_inserts_key_numbers_in_order_with_version_0() {
    let spec = Workload::C.spec().with_counts(1000, 1);
    let load: Vec<YcsbOp> = spec.load().collect();
    assert_eq!(load.len(), 1000);
    for (k, op) in load.iter().enumerate() {
        assert_eq!(
            *op,
            YcsbOp::Insert {
                key: key_of(k as u64),
                version: 0
            }
        );
    }
}

#[test]
fn key_of_is_injective_and_never_reserved() {
    let mut seen = HashSet::with_capacity(1_000_000);
    for k in 0..1_000_000u64 {
        let key = key_of(k);
        assert!(
            key != EMPTY_KEY && key != TOMBSTONE_KEY,
            "key_of({k}) is reserved"
        );
        assert!(seen.insert(key), "key_of({k}) collides");
        // YCSB's "user<n>" suffix is the signed abs of the same hash.
        assert_eq!((key as i64).unsigned_abs(), ycsb_fnvhash64(k));
    }
    assert_eq!(avoid_reserved(u64::MAX), u64::MAX - 2);
    assert_eq!(avoid_reserved(u64::MAX - 1), u64::MAX - 3);
    assert_eq!(avoid_reserved(12345), 12345);
    assert_eq!(avoid_reserved(u64::MAX - 2), u64::MAX - 2);
}

#[test]
fn workload_and_distribution_names_parse() {
    for w in Workload::ALL {
        assert_eq!(w.name().parse::<Workload>().unwrap(), w);
        assert_eq!(w.name().to_uppercase().parse::<Workload>().unwrap(), w);
        assert_eq!(format!("workload{w}").parse::<Workload>().unwrap(), w);
    }
    let err = "g".parse::<Workload>().unwrap_err();
    assert_eq!(err, YcsbError::UnknownWorkload { name: "g".into() });
    assert_eq!(
        err.to_string(),
        "unknown ycsb workload \"g\": expected one of a, b, c, d, e, f"
    );
    for d in [
        Distribution::Uniform,
        Distribution::Zipfian,
        Distribution::Latest,
    ] {
        assert_eq!(d.to_string().parse::<Distribution>().unwrap(), d);
    }
    assert_eq!(
        "Zipfian".parse::<Distribution>().unwrap(),
        Distribution::Zipfian
    );
    assert!(matches!(
        "hotspot".parse::<Distribution>(),
        Err(YcsbError::UnknownDistribution { .. })
    ));
}

#[test]
fn validate_rejects_bad_specs() {
    let a = Workload::A.spec();
    assert_eq!(a.validate(), Ok(()));
    assert_eq!(
        a.clone().with_counts(0, 10).validate(),
        Err(YcsbError::NoRecords)
    );
    assert_eq!(
        WorkloadSpec { update: -0.5, ..a }.validate(),
        Err(YcsbError::BadProportion {
            op: "update",
            value: -0.5
        })
    );
    assert!(matches!(
        WorkloadSpec { rmw: f64::NAN, ..a }.validate(),
        Err(YcsbError::BadProportion {
            op: "read-modify-write",
            ..
        })
    ));
    assert_eq!(
        WorkloadSpec {
            read: 0.0,
            update: 0.0,
            ..a
        }
        .validate(),
        Err(YcsbError::NoOperations)
    );
    assert_eq!(
        WorkloadSpec {
            min_scan_len: 5,
            max_scan_len: 4,
            ..a
        }
        .validate(),
        Err(YcsbError::BadScanLength { min: 5, max: 4 })
    );
    assert!(matches!(
        Workload::D.spec().with_counts(10, u64::MAX).stream(0),
        Err(YcsbError::KeySpaceOverflow { .. })
    ));
    // Without inserts an unbounded run is fine.
    assert!(
        Workload::C
            .spec()
            .with_counts(10, u64::MAX)
            .stream(0)
            .is_ok()
    );
}

#[test]
fn one_record_works_for_every_workload() {
    for w in Workload::ALL {
        let ops: Vec<YcsbOp> = w.spec().with_counts(1, 1000).stream(3).unwrap().collect();
        assert_eq!(ops.len(), 1000);
    }
}

#[test]
fn values_are_deterministic_and_self_checking() {
    let v = value_for(7, 3, YCSB_VALUE_BYTES);
    assert_eq!(v.len(), YCSB_VALUE_BYTES);
    assert_eq!(v, value_for(7, 3, YCSB_VALUE_BYTES));
    assert_ne!(v, value_for(8, 3, YCSB_VALUE_BYTES));
    assert_ne!(v, value_for(7, 4, YCSB_VALUE_BYTES));
    assert_eq!(value_version(7, &v), Some(3));
    assert_eq!(value_version(8, &v), None);
    let mut bad = v.clone();
    bad[500] ^= 1;
    assert_eq!(value_version(7, &bad), None);

    // Lengths that are not a multiple of 8, and prefixes.
    let odd = value_for(7, 3, 13);
    assert_eq!(odd[..], v[..13]);
    assert_eq!(value_version(7, &odd), Some(3));
    let short = value_for(7, 0x0102_0304_0506_0708, 5);
    assert_eq!(short, [8, 7, 6, 5, 4]);
    assert_eq!(value_version(7, &short), None);
    let mut buf = [0u8; 40];
    fill_value(7, 3, &mut buf);
    assert_eq!(buf[..], v[..40]);
}
