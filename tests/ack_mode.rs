//! Ack mode: every publish, subscribe and unsubscribe is answered with Ok (or
//! an Error), and a subscribe's Ok means the subscription is already visible
//! to publishers on every shard, without a separate flush.

mod common;

use std::time::Duration;

use common::{next_message, FlitServer, SHARD_COUNTS};
use flit_client::ClientError;
use flit_wire::ErrorCode;

#[test]
fn subscribe_ok_means_visible_on_every_shard() {
    let server = FlitServer::start(2, &[]);
    for (subscriber_shard, publisher_shard) in [(1, 0), (0, 1)] {
        let subscriber = server.ack_client_on_shard(subscriber_shard);
        let publisher = server.ack_client_on_shard(publisher_shard);
        for round in 0..50u32 {
            let subject = format!("acked.{round}");
            let subscription = subscriber.subscribe(&subject).expect("subscribe answered with Ok");
            // No flush: the Ok already waited for every shard.
            publisher.publish(&subject, &round.to_le_bytes()).expect("publish answered with Ok");
            assert_eq!(&next_message(&subscription).payload[..], &round.to_le_bytes());
            subscription.unsubscribe().expect("unsubscribe answered with Ok");
        }
    }
}

#[test]
fn an_error_is_returned_to_the_call_that_caused_it() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &["--subscriptions-max", "2"]);
        let client = server.ack_client();
        let _first = client.subscribe("a").expect("first");
        let _second = client.subscribe("b").expect("second");
        let third = client.subscribe("c");
        match third {
            Err(error) => assert_eq!(error.server_code(), Some(ErrorCode::TooManySubscriptions), "{error}"),
            Ok(_) => panic!("a third subscription is over the limit"),
        }
        // The server closes the connection after an Error frame.
        let after = client.publish("a", b"x");
        assert!(matches!(after, Err(ClientError::Server { .. }) | Err(ClientError::Disconnected)), "{after:?}");
        let _ = client.flush_timeout(Duration::from_millis(100));
    }
}
