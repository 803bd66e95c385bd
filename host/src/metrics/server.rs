//! [`MetricsServer`]: serves a [`Registry`] over HTTP on a background thread until stopped.
//!
//! One thread accepts and answers connections one at a time (a scrape is a few milliseconds
//! of work; see `metrics::http` for what is answered). The listener is non-blocking and the
//! thread sleeps [`ACCEPT_POLL`] when no client is waiting, so a stop is seen within that
//! time without waking the thread through the network. A client that sends nothing holds the
//! thread for at most the request deadline (5 s), and never delays a stop by more than a
//! poll slice; only a client that stops reading a large response can delay a stop, by at
//! most the write timeout (5 s).

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::error::MetricsError;
use super::http::serve_connection;
use super::registry::Registry;

/// How long the accept loop sleeps when no connection is waiting.
pub const ACCEPT_POLL: Duration = Duration::from_millis(25);

/// A running metrics endpoint. [`stop`](MetricsServer::stop) it, or drop it: both shut the
/// listener and join the thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (`host:port`; port 0 picks a free port, see
    /// [`local_addr`](Self::local_addr)) and serves `registry` from a background thread.
    ///
    /// # Errors
    ///
    /// [`MetricsError::Address`] when `addr` does not parse or resolve,
    /// [`MetricsError::Bind`] when it cannot be listened on (in use, not local, privileged),
    /// [`MetricsError::Io`] when the listener or thread cannot be set up.
    pub fn start(registry: Registry, addr: &str) -> Result<MetricsServer, MetricsError> {
        let candidates: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| MetricsError::Address {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if candidates.is_empty() {
            return Err(MetricsError::Address {
                addr: addr.to_owned(),
                reason: "it resolves to no address".to_owned(),
            });
        }
        let listener =
            TcpListener::bind(&candidates[..]).map_err(|e| MetricsError::bind(addr, e))?;
        let io_error = |what: &'static str| {
            move |source: io::Error| MetricsError::Io {
                addr: addr.to_owned(),
                what,
                source,
            }
        };
        let local = listener
            .local_addr()
            .map_err(io_error("cannot read the bound address"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_error("cannot make the listener non-blocking"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopping);
        let thread = thread::Builder::new()
            .name("warpgrid-metrics".to_owned())
            .spawn(move || accept_loop(&listener, &registry, &flag))
            .map_err(io_error("cannot start the server thread"))?;
        Ok(MetricsServer {
            addr: local,
            stopping,
            thread: Some(thread),
        })
    }

    /// The address listened on (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes the listener and waits for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // The thread only ends with an error if answering a request panicked; there is
            // nothing left to clean up either way.
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: &TcpListener, registry: &Registry, stopping: &AtomicBool) {
    while !stopping.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _peer)) => serve_connection(stream, registry, stopping),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock: nobody waiting. Anything else (out of file descriptors, a
            // connection reset before accept) is transient for a listener: wait and retry.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}
