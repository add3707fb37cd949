//! The level labels of one [`TopicTrie`](super::TopicTrie), owned by the same shard: a label of
//! at most 12 bytes sits in its [`LabelRef`] itself, a longer one in one string arena, addressed by
//! `(start, len)`.
//!
//! Inline labels are what most levels are (ids, numbers, short words): comparing one is a single
//! 12-byte compare with no cache miss into the arena, and it costs no arena bytes.
//!
//! Why an arena rather than a `Box<str>` per node: a box costs 16 bytes in the node plus a heap
//! block per label (at least 32 bytes with glibc for short labels), which alone would exceed the
//! per-subscription budget. The arena costs 8 bytes in the node plus the label bytes. Removed
//! labels leave holes that [`Labels::compact`] squeezes out once they outweigh the live bytes, so
//! the copying is amortised over the removals that made the holes.

/// A label: either inline, its bytes padded with [`PAD`], or in the arena, as `start` and `len`
/// (4 bytes each, little endian) with [`ARENA`] in the last byte. Neither marker byte occurs in
/// UTF-8, so an inline label of 12 bytes never ends in one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LabelRef([u8; INLINE_MAX]);

const PAD: u8 = 0xFF;
const ARENA: u8 = 0xFE;
const INLINE_MAX: usize = 12;

impl LabelRef {
    pub(super) const EMPTY: LabelRef = LabelRef([PAD; INLINE_MAX]);

    fn inline(label: &str) -> Option<LabelRef> {
        let bytes = label.as_bytes();
        (bytes.len() <= INLINE_MAX).then(|| {
            let mut inline = [PAD; INLINE_MAX];
            inline[..bytes.len()].copy_from_slice(bytes);
            LabelRef(inline)
        })
    }

    /// `(start, len)` of an arena label.
    fn arena(&self) -> Option<(usize, usize)> {
        let b = self.0;
        (b[INLINE_MAX - 1] == ARENA).then(|| {
            (
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize,
            )
        })
    }

    fn set_arena(&mut self, start: usize, len: usize) {
        let mut bytes = [0; INLINE_MAX];
        bytes[..4].copy_from_slice(&to_u32(start).to_le_bytes());
        bytes[4..8].copy_from_slice(&to_u32(len).to_le_bytes());
        bytes[INLINE_MAX - 1] = ARENA;
        self.0 = bytes;
    }

    /// Length of an inline label: the bytes before the padding.
    fn inline_len(&self) -> usize {
        self.0
            .iter()
            .rposition(|&b| b != PAD)
            .map_or(0, |last| last + 1)
    }
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
    /// Stores a label (in the arena only if it is longer than 12 bytes).
    ///
    /// # Panics
    /// If the arena would exceed 4 GiB: a capacity limit like `Vec`'s, unreachable with validated
    /// filters (at most 65535 bytes each) and a bounded number of subscriptions.
    pub(super) fn push(&mut self, label: &str) -> LabelRef {
        if let Some(inline) = LabelRef::inline(label) {
            return inline;
        }
        let start = self.text.len();
        self.text.push_str(label);
        to_u32(self.text.len());
        let mut label_ref = LabelRef::EMPTY;
        label_ref.set_arena(start, label.len());
        label_ref
    }

    /// The label's text. A `LabelRef` from this arena always lies on char boundaries; anything
    /// else yields `""` rather than a panic.
    pub(super) fn get<'a>(&'a self, label: &'a LabelRef) -> &'a str {
        match label.arena() {
            Some((start, len)) => self.text.get(start..start + len).unwrap_or(""),
            None => std::str::from_utf8(&label.0[..label.inline_len()]).unwrap_or(""),
        }
    }

    /// Whether `label` reads `text`; for inline labels a single 12-byte compare.
    #[inline]
    pub(super) fn eq(&self, label: &LabelRef, text: &str) -> bool {
        match label.arena() {
            Some((start, len)) => {
                len == text.len()
                    && self.text.as_bytes().get(start..start + len) == Some(text.as_bytes())
            }
            None => LabelRef::inline(text).is_some_and(|inline| inline == *label),
        }
    }

    /// Marks a label's bytes as garbage; the caller drops the `LabelRef`.
    pub(super) fn release(&mut self, label: LabelRef) {
        if let Some((_, len)) = label.arena() {
            self.garbage += len;
        }
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
            if let Some((start, len)) = label.arena() {
                let new_start = text.len();
                text.push_str(self.text.get(start..start + len).unwrap_or(""));
                label.set_arena(new_start, len);
            }
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
        let a = labels.push("alpha-longer-");
        let b = labels.push("");
        let mut c = labels.push("gamma-longer-");
        assert_eq!(
            (labels.get(&a), labels.get(&b), labels.get(&c)),
            ("alpha-longer-", "", "gamma-longer-")
        );
        assert!(labels.eq(&a, "alpha-longer-") && !labels.eq(&a, "alpha-longeR-"));
        labels.release(a);
        labels.compact([&mut c].into_iter());
        assert_eq!(labels.get(&c), "gamma-longer-");
        assert_eq!(labels.capacity(), 13);
    }

    #[test]
    fn short_labels_are_inline() {
        let mut labels = Labels::default();
        for text in [
            "",
            "a",
            "+",
            "ü",
            "123456789012",
            "ab\u{7ff}cd",
            "abcdefghij\u{7ff}",
        ] {
            let label = labels.push(text);
            assert_eq!(labels.get(&label), text);
            assert!(labels.eq(&label, text));
            assert!(!labels.eq(&label, "x"));
            assert!(!labels.eq(&label, &format!("{text}x")));
        }
        assert_eq!(labels.capacity(), 0, "nothing in the arena");
        assert!(!labels.eq(&LabelRef::EMPTY, "1234567890123"));
    }
}
