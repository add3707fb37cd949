//! Byte-exact fixtures per packet type (the examples the MQTT 3.1.1 and 5.0 specs show, completed
//! into whole packets) and one raw-byte case per rejection the codec makes.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use ringmq::protocol::*;

const MAX: u32 = 1 << 20;
const V31: ProtocolVersion = ProtocolVersion::V31;
const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn pid(v: u16) -> NonZeroU16 {
    NonZeroU16::new(v).unwrap()
}

fn s(v: &str) -> MqttStr {
    MqttStr::from(v)
}

/// Decodes `wire` in the context of `v` (a fresh server-side decoder for CONNECT) and checks that
/// it gives `packet`, and that encoding `packet` gives back exactly `wire`.
fn fixture(v: ProtocolVersion, wire: &[u8], packet: Packet) {
    let mut dec = match packet {
        Packet::Connect(_) => Decoder::new(MAX),
        _ => Decoder::with_version(v, MAX),
    };
    let mut buf = BytesMut::from(wire);
    let got = dec.decode(&mut buf).expect("decodes").expect("complete");
    assert_eq!(got, packet, "decoding {wire:02x?}");
    assert!(buf.is_empty(), "consumed the whole packet");
    let mut out = BytesMut::new();
    let n = packet.encode(v, &mut out).expect("encodes");
    assert_eq!(&out[..], wire, "encoding {packet:?}");
    assert_eq!(n, wire.len());
    assert_eq!(packet.encoded_len(v), Ok(wire.len()));
}

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 10,
        properties: ConnectProperties::default(),
        client_id: s("c1"),
        will: None,
        username: None,
        password: None,
    }
}

#[test]
fn connect_fixtures() {
    // 3.1.1 §3.1.2.10 example flags 0xCE: user name, password, will QoS 1, will, clean session.
    let mut c = connect(V311);
    c.will = Some(LastWill {
        topic: s("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"p"));
    #[rustfmt::skip]
    let wire = [
        0x10, 0x1e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xce, 0x00, 0x0a,
        0x00, 0x02, b'c', b'1', 0x00, 0x03, b'w', b'/', b't', 0x00, 0x03, b'b', b'y', b'e',
        0x00, 0x01, b'u', 0x00, 0x01, b'p',
    ];
    fixture(V311, &wire, Packet::Connect(Box::new(c)));

    // 5.0 §3.1.2.11 example: Keep Alive 10, Session Expiry Interval 10.
    let mut c = connect(V5);
    c.properties.session_expiry_interval = Some(10);
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"p"));
    #[rustfmt::skip]
    let wire = [
        0x10, 0x1a, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xc2, 0x00, 0x0a,
        0x05, 0x11, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x02, b'c', b'1',
        0x00, 0x01, b'u', 0x00, 0x01, b'p',
    ];
    fixture(V5, &wire, Packet::Connect(Box::new(c)));

    // 3.1: protocol name MQIsdp, level 3, keep alive 60.
    let mut c = connect(V31);
    c.keep_alive = 60;
    #[rustfmt::skip]
    let wire = [
        0x10, 0x10, 0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3c,
        0x00, 0x02, b'c', b'1',
    ];
    fixture(V31, &wire, Packet::Connect(Box::new(c)));

    // 5.0 with a will carrying properties, and a password without a user name (allowed in 5.0).
    let mut c = connect(V5);
    c.clean_start = false;
    c.will = Some(LastWill {
        topic: s("w"),
        payload: Bytes::new(),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval: Some(5),
            ..WillProperties::default()
        },
    });
    c.password = Some(Bytes::from_static(b"p"));
    #[rustfmt::skip]
    let wire = [
        0x10, 0x1d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x74, 0x00, 0x0a, 0x00,
        0x00, 0x02, b'c', b'1', 0x05, 0x18, 0x00, 0x00, 0x00, 0x05, 0x00, 0x01, b'w', 0x00, 0x00,
        0x00, 0x01, b'p',
    ];
    fixture(V5, &wire, Packet::Connect(Box::new(c)));
}

#[test]
fn connack_fixtures() {
    let ok = |session_present| ConnAck {
        session_present,
        reason: ReasonCode::Success,
        properties: ConnAckProperties::default(),
    };
    fixture(
        V311,
        &[0x20, 0x02, 0x01, 0x00],
        Packet::ConnAck(Box::new(ok(true))),
    );
    fixture(
        V31,
        &[0x20, 0x02, 0x00, 0x00],
        Packet::ConnAck(Box::new(ok(false))),
    );
    let refused = ConnAck {
        reason: ReasonCode::NotAuthorized,
        ..ok(false)
    };
    fixture(
        V311,
        &[0x20, 0x02, 0x00, 0x05],
        Packet::ConnAck(Box::new(refused)),
    );
    fixture(
        V5,
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        Packet::ConnAck(Box::new(ok(false))),
    );
    let mut assigned = ok(false);
    assigned.properties.assigned_client_identifier = Some(s("x"));
    fixture(
        V5,
        &[0x20, 0x07, 0x00, 0x00, 0x04, 0x12, 0x00, 0x01, b'x'],
        Packet::ConnAck(Box::new(assigned)),
    );
    // A v5-only reason code cannot be sent to a 3.1.1 client.
    let busy = Packet::ConnAck(Box::new(ConnAck {
        reason: ReasonCode::PacketTooLarge,
        ..ok(false)
    }));
    assert_eq!(
        busy.encode(V311, &mut BytesMut::new()),
        Err(EncodeError::NotInVersion)
    );
}

fn publish(qos: QoS, id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: s("a/b"),
        packet_id: id.map(pid),
        properties: PublishProperties::default(),
        payload: Bytes::from_static(b"hi"),
    }
}

#[test]
fn publish_fixtures() {
    // 3.1.1 §3.3.2.3 example: topic "a/b", packet identifier 10.
    let wire = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'i',
    ];
    fixture(
        V311,
        &wire,
        Packet::Publish(publish(QoS::AtLeastOnce, Some(10))),
    );
    let mut p = publish(QoS::AtMostOnce, None);
    p.retain = true;
    fixture(
        V311,
        &[0x31, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'],
        Packet::Publish(p),
    );
    let mut p = publish(QoS::ExactlyOnce, Some(10));
    p.dup = true;
    let wire = [
        0x3c, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'i',
    ];
    fixture(V311, &wire, Packet::Publish(p));
    // 5.0 §3.3.2.3 example: the same with a zero Property Length.
    let wire = [
        0x32, 0x0a, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, 0x00, b'h', b'i',
    ];
    fixture(
        V5,
        &wire,
        Packet::Publish(publish(QoS::AtLeastOnce, Some(10))),
    );
    // 5.0: empty topic name standing for Topic Alias 1.
    let mut p = publish(QoS::AtMostOnce, None);
    p.topic = s("");
    p.properties.topic_alias = Some(pid(1));
    fixture(
        V5,
        &[0x30, 0x08, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01, b'h', b'i'],
        Packet::Publish(p),
    );
    // 5.0: several subscription identifiers and user properties keep their order.
    let mut p = publish(QoS::AtMostOnce, None);
    p.properties.extra_mut().subscription_identifiers =
        vec![NonZeroU32::new(1).unwrap(), NonZeroU32::new(200).unwrap()];
    p.properties.extra_mut().user_properties = vec![(s("k"), s("1")), (s("k"), s("0"))];
    #[rustfmt::skip]
    let wire = [
        0x30, 0x1b, 0x00, 0x03, b'a', b'/', b'b', 0x13,
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'1', 0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'0',
        0x0b, 0x01, 0x0b, 0xc8, 0x01, b'h', b'i',
    ];
    fixture(V5, &wire, Packet::Publish(p));
    // Encoding refuses a packet identifier that does not match the QoS.
    let bad = Packet::Publish(publish(QoS::AtLeastOnce, None));
    assert_eq!(
        bad.encode(V311, &mut BytesMut::new()),
        Err(EncodeError::PacketIdMismatch)
    );
}

#[test]
fn ack_fixtures() {
    let ack = Ack::new(pid(10));
    fixture(V311, &[0x40, 0x02, 0x00, 0x0a], Packet::PubAck(ack.clone()));
    fixture(V311, &[0x50, 0x02, 0x00, 0x0a], Packet::PubRec(ack.clone()));
    fixture(V311, &[0x62, 0x02, 0x00, 0x0a], Packet::PubRel(ack.clone()));
    fixture(
        V311,
        &[0x70, 0x02, 0x00, 0x0a],
        Packet::PubComp(ack.clone()),
    );
    // 5.0: Remaining Length 2 means Success without properties.
    fixture(V5, &[0x40, 0x02, 0x00, 0x0a], Packet::PubAck(ack.clone()));
    let no_subs = Ack::with_reason(pid(10), ReasonCode::NoMatchingSubscribers);
    fixture(
        V5,
        &[0x40, 0x03, 0x00, 0x0a, 0x10],
        Packet::PubAck(no_subs.clone()),
    );
    fixture(V5, &[0x50, 0x03, 0x00, 0x0a, 0x10], Packet::PubRec(no_subs));
    let not_found = Ack::with_reason(pid(10), ReasonCode::PacketIdentifierNotFound);
    fixture(
        V5,
        &[0x62, 0x03, 0x00, 0x0a, 0x92],
        Packet::PubRel(not_found.clone()),
    );
    fixture(
        V5,
        &[0x70, 0x03, 0x00, 0x0a, 0x92],
        Packet::PubComp(not_found),
    );
    let mut with_reason_string = Ack::with_reason(pid(10), ReasonCode::QuotaExceeded);
    with_reason_string.properties.reason_string = Some(s("r"));
    fixture(
        V5,
        &[0x40, 0x08, 0x00, 0x0a, 0x97, 0x04, 0x1f, 0x00, 0x01, b'r'],
        Packet::PubAck(with_reason_string),
    );
    // Decoding the long form of a plain Success ack gives the same packet.
    let mut dec = Decoder::with_version(V5, MAX);
    let mut buf = BytesMut::from(&[0x40, 0x04, 0x00, 0x0a, 0x00, 0x00][..]);
    assert_eq!(dec.decode(&mut buf), Ok(Some(Packet::PubAck(ack))));
}

/// Two-byte acknowledgements (decoded in place, without splitting a body off the buffer) back
/// to back with other packets in one read: each decodes whole, in order, and leaves the rest —
/// including a PUBACK cut in half by the read — where it was.
#[test]
fn two_byte_acks_in_one_buffer_with_other_packets() {
    for v in [V31, V311, V5] {
        let mut wire = BytesMut::new();
        let want = vec![
            Packet::PubAck(Ack::new(pid(1))),
            Packet::PubRec(Ack::new(pid(0x0102))),
            Packet::PubRel(Ack::new(pid(0xfffe))),
            Packet::PubComp(Ack::new(pid(7))),
            Packet::PingReq,
            Packet::PubAck(Ack::new(pid(9))),
        ];
        for p in &want {
            p.encode(v, &mut wire).unwrap();
        }
        // v5: a PUBACK with a reason code (3 bytes) takes the general path among them.
        let with_reason =
            Packet::PubAck(Ack::with_reason(pid(3), ReasonCode::NoMatchingSubscribers));
        if v == V5 {
            with_reason.encode(v, &mut wire).unwrap();
        }
        wire.extend_from_slice(&[0x40, 0x02, 0x00]);
        let mut dec = Decoder::with_version(v, MAX);
        let mut got = Vec::new();
        while let Some(p) = dec.decode(&mut wire).unwrap() {
            got.push(p);
        }
        let mut expected = want.clone();
        if v == V5 {
            expected.push(with_reason);
        }
        assert_eq!(got, expected, "{v:?}");
        assert_eq!(
            &wire[..],
            &[0x40, 0x02, 0x00],
            "{v:?}: the partial PUBACK is kept"
        );
        wire.extend_from_slice(&[0x05]);
        assert_eq!(
            dec.decode(&mut wire).unwrap(),
            Some(Packet::PubAck(Ack::new(pid(5))))
        );
        assert!(wire.is_empty());
    }
}

#[test]
fn subscribe_fixtures() {
    // 3.1.1 §3.8.3 example payload: "a/b" QoS 1, "c/d" QoS 2.
    let qos = |q| SubscriptionOptions {
        qos: q,
        ..SubscriptionOptions::default()
    };
    let sub = Subscribe {
        packet_id: pid(10),
        properties: SubscribeProperties::default(),
        filters: vec![
            (s("a/b"), qos(QoS::AtLeastOnce)),
            (s("c/d"), qos(QoS::ExactlyOnce)),
        ],
    };
    #[rustfmt::skip]
    let wire = [
        0x82, 0x0e, 0x00, 0x0a, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd', 0x02,
    ];
    fixture(V311, &wire, Packet::Subscribe(sub));
    // 5.0: Subscription Identifier 5; No Local, Retain As Published, Retain Handling 2, QoS 1.
    let sub = Subscribe {
        packet_id: pid(10),
        properties: SubscribeProperties {
            subscription_identifier: NonZeroU32::new(5),
            ..SubscribeProperties::default()
        },
        filters: vec![(
            s("a/b"),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
    };
    let wire = [
        0x82, 0x0b, 0x00, 0x0a, 0x02, 0x0b, 0x05, 0x00, 0x03, b'a', b'/', b'b', 0x2d,
    ];
    fixture(V5, &wire, Packet::Subscribe(sub));
}

#[test]
fn suback_unsubscribe_unsuback_fixtures() {
    // 3.1.1 §3.9.3 example: Success QoS 0, Success QoS 2, Failure.
    let suback = SubAck {
        packet_id: pid(10),
        properties: AckProperties::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQos2,
            ReasonCode::UnspecifiedError,
        ],
    };
    fixture(
        V311,
        &[0x90, 0x05, 0x00, 0x0a, 0x00, 0x02, 0x80],
        Packet::SubAck(suback),
    );
    let suback = SubAck {
        packet_id: pid(10),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::GrantedQos1, ReasonCode::TopicFilterInvalid],
    };
    fixture(
        V5,
        &[0x90, 0x05, 0x00, 0x0a, 0x00, 0x01, 0x8f],
        Packet::SubAck(suback.clone()),
    );
    // A 3.1.1 client sees every failure as 0x80.
    let mut out = BytesMut::new();
    Packet::SubAck(suback).encode(V311, &mut out).unwrap();
    assert_eq!(&out[..], &[0x90, 0x04, 0x00, 0x0a, 0x01, 0x80]);

    let unsub = Unsubscribe {
        packet_id: pid(10),
        properties: UnsubscribeProperties::default(),
        filters: vec![s("a/b"), s("c/d")],
    };
    #[rustfmt::skip]
    let wire = [0xa2, 0x0c, 0x00, 0x0a, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd'];
    fixture(V311, &wire, Packet::Unsubscribe(unsub.clone()));
    #[rustfmt::skip]
    let wire = [0xa2, 0x0d, 0x00, 0x0a, 0x00, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd'];
    fixture(V5, &wire, Packet::Unsubscribe(unsub));

    let unsuback = UnsubAck {
        packet_id: pid(10),
        properties: AckProperties::default(),
        reasons: vec![],
    };
    fixture(V311, &[0xb0, 0x02, 0x00, 0x0a], Packet::UnsubAck(unsuback));
    let unsuback = UnsubAck {
        packet_id: pid(10),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
    };
    fixture(
        V5,
        &[0xb0, 0x05, 0x00, 0x0a, 0x00, 0x00, 0x11],
        Packet::UnsubAck(unsuback),
    );
}

#[test]
fn ping_disconnect_auth_fixtures() {
    for v in [V31, V311, V5] {
        fixture(v, &[0xc0, 0x00], Packet::PingReq);
        fixture(v, &[0xd0, 0x00], Packet::PingResp);
        fixture(v, &[0xe0, 0x00], Packet::Disconnect(Disconnect::default()));
    }
    fixture(
        V5,
        &[0xe0, 0x01, 0x8e],
        Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver)),
    );
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval = Some(0);
    fixture(
        V5,
        &[0xe0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
        Packet::Disconnect(d),
    );
    fixture(V5, &[0xf0, 0x00], Packet::Auth(Auth::default()));
    let auth = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("m")),
            ..AuthProperties::default()
        },
    };
    fixture(
        V5,
        &[0xf0, 0x06, 0x18, 0x04, 0x15, 0x00, 0x01, b'm'],
        Packet::Auth(auth),
    );
    // AUTH does not exist before 5.0.
    let auth = Packet::Auth(Auth::default());
    assert_eq!(
        auth.encode(V311, &mut BytesMut::new()),
        Err(EncodeError::NotInVersion)
    );
}

#[test]
fn decoding_is_incremental() {
    let wire = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0a, b'h', b'i', 0xc0, 0x00,
    ];
    let mut dec = Decoder::with_version(V311, MAX);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &b in &wire {
        buf.extend_from_slice(&[b]);
        assert!(dec.bytes_needed(&buf) > buf.len() || !buf.is_empty());
        while let Some(p) = dec.decode(&mut buf).unwrap() {
            got.push(p);
        }
    }
    assert_eq!(
        got,
        vec![
            Packet::Publish(publish(QoS::AtLeastOnce, Some(10))),
            Packet::PingReq
        ]
    );
    assert!(buf.is_empty());
    // Once the fixed header is in, the decoder knows the whole size.
    assert_eq!(dec.bytes_needed(&wire[..2]), 11);
    assert_eq!(dec.bytes_needed(&wire[..1]), 2);
}

#[test]
fn decoded_payloads_share_the_read_buffer() {
    let wire = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
    let mut buf = BytesMut::from(&wire[..]);
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = Decoder::with_version(V311, MAX).decode(&mut buf).unwrap()
    else {
        panic!("publish expected")
    };
    assert_eq!(
        p.payload.as_ptr() as usize,
        base + 7,
        "payload is a slice, not a copy"
    );
    assert_eq!(
        p.topic.as_ptr() as usize,
        base + 4,
        "topic is a slice, not a copy"
    );
}

/// Decodes `wire` after a CONNECT of version `v` (or as the first packet when `v` is None).
fn reject(v: Option<ProtocolVersion>, wire: &[u8], max: u32) -> DecodeError {
    let mut dec = match v {
        Some(v) => Decoder::with_version(v, max),
        None => Decoder::new(max),
    };
    let mut buf = BytesMut::from(wire);
    match dec.decode(&mut buf) {
        Err(e) => e,
        other => panic!("{wire:02x?} should be rejected, got {other:?}"),
    }
}

/// A CONNECT with the given protocol name, level and flags, keep alive 10, client id "c".
fn raw_connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0x00, 0x0a]);
    if level == 5 {
        body.push(0x00);
    }
    body.extend_from_slice(&[0x00, 0x01, b'c']);
    body.extend_from_slice(rest);
    let mut wire = vec![0x10, body.len() as u8];
    wire.extend(body);
    wire
}

#[test]
fn every_rejection_has_its_error() {
    use DecodeError::*;
    let v3 = Some(V311);
    let v5 = Some(V5);
    #[rustfmt::skip]
    let cases: Vec<(Option<ProtocolVersion>, Vec<u8>, DecodeError)> = vec![
        (v3, vec![0x00, 0x00], ReservedPacketType),
        (v3, vec![0xf0, 0x00], ReservedPacketType),
        (v3, vec![0x60, 0x02, 0x00, 0x0a], InvalidFlags(PacketType::PubRel)),
        (v3, vec![0x80, 0x06, 0x00, 0x0a, 0x00, 0x01, b'a', 0x00], InvalidFlags(PacketType::Subscribe)),
        (v3, vec![0xa0, 0x05, 0x00, 0x0a, 0x00, 0x01, b'a'], InvalidFlags(PacketType::Unsubscribe)),
        (v5, vec![0xc1, 0x00], InvalidFlags(PacketType::PingReq)),
        (v5, vec![0x42, 0x02, 0x00, 0x0a], InvalidFlags(PacketType::PubAck)),
        (v3, vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01], MalformedVarint),
        (v3, vec![0x32, 0x04, 0x00, 0x03, b'a', b'/'], Truncated),
        (v3, vec![0x32, 0x05, 0x00, 0x03, b'a', b'/', b'b'], Truncated),
        (v3, vec![0x40, 0x03, 0x00, 0x0a, 0x00], TrailingBytes),
        (v3, vec![0xc0, 0x01, 0x00], TrailingBytes),
        (v3, vec![0xe0, 0x01, 0x00], TrailingBytes),
        (v3, vec![0x30, 0x04, 0x00, 0x02, 0xc3, 0x28], InvalidUtf8),
        (v3, vec![0x30, 0x05, 0x00, 0x03, 0xed, 0xa0, 0x80], InvalidUtf8),
        (v3, vec![0x30, 0x05, 0x00, 0x03, b'a', 0x00, b'b'], NulCharacter),
        (v3, vec![0x32, 0x07, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x00], ZeroPacketId),
        (v3, vec![0x40, 0x02, 0x00, 0x00], ZeroPacketId),
        (v3, vec![0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00], ZeroPacketId),
        (v5, vec![0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x02, 0x05, 0x00], UnknownProperty(0x05)),
        (v5, vec![0x30, 0x0b, 0x00, 0x03, b'a', b'/', b'b', 0x05, 0x11, 0x00, 0x00, 0x00, 0x0a], PropertyNotAllowed(0x11)),
        (v5, vec![0x30, 0x10, 0x00, 0x03, b'a', b'/', b'b', 0x0a, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2], DuplicateProperty(0x02)),
        (v5, vec![0x30, 0x08, 0x00, 0x03, b'a', b'/', b'b', 0x02, 0x01, 0x02], InvalidPropertyValue(0x01)),
        (v5, vec![0x82, 0x09, 0x00, 0x0a, 0x02, 0x0b, 0x00, 0x00, 0x01, b'a', 0x00], InvalidPropertyValue(0x0b)),
        (v5, vec![0x82, 0x0b, 0x00, 0x0a, 0x04, 0x0b, 0x01, 0x0b, 0x02, 0x00, 0x01, b'a', 0x00], DuplicateProperty(0x0b)),
        (v5, vec![0x30, 0x06, 0x00, 0x03, b'a', b'/', b'b', 0x05], Truncated),
        // Property Length 2, but the Message Expiry Interval inside needs 5: it would run into
        // the payload.
        (v5, vec![0x30, 0x0b, 0x00, 0x03, b'a', b'/', b'b', 0x02, 0x02, 0, 0, 0, 9, b'p'], Truncated),
        (v5, vec![0xf0, 0x07, 0x18, 0x05, 0x16, 0x00, 0x02, b'd', b'd'], AuthenticationDataWithoutMethod),
        (v5, vec![0x30, 0x0c, 0x00, 0x01, b'a', 0x06, 0x08, 0x00, 0x03, b'a', b'/', b'+', b'x', b'y'], InvalidResponseTopic),
        (v5, vec![0x30, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x03, 0x23, 0x00, 0x00], TopicAliasZero),
        (v5, vec![0x30, 0x0a, 0x00, 0x00, 0x06, 0x23, 0x00, 0x01, 0x23, 0x00, 0x02, b'h'], DuplicateProperty(0x23)),
        (None, vec![0xc0, 0x00], FirstPacketNotConnect),
        (None, vec![0x82, 0x06, 0x00, 0x0a, 0x00, 0x01, b'a', 0x00], FirstPacketNotConnect),
        (v3, raw_connect(b"MQTT", 4, 0x02, &[]), SecondConnect),
        (None, raw_connect(b"MQTX", 4, 0x02, &[]), InvalidProtocolName),
        (None, raw_connect(b"MQTT", 6, 0x02, &[]), UnsupportedProtocolVersion),
        (None, raw_connect(b"MQTT", 3, 0x02, &[]), UnsupportedProtocolVersion),
        (None, raw_connect(b"MQIsdp", 4, 0x02, &[]), UnsupportedProtocolVersion),
        (None, raw_connect(b"MQTT", 4, 0x03, &[]), ConnectReservedFlag),
        (None, raw_connect(b"MQTT", 5, 0x01, &[]), ConnectReservedFlag),
        (None, raw_connect(b"MQTT", 4, 0x0a, &[]), WillFlagsWithoutWill),
        (None, raw_connect(b"MQTT", 4, 0x22, &[]), WillFlagsWithoutWill),
        (None, raw_connect(b"MQTT", 4, 0x1e, &[0, 1, b'w', 0, 0]), WillQos3),
        (None, raw_connect(b"MQTT", 4, 0x42, &[0, 1, b'p']), PasswordWithoutUsername),
        (None, raw_connect(b"MQIsdp", 3, 0x42, &[0, 1, b'p']), PasswordWithoutUsername),
        (None, raw_connect(b"MQTT", 4, 0x82, &[]), Truncated),
        (None, raw_connect(b"MQTT", 4, 0x02, &[0x00]), TrailingBytes),
        (v3, vec![0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01], PublishQos3),
        (v3, vec![0x38, 0x03, 0x00, 0x01, b'a'], DupWithQos0),
        (v3, vec![0x30, 0x05, 0x00, 0x03, b'a', b'/', b'#'], TopicNameWildcard),
        (v5, vec![0x30, 0x06, 0x00, 0x03, b'+', b'/', b'b', 0x00], TopicNameWildcard),
        (v3, vec![0x30, 0x02, 0x00, 0x00], EmptyTopicName),
        (v5, vec![0x30, 0x03, 0x00, 0x00, 0x00], EmptyTopicName),
        (v3, vec![0x82, 0x02, 0x00, 0x0a], NoSubscribeFilters),
        (v5, vec![0x82, 0x03, 0x00, 0x0a, 0x00], NoSubscribeFilters),
        (v3, vec![0x82, 0x06, 0x00, 0x0a, 0x00, 0x01, b'a', 0x04], SubscriptionOptionsReserved),
        (v5, vec![0x82, 0x07, 0x00, 0x0a, 0x00, 0x00, 0x01, b'a', 0x40], SubscriptionOptionsReserved),
        (v3, vec![0x82, 0x06, 0x00, 0x0a, 0x00, 0x01, b'a', 0x03], SubscriptionQos3),
        (v5, vec![0x82, 0x07, 0x00, 0x0a, 0x00, 0x00, 0x01, b'a', 0x30], RetainHandling3),
        (v3, vec![0x82, 0x05, 0x00, 0x0a, 0x00, 0x01, b'a'], Truncated),
        (v3, vec![0xa2, 0x02, 0x00, 0x0a], NoUnsubscribeFilters),
        (v5, vec![0xa2, 0x03, 0x00, 0x0a, 0x00], NoUnsubscribeFilters),
        (v5, vec![0x40, 0x03, 0x00, 0x0a, 0x8e], ReasonCodeNotAllowed(PacketType::PubAck)),
        (v5, vec![0x62, 0x03, 0x00, 0x0a, 0x10], ReasonCodeNotAllowed(PacketType::PubRel)),
        (v5, vec![0xe0, 0x01, 0x8a], ReasonCodeNotAllowed(PacketType::Disconnect)),
        (v5, vec![0xe0, 0x01, 0x03], ReasonCodeNotAllowed(PacketType::Disconnect)),
        (v5, vec![0xf0, 0x01, 0x80], ReasonCodeNotAllowed(PacketType::Auth)),
        (v5, vec![0xf0, 0x01, 0x18], AuthenticationMethodMissing),
        (v5, vec![0xf0, 0x02, 0x18, 0x00], AuthenticationMethodMissing),
        (v5, vec![0x90, 0x04, 0x00, 0x0a, 0x00, 0x03], ReasonCodeNotAllowed(PacketType::SubAck)),
        (v3, vec![0x90, 0x03, 0x00, 0x0a, 0x03], ReasonCodeNotAllowed(PacketType::SubAck)),
        (v5, vec![0xb0, 0x04, 0x00, 0x0a, 0x00, 0x01], ReasonCodeNotAllowed(PacketType::UnsubAck)),
        (v3, vec![0x20, 0x02, 0x00, 0x06], ReasonCodeNotAllowed(PacketType::ConnAck)),
        (v5, vec![0x20, 0x03, 0x00, 0x8e, 0x00], ReasonCodeNotAllowed(PacketType::ConnAck)),
        (v3, vec![0x20, 0x02, 0x02, 0x00], ConnAckReservedFlags),
    ];
    for (v, wire, want) in cases {
        assert_eq!(reject(v, &wire, MAX), want, "{wire:02x?}");
        assert!(!want.statement().is_empty());
    }
}

#[test]
fn size_limit_is_checked_from_the_fixed_header() {
    // Only the fixed header has arrived; it claims 127 bytes against a 100-byte limit.
    assert_eq!(
        reject(Some(V311), &[0x30, 0x7f], 100),
        DecodeError::PacketTooLarge
    );
    // The limit counts the whole packet: 2 + 98 = 100 fits, 2 + 99 does not.
    let mut dec = Decoder::with_version(V311, 100);
    assert_eq!(dec.decode(&mut BytesMut::from(&[0x30, 98][..])), Ok(None));
    assert_eq!(
        dec.decode(&mut BytesMut::from(&[0x30, 99][..])),
        Err(DecodeError::PacketTooLarge)
    );
    // The largest remaining length the protocol allows is refused without being buffered.
    let claim = [0x30, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(reject(Some(V5), &claim, MAX), DecodeError::PacketTooLarge);
    assert!(Decoder::new(MAX).bytes_needed(&claim) <= claim.len() + 1);
}

#[test]
fn failed_connect_still_reports_its_version() {
    // A v5 CONNECT with Receive Maximum 0: the broker must answer with a v5 CONNACK 0x82.
    let mut wire = raw_connect(b"MQTT", 5, 0x02, &[]);
    wire[12] = 0x03; // property length
    wire.splice(13..13, [0x21, 0x00, 0x00]);
    wire[1] += 3;
    let mut dec = Decoder::new(MAX);
    let err = dec.decode(&mut BytesMut::from(&wire[..])).unwrap_err();
    assert_eq!(err, DecodeError::InvalidPropertyValue(0x21));
    assert_eq!(dec.version(), Some(V5));
    assert_eq!(
        err.response(dec.version(), false),
        Response::ConnAck(ReasonCode::ProtocolError)
    );
}

#[test]
fn mqtt_31_accepts_dup_on_subscribe_retries() {
    // 3.1 SUBSCRIBE with DUP and QoS 1 in the fixed header (0x8a).
    let wire = [0x8a, 0x06, 0x00, 0x0a, 0x00, 0x01, b'a', 0x01];
    let mut dec = Decoder::with_version(V31, MAX);
    assert!(matches!(
        dec.decode(&mut BytesMut::from(&wire[..])),
        Ok(Some(Packet::Subscribe(_)))
    ));
}

/// A v5 CONNECT with client id "c" whose CONNECT properties are `props` (Property Length is
/// computed), followed by `rest`.
fn v5_connect_with_props(props: &[u8], flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 5, flags, 0x00, 0x0a];
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(&[0x00, 0x01, b'c']);
    body.extend_from_slice(rest);
    let mut wire = vec![0x10, body.len() as u8];
    wire.extend(body);
    wire
}

#[test]
fn review_of_chapter_2_and_3_musts() {
    use DecodeError::*;
    let v3 = Some(V311);
    let v5 = Some(V5);
    #[rustfmt::skip]
    let cases: Vec<(Option<ProtocolVersion>, Vec<u8>, DecodeError, ReasonCode)> = vec![
        // [MQTT-1.5.5-1]: a Variable Byte Integer uses the fewest bytes (Remaining Length, Property
        // Length, property identifier).
        (v3, vec![0xc0, 0x80, 0x00], MalformedVarint, ReasonCode::MalformedPacket),
        (v5, vec![0x30, 0x07, 0x00, 0x01, b'a', 0x80, 0x00, b'h', b'i'], MalformedVarint, ReasonCode::MalformedPacket),
        (v5, vec![0x30, 0x07, 0x00, 0x01, b'a', 0x03, 0x81, 0x00, 0x01], MalformedVarint, ReasonCode::MalformedPacket),
        // A Property Length running past the end of the packet.
        (None, vec![0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 5, 0x02, 0x00, 0x0a, 0x20, 0x11, 0x00, 0x00, 0x00, 0x0a], Truncated, ReasonCode::MalformedPacket),
        // A property running past the Property Length (but not past the packet).
        (v5, vec![0x30, 0x0a, 0x00, 0x01, b'a', 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00], Truncated, ReasonCode::MalformedPacket),
        // v5 property values that are a Protocol Error.
        (v5, vec![0x30, 0x06, 0x00, 0x01, b'a', 0x02, 0x0b, 0x00], InvalidPropertyValue(0x0b), ReasonCode::ProtocolError),
        (None, v5_connect_with_props(&[0x21, 0x00, 0x00], 0x02, &[]), InvalidPropertyValue(0x21), ReasonCode::ProtocolError),
        (None, v5_connect_with_props(&[0x27, 0x00, 0x00, 0x00, 0x00], 0x02, &[]), InvalidPropertyValue(0x27), ReasonCode::ProtocolError),
        (None, v5_connect_with_props(&[0x17, 0x02], 0x02, &[]), InvalidPropertyValue(0x17), ReasonCode::ProtocolError),
        (None, v5_connect_with_props(&[0x19, 0x02], 0x02, &[]), InvalidPropertyValue(0x19), ReasonCode::ProtocolError),
        (None, v5_connect_with_props(&[], 0x06, &[0x02, 0x01, 0x02, 0x00, 0x01, b'w', 0x00, 0x00]), InvalidPropertyValue(0x01), ReasonCode::ProtocolError),
        (v5, vec![0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x00], InvalidPropertyValue(0x21), ReasonCode::ProtocolError),
        (v5, vec![0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0x00, 0x00, 0x00, 0x00], InvalidPropertyValue(0x27), ReasonCode::ProtocolError),
        (v5, vec![0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02], InvalidPropertyValue(0x24), ReasonCode::ProtocolError),
        (v5, vec![0x20, 0x05, 0x00, 0x00, 0x02, 0x25, 0x02], InvalidPropertyValue(0x25), ReasonCode::ProtocolError),
        // The Will Topic is a Topic Name: no wildcards, not empty.
        (None, raw_connect(b"MQTT", 4, 0x06, &[0, 3, b'a', b'/', b'#', 0, 0]), InvalidWillTopic, ReasonCode::TopicNameInvalid),
        (None, raw_connect(b"MQIsdp", 3, 0x06, &[0, 1, b'+', 0, 0]), InvalidWillTopic, ReasonCode::TopicNameInvalid),
        (None, raw_connect(b"MQTT", 4, 0x06, &[0, 0, 0, 0]), InvalidWillTopic, ReasonCode::TopicNameInvalid),
        (None, v5_connect_with_props(&[], 0x06, &[0x00, 0x00, 0x01, b'+', 0x00, 0x00]), InvalidWillTopic, ReasonCode::TopicNameInvalid),
        // A refused CONNACK has Session Present 0.
        (v3, vec![0x20, 0x02, 0x01, 0x05], SessionPresentWithError, ReasonCode::ProtocolError),
        (v5, vec![0x20, 0x03, 0x01, 0x87, 0x00], SessionPresentWithError, ReasonCode::ProtocolError),
        // CONNACK return codes of 3.1 / 3.1.1 are 0-5.
        (Some(V31), vec![0x20, 0x02, 0x00, 0x06], ReasonCodeNotAllowed(PacketType::ConnAck), ReasonCode::MalformedPacket),
        // SUBACK (all levels) and UNSUBACK (5.0) carry one reason code per filter, so at least one.
        (v3, vec![0x90, 0x02, 0x00, 0x0a], NoReasonCodes(PacketType::SubAck), ReasonCode::ProtocolError),
        (v5, vec![0x90, 0x03, 0x00, 0x0a, 0x00], NoReasonCodes(PacketType::SubAck), ReasonCode::ProtocolError),
        (v5, vec![0xb0, 0x03, 0x00, 0x0a, 0x00], NoReasonCodes(PacketType::UnsubAck), ReasonCode::ProtocolError),
        // SUBACK / UNSUBACK reason codes valid per packet.
        (v5, vec![0x90, 0x04, 0x00, 0x0a, 0x00, 0x11], ReasonCodeNotAllowed(PacketType::SubAck), ReasonCode::MalformedPacket),
        (v5, vec![0xb0, 0x04, 0x00, 0x0a, 0x00, 0x02], ReasonCodeNotAllowed(PacketType::UnsubAck), ReasonCode::MalformedPacket),
        // PUBREL / SUBSCRIBE / UNSUBSCRIBE flags are 0b0010 in 3.1.1 and 5.0.
        (v5, vec![0x60, 0x02, 0x00, 0x0a], InvalidFlags(PacketType::PubRel), ReasonCode::MalformedPacket),
        (v5, vec![0x83, 0x07, 0x00, 0x0a, 0x00, 0x00, 0x01, b'a', 0x00], InvalidFlags(PacketType::Subscribe), ReasonCode::MalformedPacket),
        (v5, vec![0xaa, 0x06, 0x00, 0x0a, 0x00, 0x00, 0x01, b'a'], InvalidFlags(PacketType::Unsubscribe), ReasonCode::MalformedPacket),
        // 3.1.1 and 3.1: a password needs a user name.
        (None, raw_connect(b"MQTT", 4, 0x42, &[0, 1, b'p']), PasswordWithoutUsername, ReasonCode::ProtocolError),
    ];
    for (v, wire, want, code) in cases {
        assert_eq!(reject(v, &wire, MAX), want, "{wire:02x?}");
        assert_eq!(want.reason_code(), code, "{want:?}");
        assert!(!want.statement().is_empty());
    }
}

#[test]
fn review_accepts_what_the_codec_must_leave_to_the_broker() {
    let decode = |v: Option<ProtocolVersion>, wire: &[u8]| {
        let mut dec = match v {
            Some(v) => Decoder::with_version(v, MAX),
            None => Decoder::new(MAX),
        };
        let mut buf = BytesMut::from(wire);
        let p = dec.decode(&mut buf).expect("accepted").expect("complete");
        assert!(buf.is_empty());
        p
    };
    // MQTT 3.1 limits the client id to 23 characters and forbids an empty one; the broker decides
    // (and answers CONNACK 2), the codec does not.
    for id in ["", "a-client-identifier-longer-than-twenty-three"] {
        let mut c = connect(V31);
        c.client_id = s(id);
        let mut wire = BytesMut::new();
        Packet::Connect(Box::new(c.clone()))
            .encode(V31, &mut wire)
            .unwrap();
        assert_eq!(decode(None, &wire), Packet::Connect(Box::new(c)));
    }
    // Topic Alias Maximum 0 is allowed (it means no aliases).
    let Packet::Connect(c) = decode(None, &v5_connect_with_props(&[0x22, 0x00, 0x00], 0x02, &[]))
    else {
        panic!()
    };
    assert_eq!(c.properties.topic_alias_maximum, Some(0));
    // A Payload Format Indicator of 1 with a payload that is not UTF-8: the broker may check.
    let Packet::Publish(p) = decode(
        Some(V5),
        &[0x30, 0x08, 0x00, 0x01, b'a', 0x02, 0x01, 0x01, 0xff, 0xfe],
    ) else {
        panic!()
    };
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    assert_eq!(&p.payload[..], &[0xff, 0xfe]);
    // 5.0 allows a password without a user name.
    let Packet::Connect(c) = decode(None, &v5_connect_with_props(&[], 0x42, &[0, 1, b'p'])) else {
        panic!()
    };
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
    // DISCONNECT and AUTH with Remaining Length 0 mean reason 0x00.
    assert_eq!(
        decode(Some(V5), &[0xe0, 0x00]),
        Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION))
    );
    assert_eq!(
        decode(Some(V5), &[0xf0, 0x00]),
        Packet::Auth(Auth::default())
    );
    // DISCONNECT with Remaining Length 1: reason code, no properties.
    assert_eq!(
        decode(Some(V5), &[0xe0, 0x01, 0x04]),
        Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage))
    );
    // A Session Present CONNACK that accepts is fine.
    assert!(matches!(
        decode(Some(V5), &[0x20, 0x03, 0x01, 0x00, 0x00]),
        Packet::ConnAck(c) if c.session_present
    ));
}
