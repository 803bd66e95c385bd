//! [`MetricsError`]: why the metrics server could not start.

use std::io;

/// Why [`MetricsServer::start`](super::MetricsServer::start) failed. Every message names the
/// address it was given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The address does not parse or resolve.
    #[error("invalid metrics address {addr:?}: {reason}; expected host:port, e.g. 127.0.0.1:9100")]
    Address {
        /// The address given.
        addr: String,
        /// Why it does not parse or resolve.
        reason: String,
    },
    /// The address is valid but cannot be listened on.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address given.
        addr: String,
        /// A short cause with a fix where one is known ("address in use ...").
        reason: String,
        /// The I/O error of the bind.
        #[source]
        source: io::Error,
    },
    /// Setting up the listener or its thread failed after binding.
    #[error("metrics server on {addr}: {what}: {source}")]
    Io {
        /// The address given.
        addr: String,
        /// The step that failed (setting the listener non-blocking, spawning the thread, ...).
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl MetricsError {
    /// A [`MetricsError::Bind`] whose reason says what the OS error means here.
    pub(crate) fn bind(addr: &str, source: io::Error) -> Self {
        let reason = match source.kind() {
            io::ErrorKind::AddrInUse => "address in use (something already listens on that \
                                         port; pick another, or port 0 for any free one)"
                .to_owned(),
            io::ErrorKind::AddrNotAvailable => {
                "address not available (no interface of this machine has it)".to_owned()
            }
            io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges)".to_owned()
            }
            _ => source.to_string(),
        };
        MetricsError::Bind {
            addr: addr.to_owned(),
            reason,
            source,
        }
    }
}
