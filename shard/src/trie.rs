//! A subject trie: patterns in, every value whose pattern matches a subject out.
//!
//! A radix tree over tokens: every edge is labelled with one or more whole
//! tokens (`orders.eu.created`, `*.created`), so a chain of nodes that would
//! hold nothing but the next node is one edge. A pattern therefore costs at
//! most one new edge and one split node, plus a copy of its bytes, however
//! many tokens it has.
//!
//! A node keeps its edges that start with a literal token in a boxed slice
//! (scanned in order) while it has at most [`FEW_EDGES_MAX`] of them, and in
//! a hash table keyed by each edge's first token past that; the edge that
//! starts with `*` has a slot of its own. Values of patterns that end at a
//! node and of patterns that end there followed by `>` share one small
//! vector, the first kind before the second; one value is held inline.
//!
//! Matching walks only the branches the subject can take, so its cost
//! depends on the subject's length and the wildcards along the way, not on
//! how many patterns are stored. It allocates nothing: it recurses over the
//! subject's bytes and calls the visitor in place.
//!
//! Measured (tests/subscription_memory.rs, docs/OPERATIONS.md): what a
//! subscription costs no longer grows with its token count; before this
//! layout, one hash map per token made a 32-token subscription cost 31 KB.
//!
//! Hash tables use FxHash, not SipHash: tokens are short and the table is
//! walked once or twice per message; hash flooding is bounded by the
//! per-connection subscription limits.
//!
//! Invariants:
//! - no two literal edges of a node share a first token, and no edge label
//!   holds `>`;
//! - every node but the root holds a value or has at least two edges (a
//!   removal that leaves a node with one edge and no value merges the two
//!   labels), and an empty node is removed. So memory follows the live
//!   patterns: at most two nodes per pattern, and the edge lists, tables and
//!   value vectors shrink when they empty out.

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;
use std::hash::BuildHasher;

/// Most literal edges a node keeps in a scanned slice; one more and they
/// move to a hash table, which moves back at half this.
pub const FEW_EDGES_MAX: usize = 16;

/// Bytes of the first token and what follows the first `.`, if anything.
fn split_first_token(subject: &[u8]) -> (&[u8], Option<&[u8]>) {
    match subject.iter().position(|byte| *byte == b'.') {
        Some(dot) => (&subject[..dot], Some(&subject[dot + 1..])),
        None => (subject, None),
    }
}

/// Whether `label` starts with the whole token `token`.
fn starts_with_token(label: &[u8], token: &[u8]) -> bool {
    label.starts_with(token) && label.get(token.len()).is_none_or(|byte| *byte == b'.')
}

/// If `prefix` is `text`'s first whole tokens (compared byte for byte, so a
/// `*` only equals a `*`): `Some` of what follows it (`None`: nothing).
fn after_prefix<'t>(prefix: &[u8], text: &'t [u8]) -> Option<Option<&'t [u8]>> {
    if !text.starts_with(prefix) {
        return None;
    }
    match text.get(prefix.len()) {
        None => Some(None),
        Some(b'.') => Some(Some(&text[prefix.len() + 1..])),
        Some(_) => None,
    }
}

/// Length of the longest run of whole tokens `left` and `right` both start with.
fn common_tokens_len(left: &[u8], right: &[u8]) -> usize {
    let mut common = 0;
    for (index, (a, b)) in left.iter().zip(right).enumerate() {
        if a != b {
            return common;
        }
        if *a == b'.' {
            common = index;
        }
    }
    let shorter = left.len().min(right.len());
    if left.get(shorter).is_none_or(|byte| *byte == b'.') && right.get(shorter).is_none_or(|byte| *byte == b'.') {
        shorter
    } else {
        common
    }
}

/// Whether the tokens of `label` after its first hold a `*` (a `*` byte is
/// always a whole wildcard token in a valid pattern).
fn rest_has_wildcard(label: &[u8]) -> bool {
    split_first_token(label).1.is_some_and(|rest| rest.contains(&b'*'))
}

/// Matches `label` (tokens, `*` for any one) against the start of `subject`:
/// `Some` of what follows (`None`: nothing), or `None` if it does not match.
fn follow_with_wildcards<'s>(label: &[u8], subject: &'s [u8]) -> Option<Option<&'s [u8]>> {
    let (mut label, mut subject) = (label, subject);
    loop {
        let (label_token, label_next) = split_first_token(label);
        let (subject_token, subject_next) = split_first_token(subject);
        if label_token != b"*" && label_token != subject_token {
            return None;
        }
        match (label_next, subject_next) {
            (None, next) => return Some(next),
            (Some(_), None) => return None,
            (Some(label_rest), Some(subject_rest)) => (label, subject) = (label_rest, subject_rest),
        }
    }
}

fn token_hash(token: &[u8]) -> u64 {
    FxBuildHasher.hash_one(token)
}

fn edge_hash<V>(edge: &Edge<V>) -> u64 {
    token_hash(split_first_token(&edge.label).0)
}

#[derive(Debug)]
struct Edge<V> {
    /// One or more tokens; the first is a literal, or `*` for a node's wildcard edge.
    label: Box<[u8]>,
    node: Node<V>,
}

impl<V> Edge<V> {
    fn new(label: Box<[u8]>, mut node: Node<V>) -> Edge<V> {
        node.label_rest_has_wildcard = rest_has_wildcard(&label);
        Edge { label, node }
    }

    /// Where a subject whose first token the label's first token matched
    /// (`token`, `next`) goes on from, if it follows the whole label.
    #[inline]
    fn follow<'s>(&self, first_token_len: usize, next: Option<&'s [u8]>) -> Option<Option<&'s [u8]>> {
        if self.label.len() == first_token_len {
            return Some(next);
        }
        let label_rest = &self.label[first_token_len + 1..];
        if self.node.label_rest_has_wildcard {
            follow_with_wildcards(label_rest, next?)
        } else {
            after_prefix(label_rest, next?)
        }
    }

    /// Cuts the label after `at` bytes (a token boundary inside it): the
    /// edge keeps the first part and leads to a new node whose only edge is
    /// the rest, to the old node.
    fn split(&mut self, at: usize) {
        let lower = Edge::new(self.label[at + 1..].into(), std::mem::take(&mut self.node));
        let upper = Edge::new(self.label[..at].into(), Node::default());
        *self = upper;
        self.node.adopt(lower);
    }

    /// If the edge's node holds no value and has one edge, joins the two.
    fn merge_if_single(&mut self) {
        if !self.node.values.is_empty() || self.node.edge_count() != 1 {
            return;
        }
        let lower = self.node.take_only_edge();
        let mut label = Vec::with_capacity(self.label.len() + 1 + lower.label.len());
        label.extend_from_slice(&self.label);
        label.push(b'.');
        label.extend_from_slice(&lower.label);
        *self = Edge::new(label.into_boxed_slice(), lower.node);
    }
}

#[derive(Debug)]
enum Edges<V> {
    Few(Box<[Edge<V>]>),
    /// Boxed edges: an edge is 70 to 140 bytes (a value inline) and a
    /// table keeps 1/8 to 1/2 of its buckets empty, so a bucket holds a
    /// pointer. Edges are found by their first token, hashed and compared in
    /// place (hashbrown's `HashTable`), so it is not stored twice.
    Many(Box<HashTable<Box<Edge<V>>>>),
}

impl<V> Default for Edges<V> {
    fn default() -> Self {
        Edges::Few(Box::default())
    }
}

impl<V> Edges<V> {
    fn for_each_mut(&mut self, visit: &mut impl FnMut(&mut Edge<V>)) {
        match self {
            Edges::Few(edges) => edges.iter_mut().for_each(visit),
            Edges::Many(table) => table.iter_mut().for_each(|edge| visit(edge)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Edges::Few(edges) => edges.len(),
            Edges::Many(table) => table.len(),
        }
    }

    fn contains(&self, token: &[u8]) -> bool {
        match self {
            Edges::Few(edges) => edges.iter().any(|edge| starts_with_token(&edge.label, token)),
            Edges::Many(table) => table.find(token_hash(token), |edge| starts_with_token(&edge.label, token)).is_some(),
        }
    }

    #[inline]
    fn find_mut(&mut self, token: &[u8]) -> Option<&mut Edge<V>> {
        match self {
            Edges::Few(edges) => edges.iter_mut().find(|edge| starts_with_token(&edge.label, token)),
            Edges::Many(table) => {
                table.find_mut(token_hash(token), |edge| starts_with_token(&edge.label, token)).map(|edge| &mut **edge)
            }
        }
    }

    /// Adds an edge whose first token no edge here has.
    fn insert(&mut self, edge: Edge<V>) {
        match self {
            Edges::Few(edges) if edges.len() < FEW_EDGES_MAX => {
                let mut grown = Vec::with_capacity(edges.len() + 1);
                grown.extend(std::mem::take(edges));
                grown.push(edge);
                *edges = grown.into_boxed_slice();
            }
            Edges::Few(edges) => {
                let mut table = HashTable::with_capacity(edges.len() + 1);
                for edge in std::mem::take(edges).into_vec().into_iter().chain([edge]) {
                    table.insert_unique(edge_hash(&edge), Box::new(edge), |edge| edge_hash(edge));
                }
                *self = Edges::Many(Box::new(table));
            }
            Edges::Many(table) => {
                table.insert_unique(edge_hash(&edge), Box::new(edge), |edge| edge_hash(edge));
            }
        }
    }

    /// Removes the edge starting with `token`.
    fn remove(&mut self, token: &[u8]) -> Option<Edge<V>> {
        let removed = match self {
            Edges::Few(edges) => {
                let index = edges.iter().position(|edge| starts_with_token(&edge.label, token))?;
                let mut kept = std::mem::take(edges).into_vec();
                let removed = kept.swap_remove(index);
                *edges = kept.into_boxed_slice();
                removed
            }
            Edges::Many(table) => {
                let entry = table.find_entry(token_hash(token), |edge| starts_with_token(&edge.label, token)).ok()?;
                *entry.remove().0
            }
        };
        if let Edges::Many(table) = self {
            if table.len() <= FEW_EDGES_MAX / 2 {
                *self = Edges::Few(table.drain().map(|edge| *edge).collect());
            } else if table.len() * 4 < table.capacity() {
                table.shrink_to_fit(|edge| edge_hash(edge));
            }
        }
        Some(removed)
    }

    fn take_any(&mut self) -> Option<Edge<V>> {
        match self {
            Edges::Few(edges) => {
                let mut kept = std::mem::take(edges).into_vec();
                let taken = kept.pop();
                *edges = kept.into_boxed_slice();
                taken
            }
            Edges::Many(table) => {
                let taken = table.drain().next().map(|edge| *edge);
                *self = Edges::default();
                taken
            }
        }
    }
}

#[derive(Debug)]
struct Node<V> {
    edges: Edges<V>,
    wildcard: Option<Box<Edge<V>>>,
    /// Values of patterns that end here, then (from `tail_start`) of
    /// patterns that end here followed by `>`.
    values: SmallVec<[V; 1]>,
    tail_start: u32,
    /// The label of the edge into this node holds a `*` after its first
    /// token (matching it then goes token by token).
    label_rest_has_wildcard: bool,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            edges: Edges::default(),
            wildcard: None,
            values: SmallVec::new(),
            tail_start: 0,
            label_rest_has_wildcard: false,
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.values.is_empty() && self.edge_count() == 0
    }

    fn edge_count(&self) -> usize {
        self.edges.len() + usize::from(self.wildcard.is_some())
    }

    fn here(&mut self) -> &mut [V] {
        &mut self.values[..self.tail_start as usize]
    }

    fn tail(&mut self) -> &mut [V] {
        &mut self.values[self.tail_start as usize..]
    }

    fn push_here(&mut self, value: V) {
        self.values.push(value);
        let last = self.values.len() - 1;
        self.values.swap(self.tail_start as usize, last);
        self.tail_start += 1;
    }

    fn push_tail(&mut self, value: V) {
        self.values.push(value);
    }

    fn take_here(&mut self, is_target: impl FnMut(&V) -> bool) -> Option<V> {
        let index = self.here().iter().position(is_target)?;
        let last_here = self.tail_start as usize - 1;
        self.values.swap(index, last_here);
        let last = self.values.len() - 1;
        self.values.swap(last_here, last);
        self.tail_start -= 1;
        let taken = self.values.pop();
        self.shrink_values();
        taken
    }

    fn take_tail(&mut self, is_target: impl FnMut(&V) -> bool) -> Option<V> {
        let index = self.tail().iter().position(is_target)? + self.tail_start as usize;
        let taken = self.values.swap_remove(index);
        self.shrink_values();
        Some(taken)
    }

    fn shrink_values(&mut self) {
        if self.values.len() * 4 <= self.values.capacity() {
            self.values.shrink_to_fit();
        }
    }

    /// Adds an edge whose first token no edge here has.
    fn adopt(&mut self, edge: Edge<V>) {
        if starts_with_token(&edge.label, b"*") {
            debug_assert!(self.wildcard.is_none());
            self.wildcard = Some(Box::new(edge));
        } else {
            self.edges.insert(edge);
        }
    }

    fn take_only_edge(&mut self) -> Edge<V> {
        debug_assert_eq!(self.edge_count(), 1);
        match self.wildcard.take() {
            Some(edge) => *edge,
            None => self.edges.take_any().expect("one edge"),
        }
    }
}

/// Patterns (validated by `flit_wire::subject::validate_pattern`) to values.
#[derive(Debug)]
pub struct SubjectTrie<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for SubjectTrie<V> {
    fn default() -> Self {
        SubjectTrie { root: Node::default(), len: 0 }
    }
}

impl<V> SubjectTrie<V> {
    /// Number of values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` under `pattern`.
    pub fn insert(&mut self, pattern: &[u8], value: V) {
        self.len += 1;
        let mut node = &mut self.root;
        let mut rest = pattern;
        loop {
            let (token, _) = split_first_token(rest);
            if token == b">" {
                return node.push_tail(value);
            }
            let present = if token == b"*" { node.wildcard.is_some() } else { node.edges.contains(token) };
            if !present {
                // A new edge with the rest of the pattern (but a final `>`).
                let (label, tail) = match rest.strip_suffix(b".>") {
                    Some(label) => (label, true),
                    None => (rest, false),
                };
                let mut child = Node::default();
                if tail {
                    child.push_tail(value);
                } else {
                    child.push_here(value);
                }
                return node.adopt(Edge::new(label.into(), child));
            }
            let edge = if token == b"*" { node.wildcard.as_deref_mut() } else { node.edges.find_mut(token) };
            let edge = edge.expect("present");
            let common = common_tokens_len(&edge.label, rest);
            if common < edge.label.len() {
                edge.split(common);
            }
            node = &mut edge.node;
            match after_prefix(&edge.label, rest).expect("the label is a prefix now") {
                None => return node.push_here(value),
                Some(next) => rest = next,
            }
        }
    }

    /// Removes the first value under exactly `pattern` for which `is_target`
    /// holds, and returns it. Prunes emptied nodes and merges labels.
    pub fn remove(&mut self, pattern: &[u8], is_target: impl FnMut(&V) -> bool) -> Option<V> {
        let removed = Self::remove_in(&mut self.root, pattern, is_target);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_in(node: &mut Node<V>, rest: &[u8], is_target: impl FnMut(&V) -> bool) -> Option<V> {
        let (token, _) = split_first_token(rest);
        if token == b">" {
            return node.take_tail(is_target);
        }
        if token == b"*" {
            let edge = node.wildcard.as_deref_mut()?;
            let removed = Self::remove_below(edge, rest, is_target)?;
            if edge.node.is_empty() {
                node.wildcard = None;
            } else {
                edge.merge_if_single();
            }
            return Some(removed);
        }
        let edge = node.edges.find_mut(token)?;
        let removed = Self::remove_below(edge, rest, is_target)?;
        if edge.node.is_empty() {
            node.edges.remove(token);
        } else {
            // Tables hash the first token only, which a merge keeps.
            edge.merge_if_single();
        }
        Some(removed)
    }

    fn remove_below(edge: &mut Edge<V>, rest: &[u8], is_target: impl FnMut(&V) -> bool) -> Option<V> {
        match after_prefix(&edge.label, rest)? {
            None => edge.node.take_here(is_target),
            Some(next) => Self::remove_in(&mut edge.node, next, is_target),
        }
    }

    /// Finds the value under exactly `pattern` for which `is_target` holds.
    pub fn find_mut(&mut self, pattern: &[u8], mut is_target: impl FnMut(&V) -> bool) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut rest = pattern;
        loop {
            let (token, _) = split_first_token(rest);
            if token == b">" {
                return node.tail().iter_mut().find(|value| is_target(value));
            }
            let edge = if token == b"*" { node.wildcard.as_deref_mut()? } else { node.edges.find_mut(token)? };
            let next = after_prefix(&edge.label, rest)?;
            node = &mut edge.node;
            match next {
                None => return node.here().iter_mut().find(|value| is_target(value)),
                Some(next) => rest = next,
            }
        }
    }

    /// Calls `visit` for every value whose pattern matches `subject` (a valid
    /// publish subject). A value stored under several matching patterns is
    /// visited once per pattern.
    pub fn visit_matches(&mut self, subject: &[u8], visit: &mut impl FnMut(&mut V)) {
        Self::visit_in(&mut self.root, subject, visit);
    }

    fn visit_in(node: &mut Node<V>, subject: &[u8], visit: &mut impl FnMut(&mut V)) {
        // At least one token remains here, so every `>` at this node matches.
        node.tail().iter_mut().for_each(&mut *visit);
        let (token, next) = split_first_token(subject);
        if let Some(edge) = node.edges.find_mut(token) {
            if let Some(rest) = edge.follow(token.len(), next) {
                Self::visit_child(&mut edge.node, rest, visit);
            }
        }
        if let Some(edge) = node.wildcard.as_deref_mut() {
            if let Some(rest) = edge.follow(1, next) {
                Self::visit_child(&mut edge.node, rest, visit);
            }
        }
    }

    /// Calls `visit` for every value in the trie (rare: a cluster node
    /// leaving withdraws all it announced).
    pub fn visit_all(&mut self, visit: &mut impl FnMut(&mut V)) {
        Self::visit_all_in(&mut self.root, visit);
    }

    fn visit_all_in(node: &mut Node<V>, visit: &mut impl FnMut(&mut V)) {
        node.values.iter_mut().for_each(&mut *visit);
        node.edges.for_each_mut(&mut |edge| Self::visit_all_in(&mut edge.node, visit));
        if let Some(edge) = node.wildcard.as_deref_mut() {
            Self::visit_all_in(&mut edge.node, visit);
        }
    }

    fn visit_child(child: &mut Node<V>, rest: Option<&[u8]>, visit: &mut impl FnMut(&mut V)) {
        match rest {
            Some(rest) => Self::visit_in(child, rest, visit),
            None => child.here().iter_mut().for_each(&mut *visit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flit_wire::subject::pattern_matches;
    use proptest::prelude::*;

    fn matches_of(trie: &mut SubjectTrie<usize>, subject: &[u8]) -> Vec<usize> {
        let mut found = Vec::new();
        trie.visit_matches(subject, &mut |value| found.push(*value));
        found.sort_unstable();
        found
    }

    #[test]
    fn exact_and_wildcards() {
        let mut trie = SubjectTrie::default();
        trie.insert(b"a.b.c", 0);
        trie.insert(b"a.*.c", 1);
        trie.insert(b"a.>", 2);
        trie.insert(b">", 3);
        trie.insert(b"a.b", 4);
        assert_eq!(matches_of(&mut trie, b"a.b.c"), vec![0, 1, 2, 3]);
        assert_eq!(matches_of(&mut trie, b"a.b"), vec![2, 3, 4]);
        assert_eq!(matches_of(&mut trie, b"a"), vec![3]);
        assert_eq!(matches_of(&mut trie, b"x.y"), vec![3]);
    }

    #[test]
    fn removal_prunes_and_keeps_others() {
        let mut trie = SubjectTrie::default();
        trie.insert(b"a.*.c", 1);
        trie.insert(b"a.*.c", 2);
        assert_eq!(trie.remove(b"a.*.c", |value| *value == 1), Some(1));
        assert_eq!(matches_of(&mut trie, b"a.b.c"), vec![2]);
        assert_eq!(trie.remove(b"a.*.c", |value| *value == 2), Some(2));
        assert!(trie.root.is_empty());
        assert_eq!(trie.remove(b"a.*.c", |_| true), None);
    }

    impl<V> Node<V> {
        /// Checks the invariants below this node; returns its value count.
        fn check(&self, is_root: bool) -> usize {
            assert!(self.tail_start as usize <= self.values.len());
            if !is_root {
                assert!(!self.values.is_empty() || self.edge_count() >= 2, "a node with one edge and no value");
            }
            let mut count = self.values.len();
            let mut first_tokens = std::collections::HashSet::new();
            let mut edges: Vec<&Edge<V>> = match &self.edges {
                Edges::Few(edges) => {
                    assert!(edges.len() <= FEW_EDGES_MAX);
                    edges.iter().collect()
                }
                Edges::Many(table) => {
                    assert!(table.len() > FEW_EDGES_MAX / 2);
                    table.iter().map(|edge| &**edge).collect()
                }
            };
            for edge in &edges {
                let first = split_first_token(&edge.label).0;
                assert_ne!(first, b"*");
                assert!(first_tokens.insert(first.to_vec()), "two edges start with the same token");
            }
            edges.extend(self.wildcard.as_deref());
            for edge in edges {
                assert!(!edge.label.is_empty() && !edge.label.split(|byte| *byte == b'.').any(|token| token == b">"));
                assert_eq!(edge.node.label_rest_has_wildcard, rest_has_wildcard(&edge.label));
                count += edge.node.check(false);
            }
            count
        }
    }

    fn check_invariants<V>(trie: &SubjectTrie<V>) {
        assert_eq!(trie.root.check(true), trie.len());
    }

    #[test]
    fn labels_split_and_merge_back() {
        let mut trie = SubjectTrie::default();
        trie.insert(b"a.b.c.d", 0);
        trie.insert(b"a.b.x", 1);
        trie.insert(b"a.b.*.d", 2);
        trie.insert(b"a.b.>", 3);
        check_invariants(&trie);
        assert_eq!(matches_of(&mut trie, b"a.b.c.d"), vec![0, 2, 3]);
        assert_eq!(matches_of(&mut trie, b"a.b.x"), vec![1, 3]);
        for (pattern, value) in [(&b"a.b.x"[..], 1), (b"a.b.>", 3), (b"a.b.*.d", 2)] {
            assert_eq!(trie.remove(pattern, |candidate| *candidate == value), Some(value));
            check_invariants(&trie);
        }
        assert_eq!(matches_of(&mut trie, b"a.b.c.d"), vec![0]);
        let Edges::Few(edges) = &trie.root.edges else { panic!("few edges") };
        assert_eq!(&edges[0].label[..], b"a.b.c.d", "merged back into one label");
        assert_eq!(trie.remove(b"a.b.c.d", |_| true), Some(0));
        assert!(trie.root.is_empty());
    }

    #[test]
    fn prefixes_of_tokens_are_not_tokens() {
        let mut trie = SubjectTrie::default();
        trie.insert(b"ab.c", 0);
        trie.insert(b"a.bc", 1);
        trie.insert(b"a.b.c", 2);
        trie.insert(b"abc", 3);
        check_invariants(&trie);
        assert_eq!(matches_of(&mut trie, b"ab.c"), vec![0]);
        assert_eq!(matches_of(&mut trie, b"a.bc"), vec![1]);
        assert_eq!(matches_of(&mut trie, b"a.b"), Vec::<usize>::new());
        assert_eq!(matches_of(&mut trie, b"a.b.cd"), Vec::<usize>::new());
        assert_eq!(matches_of(&mut trie, b"ab"), Vec::<usize>::new());
        assert_eq!(trie.find_mut(b"a.b", |_| true), None);
        assert_eq!(trie.remove(b"ab", |_| true), None);
        assert_eq!(trie.remove(b"a.b.c.d", |_| true), None);
    }

    #[test]
    fn wide_nodes_move_to_a_table_and_back() {
        let mut trie = SubjectTrie::default();
        let patterns: Vec<String> = (0..200).map(|index| format!("wide.{index}.x")).collect();
        for (index, pattern) in patterns.iter().enumerate() {
            trie.insert(pattern.as_bytes(), index);
        }
        check_invariants(&trie);
        assert_eq!(matches_of(&mut trie, b"wide.137.x"), vec![137]);
        for (index, pattern) in patterns.iter().enumerate().skip(3) {
            assert_eq!(trie.remove(pattern.as_bytes(), |value| *value == index), Some(index));
            check_invariants(&trie);
        }
        assert_eq!(matches_of(&mut trie, b"wide.2.x"), vec![2]);
        for (index, pattern) in patterns.iter().enumerate().take(3) {
            assert_eq!(trie.remove(pattern.as_bytes(), |value| *value == index), Some(index));
        }
        assert!(trie.root.is_empty());
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("ab".to_string()),
            Just("c".to_string()),
            "[d-f]{1,2}",
            "[g-z]{1,2}"
        ]
    }

    fn subject() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..7).prop_map(|tokens| tokens.join("."))
    }

    fn pattern() -> impl Strategy<Value = String> {
        let pattern_token = prop_oneof![4 => token(), 1 => Just("*".to_string())];
        (prop::collection::vec(pattern_token, 1..7), any::<bool>()).prop_map(|(mut tokens, tail)| {
            if tail {
                tokens.push(">".to_string());
            }
            tokens.join(".")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn trie_agrees_with_the_reference_matcher(
            patterns in prop::collection::vec(prop_oneof![pattern(), Just(">".to_string())], 0..40),
            subjects in prop::collection::vec(subject(), 1..16),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let mut trie = SubjectTrie::default();
            for (index, pattern) in patterns.iter().enumerate() {
                trie.insert(pattern.as_bytes(), index);
            }
            check_invariants(&trie);
            for (index, pattern) in patterns.iter().enumerate() {
                let found = trie.find_mut(pattern.as_bytes(), |value| *value == index).copied();
                prop_assert_eq!(found, Some(index));
            }
            let mut live: Vec<usize> = (0..patterns.len()).collect();
            for removal in removals {
                if live.is_empty() { break; }
                let index = live.remove(removal.index(live.len()));
                let removed = trie.remove(patterns[index].as_bytes(), |value| *value == index);
                prop_assert_eq!(removed, Some(index));
                prop_assert_eq!(trie.find_mut(patterns[index].as_bytes(), |value| *value == index), None);
                check_invariants(&trie);
            }
            prop_assert_eq!(trie.len(), live.len());
            for subject in &subjects {
                let expected: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|index| pattern_matches(patterns[*index].as_bytes(), subject.as_bytes()))
                    .collect();
                prop_assert_eq!(matches_of(&mut trie, subject.as_bytes()), expected, "subject {}", subject);
            }
            for index in live {
                prop_assert_eq!(trie.remove(patterns[index].as_bytes(), |value| *value == index), Some(index));
            }
            prop_assert!(trie.root.is_empty());
            prop_assert!(matches!(&trie.root.edges, Edges::Few(edges) if edges.is_empty()));
        }
    }

    /// Times matching on a few shapes of trie; prints nanoseconds per
    /// subject. Run: `cargo test --release -p flit-shard matching_speed --
    /// --ignored --nocapture`.
    #[test]
    #[ignore]
    fn matching_speed() {
        fn time(name: &str, patterns: &[String], subjects: &[String]) {
            let mut trie = SubjectTrie::default();
            for (index, pattern) in patterns.iter().enumerate() {
                trie.insert(pattern.as_bytes(), index as u32);
            }
            let mut matched: Vec<u32> = Vec::with_capacity(4096);
            let rounds = 2_000_000 / subjects.len();
            let mut best = f64::MAX;
            for _ in 0..5 {
                let start = std::time::Instant::now();
                for _ in 0..rounds {
                    for subject in subjects {
                        matched.clear();
                        trie.visit_matches(subject.as_bytes(), &mut |slot: &mut u32| matched.push(*slot));
                        std::hint::black_box(&matched);
                    }
                }
                best = best.min(start.elapsed().as_nanos() as f64 / (rounds * subjects.len()) as f64);
            }
            println!("matching_speed: {name}: {best:.1} ns per subject");
        }
        let exact: Vec<String> = (0..10_000).map(|i| format!("svc{}.region{}.op{i}.done", i % 100, i % 7)).collect();
        let hits: Vec<String> = exact.iter().step_by(3).cloned().collect();
        time("10,000 4-token patterns, hits", &exact, &hits);
        let misses: Vec<String> = hits.iter().map(|subject| subject.replace(".done", ".fail")).collect();
        time("10,000 4-token patterns, misses at the last token", &exact, &misses);
        let mut wild = exact.clone();
        for i in 0..100 {
            wild.push(format!("svc{i}.*.>"));
            wild.push(format!("svc{i}.region3.*.done"));
        }
        wild.extend([">".to_string(), "*.*.*.*".to_string()]);
        time("10,202 4-token patterns with wildcards", &wild, &hits);
        let one: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        time("10,000 1-token patterns", &one, &one.iter().step_by(3).cloned().collect::<Vec<_>>());
        let deep: Vec<String> = (0..2_000)
            .map(|i| {
                (0..32).map(|j| if j == 0 { format!("s{i}") } else { format!("t{j}") }).collect::<Vec<_>>().join(".")
            })
            .collect();
        time("2,000 32-token patterns", &deep, &deep.iter().step_by(3).cloned().collect::<Vec<_>>());
        let few: Vec<String> =
            ["orders.eu.created", "orders.us.created", "orders.*.cancelled", "metrics.>", "_INBOX.abc.1"]
                .map(String::from)
                .to_vec();
        let few_subjects: Vec<String> =
            ["orders.eu.created", "orders.us.cancelled", "metrics.cpu.a", "_INBOX.abc.1", "nobody.here"]
                .map(String::from)
                .to_vec();
        time("5 patterns", &few, &few_subjects);
        time(
            "1,000 subscribers of one subject",
            &vec!["news.sports.football".to_string(); 1000],
            &["news.sports.football".to_string()],
        );
    }
}
