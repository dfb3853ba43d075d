//! A subject trie: patterns in, every value whose pattern matches a subject out.
//!
//! One level per token. Literal tokens are children in a hash map; `*` has its
//! own child; values of patterns ending in `>` sit in the node before it and
//! match whenever at least one more token follows. Matching walks only the
//! branches the subject can take, so its cost depends on the subject's length
//! and the wildcards along the way, not on how many patterns are stored.
//!
//! Children are keyed with FxHash, not SipHash: tokens are short and the map
//! is walked once or twice per message; hash flooding is bounded by the
//! per-connection subscription limit.
//!
//! Invariants: nodes left empty by a removal are pruned, so memory follows the
//! live patterns. Matching allocates nothing: it recurses over the subject's
//! bytes and calls the visitor in place.

use rustc_hash::FxHashMap;

/// Bytes of the first token and what follows the first `.`, if anything.
fn split_first_token(subject: &[u8]) -> (&[u8], Option<&[u8]>) {
    match subject.iter().position(|byte| *byte == b'.') {
        Some(dot) => (&subject[..dot], Some(&subject[dot + 1..])),
        None => (subject, None),
    }
}

#[derive(Debug)]
struct Node<V> {
    literal_children: FxHashMap<Box<[u8]>, Node<V>>,
    single_wildcard_child: Option<Box<Node<V>>>,
    /// Values of patterns that end here.
    values_here: Vec<V>,
    /// Values of patterns that end here followed by `>`.
    values_tail: Vec<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            literal_children: FxHashMap::default(),
            single_wildcard_child: None,
            values_here: Vec::new(),
            values_tail: Vec::new(),
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.literal_children.is_empty()
            && self.single_wildcard_child.is_none()
            && self.values_here.is_empty()
            && self.values_tail.is_empty()
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
        let mut node = &mut self.root;
        let mut rest = Some(pattern);
        while let Some(remaining) = rest {
            let (token, next) = split_first_token(remaining);
            if token == b">" {
                debug_assert!(next.is_none(), "'>' must be the last token");
                node.values_tail.push(value);
                self.len += 1;
                return;
            }
            node = if token == b"*" {
                node.single_wildcard_child.get_or_insert_with(Box::default)
            } else {
                node.literal_children.entry(token.into()).or_default()
            };
            rest = next;
        }
        node.values_here.push(value);
        self.len += 1;
    }

    /// Removes the first value under exactly `pattern` for which `is_target`
    /// holds, and returns it. Prunes nodes left empty.
    pub fn remove(&mut self, pattern: &[u8], is_target: impl FnMut(&V) -> bool) -> Option<V> {
        let removed = Self::remove_in(&mut self.root, Some(pattern), is_target);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_in(node: &mut Node<V>, rest: Option<&[u8]>, is_target: impl FnMut(&V) -> bool) -> Option<V> {
        let Some(remaining) = rest else {
            let index = node.values_here.iter().position(is_target)?;
            return Some(node.values_here.swap_remove(index));
        };
        let (token, next) = split_first_token(remaining);
        if token == b">" {
            let index = node.values_tail.iter().position(is_target)?;
            return Some(node.values_tail.swap_remove(index));
        }
        if token == b"*" {
            let child = node.single_wildcard_child.as_mut()?;
            let removed = Self::remove_in(child, next, is_target);
            if child.is_empty() {
                node.single_wildcard_child = None;
            }
            return removed;
        }
        let child = node.literal_children.get_mut(token)?;
        let removed = Self::remove_in(child, next, is_target);
        if child.is_empty() {
            node.literal_children.remove(token);
        }
        removed
    }

    /// Finds the value under exactly `pattern` for which `is_target` holds.
    pub fn find_mut(&mut self, pattern: &[u8], mut is_target: impl FnMut(&V) -> bool) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut rest = Some(pattern);
        while let Some(remaining) = rest {
            let (token, next) = split_first_token(remaining);
            if token == b">" {
                return node.values_tail.iter_mut().find(|value| is_target(value));
            }
            node = if token == b"*" {
                node.single_wildcard_child.as_deref_mut()?
            } else {
                node.literal_children.get_mut(token)?
            };
            rest = next;
        }
        node.values_here.iter_mut().find(|value| is_target(value))
    }

    /// Calls `visit` for every value whose pattern matches `subject` (a valid
    /// publish subject). A value stored under several matching patterns is
    /// visited once per pattern.
    pub fn visit_matches(&mut self, subject: &[u8], visit: &mut impl FnMut(&mut V)) {
        Self::visit_in(&mut self.root, subject, visit);
    }

    fn visit_in(node: &mut Node<V>, subject: &[u8], visit: &mut impl FnMut(&mut V)) {
        // At least one token remains here, so every `>` at this node matches.
        node.values_tail.iter_mut().for_each(&mut *visit);
        let (token, next) = split_first_token(subject);
        if let Some(child) = node.literal_children.get_mut(token) {
            Self::visit_child(child, next, visit);
        }
        if let Some(child) = node.single_wildcard_child.as_deref_mut() {
            Self::visit_child(child, next, visit);
        }
    }

    fn visit_child(child: &mut Node<V>, next: Option<&[u8]>, visit: &mut impl FnMut(&mut V)) {
        match next {
            Some(rest) => Self::visit_in(child, rest, visit),
            None => child.values_here.iter_mut().for_each(&mut *visit),
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

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("c".to_string()), "[d-f]{1,2}"]
    }

    fn subject() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..5).prop_map(|tokens| tokens.join("."))
    }

    fn pattern() -> impl Strategy<Value = String> {
        let pattern_token = prop_oneof![3 => token(), 1 => Just("*".to_string())];
        (prop::collection::vec(pattern_token, 1..5), any::<bool>()).prop_map(|(mut tokens, tail)| {
            if tail {
                tokens.push(">".to_string());
            }
            tokens.join(".")
        })
    }

    proptest! {
        #[test]
        fn trie_agrees_with_the_reference_matcher(
            patterns in prop::collection::vec(pattern(), 0..24),
            subjects in prop::collection::vec(subject(), 1..16),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut trie = SubjectTrie::default();
            for (index, pattern) in patterns.iter().enumerate() {
                trie.insert(pattern.as_bytes(), index);
            }
            let mut live: Vec<usize> = (0..patterns.len()).collect();
            for removal in removals {
                if live.is_empty() { break; }
                let index = live.remove(removal.index(live.len()));
                let removed = trie.remove(patterns[index].as_bytes(), |value| *value == index);
                prop_assert_eq!(removed, Some(index));
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
        }
    }
}
