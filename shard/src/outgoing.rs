//! Output handed to the kernel as one send: one contiguous buffer, or several
//! segments sent as one vectored send.
//!
//! Why segments: a delivery's payload arrives as a refcounted `Bytes`; copying
//! it into the subscriber's write buffer costs a `memcpy` per subscriber. Small
//! payloads are still copied (one contiguous `SEND` is cheaper than building
//! an iovec array), but a payload of at least `splice_payload_bytes_min` is
//! queued by reference between two pieces of the write buffer, and the whole
//! lot goes out in one `SENDMSG` (shard/send.rs, ring module). The threshold
//! and its measurement are in docs/DESIGN.md ("Large payloads by reference").
//!
//! Invariants: a `Segments` value holds no empty segment (an empty
//! `Outgoing` is an empty buffer or no segments); the logical byte stream is
//! the segments in order, and what the socket takes is always a prefix of it.

use bytes::Bytes;

/// One send's bytes, or what a short send left of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Contiguous(Bytes),
    Segments(Vec<Bytes>),
}

impl Outgoing {
    /// Joins queued segments and the frozen write buffer. One piece stays a
    /// contiguous send (the common case: no spliced payload, no allocation).
    pub fn from_parts(mut segments: Vec<Bytes>, tail: Bytes) -> Outgoing {
        if segments.is_empty() && !tail.is_empty() {
            // Every send of a connection with nothing spliced: no Vec.
            return Outgoing::Contiguous(tail);
        }
        if !tail.is_empty() {
            segments.push(tail);
        }
        segments.retain(|segment| !segment.is_empty());
        if segments.len() == 1 {
            return Outgoing::Contiguous(segments.pop().expect("one segment"));
        }
        Outgoing::Segments(segments)
    }

    pub fn segments(&self) -> &[Bytes] {
        match self {
            Outgoing::Contiguous(data) => std::slice::from_ref(data),
            Outgoing::Segments(segments) => segments,
        }
    }

    pub fn into_segments(self) -> Vec<Bytes> {
        match self {
            Outgoing::Contiguous(data) if data.is_empty() => Vec::new(),
            Outgoing::Contiguous(data) => vec![data],
            Outgoing::Segments(segments) => segments,
        }
    }

    pub fn len(&self) -> usize {
        self.segments().iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.segments().iter().all(Bytes::is_empty)
    }

    /// What is left after the socket took the first `written` bytes.
    pub fn advance(self, mut written: usize) -> Outgoing {
        match self {
            Outgoing::Contiguous(data) => Outgoing::Contiguous(data.slice(written.min(data.len())..)),
            Outgoing::Segments(segments) => {
                let mut rest = Vec::with_capacity(segments.len());
                for segment in segments {
                    if written >= segment.len() {
                        written -= segment.len();
                    } else {
                        rest.push(segment.slice(written..));
                        written = 0;
                    }
                }
                Outgoing::from_parts(rest, Bytes::new())
            }
        }
    }

    /// Keeps only the first `length` bytes.
    pub fn truncate(&mut self, length: usize) {
        match self {
            Outgoing::Contiguous(data) => data.truncate(length),
            Outgoing::Segments(segments) => {
                truncate_segments(segments, length);
            }
        }
    }
}

/// Keeps only the first `length` bytes of `segments` (dropping emptied
/// ones); returns how many of those bytes the segments were short of.
fn truncate_segments(segments: &mut Vec<Bytes>, mut length: usize) -> usize {
    segments.retain_mut(|segment| {
        let kept = length.min(segment.len());
        segment.truncate(kept);
        length -= kept;
        kept > 0
    });
    length
}

/// Keeps only the first `length` bytes of `segments` followed by `tail`
/// (the queued output of a connection: spliced segments, then its write
/// buffer).
pub fn truncate_queued(segments: &mut Vec<Bytes>, tail: &mut bytes::BytesMut, length: usize) {
    let rest = truncate_segments(segments, length);
    tail.truncate(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flatten(outgoing: &Outgoing) -> Vec<u8> {
        outgoing.segments().iter().flat_map(|segment| segment.iter().copied()).collect()
    }

    fn sample() -> Outgoing {
        Outgoing::from_parts(
            vec![Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"defgh")],
            Bytes::from_static(b"ij"),
        )
    }

    #[test]
    fn one_piece_stays_contiguous_and_empty_pieces_are_dropped() {
        let one = Outgoing::from_parts(vec![Bytes::new()], Bytes::from_static(b"xyz"));
        assert_eq!(one, Outgoing::Contiguous(Bytes::from_static(b"xyz")));
        let many = sample();
        assert_eq!(many.segments().len(), 3);
        assert_eq!(many.len(), 10);
        assert_eq!(flatten(&many), b"abcdefghij");
    }

    #[test]
    fn advancing_at_every_position_leaves_exactly_the_rest() {
        let whole = flatten(&sample());
        for written in 0..=whole.len() {
            let rest = sample().advance(written);
            assert_eq!(flatten(&rest), &whole[written..], "after {written} bytes");
            assert!(rest.segments().iter().all(|segment| !segment.is_empty()));
        }
    }

    #[test]
    fn truncating_at_every_position_keeps_exactly_the_prefix() {
        let whole = flatten(&sample());
        for length in 0..=whole.len() {
            let mut kept = sample();
            kept.truncate(length);
            assert_eq!(flatten(&kept), &whole[..length], "kept {length} bytes");
            assert_eq!(kept.is_empty(), length == 0);

            let mut segments = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")];
            let mut tail = bytes::BytesMut::from(&b"ij"[..]);
            truncate_queued(&mut segments, &mut tail, length);
            let mut queued: Vec<u8> = segments.iter().flat_map(|segment| segment.iter().copied()).collect();
            queued.extend_from_slice(&tail);
            assert_eq!(queued, &whole[..length]);
        }
    }
}
