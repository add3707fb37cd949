//! Black-box tests of CONNECT and sessions (FEATURES §1): client id rules, server-assigned ids,
//! MQTT 3.1, CONNACK properties, session present, persistent subscriptions, the offline queue
//! and its bound, in-flight resends on resume, receive maximum, takeover across shards, session
//! expiry, DISCONNECT 0x82, keep-alive and the CONNECT deadline. Tests that route messages run
//! with one and with two shards, placing clients on chosen home shards.

mod support;

use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];

fn pid(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

/// A v5 CONNECT with a Session Expiry Interval.
fn v5_connect(id: &str, clean_start: bool, expiry: Option<u32>) -> Connect {
    let mut c = connect_packet(V5, id, clean_start);
    c.properties.session_expiry_interval = expiry;
    c
}

/// A persistent session's CONNECT: clean_session=0 for 3.x, Session Expiry 60 s for v5.
fn persistent(v: ProtocolVersion, id: &str) -> Connect {
    match v {
        ProtocolVersion::V5 => v5_connect(id, false, Some(60)),
        _ => connect_packet(v, id, false),
    }
}

fn connect_ok(broker: &Broker, c: Connect) -> (Raw, ConnAck) {
    let (raw, ack) = Raw::connect_with(broker, c);
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    (raw, ack)
}

/// Lets the broker process a close it has already seen (a DISCONNECT or an EOF).
fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

// ---------------------------------------------------------------------------------------------
// CONNECT

#[test]
fn client_id_longer_than_max_clientid_len_is_refused() {
    let broker = Broker::start_with(2, "[mqtt]\nmax_clientid_len = 23\n", &[]);
    let long = "a".repeat(24);
    let ok = "b".repeat(23);

    let (mut c, ack) = Raw::connect_with(&broker, connect_packet(V5, &long, true));
    assert_eq!(ack.reason, ReasonCode::ClientIdentifierNotValid);
    assert_eq!(ack.reason as u8, 0x85);
    assert!(!ack.session_present);
    c.expect_closed();

    // 3.1.1: return code 2, checked byte for byte.
    let mut c = Raw::open(&broker, V311);
    c.send(&Packet::Connect(Box::new(connect_packet(
        V311, &long, true,
    ))));
    let mut bytes = [0u8; 4];
    std::io::Read::read_exact(&mut c.stream, &mut bytes).unwrap();
    assert_eq!(bytes, [0x20, 0x02, 0x00, 0x02]);
    c.expect_closed();

    // The limit itself is allowed.
    Raw::connect(&broker, V5, &ok, true);
    Raw::connect(&broker, V311, &ok, true);
}

#[test]
fn v311_empty_client_id_needs_clean_session() {
    let broker = Broker::start(2);
    let mut c = Raw::open(&broker, V311);
    c.send(&Packet::Connect(Box::new(connect_packet(V311, "", false))));
    let mut bytes = [0u8; 4];
    std::io::Read::read_exact(&mut c.stream, &mut bytes).unwrap();
    assert_eq!(bytes, [0x20, 0x02, 0x00, 0x02]);
    c.expect_closed();

    let (mut c, ack) = Raw::connect(&broker, V311, "", true);
    assert!(!ack.session_present);
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Some(Packet::PingResp));
}

#[test]
fn v5_empty_client_id_gets_an_assigned_id_that_can_resume() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (mut publ, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "pub"), true);
        let (mut c, ack) = connect_ok(&broker, v5_connect("", true, Some(60)));
        let assigned = ack
            .properties
            .assigned_client_identifier
            .clone()
            .unwrap_or_else(|| panic!("no Assigned Client Identifier: {ack:?}"))
            .to_string();
        assert!(!assigned.is_empty());
        subscribe(&mut c, "assigned/#", QoS::AtLeastOnce);
        sync_route(&mut publ, &mut c, "assigned/0");
        c.disconnect();
        settle();

        publ.publish_to("assigned/1", QoS::AtLeastOnce, b"while away");

        let (mut c, ack) = connect_ok(&broker, v5_connect(&assigned, false, Some(60)));
        assert!(ack.session_present, "shards={shards}: {ack:?}");
        assert_eq!(ack.properties.assigned_client_identifier, None);
        let p = expect_publish(&mut c);
        assert_eq!(&p.payload[..], b"while away");
        c.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));
        // The subscription is still there for new messages too.
        publ.publish_to("assigned/2", QoS::AtLeastOnce, b"live");
        assert_eq!(&expect_publish(&mut c).payload[..], b"live");
    }
}

#[test]
fn mqtt31_clients_talk_to_v5_clients() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let old_id = id_on(0, shards, "v31");
        let new_id = id_on(shards - 1, shards, "v5");
        let (mut old, ack) = Raw::connect(&broker, V31, &old_id, true);
        assert!(!ack.session_present);
        let (mut new, _) = Raw::connect(&broker, V5, &new_id, true);
        subscribe(&mut old, "from/v5", QoS::AtLeastOnce);
        subscribe(&mut new, "from/v31", QoS::AtLeastOnce);
        sync_route(&mut new, &mut old, "from/v5");
        sync_route(&mut old, &mut new, "from/v31");

        new.publish_to("from/v5", QoS::AtLeastOnce, b"hello 3.1");
        let p = expect_publish(&mut old);
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("from/v5", &b"hello 3.1"[..])
        );
        assert_eq!(p.qos, QoS::AtLeastOnce);
        old.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));

        old.publish_to("from/v31", QoS::AtLeastOnce, b"hello 5");
        let p = expect_publish(&mut new);
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("from/v31", &b"hello 5"[..])
        );
        new.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));

        old.send(&publish_packet("from/v31", QoS::AtMostOnce, 0, b"qos0"));
        assert_eq!(&expect_publish(&mut new).payload[..], b"qos0");
    }
}

#[test]
fn v5_connack_properties_match_the_defaults() {
    let broker = Broker::start(2);
    let (_c, ack) = Raw::connect(&broker, V5, "props", true);
    let p = &ack.properties;
    assert_eq!(p.receive_maximum, NonZeroU16::new(32));
    assert_eq!(p.topic_alias_maximum, Some(65535));
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(1 << 20));
    assert_eq!(p.maximum_qos, None, "QoS 2 is available");
    assert_ne!(p.retain_available, Some(false));
    assert_ne!(p.wildcard_subscription_available, Some(false));
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[test]
fn session_present_follows_clean_start_and_persistence() {
    let broker = Broker::start(2);
    for v in [V311, V5] {
        let id = format!("sp-{v:?}");
        let present = |c: Connect| {
            let (raw, ack) = connect_ok(&broker, c);
            raw.disconnect();
            settle();
            ack.session_present
        };
        assert!(!present(persistent(v, &id)), "{v:?}: first connect");
        assert!(present(persistent(v, &id)), "{v:?}: resume");
        assert!(!present(connect_packet(v, &id, true)), "{v:?}: clean start");
        // The clean session (expiry 0) ended at its disconnect.
        assert!(!present(persistent(v, &id)), "{v:?}: after a clean session");
        assert!(present(persistent(v, &id)), "{v:?}: resume again");
    }
    // v5 clean_start=0 without a Session Expiry Interval: the session ends at disconnect.
    assert!(
        !connect_ok(&broker, v5_connect("sp-noexp", false, None))
            .1
            .session_present
    );
    settle();
    let (_c, ack) = connect_ok(&broker, v5_connect("sp-noexp", false, None));
    assert!(!ack.session_present);
}

#[test]
fn subscriptions_survive_persistent_reconnect_only() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (mut publ, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "pub"), true);
        for v in [V311, V5] {
            let id = id_on(0, shards, &format!("keep-{v:?}"));
            let topic = format!("keep/{v:?}");
            let (mut c, _) = connect_ok(&broker, persistent(v, &id));
            subscribe(&mut c, &topic, QoS::AtMostOnce);
            sync_route(&mut publ, &mut c, &topic);
            c.disconnect();
            settle();
            let (mut c, ack) = connect_ok(&broker, persistent(v, &id));
            assert!(ack.session_present);
            publ.publish_to(&topic, QoS::AtMostOnce, b"kept");
            assert_eq!(&expect_publish(&mut c).payload[..], b"kept", "{v:?}");
            c.disconnect();
            settle();

            // A clean session's subscription is gone after a reconnect.
            let id = id_on(0, shards, &format!("clean-{v:?}"));
            let topic = format!("clean/{v:?}");
            let (mut c, _) = Raw::connect(&broker, v, &id, true);
            subscribe(&mut c, &topic, QoS::AtMostOnce);
            sync_route(&mut publ, &mut c, &topic);
            c.disconnect();
            settle();
            let (mut c, ack) = Raw::connect(&broker, v, &id, true);
            assert!(!ack.session_present);
            publ.publish_to(&topic, QoS::AtMostOnce, b"gone");
            c.expect_silence(Duration::from_secs(1));
        }
    }
}

/// Waits for a rumqttc event matching `want`.
fn rumq_wait<T>(
    conn: &mut rumqttc::Connection,
    mut want: impl FnMut(rumqttc::Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(e)) => {
                if let Some(t) = want(e) {
                    return t;
                }
            }
            Ok(Err(e)) => panic!("rumqttc: {e:?}"),
            Err(_) => {}
        }
    }
    panic!("rumqttc: timed out");
}

#[test]
fn offline_messages_reach_a_rumqttc_persistent_session() {
    use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet as P, QoS as Q};
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let id = id_on(0, shards, "rumq");
        let options = || {
            let mut o = MqttOptions::new(&id, "127.0.0.1", broker.port);
            o.set_clean_session(false)
                .set_keep_alive(Duration::from_secs(30));
            o
        };
        let (mut publ, _) = Raw::connect(&broker, V311, &id_on(shards - 1, shards, "pub"), true);
        let (client, mut conn) = Client::new(options(), 10);
        let present = rumq_wait(&mut conn, |e| match e {
            Event::Incoming(P::ConnAck(a)) => Some(a.session_present),
            _ => None,
        });
        assert!(!present);
        client.subscribe("rq/#", Q::AtLeastOnce).unwrap();
        rumq_wait(&mut conn, |e| {
            matches!(e, Event::Incoming(P::SubAck(_))).then_some(())
        });
        // Route updates cross shards after the SUBACK: probe until one arrives.
        let deadline = Instant::now() + WAIT;
        'probe: loop {
            assert!(Instant::now() < deadline, "no route");
            publ.publish_to("rq/probe", QoS::AtMostOnce, b"probe");
            while let Ok(Ok(e)) = conn.recv_timeout(Duration::from_millis(100)) {
                if matches!(e, Event::Incoming(P::Publish(_))) {
                    break 'probe;
                }
            }
        }
        while conn.recv_timeout(Duration::from_millis(300)).is_ok() {}
        client.disconnect().unwrap();
        rumq_wait(&mut conn, |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        });
        drop((client, conn));
        settle();

        for n in 0..3u8 {
            publ.publish_to(&format!("rq/{n}"), QoS::AtLeastOnce, &[n]);
        }

        let (_client, mut conn) = Client::new(options(), 10);
        let present = rumq_wait(&mut conn, |e| match e {
            Event::Incoming(P::ConnAck(a)) => Some(a.session_present),
            _ => None,
        });
        assert!(present, "shards={shards}");
        for n in 0..3u8 {
            let p = rumq_wait(&mut conn, |e| match e {
                Event::Incoming(P::Publish(p)) => Some(p),
                _ => None,
            });
            assert_eq!(
                (p.topic.as_str(), &p.payload[..]),
                (format!("rq/{n}").as_str(), &[n][..])
            );
        }
    }
}

/// A persistent v5 subscriber on `shard` subscribed to `filter` at QoS 1, then disconnected.
/// `publ` must be able to publish to `probe`, a topic matching `filter`.
fn offline_subscriber(
    broker: &Broker,
    publ: &mut Raw,
    shard: usize,
    prefix: &str,
    filter: &str,
    probe: &str,
) -> String {
    let id = id_on(shard, broker.shards, prefix);
    let (mut c, _) = connect_ok(broker, v5_connect(&id, true, Some(60)));
    subscribe(&mut c, filter, QoS::AtLeastOnce);
    sync_route(publ, &mut c, probe);
    c.disconnect();
    settle();
    id
}

/// A QoS 0 subscriber of `filter` on `shard`, created after `filter` already has a subscriber
/// there: a message routed to that shard reaches every local subscriber at once, so once this
/// one has seen a message, so has every session on the shard.
fn watcher(broker: &Broker, shard: usize, filter: &str) -> Raw {
    let (mut w, _) = Raw::connect(broker, V5, &id_on(shard, broker.shards, "watch"), true);
    subscribe(&mut w, filter, QoS::AtMostOnce);
    w
}

/// Reads `w`'s messages up to the one with `payload`.
fn wait_for(w: &mut Raw, payload: &[u8]) {
    while &expect_publish(w).payload[..] != payload {}
}

#[test]
fn offline_queue_is_delivered_in_order_on_reconnect() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (mut publ, _) = Raw::connect(&broker, V311, &id_on(shards - 1, shards, "pub"), true);
        let id = offline_subscriber(&broker, &mut publ, 0, "offline", "q/#", "q/probe");
        let mut w = watcher(&broker, 0, "q/#");
        for n in 0..10u8 {
            let q = if n % 3 == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            publ.publish_to(&format!("q/{n}"), q, &[n]);
        }
        wait_for(&mut w, &[9]);
        let (mut c, ack) = connect_ok(&broker, v5_connect(&id, false, Some(60)));
        assert!(ack.session_present);
        for n in 0..10u8 {
            let p = expect_publish(&mut c);
            assert_eq!(&p.payload[..], &[n], "shards={shards}");
            assert!(!p.dup);
            if let Some(id) = p.packet_id {
                c.send(&Packet::PubAck(Ack::new(id)));
            }
        }
        c.expect_silence(Duration::from_millis(500));
    }
}

#[test]
fn offline_queue_keeps_the_newest_max_mqueue_len() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nmax_mqueue_len = 3\n", &[]);
        let (mut publ, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "pub"), true);
        let id = offline_subscriber(&broker, &mut publ, 0, "bounded", "b/#", "b/probe");
        let mut w = watcher(&broker, 0, "b/#");
        for n in 1..=6u8 {
            publ.publish_to("b/x", QoS::AtLeastOnce, &[n]);
        }
        // All six reached the offline session before it resumes.
        wait_for(&mut w, &[6]);
        let (mut c, ack) = connect_ok(&broker, v5_connect(&id, false, Some(60)));
        assert!(ack.session_present);
        for n in 4..=6u8 {
            let p = expect_publish(&mut c);
            assert_eq!(&p.payload[..], &[n], "shards={shards}");
            c.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));
        }
        c.expect_silence(Duration::from_secs(1));
    }
}

#[test]
fn unacked_qos1_is_resent_with_dup_and_the_same_packet_id() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        for v in [V311, V5] {
            let id = id_on(0, shards, &format!("dup-{v:?}"));
            let (mut publ, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "pub"), true);
            let (mut c, _) = connect_ok(&broker, persistent(v, &id));
            subscribe(&mut c, "d/#", QoS::AtLeastOnce);
            sync_route(&mut publ, &mut c, "d/probe");
            publ.publish_to("d/1", QoS::AtLeastOnce, b"first");
            publ.publish_to("d/2", QoS::AtLeastOnce, b"second");
            let a = expect_publish(&mut c);
            let b = expect_publish(&mut c);
            assert!(!a.dup && !b.dup);
            // The second one is acknowledged, the first is not.
            c.send(&Packet::PubAck(Ack::new(b.packet_id.unwrap())));
            settle();
            c.abort();
            settle();

            let (mut c, ack) = connect_ok(&broker, persistent(v, &id));
            assert!(ack.session_present);
            let again = expect_publish(&mut c);
            assert!(again.dup, "{v:?}: {again:?}");
            assert_eq!(again.packet_id, a.packet_id);
            assert_eq!(again.qos, QoS::AtLeastOnce);
            assert_eq!(
                (again.topic.as_str(), &again.payload[..]),
                ("d/1", &b"first"[..])
            );
            c.send(&Packet::PubAck(Ack::new(again.packet_id.unwrap())));
            c.expect_silence(Duration::from_millis(500));
            c.disconnect();
        }
    }
}

#[test]
fn pubrec_without_pubcomp_gets_a_pubrel_on_resume() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        for v in [V311, V5] {
            let id = id_on(0, shards, &format!("rel-{v:?}"));
            let (mut publ, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "pub"), true);
            let (mut c, _) = connect_ok(&broker, persistent(v, &id));
            subscribe(&mut c, "e/#", QoS::ExactlyOnce);
            sync_route(&mut publ, &mut c, "e/probe");
            publ.send(&publish_packet("e/1", QoS::ExactlyOnce, 9, b"once"));
            assert!(matches!(publ.recv(), Some(Packet::PubRec(_))));
            publ.send(&Packet::PubRel(Ack::new(pid(9))));
            assert!(matches!(publ.recv(), Some(Packet::PubComp(_))));

            let p = expect_publish(&mut c);
            assert_eq!(p.qos, QoS::ExactlyOnce);
            let id2 = p.packet_id.unwrap();
            c.send(&Packet::PubRec(Ack::new(id2)));
            match c.recv() {
                Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id2),
                other => panic!("expected PUBREL, got {other:?}"),
            }
            c.abort();
            settle();

            let (mut c, ack) = connect_ok(&broker, persistent(v, &id));
            assert!(ack.session_present);
            match c.recv() {
                Some(Packet::PubRel(r)) => assert_eq!(r.packet_id, id2, "{v:?}"),
                other => panic!("{v:?}: expected PUBREL, got {other:?}"),
            }
            c.send(&Packet::PubComp(Ack::new(id2)));
            // Not delivered again.
            c.expect_silence(Duration::from_millis(500));
            c.disconnect();
        }
    }
}

#[test]
fn receive_maximum_bounds_unacked_qos1() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let id = id_on(0, shards, "rm");
        let mut conn = connect_packet(V5, &id, true);
        conn.properties.receive_maximum = NonZeroU16::new(2);
        let (mut publ, _) = Raw::connect(&broker, V311, &id_on(shards - 1, shards, "pub"), true);
        let (mut c, _) = connect_ok(&broker, conn);
        subscribe(&mut c, "rm/#", QoS::AtLeastOnce);
        sync_route(&mut publ, &mut c, "rm/probe");
        for n in 0..5u8 {
            publ.publish_to("rm/x", QoS::AtLeastOnce, &[n]);
        }
        let a = expect_publish(&mut c);
        let b = expect_publish(&mut c);
        assert_eq!((&a.payload[..], &b.payload[..]), (&[0u8][..], &[1u8][..]));
        c.expect_silence(Duration::from_secs(1));
        c.send(&Packet::PubAck(Ack::new(a.packet_id.unwrap())));
        let d = expect_publish(&mut c);
        assert_eq!(&d.payload[..], &[2]);
        c.expect_silence(Duration::from_millis(500));
        c.send(&Packet::PubAck(Ack::new(b.packet_id.unwrap())));
        c.send(&Packet::PubAck(Ack::new(d.packet_id.unwrap())));
        for n in 3..5u8 {
            let p = expect_publish(&mut c);
            assert_eq!(&p.payload[..], &[n], "shards={shards}");
            c.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));
        }
    }
}

#[test]
fn takeover_from_any_accepting_shard_keeps_the_session() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        for v in [V311, V5] {
            for home in 0..shards {
                let id = id_on(home, shards, &format!("take-{v:?}"));
                let topic = format!("take/{v:?}/{home}");
                let (mut current, ack) = connect_ok(&broker, persistent(v, &id));
                assert!(!ack.session_present);
                subscribe(&mut current, &topic, QoS::AtLeastOnce);
                // Several connections, so that both shards' accept paths are used.
                for round in 0..6 {
                    let (next, ack) = connect_ok(&broker, persistent(v, &id));
                    assert!(ack.session_present, "{v:?} round {round}");
                    let got = current.expect_closed();
                    if v == V5 {
                        assert!(
                            matches!(got.as_slice(), [Packet::Disconnect(d)]
                                if d.reason == ReasonCode::SessionTakenOver),
                            "{got:?}"
                        );
                    } else {
                        assert!(got.is_empty(), "{got:?}");
                    }
                    current = next;
                }
                let (mut publ, _) =
                    Raw::connect(&broker, V5, &id_on(shards - 1 - home, shards, "pub"), true);
                publ.publish_to(&topic, QoS::AtLeastOnce, b"still subscribed");
                let p = expect_publish(&mut current);
                assert_eq!(&p.payload[..], b"still subscribed");
            }
        }
    }
}

#[test]
fn session_expiry_interval_ends_the_session() {
    let broker = Broker::start(2);
    let id = id_on(1, 2, "exp");
    let (c, _) = connect_ok(&broker, v5_connect(&id, true, Some(1)));
    c.disconnect();
    std::thread::sleep(Duration::from_secs(3));
    let (c, ack) = connect_ok(&broker, v5_connect(&id, false, Some(1)));
    assert!(!ack.session_present, "the session should have expired");
    c.abort();

    // Control: a longer expiry survives the same wait.
    let id = id_on(1, 2, "exp-long");
    let (c, _) = connect_ok(&broker, v5_connect(&id, true, Some(30)));
    c.disconnect();
    std::thread::sleep(Duration::from_secs(3));
    let (_c, ack) = connect_ok(&broker, v5_connect(&id, false, Some(30)));
    assert!(ack.session_present);
}

#[test]
fn disconnect_raising_session_expiry_from_zero_is_a_protocol_error() {
    let broker = Broker::start(2);
    let (mut c, _) = connect_ok(&broker, v5_connect("raise", true, None));
    let mut d = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    d.properties.session_expiry_interval = Some(60);
    c.send(&Packet::Disconnect(d));
    let got = c.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::ProtocolError),
        "{got:?}"
    );

    // From >0 to another value is allowed: no DISCONNECT back.
    let (mut c, _) = connect_ok(&broker, v5_connect("lower", true, Some(60)));
    let mut d = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    d.properties.session_expiry_interval = Some(120);
    c.send(&Packet::Disconnect(d));
    assert_eq!(c.expect_closed(), vec![]);
}

#[test]
fn keep_alive_silence_closes_the_connection() {
    let broker = Broker::start(2);
    for v in [V311, V5] {
        let mut conn = connect_packet(v, &format!("ka-{v:?}"), true);
        conn.keep_alive = 1;
        let (mut c, _) = connect_ok(&broker, conn);
        let got = c.expect_closed();
        if v == V5 {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)]
                    if d.reason == ReasonCode::KeepAliveTimeout),
                "{got:?}"
            );
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
    }
}

#[test]
fn pingreq_gets_pingresp_and_keeps_the_connection() {
    let broker = Broker::start(2);
    for v in [V311, V5] {
        let mut conn = connect_packet(v, &format!("ping-{v:?}"), true);
        conn.keep_alive = 1;
        let (mut c, _) = connect_ok(&broker, conn);
        // A PINGREQ every keep-alive period, as a client does, for several periods.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_secs(1));
            c.send(&Packet::PingReq);
            assert_eq!(c.recv(), Some(Packet::PingResp), "{v:?}");
        }
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(), Some(Packet::PingResp));
    }
}

#[test]
fn idle_timeout_closes_a_connection_without_connect() {
    let broker = Broker::start_with(2, "[mqtt]\nidle_timeout = \"1s\"\n", &[]);
    let start = Instant::now();
    let mut idle = Raw::open(&broker, V311);
    assert_eq!(idle.expect_closed(), vec![]);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    // A client that connects in time is not affected.
    let (mut c, _) = Raw::connect(&broker, V5, "in-time", true);
    std::thread::sleep(Duration::from_secs(2));
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Some(Packet::PingResp));
}
