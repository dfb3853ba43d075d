//! The tokio client against the real router: pub/sub across shards, queue
//! groups, request/reply and no responders, all from async code; and the
//! request path that polls the socket on the caller's task (see
//! client/src/asynchronous/link.rs): many tasks requesting at once while a
//! subscription is flooded, a request cancelled while it reads, the
//! server's idle Ping during a request and while idle.

mod common;

use std::time::Duration;

use common::FlitServer;
use flit_client::{AsyncClient, ClientError};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn async_publish_and_subscribe_across_shards() {
    let server = FlitServer::start(2, &[]);
    runtime().block_on(async {
        let subscriber = AsyncClient::connect(server.address).await.expect("connect");
        let mut subscription = subscriber.subscribe("async.>").await.expect("subscribe");
        subscriber.flush().await.expect("flush");
        let publisher = AsyncClient::connect(server.address).await.expect("connect");
        for index in 0..1000u32 {
            publisher.publish("async.data", &index.to_le_bytes()).await.expect("publish");
        }
        publisher.flush().await.expect("flush");
        for index in 0..1000u32 {
            let message = subscription
                .next_timeout(Duration::from_secs(5))
                .await
                .expect("open")
                .unwrap_or_else(|| panic!("message {index} within 5 s"));
            assert_eq!(message.subject, "async.data");
            assert_eq!(&message.payload[..], &index.to_le_bytes(), "in publish order");
        }
    });
}

#[test]
fn async_request_reply_and_no_responders() {
    let server = FlitServer::start(2, &[]);
    runtime().block_on(async {
        let responder = AsyncClient::connect(server.address).await.expect("connect");
        let mut requests = responder.queue_subscribe("async.echo", "echoes").await.expect("subscribe");
        responder.flush().await.expect("flush");
        let answering = tokio::spawn(async move {
            let mut answered = 0u32;
            while let Ok(Some(request)) = requests.next_timeout(Duration::from_secs(2)).await {
                request.respond_async(&responder, &request.payload).await.expect("respond");
                answered += 1;
            }
            answered
        });
        let requester = AsyncClient::connect(server.address).await.expect("connect");
        for index in 0..100u32 {
            let reply =
                requester.request("async.echo", &index.to_le_bytes(), Duration::from_secs(5)).await.expect("reply");
            assert_eq!(&reply.payload[..], &index.to_le_bytes());
        }
        let nobody = requester.request("async.nobody", b"?", Duration::from_secs(5)).await;
        assert!(matches!(nobody, Err(ClientError::NoResponders)), "got {nobody:?}");
        assert_eq!(answering.await.expect("responder task"), 100);
    });
}

/// Answers requests on `subject` with their payload after `delay`, on a
/// thread, through a blocking client (so the runtime under test only runs
/// the requester).
fn spawn_blocking_responder(server: &FlitServer, subject: &str, delay: Duration) {
    let client = server.client();
    let requests = client.subscribe(subject).expect("subscribe");
    client.flush().expect("flush");
    std::thread::spawn(move || {
        for request in requests.iter() {
            std::thread::sleep(delay);
            if request.respond(&client, &request.payload).is_err() {
                return;
            }
        }
    });
}

#[test]
fn async_requests_from_many_tasks_on_one_thread_while_a_subscription_is_flooded() {
    const FLOOD: u32 = 20_000;
    let server = FlitServer::start(2, &[]);
    spawn_blocking_responder(&server, "svc.echo", Duration::ZERO);
    let publisher = server.client();
    runtime().block_on(async {
        let client = AsyncClient::connect(server.address).await.expect("connect");
        let mut subscription = client.subscribe("flood.>").await.expect("subscribe");
        client.flush().await.expect("flush");
        let receiver = tokio::spawn(async move {
            for expected in 0..FLOOD {
                let message = subscription
                    .next_timeout(Duration::from_secs(20))
                    .await
                    .expect("open")
                    .unwrap_or_else(|| panic!("message {expected} within 20 s"));
                assert_eq!(&message.payload[..], &expected.to_le_bytes(), "whole and in order");
            }
        });
        let flood = std::thread::spawn(move || {
            for index in 0..FLOOD {
                publisher.publish("flood.data", &index.to_le_bytes()).expect("publish");
            }
            publisher.flush().expect("flush");
        });
        let requesters: Vec<_> = (0..6)
            .map(|task| {
                let client = client.clone();
                tokio::spawn(async move {
                    for index in 0..100 {
                        let payload = format!("task {task} request {index}");
                        let reply = client
                            .request("svc.echo", payload.as_bytes(), Duration::from_secs(10))
                            .await
                            .expect("reply");
                        assert_eq!(&reply.payload[..], payload.as_bytes(), "each reply is its own request's");
                    }
                })
            })
            .collect();
        for requester in requesters {
            requester.await.expect("requesting task");
        }
        receiver.await.expect("receiver");
        flood.join().expect("flood");
        assert_eq!(client.statistics().slow_consumer_drops, 0);
    });
}

#[test]
fn a_cancelled_async_request_leaves_the_reading_to_the_others() {
    let server = FlitServer::start(1, &[]);
    spawn_blocking_responder(&server, "svc.slow", Duration::from_millis(300));
    spawn_blocking_responder(&server, "svc.echo", Duration::ZERO);
    let publisher = server.client();
    runtime().block_on(async {
        let client = AsyncClient::connect(server.address).await.expect("connect");
        let mut subscription = client.subscribe("after.>").await.expect("subscribe");
        client.flush().await.expect("flush");
        // The request's future is dropped while it polls the socket itself.
        let cancelled =
            tokio::time::timeout(Duration::from_millis(50), client.request("svc.slow", b"?", Duration::from_secs(10)))
                .await;
        assert!(cancelled.is_err(), "cancelled by the outer timeout");
        // With no caller left the reader task reads again: deliveries arrive.
        publisher.publish("after.cancel", b"delivered").expect("publish");
        publisher.flush().expect("flush");
        let message = subscription.next_timeout(Duration::from_secs(5)).await.expect("open").expect("a message");
        assert_eq!(&message.payload[..], b"delivered");
        let reply = client.request("svc.echo", b"next", Duration::from_secs(10)).await.expect("reply");
        assert_eq!(&reply.payload[..], b"next");
    });
}

#[test]
fn a_waiting_async_request_answers_the_servers_idle_ping_and_an_idle_client_stays_connected() {
    // The server Pings a connection silent for 750 ms and closes it at
    // 1.5 s, checking every 250 ms: a Ping must be answered within 500 ms.
    let server = FlitServer::start(1, &["--idle-timeout-ms", "1500"]);
    spawn_blocking_responder(&server, "svc.slow", Duration::from_millis(2_000));
    spawn_blocking_responder(&server, "svc.echo", Duration::ZERO);
    runtime().block_on(async {
        // No subscription of its own: nothing but the waiting caller reads.
        let client = AsyncClient::connect(server.address).await.expect("connect");
        let reply = client.request("svc.slow", b"slow", Duration::from_secs(10)).await.expect("still connected");
        assert_eq!(&reply.payload[..], b"slow");
        // Idle, no caller: the reader task comes back after its linger and
        // answers the Pings.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        let reply = client.request("svc.echo", b"later", Duration::from_secs(10)).await.expect("still connected");
        assert_eq!(&reply.payload[..], b"later");
    });
}
