//! The subscriptions held by one shard's connections.
//!
//! A slab of subscriptions indexed by slot, a trie from pattern to slot for
//! matching, and a count per (pattern, queue, filter) of local subscriptions,
//! whose transitions between 0 and 1 are what the shard broadcasts as
//! interest.
//!
//! Invariants: a slot is in the trie exactly while it is occupied; the count
//! for (pattern, queue, filter) equals the number of occupied slots with
//! that triple.

use std::collections::HashMap;

use bytes::Bytes;

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

#[derive(Debug, Default)]
pub struct Subscriptions {
    slots: Vec<Option<Subscription>>,
    free_slots: Vec<u32>,
    pub trie: SubjectTrie<u32>,
    local_counts: HashMap<InterestKey, u32>,
}

impl Subscriptions {
    pub fn get(&self, slot: u32) -> Option<&Subscription> {
        self.slots.get(slot as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Subscription> {
        self.slots.get_mut(slot as usize)?.as_mut()
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
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
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
            delivery_filter,
        });
        (slot, change)
    }

    /// Removes a subscription; returns it and what that did to interest.
    pub fn remove(&mut self, slot: u32) -> Option<(Subscription, InterestChange)> {
        let subscription = self.slots.get_mut(slot as usize)?.take()?;
        let removed = self.trie.remove(&subscription.pattern, |value| *value == slot);
        debug_assert_eq!(removed, Some(slot));
        self.free_slots.push(slot);
        let change = self.count_out(Self::interest_key(&subscription));
        Some((subscription, change))
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
            InterestChange::Lost
        } else {
            InterestChange::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_changes_only_on_first_and_last() {
        let mut subscriptions = Subscriptions::default();
        let pattern = Bytes::from_static(b"a.>");
        let (first, change) = subscriptions.add(1, 10, pattern.clone(), None, None);
        assert_eq!(change, InterestChange::Gained);
        let (second, change) = subscriptions.add(2, 10, pattern.clone(), None, None);
        assert_eq!(change, InterestChange::Unchanged);
        let (_, change) = subscriptions.add(2, 11, pattern.clone(), Some(Bytes::from_static(b"q")), None);
        assert_eq!(change, InterestChange::Gained, "a queue group is its own interest");
        assert_eq!(subscriptions.remove(first).map(|(_, change)| change), Some(InterestChange::Unchanged));
        assert_eq!(subscriptions.remove(second).map(|(_, change)| change), Some(InterestChange::Lost));
        assert!(subscriptions.remove(second).is_none());
        assert_eq!(subscriptions.len(), 1);
    }
}
