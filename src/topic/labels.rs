//! The level labels of one [`TopicTrie`](super::TopicTrie), owned by the same shard: all labels
//! in one string arena, addressed by `(start, len)`.
//!
//! Why an arena rather than a `Box<str>` per node: a box costs 16 bytes in the node plus a heap
//! block per label (at least 32 bytes with glibc for short labels), which alone would exceed the
//! per-subscription budget. The arena costs 8 bytes in the node plus the label bytes. Removed
//! labels leave holes that [`Labels::compact`] squeezes out once they outweigh the live bytes, so
//! the copying is amortised over the removals that made the holes.

/// Where a label lives in the arena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct LabelRef {
    start: u32,
    len: u32,
}

impl LabelRef {
    pub(super) const EMPTY: LabelRef = LabelRef { start: 0, len: 0 };
}

/// Holes are only worth squeezing out once they are this large.
const GARBAGE_MIN_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub(super) struct Labels {
    text: String,
    /// Bytes in `text` no longer referenced by any node.
    garbage: usize,
}

impl Labels {
    /// Appends a label.
    ///
    /// # Panics
    /// If the arena would exceed 4 GiB: a capacity limit like `Vec`'s, unreachable with validated
    /// filters (at most 65535 bytes each) and a bounded number of subscriptions.
    pub(super) fn push(&mut self, label: &str) -> LabelRef {
        let start = to_u32(self.text.len());
        self.text.push_str(label);
        to_u32(self.text.len());
        LabelRef {
            start,
            len: to_u32(label.len()),
        }
    }

    /// The label's text. A `LabelRef` from this arena always lies on char boundaries; anything
    /// else yields `""` rather than a panic.
    pub(super) fn get(&self, label: LabelRef) -> &str {
        let start = label.start as usize;
        self.text
            .get(start..start + label.len as usize)
            .unwrap_or("")
    }

    /// Marks a label's bytes as garbage; the caller drops the `LabelRef`.
    pub(super) fn release(&mut self, label: LabelRef) {
        self.garbage += label.len as usize;
    }

    /// True when holes outweigh live labels and are big enough to be worth a copy.
    pub(super) fn wants_compaction(&self) -> bool {
        self.garbage >= GARBAGE_MIN_BYTES && self.garbage * 2 > self.text.len()
    }

    /// Copies the labels of `live` (every label still referenced, each once) into a fresh,
    /// exactly sized arena and rewrites the references.
    pub(super) fn compact<'a>(&mut self, live: impl Iterator<Item = &'a mut LabelRef>) {
        let mut text = String::with_capacity(self.text.len() - self.garbage.min(self.text.len()));
        for label in live {
            let start = to_u32(text.len());
            text.push_str(self.get(*label));
            label.start = start;
        }
        text.shrink_to_fit();
        self.text = text;
        self.garbage = 0;
    }

    /// Bytes held by the arena, holes and spare capacity included.
    pub(super) fn capacity(&self) -> usize {
        self.text.capacity()
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("topic trie label arena exceeds 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_compact() {
        let mut labels = Labels::default();
        let a = labels.push("alpha");
        let b = labels.push("");
        let mut c = labels.push("gamma");
        assert_eq!(
            (labels.get(a), labels.get(b), labels.get(c)),
            ("alpha", "", "gamma")
        );
        labels.release(a);
        labels.compact([&mut c].into_iter());
        assert_eq!(labels.get(c), "gamma");
        assert_eq!(labels.capacity(), 5);
    }
}
