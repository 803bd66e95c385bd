//! When a WAL's bytes are forced to the disk (SPEC §1.3).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::WalError;

/// `always` (the default): a batch is acknowledged only after its WAL bytes are fsynced.
/// `interval=<ms>`: acknowledged at once, fsynced at most `ms` later. `never`: left to the OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Acknowledge a batch only after its log bytes are fsynced.
    #[default]
    Always,
    /// Acknowledge at once; fsync at most this long after the first write not yet synced.
    Interval(Duration),
    /// Never fsync; the OS writes the log back when it chooses.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = WalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| WalError::InvalidSetting {
            field: "fsync",
            reason,
        };
        match s.trim() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => match other.strip_prefix("interval=") {
                Some(ms) => match ms.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
                    _ => Err(bad(format!(
                        "interval needs a positive number of milliseconds, got {ms:?}"
                    ))),
                },
                None => Err(bad(format!(
                    "expected always, interval=<ms> or never, got {other:?}"
                ))),
            },
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(d) => write!(f, "interval={}", d.as_millis()),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}
