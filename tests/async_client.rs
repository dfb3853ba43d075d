//! The tokio client against the real router: pub/sub across shards, queue
//! groups, request/reply and no responders, all from async code.

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
