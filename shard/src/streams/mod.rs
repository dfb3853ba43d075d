//! # Durable streams on the shards
//!
//! A stream captures the messages published on its subjects into a log on
//! disk (crate `flit-stream`), so they outlive the router and can be
//! replayed. This module is where streams meet the shards:
//! - [`definition`]: a stream's name, subjects, durability and limits, and
//!   its definition file;
//! - [`directory`]: which streams exist and which shard owns each (shared
//!   snapshot, replaced on change), and each shard's capture trie;
//! - [`owner`]: the logs a shard owns, their IO on the shard's ring, and the
//!   answers to publishers;
//! - [`startup`]: loading definitions from the data directory and the
//!   configuration file before the shards start.
//!
//! Data path of an acknowledged publish: the publisher's shard finds the
//! capturing stream (one trie walk, skipped while no stream exists) and
//! hands the message to the owner shard (at most one hop, the same mesh
//! queue deliveries use); the owner appends it and commits it with its
//! other appends (group commit: one write + fdatasync, linked, on its ring);
//! once the log acknowledges it the owner sends the PublishAck frame back to
//! the publisher's connection (here or over the mesh). Core subscribers get
//! the message as before, whether or not a stream captured it.
//!
//! Invariants: each stream is owned by exactly one shard, `owner_shard(name,
//! shards)`, so its state has one writer; subjects of different streams never
//! overlap; a publisher that asked for an acknowledgement gets exactly one
//! PublishAck or loses its connection.
//!
//! Shutdown: the owner asks every log for a final sync and drives its IO
//! until idle or the flush timeout (see `owner`).

pub mod admin;
pub mod consumers;
pub mod definition;
pub mod directory;
pub mod frames;
pub mod owner;
pub mod startup;

use crate::connection::ConnectionKey;

/// Where a publish's acknowledgement goes: a connection on a shard, and
/// the tag its Publish frame carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub connection: ConnectionKey,
    pub tag: u64,
}
#[cfg(test)]
mod owner_tests;
