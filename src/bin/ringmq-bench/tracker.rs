//! Per-stream sequence tracking: one stream is what one subscription (or one shared group)
//! receives from one publisher. Sequence numbers start at 0 and grow by one per message; the
//! tracker keeps the highest number seen and the ranges skipped below it, so that a late message
//! is told apart from a duplicate. State is a few words while messages arrive in order.

use std::collections::VecDeque;

/// At most this many skipped ranges are remembered per stream; beyond, the oldest is forgotten
/// (a message of it arriving later is then counted as a duplicate, never as a new one).
pub const MAX_GAPS: usize = 65_536;

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next one, or one after a gap.
    InOrder,
    /// Lower than the highest seen, filling a gap: new, but out of order.
    Reordered,
    /// Seen before.
    Duplicate,
}

#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Highest sequence number seen + 1 (0 before the first message).
    next: u64,
    /// Distinct messages seen.
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Skipped ranges `[from, to)` below `next`, ascending, disjoint.
    gaps: VecDeque<(u64, u64)>,
    /// Messages of forgotten gaps (see [`MAX_GAPS`]).
    forgotten: u64,
}

impl Stream {
    pub fn observe(&mut self, seq: u32) -> Seen {
        let seq = seq as u64;
        if seq == self.next {
            self.next += 1;
            self.unique += 1;
            return Seen::InOrder;
        }
        if seq > self.next {
            if self.gaps.len() >= MAX_GAPS {
                let (a, b) = self.gaps.pop_front().expect("full");
                self.forgotten += b - a;
            }
            self.gaps.push_back((self.next, seq));
            self.next = seq + 1;
            self.unique += 1;
            return Seen::InOrder;
        }
        // Below the highest: fills a gap, or was seen already. Gaps are sorted by start.
        let i = self.gaps.partition_point(|&(_, to)| to <= seq);
        match self.gaps.get(i).copied() {
            Some((from, to)) if from <= seq => {
                match (seq == from, seq + 1 == to) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        self.gaps.insert(i + 1, (seq + 1, to));
                    }
                }
                self.unique += 1;
                self.reordered += 1;
                Seen::Reordered
            }
            _ => {
                self.duplicates += 1;
                Seen::Duplicate
            }
        }
    }

    /// Messages missing below the highest one seen, the range before the first one included.
    pub fn missing(&self) -> u64 {
        self.gaps.iter().map(|&(a, b)| b - a).sum::<u64>() + self.forgotten
    }

    /// Messages missing between the first and the highest one seen (for a subscriber that may
    /// have joined a running publisher).
    pub fn missing_after_first(&self) -> u64 {
        let initial = match self.gaps.front() {
            Some(&(0, b)) if self.forgotten == 0 => b,
            _ => 0,
        };
        self.missing() - initial
    }

    /// Highest sequence number seen + 1.
    #[cfg(test)]
    pub fn next(&self) -> u64 {
        self.next
    }
}

/// Totals over many streams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub missing: u64,
    pub missing_after_first: u64,
}

impl Totals {
    pub fn add(&mut self, s: &Stream) {
        self.unique += s.unique;
        self.duplicates += s.duplicates;
        self.reordered += s.reordered;
        self.missing += s.missing();
        self.missing_after_first += s.missing_after_first();
    }

    pub fn merge(&mut self, o: &Totals) {
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.missing += o.missing;
        self.missing_after_first += o.missing_after_first;
    }
}

/// Loss: what was expected but never arrived (duplicates do not make up for it).
pub fn lost(expected: u64, unique: u64) -> u64 {
    expected.saturating_sub(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u32]) -> Stream {
        let mut s = Stream::default();
        for &q in seqs {
            s.observe(q);
        }
        s
    }

    #[test]
    fn in_order_stream_is_clean() {
        let s = feed(&[0, 1, 2, 3, 4]);
        assert_eq!(
            (s.unique, s.duplicates, s.reordered, s.missing()),
            (5, 0, 0, 0)
        );
        assert_eq!(s.next(), 5);
        assert!(s.gaps.is_empty());
    }

    #[test]
    fn gaps_are_loss_until_filled() {
        let s = feed(&[0, 1, 4, 5, 9]);
        assert_eq!(s.unique, 5);
        assert_eq!(s.missing(), 2 + 3);
        assert_eq!(lost(10, s.unique), 5);
    }

    #[test]
    fn late_arrivals_are_reordered_not_lost() {
        let mut s = feed(&[0, 3, 1]);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.missing(), 1);
        assert_eq!(s.observe(2), Seen::Reordered);
        assert_eq!(s.missing(), 0);
        assert_eq!((s.unique, s.duplicates), (4, 0));
        // Filling the middle of a gap splits it.
        let mut s = feed(&[0, 10, 5]);
        assert_eq!(Vec::from(s.gaps.clone()), vec![(1, 5), (6, 10)]);
        assert_eq!(s.observe(1), Seen::Reordered);
        assert_eq!(s.observe(9), Seen::Reordered);
        assert_eq!(Vec::from(s.gaps.clone()), vec![(2, 5), (6, 9)]);
        assert_eq!(s.missing(), 6);
    }

    #[test]
    fn duplicates_are_counted_once_and_not_as_new() {
        let mut s = feed(&[0, 1, 2]);
        assert_eq!(s.observe(1), Seen::Duplicate);
        assert_eq!(s.observe(2), Seen::Duplicate);
        assert_eq!(s.observe(0), Seen::Duplicate);
        assert_eq!((s.unique, s.duplicates, s.reordered), (3, 3, 0));
        // A late one is new once, then a duplicate.
        let mut s = feed(&[0, 2]);
        assert_eq!(s.observe(1), Seen::Reordered);
        assert_eq!(s.observe(1), Seen::Duplicate);
        assert_eq!(lost(3, s.unique), 0);
    }

    #[test]
    fn a_missing_start_is_loss_unless_joined_late() {
        let s = feed(&[5, 6, 7, 9]);
        assert_eq!(s.missing(), 5 + 1);
        assert_eq!(s.missing_after_first(), 1);
    }

    #[test]
    fn gap_memory_is_bounded() {
        let mut s = Stream::default();
        for i in 0..(MAX_GAPS as u32 + 10) {
            s.observe(i * 2 + 1);
        }
        assert_eq!(s.gaps.len(), MAX_GAPS);
        assert_eq!(s.missing(), MAX_GAPS as u64 + 10);
        // A message of a forgotten gap is not counted as new.
        assert_eq!(s.observe(0), Seen::Duplicate);
    }

    #[test]
    fn totals_add_up() {
        let mut t = Totals::default();
        t.add(&feed(&[0, 1, 1]));
        t.add(&feed(&[0, 2, 1]));
        assert_eq!(
            t,
            Totals {
                unique: 5,
                duplicates: 1,
                reordered: 1,
                missing: 0,
                missing_after_first: 0
            }
        );
    }
}
