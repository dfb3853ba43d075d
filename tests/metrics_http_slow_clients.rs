//! The metrics listener (`--metrics`) against slow and odd HTTP clients:
//! clients that dribble their request head one line a second do not stop
//! `/healthz`, `/readyz` or `/metrics` from answering other clients; such a
//! client is closed at the whole-request deadline; past the cap on concurrent
//! connections a new one gets a quick 503; `HEAD` gets the headers and no
//! body; an LF-only request is answered; an oversize head is refused.
//!
//! The bounds mirror `router/src/metrics_http.rs` (the binary's constants
//! cannot be imported here): a 5 s deadline, 32 connections at once. Time
//! bounds are generous on purpose (a noisy 2-core machine): what they tell
//! apart is "answered at once" from "held until a slow client goes away".

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::FlitServer;

/// `REQUEST_DEADLINE_MS` in router/src/metrics_http.rs.
const REQUEST_DEADLINE: Duration = Duration::from_millis(5_000);
/// `CONNECTIONS_MAX` in router/src/metrics_http.rs.
const CONNECTIONS_MAX: usize = 32;
/// How long a probe may wait for its whole answer. A server that serves one
/// connection at a time behind a dribbling client would answer only after
/// that client is gone (at the deadline, 5 s, at best); one that serves
/// concurrently answers in milliseconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A slow client sends one header line this often.
const DRIBBLE_INTERVAL: Duration = Duration::from_secs(1);
/// A slow client gives up after this many header lines (the test must end
/// even against a server with no deadline).
const DRIBBLE_LINES_MAX: u32 = 25;

fn start() -> (FlitServer, SocketAddr) {
    let server = FlitServer::start(1, &["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics_address.expect("the ready line names the metrics address");
    (server, metrics)
}

/// An HTTP answer as read to the close.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }
}

/// Sends `request` as is and reads the answer to the close, all within
/// `PROBE_TIMEOUT`; an error says what went wrong instead of panicking, so
/// the assertion can name the request.
fn exchange(address: SocketAddr, request: &[u8]) -> Result<Answer, String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&address, PROBE_TIMEOUT).map_err(|error| format!("connect: {error}"))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(|error| error.to_string())?;
    stream.write_all(request).map_err(|error| format!("send: {error}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = PROBE_TIMEOUT.checked_sub(started.elapsed()).filter(|left| !left.is_zero());
        let Some(left) = left else {
            return Err(format!("no complete answer within {PROBE_TIMEOUT:?}; had {} bytes", response.len()));
        };
        stream.set_read_timeout(Some(left)).map_err(|error| error.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(format!("read after {} bytes: {error}", response.len())),
        }
    }
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {:?}", String::from_utf8_lossy(&response)))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    Ok(Answer { status, head, body })
}

/// `GET path`, answered within `PROBE_TIMEOUT`.
fn get(address: SocketAddr, path: &str) -> Result<Answer, String> {
    exchange(address, format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
}

/// A slowloris client: a request line, then one header line per
/// `DRIBBLE_INTERVAL`, never the blank line that ends the head.
struct Dribbler {
    /// A handle on the same socket, to watch for the server's close.
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Dribbler {
    fn start(address: SocketAddr) -> Dribbler {
        let mut writer = TcpStream::connect(address).expect("connect to the metrics listener");
        writer.write_all(b"GET /metrics HTTP/1.1\r\n").expect("send the request line");
        let stream = writer.try_clone().expect("clone the socket");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for line in 0..DRIBBLE_LINES_MAX {
                    // Sleep in short steps so dropping the dribbler is quick.
                    let woke = Instant::now();
                    while woke.elapsed() < DRIBBLE_INTERVAL {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if writer.write_all(format!("X-Dribble-{line}: 1\r\n").as_bytes()).is_err() {
                        return; // the server closed it
                    }
                }
            })
        };
        Dribbler { stream, stop, thread: Some(thread) }
    }
}

impl Drop for Dribbler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until the server has accepted `count` dribblers: they are queued in
/// the kernel before that, and a server that accepts them late would be
/// tested against fewer than meant. A connection is surely accepted once a
/// probe that was sent after it has been answered, or, for a sequential
/// server, never; so this only gives the accept loop a moment.
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn healthz_answers_while_one_client_dribbles_its_head() {
    let (_server, metrics) = start();
    let _slow = Dribbler::start(metrics);
    settle();
    let started = Instant::now();
    let answer = get(metrics, "/healthz").unwrap_or_else(|error| panic!("/healthz behind one slow client: {error}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, br#"{"status":"ok"}"#, "NATS's answer");
    assert!(started.elapsed() < PROBE_TIMEOUT);
}

#[test]
fn health_readiness_and_metrics_answer_while_many_clients_dribble() {
    let (_server, metrics) = start();
    // More slow clients than any one-at-a-time server could sit out within
    // a probe's timeout, and fewer than the cap.
    let _slow: Vec<Dribbler> = (0..8).map(|_| Dribbler::start(metrics)).collect();
    settle();
    for round in 0..3 {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let answer = get(metrics, path)
                .unwrap_or_else(|error| panic!("{path} in round {round} behind 8 slow clients: {error}"));
            assert_eq!(answer.status, 200, "{path}: {answer:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_client_that_dribbles_its_head_is_closed_at_the_deadline() {
    let (_server, metrics) = start();
    let started = Instant::now();
    let mut slow = Dribbler::start(metrics);
    // Longer than the deadline plus any slack a loaded machine needs, and far
    // shorter than the dribbler would go on (DRIBBLE_LINES_MAX seconds).
    let patience = REQUEST_DEADLINE * 3;
    slow.stream.set_read_timeout(Some(patience)).expect("timeout");
    let mut unexpected = Vec::new();
    let closed = loop {
        let mut chunk = [0u8; 1024];
        match slow.stream.read(&mut chunk) {
            // A 408 or nothing are both fine; then the close.
            Ok(0) => break true,
            Ok(read) => unexpected.extend_from_slice(&chunk[..read]),
            // Unread header lines in the server's buffer make its close a reset.
            Err(error) if matches!(error.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                break true
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    let held = started.elapsed();
    assert!(closed, "a client dribbling one header line a second was still open after {held:?}");
    assert!(held >= REQUEST_DEADLINE - Duration::from_millis(500), "closed before the deadline: {held:?}");
    assert!(held < patience, "{held:?}");
    let answer = String::from_utf8_lossy(&unexpected);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[test]
fn past_the_connection_cap_a_new_connection_gets_a_quick_503() {
    let (_server, metrics) = start();
    // Silent clients (a request line, then nothing) hold every slot.
    let holders: Vec<TcpStream> = (0..CONNECTIONS_MAX)
        .map(|_| {
            let mut stream = TcpStream::connect(metrics).expect("connect");
            stream.write_all(b"GET /metrics HTTP/1.1\r\n").expect("send");
            stream
        })
        .collect();
    // Connections are accepted in the order they were made, so this one
    // comes after all the holders. It sends nothing: the refusal must not
    // wait for a request.
    let mut extra = TcpStream::connect(metrics).expect("connect");
    extra.set_read_timeout(Some(PROBE_TIMEOUT)).expect("timeout");
    let mut refusal = String::new();
    let read = extra.read_to_string(&mut refusal);
    assert!(
        refusal.starts_with("HTTP/1.1 503"),
        "connection {} of {CONNECTIONS_MAX} allowed: {read:?} {refusal:?}",
        CONNECTIONS_MAX + 1
    );
    assert!(read.is_ok(), "the refusal ends with a close: {read:?}");
    // The holders are closed at their deadline, and the slots come back.
    let started = Instant::now();
    loop {
        match get(metrics, "/healthz") {
            Ok(answer) if answer.status == 200 => break,
            other => assert!(started.elapsed() < REQUEST_DEADLINE * 3, "slots never came back: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(holders);
}

#[test]
fn head_gives_the_headers_and_no_body() {
    let (_server, metrics) = start();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let request = format!("HEAD {path} HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n");
        let answer = exchange(metrics, request.as_bytes()).unwrap_or_else(|error| panic!("HEAD {path}: {error}"));
        assert_eq!(answer.status, 200, "HEAD {path}: {answer:?}");
        assert!(answer.body.is_empty(), "HEAD {path} sent a body: {answer:?}");
        let length: usize = answer
            .header("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("HEAD {path}: no Content-Length: {answer:?}"));
        // The length GET would send: exact where the body is fixed; the
        // metrics' values (and so their length) move between two scrapes.
        let get = get(metrics, path).unwrap_or_else(|error| panic!("GET {path}: {error}"));
        if path == "/metrics" {
            assert!(length > 1000 && get.body.len() > 1000, "{length} {}", get.body.len());
        } else {
            assert_eq!(length, get.body.len(), "HEAD {path}");
        }
    }
}

#[test]
fn an_lf_only_request_is_answered() {
    let (_server, metrics) = start();
    let answer = exchange(metrics, b"GET /healthz HTTP/1.1\n\n").unwrap_or_else(|error| panic!("LF only: {error}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, br#"{"status":"ok"}"#, "NATS's answer");
    let answer = exchange(metrics, b"GET /readyz HTTP/1.0\nHost: x\n\n").unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[test]
fn an_oversize_head_is_refused_and_closed() {
    let (_server, metrics) = start();
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    request.resize(12 * 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    let answer = exchange(metrics, &request).unwrap_or_else(|error| panic!("a 12 KiB head: {error}"));
    assert!(matches!(answer.status, 431 | 400), "{answer:?}");
}

#[test]
fn garbage_gets_400_and_the_endpoint_still_answers() {
    let (_server, metrics) = start();
    for garbage in [&b"\x00\xff\xfe\r\n\r\n"[..], b"GET\r\n\r\n", b"GET / HTTP/1.1 extra\r\n\r\n", b"\r\n\r\n"] {
        let answer = exchange(metrics, garbage).unwrap_or_else(|error| panic!("{garbage:?}: {error}"));
        assert_eq!(answer.status, 400, "{garbage:?}: {answer:?}");
    }
    assert_eq!(get(metrics, "/healthz").map(|answer| answer.status), Ok(200));
}
