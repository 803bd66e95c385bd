//! The WAL record (SPEC §1.3). Little-endian; the CRC covers `seq` through the payload:
//!
//! ```text
//! offset  size  field
//!      0     4  len      bytes from `seq` to the end of the payload (17 + payload bytes)
//!      4     4  crc32c   of those `len` bytes
//!      8     8  seq      strictly increasing within one WAL file
//!     16     1  op       0 put, 2 delete, 3 link, 4 unlink, 128 commit
//!     17     8  key
//!     25     n  payload  put: the value; link: partner u64 + strength f32; unlink: partner
//!                        u64; delete: none; commit: shards the batch wrote to u32, then
//!                        operations in the batch u32
//! ```
//! A commit record ends a batch in every shard WAL the batch wrote to. Its key is the batch's
//! first sequence number (the batch's operations have `seq` base..base + operations), so
//! recovery can tell a batch that reached every shard from one cut short.

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
    Put = 0,
    Delete = 2,
    Link = 3,
    Unlink = 4,
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
    pub seq: u64,
    pub op: WalOp,
    pub key: u64,
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

/// Decodes the longest intact prefix of `bytes` (records of a table with `value_bytes`
/// values), calling `visit` for each record. Returns the prefix's length: everything after
/// it is a torn or corrupt tail (short, bad length, bad CRC, unknown op, wrong payload
/// length for its op, or a sequence number that does not increase).
pub fn decode_prefix<'a>(
    bytes: &'a [u8],
    value_bytes: usize,
    mut visit: impl FnMut(Record<'a>),
) -> usize {
    let mut at = 0;
    let mut last_seq: Option<u64> = None;
    while bytes.len() - at >= HEADER_BYTES {
        let len =
            u32::from_le_bytes(bytes[at..at + LEN_BYTES].try_into().expect("4 bytes")) as usize;
        if !(BODY_FIXED..=BODY_FIXED + MAX_PAYLOAD).contains(&len)
            || bytes.len() - at - HEADER_BYTES < len
        {
            break;
        }
        let crc = u32::from_le_bytes(
            bytes[at + LEN_BYTES..at + HEADER_BYTES]
                .try_into()
                .expect("4 bytes"),
        );
        let body = &bytes[at + HEADER_BYTES..at + HEADER_BYTES + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Some(op) = WalOp::from_u8(body[8]) else {
            break;
        };
        let payload = &body[BODY_FIXED..];
        let seq = u64_at(body, 0);
        if payload.len() != op.payload_len(value_bytes) || last_seq.is_some_and(|s| seq <= s) {
            break;
        }
        last_seq = Some(seq);
        visit(Record {
            seq,
            op,
            key: u64_at(body, 9),
            payload,
        });
        at += HEADER_BYTES + len;
    }
    at
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
