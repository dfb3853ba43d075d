//! The log over real files (`FileDisk`) in a temporary directory: open,
//! append, drive, reopen, a torn tail written by hand, and cleanup.

mod log_support;

use std::path::PathBuf;

use flit_stream::disk::{Disk, FileDisk};
use flit_stream::log::{Durability, LogConfig, StreamLog};
use flit_stream::record;
use log_support::*;

/// A unique directory under the system temp dir, removed on drop.
struct TempDirectory(PathBuf);

impl TempDirectory {
    fn new(name: &str) -> TempDirectory {
        let unique = format!(
            "flit-stream-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos()
        );
        TempDirectory(std::env::temp_dir().join(unique))
    }
}

impl Drop for TempDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(directory: &TempDirectory) -> LogConfig {
    let mut config = LogConfig::new(directory.0.join("orders"));
    config.segment_bytes = 8192;
    config.durability = Durability::Always;
    config
}

#[test]
fn file_disk_open_append_drive_reopen() {
    let directory = TempDirectory::new("reopen");
    let mut disk = FileDisk::new();
    let (mut log, report) = StreamLog::open(&mut disk, config(&directory)).expect("opens");
    assert_eq!(report.segments_scanned, 0);
    for index in 0..200u64 {
        let sequence = log.append(&mut disk, START_NS + index, b"orders.eu", b"h", &payload_for(index, 90)).unwrap();
        assert_eq!(sequence, index + 1);
        if index % 10 == 9 {
            drive(&mut log, &mut disk);
        }
    }
    drive(&mut log, &mut disk);
    let acked: u64 = acked_ranges(&events(&mut log)).iter().map(|(first, last)| last - first + 1).sum();
    assert_eq!(acked, 200);
    let before = read_all(&log, &mut disk, 64);
    let segments = log.info().segments;
    assert!(segments > 1, "rolled");
    let files = std::fs::read_dir(directory.0.join("orders")).expect("listed").count();
    assert_eq!(files, segments);
    log.close(&mut disk);

    let mut disk = FileDisk::new();
    let (mut log, report) = StreamLog::open(&mut disk, config(&directory)).expect("reopens");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.messages, 200);
    assert_eq!(read_all(&log, &mut disk, 64), before);
    assert_eq!(log.append(&mut disk, START_NS + 500, b"orders.eu", b"", b"more"), Ok(201));
    drive(&mut log, &mut disk);
    assert_eq!(&log.read(&mut disk, 201).unwrap().expect("present").payload[..], b"more");
    let end = log.info().bytes;
    let active = log.info().segments;
    log.close(&mut disk);

    // A torn record after the end of the last segment, written by hand.
    let mut names: Vec<_> = std::fs::read_dir(directory.0.join("orders"))
        .expect("listed")
        .map(|entry| entry.expect("entry").path())
        .collect();
    names.sort();
    assert_eq!(names.len(), active);
    let last = names.last().expect("a segment").clone();
    let length_before = std::fs::metadata(&last).expect("stat").len();
    let mut torn = Vec::new();
    record::encode_into(&mut torn, 202, START_NS, b"t", b"", &[3u8; 64]).unwrap();
    let mut disk = FileDisk::new();
    let file = disk.open(&last, false).unwrap();
    let last_segment_start: u64 = {
        // The bytes before this segment belong to earlier files.
        let earlier: u64 = names[..names.len() - 1]
            .iter()
            .map(|path| {
                let mut scan = FileDisk::new();
                let handle = scan.open(path, false).unwrap();
                let image = flit_stream::segment::read_exact_or_less(&mut scan, handle, 0, 8192).unwrap();
                let mut offset = 0;
                while let record::Check::Complete(length) = record::check(&image[offset..]) {
                    offset += length;
                }
                offset as u64
            })
            .sum();
        end - earlier
    };
    disk.write_at(file, last_segment_start, &torn[..torn.len() - 9]).unwrap();
    disk.sync_data(file).unwrap();
    disk.close(file);
    let (log, report) = StreamLog::open(&mut disk, config(&directory)).expect("reopens");
    assert_eq!(report.truncations.len(), 1, "{report:?}");
    assert_eq!(report.truncations[0].offset, last_segment_start);
    assert_eq!(log.info().last_sequence, 201);
    assert_eq!(std::fs::metadata(&last).expect("stat").len(), length_before, "reallocated to its size");
}
