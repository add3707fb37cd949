//! Sans-io tests of one shard's broker logic with two shards: bytes in, bytes and mesh messages
//! out, so cross-shard orderings that a socket test can hardly provoke are pinned exactly.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::mesh::{MeshMsg, home_shard, retain_shard};
use super::{Broker, ConnId, Settings};
use crate::protocol::*;

const V: ProtocolVersion = ProtocolVersion::V5;

fn id_on(shard: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| home_shard(id, 2) == shard)
        .unwrap()
}

fn bytes_of(p: Packet) -> BytesMut {
    let mut b = BytesMut::new();
    p.encode(V, &mut b).unwrap();
    b
}

/// Output of a connection, decoded.
fn output(b: &mut Broker, id: ConnId) -> Vec<Packet> {
    let (mut tx, _) = b.take_output(id);
    let mut dec = Decoder::with_version(V, 1 << 20);
    std::iter::from_fn(|| dec.decode(&mut tx).unwrap()).collect()
}

fn connected(b: &mut Broker, client: &str) -> ConnId {
    let id = b.open(SocketAddr::from(([127, 0, 0, 1], 5000)), 0);
    let c = Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 0,
        properties: Default::default(),
        client_id: MqttStr::from(client),
        will: None,
        username: None,
        password: None,
    };
    let mut rx = bytes_of(Packet::Connect(Box::new(c)));
    assert!(matches!(b.input(id, &mut rx, 0), super::Input::Continue));
    assert!(matches!(output(b, id).as_slice(), [Packet::ConnAck(_)]));
    id
}

fn shard0() -> Broker {
    // No `$SYS` stats or heartbeat: the tests count the mesh messages a tick makes.
    let s = Settings {
        sys_msg_interval_ms: None,
        sys_heartbeat_interval_ms: None,
        ..Settings::default()
    };
    Broker::new(0, 2, Rc::new(s))
}

fn mesh(b: &mut Broker) -> Vec<MeshMsg> {
    b.take_mesh_out(1, usize::MAX)
}

#[test]
fn retained_publish_ack_waits_for_the_retain_shard() {
    let mut b = shard0();
    let id = connected(&mut b, &id_on(0, "p"));
    let topic = (0..)
        .map(|i| format!("t/{i}"))
        .find(|t| retain_shard(t, 2) == 1)
        .unwrap();
    let pid = NonZeroU16::new(5).unwrap();
    let publish = |retain: bool, pid: NonZeroU16| {
        bytes_of(Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            retain,
            topic: MqttStr::from(topic.as_str()),
            packet_id: Some(pid),
            payload: Bytes::from_static(b"x"),
            ..Default::default()
        }))
    };
    let mut rx = publish(true, pid);
    // A second, non-retained publish right behind: its PUBACK must not overtake the first.
    rx.extend_from_slice(&publish(false, NonZeroU16::new(6).unwrap()));
    b.input(id, &mut rx, 1);
    assert!(
        output(&mut b, id).is_empty(),
        "no PUBACK before the retained message is stored"
    );
    let token = match mesh(&mut b).as_slice() {
        [MeshMsg::Retain(m, Some(token))] => {
            assert_eq!(m.topic.as_str(), topic);
            *token
        }
        other => panic!("expected one Retain with a token, got {other:?}"),
    };
    b.mesh_in(1, MeshMsg::RetainStored(token), 2);
    let acks: Vec<u16> = output(&mut b, id)
        .into_iter()
        .map(|p| match p {
            Packet::PubAck(a) => a.packet_id.get(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acks, vec![5, 6]);
}

#[test]
fn suback_waits_until_the_other_shard_has_the_route() {
    let mut b = shard0();
    let id = connected(&mut b, &id_on(0, "s"));
    let subscribe = |pid: u16, filter: &str| {
        bytes_of(Packet::Subscribe(Subscribe {
            packet_id: NonZeroU16::new(pid).unwrap(),
            properties: Default::default(),
            filters: vec![(MqttStr::from(filter), Default::default())],
        }))
    };
    let mut rx = subscribe(1, "a/+");
    b.input(id, &mut rx, 1);
    assert!(output(&mut b, id).is_empty(), "SUBACK held");
    let sent = mesh(&mut b);
    let epoch = match sent.as_slice() {
        [MeshMsg::RouteAdd(f), MeshMsg::RouteSync(e)] => {
            assert_eq!(f.as_str(), "a/+");
            *e
        }
        other => panic!("expected RouteAdd then RouteSync, got {other:?}"),
    };
    // A second SUBSCRIBE of an existing filter still queues behind the first.
    let mut rx = subscribe(2, "a/+");
    b.input(id, &mut rx, 1);
    assert!(output(&mut b, id).is_empty());
    b.mesh_in(1, MeshMsg::RouteSyncAck(epoch), 2);
    let acks: Vec<u16> = output(&mut b, id)
        .into_iter()
        .map(|p| match p {
            Packet::SubAck(a) => a.packet_id.get(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(acks, vec![1, 2]);
    // Once synced, a subscription that adds no route is answered at once.
    let mut rx = subscribe(3, "a/+");
    b.input(id, &mut rx, 3);
    assert!(matches!(output(&mut b, id).as_slice(), [Packet::SubAck(a)] if a.packet_id.get() == 3));
}

#[test]
fn a_route_sync_is_answered_in_order() {
    let mut b = shard0();
    b.mesh_in(1, MeshMsg::RouteAdd(MqttStr::from("x/#")), 0);
    b.mesh_in(1, MeshMsg::RouteSync(7), 0);
    assert!(matches!(
        mesh(&mut b).as_slice(),
        [MeshMsg::RouteSyncAck(7)]
    ));
}

#[test]
fn auto_subscribe_adds_routes_like_a_subscribe_without_a_suback() {
    let settings = Settings {
        auto_subscribe: vec![crate::config::AutoSubscribeTopic {
            topic: "auto/${clientid}/${port}".into(),
            qos: QoS::AtLeastOnce,
            rh: RetainHandling::SendAtSubscribe,
            rap: false,
            nl: false,
        }],
        ..Settings::default()
    };
    let mut b = Broker::new(0, 2, Rc::new(settings));
    let client = id_on(0, "a");
    // `connected` asserts the CONNACK is all the output: no SUBACK.
    connected(&mut b, &client);
    let want = format!("auto/{client}/5000");
    assert!(
        mesh(&mut b)
            .iter()
            .any(|m| matches!(m, MeshMsg::RouteAdd(f) if **f == *want)),
        "no RouteAdd for {want}"
    );
}

#[test]
fn a_delayed_publish_is_acked_now_and_routed_from_this_shard_when_due() {
    let mut b = shard0();
    b.set_unix_time(0, 1_700_000_000_000);
    let id = connected(&mut b, &id_on(0, "d"));
    let topic = (0..)
        .map(|i| format!("d/{i}"))
        .find(|t| retain_shard(t, 2) == 1)
        .unwrap();
    // Shard 1 has a subscriber of the topic.
    b.mesh_in(1, MeshMsg::RouteAdd(MqttStr::from("d/#")), 0);
    let mut rx = bytes_of(Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: MqttStr::from(format!("$delayed/2/{topic}").as_str()),
        packet_id: NonZeroU16::new(4),
        payload: Bytes::from_static(b"x"),
        ..Default::default()
    }));
    b.input(id, &mut rx, 100);
    // Acknowledged at once with 0x10, even though retained on another shard: nothing is
    // stored or routed yet.
    assert!(matches!(
        output(&mut b, id).as_slice(),
        [Packet::PubAck(a)] if a.packet_id.get() == 4 && a.reason == ReasonCode::NoMatchingSubscribers
    ));
    assert!(mesh(&mut b).is_empty());
    assert_eq!(b.delayed_count(), 1);
    b.tick(2099, 1_700_000_002_099);
    assert!(mesh(&mut b).is_empty(), "not early");
    b.tick(2100, 1_700_000_002_100);
    match mesh(&mut b).as_slice() {
        [MeshMsg::Retain(r, None), MeshMsg::Publish(m)] => {
            assert_eq!(m.topic.as_str(), topic);
            assert!(m.retain && r.retain);
            assert_eq!(m.qos, QoS::AtLeastOnce);
        }
        other => panic!("expected Retain then Publish, got {other:?}"),
    }
    assert_eq!(b.delayed_count(), 0);
    assert_eq!(b.counters.delayed_published, 1);
}

/// A v5 DISCONNECT for a violation names it in a Reason String, unless the string would make
/// the packet larger than the client's Maximum Packet Size.
#[test]
fn violations_are_explained_within_the_clients_maximum_packet_size() {
    for (max, explained) in [(None, true), (Some(16u32), false)] {
        let mut b = shard0();
        let id = b.open(SocketAddr::from(([127, 0, 0, 1], 5000)), 0);
        let mut c = Connect {
            protocol: V,
            clean_start: true,
            keep_alive: 0,
            properties: Default::default(),
            client_id: MqttStr::from(id_on(0, "e").as_str()),
            will: None,
            username: None,
            password: None,
        };
        c.properties.maximum_packet_size = max.and_then(std::num::NonZeroU32::new);
        let mut rx = bytes_of(Packet::Connect(Box::new(c)));
        b.input(id, &mut rx, 0);
        assert!(matches!(
            output(&mut b, id).as_slice(),
            [Packet::ConnAck(_)]
        ));
        // PUBLISH with QoS 3 ([MQTT-3.3.1-4]): malformed.
        let mut rx = BytesMut::from(&[0x36u8, 0x05, 0x00, 0x01, b't', 0x00, 0x01][..]);
        assert!(matches!(b.input(id, &mut rx, 1), super::Input::Close));
        match output(&mut b, id).as_slice() {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason, ReasonCode::MalformedPacket);
                let why = d.properties.reason_string.as_ref().map(|s| s.to_string());
                assert_eq!(why.is_some(), explained, "{why:?}");
                if let Some(why) = why {
                    assert!(why.contains("[MQTT-3.3.1-4]"), "{why}");
                }
            }
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }
}
