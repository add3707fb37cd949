//! Smoke tests of the running broker: publish / subscribe at each QoS with publisher and
//! subscriber on different shards, and takeover across shards.

mod support;

use std::num::NonZeroU16;

use ringmq::protocol::*;
use support::*;

#[test]
fn qos_levels_cross_shards() {
    for shards in [1, 2] {
        let broker = Broker::start(shards);
        let (mut sub, _) = Raw::connect(&broker, V5, &id_on(0, shards, "sub"), true);
        subscribe(&mut sub, "t/#", QoS::ExactlyOnce);
        let (mut publ, _) = Raw::connect(&broker, V311, &id_on(shards - 1, shards, "pub"), true);
        publ.send(&publish_packet("t/0", QoS::AtMostOnce, 0, b"zero"));
        publ.send(&publish_packet("t/1", QoS::AtLeastOnce, 7, b"one"));
        assert!(matches!(publ.recv(), Some(Packet::PubAck(a)) if a.packet_id.get() == 7));
        publ.send(&publish_packet("t/2", QoS::ExactlyOnce, 8, b"two"));
        assert!(matches!(publ.recv(), Some(Packet::PubRec(a)) if a.packet_id.get() == 8));
        publ.send(&Packet::PubRel(Ack::new(NonZeroU16::new(8).unwrap())));
        assert!(matches!(publ.recv(), Some(Packet::PubComp(a)) if a.packet_id.get() == 8));
        let mut got = Vec::new();
        for _ in 0..3 {
            match sub.recv() {
                Some(Packet::Publish(p)) => {
                    got.push((p.topic.to_string(), p.qos));
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())))
                        }
                        QoS::ExactlyOnce => {
                            sub.send(&Packet::PubRec(Ack::new(p.packet_id.unwrap())));
                            assert!(matches!(sub.recv(), Some(Packet::PubRel(_))));
                            sub.send(&Packet::PubComp(Ack::new(p.packet_id.unwrap())));
                        }
                    }
                }
                other => panic!("shards={shards}: expected PUBLISH, got {other:?}"),
            }
        }
        assert_eq!(
            got,
            vec![
                ("t/0".to_string(), QoS::AtMostOnce),
                ("t/1".to_string(), QoS::AtLeastOnce),
                ("t/2".to_string(), QoS::ExactlyOnce)
            ],
            "shards={shards}"
        );
    }
}

#[test]
fn takeover_disconnects_the_first_connection_with_0x8e() {
    let broker = Broker::start(2);
    let id = id_on(1, 2, "dup");
    let (mut first, _) = Raw::connect(&broker, V5, &id, false);
    let (_second, ack) = Raw::connect(&broker, V5, &id, false);
    assert!(ack.session_present);
    let got = first.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SessionTakenOver),
        "{got:?}"
    );
}

/// A client that sends CONNECT, SUBSCRIBE and PUBLISH in one write, before any answer: the bytes
/// after the CONNECT travel with the socket when it moves to its home shard.
#[test]
fn pipelined_packets_survive_the_move_to_the_home_shard() {
    let shards = 2;
    let broker = Broker::start(shards);
    // Many connections, so both shards accept some whose home is the other one.
    for n in 0..24 {
        let id = id_on(n % shards, shards, &format!("pipe{n}"));
        let mut c = Raw::open(&broker, V311);
        let mut wire = bytes::BytesMut::new();
        let topic = format!("pipe/{n}");
        for p in [
            Packet::Connect(Box::new(connect_packet(V311, &id, true))),
            Packet::Subscribe(Subscribe {
                packet_id: NonZeroU16::new(1).unwrap(),
                properties: Default::default(),
                filters: vec![(MqttStr::from(topic.as_str()), Default::default())],
            }),
            publish_packet(&topic, QoS::AtMostOnce, 0, b"self"),
        ] {
            p.encode(V311, &mut wire).unwrap();
        }
        c.send_raw(&wire);
        assert!(matches!(c.recv(), Some(Packet::ConnAck(a)) if a.reason == ReasonCode::Success));
        // The spec lets the broker send matching PUBLISHes before the SUBACK; both must come.
        let mut got = [c.recv(), c.recv()];
        got.sort_by_key(|p| matches!(p, Some(Packet::Publish(_))));
        match got {
            [Some(Packet::SubAck(_)), Some(Packet::Publish(p))] => {
                assert_eq!(&p.payload[..], b"self")
            }
            other => panic!("connection {n}: expected SUBACK and its own message, got {other:?}"),
        }
    }
}
