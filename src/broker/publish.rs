//! Inbound PUBLISH and its acknowledgements on the publisher's home shard, and the routing of a
//! message: rewrite → delayed? (kept here until due) → retain (to the topic's retain shard) →
//! route table (one mesh message per other interested shard) → local trie → each subscriber's
//! session.

use std::sync::Arc;

use super::conn::Flow;
use super::mesh::{MeshMsg, retain_shard};
use super::{Broker, ClientKey, ConnId};
use crate::limits::WRITE_QUEUE_BYTES_MAX;
use crate::protocol::{Ack, Packet, Publish, QoS, ReasonCode};
use crate::session::{DeliveryOpts, Message, Qos2Inbound, Session, SubIds};
use crate::topic::validate_topic_name;

impl Broker {
    pub(super) fn handle_publish(&mut self, id: ConnId, key: ClientKey, mut p: Publish) -> Flow {
        let s = &self.settings;
        if let Err(code) = self.clients[key as usize]
            .session
            .resolve_topic_alias(&mut p)
        {
            return self.violation(id, code);
        }
        if p.qos > s.max_qos_allowed {
            return self.violation(id, ReasonCode::QosNotSupported);
        }
        if p.retain && !s.retain_available {
            return self.violation(id, ReasonCode::RetainNotSupported);
        }
        // A `$delayed/...` topic is checked (its inner topic) when it is kept: a bad one is
        // dropped and counted, not a protocol error.
        if !self.is_delayed(&p.topic) && validate_topic_name(&p.topic, s.max_topic_levels).is_err()
        {
            return self.violation(id, ReasonCode::TopicNameInvalid);
        }
        // Rewrite first (FEATURES.md §8): everything after sees the new topic.
        if let Some(topic) = self.rewrite_publish_topic(key, &p.topic) {
            if validate_topic_name(&topic, self.settings.max_topic_levels).is_err() {
                return self.violation(id, ReasonCode::TopicNameInvalid);
            }
            p.topic = topic.into();
        }
        self.counters.messages_received += 1;
        self.counters.qos_received[p.qos as usize] += 1;
        if p.retain {
            self.counters.messages_retained += 1;
        }
        // Clients cannot publish to `$SYS` (FEATURES.md §9): acknowledged as not authorized, dropped.
        let denied = p.topic.starts_with("$SYS");
        let publisher = self.clients[key as usize].publisher_id;
        let now = self.now_ms;
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {
                if !denied {
                    self.publish_in(p, key, publisher, false);
                }
            }
            (QoS::AtLeastOnce, Some(pid)) => {
                if let Err(code) = self.clients[key as usize].session.on_inbound_qos1() {
                    return self.violation(id, code);
                }
                let (reason, token) = if denied {
                    (ReasonCode::NotAuthorized, None)
                } else {
                    self.publish_in(p, key, publisher, true)
                };
                self.ack(id, key, token, |s, out| {
                    s.ack_inbound_qos1(pid, reason, out)
                });
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                let inbound = self.clients[key as usize].session.on_inbound_qos2(pid, now);
                let (reason, token) = match inbound {
                    Err(code) => return self.violation(id, code),
                    // Exactly once: a retransmission is acknowledged, not routed again.
                    Ok(Qos2Inbound::Duplicate) => (ReasonCode::Success, None),
                    // Over max_awaiting_rel: a v3 client cannot be told, so it is disconnected.
                    Ok(Qos2Inbound::Full) if !self.clients[key as usize].version.is_v5() => {
                        return self.violation(id, ReasonCode::QuotaExceeded);
                    }
                    Ok(Qos2Inbound::Full) => (ReasonCode::QuotaExceeded, None),
                    Ok(Qos2Inbound::New) if denied => (ReasonCode::NotAuthorized, None),
                    Ok(Qos2Inbound::New) => self.publish_in(p, key, publisher, true),
                };
                self.ack(id, key, token, |s, out| {
                    s.ack_inbound_qos2(pid, reason, out)
                });
            }
        }
        Flow::Continue
    }

    /// The topic a PUBLISH or will of `key` is rewritten to, `None` when it stays as it is.
    pub(super) fn rewrite_publish_topic(&self, key: ClientKey, topic: &str) -> Option<String> {
        let client = &self.clients[key as usize];
        let who = super::rewrite::Who {
            client_id: &client.id,
            username: client.username(),
        };
        self.settings.rewrite.publish_topic(topic, who)
    }

    pub(super) fn handle_pubrel(&mut self, key: ClientKey, a: Ack) -> Flow {
        self.with_session(key, |s, _, out| s.on_pubrel(a.packet_id, out));
        Flow::Continue
    }

    /// A new inbound message: kept when it is a delayed one, routed now otherwise. Returns the
    /// v5 reason for its acknowledgement and, when `acked`, the token to hold it on (see
    /// [`Self::route_acked`]).
    fn publish_in(
        &mut self,
        p: Publish,
        key: ClientKey,
        publisher: u64,
        acked: bool,
    ) -> (ReasonCode, Option<u64>) {
        if self.is_delayed(&p.topic) {
            return (self.delay(p, publisher), None);
        }
        let msg = Arc::new(self.message_from(p, publisher));
        if acked {
            self.route_acked(msg, key)
        } else {
            (ack_reason(self.route_with(msg, None, Some(key))), None)
        }
    }

    pub(super) fn message_from(&self, p: Publish, publisher: u64) -> Message {
        Message::from_publish(p, publisher, self.now_ms, self.settings.message_expiry_secs)
    }

    /// Routes an acknowledged message: the v5 reason for its PUBACK / PUBREC (0x10 when nothing
    /// matched), and the token to hold the acknowledgement on while a retained message is
    /// stored on another shard — so that a client subscribing after the PUBACK finds it.
    fn route_acked(&mut self, msg: Arc<Message>, key: ClientKey) -> (ReasonCode, Option<u64>) {
        let remote_retain = msg.retain
            && self.settings.retainer_enable
            && retain_shard(&msg.topic, self.nr_shards) != self.shard;
        let token = remote_retain.then(|| {
            self.next_token += 1;
            self.next_token
        });
        (ack_reason(self.route_with(msg, token, Some(key))), token)
    }

    /// Routes a message published on this shard; true when some subscriber anywhere matched.
    pub(super) fn route(&mut self, msg: Arc<Message>) -> bool {
        self.route_with(msg, None, None)
    }

    /// Routes a message; `publisher` is the publishing client when it is one of this shard's
    /// (shared subscriptions' per-publisher strategies use it).
    pub(super) fn route_with(
        &mut self,
        msg: Arc<Message>,
        retain_token: Option<u64>,
        publisher: Option<ClientKey>,
    ) -> bool {
        if msg.retain && self.settings.retainer_enable {
            let dest = retain_shard(&msg.topic, self.nr_shards);
            if dest == self.shard {
                self.retained
                    .store(msg.clone(), &self.settings, self.now_ms);
            } else {
                self.send_mesh(dest, MeshMsg::Retain(msg.clone(), retain_token));
            }
        }
        let mut matched = false;
        let mut shards = std::mem::take(&mut self.route_shards);
        self.routes
            .matching_shards(&msg.topic, &mut self.matches, &mut shards);
        for dest in shards.drain(..) {
            matched = true;
            self.send_mesh(dest, MeshMsg::Publish(msg.clone()));
        }
        self.route_shards = shards;
        if self.deliver_local(&msg) > 0 {
            matched = true;
        }
        if self.dispatch_shared(&msg, publisher) {
            matched = true;
        }
        if !matched {
            self.counters.messages_dropped_no_subscribers += 1;
        }
        matched
    }

    /// Delivers to this shard's subscribers of every filter matching the topic; returns how many
    /// subscriptions matched.
    pub(super) fn deliver_local(&mut self, msg: &Arc<Message>) -> usize {
        let mut targets = std::mem::take(&mut self.local.scratch);
        targets.clear();
        self.local
            .collect(&msg.topic, &mut self.matches, &mut targets);
        let n = targets.len();
        for (key, sub) in targets.drain(..) {
            let Some(client) = self.clients.get(key as usize) else {
                continue;
            };
            if sub.no_local && client.publisher_id == msg.publisher_id {
                continue;
            }
            let opts = DeliveryOpts {
                qos: sub.qos,
                retain_as_published: sub.retain_as_published,
                retained_on_subscribe: false,
                subscription_ids: sub.subscription_id.map_or(SubIds::None, SubIds::One),
                shared: None,
            };
            self.deliver_to(key, msg.clone(), opts);
        }
        self.local.scratch = targets;
        n
    }

    /// Sends the acknowledgement(s) `f` makes, in order behind any held one; with a token, held
    /// until [`MeshMsg::RetainStored`] for it arrives.
    fn ack(
        &mut self,
        id: ConnId,
        key: ClientKey,
        token: Option<u64>,
        f: impl FnOnce(&mut Session, &mut Vec<Packet>),
    ) {
        let mut acks = std::mem::take(&mut self.packets);
        f(&mut self.clients[key as usize].session, &mut acks);
        if let Some(conn) = self.conns.get_mut(id as usize) {
            if token.is_none() && conn.held_acks.is_none() {
                for packet in &acks {
                    self.send(id, packet);
                }
            } else {
                conn.held_acks
                    .get_or_insert_with(Box::default)
                    .extend(acks.drain(..).map(|p| (token.unwrap_or(0), p)));
                if let Some(t) = token {
                    self.held_acks.insert(t, id);
                }
            }
        }
        acks.clear();
        self.packets = acks;
    }

    /// A retained message is stored: its acknowledgement, and the ones queued behind it, go out.
    pub(super) fn release_held_ack(&mut self, token: u64) {
        let Some(id) = self.held_acks.remove(&token) else {
            return;
        };
        let Some(held) = self
            .conns
            .get_mut(id as usize)
            .and_then(|c| c.held_acks.as_mut())
        else {
            return;
        };
        for entry in held.iter_mut().filter(|(t, _)| *t == token) {
            entry.0 = 0;
        }
        let mut ready = Vec::new();
        while held.front().is_some_and(|(t, _)| *t == 0) {
            ready.push(held.pop_front().expect("front exists").1);
        }
        if held.is_empty() {
            self.conns[id as usize].held_acks = None;
        }
        for packet in &ready {
            self.send(id, packet);
        }
    }

    pub(super) fn deliver_to(&mut self, key: ClientKey, msg: Arc<Message>, opts: DeliveryOpts) {
        self.with_session(key, |s, now, out| s.deliver(msg, opts, now, out));
    }

    /// Runs `f` on a client's session and writes the packets it produced to the client's
    /// connection, if it has one. QoS 0 PUBLISHes to a connection whose output queue is over
    /// [`WRITE_QUEUE_BYTES_MAX`] are dropped and counted: a stalled subscriber cannot grow memory.
    /// Before that, a connection whose output or queue is congested stalls the publisher
    /// ([`Broker::check_congestion`]).
    pub(super) fn with_session<R>(
        &mut self,
        key: ClientKey,
        f: impl FnOnce(&mut Session, u64, &mut Vec<Packet>) -> R,
    ) -> Option<R> {
        let now = self.now_ms;
        let mut packets = std::mem::take(&mut self.packets);
        let client = self.clients.get_mut(key as usize)?;
        let r = f(&mut client.session, now, &mut packets);
        let conn = client.conn;
        let queued = client.session.queue_len();
        for packet in packets.drain(..) {
            let Some(id) = conn else { break };
            let backlog = self.conns.get(id as usize).map_or(0, |c| c.tx.len());
            if backlog > WRITE_QUEUE_BYTES_MAX
                && matches!(&packet, Packet::Publish(p) if p.qos == QoS::AtMostOnce)
            {
                self.counters.messages_dropped_qos0_backlog += 1;
                continue;
            }
            self.send(id, &packet);
        }
        self.packets = packets;
        if let Some(id) = conn {
            self.check_congestion(id, queued);
        }
        Some(r)
    }
}

/// v5 acknowledgement of a routed message: 0x10 when no subscriber matched (as EMQX).
fn ack_reason(matched: bool) -> ReasonCode {
    if matched {
        ReasonCode::Success
    } else {
        ReasonCode::NoMatchingSubscribers
    }
}
