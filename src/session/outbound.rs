//! Broker → client delivery for one session on the client's home shard: the in-flight window
//! (min of the client's Receive Maximum and `max_inflight`), the bounded queue, packet-id
//! allocation, outbound topic aliases, Maximum Packet Size, and PUBACK / PUBREC / PUBCOMP.
//!
//! Outbound topic aliases: first come, first served — topics get aliases 1, 2, ... up to the
//! client's Topic Alias Maximum; once all are taken, other topics are sent in full. No LRU
//! replacement: it would cost a timestamp per entry and reusing an alias is not faster for the
//! client than sending a topic it has never seen.

use std::num::NonZeroU16;
use std::sync::Arc;

use crate::protocol::{Ack, MqttStr, Packet, QoS, ReasonCode};

use super::{Delivery, DeliveryOpts, InFlight, Message, Session};

/// What [`Session::deliver`] did with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A PUBLISH was pushed.
    Sent,
    /// Waiting in the queue for the window or for the client to reconnect.
    Queued,
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Expired,
    TooLarge,
    /// QoS 0 for an offline client with `mqueue_store_qos0 = false`.
    Qos0NotStored,
}

enum AliasPlan {
    Existing(NonZeroU16),
    New(NonZeroU16),
}

impl Session {
    /// The in-flight window: the client's Receive Maximum capped by `max_inflight`.
    fn window(&self) -> usize {
        usize::from(
            self.client
                .receive_maximum
                .min(self.cfg.max_inflight)
                .max(1),
        )
    }

    fn has_room(&self) -> bool {
        self.inflight_len() < self.window()
    }

    /// Delivers one routed message to this subscriber. QoS 0 goes out at once while connected
    /// (it does not use the window); QoS 1/2 goes out when the window has room and nothing is
    /// queued before it, otherwise it is queued (when the queue is full the oldest entry is
    /// dropped and counted).
    pub fn deliver(
        &mut self,
        msg: Arc<Message>,
        opts: DeliveryOpts,
        now_ms: u64,
        out: &mut Vec<Packet>,
    ) -> Outcome {
        if msg.is_expired(now_ms) {
            self.count().dropped_expired += 1;
            return Outcome::Dropped(DropReason::Expired);
        }
        let d = Delivery { msg, opts };
        let qos0 = d.qos() == QoS::AtMostOnce;
        if self.connected && (qos0 || (self.queue_len() == 0 && self.has_room())) {
            return match self.send_new(d, now_ms, out) {
                true => Outcome::Sent,
                false => Outcome::Dropped(DropReason::TooLarge),
            };
        }
        if qos0 && !self.connected && !self.cfg.mqueue_store_qos0 {
            self.count().dropped_qos0 += 1;
            return Outcome::Dropped(DropReason::Qos0NotStored);
        }
        let max = self.cfg.max_mqueue_len as usize;
        let s = self.state_mut();
        let full = max != 0 && s.mqueue.len() >= max;
        if full {
            s.mqueue.pop_front();
        }
        s.mqueue.push_back(d);
        if full {
            self.count().dropped_queue_full += 1;
        }
        Outcome::Queued
    }

    /// PUBACK from the client. Unknown (or not a QoS 1 in flight) → ignored, returns false.
    pub fn on_puback(&mut self, pid: NonZeroU16, now_ms: u64, out: &mut Vec<Packet>) -> bool {
        let found = self.position(pid, |f| {
            f.delivery
                .as_ref()
                .is_some_and(|d| d.qos() == QoS::AtLeastOnce)
        });
        self.complete(found, now_ms, out)
    }

    /// PUBREC from the client: answers PUBREL and keeps the id until PUBCOMP; an error reason
    /// (≥ 0x80) ends the flow and frees the id. Unknown id → PUBREL 0x92 (Packet Identifier
    /// not found; a plain PUBREL before 5.0), returns false.
    pub fn on_pubrec(
        &mut self,
        pid: NonZeroU16,
        reason: ReasonCode,
        now_ms: u64,
        out: &mut Vec<Packet>,
    ) -> bool {
        let found = self.position(pid, |f| {
            f.delivery
                .as_ref()
                .is_none_or(|d| d.qos() == QoS::ExactlyOnce)
        });
        let Some(i) = found else {
            let rc = match self.client.version.is_v5() {
                true => ReasonCode::PacketIdentifierNotFound,
                false => ReasonCode::Success,
            };
            out.push(Packet::PubRel(Ack::with_reason(pid, rc)));
            return false;
        };
        if reason.is_error() {
            self.state_mut().inflight.remove(i);
            self.drain(now_ms, out);
        } else {
            // A repeated PUBREC (already in the PUBREL phase) gets the PUBREL again.
            self.state_mut().inflight[i].delivery = None;
            out.push(Packet::PubRel(Ack::new(pid)));
        }
        true
    }

    /// PUBCOMP from the client. Unknown (or not awaiting PUBCOMP) → ignored, returns false.
    pub fn on_pubcomp(&mut self, pid: NonZeroU16, now_ms: u64, out: &mut Vec<Packet>) -> bool {
        let found = self.position(pid, |f| f.delivery.is_none());
        self.complete(found, now_ms, out)
    }

    fn position(&self, pid: NonZeroU16, ok: impl Fn(&InFlight) -> bool) -> Option<usize> {
        let s = self.state.as_ref()?;
        s.inflight.iter().position(|f| f.pid == pid && ok(f))
    }

    fn complete(&mut self, found: Option<usize>, now_ms: u64, out: &mut Vec<Packet>) -> bool {
        let Some(i) = found else { return false };
        self.state_mut().inflight.remove(i);
        self.count().acked += 1;
        self.drain(now_ms, out);
        true
    }

    /// Moves queued messages into the window while it has room (QoS 0 needs none), dropping
    /// expired ones (counted).
    pub(super) fn drain(&mut self, now_ms: u64, out: &mut Vec<Packet>) {
        if !self.connected {
            return;
        }
        loop {
            let room = self.has_room();
            let Some(s) = self.state.as_mut() else { return };
            let Some(front) = s.mqueue.front() else {
                return;
            };
            if front.qos() != QoS::AtMostOnce && !room {
                return;
            }
            let d = s.mqueue.pop_front().expect("front exists");
            if d.msg.is_expired(now_ms) {
                self.count().dropped_expired += 1;
                continue;
            }
            self.send_new(d, now_ms, out);
        }
    }

    /// First transmission; QoS 1/2 take a packet id and a window slot. False if too large.
    fn send_new(&mut self, d: Delivery, now_ms: u64, out: &mut Vec<Packet>) -> bool {
        let pid = match d.qos() {
            QoS::AtMostOnce => None,
            _ => Some(self.alloc_pid()),
        };
        if !self.emit(&d, pid, false, now_ms, out) {
            return false;
        }
        self.count().delivered += 1;
        if let Some(pid) = pid {
            let delivery = Some(d);
            self.state_mut()
                .inflight
                .push_back(InFlight { pid, delivery });
        }
        true
    }

    /// The next packet id not in flight: 1..=65535, wrapping. Only called with room in the
    /// window (≤ 65535 ids in use), so a free id exists.
    fn alloc_pid(&mut self) -> NonZeroU16 {
        loop {
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            let pid = NonZeroU16::new(self.next_pid).expect("never 0");
            if self.position(pid, |_| true).is_none() {
                return pid;
            }
        }
    }

    /// Builds the PUBLISH (with DUP for a resend), applies the topic alias, checks the
    /// client's Maximum Packet Size and pushes it. False (counted) if it does not fit.
    pub(super) fn emit(
        &mut self,
        d: &Delivery,
        pid: Option<NonZeroU16>,
        dup: bool,
        now_ms: u64,
        out: &mut Vec<Packet>,
    ) -> bool {
        let v = self.client.version;
        let mut p = d.msg.to_publish(&d.opts, pid, now_ms, v);
        p.dup = dup && pid.is_some();
        let mut plan = self.plan_alias(&p.topic);
        match plan {
            Some(AliasPlan::Existing(a)) => {
                p.properties.topic_alias = Some(a);
                p.topic = MqttStr::default();
            }
            Some(AliasPlan::New(a)) => p.properties.topic_alias = Some(a),
            None => {}
        }
        let max = self.client.maximum_packet_size as usize;
        let mut pkt = Packet::Publish(p);
        let fits = |pkt: &Packet| pkt.encoded_len(v).is_ok_and(|n| n <= max);
        if !fits(&pkt) {
            // Without a new alias the packet is 3 bytes shorter; try that before giving up.
            if let (Some(AliasPlan::New(_)), Packet::Publish(p)) = (&plan, &mut pkt) {
                p.properties.topic_alias = None;
                plan = None;
            }
            if !fits(&pkt) {
                self.count().dropped_too_large += 1;
                return false;
            }
        }
        if let Some(AliasPlan::New(a)) = plan {
            // A copy, so the alias table does not pin the message's receive buffer.
            let topic = MqttStr::from(d.msg.topic.as_str());
            self.state_mut().alias_out.insert(topic, a.get());
        }
        out.push(pkt);
        true
    }

    fn plan_alias(&self, topic: &str) -> Option<AliasPlan> {
        let max = self.client.topic_alias_maximum;
        if max == 0 || !self.client.version.is_v5() {
            return None;
        }
        let used = self.state.as_ref().map(|s| &s.alias_out);
        if let Some(&a) = used.and_then(|m| m.get(topic)) {
            return NonZeroU16::new(a).map(AliasPlan::Existing);
        }
        let n = used.map_or(0, |m| m.len());
        (n < usize::from(max)).then(|| AliasPlan::New(NonZeroU16::new(n as u16 + 1).expect("+1")))
    }
}
