//! The limits a session works within — broker-wide ones from `[mqtt]` config ([`SessionConfig`])
//! and the client's own from CONNECT ([`ClientLimits`]) — and the session's plain counters.
//! Plain `Copy` data, held by each session on the client's home shard.

use crate::protocol::{ConnectProperties, ProtocolVersion};

/// Broker-side limits, filled by the caller from `[mqtt]` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// `max_inflight`: outbound QoS 1/2 PUBLISHes awaiting acknowledgement (1..=65535).
    pub max_inflight: u16,
    /// `max_mqueue_len`: queued messages per session; the oldest is dropped when full.
    /// 0 = unlimited (as EMQX's `infinity`).
    pub max_mqueue_len: u32,
    /// `mqueue_store_qos0`: whether QoS 0 messages are queued (otherwise dropped) while the
    /// client is offline.
    pub mqueue_store_qos0: bool,
    /// `max_awaiting_rel`: inbound QoS 2 messages awaiting PUBREL. 0 = unlimited.
    pub max_awaiting_rel: u32,
    /// `await_rel_timeout`: how long an inbound QoS 2 packet id waits for PUBREL.
    pub await_rel_timeout_ms: u64,
    /// The Receive Maximum the broker advertises in CONNACK (inbound flow control).
    pub server_receive_maximum: u16,
    /// `max_topic_alias`: the Topic Alias Maximum the broker advertises (inbound aliases).
    pub max_topic_alias: u16,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_inflight: 32,
            max_mqueue_len: 1000,
            mqueue_store_qos0: true,
            max_awaiting_rel: 100,
            await_rel_timeout_ms: 300_000,
            server_receive_maximum: 32,
            max_topic_alias: 65535,
        }
    }
}

/// What the client allows the broker to send, from CONNECT; reset on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub version: ProtocolVersion,
    /// The client's Receive Maximum (65535 when absent and for 3.x).
    pub receive_maximum: u16,
    /// The client's Topic Alias Maximum (0 when absent and for 3.x: no outbound aliases).
    pub topic_alias_maximum: u16,
    /// The client's Maximum Packet Size (`u32::MAX` when absent and for 3.x: unlimited).
    pub maximum_packet_size: u32,
}

impl ClientLimits {
    /// The limits of a client that sent no properties (any 3.x client).
    pub fn unlimited(version: ProtocolVersion) -> Self {
        ClientLimits {
            version,
            receive_maximum: u16::MAX,
            topic_alias_maximum: 0,
            maximum_packet_size: u32::MAX,
        }
    }

    /// From a CONNECT's protocol level and properties (properties ignored below 5.0).
    pub fn from_connect(version: ProtocolVersion, props: &ConnectProperties) -> Self {
        let mut l = ClientLimits::unlimited(version);
        if version.is_v5() {
            l.receive_maximum = props.receive_maximum.map_or(u16::MAX, |v| v.get());
            l.topic_alias_maximum = props.topic_alias_maximum.unwrap_or(0);
            l.maximum_packet_size = props.maximum_packet_size.map_or(u32::MAX, |v| v.get());
        }
        l
    }
}

/// What happened to messages in one session. The caller folds them into shard metrics with
/// [`Counters::add`] after [`super::Session::take_counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// PUBLISHes sent (first transmissions, any QoS).
    pub delivered: u64,
    /// PUBLISHes sent again with DUP on resume.
    pub resent: u64,
    /// Outbound QoS 1/2 completed (PUBACK, or PUBCOMP, received).
    pub acked: u64,
    /// Oldest queued message dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Expired before delivery started.
    pub dropped_expired: u64,
    /// Larger than the client's Maximum Packet Size [MQTT-3.1.2-25].
    pub dropped_too_large: u64,
    /// QoS 0 not queued for an offline client (`mqueue_store_qos0 = false`).
    pub dropped_qos0: u64,
    /// Inbound QoS 2 refused because `max_awaiting_rel` was reached.
    pub dropped_awaiting_full: u64,
    /// Inbound QoS 2 packet ids whose PUBREL did not come within `await_rel_timeout`.
    pub awaiting_rel_expired: u64,
}

impl Counters {
    pub const ZERO: Counters = Counters {
        delivered: 0,
        resent: 0,
        acked: 0,
        dropped_queue_full: 0,
        dropped_expired: 0,
        dropped_too_large: 0,
        dropped_qos0: 0,
        dropped_awaiting_full: 0,
        awaiting_rel_expired: 0,
    };

    pub fn add(&mut self, o: &Counters) {
        self.delivered += o.delivered;
        self.resent += o.resent;
        self.acked += o.acked;
        self.dropped_queue_full += o.dropped_queue_full;
        self.dropped_expired += o.dropped_expired;
        self.dropped_too_large += o.dropped_too_large;
        self.dropped_qos0 += o.dropped_qos0;
        self.dropped_awaiting_full += o.dropped_awaiting_full;
        self.awaiting_rel_expired += o.awaiting_rel_expired;
    }

    /// All messages dropped for this subscriber, for `messages/dropped`.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_expired + self.dropped_too_large + self.dropped_qos0
    }
}
