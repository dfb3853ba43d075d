//! Which streams exist, which shard owns each, and which stream captures a
//! subject.
//!
//! The directory is a snapshot shared by every shard (`SharedState::streams`),
//! replaced whole when a stream is added or removed (rare: an operator's
//! command); each shard notices the new generation once per pass, like
//! identities on reload, and builds its own capture trie from it, so the
//! message path never takes a lock. Each entry carries its stream's live
//! numbers (`StreamStats`), written by the owner shard only and read by any
//! shard answering `stream info` and by the metrics endpoint.
//!
//! Invariants: no two streams' subjects overlap (checked when one is added),
//! so a subject is captured by at most one stream; an entry's id is never
//! reused; the owner of a stream is a function of its name and the shard
//! count (`owner_shard`), so its log stays on one shard across restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::definition::StreamDefinition;
use crate::trie::SubjectTrie;

/// A stream's live numbers: single writer (the owner shard), any readers.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub first_sequence: AtomicU64,
    pub last_sequence: AtomicU64,
    pub appends: AtomicU64,
    pub refused: AtomicU64,
    pub commits: AtomicU64,
    pub consumers: AtomicU64,
    /// From the submission of a commit's fdatasync (linked after its write,
    /// so write included) to its completion, on the owner's ring.
    pub sync_latency: crate::metrics::LatencyHistogram,
    /// Empty when healthy; else why the stream refuses ("corrupt: ...",
    /// "storage failed: ...", "disk full").
    status: Mutex<String>,
    /// Each consumer's numbers, replaced by the owner every few ms.
    consumers_detail: Mutex<Vec<super::consumers::ConsumerStat>>,
}

impl StreamStats {
    pub fn status(&self) -> String {
        self.status.lock().map(|status| status.clone()).unwrap_or_default()
    }

    pub fn set_status(&self, text: &str) {
        if let Ok(mut status) = self.status.lock() {
            if *status != text {
                *status = text.to_string();
            }
        }
    }

    pub fn consumer_stats(&self) -> Vec<super::consumers::ConsumerStat> {
        self.consumers_detail.lock().map(|detail| detail.clone()).unwrap_or_default()
    }

    pub fn set_consumer_stats(&self, stats: Vec<super::consumers::ConsumerStat>) {
        if let Ok(mut detail) = self.consumers_detail.lock() {
            *detail = stats;
        }
    }

    pub fn set_consumers(&self, count: usize) {
        self.consumers.store(count as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct StreamEntry {
    pub id: u64,
    pub definition: StreamDefinition,
    pub owner: usize,
    pub stats: StreamStats,
}

/// Every stream, as of one generation.
#[derive(Debug, Default)]
pub struct StreamDirectory {
    pub entries: Vec<Arc<StreamEntry>>,
}

impl StreamDirectory {
    pub fn find(&self, name: &str) -> Option<&Arc<StreamEntry>> {
        self.entries.iter().find(|entry| entry.definition.name == name)
    }

    /// A stream whose subjects overlap `definition`'s, other than itself.
    pub fn overlapping(&self, definition: &StreamDefinition) -> Option<(String, String, String)> {
        self.entries.iter().filter(|entry| entry.definition.name != definition.name).find_map(|entry| {
            definition.overlaps(&entry.definition).map(|(mine, theirs)| (entry.definition.name.clone(), mine, theirs))
        })
    }

    pub fn with_added(&self, entry: Arc<StreamEntry>) -> StreamDirectory {
        let mut entries: Vec<_> =
            self.entries.iter().filter(|e| e.definition.name != entry.definition.name).cloned().collect();
        entries.push(entry);
        StreamDirectory { entries }
    }

    pub fn without(&self, name: &str) -> StreamDirectory {
        StreamDirectory {
            entries: self.entries.iter().filter(|entry| entry.definition.name != name).cloned().collect(),
        }
    }
}

/// The shared, replaceable directory.
#[derive(Debug, Default)]
pub struct SharedStreams {
    directory: Mutex<Arc<StreamDirectory>>,
    generation: AtomicU64,
    next_id: AtomicU64,
}

impl SharedStreams {
    pub fn snapshot(&self) -> Arc<StreamDirectory> {
        self.directory.lock().map(|directory| directory.clone()).unwrap_or_default()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A fresh id, never used before in this process.
    pub fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Replaces the directory by what `change` makes of it (under the lock,
    /// so two changes cannot lose one another); `change` may refuse.
    pub fn update<T, E>(
        &self,
        change: impl FnOnce(&StreamDirectory) -> Result<(StreamDirectory, T), E>,
    ) -> Result<T, E> {
        let mut directory = self.directory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (next, result) = change(&directory)?;
        *directory = Arc::new(next);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(result)
    }
}

/// The shard that owns the stream named `name` among `shards`: FNV-1a of the
/// name, so it is the same on every start with the same shard count.
pub fn owner_shard(name: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

/// One shard's view: the entries of one generation and a trie from subject
/// pattern to entry index.
#[derive(Debug, Default)]
pub struct StreamCapture {
    pub generation: u64,
    entries: Vec<Arc<StreamEntry>>,
    trie: SubjectTrie<u32>,
    matched: Vec<u32>,
}

impl StreamCapture {
    pub fn from_directory(directory: &StreamDirectory, generation: u64) -> StreamCapture {
        let mut trie = SubjectTrie::default();
        for (index, entry) in directory.entries.iter().enumerate() {
            for subject in &entry.definition.subjects {
                trie.insert(subject.as_bytes(), index as u32);
            }
        }
        StreamCapture { generation, entries: directory.entries.clone(), trie, matched: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stream that captures `subject`, if any (at most one: no overlap).
    pub fn capture(&mut self, subject: &[u8]) -> Option<Arc<StreamEntry>> {
        if self.entries.is_empty() {
            return None;
        }
        self.matched.clear();
        let matched = &mut self.matched;
        self.trie.visit_matches(subject, &mut |index: &mut u32| matched.push(*index));
        let index = *self.matched.first()?;
        self.entries.get(index as usize).cloned()
    }

    pub fn entries(&self) -> &[Arc<StreamEntry>] {
        &self.entries
    }
}
