//! A real full disk under a stream: the data directory on a small tmpfs.
//! Publishes that cannot be written are refused with `disk_full` (507), the
//! stream keeps serving reads, and once space returns it stores again by
//! itself, with contiguous sequences and nothing acknowledged lost.
//!
//! Needs permission to mount a tmpfs (root, as CI and this machine run);
//! without it the test says so and passes without checking anything (the
//! same behaviour is proven over the fault-injecting disk in
//! stream/tests/fault_storage_errors.rs).

mod common;
mod stream_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flit_client::stream::{AckPolicy, ConsumerConfigSpec, StreamCode};
use stream_support::{add_stream, start_on, stop};

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let path = std::env::temp_dir().join(format!("flit-disk-full-{}", std::process::id()));
        std::fs::create_dir_all(&path).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .status()
            .ok()?;
        if !status.success() {
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        Some(SmallDisk { path })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn fill(path: &Path, bytes: usize) {
    std::fs::write(path, vec![7u8; bytes]).expect("filler");
}

#[test]
fn a_full_disk_refuses_with_507_keeps_serving_reads_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount(8 * 1024 * 1024) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?); see stream/tests/fault_storage_errors.rs");
        return;
    };
    let filler = disk.path.join("filler");
    fill(&filler, 3 * 1024 * 1024);
    let data = disk.path.join("data");
    let server = start_on(&data, 2, &[]);
    let client = server.client();
    add_stream(&client, "full", &["full.>"]);
    let payload = vec![b'p'; 256 * 1024];
    let mut stored = 0u64;
    let refusal = loop {
        match client.publish_durable("full.data", &payload) {
            Ok(acked) => {
                stored += 1;
                assert_eq!(acked.sequence, stored, "sequences contiguous while there is space");
                assert!(stored < 64, "8 MiB cannot hold 64 x 256 KiB");
            }
            Err(error) => break error,
        }
    };
    assert_eq!(refusal.stream_code(), Some(StreamCode::DiskFull), "{refusal}");
    assert!(stored > 0, "some publishes fit before the disk filled");
    let info = client.stream_info("full").expect("info while full");
    assert_eq!(info.last_sequence, stored);
    assert_eq!(info.status, "disk full");
    // Reads keep working while the disk is full.
    let reader = ConsumerConfigSpec { ack_policy: AckPolicy::None, ..ConsumerConfigSpec::default() };
    let consumer = client.consumer_add("full", reader).expect("consumer while full");
    let name = consumer.config.name.expect("a name");
    let messages = client.fetch("full", &name, 100, Duration::from_millis(300)).expect("fetch while full");
    assert_eq!(messages.len() as u64, stored);
    // Space returns: within a few probes (one a second) the stream stores again.
    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(10);
    let acked = loop {
        match client.publish_durable("full.data", b"after") {
            Ok(acked) => break acked,
            Err(error) => {
                assert_eq!(error.stream_code(), Some(StreamCode::DiskFull), "{error}");
                assert!(Instant::now() < deadline, "the stream did not recover within 10 s of space returning");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(acked.sequence, stored + 1, "the refused publishes gave their sequences back");
    assert_eq!(client.stream_info("full").expect("info").status, "");
    stop(server);
    drop(disk);
}
