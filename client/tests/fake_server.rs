//! The client against a tiny fake server written here with `flit_wire`: the
//! handshake, the bytes a publish puts on the wire, request/reply with a
//! "no responders" answer, limits enforced before sending, and an Error frame
//! ending the connection.
//!
//! The fake server serves one connection. It answers Ping with Pong, answers a
//! request to a subject starting with `nobody.` with a 503 Deliver to the
//! reply subject's subscription, echoes a request to `echo.*` back, answers a
//! publish to `poison` with an Error frame and closes, refuses a publish to
//! `denied.*` with `permission_denied` and stays open (as the real server
//! does), and reports every frame it decodes to the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use bytes::BytesMut;
use flit_client::{AsyncClient, Client, ClientError, Options};
use flit_wire::subject::pattern_matches;
use flit_wire::{check, decode, Check, Encoder, ErrorCode, Frame, Limits, Op, Welcome, STATUS_NO_RESPONDERS};

const PAYLOAD_BYTES_MAX: u32 = 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

fn welcome() -> Welcome {
    welcome_speaking(flit_wire::PROTOCOL_VERSION)
}

fn welcome_speaking(version: u16) -> Welcome {
    Welcome {
        version,
        server_name: "fake".to_owned(),
        shard: 3,
        shards: 4,
        payload_bytes_max: PAYLOAD_BYTES_MAX,
        meta_bytes_max: 4096,
        pending_bytes_max: 1 << 20,
        subscriptions_max: 16,
        cluster_urls: Vec::new(),
    }
}

fn spawn_fake_server() -> (SocketAddr, Receiver<Frame>) {
    spawn_fake_server_speaking(flit_wire::PROTOCOL_VERSION)
}

/// A fake server whose Welcome agrees `version`.
fn spawn_fake_server_speaking(version: u16) -> (SocketAddr, Receiver<Frame>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let (frames, received) = channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        serve(stream, version, |frame| frames.send(frame).is_ok());
    });
    (address, received)
}

fn serve(mut stream: TcpStream, version: u16, mut report: impl FnMut(Frame) -> bool) {
    let limits = Limits { payload_bytes_max: PAYLOAD_BYTES_MAX as usize };
    let mut encoder = Encoder::default();
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 4096];
    let mut subscriptions: Vec<(String, u64)> = Vec::new();
    loop {
        let frame = match check(&input, limits.frame_bytes_max()) {
            Check::Complete(length) => decode(input.split_to(length).freeze(), &limits).expect("client frame decodes"),
            Check::Incomplete => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    input.extend_from_slice(&chunk[..read]);
                    continue;
                }
            },
            Check::Invalid(error) => panic!("client sent an invalid frame: {error}"),
        };
        let mut output = BytesMut::new();
        let mut close = false;
        match &frame {
            Frame::Hello(_) => encoder.welcome(&mut output, &welcome_speaking(version)).expect("welcome"),
            Frame::Ping => Encoder::bare(&mut output, Op::Pong),
            Frame::Subscribe(subscribe) => subscriptions
                .push((String::from_utf8(subscribe.pattern.to_vec()).expect("utf8"), subscribe.subscription_id)),
            Frame::Publish(publish) if &publish.subject[..] == b"poison" => {
                encoder.error(&mut output, ErrorCode::InvalidSubject, "no poison here").expect("error");
                close = true;
            }
            Frame::Publish(publish) if publish.subject.starts_with(b"denied.") => {
                encoder.error(&mut output, ErrorCode::PermissionDenied, "denied here").expect("error");
            }
            Frame::Publish(publish) => {
                if let Some(reply) = &publish.reply {
                    let status = if publish.subject.starts_with(b"nobody.") { STATUS_NO_RESPONDERS } else { 0 };
                    let payload = if status == 0 { &publish.payload[..] } else { &[][..] };
                    for (pattern, id) in &subscriptions {
                        if pattern_matches(pattern.as_bytes(), reply) {
                            let meta = encoder.deliver_meta(reply, None, None, status).expect("meta").to_vec();
                            Encoder::deliver(&mut output, *id, &meta, payload).expect("deliver");
                        }
                    }
                }
            }
            _ => {}
        }
        stream.write_all(&output).expect("write");
        if !report(frame) || close {
            return;
        }
    }
}

fn next_frame(frames: &Receiver<Frame>) -> Frame {
    frames.recv_timeout(TIMEOUT).expect("the fake server saw a frame")
}

#[test]
fn handshake_then_publish_puts_the_expected_frames_on_the_wire() {
    let (address, frames) = spawn_fake_server();
    let options = Options { name: Some("tester".to_owned()), ..Options::default() };
    let client = Client::connect_with(address, options).expect("connect");
    assert_eq!(client.welcome(), &welcome());
    let Frame::Hello(hello) = next_frame(&frames) else { panic!("Hello comes first") };
    assert_eq!(hello.client_name.as_deref(), Some("tester"));
    assert_eq!(
        (hello.version_min, hello.version_max),
        (flit_wire::PROTOCOL_VERSION_MIN, flit_wire::PROTOCOL_VERSION),
        "every version this client speaks"
    );
    assert!(!hello.ack_mode);

    client.publish_with("orders.eu", Some("answers.here"), &[("trace", "17")], b"payload").expect("publish");
    client.flush().expect("flush");
    let Frame::Publish(publish) = next_frame(&frames) else { panic!("then the Publish") };
    assert_eq!(&publish.subject[..], b"orders.eu");
    assert_eq!(publish.reply.as_deref(), Some(&b"answers.here"[..]));
    assert_eq!(&publish.payload[..], b"payload");
    let headers = flit_wire::decode_headers(&publish.headers.expect("headers")).expect("headers decode");
    assert_eq!(headers, [("trace".to_owned(), "17".to_owned())]);
    assert_eq!(next_frame(&frames), Frame::Ping, "flush is a Ping");
    client.close().expect("close");
}

#[test]
fn invalid_subjects_and_oversized_payloads_are_rejected_before_sending() {
    let (address, frames) = spawn_fake_server();
    let client = Client::connect(address).expect("connect");
    let _hello = next_frame(&frames);
    let too_large = vec![0u8; PAYLOAD_BYTES_MAX as usize + 1];
    assert!(matches!(client.publish("a", &too_large), Err(ClientError::PayloadTooLarge { limit_bytes: 1024, .. })));
    assert!(matches!(client.publish("a.*", b""), Err(ClientError::InvalidSubject { .. })));
    assert!(matches!(client.subscribe("a..b"), Err(ClientError::InvalidSubject { .. })));
    client.flush().expect("the connection is still fine");
    assert_eq!(next_frame(&frames), Frame::Ping, "nothing was sent before the Ping");
}

#[test]
fn a_request_nobody_serves_returns_no_responders_and_an_echo_comes_back() {
    let (address, frames) = spawn_fake_server();
    let client = Client::connect(address).expect("connect");
    let error = client.request("nobody.home", b"?", TIMEOUT).expect_err("nobody answers");
    assert!(matches!(error, ClientError::NoResponders), "{error:?}");
    let answer = client.request("echo.please", b"ping me", TIMEOUT).expect("echo");
    assert_eq!(&answer.payload[..], b"ping me");
    let _hello = next_frame(&frames);
    let Frame::Subscribe(inbox) = next_frame(&frames) else { panic!("the inbox subscription comes first") };
    let pattern = String::from_utf8(inbox.pattern.to_vec()).expect("utf8");
    assert!(pattern.starts_with("_INBOX.") && pattern.ends_with(".*"), "{pattern}");
    // Its Pong says the server took it (a refusal would come before) and
    // that it is visible everywhere.
    assert_eq!(next_frame(&frames), Frame::Ping, "the inbox is confirmed before the first request");
    let inbox = &pattern[..pattern.len() - 2];
    let Frame::Publish(first) = next_frame(&frames) else { panic!("then the first request") };
    assert_eq!(first.reply.as_deref(), Some(format!("{inbox}.1").as_bytes()));
    // A request costs no Ping: an answered request was accepted, so the next
    // one is alone in its interval and a refusal would be its (see dispatch.rs).
    let Frame::Publish(second) = next_frame(&frames) else { panic!("then the second request, no Ping between") };
    assert_eq!(second.reply.as_deref(), Some(format!("{inbox}.2").as_bytes()));
}

#[test]
fn refusals_that_keep_the_connection_reach_the_request_or_check_refusals() {
    let (address, frames) = spawn_fake_server();
    let client = Client::connect(address).expect("connect");
    let started = std::time::Instant::now();
    let error = client.request("denied.service", b"?", TIMEOUT).expect_err("refused");
    assert!(started.elapsed() < TIMEOUT / 2, "failed at once, took {:?}", started.elapsed());
    assert!(matches!(&error, ClientError::Server { code: 401, message, .. } if message == "denied here"), "{error}");
    assert!(!error.is_fatal());
    client.publish("denied.topic", b"x").expect("buffered");
    client.publish("allowed.topic", b"x").expect("buffered");
    client.publish("denied.topic", b"x").expect("buffered");
    client.flush().expect("a flush succeeds: the connection is open");
    let refused = client.check_refusals().expect_err("two publishes were refused");
    assert!(matches!(refused, ClientError::Refused { count: 2, code: 401, .. }), "{refused:?}");
    assert_eq!(
        refused.to_string(),
        "the server refused 2 frame(s); the first: error 401 (permission_denied): denied here"
    );
    client.check_refusals().expect("each refusal is reported once");
    assert_eq!(client.statistics().refused_by_server, 3);
    drop(frames);
}

#[test]
fn an_error_frame_ends_the_connection_for_every_later_call() {
    let (address, frames) = spawn_fake_server();
    let client = Client::connect(address).expect("connect");
    let subscription = client.subscribe("things.>").expect("subscribe");
    client.publish("poison", b"").expect("buffered before the server objects");
    let error = client.flush().expect_err("the server closes");
    assert_eq!(error.server_code(), Some(ErrorCode::InvalidSubject), "{error:?}");
    assert!(matches!(client.publish("a", b""), Err(ClientError::Server { code: 200, .. })));
    assert!(subscription.next().is_none(), "subscriptions are closed");
    assert!(error.is_fatal());
    drop(frames);
}

#[test]
fn ack_mode_waits_for_ok_and_reports_the_error_to_the_call_that_caused_it() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut writer = stream.try_clone().expect("clone");
        serve(stream, flit_wire::PROTOCOL_VERSION, |frame| {
            // In ack mode the fake server acknowledges what the client sends.
            if matches!(frame, Frame::Publish(ref publish) if &publish.subject[..] != b"poison")
                || matches!(frame, Frame::Subscribe(_) | Frame::Unsubscribe(_))
            {
                let mut ok = BytesMut::new();
                Encoder::bare(&mut ok, Op::Ok);
                writer.write_all(&ok).is_ok()
            } else {
                true
            }
        });
    });
    let client = Client::connect_with(address, Options { ack_mode: true, ..Options::default() }).expect("connect");
    let subscription = client.subscribe("a.b").expect("acknowledged subscribe");
    client.publish("a.b", b"x").expect("acknowledged publish");
    subscription.unsubscribe().expect("acknowledged unsubscribe");
    let error = client.publish("poison", b"").expect_err("the Error answers this publish");
    assert_eq!(error.server_code(), Some(ErrorCode::InvalidSubject));
}

#[test]
fn async_client_handshake_request_and_no_responders() {
    let (address, frames) = spawn_fake_server();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = AsyncClient::connect(address).await.expect("connect");
        assert_eq!(client.welcome().shard, 3);
        let error = client.request("nobody.home", b"?", TIMEOUT).await.expect_err("nobody answers");
        assert!(matches!(error, ClientError::NoResponders), "{error:?}");
        let answer = client.request("echo.async", b"hi", TIMEOUT).await.expect("echo");
        assert_eq!(&answer.payload[..], b"hi");
        client.publish("orders.eu", b"async").await.expect("publish");
        client.flush().await.expect("flush");
        client.close().await.expect("close");
    });
    let seen: Vec<Frame> = frames.try_iter().collect();
    assert!(seen.iter().any(|frame| matches!(frame, Frame::Publish(publish) if &publish.payload[..] == b"async")));
}

#[test]
fn a_version_1_server_serves_everything_but_streams() {
    let (address, frames) = spawn_fake_server_speaking(1);
    let client = Client::connect(address).expect("a version-1 server is accepted");
    assert_eq!(client.welcome().version, 1);
    let refused = client.publish_durable("orders.eu", b"x").expect_err("no streams in version 1");
    assert!(matches!(refused, ClientError::StreamsUnsupported { version: 1 }), "{refused}");
    assert!(!refused.is_fatal());
    let refused = client.stream_info("orders").expect_err("no streams in version 1");
    assert!(matches!(refused, ClientError::StreamsUnsupported { version: 1 }), "{refused}");
    client.publish("orders.eu", b"plain").expect("publish");
    client.flush().expect("flush");
    assert!(matches!(next_frame(&frames), Frame::Hello(_)));
    let Frame::Publish(publish) = next_frame(&frames) else { panic!("only the plain Publish was sent") };
    assert_eq!(&publish.payload[..], b"plain");
    assert_eq!(next_frame(&frames), Frame::Ping);
}
