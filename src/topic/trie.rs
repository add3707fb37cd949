//! The subscription trie of one shard: maps topic filters to stable [`FilterId`]s and finds every
//! filter matching a topic name. Owned by exactly one shard (no locks, no `Sync` needed); callers
//! keep per-filter data (subscribers, options) in their own slab indexed by [`FilterId::index`].
//!
//! Layout, chosen for memory per subscription and for a match that does not allocate:
//! - nodes live in one `Vec<Node>` with a free list; a filter's id is its terminal node's index;
//! - labels live in one string arena ([`Labels`]);
//! - exact-label children are not stored per node: one [`ChildTable`] for the whole trie holds
//!   node indices under their *path key* and is checked against the node itself (parent and
//!   label). A node's path key hashes its parent's path key with its label, so the keys of every
//!   level of a topic are known before the first lookup and all levels' slots can be prefetched
//!   at once instead of paying one chain of cache misses per level;
//! - the `+` and `#` children of a node sit in a side slab of pairs (few nodes have any), so
//!   the node keeps room for a 12-byte inline label and wildcards cost no hash lookup.

use ahash::RandomState;

use super::labels::{LabelRef, Labels};
use super::table::{ChildTable, advise_huge_pages, prefetch};

/// Marks "no node" in `parent`, `plus` and `hash`.
const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;
/// Path key of the root.
const ROOT_KEY: u64 = 0;
/// Top bit of `Node::children_terminal`.
const TERMINAL: u32 = 1 << 31;
/// At most this many nodes, so that a child count fits in the 31 bits beside the terminal flag.
const NODES_MAX: usize = 1 << 31;

/// A filter's stable id while it stays in the trie; may be reused after the filter is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilterId(u32);

impl FilterId {
    /// The id as an index into the caller's per-filter slab (dense: below the trie's node count).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// 24 bytes. A free slot has `parent == NONE` (only the root shares that) and nothing else set.
#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    label: LabelRef,
    /// Number of children (exact, `+` and `#`) in the low 31 bits; [`TERMINAL`] when a filter
    /// ends here.
    children_terminal: u32,
    /// Index of this node's [`Wild`] pair, or `NONE` without wildcard children.
    wild: u32,
}

/// The `+` and `#` children of a node, `NONE` when absent.
type Wild = [u32; 2];
const PLUS: usize = 0;
const HASH: usize = 1;
const NO_WILD: Wild = [NONE; 2];

impl Node {
    const FREE: Node = Node {
        parent: NONE,
        label: LabelRef::EMPTY,
        children_terminal: 0,
        wild: NONE,
    };

    fn is_terminal(&self) -> bool {
        self.children_terminal & TERMINAL != 0
    }

    fn set_terminal(&mut self, terminal: bool) {
        if terminal {
            self.children_terminal |= TERMINAL;
        } else {
            self.children_terminal &= !TERMINAL;
        }
    }

    fn children(&self) -> u32 {
        self.children_terminal & !TERMINAL
    }

    fn has_exact_children(&self, wild: Wild) -> bool {
        let wildcards = u32::from(wild[PLUS] != NONE) + u32::from(wild[HASH] != NONE);
        self.children() > wildcards
    }

    /// Neither a filter nor on the way to one: can be pruned.
    fn is_unused(&self) -> bool {
        self.children_terminal == 0
    }
}

/// Per-shard subscription trie; see the module docs.
#[derive(Debug)]
pub struct TopicTrie {
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Exact-label children of every node, under their path keys.
    children: ChildTable,
    labels: Labels,
    hasher: RandomState,
    /// Number of filters (terminal nodes).
    len: usize,
    /// Path keys of the filter being removed (reused buffer).
    path_keys: Vec<u64>,
    /// Wildcard children of the nodes that have any, indexed by [`Node::wild`].
    wild: Vec<Wild>,
    wild_free: Vec<u32>,
}

impl Default for TopicTrie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::FREE],
            free: Vec::new(),
            children: ChildTable::default(),
            labels: Labels::default(),
            hasher: RandomState::new(),
            len: 0,
            path_keys: Vec::new(),
            wild: Vec::new(),
            wild_free: Vec::new(),
        }
    }
}

impl TopicTrie {
    pub fn new() -> Self {
        Self::default()
    }

    /// A trie with room for `nodes` nodes reserved up front. Not advised for huge pages (one
    /// touched byte would then make a whole 2 MiB page resident): meant for a large reservation
    /// that the allocator maps lazily. Growth beyond it doubles and advises as usual.
    pub fn with_capacity(nodes: usize) -> Self {
        let mut trie = Self::default();
        trie.nodes
            .reserve_exact(nodes.saturating_sub(trie.nodes.len()));
        trie
    }

    /// Adds `filter`, or returns its id if present. Expects a filter that passed
    /// [`validate_topic_filter`](super::validate_topic_filter); other strings are stored as they
    /// are (a `#` that is not last then matches nothing, as in [`matches`](super::matches)).
    ///
    /// # Panics
    /// On capacity overflow only: more than 2^31 nodes or 4 GiB of labels.
    pub fn insert(&mut self, filter: &str) -> FilterId {
        let (mut node, mut key) = (ROOT, ROOT_KEY);
        for level in filter.split('/') {
            key = self.key(key, level);
            node = match self.child(node, key, level) {
                Some(child) => child,
                None => self.add_child(node, key, level),
            };
        }
        let n = &mut self.nodes[node as usize];
        if !n.is_terminal() {
            n.set_terminal(true);
            self.len += 1;
        }
        FilterId(node)
    }

    /// Removes `filter` and prunes the nodes only it used; returns the id it had.
    pub fn remove(&mut self, filter: &str) -> Option<FilterId> {
        let mut keys = std::mem::take(&mut self.path_keys);
        keys.clear();
        let (mut node, mut key) = (ROOT, ROOT_KEY);
        for level in filter.split('/') {
            key = self.key(key, level);
            keys.push(key);
            match self.child(node, key, level) {
                Some(child) => node = child,
                None => {
                    self.path_keys = keys;
                    return None;
                }
            }
        }
        if !self.nodes[node as usize].is_terminal() {
            self.path_keys = keys;
            return None;
        }
        let id = FilterId(node);
        self.nodes[id.index()].set_terminal(false);
        self.len -= 1;
        self.prune(id.0, &keys);
        self.path_keys = keys;
        if self.labels.wants_compaction() {
            self.compact_labels();
        }
        Some(id)
    }

    /// The id of `filter` if it is in the trie.
    pub fn get(&self, filter: &str) -> Option<FilterId> {
        let (mut node, mut key) = (ROOT, ROOT_KEY);
        for level in filter.split('/') {
            key = self.key(key, level);
            node = self.child(node, key, level)?;
        }
        self.nodes[node as usize]
            .is_terminal()
            .then_some(FilterId(node))
    }

    /// Rebuilds the filter string of `id` by walking up to the root. Returns `""` (never a valid
    /// filter) if `id` is not currently a filter, e.g. after it was removed. Allocates: meant for
    /// logs, `$SYS` and retained lookups, not for the per-message path.
    pub fn filter_string(&self, id: FilterId) -> String {
        if !self.nodes.get(id.index()).is_some_and(Node::is_terminal) {
            return String::new();
        }
        let mut levels = Vec::new();
        let mut node = id.0;
        while node != ROOT {
            let n = &self.nodes[node as usize];
            levels.push(self.labels.get(&n.label));
            node = n.parent;
        }
        levels.reverse();
        levels.join("/")
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live nodes, the root included (for tests and metrics).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Bytes held by the trie's own buffers, spare capacity included (for metrics).
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * size_of::<Node>()
            + self.free.capacity() * size_of::<u32>()
            + self.path_keys.capacity() * size_of::<u64>()
            + self.wild.capacity() * size_of::<Wild>()
            + self.wild_free.capacity() * size_of::<u32>()
            + self.children.allocation_size()
            + self.labels.capacity()
    }

    /// Gives memory back after many removals: squeezes the label arena, drops free slots at the
    /// end of the node slab and shrinks every buffer. Ids of remaining filters do not change.
    /// Costs a pass over the trie, so call it when idle, not per unsubscribe.
    pub fn shrink_to_fit(&mut self) {
        while self.nodes.len() > 1 && self.nodes.last().is_some_and(|n| n.parent == NONE) {
            self.nodes.pop();
        }
        let end = self.nodes.len() as u32;
        self.free.retain(|&slot| slot < end);
        self.nodes.shrink_to_fit();
        self.free.shrink_to_fit();
        self.compact_labels();
        self.children.shrink_to_fit();
        self.path_keys = Vec::new();
        if self.wild_free.len() == self.wild.len() {
            self.wild = Vec::new();
            self.wild_free = Vec::new();
        }
        self.wild.shrink_to_fit();
        self.wild_free.shrink_to_fit();
    }

    /// Finds every filter matching the topic name `topic`: clears `out`, then fills
    /// [`Matches::ids`], each matching filter once, in no particular order.
    ///
    /// Iterative with an explicit stack kept in `out`, so a topic of any depth is safe and a match
    /// allocates nothing once `out`'s buffers have grown.
    pub fn matches(&self, topic: &str, out: &mut Matches) {
        out.ids.clear();
        out.stack.clear();
        split_levels(topic, &mut out.level_starts);
        let levels = out.level_starts.len() - 1;
        // The path keys of the exact path, each slot prefetched: the lookups below then wait for
        // one round of misses instead of one per level.
        out.keys.clear();
        out.keys.push(ROOT_KEY);
        let mut key = ROOT_KEY;
        for depth in 0..levels {
            key = self.key(key, level(topic, &out.level_starts, depth));
            out.keys.push(key);
            self.children.prefetch(slot_hash(key));
        }
        // Then the nodes those slots most likely name (a slot hash is 32 bits of the key), again
        // all at once; the walk below checks every node for real.
        for &key in &out.keys[1..] {
            if let Some(child) = self.children.find(slot_hash(key), |_| true) {
                prefetch(&self.nodes[child as usize]);
            }
        }
        // [MQTT-4.7.2-1]: no wildcard at the first level matches a topic starting with `$`.
        let dollar = topic.starts_with('$');
        out.stack.push((ROOT, 0, ROOT_KEY));
        while let Some((node, depth, key)) = out.stack.pop() {
            let n = &self.nodes[node as usize];
            let wild = self.wild_of(n);
            let wildcards = !(dollar && depth == 0);
            // `#` matches the remaining levels, none included (`sport/#` matches `sport`).
            let hash = wild[HASH];
            if wildcards && hash != NONE && self.nodes[hash as usize].is_terminal() {
                out.ids.push(FilterId(hash));
            }
            if depth == levels {
                if n.is_terminal() {
                    out.ids.push(FilterId(node));
                }
                continue;
            }
            if wildcards && wild[PLUS] != NONE {
                let plus_key = self.key(key, "+");
                if depth + 1 < levels {
                    // The slot of the `+` node's child is popped after the exact path: fetch it
                    // meanwhile.
                    let next = level(topic, &out.level_starts, depth + 1);
                    self.children.prefetch(slot_hash(self.key(plus_key, next)));
                }
                out.stack.push((wild[PLUS], depth + 1, plus_key));
            }
            if n.has_exact_children(wild) {
                let level = level(topic, &out.level_starts, depth);
                // Equal keys at a depth mean the same path, so the child key is known already.
                let child_key = if key == out.keys[depth] {
                    out.keys[depth + 1]
                } else {
                    self.key(key, level)
                };
                if let Some(child) = self.exact_child(node, child_key, level) {
                    out.stack.push((child, depth + 1, child_key));
                }
            }
        }
    }

    /// The path key of the child labelled `label` of the node whose path key is `parent_key`.
    fn key(&self, parent_key: u64, label: &str) -> u64 {
        self.hasher.hash_one((parent_key, label))
    }

    /// The child `label` of `parent`; `key` is that child's path key.
    fn child(&self, parent: u32, key: u64, label: &str) -> Option<u32> {
        let wild = self.wild_of(&self.nodes[parent as usize]);
        let slot = match label {
            "+" => wild[PLUS],
            "#" => wild[HASH],
            _ => return self.exact_child(parent, key, label),
        };
        (slot != NONE).then_some(slot)
    }

    fn wild_of(&self, n: &Node) -> Wild {
        if n.wild == NONE {
            NO_WILD
        } else {
            self.wild[n.wild as usize]
        }
    }

    /// The wildcard pair of `node`, added if it has none.
    fn wild_mut(&mut self, node: u32) -> &mut Wild {
        let mut index = self.nodes[node as usize].wild;
        if index == NONE {
            index = match self.wild_free.pop() {
                Some(free) => free,
                None => {
                    self.wild.push(NO_WILD);
                    (self.wild.len() - 1) as u32
                }
            };
            self.nodes[node as usize].wild = index;
        }
        &mut self.wild[index as usize]
    }

    fn exact_child(&self, parent: u32, key: u64, label: &str) -> Option<u32> {
        let (nodes, labels) = (&self.nodes, &self.labels);
        self.children.find(slot_hash(key), |i| {
            let n = &nodes[i as usize];
            n.parent == parent && labels.eq(&n.label, label)
        })
    }

    fn add_child(&mut self, parent: u32, key: u64, label: &str) -> u32 {
        let label_ref = self.labels.push(label);
        let node = self.alloc(Node {
            parent,
            label: label_ref,
            ..Node::FREE
        });
        self.nodes[parent as usize].children_terminal += 1;
        match label {
            "+" => self.wild_mut(parent)[PLUS] = node,
            "#" => self.wild_mut(parent)[HASH] = node,
            _ => self.children.insert(slot_hash(key), node),
        }
        node
    }

    fn alloc(&mut self, node: Node) -> u32 {
        if let Some(slot) = self.free.pop() {
            self.nodes[slot as usize] = node;
            return slot;
        }
        assert!(
            self.nodes.len() < NODES_MAX,
            "topic trie exceeds 2^31 nodes"
        );
        if self.nodes.len() == self.nodes.capacity() {
            // Grow by hand (as `Vec` would, doubling) so the new buffer is advised before it is
            // written; see `advise_huge_pages`.
            let mut grown = Vec::with_capacity((self.nodes.capacity() * 2).max(16));
            advise_huge_pages(grown.as_ptr(), grown.capacity());
            grown.extend_from_slice(&self.nodes);
            self.nodes = grown;
        }
        self.nodes.push(node);
        (self.nodes.len() - 1) as u32
    }

    /// Walks up from `node`, freeing every node that is neither a filter nor has children.
    /// `keys` are the path keys of `node`'s ancestors below the root and of `node` itself.
    fn prune(&mut self, mut node: u32, keys: &[u64]) {
        let mut keys = keys.iter().rev();
        while node != ROOT && self.nodes[node as usize].is_unused() {
            let parent = self.nodes[node as usize].parent;
            let key = *keys.next().expect("one path key per level");
            self.detach(parent, node, key);
            self.labels.release(self.nodes[node as usize].label);
            self.nodes[node as usize] = Node::FREE;
            self.free.push(node);
            node = parent;
        }
    }

    fn detach(&mut self, parent: u32, node: u32, key: u64) {
        let p = &mut self.nodes[parent as usize];
        p.children_terminal -= 1;
        let index = p.wild;
        if index != NONE {
            let wild = &mut self.wild[index as usize];
            if let Some(slot) = wild.iter_mut().find(|slot| **slot == node) {
                *slot = NONE;
                if *wild == NO_WILD {
                    self.wild_free.push(index);
                    self.nodes[parent as usize].wild = NONE;
                }
                return;
            }
        }
        self.children.remove(slot_hash(key), node);
    }

    fn compact_labels(&mut self) {
        self.labels
            .compact(self.nodes.iter_mut().map(|n| &mut n.label));
    }
}

/// The 32 bits of a path key that the child table stores and probes with.
fn slot_hash(key: u64) -> u32 {
    (key ^ (key >> 32)) as u32
}

/// Fills `starts` with the byte offset of each level plus one past the end, so that level `i`
/// spans `starts[i]..starts[i + 1] - 1`. A topic always has at least one level.
fn split_levels(topic: &str, starts: &mut Vec<usize>) {
    starts.clear();
    starts.push(0);
    starts.extend(topic.match_indices('/').map(|(i, _)| i + 1));
    starts.push(topic.len() + 1);
}

fn level<'t>(topic: &'t str, starts: &[usize], depth: usize) -> &'t str {
    topic
        .get(starts[depth]..starts[depth + 1] - 1)
        .unwrap_or("")
}

/// The result of [`TopicTrie::matches`] plus the scratch buffers it reuses; keep one per shard.
#[derive(Debug, Default)]
pub struct Matches {
    ids: Vec<FilterId>,
    /// `(node, levels consumed, path key)` still to visit.
    stack: Vec<(u32, usize, u64)>,
    level_starts: Vec<usize>,
    /// Path keys of the topic's own levels: `keys[d]` is the key after `d` levels.
    keys: Vec<u64>,
}

impl Matches {
    pub fn ids(&self) -> &[FilterId] {
        &self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::tests::MATCH_CASES;
    use std::collections::BTreeSet;

    fn matched(trie: &TopicTrie, topic: &str) -> Vec<String> {
        let mut out = Matches::default();
        trie.matches(topic, &mut out);
        let mut found: Vec<String> = out.ids().iter().map(|&id| trie.filter_string(id)).collect();
        found.sort();
        found
    }

    #[test]
    fn spec_examples_one_filter_at_a_time() {
        for (filter, topic, want) in MATCH_CASES {
            let mut trie = TopicTrie::new();
            trie.insert(filter);
            let got = !matched(&trie, topic).is_empty();
            assert_eq!(got, *want, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn spec_examples_all_filters_together() {
        let filters: BTreeSet<&str> = MATCH_CASES.iter().map(|c| c.0).collect();
        let mut trie = TopicTrie::new();
        for filter in &filters {
            trie.insert(filter);
        }
        for (_, topic, _) in MATCH_CASES {
            let want: Vec<&str> = filters
                .iter()
                .copied()
                .filter(|f| crate::topic::matches(f, topic))
                .collect();
            assert_eq!(matched(&trie, topic), want, "{topic:?}");
        }
    }

    #[test]
    fn insert_is_idempotent_and_get_finds() {
        let mut trie = TopicTrie::new();
        let a = trie.insert("a/b/c");
        assert_eq!(trie.insert("a/b/c"), a);
        let b = trie.insert("a/b");
        assert_ne!(a, b);
        assert_eq!(trie.len(), 2);
        assert_eq!(trie.get("a/b/c"), Some(a));
        assert_eq!(trie.get("a"), None, "interior node is not a filter");
        assert_eq!(trie.get("a/b/c/d"), None);
        assert_eq!(trie.filter_string(a), "a/b/c");
        assert_eq!(trie.filter_string(b), "a/b");
    }

    #[test]
    fn wildcard_and_empty_levels_round_trip() {
        let mut trie = TopicTrie::new();
        for filter in ["+", "#", "/", "//", "+/#", "a/+/b/#", "$SYS/#"] {
            let id = trie.insert(filter);
            assert_eq!(trie.filter_string(id), filter);
            assert_eq!(trie.get(filter), Some(id));
        }
        assert_eq!(trie.len(), 7);
    }

    #[test]
    fn remove_prunes_and_ids_are_reused() {
        let mut trie = TopicTrie::new();
        let keep = trie.insert("a/b");
        let gone = trie.insert("a/b/c/d");
        let nodes = trie.node_count();
        assert_eq!(trie.remove("a/b/c/d"), Some(gone));
        assert_eq!(trie.remove("a/b/c/d"), None);
        assert_eq!(trie.remove("a/b/c"), None, "never a filter");
        assert_eq!(trie.node_count(), nodes - 2);
        assert_eq!(trie.get("a/b"), Some(keep));
        assert_eq!(trie.filter_string(gone), "", "freed id");

        // The free list is LIFO: `x` takes the slot of `c`, `y` the slot of `d`.
        let reused = trie.insert("x/y");
        assert_eq!(reused, gone);
        assert_eq!(trie.filter_string(reused), "x/y");
    }

    #[test]
    fn removing_everything_leaves_only_the_root() {
        let mut trie = TopicTrie::new();
        let filters = ["a/b", "a/+", "a/#", "#", "+/+", "/", "a/b/c", "$SYS/x"];
        for filter in filters {
            trie.insert(filter);
        }
        for filter in filters {
            assert!(trie.remove(filter).is_some(), "{filter}");
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 1);
        assert_eq!(trie.children.len(), 0);
        trie.shrink_to_fit();
        assert_eq!(trie.nodes.len(), 1);
        assert_eq!(trie.labels.capacity(), 0);
    }

    #[test]
    fn removing_a_prefix_keeps_the_longer_filter() {
        let mut trie = TopicTrie::new();
        trie.insert("a/b");
        let long = trie.insert("a/b/c");
        trie.remove("a/b");
        assert_eq!(trie.get("a/b/c"), Some(long));
        assert_eq!(matched(&trie, "a/b/c"), ["a/b/c"]);
        assert!(matched(&trie, "a/b").is_empty());
    }

    #[test]
    fn label_compaction_keeps_filters() {
        let mut trie = TopicTrie::new();
        let long = "x".repeat(1000);
        for i in 0..200 {
            trie.insert(&format!("{long}/{i}"));
            trie.insert(&format!("keep/{i}"));
        }
        for i in 0..200 {
            trie.remove(&format!("{long}/{i}"));
        }
        assert!(trie.labels.capacity() < 10_000, "compacted");
        for i in 0..200 {
            let id = trie.get(&format!("keep/{i}")).unwrap();
            assert_eq!(trie.filter_string(id), format!("keep/{i}"));
        }
    }

    #[test]
    fn node_is_small() {
        assert_eq!(size_of::<Node>(), 24);
    }

    #[test]
    fn deep_topic_does_not_recurse() {
        let mut trie = TopicTrie::new();
        for filter in ["#", "+/#", "a/#", "a/+"] {
            trie.insert(filter);
        }
        let topic = vec!["a"; 100_000].join("/");
        assert_eq!(matched(&trie, &topic), ["#", "+/#", "a/#"]);
    }
}
