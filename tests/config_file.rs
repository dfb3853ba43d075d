//! `flit serve --config FILE` and `flit config check FILE`: the annotated
//! example validates, an unknown key is a one-line error naming the key and
//! its line (exit 2), the file's settings are used, and flags override them.

mod common;

use std::process::Command;

use common::{http_get, metric_sum, scrape};

fn flit(arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flit")).args(arguments).output().expect("run flit")
}

/// A config file in a fresh temporary directory (removed on drop).
struct ConfigFile {
    directory: std::path::PathBuf,
    path: String,
}

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let unique = format!("flit-config-test-{}-{:?}", std::process::id(), std::thread::current().id());
        let directory = std::env::temp_dir().join(unique.replace(['(', ')'], ""));
        std::fs::create_dir_all(&directory).expect("temp dir");
        let path = directory.join("flit.toml");
        std::fs::write(&path, text).expect("write config");
        ConfigFile { path: path.to_string_lossy().into_owned(), directory }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

#[test]
fn the_example_file_validates() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../flit.example.toml");
    let output = flit(&["config", "check", example]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(stdout.contains("is valid") && stdout.contains("listen=127.0.0.1:4224"), "{stdout}");
}

#[test]
fn an_unknown_key_fails_the_check_with_one_line_naming_it() {
    let file = ConfigFile::new("[server]\nshards = 1\n\n[limits]\npending_byte_max = 10\n");
    for arguments in [vec!["config", "check", &file.path], vec!["serve", "--config", &file.path]] {
        let output = flit(&arguments);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {output:?}");
        let stderr = String::from_utf8(output.stderr).expect("utf-8");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("pending_byte_max") && stderr.contains("line 5"), "{stderr}");
    }
}

#[test]
fn a_limit_relation_broken_in_the_file_fails_the_check() {
    let file = ConfigFile::new("[limits]\npending_bytes_max = 100\n");
    let output = flit(&["config", "check", &file.path]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("pending_bytes_max"), "{output:?}");
}

#[test]
fn a_missing_file_is_a_one_line_error() {
    let output = flit(&["config", "check", "/nonexistent/flit.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(stderr.starts_with("flit: error: cannot read config file /nonexistent/flit.toml"), "{stderr}");
}

#[test]
fn the_file_is_used_and_flags_override_it() {
    let file = ConfigFile::new(
        "[server]\nlisten = \"127.0.0.1:1\"\nshards = 2\nname = \"from-file\"\n\n\
         [limits]\nconnections_per_shard_max = 7\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
    );
    // FlitServer::start passes --listen 127.0.0.1:0 and --shards 1, which
    // must win over the file's port 1 and 2 shards.
    let server = common::FlitServer::start(1, &["--config", &file.path]);
    assert_ne!(server.address.port(), 1, "--listen overrides the file");
    let client = server.client();
    assert_eq!(client.welcome().shards, 1, "--shards overrides the file");
    assert_eq!(client.welcome().server_name, "from-file", "the file's name is used");
    let metrics = server.metrics_address.expect("the file's [metrics] listen is used");
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    assert_eq!(metric_sum(&scrape(metrics), "flit_shard_connections_max", &[]), 7.0, "the file's limit is used");
}
