//! 10,000 subscriptions on one connection: all are registered, each gets its
//! own messages, and they can all be removed.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{FlitServer, SHARD_COUNTS};

const SUBSCRIPTIONS: usize = 10_000;

#[test]
fn ten_thousand_subscriptions_on_one_connection() {
    for shards in SHARD_COUNTS {
        let server = FlitServer::start(shards, &[]);
        let subscriber = server.client();
        let subscriptions: Vec<_> = (0..SUBSCRIPTIONS)
            .map(|index| subscriber.subscribe(&format!("many.{index}")).expect("subscribe"))
            .collect();
        subscriber.flush().expect("flush");
        let publisher = server.client();
        for index in (0..SUBSCRIPTIONS).step_by(7) {
            publisher.publish(&format!("many.{index}"), &(index as u32).to_le_bytes()).expect("publish");
        }
        publisher.flush().expect("flush");
        let mut seen = HashSet::new();
        for index in (0..SUBSCRIPTIONS).step_by(7) {
            let message = subscriptions[index]
                .next_timeout(Duration::from_secs(5))
                .expect("open")
                .unwrap_or_else(|| panic!("subscription {index} got nothing"));
            assert_eq!(message.subject, format!("many.{index}"));
            seen.insert(index);
        }
        assert_eq!(seen.len(), SUBSCRIPTIONS.div_ceil(7));
        for subscription in &subscriptions {
            subscription.unsubscribe().expect("unsubscribe");
        }
        subscriber.flush().expect("flush");
        let answer = publisher.request("many.0", b"?", Duration::from_secs(2));
        assert!(matches!(answer, Err(flit_client::ClientError::NoResponders)), "all interest is gone: {answer:?}");
    }
}
