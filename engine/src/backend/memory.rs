//! The account of table state a device holds, checked against `DeviceConfig::memory_limit`
//! (the same rule on every backend, so a batch is refused for memory at the same point).

use std::sync::atomic::{AtomicU64, Ordering};

use super::BackendKind;
use crate::error::BackendError;

/// Bytes of table state held (allocated or reserved), and the most allowed.
#[derive(Debug)]
pub(crate) struct MemoryAccount {
    backend: BackendKind,
    limit: Option<u64>,
    held: AtomicU64,
}

impl MemoryAccount {
    pub(crate) fn new(backend: BackendKind, limit: Option<u64>) -> MemoryAccount {
        MemoryAccount {
            backend,
            limit,
            held: AtomicU64::new(0),
        }
    }

    /// `DeviceConfig::memory_limit`.
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Accounts `bytes` more, or fails with [`BackendError::OutOfMemory`] and nothing
    /// accounted when that would pass the limit.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<(), BackendError> {
        let Some(limit) = self.limit else {
            self.held.fetch_add(bytes, Ordering::Relaxed);
            return Ok(());
        };
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&t| t <= limit)
            })
            .map(drop)
            .map_err(|held| BackendError::OutOfMemory {
                backend: self.backend,
                needed: bytes,
                available: limit.saturating_sub(held),
            })
    }

    /// Returns `bytes` to the account.
    pub(crate) fn release(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_stops_at_the_limit_with_nothing_accounted() {
        let a = MemoryAccount::new(BackendKind::Cpu, Some(100));
        a.reserve(60).unwrap();
        let err = a.reserve(41).unwrap_err();
        assert!(matches!(
            err,
            BackendError::OutOfMemory {
                needed: 41,
                available: 40,
                ..
            }
        ));
        assert_eq!(a.held(), 60);
        a.reserve(40).unwrap();
        a.release(100);
        assert_eq!(a.held(), 0);
        let unlimited = MemoryAccount::new(BackendKind::Cpu, None);
        unlimited.reserve(u64::MAX / 2).unwrap();
        assert_eq!(unlimited.held(), u64::MAX / 2);
    }
}
