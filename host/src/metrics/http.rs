//! The HTTP/1.1 side of the metrics server: read one request head, route it, write one
//! response with `Connection: close`, close.
//!
//! | request                          | response                                   |
//! |----------------------------------|--------------------------------------------|
//! | `GET /metrics` (or `HEAD`)       | 200, Prometheus text 0.0.4                 |
//! | `GET /metrics.json` (or `HEAD`)  | 200, `application/json` snapshot           |
//! | other method on those paths      | 405 with `Allow: GET, HEAD`                |
//! | any other path                   | 404                                        |
//! | a head that does not parse       | 400 (also when larger than [`MAX_HEAD`])    |
//! | no complete head within 5 s      | 408                                        |
//!
//! A query string is ignored (`/metrics?x=1` is `/metrics`). A request body, if any, is read
//! and dropped. After its response the server waits up to 1 s for the client to close (see
//! `linger`), so a client that keeps the connection open delays the next one by that much.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::prometheus::PROMETHEUS_CONTENT_TYPE;
use super::registry::Registry;

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Time a client has to take each part of the response off our hands.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads wait at most this long, so that a stop request is seen while a client is silent.
const READ_SLICE: Duration = Duration::from_millis(50);
/// Longest wait for a client to close after its response (see `linger`).
const LINGER: Duration = Duration::from_secs(1);
/// Most input dropped while waiting for a client to close.
const LINGER_BYTES: usize = 64 * 1024;

/// One response, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Whether to leave the body out (a `HEAD` request).
    pub head_only: bool,
}

impl Response {
    fn text(status: u16, body: String) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
            head_only: false,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Unknown",
    }
}

/// The parts of a request line the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
}

/// Why no request head was read.
enum HeadError {
    /// The client closed without sending anything: nothing to answer.
    Closed,
    /// The server is stopping.
    Stopping,
    TimedOut,
    Malformed(String),
}

/// Answers one connection, then closes it. Never panics on client behaviour; I/O errors
/// just end the connection.
pub(crate) fn serve_connection(mut stream: TcpStream, registry: &Registry, stopping: &AtomicBool) {
    // A listener in non-blocking mode may hand out non-blocking streams on some systems.
    if stream.set_nonblocking(false).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let response = match read_head(&mut stream, stopping) {
        Ok(head) => match parse_head(&head) {
            Ok(request) => route(request, registry),
            Err(message) => Response::text(400, format!("bad request: {message}\n")),
        },
        Err(HeadError::Closed | HeadError::Stopping) => return,
        Err(HeadError::TimedOut) => Response::text(
            408,
            format!("request timeout: no complete request head within {REQUEST_DEADLINE:?}\n"),
        ),
        Err(HeadError::Malformed(message)) => {
            Response::text(400, format!("bad request: {message}\n"))
        }
    };
    if write_response(&mut stream, &response).is_ok() && stream.shutdown(Shutdown::Write).is_ok() {
        linger(&mut stream, stopping);
    }
}

/// Reads and drops what the client still sends (a body, the rest of an oversized head) until
/// it closes, for at most [`LINGER`] and [`LINGER_BYTES`]: closing a socket with unread input
/// makes the OS send a reset, which can destroy the response before the client reads it.
fn linger(stream: &mut TcpStream, stopping: &AtomicBool) {
    let deadline = Instant::now() + LINGER;
    let mut chunk = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES && !stopping.load(Ordering::Acquire) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left.min(READ_SLICE))).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Reads up to the blank line that ends the head; returns the head without it.
fn read_head(stream: &mut TcpStream, stopping: &AtomicBool) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if stopping.load(Ordering::Acquire) {
            return Err(HeadError::Stopping);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut);
        }
        if stream.set_read_timeout(Some(left.min(READ_SLICE))).is_err() {
            return Err(HeadError::Closed);
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) if head.is_empty() => return Err(HeadError::Closed),
            Ok(0) => {
                return Err(HeadError::Malformed(
                    "connection closed before the end of the request head".to_owned(),
                ));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => return Err(HeadError::Closed),
        };
        let searched = head.len().saturating_sub(2);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head, searched) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::Malformed(format!(
                "request head larger than {MAX_HEAD} bytes"
            )));
        }
    }
}

/// Where the head ends: the index of the `\n` that starts the blank line (`\n\n` or
/// `\n\r\n`), looking from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find(|&i| {
        buf[i] == b'\n' && (buf.get(i + 1) == Some(&b'\n') || buf[i + 1..].starts_with(b"\r\n"))
    })
}

/// Parses a request head (without its blank line): `METHOD SP target SP HTTP/1.x`, then
/// `name: value` headers. Errors are lowercase messages for a 400 body.
pub(crate) fn parse_head(head: &[u8]) -> Result<Request<'_>, String> {
    let head = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8".to_owned())?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(format!(
            "request line {line:?} is not \"METHOD /path HTTP/1.1\" (three fields, single spaces)"
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "method {method:?} is not an upper-case token such as GET"
        ));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "request target {target:?} is not a path starting with '/'"
        ));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(format!("protocol {version:?} is not HTTP/1.1 or HTTP/1.0"));
    }
    for header in lines {
        let name = header.split_once(':').map(|(name, _)| name);
        let valid = name
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
        if !valid {
            return Err(format!("header line {header:?} is not \"Name: value\""));
        }
    }
    Ok(Request { method, target })
}

/// The response to a well-formed request.
pub(crate) fn route(request: Request<'_>, registry: &Registry) -> Response {
    let path = request
        .target
        .split_once('?')
        .map_or(request.target, |(path, _)| path);
    let head_only = request.method == "HEAD";
    match path {
        "/metrics" | "/metrics.json" if request.method != "GET" && !head_only => Response::text(
            405,
            format!(
                "method {} not allowed on {path}: use GET or HEAD\n",
                request.method
            ),
        ),
        "/metrics" => Response {
            status: 200,
            content_type: PROMETHEUS_CONTENT_TYPE,
            body: registry.prometheus_text(),
            head_only,
        },
        "/metrics.json" => {
            let mut body = registry.snapshot_json().to_string();
            body.push('\n');
            Response {
                status: 200,
                content_type: "application/json",
                body,
                head_only,
            }
        }
        _ => Response::text(
            404,
            format!("not found: {path}; try /metrics or /metrics.json\n"),
        ),
    }
}

fn write_response(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
    );
    if response.status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !response.head_only {
        stream.write_all(response.body.as_bytes())?;
    }
    stream.flush()
}
