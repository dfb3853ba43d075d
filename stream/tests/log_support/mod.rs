//! Helpers shared by the log's tests (`log_*`, `fault_*`, `recovery*`,
//! `retention*`): a small config, a message model, and a ring-like harness
//! that submits, performs and reaps the log's IO in random order over a
//! `FaultDisk`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flit_stream::disk::Disk;
use flit_stream::fault_disk::{FaultDisk, SeededRandom};
use flit_stream::log::{
    drive_blocking, AckEvent, AppendError, CompletionOrder, Durability, IoOperation, IoOutcome, IoRequest, IoTag,
    LogConfig, LogError, StreamLog,
};
use flit_stream::record::StoredMessage;
use flit_stream::recovery::RecoveryReport;

pub const DIRECTORY: &str = "/data/streams/orders";
pub const SECOND_NS: u64 = 1_000_000_000;
/// A wall clock far from zero, so age arithmetic is realistic.
pub const START_NS: u64 = 1_750_000_000 * SECOND_NS;

pub fn directory() -> PathBuf {
    PathBuf::from(DIRECTORY)
}

/// Small segments and batches, so a few messages exercise rolls.
pub fn small_config(durability: Durability) -> LogConfig {
    let mut config = LogConfig::new(DIRECTORY);
    config.segment_bytes = 4096;
    config.batch_bytes_max = 1024;
    config.pending_bytes_max = 64 * 1024;
    config.durability = durability;
    config.disk_full_retry = Duration::from_secs(1);
    config
}

pub fn open(disk: &mut dyn Disk, config: LogConfig) -> (StreamLog, RecoveryReport) {
    StreamLog::open(disk, config).expect("the log opens")
}

pub fn subject_for(sequence: u64) -> Vec<u8> {
    format!("orders.{}", sequence % 7).into_bytes()
}

/// A payload whose content names the message and varies in length.
pub fn payload_for(label: u64, length: usize) -> Vec<u8> {
    let mut payload = format!("m{label}:").into_bytes();
    payload.resize(length.max(payload.len()), b'a' + (label % 26) as u8);
    payload
}

pub fn events(log: &mut StreamLog) -> Vec<AckEvent> {
    std::iter::from_fn(|| log.next_event()).collect()
}

pub fn acked_ranges(events: &[AckEvent]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|event| match event {
            AckEvent::Acked { first_sequence, last_sequence } => Some((*first_sequence, *last_sequence)),
            AckEvent::Refused { .. } => None,
        })
        .collect()
}

pub fn drive(log: &mut StreamLog, disk: &mut dyn Disk) -> usize {
    drive_blocking(log, disk, CompletionOrder::Submission)
}

/// Every acknowledged message, read in batches of `batch` messages.
pub fn read_all(log: &StreamLog, disk: &mut dyn Disk, batch: usize) -> Vec<StoredMessage> {
    let info = log.info();
    let mut all = Vec::new();
    let mut next = info.first_sequence;
    while next <= info.last_sequence {
        let part = log.read_batch(disk, next, batch, usize::MAX).expect("reads");
        assert!(!part.is_empty(), "no progress reading from {next}");
        next = part.last().expect("non-empty").sequence + 1;
        all.extend(part);
    }
    all
}

/// Asserts the messages are contiguous from the log's first sequence.
pub fn assert_contiguous(log: &StreamLog, messages: &[StoredMessage], context: &str) {
    let info = log.info();
    for (index, message) in messages.iter().enumerate() {
        assert_eq!(message.sequence, info.first_sequence + index as u64, "{context}: gap or duplicate");
    }
    assert_eq!(messages.len() as u64, info.messages, "{context}: count");
}

/// A message's subject and payload.
pub type Content = (Vec<u8>, Vec<u8>);

/// What was appended and acknowledged, for checking after a crash.
#[derive(Default, Debug)]
pub struct Model {
    /// Every content ever given each sequence (refusals give sequences back).
    pub given: HashMap<u64, Vec<Content>>,
    pub acked: BTreeMap<u64, Content>,
    pub refused: Vec<(u64, u64, AppendError)>,
    pub events_after_failure: Vec<AckEvent>,
    pub failed: bool,
    pub label: u64,
}

impl Model {
    pub fn note_append(&mut self, sequence: u64, subject: Vec<u8>, payload: Vec<u8>) {
        self.given.entry(sequence).or_default().push((subject, payload));
    }

    pub fn note_events(&mut self, events: Vec<AckEvent>) {
        for event in events {
            match &event {
                AckEvent::Acked { first_sequence, last_sequence } => {
                    if self.failed {
                        self.events_after_failure.push(event.clone());
                    }
                    for sequence in *first_sequence..=*last_sequence {
                        let content = self.given[&sequence].last().expect("appended").clone();
                        assert!(self.acked.insert(sequence, content).is_none(), "sequence {sequence} acked twice");
                    }
                }
                AckEvent::Refused { first_sequence, last_sequence, error } => {
                    if matches!(error, AppendError::StorageFailed { .. }) {
                        self.failed = true;
                    }
                    self.refused.push((*first_sequence, *last_sequence, error.clone()));
                }
            }
        }
    }

    /// After a reopen: every acknowledged message exactly once, in order,
    /// contiguous; anything else present was appended with that sequence.
    pub fn check(&self, log: &StreamLog, disk: &mut dyn Disk, context: &str) {
        let present = read_all(log, disk, 17);
        assert_contiguous(log, &present, context);
        let by_sequence: HashMap<u64, &StoredMessage> = present.iter().map(|m| (m.sequence, m)).collect();
        for (sequence, (subject, payload)) in &self.acked {
            if *sequence < log.info().first_sequence {
                continue;
            }
            let message = by_sequence.get(sequence).unwrap_or_else(|| panic!("{context}: acked {sequence} lost"));
            assert_eq!(&message.subject[..], &subject[..], "{context}: acked {sequence} subject");
            assert_eq!(&message.payload[..], &payload[..], "{context}: acked {sequence} payload");
        }
        for message in &present {
            let given = self.given.get(&message.sequence);
            let known = given.is_some_and(|contents| {
                contents
                    .iter()
                    .any(|(subject, payload)| subject[..] == message.subject[..] && payload[..] == message.payload[..])
            });
            assert!(known, "{context}: message {} was never appended", message.sequence);
        }
    }
}

/// A ring-like driver: requests are submitted, performed in submission
/// order (linked syncs cancelled after a short write), and reaped in random
/// order, each step chosen by the test.
pub struct Ring {
    pub submitted: VecDeque<IoRequest>,
    pub performed: Vec<(IoTag, IoOutcome)>,
    previous_write_whole: bool,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring { submitted: VecDeque::new(), performed: Vec::new(), previous_write_whole: true }
    }
}

impl Ring {
    pub fn submit(&mut self, log: &mut StreamLog) {
        while let Some(request) = log.next_io() {
            self.submitted.push_back(request);
        }
    }

    pub fn perform_one(&mut self, disk: &mut dyn Disk) -> bool {
        let Some(request) = self.submitted.pop_front() else { return false };
        let outcome = match request.operation {
            IoOperation::Write { file, offset, data } => match disk.write_at(file, offset, &data) {
                Ok(bytes) => {
                    self.previous_write_whole = bytes == data.len();
                    IoOutcome::Written { bytes }
                }
                Err(error) => {
                    self.previous_write_whole = false;
                    IoOutcome::Failed(error)
                }
            },
            IoOperation::SyncData { linked: true, .. } if !self.previous_write_whole => IoOutcome::Cancelled,
            IoOperation::SyncData { file, .. } => match disk.sync_data(file) {
                Ok(()) => IoOutcome::Synced,
                Err(error) => IoOutcome::Failed(error),
            },
        };
        self.performed.push((request.tag, outcome));
        true
    }

    pub fn reap_one(&mut self, log: &mut StreamLog, random: &mut SeededRandom) -> bool {
        if self.performed.is_empty() {
            return false;
        }
        let index = random.below(self.performed.len() as u64) as usize;
        let (tag, outcome) = self.performed.swap_remove(index);
        log.complete(tag, outcome);
        true
    }

    /// Submits, performs and reaps until the log hands out nothing more.
    pub fn settle(&mut self, log: &mut StreamLog, disk: &mut dyn Disk, random: &mut SeededRandom) {
        for _ in 0..10_000 {
            self.submit(log);
            if self.submitted.is_empty() && self.performed.is_empty() {
                return;
            }
            while self.perform_one(disk) {}
            while self.reap_one(log, random) {}
        }
        panic!("the log did not settle");
    }
}

/// How many seeds a property runs: `FLIT_STREAM_SEEDS` or the default.
pub fn seed_count(default: u64) -> u64 {
    std::env::var("FLIT_STREAM_SEEDS").ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// The first seed: `FLIT_STREAM_SEED_START` (to rerun one failure) or 0.
pub fn seed_start() -> u64 {
    std::env::var("FLIT_STREAM_SEED_START").ok().and_then(|value| value.parse().ok()).unwrap_or(0)
}

/// Runs `property` for each seed, printing the seed of a failure.
pub fn for_each_seed(name: &str, default: u64, property: impl Fn(u64)) {
    let start = seed_start();
    let count = seed_count(default);
    for seed in start..start + count {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(seed)));
        if let Err(panic) = outcome {
            eprintln!("{name}: failed with seed {seed} (rerun: FLIT_STREAM_SEED_START={seed} FLIT_STREAM_SEEDS=1)");
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!("{name}: {count} seeds passed (from {start})");
}

pub fn segment_path(first_sequence: u64) -> PathBuf {
    Path::new(DIRECTORY).join(flit_stream::segment::segment_name(first_sequence))
}

pub fn expect_corrupt(result: Result<(StreamLog, RecoveryReport), LogError>) -> (PathBuf, u64) {
    match result {
        Err(LogError::Corrupt { file, offset }) => (file, offset),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((log, report)) => panic!("expected Corrupt, the log opened: {:?} {report:?}", log.info()),
    }
}

pub fn fault_disk(seed: u64) -> FaultDisk {
    FaultDisk::new(seed)
}
