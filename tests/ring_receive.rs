//! Receiving through the ring (multishot receives into provided buffers):
//! the ready line and metrics say which path runs; frames split anywhere,
//! frames larger than a provided buffer, and more concurrent senders than
//! there are provided buffers all arrive whole and in order; a
//! connection whose frames wait (a slow_down rate limit) has its receive
//! paused and resumed without losing anything. Each behaviour runs on both
//! paths (`--receive ring` and `--receive readiness`).

mod common;

use std::io::Write;
use std::time::Duration;

use bytes::BytesMut;
use common::{metric_sum, next_message, scrape, FlitServer, RawConnection};
use flit_wire::Encoder;

const PATHS: [&str; 2] = ["ring", "readiness"];

fn start(receive: &str, extra: &[&str]) -> FlitServer {
    let mut arguments = vec!["--receive", receive, "--metrics", "127.0.0.1:0"];
    arguments.extend_from_slice(extra);
    FlitServer::start(2, &arguments)
}

fn publish_frame(subject: &str, payload: &[u8]) -> BytesMut {
    let mut frame = BytesMut::new();
    Encoder::default().publish(&mut frame, subject.as_bytes(), None, None, payload).expect("encode");
    frame
}

#[test]
fn the_ready_line_and_metrics_name_the_receive_path() {
    for receive in PATHS {
        let server = start(receive, &[]);
        let metrics = scrape(server.metrics_address.expect("metrics"));
        let on_ring = metric_sum(&metrics, "flit_shard_receive_on_ring", &[]);
        let expected = if receive == "ring" { 2.0 } else { 0.0 };
        assert_eq!(on_ring, expected, "--receive {receive}: both shards report their path");
    }
}

#[test]
fn a_frame_split_at_every_byte_boundary_arrives_whole() {
    for receive in PATHS {
        let server = start(receive, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("split.>").expect("subscribe");
        subscriber.flush().expect("flush");
        let mut publisher = RawConnection::connect(server.address);
        let frame = publish_frame("split.one", b"payload that crosses the cut");
        for cut in 1..frame.len() {
            publisher.send(&frame[..cut]);
            // A pause so the two halves arrive as separate receives.
            publisher.stream.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(2));
            publisher.send(&frame[cut..]);
            let message = next_message(&subscription);
            assert_eq!(&message.payload[..], b"payload that crosses the cut", "--receive {receive}, cut {cut}");
        }
    }
}

#[test]
fn a_frame_larger_than_a_provided_buffer_arrives_whole() {
    for receive in PATHS {
        let server = start(receive, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("big").expect("subscribe");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        // 16 KiB buffers: this one spans 25 of them.
        let payload: Vec<u8> = (0..400 * 1024).map(|index| (index % 251) as u8).collect();
        for _ in 0..3 {
            publisher.publish("big", &payload).expect("publish");
        }
        publisher.flush().expect("flush");
        for _ in 0..3 {
            assert_eq!(&next_message(&subscription).payload[..], &payload[..], "--receive {receive}");
        }
    }
}

#[test]
fn more_concurrent_senders_than_provided_buffers_lose_nothing() {
    const SENDERS: usize = 300;
    const MESSAGES_PER_SENDER: usize = 4;
    const PAYLOAD_BYTES: usize = 20 * 1024;
    for receive in PATHS {
        // All 24 MB go to one subscriber at once: room for all of it, so a
        // busy machine that slows the subscriber cannot make it a slow consumer.
        let server = start(receive, &["--pending-bytes-max", "67108864"]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("crowd.*").expect("subscribe");
        subscriber.flush().expect("flush");
        let mut senders: Vec<RawConnection> = (0..SENDERS).map(|_| RawConnection::connect(server.address)).collect();
        // Everything queued in every socket first, then written at once: each
        // sender's bytes take more than one 16 KiB buffer, and 300 senders
        // want more than the 256 buffers a shard has.
        let mut batch = BytesMut::new();
        for index in 0..MESSAGES_PER_SENDER {
            batch.extend_from_slice(&publish_frame(&format!("crowd.{index}"), &vec![b'x'; PAYLOAD_BYTES]));
        }
        // Stopped while the bytes arrive, the server finds all of them at
        // once when it continues: far more than its buffers can take.
        server.signal("STOP");
        std::thread::sleep(Duration::from_millis(200));
        for sender in &mut senders {
            sender.send(&batch);
        }
        server.signal("CONT");
        let mut per_subject = [0usize; MESSAGES_PER_SENDER];
        for _ in 0..SENDERS * MESSAGES_PER_SENDER {
            let message = next_message(&subscription);
            let index: usize = message.subject["crowd.".len()..].parse().expect("an index");
            per_subject[index] += 1;
            assert_eq!(message.payload.len(), PAYLOAD_BYTES);
        }
        assert_eq!(per_subject, [SENDERS; MESSAGES_PER_SENDER], "--receive {receive}");
        common::assert_no_message(&subscription);
        let metrics = scrape(server.metrics_address.expect("metrics"));
        // Whether the buffers ran out depends on how much receive work the
        // kernel runs per wake-up (a kernel detail); ENOBUFS and re-arming
        // are proven deterministically in the ring's own unit test.
        let shortages = metric_sum(&metrics, "flit_shard_receive_buffer_shortages_total", &[]);
        eprintln!("--receive {receive}: provided-buffer shortages {shortages}");
    }
}

#[test]
fn a_paused_receive_resumes_and_loses_nothing() {
    const MESSAGES: usize = 3_000;
    for receive in PATHS {
        // 1,000 messages/s with a burst of 100: the publisher's 3,000 frames
        // (about 3 MB) arrive far faster than they may be handled, so they
        // wait in the shard; on the ring path its receive must pause.
        let server = start(
            receive,
            &["--rate-messages-per-second", "1000", "--rate-burst-messages", "100", "--rate-policy", "slow-down"],
        );
        let subscriber = server.client();
        let subscription = subscriber.subscribe("paced").expect("subscribe");
        subscriber.flush().expect("flush");
        let mut publisher = RawConnection::connect(server.address);
        let frame = publish_frame("paced", &[b'p'; 1000]);
        let mut all = BytesMut::new();
        for _ in 0..MESSAGES {
            all.extend_from_slice(&frame);
        }
        let writer = std::thread::spawn(move || {
            publisher.stream.set_write_timeout(Some(Duration::from_secs(30))).expect("timeout");
            publisher.stream.write_all(&all).expect("the server takes it all in the end");
            publisher
        });
        for index in 0..MESSAGES {
            let message = subscription
                .next_timeout(Duration::from_secs(10))
                .expect("open")
                .unwrap_or_else(|| panic!("--receive {receive}: message {index} of {MESSAGES} did not arrive"));
            assert_eq!(message.payload.len(), 1000);
        }
        let _publisher = writer.join().expect("writer");
        let metrics = scrape(server.metrics_address.expect("metrics"));
        let pauses = metric_sum(&metrics, "flit_shard_receive_pauses_total", &[]);
        if receive == "ring" {
            assert!(pauses >= 1.0, "the ring receive paused while frames waited: {pauses}");
        } else {
            assert_eq!(pauses, 0.0, "the readiness path simply stops reading");
        }
    }
}
