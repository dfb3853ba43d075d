//! A NATS client and a native client on one router see each other's
//! messages, requests and replies, headers carried both ways (flit's header
//! block <-> `NATS/1.0`), and share queue groups (each message to exactly
//! one member, whichever protocol it speaks).

mod common;
mod nats_support;

use std::time::Duration;

use common::FlitServer;
use nats_support::RawNats;

fn start() -> FlitServer {
    FlitServer::start(2, &["--nats-listen", "127.0.0.1:0"])
}

#[test]
fn native_messages_with_headers_reach_nats_subscribers() {
    let server = start();
    let address = server.nats_address.expect("NATS listener");
    let mut nats = RawNats::connect_with(address, r#"{"verbose":false,"headers":true}"#);
    nats.send(b"SUB prices.* 3\r\n");
    nats.round_trip();
    let native = server.ack_client();
    native.publish_with("prices.eur", Some("answers.here"), &[("Source", "ecb"), ("Source", "fed")], b"1.08").unwrap();
    native.publish("prices.usd", b"1").unwrap();
    let block = "NATS/1.0\r\nSource: ecb\r\nSource: fed\r\n\r\n";
    let (line, bytes) = nats.delivery();
    assert_eq!(line, format!("HMSG prices.eur 3 answers.here {} {}", block.len(), block.len() + 4));
    assert_eq!(bytes, format!("{block}1.08").as_bytes());
    assert_eq!(nats.delivery(), ("MSG prices.usd 3 1".to_string(), b"1".to_vec()));
}

#[test]
fn nats_messages_with_headers_reach_native_subscribers() {
    let server = start();
    let native = server.ack_client();
    let subscription = native.subscribe("events.>").unwrap();
    let mut nats = RawNats::connect_with(server.nats_address.unwrap(), r#"{"verbose":false,"headers":true}"#);
    let block = b"NATS/1.0\r\nTrace-Id: 7f\r\nEmpty:\r\n\r\n";
    let mut op = format!("HPUB events.a.b reply.x {} {}\r\n", block.len(), block.len() + 2).into_bytes();
    op.extend_from_slice(block);
    op.extend_from_slice(b"ok\r\nPUB events.c 0\r\n\r\n");
    nats.send(&op);
    nats.round_trip();
    let first = subscription.next_timeout(Duration::from_secs(5)).unwrap().expect("a message");
    assert_eq!(first.subject, "events.a.b");
    assert_eq!(first.reply.as_deref(), Some("reply.x"));
    assert_eq!(first.headers, vec![("Trace-Id".into(), "7f".into()), ("Empty".into(), String::new())]);
    assert_eq!(&first.payload[..], b"ok");
    let second = subscription.next_timeout(Duration::from_secs(5)).unwrap().expect("a message");
    assert_eq!((second.subject.as_str(), second.headers.len(), second.payload.len()), ("events.c", 0, 0));
}

#[test]
fn requests_and_replies_cross_in_both_directions() {
    let server = start();
    let address = server.nats_address.expect("NATS listener");
    // A NATS responder answers a native requester.
    let mut responder = RawNats::connect_with(address, r#"{"verbose":false}"#);
    responder.send(b"SUB time.now 1\r\n");
    responder.round_trip();
    let native = server.ack_client();
    let requester = std::thread::spawn(move || native.request("time.now", b"?", Duration::from_secs(5)));
    let (line, payload) = responder.delivery();
    assert_eq!(payload, b"?");
    let reply = line.split(' ').nth(3).expect("MSG subject sid reply size").to_string();
    responder.send(format!("PUB {reply} 5\r\nnoon!\r\n").as_bytes());
    let answer = requester.join().unwrap().expect("answered");
    assert_eq!(&answer.payload[..], b"noon!");
    // A native responder answers a NATS requester.
    let native = server.ack_client();
    let service = native.subscribe("echo").unwrap();
    let mut asking = RawNats::connect_with(address, r#"{"verbose":false}"#);
    asking.send(b"SUB _INBOX.q.* 5\r\nPUB echo _INBOX.q.1 3\r\nabc\r\n");
    let request = service.next_timeout(Duration::from_secs(5)).unwrap().expect("the request");
    native.publish(request.reply.as_deref().expect("a reply subject"), &request.payload).unwrap();
    assert_eq!(asking.delivery(), ("MSG _INBOX.q.1 5 3".to_string(), b"abc".to_vec()));
}

#[test]
fn a_queue_group_spans_both_protocols_with_each_message_to_one_member() {
    let server = start();
    let address = server.nats_address.expect("NATS listener");
    let native = server.ack_client();
    let native_member = native.queue_subscribe("work", "pool").unwrap();
    let mut nats_member = RawNats::connect_with(address, r#"{"verbose":false}"#);
    nats_member.send(b"SUB work pool 1\r\n");
    nats_member.round_trip();
    let mut publisher = RawNats::connect_with(address, r#"{"verbose":false}"#);
    let count = 400;
    for number in 0..count {
        let payload = number.to_string();
        publisher.send(format!("PUB work {}\r\n{payload}\r\n", payload.len()).as_bytes());
    }
    publisher.round_trip();
    let mut seen = Vec::new();
    // Deliveries to the NATS member may come from another shard: read
    // until it has been quiet for half a second.
    while let Ok(line) = nats_member.try_line(Duration::from_millis(500)) {
        let length = nats_support::delivery_length(&line).unwrap_or_else(|| panic!("unexpected {line:?}"));
        seen.push(String::from_utf8(nats_member.payload(length)).unwrap());
    }
    let nats_count = seen.len();
    while let Some(message) = native_member.next_timeout(Duration::from_millis(500)).unwrap() {
        seen.push(String::from_utf8(message.payload.to_vec()).unwrap());
    }
    seen.sort_by_key(|text| text.parse::<u32>().unwrap());
    let expected: Vec<String> = (0..count).map(|number| number.to_string()).collect();
    assert_eq!(seen, expected, "every message exactly once across the group");
    assert!(nats_count > 0 && nats_count < count as usize, "both members took a share: NATS took {nats_count}");
}
