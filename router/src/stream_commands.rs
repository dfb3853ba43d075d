//! `flit stream add|ls|info|rm`, `flit consume`, and the durable forms of
//! `flit pub` (`--ack`, `--ack --stdin`): command-line wrappers around the
//! blocking client's stream calls (`flit_client::stream`).
//!
//! Output is made for scripts: `flit pub --ack` prints `STREAM SEQ`, `flit
//! pub --ack --stdin` one `SEQ` per input line in input order, `flit consume`
//! one `SEQ SUBJECT PAYLOAD` per message, each line flushed as it is
//! printed. A refusal (a stream code: 404 when no stream captures the
//! subject, 409, 507, ...) or a lost connection is one line on stderr and
//! exit code 1, after whatever was already printed.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result};
use flit_client::stream::{AckKind, AckPolicy, ConsumerConfigSpec, StreamCode, StreamInfo, MESSAGE_ID_HEADER};
use flit_client::{Client, ClientError, DurablePublish};
use flit_shard::streams::definition::{durability_text, parse_discard, parse_durability, StreamDefinition};
use flit_shard::streams::frames::{definition_from_spec, spec_from_definition};

use crate::cli::{ConsumeArguments, PublishArguments, StreamAddArguments, StreamCommand};
use crate::client_commands::{connect, write_payload};

/// Durable publishes `flit pub --ack --stdin` keeps in flight at most.
const PUBLISHES_IN_FLIGHT_MAX: usize = 1024;
/// Lines read ahead of the publishes.
const LINES_AHEAD_MAX: usize = 1024;
/// Messages asked for per fetch by `flit consume`.
const FETCH_BATCH_MAX: u64 = 256;
/// With --count, how long one fetch waits (it is asked again until the count is reached).
const COUNTED_FETCH_WAIT: Duration = Duration::from_secs(30);

pub fn stream(command: StreamCommand) -> Result<()> {
    match command {
        StreamCommand::Add(arguments) => stream_add(arguments),
        StreamCommand::Ls { server } => {
            let streams = connect(&server)?.stream_list()?;
            let mut stdout = std::io::stdout().lock();
            for info in &streams {
                writeln!(
                    stdout,
                    "{} subjects={} messages={} bytes={} first_seq={} last_seq={} consumers={} durability={} status={}",
                    info.config.name,
                    info.config.subjects.join(","),
                    info.messages,
                    info.bytes,
                    info.first_sequence,
                    info.last_sequence,
                    info.consumers,
                    durability_of(info),
                    status_of(info)
                )?;
            }
            if streams.is_empty() {
                eprintln!("flit: no streams");
            }
            Ok(())
        }
        StreamCommand::Info { name, json, server } => {
            let info = connect(&server)?.stream_info(&name).map_err(|error| stream_error(error, &name))?;
            let mut stdout = std::io::stdout().lock();
            if json {
                writeln!(stdout, "{}", info_json(&info))?;
            } else {
                write_info(&mut stdout, &info)?;
            }
            Ok(())
        }
        StreamCommand::Rm { name, server } => {
            connect(&server)?.stream_remove(&name).map_err(|error| stream_error(error, &name))?;
            println!("flit: stream {name} removed");
            Ok(())
        }
    }
}

/// The definition `flit stream add` asks for, from the flags (checked by
/// the same rules the server applies, so a bad one fails before connecting).
fn definition_of(arguments: &StreamAddArguments) -> Result<StreamDefinition> {
    let subjects: Vec<&str> = arguments.subjects.iter().map(String::as_str).collect();
    let mut definition = StreamDefinition::new(&arguments.name, &subjects);
    if let Some(durability) = &arguments.durability {
        definition.durability = parse_durability(durability)?;
    }
    if let Some(discard) = &arguments.discard {
        definition.discard = parse_discard(discard)?;
    }
    definition.bytes_max = arguments.max_bytes.unwrap_or(0);
    definition.age_max = arguments.max_age.unwrap_or_default();
    definition.messages_max = arguments.max_msgs.unwrap_or(0);
    if let Some(bytes) = arguments.max_msg_size {
        definition.message_bytes_max =
            u32::try_from(bytes).with_context(|| format!("--max-msg-size {bytes} is above 4 GiB"))?;
    }
    definition.dedup_window = arguments.dedup_window.unwrap_or_default();
    definition.validate()?;
    Ok(definition)
}

fn stream_add(arguments: StreamAddArguments) -> Result<()> {
    let definition = definition_of(&arguments)?;
    let client = connect(&arguments.server)?;
    let info = client.stream_add(spec_from_definition(&definition)).map_err(|error| match error.stream_code() {
        Some(StreamCode::AlreadyExists) => anyhow::anyhow!("cannot add stream {}: {error}", arguments.name),
        _ => stream_error(error, &arguments.name),
    })?;
    println!(
        "flit: stream {} captures {} (durability {}, {} messages)",
        info.config.name,
        info.config.subjects.join(" "),
        durability_of(&info),
        info.messages
    );
    Ok(())
}

/// A stream call's error, with the stream named for a person.
fn stream_error(error: ClientError, stream: &str) -> anyhow::Error {
    match error.stream_code() {
        Some(StreamCode::NotFound) => anyhow::anyhow!("no stream named {stream}: {error}"),
        _ => anyhow::Error::new(error).context(format!("stream {stream}")),
    }
}

fn durability_of(info: &StreamInfo) -> String {
    durability_text(definition_from_spec(&info.config).durability)
}

fn status_of(info: &StreamInfo) -> &str {
    if info.status.is_empty() {
        "ok"
    } else {
        &info.status
    }
}

/// `flit stream info --json`: the counts, the definition and the limits
/// (0: unlimited), one object.
fn info_json(info: &StreamInfo) -> serde_json::Value {
    let config = &info.config;
    serde_json::json!({
        "name": config.name,
        "subjects": config.subjects,
        "durability": durability_of(info),
        "messages": info.messages,
        "bytes": info.bytes,
        "first_seq": info.first_sequence,
        "last_seq": info.last_sequence,
        "consumers": info.consumers,
        "status": status_of(info),
        "max_bytes": config.bytes_max,
        "max_age_ms": config.age_ms_max,
        "max_msgs": config.messages_max,
        "max_msg_size": config.message_bytes_max,
        "discard": match config.discard {
            flit_client::stream::Discard::New => "new",
            _ => "old",
        },
        "dedup_window_ms": config.dedup_window_ms,
    })
}

fn write_info(out: &mut impl Write, info: &StreamInfo) -> std::io::Result<()> {
    let config = &info.config;
    let limit = |value: u64| if value == 0 { "unlimited".to_string() } else { value.to_string() };
    writeln!(out, "name: {}", config.name)?;
    writeln!(out, "subjects: {}", config.subjects.join(" "))?;
    writeln!(out, "durability: {}", durability_of(info))?;
    writeln!(out, "status: {}", status_of(info))?;
    writeln!(out, "messages: {}", info.messages)?;
    writeln!(out, "bytes: {}", info.bytes)?;
    writeln!(out, "first_seq: {}", info.first_sequence)?;
    writeln!(out, "last_seq: {}", info.last_sequence)?;
    writeln!(out, "consumers: {}", info.consumers)?;
    writeln!(
        out,
        "limits: max_bytes={} max_age_ms={} max_msgs={} max_msg_size={} discard={} dedup_window_ms={}",
        limit(config.bytes_max),
        limit(config.age_ms_max),
        limit(config.messages_max),
        limit(u64::from(config.message_bytes_max)),
        if config.discard == flit_client::stream::Discard::New { "new" } else { "old" },
        config.dedup_window_ms
    )
}

/// A durable publish's failure, for a person: 404 names the subject.
fn publish_error(error: ClientError, subject: &str) -> anyhow::Error {
    match error.stream_code() {
        Some(StreamCode::NotFound) => {
            anyhow::anyhow!("no stream captures `{subject}` (add one with `flit stream add NAME --subjects ...`)")
        }
        _ => anyhow::Error::new(error).context(format!("the durable publish to `{subject}` failed")),
    }
}

/// `flit pub SUBJECT PAYLOAD --ack [--count N]`: one `STREAM SEQ` line per message.
pub fn publish_acknowledged(arguments: &PublishArguments, payload: &str) -> Result<()> {
    let client = connect(&arguments.server)?;
    let headers: Vec<(&str, &str)> = arguments.msg_id.iter().map(|id| (MESSAGE_ID_HEADER, id.as_str())).collect();
    let mut stdout = std::io::stdout().lock();
    for _ in 0..arguments.count {
        let acked = client
            .publish_durable_with(&arguments.subject, &headers, payload.as_bytes())
            .map_err(|error| publish_error(error, &arguments.subject))?;
        writeln!(stdout, "{} {}", acked.stream, acked.sequence)?;
        stdout.flush()?;
    }
    Ok(())
}

/// Lines of stdin, read on their own thread so that acknowledgements are
/// printed while the command waits for the next line.
fn stdin_lines() -> Receiver<std::io::Result<Vec<u8>>> {
    let (sender, receiver) = sync_channel(LINES_AHEAD_MAX);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if sender.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            }
        }
    });
    receiver
}

/// `flit pub SUBJECT --ack --stdin`: each line one durable publish, up to
/// [`PUBLISHES_IN_FLIGHT_MAX`] in flight; one `SEQ` line per acknowledgement,
/// in publish order, each flushed. Stops at the first failure.
pub fn publish_stdin_acknowledged(arguments: &PublishArguments) -> Result<()> {
    let client = connect(&arguments.server)?;
    let subject = &arguments.subject;
    let lines = stdin_lines();
    let mut pending: VecDeque<DurablePublish> = VecDeque::new();
    let mut stdout = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut input_done = false;
    let mut print = |publish: DurablePublish, printed: &mut u64| -> Result<()> {
        let acked = publish
            .wait()
            .map_err(|error| publish_error(error, subject).context(format!("after {printed} acknowledged line(s)")))?;
        writeln!(stdout, "{}", acked.sequence)?;
        stdout.flush()?;
        *printed += 1;
        Ok(())
    };
    loop {
        // Print every acknowledgement that is already here, in order.
        while pending.front().is_some_and(DurablePublish::is_answered) {
            print(pending.pop_front().expect("a front"), &mut printed)?;
        }
        if input_done || pending.len() >= PUBLISHES_IN_FLIGHT_MAX {
            match pending.pop_front() {
                Some(front) => print(front, &mut printed)?,
                None => return Ok(()),
            }
            continue;
        }
        // While publishes wait, look for their answers every few ms.
        let wait = if pending.is_empty() { Duration::from_secs(3600) } else { Duration::from_millis(5) };
        match lines.recv_timeout(wait) {
            Ok(line) => {
                let line = line.context("cannot read stdin")?;
                match client.publish_durable_pipelined(subject, &[], &line) {
                    Ok(publish) => pending.push_back(publish),
                    Err(error) => {
                        // The connection is gone (or the line cannot be sent):
                        // print what was acknowledged before, then fail.
                        while let Some(front) = pending.pop_front() {
                            print(front, &mut printed)?;
                        }
                        return Err(
                            publish_error(error, subject).context(format!("after {printed} acknowledged line(s)"))
                        );
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => input_done = true,
        }
    }
}

/// `flit pub SUBJECT --stdin` without --ack: plain publishes, then a flush
/// that proves the server read them all.
pub fn publish_stdin(arguments: &PublishArguments, client: &Client) -> Result<u64> {
    let mut published = 0u64;
    for line in stdin_lines() {
        let line = line.context("cannot read stdin")?;
        client.publish(&arguments.subject, &line)?;
        published += 1;
    }
    client.flush()?;
    Ok(published)
}

/// `flit consume`: see [`ConsumeArguments`].
pub fn consume(arguments: ConsumeArguments) -> Result<()> {
    let client = connect(&arguments.server)?;
    let stream = &arguments.stream;
    let consumer = match &arguments.consumer {
        Some(name) => match client.consumer_info(stream, name) {
            Ok(_) => name.clone(),
            Err(error) if error.stream_code() == Some(StreamCode::NotFound) => {
                let config =
                    ConsumerConfigSpec { name: Some(name.clone()), start: arguments.from, ..Default::default() };
                client.consumer_add(stream, config).map_err(|error| stream_error(error, stream))?;
                name.clone()
            }
            Err(error) => return Err(stream_error(error, stream)),
        },
        None => {
            let ack_policy = if arguments.ack { AckPolicy::Explicit } else { AckPolicy::None };
            let config = ConsumerConfigSpec { start: arguments.from, ack_policy, ..Default::default() };
            let info = client.consumer_add(stream, config).map_err(|error| stream_error(error, stream))?;
            info.config.name.context("the server did not name the ephemeral consumer")?
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut received = 0u64;
    loop {
        let (batch, wait) = match arguments.count {
            Some(count) if received >= count => return Ok(()),
            Some(count) => ((count - received).min(FETCH_BATCH_MAX), COUNTED_FETCH_WAIT),
            None => (FETCH_BATCH_MAX, Duration::from_millis(arguments.wait_ms)),
        };
        let messages = client.fetch(stream, &consumer, batch as u32, wait)?;
        if messages.is_empty() && arguments.count.is_none() {
            return Ok(());
        }
        let last = messages.len().saturating_sub(1);
        for (index, message) in messages.iter().enumerate() {
            write!(stdout, "{} {} ", message.sequence, message.subject)?;
            write_payload(&mut stdout, &message.payload, arguments.raw)?;
            stdout.flush()?;
            if arguments.ack {
                // The last of a batch waits for the server to have saved the
                // consumer's state, which covers the acks before it.
                if index == last {
                    client.ack(stream, &consumer, message.sequence, AckKind::Ack)?;
                } else {
                    client.ack_no_wait(stream, &consumer, message.sequence, AckKind::Ack)?;
                }
            }
        }
        received += messages.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_add_flags_become_a_definition() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "flit",
            "stream",
            "add",
            "orders",
            "--subjects",
            "orders.>",
            "--subjects",
            "refunds.*",
            "--durability",
            "interval=10ms",
            "--max-bytes",
            "10GiB",
            "--max-age",
            "7d",
            "--max-msgs",
            "500",
            "--max-msg-size",
            "1MiB",
            "--dedup-window",
            "2m",
            "--discard",
            "new",
        ])
        .expect("parses");
        let crate::cli::Command::Stream(StreamCommand::Add(arguments)) = cli.command else { panic!("stream add") };
        let definition = definition_of(&arguments).expect("valid");
        let spec = spec_from_definition(&definition);
        assert_eq!(spec.subjects, ["orders.>", "refunds.*"]);
        assert_eq!(spec.durability, flit_client::stream::Durability::Interval { sync_interval_ms: 10 });
        assert_eq!(spec.bytes_max, 10 << 30);
        assert_eq!(spec.age_ms_max, 7 * 86_400_000);
        assert_eq!(spec.messages_max, 500);
        assert_eq!(spec.message_bytes_max, 1 << 20);
        assert_eq!(spec.dedup_window_ms, 120_000);
        assert_eq!(spec.discard, flit_client::stream::Discard::New);
    }
}
