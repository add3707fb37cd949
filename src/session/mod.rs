//! Per-client MQTT session state — in-flight window, offline queue, QoS 2 exactly-once, topic
//! aliases both ways, flow control — owned by the client's home shard. Sans-io: no sockets, no
//! glommio, no clock. Methods that need time take `now_ms` (the caller's monotonic
//! milliseconds); packets to send are pushed into a caller-provided `Vec<Packet>`.
//!
//! Files: `message` (the routed [`Message`] and per-subscriber [`DeliveryOpts`]), `config`
//! ([`SessionConfig`], [`ClientLimits`], [`Counters`]), `outbound` (broker → client delivery and
//! acks), `inbound` (client → broker QoS 2, Receive Maximum, topic aliases); this file holds the
//! [`Session`] struct and its lifecycle (connect, disconnect, resume, shared-subscription
//! hand-back).
//!
//! Memory: a session is a fixed struct of at most 64 bytes (asserted in the tests: the shard's
//! configuration is shared, the counters are boxed on first use); every queue and map lives in one boxed
//! `State` that is allocated on first use and freed again by [`Session::compact`] once empty.
//! Look-ups by packet id are linear scans of the in-flight window / awaiting-rel list (bounded by
//! `max_inflight` and `max_awaiting_rel`, 32 and 100 by default), which beats a hash map at these
//! sizes and keeps send order for free. There are no timers: the caller's per-shard wheel asks
//! [`Session::next_deadline`] and calls [`Session::tick`].

mod config;
mod inbound;
mod message;
mod outbound;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::mem;
use std::num::NonZeroU16;
use std::rc::Rc;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::protocol::{Ack, MqttStr, Packet, QoS};

pub use config::{ClientLimits, Counters, SessionConfig};
pub use inbound::Qos2Inbound;
pub use message::{DeliveryOpts, Message, ShareName, SubIds};
pub use outbound::{DropReason, Outcome};

/// One client's session. Created connected by [`Session::new`]; survives disconnects when the
/// session is persistent ([`Session::disconnect`] then [`Session::resume`]).
#[derive(Debug)]
pub struct Session {
    /// Shared by every session of the shard.
    cfg: Rc<SessionConfig>,
    client: ClientLimits,
    /// Allocated by the first count, freed again by [`Session::take_counters`]: an idle session
    /// carries none.
    counters: Option<Box<Counters>>,
    /// Queues and maps, allocated on first use.
    state: Option<Box<State>>,
    /// The last outbound packet id handed out (0 before the first).
    next_pid: u16,
    /// Inbound QoS 1/2 PUBLISHes of this connection not yet answered by PUBACK / PUBCOMP / an
    /// error PUBREC (checked against `server_receive_maximum`).
    inbound_unacked: u16,
    connected: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Outbound QoS 1/2 in send order.
    inflight: VecDeque<InFlight>,
    /// Messages waiting for the window or for the client to come back.
    mqueue: VecDeque<Delivery>,
    /// Inbound QoS 2 packet ids awaiting PUBREL, in arrival order (so deadlines ascend).
    awaiting_rel: VecDeque<AwaitingRel>,
    /// Outbound aliases of this connection: topic → alias, assigned 1, 2, ... and never replaced.
    alias_out: HashMap<MqttStr, u16>,
    /// Inbound aliases of this connection.
    alias_in: HashMap<u16, MqttStr>,
}

impl State {
    fn is_empty(&self) -> bool {
        self.inflight.is_empty()
            && self.mqueue.is_empty()
            && self.awaiting_rel.is_empty()
            && self.alias_out.is_empty()
            && self.alias_in.is_empty()
    }

    fn shrink(&mut self) {
        self.inflight.shrink_to_fit();
        self.mqueue.shrink_to_fit();
        self.awaiting_rel.shrink_to_fit();
        self.alias_out.shrink_to_fit();
        self.alias_in.shrink_to_fit();
    }
}

/// One message for this subscriber.
#[derive(Debug)]
struct Delivery {
    msg: Arc<Message>,
    opts: DeliveryOpts,
}

impl Delivery {
    fn qos(&self) -> QoS {
        self.msg.effective_qos(&self.opts)
    }
}

/// An outbound QoS 1/2 packet id in use.
#[derive(Debug)]
struct InFlight {
    pid: NonZeroU16,
    /// `Some` until acknowledged by PUBACK / PUBREC; `None` = PUBREC received, PUBREL sent,
    /// awaiting PUBCOMP (the message itself is no longer needed).
    delivery: Option<Delivery>,
}

#[derive(Debug, Clone, Copy)]
struct AwaitingRel {
    pid: NonZeroU16,
    deadline_ms: u64,
    /// Counted in `inbound_unacked` of the current connection.
    counted: bool,
}

impl Session {
    /// A new, connected session.
    pub fn new(cfg: impl Into<Rc<SessionConfig>>, client: ClientLimits) -> Session {
        Session {
            cfg: cfg.into(),
            client,
            counters: None,
            state: None,
            next_pid: 0,
            inbound_unacked: 0,
            connected: true,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    pub fn client_limits(&self) -> &ClientLimits {
        &self.client
    }

    pub fn counters(&self) -> &Counters {
        static ZERO: Counters = Counters::ZERO;
        self.counters.as_deref().unwrap_or(&ZERO)
    }

    /// Returns the counters accumulated since the last call and resets them.
    pub fn take_counters(&mut self) -> Counters {
        self.counters.take().map_or_else(Counters::default, |c| *c)
    }

    fn count(&mut self) -> &mut Counters {
        self.counters.get_or_insert_with(Box::default)
    }

    /// Outbound QoS 1/2 packet ids in use (including those awaiting PUBCOMP).
    pub fn inflight_len(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.inflight.len())
    }

    /// Messages in the queue.
    pub fn queue_len(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.mqueue.len())
    }

    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub fn awaiting_rel_len(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.awaiting_rel.len())
    }

    fn state_mut(&mut self) -> &mut State {
        self.state.get_or_insert_with(Box::default)
    }

    /// The connection is gone; the session stays. In-flight messages, the queue and QoS 2
    /// awaiting-rel ids are kept; topic aliases and the Receive Maximum quota are per connection
    /// (§3.3.2.3.4, §4.9) and are reset.
    pub fn disconnect(&mut self) {
        self.connected = false;
        self.reset_connection_state();
        self.compact();
    }

    fn reset_connection_state(&mut self) {
        self.inbound_unacked = 0;
        if let Some(s) = self.state.as_mut() {
            s.alias_out = HashMap::new();
            s.alias_in = HashMap::new();
            for a in &mut s.awaiting_rel {
                a.counted = false;
            }
        }
    }

    /// The client reconnected to this kept session (or took it over: call
    /// [`Session::disconnect`] first). Resends, in original order, every unacknowledged PUBLISH
    /// with DUP=1 and its packet id, and a PUBREL for each one whose PUBREC arrived
    /// [MQTT-4.4.0-1]; then fills the window from the queue. An in-flight message now larger
    /// than the client's Maximum Packet Size is dropped (counted). All in-flight messages are
    /// resent even if the new Receive Maximum is smaller; new ones wait until it has room.
    pub fn resume(&mut self, client: ClientLimits, now_ms: u64, out: &mut Vec<Packet>) {
        self.client = client;
        self.connected = true;
        self.reset_connection_state();
        let mut i = 0;
        while i < self.inflight_len() {
            let f = &mut self.state_mut().inflight[i];
            let pid = f.pid;
            let Some(d) = f.delivery.take() else {
                out.push(Packet::PubRel(Ack::new(pid)));
                i += 1;
                continue;
            };
            if self.emit(&d, Some(pid), true, now_ms, out) {
                self.count().resent += 1;
                self.state_mut().inflight[i].delivery = Some(d);
                i += 1;
            } else {
                self.state_mut().inflight.remove(i);
            }
        }
        self.drain(now_ms, out);
    }

    /// Hands back, for redispatch to the other members of their shared subscriptions when this
    /// session ends, the messages this subscriber received through a shared subscription at
    /// QoS 1/2 that are queued or in flight and not yet PUBREC'd — in-flight ones first, each in
    /// order — with their group. Empties the outbound state (everything else is discarded).
    pub fn take_pending(&mut self) -> impl Iterator<Item = (Arc<Message>, Arc<ShareName>)> + use<> {
        let (inflight, queue) = match self.state.as_mut() {
            Some(s) => (mem::take(&mut s.inflight), mem::take(&mut s.mqueue)),
            None => Default::default(),
        };
        inflight
            .into_iter()
            .filter_map(|f| f.delivery)
            .chain(queue)
            .filter(|d| d.qos() != QoS::AtMostOnce)
            .filter_map(|d| Some((d.msg, d.opts.shared?)))
    }

    /// Returns memory to the allocator: frees the state box when nothing is left in it,
    /// otherwise shrinks its collections. Cheap to call on an idle session (e.g. from the
    /// keep-alive wheel).
    pub fn compact(&mut self) {
        match self.state.as_deref_mut() {
            Some(s) if s.is_empty() => self.state = None,
            Some(s) => s.shrink(),
            None => {}
        }
    }
}
