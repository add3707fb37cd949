//! Black-box tests of will messages (FEATURES §3): when they are published and when not, the
//! retain flag, will properties, the v5 Will Delay Interval (with cancellation by reconnect and
//! the session-end override) and takeover. The will's client and its subscriber live on different
//! home shards when there are two.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];

/// A CONNECT with a will on `topic` (payload `will of <id>`), QoS 1.
fn with_will(v: ProtocolVersion, id: &str, topic: &str) -> Connect {
    let mut c = connect_packet(v, id, true);
    c.will = Some(LastWill {
        topic: MqttStr::from(topic),
        payload: Bytes::from(format!("will of {id}")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    c
}

/// A v5 CONNECT with a will delay and a session expiry.
fn delayed(id: &str, topic: &str, delay: u32, expiry: Option<u32>) -> Connect {
    let mut c = with_will(V5, id, topic);
    c.will.as_mut().unwrap().properties.will_delay_interval = Some(delay);
    c.properties.session_expiry_interval = expiry;
    c
}

fn connect_ok(broker: &Broker, c: Connect) -> Raw {
    let (raw, ack) = Raw::connect_with(broker, c);
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    raw
}

/// A v5 subscriber of `topic` on `shard`, with the route to it known to the will client's
/// shard: `probe` (connected on `will_shard`) publishes probes until one arrives.
fn subscriber(broker: &Broker, shard: usize, will_shard: usize, topic: &str) -> Raw {
    let (mut sub, _) = Raw::connect(broker, V5, &id_on(shard, broker.shards, "sub"), true);
    subscribe(&mut sub, topic, QoS::AtLeastOnce);
    let (mut probe, _) = Raw::connect(broker, V5, &id_on(will_shard, broker.shards, "probe"), true);
    sync_route(&mut probe, &mut sub, &topic.replace('#', "probe"));
    sub
}

/// The will, received by `sub` (acknowledged).
fn expect_will(sub: &mut Raw, topic: &str, id: &str) -> Publish {
    let p = expect_publish(sub);
    assert_eq!(p.topic.as_str(), topic);
    assert_eq!(&p.payload[..], format!("will of {id}").as_bytes());
    if let Some(pid) = p.packet_id {
        sub.send(&Packet::PubAck(Ack::new(pid)));
    }
    p
}

#[test]
fn will_is_published_on_abrupt_close_to_another_shard() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "will/#");
        for v in [V31, V311, V5] {
            let id = id_on(shards - 1, shards, &format!("dying-{v:?}"));
            let topic = format!("will/{v:?}");
            let c = connect_ok(&broker, with_will(v, &id, &topic));
            c.abort();
            let p = expect_will(&mut sub, &topic, &id);
            assert_eq!(p.qos, QoS::AtLeastOnce, "shards={shards} {v:?}");
            assert!(!p.retain);
        }
        sub.expect_silence(Duration::from_millis(500));
    }
}

#[test]
fn will_is_discarded_by_a_normal_disconnect() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "quiet/#");
        for v in [V31, V311, V5] {
            let id = id_on(shards - 1, shards, &format!("polite-{v:?}"));
            let c = connect_ok(&broker, with_will(v, &id, &format!("quiet/{v:?}")));
            c.disconnect();
        }
        sub.expect_silence(Duration::from_secs(2));
    }
}

#[test]
fn v5_disconnect_with_will_message_publishes_it() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "w4/#");
        let id = id_on(shards - 1, shards, "w4");
        let mut c = connect_ok(&broker, with_will(V5, &id, "w4/x"));
        c.send(&Packet::Disconnect(Disconnect::new(
            ReasonCode::DisconnectWithWillMessage,
        )));
        assert_eq!(c.expect_closed(), vec![]);
        expect_will(&mut sub, "w4/x", &id);
        sub.expect_silence(Duration::from_millis(500));
    }
}

#[test]
fn will_retain_flag_makes_it_retained() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut live = subscriber(&broker, 0, shards - 1, "kept/will");
        let id = id_on(shards - 1, shards, "retainer");
        let mut conn = with_will(V311, &id, "kept/will");
        conn.will.as_mut().unwrap().retain = true;
        connect_ok(&broker, conn).abort();
        // A current subscriber gets it without the retain flag ...
        let p = expect_will(&mut live, "kept/will", &id);
        assert!(!p.retain);
        // ... a later one as a retained message, wherever it lives.
        for shard in 0..shards {
            let (mut late, _) = Raw::connect(&broker, V5, &id_on(shard, shards, "late"), true);
            subscribe(&mut late, "kept/#", QoS::AtLeastOnce);
            let p = expect_will(&mut late, "kept/will", &id);
            assert!(p.retain, "shards={shards}: {p:?}");
        }
    }
}

fn will_properties() -> WillProperties {
    WillProperties {
        will_delay_interval: None,
        payload_format_indicator: Some(true),
        message_expiry_interval: Some(300),
        content_type: Some(MqttStr::from("text/plain")),
        response_topic: Some(MqttStr::from("reply/here")),
        correlation_data: Some(Bytes::from_static(b"\x00corr\xff")),
        user_properties: vec![
            (MqttStr::from("k"), MqttStr::from("v1")),
            (MqttStr::from("k"), MqttStr::from("v2")),
        ],
    }
}

#[test]
fn will_properties_are_carried() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "props/#");
        let id = id_on(shards - 1, shards, "props");
        let mut conn = with_will(V5, &id, "props/will");
        conn.will.as_mut().unwrap().properties = will_properties();
        connect_ok(&broker, conn).abort();
        let p = expect_will(&mut sub, "props/will", &id);
        let want = will_properties();
        let got = &p.properties;
        assert_eq!(got.payload_format_indicator, Some(true));
        assert_eq!(got.extra().content_type, want.content_type);
        assert_eq!(got.extra().response_topic, want.response_topic);
        assert_eq!(got.extra().correlation_data, want.correlation_data);
        assert_eq!(got.extra().user_properties, want.user_properties);
        let expiry = got
            .message_expiry_interval
            .expect("message expiry forwarded");
        assert!((290..=300).contains(&expiry), "{expiry}");
    }
}

/// The next incoming v5 packet for which `want` holds.
fn next(
    conn: &mut rumqttc::v5::Connection,
    want: &mut dyn FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> bool,
) -> rumqttc::v5::mqttbytes::v5::Packet {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(rumqttc::v5::Event::Incoming(p))) if want(&p) => return p,
            Ok(Err(e)) => panic!("rumqttc: {e:?}"),
            _ => {}
        }
    }
    panic!("rumqttc: timed out");
}

#[test]
fn will_properties_reach_a_rumqttc_v5_subscriber() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    use rumqttc::v5::mqttbytes::v5::Packet as P;
    use rumqttc::v5::{Client, Event, MqttOptions};
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let sub_id = id_on(0, shards, "rumq-sub");
        let (client, mut conn) =
            Client::new(MqttOptions::new(&sub_id, "127.0.0.1", broker.port), 10);
        next(&mut conn, &mut |p| matches!(p, P::ConnAck(_)));
        client.subscribe("rq/#", Q::AtLeastOnce).unwrap();
        next(&mut conn, &mut |p| matches!(p, P::SubAck(_)));

        let id = id_on(shards - 1, shards, "rumq-will");
        // Wait for the route: probes from the will client's shard until one arrives.
        let (mut probe, _) = Raw::connect(&broker, V5, &id_on(shards - 1, shards, "probe"), true);
        let deadline = Instant::now() + WAIT;
        let mut seen = false;
        while !seen {
            assert!(Instant::now() < deadline, "no route");
            probe.publish_to("rq/probe", QoS::AtMostOnce, b"probe");
            let until = Instant::now() + Duration::from_millis(200);
            while !seen && Instant::now() < until {
                seen = matches!(
                    conn.recv_timeout(Duration::from_millis(50)),
                    Ok(Ok(Event::Incoming(P::Publish(_))))
                );
            }
        }

        let mut c = with_will(V5, &id, "rq/will");
        c.will.as_mut().unwrap().properties = will_properties();
        connect_ok(&broker, c).abort();
        let P::Publish(p) = next(
            &mut conn,
            &mut |p| matches!(p, P::Publish(p) if &p.topic[..] == b"rq/will"),
        ) else {
            unreachable!()
        };
        assert_eq!(&p.payload[..], format!("will of {id}").as_bytes());
        let props = p.properties.expect("will properties");
        assert_eq!(props.payload_format_indicator, Some(1));
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
        assert_eq!(props.response_topic.as_deref(), Some("reply/here"));
        assert_eq!(
            props.correlation_data.as_deref(),
            Some(&b"\x00corr\xff"[..])
        );
        assert_eq!(
            props.user_properties,
            vec![("k".into(), "v1".into()), ("k".into(), "v2".into())]
        );
        assert!(props.message_expiry_interval.is_some_and(|e| e <= 300));
    }
}

#[test]
fn will_from_a_dropped_rumqttc_client() {
    use rumqttc::{Client, Event, LastWill, MqttOptions, Packet as P, QoS as Q};
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "rw/#");
        let id = id_on(shards - 1, shards, "rumq-dying");
        let mut o = MqttOptions::new(&id, "127.0.0.1", broker.port);
        o.set_last_will(LastWill::new(
            "rw/x",
            format!("will of {id}"),
            Q::AtLeastOnce,
            false,
        ));
        let (client, mut conn) = Client::new(o, 10);
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no CONNACK");
            if let Ok(Ok(Event::Incoming(P::ConnAck(_)))) =
                conn.recv_timeout(Duration::from_millis(200))
            {
                break;
            }
        }
        // Dropping the event loop closes the socket without DISCONNECT.
        drop((client, conn));
        expect_will(&mut sub, "rw/x", &id);
    }
}

#[test]
fn will_delay_interval_delays_the_will() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "late/#");
        let id = id_on(shards - 1, shards, "slow");
        let c = connect_ok(&broker, delayed(&id, "late/will", 2, Some(60)));
        let start = Instant::now();
        c.abort();
        // Not before the delay ...
        sub.expect_silence(Duration::from_millis(1800));
        // ... but soon after it.
        expect_will(&mut sub, "late/will", &id);
        assert!(
            start.elapsed() >= Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn reconnecting_before_the_will_delay_cancels_the_will() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "cancel/#");
        let id = id_on(shards - 1, shards, "back");
        // Resume after an abrupt close.
        let c = connect_ok(&broker, delayed(&id, "cancel/1", 2, Some(60)));
        c.abort();
        std::thread::sleep(Duration::from_millis(300));
        let mut again = connect_packet(V5, &id, false);
        again.properties.session_expiry_interval = Some(60);
        let (c, ack) = Raw::connect_with(&broker, again.clone());
        assert!(ack.session_present);
        // Takeover of a live connection by the same client id.
        let id2 = id_on(shards - 1, shards, "back2");
        let mut first = connect_ok(&broker, delayed(&id2, "cancel/2", 2, Some(60)));
        again.client_id = MqttStr::from(id2.as_str());
        let (c2, ack) = Raw::connect_with(&broker, again);
        assert!(ack.session_present);
        first.expect_closed();
        sub.expect_silence(Duration::from_secs(4));
        drop((c, c2));
    }
}

#[test]
fn will_delay_is_ignored_when_the_session_ends_at_once() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "now/#");
        // Session expiry 0 (absent): the session ends with the connection, and so the delay.
        let id = id_on(shards - 1, shards, "now");
        let c = connect_ok(&broker, delayed(&id, "now/1", 30, None));
        c.abort();
        expect_will(&mut sub, "now/1", &id);
        // Session expiry shorter than the delay: published when the session ends.
        let id = id_on(shards - 1, shards, "soon");
        let c = connect_ok(&broker, delayed(&id, "now/2", 30, Some(1)));
        c.abort();
        expect_will(&mut sub, "now/2", &id);
    }
}

#[test]
fn takeover_publishes_the_will_of_the_old_connection() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut sub = subscriber(&broker, 0, shards - 1, "over/#");
        for v in [V311, V5] {
            let id = id_on(shards - 1, shards, &format!("over-{v:?}"));
            let topic = format!("over/{v:?}");
            let mut first = connect_ok(&broker, with_will(v, &id, &topic));
            let (mut second, _) = Raw::connect(&broker, v, &id, true);
            let got = first.expect_closed();
            if v == V5 {
                assert!(
                    matches!(got.as_slice(), [Packet::Disconnect(d)]
                        if d.reason == ReasonCode::SessionTakenOver),
                    "{got:?}"
                );
            }
            expect_will(&mut sub, &topic, &id);
            // Exactly once, and the new connection works.
            sub.expect_silence(Duration::from_millis(500));
            second.send(&Packet::PingReq);
            assert_eq!(second.recv(), Some(Packet::PingResp));
        }
    }
}
