//! Stream codes: the outcome a StreamReply or a PublishAck carries.
//!
//! They are their own numbering, apart from [`crate::ErrorCode`]: an Error
//! frame is a protocol failure that (nearly always) closes the connection,
//! while a stream code answers one request and the connection stays open.
//! The numbers follow HTTP's meaning where one fits, so a person reading a
//! log can guess them. Codes are protocol: never renumber one, only add.
//! docs/PROTOCOL.md lists them all; a test keeps the list and
//! [`StreamCode::ALL`] in step.

use std::fmt;

/// The outcome of one stream request, publish ack or fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamCode {
    /// Done.
    Ok = 0,
    /// The request is well formed but the server will not do it: a config it
    /// does not accept (limits, overlapping subjects, a dead-letter subject
    /// without explicit acks), a batch above its maximum, a push consumer
    /// fetched from.
    BadRequest = 400,
    /// The identity may not do this (stream administration is its own
    /// permission).
    PermissionDenied = 403,
    /// No such stream or consumer, or (PublishAck) no stream captures the
    /// subject.
    NotFound = 404,
    /// A Fetch's wait ran out with fewer messages than its batch.
    FetchExpired = 408,
    /// A stream or consumer of that name exists with a different config.
    AlreadyExists = 409,
    /// The message is larger than the stream's `message_bytes_max`.
    MessageTooLarge = 413,
    /// A limit with discard `New` is reached, or too many fetches wait.
    LimitReached = 429,
    /// The stream does not serve: corrupt, storage failed, or not open yet.
    /// Its StreamInfo `status` says why.
    Unavailable = 503,
    /// The disk is full: the stream refuses publishes until space returns.
    DiskFull = 507,
}

impl StreamCode {
    /// Every code, in numeric order.
    pub const ALL: [StreamCode; 10] = [
        StreamCode::Ok,
        StreamCode::BadRequest,
        StreamCode::PermissionDenied,
        StreamCode::NotFound,
        StreamCode::FetchExpired,
        StreamCode::AlreadyExists,
        StreamCode::MessageTooLarge,
        StreamCode::LimitReached,
        StreamCode::Unavailable,
        StreamCode::DiskFull,
    ];

    /// The number on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a number received on the wire, if this version knows it.
    /// A receiver keeps numbers it does not know and treats them as a
    /// refusal.
    pub fn from_u16(value: u16) -> Option<StreamCode> {
        StreamCode::ALL.iter().copied().find(|code| code.as_u16() == value)
    }

    /// A short stable name, as used in docs, logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            StreamCode::Ok => "ok",
            StreamCode::BadRequest => "bad_request",
            StreamCode::PermissionDenied => "permission_denied",
            StreamCode::NotFound => "not_found",
            StreamCode::FetchExpired => "fetch_expired",
            StreamCode::AlreadyExists => "already_exists",
            StreamCode::MessageTooLarge => "message_too_large",
            StreamCode::LimitReached => "limit_reached",
            StreamCode::Unavailable => "unavailable",
            StreamCode::DiskFull => "disk_full",
        }
    }

    /// Whether the same request may succeed later without a change: the
    /// stream may come back (503), space may return (507), a limit may clear
    /// (429), messages may arrive (408).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            StreamCode::FetchExpired | StreamCode::LimitReached | StreamCode::Unavailable | StreamCode::DiskFull
        )
    }
}

impl fmt::Display for StreamCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.name(), self.as_u16())
    }
}
