//! Stream frames through the dispatcher: answers matched by tag, fetches
//! collected until their closing reply, refusals of a durable publish, and
//! frames nobody waits for, driven with std channels and hand-built frames.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use bytes::{Bytes, BytesMut};
use flit_wire::stream::{PublishAck, StreamFrame, StreamMessageMeta, StreamReply};
use flit_wire::{Encoder, ErrorCode, ErrorFrame, Frame, Limits};

use super::super::{Attributed, Channels, ConnectionState};
use crate::blocking::MessageSender;
use crate::error::ClientError;
use crate::inbox::Inbox;
use crate::message::Message;
use crate::stream::{PublishAcked, StreamMessage};

struct Test;

type Sender<T> = SyncSender<Result<T, ClientError>>;

impl Channels for Test {
    type Sink = MessageSender;
    type Done = Sender<()>;
    type Response = Sender<Message>;
    type Stored = Sender<PublishAcked>;
    type Replied = Sender<StreamReply>;
    type Fetched = Sender<Vec<StreamMessage>>;
}

fn state() -> ConnectionState<Test> {
    ConnectionState::new(false, Inbox::with_random_part("streams"))
}

fn channel<T>() -> (Sender<T>, Receiver<Result<T, ClientError>>) {
    sync_channel(1)
}

fn stream_message(tag: u64, sequence: u64, payload: &'static [u8]) -> StreamFrame {
    let meta = StreamMessageMeta {
        stream: "orders".to_owned(),
        consumer: "workers".to_owned(),
        subject: Bytes::from_static(b"orders.eu"),
        sequence,
        timestamp_ns: 17,
        delivery_count: 1,
        headers: None,
    };
    StreamFrame::Message(flit_wire::stream::StreamMessage { tag, meta, payload: Bytes::from_static(payload) })
}

fn closing(tag: u64, code: u16, delivered: u32) -> StreamFrame {
    StreamFrame::Reply(StreamReply { request_id: tag, code, delivered, ..StreamReply::default() })
}

#[test]
fn publish_acks_are_matched_by_tag_in_any_order() {
    let mut state = state();
    let (first, first_answer) = channel();
    let (second, second_answer) = channel();
    let first_tag = state.add_durable_publish(first);
    let second_tag = state.add_durable_publish(second);
    assert_ne!(first_tag, second_tag);
    assert!(first_tag != 0 && second_tag != 0, "0 means no answer on the wire");
    let stored = PublishAck::stored(second_tag, "orders", 8, false);
    state.handle_stream_frame(StreamFrame::PublishAck(stored)).expect("ack");
    let refused = PublishAck::refused(first_tag, flit_wire::stream::StreamCode::DiskFull, "disk full");
    state.handle_stream_frame(StreamFrame::PublishAck(refused)).expect("a refusal keeps the connection");
    let acked = second_answer.try_recv().expect("answered").expect("stored");
    assert_eq!(acked, PublishAcked { stream: "orders".to_owned(), sequence: 8, duplicate: false });
    let error = first_answer.try_recv().expect("answered").expect_err("refused");
    assert!(matches!(&error, ClientError::Stream { code: 507, message } if message == "disk full"), "{error}");
    assert!(!error.is_fatal());
    assert!(state.usable().is_ok());
}

#[test]
fn frames_with_a_tag_nobody_waits_for_are_counted_and_dropped() {
    let mut state = state();
    let (done, _answer) = channel();
    let tag = state.add_durable_publish(done);
    state.cancel_durable_publish(tag);
    state.handle_stream_frame(StreamFrame::PublishAck(PublishAck::stored(tag, "orders", 1, false))).expect("late");
    state.handle_stream_frame(closing(999, 0, 0)).expect("a reply for no request");
    state.handle_stream_frame(stream_message(998, 1, b"x")).expect("a message for no fetch");
    assert_eq!(state.statistics().unmatched_stream_frames, 3);
    assert!(state.usable().is_ok());
}

#[test]
fn a_fetch_collects_its_messages_until_the_closing_reply() {
    let mut state = state();
    let (done, answer) = channel();
    let tag = state.add_fetch(2, done);
    let (other, other_answer) = channel();
    let other_tag = state.add_fetch(5, other);
    state.handle_stream_frame(stream_message(tag, 1, b"one")).expect("message");
    state.handle_stream_frame(stream_message(other_tag, 2, b"two")).expect("message");
    state.handle_stream_frame(stream_message(tag, 3, b"three")).expect("message");
    state.handle_stream_frame(stream_message(tag, 4, b"beyond the batch")).expect("dropped");
    assert!(answer.try_recv().is_err(), "not closed yet");
    state.handle_stream_frame(closing(tag, 0, 2)).expect("closing reply");
    let messages = answer.try_recv().expect("answered").expect("messages");
    let sequences: Vec<u64> = messages.iter().map(|message| message.sequence).collect();
    assert_eq!(sequences, [1, 3]);
    assert_eq!(messages[0].subject, "orders.eu");
    assert_eq!(messages[0].consumer, "workers");
    assert_eq!(&messages[1].payload[..], b"three");
    assert_eq!(state.statistics().unmatched_stream_frames, 1, "the message beyond the batch");
    // A fetch whose wait ran out (408) answers with what it has.
    state.handle_stream_frame(closing(other_tag, 408, 1)).expect("expired");
    let messages = other_answer.try_recv().expect("answered").expect("what it has");
    assert_eq!(messages.len(), 1);
}

#[test]
fn a_refused_fetch_or_request_fails_with_the_stream_code() {
    let mut state = state();
    let (done, answer) = channel();
    let tag = state.add_fetch(10, done);
    let refusal = StreamReply::refused(tag, flit_wire::stream::StreamCode::NotFound, "no consumer c");
    state.handle_stream_frame(StreamFrame::Reply(refusal)).expect("refusal");
    let error = answer.try_recv().expect("answered").expect_err("refused");
    assert_eq!(error.stream_code(), Some(flit_wire::stream::StreamCode::NotFound));
    let (done, answer) = channel();
    let tag = state.add_stream_request(done);
    state.handle_stream_frame(closing(tag, 409, 0)).expect("refusal");
    assert!(matches!(answer.try_recv(), Ok(Err(ClientError::Stream { code: 409, .. }))));
    let (done, answer) = channel();
    let tag = state.add_stream_request(done);
    state.handle_stream_frame(closing(tag, 0, 0)).expect("done");
    assert_eq!(answer.try_recv().expect("answered").expect("ok").request_id, tag);
}

#[test]
fn a_refusal_in_a_durable_publish_interval_fails_that_publish_only() {
    let mut state = state();
    let (done, answer) = channel();
    let tag = state.add_durable_publish(done);
    assert!(!state.needs_boundary(true), "nothing before it");
    state.add_attributed(Attributed::DurablePublish(tag));
    let (later, later_answer) = channel();
    let later_tag = state.add_durable_publish(later);
    assert!(state.needs_boundary(true), "an unanswered durable publish keeps its interval to itself");
    let error = ErrorFrame { code: ErrorCode::PermissionDenied.as_u16(), message: "no".to_owned(), retry_after_ms: 0 };
    state.handle_frame(Frame::Error(error)).expect("a refusal keeps the connection");
    assert!(matches!(answer.try_recv(), Ok(Err(ClientError::Server { code: 401, .. }))));
    assert!(later_answer.try_recv().is_err(), "the other publish still waits");
    assert!(state.take_refusals().is_none(), "reported to its publish, not left for check_refusals");
    // Once answered, a durable publish settles its interval: no Ping needed after it.
    state.handle_stream_frame(StreamFrame::PublishAck(PublishAck::stored(later_tag, "s", 1, false))).expect("ack");
    assert!(later_answer.try_recv().expect("answered").is_ok());
}

#[test]
fn the_end_of_the_connection_answers_every_stream_waiter() {
    let mut state = state();
    let (publish, publish_answer) = channel();
    let (request, request_answer) = channel();
    let (fetch, fetch_answer) = channel();
    state.add_durable_publish(publish);
    state.add_stream_request(request);
    state.add_fetch(1, fetch);
    state.fail(ClientError::Disconnected);
    assert!(matches!(publish_answer.try_recv(), Ok(Err(ClientError::Disconnected))));
    assert!(matches!(request_answer.try_recv(), Ok(Err(ClientError::Disconnected))));
    assert!(matches!(fetch_answer.try_recv(), Ok(Err(ClientError::Disconnected))));
}

#[test]
fn client_only_stream_frames_from_the_server_are_protocol_violations() {
    let mut state = state();
    let fetch = flit_wire::stream::Fetch {
        request_id: 1,
        stream: "s".to_owned(),
        consumer: "c".to_owned(),
        batch: 1,
        wait_ms: 0,
    };
    assert!(matches!(state.handle_stream_frame(StreamFrame::Fetch(fetch)), Err(ClientError::Protocol(_))));
}

#[test]
fn stream_frames_decode_from_a_byte_stream_beside_core_frames() {
    let limits = Limits::default();
    let shared = std::sync::Mutex::new(state());
    let (done, answer) = channel();
    let tag = shared.lock().expect("lock").add_fetch(1, done);
    let mut bytes = BytesMut::new();
    let mut encoder = Encoder::default();
    let StreamFrame::Message(message) = stream_message(tag, 5, b"payload") else { unreachable!() };
    encoder.stream_message(&mut bytes, tag, &message.meta, b"payload").expect("encode");
    Encoder::bare(&mut bytes, flit_wire::Op::Ping);
    encoder
        .stream_reply(&mut bytes, &StreamReply { request_id: tag, delivered: 1, ..StreamReply::default() })
        .expect("reply");
    let owed = crate::connection::dispatch_buffered(&mut bytes, &limits, &shared).expect("dispatch");
    assert!(owed, "the Ping between them was counted");
    let messages = answer.try_recv().expect("answered").expect("messages");
    assert_eq!((messages[0].sequence, &messages[0].payload[..]), (5, &b"payload"[..]));
}
