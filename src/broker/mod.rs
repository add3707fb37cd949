//! The broker logic of one shard, sans-io: it owns the shard's connections (as protocol state,
//! not sockets), the sessions whose client id has this shard as home, the local subscription trie,
//! the replicated route table and this shard's slice of the retained messages. Inputs are bytes,
//! mesh messages and ticks with `now`; outputs are bytes queued per connection (`dirty` says which
//! to flush), connections to close, and mesh messages per destination shard. No glommio, no clock,
//! no sockets: `crate::runtime` drives it.
//!
//! Files: `settings` (what the broker reads from the config), `conn` (per-socket state and
//! packet dispatch), `connect` (CONNECT, takeover, DISCONNECT, wills, session expiry), `publish`
//! (inbound PUBLISH, routing, delivery), `subscribe` (SUBSCRIBE / UNSUBSCRIBE, route updates),
//! `retain` (the retained store), `shared` (share groups: replicated membership, the seven
//! dispatch strategies, redispatch), `exclusive` (`$exclusive/...` locks), `delayed` (`$delayed/...` publishes held until due), `mesh`
//! (what crosses shards), `wheel` (timers), `rewrite` (topic rewrite rules) and
//! `auto_subscribe` (subscriptions made at connect), `sys` (`$SYS` topics: stats, metrics,
//! heartbeat, client events).
//!
//! Order on the publish path: topic alias → validation → rewrite (then the rewritten topic is
//! validated again) → delayed? (kept on this shard until due, then routed from here) → retain
//! (to the topic's retain shard) → route table (one mesh message per interested shard) → local
//! trie → sessions; then share groups (one member picked per matching group, here, and the message
//! sent to that member's shard). SUBSCRIBE / UNSUBSCRIBE filters are rewritten before they are validated.
//!
//! Time comes in as inputs: `now_ms` (monotonic) with every call, and the wall clock (Unix ms)
//! through [`Broker::set_unix_time`] and [`Broker::tick`], for `$delayed/<unix time>/...`.

mod auto_subscribe;
mod client_id;
mod conn;
mod connect;
mod delayed;
mod exclusive;
pub mod mesh;
mod publish;
mod retain;
pub mod rewrite;
pub mod settings;
mod shared;
mod subscribe;
pub mod sys;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_shared;
pub mod wheel;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHashMap;
use bytes::BytesMut;
use slab::Slab;

use crate::limits::{CONNECTIONS_RESERVED_PER_SHARD, MESH_OUTBOX_MESSAGES_MAX, STALL_WRITE_BYTES};
use crate::protocol::{MqttStr, Packet, ProtocolVersion};
use crate::session::Session;
use crate::topic::Matches;

pub use conn::{CloseReason, Input};
pub use mesh::{Handoff, MeshMsg, ShardId, home_shard};
pub use settings::Settings;

use self::retain::RetainStore;
use self::subscribe::{LocalSubs, Routes};
use self::wheel::Wheel;

/// A connection's slot on its shard.
pub type ConnId = u32;

/// What a stalled publisher waits for (see [`Input::Stall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallOn {
    /// A local subscriber's output or queue to drain.
    Conn(ConnId),
    /// The outbox towards another shard to drain.
    Mesh(ShardId),
}
/// A client's (session's) slot on its home shard.
type ClientKey = u32;

/// Plain per-shard counters; shard 0 sums them for `$SYS`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub connections: u64,
    pub messages_received: u64,
    pub messages_dropped_no_subscribers: u64,
    pub messages_dropped_qos0_backlog: u64,
    /// Delayed messages pending now (a gauge).
    pub delayed_stored: u64,
    /// Delayed messages published when due.
    pub delayed_published: u64,
    /// `$delayed/...` publishes dropped: bad interval, empty or invalid inner topic.
    pub delayed_dropped_invalid: u64,
    /// `$delayed/...` publishes dropped because `max_delayed_messages` were pending.
    pub delayed_dropped_full: u64,
    /// Delayed messages whose Message Expiry passed before they were due.
    pub delayed_dropped_expired: u64,
    /// Messages of a shared subscription sent to another member because theirs left.
    pub shared_redispatched: u64,
    /// Messages of a shared subscription dropped because its group had no member left.
    pub shared_dropped_no_member: u64,
    /// Retained PUBLISHes received from clients.
    pub messages_retained: u64,
    /// PUBLISH packets sent (deliveries, retransmissions included).
    pub messages_sent: u64,
    /// Inbound PUBLISH by QoS.
    pub qos_received: [u64; 3],
    /// Outbound PUBLISH by QoS.
    pub qos_sent: [u64; 3],
    /// Packets decoded, by packet type (index 1..=15).
    pub packets_received: [u64; 16],
    /// Packets encoded, by packet type.
    pub packets_sent: [u64; 16],
    /// Bytes of the packets decoded.
    pub bytes_received: u64,
    /// Bytes of the packets encoded.
    pub bytes_sent: u64,
    /// The sessions' own counters, folded in by [`Broker::sys_snapshot`] and when a session ends.
    pub session: crate::session::Counters,
}

impl Counters {
    /// Adds another shard's counters (gauges add up as well).
    pub fn add(&mut self, o: &Counters) {
        fn arr<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.connections += o.connections;
        self.messages_received += o.messages_received;
        self.messages_dropped_no_subscribers += o.messages_dropped_no_subscribers;
        self.messages_dropped_qos0_backlog += o.messages_dropped_qos0_backlog;
        self.delayed_stored += o.delayed_stored;
        self.delayed_published += o.delayed_published;
        self.delayed_dropped_invalid += o.delayed_dropped_invalid;
        self.delayed_dropped_full += o.delayed_dropped_full;
        self.delayed_dropped_expired += o.delayed_dropped_expired;
        self.shared_redispatched += o.shared_redispatched;
        self.shared_dropped_no_member += o.shared_dropped_no_member;
        self.messages_retained += o.messages_retained;
        self.messages_sent += o.messages_sent;
        arr(&mut self.qos_received, &o.qos_received);
        arr(&mut self.qos_sent, &o.qos_sent);
        arr(&mut self.packets_received, &o.packets_received);
        arr(&mut self.packets_sent, &o.packets_sent);
        self.bytes_received += o.bytes_received;
        self.bytes_sent += o.bytes_sent;
        self.session.add(&o.session);
    }

    /// Every message dropped: no subscriber, stalled QoS 0 subscriber, refused or expired
    /// delayed, and the sessions' drops (queue full, expired, too large, offline QoS 0, QoS 2
    /// over `max_awaiting_rel`).
    pub fn dropped(&self) -> u64 {
        let s = &self.session;
        self.messages_dropped_no_subscribers
            + self.messages_dropped_qos0_backlog
            + self.delayed_dropped_invalid
            + self.delayed_dropped_full
            + self.delayed_dropped_expired
            + self.shared_dropped_no_member
            + s.dropped_queue_full
            + s.dropped_expired
            + s.dropped_too_large
            + s.dropped_qos0
            + s.dropped_awaiting_full
    }

    /// Messages that expired before delivery (in a session or as delayed messages).
    pub fn expired(&self) -> u64 {
        self.delayed_dropped_expired + self.session.dropped_expired
    }
}

/// One MQTT client's session on its home shard, with or without a connection.
#[derive(Debug)]
struct Client {
    /// Stored once, here: [`ClientIds`] keeps only slot numbers.
    id: client_id::ClientId,
    /// Bumped whenever the slot is reused or the session is replaced, so late replies are dropped.
    generation: u32,
    /// A broker-wide id for No Local: (shard << 32 | slot generation ...) unique per session.
    publisher_id: u64,
    session: Session,
    conn: Option<ConnId>,
    version: ProtocolVersion,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    expiry_secs: u32,
    subs: subscribe::SubList,
    /// What few sessions have, allocated on first use: see [`ClientExtra`].
    extra: Option<Box<ClientExtra>>,
    /// What the `$SYS` connect / disconnect events report.
    info: sys::ClientInfo,
}

/// The parts of a [`Client`] that most sessions never use, in one box: an idle client with
/// none of them carries 8 bytes for them instead of 56 (issue 5: a third of the per-connection
/// budget is the client slot).
#[derive(Debug, Default)]
struct ClientExtra {
    username: Option<Box<str>>,
    will: Option<Box<connect::Will>>,
    /// Shared subscriptions and, as a publisher, per-group strategy state (FEATURES.md §4).
    shared: Option<Box<shared::ClientShared>>,
    /// Filters whose exclusive lock this session holds (FEATURES.md §5).
    exclusive: Vec<MqttStr>,
}

impl Client {
    /// The rare parts, allocated now if they were not.
    fn extra_mut(&mut self) -> &mut ClientExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    fn username(&self) -> Option<&str> {
        self.extra.as_ref()?.username.as_deref()
    }

    fn set_username(&mut self, username: Option<&str>) {
        match username {
            Some(u) => self.extra_mut().username = Some(Box::from(u)),
            None => {
                if let Some(e) = self.extra.as_mut() {
                    e.username = None;
                }
            }
        }
    }

    fn has_will(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.will.is_some())
    }

    fn take_will(&mut self) -> Option<Box<connect::Will>> {
        self.extra.as_mut()?.will.take()
    }

    fn set_will(&mut self, will: Option<Box<connect::Will>>) {
        match will {
            Some(w) => self.extra_mut().will = Some(w),
            None => {
                self.take_will();
            }
        }
    }

    fn shared(&self) -> Option<&shared::ClientShared> {
        self.extra.as_ref()?.shared.as_deref()
    }

    fn shared_mut(&mut self) -> Option<&mut shared::ClientShared> {
        self.extra.as_mut()?.shared.as_deref_mut()
    }

    /// Filters whose exclusive lock this session holds.
    fn exclusive(&self) -> &[MqttStr] {
        self.extra.as_ref().map_or(&[], |e| &e.exclusive)
    }

    fn take_exclusive(&mut self) -> Vec<MqttStr> {
        self.extra
            .as_mut()
            .map(|e| std::mem::take(&mut e.exclusive))
            .unwrap_or_default()
    }
}

/// Client id → session slot. The table holds only slot numbers and hashes the id kept in the
/// [`Client`], so an idle client costs it about 5 bytes instead of a second copy of its id.
#[derive(Default)]
struct ClientIds {
    table: hashbrown::HashTable<ClientKey>,
    hasher: ahash::RandomState,
}

impl ClientIds {
    fn hash(&self, id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, id)
    }

    fn get(&self, clients: &Slab<Client>, id: &str) -> Option<ClientKey> {
        let hash = self.hash(id);
        let found = self.table.find(hash, |&k| &*clients[k as usize].id == id);
        found.copied()
    }

    /// Indexes the client in slot `key` (its id must not be indexed yet).
    fn insert(&mut self, clients: &Slab<Client>, key: ClientKey) {
        let hash = self.hash(&clients[key as usize].id);
        let hasher = &self.hasher;
        self.table.insert_unique(hash, key, |&k| {
            std::hash::BuildHasher::hash_one(hasher, &*clients[k as usize].id)
        });
    }

    /// Forgets slot `key`, whose client had `id`.
    fn remove(&mut self, id: &str, key: ClientKey) {
        let hash = self.hash(id);
        if let Ok(entry) = self.table.find_entry(hash, |&k| k == key) {
            entry.remove();
        }
    }
}

pub struct Broker {
    shard: ShardId,
    nr_shards: usize,
    settings: Rc<Settings>,
    /// What every session of the shard is configured with, shared.
    session_cfg: Rc<crate::session::SessionConfig>,
    conns: Slab<conn::Conn>,
    clients: Slab<Client>,
    by_id: ClientIds,
    local: LocalSubs,
    routes: Routes,
    /// Every share group and its members (replicated on every shard).
    shared: shared::SharedSubs,
    /// Reused by every publish: the member picked per matching group.
    shared_scratch: Vec<(Arc<crate::session::ShareName>, shared::Member)>,
    retained: RetainStore,
    /// `$delayed/...` messages published on this shard, until due.
    delayed: delayed::DelayedStore,
    /// Keep-alive and CONNECT deadlines, keyed by connection.
    keepalive: Wheel,
    /// Session expiry, keyed by client.
    expiry: Wheel,
    /// Will delay, keyed by client.
    will_delay: Wheel,
    mesh_out: Vec<Vec<MeshMsg>>,
    route_sync: subscribe::RouteSync,
    exclusive: exclusive::Exclusive,
    /// Acknowledgements held until a retained message is stored on its shard: token → connection.
    held_acks: AHashMap<u64, ConnId>,
    next_token: u64,
    /// Reused by every publish: the other shards it goes to.
    route_shards: Vec<ShardId>,
    dirty: Vec<ConnId>,
    matches: Matches,
    packets: Vec<Packet>,
    next_publisher_id: u64,
    next_generation: u32,
    assigned_ids: u64,
    now_ms: u64,
    /// Unix time in ms minus `now_ms`, from the last wall-clock input.
    unix_offset_ms: i64,
    pub counters: Counters,
    /// The connection whose input is being handled, if any.
    reading: Option<ConnId>,
    /// What the last deliveries found congested: a local subscriber (not the reading connection
    /// itself, nor one marked slow) or an outbox; the source of the message stops until it
    /// drains.
    stall: Option<StallOn>,
    /// Queue length of a connected session above which its publishers stall.
    queue_stall_len: usize,
    /// Connections whose output passed [`FLUSH_EARLY_BYTES`](crate::limits::FLUSH_EARLY_BYTES)
    /// since the runtime last asked: written at once.
    big_output: Vec<ConnId>,
    /// `$SYS` timers and the stats round in flight (used on shard 0).
    sys: sys::SysState,
}

impl Broker {
    pub fn new(shard: ShardId, nr_shards: usize, settings: Rc<Settings>) -> Self {
        let seed = shared_seed(&settings, shard);
        let queue_stall_len = queue_stall_len(&settings);
        Broker {
            shard,
            nr_shards,
            session_cfg: Rc::new(settings.session_config()),
            settings,
            conns: Slab::with_capacity(CONNECTIONS_RESERVED_PER_SHARD),
            clients: Slab::with_capacity(CONNECTIONS_RESERVED_PER_SHARD),
            by_id: ClientIds::default(),
            local: LocalSubs::new(),
            routes: Routes::new(nr_shards),
            shared: shared::SharedSubs::new(seed),
            shared_scratch: Vec::new(),
            retained: RetainStore::default(),
            delayed: delayed::DelayedStore::default(),
            keepalive: Wheel::default(),
            expiry: Wheel::default(),
            will_delay: Wheel::default(),
            mesh_out: (0..nr_shards).map(|_| Vec::new()).collect(),
            route_sync: subscribe::RouteSync::new(nr_shards),
            exclusive: exclusive::Exclusive::default(),
            held_acks: AHashMap::new(),
            next_token: 0,
            route_shards: Vec::new(),
            dirty: Vec::new(),
            matches: Matches::default(),
            packets: Vec::new(),
            next_publisher_id: 1,
            next_generation: 1,
            assigned_ids: 0,
            now_ms: 0,
            unix_offset_ms: 0,
            counters: Counters::default(),
            reading: None,
            stall: None,
            queue_stall_len,
            big_output: Vec::new(),
            sys: sys::SysState::default(),
        }
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Connections whose output queue or close state changed since the last call.
    pub fn take_dirty(&mut self, out: &mut Vec<ConnId>) {
        for &id in &self.dirty {
            if let Some(c) = self.conns.get_mut(id as usize) {
                c.dirty = false;
            }
        }
        out.append(&mut self.dirty);
    }

    /// Connections whose queued output grew past
    /// [`FLUSH_EARLY_BYTES`](crate::limits::FLUSH_EARLY_BYTES) since the last call.
    pub fn take_big_output(&mut self, out: &mut Vec<ConnId>) {
        out.append(&mut self.big_output);
    }

    /// The congested subscriber the deliveries since the last call went to, if any: the caller
    /// (the mesh inbound task) waits for it like a stalled publisher.
    pub fn take_stall(&mut self) -> Option<ConnId> {
        match self.stall.take() {
            Some(StallOn::Conn(id)) => Some(id),
            _ => None,
        }
    }

    /// Whether a publisher stalled on `on` must keep waiting: see [`Broker::congested`]; an
    /// outbox until it is below half its bound.
    pub fn stall_holds(&self, on: StallOn) -> bool {
        match on {
            StallOn::Conn(id) => self.congested(id),
            StallOn::Mesh(dest) => self.mesh_out_len(dest) > MESH_OUTBOX_MESSAGES_MAX / 2,
        }
    }

    /// Whether a publisher stalled on connection `id` must keep waiting: its queued output is
    /// above half of [`STALL_WRITE_BYTES`] or its session's queue above half the stall length.
    /// False once the connection is gone.
    pub fn congested(&self, id: ConnId) -> bool {
        let Some(c) = self.conns.get(id as usize) else {
            return false;
        };
        let queued = c
            .client
            .and_then(|k| self.clients.get(k as usize))
            .map_or(0, |cl| cl.session.queue_len());
        c.tx.len() > STALL_WRITE_BYTES / 2 || queued > self.queue_stall_len / 2
    }

    /// How far connection `id` has consumed (see `Conn::progress`); publishers stalled on it
    /// wait while this changes at least every [`STALL_MAX_MS`](crate::limits::STALL_MAX_MS).
    pub fn progress(&self, id: ConnId) -> u16 {
        self.conns.get(id as usize).map_or(0, |c| c.progress)
    }

    /// The client of connection `id` sent something, or the kernel took some of its blocked
    /// output: it is alive and consuming.
    pub fn made_progress(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id as usize) {
            c.progress = c.progress.wrapping_add(1);
            c.slow = false;
        }
    }

    /// Connection `id` is not being read because of backpressure (while the subscriber it waits
    /// for makes progress): its keep-alive restarts, since what it sent meanwhile, PINGREQs
    /// included, waits unread.
    pub fn stalled_but_alive(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get(id as usize)
            && c.keepalive_secs > 0
        {
            self.keepalive.extend(id, c.keepalive_secs);
        }
    }

    /// Connection `id` made no progress for [`STALL_MAX_MS`](crate::limits::STALL_MAX_MS) while
    /// congested: deliveries to it stall nobody until it makes progress again.
    pub fn mark_slow(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id as usize) {
            c.slow = true;
        }
    }

    /// After a delivery to connection `id` with `queued` messages in its session's queue: a
    /// congested subscriber stalls the source of the message, unless it is slow or the source
    /// itself.
    pub(super) fn check_congestion(&mut self, id: ConnId, queued: usize) {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        if (c.tx.len() > STALL_WRITE_BYTES || queued > self.queue_stall_len)
            && !c.slow
            && self.reading != Some(id)
        {
            self.stall = Some(StallOn::Conn(id));
        }
    }

    /// Whether mesh messages wait for `dest`.
    pub fn has_mesh_out(&self, dest: ShardId) -> bool {
        !self.mesh_out[dest].is_empty()
    }

    /// Messages queued for `dest` (all shards but this one).
    pub fn mesh_out_len(&self, dest: ShardId) -> usize {
        self.mesh_out[dest].len()
    }

    /// Takes up to `max` queued mesh messages for `dest`, oldest first.
    pub fn take_mesh_out(&mut self, dest: ShardId, max: usize) -> Vec<MeshMsg> {
        let q = &mut self.mesh_out[dest];
        if q.len() <= max {
            std::mem::take(q)
        } else {
            let rest = q.split_off(max);
            std::mem::replace(q, rest)
        }
    }

    fn send_mesh(&mut self, dest: ShardId, msg: MeshMsg) {
        debug_assert_ne!(dest, self.shard);
        self.mesh_out[dest].push(msg);
        // A connection whose input fills an outbox stops until the flusher has drained it.
        if self.reading.is_some() && self.mesh_out[dest].len() > MESH_OUTBOX_MESSAGES_MAX {
            self.stall.get_or_insert(StallOn::Mesh(dest));
        }
    }

    fn broadcast(&mut self, mut make: impl FnMut() -> MeshMsg) {
        for dest in 0..self.nr_shards {
            if dest != self.shard {
                let m = make();
                self.mesh_out[dest].push(m);
            }
        }
    }

    /// Handles one message from shard `from`. Never waits: replies are queued like any output.
    pub fn mesh_in(&mut self, from: ShardId, msg: MeshMsg, now_ms: u64) -> Option<Box<Handoff>> {
        self.now_ms = now_ms;
        self.stall = None;
        match msg {
            MeshMsg::Handoff(h) => return Some(h),
            MeshMsg::Publish(m) => {
                self.deliver_local(&m);
            }
            MeshMsg::RouteAdd(filter) => self.routes.add(&filter, from),
            MeshMsg::RouteDel(filter) => self.routes.remove(&filter, from),
            MeshMsg::SharedAdd(m) => self.shared_add_in(*m),
            MeshMsg::SharedDel(m) => self.shared_del_in(*m),
            MeshMsg::SharedPublish(d) => self.shared_deliver(*d),
            MeshMsg::RouteSync(epoch) => self.send_mesh(from, MeshMsg::RouteSyncAck(epoch)),
            MeshMsg::RouteSyncAck(epoch) => self.route_sync_acked(from, epoch),
            MeshMsg::Retain(m, token) => {
                self.retained.store(m, &self.settings, now_ms);
                if let Some(token) = token {
                    self.send_mesh(from, MeshMsg::RetainStored(token));
                }
            }
            MeshMsg::RetainStored(token) => self.release_held_ack(token),
            MeshMsg::RetainedQuery(q) => self.answer_retained_query(*q),
            MeshMsg::RetainedReply(r) => self.deliver_retained(r.target, r.messages),
            MeshMsg::ExclusiveLock(l) => self.exclusive_lock_in(from, *l),
            MeshMsg::ExclusiveLockReply { token, granted } => {
                self.exclusive_reply_in(token, granted)
            }
            MeshMsg::ExclusiveUnlock { filter, holder } => self.exclusive_unlock_in(filter, holder),
            MeshMsg::SysStatsRequest(round) => self.sys_stats_request(from, round),
            MeshMsg::SysStatsReply(round, snap) => self.sys_stats_reply(round, &snap),
        }
        None
    }

    /// The wall clock: `unix_ms` (ms since the Unix epoch) at monotonic `now_ms`. The runtime
    /// gives it at start and with every tick; the broker never reads a clock itself.
    pub fn set_unix_time(&mut self, now_ms: u64, unix_ms: u64) {
        self.unix_offset_ms = unix_ms as i64 - now_ms as i64;
    }

    /// The wall clock at the current `now_ms`.
    fn unix_now_ms(&self) -> u64 {
        (self.now_ms as i64 + self.unix_offset_ms).max(0) as u64
    }

    /// Advances the shard's timers by one second: keep-alive and CONNECT deadlines, will delays,
    /// session expiry, the sessions' own timeouts, the delayed messages due, and (shard 0) `$SYS`. `unix_ms` is the
    /// wall clock at `now_ms`.
    pub fn tick(&mut self, now_ms: u64, unix_ms: u64) {
        self.now_ms = now_ms;
        self.set_unix_time(now_ms, unix_ms);
        let mut expired = Vec::new();
        self.keepalive.advance(&mut expired);
        for id in expired.drain(..) {
            self.keepalive_expired(id);
        }
        self.will_delay.advance(&mut expired);
        for key in expired.drain(..) {
            self.fire_delayed_will(key);
        }
        self.expiry.advance(&mut expired);
        for key in expired.drain(..) {
            self.expire_session(key);
        }
        for (_, client) in self.clients.iter_mut() {
            client.session.tick(now_ms);
        }
        self.retained.tick(now_ms, &self.settings);
        self.fire_delayed(now_ms);
        self.sys_tick();
    }

    /// Number of connections and sessions on this shard (for tests and `$SYS`).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn session_count(&self) -> usize {
        self.clients.len()
    }

    /// Retained messages stored on this shard.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// The peer will send nothing more (end of stream): the connection is closed once its output
    /// is written, so output held until the routes are synced (an auto-subscribed client's) goes now; a
    /// client that sent its CONNECT and shut its side still gets the CONNACK.
    pub fn input_ended(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id as usize) {
            c.corked = false;
        }
    }

    /// Takes a connection's queued output: the bytes to write and whether to close afterwards.
    pub fn take_output(&mut self, id: ConnId) -> (BytesMut, Option<CloseReason>) {
        match self.conns.get_mut(id as usize) {
            // Held, unless the connection is closing anyway.
            Some(c) if c.corked && c.close.is_none() => (BytesMut::new(), None),
            Some(c) => {
                if !c.tx.is_empty() {
                    // Only asked for once the kernel took all of the previous output.
                    c.progress = c.progress.wrapping_add(1);
                    c.slow = false;
                }
                (std::mem::take(&mut c.tx), c.close)
            }
            None => (BytesMut::new(), Some(CloseReason::Normal)),
        }
    }

    /// Opens the protocol state for a newly accepted socket; it must send CONNECT within
    /// `idle_timeout`.
    pub fn open(&mut self, peer: SocketAddr, now_ms: u64) -> ConnId {
        self.now_ms = now_ms;
        let id =
            self.conns
                .insert(conn::Conn::new(peer, self.settings.max_packet_size)) as ConnId;
        self.keepalive.arm(id, self.settings.idle_timeout_secs);
        self.counters.connections += 1;
        id
    }

    /// The local port of connection `id`'s socket (the listener's), for `$SYS` events.
    pub fn set_sockport(&mut self, id: ConnId, port: u16) {
        if let Some(c) = self.conns.get_mut(id as usize) {
            c.sockport = port;
        }
    }
}

/// Queue length of a connected session above which its publishers stall: half of
/// `max_mqueue_len` (so the queue never sheds while its subscriber keeps draining), 500 when the
/// queue is unbounded.
fn queue_stall_len(settings: &Settings) -> usize {
    match settings.session_config().max_mqueue_len {
        0 => 500,
        n => (n as usize / 2).max(1),
    }
}

/// The seed of a shard's shared-subscription randomness: `broker.shared_subscription_seed`
/// (each shard its own sequence), else a random one.
fn shared_seed(settings: &Settings, shard: ShardId) -> u64 {
    let base = settings
        .shared_seed
        .unwrap_or_else(|| ahash::RandomState::new().hash_one(shard));
    base ^ (shard as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
