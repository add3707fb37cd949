//! The life of a session on its home shard: CONNECT (validation, server-assigned ids, handoff to
//! the home shard, takeover, resume), DISCONNECT, the end of a connection, wills (with delay) and
//! session expiry.

use std::sync::Arc;

use bytes::Bytes;

use super::conn::{CloseReason, Flow};
use super::mesh::home_shard;
use super::{Broker, Client, ClientKey, ConnId};
use crate::protocol::{
    ConnAck, ConnAckProperties, Connect, Disconnect, DisconnectProperties, MqttStr, Packet,
    ProtocolVersion, PublishExtraProperties, PublishProperties, QoS, ReasonCode, WillProperties,
};
use crate::session::{ClientLimits, Message, Session};
use crate::topic::validate_topic_name;

/// A will message waiting for its connection to end.
#[derive(Debug)]
pub(super) struct Will {
    topic: MqttStr,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
    delay_secs: u32,
}

pub(super) fn refused(reason: ReasonCode) -> Packet {
    Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason,
        properties: ConnAckProperties::default(),
    }))
}

impl Broker {
    pub(super) fn handle_connect(&mut self, id: ConnId, c: Box<Connect>) -> Flow {
        if let Err(code) = self.check_connect(&c) {
            return self.refuse(id, c.protocol, code);
        }
        if c.client_id.is_empty() && !c.protocol.is_v5() && !c.clean_start {
            // [MQTT-3.1.3-8]: a zero-byte client id needs CleanSession = 1.
            return self.refuse(id, c.protocol, ReasonCode::ClientIdentifierNotValid);
        }
        let home = home_shard(&c.client_id, self.nr_shards);
        if !c.client_id.is_empty() && home != self.shard {
            return Flow::Handoff(home, c);
        }
        self.accept_connect(id, c);
        Flow::Continue
    }

    fn check_connect(&self, c: &Connect) -> Result<(), ReasonCode> {
        let s = &self.settings;
        if c.properties.authentication_method.is_some() {
            return Err(ReasonCode::BadAuthenticationMethod);
        }
        if c.client_id.len() > s.max_clientid_len {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        if let Some(w) = &c.will {
            if validate_topic_name(&w.topic, s.max_topic_levels).is_err()
                || w.topic.starts_with("$SYS")
            {
                return Err(ReasonCode::TopicNameInvalid);
            }
            if w.qos > s.max_qos_allowed {
                return Err(ReasonCode::QosNotSupported);
            }
            if w.retain && !s.retain_available {
                return Err(ReasonCode::RetainNotSupported);
            }
        }
        Ok(())
    }

    fn refuse(&mut self, id: ConnId, v: ProtocolVersion, code: ReasonCode) -> Flow {
        if v.is_v5() || code.to_connack_v3().is_some() {
            self.send(id, &refused(code));
        }
        self.mark_close(id, CloseReason::Refused);
        Flow::Stop
    }

    /// Completes a CONNECT on the client's home shard: the socket is `id` here (accepted here
    /// or handed over).
    pub fn accept_connect(&mut self, id: ConnId, c: Box<Connect>) {
        let now = self.now_ms;
        let assigned = c.client_id.is_empty().then(|| self.assign_client_id());
        let client_id = assigned.clone().unwrap_or_else(|| c.client_id.clone());
        let v = c.protocol;
        let expiry_secs = match v {
            ProtocolVersion::V5 => c.properties.session_expiry_interval.unwrap_or(0),
            _ if c.clean_start => 0,
            _ => self.settings.session_expiry_secs,
        };
        let limits = ClientLimits::from_connect(v, &c.properties);

        // Takeover, discard or resume of an existing session.
        let mut session_present = false;
        let existing = self.by_id.get(&self.clients, &client_id);
        if let Some(key) = existing {
            if let Some(old) = self.clients[key as usize].conn.take() {
                self.take_over(old, key, c.clean_start);
            }
            if c.clean_start {
                self.end_session(key);
            } else {
                session_present = true;
                let client = &mut self.clients[key as usize];
                // The same client id is back before the will fired: cancel it.
                client.set_will(None);
                self.will_delay.disarm(key);
                self.expiry.disarm(key);
            }
        }
        let key = match self.by_id.get(&self.clients, &client_id) {
            Some(key) => key,
            None => self.new_client(client_id.clone(), v, &limits),
        };
        let client = &mut self.clients[key as usize];
        client.conn = Some(id);
        client.version = v;
        client.set_username(c.username.as_deref());
        client.expiry_secs = expiry_secs;
        client.set_will(c.will.as_ref().map(|w| {
            // Copied, not sliced: a slice would keep the whole read that held the CONNECT.
            Box::new(Will {
                topic: MqttStr::from(&*w.topic),
                payload: Bytes::copy_from_slice(&w.payload),
                qos: w.qos,
                retain: w.retain,
                properties: will_publish_properties(&w.properties),
                delay_secs: w.properties.will_delay_interval.unwrap_or(0),
            })
        }));

        let conn = &mut self.conns[id as usize];
        client.info = super::sys::ClientInfo {
            ip: conn.peer.ip(),
            sockport: conn.sockport,
            version: v,
            connected_at_ms: (self.now_ms as i64 + self.unix_offset_ms).max(0) as u64,
            keepalive: c.keep_alive,
            clean_start: c.clean_start,
        };
        conn.client = Some(key);
        conn.keepalive_secs = keepalive_deadline(c.keep_alive, self.settings.keepalive_multiplier);
        if conn.keepalive_secs > 0 {
            self.keepalive.arm(id, conn.keepalive_secs);
        } else {
            self.keepalive.disarm(id);
        }

        let ack = self.connack(v, session_present, assigned);
        self.send(id, &ack);
        self.with_session(key, |s, now, out| s.resume(limits, now, out));
        let _ = now;
        self.event_connected(key);
        let peer = self.conns[id as usize].peer;
        let epoch = self.route_sync.epoch;
        self.auto_subscribe(key, peer);
        if self.route_sync.epoch > epoch {
            // New routes: a client on another shard that publishes once this client has its
            // CONNACK must find them, as after a SUBACK.
            self.cork_until_routes_synced(id);
        }
    }

    fn new_client(&mut self, id: MqttStr, v: ProtocolVersion, limits: &ClientLimits) -> ClientKey {
        let publisher_id = self.next_publisher_id;
        self.next_publisher_id += 1;
        let session = Session::new(self.session_cfg.clone(), *limits);
        let generation = self.next_generation();
        let key = self.clients.insert(Client {
            id: super::client_id::ClientId::from(&*id),
            generation,
            publisher_id: ((self.shard as u64) << 48) | publisher_id,
            session,
            conn: None,
            version: v,
            expiry_secs: 0,
            subs: Default::default(),
            extra: None,
            info: Default::default(),
        }) as ClientKey;
        self.by_id.insert(&self.clients, key);
        key
    }

    fn next_generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        self.next_generation
    }

    /// A server-assigned client id that hashes to this shard, so the session stays here.
    fn assign_client_id(&mut self) -> MqttStr {
        loop {
            self.assigned_ids += 1;
            let id = format!("ringmq-{}-{:x}", self.shard, self.assigned_ids);
            if home_shard(&id, self.nr_shards) == self.shard
                && self.by_id.get(&self.clients, &id).is_none()
            {
                return MqttStr::from(id);
            }
        }
    }

    fn connack(
        &self,
        v: ProtocolVersion,
        session_present: bool,
        assigned: Option<MqttStr>,
    ) -> Packet {
        let s = &self.settings;
        let mut p = ConnAckProperties::default();
        if v.is_v5() {
            p.receive_maximum = std::num::NonZeroU16::new(s.max_inflight);
            p.maximum_packet_size = std::num::NonZeroU32::new(s.max_packet_size);
            p.topic_alias_maximum = Some(s.max_topic_alias);
            p.assigned_client_identifier = assigned;
            if s.max_qos_allowed < QoS::ExactlyOnce {
                p.maximum_qos = Some(s.max_qos_allowed);
            }
            if !s.retain_available {
                p.retain_available = Some(false);
            }
            if !s.wildcard_subscription {
                p.wildcard_subscription_available = Some(false);
            }
            if !s.shared_subscription {
                p.shared_subscription_available = Some(false);
            }
        }
        Packet::ConnAck(Box::new(ConnAck {
            session_present,
            reason: ReasonCode::Success,
            properties: p,
        }))
    }

    /// A second connection with the same client id: the first one is told 0x8E (v5) and closed;
    /// its will is published now if it has no delay, and cancelled otherwise (the client is back).
    fn take_over(&mut self, old: ConnId, key: ClientKey, clean_start: bool) {
        // `$SYS`: the old connection ends, its session resumed (takenover) or discarded.
        self.event_disconnected(
            key,
            if clean_start {
                "discarded"
            } else {
                "takenover"
            },
        );
        if self.conns.get(old as usize).and_then(|c| c.version()) == Some(ProtocolVersion::V5) {
            self.send(
                old,
                &Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver)),
            );
        }
        self.mark_close(old, CloseReason::TakenOver);
        if let Some(conn) = self.conns.get_mut(old as usize) {
            conn.client = None;
        }
        self.keepalive.disarm(old);
        let client = &mut self.clients[key as usize];
        client.session.disconnect();
        if let Some(will) = client.take_will()
            && will.delay_secs == 0
        {
            self.publish_will(key, *will);
        }
    }

    pub(super) fn handle_disconnect(&mut self, id: ConnId, key: ClientKey, d: Disconnect) -> Flow {
        let client = &mut self.clients[key as usize];
        if let Some(expiry) = d.properties.session_expiry_interval {
            // [MQTT-3.14.2-2]: a session expiry of 0 at CONNECT cannot be raised at DISCONNECT.
            if client.expiry_secs == 0 && expiry > 0 {
                return self.violation(id, ReasonCode::ProtocolError);
            }
            client.expiry_secs = expiry;
        }
        // 3.1 / 3.1.1 DISCONNECT and v5 reason 0x00 discard the will; any other v5 reason keeps it.
        if d.reason == ReasonCode::NORMAL_DISCONNECTION {
            client.set_will(None);
        }
        self.mark_close(id, CloseReason::Normal);
        Flow::Stop
    }

    /// Connection `id`'s socket is closed: detach it from its session, publish or schedule the
    /// will, and end or keep the session.
    pub fn closed(&mut self, id: ConnId, now_ms: u64) {
        self.now_ms = now_ms;
        if !self.conns.contains(id as usize) {
            return;
        }
        let conn = self.conns.remove(id as usize);
        self.keepalive.disarm(id);
        let Some(key) = conn.client else {
            return;
        };
        let client = &mut self.clients[key as usize];
        if client.conn != Some(id) {
            return;
        }
        client.conn = None;
        client.session.disconnect();
        let reason = conn.close.unwrap_or(CloseReason::TcpClosed);
        self.event_disconnected(key, super::sys::reason_name(reason));
        let client = &mut self.clients[key as usize];
        let ends_now = client.expiry_secs == 0 || reason == CloseReason::Shutdown;
        if let Some(will) = client.take_will() {
            if will.delay_secs == 0 || ends_now {
                self.publish_will(key, *will);
            } else {
                let delay = will.delay_secs.min(client.expiry_secs);
                self.clients[key as usize].set_will(Some(will));
                self.will_delay.arm(key, delay);
            }
        }
        let client = &self.clients[key as usize];
        if ends_now {
            self.end_session(key);
        } else if client.expiry_secs != u32::MAX {
            self.expiry.arm(key, client.expiry_secs);
        }
    }

    /// A connection handed over from another shard, with the CONNECT that shard decoded: the
    /// CONNECT is completed here, its home.
    pub fn accept_handoff(&mut self, id: ConnId, c: Box<Connect>) {
        let conn = &mut self.conns[id as usize];
        conn.decoder =
            crate::protocol::Decoder::with_version(c.protocol, self.settings.max_packet_size);
        self.accept_connect(id, c);
    }

    /// Queues a connection for its home shard.
    pub fn queue_handoff(&mut self, home: super::ShardId, h: super::Handoff) {
        self.send_mesh(home, super::MeshMsg::Handoff(Box::new(h)));
    }

    /// The connection was moved to another shard before its CONNECT completed here; returns
    /// its peer address.
    pub fn release(&mut self, id: ConnId) -> Option<std::net::SocketAddr> {
        let conn = self.conns.try_remove(id as usize)?;
        self.keepalive.disarm(id);
        Some(conn.peer)
    }

    pub(super) fn fire_delayed_will(&mut self, key: ClientKey) {
        let Some(client) = self.clients.get_mut(key as usize) else {
            return;
        };
        if client.conn.is_some() {
            return;
        }
        if let Some(will) = client.take_will() {
            self.publish_will(key, *will);
        }
    }

    pub(super) fn expire_session(&mut self, key: ClientKey) {
        if self
            .clients
            .get(key as usize)
            .is_some_and(|c| c.conn.is_none())
        {
            self.end_session(key);
        }
    }

    /// Ends a session: a pending will goes out now, subscriptions and routes are removed, exclusive
    /// locks released.
    pub(super) fn end_session(&mut self, key: ClientKey) {
        self.will_delay.disarm(key);
        self.expiry.disarm(key);
        if let Some(will) = self.clients[key as usize].take_will() {
            self.publish_will(key, *will);
        }
        self.end_exclusive(key);
        let subs = std::mem::take(&mut self.clients[key as usize].subs);
        let filters: Vec<_> = subs.ids().iter().map(|&f| self.local.filter(f)).collect();
        for filter in filters {
            self.remove_local_sub(key, &filter);
        }
        // Unacknowledged QoS 1/2 messages of shared subscriptions go to the groups' remaining
        // members (FEATURES.md §4).
        self.end_shared(key);
        let handed_back: Vec<_> = self.clients[key as usize].session.take_pending().collect();
        let mut client = self.clients.remove(key as usize);
        self.counters.session.add(&client.session.take_counters());
        self.by_id.remove(&client.id, key);
        for (msg, share) in handed_back {
            self.redispatch(msg, &share);
        }
    }

    fn publish_will(&mut self, key: ClientKey, mut will: Will) {
        // A will is published like a PUBLISH, so it is rewritten like one (FEATURES.md §8).
        if let Some(topic) = self.rewrite_publish_topic(key, &will.topic) {
            if validate_topic_name(&topic, self.settings.max_topic_levels).is_err() {
                tracing::debug!(from = %will.topic, to = %topic, "will dropped: rewritten to an invalid topic");
                return;
            }
            will.topic = topic.into();
        }
        // Clients cannot publish to `$SYS` (FEATURES.md §9), with a will neither.
        if will.topic.starts_with("$SYS") {
            return;
        }
        let publisher = self.clients[key as usize].publisher_id;
        let expiry_secs = will
            .properties
            .message_expiry_interval
            .or(self.settings.message_expiry_secs);
        let msg = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: will.properties,
            expires_at_ms: expiry_secs.map(|s| self.now_ms + u64::from(s) * 1000),
            publisher_id: publisher,
        };
        self.route_with(Arc::new(msg), None, Some(key));
    }

    /// Shutdown, first step: every session ends with the process, so every pending will (of a
    /// connected client, or one waiting out its delay) is published now, while the clients of
    /// every shard are still connected to receive it.
    pub fn publish_wills_for_shutdown(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        let keys: Vec<ClientKey> = self
            .clients
            .iter()
            .filter(|(_, c)| c.has_will())
            .map(|(key, _)| key as ClientKey)
            .collect();
        for key in keys {
            self.will_delay.disarm(key);
            if let Some(will) = self.clients[key as usize].take_will() {
                self.publish_will(key, *will);
            }
        }
    }

    /// Shutdown, second step: every v5 client is told 0x8B, every connection closes.
    pub fn shutdown(&mut self) {
        let ids: Vec<ConnId> = self.conns.iter().map(|(id, _)| id as ConnId).collect();
        for id in ids {
            let conn = &self.conns[id as usize];
            if conn.close.is_some() {
                continue;
            }
            if conn.client.is_some() && conn.version() == Some(ProtocolVersion::V5) {
                let d = Disconnect {
                    reason: ReasonCode::ServerShuttingDown,
                    properties: DisconnectProperties::default(),
                };
                self.send(id, &Packet::Disconnect(d));
            }
            self.mark_close(id, CloseReason::Shutdown);
        }
    }
}

/// The PUBLISH properties a will message carries (§3.1.3.2): all but the Will Delay Interval.
fn will_publish_properties(w: &WillProperties) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: w.payload_format_indicator,
        message_expiry_interval: w.message_expiry_interval,
        ..PublishProperties::default()
    }
    .with_extra(PublishExtraProperties {
        response_topic: w.response_topic.clone(),
        correlation_data: w.correlation_data.clone(),
        user_properties: w.user_properties.clone(),
        content_type: w.content_type.clone(),
        ..PublishExtraProperties::default()
    })
}

/// Seconds of silence allowed for a keep-alive of `keep_alive` seconds: 1.5 × by default,
/// rounded up; 0 turns the mechanism off ([MQTT-3.1.2-22] (5.0), [MQTT-3.1.2-24] (3.1.1)).
fn keepalive_deadline(keep_alive: u16, multiplier: f64) -> u32 {
    if keep_alive == 0 {
        return 0;
    }
    (f64::from(keep_alive) * multiplier).ceil() as u32
}

#[cfg(test)]
mod tests {
    use super::keepalive_deadline;

    #[test]
    fn keepalive_is_one_and_a_half_times() {
        assert_eq!(keepalive_deadline(0, 1.5), 0);
        assert_eq!(keepalive_deadline(1, 1.5), 2);
        assert_eq!(keepalive_deadline(10, 1.5), 15);
        assert_eq!(keepalive_deadline(65535, 1.5), 98303);
    }
}
