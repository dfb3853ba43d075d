//! Dispatcher behaviour, driven with std channels and hand-built frames.

use std::sync::mpsc::{sync_channel, Receiver};

use bytes::{Bytes, BytesMut};
use flit_wire::{Deliver, Encoder, ErrorCode, ErrorFrame, Frame, Limits};

use super::*;
use crate::blocking::{message_channel, MessageReceiver, MessageSender};

/// Plain std channels for the answers, so a test can look at them.
struct Test;

impl Channels for Test {
    type Sink = MessageSender;
    type Done = SyncDone;
    type Response = std::sync::mpsc::SyncSender<Result<Message, ClientError>>;
    type Stored = std::sync::mpsc::SyncSender<Result<PublishAcked, ClientError>>;
    type Replied = std::sync::mpsc::SyncSender<Result<StreamReply, ClientError>>;
    type Fetched = std::sync::mpsc::SyncSender<Result<Vec<StreamMessage>, ClientError>>;
}

impl<T> Completion<T> for std::sync::mpsc::SyncSender<Result<T, ClientError>> {
    fn complete(self, result: Result<T, ClientError>) {
        let _ = self.try_send(result);
    }
}

fn state(ack_mode: bool) -> ConnectionState<Test> {
    ConnectionState::new(ack_mode, Inbox::with_random_part("test"))
}

fn deliver(subscription_id: u64, subject: &str, status: u16, payload: &'static [u8]) -> Frame {
    Frame::Deliver(Deliver {
        subscription_id,
        subject: Bytes::copy_from_slice(subject.as_bytes()),
        reply: None,
        headers: None,
        status,
        payload: Bytes::from_static(payload),
    })
}

fn subscribe(state: &mut ConnectionState<Test>, capacity: usize) -> (u64, MessageReceiver) {
    let (sink, receiver) = message_channel(capacity);
    (state.add_subscription(sink), receiver)
}

fn done() -> (SyncDone, Receiver<Result<(), ClientError>>) {
    sync_channel(1)
}

type SyncDone = std::sync::mpsc::SyncSender<Result<(), ClientError>>;

#[test]
fn deliver_reaches_only_its_subscription() {
    let mut state = state(false);
    let (first, first_messages) = subscribe(&mut state, 8);
    let (second, second_messages) = subscribe(&mut state, 8);
    assert_ne!(first, second);
    state.handle_frame(deliver(second, "orders.eu", 0, b"hello")).expect("deliver");
    let message = second_messages.try_recv().expect("routed to the second subscription");
    assert_eq!(message.subject, "orders.eu");
    assert_eq!(&message.payload[..], b"hello");
    assert!(first_messages.try_recv().is_err(), "the first subscription got nothing");
    assert_eq!(state.statistics().messages_delivered, 1);
}

#[test]
fn unknown_subscription_ids_are_dropped_and_counted() {
    let mut state = state(false);
    let (id, messages) = subscribe(&mut state, 8);
    state.handle_frame(deliver(id + 100, "a", 0, b"")).expect("unknown id is not fatal");
    state.remove_subscription(id);
    state.handle_frame(deliver(id, "a", 0, b"")).expect("late delivery is not fatal");
    assert_eq!(state.statistics().unknown_subscription_drops, 2);
    assert!(messages.recv().is_err(), "removing a subscription closes its channel");
}

#[test]
fn a_full_subscription_drops_and_counts_instead_of_blocking() {
    let mut state = state(false);
    let (id, messages) = subscribe(&mut state, 1);
    state.handle_frame(deliver(id, "a", 0, b"1")).expect("deliver");
    state.handle_frame(deliver(id, "a", 0, b"2")).expect("deliver");
    assert_eq!(state.statistics().slow_consumer_drops, 1);
    assert_eq!(&messages.try_recv().expect("first kept").payload[..], b"1");
}

#[test]
fn unsubscribe_after_closes_the_channel_after_that_many_messages() {
    let mut state = state(false);
    let (id, messages) = subscribe(&mut state, 8);
    state.close_subscription_after(id, 2);
    for _ in 0..3 {
        state.handle_frame(deliver(id, "a", 0, b"")).expect("deliver");
    }
    assert_eq!(messages.iter().count(), 2, "two delivered, then the channel closed");
    assert_eq!(state.statistics().unknown_subscription_drops, 1);
}

#[test]
fn pongs_wake_flush_waiters_in_order() {
    let mut state = state(false);
    let (first, first_answer) = done();
    let (second, second_answer) = done();
    state.add_flush_waiter(first);
    state.add_flush_waiter(second);
    state.handle_frame(Frame::Pong).expect("pong");
    assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
    assert!(second_answer.try_recv().is_err(), "the second waits for the second Pong");
    state.handle_frame(Frame::Pong).expect("pong");
    assert!(matches!(second_answer.try_recv(), Ok(Ok(()))));
    assert!(matches!(state.handle_frame(Frame::Pong), Err(ClientError::Protocol(_))), "a Pong nobody asked for");
}

#[test]
fn acknowledgements_answer_the_oldest_frame_and_error_poisons() {
    let mut state = state(true);
    let (first, first_answer) = done();
    let (third, third_answer) = done();
    state.expect_acknowledgement(Some(first));
    state.expect_acknowledgement(None);
    state.expect_acknowledgement(Some(third));
    state.handle_frame(Frame::Ok).expect("ok");
    state.handle_frame(Frame::Ok).expect("ok for the frame nobody waits on");
    assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
    let error = ErrorFrame { code: ErrorCode::InvalidSubject.as_u16(), message: "bad".to_owned(), retry_after_ms: 0 };
    assert!(state.handle_frame(Frame::Error(error)).is_err());
    let answer = third_answer.try_recv().expect("answered");
    assert!(matches!(answer, Err(ClientError::Server { code: 200, .. })));
}

#[test]
fn a_draining_notice_is_recorded_and_the_connection_stays_usable() {
    let mut state = state(false);
    let (_id, messages) = subscribe(&mut state, 8);
    assert_eq!(state.statistics().server_draining_within_ms, None);
    state.handle_frame(Frame::Draining { close_within_ms: 5_000 }).expect("draining is not an error");
    assert_eq!(state.statistics().server_draining_within_ms, Some(5_000));
    assert!(state.usable().is_ok(), "deliveries already queued must still arrive");
    drop(messages);
}

#[test]
fn an_error_frame_poisons_the_connection() {
    let mut state = state(false);
    let (id, messages) = subscribe(&mut state, 8);
    let (flush, flush_answer) = done();
    state.add_flush_waiter(flush);
    let (response, response_answer) = sync_channel(1);
    state.add_request(response);
    let error =
        ErrorFrame { code: ErrorCode::SlowConsumer.as_u16(), message: "too slow".to_owned(), retry_after_ms: 0 };
    let result = state.handle_frame(Frame::Error(error));
    assert!(matches!(&result, Err(ClientError::Server { code: 300, .. })));
    assert_eq!(result.expect_err("poisoned").server_code(), Some(ErrorCode::SlowConsumer));
    assert!(matches!(flush_answer.try_recv(), Ok(Err(ClientError::Server { code: 300, .. }))));
    assert!(matches!(response_answer.try_recv(), Ok(Err(ClientError::Server { code: 300, .. }))));
    assert!(messages.recv().is_err(), "subscriptions are closed");
    assert!(matches!(state.usable(), Err(ClientError::Server { code: 300, .. })));
    // The first terminal error sticks.
    state.fail(ClientError::Disconnected);
    assert!(matches!(state.usable(), Err(ClientError::Server { .. })));
    state.handle_frame(deliver(id, "a", 0, b"")).expect("after failing, deliveries are just dropped");
}

#[test]
fn responses_are_routed_by_the_inbox_token_and_503_means_no_responders() {
    let mut state = state(false);
    let (first_waiter, _first_inbox) = done();
    let InboxStep::Subscribe(inbox_id) = state.join_inbox(first_waiter) else { panic!("the first request subscribes") };
    let (second_waiter, _second_inbox) = done();
    assert_eq!(state.join_inbox(second_waiter), InboxStep::Wait, "one inbox subscription per client");
    let (first, first_answer) = sync_channel(1);
    let (second, second_answer) = sync_channel(1);
    let first_request = state.add_request(first);
    let second_request = state.add_request(second);
    let second_subject = state.inbox().reply_subject(second_request);
    let first_subject = state.inbox().reply_subject(first_request);
    state.handle_frame(deliver(inbox_id, &second_subject, 0, b"two")).expect("deliver");
    state.handle_frame(deliver(inbox_id, &first_subject, STATUS_NO_RESPONDERS, b"")).expect("deliver");
    assert_eq!(&second_answer.try_recv().expect("answered").expect("a message").payload[..], b"two");
    assert!(matches!(first_answer.try_recv(), Ok(Err(ClientError::NoResponders))));
    state.handle_frame(deliver(inbox_id, &first_subject, 0, b"late")).expect("late answer");
    assert_eq!(state.statistics().unmatched_responses, 1);
}

#[test]
fn frames_a_client_never_receives_are_protocol_violations() {
    let mut state = state(false);
    let hello =
        flit_wire::Hello { version_min: 1, version_max: 1, client_name: None, auth_token: None, ack_mode: false };
    assert!(matches!(state.handle_frame(Frame::Hello(hello)), Err(ClientError::Protocol(_))));
}

#[test]
fn server_pings_are_counted_for_the_writer_to_answer() {
    let mut state = state(false);
    assert!(!state.pongs_owed());
    state.handle_frame(Frame::Ping).expect("a server ping is not an error");
    state.handle_frame(Frame::Ping).expect("ping");
    assert!(state.pongs_owed());
    assert_eq!(state.take_pongs_owed(), 2);
    assert_eq!(state.take_pongs_owed(), 0);
}

#[test]
fn dispatch_buffered_decodes_a_byte_stream_split_anywhere() {
    let limits = Limits::default();
    let mut bytes = BytesMut::new();
    let mut encoder = Encoder::default();
    let meta = encoder.deliver_meta(b"a.b", None, None, 0).expect("meta").to_vec();
    Encoder::deliver(&mut bytes, 1, &meta, b"payload").expect("deliver");
    Encoder::bare(&mut bytes, flit_wire::Op::Pong);
    let stream = bytes.freeze();
    for split in 0..stream.len() {
        let state = std::sync::Mutex::new(self::state(false));
        let (id, messages) = subscribe(&mut state.lock().expect("lock"), 8);
        assert_eq!(id, 1);
        let (flush, flush_answer) = done();
        state.lock().expect("lock").add_flush_waiter(flush);
        let mut buffer = BytesMut::from(&stream[..split]);
        crate::connection::dispatch_buffered(&mut buffer, &limits, &state).expect("first part");
        buffer.extend_from_slice(&stream[split..]);
        crate::connection::dispatch_buffered(&mut buffer, &limits, &state).expect("second part");
        assert_eq!(&messages.try_recv().expect("delivered").payload[..], b"payload");
        assert!(matches!(flush_answer.try_recv(), Ok(Ok(()))));
        assert!(buffer.is_empty());
    }
}

#[test]
fn a_permission_refusal_answers_the_frame_and_keeps_the_connection() {
    let mut state = state(true);
    let (refused, refused_answer) = done();
    let (next, next_answer) = done();
    state.expect_acknowledgement(Some(refused));
    state.expect_acknowledgement(Some(next));
    let error = ErrorFrame { code: ErrorCode::PermissionDenied.as_u16(), message: "no".to_owned(), retry_after_ms: 0 };
    state.handle_frame(Frame::Error(error)).expect("not terminal");
    assert!(matches!(refused_answer.try_recv(), Ok(Err(ClientError::Server { code: 401, .. }))));
    assert!(state.usable().is_ok());
    state.handle_frame(Frame::Ok).expect("ok");
    assert!(matches!(next_answer.try_recv(), Ok(Ok(()))));
    assert_eq!(state.statistics().refused_by_server, 1);
}

fn refusal(code: ErrorCode, message: &str) -> Frame {
    Frame::Error(ErrorFrame { code: code.as_u16(), message: message.to_owned(), retry_after_ms: 0 })
}

#[test]
fn outside_ack_mode_refusals_wait_until_taken_once_counted_with_the_first() {
    let mut state = state(false);
    let (flush, flush_answer) = done();
    state.add_flush_waiter(flush);
    assert!(state.take_refusals().is_none());
    state.handle_frame(refusal(ErrorCode::RateLimited, "first")).expect("not terminal");
    state.handle_frame(refusal(ErrorCode::PermissionDenied, "second")).expect("not terminal");
    state.handle_frame(Frame::Pong).expect("pong");
    assert!(matches!(flush_answer.try_recv(), Ok(Ok(()))), "a flush itself still succeeds");
    let refused = state.take_refusals().expect("two refusals");
    assert!(
        matches!(&refused, ClientError::Refused { count: 2, code: 307, message, .. } if message == "first"),
        "{refused:?}"
    );
    assert!(!refused.is_fatal());
    assert_eq!(refused.server_code(), Some(ErrorCode::RateLimited));
    assert!(state.take_refusals().is_none(), "reported once");
    assert!(state.usable().is_ok());
}

/// What `connection.rs` does around an attributed frame, outside ack mode:
/// a boundary Ping first if its interval holds a frame of unknown fate.
/// Returns whether a boundary Ping was "sent".
fn send_attributed(state: &mut ConnectionState<Test>, frame: Attributed) -> bool {
    let boundary = state.needs_boundary(true);
    if boundary {
        state.add_pong_waiter(PongWaiter::Boundary);
    }
    state.add_attributed(frame);
    boundary
}

/// The same for a frame nobody waits on (a publish, a subscribe).
fn send_unattributed(state: &mut ConnectionState<Test>) -> bool {
    let boundary = state.needs_boundary(false);
    if boundary {
        state.add_pong_waiter(PongWaiter::Boundary);
    }
    state.add_unattributed();
    boundary
}

#[test]
fn a_refusal_in_the_interval_of_a_request_answers_that_request_only() {
    let mut state = state(false);
    let (response, response_answer) = sync_channel(1);
    assert!(!send_unattributed(&mut state), "nothing to separate a plain publish from");
    let request = state.add_request(response);
    assert!(send_attributed(&mut state, Attributed::Request(request)), "a Ping separates it from the publish");
    // Refusals of frames sent before that Ping arrive before its Pong.
    state.handle_frame(refusal(ErrorCode::PermissionDenied, "earlier publish")).expect("refusal");
    assert!(response_answer.try_recv().is_err(), "not the request's");
    state.handle_frame(Frame::Pong).expect("the boundary's pong");
    state.handle_frame(refusal(ErrorCode::PermissionDenied, "the request")).expect("refusal");
    let answer = response_answer.try_recv().expect("the request is answered at once, without a Pong after it");
    assert!(matches!(&answer, Err(ClientError::Server { code: 401, message, .. }) if message == "the request"));
    let earlier = state.take_refusals().expect("the earlier refusal is not the request's");
    assert!(matches!(&earlier, ClientError::Refused { count: 1, message, .. } if message == "earlier publish"));
}

#[test]
fn answered_requests_need_no_pings_and_refusals_after_them_are_the_next_ones() {
    let mut state = state(false);
    for round in 0..3u32 {
        let (response, response_answer) = sync_channel(1);
        let request = state.add_request(response);
        assert!(!send_attributed(&mut state, Attributed::Request(request)), "round {round}: no Ping");
        let subject = state.inbox().reply_subject(request);
        // (The inbox id does not matter to this test: make it 0.)
        state.inbox_state = InboxState::Ready { id: 0 };
        state.handle_frame(deliver(0, &subject, 0, b"answer")).expect("answer");
        assert!(response_answer.try_recv().expect("answered").is_ok(), "round {round}");
    }
    let (response, response_answer) = sync_channel(1);
    let request = state.add_request(response);
    assert!(!send_attributed(&mut state, Attributed::Request(request)), "still no Ping: the others were answered");
    state.handle_frame(refusal(ErrorCode::RateLimited, "too fast")).expect("refusal");
    assert!(matches!(response_answer.try_recv(), Ok(Err(ClientError::Server { code: 307, .. }))));
    assert!(state.take_refusals().is_none(), "reported to the request");
}

#[test]
fn a_publish_after_a_request_in_flight_starts_a_new_interval() {
    let mut state = state(false);
    let (response, response_answer) = sync_channel(1);
    let request = state.add_request(response);
    assert!(!send_attributed(&mut state, Attributed::Request(request)));
    assert!(send_unattributed(&mut state), "the publish must not share the request's interval");
    assert!(!send_unattributed(&mut state), "publishes may share an interval");
    // The request was accepted (its Pong comes, no refusal before it) ...
    state.handle_frame(Frame::Pong).expect("pong");
    assert!(response_answer.try_recv().is_err(), "still waiting for the answer");
    // ... so this refusal belongs to one of the publishes.
    state.handle_frame(refusal(ErrorCode::RateLimited, "later")).expect("refusal");
    assert!(response_answer.try_recv().is_err());
    assert!(matches!(state.take_refusals(), Some(ClientError::Refused { count: 1, .. })));
    // A request now shares nothing either: a Ping first.
    let (second, _second_answer) = sync_channel(1);
    let second = state.add_request(second);
    assert!(send_attributed(&mut state, Attributed::Request(second)));
}

#[test]
fn a_clean_pong_leaves_the_request_waiting_for_its_answer() {
    let mut state = state(false);
    let (response, response_answer) = sync_channel(1);
    assert!(!send_unattributed(&mut state));
    let request = state.add_request(response);
    assert!(send_attributed(&mut state, Attributed::Request(request)));
    let (flush, flush_answer) = done();
    state.add_flush_waiter(flush);
    state.handle_frame(Frame::Pong).expect("pong");
    state.handle_frame(Frame::Pong).expect("pong");
    assert!(matches!(flush_answer.try_recv(), Ok(Ok(()))));
    assert!(response_answer.try_recv().is_err(), "still waiting for the answer");
    // A refusal after the flush's Pong belongs to a later frame.
    state.handle_frame(refusal(ErrorCode::RateLimited, "later")).expect("refusal");
    assert!(response_answer.try_recv().is_err());
    assert!(state.take_refusals().is_some());
}

#[test]
fn a_refused_inbox_fails_every_waiting_request_and_the_next_one_tries_again() {
    for ack_mode in [false, true] {
        let mut state = state(ack_mode);
        let (first, first_answer) = done();
        let (second, second_answer) = done();
        let InboxStep::Subscribe(id) = state.join_inbox(first) else { panic!("subscribes") };
        assert_eq!(state.join_inbox(second), InboxStep::Wait);
        if ack_mode {
            state.expect_acknowledgement_for(Attributed::Inbox);
        } else {
            send_unattributed(&mut state);
            assert!(send_attributed(&mut state, Attributed::Inbox));
            state.add_pong_waiter(PongWaiter::Boundary);
            state.handle_frame(Frame::Pong).expect("the boundary's pong");
        }
        state.handle_frame(refusal(ErrorCode::PermissionDenied, "no inbox")).expect("refusal");
        if !ack_mode {
            state.handle_frame(Frame::Pong).expect("the pong after the inbox");
        }
        for answer in [first_answer, second_answer] {
            assert!(matches!(answer.try_recv(), Ok(Err(ClientError::Server { code: 401, .. }))), "ack_mode={ack_mode}");
        }
        assert!(state.take_refusals().is_none(), "ack_mode={ack_mode}: reported to the requests");
        let (third, _third_answer) = done();
        let next = state.join_inbox(third);
        assert!(matches!(next, InboxStep::Subscribe(next_id) if next_id != id), "ack_mode={ack_mode}: {next:?}");
    }
}

#[test]
fn an_accepted_inbox_is_ready_for_every_later_request() {
    let mut state = state(true);
    let (first, first_answer) = done();
    assert!(matches!(state.join_inbox(first), InboxStep::Subscribe(_)));
    state.expect_acknowledgement_for(Attributed::Inbox);
    assert!(!state.inbox_ready());
    state.handle_frame(Frame::Ok).expect("ok");
    assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
    assert!(state.inbox_ready());
    let (second, _second_answer) = done();
    assert_eq!(state.join_inbox(second), InboxStep::Ready);
}

#[test]
fn in_ack_mode_a_refused_request_publish_fails_the_request() {
    let mut state = state(true);
    let (response, response_answer) = sync_channel(1);
    let request = state.add_request(response);
    state.expect_acknowledgement_for(Attributed::Request(request));
    state.handle_frame(refusal(ErrorCode::RateLimited, "slow down")).expect("refusal");
    assert!(matches!(response_answer.try_recv(), Ok(Err(ClientError::Server { code: 307, .. }))));
    assert!(state.take_refusals().is_none());
}

#[test]
fn a_refusal_for_a_request_that_already_timed_out_is_reported_like_any_other() {
    let mut state = state(false);
    let (response, _response_answer) = sync_channel(1);
    let request = state.add_request(response);
    send_attributed(&mut state, Attributed::Request(request));
    state.cancel_request(request);
    state.handle_frame(refusal(ErrorCode::RateLimited, "late")).expect("refusal");
    assert!(matches!(state.take_refusals(), Some(ClientError::Refused { count: 1, code: 307, .. })));
}

#[test]
fn the_inbox_is_ready_at_the_pong_after_it_unless_refused_before() {
    let mut state = state(false);
    let (first, first_answer) = done();
    let InboxStep::Subscribe(_) = state.join_inbox(first) else { panic!("subscribes") };
    assert!(!send_attributed(&mut state, Attributed::Inbox), "nothing before it");
    state.add_pong_waiter(PongWaiter::Boundary);
    assert!(first_answer.try_recv().is_err());
    state.handle_frame(Frame::Pong).expect("pong");
    assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
    assert!(state.inbox_ready());
}
