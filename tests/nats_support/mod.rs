//! A raw NATS-protocol connection for the NATS listener's tests: bytes in,
//! lines out, every read bounded by a timeout, so the tests can check the
//! exact text flit writes (the real NATS clients' suites check behaviour;
//! these check the wire).
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a read waits for something that should come at once.
pub const READ_WAIT: Duration = Duration::from_secs(5);

pub struct RawNats {
    pub stream: TcpStream,
    buffer: Vec<u8>,
    /// INFO's JSON, parsed.
    pub info: serde_json::Value,
}

impl RawNats {
    /// Connects and reads INFO; sends nothing.
    pub fn connect(address: SocketAddr) -> RawNats {
        let stream = TcpStream::connect(address).expect("connect to the NATS listener");
        stream.set_nodelay(true).expect("nodelay");
        let mut raw = RawNats { stream, buffer: Vec::new(), info: serde_json::Value::Null };
        let line = raw.line();
        let json = line.strip_prefix("INFO ").unwrap_or_else(|| panic!("the first line is INFO, got {line:?}"));
        raw.info = serde_json::from_str(json).expect("INFO carries JSON");
        raw
    }

    /// Connects, sends CONNECT with `options` (JSON) and a PING, and waits
    /// for the PONG (skipping +OK when verbose).
    pub fn connect_with(address: SocketAddr, options: &str) -> RawNats {
        let mut raw = RawNats::connect(address);
        raw.send(format!("CONNECT {options}\r\nPING\r\n").as_bytes());
        raw.expect_pong();
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next line, without its CRLF (panics after `READ_WAIT`).
    pub fn line(&mut self) -> String {
        self.try_line(READ_WAIT).unwrap_or_else(|reason| panic!("no line within {READ_WAIT:?}: {reason}"))
    }

    /// The next line, or why none came within `wait` ("closed", "timeout").
    pub fn try_line(&mut self, wait: Duration) -> Result<String, String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    /// Exactly `length` bytes and the CRLF after them (a MSG payload).
    pub fn payload(&mut self, length: usize) -> Vec<u8> {
        let deadline = Instant::now() + READ_WAIT;
        while self.buffer.len() < length + 2 {
            self.fill(deadline).unwrap_or_else(|reason| panic!("payload of {length} bytes: {reason}"));
        }
        let payload = self.buffer[..length].to_vec();
        assert_eq!(&self.buffer[length..length + 2], b"\r\n", "a payload ends with CRLF");
        self.buffer.drain(..length + 2);
        payload
    }

    fn fill(&mut self, deadline: Instant) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".to_string());
        }
        self.stream.set_read_timeout(Some(left)).expect("timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("closed".to_string()),
            Ok(read) => {
                self.buffer.extend_from_slice(&chunk[..read]);
                Ok(())
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err("timeout".to_string())
            }
            Err(error) => Err(format!("closed ({error})")),
        }
    }

    /// Reads lines until PONG; +OK lines are skipped, anything else fails.
    pub fn expect_pong(&mut self) {
        loop {
            match self.line().as_str() {
                "PONG" => return,
                "+OK" => continue,
                other => panic!("expected PONG, got {other:?}"),
            }
        }
    }

    /// Sends PING and reads until PONG, returning the MSG/HMSG deliveries
    /// that came before it as (control line, payload).
    pub fn round_trip(&mut self) -> Vec<(String, Vec<u8>)> {
        self.send(b"PING\r\n");
        let mut deliveries = Vec::new();
        loop {
            let line = self.line();
            if line == "PONG" {
                return deliveries;
            }
            if line == "+OK" {
                continue;
            }
            let length = delivery_length(&line).unwrap_or_else(|| panic!("unexpected line {line:?}"));
            let payload = self.payload(length);
            deliveries.push((line, payload));
        }
    }

    /// The next MSG or HMSG: (control line, bytes after it).
    pub fn delivery(&mut self) -> (String, Vec<u8>) {
        loop {
            let line = self.line();
            if line == "+OK" || line == "PING" {
                if line == "PING" {
                    self.send(b"PONG\r\n");
                }
                continue;
            }
            let length = delivery_length(&line).unwrap_or_else(|| panic!("expected a delivery, got {line:?}"));
            return (line.clone(), self.payload(length));
        }
    }

    /// Reads until the server closes the connection (or `wait` passes);
    /// returns every line seen. Panics if it stays open.
    pub fn lines_until_closed(&mut self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut lines = Vec::new();
        loop {
            match self.try_line(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => lines.push(line),
                Err(reason) if reason.starts_with("closed") => return lines,
                Err(reason) => panic!("the connection did not close within {wait:?} ({reason}); lines: {lines:?}"),
            }
        }
    }
}

/// The byte count a MSG or HMSG control line announces (the last argument).
pub fn delivery_length(line: &str) -> Option<usize> {
    if !line.starts_with("MSG ") && !line.starts_with("HMSG ") {
        return None;
    }
    line.rsplit(' ').next()?.parse().ok()
}
