//! The hot path on the wire: PUBLISH encoded from a per-publisher template straight into a
//! write buffer (no `Packet`, no allocation per message), PUBLISH and acknowledgements read in
//! place from the read buffer, and the payload header every message carries. Everything else
//! (CONNECT, SUBSCRIBE, CONNACK, SUBACK, ...) goes through `ringmq::protocol`; the tests check
//! that both agree byte for byte.
//!
//! Payload header, little-endian, 16 bytes: publisher index (u32), sequence number (u32, from 0
//! per publisher), send time (u64 ns of the generator's clock); the rest of the payload is zeros.

use ringmq::protocol::wire::{Varint, read_varint, varint_len};
use ringmq::protocol::{ProtocolVersion, QoS};

pub const HEADER_LEN: usize = 16;

/// Fixed-header first bytes of the acknowledgements.
pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;

/// Appends a 4-byte acknowledgement (reason Success is implied in 5.0 when omitted).
#[inline]
pub fn put_ack(out: &mut Vec<u8>, first: u8, packet_id: u16) {
    let id = packet_id.to_be_bytes();
    out.extend_from_slice(&[first, 2, id[0], id[1]]);
}

/// Everything of one publisher's PUBLISH but the packet id and the payload header.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    prefix: Box<[u8]>,
    /// Where the packet id goes (QoS 1 and 2).
    pid_at: Option<usize>,
    /// Payload bytes after the header.
    pad: usize,
}

impl PublishTemplate {
    pub fn new(
        topic: &str,
        qos: QoS,
        retain: bool,
        version: ProtocolVersion,
        size: usize,
    ) -> Result<Self, String> {
        if size < HEADER_LEN {
            return Err(format!(
                "payload size {size} is below the {HEADER_LEN}-byte header"
            ));
        }
        if topic.len() > u16::MAX as usize {
            return Err("topic longer than 65,535 bytes".into());
        }
        let has_pid = qos != QoS::AtMostOnce;
        let remaining = 2 + topic.len() + 2 * has_pid as usize + version.is_v5() as usize + size;
        if remaining > ringmq::protocol::wire::VARINT_MAX as usize {
            return Err("PUBLISH larger than MQTT allows".into());
        }
        let mut p = Vec::with_capacity(8 + topic.len());
        p.push(0x30 | ((qos as u8) << 1) | retain as u8);
        let mut rl = remaining as u32;
        loop {
            let mut b = (rl % 128) as u8;
            rl /= 128;
            if rl > 0 {
                b |= 0x80;
            }
            p.push(b);
            if rl == 0 {
                break;
            }
        }
        debug_assert_eq!(p.len(), 1 + varint_len(remaining as u32));
        p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        p.extend_from_slice(topic.as_bytes());
        let pid_at = has_pid.then(|| {
            p.extend_from_slice(&[0, 0]);
            p.len() - 2
        });
        if version.is_v5() {
            p.push(0); // no properties
        }
        Ok(PublishTemplate {
            prefix: p.into_boxed_slice(),
            pid_at,
            pad: size - HEADER_LEN,
        })
    }

    /// Bytes of one encoded PUBLISH.
    pub fn len(&self) -> usize {
        self.prefix.len() + HEADER_LEN + self.pad
    }

    /// Appends one PUBLISH (`packet_id` ignored for QoS 0).
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>, packet_id: u16, publisher: u32, seq: u32, ts: u64) {
        let start = out.len();
        out.extend_from_slice(&self.prefix);
        if let Some(at) = self.pid_at {
            out[start + at..start + at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&publisher.to_le_bytes());
        h[4..8].copy_from_slice(&seq.to_le_bytes());
        h[8..16].copy_from_slice(&ts.to_le_bytes());
        out.extend_from_slice(&h);
        if self.pad > 0 {
            out.resize(out.len() + self.pad, 0);
        }
    }
}

/// What the hot path needs of a received PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishView<'a> {
    pub qos: u8,
    pub packet_id: u16,
    pub payload: &'a [u8],
}

/// Reads a PUBLISH body in place (`flags` from the fixed header). `None` if malformed.
#[inline]
pub fn parse_publish(flags: u8, body: &[u8], v5: bool) -> Option<PublishView<'_>> {
    let qos = (flags >> 1) & 3;
    if qos == 3 || body.len() < 2 {
        return None;
    }
    let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2 + tlen;
    let mut packet_id = 0;
    if qos > 0 {
        let id = body.get(at..at + 2)?;
        packet_id = u16::from_be_bytes([id[0], id[1]]);
        if packet_id == 0 {
            return None;
        }
        at += 2;
    }
    if v5 {
        match read_varint(body.get(at..)?) {
            Ok(Varint::Value(len, n)) => at += n + len as usize,
            _ => return None,
        }
    }
    Some(PublishView {
        qos,
        packet_id,
        payload: body.get(at..)?,
    })
}

/// Publisher index, sequence number and send time from a payload, if it has a header.
#[inline]
pub fn parse_header(payload: &[u8]) -> Option<(u32, u32, u64)> {
    let h: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
    Some((
        u32::from_le_bytes(h[0..4].try_into().ok()?),
        u32::from_le_bytes(h[4..8].try_into().ok()?),
        u64::from_le_bytes(h[8..16].try_into().ok()?),
    ))
}

/// Packet id and (5.0) reason code of a PUBACK / PUBREC / PUBREL / PUBCOMP body.
#[inline]
pub fn parse_ack(body: &[u8]) -> Option<(u16, u8)> {
    let id = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    Some((id, body.get(2).copied().unwrap_or(0)))
}

/// The packet id used for a publisher's `n`-th QoS 1/2 message (acknowledgements come back in
/// order, so at most 65,535 in flight never reuse one).
#[inline]
pub fn packet_id_for(n: u64) -> u16 {
    (n % 65_535) as u16 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use ringmq::protocol::{Ack, Decoder, MqttStr, Packet, Publish};
    use std::num::NonZeroU16;

    fn library_encoding(
        topic: &str,
        qos: QoS,
        v: ProtocolVersion,
        payload: &[u8],
        pid: u16,
    ) -> Vec<u8> {
        let p = Publish {
            qos,
            topic: MqttStr::from(topic),
            packet_id: if qos == QoS::AtMostOnce {
                None
            } else {
                NonZeroU16::new(pid)
            },
            payload: Bytes::copy_from_slice(payload),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        Packet::Publish(p).encode(v, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn template_matches_the_library_encoder() {
        for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for size in [16, 17, 200, 20_000] {
                    let t = PublishTemplate::new("bench/fanin/12", qos, false, v, size).unwrap();
                    let mut out = vec![9u8]; // appends after what is there
                    t.encode(&mut out, 513, 7, 42, 0x0102_0304_0506_0708);
                    let mut payload = vec![0u8; size];
                    payload[0..4].copy_from_slice(&7u32.to_le_bytes());
                    payload[4..8].copy_from_slice(&42u32.to_le_bytes());
                    payload[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
                    let want = library_encoding("bench/fanin/12", qos, v, &payload, 513);
                    assert_eq!(&out[1..], &want[..], "{v:?} {qos:?} {size}");
                    assert_eq!(t.len(), want.len());
                }
            }
        }
    }

    #[test]
    fn small_payloads_are_refused() {
        assert!(
            PublishTemplate::new("t", QoS::AtMostOnce, false, ProtocolVersion::V311, 15).is_err()
        );
    }

    #[test]
    fn parses_what_the_library_encodes() {
        for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                let mut p = Publish {
                    qos,
                    topic: MqttStr::from("a/b"),
                    packet_id: if qos == QoS::AtMostOnce {
                        None
                    } else {
                        NonZeroU16::new(77)
                    },
                    payload: Bytes::from_static(b"0123456789abcdefXYZ"),
                    ..Default::default()
                };
                if v.is_v5() {
                    p.properties.message_expiry_interval = Some(60);
                }
                let mut buf = BytesMut::new();
                Packet::Publish(p).encode(v, &mut buf).unwrap();
                let h = ringmq::protocol::parse_frame_header(&buf, u32::MAX)
                    .unwrap()
                    .unwrap();
                let view = parse_publish(h.flags, &buf[h.header_len..], v.is_v5()).unwrap();
                assert_eq!(view.qos, qos as u8);
                assert_eq!(view.packet_id, if qos == QoS::AtMostOnce { 0 } else { 77 });
                assert_eq!(view.payload, b"0123456789abcdefXYZ");
                let (p, s, t) = parse_header(view.payload).unwrap();
                assert_eq!(p, u32::from_le_bytes(*b"0123"));
                assert_eq!(s, u32::from_le_bytes(*b"4567"));
                assert_eq!(t, u64::from_le_bytes(*b"89abcdef"));
            }
        }
        assert_eq!(parse_header(b"short"), None);
        assert_eq!(parse_publish(0x06, b"\0\x01a", false), None);
    }

    #[test]
    fn acks_match_the_library() {
        let id = NonZeroU16::new(300).unwrap();
        for (first, packet) in [
            (PUBACK, Packet::PubAck(Ack::new(id))),
            (PUBREC, Packet::PubRec(Ack::new(id))),
            (PUBREL, Packet::PubRel(Ack::new(id))),
            (PUBCOMP, Packet::PubComp(Ack::new(id))),
        ] {
            for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
                let mut mine = Vec::new();
                put_ack(&mut mine, first, 300);
                let mut theirs = BytesMut::new();
                packet.encode(v, &mut theirs).unwrap();
                assert_eq!(mine, theirs.to_vec());
                let mut b = BytesMut::from(&mine[..]);
                assert_eq!(
                    Decoder::with_version(v, 1 << 20).decode(&mut b).unwrap(),
                    Some(packet.clone())
                );
            }
        }
        assert_eq!(parse_ack(&[1, 44]), Some((300, 0)));
        assert_eq!(parse_ack(&[1, 44, 0x10, 0]), Some((300, 0x10)));
    }

    #[test]
    fn packet_ids_cycle_without_zero() {
        assert_eq!(packet_id_for(0), 1);
        assert_eq!(packet_id_for(65_534), 65_535);
        assert_eq!(packet_id_for(65_535), 1);
    }
}
