//! A table's settings (SPEC §1.1) and their validation.

use crate::error::TableError;

/// Settings of one shard table. Build with [`TableConfig::new`] and the `with_*` methods,
/// then [`validate`](TableConfig::validate) (tables do it on creation).
#[derive(Debug, Clone, PartialEq)]
pub struct TableConfig {
    /// `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// Number of shards, 1..=1024 (default 24). Fixed for the table's life.
    pub shards: u32,
    /// Bytes per value: a multiple of 4 in 4..=256 (default 8).
    pub value_bytes: u32,
    /// Expected number of keys; shards start large enough to hold it without growing.
    pub capacity: u64,
    /// Load factor a shard may reach before it doubles, 0.5..=0.95 (default 0.8).
    pub max_load: f64,
}

impl TableConfig {
    /// Default [`shards`](TableConfig::shards).
    pub const DEFAULT_SHARDS: u32 = 24;
    /// Default [`value_bytes`](TableConfig::value_bytes).
    pub const DEFAULT_VALUE_BYTES: u32 = 8;
    /// Default [`max_load`](TableConfig::max_load).
    pub const DEFAULT_MAX_LOAD: f64 = 0.8;
    /// Largest capacity hint (2^40 keys): keeps every size computation far from overflow.
    pub const MAX_CAPACITY: u64 = 1 << 40;

    /// Settings for a table called `name`, with every other field at its default (capacity 0:
    /// shards start at their minimum size and grow).
    pub fn new(name: impl Into<String>) -> TableConfig {
        TableConfig {
            name: name.into(),
            shards: Self::DEFAULT_SHARDS,
            value_bytes: Self::DEFAULT_VALUE_BYTES,
            capacity: 0,
            max_load: Self::DEFAULT_MAX_LOAD,
        }
    }

    /// Sets [`shards`](TableConfig::shards).
    pub fn with_shards(mut self, shards: u32) -> Self {
        self.shards = shards;
        self
    }

    /// Sets [`value_bytes`](TableConfig::value_bytes).
    pub fn with_value_bytes(mut self, value_bytes: u32) -> Self {
        self.value_bytes = value_bytes;
        self
    }

    /// Sets [`capacity`](TableConfig::capacity).
    pub fn with_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets [`max_load`](TableConfig::max_load).
    pub fn with_max_load(mut self, max_load: f64) -> Self {
        self.max_load = max_load;
        self
    }

    /// Value size in 32-bit words (the unit device buffers use).
    pub fn value_words(&self) -> usize {
        self.value_bytes as usize / 4
    }

    /// Checks every field against its range.
    ///
    /// # Errors
    /// [`TableError::InvalidConfig`] naming the first field out of range, with the range and
    /// the value given.
    pub fn validate(&self) -> Result<(), TableError> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(TableError::InvalidConfig {
                field: "name",
                reason: format!(
                    "expected 1 to 64 characters of [a-z0-9_-], got {:?}",
                    self.name
                ),
            });
        }
        if !(1..=1024).contains(&self.shards) {
            return Err(TableError::InvalidConfig {
                field: "shards",
                reason: format!("expected 1..=1024, got {}", self.shards),
            });
        }
        if !(4..=256).contains(&self.value_bytes) || !self.value_bytes.is_multiple_of(4) {
            return Err(TableError::InvalidConfig {
                field: "value_bytes",
                reason: format!(
                    "expected a multiple of 4 in 4..=256, got {}",
                    self.value_bytes
                ),
            });
        }
        if self.capacity > Self::MAX_CAPACITY {
            return Err(TableError::InvalidConfig {
                field: "capacity",
                reason: format!(
                    "expected at most {} keys, got {}",
                    Self::MAX_CAPACITY,
                    self.capacity
                ),
            });
        }
        if !(0.5..=0.95).contains(&self.max_load) {
            return Err(TableError::InvalidConfig {
                field: "max_load",
                reason: format!("expected 0.5..=0.95, got {}", self.max_load),
            });
        }
        Ok(())
    }
}
