//! Outbound delivery, window, acks, packet ids, aliases and size tests for the session of a
//! client's home shard.

use super::*;

#[test]
fn session_is_small() {
    let n = std::mem::size_of::<Session>();
    assert!(n <= 64, "size_of::<Session>() = {n}");
}

#[test]
fn window_is_min_of_receive_maximum_and_max_inflight() {
    // (client receive maximum, max_inflight, expected window)
    for (rm, mi, want) in [(3, 32, 3), (65535, 2, 2), (1, 1, 1)] {
        let cfg = SessionConfig {
            max_inflight: mi,
            ..Default::default()
        };
        let mut s = session(cfg, v5(rm));
        let mut out = Vec::new();
        for i in 0..want + 2 {
            s.deliver(
                msg(QoS::AtLeastOnce, &i.to_string()),
                opts(QoS::AtLeastOnce),
                0,
                &mut out,
            );
        }
        assert_eq!(
            (s.inflight_len(), s.queue_len()),
            (want as usize, 2),
            "rm={rm} mi={mi}"
        );
        assert_eq!(out.len(), want as usize);
    }
}

#[test]
fn window_fills_then_queue_drains_in_order_on_puback() {
    let mut s = session(SessionConfig::default(), v5(3));
    let mut out = Vec::new();
    for i in 0..6 {
        let o = s.deliver(
            msg(QoS::AtLeastOnce, &i.to_string()),
            opts(QoS::AtLeastOnce),
            0,
            &mut out,
        );
        assert_eq!(
            o,
            if i < 3 {
                Outcome::Sent
            } else {
                Outcome::Queued
            }
        );
    }
    assert_eq!(
        view(&mut out),
        [p(1, false, "0"), p(2, false, "1"), p(3, false, "2")]
    );
    // QoS 0 bypasses the full window.
    assert_eq!(
        s.deliver(
            msg(QoS::AtMostOnce, "q0"),
            opts(QoS::AtLeastOnce),
            0,
            &mut out
        ),
        Outcome::Sent
    );
    assert_eq!(view(&mut out), [p(0, false, "q0")]);
    assert!(s.on_puback(pid(2), 0, &mut out));
    assert_eq!(view(&mut out), [p(4, false, "3")]);
    assert!(s.on_puback(pid(1), 0, &mut out));
    assert!(s.on_puback(pid(3), 0, &mut out));
    assert_eq!(view(&mut out), [p(5, false, "4"), p(6, false, "5")]);
    assert!(!s.on_puback(pid(2), 0, &mut out), "already acked");
    assert!(out.is_empty());
    assert_eq!(
        (s.inflight_len(), s.queue_len(), s.counters().acked),
        (3, 0, 3)
    );
    assert_eq!(s.counters().delivered, 7);
}

#[test]
fn qos2_outbound_pubrec_pubrel_pubcomp() {
    let mut s = session(SessionConfig::default(), v5(1));
    let mut out = Vec::new();
    s.deliver(
        msg(QoS::ExactlyOnce, "a"),
        opts(QoS::ExactlyOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::ExactlyOnce, "b"),
        opts(QoS::ExactlyOnce),
        0,
        &mut out,
    );
    assert_eq!(view(&mut out), [p(1, false, "a")]);
    assert!(
        !s.on_puback(pid(1), 0, &mut out),
        "PUBACK does not complete QoS 2"
    );
    assert!(!s.on_pubcomp(pid(1), 0, &mut out), "PUBCOMP before PUBREC");
    assert!(s.on_pubrec(pid(1), ReasonCode::Success, 0, &mut out));
    assert_eq!(view(&mut out), [("REL", 1, false, "Success".into())]);
    // Still holds the window slot until PUBCOMP; a repeated PUBREC gets PUBREL again.
    assert_eq!((s.inflight_len(), s.queue_len()), (1, 1));
    assert!(s.on_pubrec(pid(1), ReasonCode::Success, 0, &mut out));
    assert_eq!(view(&mut out), [("REL", 1, false, "Success".into())]);
    assert!(s.on_pubcomp(pid(1), 0, &mut out));
    assert_eq!(view(&mut out), [p(2, false, "b")]);
    // An error PUBREC ends the flow and frees the id, no PUBREL.
    assert!(s.on_pubrec(pid(2), ReasonCode::UnspecifiedError, 0, &mut out));
    assert!(out.is_empty());
    assert_eq!(s.inflight_len(), 0);
    assert_eq!(s.counters().acked, 1);
    // Unknown PUBREC → PUBREL 0x92.
    assert!(!s.on_pubrec(pid(9), ReasonCode::Success, 0, &mut out));
    assert_eq!(
        view(&mut out),
        [("REL", 9, false, "PacketIdentifierNotFound".into())]
    );
}

#[test]
fn message_larger_than_client_maximum_packet_size_is_dropped() {
    let m = msg(QoS::AtLeastOnce, "0123456789");
    let exact = Packet::Publish(m.to_publish(
        &opts(QoS::AtLeastOnce),
        Some(pid(1)),
        0,
        ProtocolVersion::V5,
    ))
    .encoded_len(ProtocolVersion::V5)
    .unwrap() as u32;
    // (maximum packet size, expected)
    for (max, want) in [
        (exact, Outcome::Sent),
        (exact - 1, Outcome::Dropped(DropReason::TooLarge)),
    ] {
        let client = ClientLimits {
            maximum_packet_size: max,
            ..v5(10)
        };
        let mut s = session(SessionConfig::default(), client);
        let mut out = Vec::new();
        assert_eq!(
            s.deliver(m.clone(), opts(QoS::AtLeastOnce), 0, &mut out),
            want,
            "max={max}"
        );
        let sent = want == Outcome::Sent;
        assert_eq!(
            (out.len(), s.inflight_len()),
            (usize::from(sent), usize::from(sent))
        );
        assert_eq!(s.counters().dropped_too_large, u64::from(!sent));
    }
}

#[test]
fn qos_downgraded_to_granted() {
    let mut s = session(SessionConfig::default(), v5(10));
    let mut out = Vec::new();
    for (mq, granted, want) in [
        (QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::AtLeastOnce),
        (QoS::ExactlyOnce, QoS::AtMostOnce, QoS::AtMostOnce),
        (QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce),
    ] {
        s.deliver(msg(mq, "x"), opts(granted), 0, &mut out);
        let Some(Packet::Publish(pb)) = out.pop() else {
            panic!()
        };
        assert_eq!(pb.qos, want);
    }
}

#[test]
fn packet_ids_wrap_and_skip_ids_in_use() {
    let mut s = session(
        SessionConfig {
            max_inflight: 100,
            ..Default::default()
        },
        v5(100),
    );
    let mut out = Vec::new();
    let mut send = |s: &mut Session| {
        s.deliver(
            msg(QoS::AtLeastOnce, "x"),
            opts(QoS::AtLeastOnce),
            0,
            &mut out,
        );
        let Some(Packet::Publish(pb)) = out.pop() else {
            panic!()
        };
        pb.packet_id.unwrap().get()
    };
    assert_eq!((send(&mut s), send(&mut s), send(&mut s)), (1, 2, 3));
    s.on_puback(pid(2), 0, &mut Vec::new());
    s.next_pid = 65534;
    // 65535, then wrap: 1 in use, 2 free, 3 in use, 4.
    assert_eq!([send(&mut s), send(&mut s), send(&mut s)], [65535, 2, 4]);
}

#[test]
fn outbound_topic_aliases_first_come_then_full_topic() {
    let client = ClientLimits {
        topic_alias_maximum: 2,
        ..v5(100)
    };
    let mut s = session(SessionConfig::default(), client);
    let mut out = Vec::new();
    let mut send = |s: &mut Session, topic: &str| {
        let m = msg_props(topic, QoS::AtMostOnce, "x", PublishProperties::default());
        s.deliver(m, opts(QoS::AtMostOnce), 0, &mut out);
        let Some(Packet::Publish(pb)) = out.pop() else {
            panic!()
        };
        (
            pb.topic.to_string(),
            pb.properties.topic_alias.map(|a| a.get()),
        )
    };
    let table = [
        ("a", ("a", Some(1))),
        ("b", ("b", Some(2))),
        ("a", ("", Some(1))),
        ("c", ("c", None)),
        ("b", ("", Some(2))),
    ];
    for (topic, (want_topic, want_alias)) in table {
        assert_eq!(
            send(&mut s, topic),
            (want_topic.to_string(), want_alias),
            "{topic}"
        );
    }
    // Aliases are per connection.
    s.disconnect();
    s.resume(client, 0, &mut Vec::new());
    assert_eq!(send(&mut s, "b"), ("b".to_string(), Some(1)));
    // No aliases for a client that allows none.
    let mut s = session(SessionConfig::default(), v5(100));
    assert_eq!(send(&mut s, "a"), ("a".to_string(), None));
}

#[test]
fn v3_session_ignores_properties() {
    let client = ClientLimits::unlimited(ProtocolVersion::V311);
    let mut s = session(SessionConfig::default(), client);
    let props = PublishProperties {
        message_expiry_interval: Some(60),
        ..Default::default()
    }
    .with_extra(crate::protocol::PublishExtraProperties {
        content_type: Some("x".into()),
        ..Default::default()
    });
    let m = msg_props("t", QoS::AtLeastOnce, "x", props);
    let o = DeliveryOpts {
        subscription_ids: SubIds::One(NonZeroU32::new(5).unwrap()),
        ..opts(QoS::AtLeastOnce)
    };
    let mut out = Vec::new();
    s.deliver(m, o, 0, &mut out);
    let Some(Packet::Publish(pb)) = out.pop() else {
        panic!()
    };
    assert_eq!(pb.properties, PublishProperties::default());
    assert_eq!(pb.topic, "t");
    // No reason codes below 5.0: unknown PUBREC / PUBREL are answered plainly.
    s.on_pubrec(pid(7), ReasonCode::Success, 0, &mut out);
    s.on_pubrel(pid(8), &mut out);
    assert_eq!(
        out,
        [
            Packet::PubRel(Ack::new(pid(7))),
            Packet::PubComp(Ack::new(pid(8)))
        ]
    );
}
