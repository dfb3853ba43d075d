//! Loading streams before the shards start: every definition file under
//! `<data-dir>/streams/`, merged with the `[[stream]]` tables of the
//! configuration file (which win: an operator's file is the source of
//! truth for what it names, and is written back to the definition file).
//!
//! Failures name the cause and the fix in one line (the router prints it
//! and exits): an unwritable data directory, a definition file that does
//! not parse, two streams whose subjects overlap.

use std::path::Path;
use std::sync::Arc;

use super::definition::StreamDefinition;
use super::directory::{owner_shard, SharedStreams, StreamDirectory, StreamEntry, StreamStats};
use super::owner::OwnedStreams;

/// Why the streams could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StreamStartError {
    #[error("data directory {path}: {source}; create it or pass --data-dir to a writable directory")]
    DataDirectory { path: String, source: std::io::Error },
    #[error("stream definition: {0}; fix or remove the file (the stream's data is beside it)")]
    Definition(String),
    #[error("stream {first} and stream {second} capture overlapping subjects ({first_subject} / {second_subject}); change one")]
    Overlap { first: String, second: String, first_subject: String, second_subject: String },
    #[error("stream {name}: {reason}")]
    Configured { name: String, reason: String },
}

/// Reads the definitions on disk, applies the configured ones, and fills
/// `shared` with the directory the shards start from.
pub fn load_streams(
    data_directory: &Path,
    configured: &[StreamDefinition],
    shards: usize,
    shared: &SharedStreams,
) -> Result<(), StreamStartError> {
    let streams_directory = data_directory.join("streams");
    if configured.is_empty() && !streams_directory.exists() {
        // No stream yet: the data directory is created by the first one.
        return Ok(());
    }
    std::fs::create_dir_all(&streams_directory)
        .map_err(|source| StreamStartError::DataDirectory { path: data_directory.display().to_string(), source })?;
    let mut definitions: Vec<StreamDefinition> = Vec::new();
    let listing = std::fs::read_dir(&streams_directory)
        .map_err(|source| StreamStartError::DataDirectory { path: streams_directory.display().to_string(), source })?;
    let mut names: Vec<String> =
        listing.filter_map(Result::ok).filter_map(|entry| entry.file_name().to_str().map(str::to_string)).collect();
    names.sort();
    for name in names {
        let directory = streams_directory.join(&name);
        if !directory.join("definition").exists() {
            // A stream removed while it was being deleted, or a stray
            // directory: not a stream.
            continue;
        }
        let definition = StreamDefinition::load(&directory).map_err(|error| StreamStartError::Definition(error.0))?;
        definitions.push(definition);
    }
    for configured in configured {
        configured
            .validate()
            .map_err(|error| StreamStartError::Configured { name: configured.name.clone(), reason: error.0 })?;
        let directory = OwnedStreams::stream_directory(data_directory, &configured.name);
        match definitions.iter_mut().find(|existing| existing.name == configured.name) {
            Some(existing) if existing == configured => {}
            Some(existing) => {
                *existing = configured.clone();
                store(configured, &directory)?;
            }
            None => {
                store(configured, &directory)?;
                definitions.push(configured.clone());
            }
        }
    }
    for (index, first) in definitions.iter().enumerate() {
        for second in &definitions[index + 1..] {
            if let Some((first_subject, second_subject)) = first.overlaps(second) {
                return Err(StreamStartError::Overlap {
                    first: first.name.clone(),
                    second: second.name.clone(),
                    first_subject,
                    second_subject,
                });
            }
        }
    }
    let _ = shared.update(|_| {
        let entries = definitions
            .into_iter()
            .map(|definition| {
                Arc::new(StreamEntry {
                    id: shared.allocate_id(),
                    owner: owner_shard(&definition.name, shards),
                    definition,
                    stats: StreamStats::default(),
                })
            })
            .collect();
        Ok::<_, std::convert::Infallible>((StreamDirectory { entries }, ()))
    });
    Ok(())
}

fn store(definition: &StreamDefinition, directory: &Path) -> Result<(), StreamStartError> {
    definition
        .store(directory)
        .map_err(|source| StreamStartError::DataDirectory { path: directory.display().to_string(), source })
}
