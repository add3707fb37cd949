//! The fixed header, the incremental decoder and the encoder entry points. The size limit is
//! checked from the fixed header alone, before the caller buffers the rest of the packet.
//! Pure; one `Decoder` per connection on the connection's shard.

use bytes::{Buf, BytesMut};

use super::wire::{Reader, Sink, Sizer, VARINT_MAX, Varint, read_varint, varint_len};
use super::{
    DecodeError, EncodeError, Packet, PacketType, ProtocolVersion, connect, control, publish,
    subscribe,
};

/// A parsed fixed header: the first byte, how long the header is and how much follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub packet_type: PacketType,
    pub flags: u8,
    pub header_len: usize,
    pub remaining_len: usize,
}

impl FrameHeader {
    /// Bytes of the whole packet, fixed header included (what Maximum Packet Size counts).
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Parses the fixed header at the front of `buf` once it is complete (`Ok(None)` before), and
/// rejects a packet whose total size would exceed `max_packet_size` before any of its body
/// needs to be buffered.
#[inline]
pub fn parse_frame_header(
    buf: &[u8],
    max_packet_size: u32,
) -> Result<Option<FrameHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = PacketType::from_u8(first >> 4).ok_or(DecodeError::ReservedPacketType)?;
    let (remaining, n) = match read_varint(&buf[1..])? {
        Varint::Value(v, n) => (v as usize, n),
        Varint::Incomplete => return Ok(None),
    };
    let header = FrameHeader {
        packet_type,
        flags: first & 0x0f,
        header_len: 1 + n,
        remaining_len: remaining,
    };
    if header.total_len() > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge);
    }
    Ok(Some(header))
}

/// The fixed-header flags each packet type must carry ([MQTT-2.2.2-1]); PUBLISH flags are
/// checked by the PUBLISH decoder. MQTT 3.1 clients may set DUP on PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE retries, so those are not checked for level 3.
fn check_flags(h: &FrameHeader, version: ProtocolVersion) -> Result<(), DecodeError> {
    let expected = match h.packet_type {
        PacketType::Publish => return Ok(()),
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            if version == ProtocolVersion::V31 {
                return Ok(());
            }
            0b0010
        }
        _ => 0,
    };
    if h.flags != expected {
        return Err(DecodeError::InvalidFlags(h.packet_type));
    }
    Ok(())
}

/// Incremental decoder for one connection. A server-side decoder starts without a protocol
/// version and learns it from CONNECT; a client-side one is given it.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_packet_size: u32,
    version: Option<ProtocolVersion>,
}

impl Decoder {
    /// A server-side decoder: the first packet must be CONNECT.
    pub fn new(max_packet_size: u32) -> Self {
        Decoder {
            max_packet_size,
            version: None,
        }
    }

    /// A decoder for a connection whose protocol level is already known (client side).
    pub fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Decoder {
            max_packet_size,
            version: Some(version),
        }
    }

    /// The connection's protocol level, known once CONNECT's level byte was read (even when the
    /// rest of that CONNECT turned out to be invalid, so the error can be answered in kind).
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    pub fn set_max_packet_size(&mut self, max_packet_size: u32) {
        self.max_packet_size = max_packet_size;
    }

    /// Decodes one packet from the front of `src`. `Ok(None)` means more bytes are needed
    /// ([`Decoder::bytes_needed`] says how many at least); nothing is consumed until a whole
    /// packet is present. Payloads and strings are zero-copy slices of `src`'s buffer.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(h) = parse_frame_header(src, self.max_packet_size)? else {
            return Ok(None);
        };
        if src.len() < h.total_len() {
            return Ok(None);
        }
        let version = match (self.version, h.packet_type) {
            (None, PacketType::Connect) => None,
            (None, _) => return Err(DecodeError::FirstPacketNotConnect),
            (Some(_), PacketType::Connect) => return Err(DecodeError::SecondConnect),
            (Some(v), _) => Some(v),
        };
        if h.remaining_len == 2
            && let Some(packet) = short_ack(&h, src, version)?
        {
            return Ok(Some(packet));
        }
        src.advance(h.header_len);
        let body = src.split_to(h.remaining_len).freeze();
        let mut r = Reader::new(body);
        let Some(version) = version else {
            let c = connect::decode_connect(h.flags, &mut r, &mut self.version)?;
            return Ok(Some(Packet::Connect(Box::new(c))));
        };
        check_flags(&h, version)?;
        decode_body(&h, &mut r, version).map(Some)
    }

    /// How many bytes `src` must hold before [`Decoder::decode`] can make progress: the whole
    /// packet once the fixed header is known, otherwise one more byte. Never more than the
    /// maximum packet size, so a caller may reserve this much without trusting the peer.
    pub fn bytes_needed(&self, src: &[u8]) -> usize {
        match parse_frame_header(src, self.max_packet_size) {
            Ok(Some(h)) => h.total_len(),
            _ => src.len() + 1,
        }
    }
}

/// A PUBACK, PUBREC, PUBREL or PUBCOMP of two bytes (the packet id; in v5 reason 0x00 without
/// properties, which may be left out), decoded in place: the most frequent packets a QoS 1/2
/// subscriber sends (1.5 M a second to one shard in a fan-out), not worth splitting a body off
/// the read buffer for. The same checks, in the same order, as the general path.
#[inline]
fn short_ack(
    h: &FrameHeader,
    src: &mut BytesMut,
    version: Option<ProtocolVersion>,
) -> Result<Option<Packet>, DecodeError> {
    use PacketType::*;
    let (Some(version), PubAck | PubRec | PubRel | PubComp) = (version, h.packet_type) else {
        return Ok(None);
    };
    check_flags(h, version)?;
    let at = h.header_len;
    let id = super::packet_id(u16::from_be_bytes([src[at], src[at + 1]]))?;
    src.advance(at + 2);
    let ack = super::Ack::new(id);
    Ok(Some(match h.packet_type {
        PubAck => Packet::PubAck(ack),
        PubRec => Packet::PubRec(ack),
        PubRel => Packet::PubRel(ack),
        _ => Packet::PubComp(ack),
    }))
}

/// Inlined into [`Decoder::decode`] so the packet is built in the caller's result slot
/// instead of being moved through each layer's `Result`.
#[inline]
fn decode_body(h: &FrameHeader, r: &mut Reader, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    use PacketType::*;
    let packet = match h.packet_type {
        Connect => return Err(DecodeError::SecondConnect),
        ConnAck => Packet::ConnAck(Box::new(connect::decode_connack(r, v)?)),
        Publish => Packet::Publish(publish::decode_publish(h.flags, r, v)?),
        PubAck => Packet::PubAck(publish::decode_ack(PubAck, r, v)?),
        PubRec => Packet::PubRec(publish::decode_ack(PubRec, r, v)?),
        PubRel => Packet::PubRel(publish::decode_ack(PubRel, r, v)?),
        PubComp => Packet::PubComp(publish::decode_ack(PubComp, r, v)?),
        Subscribe => Packet::Subscribe(subscribe::decode_subscribe(r, v)?),
        SubAck => Packet::SubAck(subscribe::decode_suback(r, v)?),
        Unsubscribe => Packet::Unsubscribe(subscribe::decode_unsubscribe(r, v)?),
        UnsubAck => Packet::UnsubAck(subscribe::decode_unsuback(r, v)?),
        PingReq => Packet::PingReq,
        PingResp => Packet::PingResp,
        Disconnect => Packet::Disconnect(control::decode_disconnect(r, v)?),
        Auth if v.is_v5() => Packet::Auth(control::decode_auth(r)?),
        Auth => return Err(DecodeError::ReservedPacketType),
    };
    r.finish()?;
    Ok(packet)
}

/// A packet that can describe its encoding: the first byte, and the variable header and payload
/// written to any [`Sink`]. Run against a [`Sizer`] it gives the exact length.
pub(crate) trait Encode {
    fn first_byte(&self) -> u8;
    /// Checks what the types cannot express (e.g. a packet identifier matching the QoS).
    fn check(&self, _v: ProtocolVersion) -> Result<(), EncodeError> {
        Ok(())
    }
    fn body<S: Sink>(&self, v: ProtocolVersion, s: &mut S);
    /// Length of [`Encode::body`], or [`EncodeError::FieldTooLong`]. By default a [`Sizer`] pass
    /// over `body`; a hot packet may compute it directly (it must agree with `body`).
    fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut sizer = Sizer::default();
        self.body(v, &mut sizer);
        if sizer.too_long_field {
            return Err(EncodeError::FieldTooLong);
        }
        Ok(sizer.len)
    }
}

/// Remaining Length of `p`, after checking that it can be encoded.
#[inline]
pub(crate) fn remaining_len<P: Encode>(p: &P, v: ProtocolVersion) -> Result<usize, EncodeError> {
    p.check(v)?;
    let len = p.body_len(v)?;
    if len > VARINT_MAX as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    Ok(len)
}

pub(crate) fn encoded_len_of<P: Encode>(p: &P, v: ProtocolVersion) -> Result<usize, EncodeError> {
    let rl = remaining_len(p, v)?;
    Ok(1 + varint_len(rl as u32) + rl)
}

#[inline]
pub(crate) fn encode_into<P: Encode>(
    p: &P,
    v: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let rl = remaining_len(p, v)?;
    let total = 1 + varint_len(rl as u32) + rl;
    dst.reserve(total);
    let start = dst.len();
    dst.u8(p.first_byte());
    dst.varint(rl as u32);
    p.body(v, dst);
    debug_assert_eq!(dst.len() - start, total, "sizer and writer disagree");
    Ok(total)
}

/// A packet with no variable header or payload.
struct Empty(PacketType);

impl Encode for Empty {
    fn first_byte(&self) -> u8 {
        (self.0 as u8) << 4
    }
    fn body<S: Sink>(&self, _: ProtocolVersion, _: &mut S) {}
}

macro_rules! with_encodable {
    ($packet:expr, $p:ident => $e:expr) => {
        match $packet {
            Packet::Connect(c) => {
                let $p = &**c;
                $e
            }
            Packet::ConnAck(c) => {
                let $p = &**c;
                $e
            }
            Packet::Publish($p) => $e,
            Packet::PubAck(a) => {
                let $p = &publish::Typed(PacketType::PubAck, a);
                $e
            }
            Packet::PubRec(a) => {
                let $p = &publish::Typed(PacketType::PubRec, a);
                $e
            }
            Packet::PubRel(a) => {
                let $p = &publish::Typed(PacketType::PubRel, a);
                $e
            }
            Packet::PubComp(a) => {
                let $p = &publish::Typed(PacketType::PubComp, a);
                $e
            }
            Packet::Subscribe($p) => $e,
            Packet::SubAck($p) => $e,
            Packet::Unsubscribe($p) => $e,
            Packet::UnsubAck($p) => $e,
            Packet::PingReq => {
                let $p = &Empty(PacketType::PingReq);
                $e
            }
            Packet::PingResp => {
                let $p = &Empty(PacketType::PingResp);
                $e
            }
            Packet::Disconnect($p) => $e,
            Packet::Auth($p) => $e,
        }
    };
}

impl Packet {
    /// Exact number of bytes [`Packet::encode`] would write for protocol level `v`, without
    /// encoding (used to honour a peer's Maximum Packet Size). CONNECT uses its own level.
    pub fn encoded_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        with_encodable!(self, p => encoded_len_of(p, v))
    }

    /// Appends the packet, encoded for protocol level `v`, to `dst`; returns the bytes written.
    /// Properties are dropped for levels below 5. CONNECT uses its own level.
    pub fn encode(&self, v: ProtocolVersion, dst: &mut BytesMut) -> Result<usize, EncodeError> {
        with_encodable!(self, p => encode_into(p, v, dst))
    }
}
