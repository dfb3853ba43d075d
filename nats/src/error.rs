//! Protocol errors and the `-ERR` line nats-server sends for each.
//!
//! A NATS client reads the text inside `-ERR '...'` to decide what happened
//! (nats.go, for example, matches `'Authorization Violation'` and
//! `'Stale Connection'` literally), so the text is protocol, not prose: it is
//! copied from nats-server (`server/client.go`, `server/parser.go`,
//! `server/errors.go`), including its capitalisation, which is not uniform
//! (`'maximum control line exceeded'` is lower case since nats-server 2.2).
//!
//! Invariants: [`ProtocolError::err_line`] always returns one whole line,
//! `-ERR '<text>'\r\n`, with no `'`, CR or LF inside the text (a subject
//! quoted into a permission error is escaped, see [`go_quote`]); and
//! [`ProtocolError::closes_connection`] says what nats-server does after
//! sending it. Where nats-server closes without any `-ERR` (malformed
//! arguments, a bad CONNECT), flit still sends `'Unknown Protocol Operation'`
//! first, so the client's log says why; that is the one deliberate
//! difference.

use thiserror::Error;

/// Everything that can go wrong on a NATS client connection, as the codec
/// and the (future) shard front end report it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The op name is none of CONNECT, PUB, HPUB, SUB, UNSUB, PING, PONG, or
    /// a line is empty. Closes.
    #[error("unknown protocol operation")]
    UnknownOperation,
    /// A known op with the wrong number of arguments, or a size that is not
    /// a decimal number of at most 9 digits. Closes (nats-server closes
    /// silently; flit sends `'Unknown Protocol Operation'` first).
    #[error("malformed {op} arguments: {reason}")]
    MalformedArguments {
        /// The op, upper case.
        op: &'static str,
        /// What is wrong, for the log.
        reason: &'static str,
    },
    /// A control line longer than the limit, or no line end within it. Closes.
    #[error("control line longer than {limit} bytes")]
    MaxControlLineExceeded {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// A PUB or HPUB announced more bytes than `max_payload`. Reported from
    /// the control line, before any payload is waited for. Closes.
    #[error("payload of {size} bytes exceeds max_payload {limit}")]
    MaxPayloadViolation {
        /// The announced size (total size for HPUB).
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The `size` bytes after a PUB/HPUB line are not followed by `\r\n`:
    /// the announced size lies. Closes (nats-server: parse error, the same
    /// `'Unknown Protocol Operation'`).
    #[error("payload not followed by CRLF: the announced size is wrong")]
    MissingPayloadTerminator,
    /// CONNECT's argument is not the JSON object NATS defines. Closes.
    #[error("invalid CONNECT: {0}")]
    InvalidConnect(String),
    /// CONNECT asked for a `protocol` other than 0 or 1. Closes.
    #[error("invalid client protocol")]
    BadClientProtocol,
    /// CONNECT asked for `no_responders` without `headers`. Closes.
    #[error("no responders requires headers support")]
    NoRespondersRequiresHeaders,
    /// A SUB pattern NATS's rules refuse. The connection stays open.
    #[error("invalid subject")]
    InvalidSubject,
    /// A PUB subject refused (nats-server reports it in pedantic mode only).
    /// The connection stays open.
    #[error("invalid publish subject")]
    InvalidPublishSubject,
    /// Bad or missing credentials, or an op before CONNECT when
    /// authentication is required. Closes.
    #[error("authorization violation")]
    AuthorizationViolation,
    /// No CONNECT within the authentication timeout. Closes.
    #[error("authentication timeout")]
    AuthenticationTimeout,
    /// Unanswered server PINGs. Closes.
    #[error("stale connection")]
    StaleConnection,
    /// The client does not read fast enough. Closes. (nats-server closes
    /// without a line because the socket is stuck; flit may still try.)
    #[error("slow consumer")]
    SlowConsumer,
    /// The connection limit is reached. Closes.
    #[error("maximum connections exceeded")]
    MaxConnectionsExceeded,
    /// The per-connection subscription limit is reached. Stays open.
    #[error("maximum subscriptions exceeded")]
    MaxSubscriptionsExceeded,
    /// A plain connection to a listener that requires TLS. Closes.
    #[error("secure connection - TLS required")]
    SecureConnectionRequired,
    /// Publishing to a subject the identity may not publish to. Stays open.
    #[error("permissions violation for publish to {subject:?}")]
    PublishPermission {
        /// The subject as the client sent it.
        subject: Vec<u8>,
    },
    /// A reply subject the identity may not use. Stays open.
    #[error("permissions violation for publish with reply of {reply:?}")]
    ReplyPermission {
        /// The reply subject as the client sent it.
        reply: Vec<u8>,
    },
    /// Subscribing to a pattern the identity may not subscribe to. Stays open.
    #[error("permissions violation for subscription to {subject:?}")]
    SubscribePermission {
        /// The pattern as the client sent it.
        subject: Vec<u8>,
        /// The queue group, if any.
        queue: Option<Vec<u8>>,
    },
}

impl ProtocolError {
    /// The text nats-server puts between the quotes of `-ERR '...'`.
    pub fn err_text(&self) -> String {
        let fixed = match self {
            Self::UnknownOperation
            | Self::MalformedArguments { .. }
            | Self::MissingPayloadTerminator
            | Self::InvalidConnect(_) => "Unknown Protocol Operation",
            Self::MaxControlLineExceeded { .. } => "maximum control line exceeded",
            Self::MaxPayloadViolation { .. } => "Maximum Payload Violation",
            Self::BadClientProtocol => "invalid client protocol",
            Self::NoRespondersRequiresHeaders => "no responders requires headers support",
            Self::InvalidSubject => "Invalid Subject",
            Self::InvalidPublishSubject => "Invalid Publish Subject",
            Self::AuthorizationViolation => "Authorization Violation",
            Self::AuthenticationTimeout => "Authentication Timeout",
            Self::StaleConnection => "Stale Connection",
            Self::SlowConsumer => "Slow Consumer",
            Self::MaxConnectionsExceeded => "maximum connections exceeded",
            Self::MaxSubscriptionsExceeded => "maximum subscriptions exceeded",
            Self::SecureConnectionRequired => "Secure Connection - TLS Required",
            Self::PublishPermission { subject } => {
                return format!("Permissions Violation for Publish to {}", go_quote(subject));
            }
            Self::ReplyPermission { reply } => {
                return format!("Permissions Violation for Publish with Reply of {}", go_quote(reply));
            }
            Self::SubscribePermission { subject, queue: None } => {
                return format!("Permissions Violation for Subscription to {}", go_quote(subject));
            }
            Self::SubscribePermission { subject, queue: Some(queue) } => {
                return format!(
                    "Permissions Violation for Subscription to {} using queue {}",
                    go_quote(subject),
                    go_quote(queue)
                );
            }
        };
        fixed.to_owned()
    }

    /// The whole line to send: `-ERR '<text>'\r\n`.
    pub fn err_line(&self) -> String {
        format!("-ERR '{}'\r\n", self.err_text())
    }

    /// Whether nats-server closes the connection after this error (flit
    /// does the same, so clients reconnect or not exactly as they would).
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            Self::InvalidSubject
                | Self::InvalidPublishSubject
                | Self::MaxSubscriptionsExceeded
                | Self::PublishPermission { .. }
                | Self::ReplyPermission { .. }
                | Self::SubscribePermission { .. }
        )
    }
}

/// Quotes bytes the way Go's `%q` does for the ASCII cases a subject can
/// hold: `"` and `\` escaped, control bytes, `'`-free output. Bytes above
/// 0x7e are written `\xNN` (Go would print valid UTF-8 as is; escaping it is
/// safe and keeps the line ASCII). `'` is written `\x27` because the text
/// sits between single quotes on the `-ERR` line.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut quoted = String::with_capacity(bytes.len() + 2);
    quoted.push('"');
    for &byte in bytes {
        match byte {
            b'"' => quoted.push_str("\\\""),
            b'\\' => quoted.push_str("\\\\"),
            b'\t' => quoted.push_str("\\t"),
            b'\r' => quoted.push_str("\\r"),
            b'\n' => quoted.push_str("\\n"),
            b'\'' => quoted.push_str("\\x27"),
            0x20..=0x7e => quoted.push(char::from(byte)),
            _ => quoted.push_str(&format!("\\x{byte:02x}")),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_lines_are_the_nats_server_texts() {
        assert_eq!(ProtocolError::UnknownOperation.err_line(), "-ERR 'Unknown Protocol Operation'\r\n");
        let payload = ProtocolError::MaxPayloadViolation { size: 2, limit: 1 };
        assert_eq!(payload.err_line(), "-ERR 'Maximum Payload Violation'\r\n");
        let line = ProtocolError::MaxControlLineExceeded { limit: 4096 };
        assert_eq!(line.err_line(), "-ERR 'maximum control line exceeded'\r\n");
        assert_eq!(ProtocolError::AuthorizationViolation.err_line(), "-ERR 'Authorization Violation'\r\n");
        assert_eq!(ProtocolError::InvalidSubject.err_line(), "-ERR 'Invalid Subject'\r\n");
        assert_eq!(ProtocolError::StaleConnection.err_line(), "-ERR 'Stale Connection'\r\n");
        let publish = ProtocolError::PublishPermission { subject: b"secret.x".to_vec() };
        assert_eq!(publish.err_line(), "-ERR 'Permissions Violation for Publish to \"secret.x\"'\r\n");
        let subscribe = ProtocolError::SubscribePermission { subject: b"a.>".to_vec(), queue: Some(b"q".to_vec()) };
        assert_eq!(subscribe.err_text(), "Permissions Violation for Subscription to \"a.>\" using queue \"q\"");
    }

    #[test]
    fn only_subject_and_permission_errors_keep_the_connection() {
        assert!(ProtocolError::UnknownOperation.closes_connection());
        assert!(ProtocolError::MaxPayloadViolation { size: 2, limit: 1 }.closes_connection());
        assert!(ProtocolError::AuthorizationViolation.closes_connection());
        assert!(!ProtocolError::InvalidSubject.closes_connection());
        assert!(!ProtocolError::PublishPermission { subject: vec![] }.closes_connection());
        assert!(!ProtocolError::MaxSubscriptionsExceeded.closes_connection());
    }

    #[test]
    fn quoted_subjects_cannot_break_the_line() {
        let quoted = go_quote(b"a'b\r\n\"\\\x00\xff");
        assert_eq!(quoted, "\"a\\x27b\\r\\n\\\"\\\\\\x00\\xff\"");
        assert!(!quoted.contains('\'') && !quoted.contains('\r') && !quoted.contains('\n'));
    }
}
