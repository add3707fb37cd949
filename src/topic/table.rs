//! The exact-children index of one [`TopicTrie`](super::TopicTrie): an open-addressing hash
//! table (linear probing, backward-shift deletion, no tombstones) of `(hash, node)` slots.
//!
//! Why not `hashbrown`: a lookup there touches a control group and then, in another cache line,
//! the entry; on a trie of a million nodes both are cold misses. Here a slot is 8 bytes and holds
//! the 32-bit hash next to the node, so a probe is one cache line, a mismatch almost never touches
//! the node, the table can be resized and pruned without the labels, and [`ChildTable::prefetch`]
//! can pull in a slot before the lookup that needs it.

/// Marks an empty slot (`u32::MAX` is never a node index: the trie has fewer than 2^31 nodes).
const EMPTY_NODE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u32,
    node: u32,
}

const EMPTY: Slot = Slot {
    hash: 0,
    node: EMPTY_NODE,
};

/// At most 4 of 5 slots in use: linear probing stays short (about 1.5 slots per hit and 5 per
/// miss at that load, usually within one cache line).
fn max_len(slots: usize) -> usize {
    slots / 5 * 4
}

#[derive(Debug, Default)]
pub(super) struct ChildTable {
    /// A power of two in length, or empty.
    slots: Box<[Slot]>,
    len: usize,
}

impl ChildTable {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the table.
    pub(super) fn allocation_size(&self) -> usize {
        self.slots.len() * size_of::<Slot>()
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Hints the CPU to load the slot where a lookup of `hash` starts.
    #[inline]
    pub(super) fn prefetch(&self, hash: u32) {
        if let Some(slot) = self.slots.get(hash as usize & self.mask()) {
            prefetch(slot);
        }
    }

    /// The first node stored under `hash` for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, hash: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.node == EMPTY_NODE {
                return None;
            }
            if slot.hash == hash && eq(slot.node) {
                return Some(slot.node);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `node` under `hash`; the caller guarantees it is not present yet.
    pub(super) fn insert(&mut self, hash: u32, node: u32) {
        if self.len + 1 > max_len(self.slots.len()) {
            self.resize((self.slots.len() * 2).max(16));
        }
        place(&mut self.slots, Slot { hash, node });
        self.len += 1;
    }

    /// Removes `node`, stored under `hash`; returns whether it was there.
    pub(super) fn remove(&mut self, hash: u32, node: u32) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.mask();
        let mut hole = hash as usize & mask;
        loop {
            let slot = self.slots[hole];
            if slot.node == EMPTY_NODE {
                return false;
            }
            if slot.node == node {
                break;
            }
            hole = (hole + 1) & mask;
        }
        // Backward shift: pull every later slot of the run whose home is not between the hole and
        // itself back into the hole, so lookups never need tombstones.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let slot = self.slots[j];
            if slot.node == EMPTY_NODE {
                break;
            }
            let home = slot.hash as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = slot;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }

    /// Shrinks to the smallest size that holds the current nodes.
    pub(super) fn shrink_to_fit(&mut self) {
        if self.len == 0 {
            self.slots = Box::default();
            return;
        }
        let mut size = 16;
        while max_len(size) < self.len {
            size *= 2;
        }
        if size < self.slots.len() {
            self.resize(size);
        }
    }

    fn resize(&mut self, size: usize) {
        let mut slots = Vec::with_capacity(size);
        advise_huge_pages(slots.as_ptr(), size);
        slots.resize(size, EMPTY);
        let mut slots = slots.into_boxed_slice();
        for &slot in self.slots.iter().filter(|s| s.node != EMPTY_NODE) {
            place(&mut slots, slot);
        }
        self.slots = slots;
    }
}

fn place(slots: &mut [Slot], slot: Slot) {
    let mask = slots.len() - 1;
    let mut i = slot.hash as usize & mask;
    while slots[i].node != EMPTY_NODE {
        i = (i + 1) & mask;
    }
    slots[i] = slot;
}

/// Asks the kernel to back the 2 MiB-aligned part of `len` elements at `ptr` with transparent
/// huge pages. Call it before the memory is first written. On a trie of a million nodes every
/// lookup is a random access into tens of MiB: with 4 KiB pages each one also misses the TLB and
/// costs a page walk, which even a prefetch has to wait for. A no-op below 2 MiB, off Linux, or
/// when THP is disabled.
pub(super) fn advise_huge_pages<T>(ptr: *const T, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let begin = ptr as usize;
        let start = begin.next_multiple_of(HUGE_PAGE);
        let end = (begin + len * size_of::<T>()) & !(HUGE_PAGE - 1);
        if end > start {
            // SAFETY: MADV_HUGEPAGE only changes how the kernel backs pages inside an allocation
            // the caller owns; contents and validity stay as they are.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// A prefetch hint for the cache line holding `value`; a no-op off x86-64.
#[inline(always)]
pub(super) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is only a hint, never faults, and `value` is a valid reference.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Few distinct hashes whose home slots wrap around the end of the table.
    fn h(node: u32) -> u32 {
        (u32::MAX - 3).wrapping_add(node % 7)
    }

    #[test]
    fn insert_find_remove_with_collisions() {
        let mut table = ChildTable::default();
        // Many equal hashes and hashes that share a home slot, wrapping around the end.
        for node in 0..1000u32 {
            table.insert(h(node), node);
        }
        assert_eq!(table.len(), 1000);
        for node in 0..1000u32 {
            assert_eq!(table.find(h(node), |n| n == node), Some(node));
        }
        for node in (0..1000u32).step_by(3) {
            assert!(table.remove(h(node), node));
            assert!(!table.remove(h(node), node));
        }
        for node in 0..1000u32 {
            let want = (node % 3 != 0).then_some(node);
            assert_eq!(table.find(h(node), |n| n == node), want);
        }
        table.shrink_to_fit();
        for node in 0..1000u32 {
            let want = (node % 3 != 0).then_some(node);
            assert_eq!(table.find(h(node), |n| n == node), want);
        }
        for node in 0..1000u32 {
            table.remove(h(node), node);
        }
        assert_eq!(table.len(), 0);
        table.shrink_to_fit();
        assert_eq!(table.allocation_size(), 0);
    }
}
