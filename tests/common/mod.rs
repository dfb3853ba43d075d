//! Shared helpers for the integration tests: start the real `flit` binary on
//! 127.0.0.1:0, wait for its ready line, connect clients to a chosen shard,
//! and speak raw frames for the malformed-input tests.
//!
//! Every wait here is bounded; a server left running is killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flit_client::{Client, Options};
use flit_wire::{check, decode, Check, Encoder, Frame, Hello, Limits, PROTOCOL_VERSION};

/// A `flit serve` process.
pub struct FlitServer {
    child: Option<Child>,
    pub address: SocketAddr,
    pub shards: usize,
    /// The metrics listener, when `--metrics` was given.
    pub metrics_address: Option<SocketAddr>,
    /// The NATS listener, when `--nats-listen` was given.
    pub nats_address: Option<SocketAddr>,
    /// The route listener, when `--cluster-listen` was given.
    pub cluster_address: Option<SocketAddr>,
}

impl FlitServer {
    /// Starts `flit serve` with `shards` shards, JSON logs (see
    /// [`log_events`]) and any extra flags.
    pub fn start(shards: usize, extra_arguments: &[&str]) -> FlitServer {
        FlitServer::start_under(&[], shards, extra_arguments)
    }

    /// As [`FlitServer::start`], run through a wrapper command (e.g.
    /// `prlimit --nofile=40:40`); `wrapper` empty runs flit directly.
    pub fn start_under(wrapper: &[&str], shards: usize, extra_arguments: &[&str]) -> FlitServer {
        let mut command = match wrapper.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_flit")),
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(env!("CARGO_BIN_EXE_flit"));
                command
            }
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--shards", &shards.to_string(), "--no-pin"])
            .args(["--log-format", "json"])
            .args(extra_arguments)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flit");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read ready line");
        let prefix = "flit ready listen=";
        assert!(line.starts_with(prefix), "unexpected first line: {line:?}");
        let mut fields = line[prefix.len()..].split_whitespace();
        let address: SocketAddr = fields.next().expect("address").parse().expect("a socket address");
        assert_eq!(fields.next(), Some(format!("shards={shards}").as_str()));
        // The rest are `name=value` fields, some optional (metrics, nats).
        let rest: Vec<&str> = fields.collect();
        let field = |name: &str| rest.iter().find_map(|field| field.strip_prefix(name));
        let metrics_address = field("metrics=").map(|address| address.parse().expect("a metrics socket address"));
        let nats_address = field("nats=").map(|address| address.parse().expect("a NATS socket address"));
        let cluster_address = field("cluster=").map(|address| address.parse().expect("a route socket address"));
        FlitServer { child: Some(child), address, shards, metrics_address, nats_address, cluster_address }
    }

    /// A client connected with default options.
    pub fn client(&self) -> Client {
        Client::connect(self.address).expect("connect")
    }

    /// A client whose connection landed on `shard` (the kernel spreads
    /// connections over the shards' listeners by hash; retry until it fits).
    pub fn client_on_shard(&self, shard: usize) -> Client {
        self.connect_on_shard(shard, Options::default())
    }

    fn connect_on_shard(&self, shard: usize, options: Options) -> Client {
        for _ in 0..500 {
            let client = Client::connect_with(self.address, options.clone()).expect("connect");
            if usize::from(client.welcome().shard) == shard {
                return client;
            }
        }
        panic!("no connection landed on shard {shard} in 500 tries");
    }

    /// A client in ack mode.
    pub fn ack_client(&self) -> Client {
        Client::connect_with(self.address, Options { ack_mode: true, ..Options::default() }).expect("connect")
    }

    /// Sends SIGTERM and waits for exit; returns (exit code, stderr).
    pub fn stop(self) -> (Option<i32>, String) {
        self.terminate();
        self.wait()
    }

    /// Sends SIGTERM and returns at once: the server begins to drain.
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits (at most 20 s) for the process to exit; returns (exit code, stderr).
    pub fn wait(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut stderr = String::new();
                child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
                return (status.code(), stderr);
            }
            assert!(Instant::now() < deadline, "flit did not exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FlitServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET path` from an HTTP server; returns (status code, body). Bounded by a
/// five-second timeout. HTTP/1.0, so that no server (nats-server's Go one
/// included) answers in chunks.
pub fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics listener");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    (status, body.to_string())
}

/// Scrapes `/metrics` and parses it with a Prometheus text parser.
pub fn scrape(address: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http_get(address, "/metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_string()))).expect("valid Prometheus text")
}

/// The sum over every sample of `metric` whose labels include `labels`.
pub fn metric_sum(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let mut found = false;
    let total = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| labels.iter().all(|(name, value)| sample.labels.get(name) == Some(*value)))
        .map(|sample| {
            found = true;
            match &sample.value {
                prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value)
                | prometheus_parse::Value::Untyped(value) => *value,
                other => panic!("{metric} is not a number: {other:?}"),
            }
        })
        .sum();
    assert!(found, "no sample of {metric} with {labels:?}");
    total
}

/// Every line of a JSON log (`--log-format json`), parsed; panics on a line
/// that is not one JSON object.
pub fn log_events(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|error| panic!("log line is not JSON ({error}): {line:?}"));
            assert!(event.is_object(), "log line is not a JSON object: {line:?}");
            event
        })
        .collect()
}

/// The `shard stopped` events of a JSON log: (shard, counters line).
pub fn shard_stopped_events(stderr: &str) -> Vec<(u64, String)> {
    log_events(stderr)
        .into_iter()
        .filter(|event| event["message"] == "shard stopped")
        .map(|event| {
            let shard = event["shard"].as_u64().unwrap_or_else(|| panic!("no shard in {event}"));
            let stats = event["stats"].as_str().unwrap_or_else(|| panic!("no stats in {event}")).to_string();
            (shard, stats)
        })
        .collect()
}

/// Shard counts every behaviour is tested with.
pub const SHARD_COUNTS: [usize; 2] = [1, 2];

/// Waits up to five seconds for the next message.
pub fn next_message(subscription: &flit_client::Subscription) -> flit_client::Message {
    subscription.next_timeout(Duration::from_secs(5)).expect("subscription open").expect("a message within 5 s")
}

/// Asserts nothing arrives for a short while.
pub fn assert_no_message(subscription: &flit_client::Subscription) {
    let extra = subscription.next_timeout(Duration::from_millis(200)).expect("subscription open");
    assert!(extra.is_none(), "unexpected message: {extra:?}");
}

/// A raw TCP connection that has done the handshake by hand.
pub struct RawConnection {
    pub stream: TcpStream,
    buffer: BytesMut,
}

impl RawConnection {
    pub fn connect(address: SocketAddr) -> RawConnection {
        RawConnection::connect_with_welcome(address).0
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next frame, or None once the server has closed the connection.
    pub fn read_frame(&mut self) -> Option<Frame> {
        self.next_frame(false)
    }

    /// Like [`RawConnection::read_frame`], but a read error or timeout ends
    /// the stream (None) instead of failing the test.
    pub fn read_frame_lenient(&mut self) -> Option<Frame> {
        self.next_frame(true)
    }

    fn next_frame(&mut self, lenient: bool) -> Option<Frame> {
        let limits = Limits::default();
        loop {
            match check(&self.buffer, limits.frame_bytes_max()) {
                Check::Complete(length) => {
                    let frame = self.buffer.split_to(length).freeze();
                    return Some(decode(frame, &limits).expect("server frames decode"));
                }
                Check::Invalid(error) => panic!("server sent an invalid frame: {error}"),
                Check::Incomplete => {}
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error) if lenient || error.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    /// A connection over an already connected stream, without a handshake.
    pub fn from_stream(stream: TcpStream) -> RawConnection {
        RawConnection { stream, buffer: BytesMut::new() }
    }

    /// Reads until an Error frame; asserts the server then closes. Returns the code.
    pub fn expect_error_then_close(&mut self) -> u16 {
        loop {
            match self.read_frame() {
                Some(Frame::Error(error)) => {
                    assert!(self.read_frame().is_none(), "the server must close after an Error frame");
                    return error.code;
                }
                Some(_) => continue,
                None => panic!("connection closed without an Error frame"),
            }
        }
    }
}

/// Raw connections on a chosen shard, without a handshake, and with a
/// subscription made visible everywhere (for the malformed-input,
/// slow-consumer and shutdown tests).
impl RawConnection {
    /// A raw connection that has done the handshake and landed on `shard`.
    pub fn connect_on_shard(address: SocketAddr, shard: usize) -> RawConnection {
        for _ in 0..500 {
            let (connection, welcome) = RawConnection::connect_with_welcome(address);
            if usize::from(welcome.shard) == shard {
                return connection;
            }
        }
        panic!("no raw connection landed on shard {shard} in 500 tries");
    }

    /// A raw connection and the Welcome the server answered with.
    pub fn connect_with_welcome(address: SocketAddr) -> (RawConnection, flit_wire::Welcome) {
        let mut connection = RawConnection::connect_without_hello(address);
        let mut hello = BytesMut::new();
        Encoder::default()
            .hello(
                &mut hello,
                &Hello {
                    version_min: PROTOCOL_VERSION,
                    version_max: PROTOCOL_VERSION,
                    client_name: Some("raw-test".into()),
                    auth_token: None,
                    ack_mode: false,
                },
            )
            .expect("encode hello");
        connection.send(&hello);
        match connection.read_frame() {
            Some(Frame::Welcome(welcome)) => (connection, welcome),
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// A TCP connection that has sent nothing yet (no Hello).
    pub fn connect_without_hello(address: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        RawConnection { stream, buffer: BytesMut::new() }
    }

    /// Subscribes to `pattern` as `subscription_id`, then pings and waits for
    /// the Pong, after which the subscription is visible on every shard.
    pub fn subscribe_and_flush(&mut self, pattern: &str, subscription_id: u64) {
        let mut frames = BytesMut::new();
        Encoder::default().subscribe(&mut frames, pattern.as_bytes(), None, subscription_id).expect("encode subscribe");
        Encoder::bare(&mut frames, flit_wire::Op::Ping);
        self.send(&frames);
        match self.read_frame() {
            Some(Frame::Pong) => {}
            other => panic!("expected Pong after subscribing, got {other:?}"),
        }
    }
}

impl FlitServer {
    /// A client in ack mode whose connection landed on `shard`.
    pub fn ack_client_on_shard(&self, shard: usize) -> Client {
        self.connect_on_shard(shard, Options { ack_mode: true, ..Options::default() })
    }
}
