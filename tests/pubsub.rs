//! Pub/sub: exact subjects, `*` and `>` wildcards, headers, and publisher and
//! subscriber on different shards, against the real binary with 1 and 2 shards.

mod common;

use common::{assert_no_message, next_message, FlitServer, SHARD_COUNTS};

#[test]
fn exact_subject_is_delivered_and_others_are_not() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("orders.eu.created").expect("subscribe");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        publisher.publish("orders.eu.deleted", b"no").expect("publish");
        publisher.publish("orders.eu.created", b"yes").expect("publish");
        publisher.flush().expect("flush");
        let message = next_message(&subscription);
        assert_eq!(message.subject, "orders.eu.created");
        assert_eq!(&message.payload[..], b"yes");
        assert_no_message(&subscription);
    }
}

#[test]
fn single_token_wildcard_matches_exactly_one_token() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("orders.*.created").expect("subscribe");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        for subject in ["orders.eu.created", "orders.created", "orders.eu.x.created", "orders.us.created"] {
            publisher.publish(subject, subject.as_bytes()).expect("publish");
        }
        publisher.flush().expect("flush");
        assert_eq!(next_message(&subscription).subject, "orders.eu.created");
        assert_eq!(next_message(&subscription).subject, "orders.us.created");
        assert_no_message(&subscription);
    }
}

#[test]
fn full_wildcard_matches_one_or_more_trailing_tokens() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("a.>").expect("subscribe");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        for subject in ["a", "a.b", "b.a", "a.b.c.d"] {
            publisher.publish(subject, b"x").expect("publish");
        }
        publisher.flush().expect("flush");
        assert_eq!(next_message(&subscription).subject, "a.b");
        assert_eq!(next_message(&subscription).subject, "a.b.c.d");
        assert_no_message(&subscription);
    }
}

#[test]
fn every_matching_subscription_gets_a_copy() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let exact = subscriber.subscribe("x.y").expect("subscribe");
        let wildcard = subscriber.subscribe("x.*").expect("subscribe");
        let other = server.client();
        let tail = other.subscribe(">").expect("subscribe");
        subscriber.flush().expect("flush");
        other.flush().expect("flush");
        let publisher = server.client();
        publisher.publish("x.y", b"one").expect("publish");
        publisher.flush().expect("flush");
        for subscription in [&exact, &wildcard, &tail] {
            assert_eq!(&next_message(subscription).payload[..], b"one");
            assert_no_message(subscription);
        }
    }
}

#[test]
fn headers_and_reply_subject_round_trip() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("with.headers").expect("subscribe");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        let headers = [("trace-id", "abc123"), ("content-type", "application/json"), ("trace-id", "second")];
        publisher.publish_with("with.headers", Some("answer.here"), &headers, b"{}").expect("publish");
        publisher.flush().expect("flush");
        let message = next_message(&subscription);
        assert_eq!(message.reply.as_deref(), Some("answer.here"));
        let received: Vec<(&str, &str)> = message.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(received, headers.to_vec());
        assert_eq!(message.header("content-type"), Some("application/json"));
    }
}

#[test]
fn publisher_and_subscriber_on_different_shards() {
    let server = FlitServer::start(2, &[]);
    for (publisher_shard, subscriber_shard) in [(0, 1), (1, 0)] {
        let subscriber = server.client_on_shard(subscriber_shard);
        let subscription = subscriber.subscribe("cross.shard").expect("subscribe");
        subscriber.flush().expect("flush makes the subscription visible on every shard");
        let publisher = server.client_on_shard(publisher_shard);
        publisher.publish("cross.shard", b"hop").expect("publish");
        publisher.flush().expect("flush");
        let message = next_message(&subscription);
        assert_eq!(&message.payload[..], b"hop");
        assert_no_message(&subscription);
    }
}

/// Large payloads, and small ones between them: payloads from 32 KiB up go
/// out by reference in vectored sends, smaller ones are copied, so each
/// subscriber's stream mixes both; every payload must arrive whole, in order.
#[test]
fn large_payload_arrives_intact() {
    let sizes = [1024 * 1024, 100, 32 * 1024 - 1, 32 * 1024, 70_000, 5, 1024 * 1024, 0, 40_000];
    let payload =
        |index: usize, size: usize| -> Vec<u8> { (0..size).map(|byte| ((byte + index) % 251) as u8).collect() };
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscribers: Vec<_> = (0..3).map(|index| server.client_on_shard(index % shards)).collect();
        let subscriptions: Vec<_> =
            subscribers.iter().map(|client| client.subscribe("big").expect("subscribe")).collect();
        for client in &subscribers {
            client.flush().expect("flush");
        }
        let publisher = server.client();
        for (index, size) in sizes.iter().enumerate() {
            publisher.publish("big", &payload(index, *size)).expect("publish");
        }
        publisher.flush().expect("flush");
        for subscription in &subscriptions {
            for (index, size) in sizes.iter().enumerate() {
                let message = next_message(subscription);
                assert!(
                    message.payload[..] == payload(index, *size)[..],
                    "shards={shards}: payload {index} ({size} B)"
                );
            }
            assert_no_message(subscription);
        }
    }
}
