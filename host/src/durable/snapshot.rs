//! A shard snapshot file: every entry and link half of one shard, checksummed.
//!
//! ```text
//! offset  size  field
//!      0     8  magic        "WGSNAP01"
//!      8     4  value_bytes
//!     12     8  entries      n
//!     20     8  link halves  m
//!     28        n × (key u64, value)
//!               m × (owner u64, partner u64, strength f32)
//!    end     4  crc32c of everything before it
//! ```
//! Written through a temp file, fsync, rename and a directory fsync, so a crash leaves the old
//! snapshot or the new one, never a mix.

use std::fs;
use std::io::Write;
use std::mem::size_of;
use std::path::{Path, PathBuf};

use super::WalError;

const MAGIC: &[u8; 8] = b"WGSNAP01";
const HEADER: usize = MAGIC.len() + size_of::<u32>() + 2 * size_of::<u64>();
const HALF: usize = 2 * size_of::<u64>() + size_of::<f32>();

/// A shard's contents, being written or read: entry `i` is `keys[i]` with the value
/// `values[i * value_bytes..][..value_bytes]` (flat, so a large shard is three allocations).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShardImage {
    /// The entries' keys, in storage order.
    pub keys: Vec<u64>,
    /// The entries' values, `value_bytes` each, in the order of `keys`.
    pub values: Vec<u8>,
    /// Link halves stored in the shard, as `(owner, partner, strength)`.
    pub halves: Vec<(u64, u64, f32)>,
}

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> WalError {
    let path = path.to_owned();
    move |source| WalError::Io { path, op, source }
}

/// Writes `image` to `path` atomically.
pub fn write(path: &Path, value_bytes: usize, image: &ShardImage) -> Result<(), WalError> {
    let mut out = Vec::with_capacity(
        HEADER + image.keys.len() * (8 + value_bytes) + image.halves.len() * HALF + 4,
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(value_bytes as u32).to_le_bytes());
    out.extend_from_slice(&(image.keys.len() as u64).to_le_bytes());
    out.extend_from_slice(&(image.halves.len() as u64).to_le_bytes());
    for (k, v) in image
        .keys
        .iter()
        .zip(image.values.chunks_exact(value_bytes))
    {
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(v);
    }
    for (a, b, s) in &image.halves {
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
        out.extend_from_slice(&s.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let tmp: PathBuf = path.with_extension("snap.tmp");
    let mut f = fs::File::create(&tmp).map_err(io(&tmp, "create the snapshot"))?;
    f.write_all(&out).map_err(io(&tmp, "write the snapshot"))?;
    f.sync_all().map_err(io(&tmp, "fsync the snapshot"))?;
    fs::rename(&tmp, path).map_err(io(path, "rename the snapshot into place"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "fsync the table directory"))
}

/// Reads the snapshot at `path`, if there is one; a bad one is `CorruptSnapshot`.
pub fn read(path: &Path, value_bytes: usize) -> Result<Option<ShardImage>, WalError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(WalError::Io {
                path: path.to_owned(),
                op: "read the snapshot",
                source,
            });
        }
    };
    let corrupt = |reason: String| WalError::CorruptSnapshot {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < HEADER + 4 || &bytes[..8] != MAGIC {
        return Err(corrupt(
            "not a warpgrid snapshot (bad magic or too short)".into(),
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch".into()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let vb = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    if vb != value_bytes {
        return Err(corrupt(format!(
            "values of {vb} bytes, the table has {value_bytes}"
        )));
    }
    let (n, m) = (u64_at(12) as usize, u64_at(20) as usize);
    let need = n
        .checked_mul(8 + vb)
        .and_then(|a| m.checked_mul(HALF).and_then(|b| a.checked_add(b)));
    if need != Some(body.len() - HEADER) {
        return Err(corrupt(format!(
            "{n} entries and {m} link halves do not fill {} bytes",
            body.len() - HEADER
        )));
    }
    let mut image = ShardImage {
        keys: Vec::with_capacity(n),
        values: Vec::with_capacity(n * vb),
        halves: Vec::with_capacity(m),
    };
    let mut at = HEADER;
    for _ in 0..n {
        image.keys.push(u64_at(at));
        image.values.extend_from_slice(&body[at + 8..at + 8 + vb]);
        at += 8 + vb;
    }
    for _ in 0..m {
        let s = f32::from_le_bytes(body[at + 16..at + 20].try_into().expect("4 bytes"));
        image.halves.push((u64_at(at), u64_at(at + 8), s));
        at += HALF;
    }
    Ok(Some(image))
}
