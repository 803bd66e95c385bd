//! The WAL keeps exactly its intact prefix: a tail torn at any byte, a flipped bit or
//! appended garbage is cut and reported, and nothing before it is lost. The manifest refuses
//! directories that are not warpgrid's and conflicting settings.

use super::*;

const VB: usize = 8;

fn records(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
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
                seq: i + 1,
                op,
                key: i,
                payload,
            },
            &mut out,
        );
    }
    out
}

fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    decode_prefix(bytes, VB, |r| {
        at += HEADER_BYTES + 17 + r.payload.len();
        ends.push(at);
    });
    ends
}

fn recovered(path: &std::path::Path) -> (Vec<u64>, TailReport) {
    let mut seqs = Vec::new();
    let (_, report) = ShardWal::open(path, VB, |r| seqs.push(r.seq)).unwrap();
    (seqs, report)
}

#[test]
fn records_round_trip_and_sizes_follow_the_layout() {
    let bytes = records(10);
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
    assert_eq!(
        boundaries(&bytes)[0],
        8 + 17 + 8,
        "header 8, body 17 + payload"
    );
}

#[test]
fn a_tail_torn_at_any_byte_keeps_exactly_the_whole_records_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = records(12);
    let ends = boundaries(&bytes);
    let first_cut = ends[ends.len() - 4];
    for cut in first_cut..=bytes.len() {
        let path = dir.path().join("wal");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let (seqs, report) = recovered(&path);
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(seqs, (1..=whole as u64).collect::<Vec<_>>(), "cut at {cut}");
        let kept = if whole == 0 { 0 } else { ends[whole - 1] };
        assert_eq!(report.valid_bytes, kept as u64, "cut at {cut}");
        assert_eq!(report.dropped_bytes, (cut - kept) as u64, "cut at {cut}");
        assert_eq!(
            report.dropped_records,
            u64::from(cut > kept),
            "cut at {cut}"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            kept as u64,
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
fn a_flipped_bit_anywhere_in_a_record_drops_it_and_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = records(6);
    let ends = boundaries(&bytes);
    let (start, end) = (ends[3], ends[4]);
    for at in start..end {
        for bit in [0u8, 3, 7] {
            let mut b = bytes.clone();
            b[at] ^= 1 << bit;
            let path = dir.path().join("wal");
            std::fs::write(&path, &b).unwrap();
            let (seqs, report) = recovered(&path);
            assert_eq!(seqs, vec![1, 2, 3, 4], "flip at byte {at} bit {bit}");
            assert_eq!(report.dropped_bytes, (b.len() - start) as u64);
            assert!(report.dropped_records >= 1);
        }
    }
}

#[test]
fn appended_garbage_is_cut_and_new_records_follow_the_intact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal");
    let mut bytes = records(5);
    let good = bytes.len();
    bytes.extend_from_slice(b"\x10\x00\x00\x00garbage that is not a record at all");
    std::fs::write(&path, &bytes).unwrap();
    let mut seqs = Vec::new();
    let (mut wal, report) = ShardWal::open(&path, VB, |r| seqs.push(r.seq)).unwrap();
    assert_eq!(
        (
            seqs.len(),
            report.valid_bytes,
            report.dropped_bytes as usize
        ),
        (5, good as u64, bytes.len() - good)
    );
    let mut more = Vec::new();
    encode(
        &Record {
            seq: 6,
            op: WalOp::Put,
            key: 9,
            payload: &[9; 8],
        },
        &mut more,
    );
    wal.append(&more).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.len(), (good + more.len()) as u64);
    let (seqs, report) = recovered(&path);
    assert_eq!((seqs, report.dropped_bytes), ((1..=6).collect(), 0));
    // A sequence number that goes backwards is corruption too.
    let mut stale = Vec::new();
    encode(
        &Record {
            seq: 3,
            op: WalOp::Delete,
            key: 1,
            payload: &[],
        },
        &mut stale,
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&stale)
        .unwrap();
    let (seqs, report) = recovered(&path);
    assert_eq!(
        (seqs.len(), report.dropped_bytes as usize),
        (6, stale.len())
    );
}

#[test]
fn a_payload_of_the_wrong_length_for_its_op_is_corruption() {
    let mut bytes = records(2);
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
