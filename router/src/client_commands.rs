//! `flit pub`, `flit sub`, `flit req`, `flit reply`: thin command-line
//! wrappers around the blocking client, for scripts and for trying flit by
//! hand. The durable forms of `flit pub` (`--ack`) and the stream commands
//! are in `stream_commands.rs`.
//!
//! A refusal that keeps the connection open (401 `permission_denied`, 307
//! `rate_limited`) is a failure here like any other: the command prints the
//! server's code and message and exits 1. Publishes and subscribes are not
//! acknowledged one by one (that would cost a round trip each), so the
//! commands flush, which the server answers only after every refusal of an
//! earlier frame, and then ask the client for the refusals it received.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flit_client::{Client, ClientError, ClusterClient, ClusterSubscription, Options, Subscription, TlsOptions};

use crate::cli::{PublishArguments, ReplyArguments, RequestArguments, ServerArgument, SubscribeArguments};

/// Turns a command's result into an exit code and one line on stderr.
pub fn exit(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flit: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(server: &ServerArgument) -> Result<Options> {
    let tls = match &server.tls_ca {
        None => None,
        Some(ca) => {
            let client_certificate = server.tls_cert.as_deref().zip(server.tls_key.as_deref());
            Some(TlsOptions::from_files(ca, client_certificate, &server.tls_server_name)?)
        }
    };
    let token = match &server.token_file {
        None => server.token.clone(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read token file {}", path.display()))?;
            text.lines().next().map(str::to_owned)
        }
    };
    Ok(Options { auth_token: token, tls, ..Options::default() })
}

/// `--server a,b,c`: the addresses in order, blanks dropped.
fn addresses(server: &ServerArgument) -> Vec<&str> {
    server.server.split(',').map(str::trim).filter(|address| !address.is_empty()).collect()
}

/// Connects to the first address of `--server` that answers.
pub(crate) fn connect(server: &ServerArgument) -> Result<Client> {
    let options = options(server)?;
    let addresses = addresses(server);
    let Some((last, others)) = addresses.split_last() else { bail!("--server names no address") };
    for address in others {
        if let Ok(client) = Client::connect_with(*address, options.clone()) {
            return Ok(client);
        }
    }
    connect_error(last, Client::connect_with(*last, options))
}

fn connect_error<T>(address: &str, result: Result<T, ClientError>) -> Result<T> {
    match result {
        Ok(client) => Ok(client),
        Err(ClientError::ServerSpeaksTls) => {
            bail!("the server at {address} speaks TLS: pass --tls-ca FILE, the CA (PEM) that signed its certificate")
        }
        // Nobody answered: the likely cause is a server that is not running.
        Err(error @ (ClientError::Io(_) | ClientError::Timeout)) => {
            Err(error).with_context(|| format!("cannot connect to flit at {address} (is `flit serve` running?)"))
        }
        Err(error) => Err(error).with_context(|| format!("cannot connect to flit at {address}")),
    }
}

/// A subscriber for `sub` and `reply`: with one address a plain client; with
/// several a [`ClusterClient`] that fails over between them, re-subscribing.
enum Subscriber {
    Single(Client, Subscription),
    Cluster(ClusterClient, ClusterSubscription),
}

impl Subscriber {
    fn next(&self) -> Option<flit_client::Message> {
        match self {
            Subscriber::Single(_, subscription) => subscription.next(),
            Subscriber::Cluster(_, subscription) => subscription.next(),
        }
    }

    fn publish(&self, subject: &str, payload: &[u8]) -> Result<(), ClientError> {
        match self {
            Subscriber::Single(client, _) => client.publish(subject, payload),
            Subscriber::Cluster(client, _) => client.publish(subject, payload),
        }
    }

    fn flush(&self) -> Result<(), ClientError> {
        match self {
            Subscriber::Single(client, _) => client.flush(),
            Subscriber::Cluster(client, _) => client.flush(),
        }
    }

    fn check_refusals(&self, what: impl FnOnce(u64) -> String) -> Result<()> {
        let refusals = match self {
            Subscriber::Single(client, _) => client.check_refusals(),
            Subscriber::Cluster(client, _) => client.check_refusals(),
        };
        refusals_result(refusals, what)
    }
}

/// After a flush: `Err` naming the refusals the server sent for earlier
/// frames, `what` saying what those frames were.
fn check_refusals(client: &Client, what: impl FnOnce(u64) -> String) -> Result<()> {
    refusals_result(client.check_refusals(), what)
}

fn refusals_result(refusals: Result<(), ClientError>, what: impl FnOnce(u64) -> String) -> Result<()> {
    match refusals {
        Ok(()) => Ok(()),
        Err(ClientError::Refused { count, code, message, .. }) => {
            bail!("the server refused {}: error {code}{}: {message}", what(count), code_name(code))
        }
        Err(error) => Err(error.into()),
    }
}

/// ` (permission_denied)` for a code this version knows.
fn code_name(code: u16) -> String {
    flit_wire::ErrorCode::from_u16(code).map_or_else(String::new, |code| format!(" ({})", code.name()))
}

/// Connects and subscribes (in a queue group if given); the flush makes the
/// subscription visible on every shard before the command goes on.
fn subscribed(server: &ServerArgument, subject: &str, queue: Option<&str>) -> Result<Subscriber> {
    let addresses = addresses(server);
    let subscriber = if addresses.len() > 1 {
        let client = connect_error(&server.server, ClusterClient::connect(&addresses, options(server)?))?;
        let subscription = match queue {
            Some(queue) => client.queue_subscribe(subject, queue)?,
            None => client.subscribe(subject)?,
        };
        Subscriber::Cluster(client, subscription)
    } else {
        let client = connect(server)?;
        let subscription = match queue {
            Some(queue) => client.queue_subscribe(subject, queue)?,
            None => client.subscribe(subject)?,
        };
        Subscriber::Single(client, subscription)
    };
    subscriber.flush()?;
    // Without this a refused subscription would wait forever for nothing.
    subscriber.check_refusals(|_| format!("the subscription to `{subject}`"))?;
    Ok(subscriber)
}

pub fn publish(arguments: PublishArguments) -> Result<()> {
    if arguments.ack {
        return match &arguments.payload {
            Some(payload) => crate::stream_commands::publish_acknowledged(&arguments, payload),
            None => crate::stream_commands::publish_stdin_acknowledged(&arguments),
        };
    }
    let client = connect(&arguments.server)?;
    let Some(payload) = &arguments.payload else {
        let published = crate::stream_commands::publish_stdin(&arguments, &client)?;
        return check_refusals(&client, |refused| {
            format!("{refused} of {published} publishes to `{}`; the first", arguments.subject)
        });
    };
    for _ in 0..arguments.count {
        client.publish(&arguments.subject, payload.as_bytes())?;
    }
    // The flush round trip proves the server has read every publish, and
    // that any refusal of one has arrived.
    client.flush()?;
    check_refusals(&client, |refused| {
        format!("{refused} of {} publishes to `{}`; the first", arguments.count, arguments.subject)
    })
}

pub fn subscribe(arguments: SubscribeArguments) -> Result<()> {
    let subscription = subscribed(&arguments.server, &arguments.subject, arguments.queue.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    let mut received = 0u64;
    while arguments.count.is_none_or(|count| received < count) {
        let Some(message) = subscription.next() else {
            anyhow::bail!("the connection to the server was closed");
        };
        write!(stdout, "{} ", message.subject)?;
        write_payload(&mut stdout, &message.payload, arguments.raw)?;
        stdout.flush()?;
        received += 1;
    }
    Ok(())
}

pub fn request(arguments: RequestArguments) -> Result<()> {
    let client = connect(&arguments.server)?;
    let timeout = Duration::from_millis(arguments.timeout_ms);
    match client.request(&arguments.subject, arguments.payload.as_bytes(), timeout) {
        Ok(reply) => Ok(write_payload(&mut std::io::stdout().lock(), &reply.payload, arguments.raw)?),
        Err(ClientError::NoResponders) => bail!("no responders on `{}`", arguments.subject),
        Err(ClientError::Timeout) => bail!("no reply on `{}` within {timeout:?}", arguments.subject),
        // Its publish or this client's inbox subscription was refused.
        Err(error @ ClientError::Server { .. }) if !error.is_fatal() => {
            bail!("the server refused the request on `{}`: {error}", arguments.subject)
        }
        Err(error) => Err(error.into()),
    }
}

pub fn reply(arguments: ReplyArguments) -> Result<()> {
    let subscription = subscribed(&arguments.server, &arguments.subject, arguments.queue.as_deref())?;
    eprintln!("flit: answering requests on `{}`", arguments.subject);
    let mut answered = 0u64;
    while arguments.count.is_none_or(|count| answered < count) {
        let Some(request) = subscription.next() else {
            anyhow::bail!("the connection to the server was closed");
        };
        let Some(reply_subject) = &request.reply else { continue };
        let payload: &[u8] = match (&arguments.payload, arguments.echo) {
            (Some(payload), _) => payload.as_bytes(),
            (None, _) => &request.payload,
        };
        // The client's writer sends it at once; no flush round trip per reply.
        subscription.publish(reply_subject, payload)?;
        answered += 1;
        // Refusals of earlier replies have arrived by now or will be seen
        // later; a responder keeps serving the requests it may answer.
        if let Err(error) = subscription.check_refusals(|refused| format!("{refused} earlier replies")) {
            eprintln!("flit: warning: {error:#}");
        }
    }
    // With --count, make sure the last reply left before the process exits.
    subscription.flush()?;
    subscription.check_refusals(|refused| format!("{refused} of the {answered} replies; the first"))
}

/// Writes a payload and a newline: as is with `raw`, else escaped (see
/// [`escape_payload`]) so that one message stays one line.
pub(crate) fn write_payload(out: &mut impl Write, payload: &[u8], raw: bool) -> std::io::Result<()> {
    if raw {
        out.write_all(payload)?;
    } else {
        out.write_all(escape_payload(payload).as_bytes())?;
    }
    out.write_all(b"\n")
}

/// A payload as one line of printable text: a newline would split a message
/// over two lines and an escape sequence would drive the terminal, so
/// control characters are written `\n`, `\r`, `\t` or `\u{1b}`, bytes that
/// are not UTF-8 `\xff`, and a backslash `\\` (so the output is unambiguous).
/// Other text, UTF-8 included, is kept.
fn escape_payload(payload: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len());
    for chunk in payload.utf8_chunks() {
        for character in chunk.valid().chars() {
            match character {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                character if character.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(character))),
                character => out.push(character),
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_escaped_onto_one_printable_line() {
        assert_eq!(escape_payload(b"hi there"), "hi there");
        assert_eq!(escape_payload("{\"caf\u{e9}\": 1}".as_bytes()), "{\"caf\u{e9}\": 1}", "UTF-8 and quotes stay");
        assert_eq!(escape_payload(b"two\nlines\r\n"), "two\\nlines\\r\\n");
        assert_eq!(escape_payload(b"\x1b[2Jcleared\x07"), "\\u{1b}[2Jcleared\\u{7}");
        assert_eq!(escape_payload("\u{9b}31m".as_bytes()), "\\u{9b}31m", "C1 controls too");
        assert_eq!(escape_payload(b"a\\b\tc"), "a\\\\b\\tc");
        assert_eq!(escape_payload(b"\xff\xfeok"), "\\xff\\xfeok");
    }

    #[test]
    fn raw_writes_the_bytes_as_they_are() {
        let mut out = Vec::new();
        write_payload(&mut out, b"a\nb\xff", true).unwrap();
        assert_eq!(out, b"a\nb\xff\n");
        out.clear();
        write_payload(&mut out, b"a\nb", false).unwrap();
        assert_eq!(out, b"a\\nb\n");
    }
}
