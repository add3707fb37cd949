//! Delayed publish over TCP (FEATURES.md §6): `$delayed/<secs>/<topic>` is published to `<topic>`
//! after the delay (relative or absolute), with QoS, retain flag and properties kept, from the
//! original publisher; v5 PUBACK 0x10; bad intervals and topics dropped; `max_delayed_messages`;
//! `[delayed] enable = false`. Tests run with 1 and 2 shards, publisher and subscriber on
//! different home shards.

mod support;

use std::num::NonZeroU16;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];

fn ids(shards: usize, test: &str) -> (String, String) {
    (
        id_on(shards - 1, shards, &format!("{test}-sub")),
        id_on(0, shards, &format!("{test}-pub")),
    )
}

/// The connection is still open and served: PINGREQ gets PINGRESP.
fn assert_open(c: &mut Raw) {
    c.send(&Packet::PingReq);
    match c.recv() {
        Some(Packet::PingResp) => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

#[test]
fn delayed_qos1_arrives_after_the_delay_with_qos_retain_and_no_local() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "dl");
        let topic = format!("dl/{shards}/a/b");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        let rap = SubscriptionOptions {
            retain_as_published: true,
            ..opts(2)
        };
        sub.subscribe_with(&[(&topic, rap)], None);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        // The publisher subscribes with No Local: the delayed message is still its own.
        let no_local = SubscriptionOptions {
            no_local: true,
            ..opts(1)
        };
        publ.subscribe_with(&[(&topic, no_local)], None);

        let t0 = Instant::now();
        let p = Publish {
            retain: true,
            properties: PublishProperties::default().with_extra(PublishExtraProperties {
                user_properties: vec![(MqttStr::from("k"), MqttStr::from("v"))],
                ..Default::default()
            }),
            ..publish(
                &format!("$delayed/2/{topic}"),
                QoS::AtLeastOnce,
                3,
                b"later",
            )
        };
        assert_eq!(
            publ.publish(p),
            ReasonCode::NoMatchingSubscribers,
            "shards={shards}"
        );
        // Not before the due time; a subscriber meanwhile finds no retained message yet.
        let (mut early, _) = Raw::connect(&broker, V5, &id_on(0, shards, "dl-early"), true);
        early.subscribe(&topic, 1);
        sub.expect_no_publish(Duration::from_millis(1900).saturating_sub(t0.elapsed()));
        early.expect_no_publish(Duration::from_millis(100));
        let got = sub
            .recv_publish_within(Duration::from_secs(8))
            .expect("the delayed message arrives");
        let elapsed = t0.elapsed();
        assert!(elapsed >= Duration::from_secs(2), "early: {elapsed:?}");
        assert_eq!(got.topic.to_string(), topic);
        assert_eq!(&got.payload[..], b"later");
        assert_eq!(got.qos, QoS::AtLeastOnce);
        assert!(got.retain, "retain flag kept: {got:?}");
        assert_eq!(
            got.properties.extra().user_properties,
            vec![(MqttStr::from("k"), MqttStr::from("v"))]
        );
        // The subscriber that came earlier gets it live (retain 0 without Retain As Published).
        let live = early.recv_publish();
        assert_eq!(&live.payload[..], b"later");
        assert!(!live.retain);
        // No Local: not to its publisher.
        publ.expect_no_publish(Duration::from_millis(300));
        // Retained now: a later subscriber gets it on subscribe.
        let (mut late, _) = Raw::connect(&broker, V5, &id_on(0, shards, "dl-late"), true);
        late.subscribe(&topic, 1);
        let r = late.recv_publish();
        assert_eq!(&r.payload[..], b"later");
        assert!(r.retain);
        sub.expect_no_publish(Duration::from_millis(300));
    }
}

#[test]
fn delayed_qos2_is_exactly_once_and_expiry_counts_from_the_publish() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "dq2");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("dq2/#", 2);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        // Expires 1 s after its publish, due after 2 s: dropped.
        let expiring = Publish {
            properties: PublishProperties {
                message_expiry_interval: Some(1),
                ..Default::default()
            },
            ..publish("$delayed/2/dq2/expired", QoS::AtLeastOnce, 1, b"gone")
        };
        assert_eq!(publ.publish(expiring), ReasonCode::NoMatchingSubscribers);
        // QoS 2 sent twice before PUBREL: acknowledged twice, kept once.
        let p = publish("$delayed/1/dq2/once", QoS::ExactlyOnce, 9, b"once");
        let id = NonZeroU16::new(9).unwrap();
        for dup in [false, true] {
            publ.send(&Packet::Publish(Publish { dup, ..p.clone() }));
            match publ.recv() {
                Some(Packet::PubRec(a)) if a.packet_id == id => {
                    assert!(!a.reason.is_error(), "{a:?}");
                }
                other => panic!("expected PUBREC, got {other:?}"),
            }
        }
        publ.send(&Packet::PubRel(Ack::new(id)));
        match publ.recv() {
            Some(Packet::PubComp(a)) if a.packet_id == id => {}
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
        let got = sub.drain_publishes(Duration::from_millis(3500));
        let got: Vec<_> = got.iter().map(|p| (p.topic.to_string(), p.qos)).collect();
        assert_eq!(
            got,
            vec![("dq2/once".to_string(), QoS::ExactlyOnce)],
            "shards={shards}"
        );
    }
}

#[test]
fn absolute_time_form_with_an_independent_client() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "dabs");
        let topic = format!("dabs/{shards}");
        let (mut sub, _) = Raw::connect(&broker, V311, &sid, true);
        sub.subscribe(&topic, 1);
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let at = unix_now.as_secs() + 3;
        // rumqttc (3.1.1) publishes.
        let (client, mut conn) =
            rumqttc::Client::new(rumqttc::MqttOptions::new(pid, "127.0.0.1", broker.port), 16);
        client
            .publish(
                format!("$delayed/{at}/{topic}"),
                rumqttc::QoS::AtLeastOnce,
                false,
                b"at".to_vec(),
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut acked = false;
        while !acked && Instant::now() < deadline {
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_)))) =
                conn.recv_timeout(Duration::from_millis(200))
            {
                acked = true;
            }
        }
        assert!(acked, "rumqttc got its PUBACK");
        let got = sub
            .recv_publish_within(Duration::from_secs(10))
            .expect("the delayed message arrives");
        let arrived = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(
            arrived >= Duration::from_secs(at),
            "early: {arrived:?} < {at}"
        );
        assert_eq!(got.topic.to_string(), topic);
        assert_eq!(&got.payload[..], b"at");
        // An absolute time in the past: published at the next tick.
        client
            .publish(
                format!("$delayed/{}/{topic}", at - 100),
                rumqttc::QoS::AtMostOnce,
                false,
                b"past".to_vec(),
            )
            .unwrap();
        let t = Instant::now();
        std::thread::spawn(
            move || while let Ok(Ok(_)) = conn.recv_timeout(Duration::from_secs(3)) {},
        );
        let got = sub
            .recv_publish_within(Duration::from_secs(5))
            .expect("a past time is due now");
        assert_eq!(&got.payload[..], b"past");
        assert!(t.elapsed() < Duration::from_secs(4));
        drop(client);
    }
}

#[test]
fn bad_intervals_and_topics_are_dropped_and_the_connection_stays_open() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nmax_topic_levels = 3\n", &[]);
        let (sid, pid) = ids(shards, "dbad");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe_with(&[("dbad/#", opts(1)), ("$delayed/#", opts(1))], None);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let (mut v3, _) = Raw::connect(&broker, V311, &id_on(0, shards, "dbad-v3"), true);
        // (A wildcard anywhere in a PUBLISH topic, `$delayed/...` included, is a malformed
        // packet the codec refuses, as for any PUBLISH: not a case here.)
        let bad = [
            "$delayed/x/dbad/a",
            "$delayed/1.5/dbad/a",
            "$delayed/-1/dbad/a",
            "$delayed//dbad/a",
            "$delayed/1",
            "$delayed/1/",
            "$delayed/1/dbad/a/b/c",
            &format!("$delayed/{}/dbad/a", u64::MAX),
        ];
        for (i, t) in bad.iter().enumerate() {
            let id = i as u16 + 1;
            assert_eq!(
                publ.publish(publish(t, QoS::AtLeastOnce, id, b"x")),
                ReasonCode::TopicNameInvalid,
                "{t}"
            );
            assert_eq!(
                v3.publish(publish(t, QoS::AtLeastOnce, id, b"x")),
                ReasonCode::Success,
                "{t}"
            );
            publ.send(&publish_packet(t, QoS::AtMostOnce, 0, b"x"));
        }
        assert_open(&mut publ);
        assert_open(&mut v3);
        // The inner topic may use the whole level limit: `$delayed/<secs>/` does not count.
        assert_eq!(
            publ.publish(publish("$delayed/1/dbad/b/c", QoS::AtLeastOnce, 50, b"ok")),
            ReasonCode::NoMatchingSubscribers
        );
        let got = sub.drain_publishes(Duration::from_millis(2500));
        let got: Vec<_> = got.iter().map(|p| p.topic.to_string()).collect();
        assert_eq!(got, vec!["dbad/b/c".to_string()], "shards={shards}");
        assert_open(&mut publ);
    }
}

#[test]
fn max_delayed_messages_drops_the_third() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[delayed]\nmax_delayed_messages = 2\n", &[]);
        let (sid, pid) = ids(shards, "dmax");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("dmax/#", 1);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        // The limit is broker-wide: the second publisher lives on the other shard.
        let (mut other, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "dmax-o"), true);
        assert_eq!(
            publ.publish(publish("$delayed/1/dmax/1", QoS::AtLeastOnce, 1, b"1")),
            ReasonCode::NoMatchingSubscribers
        );
        assert_eq!(
            other.publish(publish("$delayed/1/dmax/2", QoS::AtLeastOnce, 1, b"2")),
            ReasonCode::NoMatchingSubscribers
        );
        assert_eq!(
            publ.publish(publish("$delayed/1/dmax/3", QoS::AtLeastOnce, 2, b"3")),
            ReasonCode::QuotaExceeded
        );
        let mut got: Vec<_> = sub
            .drain_publishes(Duration::from_millis(2500))
            .iter()
            .map(|p| p.topic.to_string())
            .collect();
        got.sort();
        assert_eq!(got, vec!["dmax/1", "dmax/2"], "shards={shards}");
        // Fired: their places are free again.
        assert_eq!(
            publ.publish(publish("$delayed/1/dmax/4", QoS::AtLeastOnce, 3, b"4")),
            ReasonCode::NoMatchingSubscribers
        );
        assert_eq!(sub.recv_publish().topic.to_string(), "dmax/4".to_string());
    }
}

#[test]
fn disabled_makes_delayed_a_plain_topic() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[delayed]\nenable = false\n", &[]);
        let (sid, pid) = ids(shards, "doff");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe_with(&[("$delayed/#", opts(1)), ("doff/#", opts(1))], None);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let t0 = Instant::now();
        assert_eq!(
            publ.publish(publish("$delayed/2/doff/a", QoS::AtLeastOnce, 1, b"now")),
            ReasonCode::Success
        );
        let got = sub.recv_publish();
        assert!(t0.elapsed() < Duration::from_millis(1500));
        assert_eq!(got.topic.to_string(), "$delayed/2/doff/a".to_string());
        sub.expect_no_publish(Duration::from_millis(2500));
    }
}
