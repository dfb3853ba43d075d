//! `flit pub`, `flit sub`, `flit req`, `flit reply`: thin command-line
//! wrappers around the blocking client, for scripts and for trying flit by hand.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use flit_client::{Client, ClientError, Options, Subscription, TlsOptions};

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

fn connect(server: &ServerArgument) -> Result<Client> {
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
    let options = Options { auth_token: token, tls, ..Options::default() };
    let address = &server.server;
    Client::connect_with(address.as_str(), options)
        .with_context(|| format!("cannot connect to flit at {address} (is `flit serve` running?)"))
}

/// Connects and subscribes (in a queue group if given); the flush makes the
/// subscription visible on every shard before the command goes on.
fn subscribed(server: &ServerArgument, subject: &str, queue: Option<&str>) -> Result<(Client, Subscription)> {
    let client = connect(server)?;
    let subscription = match queue {
        Some(queue) => client.queue_subscribe(subject, queue)?,
        None => client.subscribe(subject)?,
    };
    client.flush()?;
    Ok((client, subscription))
}

pub fn publish(arguments: PublishArguments) -> Result<()> {
    let client = connect(&arguments.server)?;
    for _ in 0..arguments.count {
        client.publish(&arguments.subject, arguments.payload.as_bytes())?;
    }
    // The flush round trip proves the server has read every publish.
    client.flush()?;
    Ok(())
}

pub fn subscribe(arguments: SubscribeArguments) -> Result<()> {
    let (_client, subscription) = subscribed(&arguments.server, &arguments.subject, arguments.queue.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    let mut received = 0u64;
    while arguments.count.is_none_or(|count| received < count) {
        let Some(message) = subscription.next() else {
            anyhow::bail!("the connection to the server was closed");
        };
        writeln!(stdout, "{} {}", message.subject, String::from_utf8_lossy(&message.payload))?;
        stdout.flush()?;
        received += 1;
    }
    Ok(())
}

pub fn request(arguments: RequestArguments) -> Result<()> {
    let client = connect(&arguments.server)?;
    let timeout = Duration::from_millis(arguments.timeout_ms);
    match client.request(&arguments.subject, arguments.payload.as_bytes(), timeout) {
        Ok(reply) => {
            println!("{}", String::from_utf8_lossy(&reply.payload));
            Ok(())
        }
        Err(ClientError::NoResponders) => anyhow::bail!("no responders on `{}`", arguments.subject),
        Err(ClientError::Timeout) => anyhow::bail!("no reply on `{}` within {timeout:?}", arguments.subject),
        Err(error) => Err(error.into()),
    }
}

pub fn reply(arguments: ReplyArguments) -> Result<()> {
    let (client, subscription) = subscribed(&arguments.server, &arguments.subject, arguments.queue.as_deref())?;
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
        client.publish(reply_subject, payload)?;
        answered += 1;
    }
    // With --count, make sure the last reply left before the process exits.
    client.flush()?;
    Ok(())
}
