//! A batch of table operations, stored as flat arrays ready for a device upload.
//!
//! Every operation is validated when it is added (reserved keys, value length, link and
//! related arguments), so a batch that exists is well-formed and a bad operation never
//! reaches a table. Layout (structure of arrays, one entry per operation):
//! `codes[i]`, `keys[i]`, `args[i]` (index into `values` for a put, into `aux` for a link,
//! unlink or related query); puts' values are packed in `values` as 32-bit words.

use crate::error::TableError;
use crate::table::route::{EMPTY_KEY, TOMBSTONE_KEY};

/// The kind of one operation. The numbers are the device encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// Upsert a key with a value of the table's size.
    Put = 0,
    /// Read a key's value.
    Get = 1,
    /// Remove a key and every link it has.
    Delete = 2,
    /// Create or update the symmetric link between two keys.
    Link = 3,
    /// Remove the link between two keys, if any.
    Unlink = 4,
    /// Read a key's value and its strongest partners.
    GetRelated = 5,
}

/// Second-key arguments of link, unlink and related operations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aux {
    /// The other key of a link or unlink (unused by related queries).
    pub partner: u64,
    /// Link strength, or a related query's minimum strength.
    pub strength: f32,
    /// A related query's maximum number of partners.
    pub max: u32,
}

/// Default minimum strength of `GetRelated`.
pub const DEFAULT_MIN_STRENGTH: f32 = 0.1;
/// Default maximum number of partners of `GetRelated`.
pub const DEFAULT_MAX_RELATED: u32 = 10;
/// Most operations in one batch (operation indices are 31-bit on the device).
pub const MAX_BATCH_OPS: usize = (1 << 31) - 1;

/// An ordered batch of operations for one table's value size.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    value_bytes: usize,
    codes: Vec<OpCode>,
    keys: Vec<u64>,
    args: Vec<u32>,
    values: Vec<u32>,
    aux: Vec<Aux>,
}

fn check_key(key: u64) -> Result<(), TableError> {
    if key == EMPTY_KEY || key == TOMBSTONE_KEY {
        Err(TableError::InvalidKey { key })
    } else {
        Ok(())
    }
}

fn check_pair(a: u64, b: u64) -> Result<(), TableError> {
    check_key(a)?;
    check_key(b)?;
    if a == b {
        return Err(TableError::InvalidLink {
            a,
            b,
            reason: "a key cannot be linked to itself".into(),
        });
    }
    Ok(())
}

impl Batch {
    /// An empty batch for values of `value_bytes` bytes.
    pub fn new(value_bytes: usize) -> Batch {
        Batch {
            value_bytes,
            ..Batch::default()
        }
    }

    /// An empty batch with room for `ops` operations.
    pub fn with_capacity(value_bytes: usize, ops: usize) -> Batch {
        Batch {
            value_bytes,
            codes: Vec::with_capacity(ops),
            keys: Vec::with_capacity(ops),
            args: Vec::with_capacity(ops),
            values: Vec::new(),
            aux: Vec::new(),
        }
    }

    fn push(&mut self, code: OpCode, key: u64, arg: u32) -> Result<(), TableError> {
        if self.codes.len() >= MAX_BATCH_OPS {
            return Err(TableError::BatchTooLarge { max: MAX_BATCH_OPS });
        }
        self.codes.push(code);
        self.keys.push(key);
        self.args.push(arg);
        Ok(())
    }

    /// Upsert `key` with `value` (exactly `value_bytes` bytes).
    pub fn put(&mut self, key: u64, value: &[u8]) -> Result<(), TableError> {
        check_key(key)?;
        if value.len() != self.value_bytes {
            return Err(TableError::InvalidValueLength {
                expected: self.value_bytes,
                actual: value.len(),
            });
        }
        let index = (self.values.len() / (self.value_bytes / 4).max(1)) as u32;
        self.push(OpCode::Put, key, index)?;
        self.values.extend(
            value
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
        );
        Ok(())
    }

    /// Read the value of `key`.
    pub fn get(&mut self, key: u64) -> Result<(), TableError> {
        check_key(key)?;
        self.push(OpCode::Get, key, 0)
    }

    /// Remove `key` and its links.
    pub fn delete(&mut self, key: u64) -> Result<(), TableError> {
        check_key(key)?;
        self.push(OpCode::Delete, key, 0)
    }

    /// Link `a` and `b` (symmetric) with `strength` in (0, 1]; replaces an existing strength.
    pub fn link(&mut self, a: u64, b: u64, strength: f32) -> Result<(), TableError> {
        check_pair(a, b)?;
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(TableError::InvalidLink {
                a,
                b,
                reason: format!("strength must be in (0, 1], got {strength}"),
            });
        }
        self.push_aux(
            OpCode::Link,
            a,
            Aux {
                partner: b,
                strength,
                max: 0,
            },
        )
    }

    /// Remove the link between `a` and `b` (either order); a missing link is not an error.
    pub fn unlink(&mut self, a: u64, b: u64) -> Result<(), TableError> {
        check_pair(a, b)?;
        self.push_aux(
            OpCode::Unlink,
            a,
            Aux {
                partner: b,
                strength: 0.0,
                max: 0,
            },
        )
    }

    /// The value of `key` and its existing partners with strength >= `min_strength`,
    /// strongest first (ties by key), at most `max`.
    pub fn get_related(&mut self, key: u64, min_strength: f32, max: u32) -> Result<(), TableError> {
        check_key(key)?;
        if !(0.0..=1.0).contains(&min_strength) {
            return Err(TableError::InvalidRelated {
                key,
                reason: format!("minimum strength must be in [0, 1], got {min_strength}"),
            });
        }
        self.push_aux(
            OpCode::GetRelated,
            key,
            Aux {
                partner: 0,
                strength: min_strength,
                max,
            },
        )
    }

    fn push_aux(&mut self, code: OpCode, key: u64, aux: Aux) -> Result<(), TableError> {
        let index = self.aux.len() as u32;
        self.push(code, key, index)?;
        self.aux.push(aux);
        Ok(())
    }

    /// Appends every operation of `other` (same value size) after this batch's.
    pub fn extend_from(&mut self, other: &Batch) -> Result<(), TableError> {
        if other.value_bytes != self.value_bytes {
            return Err(TableError::BatchMismatch {
                batch: other.value_bytes,
                table: self.value_bytes,
            });
        }
        if self.len() + other.len() > MAX_BATCH_OPS {
            return Err(TableError::BatchTooLarge { max: MAX_BATCH_OPS });
        }
        let value_base = (self.values.len() / self.value_words().max(1)) as u32;
        let aux_base = self.aux.len() as u32;
        for i in 0..other.len() {
            let base = match other.codes[i] {
                OpCode::Put => value_base,
                OpCode::Get | OpCode::Delete => 0,
                OpCode::Link | OpCode::Unlink | OpCode::GetRelated => aux_base,
            };
            self.codes.push(other.codes[i]);
            self.keys.push(other.keys[i]);
            self.args.push(other.args[i] + base);
        }
        self.values.extend_from_slice(&other.values);
        self.aux.extend_from_slice(&other.aux);
        Ok(())
    }

    /// Removes every operation, keeping the buffers' capacity for reuse.
    pub fn clear(&mut self) {
        self.codes.clear();
        self.keys.clear();
        self.args.clear();
        self.values.clear();
        self.aux.clear();
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Bytes per value of the table this batch is for.
    pub fn value_bytes(&self) -> usize {
        self.value_bytes
    }

    /// Bytes per value in 32-bit words.
    pub fn value_words(&self) -> usize {
        self.value_bytes / 4
    }

    /// The operation codes, one per operation, in batch order.
    pub fn codes(&self) -> &[OpCode] {
        &self.codes
    }

    /// The keys, one per operation (a link's or unlink's first key), in batch order.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// The value words of the put at `i`.
    #[inline]
    pub fn put_value(&self, i: usize) -> &[u32] {
        let w = self.value_words();
        let at = self.args[i] as usize * w;
        &self.values[at..at + w]
    }

    /// The value of the put at `i`, as bytes.
    #[inline]
    pub fn put_value_bytes(&self, i: usize) -> &[u8] {
        bytemuck::cast_slice(self.put_value(i))
    }

    /// Appends operation `i` of `other` (a batch for the same value size).
    ///
    /// # Panics
    /// If `i` is not below `other.len()`, like slice indexing.
    pub fn push_op_from(&mut self, other: &Batch, i: usize) -> Result<(), TableError> {
        if other.value_bytes != self.value_bytes {
            return Err(TableError::BatchMismatch {
                batch: other.value_bytes,
                table: self.value_bytes,
            });
        }
        let key = other.keys[i];
        match other.codes[i] {
            OpCode::Put => {
                let index = (self.values.len() / self.value_words().max(1)) as u32;
                self.push(OpCode::Put, key, index)?;
                self.values.extend_from_slice(other.put_value(i));
                Ok(())
            }
            OpCode::Get | OpCode::Delete => self.push(other.codes[i], key, 0),
            code => self.push_aux(code, key, other.aux(i)),
        }
    }

    /// The link/unlink/related arguments of the operation at `i`.
    #[inline]
    pub fn aux(&self, i: usize) -> Aux {
        self.aux[self.args[i] as usize]
    }

    /// Whether any operation returns a value (get or related).
    pub fn reads_values(&self) -> bool {
        self.codes
            .iter()
            .any(|c| matches!(c, OpCode::Get | OpCode::GetRelated))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn bad_operations_are_refused_and_leave_the_batch_as_it_was() {
        let mut b = Batch::new(8);
        b.put(1, &[0; 8]).unwrap();
        assert_eq!(
            b.put(u64::MAX, &[0; 8]),
            Err(TableError::InvalidKey { key: u64::MAX })
        );
        assert_eq!(
            b.get(u64::MAX - 1),
            Err(TableError::InvalidKey { key: u64::MAX - 1 })
        );
        assert_eq!(
            b.put(2, &[0; 7]),
            Err(TableError::InvalidValueLength {
                expected: 8,
                actual: 7
            })
        );
        assert!(matches!(
            b.link(3, 3, 0.5),
            Err(TableError::InvalidLink { .. })
        ));
        assert!(matches!(
            b.link(3, 4, 0.0),
            Err(TableError::InvalidLink { .. })
        ));
        assert!(matches!(
            b.link(3, 4, 1.5),
            Err(TableError::InvalidLink { .. })
        ));
        assert!(matches!(
            b.link(3, 4, f32::NAN),
            Err(TableError::InvalidLink { .. })
        ));
        assert!(matches!(
            b.get_related(3, f32::NAN, 1),
            Err(TableError::InvalidRelated { .. })
        ));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn values_and_aux_are_addressed_per_operation() {
        let mut b = Batch::new(8);
        b.get(9).unwrap();
        b.put(1, &[1, 0, 0, 0, 2, 0, 0, 0]).unwrap();
        b.link(1, 2, 0.5).unwrap();
        b.put(2, &[3, 0, 0, 0, 4, 0, 0, 0]).unwrap();
        assert_eq!(b.put_value(1), &[1, 2]);
        assert_eq!(b.put_value(3), &[3, 4]);
        assert_eq!(b.aux(2).partner, 2);
        let mut c = Batch::new(8);
        c.put(5, &[5, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        c.extend_from(&b).unwrap();
        assert_eq!(c.put_value(2), &[1, 2]);
        assert_eq!(c.put_value(4), &[3, 4]);
        assert_eq!(c.aux(3).strength, 0.5);
    }
}
