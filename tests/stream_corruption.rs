//! A log damaged before data a later commit proves durable is corruption,
//! not a torn tail: after a restart the stream refuses to serve, and both
//! `stream info` (status) and the log line name the file and the offset;
//! nothing is truncated, so the damaged file is still there to inspect.

mod common;
mod stream_support;

use flit_client::stream::StreamCode;
use stream_support::{add_stream, start_on, stop, TempDir};

#[test]
fn a_flipped_byte_in_an_old_record_makes_the_stream_refuse_and_name_the_file() {
    let data = TempDir::new("corruption");
    let server = start_on(&data.path, 1, &[]);
    let client = server.client();
    add_stream(&client, "audit", &["audit.>"]);
    // Separate commits (one publish acknowledged at a time), so the first
    // record is followed by commit markers that prove it was durable.
    for index in 0..20 {
        client.publish_durable("audit.event", format!("event number {index}").as_bytes()).expect("stored");
    }
    stop(server);
    let log_directory = data.path.join("streams").join("audit").join("log");
    let segment = std::fs::read_dir(&log_directory)
        .expect("log directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let needle = b"event number 3";
    let offset = bytes.windows(needle.len()).position(|window| window == needle).expect("the fourth message");
    bytes[offset] ^= 0x20;
    std::fs::write(&segment, &bytes).expect("write the damaged segment");

    let server = start_on(&data.path, 1, &[]);
    let client = server.client();
    let info = client.stream_info("audit").expect("info");
    let file_name = segment.file_name().expect("name").to_string_lossy().into_owned();
    assert!(info.status.contains("corrupt") && info.status.contains(&file_name), "status: {}", info.status);
    assert!(info.status.contains("offset"), "status names the offset: {}", info.status);
    let refused = client.publish_durable("audit.event", b"after").expect_err("a corrupt stream refuses");
    assert_eq!(refused.stream_code(), Some(StreamCode::Unavailable), "{refused}");
    let (code, stderr) = server.stop();
    assert_eq!(code, Some(0));
    assert!(stderr.contains("corrupt") && stderr.contains(&file_name), "the log names the file: {stderr}");
    assert!(std::fs::read(&segment).expect("still there") == bytes, "the damaged file is left exactly as it was");
}
