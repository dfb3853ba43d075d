//! Error codes carried in Error frames, and the typed error of this crate.
//!
//! Codes are part of the protocol: never renumber one, only add. They are
//! grouped by hundreds: 1xx the frame itself, 2xx a request's content, 3xx
//! limits and server state, 4xx reserved for authentication. docs/PROTOCOL.md
//! lists them all; a test there keeps the list and this enum in step.

use std::fmt;

/// A numeric error code as sent in an Error frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The fixed header is inconsistent (reserved bits set, meta longer than body).
    MalformedFrame = 100,
    /// The length prefix is above the negotiated maximum. Sent before reading the body.
    FrameTooLarge = 101,
    /// The structured part failed flatbuffers verification.
    InvalidFlatbuffer = 102,
    /// The op byte names no operation this version knows.
    UnknownOp = 103,
    /// The peer closed its side in the middle of a frame.
    TruncatedFrame = 104,
    /// A known op at the wrong moment (anything before Hello, a second Hello,
    /// a server-only op sent by a client).
    UnexpectedOp = 105,
    /// No protocol version in common.
    UnsupportedVersion = 106,
    /// A subject or pattern breaks the subject rules.
    InvalidSubject = 200,
    /// A queue group name is empty, too long or holds whitespace.
    InvalidQueueGroup = 201,
    /// The payload is larger than the negotiated `payload_bytes_max`.
    PayloadTooLarge = 202,
    /// A subscribe reused a subscription id still active on this connection.
    DuplicateSubscriptionId = 203,
    /// A header block is malformed.
    InvalidHeaders = 204,
    /// A stream or consumer name is empty, longer than 64 bytes, or holds a
    /// byte outside `[A-Za-z0-9_-]` (version 2).
    InvalidName = 205,
    /// A field of a stream frame holds a value this version does not accept:
    /// an unknown enum value, a field the action requires is missing, a list
    /// above its bound, a zero where a count or sequence must be positive, or
    /// fields that contradict each other (version 2). On a route: a route
    /// frame's field outside its limits (docs/PROTOCOL.md, "Route limits").
    InvalidField = 206,
    /// The connection's outbound queue passed `pending_bytes_max`.
    SlowConsumer = 300,
    /// The connection holds `subscriptions_max` subscriptions already, or the
    /// new one would pass a subscription-bytes limit (per connection or per identity).
    TooManySubscriptions = 301,
    /// The server holds its maximum number of connections.
    TooManyConnections = 302,
    /// The server is shutting down.
    ShuttingDown = 303,
    /// No Hello arrived within the server's handshake timeout.
    HandshakeTimeout = 304,
    /// Nothing arrived for the server's idle timeout, not even the Pong to its Ping.
    IdleTimeout = 305,
    /// A frame was started and not finished within the server's frame timeout.
    StalledFrame = 306,
    /// A publish over the connection's or the identity's rate limit was
    /// dropped; the Error carries a retry-after hint. The connection stays open.
    RateLimited = 307,
    /// No token, a token that matches no identity, or credentials revoked by a reload.
    AuthenticationFailed = 400,
    /// The identity may not publish or subscribe to that subject. The
    /// connection stays open.
    PermissionDenied = 401,
}

impl ErrorCode {
    /// Every code, in numeric order (used by docs checks and tests).
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::InvalidFlatbuffer,
        ErrorCode::UnknownOp,
        ErrorCode::TruncatedFrame,
        ErrorCode::UnexpectedOp,
        ErrorCode::UnsupportedVersion,
        ErrorCode::InvalidSubject,
        ErrorCode::InvalidQueueGroup,
        ErrorCode::PayloadTooLarge,
        ErrorCode::DuplicateSubscriptionId,
        ErrorCode::InvalidHeaders,
        ErrorCode::InvalidName,
        ErrorCode::InvalidField,
        ErrorCode::SlowConsumer,
        ErrorCode::TooManySubscriptions,
        ErrorCode::TooManyConnections,
        ErrorCode::ShuttingDown,
        ErrorCode::HandshakeTimeout,
        ErrorCode::IdleTimeout,
        ErrorCode::StalledFrame,
        ErrorCode::RateLimited,
        ErrorCode::AuthenticationFailed,
        ErrorCode::PermissionDenied,
    ];

    /// The number on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a number received on the wire, if this version knows it.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|code| code.as_u16() == value)
    }

    /// Whether the server closes the connection after sending this code.
    /// Refusals of one frame (a publish or subscribe the identity may not
    /// make) leave the connection open; everything else ends it.
    pub fn closes_connection(self) -> bool {
        !matches!(self, ErrorCode::PermissionDenied | ErrorCode::RateLimited)
    }

    /// A short stable name, as used in docs, logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::InvalidFlatbuffer => "invalid_flatbuffer",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::TruncatedFrame => "truncated_frame",
            ErrorCode::UnexpectedOp => "unexpected_op",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::InvalidSubject => "invalid_subject",
            ErrorCode::InvalidQueueGroup => "invalid_queue_group",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::DuplicateSubscriptionId => "duplicate_subscription_id",
            ErrorCode::InvalidHeaders => "invalid_headers",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::HandshakeTimeout => "handshake_timeout",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::StalledFrame => "stalled_frame",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AuthenticationFailed => "authentication_failed",
            ErrorCode::PermissionDenied => "permission_denied",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.name(), self.as_u16())
    }
}

/// Why bytes could not be turned into a frame, or a frame's content is invalid.
/// Every variant maps to exactly one [`ErrorCode`]; none is recoverable on the
/// connection that produced it (the server answers with an Error frame and closes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("malformed frame header: {0}")]
    MalformedFrame(&'static str),
    #[error("frame of {claimed_bytes} bytes is above the limit of {limit_bytes} bytes")]
    FrameTooLarge { claimed_bytes: u64, limit_bytes: u64 },
    #[error("invalid flatbuffer in {table}: {reason}")]
    InvalidFlatbuffer { table: &'static str, reason: String },
    #[error("unknown op {0}")]
    UnknownOp(u8),
    #[error("invalid subject: {0}")]
    InvalidSubject(&'static str),
    #[error("invalid queue group: {0}")]
    InvalidQueueGroup(&'static str),
    #[error("payload of {payload_bytes} bytes is above the limit of {limit_bytes} bytes")]
    PayloadTooLarge { payload_bytes: u64, limit_bytes: u64 },
    #[error("invalid headers: {0}")]
    InvalidHeaders(&'static str),
    /// A stream or consumer name breaks the naming rules.
    #[error("invalid {field}: {reason}")]
    InvalidName { field: &'static str, reason: &'static str },
    /// A field of a stream frame or a route frame holds a value this version
    /// does not accept.
    #[error("invalid {table}.{field}: {reason}")]
    InvalidField { table: &'static str, field: &'static str, reason: &'static str },
    /// An enum field holds a value this version does not know. Refused rather
    /// than read as a default: a newer peer meant something this one cannot do.
    #[error("{table}.{field} holds {value}, a value this version does not know")]
    UnknownEnumValue { table: &'static str, field: &'static str, value: u8 },
}

impl WireError {
    /// The code an Error frame carries for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::MalformedFrame(_) => ErrorCode::MalformedFrame,
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::InvalidFlatbuffer { .. } => ErrorCode::InvalidFlatbuffer,
            WireError::UnknownOp(_) => ErrorCode::UnknownOp,
            WireError::InvalidSubject(_) => ErrorCode::InvalidSubject,
            WireError::InvalidQueueGroup(_) => ErrorCode::InvalidQueueGroup,
            WireError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            WireError::InvalidHeaders(_) => ErrorCode::InvalidHeaders,
            WireError::InvalidName { .. } => ErrorCode::InvalidName,
            WireError::InvalidField { .. } | WireError::UnknownEnumValue { .. } => ErrorCode::InvalidField,
        }
    }
}
