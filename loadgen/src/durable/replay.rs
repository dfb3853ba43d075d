//! Replay: read a stored stream from its first message to one consumer as
//! fast as the server sends it, and report messages per second.
//!
//! flit: an ephemeral pull consumer with ack policy none
//! (`StreamRequest ConsumerAdd`), then `Fetch` batches of
//! [`FETCH_BATCH`], [`FETCHES_IN_FLIGHT`] at a time; a StreamMessage is
//! counted by its frame header alone. JetStream: an ephemeral push consumer
//! with ack policy none and deliver policy all on a deliver subject this
//! connection subscribed to first (what an ordered consumer is, without
//! its flow control and heartbeats). The clock starts when the consumer is
//! asked for and stops at the `messages`-th message.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::BytesMut;
use flit_wire::stream::{
    decode_stream, AckPolicy, ConsumerConfigSpec, Fetch, StreamCommand, StreamFrame, StreamRequest,
};
use flit_wire::{Encoder, Limits, Op};

use super::protocol::{jetstream_refused, NatsEvent, NatsReader};
use super::setup::Blocking;
use crate::target::TargetKind;

/// Messages asked for by one Fetch (the server allows up to 10,000; 8 x 1,000
/// replayed ~5x faster than 2 x 10,000 on flit 4183fc8).
pub const FETCH_BATCH: u32 = 1_000;
/// Fetches outstanding at once, so the server never waits for the next one.
pub const FETCHES_IN_FLIGHT: u64 = 8;
/// The subscription id of the JetStream deliver subject.
const DELIVER_SID: u64 = 1;
/// The subscription id of the consumer create answer.
const ANSWER_SID: u64 = 2;

/// (messages read, time from the consumer request to the last message).
/// flit: `fetch` is (batch, fetches in flight); 0 means the default.
pub fn replay(
    address: SocketAddr,
    kind: TargetKind,
    stream: &str,
    messages: u64,
    fetch: (u32, u64),
) -> Result<(u64, Duration)> {
    if messages == 0 {
        bail!("--messages must be at least 1 for a replay");
    }
    let batch = if fetch.0 == 0 { FETCH_BATCH } else { fetch.0 };
    let in_flight = if fetch.1 == 0 { FETCHES_IN_FLIGHT } else { fetch.1 };
    let connection = Blocking::connect(address)?;
    match kind {
        TargetKind::Flit => replay_flit(connection, stream, messages, batch, in_flight),
        TargetKind::Nats => replay_nats(connection, stream, messages),
        TargetKind::Echo => bail!("replay needs a flit:// or nats:// target"),
    }
}

fn replay_flit(
    mut connection: Blocking,
    stream: &str,
    messages: u64,
    batch: u32,
    in_flight: u64,
) -> Result<(u64, Duration)> {
    let (mut encoder, mut limits) = (Encoder::default(), Limits::default());
    connection.flit_handshake(&mut encoder, &mut limits)?;
    let started = Instant::now();
    let config = ConsumerConfigSpec { ack_policy: AckPolicy::None, ..ConsumerConfigSpec::default() };
    let request =
        StreamRequest { request_id: 1, command: StreamCommand::ConsumerAdd { stream: stream.into(), config } };
    let reply = connection.flit_request(&mut encoder, &limits, request)?;
    if reply.code != 0 {
        bail!("consumer add on {stream}: code {}: {}", reply.code, reply.message);
    }
    let Some(consumer) = reply.consumer.and_then(|info| info.config.name) else {
        bail!("consumer add on {stream}: no consumer name in the reply");
    };
    let mut output = BytesMut::new();
    let mut next_request_id = 2;
    let mut send_fetch = |output: &mut BytesMut, encoder: &mut Encoder| -> Result<()> {
        let fetch =
            Fetch { request_id: next_request_id, stream: stream.into(), consumer: consumer.clone(), batch, wait_ms: 0 };
        next_request_id += 1;
        Ok(encoder.fetch(output, &fetch)?)
    };
    for _ in 0..in_flight {
        send_fetch(&mut output, &mut encoder)?;
    }
    connection.stream.write_all(&output)?;
    let mut read = 0;
    let mut last = started.elapsed();
    while read < messages {
        let (op, frame) = connection.flit_frame(&limits)?;
        match op {
            Op::StreamMessage => {
                read += 1;
                last = started.elapsed();
            }
            Op::StreamReply => {
                let StreamFrame::Reply(reply) = decode_stream(frame, &limits)? else { bail!("a StreamReply op") };
                if reply.code != 0 || reply.delivered == 0 {
                    bail!("fetch ended after {read} of {messages} messages: code {}: {}", reply.code, reply.message);
                }
                output.clear();
                send_fetch(&mut output, &mut encoder)?;
                connection.stream.write_all(&output)?;
            }
            Op::Error => bail!("refused: {:?}", flit_wire::decode(frame, &limits)?),
            _ => {}
        }
    }
    Ok((read, last))
}

fn replay_nats(mut connection: Blocking, stream: &str, messages: u64) -> Result<(u64, Duration)> {
    let mut reader = NatsReader;
    connection.nats_handshake(&mut reader)?;
    let deliver = "_INBOX.replay.deliver";
    let answer = "_INBOX.replay.answer";
    connection
        .stream
        .write_all(format!("SUB {deliver} {DELIVER_SID}\r\nSUB {answer} {ANSWER_SID}\r\nPING\r\n").as_bytes())?;
    while connection.nats_event(&mut reader)? != NatsEvent::Pong {}
    let body = format!(
        "{{\"stream_name\":\"{stream}\",\"config\":{{\"deliver_subject\":\"{deliver}\",\"deliver_policy\":\"all\",\
\"ack_policy\":\"none\",\"replay_policy\":\"instant\"}}}}"
    );
    let started = Instant::now();
    let request = format!("PUB $JS.API.CONSUMER.CREATE.{stream} {answer} {}\r\n{body}\r\n", body.len());
    connection.stream.write_all(request.as_bytes())?;
    let mut read = 0;
    let mut last = started.elapsed();
    while read < messages {
        match connection.nats_event(&mut reader)? {
            NatsEvent::Message { subscription_id: DELIVER_SID, .. } => {
                read += 1;
                last = started.elapsed();
            }
            NatsEvent::Message { subscription_id: ANSWER_SID, payload, .. } if jetstream_refused(&payload) => {
                bail!("JetStream consumer create on {stream}: {}", String::from_utf8_lossy(&payload));
            }
            _ => {}
        }
    }
    Ok((read, last))
}
