//! The subscriptions held by one shard's connections.
//!
//! A slab of subscriptions indexed by slot, a trie from pattern to slot for
//! matching, and a count per (pattern, queue, filter) of local subscriptions,
//! whose transitions between 0 and 1 are what the shard broadcasts as
//! interest.
//!
//! Subscription bytes: each subscription is charged
//! [`subscription_bytes`] against its connection's total and, with
//! authentication on, its identity's (one counter per identity shared by
//! every shard, `Identity::subscription_bytes`, kept across reloads like the
//! identity's rate buckets). A subscribe is admitted
//! by [`Subscriptions::reserve_bytes`], which charges it, just before
//! [`Subscriptions::add`]; [`Subscriptions::remove`] gives the bytes back.
//!
//! Memory goes back as subscriptions go: the trie frees its nodes, free slots
//! at the end of the slab are dropped (new subscriptions take the lowest free
//! slot, so the live ones stay at the front) and the slab and tables shrink
//! once three quarters of them are unused.
//!
//! Invariants: a slot is in the trie exactly while it is occupied; the count
//! for (pattern, queue, filter) equals the number of occupied slots with
//! that triple; a connection's charged bytes are the sum of
//! [`subscription_bytes`] over its occupied slots, and so are its identity
//! counter's share of them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use crate::connection::ConnectionKey;
use crate::delivery_filter::DeliveryFilter;
use crate::interest::{group_key, GroupKey};
use crate::trie::SubjectTrie;

#[derive(Debug)]
pub struct Subscription {
    pub connection: ConnectionKey,
    pub subscription_id: u64,
    pub pattern: Bytes,
    pub queue: Option<Bytes>,
    /// 0 for plain subscriptions.
    pub group_key: GroupKey,
    /// Messages still to deliver before the subscription ends by itself.
    pub remaining: Option<u64>,
    /// Messages delivered so far (a NATS `UNSUB sid max` counts them: the
    /// subscription ends once `max` have been delivered in all).
    pub delivered: u64,
    /// For a restricted identity's pattern that can match subjects it may
    /// not read (see [`DeliveryFilter`]); part of the interest key.
    pub delivery_filter: Option<DeliveryFilter>,
}

/// What a change did to this shard's interest in a (pattern, queue) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterestChange {
    /// First local subscription on the pair: tell the other shards.
    Gained,
    /// Last one gone: tell the other shards.
    Lost,
    Unchanged,
}

/// What the shard's interest is counted by: pattern, queue, filter.
type InterestKey = (Bytes, Option<Bytes>, Option<DeliveryFilter>);

/// Bytes one subscription counts against `subscription_bytes_max` and
/// `identity_subscription_bytes_max`, besides its pattern and queue group
/// name: a share of its records, so that the byte limits bound how many
/// subscriptions there are as well as how long they are.
pub const SUBSCRIPTION_FIXED_BYTES: usize = 64;

/// The most one subscription can count (longest pattern and queue group).
pub const SUBSCRIPTION_BYTES_LARGEST: usize =
    SUBSCRIPTION_FIXED_BYTES + flit_wire::subject::SUBJECT_BYTES_MAX + flit_wire::subject::QUEUE_GROUP_BYTES_MAX;

/// What a subscription counts against the subscription byte limits.
pub fn subscription_bytes(pattern: &[u8], queue: Option<&[u8]>) -> usize {
    SUBSCRIPTION_FIXED_BYTES + pattern.len() + queue.map_or(0, <[u8]>::len)
}

/// Subscription bytes one connection holds, and its identity's counter.
#[derive(Debug)]
struct HeldBytes {
    bytes: usize,
    identity: Option<Arc<AtomicUsize>>,
}

/// A connection's identity, for the per-identity limit.
#[derive(Clone, Copy, Debug)]
pub struct IdentityLimit<'a> {
    pub name: &'a str,
    pub counter: &'a Arc<AtomicUsize>,
    pub bytes_max: usize,
}

#[derive(Debug, Default)]
pub struct Subscriptions {
    slots: Vec<Option<Subscription>>,
    /// Free slots below `slots.len()`, lowest first; entries at or above it
    /// (left when the end of the slab was dropped) are skipped.
    free_slots: BinaryHeap<Reverse<u32>>,
    pub trie: SubjectTrie<u32>,
    local_counts: HashMap<InterestKey, u32>,
    /// Per connection with subscriptions: the bytes charged to it.
    held_bytes: FxHashMap<ConnectionKey, HeldBytes>,
}

impl Subscriptions {
    pub fn get(&self, slot: u32) -> Option<&Subscription> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Subscription> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Every (pattern, queue) this shard has interest in, once per filter
    /// it is held under (a route's full-state announcement).
    pub fn interest_pairs(&self) -> impl Iterator<Item = (&Bytes, Option<&Bytes>)> {
        self.local_counts.keys().map(|(pattern, queue, _)| (pattern, queue.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.trie.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// Adds a subscription; returns its slot and what it did to interest.
    pub fn add(
        &mut self,
        connection: ConnectionKey,
        subscription_id: u64,
        pattern: Bytes,
        queue: Option<Bytes>,
        delivery_filter: Option<DeliveryFilter>,
    ) -> (u32, InterestChange) {
        let group_key = queue.as_ref().map_or(0, |queue| group_key(&pattern, queue));
        let slot = loop {
            match self.free_slots.pop() {
                Some(Reverse(slot)) if (slot as usize) < self.slots.len() => break slot,
                Some(_) => continue,
                None => {
                    self.slots.push(None);
                    break (self.slots.len() - 1) as u32;
                }
            }
        };
        self.trie.insert(&pattern, slot);
        let change = self.count_in((pattern.clone(), queue.clone(), delivery_filter.clone()));
        self.slots[slot as usize] = Some(Subscription {
            connection,
            subscription_id,
            pattern,
            queue,
            group_key,
            remaining: None,
            delivered: 0,
            delivery_filter,
        });
        (slot, change)
    }

    /// Removes a subscription; returns it and what that did to interest.
    pub fn remove(&mut self, slot: u32) -> Option<(Subscription, InterestChange)> {
        let subscription = self.slots.get_mut(slot as usize)?.take()?;
        let removed = self.trie.remove(&subscription.pattern, |value| *value == slot);
        debug_assert_eq!(removed, Some(slot));
        self.free_slots.push(Reverse(slot));
        self.release_slots();
        let change = self.count_out(Self::interest_key(&subscription));
        self.release_bytes(&subscription);
        Some((subscription, change))
    }

    /// Checks that one more subscription to (pattern, queue) keeps
    /// `connection` within `connection_bytes_max` and its identity (if
    /// any) within its limit, and charges it to both. Err: which limit it
    /// would pass, for the Error frame.
    pub fn reserve_bytes(
        &mut self,
        connection: ConnectionKey,
        pattern: &[u8],
        queue: Option<&[u8]>,
        connection_bytes_max: usize,
        identity: Option<IdentityLimit<'_>>,
    ) -> Result<(), String> {
        let bytes = subscription_bytes(pattern, queue);
        let held = self.held_bytes.get(&connection);
        let connection_bytes = held.map_or(0, |held| held.bytes) + bytes;
        if connection_bytes > connection_bytes_max {
            return Err(format!(
                "this connection's subscriptions would hold {connection_bytes} bytes, over \
                 limits.subscription_bytes_max ({connection_bytes_max})"
            ));
        }
        let counter = match (held, identity) {
            (Some(held), _) => held.identity.clone(),
            (None, Some(identity)) => Some(identity.counter.clone()),
            (None, None) => None,
        };
        if let (Some(counter), Some(identity)) = (&counter, identity) {
            let charged = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|total| *total <= identity.bytes_max)
            });
            if let Err(held) = charged {
                return Err(format!(
                    "the subscriptions of {} would hold {} bytes, over limits.identity_subscription_bytes_max ({})",
                    identity.name,
                    held.saturating_add(bytes),
                    identity.bytes_max
                ));
            }
        }
        self.held_bytes.entry(connection).or_insert(HeldBytes { bytes: 0, identity: counter }).bytes += bytes;
        Ok(())
    }

    /// Subscription bytes `connection` holds.
    pub fn connection_bytes(&self, connection: ConnectionKey) -> usize {
        self.held_bytes.get(&connection).map_or(0, |held| held.bytes)
    }

    fn release_bytes(&mut self, subscription: &Subscription) {
        let Some(held) = self.held_bytes.get_mut(&subscription.connection) else {
            debug_assert!(false, "a subscription added without reserve_bytes");
            return;
        };
        let bytes = subscription_bytes(&subscription.pattern, subscription.queue.as_deref());
        debug_assert!(held.bytes >= bytes);
        held.bytes = held.bytes.saturating_sub(bytes);
        if let Some(counter) = &held.identity {
            counter.fetch_sub(bytes, Ordering::Relaxed);
        }
        if held.bytes == 0 {
            self.held_bytes.remove(&subscription.connection);
            shrink_if_mostly_empty(&mut self.held_bytes);
        }
    }

    /// Drops free slots at the end of the slab and shrinks what is mostly unused.
    fn release_slots(&mut self) {
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        // Entries past the end are dropped once they outnumber the real
        // free slots (so each is looked at a bounded number of times).
        let free = self.slots.len() - self.trie.len();
        if self.free_slots.len() > 2 * free + 64 {
            let end = self.slots.len();
            self.free_slots.retain(|Reverse(slot)| (*slot as usize) < end);
        }
        if self.slots.capacity() > 64 && self.slots.len() * 4 < self.slots.capacity() {
            self.slots.shrink_to_fit();
        }
        if self.free_slots.capacity() > 64 && self.free_slots.len() * 4 < self.free_slots.capacity() {
            self.free_slots.shrink_to_fit();
        }
    }

    /// Gives a subscription a new filter (a reload changed its identity's
    /// permissions). Returns the filter it had and what the move did to the
    /// interest under the new filter and under the old one, in that order.
    pub fn refilter(
        &mut self,
        slot: u32,
        delivery_filter: Option<DeliveryFilter>,
    ) -> Option<(Option<DeliveryFilter>, InterestChange, InterestChange)> {
        let subscription = self.slots.get_mut(slot as usize)?.as_mut()?;
        if subscription.delivery_filter == delivery_filter {
            return None;
        }
        let old_filter = std::mem::replace(&mut subscription.delivery_filter, delivery_filter);
        let new_key = Self::interest_key(subscription);
        let old_key = (new_key.0.clone(), new_key.1.clone(), old_filter.clone());
        let gained = self.count_in(new_key);
        let lost = self.count_out(old_key);
        Some((old_filter, gained, lost))
    }

    fn interest_key(subscription: &Subscription) -> InterestKey {
        (subscription.pattern.clone(), subscription.queue.clone(), subscription.delivery_filter.clone())
    }

    fn count_in(&mut self, key: InterestKey) -> InterestChange {
        let count = self.local_counts.entry(key).or_insert(0);
        *count += 1;
        if *count == 1 {
            InterestChange::Gained
        } else {
            InterestChange::Unchanged
        }
    }

    fn count_out(&mut self, key: InterestKey) -> InterestChange {
        let count = self.local_counts.get_mut(&key).expect("every subscription is counted");
        *count -= 1;
        if *count == 0 {
            self.local_counts.remove(&key);
            shrink_if_mostly_empty(&mut self.local_counts);
            InterestChange::Lost
        } else {
            InterestChange::Unchanged
        }
    }
}

/// Shrinks a map with more than four times the room it needs.
fn shrink_if_mostly_empty<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reserves (no limits) and adds, as the shard does.
    fn add(
        subscriptions: &mut Subscriptions,
        connection: ConnectionKey,
        subscription_id: u64,
        pattern: &Bytes,
        queue: Option<Bytes>,
    ) -> (u32, InterestChange) {
        subscriptions.reserve_bytes(connection, pattern, queue.as_deref(), usize::MAX, None).expect("no limit");
        subscriptions.add(connection, subscription_id, pattern.clone(), queue, None)
    }

    #[test]
    fn interest_changes_only_on_first_and_last() {
        let mut subscriptions = Subscriptions::default();
        let pattern = Bytes::from_static(b"a.>");
        let (first, change) = add(&mut subscriptions, 1, 10, &pattern, None);
        assert_eq!(change, InterestChange::Gained);
        let (second, change) = add(&mut subscriptions, 2, 10, &pattern, None);
        assert_eq!(change, InterestChange::Unchanged);
        let (_, change) = add(&mut subscriptions, 2, 11, &pattern, Some(Bytes::from_static(b"q")));
        assert_eq!(change, InterestChange::Gained, "a queue group is its own interest");
        assert_eq!(subscriptions.remove(first).map(|(_, change)| change), Some(InterestChange::Unchanged));
        assert_eq!(subscriptions.remove(second).map(|(_, change)| change), Some(InterestChange::Lost));
        assert!(subscriptions.remove(second).is_none());
        assert_eq!(subscriptions.len(), 1);
    }

    #[test]
    fn subscription_bytes_are_limited_per_connection_and_given_back() {
        let mut subscriptions = Subscriptions::default();
        let pattern = Bytes::from_static(b"orders.eu.created");
        let each = subscription_bytes(&pattern, None);
        let limit = 3 * each;
        for id in 0..3 {
            subscriptions.reserve_bytes(1, &pattern, None, limit, None).expect("within the limit");
            subscriptions.add(1, id, pattern.clone(), None, None);
        }
        let refused = subscriptions.reserve_bytes(1, &pattern, None, limit, None).expect_err("over the limit");
        assert!(refused.contains("limits.subscription_bytes_max"), "{refused}");
        assert_eq!(subscriptions.connection_bytes(1), limit);
        subscriptions.reserve_bytes(2, &pattern, None, limit, None).expect("another connection has its own bytes");
        subscriptions.add(2, 0, pattern.clone(), None, None);
        subscriptions.remove(0).expect("present");
        assert_eq!(subscriptions.connection_bytes(1), limit - each);
        subscriptions.reserve_bytes(1, &pattern, None, limit, None).expect("room again");
        assert_eq!(subscriptions.connection_bytes(1), limit);
    }

    #[test]
    fn identity_bytes_are_shared_by_shards_and_given_back() {
        let (svc, other_counter) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let held = |counter: &Arc<AtomicUsize>| counter.load(Ordering::Relaxed);
        let pattern = Bytes::from_static(b"a.b");
        let each = subscription_bytes(&pattern, Some(b"workers"));
        let identity = IdentityLimit { name: "svc", counter: &svc, bytes_max: 3 * each };
        // Two shards, one connection of the identity on each.
        let mut shards = [Subscriptions::default(), Subscriptions::default()];
        let queue = Some(Bytes::from_static(b"workers"));
        for (id, shard) in [0, 1, 0].into_iter().enumerate() {
            shards[shard].reserve_bytes(7, &pattern, Some(b"workers"), usize::MAX, Some(identity)).expect("within");
            shards[shard].add(7, id as u64, pattern.clone(), queue.clone(), None);
        }
        assert_eq!(held(&svc), 3 * each);
        let refused = shards[1].reserve_bytes(7, &pattern, Some(b"workers"), usize::MAX, Some(identity));
        assert!(refused.expect_err("over").contains("limits.identity_subscription_bytes_max"));
        assert_eq!(held(&svc), 3 * each, "a refusal charges nothing");
        let (slot, _) = {
            let other = IdentityLimit { name: "other", counter: &other_counter, ..identity };
            shards[1].reserve_bytes(8, &pattern, None, usize::MAX, Some(other)).expect("another identity");
            shards[1].add(8, 0, pattern.clone(), None, None)
        };
        assert_eq!(held(&other_counter), subscription_bytes(&pattern, None));
        shards[1].remove(slot).expect("present");
        assert_eq!(held(&other_counter), 0);
        // The connection on shard 0 closes: its two subscriptions go.
        for slot in [0, 1] {
            shards[0].remove(slot).expect("present");
        }
        assert_eq!(held(&svc), each);
        shards[1].reserve_bytes(7, &pattern, Some(b"workers"), usize::MAX, Some(identity)).expect("room again");
        assert_eq!(held(&svc), 2 * each);
    }

    #[test]
    fn memory_goes_back_as_subscriptions_go() {
        let mut subscriptions = Subscriptions::default();
        let patterns: Vec<Bytes> = (0..1000).map(|index| Bytes::from(format!("many.{index}.x"))).collect();
        let slots: Vec<u32> = patterns
            .iter()
            .enumerate()
            .map(|(id, pattern)| add(&mut subscriptions, 1, id as u64, pattern, None).0)
            .collect();
        // Remove all but the first ten: the end of the slab goes.
        for slot in &slots[10..] {
            subscriptions.remove(*slot).expect("present");
        }
        assert_eq!(subscriptions.slots.len(), 10);
        assert!(subscriptions.slots.capacity() <= 64, "{}", subscriptions.slots.capacity());
        assert!(subscriptions.local_counts.capacity() <= 64);
        // A hole is refilled before the slab grows.
        subscriptions.remove(slots[3]).expect("present");
        assert_eq!(add(&mut subscriptions, 1, 5000, &patterns[3], None).0, slots[3]);
        for slot in &slots[..10] {
            subscriptions.remove(*slot).expect("present");
        }
        assert!(subscriptions.is_empty());
        assert!(subscriptions.slots.is_empty() && subscriptions.held_bytes.is_empty());
        assert_eq!(add(&mut subscriptions, 1, 6000, &patterns[0], None).0, 0);
    }
}
