//! What a queue's dispatcher applies its batches to: a table in memory, or a durable table.
//!
//! With a durable table the dispatcher's coalesced batch is the group commit: one log write
//! and (under `fsync = always`) one fsync cover every submission in it, and each submission
//! completes only once that fsync is done.

use warpgrid_engine::{Batch, BatchResults, Table};

use super::QueueError;
use crate::durable::{DurableTable, WalError};

/// A queue's table. Build one with `.into()` from a [`Table`] or a [`DurableTable`].
#[derive(Debug)]
pub enum Store {
    /// A table in memory only.
    Memory(Table),
    /// A durable table: every batch is logged (group commit) before it completes.
    Durable(Box<DurableTable>),
}

impl Store {
    /// The table in memory (of either kind).
    pub fn table(&self) -> &Table {
        match self {
            Store::Memory(t) => t,
            Store::Durable(d) => d.table(),
        }
    }

    /// Applies `batch`; with a durable table, returns once it is durable under its policy.
    pub(super) fn apply(&mut self, batch: &Batch) -> Result<BatchResults, QueueError> {
        match self {
            Store::Memory(t) => Ok(t.apply(batch)?),
            Store::Durable(d) => d.apply(batch).map_err(|e| match e {
                WalError::Table(t) => QueueError::Table(t),
                other => QueueError::Durable(other.to_string()),
            }),
        }
    }

    /// The in-memory table, if this is one.
    pub fn into_memory(self) -> Option<Table> {
        match self {
            Store::Memory(t) => Some(t),
            Store::Durable(_) => None,
        }
    }

    /// The durable table, if this is one.
    pub fn into_durable(self) -> Option<DurableTable> {
        match self {
            Store::Memory(_) => None,
            Store::Durable(d) => Some(*d),
        }
    }
}

impl From<Table> for Store {
    fn from(t: Table) -> Store {
        Store::Memory(t)
    }
}

impl From<DurableTable> for Store {
    fn from(d: DurableTable) -> Store {
        Store::Durable(Box::new(d))
    }
}
