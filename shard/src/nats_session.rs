//! What a connection that speaks the NATS client protocol carries beyond a
//! native one: its parser, the options its CONNECT chose, and the mapping
//! between NATS subscription ids (opaque tokens) and the numeric ids the
//! routing core keys subscriptions by.
//!
//! Invariants: a decimal sid below 2^63 written the canonical way (no
//! leading zeros, no sign) is its own numeric id, so the common case (every
//! NATS client numbers its subscriptions) costs no map; any other sid gets
//! an id at or above 2^63 from `named_sids`, and `sid_names` maps it back
//! for MSG. Both maps hold only live subscriptions (at most
//! `subscriptions_per_connection_max` entries). Nothing here outlives the
//! connection; a closed connection drops it with the rest of its state.

use std::collections::HashMap;

use bytes::Bytes;

/// Numeric ids at or above this are names given to non-decimal sids.
pub const NAMED_SID_FIRST: u64 = 1 << 63;

/// Options a CONNECT sets, with nats-server's defaults before one arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatsOptions {
    pub verbose: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    /// CONNECT said `protocol: 1`: the client takes INFO updates (a new
    /// node's URL in `connect_urls`) at any time.
    pub info_updates: bool,
}

impl Default for NatsOptions {
    fn default() -> NatsOptions {
        // What nats-server assumes of a client that has not said: verbose on
        // (a person at a terminal sees +OK), echo on, no headers.
        NatsOptions { verbose: true, echo: true, headers: false, no_responders: false, info_updates: false }
    }
}

/// A NATS connection's protocol state (boxed in `Connection::nats`).
#[derive(Debug)]
pub struct NatsSession {
    pub parser: flit_nats::Parser,
    /// CONNECT has been received and accepted.
    pub connected: bool,
    pub options: NatsOptions,
    /// The connection's id in INFO (`client_id`).
    pub client_id: u64,
    named_sids: HashMap<Box<[u8]>, u64>,
    sid_names: HashMap<u64, Box<[u8]>>,
    next_named_sid: u64,
    /// Stream acknowledgements this connection asked for by publishing with
    /// a reply subject to a stream-captured subject: tag -> reply subject.
    /// Bounded by `pending_acks_max` (the caller checks).
    pub pending_acks: HashMap<u64, Bytes>,
    next_ack_tag: u64,
}

impl NatsSession {
    pub fn new(parser: flit_nats::Parser, client_id: u64) -> NatsSession {
        NatsSession {
            parser,
            connected: false,
            options: NatsOptions::default(),
            client_id,
            named_sids: HashMap::new(),
            sid_names: HashMap::new(),
            next_named_sid: NAMED_SID_FIRST,
            pending_acks: HashMap::new(),
            next_ack_tag: 1,
        }
    }

    /// The numeric id of a sid already known (or decimal), if any.
    pub fn known_sid(&self, sid: &[u8]) -> Option<u64> {
        decimal_sid(sid).or_else(|| self.named_sids.get(sid).copied())
    }

    /// The numeric id for a new subscription's sid, naming it if needed.
    pub fn sid_for_new_subscription(&mut self, sid: &[u8]) -> u64 {
        if let Some(id) = self.known_sid(sid) {
            return id;
        }
        let id = self.next_named_sid;
        self.next_named_sid = self.next_named_sid.wrapping_add(1).max(NAMED_SID_FIRST);
        self.named_sids.insert(sid.into(), id);
        self.sid_names.insert(id, sid.into());
        id
    }

    /// Forgets a named sid whose subscription ended.
    pub fn forget_sid(&mut self, id: u64) {
        if let Some(name) = self.sid_names.remove(&id) {
            self.named_sids.remove(&name);
        }
    }

    /// Writes the sid of subscription `id` as the client gave it, into
    /// `digits` for a decimal one (no allocation on the delivery path).
    pub fn sid_text<'a>(&'a self, id: u64, digits: &'a mut [u8; 20]) -> &'a [u8] {
        if id >= NAMED_SID_FIRST {
            if let Some(name) = self.sid_names.get(&id) {
                return name;
            }
        }
        flit_nats::encode::decimal(id, digits)
    }

    /// A new tag for a stream acknowledgement to `reply`.
    pub fn remember_ack(&mut self, reply: Bytes) -> u64 {
        let tag = self.next_ack_tag;
        self.next_ack_tag = self.next_ack_tag.wrapping_add(1).max(1);
        self.pending_acks.insert(tag, reply);
        tag
    }
}

/// A sid that is its own numeric id: canonical decimal below 2^63.
fn decimal_sid(sid: &[u8]) -> Option<u64> {
    if sid.is_empty() || sid.len() > 19 || !sid.iter().all(u8::is_ascii_digit) || (sid[0] == b'0' && sid.len() > 1) {
        return None;
    }
    let value = sid.iter().fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    (value < NAMED_SID_FIRST).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> NatsSession {
        NatsSession::new(flit_nats::Parser::default(), 1)
    }

    #[test]
    fn decimal_sids_are_their_own_ids_and_print_back_the_same() {
        let mut session = session();
        let mut digits = [0u8; 20];
        for sid in [&b"0"[..], b"1", b"42", b"9223372036854775807"] {
            let id = session.sid_for_new_subscription(sid);
            assert!(id < NAMED_SID_FIRST);
            assert_eq!(session.sid_text(id, &mut digits), sid);
        }
        assert!(session.named_sids.is_empty(), "no map for decimal sids");
    }

    #[test]
    fn other_sids_get_names_that_print_back_and_are_forgotten() {
        let mut session = session();
        let mut digits = [0u8; 20];
        for sid in [&b"007"[..], b"abc", b"9223372036854775808", b"-1"] {
            let id = session.sid_for_new_subscription(sid);
            assert!(id >= NAMED_SID_FIRST, "{sid:?}");
            assert_eq!(session.known_sid(sid), Some(id));
            assert_eq!(session.sid_text(id, &mut digits), sid);
            session.forget_sid(id);
            assert_eq!(session.known_sid(sid), None);
        }
        assert!(session.sid_names.is_empty());
    }

    #[test]
    fn two_names_never_share_an_id() {
        let mut session = session();
        let first = session.sid_for_new_subscription(b"a");
        let second = session.sid_for_new_subscription(b"b");
        assert_ne!(first, second);
        assert_eq!(session.sid_for_new_subscription(b"a"), first, "a known name keeps its id");
    }
}
