//! Adding, removing and describing streams: what the StreamRequest frames
//! do, on whichever shard received them.
//!
//! Adding writes the definition file (fsynced) and publishes a new directory
//! generation; the owner shard opens the log when it sees that generation
//! (at the latest before it handles an append for the new stream), and every
//! shard starts capturing within one pass. Removing publishes a generation
//! without the stream; its owner closes the log and deletes its files.
//! Both take the directory's lock and do file IO on the calling shard: an
//! operator's command, never on the message path.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::definition::StreamDefinition;
use super::directory::{owner_shard, SharedStreams, StreamDirectory, StreamEntry, StreamStats};
use super::owner::{codes, OwnedStreams};

/// A refusal: a stream code and a message for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRefusal {
    pub code: u16,
    pub message: String,
}

/// Stream reply codes beyond the publish ones.
pub const BAD_REQUEST: u16 = 400;
pub const FORBIDDEN: u16 = 403;
pub const CONFLICT: u16 = 409;
pub const STORAGE_ERROR: u16 = 500;

fn refuse(code: u16, message: impl Into<String>) -> AdminRefusal {
    AdminRefusal { code, message: message.into() }
}

/// A stream as `stream info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSnapshot {
    pub definition: StreamDefinition,
    pub owner: usize,
    pub messages: u64,
    pub bytes: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
    pub consumers: u32,
    /// Empty when healthy.
    pub status: String,
}

pub fn snapshot(entry: &StreamEntry) -> StreamSnapshot {
    let stats = &entry.stats;
    StreamSnapshot {
        definition: entry.definition.clone(),
        owner: entry.owner,
        messages: stats.messages.load(Ordering::Relaxed),
        bytes: stats.bytes.load(Ordering::Relaxed),
        first_sequence: stats.first_sequence.load(Ordering::Relaxed),
        last_sequence: stats.last_sequence.load(Ordering::Relaxed),
        consumers: stats.consumers.load(Ordering::Relaxed) as u32,
        status: stats.status(),
    }
}

/// Adds `definition`. Adding an identical definition again is fine (the
/// answer is the stream as it is); a different one under the same name is
/// a conflict (remove it first).
pub fn add(
    shared: &SharedStreams,
    data_directory: &Path,
    shards: usize,
    definition: StreamDefinition,
) -> Result<StreamSnapshot, AdminRefusal> {
    definition.validate().map_err(|error| refuse(BAD_REQUEST, error.0))?;
    // The closure's error is the answer when nothing changes: the existing
    // identical stream (Ok) or a refusal (Err).
    type Unchanged = Box<Result<StreamSnapshot, AdminRefusal>>;
    shared
        .update(|directory: &StreamDirectory| -> Result<(StreamDirectory, StreamSnapshot), Unchanged> {
            if let Some(existing) = directory.find(&definition.name) {
                if existing.definition == definition {
                    return Err(Box::new(Ok(snapshot(existing))));
                }
                let message = format!("stream {} exists with another definition; remove it first", definition.name);
                return Err(Box::new(Err(refuse(CONFLICT, message))));
            }
            if let Some((other, mine, theirs)) = directory.overlapping(&definition) {
                let message = format!("subject {mine} overlaps {theirs} of stream {other}");
                return Err(Box::new(Err(refuse(CONFLICT, message))));
            }
            let stream_directory = OwnedStreams::stream_directory(data_directory, &definition.name);
            if let Err(error) = definition.store(&stream_directory) {
                let message = format!("cannot write {}: {error}", stream_directory.display());
                return Err(Box::new(Err(refuse(STORAGE_ERROR, message))));
            }
            let entry = Arc::new(StreamEntry {
                id: shared.allocate_id(),
                owner: owner_shard(&definition.name, shards),
                definition: definition.clone(),
                stats: StreamStats::default(),
            });
            let answer = snapshot(&entry);
            Ok((directory.with_added(entry), answer))
        })
        .or_else(|unchanged| *unchanged)
}

/// Removes the stream `name`: its definition file goes now (so a restart
/// does not bring it back), its log when the owner closes it.
pub fn remove(shared: &SharedStreams, data_directory: &Path, name: &str) -> Result<StreamSnapshot, AdminRefusal> {
    shared.update(|directory: &StreamDirectory| {
        let entry = directory.find(name).ok_or_else(|| refuse(codes::NOT_FOUND, format!("no stream {name}")))?;
        let answer = snapshot(entry);
        let stream_directory = OwnedStreams::stream_directory(data_directory, name);
        let definition_file = stream_directory.join("definition");
        match std::fs::remove_file(&definition_file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(refuse(STORAGE_ERROR, format!("cannot remove {}: {error}", definition_file.display())))
            }
        }
        let _ = std::fs::File::open(&stream_directory).and_then(|handle| handle.sync_all());
        Ok((directory.without(name), answer))
    })
}

pub fn info(shared: &SharedStreams, name: &str) -> Result<StreamSnapshot, AdminRefusal> {
    let directory = shared.snapshot();
    directory
        .find(name)
        .map(|entry| snapshot(entry))
        .ok_or_else(|| refuse(codes::NOT_FOUND, format!("no stream {name}")))
}

pub fn list(shared: &SharedStreams) -> Vec<StreamSnapshot> {
    let directory = shared.snapshot();
    let mut streams: Vec<_> = directory.entries.iter().map(|entry| snapshot(entry)).collect();
    streams.sort_by(|first, second| first.definition.name.cmp(&second.definition.name));
    streams
}
