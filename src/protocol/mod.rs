//! The sans-io MQTT codec for protocol levels 3 (3.1, `MQIsdp`), 4 (3.1.1) and 5 (5.0): every
//! packet type, every v5 property and reason code, an incremental decoder and an encoder that can
//! size a packet without writing it. No I/O, no clock, no glommio; used on every shard.
//!
//! Files: `wire` (strings, integers, the reader and sinks), `properties` (v5 property sets),
//! `reason` (reason codes), `error` (violations and what to answer), one file per packet family
//! (`connect`, `publish`, `subscribe`, `control`), and `codec` (fixed header, decoder, encoder).

mod codec;
mod connect;
mod control;
mod error;
pub mod properties;
mod publish;
mod reason;
mod subscribe;
pub mod wire;

use std::num::NonZeroU16;

pub use codec::{Decoder, FrameHeader, parse_frame_header};
pub use connect::{ConnAck, Connect, LastWill};
pub use control::{Auth, Disconnect};
pub use error::{DecodeError, Response};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishExtraProperties, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    UserProperties, WillProperties,
};
pub use publish::{Ack, Publish};
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use wire::MqttStr;

/// The protocol level byte of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`.
    V31 = 3,
    /// MQTT 3.1.1, protocol name `MQTT`.
    V311 = 4,
    /// MQTT 5.0, protocol name `MQTT`.
    V5 = 5,
}

impl ProtocolVersion {
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }

    /// The protocol name CONNECT carries for this level.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
        }
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The control packet type, the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    pub fn from_u8(v: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match v {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }
}

/// One MQTT control packet. CONNECT and CONNACK are boxed: they are rare and large, and keeping
/// them out of line keeps every other packet small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("a string or binary field is longer than 65,535 bytes")]
    FieldTooLong,
    #[error("the packet is longer than the 268,435,455-byte maximum remaining length")]
    PacketTooLarge,
    #[error("a QoS 0 PUBLISH must have no packet identifier and QoS 1/2 one")]
    PacketIdMismatch,
    #[error("the packet or reason code does not exist in this protocol version")]
    NotInVersion,
}

/// A non-zero packet identifier from the wire, or [`DecodeError::ZeroPacketId`].
fn packet_id(v: u16) -> Result<NonZeroU16, DecodeError> {
    NonZeroU16::new(v).ok_or(DecodeError::ZeroPacketId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_stay_small() {
        // The decoder returns `Packet` by value on the hot path; CONNECT and CONNACK are boxed.
        assert!(
            std::mem::size_of::<Packet>() <= 256,
            "{}",
            std::mem::size_of::<Packet>()
        );
    }
}
