//! Pull consumers with the Rust client, against the real binary: a fetch
//! from the first message, acks that move the ack floor, redelivery of what
//! was not acknowledged within the ack wait, a durable consumer's position
//! surviving a restart, a work queue (two clients sharing one durable
//! consumer get each message exactly once), fetches whose wait runs out
//! (408: fewer messages), a fetch woken by a publish, start positions, and
//! refusals for a consumer or stream that does not exist.

mod common;
mod stream_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::SHARD_COUNTS;
use flit_client::stream::{AckKind, AckPolicy, ConsumerConfigSpec, StartPosition, StreamCode};
use flit_client::Client;
use stream_support::{add_stream, start_on, stop, TempDir, FETCH_WAIT};

fn durable(name: &str) -> ConsumerConfigSpec {
    ConsumerConfigSpec { name: Some(name.to_owned()), ..ConsumerConfigSpec::default() }
}

fn publish_many(client: &Client, subject: &str, count: u64) {
    for index in 1..=count {
        client.publish_durable(subject, format!("m{index}").as_bytes()).expect("stored");
    }
}

fn sequences(messages: &[flit_client::StreamMessage]) -> Vec<u64> {
    messages.iter().map(|message| message.sequence).collect()
}

#[test]
fn a_fetch_reads_from_the_first_message_and_acks_move_the_floor() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("consumer-fetch");
        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        add_stream(&client, "orders", &["orders.>"]);
        publish_many(&client, "orders.eu", 5);
        let info = client.consumer_add("orders", durable("billing")).expect("consumer");
        assert_eq!(info.config.name.as_deref(), Some("billing"));
        assert_eq!(info.lag, 5, "shards={shards}");
        let messages = client.fetch("orders", "billing", 3, FETCH_WAIT).expect("fetch");
        assert_eq!(sequences(&messages), [1, 2, 3], "shards={shards}");
        assert_eq!((messages[0].subject.as_str(), &messages[0].payload[..]), ("orders.eu", &b"m1"[..]));
        assert!(messages.iter().all(|message| message.delivery_count == 1 && message.consumer == "billing"));
        for message in &messages {
            client.ack("orders", "billing", message.sequence, AckKind::Ack).expect("ack");
        }
        let info = client.consumer_info("orders", "billing").expect("info");
        assert_eq!((info.ack_floor, info.ack_pending, info.delivered_sequence), (3, 0, 3), "shards={shards}");
        let rest = client.fetch("orders", "billing", 10, FETCH_WAIT).expect("fetch the rest");
        assert_eq!(sequences(&rest), [4, 5]);
        for message in &rest {
            client.ack_no_wait("orders", "billing", message.sequence, AckKind::Ack).expect("ack without a reply");
        }
        assert!(client.fetch("orders", "billing", 10, FETCH_WAIT).expect("fetch").is_empty(), "all acknowledged");
        let info = client.consumer_info("orders", "billing").expect("info");
        assert_eq!((info.ack_floor, info.ack_pending, info.lag), (5, 0, 0), "shards={shards}");
    }
}

#[test]
fn unacknowledged_messages_are_redelivered_after_the_ack_wait() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("consumer-redeliver");
        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        add_stream(&client, "jobs", &["jobs.*"]);
        publish_many(&client, "jobs.run", 3);
        let config = ConsumerConfigSpec { ack_wait_ms: 300, ..durable("workers") };
        client.consumer_add("jobs", config).expect("consumer");
        let first = client.fetch("jobs", "workers", 3, FETCH_WAIT).expect("fetch");
        assert_eq!(sequences(&first), [1, 2, 3]);
        client.ack("jobs", "workers", 2, AckKind::Ack).expect("ack the second only");
        let started = Instant::now();
        let again = client.fetch("jobs", "workers", 2, Duration::from_secs(5)).expect("redelivered");
        assert_eq!(sequences(&again), [1, 3], "shards={shards}: what was not acknowledged comes again");
        assert!(again.iter().all(|message| message.delivery_count == 2), "{again:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "redelivered after the ack wait, not the fetch's wait");
        // A nak asks for the message again at once.
        client.ack("jobs", "workers", 1, AckKind::Nak).expect("nak");
        client.ack("jobs", "workers", 3, AckKind::Ack).expect("ack");
        let naked = client.fetch("jobs", "workers", 1, Duration::from_secs(2)).expect("after the nak");
        assert_eq!((naked[0].sequence, naked[0].delivery_count), (1, 3), "shards={shards}");
        client.ack("jobs", "workers", 1, AckKind::Ack).expect("ack");
        assert!(client.fetch("jobs", "workers", 1, Duration::from_millis(500)).expect("fetch").is_empty());
    }
}

#[test]
fn a_durable_consumer_position_survives_a_restart() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("consumer-restart");
        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        add_stream(&client, "ledger", &["ledger.>"]);
        publish_many(&client, "ledger.entry", 6);
        client.consumer_add("ledger", durable("audit")).expect("consumer");
        let first = client.fetch("ledger", "audit", 4, FETCH_WAIT).expect("fetch");
        assert_eq!(sequences(&first), [1, 2, 3, 4]);
        for sequence in 1..=3 {
            client.ack("ledger", "audit", sequence, AckKind::Ack).expect("ack (saved before it is answered)");
        }
        drop(client);
        stop(server);

        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        let info = client.consumer_info("ledger", "audit").expect("the consumer is back");
        assert_eq!(info.ack_floor, 3, "shards={shards}");
        let after = client.fetch("ledger", "audit", 10, FETCH_WAIT).expect("fetch after the restart");
        // 4 was delivered and not acknowledged: it comes again (at least once).
        assert_eq!(sequences(&after), [4, 5, 6], "shards={shards}");
        // The same durable consumer added again with the same config is the existing one.
        let again = client.consumer_add("ledger", durable("audit")).expect("idempotent");
        assert_eq!(again.ack_floor, 3);
    }
}

#[test]
fn two_clients_sharing_a_durable_consumer_get_each_message_once() {
    const MESSAGES: u64 = 60;
    let data = TempDir::new("consumer-work-queue");
    let server = start_on(&data.path, 2, &[]);
    let publisher = server.client();
    add_stream(&publisher, "tasks", &["tasks.>"]);
    publisher.consumer_add("tasks", durable("pool")).expect("consumer");
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let client = server.client_on_shard(worker % server.shards);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut empty_in_a_row = 0;
                while empty_in_a_row < 3 {
                    let messages = client.fetch("tasks", "pool", 4, Duration::from_millis(200)).expect("fetch");
                    empty_in_a_row = if messages.is_empty() { empty_in_a_row + 1 } else { 0 };
                    for message in messages {
                        client.ack("tasks", "pool", message.sequence, AckKind::Ack).expect("ack");
                        got.push(message.sequence);
                    }
                }
                got
            })
        })
        .collect();
    publish_many(&publisher, "tasks.new", MESSAGES);
    let results: Vec<Vec<u64>> = workers.into_iter().map(|worker| worker.join().expect("worker")).collect();
    let all: Vec<u64> = results.iter().flatten().copied().collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len() as u64, MESSAGES, "each message once: {results:?}");
    assert_eq!(distinct, (1..=MESSAGES).collect(), "every message: {results:?}");
    assert!(results.iter().all(|got| !got.is_empty()), "both workers took part: {results:?}");
}

#[test]
fn a_fetch_whose_wait_runs_out_returns_fewer_and_a_publish_wakes_a_waiting_fetch() {
    let data = TempDir::new("consumer-expiry");
    let server = start_on(&data.path, 2, &[]);
    let client = server.client();
    add_stream(&client, "metrics", &["metrics.>"]);
    publish_many(&client, "metrics.cpu", 2);
    let consumer = client
        .consumer_add("metrics", ConsumerConfigSpec { ack_policy: AckPolicy::None, ..ConsumerConfigSpec::default() })
        .expect("ephemeral");
    let name = consumer.config.name.expect("named by the server");
    assert!(name.starts_with("ephemeral-"), "{name}");
    let started = Instant::now();
    let messages = client.fetch("metrics", &name, 10, Duration::from_millis(400)).expect("fetch");
    assert_eq!(sequences(&messages), [1, 2], "fewer than the batch");
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited for more: {:?}", started.elapsed());
    let started = Instant::now();
    assert!(client.fetch("metrics", &name, 5, Duration::from_millis(200)).expect("fetch").is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
    // A waiting fetch is answered as soon as a message arrives and fills it.
    let publisher = server.client();
    let delayed = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        publisher.publish_durable("metrics.mem", b"late").expect("stored");
    });
    let started = Instant::now();
    let woken = client.fetch("metrics", &name, 1, Duration::from_secs(10)).expect("fetch");
    assert_eq!(sequences(&woken), [3]);
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the publish: {:?}", started.elapsed());
    delayed.join().expect("publisher");
}

#[test]
fn start_positions_choose_the_first_message_delivered() {
    let data = TempDir::new("consumer-start");
    let server = start_on(&data.path, 1, &[]);
    let client = server.client();
    add_stream(&client, "log", &["log.>"]);
    publish_many(&client, "log.line", 5);
    let fetch_from = |start: StartPosition| {
        let config = ConsumerConfigSpec { start, ack_policy: AckPolicy::None, ..ConsumerConfigSpec::default() };
        let name = client.consumer_add("log", config).expect("consumer").config.name.expect("name");
        sequences(&client.fetch("log", &name, 10, Duration::from_millis(150)).expect("fetch"))
    };
    assert_eq!(fetch_from(StartPosition::First), [1, 2, 3, 4, 5]);
    assert_eq!(fetch_from(StartPosition::Last), [5]);
    assert_eq!(fetch_from(StartPosition::Sequence { sequence: 4 }), [4, 5]);
    assert!(fetch_from(StartPosition::New).is_empty());
    assert_eq!(fetch_from(StartPosition::Time { timestamp_ns: 1 }), [1, 2, 3, 4, 5]);
}

#[test]
fn unknown_streams_and_consumers_are_refused_with_404() {
    let data = TempDir::new("consumer-404");
    let server = start_on(&data.path, 2, &[]);
    let client = server.client();
    let missing = client.consumer_add("nothing", ConsumerConfigSpec::default()).expect_err("no stream");
    assert_eq!(missing.stream_code(), Some(StreamCode::NotFound), "{missing}");
    add_stream(&client, "orders", &["orders.>"]);
    let missing = client.fetch("orders", "nobody", 1, FETCH_WAIT).expect_err("no consumer");
    assert_eq!(missing.stream_code(), Some(StreamCode::NotFound), "{missing}");
    let missing = client.consumer_info("orders", "nobody").expect_err("no consumer");
    assert_eq!(missing.stream_code(), Some(StreamCode::NotFound), "{missing}");
    let missing = client.ack("orders", "nobody", 1, AckKind::Ack).expect_err("no consumer");
    assert_eq!(missing.stream_code(), Some(StreamCode::NotFound), "{missing}");
    client.consumer_add("orders", durable("gone")).expect("consumer");
    client.consumer_remove("orders", "gone").expect("remove");
    let missing = client.consumer_info("orders", "gone").expect_err("removed");
    assert_eq!(missing.stream_code(), Some(StreamCode::NotFound), "{missing}");
    client.flush().expect("refusals keep the connection");
}

#[test]
fn a_fetch_larger_than_one_pass_budget_gets_its_whole_batch() {
    // 120 messages of 32 KiB: almost 4 MiB, four times the per-pass delivery
    // budget of a stream's consumers (DELIVERY_BYTES_PER_PASS_MAX): the owner
    // hands them out over several passes, and the fetch still gets them all.
    let data = TempDir::new("consumer-budget");
    let server = start_on(&data.path, 2, &[]);
    let client = server.client();
    add_stream(&client, "bulk", &["bulk.>"]);
    let payload = vec![b'b'; 32 * 1024];
    for _ in 0..120 {
        client.publish_durable("bulk.data", &payload).expect("stored");
    }
    client.consumer_add("bulk", durable("reader")).expect("consumer");
    let messages = client.fetch("bulk", "reader", 120, Duration::from_secs(5)).expect("fetch");
    assert_eq!(sequences(&messages), (1..=120).collect::<Vec<_>>());
    assert!(messages.iter().all(|message| message.payload.len() == payload.len()));
    stop(server);
}

#[test]
fn a_stalled_consumer_says_so_and_dead_letters_reach_their_subject() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("consumer-dead-letters");
        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        add_stream(&client, "jobs", &["jobs.>"]);
        let watcher = server.client();
        let advisories = watcher.subscribe("$FLIT.ADVISORY.CONSUMER.STALLED.>").expect("subscribe advisories");
        let dead = watcher.subscribe("dead.jobs").expect("subscribe dead letters");
        watcher.flush().expect("flush");
        publish_many(&client, "jobs.run", 3);
        let config = ConsumerConfigSpec {
            name: Some("worker".to_owned()),
            ack_wait_ms: 200,
            deliveries_max: 2,
            ack_pending_max: 2,
            dead_letter_subject: Some("dead.jobs".to_owned()),
            ..ConsumerConfigSpec::default()
        };
        client.consumer_add("jobs", config).expect("consumer");
        // Two fetched, none acked: at ack_pending_max, so stalled.
        // A short wait: past the 200 ms ack wait the same fetch would get
        // the redeliveries too.
        let first = client.fetch("jobs", "worker", 5, Duration::from_millis(50)).expect("fetch");
        assert_eq!(sequences(&first), [1, 2], "shards={shards}: stalled after two");
        let advisory = common::next_message(&advisories);
        assert_eq!(advisory.subject, "$FLIT.ADVISORY.CONSUMER.STALLED.jobs.worker");
        let body = String::from_utf8_lossy(&advisory.payload).into_owned();
        assert!(body.contains("\"ack_pending\":2") && body.contains("\"ack_pending_max\":2"), "{body}");
        // After the ack wait they come again (delivery 2 of 2), still unacked.
        std::thread::sleep(Duration::from_millis(300));
        let second = client.fetch("jobs", "worker", 5, Duration::from_millis(50)).expect("fetch again");
        assert_eq!(sequences(&second), [1, 2], "shards={shards}: redelivered");
        assert!(second.iter().all(|message| message.delivery_count == 2));
        // The next expiry makes them dead letters, published with their payload.
        let mut dead_sequences = BTreeSet::new();
        for _ in 0..2 {
            let letter = common::next_message(&dead);
            assert_eq!(letter.header("Flit-Stream"), Some("jobs"));
            assert_eq!(letter.header("Flit-Subject"), Some("jobs.run"));
            assert_eq!(letter.header("Flit-Delivery-Count"), Some("2"));
            let sequence: u64 = letter.header("Flit-Sequence").expect("sequence").parse().expect("a number");
            assert_eq!(&letter.payload[..], format!("m{sequence}").as_bytes());
            dead_sequences.insert(sequence);
        }
        assert_eq!(dead_sequences, BTreeSet::from([1, 2]), "shards={shards}");
        // Room again: the third message is delivered.
        let third = client.fetch("jobs", "worker", 5, Duration::from_millis(100)).expect("fetch the third");
        assert_eq!(sequences(&third), [3], "shards={shards}");
        let info = client.consumer_info("jobs", "worker").expect("info");
        assert_eq!(info.dead_letters_total, 2, "shards={shards}");
        stop(server);
    }
}

#[test]
fn a_push_consumer_publishes_to_its_deliver_subject_and_redelivers_what_is_not_acked() {
    for shards in SHARD_COUNTS {
        let data = TempDir::new("consumer-push");
        let server = start_on(&data.path, shards, &[]);
        let client = server.client();
        add_stream(&client, "events", &["events.>"]);
        let subscriber = server.client();
        let deliveries = subscriber.subscribe("deliver.events").expect("subscribe");
        subscriber.flush().expect("flush");
        client.publish_durable_with("events.a", &[("Trace", "t-1")], b"first").expect("stored");
        let config = ConsumerConfigSpec {
            name: Some("pusher".to_owned()),
            ack_wait_ms: 300,
            deliver_subject: Some("deliver.events".to_owned()),
            ..ConsumerConfigSpec::default()
        };
        client.consumer_add("events", config).expect("push consumer");
        let first = common::next_message(&deliveries);
        assert_eq!(&first.payload[..], b"first", "shards={shards}");
        assert_eq!(first.header("Trace"), Some("t-1"), "the publisher's headers are kept");
        assert_eq!(first.header("Flit-Sequence"), Some("1"));
        assert_eq!(first.header("Flit-Delivery-Count"), Some("1"));
        assert_eq!(first.header("Flit-Subject"), Some("events.a"));
        // Not acked: it comes again after the ack wait.
        let again = common::next_message(&deliveries);
        assert_eq!((again.header("Flit-Sequence"), again.header("Flit-Delivery-Count")), (Some("1"), Some("2")));
        client.ack("events", "pusher", 1, AckKind::Ack).expect("ack");
        client.publish_durable("events.b", b"second").expect("stored");
        let second = common::next_message(&deliveries);
        assert_eq!((&second.payload[..], second.header("Flit-Sequence")), (&b"second"[..], Some("2")));
        client.ack("events", "pusher", 2, AckKind::Ack).expect("ack");
        std::thread::sleep(Duration::from_millis(500));
        common::assert_no_message(&deliveries);
        let refused = client.fetch("events", "pusher", 1, FETCH_WAIT).expect_err("a push consumer is not fetched");
        assert_eq!(refused.stream_code(), Some(StreamCode::BadRequest), "shards={shards}");
        stop(server);
    }
}

#[test]
fn the_messages_iterator_fetches_batches_as_it_runs_dry() {
    let data = TempDir::new("consumer-iterator");
    let server = start_on(&data.path, 1, &[]);
    let client = server.client();
    add_stream(&client, "feed", &["feed.>"]);
    publish_many(&client, "feed.item", 7);
    client.consumer_add("feed", durable("reader")).expect("consumer");
    // Batches of 3: the iterator fetches three times for seven messages.
    let read: Vec<u64> = client
        .messages("feed", "reader", 3, Duration::from_millis(200))
        .take(7)
        .map(|message| {
            let message = message.expect("a message");
            client.ack("feed", "reader", message.sequence, AckKind::Ack).expect("ack");
            message.sequence
        })
        .collect();
    assert_eq!(read, (1..=7).collect::<Vec<_>>());
    // A message published later is fetched when the iterator gets to it.
    let publisher = server.client();
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        publisher.publish_durable("feed.item", b"late").expect("stored");
    });
    let next = client.messages("feed", "reader", 3, Duration::from_millis(100)).next().expect("one").expect("ok");
    assert_eq!((next.sequence, &next.payload[..]), (8, &b"late"[..]));
    later.join().expect("publisher");
    stop(server);
}
