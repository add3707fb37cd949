//! Inbound QoS 2, Receive Maximum and topic alias tests for the session of a client's home shard.

use super::*;

#[test]
fn inbound_qos2_duplicates_suppressed_and_pubrel_completes() {
    let mut s = session(SessionConfig::default(), v5(10));
    let mut out = Vec::new();
    assert_eq!(s.on_inbound_qos2(pid(1), 0), Ok(Qos2Inbound::New));
    assert_eq!(s.on_inbound_qos2(pid(1), 0), Ok(Qos2Inbound::Duplicate));
    s.ack_inbound_qos2(pid(1), ReasonCode::Success, &mut out);
    assert!(s.on_pubrel(pid(1), &mut out));
    assert!(!s.on_pubrel(pid(1), &mut out));
    assert_eq!(
        view(&mut out),
        [
            ("REC", 1, false, "Success".into()),
            ("COMP", 1, false, "Success".into()),
            ("COMP", 1, false, "PacketIdentifierNotFound".into()),
        ]
    );
    // After PUBCOMP the id is new again; an error PUBREC forgets it as well.
    assert_eq!(s.on_inbound_qos2(pid(1), 0), Ok(Qos2Inbound::New));
    s.ack_inbound_qos2(pid(1), ReasonCode::NotAuthorized, &mut out);
    assert_eq!(s.on_inbound_qos2(pid(1), 0), Ok(Qos2Inbound::New));
}

#[test]
fn inbound_qos2_await_rel_timeout_and_full() {
    let cfg = SessionConfig {
        max_awaiting_rel: 2,
        await_rel_timeout_ms: 1_000,
        ..Default::default()
    };
    let mut s = session(cfg, v5(10));
    let mut out = Vec::new();
    assert_eq!(s.next_deadline(), None);
    assert_eq!(s.on_inbound_qos2(pid(1), 0), Ok(Qos2Inbound::New));
    assert_eq!(s.on_inbound_qos2(pid(2), 500), Ok(Qos2Inbound::New));
    assert_eq!(s.on_inbound_qos2(pid(3), 500), Ok(Qos2Inbound::Full));
    assert_eq!(s.counters().dropped_awaiting_full, 1);
    s.ack_inbound_qos2(pid(3), ReasonCode::QuotaExceeded, &mut out);
    assert_eq!(view(&mut out), [("REC", 3, false, "QuotaExceeded".into())]);
    assert_eq!(s.next_deadline(), Some(1_000));
    assert_eq!(s.tick(999), 0);
    assert_eq!(s.tick(1_000), 1);
    assert_eq!(s.next_deadline(), Some(1_500));
    assert!(!s.on_pubrel(pid(1), &mut out), "expired id is unknown");
    assert!(s.on_pubrel(pid(2), &mut out));
    assert_eq!(s.counters().awaiting_rel_expired, 1);
    assert_eq!(s.awaiting_rel_len(), 0);
}

#[test]
fn inbound_receive_maximum_exceeded() {
    let cfg = SessionConfig {
        server_receive_maximum: 2,
        ..Default::default()
    };
    let mut s = session(cfg, v5(10));
    let mut out = Vec::new();
    assert_eq!(s.on_inbound_qos1(), Ok(()));
    assert_eq!(s.on_inbound_qos2(pid(2), 0), Ok(Qos2Inbound::New));
    assert_eq!(s.on_inbound_qos1(), Err(ReasonCode::ReceiveMaximumExceeded));
    assert_eq!(
        s.on_inbound_qos2(pid(3), 0),
        Err(ReasonCode::ReceiveMaximumExceeded)
    );
    // A duplicate on the same connection takes no extra quota.
    assert_eq!(s.on_inbound_qos2(pid(2), 0), Ok(Qos2Inbound::Duplicate));
    s.ack_inbound_qos1(pid(1), ReasonCode::Success, &mut out);
    assert_eq!(s.on_inbound_qos1(), Ok(()));
    assert_eq!(s.on_inbound_qos1(), Err(ReasonCode::ReceiveMaximumExceeded));
    // The quota is per connection; the kept QoS 2 id counts again when resent.
    s.disconnect();
    s.resume(v5(10), 0, &mut out);
    assert_eq!(s.on_inbound_qos2(pid(2), 0), Ok(Qos2Inbound::Duplicate));
    assert_eq!(s.on_inbound_qos1(), Ok(()));
    assert_eq!(s.on_inbound_qos1(), Err(ReasonCode::ReceiveMaximumExceeded));
    assert!(s.on_pubrel(pid(2), &mut out));
    assert_eq!(s.on_inbound_qos1(), Ok(()));
}

#[test]
fn inbound_topic_alias_cases() {
    let cfg = SessionConfig {
        max_topic_alias: 10,
        ..Default::default()
    };
    let mut s = session(cfg, v5(10));
    let publish = |topic: &str, alias: u16| Publish {
        topic: topic.into(),
        properties: PublishProperties {
            topic_alias: NonZeroU16::new(alias),
            ..Default::default()
        },
        ..Default::default()
    };
    // (topic, alias, expected result, expected topic afterwards)
    let table: [(&str, u16, Result<(), ReasonCode>, &str); 7] = [
        ("", 1, Err(ReasonCode::ProtocolError), ""),
        ("a/b", 11, Err(ReasonCode::TopicAliasInvalid), "a/b"),
        ("a/b", 1, Ok(()), "a/b"),
        ("", 1, Ok(()), "a/b"),
        ("", 2, Err(ReasonCode::ProtocolError), ""),
        ("c", 1, Ok(()), "c"),
        ("", 1, Ok(()), "c"),
    ];
    for (topic, alias, want, want_topic) in table {
        let mut pb = publish(topic, alias);
        assert_eq!(s.resolve_topic_alias(&mut pb), want, "{topic:?} {alias}");
        assert_eq!(pb.topic, want_topic);
    }
    let mut plain = publish("x", 0);
    assert_eq!(s.resolve_topic_alias(&mut plain), Ok(()));
    // Inbound aliases are per connection too.
    s.disconnect();
    s.resume(v5(10), 0, &mut Vec::new());
    assert_eq!(
        s.resolve_topic_alias(&mut publish("", 1)),
        Err(ReasonCode::ProtocolError)
    );
    // An advertised maximum of 0 allows none.
    let mut s = session(
        SessionConfig {
            max_topic_alias: 0,
            ..Default::default()
        },
        v5(10),
    );
    assert_eq!(
        s.resolve_topic_alias(&mut publish("a", 1)),
        Err(ReasonCode::TopicAliasInvalid)
    );
}
