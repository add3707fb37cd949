//! Single-threaded wake-up primitives for tasks of one shard (never crossing cores, so plain
//! `Cell`s suffice): a [`Notify`] that wakes every waiter, and per-connection wake flags.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting at the time of [`Notify::notify_all`].
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes at the next [`Notify::notify_all`] after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
            registered: false,
        }
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
    registered: bool,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        // Registered once: a waiter polled again by a spurious wake-up does not pile up wakers.
        if !self.registered {
            self.notify.waiters.borrow_mut().push(cx.waker().clone());
            self.registered = true;
        }
        Poll::Pending
    }
}

/// One wake flag and waker per connection slot, indexed by the broker's connection id.
#[derive(Default)]
pub struct ConnWakers {
    slots: RefCell<Vec<(bool, Option<Waker>)>>,
}

impl ConnWakers {
    pub fn reset(&self, id: u32) {
        let mut slots = self.slots.borrow_mut();
        let i = id as usize;
        if slots.len() <= i {
            slots.resize_with(i + 1, Default::default);
        }
        slots[i] = (false, None);
    }

    pub fn wake(&self, id: u32) {
        let waker = {
            let mut slots = self.slots.borrow_mut();
            let Some(slot) = slots.get_mut(id as usize) else {
                return;
            };
            slot.0 = true;
            slot.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Completes once [`ConnWakers::wake`] was called for `id` (consuming the flag).
    pub fn woken(&self, id: u32) -> Woken<'_> {
        Woken { wakers: self, id }
    }
}

pub struct Woken<'a> {
    wakers: &'a ConnWakers,
    id: u32,
}

impl Future for Woken<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut slots = self.wakers.slots.borrow_mut();
        let slot = &mut slots[self.id as usize];
        if slot.0 {
            slot.0 = false;
            return Poll::Ready(());
        }
        match &slot.1 {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.1 = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
