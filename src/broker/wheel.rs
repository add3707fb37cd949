//! A lazy hashed timer wheel with one-second ticks: one per purpose per shard (keep-alive,
//! will delay, session expiry), owned by that shard. A key (a slab index) costs a `u32` deadline
//! and a `u32` slot entry; extending a deadline is one store, and a tick walks one slot, re-filing
//! the keys whose deadline moved. No task or glommio timer per connection (DESIGN.md).

use crate::limits::WHEEL_SLOTS;

#[derive(Debug)]
pub struct Wheel {
    slots: Vec<Vec<u32>>,
    /// Absolute deadline tick per key; 0 = not armed.
    deadline: Vec<u32>,
    tick: u32,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            deadline: Vec::with_capacity(crate::limits::CONNECTIONS_RESERVED_PER_SHARD),
            tick: 1,
        }
    }
}

impl Wheel {
    /// The current tick (seconds since the wheel started, from 1).
    pub fn now(&self) -> u32 {
        self.tick
    }

    /// Arms `key` to expire no sooner than `after_secs` seconds from now, replacing any earlier
    /// deadline of the key. The current tick is partly over, so the deadline is `after_secs`
    /// whole ticks after it: the key fires between `after_secs` and `after_secs + 1` seconds
    /// from now, never early.
    pub fn arm(&mut self, key: u32, after_secs: u32) {
        let at = self.deadline_after(after_secs);
        let k = key as usize;
        if self.deadline.len() <= k {
            self.deadline.resize(k + 1, 0);
        }
        self.deadline[k] = at;
        self.file(key, at);
    }

    /// Moves an armed key's deadline later (a keep-alive touch): one store, no wheel operation.
    /// A key that is not armed, or a deadline earlier than the armed one, is re-armed instead.
    pub fn extend(&mut self, key: u32, after_secs: u32) {
        let at = self.deadline_after(after_secs);
        match self.deadline.get_mut(key as usize) {
            Some(d) if *d != 0 && *d <= at => *d = at,
            _ => self.arm(key, after_secs),
        }
    }

    fn deadline_after(&self, after_secs: u32) -> u32 {
        self.tick.saturating_add(after_secs).saturating_add(1)
    }

    pub fn disarm(&mut self, key: u32) {
        if let Some(d) = self.deadline.get_mut(key as usize) {
            *d = 0;
        }
    }

    pub fn is_armed(&self, key: u32) -> bool {
        self.deadline.get(key as usize).is_some_and(|&d| d != 0)
    }

    /// Advances one tick and appends every key whose deadline has come to `expired` (each once;
    /// an expired key is disarmed).
    pub fn advance(&mut self, expired: &mut Vec<u32>) {
        self.tick += 1;
        let n = self.slots.len() as u32;
        let slot = (self.tick % n) as usize;
        let keys = std::mem::take(&mut self.slots[slot]);
        for &key in &keys {
            let d = self.deadline[key as usize];
            if d == 0 {
                continue;
            }
            if d <= self.tick {
                self.deadline[key as usize] = 0;
                expired.push(key);
            } else if (d % n) as usize != slot || d - self.tick >= n {
                self.file(key, d);
            } else {
                self.slots[slot].push(key);
            }
        }
        // Keep the slot's allocation for the next round if nothing was re-filed into it.
        if self.slots[slot].is_empty() {
            let mut keys = keys;
            keys.clear();
            self.slots[slot] = keys;
        }
    }

    fn file(&mut self, key: u32, at: u32) {
        let n = self.slots.len() as u32;
        self.slots[(at % n) as usize].push(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(w: &mut Wheel, ticks: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for _ in 0..ticks {
            w.advance(&mut expired);
            out.extend(expired.drain(..).map(|k| (w.now(), k)));
        }
        out
    }

    #[test]
    fn keys_expire_at_their_deadline_once() {
        let mut w = Wheel::default();
        let t0 = w.now();
        w.arm(1, 3);
        w.arm(2, 1);
        w.arm(3, 1000); // longer than the wheel: re-filed lazily
        let fired = run(&mut w, 1002);
        assert_eq!(fired, vec![(t0 + 2, 2), (t0 + 4, 1), (t0 + 1001, 3)]);
    }

    #[test]
    fn extend_delays_and_disarm_cancels() {
        let mut w = Wheel::default();
        let t0 = w.now();
        w.arm(7, 2);
        w.arm(8, 2);
        w.extend(7, 10);
        w.disarm(8);
        assert!(!w.is_armed(8));
        let fired = run(&mut w, 20);
        assert_eq!(fired, vec![(t0 + 11, 7)]);
        assert!(!w.is_armed(7));
    }

    #[test]
    fn rearming_earlier_fires_at_the_new_deadline_only() {
        let mut w = Wheel::default();
        let t0 = w.now();
        w.arm(4, 50);
        w.arm(4, 5);
        assert_eq!(run(&mut w, 60), vec![(t0 + 6, 4)]);
    }
}
