//! # flit-stream: durable streams, without sockets and without a ring
//!
//! A stream captures the messages published on some subject patterns into an
//! append-only log, so they outlive the router and can be replayed by
//! consumers. This crate holds everything about a stream that does not need
//! a socket: the record format, segment files, group commit, recovery after
//! a crash, retention, and the consumer state machines. The shard that owns
//! a stream drives it: it submits the log's writes and fsyncs on its own
//! io_uring ring and hands the completions back (`log`'s requests and
//! completions), so the crate itself never blocks on a write.
//!
//! Every file operation goes through the [`disk::Disk`] seam. Production uses
//! [`disk::FileDisk`] (plain files) for what is not on the hot path: startup
//! recovery, reads for replay, segment creation and deletion. Tests use
//! [`fault_disk::FaultDisk`], an in-memory disk that keeps unsynced writes
//! apart from durable ones, so a simulated crash can drop or tear them, and
//! that returns ENOSPC and EIO on demand.
//!
//! ## Layout
//! - [`record`]: one record's bytes (length, CRC32C over everything, sequence,
//!   timestamp, subject, headers, payload); encode, check, decode.
//! - [`disk`]: the seam; [`fault_disk`]: the fault-injecting test disk.
//! - [`segment`]: one segment file and its sparse sequence and time indexes.
//! - [`log`]: a stream's log: appends, group commit, acknowledgements,
//!   storage errors, reads; [`recovery`]: scanning segments at startup;
//!   [`retention`]: limits and what happens when one is hit.
//! - [`consumer`]: consumer positions, acks, redelivery, dead letters;
//!   [`dedup`]: the per-stream message-id window.
//!
//! ## Invariants
//! - Sequences in a stream start at 1 and are contiguous; a record that was
//!   never written (a failed write) gives its sequence back.
//! - Under the `always` policy, an append is acknowledged only after an
//!   fdatasync that covers it completed successfully.
//! - A failed fsync is never retried and trusted: the log fails closed.
#![forbid(unsafe_code)]

pub mod consumer;
pub mod dedup;
pub mod disk;
pub mod fault_disk;
pub mod log;
pub mod record;
pub mod recovery;
pub mod retention;
pub mod segment;
