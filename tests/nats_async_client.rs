//! async-nats, the NATS project's Rust client, unchanged, against flit's
//! NATS listener: connect and INFO, `*` and `>` wildcards, queue groups
//! (each message to exactly one member), request/reply, no responders at
//! once rather than a timeout, headers (multi-valued keys too),
//! auto-unsubscribe after a maximum, max_payload (exactly accepted, one byte
//! more refused), flush as a round trip, drain, token and user/password
//! authentication, permission violations reported while the connection
//! stays usable, and the TLS upgrade with a CA made at test time.
//!
//! `FLIT_NATS_SERVER=nats-server cargo test -p flit-router --test
//! nats_async_client` runs the same tests against a real nats-server with an
//! equivalent config (see `tests/nats_clients/harness.rs`): every
//! expectation here was checked that way first, so they are NATS's, not
//! flit's. Every wait is bounded; a test that would hang fails instead.

mod common;
#[path = "nats_clients/harness.rs"]
mod harness;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::{
    Client, ConnectErrorKind, ConnectOptions, Event, HeaderMap, Message, PublishErrorKind, RequestErrorKind,
    ServerError, Subscriber,
};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use harness::{NatsServer, Setup, ADMIN_PASSWORD, ADMIN_USER, MAX_PAYLOAD_BYTES, ORDERS_PASSWORD, ORDERS_USER, TOKEN};
use tokio::sync::mpsc;

/// A bound on every single wait.
const WAIT: Duration = Duration::from_secs(5);
/// A bound on a whole test body, behind the per-wait bounds.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `body` on a fresh runtime, failing the test after [`TEST_TIMEOUT`].
fn block_on(body: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, body).await.expect("the test did not finish within its time");
    });
}

/// Options every test uses: no reconnecting (a lost connection must fail the
/// test, not be hidden), bounded connect and request times, and the events
/// (server errors, closed) sent to a channel the test reads.
fn options() -> (ConnectOptions, mpsc::UnboundedReceiver<Event>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let options = ConnectOptions::new()
        .connection_timeout(WAIT)
        .request_timeout(Some(WAIT))
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(event);
            }
        });
    (options, receiver)
}

async fn connect(server: &NatsServer) -> Client {
    options().0.connect(server.url.as_str()).await.expect("connect")
}

async fn next_message(subscriber: &mut Subscriber) -> Message {
    tokio::time::timeout(WAIT, subscriber.next())
        .await
        .expect("a message within 5 s")
        .expect("the subscription is still open")
}

/// Writes out what the client has buffered. async-nats's flush is only
/// that: it sends no PING and waits for no PONG (unlike nats-py's and
/// nats.js's), so it is never used here as a round trip; see [`round_trip`].
async fn flush(client: &Client) {
    tokio::time::timeout(WAIT, client.flush()).await.expect("flush within 5 s").expect("flush");
}

/// Nobody subscribes here; `round_trip` requests it.
const NOBODY_LISTENS: &str = "orders.nobody.listens";

/// A round trip through the server: a request nobody answers. The server's
/// no-responders status comes back after it has processed everything this
/// client sent before, and after every message it had for this client by
/// then, so afterwards those messages are in the subscribers' queues. It
/// counts one message in `in_messages` (the status). The subject is under
/// `orders.` so that the permissions test's user may publish it.
async fn round_trip(client: &Client) {
    let error = client.request(NOBODY_LISTENS, Bytes::new()).await.expect_err("nobody answers a round trip");
    assert_eq!(error.kind(), RequestErrorKind::NoResponders, "round trip: {error:?}");
}

/// Asserts `subscriber` has no message queued (call after [`round_trip`]).
fn assert_nothing_queued(subscriber: &mut Subscriber, what: &str) {
    if let Some(Some(message)) = subscriber.next().now_or_never() {
        panic!("{what}: an unexpected message on {}: {:?}", message.subject, message.payload);
    }
}

/// Waits until `publisher`'s messages on `subject` reach every subscriber in
/// `ready`, subscriptions each member made after the ones under test. As a
/// server applies a client's operations in order, the members' earlier
/// subscriptions are then in force for `publisher` too: without PING/PONG
/// this is how a test knows a subscription made on one connection applies to
/// another. The probes go only to `subject`.
async fn wait_for_interest(publisher: &Client, subject: &str, ready: Vec<Subscriber>) {
    let mut waiting = ready;
    let deadline = Instant::now() + WAIT;
    while !waiting.is_empty() {
        assert!(Instant::now() < deadline, "{} subscriptions on {subject} never saw a probe", waiting.len());
        publisher.publish(subject.to_owned(), "probe".into()).await.expect("publish a probe");
        flush(publisher).await;
        let mut still_waiting = Vec::new();
        for mut subscriber in waiting {
            match tokio::time::timeout(Duration::from_millis(50), subscriber.next()).await {
                Ok(Some(_)) => {}
                _ => still_waiting.push(subscriber),
            }
        }
        waiting = still_waiting;
    }
}

/// The next server error among the events, skipping others (Connected).
async fn next_server_error(events: &mut mpsc::UnboundedReceiver<Event>) -> String {
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await.expect("an event within 5 s") {
            Some(Event::ServerError(ServerError::Other(text))) => return text,
            Some(Event::ServerError(other)) => panic!("unexpected server error {other:?}"),
            Some(_) => continue,
            None => panic!("the event channel closed"),
        }
    }
}

/// Asserts no server error has been reported so far (after a flush, any the
/// server sent has arrived).
fn assert_no_server_error(events: &mut mpsc::UnboundedReceiver<Event>) {
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, Event::ServerError(_)), "unexpected {event:?}");
    }
}

fn in_messages(client: &Client) -> u64 {
    client.statistics().in_messages.load(Ordering::Relaxed)
}

#[test]
fn connect_reads_info() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        let client = connect(&server).await;
        assert_eq!(client.connection_state(), async_nats::connection::State::Connected);
        let info = client.server_info();
        assert_eq!(info.max_payload, MAX_PAYLOAD_BYTES, "INFO max_payload");
        assert!(info.headers, "INFO must say headers: true ({info:?})");
        assert!(!info.auth_required, "no authentication configured, yet INFO says auth_required");
        round_trip(&client).await;
    });
}

#[test]
fn wildcards_match_as_in_nats() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        // One client publishes and subscribes: what the server sends it for
        // these publishes precedes the flush's PONG, so after the flush the
        // message counts are final.
        let client = connect(&server).await;
        let mut one_token = client.subscribe("wild.*").await.expect("subscribe");
        let mut the_rest = client.subscribe("wild.>").await.expect("subscribe");
        let mut middle = client.subscribe("wild.*.created").await.expect("subscribe");
        let mut exact = client.subscribe("wild.eu.created").await.expect("subscribe");
        let subjects = ["wild.eu", "wild.eu.created", "wild.us.created.late", "wild", "tame.eu"];
        for subject in subjects {
            client.publish(subject, Bytes::from(subject)).await.expect("publish");
        }
        round_trip(&client).await;
        let expected: [(&str, &mut Subscriber, &[&str]); 4] = [
            ("wild.*", &mut one_token, &["wild.eu"]),
            ("wild.>", &mut the_rest, &["wild.eu", "wild.eu.created", "wild.us.created.late"]),
            ("wild.*.created", &mut middle, &["wild.eu.created"]),
            ("wild.eu.created", &mut exact, &["wild.eu.created"]),
        ];
        for (pattern, subscriber, subjects) in expected {
            for subject in subjects {
                let message = next_message(subscriber).await;
                assert_eq!(message.subject.as_str(), *subject, "{pattern}");
                assert_eq!(message.payload, Bytes::from(*subject), "{pattern}");
            }
            assert_nothing_queued(subscriber, pattern);
        }
        // Nothing else was delivered: 6 matches and the round trip's status.
        assert_eq!(in_messages(&client), 6 + 1, "deliveries beyond the matches");
    });
}

#[test]
fn queue_group_members_share_messages_without_duplicates() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        const MESSAGES: usize = 300;
        let mut members = Vec::new();
        let mut ready = Vec::new();
        for _ in 0..3 {
            let client = connect(&server).await;
            let subscriber = client.queue_subscribe("work.items", "workers".into()).await.expect("queue subscribe");
            ready.push(client.subscribe("work.ready").await.expect("subscribe"));
            members.push((client, subscriber));
        }
        let observer = connect(&server).await;
        let mut observed = observer.subscribe("work.items").await.expect("subscribe");
        ready.push(observer.subscribe("work.ready").await.expect("subscribe"));
        let publisher = connect(&server).await;
        wait_for_interest(&publisher, "work.ready", ready).await;
        for number in 0..MESSAGES {
            publisher.publish("work.items", Bytes::from(number.to_string())).await.expect("publish");
        }
        flush(&publisher).await;

        // Read the members until all the messages are in, then a round trip
        // on each member: a duplicate would have arrived before its answer.
        let mut received: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
        let deadline = Instant::now() + WAIT;
        while received.iter().map(Vec::len).sum::<usize>() < MESSAGES {
            assert!(Instant::now() < deadline, "only {:?} of {MESSAGES} arrived", received.iter().map(Vec::len));
            for (index, (_, subscriber)) in members.iter_mut().enumerate() {
                if let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(10), subscriber.next()).await {
                    received[index].push(std::str::from_utf8(&message.payload).unwrap().parse().unwrap());
                }
            }
        }
        for (client, subscriber) in &mut members {
            round_trip(client).await;
            assert_nothing_queued(subscriber, "a queue group member");
        }
        let mut everything: Vec<usize> = received.concat();
        everything.sort_unstable();
        assert_eq!(everything, (0..MESSAGES).collect::<Vec<_>>(), "a message was lost or duplicated");
        println!("queue group distribution: {:?}", received.iter().map(Vec::len).collect::<Vec<_>>());

        // A plain subscriber beside the group sees every message, in order.
        for number in 0..MESSAGES {
            assert_eq!(next_message(&mut observed).await.payload, Bytes::from(number.to_string()));
        }
    });
}

#[test]
fn request_reply() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        let responder = connect(&server).await;
        let mut requests = responder.subscribe("service.echo").await.expect("subscribe");
        let answering = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let mut answer = b"echo:".to_vec();
                answer.extend_from_slice(&request.payload);
                responder.publish(request.reply.expect("a reply subject"), answer.into()).await.expect("respond");
            }
        });
        let requester = connect(&server).await;
        // The responder's subscription is in force for the requester once a
        // request is answered instead of refused for no responders.
        let deadline = Instant::now() + WAIT;
        loop {
            match requester.request("service.echo", "ready?".into()).await {
                Ok(answer) => break assert_eq!(answer.payload, Bytes::from("echo:ready?")),
                Err(error) if error.kind() == RequestErrorKind::NoResponders && Instant::now() < deadline => {}
                Err(error) => panic!("the responder never answered: {error:?}"),
            }
        }
        // Concurrent requests share async-nats's one response subscription;
        // each answer must reach the request that asked.
        let questions: Vec<String> = (0..20).map(|number| format!("question-{number}")).collect();
        let answers = futures_util::future::join_all(
            questions.iter().map(|question| requester.request("service.echo", Bytes::from(question.clone()))),
        )
        .await;
        for (question, answer) in questions.iter().zip(answers) {
            let answer = answer.expect("an answer");
            assert_eq!(answer.payload, Bytes::from(format!("echo:{question}")));
        }
        answering.abort();
    });
}

#[test]
fn no_responders_fails_the_request_at_once() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        let client = connect(&server).await;
        let started = Instant::now();
        let error = client.request("nobody.listens.here", "anyone?".into()).await.expect_err("no responders");
        let elapsed = started.elapsed();
        assert_eq!(error.kind(), RequestErrorKind::NoResponders, "{error:?}");
        assert!(elapsed < Duration::from_secs(1), "no-responders took {elapsed:?} with a request timeout of {WAIT:?}");
        // The connection is unaffected.
        round_trip(&client).await;
    });
}

#[test]
fn headers_reach_subscribers_and_responders() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        let client = connect(&server).await;
        let mut subscriber = client.subscribe("headers.plain").await.expect("subscribe");
        let mut headers = HeaderMap::new();
        headers.insert("Trace-Id", "abc-123");
        headers.append("Hop", "first");
        headers.append("Hop", "second");
        client.publish_with_headers("headers.plain", headers, "with headers".into()).await.expect("publish");
        let message = next_message(&mut subscriber).await;
        assert_eq!(message.payload, Bytes::from("with headers"));
        let received = message.headers.expect("headers");
        assert_eq!(received.get("Trace-Id").map(|value| value.as_str()), Some("abc-123"));
        let hops: Vec<&str> = received.get_all("Hop").map(|value| value.as_str()).collect();
        assert_eq!(hops, ["first", "second"], "a multi-valued key keeps its values, in order");
        assert!(message.status.is_none(), "a status on an ordinary message: {:?}", message.status);

        // Headers and an empty payload.
        let mut headers = HeaderMap::new();
        headers.insert("Only", "headers");
        client.publish_with_headers("headers.plain", headers, Bytes::new()).await.expect("publish");
        let message = next_message(&mut subscriber).await;
        assert!(message.payload.is_empty());
        assert_eq!(message.headers.expect("headers").get("Only").map(|value| value.as_str()), Some("headers"));

        // A plain publish after one with headers carries none.
        client.publish("headers.plain", "plain".into()).await.expect("publish");
        assert!(next_message(&mut subscriber).await.headers.is_none());

        // A request's headers reach the responder; the reply's come back.
        let mut requests = client.subscribe("headers.service").await.expect("subscribe");
        let responder = client.clone();
        let answering = tokio::spawn(async move {
            let request = requests.next().await.expect("a request");
            let trace = request.headers.as_ref().and_then(|headers| headers.get("Trace-Id")).expect("Trace-Id");
            let mut headers = HeaderMap::new();
            headers.insert("Seen-Trace", trace.as_str());
            responder.publish_with_headers(request.reply.expect("reply"), headers, "ok".into()).await.expect("reply");
        });
        let mut headers = HeaderMap::new();
        headers.insert("Trace-Id", "t-77");
        let answer = client.request_with_headers("headers.service", headers, "q".into()).await.expect("an answer");
        assert_eq!(answer.headers.expect("headers").get("Seen-Trace").map(|value| value.as_str()), Some("t-77"));
        answering.await.expect("the responder");
    });
}

#[test]
fn unsubscribe_with_a_maximum_stops_after_it() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        let client = connect(&server).await;
        let mut subscriber = client.subscribe("limited.subject").await.expect("subscribe");
        subscriber.unsubscribe_after(3).await.expect("unsubscribe after 3");
        for number in 0..5 {
            client.publish("limited.subject", Bytes::from(number.to_string())).await.expect("publish");
        }
        round_trip(&client).await;
        for number in 0..3 {
            assert_eq!(next_message(&mut subscriber).await.payload, Bytes::from(number.to_string()));
        }
        // The stream ends after the maximum...
        let end = tokio::time::timeout(WAIT, subscriber.next()).await.expect("the stream ends within 5 s");
        assert!(end.is_none(), "a fourth message: {end:?}");
        // ... and the server itself stopped: it sent 3 messages (and the
        // round trip's status), not 5.
        assert_eq!(in_messages(&client), 3 + 1, "the server sent more than the maximum");
    });
}

#[test]
fn max_payload_is_accepted_and_one_byte_more_is_refused() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        let (options, mut events) = options();
        let client = options.connect(server.url.as_str()).await.expect("connect");
        assert_eq!(client.server_info().max_payload, MAX_PAYLOAD_BYTES);
        let mut subscriber = client.subscribe("big.subject").await.expect("subscribe");
        let exactly: Bytes = (0..MAX_PAYLOAD_BYTES).map(|index| (index % 251) as u8).collect::<Vec<u8>>().into();
        client.publish("big.subject", exactly.clone()).await.expect("a payload of exactly max_payload");
        assert_eq!(next_message(&mut subscriber).await.payload, exactly);
        let over: Bytes = vec![7u8; MAX_PAYLOAD_BYTES + 1].into();
        let error = client.publish("big.subject", over).await.expect_err("one byte over max_payload");
        assert_eq!(error.kind(), PublishErrorKind::MaxPayloadExceeded, "{error:?}");
        // Refused by the client, so the connection is intact.
        round_trip(&client).await;
        assert_nothing_queued(&mut subscriber, "after the refused publish");
        assert_no_server_error(&mut events);
    });
}

#[test]
fn flush_sends_what_is_buffered() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        // async-nats's flush writes its buffer out and returns (no PING): the
        // published message then reaches another connection's subscriber.
        let subscriber_client = connect(&server).await;
        let mut subscriber = subscriber_client.subscribe("flush.subject").await.expect("subscribe");
        let ready = subscriber_client.subscribe("flush.ready").await.expect("subscribe");
        let client = connect(&server).await;
        wait_for_interest(&client, "flush.ready", vec![ready]).await;
        client.publish("flush.subject", "flushed".into()).await.expect("publish");
        flush(&client).await;
        assert_eq!(next_message(&mut subscriber).await.payload, Bytes::from("flushed"));
        // A round trip is answered, and nothing else arrived.
        round_trip(&subscriber_client).await;
        assert_nothing_queued(&mut subscriber, "after the flushed message");
    });
}

#[test]
fn drain_delivers_pending_messages_then_closes() {
    let server = NatsServer::start(Setup::Open);
    block_on(async {
        const MESSAGES: usize = 50;
        let (options, mut events) = options();
        let client = options.connect(server.url.as_str()).await.expect("connect");
        let mut subscriber = client.subscribe("drain.subject").await.expect("subscribe");
        for number in 0..MESSAGES {
            client.publish("drain.subject", Bytes::from(number.to_string())).await.expect("publish");
        }
        // async-nats's drain does not wait for the server (it unsubscribes,
        // hands over what it has read, and closes); the round trip makes
        // every message received, though not yet read by us, before it
        // starts.
        round_trip(&client).await;
        client.drain().await.expect("drain");
        for number in 0..MESSAGES {
            assert_eq!(next_message(&mut subscriber).await.payload, Bytes::from(number.to_string()));
        }
        let end = tokio::time::timeout(WAIT, subscriber.next()).await.expect("the subscription ends within 5 s");
        assert!(end.is_none(), "a message after the drained ones: {end:?}");
        loop {
            match tokio::time::timeout(WAIT, events.recv()).await.expect("closed within 5 s") {
                Some(Event::Closed) => break,
                Some(Event::ServerError(error)) => panic!("server error while draining: {error}"),
                Some(_) => continue,
                None => panic!("the event channel closed without Closed"),
            }
        }
        assert!(client.publish("drain.subject", "late".into()).await.is_err() || client.flush().await.is_err());
    });
}

async fn expect_authorization_refused(server: &NatsServer, options: ConnectOptions, what: &str) {
    let error = options.connect(server.url.as_str()).await.expect_err(what);
    assert_eq!(error.kind(), ConnectErrorKind::AuthorizationViolation, "{what}: {error:?}");
}

/// Subscribes and publishes on one client: the message comes back.
async fn publish_and_receive(client: &Client, subject: &str) {
    let mut subscriber = client.subscribe(subject.to_owned()).await.expect("subscribe");
    client.publish(subject.to_owned(), "authorized".into()).await.expect("publish");
    assert_eq!(next_message(&mut subscriber).await.payload, Bytes::from("authorized"));
}

#[test]
fn token_authentication() {
    let server = NatsServer::start(Setup::Token);
    block_on(async {
        let client = options().0.token(TOKEN.into()).connect(server.url.as_str()).await.expect("the right token");
        assert!(client.server_info().auth_required, "INFO must say auth_required");
        publish_and_receive(&client, "token.subject").await;
        expect_authorization_refused(&server, options().0.token("not-the-token-0000".into()), "a wrong token").await;
        expect_authorization_refused(&server, options().0, "no token").await;
    });
}

#[test]
fn user_password_authentication() {
    let server = NatsServer::start(Setup::Users);
    block_on(async {
        let right = options().0.user_and_password(ADMIN_USER.into(), ADMIN_PASSWORD.into());
        let client = right.connect(server.url.as_str()).await.expect("the right password");
        publish_and_receive(&client, "anything.goes").await;
        let wrong = options().0.user_and_password(ADMIN_USER.into(), "wrong-password".into());
        expect_authorization_refused(&server, wrong, "a wrong password").await;
        let unknown = options().0.user_and_password("nobody".into(), ADMIN_PASSWORD.into());
        expect_authorization_refused(&server, unknown, "an unknown user").await;
        expect_authorization_refused(&server, options().0, "no credentials").await;
    });
}

#[test]
fn permission_violations_are_reported_and_the_connection_stays() {
    let server = NatsServer::start(Setup::Users);
    block_on(async {
        let (options, mut events) = options();
        let options = options.user_and_password(ORDERS_USER.into(), ORDERS_PASSWORD.into());
        let client = options.connect(server.url.as_str()).await.expect("connect as orders");
        let mut allowed = client.subscribe("orders.created").await.expect("subscribe");

        // Denied by a deny rule, then outside every allow rule: each is an
        // error event with nats-server's exact text, and no disconnection.
        client.publish("orders.secret.plan", "leak".into()).await.expect("publish is asynchronous");
        round_trip(&client).await;
        assert_eq!(
            next_server_error(&mut events).await,
            r#"Permissions Violation for Publish to "orders.secret.plan""#
        );
        client.publish("billing.invoice", "x".into()).await.expect("publish is asynchronous");
        round_trip(&client).await;
        assert_eq!(next_server_error(&mut events).await, r#"Permissions Violation for Publish to "billing.invoice""#);

        let mut denied = client.subscribe("orders.secret.>").await.expect("subscribe is asynchronous");
        round_trip(&client).await;
        assert_eq!(
            next_server_error(&mut events).await,
            r#"Permissions Violation for Subscription to "orders.secret.>""#
        );
        let mut denied_queue =
            client.queue_subscribe("orders.secret.plan", "auditors".into()).await.expect("subscribe is asynchronous");
        round_trip(&client).await;
        assert_eq!(
            next_server_error(&mut events).await,
            r#"Permissions Violation for Subscription to "orders.secret.plan" using queue "auditors""#
        );

        // Still connected and working; the denied subscriptions got nothing.
        assert_eq!(client.connection_state(), async_nats::connection::State::Connected);
        client.publish("orders.created", "fine".into()).await.expect("publish");
        assert_eq!(next_message(&mut allowed).await.payload, Bytes::from("fine"));
        round_trip(&client).await;
        // The allowed message and five round trips' statuses: nothing for
        // the denied subscriptions.
        assert_eq!(in_messages(&client), 1 + 5, "only the allowed message was delivered");
        assert_nothing_queued(&mut denied, "the denied subscription");
        assert_nothing_queued(&mut denied_queue, "the denied queue subscription");
        assert_no_server_error(&mut events);

        // Request/reply through _INBOX works under these permissions.
        let mut requests = client.subscribe("orders.service").await.expect("subscribe");
        let responder = client.clone();
        let answering = tokio::spawn(async move {
            let request = requests.next().await.expect("a request");
            responder.publish(request.reply.expect("reply"), "answer".into()).await.expect("respond");
        });
        let answer = client.request("orders.service", "q".into()).await.expect("an answer");
        assert_eq!(answer.payload, Bytes::from("answer"));
        answering.await.expect("the responder");
    });
}

#[test]
fn tls_upgrade_with_a_trusted_ca() {
    let server = NatsServer::start(Setup::Tls);
    let ca_file = server.ca_file.clone().expect("a CA file");
    block_on(async {
        let client = options()
            .0
            .add_root_certificates(ca_file)
            .require_tls(true)
            .connect(server.url.as_str())
            .await
            .expect("connect over TLS");
        assert!(client.server_info().tls_required, "INFO must say tls_required");
        publish_and_receive(&client, "secure.subject").await;
        // Without the CA the certificate is not trusted: the handshake is real.
        let error = options().0.require_tls(true).connect(server.url.as_str()).await.expect_err("an untrusted CA");
        // async-nats reports a failed certificate check as an I/O error
        // whose source is rustls's.
        assert!(format!("{error:?}").contains("UnknownIssuer"), "refused for another reason: {error:?}");
    });
}
