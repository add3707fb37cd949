//! Exclusive subscriptions, `$exclusive/<filter>` (FEATURES.md §5): at most one client
//! broker-wide holds a filter. The lock table of a filter lives on its lock shard,
//! `hash(filter) % nr_shards` ([`lock_shard`]); the subscriber's home shard asks it with
//! [`MeshMsg::ExclusiveLock`] (or a local call when it is the lock shard) and holds the SUBACK
//! until [`MeshMsg::ExclusiveLockReply`]. Once granted, the subscription is an ordinary one to
//! `<filter>`, remembered in the client's `exclusive` list so that UNSUBSCRIBE of
//! `$exclusive/<filter>` and the end of the session send [`MeshMsg::ExclusiveUnlock`].
//!
//! This file owns the lock table (on every shard, for the filters it is lock shard of) and the
//! home-shard side: the lock requests in flight and what a reply completes.

use std::num::NonZeroU32;

use ahash::AHashMap;

use super::mesh::{MeshMsg, ShardId, stable_hash};
use super::subscribe::SubOpts;
use super::{Broker, ClientKey};
use crate::protocol::{MqttStr, ReasonCode, RetainHandling, SubscriptionOptions};
use crate::topic::has_wildcards;

/// Where the lock of an exclusive filter lives: `hash(filter) % nr_shards`.
pub fn lock_shard(filter: &str, nr_shards: usize) -> ShardId {
    (stable_hash(filter.as_bytes()) % nr_shards as u64) as usize
}

/// Who holds a lock: the client id (stable across reconnects) and its home shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub shard: ShardId,
    pub client_id: MqttStr,
}

#[derive(Debug)]
pub struct ExclusiveLock {
    pub filter: MqttStr,
    pub holder: Holder,
    pub token: u64,
}

/// This shard's side of exclusive subscriptions.
#[derive(Debug, Default)]
pub(super) struct Exclusive {
    /// filter → holder, for the filters this shard is lock shard of.
    locks: AHashMap<MqttStr, Holder>,
    /// Lock requests of this shard's clients in flight: token → what the reply completes.
    waits: AHashMap<u64, LockWait>,
}

/// A subscription waiting for its lock; its SUBACK is the held one with `seq`.
#[derive(Debug)]
pub(super) struct LockWait {
    pub seq: u64,
    /// Index of the filter's reason in that SUBACK.
    pub index: usize,
    pub client: ClientKey,
    pub generation: u32,
    /// Who asked, to release a lock granted after the session ended.
    pub holder: Holder,
    pub filter: MqttStr,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<NonZeroU32>,
}

impl Exclusive {
    /// Takes the lock of `filter` for `holder` if it is free or already `holder`'s.
    fn try_lock(&mut self, filter: &MqttStr, holder: Holder) -> bool {
        match self.locks.get(filter) {
            Some(h) => *h == holder,
            None => {
                self.locks.insert(filter.clone(), holder);
                true
            }
        }
    }

    /// Releases the lock of `filter` if `holder` has it.
    fn unlock(&mut self, filter: &MqttStr, holder: &Holder) {
        if self.locks.get(filter) == Some(holder) {
            self.locks.remove(filter);
        }
    }

    /// Locks held on this shard (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.locks.len()
    }
}

/// What an exclusive SUBSCRIBE filter comes to right away.
pub(super) enum ExclusiveOutcome {
    /// The SUBACK reason, and the filter to look retained messages up for.
    Done(ReasonCode, Option<(MqttStr, SubOpts)>),
    /// A lock request went to the lock shard with this token.
    Pending(u64),
}

impl Broker {
    pub(super) fn holder(&self, key: ClientKey) -> Holder {
        Holder {
            shard: self.shard,
            client_id: MqttStr::from(&*self.clients[key as usize].id),
        }
    }

    /// `$exclusive/<filter>` in a SUBSCRIBE of `key` (exclusive subscriptions enabled).
    pub(super) fn subscribe_exclusive(
        &mut self,
        key: ClientKey,
        filter: MqttStr,
        options: SubscriptionOptions,
        subscription_id: Option<NonZeroU32>,
    ) -> ExclusiveOutcome {
        if has_wildcards(&filter) && !self.settings.wildcard_subscription {
            return ExclusiveOutcome::Done(ReasonCode::WildcardSubscriptionsNotSupported, None);
        }
        let holds = self.clients[key as usize].exclusive().contains(&filter);
        let dest = lock_shard(&filter, self.nr_shards);
        if holds || dest == self.shard {
            let holder = self.holder(key);
            if !holds && !self.exclusive.try_lock(&filter, holder) {
                return ExclusiveOutcome::Done(ReasonCode::QuotaExceeded, None);
            }
            let (reason, send) = self.exclusive_granted(key, filter, options, subscription_id);
            return ExclusiveOutcome::Done(reason, send);
        }
        let token = self.next_token;
        self.next_token += 1;
        let lock = ExclusiveLock {
            filter,
            holder: self.holder(key),
            token,
        };
        self.send_mesh(dest, MeshMsg::ExclusiveLock(Box::new(lock)));
        ExclusiveOutcome::Pending(token)
    }

    /// The lock of `filter` is `key`'s: subscribes it as an ordinary subscription.
    fn exclusive_granted(
        &mut self,
        key: ClientKey,
        filter: MqttStr,
        options: SubscriptionOptions,
        subscription_id: Option<NonZeroU32>,
    ) -> (ReasonCode, Option<(MqttStr, SubOpts)>) {
        let opts = SubOpts {
            qos: options.qos.min(self.settings.max_qos_allowed),
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            subscription_id,
        };
        let Some(existed) = self.add_sub(key, &filter, opts) else {
            if !self.clients[key as usize].exclusive().contains(&filter) {
                self.unlock_exclusive(key, filter);
            }
            return (ReasonCode::QuotaExceeded, None);
        };
        let client = &mut self.clients[key as usize];
        if !client.exclusive().contains(&filter) {
            client.extra_mut().exclusive.push(filter.clone());
        }
        let send = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => !existed,
            RetainHandling::DoNotSend => false,
        };
        (
            super::subscribe::granted(opts.qos),
            send.then_some((filter, opts)),
        )
    }

    /// Releases `key`'s lock of `filter` on its lock shard.
    pub(super) fn unlock_exclusive(&mut self, key: ClientKey, filter: MqttStr) {
        let holder = self.holder(key);
        self.unlock_as(holder, filter);
    }

    fn unlock_as(&mut self, holder: Holder, filter: MqttStr) {
        let dest = lock_shard(&filter, self.nr_shards);
        if dest == self.shard {
            self.exclusive.unlock(&filter, &holder);
        } else {
            self.send_mesh(dest, MeshMsg::ExclusiveUnlock { filter, holder });
        }
    }

    /// UNSUBSCRIBE of `$exclusive/<filter>`: removes the subscription and releases the lock;
    /// whether either existed.
    pub(super) fn unsubscribe_exclusive(&mut self, key: ClientKey, filter: &MqttStr) -> bool {
        let fid = self.local.id(filter);
        let removed = fid.is_some_and(|f| self.clients[key as usize].subs.remove(f));
        if removed {
            self.remove_local_sub(key, filter);
        }
        let client = &mut self.clients[key as usize];
        let Some(i) = client.exclusive().iter().position(|f| f == filter) else {
            return removed;
        };
        let filter = client.extra_mut().exclusive.swap_remove(i);
        self.unlock_exclusive(key, filter);
        true
    }

    /// The session of `key` ends: every lock it holds is released.
    pub(super) fn end_exclusive(&mut self, key: ClientKey) {
        let filters = self.clients[key as usize].take_exclusive();
        for filter in filters {
            self.unlock_exclusive(key, filter);
        }
    }

    /// On the lock shard: a lock request from `from`.
    pub(super) fn exclusive_lock_in(&mut self, from: ShardId, lock: ExclusiveLock) {
        let granted = self.exclusive.try_lock(&lock.filter, lock.holder);
        self.send_mesh(
            from,
            MeshMsg::ExclusiveLockReply {
                token: lock.token,
                granted,
            },
        );
    }

    /// On the lock shard: an unlock.
    pub(super) fn exclusive_unlock_in(&mut self, filter: MqttStr, holder: Holder) {
        self.exclusive.unlock(&filter, &holder);
    }

    /// On the home shard: the answer to a lock request; completes the held SUBACK's reason.
    pub(super) fn exclusive_reply_in(&mut self, token: u64, granted: bool) {
        let Some(w) = self.exclusive.waits.remove(&token) else {
            return;
        };
        let current = self
            .clients
            .get(w.client as usize)
            .is_some_and(|c| c.generation == w.generation);
        let (reason, send) = if !current {
            if granted {
                // The session is gone (or replaced): give the lock back.
                self.unlock_as(w.holder.clone(), w.filter.clone());
            }
            (ReasonCode::UnspecifiedError, None)
        } else if granted {
            self.exclusive_granted(w.client, w.filter, w.options, w.subscription_id)
        } else {
            (ReasonCode::QuotaExceeded, None)
        };
        self.lock_answered(w.seq, w.index, reason, send);
    }

    pub(super) fn add_lock_wait(&mut self, token: u64, wait: LockWait) {
        self.exclusive.waits.insert(token, wait);
    }
}
