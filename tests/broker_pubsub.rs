//! Publish / subscribe over TCP (FEATURES.md §1): QoS, ordering, versions, topic matching,
//! `$SYS`, and the v5 publish features (No Local, subscription identifiers, properties, message
//! expiry, topic aliases, packet sizes, server limits). Every test runs with 1 and 2 shards, with
//! publisher and subscriber on different home shards when there are two.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];
const QUIET: Duration = Duration::from_millis(700);

/// Connects a v5 client with CONNECT properties `props`.
fn connect_v5(broker: &Broker, id: &str, clean: bool, props: ConnectProperties) -> (Raw, ConnAck) {
    let mut c = connect_packet(V5, id, clean);
    c.properties = props;
    let (raw, ack) = Raw::connect_with(broker, c);
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    (raw, ack)
}

/// Sub on shard 0 and pub on the last shard.
fn ids(shards: usize, test: &str) -> (String, String) {
    (
        id_on(0, shards, &format!("{test}-sub")),
        id_on(shards - 1, shards, &format!("{test}-pub")),
    )
}

fn expect_disconnect(c: &mut Raw, reason: ReasonCode) {
    let got = c.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == reason),
        "expected DISCONNECT {reason:?}, got {got:?}"
    );
}

#[test]
fn delivery_qos_is_min_of_publish_and_granted() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "minq");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        for g in 0..3 {
            sub.subscribe(&format!("q/g{g}"), g);
        }
        let (mut publ, _) = Raw::connect(&broker, V311, &pid, true);
        for p in 0..3u8 {
            for g in 0..3u8 {
                let payload = format!("p{p}g{g}");
                publ.publish(publish(&format!("q/g{g}"), qos(p), 10, payload.as_bytes()));
                let got = sub.recv_publish();
                assert_eq!(got.payload, payload.as_bytes(), "shards={shards}");
                assert_eq!(got.qos, qos(p.min(g)), "shards={shards} {payload}");
            }
        }
        sub.expect_no_publish(QUIET);
    }
}

#[test]
fn qos2_resent_with_dup_before_pubrel_is_delivered_once() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "eo");
        let (mut sub, _) = Raw::connect(&broker, V311, &sid, true);
        sub.subscribe("eo/t", 2);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let id = NonZeroU16::new(5).unwrap();
        let mut p = publish("eo/t", QoS::ExactlyOnce, 5, b"once");
        publ.send(&Packet::Publish(p.clone()));
        assert!(
            matches!(publ.recv(), Some(Packet::PubRec(a)) if a.packet_id == id && a.reason == ReasonCode::Success)
        );
        p.dup = true;
        for _ in 0..2 {
            publ.send(&Packet::Publish(p.clone()));
            assert!(
                matches!(publ.recv(), Some(Packet::PubRec(a)) if a.packet_id == id && !a.reason.is_error())
            );
        }
        publ.send(&Packet::PubRel(Ack::new(id)));
        assert!(
            matches!(publ.recv(), Some(Packet::PubComp(a)) if a.packet_id == id && a.reason == ReasonCode::Success)
        );
        let got = sub.recv_publish();
        assert_eq!(
            (got.qos, &got.payload[..]),
            (QoS::ExactlyOnce, &b"once"[..])
        );
        sub.expect_no_publish(QUIET);
        // The id is free again: a new message with it is a new message.
        publ.publish(publish("eo/t", QoS::ExactlyOnce, 5, b"again"));
        assert_eq!(sub.recv_publish().payload, &b"again"[..]);
        sub.expect_no_publish(QUIET);
    }
}

#[test]
fn per_publisher_order_is_kept_across_shards() {
    const N: usize = 2000;
    for shards in SHARDS {
        // A queue long enough that a slow subscriber loses nothing (ordering is the point here).
        let broker = Broker::start_with(shards, "[mqtt]\nmax_mqueue_len = 100000\n", &[]);
        let (sid, pid) = ids(shards, "order");
        // The subscriber is rumqttc (v5), acknowledging by itself.
        let mut o = rumqttc::v5::MqttOptions::new(sid, "127.0.0.1", broker.port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut conn) = rumqttc::v5::Client::new(o, 64);
        client
            .subscribe("order/t", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .unwrap();
        wait_rumqttc_v5_suback(&mut conn);
        let (mut publ, _) = Raw::connect(&broker, V311, &pid, true);
        // Pipelined: every PUBLISH is written before any PUBACK is read.
        for i in 0..N {
            let id = (i % 60_000 + 1) as u16;
            publ.send(&Packet::Publish(publish(
                "order/t",
                QoS::AtLeastOnce,
                id,
                i.to_string().as_bytes(),
            )));
        }
        let mut got = Vec::with_capacity(N);
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < N && Instant::now() < deadline {
            match conn.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)))) => {
                    assert_eq!(p.qos, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
                    got.push(String::from_utf8(p.payload.to_vec()).unwrap());
                }
                Ok(Ok(_)) => {}
                other => panic!("shards={shards}: after {} messages: {other:?}", got.len()),
            }
        }
        let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
        assert_eq!(got.len(), N, "shards={shards}");
        assert!(got == want, "shards={shards}: messages out of order");
        for _ in 0..N {
            assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
        }
    }
}

fn wait_rumqttc_v5_suback(conn: &mut rumqttc::v5::Connection) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::SubAck(_)))) =
            conn.recv_timeout(Duration::from_secs(1))
        {
            return;
        }
    }
    panic!("no SUBACK");
}

fn wait_rumqttc_suback(conn: &mut rumqttc::Connection) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_)))) =
            conn.recv_timeout(Duration::from_secs(1))
        {
            return;
        }
    }
    panic!("no SUBACK");
}

#[test]
fn v31_v311_and_v5_clients_exchange_messages_in_every_direction() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let versions = [(V31, "v31"), (V311, "v311"), (V5, "v5")];
        let mut clients: Vec<Raw> = versions
            .iter()
            .enumerate()
            .map(|(i, (v, name))| {
                let id = id_on(i % shards, shards, &format!("ver-{name}"));
                let (mut c, _) = Raw::connect(&broker, *v, &id, true);
                c.subscribe("ver/#", 2);
                c
            })
            .collect();
        for (i, (_, name)) in versions.iter().enumerate() {
            for q in 0..3 {
                let topic = format!("ver/{name}/{q}");
                clients[i].publish(publish(&topic, qos(q), 1, name.as_bytes()));
                for (j, c) in clients.iter_mut().enumerate() {
                    let p = c.recv_publish();
                    assert_eq!(
                        (p.topic.to_string(), p.qos, &p.payload[..]),
                        (topic.clone(), qos(q), name.as_bytes()),
                        "shards={shards}: {} -> {}",
                        name,
                        versions[j].1
                    );
                    assert_eq!(p.properties, PublishProperties::default());
                }
            }
        }
        for c in &mut clients {
            c.expect_no_publish(QUIET);
        }
    }
}

#[test]
fn rumqttc_v311_and_v5_clients_exchange_messages() {
    use rumqttc::v5::mqttbytes::QoS as Q5;
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "rq");
        let (c4, mut conn4) =
            rumqttc::Client::new(rumqttc::MqttOptions::new(sid, "127.0.0.1", broker.port), 16);
        let (c5, mut conn5) = rumqttc::v5::Client::new(
            rumqttc::v5::MqttOptions::new(pid, "127.0.0.1", broker.port),
            16,
        );
        c4.subscribe("rq/from5", rumqttc::QoS::ExactlyOnce).unwrap();
        wait_rumqttc_suback(&mut conn4);
        c5.subscribe("rq/from4", Q5::ExactlyOnce).unwrap();
        wait_rumqttc_v5_suback(&mut conn5);
        c4.publish("rq/from4", rumqttc::QoS::ExactlyOnce, false, "hello5")
            .unwrap();
        c5.publish("rq/from5", Q5::AtLeastOnce, false, "hello4")
            .unwrap();
        // Both event loops must be polled for either side to make progress.
        let (mut got4, mut got5) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while (got4.is_none() || got5.is_none()) && Instant::now() < deadline {
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)))) =
                conn4.recv_timeout(Duration::from_millis(50))
            {
                got4 = Some((p.topic.clone(), p.qos, p.payload.clone()));
            }
            if let Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)))) =
                conn5.recv_timeout(Duration::from_millis(50))
            {
                got5 = Some((p.topic.clone(), p.qos, p.payload.clone()));
            }
        }
        assert_eq!(
            got4,
            Some((
                "rq/from5".to_string(),
                rumqttc::QoS::AtLeastOnce,
                Bytes::from_static(b"hello4")
            )),
            "shards={shards}"
        );
        assert_eq!(
            got5,
            Some((
                Bytes::from_static(b"rq/from4"),
                Q5::ExactlyOnce,
                Bytes::from_static(b"hello5")
            )),
            "shards={shards}"
        );
    }
}

#[test]
fn overlapping_subscriptions_deliver_at_the_highest_granted_qos() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "ovl");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("ovl/+", 0);
        sub.subscribe("ovl/#", 2);
        sub.subscribe("ovl/x", 1);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        publ.publish(publish("ovl/x", QoS::ExactlyOnce, 1, b"m"));
        let got = sub.drain_publishes(QUIET);
        assert!(
            (1..=3).contains(&got.len()),
            "shards={shards}: {} copies",
            got.len()
        );
        assert!(
            got.iter()
                .all(|p| p.topic == "ovl/x" && p.payload == b"m"[..])
        );
        let top = got.iter().map(|p| p.qos).max().unwrap();
        assert_eq!(top, QoS::ExactlyOnce, "shards={shards}: {got:?}");
        // A message matching only one of them comes once, at that subscription's QoS.
        publ.publish(publish("ovl/y/z", QoS::ExactlyOnce, 2, b"n"));
        let got = sub.drain_publishes(QUIET);
        assert_eq!(got.len(), 1, "shards={shards}");
        assert_eq!(got[0].qos, QoS::ExactlyOnce);
    }
}

#[test]
fn wildcards_match_and_dollar_topics_are_not_matched_by_first_level_wildcards() {
    let filters = [
        "#", "+/b", "a/+", "a/#", "+/+", "+", "$x/#", "$x/+", "a/b/c",
    ];
    let topics = ["a/b", "a", "a/b/c", "$x/b", "/b", "b"];
    let expected: HashMap<&str, Vec<&str>> = HashMap::from([
        ("#", vec!["a/b", "a", "a/b/c", "/b", "b"]),
        ("+/b", vec!["a/b", "/b"]),
        ("a/+", vec!["a/b"]),
        ("a/#", vec!["a/b", "a", "a/b/c"]),
        ("+/+", vec!["a/b", "/b"]),
        ("+", vec!["a", "b"]),
        ("$x/#", vec!["$x/b"]),
        ("$x/+", vec!["$x/b"]),
        ("a/b/c", vec!["a/b/c"]),
    ]);
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut subs: Vec<Raw> = filters
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let id = id_on(i % shards, shards, &format!("wc-sub{i}"));
                let (mut c, _) = Raw::connect(&broker, V311, &id, true);
                c.subscribe(f, 1);
                c
            })
            .collect();
        let (mut publ, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "wc-pub"), true);
        for t in topics {
            publ.publish(publish(t, QoS::AtLeastOnce, 1, t.as_bytes()));
        }
        for (f, c) in filters.iter().zip(&mut subs) {
            let got: Vec<String> = c
                .drain_publishes(QUIET)
                .iter()
                .map(|p| p.topic.to_string())
                .collect();
            assert_eq!(got, expected[f], "shards={shards} filter {f}");
        }
    }
}

#[test]
fn clients_cannot_publish_to_sys_topics() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "sys");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("$SYS/#", 1);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let reason = publ.publish(publish("$SYS/brokers/fake/x", QoS::AtLeastOnce, 1, b"no"));
        assert!(reason.is_error(), "shards={shards}: PUBACK {reason:?}");
        publ.publish(publish("$SYS/brokers/fake/y", QoS::AtMostOnce, 0, b"no"));
        let reason = publ.publish(publish("$SYS/brokers/fake/z", QoS::ExactlyOnce, 2, b"no"));
        assert!(reason.is_error(), "shards={shards}: PUBREC {reason:?}");
        // The broker's own $SYS messages may arrive; the client's must not.
        let got = sub.drain_publishes(Duration::from_secs(1));
        assert!(
            got.iter().all(|p| !p.topic.contains("fake")),
            "shards={shards}: {got:?}"
        );
    }
}

#[test]
fn v5_puback_is_0x10_without_subscribers_and_0x00_with_one_on_any_shard() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (mut publ, _) = Raw::connect(&broker, V5, &id_on(0, shards, "nm-pub"), true);
        assert_eq!(
            publ.publish(publish("nm/t", QoS::AtLeastOnce, 1, b"x")),
            ReasonCode::NoMatchingSubscribers
        );
        assert_eq!(
            publ.publish(publish("nm/t", QoS::ExactlyOnce, 2, b"x")),
            ReasonCode::NoMatchingSubscribers
        );
        for shard in 0..shards {
            let (mut sub, _) = Raw::connect(&broker, V5, &id_on(shard, shards, "nm-sub"), true);
            sub.subscribe("nm/+", 0);
            assert_eq!(
                publ.publish(publish("nm/t", QoS::AtLeastOnce, 3, b"y")),
                ReasonCode::Success,
                "shards={shards} subscriber on shard {shard}"
            );
            assert_eq!(
                publ.publish(publish("nm/t", QoS::ExactlyOnce, 4, b"y")),
                ReasonCode::Success,
                "shards={shards} subscriber on shard {shard}"
            );
            assert_eq!(sub.recv_publish().payload, &b"y"[..]);
            assert_eq!(sub.recv_publish().payload, &b"y"[..]);
            // The subscription ends with the clean session.
            sub.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
            sub.expect_closed();
            let deadline = Instant::now() + WAIT;
            loop {
                let r = publ.publish(publish("nm/t", QoS::AtLeastOnce, 5, b"z"));
                if r == ReasonCode::NoMatchingSubscribers {
                    break;
                }
                assert!(Instant::now() < deadline, "route not removed: {r:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn v5_no_local() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (aid, bid) = ids(shards, "nl");
        let nl = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            ..Default::default()
        };
        let (mut a, _) = Raw::connect(&broker, V5, &aid, true);
        let (mut b, _) = Raw::connect(&broker, V5, &bid, true);
        assert_eq!(
            a.subscribe_with(&[("nl/t", nl)], None),
            [ReasonCode::GrantedQos1]
        );
        assert_eq!(
            b.subscribe_with(&[("nl/#", nl)], None),
            [ReasonCode::GrantedQos1]
        );
        // QoS 0 so that the publisher's own acknowledgement is the only thing it reads.
        a.publish(publish("nl/t", QoS::AtMostOnce, 0, b"from-a"));
        b.publish(publish("nl/t", QoS::AtMostOnce, 0, b"from-b"));
        assert_eq!(a.recv_publish().payload, &b"from-b"[..], "shards={shards}");
        assert_eq!(b.recv_publish().payload, &b"from-a"[..], "shards={shards}");
        a.expect_no_publish(QUIET);
        b.expect_no_publish(QUIET);
        // Without No Local a client gets its own message.
        a.subscribe("nl/+", 0);
        a.publish(publish("nl/t", QoS::AtMostOnce, 0, b"own"));
        let got = a.drain_publishes(QUIET);
        assert_eq!(got.len(), 1, "shards={shards}: {got:?}");
        assert_eq!(got[0].payload, &b"own"[..]);
    }
}

#[test]
fn v5_subscription_identifiers_are_forwarded() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "sid");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe_with(&[("sid/+", opts(1))], Some(7));
        sub.subscribe_with(&[("sid/#", opts(1))], Some(300_000));
        sub.subscribe_with(&[("sid/x", opts(1))], None);
        let (mut other, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "sid2"), true);
        other.subscribe_with(&[("sid/x", opts(0))], Some(3));
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        publ.publish(publish("sid/x", QoS::AtLeastOnce, 1, b"m"));
        let copies = sub.drain_publishes(QUIET);
        assert!(!copies.is_empty());
        let all: Vec<u32> = copies
            .iter()
            .flat_map(|p| {
                p.properties
                    .extra()
                    .subscription_identifiers
                    .iter()
                    .map(|i| i.get())
            })
            .collect();
        let set: BTreeSet<u32> = all.iter().copied().collect();
        assert_eq!(
            set,
            BTreeSet::from([7, 300_000]),
            "shards={shards}: {copies:?}"
        );
        assert_eq!(all.len(), 2, "each identifier once: {copies:?}");
        if copies.len() == 1 {
            assert_eq!(copies[0].qos, QoS::AtLeastOnce);
        }
        let p = other.recv_publish();
        assert_eq!(
            p.properties.extra().subscription_identifiers,
            [NonZeroU32::new(3).unwrap()]
        );
        // A message matching only the subscription without identifier carries none.
        sub.subscribe_with(&[("only/x", opts(0))], None);
        publ.publish(publish("only/x", QoS::AtLeastOnce, 2, b"n"));
        assert!(
            sub.recv_publish()
                .properties
                .extra()
                .subscription_identifiers
                .is_empty()
        );
    }
}

#[test]
fn v5_publish_properties_are_forwarded_unchanged() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "props");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("props/t", 2);
        let (mut v3, _) = Raw::connect(&broker, V311, &id_on(0, shards, "props-v3"), true);
        v3.subscribe("props/t", 1);
        // An independent v5 client as a second subscriber.
        let (rc, mut rconn) = rumqttc::v5::Client::new(
            rumqttc::v5::MqttOptions::new(
                id_on(shards - 1, shards, "props-rq"),
                "127.0.0.1",
                broker.port,
            ),
            16,
        );
        rc.subscribe("props/t", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .unwrap();
        wait_rumqttc_v5_suback(&mut rconn);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let props = PublishProperties {
            payload_format_indicator: Some(true),
            ..Default::default()
        }
        .with_extra(PublishExtraProperties {
            response_topic: Some("props/reply".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
            user_properties: vec![
                ("k".into(), "v1".into()),
                ("a".into(), "b".into()),
                ("k".into(), "v2".into()),
            ],
            content_type: Some("text/plain; charset=utf-8".into()),
            ..Default::default()
        });
        let mut p = publish("props/t", QoS::ExactlyOnce, 9, "héllo".as_bytes());
        p.properties = props.clone();
        publ.publish(p);
        let got = sub.recv_publish();
        assert_eq!(got.properties, props, "shards={shards}");
        assert_eq!(got.payload, "héllo".as_bytes());
        // A v3 subscriber gets the message without properties.
        assert_eq!(v3.recv_publish().payload, "héllo".as_bytes());
        let deadline = Instant::now() + WAIT;
        let rp = loop {
            assert!(Instant::now() < deadline, "rumqttc got nothing");
            if let Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)))) =
                rconn.recv_timeout(Duration::from_secs(1))
            {
                break p;
            }
        };
        let rprops = rp.properties.expect("properties");
        assert_eq!(rprops.payload_format_indicator, Some(1));
        assert_eq!(rprops.response_topic.as_deref(), Some("props/reply"));
        assert_eq!(
            rprops.correlation_data.as_deref(),
            Some(&b"\x00\x01corr"[..])
        );
        assert_eq!(
            rprops.user_properties,
            vec![
                ("k".to_string(), "v1".to_string()),
                ("a".to_string(), "b".to_string()),
                ("k".to_string(), "v2".to_string())
            ]
        );
        assert_eq!(
            rprops.content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(rprops.message_expiry_interval, None);
    }
}

fn persistent() -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval: Some(300),
        ..Default::default()
    }
}

#[test]
fn v5_message_expiry_forwards_the_remaining_interval() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "mei");
        let (mut online, _) = Raw::connect(&broker, V5, &id_on(0, shards, "mei-on"), true);
        online.subscribe("mei/t", 1);
        let (mut sub, _) = connect_v5(&broker, &sid, true, persistent());
        sub.subscribe("mei/t", 1);
        sub.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)));
        sub.expect_closed();
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let mut p = publish("mei/t", QoS::AtLeastOnce, 1, b"m");
        p.properties.message_expiry_interval = Some(10);
        publ.publish(p);
        let got = online.recv_publish();
        let e = got.properties.message_expiry_interval;
        assert!(
            matches!(e, Some(9..=10)),
            "shards={shards}: online got {e:?}"
        );
        std::thread::sleep(Duration::from_millis(2500));
        let (mut sub, ack) = connect_v5(&broker, &sid, false, persistent());
        assert!(ack.session_present);
        let got = sub.recv_publish();
        let e = got.properties.message_expiry_interval;
        assert!(
            matches!(e, Some(1..=8)),
            "shards={shards}: resumed got {e:?}"
        );
        // Without the property none is forwarded.
        publ.publish(publish("mei/t", QoS::AtLeastOnce, 2, b"n"));
        assert_eq!(sub.recv_publish().properties.message_expiry_interval, None);
    }
}

#[test]
fn v5_message_expiring_while_subscriber_is_offline_is_not_delivered() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "mex");
        let (mut sub, _) = connect_v5(&broker, &sid, true, persistent());
        sub.subscribe("mex/t", 1);
        sub.abort();
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        // Let the broker notice the closed socket before publishing.
        std::thread::sleep(Duration::from_millis(300));
        for (i, q) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let mut p = publish("mex/t", q, i as u16 + 1, b"expires");
            p.properties.message_expiry_interval = Some(1);
            publ.publish(p);
        }
        publ.publish(publish("mex/t", QoS::AtLeastOnce, 9, b"stays"));
        std::thread::sleep(Duration::from_millis(2500));
        let (mut sub, ack) = connect_v5(&broker, &sid, false, persistent());
        assert!(ack.session_present);
        let got: Vec<Bytes> = sub
            .drain_publishes(QUIET)
            .into_iter()
            .map(|p| p.payload)
            .collect();
        assert_eq!(got, [Bytes::from_static(b"stays")], "shards={shards}");
    }
}

#[test]
fn v5_inbound_topic_aliases_resolve() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "tai");
        let (mut sub, _) = Raw::connect(&broker, V311, &sid, true);
        sub.subscribe("tai/#", 1);
        let (mut publ, ack) = Raw::connect(&broker, V5, &pid, true);
        assert_eq!(ack.properties.topic_alias_maximum, Some(65535));
        let aliased = |topic: &str, alias: u16, id: u16, payload: &[u8]| {
            let mut p = publish(topic, QoS::AtLeastOnce, id, payload);
            p.properties.topic_alias = NonZeroU16::new(alias);
            p
        };
        let steps = [
            ("tai/one", 1, "tai/one"),
            ("", 1, "tai/one"),
            ("tai/two", 2, "tai/two"),
            ("", 1, "tai/one"),
            ("tai/three", 1, "tai/three"),
            ("", 1, "tai/three"),
            ("", 2, "tai/two"),
        ];
        for (i, (topic, alias, want)) in steps.into_iter().enumerate() {
            let payload = i.to_string();
            let r = publ.publish(aliased(topic, alias, i as u16 + 1, payload.as_bytes()));
            assert_eq!(r, ReasonCode::Success);
            let p = sub.recv_publish();
            assert_eq!(
                (p.topic.to_string(), &p.payload[..]),
                (want.to_string(), payload.as_bytes()),
                "shards={shards}"
            );
        }
    }
}

#[test]
fn v5_topic_alias_above_maximum_is_0x94_and_unknown_alias_is_0x82() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nmax_topic_alias = 2\n", &[]);
        let (sid, pid) = ids(shards, "tax");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("tax/#", 0);
        let (mut publ, ack) = Raw::connect(&broker, V5, &pid, true);
        assert_eq!(ack.properties.topic_alias_maximum, Some(2));
        let mut p = publish("tax/t", QoS::AtMostOnce, 0, b"ok");
        p.properties.topic_alias = NonZeroU16::new(2);
        publ.send(&Packet::Publish(p.clone()));
        assert_eq!(sub.recv_publish().payload, &b"ok"[..]);
        p.properties.topic_alias = NonZeroU16::new(3);
        publ.send(&Packet::Publish(p));
        expect_disconnect(&mut publ, ReasonCode::TopicAliasInvalid);

        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let mut p = publish("", QoS::AtLeastOnce, 1, b"lost");
        p.properties.topic_alias = NonZeroU16::new(1);
        publ.send(&Packet::Publish(p));
        expect_disconnect(&mut publ, ReasonCode::ProtocolError);
        sub.expect_no_publish(QUIET);
        // Aliases belong to the connection: a new one does not know alias 2.
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let mut p = publish("", QoS::AtMostOnce, 0, b"lost");
        p.properties.topic_alias = NonZeroU16::new(2);
        publ.send(&Packet::Publish(p));
        expect_disconnect(&mut publ, ReasonCode::ProtocolError);
        sub.expect_no_publish(QUIET);
    }
}

#[test]
fn v5_outbound_topic_aliases_up_to_the_subscribers_maximum() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "tao");
        let (mut sub, _) = connect_v5(
            &broker,
            &sid,
            true,
            ConnectProperties {
                topic_alias_maximum: Some(2),
                ..Default::default()
            },
        );
        sub.subscribe("tao/#", 1);
        let (mut plain, _) = Raw::connect(&broker, V5, &id_on(0, shards, "tao-plain"), true);
        plain.subscribe("tao/#", 1);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let topics = [
            "tao/a", "tao/a", "tao/b", "tao/c", "tao/a", "tao/c", "tao/b",
        ];
        for (i, t) in topics.iter().enumerate() {
            publ.publish(publish(t, QoS::AtLeastOnce, i as u16 + 1, t.as_bytes()));
        }
        let mut table: HashMap<u16, String> = HashMap::new();
        let mut by_alias = 0;
        for t in topics {
            let p = sub.recv_publish();
            let topic = match p.properties.topic_alias.map(NonZeroU16::get) {
                None => p.topic.to_string(),
                Some(a) => {
                    assert!(a <= 2, "alias {a} above the maximum 2");
                    if p.topic.is_empty() {
                        by_alias += 1;
                        table.get(&a).cloned().expect("alias defined before use")
                    } else {
                        table.insert(a, p.topic.to_string());
                        p.topic.to_string()
                    }
                }
            };
            assert_eq!(topic, t, "shards={shards}");
            assert_eq!(p.payload, t.as_bytes());
        }
        assert!(by_alias >= 2, "aliases were not used: shards={shards}");
        for t in topics {
            let p = plain.recv_publish();
            assert_eq!(
                (p.topic.to_string(), p.properties.topic_alias),
                (t.to_string(), None)
            );
        }
    }
}

#[test]
fn v5_publish_over_max_packet_size_is_0x95() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nmax_packet_size = \"1KB\"\n", &[]);
        let (sid, pid) = ids(shards, "mps");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("mps/t", 0);
        let (mut publ, ack) = Raw::connect(&broker, V5, &pid, true);
        assert_eq!(
            ack.properties.maximum_packet_size.map(NonZeroU32::get),
            Some(1024)
        );
        publ.publish(publish("mps/t", QoS::AtLeastOnce, 1, &[b'x'; 900]));
        assert_eq!(sub.recv_publish().payload.len(), 900);
        publ.send(&Packet::Publish(publish(
            "mps/t",
            QoS::AtLeastOnce,
            2,
            &[b'y'; 1100],
        )));
        expect_disconnect(&mut publ, ReasonCode::PacketTooLarge);
        sub.expect_no_publish(QUIET);
    }
}

#[test]
fn v5_message_over_subscribers_maximum_packet_size_is_dropped_for_it_only() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "smps");
        let (mut small, _) = connect_v5(
            &broker,
            &sid,
            true,
            ConnectProperties {
                maximum_packet_size: NonZeroU32::new(100),
                ..Default::default()
            },
        );
        small.subscribe("smps/t", 1);
        let (mut big, _) = Raw::connect(&broker, V5, &id_on(0, shards, "smps-big"), true);
        big.subscribe("smps/t", 1);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        for (i, size) in [200usize, 50, 101, 60].into_iter().enumerate() {
            publ.publish(publish(
                "smps/t",
                QoS::AtLeastOnce,
                i as u16 + 1,
                &vec![b'z'; size],
            ));
        }
        let sizes = |c: &mut Raw| -> Vec<usize> {
            c.drain_publishes(QUIET)
                .iter()
                .map(|p| p.payload.len())
                .collect()
        };
        assert_eq!(sizes(&mut small), [50, 60], "shards={shards}");
        assert_eq!(sizes(&mut big), [200, 50, 101, 60], "shards={shards}");
    }
}

#[test]
fn wildcard_subscription_disabled_is_suback_0xa2() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nwildcard_subscription = false\n", &[]);
        let (sid, pid) = ids(shards, "wcd");
        let (mut sub, ack) = Raw::connect(&broker, V5, &sid, true);
        assert_eq!(ack.properties.wildcard_subscription_available, Some(false));
        let got = sub.subscribe_with(
            &[("w/+", opts(1)), ("w/#", opts(1)), ("w/t", opts(1))],
            None,
        );
        assert_eq!(
            got,
            [
                ReasonCode::WildcardSubscriptionsNotSupported,
                ReasonCode::WildcardSubscriptionsNotSupported,
                ReasonCode::GrantedQos1
            ]
        );
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        publ.publish(publish("w/t", QoS::AtLeastOnce, 1, b"m"));
        let got = sub.drain_publishes(QUIET);
        assert_eq!(got.len(), 1, "shards={shards}: {got:?}");
    }
}

#[test]
fn max_qos_allowed_1_grants_1_and_refuses_qos2_publish_with_0x9b() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nmax_qos_allowed = 1\n", &[]);
        let (sid, pid) = ids(shards, "mq1");
        let (mut sub, ack) = Raw::connect(&broker, V5, &sid, true);
        assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
        assert_eq!(
            sub.subscribe_with(&[("mq/t", opts(2))], None),
            [ReasonCode::GrantedQos1]
        );
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        publ.publish(publish("mq/t", QoS::AtLeastOnce, 1, b"one"));
        let p = sub.recv_publish();
        assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"one"[..]));
        publ.send(&Packet::Publish(publish(
            "mq/t",
            QoS::ExactlyOnce,
            2,
            b"two",
        )));
        expect_disconnect(&mut publ, ReasonCode::QosNotSupported);
        sub.expect_no_publish(QUIET);
    }
}

#[test]
fn unsubscribe_stops_delivery_and_unknown_filter_is_0x11() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "uns");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("uns/t", 1);
        sub.subscribe("uns/keep", 1);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        publ.publish(publish("uns/t", QoS::AtLeastOnce, 1, b"before"));
        assert_eq!(sub.recv_publish().payload, &b"before"[..]);
        sub.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: NonZeroU16::new(2).unwrap(),
            properties: Default::default(),
            filters: vec!["uns/t".into(), "uns/none".into()],
        }));
        match sub.recv() {
            Some(Packet::UnsubAck(a)) => assert_eq!(
                a.reasons,
                [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            ),
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        publ.publish(publish("uns/t", QoS::AtLeastOnce, 3, b"after"));
        publ.publish(publish("uns/keep", QoS::AtLeastOnce, 4, b"kept"));
        let got: Vec<Bytes> = sub
            .drain_publishes(QUIET)
            .into_iter()
            .map(|p| p.payload)
            .collect();
        assert_eq!(got, [Bytes::from_static(b"kept")], "shards={shards}");
    }
}
