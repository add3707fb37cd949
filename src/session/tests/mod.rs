//! Tests of the session state machine as seen through the packets it pushes: `outbound`
//! (delivery, window, acks, aliases), `lifecycle` (queue, expiry, resume, hand-back) and
//! `inbound` (QoS 2, Receive Maximum, topic aliases); this file holds the shared helpers. Pure, like the session itself (which lives on a client's home shard).

mod inbound;
mod lifecycle;
mod outbound;

pub(super) use std::num::{NonZeroU16, NonZeroU32};
pub(super) use std::sync::Arc;

use bytes::Bytes;

pub(super) use super::*;
pub(super) use crate::protocol::{Ack, ProtocolVersion, Publish, PublishProperties, ReasonCode};

pub(super) fn pid(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

pub(super) fn msg_props(
    topic: &str,
    qos: QoS,
    payload: &str,
    props: PublishProperties,
) -> Arc<Message> {
    let p = Publish {
        qos,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(1)),
        properties: props,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..Default::default()
    };
    Arc::new(Message::from_publish(p, 1, 0, None))
}

pub(super) fn msg(qos: QoS, payload: &str) -> Arc<Message> {
    msg_props("t/1", qos, payload, PublishProperties::default())
}

pub(super) fn opts(qos: QoS) -> DeliveryOpts {
    DeliveryOpts {
        qos,
        ..Default::default()
    }
}

pub(super) fn v5(receive_maximum: u16) -> ClientLimits {
    ClientLimits {
        receive_maximum,
        ..ClientLimits::unlimited(ProtocolVersion::V5)
    }
}

pub(super) fn session(cfg: SessionConfig, client: ClientLimits) -> Session {
    Session::new(cfg, client)
}

/// A compact view of pushed packets: ("P", pid, dup, payload) for PUBLISH, ("REL", pid, ..).
pub(super) fn view(out: &mut Vec<Packet>) -> Vec<(&'static str, u16, bool, String)> {
    out.drain(..)
        .map(|p| match p {
            Packet::Publish(p) => (
                "P",
                p.packet_id.map_or(0, |i| i.get()),
                p.dup,
                String::from_utf8(p.payload.to_vec()).unwrap(),
            ),
            Packet::PubRel(a) => ("REL", a.packet_id.get(), false, format!("{:?}", a.reason)),
            Packet::PubComp(a) => ("COMP", a.packet_id.get(), false, format!("{:?}", a.reason)),
            Packet::PubRec(a) => ("REC", a.packet_id.get(), false, format!("{:?}", a.reason)),
            Packet::PubAck(a) => ("ACK", a.packet_id.get(), false, format!("{:?}", a.reason)),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

pub(super) fn p(id: u16, dup: bool, payload: &str) -> (&'static str, u16, bool, String) {
    ("P", id, dup, payload.to_string())
}
