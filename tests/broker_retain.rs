//! Retained messages over TCP (FEATURES.md §2): replace, delete, delivery on subscribe across
//! the shards that own the topics, the RETAIN flag, Retain Handling, expiry and the retainer
//! limits. Every test runs with 1 and 2 shards, publisher and subscriber on different shards.

mod support;

use std::collections::BTreeSet;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];
const QUIET: Duration = Duration::from_millis(700);

fn retained(topic: &str, q: QoS, id: u16, payload: &[u8]) -> Publish {
    Publish {
        retain: true,
        ..publish(topic, q, id, payload)
    }
}

fn ids(shards: usize, test: &str) -> (String, String) {
    (
        id_on(0, shards, &format!("{test}-sub")),
        id_on(shards - 1, shards, &format!("{test}-pub")),
    )
}

fn rh(q: u8, handling: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        retain_handling: handling,
        ..opts(q)
    }
}

/// (topic, payload, retain flag) of every PUBLISH until quiet.
fn drain(c: &mut Raw) -> Vec<(String, Bytes, bool)> {
    c.drain_publishes(QUIET)
        .into_iter()
        .map(|p| (p.topic.to_string(), p.payload, p.retain))
        .collect()
}

/// Subscribes to a filter new on the client's shard: its SUBACK waits until every other shard
/// has applied the new route, which it does after everything this shard sent it before (the
/// mesh is FIFO) — such as the retained lookups of earlier subscriptions, or retained messages
/// on their way to the shard that stores them (the publisher's PUBACK does not wait for that).
fn settle(c: &mut Raw, fresh_filter: &str) {
    c.subscribe(fresh_filter, 0);
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn retained_message_is_replaced_and_deleted_by_an_empty_payload() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "rep");
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        for shard in 0..shards {
            let t = topic_on(shard, shards, "rep");
            publ.publish(retained(&t, QoS::AtLeastOnce, 1, b"one"));
            publ.publish(retained(&t, QoS::AtLeastOnce, 2, b"two"));
            settle(&mut publ, &format!("rep/settle/{shard}"));
            let (mut sub, _) = Raw::connect(&broker, V311, &sid, true);
            sub.subscribe(&t, 1);
            assert_eq!(
                drain(&mut sub),
                [(t.clone(), b("two"), true)],
                "shards={shards}"
            );
            // The deletion still reaches the current subscriber, as a normal message.
            publ.publish(retained(&t, QoS::AtLeastOnce, 3, b""));
            settle(&mut publ, &format!("rep/settle/{shard}/del"));
            assert_eq!(
                drain(&mut sub),
                [(t.clone(), b(""), false)],
                "shards={shards}"
            );
            sub.subscribe(&t, 1);
            sub.subscribe("rep/#", 1);
            assert_eq!(
                drain(&mut sub),
                [],
                "shards={shards}: deleted message delivered"
            );
        }
    }
}

#[test]
fn retained_messages_on_every_shard_are_delivered_on_subscribe_with_retain_1() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "spread");
        let (mut publ, _) = Raw::connect(&broker, V311, &pid, true);
        let mut topics = BTreeSet::new();
        for shard in 0..shards {
            for prefix in ["spread/a", "spread/b/c"] {
                let t = topic_on(shard, shards, prefix);
                publ.publish(retained(&t, QoS::AtLeastOnce, 1, t.as_bytes()));
                topics.insert(t);
            }
        }
        publ.publish(publish("spread/a/not-retained", QoS::AtLeastOnce, 2, b"x"));
        settle(&mut publ, "settle");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        let check = |sub: &mut Raw, filter: &str, want: Vec<&String>| {
            sub.subscribe(filter, 2);
            let got = drain(sub);
            assert!(
                got.iter().all(|(t, p, r)| *r && t.as_bytes() == &p[..]),
                "{got:?}"
            );
            let got: BTreeSet<&String> = got.iter().map(|(t, _, _)| t).collect();
            assert_eq!(
                got.len(),
                want.len(),
                "shards={shards} {filter}: duplicates?"
            );
            let want: BTreeSet<&String> = want.into_iter().collect();
            assert_eq!(
                got.into_iter().cloned().collect::<BTreeSet<_>>(),
                want.into_iter().cloned().collect(),
                "shards={shards} {filter}"
            );
        };
        check(&mut sub, "spread/#", topics.iter().collect());
        check(
            &mut sub,
            "spread/a/+",
            topics
                .iter()
                .filter(|t| t.starts_with("spread/a/"))
                .collect(),
        );
        check(
            &mut sub,
            "spread/+/c/+",
            topics
                .iter()
                .filter(|t| t.starts_with("spread/b/c/"))
                .collect(),
        );
        check(&mut sub, "#", topics.iter().collect());
        for t in &topics {
            check(&mut sub, t, vec![t]);
        }
        check(&mut sub, "spread/none", vec![]);

        // An independent client (rumqttc, 3.1.1) sees them with the retain flag too.
        let (client, mut conn) = rumqttc::Client::new(
            rumqttc::MqttOptions::new(
                id_on(shards - 1, shards, "spread-rq"),
                "127.0.0.1",
                broker.port,
            ),
            16,
        );
        client
            .subscribe("spread/#", rumqttc::QoS::AtLeastOnce)
            .unwrap();
        let mut got = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < topics.len() && Instant::now() < deadline {
            if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)))) =
                conn.recv_timeout(Duration::from_millis(500))
            {
                assert!(p.retain, "{p:?}");
                got.insert(p.topic.clone());
            }
        }
        assert_eq!(got, topics, "shards={shards}");
    }
}

#[test]
fn existing_subscribers_get_retain_0_unless_retain_as_published() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "rap");
        let (mut plain, _) = Raw::connect(&broker, V5, &sid, true);
        plain.subscribe("rap/t", 1);
        let (mut rap, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "rap-on"), true);
        let o = SubscriptionOptions {
            retain_as_published: true,
            ..opts(1)
        };
        rap.subscribe_with(&[("rap/t", o)], None);
        let (mut v3, _) = Raw::connect(&broker, V311, &id_on(0, shards, "rap-v3"), true);
        v3.subscribe("rap/t", 1);
        // The retained lookups of these subscriptions are asynchronous (they may cross shards);
        // let them finish so that the retained message published next is not also delivered
        // as a retained message on subscribe.
        for (i, c) in [&mut plain, &mut rap, &mut v3].into_iter().enumerate() {
            settle(c, &format!("rap/settle/{i}"));
        }
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        publ.publish(retained("rap/t", QoS::AtLeastOnce, 1, b"r"));
        publ.publish(publish("rap/t", QoS::AtLeastOnce, 2, b"n"));
        let want = |r| {
            vec![
                ("rap/t".to_string(), b("r"), r),
                ("rap/t".to_string(), b("n"), false),
            ]
        };
        assert_eq!(drain(&mut plain), want(false), "shards={shards}");
        assert_eq!(drain(&mut rap), want(true), "shards={shards}");
        assert_eq!(drain(&mut v3), want(false), "shards={shards}");
        // Sent because of a SUBSCRIBE, the retained message has RETAIN=1 whatever the option.
        plain.subscribe("rap/t", 1);
        assert_eq!(drain(&mut plain), [("rap/t".to_string(), b("r"), true)]);
    }
}

#[test]
fn retain_handling_0_1_2() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "rh");
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let t = topic_on(shards - 1, shards, "rh");
        publ.publish(retained(&t, QoS::AtLeastOnce, 1, b"r"));
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        let one = vec![(t.clone(), b("r"), true)];
        let mut sub_rh = |filter: &str, h| {
            let granted = sub.subscribe_with(&[(filter, rh(1, h))], None);
            assert_eq!(granted, [ReasonCode::GrantedQos1]);
            drain(&mut sub)
        };
        use RetainHandling::*;
        // 0: at every subscribe, new or not.
        assert_eq!(sub_rh(&t, SendAtSubscribe), one, "shards={shards}");
        assert_eq!(sub_rh(&t, SendAtSubscribe), one, "shards={shards}");
        // 1: only when the subscription is new.
        assert_eq!(sub_rh("rh/+", SendIfNew), one, "shards={shards}");
        assert_eq!(sub_rh("rh/+", SendIfNew), [], "shards={shards}");
        assert_eq!(sub_rh(&t, SendIfNew), [], "shards={shards}");
        // 2: never.
        assert_eq!(sub_rh("rh/#", DoNotSend), [], "shards={shards}");
        assert_eq!(sub_rh("rh/#", DoNotSend), [], "shards={shards}");
        // After UNSUBSCRIBE the subscription is new again.
        sub.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: NonZeroU16::new(9).unwrap(),
            properties: Default::default(),
            filters: vec!["rh/+".into()],
        }));
        assert!(matches!(sub.recv(), Some(Packet::UnsubAck(_))));
        let mut sub_rh = |filter: &str, h| {
            sub.subscribe_with(&[(filter, rh(1, h))], None);
            drain(&mut sub)
        };
        assert_eq!(sub_rh("rh/+", SendIfNew), one, "shards={shards}");
    }
}

#[test]
fn retained_message_expiry_is_honoured() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let (sid, pid) = ids(shards, "rexp");
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let short = topic_on(shards - 1, shards, "rexp/short");
        let long = topic_on(0, shards, "rexp/long");
        let mut p = retained(&short, QoS::AtLeastOnce, 1, b"short");
        p.properties.message_expiry_interval = Some(1);
        publ.publish(p);
        let mut p = retained(&long, QoS::AtLeastOnce, 2, b"long");
        p.properties.message_expiry_interval = Some(100);
        publ.publish(p);
        settle(&mut publ, "settle");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe(&short, 1);
        let got = sub.recv_publish();
        assert!(got.retain);
        assert_eq!(got.properties.message_expiry_interval, Some(1));
        std::thread::sleep(Duration::from_millis(2500));
        sub.subscribe(&short, 1);
        sub.subscribe("rexp/#", 1);
        let got = sub.drain_publishes(QUIET);
        assert_eq!(got.len(), 1, "shards={shards}: {got:?}");
        assert_eq!(got[0].payload, &b"long"[..]);
        let e = got[0].properties.message_expiry_interval;
        assert!(
            matches!(e, Some(90..=98)),
            "shards={shards}: remaining {e:?}"
        );
    }
}

#[test]
fn retainer_max_payload_size() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[retainer]\nmax_payload_size = \"16B\"\n", &[]);
        let (sid, pid) = ids(shards, "rmp");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("rmp/#", 1);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let big = [b'b'; 32];
        publ.publish(retained("rmp/big", QoS::AtLeastOnce, 1, &big));
        publ.publish(retained("rmp/small", QoS::AtLeastOnce, 2, b"small"));
        settle(&mut publ, "settle");
        // Both are forwarded to the current subscriber.
        let got = drain(&mut sub);
        assert_eq!(got.len(), 2, "shards={shards}: {got:?}");
        let (mut late, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "rmp-late"), true);
        late.subscribe("rmp/#", 1);
        assert_eq!(
            drain(&mut late),
            [("rmp/small".to_string(), b("small"), true)],
            "shards={shards}"
        );
    }
}

#[test]
fn retainer_max_retained_messages() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[retainer]\nmax_retained_messages = 3\n", &[]);
        let (sid, pid) = ids(shards, "rmax");
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        for i in 0..8u16 {
            let t = topic_on(usize::from(i) % shards, shards, &format!("rmax/{i}"));
            publ.publish(retained(&t, QoS::AtLeastOnce, i + 1, b"m"));
        }
        settle(&mut publ, "settle/1");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("rmax/#", 1);
        let got = drain(&mut sub);
        assert_eq!(got.len(), 3, "shards={shards}: {got:?}");
        // A stored topic can still be replaced when the store is full.
        let (t, _, _) = got[0].clone();
        publ.publish(retained(&t, QoS::AtLeastOnce, 20, b"new"));
        settle(&mut publ, "settle/2");
        assert_eq!(drain(&mut sub), [(t.clone(), b("new"), false)]);
        let got = drain_after_subscribe(&mut sub, "rmax/#");
        assert_eq!(got.len(), 3, "shards={shards}: {got:?}");
        assert!(got.contains(&(t.clone(), b("new"), true)), "{got:?}");
    }
}

fn drain_after_subscribe(c: &mut Raw, filter: &str) -> Vec<(String, Bytes, bool)> {
    c.subscribe(filter, 1);
    drain(c)
}

#[test]
fn v5_retained_publish_without_retain_available_is_0x9a() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nretain_available = false\n", &[]);
        let (sid, pid) = ids(shards, "rna");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("rna/#", 1);
        let (mut publ, ack) = Raw::connect(&broker, V5, &pid, true);
        assert_eq!(ack.properties.retain_available, Some(false));
        publ.publish(publish("rna/t", QoS::AtLeastOnce, 1, b"plain"));
        assert_eq!(sub.recv_publish().payload, &b"plain"[..]);
        publ.send(&Packet::Publish(retained(
            "rna/t",
            QoS::AtLeastOnce,
            2,
            b"r",
        )));
        let got = publ.expect_closed();
        assert!(
            matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::RetainNotSupported),
            "shards={shards}: {got:?}"
        );
        sub.expect_no_publish(QUIET);
        sub.subscribe("rna/#", 1);
        sub.expect_no_publish(QUIET);
    }
}

/// A retained message acknowledged to its publisher is stored: a client on another shard that
/// subscribes right after the PUBACK / PUBCOMP finds it, even when the topic's retained message
/// lives on a third place (the broker holds the acknowledgement until the owning shard stored it).
#[test]
fn retained_message_is_stored_before_its_acknowledgement() {
    let shards = 2;
    let broker = Broker::start(shards);
    let (mut publ, _) = Raw::connect(&broker, V5, &id_on(0, shards, "rs-pub"), true);
    for round in 0..20u16 {
        // Stored on shard 1, published from shard 0, asked for from either shard.
        let topic = topic_on(1, shards, &format!("rs/{round}"));
        let q = if round % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let reason = publ.publish(retained(&topic, q, round + 1, b"kept"));
        assert!(!reason.is_error(), "{reason:?}");
        let sub_id = id_on(
            usize::from(round) % shards,
            shards,
            &format!("rs-sub-{round}"),
        );
        let (mut sub, _) = Raw::connect(&broker, V311, &sub_id, true);
        sub.subscribe(&topic, 1);
        let p = sub.recv_publish();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.retain),
            (topic.as_str(), &b"kept"[..], true)
        );
    }
}
