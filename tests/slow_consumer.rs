//! A subscriber that stops reading is evicted once more than
//! `pending_bytes_max` bytes are queued for it, and nobody else notices.
//!
//! The slow subscriber is a raw connection that subscribes, waits for the
//! Pong, and then reads nothing while 20,000 messages of 1 KiB (about 20 MiB,
//! well past the socket buffers and the 1 MiB limit) are published. Good
//! subscribers on every shard, one of them on the slow subscriber's shard,
//! must receive every message in order. When the slow subscriber finally
//! reads, it may find Deliver frames already handed to the kernel and an
//! Error frame with code 300 (SlowConsumer), and then the connection must be
//! closed. The counters printed at shutdown must show the eviction.
//!
//! Both tests run twice: with payloads copied into the write buffer (the
//! default for 1 KiB) and with every payload queued by reference and sent in
//! vectored sends (`--splice-payload-bytes-min 1`), where a frame's head and
//! its payload are separate pieces that a short send or an eviction may cut
//! between.

mod common;

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{FlitServer, RawConnection, SHARD_COUNTS};
use flit_wire::{check, decode, Check, ErrorCode, Frame, Limits};

const MESSAGES: u64 = 20_000;
const PAYLOAD_BYTES: usize = 1024;
const PAYLOAD_BYTES_MAX: usize = 65_536;
const PENDING_BYTES_MAX: usize = 1024 * 1024;
/// The limit must hold at least one whole largest frame (16 + 65535 + payload).
const _: () = assert!(PENDING_BYTES_MAX >= 16 + 65_535 + PAYLOAD_BYTES_MAX);
const _: () = assert!(MESSAGES as usize * PAYLOAD_BYTES > 8 * PENDING_BYTES_MAX);
/// Most bytes read back from the slow subscriber before giving up.
const SLOW_READ_BYTES_MAX: usize = 64 * 1024 * 1024;
/// How long the slow subscriber may stay open once it starts reading.
const SLOW_CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// Every case to run: (a label, the server's arguments, shards), for each
/// way of queueing a payload and each shard count.
fn cases() -> Vec<(String, Vec<&'static str>, usize)> {
    let base = vec!["--max-payload", "65536", "--pending-bytes-max", "1048576"];
    let spliced = [base.clone(), vec!["--splice-payload-bytes-min", "1"]].concat();
    let mut cases = Vec::new();
    for (path, arguments) in [("copied", base), ("spliced", spliced)] {
        for shards in SHARD_COUNTS {
            cases.push((format!("{path}, {shards}"), arguments.clone(), shards));
        }
    }
    cases
}

fn payload(index: u64) -> Vec<u8> {
    let mut payload = vec![b'x'; PAYLOAD_BYTES];
    payload[..8].copy_from_slice(&index.to_le_bytes());
    payload
}

/// Reads until the server closes (EOF or reset); panics if it is still open
/// after `SLOW_CLOSE_WITHIN` or sends more than `SLOW_READ_BYTES_MAX`.
fn read_until_closed(connection: &mut RawConnection) -> Vec<u8> {
    connection.stream.set_read_timeout(Some(Duration::from_millis(500))).expect("read timeout");
    let deadline = Instant::now() + SLOW_CLOSE_WITHIN;
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match connection.stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return received,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => panic!("reading the slow subscriber failed: {error}"),
        }
        assert!(
            received.len() <= SLOW_READ_BYTES_MAX,
            "the slow subscriber was sent more than {SLOW_READ_BYTES_MAX} bytes"
        );
        assert!(
            Instant::now() < deadline,
            "the slow subscriber is still open {SLOW_CLOSE_WITHIN:?} after it started reading ({} bytes read)",
            received.len()
        );
    }
}

/// What the slow subscriber found on its socket.
struct SlowStream {
    delivered: u64,
    error_code: Option<u16>,
    /// Bytes of an unfinished frame at the end of the stream.
    truncated_tail_bytes: usize,
    /// An Error frame found inside that unfinished frame, ending the stream:
    /// (its offset in the stream, its code). The server wrote it after part
    /// of a Deliver frame, so no client can decode it.
    spliced_error: Option<(usize, u16)>,
    /// Bytes that are no valid frame, described; parsing stopped there.
    corruption: Option<String>,
}

/// A whole Error frame that ends `tail` at some offset inside it.
fn error_frame_ending(tail: &[u8], limits: &Limits) -> Option<(usize, u16)> {
    (1..tail.len()).find_map(|offset| {
        let candidate = &tail[offset..];
        if check(candidate, limits.frame_bytes_max()) != Check::Complete(candidate.len()) {
            return None;
        }
        match decode(Bytes::copy_from_slice(candidate), limits) {
            Ok(Frame::Error(error)) => Some((offset, error.code)),
            _ => None,
        }
    })
}

/// Splits the bytes into frames. Deliver frames must be consecutive messages
/// from 0; at most one Error frame, and nothing whole after it.
fn parse_slow_stream(bytes: &[u8], shards: usize) -> SlowStream {
    let limits = Limits { payload_bytes_max: PAYLOAD_BYTES_MAX };
    let mut rest = Bytes::copy_from_slice(bytes);
    let mut stream =
        SlowStream { delivered: 0, error_code: None, truncated_tail_bytes: 0, spliced_error: None, corruption: None };
    loop {
        let offset = bytes.len() - rest.len();
        let length = match check(&rest, limits.frame_bytes_max()) {
            Check::Complete(length) => length,
            Check::Incomplete => {
                stream.truncated_tail_bytes = rest.len();
                stream.spliced_error =
                    error_frame_ending(&rest, &limits).map(|(offset_in_tail, code)| (offset + offset_in_tail, code));
                return stream;
            }
            Check::Invalid(error) => {
                stream.corruption = Some(format!(
                    "shards={shards}: corrupt stream: bytes {offset}.. of {} (after {} whole Deliver frames) are no \
                     frame: {error}; they read {:?}",
                    bytes.len(),
                    stream.delivered,
                    String::from_utf8_lossy(&rest[..rest.len().min(32)])
                ));
                return stream;
            }
        };
        let frame = match decode(rest.split_to(length), &limits) {
            Ok(frame) => frame,
            Err(error) => {
                stream.corruption = Some(format!(
                    "shards={shards}: corrupt stream: the frame at byte {offset} (after {} Deliver frames) does not \
                     decode: {error}",
                    stream.delivered
                ));
                return stream;
            }
        };
        assert!(stream.error_code.is_none(), "shards={shards}: a frame followed the Error frame: {frame:?}");
        match frame {
            Frame::Deliver(deliver) => {
                let expected = payload(stream.delivered);
                if deliver.payload != expected {
                    stream.corruption = Some(format!(
                        "shards={shards}: the Deliver frame at byte {offset} should carry message {} (1 KiB) but \
                         carries {} bytes: {:?}",
                        stream.delivered,
                        deliver.payload.len(),
                        String::from_utf8_lossy(&deliver.payload[deliver.payload.len().saturating_sub(48)..])
                    ));
                    return stream;
                }
                stream.delivered += 1;
            }
            Frame::Error(error) => stream.error_code = Some(error.code),
            other => panic!("shards={shards}: unexpected frame for the slow subscriber: {other:?}"),
        }
    }
}

/// Describes a corrupt stream: bytes that are no frame, or an Error frame
/// hidden inside an unfinished Deliver frame.
fn corruption_report(stream: &SlowStream, stream_bytes: usize, shards: usize) -> Option<String> {
    if stream.corruption.is_some() {
        return stream.corruption.clone();
    }
    stream.spliced_error.map(|(offset, code)| {
        let deliver_start = stream_bytes - stream.truncated_tail_bytes;
        format!(
            "shards={shards}: corrupt stream: after {} whole Deliver frames, the Deliver frame at byte {deliver_start} \
             is cut after {} bytes and an Error frame (code {code}) follows at byte {offset}, ending the stream at \
             byte {stream_bytes}; a client reads the Error frame as part of the Deliver frame and never sees it",
            stream.delivered,
            offset - deliver_start
        )
    })
}

/// Sums `slow_consumer_evictions=N` over the `shard stopped` log events.
fn slow_consumer_evictions(stderr: &str, shards: usize) -> u64 {
    let lines: Vec<String> = common::shard_stopped_events(stderr).into_iter().map(|(_, stats)| stats).collect();
    assert_eq!(lines.len(), shards, "one summary line per shard in stderr: {stderr}");
    lines
        .iter()
        .map(|line| {
            let field = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("slow_consumer_evictions="))
                .unwrap_or_else(|| panic!("no slow_consumer_evictions= in {line:?}"));
            field.parse::<u64>().unwrap_or_else(|_| panic!("not a number in {line:?}"))
        })
        .sum()
}

/// Messages published between two checks that the good subscribers have
/// received them. A good subscriber is one that keeps up: it has at most one
/// round (200 KiB) outstanding, far below `PENDING_BYTES_MAX`, so a busy test
/// machine that delays its reader thread for a few milliseconds does not make
/// it look slow. The slow subscriber never reads, so it passes the limit
/// within a few rounds whatever the pacing.
const MESSAGES_PER_ROUND: u64 = 200;

/// Why a good subscription did not receive messages `range` in order, or None.
fn good_subscriber_failure(subscription: &flit_client::Subscription, range: std::ops::Range<u64>) -> Option<String> {
    for index in range {
        match subscription.next_timeout(Duration::from_secs(10)) {
            Err(error) => return Some(format!("was closed before message {index}: {error:?}")),
            Ok(None) => return Some(format!("lacks message {index} (waited 10 s)")),
            Ok(Some(message)) if message.payload != payload(index) => {
                return Some(format!("got {} bytes instead of message {index}", message.payload.len()))
            }
            Ok(Some(_)) => {}
        }
    }
    None
}

/// Checks that nothing arrives after the last message.
fn extra_message_failure(subscription: &flit_client::Subscription) -> Option<String> {
    match subscription.next_timeout(Duration::from_millis(200)) {
        Ok(Some(message)) => Some(format!("got an extra message: {message:?}")),
        _ => None,
    }
}

#[test]
fn slow_consumer_is_disconnected_others_unaffected() {
    // Reported together at the end, so every property is checked with both
    // shard counts and one failure does not hide another.
    let mut failures: Vec<String> = Vec::new();
    for (shards_label, arguments, shards) in cases() {
        let server = FlitServer::start(shards, &arguments);
        let slow_shard = shards - 1;
        let mut slow = RawConnection::connect_on_shard(server.address, slow_shard);
        slow.subscribe_and_flush("load.>", 1);

        let good_clients: Vec<_> = (0..shards).map(|shard| server.client_on_shard(shard)).collect();
        let good_subscriptions: Vec<_> =
            good_clients.iter().map(|client| client.subscribe("load.>").expect("subscribe")).collect();
        for client in &good_clients {
            client.flush().expect("flush subscriber");
        }

        let publisher = server.client_on_shard(0);
        let mut good_failures: Vec<Option<String>> = vec![None; good_subscriptions.len()];
        let mut start = 0;
        while start < MESSAGES {
            let end = (start + MESSAGES_PER_ROUND).min(MESSAGES);
            for index in start..end {
                publisher.publish("load.data", &payload(index)).expect("publish");
            }
            publisher.flush_timeout(Duration::from_secs(30)).expect("flush publisher");
            for (subscription, failure) in good_subscriptions.iter().zip(good_failures.iter_mut()) {
                if failure.is_none() {
                    *failure = good_subscriber_failure(subscription, start..end);
                }
            }
            start = end;
        }

        // The slow subscriber wakes up as soon as publishing is done.
        let slow_bytes = read_until_closed(&mut slow);
        let slow_stream = parse_slow_stream(&slow_bytes, shards);
        assert!(
            slow_stream.delivered < MESSAGES,
            "{shards_label}: the slow subscriber received all {MESSAGES} messages, so it was never evicted"
        );
        if let Some(code) = slow_stream.error_code {
            assert_eq!(code, ErrorCode::SlowConsumer.as_u16(), "{shards_label}: the slow subscriber's Error code");
        }
        eprintln!(
            "{shards_label}: slow subscriber read {} bytes: {} Deliver frames, error {:?}, {} bytes of an \
             unfinished frame at the end",
            slow_bytes.len(),
            slow_stream.delivered,
            slow_stream.error_code,
            slow_stream.truncated_tail_bytes
        );
        failures.extend(corruption_report(&slow_stream, slow_bytes.len(), shards));

        for (shard, (subscription, failure)) in good_subscriptions.iter().zip(good_failures).enumerate() {
            if let Some(failure) = failure.or_else(|| extra_message_failure(subscription)) {
                failures.push(format!("{shards_label}: good subscriber on shard {shard} {failure}"));
            }
        }
        for client in &good_clients {
            assert_eq!(client.statistics().slow_consumer_drops, 0, "{shards_label}: the good client dropped nothing");
        }

        let (code, stderr) = server.stop();
        assert_eq!(code, Some(0), "{shards_label}: exit code; stderr: {stderr}");
        let evictions = slow_consumer_evictions(&stderr, shards);
        assert!(evictions >= 1, "{shards_label}: slow_consumer_evictions summed to {evictions}; stderr: {stderr}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn slow_consumer_helpers_parse_a_clean_stream() {
    // The parser itself: two Deliver frames then an Error frame.
    let mut bytes = BytesMut::new();
    let mut encoder = flit_wire::Encoder::default();
    let meta = encoder.deliver_meta(b"load.data", None, None, 0).expect("meta").to_vec();
    for index in 0..2 {
        flit_wire::Encoder::deliver(&mut bytes, 1, &meta, &payload(index)).expect("deliver");
    }
    encoder.error(&mut bytes, ErrorCode::SlowConsumer, "slow").expect("error");
    let stream = parse_slow_stream(&bytes, 1);
    assert_eq!((stream.delivered, stream.error_code, stream.truncated_tail_bytes), (2, Some(300), 0));
    assert_eq!(stream.spliced_error, None);
}

#[test]
fn slow_consumer_helpers_find_an_error_frame_spliced_into_a_deliver_frame() {
    // One whole Deliver, half of another, then an Error frame.
    let mut bytes = BytesMut::new();
    let mut encoder = flit_wire::Encoder::default();
    let meta = encoder.deliver_meta(b"load.data", None, None, 0).expect("meta").to_vec();
    flit_wire::Encoder::deliver(&mut bytes, 1, &meta, &payload(0)).expect("deliver");
    let whole = bytes.len();
    flit_wire::Encoder::deliver(&mut bytes, 1, &meta, &payload(1)).expect("deliver");
    bytes.truncate(whole + 100);
    encoder.error(&mut bytes, ErrorCode::SlowConsumer, "slow").expect("error");
    let stream = parse_slow_stream(&bytes, 1);
    assert_eq!((stream.delivered, stream.error_code), (1, None));
    assert_eq!(stream.truncated_tail_bytes, bytes.len() - whole);
    assert_eq!(stream.spliced_error, Some((whole + 100, 300)));
}

/// Enough messages to pass the socket buffers and `pending_bytes_max`, few
/// enough that publishing them ends well within the server's one-second close
/// linger, so the evicted subscriber starts reading while its connection is
/// still closing.
const MESSAGES_QUICK: u64 = 8_000;

#[test]
fn slow_consumer_that_resumes_reading_at_once_sees_whole_frames_then_close() {
    for (shards_label, arguments, shards) in cases() {
        let server = FlitServer::start(shards, &arguments);
        let mut slow = RawConnection::connect_on_shard(server.address, shards - 1);
        slow.subscribe_and_flush("load.>", 1);
        let publisher = server.client_on_shard(0);
        let started = Instant::now();
        for index in 0..MESSAGES_QUICK {
            publisher.publish("load.data", &payload(index)).expect("publish");
        }
        publisher.flush_timeout(Duration::from_secs(30)).expect("flush publisher");
        let published_in = started.elapsed();

        let slow_bytes = read_until_closed(&mut slow);
        let slow_stream = parse_slow_stream(&slow_bytes, shards);
        eprintln!(
            "{shards_label}: published in {published_in:?}; slow subscriber read {} bytes: {} Deliver frames, \
             error {:?}, {} bytes of an unfinished frame at the end",
            slow_bytes.len(),
            slow_stream.delivered,
            slow_stream.error_code,
            slow_stream.truncated_tail_bytes
        );
        assert!(slow_stream.delivered < MESSAGES_QUICK, "{shards_label}: the slow subscriber was never evicted");
        if let Some(report) = corruption_report(&slow_stream, slow_bytes.len(), shards) {
            panic!("{report}");
        }
        assert_eq!(slow_stream.error_code, Some(ErrorCode::SlowConsumer.as_u16()), "{shards_label}: error code");
        assert_eq!(slow_stream.truncated_tail_bytes, 0, "{shards_label}: the stream ends on a frame boundary");
        let (code, stderr) = server.stop();
        assert_eq!(code, Some(0), "{shards_label}: exit code; stderr: {stderr}");
        assert!(slow_consumer_evictions(&stderr, shards) >= 1, "{shards_label}: stderr: {stderr}");
    }
}

/// A client that pipelines pings and never reads the pongs is a slow consumer
/// too: replies count against `pending_bytes_max`, so the server's memory for
/// it stays bounded and it is evicted, while a good subscriber is unaffected.
#[test]
fn pipelined_pings_without_reading_are_evicted() {
    let arguments = ["--max-payload", "65536", "--pending-bytes-max", "1048576"];
    let server = FlitServer::start(1, &arguments);
    let good = server.client();
    let subscription = good.subscribe("still.here").expect("subscribe");
    good.flush().expect("flush");

    let mut pinger = RawConnection::connect(server.address);
    pinger.stream.set_write_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut pings = bytes::BytesMut::new();
    for _ in 0..4096 {
        flit_wire::Encoder::bare(&mut pings, flit_wire::Op::Ping);
    }
    // Up to 256 MiB of pings (16 MiB of pongs would be 16x the limit); the
    // server must give up on this connection long before.
    let mut written = 0usize;
    let mut refused = false;
    while written < 256 * 1024 * 1024 {
        match std::io::Write::write_all(&mut pinger.stream, &pings) {
            Ok(()) => written += pings.len(),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "the server kept accepting {written} bytes of pings from a client that never reads");

    good.publish("still.here", b"fine").expect("publish");
    good.flush().expect("flush");
    let message = subscription.next_timeout(Duration::from_secs(5)).expect("open").expect("a message");
    assert_eq!(&message.payload[..], b"fine");
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0));
    assert!(slow_consumer_evictions(&stderr, 1) >= 1, "the pinger is counted as a slow consumer: {stderr}");
}

/// A subscriber that pauses for seconds (past the old one-second close
/// linger) and then reads: it must find whole frames ending in the Error
/// frame with code 300, never a Deliver frame cut off by the close.
#[test]
fn slow_consumer_that_pauses_for_seconds_still_gets_whole_frames_and_the_error() {
    let arguments = ["--max-payload", "65536", "--pending-bytes-max", "262144"];
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &arguments);
        let mut slow = RawConnection::connect_on_shard(server.address, shards - 1);
        slow.subscribe_and_flush("load.>", 1);
        let publisher = server.client_on_shard(0);
        for index in 0..MESSAGES_QUICK {
            publisher.publish("load.data", &payload(index)).expect("publish");
        }
        publisher.flush_timeout(Duration::from_secs(30)).expect("flush publisher");
        std::thread::sleep(Duration::from_secs(3));

        let slow_bytes = read_until_closed(&mut slow);
        let slow_stream = parse_slow_stream(&slow_bytes, shards);
        assert!(slow_stream.delivered < MESSAGES_QUICK, "shards={shards}: the slow subscriber was never evicted");
        if let Some(report) = corruption_report(&slow_stream, slow_bytes.len(), shards) {
            panic!("{report}");
        }
        assert_eq!(
            (slow_stream.truncated_tail_bytes, slow_stream.error_code),
            (0, Some(ErrorCode::SlowConsumer.as_u16())),
            "shards={shards}: after {} whole Deliver frames the stream must end in the Error frame, not in part of a \
             frame",
            slow_stream.delivered
        );
    }
}
