//! The client's error type.
//!
//! Every variant says whether the connection survives it. Errors that end the
//! connection are also recorded as its *terminal error*: once one is recorded,
//! every later call on that client (and every waiting flush, request or
//! acknowledgement) returns a clone of it, which is why the type is `Clone`.

use std::io;
use std::sync::Arc;

use flit_wire::{ErrorCode, WireError};

/// Why a client call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Reading or writing the socket failed. Fatal to the connection.
    #[error("connection i/o failed: {0}")]
    Io(Arc<io::Error>),
    /// The server sent an Error frame; it closes the connection after one, so
    /// this is fatal. [`ClientError::server_code`] names the code.
    #[error("server error {code}{}: {message}", code_name(*code))]
    Server {
        code: u16,
        message: String,
        /// For `rate_limited` (307): milliseconds until the limit allows the
        /// refused message again; 0 otherwise.
        retry_after_ms: u32,
    },
    /// The server refused frames and kept the connection open
    /// (`permission_denied` 401, `rate_limited` 307), outside ack mode or for
    /// frames nobody waited on: those refusals do not say which frame they
    /// answer, so [`Client::check_refusals`](crate::Client::check_refusals)
    /// reports them together: `count` refusals; `code`, `message` and
    /// `retry_after_ms` are the first one's. Recoverable.
    #[error("the server refused {count} frame(s); the first: error {code}{}: {message}", code_name(*code))]
    Refused { count: u64, code: u16, message: String, retry_after_ms: u32 },
    /// The server closed the connection without saying why. Fatal.
    #[error("the server closed the connection")]
    Disconnected,
    /// The server sent bytes or a frame this client cannot accept. Fatal.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// The server speaks no protocol version this client speaks. Fatal (at connect).
    #[error("server chose protocol version {server}, this client speaks {client}")]
    UnsupportedVersion { server: u16, client: u16 },
    /// The server answered the handshake in TLS: it listens with TLS only, and
    /// this client connected without ([`Options::tls`](crate::Options::tls)). Fatal (at connect).
    #[error("the server speaks TLS and this client connected without it (set Options::tls)")]
    ServerSpeaksTls,
    /// A [`ClusterClient`](crate::ClusterClient) holds no connection now (it is
    /// reconnecting) and the call cannot be buffered (a request, a flush that
    /// waited `flush_timeout`), or the publish buffer is full. Recoverable: the
    /// client keeps reconnecting.
    #[error("not connected to any server: reconnecting")]
    NotConnected,
    /// A [`ClusterClient`](crate::ClusterClient) is reconnecting and its publish
    /// buffer ([`Options::reconnect_buffer_bytes_max`](crate::Options::reconnect_buffer_bytes_max))
    /// has no room for this publish; nothing was buffered. Recoverable.
    #[error("reconnecting, and the publish buffer is full ({buffered_bytes} of {limit_bytes} bytes)")]
    ReconnectBufferFull { buffered_bytes: usize, limit_bytes: usize },
    /// [`close`](crate::Client::close) was called. Fatal.
    #[error("the connection was closed by this client")]
    Closed,
    /// A subject or pattern breaks the subject rules; nothing was sent. Recoverable.
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject { subject: String, reason: WireError },
    /// A queue group name is invalid; nothing was sent. Recoverable.
    #[error("invalid queue group {queue:?}: {reason}")]
    InvalidQueueGroup { queue: String, reason: WireError },
    /// Headers could not be encoded; nothing was sent. Recoverable.
    #[error("invalid headers: {0}")]
    InvalidHeaders(WireError),
    /// The payload is above the server's `payload_bytes_max`; nothing was sent. Recoverable.
    #[error("payload of {payload_bytes} bytes is above the server's limit of {limit_bytes} bytes")]
    PayloadTooLarge { payload_bytes: usize, limit_bytes: usize },
    /// No answer within the deadline (flush, request, connect, acknowledgement).
    /// Recoverable: the connection is still up, a late answer is discarded.
    #[error("timed out")]
    Timeout,
    /// A request reached no subscriber (the server answered with status 503). Recoverable.
    #[error("no responders for the request")]
    NoResponders,
    /// [`Message::respond`](crate::Message::respond) on a message without a reply subject. Recoverable.
    #[error("the message has no reply subject")]
    NoReplySubject,
    /// The subscription was unsubscribed (or its connection ended) and holds no more messages.
    #[error("the subscription is closed")]
    SubscriptionClosed,
    /// TLS failed: a CA or certificate file, the handshake (an untrusted or
    /// expired certificate, a server that does not speak TLS), or a record. Fatal.
    #[error("TLS: {0}")]
    Tls(String),
    /// A stream request, durable publish, fetch or ack was refused with a
    /// stream code (`not_found` 404 when no stream captures a durable
    /// publish's subject, `already_exists` 409, `disk_full` 507, ...).
    /// [`ClientError::stream_code`] names it. Recoverable: stream refusals
    /// answer one request and leave the connection open.
    #[error("stream error {code}{}: {message}", stream_code_name(*code))]
    Stream { code: u16, message: String },
    /// The server agreed protocol version `version`, which has no durable
    /// streams (they need version 2); nothing was sent. Recoverable: the
    /// rest of the connection works.
    #[error("the server speaks protocol version {version}; durable streams need version 2")]
    StreamsUnsupported { version: u16 },
    /// A stream or consumer name, a configuration or a batch breaks the
    /// protocol's rules (`flit_wire::stream`); nothing was sent. Recoverable.
    #[error("invalid stream request: {0}")]
    InvalidStreamRequest(WireError),
}

/// ` (not_found)` for a stream code this version knows, for messages.
fn stream_code_name(code: u16) -> String {
    flit_wire::stream::StreamCode::from_u16(code).map_or_else(String::new, |code| format!(" ({})", code.name()))
}

/// ` (permission_denied)` for a code this version knows, for messages.
fn code_name(code: u16) -> String {
    ErrorCode::from_u16(code).map_or_else(String::new, |code| format!(" ({})", code.name()))
}

/// The result of `close()` from the result of its final flush: a connection
/// that was already closed by this client closes fine.
pub(crate) fn close_result(flushed: Result<(), ClientError>) -> Result<(), ClientError> {
    match flushed {
        Err(ClientError::Closed) => Ok(()),
        other => other,
    }
}

impl ClientError {
    /// The protocol error code of a [`ClientError::Server`] or
    /// [`ClientError::Refused`], if this version knows it.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } | ClientError::Refused { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }

    /// The stream code of a [`ClientError::Stream`], if this version knows it.
    pub fn stream_code(&self) -> Option<flit_wire::stream::StreamCode> {
        match self {
            ClientError::Stream { code, .. } => flit_wire::stream::StreamCode::from_u16(*code),
            _ => None,
        }
    }

    /// Whether the connection is unusable after this error.
    pub fn is_fatal(&self) -> bool {
        if let ClientError::Server { code, .. } = self {
            // A refusal of one frame (permission_denied) leaves the connection open.
            return flit_wire::ErrorCode::from_u16(*code).is_none_or(|code| code.closes_connection());
        }
        matches!(
            self,
            ClientError::Io(_)
                | ClientError::Tls(_)
                | ClientError::ServerSpeaksTls
                | ClientError::Disconnected
                | ClientError::Protocol(_)
                | ClientError::UnsupportedVersion { .. }
                | ClientError::Closed
        )
    }
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        ClientError::Io(Arc::new(error))
    }
}
