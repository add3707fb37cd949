//! Inbound PUBLISH and its acknowledgements on the publisher's home shard, and the routing of a
//! message: retain (to the topic's retain shard) → route table (one mesh message per other
//! interested shard) → local trie → each subscriber's session.

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
        if validate_topic_name(&p.topic, s.max_topic_levels).is_err() {
            return self.violation(id, ReasonCode::TopicNameInvalid);
        }
        self.counters.messages_received += 1;
        // Clients cannot publish to `$SYS` (FEATURES.md §9): acknowledged as not authorized, dropped.
        let denied = p.topic.starts_with("$SYS");
        let publisher = self.clients[key as usize].publisher_id;
        let now = self.now_ms;
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {
                if !denied {
                    let msg = self.message_from(p, publisher);
                    self.route(Arc::new(msg));
                }
            }
            (QoS::AtLeastOnce, Some(pid)) => {
                if let Err(code) = self.clients[key as usize].session.on_inbound_qos1() {
                    return self.violation(id, code);
                }
                let reason = if denied {
                    ReasonCode::NotAuthorized
                } else {
                    let msg = self.message_from(p, publisher);
                    ack_reason(self.route(Arc::new(msg)))
                };
                self.with_session(key, |s, _, out| s.ack_inbound_qos1(pid, reason, out));
            }
            (QoS::ExactlyOnce, Some(pid)) => {
                let inbound = self.clients[key as usize].session.on_inbound_qos2(pid, now);
                let reason = match inbound {
                    Err(code) => return self.violation(id, code),
                    // Exactly once: a retransmission is acknowledged, not routed again.
                    Ok(Qos2Inbound::Duplicate) => ReasonCode::Success,
                    // Over max_awaiting_rel: a v3 client cannot be told, so it is disconnected.
                    Ok(Qos2Inbound::Full) if !self.clients[key as usize].version.is_v5() => {
                        return self.violation(id, ReasonCode::QuotaExceeded);
                    }
                    Ok(Qos2Inbound::Full) => ReasonCode::QuotaExceeded,
                    Ok(Qos2Inbound::New) if denied => ReasonCode::NotAuthorized,
                    Ok(Qos2Inbound::New) => {
                        let msg = self.message_from(p, publisher);
                        ack_reason(self.route(Arc::new(msg)))
                    }
                };
                self.with_session(key, |s, _, out| s.ack_inbound_qos2(pid, reason, out));
            }
        }
        Flow::Continue
    }

    pub(super) fn handle_pubrel(&mut self, key: ClientKey, a: Ack) -> Flow {
        self.with_session(key, |s, _, out| s.on_pubrel(a.packet_id, out));
        Flow::Continue
    }

    fn message_from(&self, p: Publish, publisher: u64) -> Message {
        Message::from_publish(p, publisher, self.now_ms, self.settings.message_expiry_secs)
    }

    /// Routes a message published on this shard; true when some subscriber anywhere matched.
    pub(super) fn route(&mut self, msg: Arc<Message>) -> bool {
        if msg.retain && self.settings.retainer_enable {
            let dest = retain_shard(&msg.topic, self.nr_shards);
            if dest == self.shard {
                self.retained
                    .store(msg.clone(), &self.settings, self.now_ms);
            } else {
                self.send_mesh(dest, MeshMsg::Retain(msg.clone()));
            }
        }
        let mut matched = false;
        let mut shards = Vec::new();
        self.routes
            .matching_shards(&msg.topic, &mut self.matches, &mut shards);
        for dest in shards {
            matched = true;
            self.send_mesh(dest, MeshMsg::Publish(msg.clone()));
        }
        if self.deliver_local(&msg) > 0 {
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
            };
            self.deliver_to(key, msg.clone(), opts);
        }
        self.local.scratch = targets;
        n
    }

    pub(super) fn deliver_to(&mut self, key: ClientKey, msg: Arc<Message>, opts: DeliveryOpts) {
        self.with_session(key, |s, now, out| s.deliver(msg, opts, now, out));
    }

    /// Runs `f` on a client's session and writes the packets it produced to the client's
    /// connection, if it has one. QoS 0 PUBLISHes to a connection whose output queue is over
    /// [`WRITE_QUEUE_BYTES_MAX`] are dropped and counted: a stalled subscriber cannot grow memory.
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
