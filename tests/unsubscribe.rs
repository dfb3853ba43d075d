//! Unsubscribe: at once, and automatically after N messages.

mod common;

use common::{assert_no_message, next_message, FlitServer, SHARD_COUNTS};

#[test]
fn unsubscribe_stops_deliveries() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("topic").expect("subscribe");
        let kept = subscriber.subscribe("topic").expect("subscribe");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        publisher.publish("topic", b"1").expect("publish");
        publisher.flush().expect("flush");
        assert_eq!(&next_message(&subscription).payload[..], b"1");
        assert_eq!(&next_message(&kept).payload[..], b"1");
        subscription.unsubscribe().expect("unsubscribe");
        subscriber.flush().expect("flush");
        publisher.publish("topic", b"2").expect("publish");
        publisher.flush().expect("flush");
        assert_eq!(&next_message(&kept).payload[..], b"2", "the other subscription is unaffected");
        assert!(
            subscription.next_timeout(std::time::Duration::from_millis(200)).map_or(true, |m| m.is_none()),
            "nothing after unsubscribe"
        );
    }
}

#[test]
fn auto_unsubscribe_after_n_messages() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let subscription = subscriber.subscribe("counted").expect("subscribe");
        subscription.unsubscribe_after(3).expect("unsubscribe after 3");
        subscriber.flush().expect("flush");
        let publisher = server.client();
        for index in 0..10u8 {
            publisher.publish("counted", &[index]).expect("publish");
        }
        publisher.flush().expect("flush");
        for index in 0..3u8 {
            assert_eq!(&next_message(&subscription).payload[..], &[index]);
        }
        assert!(
            subscription.next_timeout(std::time::Duration::from_millis(300)).map_or(true, |m| m.is_none()),
            "exactly three messages"
        );
    }
}

#[test]
fn last_unsubscribe_removes_interest_on_other_shards() {
    let server = FlitServer::start(2, &[]);
    let subscriber = server.client_on_shard(1);
    let subscription = subscriber.subscribe("interest.gone").expect("subscribe");
    subscriber.flush().expect("flush");
    subscription.unsubscribe().expect("unsubscribe");
    subscriber.flush().expect("flush waits until every shard dropped the interest");
    let requester = server.client_on_shard(0);
    let answer = requester.request("interest.gone", b"?", std::time::Duration::from_secs(2));
    assert!(matches!(answer, Err(flit_client::ClientError::NoResponders)), "got {answer:?}");
    let again = subscriber.subscribe("interest.gone").expect("subscribe again");
    subscriber.flush().expect("flush");
    requester.publish("interest.gone", b"back").expect("publish");
    requester.flush().expect("flush");
    assert_eq!(&next_message(&again).payload[..], b"back");
    assert_no_message(&again);
}
