//! SUBSCRIBE and UNSUBSCRIBE on the subscriber's home shard: validation, the shard's local
//! subscription trie (filter → local sessions), the replicated route table (filter → other shards
//! with subscribers, kept current by RouteAdd / RouteDel broadcasts) and retained-message lookups.

use std::num::NonZeroU32;
use std::sync::Arc;

use super::conn::Flow;
use super::exclusive::{ExclusiveOutcome, LockWait};
use super::mesh::{MeshMsg, RetainedQuery, RetainedTarget, ShardId, retain_shard};
use super::{Broker, ClientKey, ConnId};
use crate::limits::{FILTERS_RESERVED_PER_SHARD, SHARDS_MAX};
use crate::protocol::{
    MqttStr, Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions,
    UnsubAck, Unsubscribe,
};
use crate::session::{DeliveryOpts, Message, ShareName, SubIds};
use crate::topic::{
    FilterId, Matches, SubscriptionTopic, TopicTrie, has_wildcards, parse_subscription,
};

/// How one subscription wants its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubOpts {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub subscription_id: Option<NonZeroU32>,
}

/// The filters one session subscribes to, as their ids in the shard's local trie (which keeps
/// the strings, and the options with each subscriber). Most sessions hold one, kept inline.
#[derive(Debug, Default)]
pub(super) enum SubList {
    #[default]
    Empty,
    One(FilterId),
    Many(Vec<FilterId>),
}

impl SubList {
    pub fn ids(&self) -> &[FilterId] {
        match self {
            SubList::Empty => &[],
            SubList::One(id) => std::slice::from_ref(id),
            SubList::Many(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        self.ids().len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids().is_empty()
    }

    fn contains(&self, id: FilterId) -> bool {
        self.ids().contains(&id)
    }

    fn push(&mut self, id: FilterId) {
        match self {
            SubList::Empty => *self = SubList::One(id),
            SubList::One(first) => *self = SubList::Many(vec![*first, id]),
            SubList::Many(v) => v.push(id),
        }
    }

    /// Whether `id` was in the list.
    pub fn remove(&mut self, id: FilterId) -> bool {
        match self {
            SubList::One(only) if *only == id => *self = SubList::Empty,
            SubList::Many(v) if v.contains(&id) => {
                v.retain(|&f| f != id);
                if let [only] = v[..] {
                    *self = SubList::One(only);
                }
            }
            _ => return false,
        }
        true
    }
}

/// The local subscribers of one filter: most filters have one, kept inline.
#[derive(Debug)]
enum Subscribers {
    One((ClientKey, SubOpts)),
    Many(Vec<(ClientKey, SubOpts)>),
}

impl Default for Subscribers {
    fn default() -> Self {
        Subscribers::Many(Vec::new())
    }
}

impl Subscribers {
    fn as_mut_slice(&mut self) -> &mut [(ClientKey, SubOpts)] {
        match self {
            Subscribers::One(s) => std::slice::from_mut(s),
            Subscribers::Many(v) => v,
        }
    }

    fn as_slice(&self) -> &[(ClientKey, SubOpts)] {
        match self {
            Subscribers::One(s) => std::slice::from_ref(s),
            Subscribers::Many(v) => v,
        }
    }

    fn push(&mut self, s: (ClientKey, SubOpts)) {
        match self {
            Subscribers::Many(v) if v.is_empty() => *self = Subscribers::One(s),
            Subscribers::Many(v) => v.push(s),
            Subscribers::One(first) => *self = Subscribers::Many(vec![*first, s]),
        }
    }

    fn remove(&mut self, key: ClientKey) {
        match self {
            Subscribers::One((k, _)) if *k == key => *self = Subscribers::default(),
            Subscribers::One(_) => {}
            Subscribers::Many(v) => {
                v.retain(|(k, _)| *k != key);
                if let [only] = v[..] {
                    *self = Subscribers::One(only);
                }
            }
        }
    }
}

/// This shard's subscribers per filter.
#[derive(Debug)]
pub(super) struct LocalSubs {
    trie: TopicTrie,
    /// Indexed by `FilterId::index()`.
    subscribers: Vec<Subscribers>,
    /// Reused by every delivery.
    pub scratch: Vec<(ClientKey, SubOpts)>,
}

impl LocalSubs {
    /// Empty, with room for [`FILTERS_RESERVED_PER_SHARD`] filters reserved (address space).
    pub fn new() -> Self {
        LocalSubs {
            trie: TopicTrie::with_capacity(FILTERS_RESERVED_PER_SHARD),
            subscribers: Vec::with_capacity(FILTERS_RESERVED_PER_SHARD),
            scratch: Vec::new(),
        }
    }

    /// The id of `filter` while it has a local subscriber.
    pub fn id(&self, filter: &str) -> Option<FilterId> {
        self.trie.get(filter)
    }

    /// The filter string of a subscribed filter's id.
    pub fn filter(&self, id: FilterId) -> MqttStr {
        MqttStr::from(self.trie.filter_string(id))
    }

    /// Adds or replaces `key`'s subscription: the filter's id, and true when the filter had no
    /// local subscriber.
    fn add(&mut self, filter: &str, key: ClientKey, opts: SubOpts) -> (FilterId, bool) {
        let fid = self.trie.insert(filter);
        let id = fid.index();
        if self.subscribers.len() <= id {
            self.subscribers.resize_with(id + 1, Subscribers::default);
        }
        let subs = &mut self.subscribers[id];
        let first = subs.as_slice().is_empty();
        match subs.as_mut_slice().iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = opts,
            None => subs.push((key, opts)),
        }
        (fid, first)
    }

    /// Removes `key`'s subscription; true when the filter has no local subscriber left.
    fn remove(&mut self, filter: &str, key: ClientKey) -> bool {
        let Some(id) = self.trie.get(filter) else {
            return false;
        };
        let subs = &mut self.subscribers[id.index()];
        subs.remove(key);
        if subs.as_slice().is_empty() {
            self.trie.remove(filter);
            return true;
        }
        false
    }

    /// Distinct filters with a local subscriber.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// Some filter with a local subscriber matches `topic`.
    pub fn any_match(&self, topic: &str, matches: &mut Matches) -> bool {
        any_match(&self.trie, topic, matches)
    }

    /// Appends every (session, options) whose filter matches `topic`.
    pub fn collect(&self, topic: &str, matches: &mut Matches, out: &mut Vec<(ClientKey, SubOpts)>) {
        self.trie.matches(topic, matches);
        for id in matches.ids() {
            out.extend_from_slice(self.subscribers[id.index()].as_slice());
        }
    }
}

/// Which other shards have subscribers of each filter (replicated on every shard): a bit set of
/// `words` 64-bit words per filter, as many as the broker's shards need (one up to 64 shards).
#[derive(Debug)]
pub(super) struct Routes {
    trie: TopicTrie,
    words: usize,
    /// `words` words per `FilterId::index()`.
    shards: Vec<u64>,
}

impl Routes {
    pub fn new(nr_shards: usize) -> Self {
        debug_assert!(nr_shards <= SHARDS_MAX);
        let words = nr_shards.div_ceil(64).max(1);
        // Reserved (address space) only when there are other shards to route to.
        let filters = if nr_shards > 1 {
            FILTERS_RESERVED_PER_SHARD
        } else {
            0
        };
        Routes {
            trie: TopicTrie::with_capacity(filters),
            words,
            shards: Vec::with_capacity(filters * words),
        }
    }

    fn set(&mut self, id: usize) -> &mut [u64] {
        &mut self.shards[id * self.words..(id + 1) * self.words]
    }

    pub fn add(&mut self, filter: &str, shard: ShardId) {
        let id = self.trie.insert(filter).index();
        if self.shards.len() < (id + 1) * self.words {
            self.shards.resize((id + 1) * self.words, 0);
        }
        self.set(id)[shard / 64] |= 1 << (shard % 64);
    }

    pub fn remove(&mut self, filter: &str, shard: ShardId) {
        let Some(id) = self.trie.get(filter) else {
            return;
        };
        let set = self.set(id.index());
        set[shard / 64] &= !(1 << (shard % 64));
        if set.iter().all(|&w| w == 0) {
            self.trie.remove(filter);
        }
    }

    /// Some other shard has a subscriber of a filter matching `topic`.
    pub fn any_match(&self, topic: &str, matches: &mut Matches) -> bool {
        any_match(&self.trie, topic, matches)
    }

    /// The other shards with a subscriber of some filter matching `topic`, each once.
    pub fn matching_shards(&self, topic: &str, matches: &mut Matches, out: &mut Vec<ShardId>) {
        if self.trie.is_empty() {
            return;
        }
        self.trie.matches(topic, matches);
        let mut set = [0u64; SHARDS_MAX / 64];
        for id in matches.ids() {
            let i = id.index() * self.words;
            for (w, bits) in set.iter_mut().zip(&self.shards[i..i + self.words]) {
                *w |= bits;
            }
        }
        for (i, &w) in set[..self.words].iter().enumerate() {
            let mut w = w;
            while w != 0 {
                out.push(i * 64 + w.trailing_zeros() as usize);
                w &= w - 1;
            }
        }
    }
}

/// Some filter of `trie` matches `topic` (a filter stays in these tries only while it has a
/// subscriber).
pub(super) fn any_match(trie: &TopicTrie, topic: &str, matches: &mut Matches) -> bool {
    if trie.is_empty() {
        return false;
    }
    trie.matches(topic, matches);
    !matches.ids().is_empty()
}

/// SUBACKs held until every other shard has applied this shard's RouteAdds: a client on another
/// shard that publishes after seeing our SUBACK must find the new route (FEATURES.md §1, and the
/// usual "subscribe, then publish from another client" of conformance suites); and until the
/// lock shards have answered the exclusive subscriptions among its filters (FEATURES.md §5).
/// Held SUBACKs are released in order.
#[derive(Debug)]
pub(super) struct RouteSync {
    /// RouteAdd (and SharedAdd) broadcasts so far.
    pub epoch: u64,
    /// Highest epoch each shard has confirmed (own entry unused).
    acked: Vec<u64>,
    /// Highest epoch a RouteSync was sent for.
    requested: u64,
    pending: std::collections::VecDeque<PendingSubAck>,
    /// Numbers the held SUBACKs, for the lock replies to find theirs.
    next_seq: u64,
    /// Connections whose output (from the CONNACK on) waits for an epoch: auto subscriptions
    /// made at connect time, which have no SUBACK to hold. In epoch order.
    corked: Vec<(u64, ConnId)>,
}

#[derive(Debug)]
struct PendingSubAck {
    seq: u64,
    /// Lock replies still awaited (exclusive subscriptions).
    locks: usize,
    /// `$SYS` subscribed (options) and unsubscribed (`None`) events, published after the ack.
    events: Vec<super::sys::SubEvent>,
    epoch: u64,
    conn: ConnId,
    client: ClientKey,
    generation: u32,
    /// A SUBACK, or an UNSUBACK held behind one or behind its own sync.
    ack: HeldAck,
    retained: Vec<(MqttStr, SubOpts)>,
}

/// A held acknowledgement: only the two packets it can be, not a whole [`Packet`] (a connect
/// burst holds one per subscribing client, and a queue entry of `Packet`'s size doubled the
/// queue's peak, which the shard's heap keeps afterwards).
#[derive(Debug)]
enum HeldAck {
    Sub(SubAck),
    Unsub(UnsubAck),
}

impl HeldAck {
    fn into_packet(self) -> Packet {
        match self {
            HeldAck::Sub(a) => Packet::SubAck(a),
            HeldAck::Unsub(a) => Packet::UnsubAck(a),
        }
    }
}

/// Appends `item` to `v`, reserving room for exactly `room` items the first time: a SUBSCRIBE of
/// one filter keeps a vector of one element (not the four `Vec` grows to) while it is held.
fn push_exact<T>(v: &mut Vec<T>, item: Option<T>, room: usize) {
    if let Some(item) = item {
        if v.capacity() == 0 {
            v.reserve_exact(room.max(1));
        }
        v.push(item);
    }
}

impl RouteSync {
    pub fn new(nr_shards: usize) -> Self {
        RouteSync {
            epoch: 0,
            acked: vec![0; nr_shards],
            requested: 0,
            pending: Default::default(),
            next_seq: 0,
            corked: Vec::new(),
        }
    }

    fn synced(&self, me: ShardId) -> u64 {
        let others = self.acked.iter().enumerate().filter(|&(s, _)| s != me);
        others.map(|(_, &e)| e).min().unwrap_or(self.epoch)
    }
}

impl Broker {
    pub(super) fn route_sync_acked(&mut self, from: ShardId, epoch: u64) {
        let acked = &mut self.route_sync.acked[from];
        *acked = (*acked).max(epoch);
        self.release_held_subacks();
        self.release_corked();
    }

    /// Asks every other shard to confirm it has applied the route broadcasts up to now, unless
    /// a confirmation of `epoch` or later is already asked for.
    fn request_route_sync(&mut self, epoch: u64) {
        if self.route_sync.requested < epoch {
            let now = self.route_sync.epoch;
            self.route_sync.requested = now;
            self.broadcast(|| MeshMsg::RouteSync(now));
        }
    }

    /// Holds connection `id`'s output, its CONNACK first, until the other shards have applied
    /// the route broadcasts made so far.
    pub(super) fn cork_until_routes_synced(&mut self, id: ConnId) {
        let epoch = self.route_sync.epoch;
        if let Some(c) = self.conns.get_mut(id as usize) {
            c.corked = true;
            self.route_sync.corked.push((epoch, id));
            self.request_route_sync(epoch);
        }
    }

    /// Lets out the output of the corked connections whose routes every shard has now.
    fn release_corked(&mut self) {
        if self.route_sync.corked.is_empty() {
            return;
        }
        let synced = self.route_sync.synced(self.shard);
        let n = self
            .route_sync
            .corked
            .partition_point(|&(e, _)| e <= synced);
        let released: Vec<_> = self.route_sync.corked.drain(..n).collect();
        for (_, id) in released {
            // A connection slot reused meanwhile may wait for a later epoch of its own.
            if self.route_sync.corked.iter().any(|&(_, c)| c == id) {
                continue;
            }
            if let Some(c) = self.conns.get_mut(id as usize) {
                c.corked = false;
                if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(id);
                }
            }
        }
    }

    /// Sends the held SUBACKs that are complete, in order; asks for a RouteSync the first one
    /// still waits for.
    fn release_held_subacks(&mut self) {
        let synced = self.route_sync.synced(self.shard);
        while let Some(p) = self.route_sync.pending.front() {
            if p.locks > 0 {
                return;
            }
            if p.epoch > synced {
                // Asks for the current epoch, not only the front's: every route broadcast so far
                // is already queued ahead of the RouteSync, so one round trip releases every
                // SUBACK held now. (Asking for the front's epoch released one subscription per
                // round trip in a burst of new filters: a connect burst held nearly all its
                // SUBACKs at once, and the shard heaps kept that peak's pages.)
                let epoch = p.epoch;
                self.request_route_sync(epoch);
                return;
            }
            let p = self.route_sync.pending.pop_front().expect("front exists");
            let ack = p.ack.into_packet();
            self.complete_subscribe(p.conn, p.client, p.generation, ack, p.retained);
            if self
                .clients
                .get(p.client as usize)
                .is_some_and(|c| c.generation == p.generation)
            {
                self.publish_sub_events(p.client, p.events);
            }
        }
        // A burst of subscriptions (a reconnect storm) must not leave its peak queue behind: the
        // queue is freed once empty, and halved when mostly empty. Not shrunk to fit on every
        // release: that reallocated the queue at a new size each time, and the freed blocks of
        // every size stayed parked in the thread's malloc cache after the burst.
        let pending = &mut self.route_sync.pending;
        if pending.is_empty() {
            *pending = std::collections::VecDeque::new();
        } else if pending.capacity() >= 64 && pending.capacity() > 4 * pending.len() {
            pending.shrink_to(2 * pending.len());
        }
    }

    /// A lock shard answered for the filter at `index` of held SUBACK `seq`.
    pub(super) fn lock_answered(
        &mut self,
        seq: u64,
        index: usize,
        reason: ReasonCode,
        send: Option<(MqttStr, SubOpts)>,
    ) {
        let epoch = self.route_sync.epoch;
        let Some(p) = self.route_sync.pending.iter_mut().find(|p| p.seq == seq) else {
            return;
        };
        if let HeldAck::Sub(ack) = &mut p.ack {
            ack.reasons[index] = reason;
        }
        p.retained.extend(send);
        p.locks -= 1;
        // The subscription just made may have added a route.
        p.epoch = p.epoch.max(epoch);
        self.release_held_subacks();
    }

    /// Sends the SUBACK, then asks for the retained messages (which follow it).
    fn complete_subscribe(
        &mut self,
        conn: ConnId,
        key: ClientKey,
        generation: u32,
        ack: Packet,
        retained: Vec<(MqttStr, SubOpts)>,
    ) {
        let current = self
            .clients
            .get(key as usize)
            .is_some_and(|c| c.generation == generation);
        if !current {
            return;
        }
        if self
            .conns
            .get(conn as usize)
            .is_some_and(|c| c.client == Some(key))
        {
            self.send(conn, &ack);
        }
        for (filter, opts) in retained {
            self.query_retained(key, filter, opts);
        }
    }

    pub(super) fn handle_subscribe(&mut self, id: ConnId, key: ClientKey, s: Subscribe) -> Flow {
        let filters = s.filters.len();
        let mut reasons = Vec::with_capacity(filters);
        let mut retained = Vec::new();
        let sub_id = s.properties.subscription_identifier;
        // Numbered now: a lock reply for a SUBSCRIBE cut short by a violation finds no SUBACK.
        let seq = self.route_sync.next_seq;
        self.route_sync.next_seq += 1;
        let mut locks = 0;
        for (filter, options) in s.filters {
            // Rewrite first (FEATURES.md §8); the result is validated as any filter.
            let filter = match self.rewrite_filter(key, &filter) {
                Some(f) => MqttStr::from(f),
                None => filter,
            };
            if let Some(inner) = self.exclusive_filter(&filter) {
                match self.subscribe_exclusive(key, inner.clone(), options, sub_id) {
                    ExclusiveOutcome::Done(reason, send) => {
                        reasons.push(reason);
                        push_exact(&mut retained, send, filters + 1 - reasons.len());
                    }
                    ExclusiveOutcome::Pending(token) => {
                        let wait = LockWait {
                            seq,
                            index: reasons.len(),
                            client: key,
                            generation: self.clients[key as usize].generation,
                            holder: self.holder(key),
                            filter: inner,
                            options,
                            subscription_id: sub_id,
                        };
                        self.add_lock_wait(token, wait);
                        // Filled in by the reply.
                        reasons.push(ReasonCode::UnspecifiedError);
                        locks += 1;
                    }
                }
                continue;
            }
            match self.subscribe_one(key, filter, options, sub_id) {
                Err(code) => {
                    let events = std::mem::take(&mut self.sys.sub_events);
                    self.publish_sub_events(key, events);
                    return self.violation(id, code);
                }
                Ok((reason, send)) => {
                    reasons.push(reason);
                    push_exact(&mut retained, send, filters + 1 - reasons.len());
                }
            }
        }
        let ack = SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reasons,
        };
        let generation = self.clients[key as usize].generation;
        let events = std::mem::take(&mut self.sys.sub_events);
        let sync = &mut self.route_sync;
        if locks == 0 && sync.pending.is_empty() && sync.synced(self.shard) >= sync.epoch {
            self.complete_subscribe(id, key, generation, Packet::SubAck(ack), retained);
            self.publish_sub_events(key, events);
            return Flow::Continue;
        }
        // Held (behind any earlier held SUBACK) until the other shards confirm the routes and
        // the lock shards answer.
        let epoch = sync.epoch;
        sync.pending.push_back(PendingSubAck {
            seq,
            locks,
            epoch,
            conn: id,
            client: key,
            generation,
            ack: HeldAck::Sub(ack),
            retained,
            events,
        });
        self.release_held_subacks();
        Flow::Continue
    }

    /// Validates and adds (or replaces) one subscription of `key`, as a SUBSCRIBE does: the
    /// SUBACK reason, and the filter and options to look retained messages up for (per Retain
    /// Handling); `Err` with the reason of a protocol violation.
    pub(super) fn subscribe_one(
        &mut self,
        key: ClientKey,
        filter: MqttStr,
        options: SubscriptionOptions,
        subscription_id: Option<NonZeroU32>,
    ) -> Result<(ReasonCode, Option<(MqttStr, SubOpts)>), ReasonCode> {
        let topic = parse_subscription(&filter, self.settings.max_topic_levels);
        if let Ok(SubscriptionTopic::Shared { .. }) = topic
            && options.no_local
        {
            // [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error.
            return Err(ReasonCode::ProtocolError);
        }
        let opts = SubOpts {
            qos: options.qos.min(self.settings.max_qos_allowed),
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            subscription_id,
        };
        let (filter, share) = match topic {
            Err(_) => return Ok((ReasonCode::TopicFilterInvalid, None)),
            Ok(SubscriptionTopic::Shared { .. }) if !self.settings.shared_subscription => {
                return Ok((ReasonCode::SharedSubscriptionsNotSupported, None));
            }
            Ok(SubscriptionTopic::Shared { filter: f, .. })
                if has_wildcards(f) && !self.settings.wildcard_subscription =>
            {
                return Ok((ReasonCode::WildcardSubscriptionsNotSupported, None));
            }
            Ok(SubscriptionTopic::Shared { group, filter: f }) => {
                let share = Arc::new(ShareName {
                    group: group.into(),
                    filter: f.into(),
                });
                (super::shared::normalize(group, f), Some(share))
            }
            // Exclusive subscriptions are handled before (FEATURES.md §5) when enabled, and not
            // by auto subscriptions.
            Ok(SubscriptionTopic::Exclusive(_)) => {
                return Ok((ReasonCode::TopicFilterInvalid, None));
            }
            Ok(SubscriptionTopic::Plain(f))
                if has_wildcards(f) && !self.settings.wildcard_subscription =>
            {
                return Ok((ReasonCode::WildcardSubscriptionsNotSupported, None));
            }
            Ok(SubscriptionTopic::Plain(_)) => (filter, None),
        };
        let shared = share.is_some();
        let added = match share {
            Some(share) => self.add_shared_sub(key, share, opts),
            None => self.add_sub(key, &filter, opts),
        };
        Ok(match added {
            None => (ReasonCode::QuotaExceeded, None),
            Some(existed) => {
                // Published once the SUBACK is out (`publish_sub_events`).
                if self.settings.sys_events.client_subscribed {
                    let o = (opts.qos, opts.no_local, opts.retain_as_published);
                    self.sys.sub_events.push((filter.clone(), Some(o)));
                }
                let send = match options.retain_handling {
                    // Shared subscriptions get no retained messages (FEATURES.md §2, §4).
                    _ if shared => false,
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
                (granted(opts.qos), send.then_some((filter, opts)))
            }
        })
    }

    /// The filter inside `$exclusive/<filter>` when exclusive subscriptions are enabled.
    fn exclusive_filter(&self, filter: &str) -> Option<MqttStr> {
        if !self.settings.exclusive_subscription {
            return None;
        }
        match parse_subscription(filter, self.settings.max_topic_levels) {
            Ok(SubscriptionTopic::Exclusive(f)) => Some(MqttStr::from(f)),
            _ => None,
        }
    }

    /// The filter a SUBSCRIBE or UNSUBSCRIBE of `key` is rewritten to, `None` when unchanged.
    fn rewrite_filter(&self, key: ClientKey, filter: &str) -> Option<String> {
        let client = &self.clients[key as usize];
        let who = super::rewrite::Who {
            client_id: &client.id,
            username: client.username(),
        };
        self.settings.rewrite.subscribe_filter(filter, who)
    }

    /// Subscribes a client that just connected to the `[[auto_subscribe.topics]]` filters
    /// rendered for it (FEATURES.md §7): no SUBACK; retained messages follow per Retain Handling.
    /// A filter the normal subscribe path refuses is skipped.
    pub(super) fn auto_subscribe(&mut self, key: ClientKey, peer: std::net::SocketAddr) {
        if self.settings.auto_subscribe.is_empty() {
            return;
        }
        let settings = self.settings.clone();
        let client = &self.clients[key as usize];
        let (client_id, username) = (client.id.clone(), client.username().map(Box::<str>::from));
        let who = super::auto_subscribe::Client {
            client_id: &client_id,
            username: username.as_deref(),
            peer,
        };
        for (filter, options) in super::auto_subscribe::render_all(&settings.auto_subscribe, who) {
            match self.subscribe_one(key, MqttStr::from(filter.as_str()), options, None) {
                Ok((reason, send)) if !reason.is_error() => {
                    if let Some((filter, opts)) = send {
                        self.query_retained(key, filter, opts);
                    }
                }
                Ok((reason, _)) | Err(reason) => {
                    tracing::debug!(client = %client_id, %filter, ?reason, "auto subscribe skipped");
                }
            }
        }
        let events = std::mem::take(&mut self.sys.sub_events);
        self.publish_sub_events(key, events);
    }

    /// Adds or replaces a subscription; `Some(existed)`, or `None` over `max_subscriptions`.
    pub(super) fn add_sub(
        &mut self,
        key: ClientKey,
        filter: &MqttStr,
        opts: SubOpts,
    ) -> Option<bool> {
        let existed = self
            .local
            .id(filter)
            .is_some_and(|f| self.clients[key as usize].subs.contains(f));
        if !existed
            && self
                .settings
                .max_subscriptions
                .is_some_and(|max| self.subscription_count(key) >= max)
        {
            return None;
        }
        let (fid, first) = self.local.add(filter, key, opts);
        if !existed {
            self.clients[key as usize].subs.push(fid);
        }
        if first && self.nr_shards > 1 {
            let f = filter.clone();
            self.broadcast(|| MeshMsg::RouteAdd(f.clone()));
            self.route_sync.epoch += 1;
        }
        Some(existed)
    }

    /// A session's subscriptions, plain and shared.
    pub(super) fn subscription_count(&self, key: ClientKey) -> usize {
        let c = &self.clients[key as usize];
        c.subs.len() + c.shared().map_or(0, |s| s.subs.len())
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        id: ConnId,
        key: ClientKey,
        u: Unsubscribe,
    ) -> Flow {
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mut removed = Vec::new();
        // Whether a share group was left or a lock on another shard released.
        let mut left_group_or_lock = false;
        for filter in &u.filters {
            let rewritten = self.rewrite_filter(key, filter).map(MqttStr::from);
            let filter = rewritten.as_ref().unwrap_or(filter);
            if let Some(inner) = self.exclusive_filter(filter) {
                let reason = if self.unsubscribe_exclusive(key, &inner) {
                    left_group_or_lock |=
                        super::exclusive::lock_shard(&inner, self.nr_shards) != self.shard;
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                };
                reasons.push(reason);
                continue;
            }
            if let Ok(SubscriptionTopic::Shared { group, filter }) =
                parse_subscription(filter, usize::MAX)
            {
                let share = ShareName {
                    group: group.into(),
                    filter: filter.into(),
                };
                let reason = if self.remove_shared_sub(key, &share) {
                    left_group_or_lock = true;
                    // `$queue/f` is reported as `$share/$queue/f`.
                    removed.push(super::shared::normalize(group, filter));
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                };
                reasons.push(reason);
                continue;
            }
            let fid = self.local.id(filter);
            let subs = &mut self.clients[key as usize].subs;
            let reason = if fid.is_some_and(|f| subs.remove(f)) {
                self.remove_local_sub(key, filter);
                removed.push(filter.clone());
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            };
            reasons.push(reason);
        }
        let ack = UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reasons,
        };
        // `$SYS` unsubscribed events, after the UNSUBACK.
        let events: Vec<_> = if self.settings.sys_events.client_unsubscribed {
            removed.into_iter().map(|f| (f, None)).collect()
        } else {
            Vec::new()
        };
        let sync = &mut self.route_sync;
        if left_group_or_lock && self.nr_shards > 1 {
            // Held until the other shards have applied the SharedDel / the lock shard has
            // dropped the lock: after the UNSUBACK no publisher anywhere picks this member, and
            // another client can take the exclusive lock at once.
            sync.epoch += 1;
        } else if sync.pending.is_empty() {
            self.send(id, &Packet::UnsubAck(ack));
            self.publish_sub_events(key, events);
            return Flow::Continue;
        }
        // Behind any held SUBACK, in order.
        let (seq, epoch) = (sync.next_seq, sync.epoch);
        sync.next_seq += 1;
        let generation = self.clients[key as usize].generation;
        sync.pending.push_back(PendingSubAck {
            seq,
            locks: 0,
            epoch,
            conn: id,
            client: key,
            generation,
            ack: HeldAck::Unsub(ack),
            retained: Vec::new(),
            events,
        });
        self.release_held_subacks();
        Flow::Continue
    }

    pub(super) fn remove_local_sub(&mut self, key: ClientKey, filter: &MqttStr) {
        if self.local.remove(filter, key) {
            let f = filter.clone();
            self.broadcast(|| MeshMsg::RouteDel(f.clone()));
        }
    }

    /// Asks the shards that may hold retained messages matching `filter`: the topic's retain
    /// shard for an exact filter, every shard for a wildcard filter.
    fn query_retained(&mut self, key: ClientKey, filter: MqttStr, opts: SubOpts) {
        if !self.settings.retainer_enable {
            return;
        }
        let target = RetainedTarget {
            shard: self.shard,
            client: key,
            generation: self.clients[key as usize].generation,
            qos: opts.qos,
            subscription_id: opts.subscription_id,
        };
        let shards = if has_wildcards(&filter) {
            0..self.nr_shards
        } else {
            let dest = retain_shard(&filter, self.nr_shards);
            dest..dest + 1
        };
        for dest in shards {
            let q = RetainedQuery {
                target: target.clone(),
                filter: filter.clone(),
            };
            if dest == self.shard {
                self.answer_retained_query(q);
            } else {
                self.send_mesh(dest, MeshMsg::RetainedQuery(Box::new(q)));
            }
        }
    }

    pub(super) fn answer_retained_query(&mut self, q: RetainedQuery) {
        let messages = self
            .retained
            .matching(&q.filter, self.now_ms, &self.settings);
        if messages.is_empty() {
            return;
        }
        if q.target.shard == self.shard {
            self.deliver_retained(q.target, messages);
        } else {
            let reply = super::mesh::RetainedReply {
                target: q.target,
                messages,
            };
            self.send_mesh(reply.target.shard, MeshMsg::RetainedReply(Box::new(reply)));
        }
    }

    pub(super) fn deliver_retained(&mut self, target: RetainedTarget, messages: Vec<Arc<Message>>) {
        let key = target.client;
        let current = self
            .clients
            .get(key as usize)
            .is_some_and(|c| c.generation == target.generation);
        if !current {
            return;
        }
        for msg in messages {
            let opts = DeliveryOpts {
                qos: target.qos,
                retain_as_published: true,
                retained_on_subscribe: true,
                subscription_ids: target.subscription_id.map_or(SubIds::None, SubIds::One),
                shared: None,
            };
            self.deliver_to(key, msg, opts);
        }
    }
}

pub(super) fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQos1,
        QoS::ExactlyOnce => ReasonCode::GrantedQos2,
    }
}
