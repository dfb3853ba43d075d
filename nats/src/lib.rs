//! flit-nats: the NATS client protocol as a codec, so that NATS clients in
//! any language can talk to flit's shards (issue 12).
//!
//! This crate holds bytes <-> ops only, like `flit-wire` does for flit's own
//! protocol: no sockets, no runtime, no shard state. The shard's NATS front
//! end owns a connection's receive buffer, asks [`Parser`] for whole ops,
//! applies them to the same routing core the native protocol feeds, and
//! writes its answers with the encoders here.
//!
//! # Layout
//! - [`parser`]: client -> server ops (`CONNECT`, `PUB`, `HPUB`, `SUB`,
//!   `UNSUB`, `PING`, `PONG`); streaming, zero-copy, limited.
//! - [`encode`]: server -> client ops (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`,
//!   `+OK`, `-ERR`) and [`ClientOp::encode`] for clients and tests.
//! - [`connect`]: the CONNECT and INFO JSON documents.
//! - [`headers`]: the `NATS/1.0` header block, status lines included.
//! - [`subject`]: NATS's subject rules.
//! - [`error`]: [`ProtocolError`], with the exact `-ERR` line nats-server
//!   sends and whether the connection closes.
//!
//! # Invariants
//! - Parsing never panics and never allocates except for CONNECT; partial
//!   input is "need more", never an error; every limit (control line,
//!   argument count, payload size, header entries) is checked before the
//!   bytes it bounds are waited for.
//! - What an encoder writes, the parser reads back as the same op (property
//!   tested, and the oracle of the fuzz target in `nats/fuzz`).
//!
//! # NATS subjects against flit's
//! NATS (nats-server `IsValidSubject`, here [`subject`]) and flit
//! (`flit_wire::subject`) agree on the shape: `.`-separated non-empty
//! tokens, `*` one token, `>` the rest and only last, no wildcard in a
//! publish subject. They differ here:
//!
//! | | NATS | flit |
//! |---|---|---|
//! | bytes refused in a token | space, tab, CR, LF, form feed | every byte <= 0x20 (all controls and space) and DEL |
//! | `*` or `>` inside a longer token (`a*`, `b>c`) | an ordinary character, literal | refused |
//! | length | bounded only by the control line (4096) | 512 bytes (`SUBJECT_BYTES_MAX`) |
//! | tokens | unbounded (optional `max_sub_tokens`) | 32 (`SUBJECT_TOKENS_MAX`) |
//! | queue group | any token | 1-128 bytes, no byte <= 0x20 or DEL |
//!
//! So flit is stricter everywhere: every subject flit accepts NATS accepts,
//! and no pattern matches differently (a wildcard is always a whole token in
//! both). A NATS client can send subjects flit refuses (`a*`, a NUL or
//! vertical tab inside a token, 600 bytes, 40 tokens). The issue asks both
//! listeners to enforce one rule; flit's rule is the one to enforce, because
//! it is already on the wire and in stored streams, and it is a subset: the
//! NATS front end checks with `flit_wire::subject` and answers a refused SUB
//! with `'Invalid Subject'` and a refused PUB with `'Invalid Publish
//! Subject'` (both keep the connection, as nats-server does). This crate's
//! [`subject`] functions are NATS's rule, for tests and for telling a client
//! "NATS would accept this, flit does not".
//!
//! # What the shard's NATS front end still has to do
//! This crate checks syntax and limits only. Per connection the front end
//! sends [`encode_info`] first; expects CONNECT first when authentication is
//! required (anything else: [`ProtocolError::AuthorizationViolation`]); runs
//! [`Connect::check`]; answers `+OK` after each op when `verbose`; validates
//! subjects with flit's rule (see above) and queue groups with
//! `flit_wire::subject::validate_queue_group`; parses an HPUB's header block
//! with [`parse_headers`] before routing it; counts an UNSUB's `max`; honours
//! `echo: false`; sends a [`NO_RESPONDERS_BLOCK`] HMSG to a requester that
//! asked for `no_responders`; and on every error writes its `err_line` and
//! closes when `closes_connection` says so.

#![forbid(unsafe_code)]

pub mod connect;
pub mod encode;
pub mod error;
pub mod headers;
pub mod parser;
pub mod subject;

pub use connect::{Connect, ServerInfo};
pub use encode::{encode_err, encode_hmsg, encode_info, encode_msg, encode_ok, encode_ping, encode_pong};
pub use error::ProtocolError;
pub use headers::{encode_headers, parse_headers, HeaderBlock, HeaderError, NO_RESPONDERS_BLOCK, STATUS_NO_RESPONDERS};
pub use parser::{ClientOp, Limits, Parser, MAX_CONTROL_LINE_DEFAULT, MAX_PAYLOAD_DEFAULT};
