//! Client → broker state of one session on the client's home shard: the Receive Maximum the
//! broker advertised (§4.9), QoS 2 exactly-once (packet ids awaiting PUBREL, with
//! `max_awaiting_rel` and `await_rel_timeout`), and inbound topic aliases.
//!
//! Flow: QoS 1 → [`Session::on_inbound_qos1`], route, [`Session::ack_inbound_qos1`] (PUBACK).
//! QoS 2 → [`Session::on_inbound_qos2`]; `New` → route, then [`Session::ack_inbound_qos2`]
//! (PUBREC); `Duplicate` → PUBREC 0x00 without routing; then PUBREL → [`Session::on_pubrel`].

use std::num::NonZeroU16;

use crate::protocol::{Ack, MqttStr, Packet, Publish, ReasonCode};

use super::{AwaitingRel, Session};

/// What to do with an inbound QoS 2 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos2Inbound {
    /// First time seen: route it, then answer PUBREC.
    New,
    /// Already received, PUBREL not yet: do not route again; answer PUBREC 0x00
    /// ([MQTT-4.3.3-9]: the receiver acknowledges every PUBLISH with that id by PUBREC).
    /// (EMQX answers 0x91 here, which as an error code ends the sender's flow although the
    /// message was delivered; we follow the spec.)
    Duplicate,
    /// `max_awaiting_rel` reached: not routed (counted). Answer PUBREC 0x97 Quota exceeded in
    /// 5.0 — the client learns the message was refused and the connection survives, since the
    /// client stayed within the Receive Maximum it was given. (0x93, which EMQX uses with a
    /// DISCONNECT, is not a legal PUBREC code.) A 3.x client cannot be told: close the
    /// connection.
    Full,
}

impl Session {
    /// One more unacknowledged inbound QoS 1/2 PUBLISH, or 0x93 Receive Maximum exceeded
    /// (send DISCONNECT 0x93) [MQTT-3.3.4-9].
    fn take_receive_quota(&mut self) -> Result<(), ReasonCode> {
        if self.inbound_unacked >= self.cfg.server_receive_maximum {
            return Err(ReasonCode::ReceiveMaximumExceeded);
        }
        self.inbound_unacked += 1;
        Ok(())
    }

    fn release_receive_quota(&mut self) {
        self.inbound_unacked = self.inbound_unacked.saturating_sub(1);
    }

    fn ack_reason(&self, reason: ReasonCode) -> ReasonCode {
        match self.client.version.is_v5() {
            true => reason,
            false => ReasonCode::Success,
        }
    }

    /// An inbound QoS 1 PUBLISH arrived. Err = Receive Maximum exceeded.
    pub fn on_inbound_qos1(&mut self) -> Result<(), ReasonCode> {
        self.take_receive_quota()
    }

    /// Pushes the PUBACK for an inbound QoS 1 PUBLISH (reason dropped before 5.0) and returns
    /// its Receive Maximum quota.
    pub fn ack_inbound_qos1(&mut self, pid: NonZeroU16, reason: ReasonCode, out: &mut Vec<Packet>) {
        self.release_receive_quota();
        out.push(Packet::PubAck(Ack::with_reason(
            pid,
            self.ack_reason(reason),
        )));
    }

    /// An inbound QoS 2 PUBLISH arrived. Err = Receive Maximum exceeded (DISCONNECT 0x93).
    pub fn on_inbound_qos2(
        &mut self,
        pid: NonZeroU16,
        now_ms: u64,
    ) -> Result<Qos2Inbound, ReasonCode> {
        let known = self
            .state
            .as_ref()
            .and_then(|s| s.awaiting_rel.iter().position(|a| a.pid == pid));
        if let Some(i) = known {
            // Resent after a reconnect: it counts against this connection's quota again.
            if !self.state_mut().awaiting_rel[i].counted {
                self.take_receive_quota()?;
                self.state_mut().awaiting_rel[i].counted = true;
            }
            return Ok(Qos2Inbound::Duplicate);
        }
        if self.inbound_unacked >= self.cfg.server_receive_maximum {
            return Err(ReasonCode::ReceiveMaximumExceeded);
        }
        let max = self.cfg.max_awaiting_rel as usize;
        if max != 0 && self.awaiting_rel_len() >= max {
            // Answered by an error PUBREC, so it takes no quota.
            self.count().dropped_awaiting_full += 1;
            return Ok(Qos2Inbound::Full);
        }
        self.take_receive_quota()?;
        let deadline_ms = now_ms.saturating_add(self.cfg.await_rel_timeout_ms);
        let entry = AwaitingRel {
            pid,
            deadline_ms,
            counted: true,
        };
        self.state_mut().awaiting_rel.push_back(entry);
        Ok(Qos2Inbound::New)
    }

    /// Pushes the PUBREC for an inbound QoS 2 PUBLISH (reason dropped before 5.0). An error
    /// reason (≥ 0x80) ends the exchange: the id is forgotten and its quota returned.
    pub fn ack_inbound_qos2(&mut self, pid: NonZeroU16, reason: ReasonCode, out: &mut Vec<Packet>) {
        let reason = self.ack_reason(reason);
        if reason.is_error() {
            self.forget_awaiting(pid);
        }
        out.push(Packet::PubRec(Ack::with_reason(pid, reason)));
    }

    /// PUBREL from the client: PUBCOMP 0x00 for a known id (returns true); 0x92 Packet
    /// Identifier not found (plain PUBCOMP before 5.0) for an unknown one.
    pub fn on_pubrel(&mut self, pid: NonZeroU16, out: &mut Vec<Packet>) -> bool {
        let known = self.forget_awaiting(pid);
        let reason = match known {
            true => ReasonCode::Success,
            false => self.ack_reason(ReasonCode::PacketIdentifierNotFound),
        };
        out.push(Packet::PubComp(Ack::with_reason(pid, reason)));
        known
    }

    fn forget_awaiting(&mut self, pid: NonZeroU16) -> bool {
        let Some(s) = self.state.as_mut() else {
            return false;
        };
        let Some(i) = s.awaiting_rel.iter().position(|a| a.pid == pid) else {
            return false;
        };
        let a = s.awaiting_rel.remove(i).expect("index exists");
        if a.counted {
            self.release_receive_quota();
        }
        true
    }

    /// When [`Session::tick`] next has work: the earliest awaiting-rel deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.state
            .as_ref()?
            .awaiting_rel
            .front()
            .map(|a| a.deadline_ms)
    }

    /// Forgets inbound QoS 2 ids whose PUBREL did not arrive within `await_rel_timeout`
    /// (a later PUBREL gets PUBCOMP 0x92). Returns how many expired (also counted).
    pub fn tick(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        while let Some(a) = self
            .state
            .as_ref()
            .and_then(|s| s.awaiting_rel.front().copied())
        {
            if a.deadline_ms > now_ms {
                break;
            }
            self.state_mut().awaiting_rel.pop_front();
            if a.counted {
                self.release_receive_quota();
            }
            n += 1;
        }
        if n > 0 {
            self.count().awaiting_rel_expired += n as u64;
        }
        n
    }

    /// Applies the Topic Alias of an inbound PUBLISH (§3.3.2.3.4): an alias above the
    /// advertised maximum → 0x94 Topic Alias invalid; topic + alias → (re)defines the alias;
    /// empty topic + known alias → fills in the topic; empty topic + unknown alias → 0x82
    /// Protocol Error. Both errors mean DISCONNECT with that code. The alias property is left
    /// in place ([`super::Message::from_publish`] drops it).
    pub fn resolve_topic_alias(&mut self, p: &mut Publish) -> Result<(), ReasonCode> {
        let Some(alias) = p.properties.topic_alias else {
            return Ok(());
        };
        if alias.get() > self.cfg.max_topic_alias {
            return Err(ReasonCode::TopicAliasInvalid);
        }
        if p.topic.is_empty() {
            let s = self.state.as_ref().ok_or(ReasonCode::ProtocolError)?;
            p.topic = s
                .alias_in
                .get(&alias.get())
                .cloned()
                .ok_or(ReasonCode::ProtocolError)?;
        } else {
            // A copy, so the table does not pin this packet's receive buffer.
            let topic = MqttStr::from(p.topic.as_str());
            self.state_mut().alias_in.insert(alias.get(), topic);
        }
        Ok(())
    }
}
