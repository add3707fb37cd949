//! `$SYS` system topics (FEATURES.md §9). Every shard keeps plain [`Counters`]; every
//! `sys_msg_interval` shard 0 asks every other shard for a [`Snapshot`]
//! ([`MeshMsg::SysStatsRequest`]), sums its own and the replies once all have arrived, and
//! publishes `$SYS/brokers/<node>/stats/<name>/count|max` and `.../metrics/...` (QoS 0, not
//! retained, a decimal payload) through the normal publish path, as publisher 0 (the broker).
//! `max` is the highest count shard 0 has seen.
//!
//! On its first tick shard 0 also publishes the retained `version`, `sysdescr` and
//! `$SYS/brokers` (the node name), and every `sys_heartbeat_interval` `uptime` (ms) and
//! `datetime` (RFC 3339, UTC, from the wall clock the runtime gives).
//!
//! Client events are published on the client's home shard: `clients/<id>/connected`,
//! `disconnected`, `subscribed`, `unsubscribed` (JSON, each toggled by
//! `[sys_topics.sys_event_messages]`).
//!
//! `$SYS` publishes are not counted as received messages, and one nobody subscribes to is not
//! counted as dropped.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::conn::CloseReason;
use super::mesh::MeshMsg;
use super::{Broker, ClientKey, Counters, ShardId};
use crate::protocol::{MqttStr, PacketType, ProtocolVersion, PublishProperties, QoS};
use crate::session::Message;

/// One shard's numbers, sent to shard 0.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Sockets open (including ones that have not sent CONNECT yet).
    pub connections: u64,
    /// Connections with a session, not closing.
    pub live_connections: u64,
    pub sessions: u64,
    /// Distinct filters in this shard's local trie.
    pub topics: u64,
    /// Sessions with at least one subscription.
    pub subscribers: u64,
    pub subscriptions: u64,
    pub shared_subscriptions: u64,
    pub retained: u64,
    /// Routes this shard advertises (one per local filter).
    pub routes: u64,
    pub delayed: u64,
    pub counters: Counters,
}

impl Snapshot {
    pub fn add(&mut self, o: &Snapshot) {
        self.connections += o.connections;
        self.live_connections += o.live_connections;
        self.sessions += o.sessions;
        self.topics += o.topics;
        self.subscribers += o.subscribers;
        self.subscriptions += o.subscriptions;
        self.shared_subscriptions += o.shared_subscriptions;
        self.retained += o.retained;
        self.routes += o.routes;
        self.delayed += o.delayed;
        self.counters.add(&o.counters);
    }

    /// `stats/<name>` and its count.
    pub fn stats(&self) -> [(&'static str, u64); 10] {
        [
            ("connections", self.connections),
            ("live_connections", self.live_connections),
            ("sessions", self.sessions),
            ("topics", self.topics),
            ("subscribers", self.subscribers),
            ("subscriptions", self.subscriptions),
            ("subscriptions/shared", self.shared_subscriptions),
            ("retained", self.retained),
            ("routes", self.routes),
            ("delayed", self.delayed),
        ]
    }

    /// `metrics/<name>` and its value.
    pub fn metrics(&self) -> Vec<(String, u64)> {
        let c = &self.counters;
        let mut m: Vec<(String, u64)> = vec![
            ("bytes/received".into(), c.bytes_received),
            ("bytes/sent".into(), c.bytes_sent),
            ("messages/received".into(), c.messages_received),
            ("messages/sent".into(), c.messages_sent),
            ("messages/dropped".into(), c.dropped()),
            ("messages/dropped/expired".into(), c.expired()),
            (
                "messages/dropped/no_subscribers".into(),
                c.messages_dropped_no_subscribers,
            ),
            ("messages/retained".into(), c.messages_retained),
            (
                "messages/delayed".into(),
                c.delayed_stored + c.delayed_published + c.delayed_dropped_expired,
            ),
            ("messages/delivered".into(), c.session.delivered),
            ("messages/acked".into(), c.session.acked),
        ];
        for q in 0..3 {
            m.push((format!("messages/qos{q}/received"), c.qos_received[q]));
            m.push((format!("messages/qos{q}/sent"), c.qos_sent[q]));
        }
        for t in 1..=15u8 {
            let name = packet_name(PacketType::from_u8(t).expect("1..=15 are packet types"));
            m.push((
                format!("packets/{name}/received"),
                c.packets_received[t as usize],
            ));
            m.push((format!("packets/{name}/sent"), c.packets_sent[t as usize]));
        }
        m.push(("packets/received".into(), c.packets_received.iter().sum()));
        m.push(("packets/sent".into(), c.packets_sent.iter().sum()));
        m
    }
}

fn packet_name(t: PacketType) -> &'static str {
    match t {
        PacketType::Connect => "connect",
        PacketType::ConnAck => "connack",
        PacketType::Publish => "publish",
        PacketType::PubAck => "puback",
        PacketType::PubRec => "pubrec",
        PacketType::PubRel => "pubrel",
        PacketType::PubComp => "pubcomp",
        PacketType::Subscribe => "subscribe",
        PacketType::SubAck => "suback",
        PacketType::Unsubscribe => "unsubscribe",
        PacketType::UnsubAck => "unsuback",
        PacketType::PingReq => "pingreq",
        PacketType::PingResp => "pingresp",
        PacketType::Disconnect => "disconnect",
        PacketType::Auth => "auth",
    }
}

/// Shard 0's `$SYS` timers and the stats round in flight.
#[derive(Debug, Default)]
pub(super) struct SysState {
    started: bool,
    next_stats_ms: u64,
    next_heartbeat_ms: u64,
    round: u64,
    /// Replies still awaited for `round`, and the sum so far.
    pending: Option<(usize, Snapshot)>,
    max: [u64; 10],
    /// `subscribed` events of the SUBSCRIBE being handled, published after its SUBACK.
    pub sub_events: Vec<SubEvent>,
    /// The topic of the client event being published, reused: an event nobody subscribes to
    /// costs no allocation.
    event_topic: String,
}

/// A `$SYS` subscribed event (the filter and its QoS, No Local, Retain As Published) or, with
/// `None`, an unsubscribed one.
pub(super) type SubEvent = (MqttStr, Option<(QoS, bool, bool)>);

/// What the `connected` / `disconnected` events say about a connection, kept with its session.
#[derive(Debug, Clone)]
pub(super) struct ClientInfo {
    pub ip: IpAddr,
    pub sockport: u16,
    pub version: ProtocolVersion,
    pub connected_at_ms: u64,
    pub keepalive: u16,
    pub clean_start: bool,
}

impl Default for ClientInfo {
    fn default() -> Self {
        ClientInfo {
            ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            sockport: 0,
            version: ProtocolVersion::V311,
            connected_at_ms: 0,
            keepalive: 0,
            clean_start: true,
        }
    }
}

/// The `reason` of a `disconnected` event.
pub(super) fn reason_name(r: CloseReason) -> &'static str {
    match r {
        CloseReason::Normal => "normal",
        CloseReason::TcpClosed => "tcp_closed",
        CloseReason::ProtocolError => "protocol_error",
        CloseReason::KeepAliveTimeout => "keepalive_timeout",
        CloseReason::TakenOver => "takenover",
        CloseReason::Refused => "refused",
        CloseReason::Shutdown => "shutdown",
    }
}

impl Broker {
    /// `$SYS/brokers/<node>/<rest>`.
    fn sys_topic(&self, rest: &str) -> String {
        format!("$SYS/brokers/{}/{rest}", self.settings.node_name)
    }

    /// Publishes a `$SYS` message through the normal path, as the broker (publisher 0).
    fn sys_publish(&mut self, topic: String, payload: String, retain: bool) {
        let msg = Message {
            topic: MqttStr::from(topic),
            payload: Bytes::from(payload),
            qos: QoS::AtMostOnce,
            retain,
            properties: PublishProperties::default(),
            expires_at_ms: None,
            publisher_id: 0,
        };
        let dropped = self.counters.messages_dropped_no_subscribers;
        self.route(Arc::new(msg));
        self.counters.messages_dropped_no_subscribers = dropped;
    }

    /// This shard's numbers now (the sessions' counters are folded into the shard's first).
    pub fn sys_snapshot(&mut self) -> Snapshot {
        for (_, c) in self.clients.iter_mut() {
            self.counters.session.add(&c.session.take_counters());
        }
        let live = self
            .conns
            .iter()
            .filter(|(_, c)| c.client.is_some() && c.close.is_none())
            .count();
        let subscriptions: usize = self
            .clients
            .iter()
            .map(|(k, _)| self.subscription_count(k as u32))
            .sum();
        let subscribers = self
            .clients
            .iter()
            .filter(|(_, c)| !c.subs.is_empty() || c.shared().is_some_and(|s| !s.subs.is_empty()))
            .count();
        let topics = self.local.len() as u64;
        Snapshot {
            connections: self.conns.len() as u64,
            live_connections: live as u64,
            sessions: self.clients.len() as u64,
            topics,
            subscribers: subscribers as u64,
            subscriptions: subscriptions as u64,
            shared_subscriptions: self.shared.local_members() as u64,
            retained: self.retained.len() as u64,
            routes: topics,
            delayed: self.delayed.len() as u64,
            counters: self.counters.clone(),
        }
    }

    /// Called every tick: on shard 0, the start messages, the heartbeat and the stats rounds.
    pub(super) fn sys_tick(&mut self) {
        if self.shard != 0 {
            return;
        }
        let now = self.now_ms;
        let stats_every = self.settings.sys_msg_interval_ms;
        let heartbeat_every = self.settings.sys_heartbeat_interval_ms;
        if !self.sys.started {
            self.sys.started = true;
            self.sys.next_stats_ms = now;
            self.sys.next_heartbeat_ms = now;
            if stats_every.is_some() {
                let node = self.settings.node_name.clone();
                self.sys_publish("$SYS/brokers".into(), node, true);
                let t = self.sys_topic("version");
                self.sys_publish(t, env!("CARGO_PKG_VERSION").into(), true);
                let t = self.sys_topic("sysdescr");
                self.sys_publish(t, "ringmq".into(), true);
            }
        }
        if let Some(every) = heartbeat_every
            && now >= self.sys.next_heartbeat_ms
        {
            self.sys.next_heartbeat_ms = now + every.max(1);
            let t = self.sys_topic("uptime");
            self.sys_publish(t, now.to_string(), false);
            let t = self.sys_topic("datetime");
            let dt = rfc3339(self.unix_now_ms());
            self.sys_publish(t, dt, false);
        }
        if let Some(every) = stats_every
            && now >= self.sys.next_stats_ms
        {
            self.sys.next_stats_ms = now + every.max(1);
            self.start_stats_round();
        }
    }

    fn start_stats_round(&mut self) {
        self.sys.round += 1;
        let own = self.sys_snapshot();
        let others = self.nr_shards - 1;
        // A round still waiting for replies is abandoned: its late replies carry an old round.
        self.sys.pending = Some((others, own));
        let round = self.sys.round;
        self.broadcast(|| MeshMsg::SysStatsRequest(round));
        self.maybe_publish_stats();
    }

    /// Shard 0 asks: answer with this shard's numbers.
    pub(super) fn sys_stats_request(&mut self, from: ShardId, round: u64) {
        let snap = Box::new(self.sys_snapshot());
        self.send_mesh(from, MeshMsg::SysStatsReply(round, snap));
    }

    /// One shard's answer to round `round`.
    pub(super) fn sys_stats_reply(&mut self, round: u64, snap: &Snapshot) {
        if round != self.sys.round {
            return;
        }
        if let Some((waiting, sum)) = &mut self.sys.pending {
            sum.add(snap);
            *waiting = waiting.saturating_sub(1);
        }
        self.maybe_publish_stats();
    }

    fn maybe_publish_stats(&mut self) {
        if !matches!(&self.sys.pending, Some((0, _))) {
            return;
        }
        let (_, sum) = self.sys.pending.take().expect("checked above");
        self.publish_stats(&sum);
    }

    fn publish_stats(&mut self, sum: &Snapshot) {
        for (i, (name, count)) in sum.stats().into_iter().enumerate() {
            self.sys.max[i] = self.sys.max[i].max(count);
            let max = self.sys.max[i];
            let t = self.sys_topic(&format!("stats/{name}/count"));
            self.sys_publish(t, count.to_string(), false);
            let t = self.sys_topic(&format!("stats/{name}/max"));
            self.sys_publish(t, max.to_string(), false);
        }
        for (name, value) in sum.metrics() {
            let t = self.sys_topic(&format!("metrics/{name}"));
            self.sys_publish(t, value.to_string(), false);
        }
    }

    /// The fields every client event starts with.
    fn event_head(&self, key: ClientKey, out: &mut String) {
        let c = &self.clients[key as usize];
        out.push_str("{\"clientid\":");
        json_str(&c.id, out);
        out.push_str(",\"username\":");
        match c.username() {
            Some(u) => json_str(u, out),
            None => out.push_str("null"),
        }
    }

    /// The common fields of `connected` and `disconnected`.
    fn conn_event(&self, key: ClientKey) -> String {
        let c = &self.clients[key as usize];
        let i = &c.info;
        let mut s = String::with_capacity(320);
        self.event_head(key, &mut s);
        let (name, ver) = match i.version {
            ProtocolVersion::V31 => ("MQIsdp", 3),
            ProtocolVersion::V311 => ("MQTT", 4),
            ProtocolVersion::V5 => ("MQTT", 5),
        };
        let expiry_ms = if c.expiry_secs == u32::MAX {
            u64::MAX
        } else {
            u64::from(c.expiry_secs) * 1000
        };
        let _ = write!(
            s,
            ",\"ipaddress\":\"{}\",\"sockport\":{},\"protocol\":\"mqtt\",\"proto_name\":\"{name}\",\
             \"proto_ver\":{ver},\"connected_at\":{},\"ts\":{},\"keepalive\":{},\
             \"clean_start\":{},\"expiry_interval\":{expiry_ms}",
            i.ip,
            i.sockport,
            i.connected_at_ms,
            self.unix_now_ms(),
            i.keepalive,
            i.clean_start,
        );
        s
    }

    pub(super) fn event_connected(&mut self, key: ClientKey) {
        if !self.settings.sys_events.client_connected {
            return;
        }
        if !self.client_event_wanted(key, "connected") {
            return;
        }
        let mut s = self.conn_event(key);
        s.push('}');
        self.publish_client_event(s);
    }

    pub(super) fn event_disconnected(&mut self, key: ClientKey, reason: &str) {
        if !self.settings.sys_events.client_disconnected {
            return;
        }
        if !self.client_event_wanted(key, "disconnected") {
            return;
        }
        let mut s = self.conn_event(key);
        let _ = write!(
            s,
            ",\"reason\":\"{reason}\",\"disconnected_at\":{}}}",
            self.unix_now_ms()
        );
        self.publish_client_event(s);
    }

    /// `subscribed` / `unsubscribed` with the filter and its options (qos, nl, rap).
    pub(super) fn event_subscription(
        &mut self,
        key: ClientKey,
        filter: &str,
        opts: Option<(QoS, bool, bool)>,
    ) {
        let e = &self.settings.sys_events;
        let (on, what) = match opts {
            Some(_) => (e.client_subscribed, "subscribed"),
            None => (e.client_unsubscribed, "unsubscribed"),
        };
        if !on || !self.client_event_wanted(key, what) {
            return;
        }
        let mut s = String::with_capacity(200);
        self.event_head(key, &mut s);
        s.push_str(",\"protocol\":\"mqtt\",\"topic\":");
        json_str(filter, &mut s);
        let _ = write!(s, ",\"ts\":{}", self.unix_now_ms());
        if let Some((qos, nl, rap)) = opts {
            let _ = write!(
                s,
                ",\"subopts\":{{\"qos\":{},\"nl\":{},\"rap\":{}}}",
                qos as u8, nl as u8, rap as u8
            );
        }
        s.push('}');
        self.publish_client_event(s);
    }

    pub(super) fn publish_sub_events(&mut self, key: ClientKey, events: Vec<SubEvent>) {
        for (filter, opts) in events {
            self.event_subscription(key, &filter, opts);
        }
    }

    /// Writes the topic of client `key`'s event `what` (`$SYS/brokers/<node>/clients/<id>/
    /// <what>`) and tells whether anyone would receive it: a subscriber on this shard, a route to
    /// another shard's, or a share group. Nobody usually is, and a connect burst then builds no
    /// event (six short-lived allocations per event, whose freed blocks of every size stayed
    /// parked in the shard thread's malloc cache after the burst).
    fn client_event_wanted(&mut self, key: ClientKey, what: &str) -> bool {
        let mut t = std::mem::take(&mut self.sys.event_topic);
        t.clear();
        let id = &self.clients[key as usize].id;
        let _ = write!(
            t,
            "$SYS/brokers/{}/clients/{id}/{what}",
            self.settings.node_name
        );
        let wanted = self.local.any_match(&t, &mut self.matches)
            || self.routes.any_match(&t, &mut self.matches)
            || self.shared.any_match(&t, &mut self.matches);
        self.sys.event_topic = t;
        wanted
    }

    /// Publishes `payload` on the topic [`Self::client_event_wanted`] wrote.
    fn publish_client_event(&mut self, payload: String) {
        let topic = self.sys.event_topic.clone();
        self.sys_publish(topic, payload, false);
    }
}

/// Appends `s` as a JSON string literal.
pub fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Unix ms as RFC 3339 UTC with milliseconds: `2026-12-02T07:43:13.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Settings;
    use crate::protocol::{Packet, Subscribe, SubscriptionOptions};
    use std::rc::Rc;

    fn connect(b: &mut Broker, client: &str) -> super::super::ConnId {
        let id = super::super::tests::connect_with(b, super::super::tests::connect_packet(client));
        b.take_output(id);
        id
    }

    /// The `$SYS` PUBLISHes connection `id` got: (topic, payload).
    fn received(b: &mut Broker, id: super::super::ConnId) -> Vec<(String, String)> {
        let (mut tx, _) = b.take_output(id);
        let mut dec = crate::protocol::Decoder::with_version(ProtocolVersion::V5, 1 << 20);
        std::iter::from_fn(|| dec.decode(&mut tx).unwrap())
            .filter_map(|p| match p {
                Packet::Publish(p) => Some((
                    p.topic.to_string(),
                    String::from_utf8(p.payload.to_vec()).unwrap(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn shard0_sums_the_snapshots_once_every_shard_replied() {
        let settings = Rc::new(Settings {
            sys_heartbeat_interval_ms: None,
            ..Settings::default()
        });
        let mut b0 = Broker::new(0, 2, settings.clone());
        let mut b1 = Broker::new(1, 2, settings);
        let id0 = |p: &str| {
            (0..)
                .map(|i| format!("{p}{i}"))
                .find(|id| super::super::home_shard(id, 2) == 0)
                .unwrap()
        };
        let id1 = |p: &str| {
            (0..)
                .map(|i| format!("{p}{i}"))
                .find(|id| super::super::home_shard(id, 2) == 1)
                .unwrap()
        };
        let watcher = connect(&mut b0, &id0("w"));
        let sub = Subscribe {
            packet_id: std::num::NonZeroU16::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![(MqttStr::from("$SYS/#"), SubscriptionOptions::default())],
        };
        let mut rx = bytes::BytesMut::new();
        Packet::Subscribe(sub)
            .encode(ProtocolVersion::V5, &mut rx)
            .unwrap();
        b0.input(watcher, &mut rx, 0);
        b0.take_output(watcher);
        connect(&mut b1, &id1("a"));
        connect(&mut b1, &id1("b"));
        b0.take_mesh_out(1, usize::MAX);
        b1.take_mesh_out(0, usize::MAX);

        b0.tick(1000, 1_700_000_000_000);
        let sent = received(&mut b0, watcher);
        // Only the start messages: the stats wait for shard 1.
        assert!(
            sent.iter()
                .any(|(t, p)| t.ends_with("/sysdescr") && p == "ringmq")
        );
        assert!(!sent.iter().any(|(t, _)| t.contains("/stats/")));
        let req = b0.take_mesh_out(1, usize::MAX);
        // (Beside the retained start messages stored on shard 1.)
        let requests = req
            .iter()
            .filter(|m| matches!(m, MeshMsg::SysStatsRequest(_)))
            .count();
        assert_eq!(requests, 1);
        for m in req {
            b1.mesh_in(0, m, 1000);
        }
        let reply = b1.take_mesh_out(0, usize::MAX);
        assert!(matches!(reply.as_slice(), [MeshMsg::SysStatsReply(..)]));
        for m in reply {
            b0.mesh_in(1, m, 1000);
        }
        let sent = received(&mut b0, watcher);
        let value = |name: &str| {
            sent.iter()
                .find(|(t, _)| t == &format!("$SYS/brokers/ringmq@localhost/{name}"))
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| panic!("{name} not published"))
        };
        assert_eq!(value("stats/connections/count"), "3");
        assert_eq!(value("stats/connections/max"), "3");
        assert_eq!(value("stats/sessions/count"), "3");
        assert_eq!(value("stats/subscriptions/count"), "1");
        assert_eq!(value("metrics/packets/connect/received"), "3");
        assert_eq!(value("metrics/messages/received"), "0");

        // The next round (one minute later): a late reply of the old round does not count.
        b0.tick(61_000, 1_700_000_060_000);
        let round = b0
            .take_mesh_out(1, usize::MAX)
            .into_iter()
            .find_map(|m| match m {
                MeshMsg::SysStatsRequest(r) => Some(r),
                _ => None,
            })
            .expect("a second round");
        let stale = MeshMsg::SysStatsReply(round - 1, Box::new(b1.sys_snapshot()));
        b0.mesh_in(1, stale, 61_000);
        assert!(
            !received(&mut b0, watcher)
                .iter()
                .any(|(t, _)| t.contains("/stats/"))
        );
        let reply = MeshMsg::SysStatsReply(round, Box::new(b1.sys_snapshot()));
        b0.mesh_in(1, reply, 61_000);
        let sent = received(&mut b0, watcher);
        assert!(
            sent.iter()
                .any(|(t, p)| t.ends_with("/stats/connections/count") && p == "3")
        );
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year).
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_str("a\"b\\c\nd\u{1}é", &mut s);
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
