//! Which other nodes want which subjects, as one shard knows it: the
//! interest every peer announced over its routes, reference-counted per
//! (node, pattern, queue), in a subject trie like the local interest table.
//!
//! Each node's shards announce their own interest changes over their own
//! lanes (a shard's 0 -> 1 and 1 -> 0 for a (pattern, queue)), so one node
//! may announce the same pair several times: the count is per node, and the
//! node is interested while it is above zero. When a lane closes, everything
//! it announced is withdrawn with it (`RouteLanes` keeps what each lane said).
//!
//! Invariants: an entry exists only while some node counts it; `route` reports
//! each node at most once per message (one forward per node), and for queue
//! groups only the groups, not the nodes, so the caller picks one node.

use bytes::Bytes;
use smallvec::SmallVec;

use crate::interest::{group_key, GroupKey};
use crate::trie::SubjectTrie;

/// Node ids are dense indices below this (a `u64` mask per message).
pub const CLUSTER_NODES_MAX: usize = 64;

/// A set of node indices.
pub type NodeMask = u64;

#[derive(Debug)]
struct RemoteEntry {
    pattern: Bytes,
    queue: Option<Bytes>,
    group: GroupKey,
    /// Count per node index (0: not interested).
    counts: [u32; CLUSTER_NODES_MAX],
    nodes: NodeMask,
}

/// What other nodes want a subject: every node with plain interest, and
/// each queue group with the nodes that have members of it.
#[derive(Debug, Default)]
pub struct RemoteRoute {
    pub nodes: NodeMask,
    pub groups: SmallVec<[(GroupKey, NodeMask); 4]>,
}

impl RemoteRoute {
    pub fn clear(&mut self) {
        self.nodes = 0;
        self.groups.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.nodes == 0 && self.groups.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct RemoteInterest {
    trie: SubjectTrie<RemoteEntry>,
}

impl RemoteInterest {
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// `node` announced (or withdrew, `added` false) interest in the pair.
    /// A withdrawal of something never announced changes nothing.
    pub fn apply(&mut self, node: usize, pattern: &[u8], queue: Option<&[u8]>, added: bool) {
        debug_assert!(node < CLUSTER_NODES_MAX);
        let same = |entry: &RemoteEntry| entry.queue.as_deref() == queue;
        if let Some(entry) = self.trie.find_mut(pattern, same) {
            let count = &mut entry.counts[node];
            if added {
                *count += 1;
                entry.nodes |= 1 << node;
            } else if *count > 0 {
                *count -= 1;
                if *count == 0 {
                    entry.nodes &= !(1 << node);
                }
            }
            if entry.nodes == 0 {
                self.trie.remove(pattern, same);
            }
            return;
        }
        if !added {
            return;
        }
        let mut entry = RemoteEntry {
            pattern: Bytes::copy_from_slice(pattern),
            queue: queue.map(Bytes::copy_from_slice),
            group: queue.map_or(0, |queue| group_key(pattern, queue)),
            counts: [0; CLUSTER_NODES_MAX],
            nodes: 1 << node,
        };
        entry.counts[node] = 1;
        self.trie.insert(pattern, entry);
    }

    /// Forgets everything `node` announced (it left, or all its lanes closed).
    pub fn forget_node(&mut self, node: usize) {
        let mut emptied = Vec::new();
        self.trie.visit_all(&mut |entry: &mut RemoteEntry| {
            entry.counts[node] = 0;
            entry.nodes &= !(1 << node);
            if entry.nodes == 0 {
                emptied.push((entry.pattern.clone(), entry.queue.clone()));
            }
        });
        for (pattern, queue) in emptied {
            self.trie.remove(&pattern, |entry| entry.queue == queue);
        }
    }

    /// The nodes (and queue groups) that want `subject`.
    pub fn route(&mut self, subject: &[u8], route: &mut RemoteRoute) {
        route.clear();
        self.trie.visit_matches(subject, &mut |entry: &mut RemoteEntry| {
            if entry.queue.is_none() {
                route.nodes |= entry.nodes;
            } else if let Some(slot) = route.groups.iter_mut().find(|(group, _)| *group == entry.group) {
                slot.1 |= entry.nodes;
            } else {
                route.groups.push((entry.group, entry.nodes));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(table: &mut RemoteInterest, subject: &str) -> RemoteRoute {
        let mut route = RemoteRoute::default();
        table.route(subject.as_bytes(), &mut route);
        route
    }

    #[test]
    fn a_node_is_interested_while_its_count_is_above_zero() {
        let mut table = RemoteInterest::default();
        table.apply(2, b"orders.>", None, true);
        table.apply(2, b"orders.>", None, true);
        table.apply(5, b"orders.*", None, true);
        assert_eq!(routed(&mut table, "orders.new").nodes, (1 << 2) | (1 << 5));
        table.apply(2, b"orders.>", None, false);
        assert_eq!(routed(&mut table, "orders.new").nodes, (1 << 2) | (1 << 5), "one announcement left");
        table.apply(2, b"orders.>", None, false);
        assert_eq!(routed(&mut table, "orders.new").nodes, 1 << 5);
        table.apply(5, b"orders.*", None, false);
        assert!(routed(&mut table, "orders.new").is_empty());
        assert!(table.is_empty(), "entries go with their last count");
    }

    #[test]
    fn queue_groups_are_reported_per_group_with_their_nodes() {
        let mut table = RemoteInterest::default();
        table.apply(1, b"work", Some(b"pool"), true);
        table.apply(3, b"work", Some(b"pool"), true);
        table.apply(3, b"work", Some(b"other"), true);
        let route = routed(&mut table, "work");
        assert_eq!(route.nodes, 0, "queue members are not plain interest");
        let mut groups = route.groups.to_vec();
        groups.sort();
        let mut expected =
            vec![(group_key(b"work", b"pool"), (1 << 1) | (1 << 3)), (group_key(b"work", b"other"), 1 << 3)];
        expected.sort();
        assert_eq!(groups, expected);
    }

    #[test]
    fn forgetting_a_node_withdraws_all_it_said_and_nothing_else() {
        let mut table = RemoteInterest::default();
        table.apply(1, b"a.>", None, true);
        table.apply(1, b"b", Some(b"q"), true);
        table.apply(2, b"a.>", None, true);
        table.forget_node(1);
        assert_eq!(routed(&mut table, "a.x").nodes, 1 << 2);
        assert!(routed(&mut table, "b").is_empty());
        table.apply(1, b"a.>", None, false);
        assert_eq!(routed(&mut table, "a.x").nodes, 1 << 2, "a late withdrawal of a forgotten count is harmless");
    }
}
