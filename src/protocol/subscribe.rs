//! SUBSCRIBE (§3.8), SUBACK (§3.9), UNSUBSCRIBE (§3.10) and UNSUBACK (§3.11).
//! Pure; used on the subscriber's home shard.

use std::num::NonZeroU16;

use super::codec::Encode;
use super::properties::{self, AckProperties, SubscribeProperties, UnsubscribeProperties};
use super::publish::reason_for;
use super::wire::{MqttStr, Reader, Sink};
use super::{DecodeError, EncodeError, PacketType, ProtocolVersion, QoS, ReasonCode, packet_id};

/// Retain Handling (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist yet.
    SendIfNew = 1,
    /// Never send them.
    DoNotSend = 2,
}

/// Subscription Options (§3.8.3.1); for 3.1 and 3.1.1 only `qos` is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn decode(b: u8, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if v.is_v5() { 0xc0 } else { 0xfc };
        if b & reserved != 0 {
            return Err(DecodeError::SubscriptionOptionsReserved);
        }
        let qos = QoS::from_u8(b & 0x03).ok_or(DecodeError::SubscriptionQos3)?;
        let retain_handling = match (b >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::RetainHandling3),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: b & 0x04 != 0,
            retain_as_published: b & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(&self, v: ProtocolVersion) -> u8 {
        let mut b = self.qos as u8;
        if v.is_v5() {
            b |= u8::from(self.no_local) << 2;
            b |= u8::from(self.retain_as_published) << 3;
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: NonZeroU16,
    pub properties: SubscribeProperties,
    /// At least one, in the order sent.
    pub filters: Vec<(MqttStr, SubscriptionOptions)>,
}

pub(crate) fn decode_subscribe(
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r.u16()?)?;
    let properties = if v.is_v5() {
        properties::decode(r)?
    } else {
        SubscribeProperties::default()
    };
    // Each entry takes at least three bytes of the frame, so this Vec is bounded by the input.
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = SubscriptionOptions::decode(r.u8()?, v)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::NoSubscribeFilters);
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

impl Encode for Subscribe {
    fn first_byte(&self) -> u8 {
        ((PacketType::Subscribe as u8) << 4) | 0b0010
    }

    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        s.u16(self.packet_id.get());
        if v.is_v5() {
            properties::encode(&self.properties, s);
        }
        for (filter, options) in &self.filters {
            s.string(filter);
            s.u8(options.encode(v));
        }
    }
}

/// A SUBACK packet: one reason code per filter of the SUBSCRIBE, in order. For 3.1 and 3.1.1
/// every failure code is sent as 0x80.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: NonZeroU16,
    pub properties: AckProperties,
    pub reasons: Vec<ReasonCode>,
}

pub(crate) fn decode_suback(r: &mut Reader, v: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r.u16()?)?;
    let properties = if v.is_v5() {
        properties::decode(r)?
    } else {
        AckProperties::default()
    };
    let mut reasons = Vec::new();
    while !r.is_empty() {
        let code = r.u8()?;
        let reason = if v.is_v5() {
            reason_for(PacketType::SubAck, code)?
        } else {
            ReasonCode::from_suback_v3(code)
                .ok_or(DecodeError::ReasonCodeNotAllowed(PacketType::SubAck))?
        };
        reasons.push(reason);
    }
    if reasons.is_empty() {
        return Err(DecodeError::NoReasonCodes(PacketType::SubAck));
    }
    Ok(SubAck {
        packet_id,
        properties,
        reasons,
    })
}

impl Encode for SubAck {
    fn first_byte(&self) -> u8 {
        (PacketType::SubAck as u8) << 4
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if v.is_v5()
            && !self
                .reasons
                .iter()
                .all(|r| r.allowed_in(PacketType::SubAck))
        {
            return Err(EncodeError::NotInVersion);
        }
        Ok(())
    }

    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        s.u16(self.packet_id.get());
        if v.is_v5() {
            properties::encode(&self.properties, s);
            for r in &self.reasons {
                s.u8(*r as u8);
            }
        } else {
            for r in &self.reasons {
                s.u8(r.to_suback_v3());
            }
        }
    }
}

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: NonZeroU16,
    pub properties: UnsubscribeProperties,
    /// At least one, in the order sent.
    pub filters: Vec<MqttStr>,
}

pub(crate) fn decode_unsubscribe(
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r.u16()?)?;
    let properties = if v.is_v5() {
        properties::decode(r)?
    } else {
        UnsubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::NoUnsubscribeFilters);
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

impl Encode for Unsubscribe {
    fn first_byte(&self) -> u8 {
        ((PacketType::Unsubscribe as u8) << 4) | 0b0010
    }

    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        s.u16(self.packet_id.get());
        if v.is_v5() {
            properties::encode(&self.properties, s);
        }
        for filter in &self.filters {
            s.string(filter);
        }
    }
}

/// An UNSUBACK packet. 3.1 and 3.1.1 carry neither properties nor reason codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: NonZeroU16,
    pub properties: AckProperties,
    pub reasons: Vec<ReasonCode>,
}

pub(crate) fn decode_unsuback(r: &mut Reader, v: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r.u16()?)?;
    let mut ack = UnsubAck {
        packet_id,
        properties: AckProperties::default(),
        reasons: Vec::new(),
    };
    if v.is_v5() {
        ack.properties = properties::decode(r)?;
        while !r.is_empty() {
            ack.reasons.push(reason_for(PacketType::UnsubAck, r.u8()?)?);
        }
        if ack.reasons.is_empty() {
            return Err(DecodeError::NoReasonCodes(PacketType::UnsubAck));
        }
    }
    Ok(ack)
}

impl Encode for UnsubAck {
    fn first_byte(&self) -> u8 {
        (PacketType::UnsubAck as u8) << 4
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if v.is_v5()
            && !self
                .reasons
                .iter()
                .all(|r| r.allowed_in(PacketType::UnsubAck))
        {
            return Err(EncodeError::NotInVersion);
        }
        Ok(())
    }

    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        s.u16(self.packet_id.get());
        if v.is_v5() {
            properties::encode(&self.properties, s);
            for r in &self.reasons {
                s.u8(*r as u8);
            }
        }
    }
}
