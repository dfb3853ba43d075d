//! Helpers shared by the durable-stream tests (`stream_publish`,
//! `stream_consumers`, `stream_cli`): a temporary data directory per test,
//! a server on it that can be stopped and started again on the same
//! directory, and a stream with the defaults.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flit_client::stream::{StreamConfigSpec, StreamInfo};
use flit_client::Client;

use crate::common::FlitServer;

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory whose name contains `label`.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |time| time.as_nanos());
        let path = std::env::temp_dir().join(format!("flit-{label}-{}-{unique}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `flit serve --data-dir DIR` with `shards` shards and any extra flags.
pub fn start_on(data_dir: &Path, shards: usize, extra_arguments: &[&str]) -> FlitServer {
    let mut arguments = vec!["--data-dir", data_dir.to_str().expect("a UTF-8 path")];
    arguments.extend_from_slice(extra_arguments);
    FlitServer::start(shards, &arguments)
}

/// Stops `server` (SIGTERM: the server syncs its logs) and asserts it exited cleanly.
pub fn stop(server: FlitServer) {
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0), "flit did not exit cleanly: {stderr}");
}

/// Adds stream `name` capturing `subjects`, with every default (durability
/// `always`, no limits).
pub fn add_stream(client: &Client, name: &str, subjects: &[&str]) -> StreamInfo {
    client.stream_add(StreamConfigSpec::new(name, subjects.iter().copied())).expect("stream add")
}

/// How long a test waits for a fetch that should find its messages at once.
pub const FETCH_WAIT: Duration = Duration::from_millis(300);
