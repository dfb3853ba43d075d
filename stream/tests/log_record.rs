//! The record format: encode, check, decode; every truncation is
//! `Incomplete`, every flipped bit is `Invalid`, the length fields are
//! covered by the CRC, and nothing a length field claims is trusted.

use bytes::{Bytes, BytesMut};
use flit_stream::record::{
    self, Check, InvalidReason, RecordError, RecordKind, RECORD_BYTES_MAX, RECORD_BYTES_MIN, RECORD_HEADER_BYTES,
};

fn encoded(sequence: u64, subject: &[u8], headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::new();
    let length = record::encode_into(&mut buffer, sequence, 1_700_000_000_000_000_000, subject, headers, payload)
        .expect("encodes");
    assert_eq!(length, buffer.len());
    buffer
}

#[test]
fn round_trip_keeps_every_field_and_pads_to_eight_bytes() {
    for payload_length in 0..20 {
        let payload = vec![0xAB; payload_length];
        let bytes = encoded(42, b"orders.eu", b"h:1", &payload);
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(bytes.len(), record::align(RECORD_HEADER_BYTES + 9 + 3 + payload_length));
        assert_eq!(record::check(&bytes), Check::Complete(bytes.len()));
        let message = record::decode(&bytes).expect("decodes");
        assert_eq!(message.sequence, 42);
        assert_eq!(message.timestamp_ns, 1_700_000_000_000_000_000);
        assert_eq!(&message.subject[..], b"orders.eu");
        assert_eq!(&message.headers[..], b"h:1");
        assert_eq!(&message.payload[..], &payload[..]);
    }
}

#[test]
fn decode_shared_slices_the_buffer_and_ignores_what_follows() {
    let mut buffer = BytesMut::new();
    record::encode_into(&mut buffer, 7, 9, b"a", b"", b"payload").expect("encodes");
    let first_length = buffer.len();
    record::encode_into(&mut buffer, 8, 9, b"b", b"", b"next").expect("encodes");
    let shared: Bytes = buffer.freeze();
    let (message, length) = record::decode_shared(&shared).expect("decodes");
    assert_eq!(length, first_length);
    assert_eq!(&message.payload[..], b"payload");
    let (second, _) = record::decode_shared(&shared.slice(length..)).expect("decodes");
    assert_eq!(second.sequence, 8);
}

#[test]
fn every_truncation_point_is_incomplete() {
    let bytes = encoded(3, b"subject", b"headers", b"some payload bytes");
    for cut in 0..bytes.len() {
        assert_eq!(record::check(&bytes[..cut]), Check::Incomplete, "cut at {cut}");
        assert_eq!(record::decode(&bytes[..cut]), Err(RecordError::Incomplete), "cut at {cut}");
    }
}

#[test]
fn every_flipped_bit_is_invalid() {
    let bytes = encoded(3, b"subject", b"headers", b"payload!");
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 1 << bit;
            let answer = record::check(&damaged);
            // A flipped length may claim more than the buffer holds: that
            // is Incomplete, never Complete.
            assert!(matches!(answer, Check::Invalid(_) | Check::Incomplete), "byte {byte} bit {bit}: {answer:?}");
        }
    }
}

#[test]
fn length_fields_are_covered_by_the_checksum() {
    let bytes = encoded(3, b"subject", b"headers", b"payload!");
    // Move one byte from the subject to the headers: lengths still add up,
    // so only the checksum can catch it.
    let mut moved = bytes.clone();
    moved[24] -= 1; // subject_length 7 -> 6
    moved[28] += 1; // headers_length 7 -> 8
    assert_eq!(record::check(&moved), Check::Invalid(InvalidReason::Checksum));
    // The total length field too (with the padding bytes still there).
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    let total = (bytes.len() + 8) as u32;
    longer[0..4].copy_from_slice(&total.to_le_bytes());
    assert_eq!(record::check(&longer), Check::Invalid(InvalidReason::Checksum));
}

#[test]
fn huge_length_claims_are_refused_before_anything_is_read_or_allocated() {
    let mut claim = vec![0u8; 64];
    claim[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(record::check(&claim), Check::Invalid(InvalidReason::Length));
    let limit = (RECORD_BYTES_MAX as u32).to_le_bytes();
    claim[0..4].copy_from_slice(&limit);
    // Within the format's limit but beyond the buffer: only Incomplete.
    assert_eq!(record::check(&claim), Check::Incomplete);
    for bad in [0u32, 8, 36, 41] {
        claim[0..4].copy_from_slice(&bad.to_le_bytes());
        assert_eq!(record::check(&claim), Check::Invalid(InvalidReason::Length), "length {bad}");
    }
}

#[test]
fn limits_on_subject_and_total_size() {
    let subject = vec![b's'; record::SUBJECT_BYTES_MAX + 1];
    assert!(matches!(
        record::encode_into(&mut Vec::new(), 1, 1, &subject, b"", b""),
        Err(RecordError::SubjectTooLong { .. })
    ));
    assert!(matches!(record::encoded_bytes(0, 0, RECORD_BYTES_MAX), Err(RecordError::TooLarge { .. })));
    assert!(record::encoded_bytes(record::SUBJECT_BYTES_MAX, 0, 0).is_ok());
}

#[test]
fn commit_markers_check_but_do_not_decode_as_messages() {
    let marker = record::encode_commit_marker(99);
    assert_eq!(marker.len(), RECORD_BYTES_MIN);
    assert_eq!(record::check(&marker), Check::Complete(RECORD_BYTES_MIN));
    let header = record::header(&marker).expect("valid");
    assert_eq!(header.kind, RecordKind::CommitMarker);
    assert_eq!(header.sequence, 99);
    assert_eq!(record::decode(&marker), Err(RecordError::NotAMessage));
    let mut damaged = marker;
    damaged[12] ^= 4;
    assert_eq!(record::check(&damaged), Check::Invalid(InvalidReason::Checksum));
}

#[test]
fn unknown_kind_with_a_valid_checksum_is_invalid_fields() {
    let mut bytes = encoded(1, b"s", b"", b"p");
    bytes[26] = 7;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..4]), &bytes[8..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(record::check(&bytes), Check::Invalid(InvalidReason::Fields));
}

#[test]
fn non_zero_padding_is_refused_even_under_a_matching_checksum() {
    // Found by fuzzing (stream/fuzz, target `record`): a record whose
    // padding is not zero but whose CRC covers that padding was accepted,
    // though the encoder never writes one.
    let mut bytes = encoded(1, b"orders.n", b"", b"x");
    let length = bytes.len();
    let body = RECORD_HEADER_BYTES + b"orders.n".len() + 1;
    assert!(length > body, "the record has padding");
    bytes[length - 1] = 0xff;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..4]), &bytes[8..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(record::check(&bytes), Check::Invalid(InvalidReason::Fields));
}

#[test]
fn a_commit_marker_with_a_timestamp_is_refused_even_under_a_matching_checksum() {
    // Found by fuzzing: the encoder writes markers with timestamp 0.
    let mut bytes = record::encode_commit_marker(5).to_vec();
    bytes[19] = 0xf5;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..4]), &bytes[8..]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(record::check(&bytes), Check::Invalid(InvalidReason::Fields));
}
