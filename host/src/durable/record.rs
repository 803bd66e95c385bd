//! The WAL record (SPEC §1.3). Little-endian; the CRC covers `seq` through the payload:
//!
//! ```text
//! offset  size  field
//!      0     4  len      bytes from `seq` to the end of the payload (17 + payload bytes)
//!      4     4  crc32c   of those `len` bytes
//!      8     8  seq      strictly increasing within the log
//!     16     1  op       0 put, 2 delete, 3 link, 4 unlink, 128 commit
//!     17     8  key
//!     25     n  payload  put: the value; link: partner u64 + strength f32; unlink: partner
//!                        u64; delete: none; commit: records the batch logged u32, then
//!                        operations in the batch u32
//! ```
//! A batch's operation `i` has `seq = base + i`; only writes are logged. A commit record
//! (`seq = base + operations`, `key = base`) ends the batch, so recovery can tell a whole
//! batch from one cut short.

use std::mem::size_of;

const LEN_BYTES: usize = size_of::<u32>();
const CRC_BYTES: usize = size_of::<u32>();
/// Bytes before the CRC-covered body.
pub const HEADER_BYTES: usize = LEN_BYTES + CRC_BYTES;
/// seq + op + key.
const BODY_FIXED: usize = size_of::<u64>() + size_of::<u8>() + size_of::<u64>();
/// The longest payload any record carries (a 256-byte value).
const MAX_PAYLOAD: usize = 256;

/// What a record does. The numbers match the engine's operation codes where they overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WalOp {
    /// Upsert: the payload is the value.
    Put = 0,
    /// Delete: no payload.
    Delete = 2,
    /// Link: the payload is the partner (u64) and the strength (f32).
    Link = 3,
    /// Unlink: the payload is the partner (u64).
    Unlink = 4,
    /// Ends a batch: the payload is the number of records logged (u32) and of operations (u32).
    Commit = 128,
}

impl WalOp {
    fn from_u8(b: u8) -> Option<WalOp> {
        Some(match b {
            0 => WalOp::Put,
            2 => WalOp::Delete,
            3 => WalOp::Link,
            4 => WalOp::Unlink,
            128 => WalOp::Commit,
            _ => return None,
        })
    }

    /// The payload length this op must have, for tables of `value_bytes` values.
    fn payload_len(self, value_bytes: usize) -> usize {
        match self {
            WalOp::Put => value_bytes,
            WalOp::Delete => 0,
            WalOp::Link => size_of::<u64>() + size_of::<f32>(),
            WalOp::Unlink => size_of::<u64>(),
            WalOp::Commit => 2 * size_of::<u32>(),
        }
    }
}

/// One record, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// Sequence number, strictly increasing within the log.
    pub seq: u64,
    /// What the record does.
    pub op: WalOp,
    /// The key (for a commit: the batch's first sequence number).
    pub key: u64,
    /// The payload, whose length the op fixes.
    pub payload: &'a [u8],
}

/// Appends the encoded `rec` to `out`.
pub fn encode(rec: &Record<'_>, out: &mut Vec<u8>) {
    let len = BODY_FIXED + rec.payload.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; CRC_BYTES]);
    out.extend_from_slice(&rec.seq.to_le_bytes());
    out.push(rec.op as u8);
    out.extend_from_slice(&rec.key.to_le_bytes());
    out.extend_from_slice(rec.payload);
    let crc = crc32c::crc32c(&out[start + HEADER_BYTES..]);
    out[start + LEN_BYTES..start + HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The intact records at the start of `bytes` (of a table with `value_bytes` values), each
/// with the offset just past it. Iteration stops at the first torn or corrupt record: short,
/// bad length, bad CRC, unknown op, wrong payload length for its op, or a sequence number
/// that does not increase. [`Records::offset`] is then the intact prefix's length.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    value_bytes: usize,
    at: usize,
    last_seq: Option<u64>,
}

impl<'a> Records<'a> {
    /// Iterates over the records in `bytes`, a log of a table with `value_bytes` values.
    pub fn new(bytes: &'a [u8], value_bytes: usize) -> Records<'a> {
        Records {
            bytes,
            value_bytes,
            at: 0,
            last_seq: None,
        }
    }

    /// Bytes of intact records read so far.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (Record<'a>, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let (bytes, at) = (self.bytes, self.at);
        if bytes.len() - at < HEADER_BYTES {
            return None;
        }
        let len =
            u32::from_le_bytes(bytes[at..at + LEN_BYTES].try_into().expect("4 bytes")) as usize;
        if !(BODY_FIXED..=BODY_FIXED + MAX_PAYLOAD).contains(&len)
            || bytes.len() - at - HEADER_BYTES < len
        {
            return None;
        }
        let crc = u32::from_le_bytes(
            bytes[at + LEN_BYTES..at + HEADER_BYTES]
                .try_into()
                .expect("4 bytes"),
        );
        let body = &bytes[at + HEADER_BYTES..at + HEADER_BYTES + len];
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let op = WalOp::from_u8(body[8])?;
        let payload = &body[BODY_FIXED..];
        let seq = u64_at(body, 0);
        if payload.len() != op.payload_len(self.value_bytes)
            || self.last_seq.is_some_and(|s| seq <= s)
        {
            return None;
        }
        self.last_seq = Some(seq);
        self.at = at + HEADER_BYTES + len;
        Some((
            Record {
                seq,
                op,
                key: u64_at(body, 9),
                payload,
            },
            self.at,
        ))
    }
}

/// Decodes the longest intact prefix of `bytes`, calling `visit` for each record; returns
/// the prefix's length (everything after it is a torn or corrupt tail, see [`Records`]).
pub fn decode_prefix<'a>(
    bytes: &'a [u8],
    value_bytes: usize,
    mut visit: impl FnMut(Record<'a>),
) -> usize {
    let mut records = Records::new(bytes, value_bytes);
    for (r, _) in records.by_ref() {
        visit(r);
    }
    records.offset()
}

/// How many frames a cut tail would have held, by following its length fields while they
/// fit (at least one when the tail is not empty): the "records dropped" of a recovery report.
pub(crate) fn frames_in(tail: &[u8]) -> u64 {
    let mut at = 0;
    let mut n = 0;
    while tail.len() - at >= HEADER_BYTES {
        let len =
            u32::from_le_bytes(tail[at..at + LEN_BYTES].try_into().expect("4 bytes")) as usize;
        if !(BODY_FIXED..=BODY_FIXED + MAX_PAYLOAD).contains(&len) {
            break;
        }
        n += 1;
        at = at.saturating_add(HEADER_BYTES + len).min(tail.len());
    }
    n.max(u64::from(!tail.is_empty()))
}
