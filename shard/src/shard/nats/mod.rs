//! The NATS front end: connections accepted on the NATS listener speak the
//! NATS client protocol (text control lines, `flit-nats` parses and encodes
//! them) and feed the same routing core as native connections. A NATS
//! publish becomes a [`RoutedMessage`] whose subject, reply and payload are
//! ranges of the op's bytes as received (no copy); subscriptions, queue
//! groups, permissions, limits, rate limits, streams and drain are the
//! native ones. Only the edges differ:
//!
//! - in: `INFO` first; `CONNECT` (auth, options); `PUB`/`HPUB`/`SUB`/`UNSUB`/
//!   `PING`/`PONG` (here and in `ops.rs`);
//! - out: `MSG`/`HMSG` per delivery, `+OK` when verbose, `-ERR` lines
//!   (`deliver.rs`, and the protocol-aware writers in io.rs and dispatch.rs).
//!
//! Headers: the routing core carries flit's header block (a flatbuffer), so
//! native subscribers and streams see one format. An `HPUB`'s `NATS/1.0`
//! block is translated once on the way in (one copy of that message); a NATS
//! subscriber gets the block translated back once per message per shard.
//! Messages without headers are never copied or translated.
//!
//! Errors: a malformed op gets nats-server's `-ERR` text and a close, as
//! nats-server does; refusals that nats-server answers without closing
//! (permissions, invalid subjects, the subscription limit) keep the
//! connection. A NATS slow consumer is reset, not sent a last `-ERR`: its
//! output is text without length prefixes, so a half-sent `MSG` cannot be
//! completed the way a native frame is (see io.rs, `begin_close`).
//!
//! Shutdown: NATS connections are closed with the rest; they get no
//! `Draining` frame (NATS has no such op; clients reconnect on close).

mod deliver;
mod ops;

use std::io::Write;
use std::sync::Arc;

use bytes::BytesMut;
use flit_nats::{ClientOp, Connect, ProtocolError, ServerInfo};
use flit_wire::ErrorCode;

use super::Shard;
use crate::auth::Identity;
use crate::connection::{ConnectionKey, ConnectionState};
use crate::nats_session::{NatsOptions, NatsSession};

pub use deliver::NatsHeaderCache;
pub(super) use deliver::{nats_takes, write_nats_delivery};

/// The nats-server version flit's INFO reports. NATS clients enable
/// features by comparing it (headers and no-responders need 2.2.0 or later);
/// flit implements the client protocol of this release, not its server
/// features (JetStream, accounts, clustering through NATS routes).
pub const NATS_COMPATIBLE_VERSION: &str = "2.10.0";

/// Most bytes of a NATS control line (`max_control_line`, nats-server's
/// default): longer is `'maximum control line exceeded'` and a close.
pub const NATS_CONTROL_LINE_BYTES_MAX: usize = 4096;

/// Most stream acknowledgements one NATS connection may wait for at once
/// (publishes with a reply subject to stream-captured subjects); past it a
/// publish is refused with `-ERR` until acknowledgements come back.
pub const NATS_PENDING_ACKS_MAX: usize = 65_536;

impl Shard {
    /// Sets up a connection just accepted on the NATS listener: its session,
    /// and INFO, which a NATS client reads before it says anything. With TLS
    /// the INFO goes out in plain text first (`tls_required`), and the
    /// client then starts the TLS handshake, as nats-server expects.
    pub(super) fn greet_nats(&mut self, key: ConnectionKey) {
        // The same id /connz shows as `cid`.
        let client_id = self.connections.get(key).map_or(0, |connection| connection.connection_id);
        let parser = flit_nats::Parser::new(flit_nats::Limits {
            max_control_line: NATS_CONTROL_LINE_BYTES_MAX,
            max_payload: self.config.payload_bytes_max,
        });
        let info = self.nats_info(key, client_id);
        let Some(connection) = self.connections.get_mut(key) else { return };
        connection.nats = Some(Box::new(NatsSession::new(parser, client_id)));
        let mut line = BytesMut::new();
        flit_nats::encode_info(&info, &mut line);
        if connection.tls.is_some() {
            // Before any TLS record: best effort on a new socket, whose send
            // buffer takes a line this small.
            if (&connection.stream).write_all(&line).is_err() {
                self.finish_close(key);
            }
            return;
        }
        connection.write_buffer.extend_from_slice(&line);
        self.mark_dirty(key);
    }

    /// The cluster's NATS URLs changed (a node joined): every connected NATS
    /// client that takes INFO updates gets a fresh INFO, as nats-server
    /// sends one, so it can fail over to the new node too. Checked once per
    /// sweep (one atomic load).
    pub(super) fn push_nats_info_if_nodes_changed(&mut self) {
        let generation = self.shared.peer_urls.generation();
        if generation == self.nats_urls_generation_seen || self.shared.nats_address.is_none() {
            return;
        }
        self.nats_urls_generation_seen = generation;
        let keys: Vec<(ConnectionKey, u64)> = self
            .connections
            .iter()
            .filter_map(|connection| {
                let session = connection.nats.as_ref()?;
                (session.connected && session.options.info_updates).then_some((connection.key, session.client_id))
            })
            .collect();
        for (key, client_id) in keys {
            let info = self.nats_info(key, client_id);
            let Some(connection) = self.connections.get_mut(key) else { continue };
            let mut line = BytesMut::new();
            flit_nats::encode_info(&info, &mut line);
            connection.write_buffer.extend_from_slice(&line);
            self.mark_dirty(key);
        }
    }

    fn nats_info(&self, key: ConnectionKey, client_id: u64) -> ServerInfo {
        let client_ip = self
            .connections
            .get(key)
            .and_then(|connection| connection.peer_address)
            .map(|address| address.ip().to_string())
            .unwrap_or_default();
        ServerInfo {
            server_id: self.shared.server_id.clone(),
            server_name: self.config.server_name.clone(),
            version: NATS_COMPATIBLE_VERSION.to_string(),
            proto: 1,
            headers: true,
            max_payload: self.config.payload_bytes_max as u64,
            client_id,
            client_ip,
            auth_required: self.identities.required,
            tls_required: self.config.tls.is_some(),
            // This node's and the other nodes' NATS listeners (cluster/), so
            // a NATS client can reconnect to another node.
            connect_urls: match self.shared.nats_address.filter(|_| self.config.cluster.is_some()) {
                None => Vec::new(),
                Some(own) => std::iter::once(own.to_string()).chain(self.shared.peer_urls.nats_urls()).collect(),
            },
        }
    }

    /// Handles every whole op in a NATS connection's read buffer, up to
    /// `bytes_budget` bytes of them; true when it stopped for the budget
    /// with more left (the native `handle_buffered_frames_within`'s twin).
    pub(super) fn handle_nats_input(&mut self, key: ConnectionKey, bytes_budget: usize) -> bool {
        let mut bytes_handled = 0;
        loop {
            let Some(connection) = self.connections.get_mut(key) else { return false };
            if bytes_handled >= bytes_budget {
                return !connection.read_buffer.is_empty();
            }
            if connection.state == ConnectionState::Closing || connection.reading_paused_until_nanos != 0 {
                return false;
            }
            let Some(session) = connection.nats.as_ref() else { return false };
            let parsed = session.parser.split_op_with_bytes(&mut connection.read_buffer);
            match parsed {
                Ok(None) => {
                    // The stalled-frame timeout applies to NATS ops too.
                    connection.wait_for_rest_of_frame(self.read_pass_nanos);
                    return false;
                }
                Err(error) => {
                    self.nats_error(key, error);
                    return false;
                }
                Ok(Some((op, bytes))) => {
                    connection.partial_frame_since_nanos = 0;
                    bytes_handled += bytes.len();
                    self.on_nats_op(key, op, bytes);
                }
            }
        }
    }

    fn on_nats_op(&mut self, key: ConnectionKey, op: ClientOp, bytes: bytes::Bytes) {
        let Some(connection) = self.connections.get(key) else { return };
        let connected = connection.nats.as_ref().is_some_and(|session| session.connected);
        if !connected {
            match op {
                ClientOp::Connect(connect) => return self.on_nats_connect(key, &connect),
                // With authentication on, nothing but CONNECT comes first.
                _ if self.identities.required => return self.nats_error(key, ProtocolError::AuthorizationViolation),
                // Without, nats-server takes ops from a client that never
                // sent CONNECT (a person at a terminal) with default options.
                _ => self.open_nats(key, NatsOptions::default(), None),
            }
        }
        match op {
            ClientOp::Connect(_) => {
                // A second CONNECT changes nothing here (its credentials were
                // checked once); nats-server likewise keeps the first identity.
                self.nats_ok(key);
            }
            ClientOp::Pub { subject, reply, payload } => {
                self.on_nats_publish(key, bytes, subject, reply, None, payload)
            }
            ClientOp::Hpub { subject, reply, headers, payload } => {
                self.on_nats_publish(key, bytes, subject, reply, Some(headers), payload)
            }
            ClientOp::Sub { subject, queue, sid } => self.on_nats_subscribe(key, &subject, queue.as_deref(), &sid),
            ClientOp::Unsub { sid, max } => self.on_nats_unsubscribe(key, &sid, max),
            // The Pong waits for the interest barrier, like a native Pong:
            // a client that flushed after SUB knows every shard sees it.
            ClientOp::Ping => self.reply(key, crate::connection::DeferredReply::Pong, true),
            // Reading it already reset the idle clock.
            ClientOp::Pong => {}
        }
    }

    fn on_nats_connect(&mut self, key: ConnectionKey, connect: &Connect) {
        if let Err(error) = connect.check() {
            return self.nats_error(key, error);
        }
        let Some(connection) = self.connections.get(key) else { return };
        let certificate = connection.tls.as_deref().and_then(crate::tls::peer_fingerprint);
        let identity = match self.nats_identity(connect, certificate.as_ref()) {
            Ok(identity) => identity,
            Err(()) => return self.nats_error(key, ProtocolError::AuthorizationViolation),
        };
        let options = NatsOptions {
            verbose: connect.verbose,
            echo: connect.echo,
            headers: connect.headers,
            no_responders: connect.no_responders,
            info_updates: connect.protocol >= 1,
        };
        self.open_nats(key, options, identity);
        if let Some(connection) = self.connections.get_mut(key) {
            // For /connz; bounded, since a client may say anything.
            let text = |value: &Option<String>| value.as_deref().map(|text| text.chars().take(256).collect());
            connection.client_name = text(&connect.name);
            connection.client_lang = text(&connect.lang);
            connection.client_version = text(&connect.version);
        }
        self.nats_ok(key);
    }

    /// The identity CONNECT's credentials prove: a client certificate (mutual
    /// TLS), `auth_token`, or `user` and `pass`; None when authentication is
    /// off. Err: refused (the client learns only 'Authorization Violation',
    /// as from nats-server).
    fn nats_identity(&self, connect: &Connect, certificate: Option<&[u8; 32]>) -> Result<Option<Arc<Identity>>, ()> {
        if !self.identities.required {
            return Ok(None);
        }
        let by_certificate = certificate.and_then(|fingerprint| self.identities.by_certificate(fingerprint));
        let by_credentials = match (&connect.auth_token, &connect.user, &connect.pass) {
            (Some(token), _, _) if !token.is_empty() => Some(self.identities.authenticate(Some(token)).map_err(drop)?),
            (_, Some(user), Some(pass)) => Some(self.identities.authenticate_password(user, pass).map_err(drop)?),
            _ => None,
        };
        match (by_certificate, by_credentials.flatten()) {
            (Some(certified), Some(claimed)) if certified.name != claimed.name => Err(()),
            (Some(certified), _) => Ok(Some(certified)),
            (None, Some(claimed)) => Ok(Some(claimed)),
            (None, None) => Err(()),
        }
    }

    /// CONNECT accepted (or implied): the connection is open for ops.
    fn open_nats(&mut self, key: ConnectionKey, options: NatsOptions, identity: Option<Arc<Identity>>) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        connection.state = ConnectionState::Open;
        connection.identity = identity;
        if let Some(session) = connection.nats.as_mut() {
            session.connected = true;
            session.options = options;
        }
    }

    /// `+OK` after an accepted op, for a verbose client.
    fn nats_ok(&mut self, key: ConnectionKey) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        if connection.error_sent || !connection.nats.as_ref().is_some_and(|session| session.options.verbose) {
            return;
        }
        flit_nats::encode_ok(&mut connection.write_buffer);
        self.mark_dirty(key);
    }

    /// A NATS protocol error: the `-ERR` line nats-server sends, then a
    /// close when nats-server closes for it.
    pub(super) fn nats_error(&mut self, key: ConnectionKey, error: ProtocolError) {
        if error.closes_connection() {
            self.metrics.protocol_errors.add(1);
            let code = flit_code_of(&error);
            let line = error.err_line();
            self.begin_close_with_line(key, code, &line);
            return;
        }
        let text = error.err_text();
        self.refuse_as(key, flit_code_of(&error), &text, 0, Some(error));
    }
}

/// The flit error code a NATS error is counted under (metrics and logs).
fn flit_code_of(error: &ProtocolError) -> ErrorCode {
    match error {
        ProtocolError::MaxPayloadViolation { .. } => ErrorCode::PayloadTooLarge,
        ProtocolError::AuthorizationViolation => ErrorCode::AuthenticationFailed,
        ProtocolError::AuthenticationTimeout => ErrorCode::HandshakeTimeout,
        ProtocolError::StaleConnection => ErrorCode::IdleTimeout,
        ProtocolError::SlowConsumer => ErrorCode::SlowConsumer,
        ProtocolError::MaxConnectionsExceeded => ErrorCode::TooManyConnections,
        ProtocolError::MaxSubscriptionsExceeded => ErrorCode::TooManySubscriptions,
        ProtocolError::InvalidSubject | ProtocolError::InvalidPublishSubject => ErrorCode::InvalidSubject,
        ProtocolError::PublishPermission { .. }
        | ProtocolError::ReplyPermission { .. }
        | ProtocolError::SubscribePermission { .. } => ErrorCode::PermissionDenied,
        _ => ErrorCode::MalformedFrame,
    }
}

/// The `-ERR` line for a flit error code, where the routing core or a
/// timeout closes or refuses a NATS connection with one.
pub(super) fn nats_line_for(code: ErrorCode, message: &str) -> String {
    let error = match code {
        ErrorCode::SlowConsumer => ProtocolError::SlowConsumer,
        ErrorCode::IdleTimeout | ErrorCode::StalledFrame => ProtocolError::StaleConnection,
        ErrorCode::HandshakeTimeout => ProtocolError::AuthenticationTimeout,
        ErrorCode::TooManyConnections => ProtocolError::MaxConnectionsExceeded,
        ErrorCode::TooManySubscriptions => ProtocolError::MaxSubscriptionsExceeded,
        ErrorCode::AuthenticationFailed => ProtocolError::AuthorizationViolation,
        ErrorCode::PayloadTooLarge => ProtocolError::MaxPayloadViolation { size: 0, limit: 0 },
        // No NATS text of its own (rate limits, shutdown, internal errors):
        // flit's message, quoted the NATS way.
        _ => return format!("-ERR '{}'\r\n", message.replace(['\'', '\r', '\n'], " ")),
    };
    error.err_line()
}
