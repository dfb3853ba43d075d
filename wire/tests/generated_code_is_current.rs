//! The committed generated code must match the committed schema.
//!
//! `wire/schema/regenerate.sh` writes two header lines into
//! `wire/generated/src/flit_generated.rs`: the flatc version that produced it
//! and the sha256 of `wire/schema/flit.fbs` at that moment. Editing the schema
//! without regenerating (or regenerating with another flatc) fails here.

use std::fs;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

const FLATC_VERSION: &str = "23.5.26";

fn wire_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generated_header_lines() -> (String, String) {
    let path = wire_dir().join("generated/src/flit_generated.rs");
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_owned();
    let second = lines.next().unwrap_or_default().to_owned();
    (first, second)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn generated_code_matches_schema_hash() {
    let schema_path = wire_dir().join("schema/flit.fbs");
    let schema = fs::read(&schema_path).unwrap_or_else(|error| panic!("reading {}: {error}", schema_path.display()));
    let schema_hash = hex(&Sha256::digest(&schema));

    let (_, second) = generated_header_lines();
    let recorded_hash = second
        .strip_prefix("// schema-sha256: ")
        .unwrap_or_else(|| panic!("second line of flit_generated.rs is not a schema-sha256 line: {second:?}"))
        .trim();
    assert_eq!(
        recorded_hash, schema_hash,
        "wire/schema/flit.fbs changed since wire/generated/src/flit_generated.rs was generated: \
         run wire/schema/regenerate.sh and commit the result"
    );
}

#[test]
fn generated_code_was_made_by_the_pinned_flatc() {
    let (first, _) = generated_header_lines();
    let expected = format!("flatc version {FLATC_VERSION}. ");
    assert!(
        first.starts_with("// @generated") && first.contains(&expected),
        "first line of flit_generated.rs should name {expected}, found {first:?}: \
         run wire/schema/regenerate.sh (it builds flatc {FLATC_VERSION}) and commit the result"
    );
}
