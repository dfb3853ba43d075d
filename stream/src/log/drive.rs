//! # A blocking driver: performs the log's IO through a `Disk`
//!
//! Tests, tools and a fallback path use [`drive_blocking`] instead of a
//! ring. It behaves like a ring as far as the log can tell: it takes every
//! request the log has, performs them in order with io_uring's link rule
//! (a sync linked to a write that came back short or failed completes
//! `Cancelled` without running), and hands the completions back in
//! submission order or reversed ([`CompletionOrder`]), since a ring does not
//! promise their order.
//!
//! ## Shutdown
//! Returns when the log has no more IO to hand out.

use super::{IoOperation, IoOutcome, StreamLog};
use crate::disk::Disk;

/// Rounds without progress after which the driver gives up (a log bug).
const ROUNDS_MAX: usize = 1_000_000;

/// The order completions are handed back in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompletionOrder {
    #[default]
    Submission,
    Reversed,
}

/// Performs the log's IO until it hands out none; returns the number of
/// requests performed.
pub fn drive_blocking(log: &mut StreamLog, disk: &mut dyn Disk, order: CompletionOrder) -> usize {
    let mut performed = 0;
    for _ in 0..ROUNDS_MAX {
        let mut requests = Vec::new();
        while let Some(request) = log.next_io() {
            requests.push(request);
        }
        if requests.is_empty() {
            return performed;
        }
        let mut completions = Vec::with_capacity(requests.len());
        let mut previous_write_whole = true;
        for request in requests {
            performed += 1;
            let outcome = match request.operation {
                IoOperation::Write { file, offset, data } => match disk.write_at(file, offset, &data) {
                    Ok(bytes) => {
                        previous_write_whole = bytes == data.len();
                        IoOutcome::Written { bytes }
                    }
                    Err(error) => {
                        previous_write_whole = false;
                        IoOutcome::Failed(error)
                    }
                },
                IoOperation::SyncData { linked: true, .. } if !previous_write_whole => IoOutcome::Cancelled,
                IoOperation::SyncData { file, .. } => match disk.sync_data(file) {
                    Ok(()) => IoOutcome::Synced,
                    Err(error) => IoOutcome::Failed(error),
                },
            };
            completions.push((request.tag, outcome));
        }
        if order == CompletionOrder::Reversed {
            completions.reverse();
        }
        for (tag, outcome) in completions {
            log.complete(tag, outcome);
        }
    }
    performed
}
