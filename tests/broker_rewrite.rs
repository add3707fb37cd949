//! Topic rewrite (FEATURES.md §8) and auto subscribe (FEATURES.md §7) over TCP. Every test runs
//! with 1 and 2 shards, publisher and subscriber on different home shards.

mod support;

use std::time::{Duration, Instant};

use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];
const QUIET: Duration = Duration::from_millis(500);

fn ids(shards: usize, test: &str) -> (String, String) {
    (
        id_on(0, shards, &format!("{test}-sub")),
        id_on(shards - 1, shards, &format!("{test}-pub")),
    )
}

/// The topics of every PUBLISH until quiet.
fn topics(c: &mut Raw) -> Vec<String> {
    c.drain_publishes(QUIET)
        .into_iter()
        .map(|p| p.topic.to_string())
        .collect()
}

const PUBLISH_RULES: &str = r#"
[[rewrite]]
action = "publish"
source_topic = "x/#"
re = '^x/y/(.+)$'
dest_topic = "z/y/$1"

[[rewrite]]
action = "publish"
source_topic = "e/#"
re = '^e/(x*)'
dest_topic = "$1"
"#;

#[test]
fn publish_rule_rewrites_the_topic_before_retain_and_routing() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, PUBLISH_RULES, &[]);
        let (sid, pid) = ids(shards, "pubrw");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("z/y/+", 1);
        sub.subscribe("x/y/+", 1);

        // The publisher is rumqttc (3.1.1).
        let (client, mut conn) = rumqttc::Client::new(
            rumqttc::MqttOptions::new(&pid, "127.0.0.1", broker.port),
            16,
        );
        let events = std::thread::spawn(move || {
            let mut acked = 0;
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) => {
                        acked += 1;
                        if acked == 2 {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!("rumqttc: {e:?}"),
                }
            }
        });
        client
            .publish("x/y/1", rumqttc::QoS::AtLeastOnce, false, &b"one"[..])
            .unwrap();
        let p = sub.recv_publish();
        assert_eq!(
            (p.topic.to_string(), &p.payload[..]),
            ("z/y/1".to_string(), &b"one"[..]),
            "shards={shards}"
        );
        // Retained under the new topic.
        client
            .publish("x/y/2", rumqttc::QoS::AtLeastOnce, true, &b"two"[..])
            .unwrap();
        assert_eq!(topics(&mut sub), ["z/y/2"], "shards={shards}");
        events.join().unwrap();
        let (mut late, _) = Raw::connect(&broker, V5, &id_on(0, shards, "pubrw-late"), true);
        late.subscribe("z/y/2", 1);
        let p = late.recv_publish();
        assert!(p.retain, "shards={shards}");
        assert_eq!(p.topic.to_string(), "z/y/2", "shards={shards}");
        late.subscribe("x/y/2", 1);
        late.expect_no_publish(QUIET);

        // Rewritten to an empty topic: an invalid topic name, as if published so.
        let (mut bad, _) = Raw::connect(&broker, V5, &pid, true);
        bad.send(&publish_packet("e/y", QoS::AtMostOnce, 0, b""));
        let got = bad.expect_closed();
        assert!(
            matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::TopicNameInvalid),
            "shards={shards}: {got:?}"
        );
        sub.expect_no_publish(QUIET);
    }
}

#[test]
fn publish_rule_rewrites_the_will_topic() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, PUBLISH_RULES, &[]);
        let (sid, pid) = ids(shards, "willrw");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        sub.subscribe("z/y/+", 1);
        sub.subscribe("x/y/+", 1);
        let mut c = connect_packet(V311, &pid, true);
        c.will = Some(LastWill {
            topic: MqttStr::from("x/y/w"),
            payload: bytes::Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: WillProperties::default(),
        });
        let (dying, ack) = Raw::connect_with(&broker, c);
        assert_eq!(ack.reason, ReasonCode::Success);
        dying.abort();
        let p = sub.recv_publish();
        assert_eq!(
            (p.topic.to_string(), &p.payload[..]),
            ("z/y/w".to_string(), &b"bye"[..]),
            "shards={shards}"
        );
        sub.expect_no_publish(QUIET);
    }
}

const SUBSCRIBE_RULES: &str = r#"
[[rewrite]]
action = "subscribe"
source_topic = "s/#"
re = '^s/(.+)$'
dest_topic = "t/$1/${clientid}"

[[rewrite]]
action = "subscribe"
source_topic = "bad/#"
re = '^bad/(.*)$'
dest_topic = "q/#/$1"
"#;

#[test]
fn subscribe_rule_rewrites_subscribe_and_unsubscribe_filters() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, SUBSCRIBE_RULES, &[]);
        let (sid, pid) = ids(shards, "subrw");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        sub.subscribe("s/+", 1);
        let target = format!("t/a/{sid}");
        publ.publish(publish(&target, QoS::AtLeastOnce, 1, b"hit"));
        publ.publish(publish("s/a", QoS::AtLeastOnce, 2, b"miss"));
        let p = sub.recv_publish();
        assert_eq!(
            (p.topic.to_string(), &p.payload[..]),
            (target.clone(), &b"hit"[..]),
            "shards={shards}"
        );
        sub.expect_no_publish(QUIET);

        // Rewritten to an invalid filter: refused as any invalid filter.
        let codes = sub.subscribe_with(&[("bad/x", opts(0))], None);
        assert_eq!(codes, [ReasonCode::TopicFilterInvalid], "shards={shards}");

        // UNSUBSCRIBE s/+ removes t/+/<id>.
        sub.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: std::num::NonZeroU16::new(2).unwrap(),
            properties: Default::default(),
            filters: vec![MqttStr::from("s/+"), MqttStr::from("s/+")],
        }));
        match sub.recv() {
            Some(Packet::UnsubAck(a)) => assert_eq!(
                a.reasons,
                [ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
                "shards={shards}"
            ),
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        publ.publish(publish(&target, QoS::AtLeastOnce, 3, b"gone"));
        sub.expect_no_publish(QUIET);
    }
}

const ORDER_RULES: &str = r#"
[[rewrite]]
action = "all"
source_topic = "x/#"
re = '^x/(.+)$'
dest_topic = "first/$1"

[[rewrite]]
action = "publish"
source_topic = "x/y/#"
re = '^x/y/(\d+)$'
dest_topic = "second/$1"
"#;

#[test]
fn last_rule_first_and_the_first_matching_filter_is_final() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, ORDER_RULES, &[]);
        let (sid, pid) = ids(shards, "order");
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        // `x/#` is a subscribe filter too (the `all` rule): it becomes `first/#`.
        for f in ["x/#", "second/#", "+/y/a"] {
            sub.subscribe(f, 1);
        }
        for (i, t) in ["x/y/1", "x/y/a", "x/q"].into_iter().enumerate() {
            publ.publish(publish(t, QoS::AtLeastOnce, i as u16 + 1, b""));
        }
        // x/y/1: the last rule. x/y/a: the last rule's filter matches, its regex does not, so it
        // stays as it is (the first rule is not tried). x/q: only the first rule's filter matches.
        assert_eq!(
            topics(&mut sub),
            ["second/1", "x/y/a", "first/q"],
            "shards={shards}"
        );
    }
}

const AUTO: &str = r#"
[[auto_subscribe.topics]]
topic = "auto/${clientid}"
qos = 1

[[auto_subscribe.topics]]
topic = "user/${username}"
qos = 0

[[auto_subscribe.topics]]
topic = "peer/${host}/${port}/#"
qos = 0

[[auto_subscribe.topics]]
topic = "bad/#/${clientid}"
"#;

/// Publishes QoS 0 probes to `topic` until one reaches `sub`. (The route is everywhere before
/// the CONNACK, `auto_subscription_routes_reach_every_shard_before_the_connack`; the probes only
/// make these tests independent of that.)
fn probe(publ: &mut Raw, sub_events: &mut dyn FnMut() -> bool, topic: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        publ.publish_to(topic, QoS::AtMostOnce, b"probe");
        if sub_events() {
            return;
        }
    }
    panic!("no probe on {topic} arrived");
}

#[test]
fn auto_subscribe_with_clientid_receives_without_subscribe_and_without_suback() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, AUTO, &[]);
        let (sid, pid) = ids(shards, "auto");
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        // Retained before the client connects: delivered by the auto subscription (rh = 0).
        publ.publish(Publish {
            retain: true,
            ..publish(&format!("auto/{sid}"), QoS::AtLeastOnce, 1, b"kept")
        });

        // The subscriber is rumqttc (v5): it never sends SUBSCRIBE.
        let mut o = rumqttc::v5::MqttOptions::new(&sid, "127.0.0.1", broker.port);
        o.set_keep_alive(Duration::from_secs(30));
        let (_client, mut conn) = rumqttc::v5::Client::new(o, 16);
        let mut next_publish = |timeout: Duration| -> Option<(String, Vec<u8>, bool)> {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                match conn.recv_timeout(left) {
                    Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)))) => {
                        let topic = String::from_utf8(p.topic.to_vec()).unwrap();
                        return Some((topic, p.payload.to_vec(), p.retain));
                    }
                    Ok(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::SubAck(a)))) => {
                        panic!("shards={shards}: unexpected SUBACK {a:?}")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("shards={shards}: rumqttc: {e:?}"),
                    Err(_) => return None,
                }
            }
        };
        let (topic, payload, retain) = next_publish(WAIT).expect("the retained message");
        assert_eq!(
            (topic.as_str(), &payload[..], retain),
            (format!("auto/{sid}").as_str(), &b"kept"[..], true),
            "shards={shards}"
        );
        probe(
            &mut publ,
            &mut || next_publish(Duration::from_millis(200)).is_some(),
            &format!("auto/{sid}"),
        );
        while next_publish(QUIET).is_some() {}
        publ.publish(publish(
            &format!("auto/{sid}"),
            QoS::AtLeastOnce,
            2,
            b"live",
        ));
        let (topic, payload, retain) = next_publish(WAIT).expect("the live message");
        assert_eq!(
            (topic.as_str(), &payload[..], retain),
            (format!("auto/{sid}").as_str(), &b"live"[..], false),
            "shards={shards}"
        );
        // The `${username}` rule was skipped: nothing under user/ reaches a client without one.
        publ.publish(publish("user/", QoS::AtLeastOnce, 3, b"no"));
        publ.publish(publish("user/undefined", QoS::AtLeastOnce, 4, b"no"));
        assert_eq!(next_publish(QUIET), None, "shards={shards}");
    }
}

#[test]
fn auto_subscribe_renders_username_host_and_port() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, AUTO, &[]);
        let (sid, pid) = ids(shards, "autouser");
        let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
        let c = Connect {
            username: Some(MqttStr::from("bob")),
            ..connect_packet(V311, &sid, true)
        };
        let (mut sub, ack) = Raw::connect_with(&broker, c);
        assert_eq!(ack.reason, ReasonCode::Success);
        let local = sub.stream.local_addr().unwrap();
        // No SUBACK follows the CONNACK.
        sub.expect_silence(QUIET);
        let deadline = Instant::now() + WAIT;
        loop {
            publ.publish_to("user/bob", QoS::AtMostOnce, b"probe");
            if sub
                .recv_publish_within(Duration::from_millis(200))
                .is_some()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "shards={shards}: user/bob not subscribed"
            );
        }
        while sub.recv_publish_within(QUIET).is_some() {}
        let peer_topic = format!("peer/{}/{}/x", local.ip(), local.port());
        publ.publish(publish(&peer_topic, QoS::AtLeastOnce, 1, b"p"));
        publ.publish(publish(&format!("auto/{sid}"), QoS::AtLeastOnce, 2, b"a"));
        let mut got = topics(&mut sub);
        got.sort();
        let mut want = vec![peer_topic, format!("auto/{sid}")];
        want.sort();
        assert_eq!(got, want, "shards={shards}");

        // A resumed session is subscribed again (options replaced), still without a SUBACK.
        drop(sub);
        let c = Connect {
            username: Some(MqttStr::from("bob")),
            ..connect_packet(V311, &sid, false)
        };
        let (mut sub, _) = Raw::connect_with(&broker, c);
        sub.expect_silence(QUIET);
        publ.publish(publish("user/bob", QoS::AtLeastOnce, 3, b"again"));
        assert_eq!(&sub.recv_publish().payload[..], b"again", "shards={shards}");
    }
}

/// An auto subscription's route is on every shard before the client's CONNACK, as a SUBACK's
/// is: a publisher on another shard that publishes as soon as the CONNACK is out reaches the
/// client (FEATURES.md §7: applied when the client connects). Repeated: without the
/// wait the PUBLISH races the route across the mesh.
#[test]
fn auto_subscription_routes_reach_every_shard_before_the_connack() {
    let shards = 2;
    let broker = Broker::start_with(shards, AUTO, &[]);
    let pid = id_on(1, shards, "race-pub");
    let (mut publ, _) = Raw::connect(&broker, V5, &pid, true);
    let mut missed = Vec::new();
    for i in 0..40u16 {
        let sid = id_on(0, shards, &format!("race{i}-sub"));
        let (mut sub, _) = Raw::connect(&broker, V5, &sid, true);
        let topic = format!("auto/{sid}");
        publ.publish(publish(&topic, QoS::AtLeastOnce, i + 1, b"first"));
        match sub.recv_publish_within(Duration::from_secs(2)) {
            Some(p) => assert_eq!(p.topic.as_str(), topic),
            None => missed.push(i),
        }
        sub.disconnect();
    }
    assert!(missed.is_empty(), "first messages missed: {missed:?}");
}

/// A client that sends its CONNECT and shuts its side at once still gets its CONNACK when the
/// CONNACK waits for an auto subscription's routes: the end of its input releases it.
#[test]
fn a_connect_followed_by_end_of_stream_still_gets_its_connack_with_auto_subscribe() {
    use std::io::{Read, Write};
    let shards = 2;
    let broker = Broker::start_with(shards, AUTO, &[]);
    for i in 0..10 {
        let mut wire = bytes::BytesMut::new();
        let c = connect_packet(V311, &format!("eof-{i}"), true);
        Packet::Connect(Box::new(c))
            .encode(V311, &mut wire)
            .unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", broker.port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&wire).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, [0x20, 2, 0, 0], "round {i}: CONNACK, then the close");
    }
}
