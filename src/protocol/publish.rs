//! PUBLISH (§3.3) and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4–§3.7).
//! Pure; used on the publisher's and the subscribers' shards.

use std::num::NonZeroU16;

use bytes::Bytes;

use super::codec::Encode;
use super::properties::{self, AckProperties, PublishProperties};
use super::wire::{FIELD_LEN_MAX, MqttStr, Reader, Sink, varint_len};
use super::{DecodeError, EncodeError, PacketType, ProtocolVersion, QoS, ReasonCode, packet_id};

/// A PUBLISH packet. `packet_id` is present exactly when `qos` is 1 or 2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in 5.0 when a Topic Alias stands for it.
    pub topic: MqttStr,
    pub packet_id: Option<NonZeroU16>,
    pub properties: PublishProperties,
    pub payload: Bytes,
}

#[inline]
pub(crate) fn decode_publish(
    flags: u8,
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::PublishQos3)?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQos0);
    }
    let topic = r.topic_name()?;
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => Some(packet_id(r.u16()?)?),
    };
    let properties = if v.is_v5() {
        properties::decode::<PublishProperties>(r)?
    } else {
        PublishProperties::default()
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::EmptyTopicName);
    }
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

impl Encode for Publish {
    fn first_byte(&self) -> u8 {
        ((PacketType::Publish as u8) << 4)
            | (u8::from(self.dup) << 3)
            | ((self.qos as u8) << 1)
            | u8::from(self.retain)
    }

    fn check(&self, _: ProtocolVersion) -> Result<(), EncodeError> {
        if (self.qos == QoS::AtMostOnce) != self.packet_id.is_none() {
            return Err(EncodeError::PacketIdMismatch);
        }
        Ok(())
    }

    #[inline]
    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        s.string(&self.topic);
        if let Some(id) = self.packet_id {
            s.u16(id.get());
        }
        if v.is_v5() {
            let (len, _) = self.properties.wire_len();
            s.varint(len as u32);
            self.properties.visit_into(s);
        }
        s.raw(&self.payload);
    }

    /// Computed from the field lengths, without a sizing pass over the body (the variable-size
    /// properties, when present, are still sized by a pass over themselves).
    #[inline]
    fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.topic.len() > FIELD_LEN_MAX {
            return Err(EncodeError::FieldTooLong);
        }
        let mut len = 2 + self.topic.len() + self.payload.len();
        if self.packet_id.is_some() {
            len += 2;
        }
        if v.is_v5() {
            let (props, too_long) = self.properties.wire_len();
            if too_long {
                return Err(EncodeError::FieldTooLong);
            }
            len += varint_len(u32::try_from(props).unwrap_or(u32::MAX)) + props;
        }
        Ok(len)
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: which one is given by the [`super::Packet`] variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: NonZeroU16,
    /// Always Success for 3.1 and 3.1.1, which have no reason code here.
    pub reason: ReasonCode,
    pub properties: AckProperties,
}

impl Ack {
    pub fn new(packet_id: NonZeroU16) -> Self {
        Ack {
            packet_id,
            reason: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }

    pub fn with_reason(packet_id: NonZeroU16, reason: ReasonCode) -> Self {
        Ack {
            reason,
            ..Ack::new(packet_id)
        }
    }
}

/// Decodes an acknowledgement of type `kind`. In 5.0 the reason code and properties may be
/// omitted (Remaining Length 2 or 3, §3.4.2.1).
pub(crate) fn decode_ack(
    kind: PacketType,
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Ack, DecodeError> {
    let mut ack = Ack::new(packet_id(r.u16()?)?);
    if v.is_v5() && !r.is_empty() {
        ack.reason = reason_for(kind, r.u8()?)?;
        if !r.is_empty() {
            ack.properties = properties::decode(r)?;
        }
    }
    Ok(ack)
}

/// A reason code byte that must be one of `kind`'s codes.
pub(crate) fn reason_for(kind: PacketType, code: u8) -> Result<ReasonCode, DecodeError> {
    ReasonCode::from_u8(code)
        .filter(|c| c.allowed_in(kind))
        .ok_or(DecodeError::ReasonCodeNotAllowed(kind))
}

/// An acknowledgement together with its packet type, for encoding.
pub(crate) struct Typed<'a>(pub PacketType, pub &'a Ack);

impl Encode for Typed<'_> {
    fn first_byte(&self) -> u8 {
        let flags = if self.0 == PacketType::PubRel {
            0b0010
        } else {
            0
        };
        ((self.0 as u8) << 4) | flags
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if v.is_v5() && !self.1.reason.allowed_in(self.0) {
            return Err(EncodeError::NotInVersion);
        }
        Ok(())
    }

    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        let ack = self.1;
        s.u16(ack.packet_id.get());
        if !v.is_v5() {
            return;
        }
        // The shortest form that carries everything (§3.4.2.1).
        let has_props = !ack.properties.is_empty();
        if ack.reason != ReasonCode::Success || has_props {
            s.u8(ack.reason as u8);
        }
        if has_props {
            properties::encode(&ack.properties, s);
        }
    }
}
