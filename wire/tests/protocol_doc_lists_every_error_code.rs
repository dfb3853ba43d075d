//! docs/PROTOCOL.md must list every error code and stream code this crate knows, with its
//! number and its stable name, so the specification cannot fall behind.

use flit_wire::ErrorCode;

#[test]
fn protocol_doc_lists_every_error_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let missing: Vec<String> = ErrorCode::ALL
        .iter()
        .filter(|code| {
            let row = format!("| {:<4} | `{}`", code.as_u16(), code.name());
            !doc.lines().any(|line| line.starts_with(&row))
        })
        .map(ToString::to_string)
        .collect();
    assert!(missing.is_empty(), "docs/PROTOCOL.md has no error-table row for: {}", missing.join(", "));
}

/// The same for the stream codes of StreamReply and PublishAck (version 2).
#[test]
fn protocol_doc_lists_every_stream_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let missing: Vec<String> = flit_wire::StreamCode::ALL
        .iter()
        .filter(|code| {
            let row = format!("| {:<4} | `{}`", code.as_u16(), code.name());
            !doc.lines().any(|line| line.starts_with(&row))
        })
        .map(ToString::to_string)
        .collect();
    assert!(missing.is_empty(), "docs/PROTOCOL.md has no stream-code row for: {}", missing.join(", "));
}
