//! The subscriptions held by one shard's connections.
//!
//! A slab of subscriptions indexed by slot, a trie from pattern to slot for
//! matching, and a count per (pattern, queue) of local subscriptions, whose
//! transitions between 0 and 1 are what the shard broadcasts as interest.
//!
//! Invariants: a slot is in the trie exactly while it is occupied; the count
//! for (pattern, queue) equals the number of occupied slots with that pair.

use std::collections::HashMap;

use bytes::Bytes;

use crate::connection::ConnectionKey;
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
    /// For a pattern that overlaps its identity's subscribe deny list:
    /// deliveries on subjects that list matches are dropped.
    pub delivery_filter: Option<std::sync::Arc<crate::auth::Permissions>>,
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

#[derive(Debug, Default)]
pub struct Subscriptions {
    slots: Vec<Option<Subscription>>,
    free_slots: Vec<u32>,
    pub trie: SubjectTrie<u32>,
    local_counts: HashMap<(Bytes, Option<Bytes>), u32>,
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
        let count = self.local_counts.entry((pattern.clone(), queue.clone())).or_insert(0);
        *count += 1;
        let change = if *count == 1 { InterestChange::Gained } else { InterestChange::Unchanged };
        self.slots[slot as usize] = Some(Subscription {
            connection,
            subscription_id,
            pattern,
            queue,
            group_key,
            remaining: None,
            delivery_filter: None,
        });
        (slot, change)
    }

    /// Removes a subscription; returns it and what that did to interest.
    pub fn remove(&mut self, slot: u32) -> Option<(Subscription, InterestChange)> {
        let subscription = self.slots.get_mut(slot as usize)?.take()?;
        let removed = self.trie.remove(&subscription.pattern, |value| *value == slot);
        debug_assert_eq!(removed, Some(slot));
        self.free_slots.push(slot);
        let pair = (subscription.pattern.clone(), subscription.queue.clone());
        let count = self.local_counts.get_mut(&pair).expect("every subscription is counted");
        *count -= 1;
        let change = if *count == 0 {
            self.local_counts.remove(&pair);
            InterestChange::Lost
        } else {
            InterestChange::Unchanged
        };
        Some((subscription, change))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_changes_only_on_first_and_last() {
        let mut subscriptions = Subscriptions::default();
        let pattern = Bytes::from_static(b"a.>");
        let (first, change) = subscriptions.add(1, 10, pattern.clone(), None);
        assert_eq!(change, InterestChange::Gained);
        let (second, change) = subscriptions.add(2, 10, pattern.clone(), None);
        assert_eq!(change, InterestChange::Unchanged);
        let (_, change) = subscriptions.add(2, 11, pattern.clone(), Some(Bytes::from_static(b"q")));
        assert_eq!(change, InterestChange::Gained, "a queue group is its own interest");
        assert_eq!(subscriptions.remove(first).map(|(_, change)| change), Some(InterestChange::Unchanged));
        assert_eq!(subscriptions.remove(second).map(|(_, change)| change), Some(InterestChange::Lost));
        assert!(subscriptions.remove(second).is_none());
        assert_eq!(subscriptions.len(), 1);
    }
}
