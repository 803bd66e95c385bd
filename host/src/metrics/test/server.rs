//! Invariant: the metrics server answers real HTTP requests on loopback (`/metrics`,
//! `/metrics.json`, 404, 405, 400), names the address when it cannot listen, and `stop` or
//! drop ends its thread (the thread's registry handle is released), however often it is
//! started and stopped, also with a silent client connected.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::metrics::{MetricsError, MetricsServer, PROMETHEUS_CONTENT_TYPE, Registry};

/// A parsed response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is and reads until the server closes the connection.
fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("read the whole response");
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts.next().unwrap().parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("a header line");
            (n.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

fn sample_registry() -> Registry {
    let r = Registry::new();
    r.counter_with("warpgrid_ops_total", "Operations.", &[("table", "t")])
        .add(7);
    r.gauge("warpgrid_queue_depth", "Queue depth.").set(2.5);
    r.histogram("warpgrid_latency_ns", "Latency.").record(1_500);
    r
}

#[test]
fn serves_metrics_json_and_404_over_loopback() {
    let registry = sample_registry();
    let server = MetricsServer::start(registry.clone(), "127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let text = get(addr, "/metrics");
    assert_eq!(text.status, 200);
    assert_eq!(text.header("content-type"), Some(PROMETHEUS_CONTENT_TYPE));
    assert_eq!(text.header("connection"), Some("close"));
    assert_eq!(
        text.header("content-length"),
        Some(text.body.len().to_string().as_str())
    );
    assert_eq!(text.body, registry.prometheus_text());
    assert!(
        text.body.contains("warpgrid_ops_total{table=\"t\"} 7\n"),
        "{}",
        text.body
    );

    let json = get(addr, "/metrics.json?pretty=no");
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let value: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(value, registry.snapshot_json());

    let missing = get(addr, "/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("try /metrics"), "{}", missing.body);

    // Values change between scrapes.
    registry
        .counter_with("warpgrid_ops_total", "", &[("table", "t")])
        .inc();
    assert!(
        get(addr, "/metrics")
            .body
            .contains("warpgrid_ops_total{table=\"t\"} 8\n")
    );
    server.stop();
}

#[test]
fn answers_head_405_and_400() {
    let server = MetricsServer::start(sample_registry(), "127.0.0.1:0").unwrap();
    let addr = server.local_addr();

    let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_ne!(head.header("content-length"), Some("0"));

    let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    for bad in [
        &b"garbage\r\n\r\n"[..],
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"get /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x",
    ] {
        let reply = if bad.ends_with(b"\r\n\r\n") {
            exchange(addr, bad)
        } else {
            // A head cut short: the client closes its side, the server must answer 400.
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            stream.write_all(bad).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut raw = String::new();
            stream.read_to_string(&mut raw).unwrap();
            assert!(raw.starts_with("HTTP/1.1 400 "), "{raw}");
            continue;
        };
        assert_eq!(
            reply.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            reply.body
        );
        assert!(reply.body.starts_with("bad request: "), "{}", reply.body);
    }

    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    huge.extend(b"\r\n\r\n");
    assert_eq!(exchange(addr, &huge).status, 400);

    // Still serving after all that.
    assert_eq!(get(addr, "/metrics").status, 200);
    server.stop();
}

#[test]
fn start_and_stop_end_the_thread_each_time() {
    let registry = sample_registry();
    for _ in 0..4 {
        assert_eq!(registry.handle_count(), 1);
        let server = MetricsServer::start(registry.clone(), "127.0.0.1:0").unwrap();
        assert_eq!(
            registry.handle_count(),
            2,
            "the server thread holds a handle"
        );
        assert_eq!(get(server.local_addr(), "/metrics").status, 200);
        server.stop();
        assert_eq!(
            registry.handle_count(),
            1,
            "stop() returned before the thread ended"
        );
    }
    let server = MetricsServer::start(registry.clone(), "127.0.0.1:0").unwrap();
    drop(server);
    assert_eq!(registry.handle_count(), 1, "drop did not end the thread");
}

#[test]
fn stop_does_not_wait_for_a_silent_client() {
    let registry = sample_registry();
    let server = MetricsServer::start(registry.clone(), "127.0.0.1:0").unwrap();
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    silent.write_all(b"GET /metr").unwrap();
    // Give the server time to take the connection (not needed for correctness: stop must
    // end the thread whether or not it has accepted the client).
    std::thread::sleep(Duration::from_millis(100));
    server.stop();
    assert_eq!(registry.handle_count(), 1);
    // The silent client gets no response, just the end of the connection.
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn address_in_use_names_the_address() {
    let first = MetricsServer::start(Registry::new(), "127.0.0.1:0").unwrap();
    let addr = first.local_addr().to_string();
    let err = MetricsServer::start(Registry::new(), &addr).unwrap_err();
    assert!(matches!(err, MetricsError::Bind { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot listen on {addr}: address in use")),
        "{message}"
    );
    first.stop();
}

#[test]
fn invalid_address_names_the_address() {
    for bad in ["not an address", "127.0.0.1", "127.0.0.1:99999", ""] {
        let err = MetricsServer::start(Registry::new(), bad).unwrap_err();
        assert!(
            matches!(err, MetricsError::Address { .. }),
            "{bad:?}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("invalid metrics address {bad:?}: ")),
            "{message}"
        );
        assert!(
            message.ends_with("expected host:port, e.g. 127.0.0.1:9100"),
            "{message}"
        );
    }
}
