//! Which shards want which subjects: every shard's copy of everyone's interest.
//!
//! Each shard keeps this table for all shards, itself included, so the shard
//! that reads a publish can decide alone, with no round trip, which shards get
//! the message (at most one cross-shard hop per delivery). The cost is that
//! every subscribe or unsubscribe that changes a shard's interest in a
//! (pattern, queue group) pair is broadcast to all other shards; see
//! docs/SEMANTICS.md for what that costs and the window it leaves.
//!
//! Queue groups: an entry with a queue records which shards hold members. The
//! publishing shard picks one of them (round robin over shards) and tells
//! that shard which groups it must serve; the member on that shard is picked
//! there. So each message reaches exactly one member per group.
//!
//! Filters: a shard's interest may come with a [`DeliveryFilter`] (its
//! subscriptions of a restricted identity may not receive every subject the
//! pattern matches). The publishing shard counts such a shard as interested
//! in a subject only if the filter permits it, and picks a queue group's
//! member shard only among those, so a filtered member is never picked for
//! a message it may not receive.
//!
//! Invariants: an entry exists only while at least one shard's bit is set
//! in it (unfiltered, or under some filter); a shard's bit is set under a
//! filter exactly while that shard has told us it has interest under it.

use bytes::Bytes;
use smallvec::SmallVec;

use crate::delivery_filter::DeliveryFilter;
use crate::trie::SubjectTrie;

/// One bit per shard.
pub type ShardMask = u64;
/// Shards a process can run: one bit each in a [`ShardMask`].
pub const SHARDS_MAX: usize = 64;

/// Identifies a queue group (pattern + queue name) across shards.
pub type GroupKey = u64;

/// Groups a target shard must serve with one of its members.
pub type QueuePicks = SmallVec<[GroupKey; 4]>;

/// FNV-1a over the pattern, a separator no subject holds, and the queue name.
/// Deterministic, so every shard computes the same key for the same group.
pub fn group_key(pattern: &[u8], queue: &[u8]) -> GroupKey {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in pattern.iter().chain(std::iter::once(&b' ')).chain(queue) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[derive(Debug)]
struct InterestEntry {
    queue: Option<Bytes>,
    group_key: GroupKey,
    /// Shards with interest and no filter.
    shards: ShardMask,
    /// Shards with interest under a filter, one mask per filter.
    filtered: Vec<(DeliveryFilter, ShardMask)>,
    next_pick: u32,
}

impl InterestEntry {
    /// Shards that may receive a message on `subject`.
    fn shards_for(&self, subject: &[u8]) -> ShardMask {
        let mut shards = self.shards;
        for (filter, filtered_shards) in &self.filtered {
            // A filter is checked only when it could add a shard.
            if filtered_shards & !shards != 0 && filter.permits(subject) {
                shards |= filtered_shards;
            }
        }
        shards
    }

    /// The mask that `filter` (None: unfiltered) keeps, created if missing.
    fn mask_mut(&mut self, filter: Option<&DeliveryFilter>) -> &mut ShardMask {
        let Some(filter) = filter else { return &mut self.shards };
        let index = match self.filtered.iter().position(|(known, _)| known == filter) {
            Some(index) => index,
            None => {
                self.filtered.push((filter.clone(), 0));
                self.filtered.len() - 1
            }
        };
        &mut self.filtered[index].1
    }

    fn is_empty(&self) -> bool {
        self.shards == 0 && self.filtered.is_empty()
    }
}

/// Where one published message must go.
#[derive(Debug, Default)]
pub struct Route {
    /// Shards that get the message at all.
    pub targets: ShardMask,
    /// (shard, group) pairs: that shard delivers to one member of that group.
    pub queue_picks: SmallVec<[(u8, GroupKey); 8]>,
}

impl Route {
    pub fn clear(&mut self) {
        self.targets = 0;
        self.queue_picks.clear();
    }

    /// The groups `shard` must serve.
    pub fn picks_for(&self, shard: usize) -> QueuePicks {
        self.queue_picks.iter().filter(|(target, _)| usize::from(*target) == shard).map(|(_, key)| *key).collect()
    }
}

#[derive(Debug, Default)]
pub struct InterestTable {
    trie: SubjectTrie<InterestEntry>,
}

impl InterestTable {
    /// Records that `shard` has interest in (pattern, queue) under `filter`.
    pub fn add(&mut self, pattern: &[u8], queue: Option<&Bytes>, filter: Option<&DeliveryFilter>, shard: usize) {
        debug_assert!(shard < SHARDS_MAX);
        let same_queue = |entry: &InterestEntry| entry.queue.as_ref() == queue;
        if let Some(entry) = self.trie.find_mut(pattern, same_queue) {
            *entry.mask_mut(filter) |= 1 << shard;
            return;
        }
        let group_key = queue.map_or(0, |queue| group_key(pattern, queue));
        let mut entry =
            InterestEntry { queue: queue.cloned(), group_key, shards: 0, filtered: Vec::new(), next_pick: 0 };
        *entry.mask_mut(filter) |= 1 << shard;
        self.trie.insert(pattern, entry);
    }

    /// Records that `shard` no longer has interest in (pattern, queue) under `filter`.
    pub fn remove(&mut self, pattern: &[u8], queue: Option<&Bytes>, filter: Option<&DeliveryFilter>, shard: usize) {
        let same_queue = |entry: &InterestEntry| entry.queue.as_ref() == queue;
        let Some(entry) = self.trie.find_mut(pattern, same_queue) else {
            debug_assert!(false, "interest removed that was never added");
            return;
        };
        *entry.mask_mut(filter) &= !(1 << shard);
        entry.filtered.retain(|(_, shards)| *shards != 0);
        if entry.is_empty() {
            self.trie.remove(pattern, |entry| entry.queue.as_ref() == queue);
        }
    }

    /// Number of (pattern, queue) entries, for tests and metrics.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// Fills `route` for a message on `subject`.
    pub fn route(&mut self, subject: &[u8], route: &mut Route) {
        route.clear();
        self.trie.visit_matches(subject, &mut |entry: &mut InterestEntry| {
            let shards = entry.shards_for(subject);
            if entry.queue.is_none() {
                route.targets |= shards;
                return;
            }
            let members = shards.count_ones();
            if members == 0 {
                // Every member may not receive this subject.
                return;
            }
            let nth = entry.next_pick % members;
            entry.next_pick = entry.next_pick.wrapping_add(1);
            let shard = nth_set_bit(shards, nth);
            route.targets |= 1 << shard;
            route.queue_picks.push((shard as u8, entry.group_key));
        });
    }
}

/// Index of the `nth` (from 0) set bit of `mask`, which has more than `nth`.
fn nth_set_bit(mut mask: ShardMask, nth: u32) -> u32 {
    for _ in 0..nth {
        mask &= mask - 1;
    }
    mask.trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_interest_unions_shards() {
        let mut table = InterestTable::default();
        table.add(b"a.*", None, None, 0);
        table.add(b"a.b", None, None, 2);
        let mut route = Route::default();
        table.route(b"a.b", &mut route);
        assert_eq!(route.targets, 0b101);
        table.remove(b"a.b", None, None, 2);
        table.route(b"a.b", &mut route);
        assert_eq!(route.targets, 0b001);
        table.remove(b"a.*", None, None, 0);
        assert!(table.is_empty());
    }

    #[test]
    fn queue_group_picks_rotate_over_member_shards() {
        let mut table = InterestTable::default();
        let queue = Bytes::from_static(b"workers");
        table.add(b"jobs", Some(&queue), None, 1);
        table.add(b"jobs", Some(&queue), None, 3);
        let mut route = Route::default();
        let mut picked = Vec::new();
        for _ in 0..4 {
            table.route(b"jobs", &mut route);
            assert_eq!(route.queue_picks.len(), 1, "exactly one member shard per message");
            picked.push(route.queue_picks[0].0);
        }
        assert_eq!(picked, vec![1, 3, 1, 3]);
        assert_eq!(route.picks_for(3).as_slice(), &[group_key(b"jobs", b"workers")]);
    }

    #[test]
    fn queue_group_picks_only_shards_whose_member_may_receive() {
        use crate::auth::{Pattern, Permissions, Rule};
        let deny = vec![Pattern::parse("orders.audit.>").expect("valid")];
        let permissions = std::sync::Arc::new(Permissions {
            publish: Rule::open(),
            subscribe: Rule { allow: None, deny },
            streams_admin: false,
        });
        let filter = DeliveryFilter::new(permissions, false);
        let mut table = InterestTable::default();
        let queue = Bytes::from_static(b"g");
        table.add(b"orders.>", Some(&queue), None, 0);
        table.add(b"orders.>", Some(&queue), Some(&filter), 1);
        let mut route = Route::default();
        for _ in 0..6 {
            table.route(b"orders.audit.x", &mut route);
            assert_eq!(route.queue_picks.as_slice(), &[(0, group_key(b"orders.>", b"g"))]);
        }
        let mut picked = Vec::new();
        for _ in 0..4 {
            table.route(b"orders.eu.x", &mut route);
            picked.push(route.queue_picks[0].0);
        }
        picked.sort_unstable();
        assert_eq!(picked, vec![0, 0, 1, 1], "both members share what both may receive");
        table.remove(b"orders.>", Some(&queue), None, 0);
        table.route(b"orders.audit.x", &mut route);
        assert_eq!(route.targets, 0, "nobody may receive it: no target at all");
        table.remove(b"orders.>", Some(&queue), Some(&filter), 1);
        assert!(table.is_empty());
    }

    #[test]
    fn nth_set_bit_walks_the_mask() {
        assert_eq!(nth_set_bit(0b1010_0100, 0), 2);
        assert_eq!(nth_set_bit(0b1010_0100, 1), 5);
        assert_eq!(nth_set_bit(0b1010_0100, 2), 7);
    }
}
