//! The log keeps exactly its whole batches: a tail torn at any byte, a flipped bit, appended
//! garbage or a commit that does not match its records is cut and reported, and nothing
//! before it is lost. The manifest refuses directories that are not warpgrid's and
//! conflicting settings.

use super::*;

const VB: usize = 8;

/// Record `i` of the test logs: puts, deletes, links and unlinks in turn.
fn record_bytes(i: u64, seq: u64, out: &mut Vec<u8>) {
    let value = (i * 7).to_le_bytes();
    let partner = (i + 100).to_le_bytes();
    let mut link = partner.to_vec();
    link.extend_from_slice(&0.5f32.to_le_bytes());
    let (op, payload): (WalOp, &[u8]) = match i % 5 {
        0 | 1 => (WalOp::Put, &value),
        2 => (WalOp::Delete, &[]),
        3 => (WalOp::Link, &link),
        _ => (WalOp::Unlink, &partner),
    };
    encode(
        &Record {
            seq,
            op,
            key: i,
            payload,
        },
        out,
    );
}

fn commit(base: u64, logged: u32, ops: u32, out: &mut Vec<u8>) {
    let mut payload = logged.to_le_bytes().to_vec();
    payload.extend_from_slice(&ops.to_le_bytes());
    encode(
        &Record {
            seq: base + u64::from(ops),
            op: WalOp::Commit,
            key: base,
            payload: &payload,
        },
        out,
    );
}

/// A log of `n` batches; batch `b` logs `1 + b % 3` records out of `2 + b % 3` operations
/// (the first is a read, not logged). Returns the bytes and the end offset of each batch.
fn log(n: u64) -> (Vec<u8>, Vec<usize>) {
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    let (mut seq, mut i) = (0u64, 0u64);
    for b in 0..n {
        let logged = 1 + b % 3;
        let base = seq;
        for j in 0..logged {
            record_bytes(i, base + 1 + j, &mut out);
            i += 1;
        }
        commit(base, logged as u32, logged as u32 + 1, &mut out);
        seq = base + logged + 2;
        ends.push(out.len());
    }
    (out, ends)
}

/// Opens the log at `path`: the bases of the batches it kept, and its report.
fn recovered(path: &std::path::Path) -> (Vec<u64>, TailReport) {
    let mut bases = Vec::new();
    let (_, report) = Wal::open(path, VB, |base, _| bases.push(base)).unwrap();
    (bases, report)
}

fn bases(n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut seq = 0;
    for b in 0..n as u64 {
        out.push(seq);
        seq += 1 + b % 3 + 2;
    }
    out
}

#[test]
fn records_round_trip_and_sizes_follow_the_layout() {
    let mut bytes = Vec::new();
    for i in 0..10 {
        record_bytes(i, i + 1, &mut bytes);
    }
    let mut seen = Vec::new();
    assert_eq!(
        decode_prefix(&bytes, VB, |r| seen.push((
            r.seq,
            r.op,
            r.key,
            r.payload.len()
        ))),
        bytes.len()
    );
    assert_eq!(seen[0], (1, WalOp::Put, 0, 8));
    assert_eq!(seen[2], (3, WalOp::Delete, 2, 0));
    assert_eq!(seen[3], (4, WalOp::Link, 3, 12));
    assert_eq!(seen[4], (5, WalOp::Unlink, 4, 8));
    let first = Records::new(&bytes, VB).next().unwrap().1;
    assert_eq!(first, 8 + 17 + 8, "header 8, body 17 + payload");
}

#[test]
fn a_tail_torn_at_any_byte_keeps_exactly_the_whole_batches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, ends) = log(9);
    let first_cut = ends[ends.len() - 4];
    for cut in first_cut..=bytes.len() {
        let path = dir.path().join("wal");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let (kept, report) = recovered(&path);
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(kept, bases(whole), "cut at {cut}");
        let valid = ends[whole - 1];
        assert_eq!(report.valid_bytes, valid as u64, "cut at {cut}");
        assert_eq!(report.dropped_bytes, (cut - valid) as u64, "cut at {cut}");
        assert_eq!(report.batches, whole as u64, "cut at {cut}");
        assert_eq!(
            report.dropped_records > 0,
            cut > valid,
            "cut at {cut}: {report:?}"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            valid as u64,
            "the torn tail is cut on disk"
        );
        let (again, report) = recovered(&path);
        assert_eq!(
            (again.len(), report.dropped_bytes),
            (whole, 0),
            "a second open finds nothing to cut"
        );
    }
}

#[test]
fn a_flipped_bit_anywhere_in_a_batch_drops_it_and_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, ends) = log(6);
    let (start, end) = (ends[2], ends[3]);
    for at in start..end {
        for bit in [0u8, 3, 7] {
            let mut b = bytes.clone();
            b[at] ^= 1 << bit;
            let path = dir.path().join("wal");
            std::fs::write(&path, &b).unwrap();
            let (kept, report) = recovered(&path);
            assert_eq!(kept, bases(3), "flip at byte {at} bit {bit}");
            assert_eq!(report.dropped_bytes, (b.len() - start) as u64);
            assert!(report.dropped_records >= 1);
        }
    }
}

#[test]
fn a_commit_that_does_not_match_its_records_ends_the_log() {
    let (bytes, ends) = log(2);
    // Batch 2 logs two records but its commit claims three; batch 3 would be fine.
    let mut bad = bytes.clone();
    let base = bases(3)[2];
    record_bytes(50, base, &mut bad);
    record_bytes(51, base + 1, &mut bad);
    commit(base, 3, 4, &mut bad);
    commit(base + 10, 1, 1, &mut bad);
    let report = scan_batches(&bad, VB, |_, _| {});
    assert_eq!(report.valid_bytes as usize, ends[1]);
    assert_eq!((report.batches, report.batches_dropped), (2, 1));
    // A commit whose sequence number is not base + operations.
    let mut bad = bytes.clone();
    record_bytes(50, base, &mut bad);
    let mut payload = 1u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&2u32.to_le_bytes());
    encode(
        &Record {
            seq: base + 5,
            op: WalOp::Commit,
            key: base,
            payload: &payload,
        },
        &mut bad,
    );
    let report = scan_batches(&bad, VB, |_, _| {});
    assert_eq!(report.valid_bytes as usize, ends[1]);
    // A commit with nothing before it.
    let mut bad = bytes;
    commit(base, 0, 1, &mut bad);
    assert_eq!(
        scan_batches(&bad, VB, |_, _| {}).valid_bytes as usize,
        ends[1]
    );
}

#[test]
fn appended_garbage_is_cut_and_new_batches_follow_the_whole_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let (mut bytes, _) = log(5);
    let good = bytes.len();
    bytes.extend_from_slice(b"\x10\x00\x00\x00garbage that is not a record at all");
    std::fs::write(&path, &bytes).unwrap();
    let mut kept = Vec::new();
    let (mut wal, report) = Wal::open(&path, VB, |base, _| kept.push(base)).unwrap();
    assert_eq!(
        (
            kept.len(),
            report.valid_bytes,
            report.dropped_bytes as usize,
            report.batches_dropped
        ),
        (5, good as u64, bytes.len() - good, 0)
    );
    let next = report.next_seq;
    assert_eq!(
        next,
        bases(6)[5],
        "the next batch starts after the last commit"
    );
    let mut more = Vec::new();
    record_bytes(0, next, &mut more);
    commit(next, 1, 1, &mut more);
    wal.append(&more).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.len(), (good + more.len()) as u64);
    let (kept, report) = recovered(&path);
    assert_eq!((kept.len(), report.dropped_bytes), (6, 0));
    // A sequence number that goes backwards is corruption too.
    let mut stale = Vec::new();
    record_bytes(1, 3, &mut stale);
    commit(2, 1, 1, &mut stale);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&stale)
        .unwrap();
    let (kept, report) = recovered(&path);
    assert_eq!(
        (kept.len(), report.dropped_bytes as usize),
        (6, stale.len())
    );
}

#[test]
fn a_payload_of_the_wrong_length_for_its_op_is_corruption() {
    let mut bytes = Vec::new();
    record_bytes(0, 1, &mut bytes);
    record_bytes(1, 2, &mut bytes);
    encode(
        &Record {
            seq: 3,
            op: WalOp::Put,
            key: 1,
            payload: &[1; 12],
        },
        &mut bytes,
    );
    let mut n = 0;
    decode_prefix(&bytes, VB, |_| n += 1);
    assert_eq!(n, 2);
}

#[test]
fn fsync_policies_parse_and_print() {
    use std::time::Duration;
    assert_eq!(
        "always".parse::<FsyncPolicy>().unwrap(),
        FsyncPolicy::Always
    );
    assert_eq!("never".parse::<FsyncPolicy>().unwrap(), FsyncPolicy::Never);
    assert_eq!(
        "interval=50".parse::<FsyncPolicy>().unwrap(),
        FsyncPolicy::Interval(Duration::from_millis(50))
    );
    assert_eq!(
        FsyncPolicy::Interval(Duration::from_millis(50)).to_string(),
        "interval=50"
    );
    for bad in ["sometimes", "interval=", "interval=0", "interval=-3"] {
        assert!(
            bad.parse::<FsyncPolicy>()
                .unwrap_err()
                .to_string()
                .starts_with("invalid fsync:"),
            "{bad}"
        );
    }
}

#[test]
fn the_manifest_guards_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t");
    let m = Manifest::new("t", 24, 8);
    let missing = m.open_dir(&t, false).unwrap_err().to_string();
    assert!(missing.contains("no table here; add --create"), "{missing}");
    assert_eq!(m.open_dir(&t, true).unwrap(), m);
    assert_eq!(m.open_dir(&t, false).unwrap(), m);
    let err = Manifest::new("t", 12, 8)
        .open_dir(&t, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("created with shards = 24, not 12"), "{err}");
    assert!(err.contains(MANIFEST_FILE), "names the file: {err}");
    let err = Manifest::new("t", 24, 16)
        .open_dir(&t, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("value_bytes = 8, not 16"), "{err}");
    let err = Manifest::new("u", 24, 8)
        .open_dir(&t, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("name = t, not u"), "{err}");
    // A directory with other files and no manifest is not ours.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "hello").unwrap();
    let err = m.open_dir(&other, true).unwrap_err().to_string();
    assert!(
        err.contains("not a warpgrid table directory") && err.contains("no warpgrid-table.json"),
        "{err}"
    );
    assert!(
        !other.join(MANIFEST_FILE).exists(),
        "nothing was written into someone else's directory"
    );
    // A manifest that is not warpgrid's.
    std::fs::write(t.join(MANIFEST_FILE), b"{\"format\": \"other\"}").unwrap();
    let err = m.open_dir(&t, true).unwrap_err().to_string();
    assert!(
        err.contains("not a warpgrid table directory") && err.contains("does not parse"),
        "{err}"
    );
}

use std::io::Write as _;
