//! Request/reply: answers arrive, a missing answer times out, and a request
//! nobody can receive gets "no responders" at once.

mod common;

use std::time::{Duration, Instant};

use common::{FlitServer, SHARD_COUNTS};
use flit_client::ClientError;

fn spawn_echo_responder(server: &FlitServer, shard: usize, subject: &'static str) -> std::thread::JoinHandle<u32> {
    let client = server.client_on_shard(shard);
    let subscription = client.subscribe(subject).expect("subscribe");
    client.flush().expect("flush");
    std::thread::spawn(move || {
        let mut answered = 0;
        while let Ok(Some(request)) = subscription.next_timeout(Duration::from_secs(2)) {
            request.respond(&client, &request.payload).expect("respond");
            client.flush().expect("flush");
            answered += 1;
        }
        answered
    })
}

#[test]
fn request_gets_the_reply() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let responder = spawn_echo_responder(&server, shards - 1, "echo");
        let requester = server.client_on_shard(0);
        for index in 0..200u32 {
            let reply = requester.request("echo", &index.to_le_bytes(), Duration::from_secs(5)).expect("reply");
            assert_eq!(&reply.payload[..], &index.to_le_bytes());
        }
        assert_eq!(responder.join().expect("responder"), 200);
    }
}

#[test]
fn request_with_no_subscriber_gets_no_responders_at_once() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let requester = server.client();
        let started = Instant::now();
        let answer = requester.request("nobody.home", b"?", Duration::from_secs(10));
        assert!(matches!(answer, Err(ClientError::NoResponders)), "got {answer:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "answered without waiting for the timeout");
    }
}

#[test]
fn request_that_is_never_answered_times_out() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let silent = server.client();
        let _subscription = silent.subscribe("silent").expect("subscribe");
        silent.flush().expect("flush");
        let requester = server.client();
        let started = Instant::now();
        let answer = requester.request("silent", b"?", Duration::from_millis(300));
        assert!(matches!(answer, Err(ClientError::Timeout)), "got {answer:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        // The connection survives a timeout.
        requester.flush().expect("still connected");
    }
}
