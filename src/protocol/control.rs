//! DISCONNECT (§3.14) and AUTH (§3.15, 5.0 only). PINGREQ and PINGRESP have no body and are
//! handled by the codec directly. Pure; used on the connection's home shard.

use super::codec::Encode;
use super::properties::{self, AuthProperties, DisconnectProperties};
use super::publish::reason_for;
use super::wire::{Reader, Sink};
use super::{DecodeError, EncodeError, PacketType, ProtocolVersion, ReasonCode};

/// A DISCONNECT packet. 3.1 and 3.1.1 carry neither reason code nor properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: DisconnectProperties,
}

impl Disconnect {
    pub fn new(reason: ReasonCode) -> Self {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }
}

/// Remaining Length 0 means Normal disconnection / Success; 1 means no properties (§3.14.2.1).
fn reason_and_props<P: properties::PropertySet>(
    kind: PacketType,
    r: &mut Reader,
) -> Result<(ReasonCode, P), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, P::default()));
    }
    let reason = reason_for(kind, r.u8()?)?;
    let props = if r.is_empty() {
        P::default()
    } else {
        properties::decode(r)?
    };
    Ok((reason, props))
}

pub(crate) fn decode_disconnect(
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Disconnect, DecodeError> {
    if !v.is_v5() {
        return Ok(Disconnect::default());
    }
    let (reason, properties) = reason_and_props(PacketType::Disconnect, r)?;
    Ok(Disconnect { reason, properties })
}

/// Writes the shortest form of a reason code and properties.
fn put_reason_and_props<S: Sink, P: properties::PropertySet>(
    s: &mut S,
    reason: ReasonCode,
    props: &P,
    props_empty: bool,
) {
    if reason != ReasonCode::Success || !props_empty {
        s.u8(reason as u8);
    }
    if !props_empty {
        properties::encode(props, s);
    }
}

impl Encode for Disconnect {
    fn first_byte(&self) -> u8 {
        (PacketType::Disconnect as u8) << 4
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if v.is_v5() && !self.reason.allowed_in(PacketType::Disconnect) {
            return Err(EncodeError::NotInVersion);
        }
        Ok(())
    }

    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S) {
        if v.is_v5() {
            put_reason_and_props(s, self.reason, &self.properties, self.properties.is_empty());
        }
    }
}

/// An AUTH packet (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: AuthProperties,
}

pub(crate) fn decode_auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    if r.is_empty() {
        // Remaining Length 0: Success without properties (§3.15.2.1).
        return Ok(Auth::default());
    }
    let (reason, properties) = reason_and_props::<AuthProperties>(PacketType::Auth, r)?;
    if properties.authentication_method.is_none() {
        return Err(DecodeError::AuthenticationMethodMissing);
    }
    Ok(Auth { reason, properties })
}

impl Encode for Auth {
    fn first_byte(&self) -> u8 {
        (PacketType::Auth as u8) << 4
    }

    fn check(&self, v: ProtocolVersion) -> Result<(), EncodeError> {
        if !v.is_v5() || !self.reason.allowed_in(PacketType::Auth) {
            return Err(EncodeError::NotInVersion);
        }
        Ok(())
    }

    fn body<S: Sink>(&self, _: ProtocolVersion, s: &mut S) {
        put_reason_and_props(s, self.reason, &self.properties, self.properties.is_empty());
    }
}
