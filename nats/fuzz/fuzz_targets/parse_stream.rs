//! Fuzz target: NATS client bytes, handed over whole and in pieces, must
//! parse to the same ops and end the same way; and every op that parses,
//! written again with `ClientOp::encode`, must parse back to itself (the
//! header block of an HPUB too, through `parse_headers`/`encode_headers`).
//!
//! Input: the first byte is how many cut points follow (at most 32), each
//! one byte (a piece of 1..=256 bytes, so pieces cross op names, control
//! lines and payloads); the rest is the stream. The limits are small
//! (control line 256, payload 1024) so that inputs of a few hundred bytes
//! reach both limit checks.
//! Oracle: equal outcomes (ops, then the error or the bytes left waiting)
//! both ways; decode ∘ encode is the identity on every parsed op; and the
//! whole stream split with `split_op_with_bytes` (what the shard calls)
//! gives the same ops, each part a slice inside the op's bytes (the shard
//! turns parts into ranges of those bytes and asserts exactly that).
#![no_main]

use bytes::BytesMut;
use flit_nats::{encode_headers, parse_headers, ClientOp, Limits, Parser, ProtocolError};
use libfuzzer_sys::fuzz_target;

const CUTS_MAX: usize = 32;
const OPS_PER_INPUT_MAX: usize = 4096;

#[derive(Debug, PartialEq)]
struct Outcome {
    ops: Vec<ClientOp>,
    error: Option<ProtocolError>,
}

/// Splits every whole op off `buffer`; false once an error stopped it.
fn drain(parser: &Parser, buffer: &mut BytesMut, outcome: &mut Outcome) -> bool {
    while outcome.ops.len() < OPS_PER_INPUT_MAX {
        match parser.split_op(buffer) {
            Ok(Some(op)) => outcome.ops.push(op),
            Ok(None) => return true,
            Err(error) => {
                outcome.error = Some(error);
                return false;
            }
        }
    }
    false
}

/// Every `Bytes` of `op` lies inside `whole` (same allocation, in bounds).
fn assert_parts_inside(op: &ClientOp, whole: &bytes::Bytes) {
    let parts: Vec<&bytes::Bytes> = match op {
        ClientOp::Pub { subject, reply, payload } => [Some(subject), reply.as_ref(), Some(payload)].into_iter().flatten().collect(),
        ClientOp::Hpub { subject, reply, headers, payload } => {
            [Some(subject), reply.as_ref(), Some(headers), Some(payload)].into_iter().flatten().collect()
        }
        ClientOp::Sub { subject, queue, sid } => [Some(subject), queue.as_ref(), Some(sid)].into_iter().flatten().collect(),
        ClientOp::Unsub { sid, .. } => vec![sid],
        _ => Vec::new(),
    };
    let base = whole.as_ptr() as usize;
    for part in parts {
        let start = (part.as_ptr() as usize).wrapping_sub(base);
        assert!(start <= whole.len() && part.len() <= whole.len() - start, "a part lies inside its op's bytes");
    }
}

fn assert_round_trip(op: &ClientOp) {
    let mut encoded = BytesMut::new();
    op.encode(&mut encoded);
    // Default limits: a CONNECT written again may be longer than it came
    // (serde_json writes every field), never beyond 4096 from 256.
    let again = Parser::default().split_op(&mut encoded);
    assert_eq!(again.as_ref(), Ok(&Some(op.clone())), "re-encoded op parses to itself");
    assert!(encoded.is_empty(), "the encoder wrote one op");
    if let ClientOp::Hpub { headers, .. } = op {
        let Ok(block) = parse_headers(headers) else { return };
        let entries: Vec<(&[u8], &[u8])> = block.entries.iter().map(|(key, value)| (&key[..], &value[..])).collect();
        let status = block.status.map(|code| (code, block.description.as_deref().unwrap_or_default()));
        let mut written = BytesMut::new();
        encode_headers(status, &entries, &mut written).expect("what parses, encodes");
        assert_eq!(parse_headers(&written.freeze()).as_ref(), Ok(&block), "header block round trip");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut_count, rest)) = data.split_first() else { return };
    let cut_count = usize::from(cut_count).min(CUTS_MAX).min(rest.len());
    let (cuts, stream) = rest.split_at(cut_count);
    let parser = Parser::new(Limits { max_control_line: 256, max_payload: 1024 });

    let mut whole = Outcome { ops: Vec::new(), error: None };
    let mut whole_buffer = BytesMut::from(stream);
    drain(&parser, &mut whole_buffer, &mut whole);

    let mut pieces = Outcome { ops: Vec::new(), error: None };
    let mut buffer = BytesMut::new();
    let mut offset = 0;
    let mut going = true;
    for cut in cuts.iter().map(|cut| usize::from(*cut) + 1).chain(std::iter::once(usize::MAX)) {
        if !going || offset >= stream.len() {
            break;
        }
        let end = offset.saturating_add(cut).min(stream.len());
        buffer.extend_from_slice(&stream[offset..end]);
        offset = end;
        going = drain(&parser, &mut buffer, &mut pieces);
    }
    assert_eq!(pieces, whole, "pieces {cuts:?} changed the ops");
    if going && whole.error.is_none() {
        assert_eq!(buffer.len(), whole_buffer.len(), "the same bytes wait for the rest of an op");
    }
    for op in &whole.ops {
        assert_round_trip(op);
    }
    let mut with_bytes = BytesMut::from(stream);
    for expected in &whole.ops {
        let (op, bytes) = parser.split_op_with_bytes(&mut with_bytes).expect("parsed before").expect("whole before");
        assert_eq!(&op, expected, "split_op_with_bytes agrees with split_op");
        assert_parts_inside(&op, &bytes);
    }
});
