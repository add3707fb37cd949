//! CONNECT (§3.1) and CONNACK (§3.2). Pure; used on the shard that accepted the connection.

use bytes::Bytes;

use super::codec::Encode;
use super::properties::{self, ConnAckProperties, ConnectProperties, WillProperties};
use super::wire::{MqttStr, Reader, Sink};
use super::{DecodeError, EncodeError, PacketType, ProtocolVersion, QoS, ReasonCode};

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol level; also selects the protocol name (`MQIsdp` for 3.1).
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.1, 3.1.1).
    pub clean_start: bool,
    pub keep_alive: u16,
    pub properties: ConnectProperties,
    pub client_id: MqttStr,
    pub will: Option<LastWill>,
    pub username: Option<MqttStr>,
    pub password: Option<Bytes>,
}

/// The will message carried by CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: MqttStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: WillProperties,
}

mod flag {
    pub const RESERVED: u8 = 0x01;
    pub const CLEAN_START: u8 = 0x02;
    pub const WILL: u8 = 0x04;
    pub const WILL_QOS_SHIFT: u8 = 3;
    pub const WILL_RETAIN: u8 = 0x20;
    pub const PASSWORD: u8 = 0x40;
    pub const USERNAME: u8 = 0x80;
}

/// Decodes a CONNECT body. `version` is set as soon as the protocol level is known, so that a
/// CONNECT failing later can still be answered in its client's protocol version.
pub(crate) fn decode_connect(
    header_flags: u8,
    r: &mut Reader,
    version: &mut Option<ProtocolVersion>,
) -> Result<Connect, DecodeError> {
    if header_flags != 0 {
        return Err(DecodeError::InvalidFlags(PacketType::Connect));
    }
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolVersion),
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    *version = Some(protocol);

    let flags = r.u8()?;
    if flags & flag::RESERVED != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let has_will = flags & flag::WILL != 0;
    let will_qos_bits = (flags >> flag::WILL_QOS_SHIFT) & 0x03;
    let will_retain = flags & flag::WILL_RETAIN != 0;
    let has_password = flags & flag::PASSWORD != 0;
    let has_username = flags & flag::USERNAME != 0;
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::WillQos3)?;
    if !has_will && (will_qos_bits != 0 || will_retain) {
        return Err(DecodeError::WillFlagsWithoutWill);
    }
    if !protocol.is_v5() && has_password && !has_username {
        return Err(DecodeError::PasswordWithoutUsername);
    }

    let keep_alive = r.u16()?;
    let properties = if protocol.is_v5() {
        properties::decode(r)?
    } else {
        ConnectProperties::default()
    };
    let client_id = r.string()?;
    let will = if has_will {
        let properties = if protocol.is_v5() {
            properties::decode(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.string()?;
        // The Will Topic is a Topic Name: non-empty and without wildcards.
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(DecodeError::InvalidWillTopic);
        }
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    r.finish()?;
    Ok(Connect {
        protocol,
        clean_start: flags & flag::CLEAN_START != 0,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

impl Encode for Connect {
    fn first_byte(&self) -> u8 {
        (PacketType::Connect as u8) << 4
    }

    fn body<S: Sink>(&self, _: ProtocolVersion, s: &mut S) {
        let v5 = self.protocol.is_v5();
        s.string(self.protocol.protocol_name());
        s.u8(self.protocol as u8);
        let mut flags = 0;
        if self.clean_start {
            flags |= flag::CLEAN_START;
        }
        if let Some(w) = &self.will {
            flags |= flag::WILL | ((w.qos as u8) << flag::WILL_QOS_SHIFT);
            if w.retain {
                flags |= flag::WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= flag::USERNAME;
        }
        if self.password.is_some() {
            flags |= flag::PASSWORD;
        }
        s.u8(flags);
        s.u16(self.keep_alive);
        if v5 {
            properties::encode(&self.properties, s);
        }
        s.string(&self.client_id);
        if let Some(w) = &self.will {
            if v5 {
                properties::encode(&w.properties, s);
            }
            s.string(&w.topic);
            s.binary(&w.payload);
        }
        if let Some(u) = &self.username {
            s.string(u);
        }
        if let Some(p) = &self.password {
            s.binary(p);
        }
    }
}

/// A CONNACK packet. For 3.1 and 3.1.1 the reason code is sent as the matching CONNACK return
/// code ([`ReasonCode::to_connack_v3`]); codes without one cannot be encoded for those levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Always false in MQTT 3.1, which has no such flag.
    pub session_present: bool,
    pub reason: ReasonCode,
    pub properties: ConnAckProperties,
}

pub(crate) fn decode_connack(r: &mut Reader, v: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    // 3.1 defines no flags in this byte ("reserved, not used"); later levels allow only bit 0.
    let session_present = match v {
        ProtocolVersion::V31 => false,
        _ if flags & 0xfe != 0 => return Err(DecodeError::ConnAckReservedFlags),
        _ => flags & 0x01 != 0,
    };
    let code = r.u8()?;
    let not_allowed = DecodeError::ReasonCodeNotAllowed(PacketType::ConnAck);
    let (reason, properties) = if v.is_v5() {
        let reason = ReasonCode::from_u8(code)
            .filter(|c| c.allowed_in(PacketType::ConnAck))
            .ok_or(not_allowed)?;
        (reason, properties::decode(r)?)
    } else {
        let reason = ReasonCode::from_connack_v3(code).ok_or(not_allowed)?;
        (reason, ConnAckProperties::default())
    };
    // [MQTT-3.2.2-6] (5.0), [MQTT-3.2.2-4] (3.1.1): a refusal never has a session.
    if session_present && reason != ReasonCode::Success {
        return Err(DecodeError::SessionPresentWithError);
    }
    Ok(ConnAck {
        session_present,
        reason,
        properties,
    })
}

impl Encode for ConnAck {
    fn first_byte(&self) -> u8 {
        (PacketType::ConnAck as u8) << 4
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        let representable = if v.is_v5() {
            self.reason.allowed_in(PacketType::ConnAck)
        } else {
            self.reason.to_connack_v3().is_some()
        };
        if !representable {
            return Err(EncodeError::NotInVersion);
        }
        Ok(())
    }

    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        s.u8(u8::from(self.session_present && v != ProtocolVersion::V31));
        if v.is_v5() {
            s.u8(self.reason as u8);
            properties::encode(&self.properties, s);
        } else {
            s.u8(self.reason.to_connack_v3().unwrap_or(3));
        }
    }
}
