//! Proptest strategies for every MQTT packet at every protocol level, shared by the codec
//! property tests (`codec_props.rs`) and the allocation bound test (`codec_alloc.rs`).
//!
//! A generated packet is always one the codec can represent at that level: v5 packets carry
//! full property sets (every property the packet may carry, repeated User Properties, several
//! Subscription Identifiers on PUBLISH), v3 / v4 packets carry no properties and only the
//! reason codes those levels can express.

#![allow(dead_code)]

use std::num::{NonZeroU16, NonZeroU32};

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use ringmq::protocol::*;

pub const V31: ProtocolVersion = ProtocolVersion::V31;
pub const V311: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const VERSIONS: [ProtocolVersion; 3] = [V31, V311, V5];

pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(V31), Just(V311), Just(V5)]
}

/// Any MQTT string: any Unicode scalar value but U+0000, multi-byte ones included.
pub fn mstr() -> impl Strategy<Value = MqttStr> {
    "[^\\x00]{0,6}".prop_map(MqttStr::from)
}

/// A Topic Name: at least one character, no wildcards.
pub fn topic_name() -> impl Strategy<Value = MqttStr> {
    "[a-z0-9/ $é€😀]{1,8}".prop_map(MqttStr::from)
}

/// A Topic Filter as the codec sees it (its syntax is the broker's business).
pub fn topic_filter() -> impl Strategy<Value = MqttStr> {
    "[a-z0-9/+#$]{0,8}".prop_map(MqttStr::from)
}

pub fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..8).prop_map(Bytes::from)
}

pub fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

pub fn nz16() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|v| NonZeroU16::new(v).unwrap())
}

pub fn nz32() -> impl Strategy<Value = NonZeroU32> {
    (1..=u32::MAX).prop_map(|v| NonZeroU32::new(v).unwrap())
}

/// 1 to 268,435,455 (a Variable Byte Integer), with the encoding-length boundaries favoured.
pub fn subscription_id() -> impl Strategy<Value = NonZeroU32> {
    prop_oneof![
        prop::sample::select(vec![
            1u32,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455
        ]),
        1..=268_435_455u32,
    ]
    .prop_map(|v| NonZeroU32::new(v).unwrap())
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub fn user_properties() -> impl Strategy<Value = UserProperties> {
    vec((mstr(), mstr()), 0..4)
}

/// A reason code allowed in `packet` by MQTT 5.0.
pub fn reason_in(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<ReasonCode> = ReasonCode::ALL
        .iter()
        .copied()
        .filter(|c| c.allowed_in(packet))
        .collect();
    prop::sample::select(codes)
}

pub fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(nz16()),
        option::of(nz32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        option::of(mstr()),
        option::of(bin()),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, user, method, data)| {
            // Authentication Data needs an Authentication Method.
            let data = if method.is_some() { data } else { None };
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                authentication_method: method,
                authentication_data: data,
            }
        })
}

pub fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(mstr()),
        option::of(topic_name()),
        option::of(bin()),
        user_properties(),
    )
        .prop_map(|(wdi, pfi, mei, ct, rt, cd, user)| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
        })
}

pub fn will(v: ProtocolVersion) -> impl Strategy<Value = LastWill> {
    let props = if v.is_v5() {
        will_properties().boxed()
    } else {
        Just(WillProperties::default()).boxed()
    };
    (topic_name(), payload(), qos(), any::<bool>(), props).prop_map(
        |(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    )
}

pub fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = if v.is_v5() {
        connect_properties().boxed()
    } else {
        Just(ConnectProperties::default()).boxed()
    };
    (
        any::<bool>(),
        any::<u16>(),
        props,
        // Longer than 3.1's 23 characters too: the broker, not the codec, enforces that.
        prop_oneof!["[^\\x00]{0,6}", "[a-zA-Z0-9]{20,40}"].prop_map(MqttStr::from),
        option::of(will(v)),
        option::of(mstr()),
        option::of(bin()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // Before 5.0 a password needs a user name.
                let username = match (&username, &password) {
                    (None, Some(_)) if !v.is_v5() => Some(MqttStr::from("u")),
                    _ => username,
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

pub fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let a = (
        option::of(any::<u32>()),
        option::of(nz16()),
        option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        option::of(any::<bool>()),
        option::of(nz32()),
        option::of(mstr()),
        option::of(any::<u16>()),
        option::of(mstr()),
        user_properties(),
    );
    let b = (
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
        option::of(mstr()),
        option::of(mstr()),
        option::of(mstr()),
        option::of(bin()),
    );
    (a, b).prop_map(
        |((sei, rm, mq, ra, mps, aci, tam, rs, user), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
            ConnAckProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_qos: mq,
                retain_available: ra,
                maximum_packet_size: mps,
                assigned_client_identifier: aci,
                topic_alias_maximum: tam,
                reason_string: rs,
                user_properties: user,
                wildcard_subscription_available: wsa,
                subscription_identifiers_available: sia,
                shared_subscription_available: ssa,
                server_keep_alive: ska,
                response_information: ri,
                server_reference: sr,
                authentication_data: if am.is_some() { ad } else { None },
                authentication_method: am,
            }
        },
    )
}

pub fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let (reason, props) = if v.is_v5() {
        (
            reason_in(PacketType::ConnAck).boxed(),
            connack_properties().boxed(),
        )
    } else {
        (
            (0..=5u8)
                .prop_map(|c| ReasonCode::from_connack_v3(c).unwrap())
                .boxed(),
            Just(ConnAckProperties::default()).boxed(),
        )
    };
    (any::<bool>(), reason, props).prop_map(move |(session_present, reason, properties)| {
        Packet::ConnAck(Box::new(ConnAck {
            // 3.1 has no Session Present flag; a refusal never has a session.
            session_present: session_present && v != V31 && reason == ReasonCode::Success,
            reason,
            properties,
        }))
    })
}

pub fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(nz16()),
        option::of(topic_name()),
        option::of(bin()),
        user_properties(),
        vec(subscription_id(), 0..4),
        option::of(mstr()),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, user, sids, ct)| {
            PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: ta,
                extra: None,
            }
            .with_extra(PublishExtraProperties {
                response_topic: rt,
                correlation_data: cd,
                user_properties: user,
                subscription_identifiers: sids,
                content_type: ct,
            })
        })
}

pub fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let (topic, props) = if v.is_v5() {
        (
            prop_oneof![topic_name(), Just(MqttStr::default())].boxed(),
            publish_properties().boxed(),
        )
    } else {
        (
            topic_name().boxed(),
            Just(PublishProperties::default()).boxed(),
        )
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic,
        nz16(),
        props,
        payload(),
    )
        .prop_map(|(qos, dup, retain, topic, id, mut properties, payload)| {
            // An empty Topic Name stands for a Topic Alias.
            if topic.is_empty() && properties.topic_alias.is_none() {
                properties.topic_alias = NonZeroU16::new(1);
            }
            let at_most_once = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !at_most_once,
                qos,
                retain,
                topic,
                packet_id: if at_most_once { None } else { Some(id) },
                properties,
                payload,
            })
        })
}

pub fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(mstr()), user_properties()).prop_map(|(reason_string, user_properties)| {
        AckProperties {
            reason_string,
            user_properties,
        }
    })
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
pub fn ack(kind: PacketType, v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let (reason, props) = if v.is_v5() {
        (reason_in(kind).boxed(), ack_properties().boxed())
    } else {
        (
            Just(ReasonCode::Success).boxed(),
            Just(AckProperties::default()).boxed(),
        )
    };
    (nz16(), reason, props).prop_map(move |(packet_id, reason, properties)| {
        let a = Ack {
            packet_id,
            reason,
            properties,
        };
        match kind {
            PacketType::PubAck => Packet::PubAck(a),
            PacketType::PubRec => Packet::PubRec(a),
            PacketType::PubRel => Packet::PubRel(a),
            PacketType::PubComp => Packet::PubComp(a),
            _ => unreachable!("not an acknowledgement: {kind:?}"),
        }
    })
}

pub fn subscription_options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    let handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend)
    ];
    (qos(), any::<bool>(), any::<bool>(), handling).prop_map(move |(qos, nl, rap, rh)| {
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            }
        }
    })
}

pub fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = if v.is_v5() {
        (option::of(subscription_id()), user_properties())
            .prop_map(|(sid, user)| SubscribeProperties {
                subscription_identifier: sid,
                user_properties: user,
            })
            .boxed()
    } else {
        Just(SubscribeProperties::default()).boxed()
    };
    (
        nz16(),
        props,
        vec((topic_filter(), subscription_options(v)), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

pub fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let (reason, props) = if v.is_v5() {
        (
            reason_in(PacketType::SubAck).boxed(),
            ack_properties().boxed(),
        )
    } else {
        (
            prop::sample::select(vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2,
                ReasonCode::UnspecifiedError,
            ])
            .boxed(),
            Just(AckProperties::default()).boxed(),
        )
    };
    (nz16(), props, vec(reason, 1..6)).prop_map(|(packet_id, properties, reasons)| {
        Packet::SubAck(SubAck {
            packet_id,
            properties,
            reasons,
        })
    })
}

pub fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = if v.is_v5() {
        user_properties()
            .prop_map(|user_properties| UnsubscribeProperties { user_properties })
            .boxed()
    } else {
        Just(UnsubscribeProperties::default()).boxed()
    };
    (nz16(), props, vec(topic_filter(), 1..5)).prop_map(|(packet_id, properties, filters)| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    })
}

pub fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let (props, reasons) = if v.is_v5() {
        (
            ack_properties().boxed(),
            vec(reason_in(PacketType::UnsubAck), 1..6).boxed(),
        )
    } else {
        (
            Just(AckProperties::default()).boxed(),
            Just(Vec::new()).boxed(),
        )
    };
    (nz16(), props, reasons).prop_map(|(packet_id, properties, reasons)| {
        Packet::UnsubAck(UnsubAck {
            packet_id,
            properties,
            reasons,
        })
    })
}

pub fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(mstr()),
        user_properties(),
        option::of(mstr()),
    )
        .prop_map(|(sei, rs, user, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: user,
            server_reference: sr,
        })
}

pub fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    if v.is_v5() {
        (reason_in(PacketType::Disconnect), disconnect_properties())
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
            .boxed()
    } else {
        Just(Packet::Disconnect(Disconnect::default())).boxed()
    }
}

/// AUTH (5.0 only): the Remaining Length 0 form, or a reason code with an Authentication Method.
pub fn auth() -> impl Strategy<Value = Packet> {
    let full = (
        reason_in(PacketType::Auth),
        mstr(),
        option::of(bin()),
        option::of(mstr()),
        user_properties(),
    )
        .prop_map(|(reason, method, data, rs, user)| {
            Packet::Auth(Auth {
                reason,
                properties: AuthProperties {
                    authentication_method: Some(method),
                    authentication_data: data,
                    reason_string: rs,
                    user_properties: user,
                },
            })
        });
    prop_oneof![1 => Just(Packet::Auth(Auth::default())), 4 => full]
}

/// Every packet type that exists at level `v`.
pub fn packet_types(v: ProtocolVersion) -> Vec<PacketType> {
    use PacketType::*;
    let mut all = vec![
        Connect,
        ConnAck,
        Publish,
        PubAck,
        PubRec,
        PubRel,
        PubComp,
        Subscribe,
        SubAck,
        Unsubscribe,
        UnsubAck,
        PingReq,
        PingResp,
        Disconnect,
    ];
    if v.is_v5() {
        all.push(Auth);
    }
    all
}

/// A packet of type `t` for level `v`.
pub fn packet_of(t: PacketType, v: ProtocolVersion) -> BoxedStrategy<Packet> {
    use PacketType::*;
    match t {
        Connect => connect(v).boxed(),
        ConnAck => connack(v).boxed(),
        Publish => publish(v).boxed(),
        PubAck | PubRec | PubRel | PubComp => ack(t, v).boxed(),
        Subscribe => subscribe(v).boxed(),
        SubAck => suback(v).boxed(),
        Unsubscribe => unsubscribe(v).boxed(),
        UnsubAck => unsuback(v).boxed(),
        PingReq => Just(Packet::PingReq).boxed(),
        PingResp => Just(Packet::PingResp).boxed(),
        Disconnect => disconnect(v).boxed(),
        Auth => {
            assert!(v.is_v5(), "AUTH exists only in 5.0");
            auth().boxed()
        }
    }
}

/// Any packet of any type at level `v`.
pub fn any_packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    prop::sample::select(packet_types(v))
        .prop_flat_map(move |t| packet_of(t, v))
        .boxed()
}

/// A level and a packet that exists at it.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), any_packet(v)))
}

/// The decoder a packet of this kind is read with: a fresh server-side one for CONNECT, one that
/// already knows the level otherwise.
pub fn decoder_for(v: ProtocolVersion, p: &Packet, max: u32) -> Decoder {
    match p {
        Packet::Connect(_) => Decoder::new(max),
        _ => Decoder::with_version(v, max),
    }
}

pub fn encode(v: ProtocolVersion, p: &Packet) -> BytesMut {
    let mut buf = BytesMut::new();
    p.encode(v, &mut buf).expect("generated packets encode");
    buf
}

/// One change to a valid encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR the byte at this position (modulo the length) with a non-zero mask.
    Flip(usize, u8),
    /// Overwrite the byte at this position.
    Set(usize, u8),
    /// Cut the input at this position.
    Truncate(usize),
    /// Append these bytes.
    Extend(Vec<u8>),
    /// Insert a byte at this position.
    Insert(usize, u8),
    /// Remove the byte at this position.
    Remove(usize),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        2 => vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
    ]
}

pub fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        let n = bytes.len();
        match m {
            Mutation::Flip(i, mask) if n > 0 => bytes[i % n] ^= mask,
            Mutation::Set(i, b) if n > 0 => bytes[i % n] = *b,
            Mutation::Truncate(i) => bytes.truncate(i % (n + 1)),
            Mutation::Extend(more) => bytes.extend_from_slice(more),
            Mutation::Insert(i, b) => bytes.insert(i % (n + 1), *b),
            Mutation::Remove(i) if n > 0 => {
                bytes.remove(i % n);
            }
            _ => {}
        }
    }
}

/// A valid packet's encoding with a few mutations applied, and the level it was encoded for.
pub fn mutated_packet() -> impl Strategy<Value = (ProtocolVersion, bool, Vec<u8>)> {
    (versioned_packet(), vec(mutation(), 1..4)).prop_map(|((v, p), muts)| {
        let mut bytes = encode(v, &p).to_vec();
        mutate(&mut bytes, &muts);
        (v, matches!(p, Packet::Connect(_)), bytes)
    })
}

/// Feeds `bytes` to `dec` and decodes until it needs more input or fails; never panics.
pub fn drain(dec: &mut Decoder, bytes: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(p) = dec.decode(&mut buf)? {
        out.push(p);
    }
    Ok(out)
}
