//! Hostile input on the NATS listener: random bytes, an endless control
//! line, payload sizes that lie (too long, too short, over the limit), input
//! one byte at a time, thousands of ops in one write, and a subscriber that
//! stops reading. Each bad client gets nats-server's `-ERR` and a close (or,
//! a slow consumer, a reset), and a well-behaved client on the same router
//! notices nothing: its messages keep flowing throughout.

mod common;
mod nats_support;

use std::net::SocketAddr;
use std::time::Duration;

use common::FlitServer;
use nats_support::RawNats;

const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn start(extra: &[&str]) -> (FlitServer, SocketAddr) {
    let mut arguments = vec!["--nats-listen", "127.0.0.1:0"];
    arguments.extend_from_slice(extra);
    let server = FlitServer::start(2, &arguments);
    let address = server.nats_address.expect("a NATS listener");
    (server, address)
}

/// A subscriber and a publisher that keep working while others misbehave.
struct Bystanders {
    subscriber: RawNats,
    publisher: RawNats,
    sent: u32,
}

impl Bystanders {
    fn new(address: SocketAddr) -> Bystanders {
        let mut subscriber = RawNats::connect_with(address, r#"{"verbose":false}"#);
        subscriber.send(b"SUB calm 1\r\n");
        subscriber.round_trip();
        let publisher = RawNats::connect_with(address, r#"{"verbose":false}"#);
        Bystanders { subscriber, publisher, sent: 0 }
    }

    /// One message from the publisher reaches the subscriber, in order.
    fn still_served(&mut self) {
        self.sent += 1;
        let payload = self.sent.to_string();
        self.publisher.send(format!("PUB calm {}\r\n{payload}\r\n", payload.len()).as_bytes());
        assert!(self.publisher.round_trip().is_empty());
        let (line, bytes) = self.subscriber.delivery();
        assert_eq!(line, format!("MSG calm 1 {}", payload.len()));
        assert_eq!(bytes, payload.as_bytes());
    }
}

#[test]
fn random_bytes_get_unknown_protocol_operation_and_a_close() {
    let (_server, address) = start(&[]);
    let mut bystanders = Bystanders::new(address);
    let mut generator: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..20 {
        let mut garbage = Vec::new();
        for _ in 0..(64 + round * 37) {
            generator ^= generator << 13;
            generator ^= generator >> 7;
            generator ^= generator << 17;
            garbage.push((generator >> 24) as u8);
        }
        // Not an op name: the first byte decides at once.
        garbage[0] = b'#';
        let mut hostile = RawNats::connect(address);
        hostile.send(&garbage);
        let lines = hostile.lines_until_closed(CLOSE_WAIT);
        assert_eq!(lines, vec!["-ERR 'Unknown Protocol Operation'".to_string()], "round {round}");
        bystanders.still_served();
    }
}

#[test]
fn an_endless_control_line_is_cut_off_at_the_limit() {
    let (_server, address) = start(&[]);
    let mut bystanders = Bystanders::new(address);
    let mut hostile = RawNats::connect(address);
    hostile.send(b"PUB ");
    let endless = vec![b'a'; 64 * 1024];
    // The server closes once it has seen too much; a write after that may
    // fail, which is the point.
    let _ = std::io::Write::write_all(&mut hostile.stream, &endless);
    let lines = hostile.lines_until_closed(CLOSE_WAIT);
    assert_eq!(lines, vec!["-ERR 'maximum control line exceeded'".to_string()]);
    bystanders.still_served();
}

#[test]
fn payload_sizes_that_lie_are_caught() {
    let (_server, address) = start(&["--max-payload", "4096", "--frame-timeout-ms", "500"]);
    let mut bystanders = Bystanders::new(address);
    // More bytes than announced: no CRLF where the payload should end.
    let mut longer = RawNats::connect_with(address, r#"{"verbose":false}"#);
    longer.send(b"PUB a 5\r\nhello, and then some\r\n");
    assert_eq!(longer.lines_until_closed(CLOSE_WAIT), vec!["-ERR 'Unknown Protocol Operation'".to_string()]);
    bystanders.still_served();
    // Over the limit: refused from the control line alone, before the
    // payload (never allocated) is waited for.
    let mut huge = RawNats::connect_with(address, r#"{"verbose":false}"#);
    huge.send(b"PUB a 999999999\r\n");
    assert_eq!(huge.lines_until_closed(CLOSE_WAIT), vec!["-ERR 'Maximum Payload Violation'".to_string()]);
    bystanders.still_served();
    // Fewer bytes than announced, then silence: the op never completes and
    // the stalled-op timeout closes the connection.
    let mut shorter = RawNats::connect_with(address, r#"{"verbose":false}"#);
    shorter.send(b"PUB a 100\r\nhi\r\n");
    assert_eq!(shorter.lines_until_closed(CLOSE_WAIT), vec!["-ERR 'Stale Connection'".to_string()]);
    bystanders.still_served();
}

#[test]
fn ops_split_into_single_bytes_work_as_if_written_at_once() {
    let (_server, address) = start(&[]);
    let mut client = RawNats::connect(address);
    let script = b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB s.* q1 42\r\n\
HPUB s.x r.y 18 21\r\nNATS/1.0\r\nK: v\r\n\r\nabc\r\nPUB s.z 2\r\nhi\r\nPING\r\n";
    for byte in script {
        client.send(&[*byte]);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(client.line(), "HMSG s.x 42 r.y 18 21");
    assert_eq!(client.payload(21), b"NATS/1.0\r\nK: v\r\n\r\nabc");
    assert_eq!(client.line(), "MSG s.z 42 2");
    assert_eq!(client.payload(2), b"hi");
    assert_eq!(client.line(), "PONG");
}

#[test]
fn thousands_of_pipelined_ops_in_one_write_arrive_in_order() {
    let (_server, address) = start(&[]);
    let mut subscriber = RawNats::connect_with(address, r#"{"verbose":false}"#);
    subscriber.send(b"SUB burst 1\r\n");
    subscriber.round_trip();
    let mut publisher = RawNats::connect(address);
    let count = 5000;
    let mut script = b"CONNECT {\"verbose\":false}\r\n".to_vec();
    for number in 0..count {
        let payload = number.to_string();
        script.extend_from_slice(format!("PUB burst {}\r\n{payload}\r\n", payload.len()).as_bytes());
    }
    script.extend_from_slice(b"PING\r\n");
    publisher.send(&script);
    publisher.expect_pong();
    for number in 0..count {
        let (line, payload) = subscriber.delivery();
        assert!(line.starts_with("MSG burst 1 "), "{line}");
        assert_eq!(payload, number.to_string().as_bytes(), "in publish order");
    }
    assert!(subscriber.round_trip().is_empty());
}

#[test]
fn a_subscriber_that_stops_reading_is_cut_off_and_others_go_on() {
    let (_server, address) = start(&["--pending-bytes-max", "2097152"]);
    let mut bystanders = Bystanders::new(address);
    let mut stalled = RawNats::connect_with(address, r#"{"verbose":false}"#);
    stalled.send(b"SUB flood 1\r\n");
    stalled.round_trip();
    let mut flooder = RawNats::connect_with(address, r#"{"verbose":false}"#);
    let payload = vec![b'x'; 16 * 1024];
    let mut op = format!("PUB flood {}\r\n", payload.len()).into_bytes();
    op.extend_from_slice(&payload);
    op.extend_from_slice(b"\r\n");
    // 64 MiB offered to a subscriber that reads nothing: far past what the
    // socket buffers and pending_bytes_max hold.
    for _ in 0..4096 {
        flooder.send(&op);
    }
    assert!(flooder.round_trip().is_empty(), "the publisher is not held back");
    bystanders.still_served();
    // The stalled subscriber's connection is gone: reading it now ends in a
    // reset or an end of file after at most what the buffers held.
    let mut drained = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    stalled.stream.set_read_timeout(Some(CLOSE_WAIT)).expect("timeout");
    loop {
        match std::io::Read::read(&mut stalled.stream, &mut chunk) {
            Ok(0) => break,
            Ok(read) => drained += read,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!("the evicted subscriber should be closed, got {error} after {drained} bytes"),
        }
    }
    assert!(drained < 64 << 20, "only what the socket buffers held arrived: {drained} bytes");
}
