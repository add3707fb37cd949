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

pub(super) fn id_on(shard: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| home_shard(id, 2) == shard)
        .unwrap()
}

pub(super) fn bytes_of(p: Packet) -> BytesMut {
    let mut b = BytesMut::new();
    p.encode(V, &mut b).unwrap();
    b
}

/// Output of a connection, decoded.
pub(super) fn output(b: &mut Broker, id: ConnId) -> Vec<Packet> {
    let (mut tx, _) = b.take_output(id);
    let mut dec = Decoder::with_version(V, 1 << 20);
    std::iter::from_fn(|| dec.decode(&mut tx).unwrap()).collect()
}

/// A minimal v5 CONNECT for `client`.
pub(super) fn connect_packet(client: &str) -> Connect {
    Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 0,
        properties: Default::default(),
        client_id: MqttStr::from(client),
        will: None,
        username: None,
        password: None,
    }
}

/// Opens a connection and feeds it `c`; the output is left for the caller.
pub(super) fn connect_with(b: &mut Broker, c: Connect) -> ConnId {
    let id = b.open(SocketAddr::from(([127, 0, 0, 1], 5000)), 0);
    let mut rx = bytes_of(Packet::Connect(Box::new(c)));
    assert!(matches!(b.input(id, &mut rx, 0), super::Input::Continue));
    id
}

pub(super) fn connected(b: &mut Broker, client: &str) -> ConnId {
    let id = connect_with(b, connect_packet(client));
    assert!(matches!(output(b, id).as_slice(), [Packet::ConnAck(_)]));
    id
}

pub(super) fn shard0() -> Broker {
    // No `$SYS` stats or heartbeat: the tests count the mesh messages a tick makes.
    let s = Settings {
        sys_msg_interval_ms: None,
        sys_heartbeat_interval_ms: None,
        ..Settings::default()
    };
    Broker::new(0, 2, Rc::new(s))
}

pub(super) fn mesh(b: &mut Broker) -> Vec<MeshMsg> {
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

/// The RouteSync epochs in `sent`.
fn route_syncs(sent: &[MeshMsg]) -> Vec<u64> {
    sent.iter()
        .filter_map(|m| match m {
            MeshMsg::RouteSync(e) => Some(*e),
            _ => None,
        })
        .collect()
}

#[test]
fn one_route_sync_round_trip_releases_every_suback_held_meanwhile() {
    let mut b = shard0();
    let id = connected(&mut b, &id_on(0, "s"));
    // Three SUBSCRIBEs of new filters: the second and third arrive while the first one's
    // RouteSync is in flight.
    for (pid, filter) in [(1, "a"), (2, "b"), (3, "c")] {
        b.input(id, &mut subscribe_packet(pid, &[filter]), 1);
    }
    assert!(output(&mut b, id).is_empty(), "SUBACKs held");
    let first = route_syncs(&mesh(&mut b));
    assert_eq!(first.len(), 1, "one RouteSync in flight at a time");
    b.mesh_in(1, MeshMsg::RouteSyncAck(first[0]), 2);
    assert_eq!(subacks(&mut b, id).len(), 1);
    // The next RouteSync covers every route broadcast so far, so one more round trip releases
    // both SUBACKs still held (not one per round trip).
    let next = route_syncs(&mesh(&mut b));
    assert_eq!(next.len(), 1);
    b.mesh_in(1, MeshMsg::RouteSyncAck(next[0]), 3);
    let ids: Vec<u16> = subacks(&mut b, id).into_iter().map(|(p, _)| p).collect();
    assert_eq!(ids, vec![2, 3]);
    assert!(route_syncs(&mesh(&mut b)).is_empty());
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
    let id = connect_with(&mut b, connect_packet(&client));
    let want = format!("auto/{client}/5000");
    let sent = mesh(&mut b);
    assert!(
        sent.iter()
            .any(|m| matches!(m, MeshMsg::RouteAdd(f) if **f == *want)),
        "no RouteAdd for {want}"
    );
    // The CONNACK waits until the other shard confirms the route, as a SUBACK would.
    let epoch = sent
        .iter()
        .find_map(|m| match m {
            MeshMsg::RouteSync(e) => Some(*e),
            _ => None,
        })
        .expect("a RouteSync asked for");
    assert!(
        output(&mut b, id).is_empty(),
        "output before the routes are synced"
    );
    b.mesh_in(1, MeshMsg::RouteSyncAck(epoch), 1);
    // Then the CONNACK alone: no SUBACK.
    assert!(matches!(
        output(&mut b, id).as_slice(),
        [Packet::ConnAck(_)]
    ));
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
        let mut c = connect_packet(&id_on(0, "e"));
        c.properties.maximum_packet_size = max.and_then(std::num::NonZeroU32::new);
        let id = connect_with(&mut b, c);
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

fn exclusive_shard0() -> Broker {
    let settings = Settings {
        exclusive_subscription: true,
        ..Settings::default()
    };
    Broker::new(0, 2, Rc::new(settings))
}

/// A filter whose exclusive lock lives on `shard`.
fn locked_on(shard: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}/{i}"))
        .find(|f| super::exclusive::lock_shard(f, 2) == shard)
        .unwrap()
}

fn subscribe_packet(pid: u16, filters: &[&str]) -> BytesMut {
    bytes_of(Packet::Subscribe(Subscribe {
        packet_id: NonZeroU16::new(pid).unwrap(),
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|f| (MqttStr::from(*f), Default::default()))
            .collect(),
    }))
}

fn subacks(b: &mut Broker, id: ConnId) -> Vec<(u16, Vec<ReasonCode>)> {
    output(b, id)
        .into_iter()
        .map(|p| match p {
            Packet::SubAck(a) => (a.packet_id.get(), a.reasons),
            other => panic!("expected SUBACK, got {other:?}"),
        })
        .collect()
}

/// Answers every RouteSync sent to shard 1 as it would; returns the lock requests.
fn ack_route_syncs(b: &mut Broker) -> Vec<super::exclusive::ExclusiveLock> {
    let sent = mesh(b);
    ack_sent(b, sent)
}

fn ack_sent(b: &mut Broker, sent: Vec<MeshMsg>) -> Vec<super::exclusive::ExclusiveLock> {
    let mut locks = Vec::new();
    for m in sent {
        match m {
            MeshMsg::RouteSync(e) => {
                b.mesh_in(1, MeshMsg::RouteSyncAck(e), 1);
            }
            MeshMsg::ExclusiveLock(l) => locks.push(*l),
            _ => {}
        }
    }
    locks
}

#[test]
fn an_exclusive_suback_waits_for_the_lock_shard_and_keeps_its_place() {
    let mut b = exclusive_shard0();
    let client = id_on(0, "x");
    let id = connected(&mut b, &client);
    let f = locked_on(1, "ex");
    let ex = format!("$exclusive/{f}");
    // Several filters, one needing the remote lock; then a plain SUBSCRIBE right behind.
    let mut rx = subscribe_packet(1, &["plain/a", &ex]);
    rx.extend_from_slice(&subscribe_packet(2, &["plain/b"]));
    b.input(id, &mut rx, 1);
    let locks = ack_route_syncs(&mut b);
    assert!(
        output(&mut b, id).is_empty(),
        "both SUBACKs held for the lock"
    );
    let lock = match locks.as_slice() {
        [l] => l,
        other => panic!("expected one lock request, got {other:?}"),
    };
    assert_eq!(lock.filter.as_str(), f);
    assert_eq!(lock.holder.client_id.as_str(), client);
    assert_eq!(lock.holder.shard, 0);
    b.mesh_in(
        1,
        MeshMsg::ExclusiveLockReply {
            token: lock.token,
            granted: true,
        },
        2,
    );
    // The granted subscription is an ordinary one: its route goes out, and the SUBACK waits for
    // the other shard to have it.
    let sent = mesh(&mut b);
    assert!(
        sent.iter()
            .any(|m| matches!(m, MeshMsg::RouteAdd(r) if r.as_str() == f)),
        "{sent:?}"
    );
    assert!(output(&mut b, id).is_empty());
    ack_sent(&mut b, sent);
    assert_eq!(
        subacks(&mut b, id),
        vec![
            (1, vec![ReasonCode::Success, ReasonCode::Success]),
            (2, vec![ReasonCode::Success])
        ]
    );
}

#[test]
fn a_denied_exclusive_lock_is_quota_exceeded() {
    let mut b = exclusive_shard0();
    let id = connected(&mut b, &id_on(0, "x"));
    let f = locked_on(1, "ex");
    let mut rx = subscribe_packet(1, &[&format!("$exclusive/{f}")]);
    b.input(id, &mut rx, 1);
    let locks = ack_route_syncs(&mut b);
    assert!(output(&mut b, id).is_empty());
    b.mesh_in(
        1,
        MeshMsg::ExclusiveLockReply {
            token: locks[0].token,
            granted: false,
        },
        2,
    );
    assert_eq!(
        subacks(&mut b, id),
        vec![(1, vec![ReasonCode::QuotaExceeded])]
    );
    assert!(
        mesh(&mut b).is_empty(),
        "no route for a refused subscription"
    );
}

#[test]
fn a_local_lock_is_answered_at_once_and_released_by_unsubscribe() {
    let mut b = exclusive_shard0();
    let a = connected(&mut b, &id_on(0, "a"));
    let c = connected(&mut b, &id_on(0, "c"));
    let ex = format!("$exclusive/{}", locked_on(0, "ex"));
    let mut rx = subscribe_packet(1, &[&ex]);
    b.input(a, &mut rx, 1);
    ack_route_syncs(&mut b);
    assert_eq!(subacks(&mut b, a), vec![(1, vec![ReasonCode::Success])]);
    let mut rx = subscribe_packet(1, &[&ex]);
    b.input(c, &mut rx, 1);
    assert_eq!(
        subacks(&mut b, c),
        vec![(1, vec![ReasonCode::QuotaExceeded])]
    );
    // The holder subscribes again.
    let mut rx = subscribe_packet(2, &[&ex]);
    b.input(a, &mut rx, 1);
    assert_eq!(subacks(&mut b, a), vec![(2, vec![ReasonCode::Success])]);
    let mut rx = bytes_of(Packet::Unsubscribe(Unsubscribe {
        packet_id: NonZeroU16::new(3).unwrap(),
        properties: Default::default(),
        filters: vec![MqttStr::from(ex.as_str())],
    }));
    b.input(a, &mut rx, 1);
    assert!(matches!(
        output(&mut b, a).as_slice(),
        [Packet::UnsubAck(u)] if u.reasons == vec![ReasonCode::Success]
    ));
    assert_eq!(b.exclusive.len(), 0);
    let mut rx = subscribe_packet(2, &[&ex]);
    b.input(c, &mut rx, 1);
    ack_route_syncs(&mut b);
    assert_eq!(subacks(&mut b, c), vec![(2, vec![ReasonCode::Success])]);
}

#[test]
fn unsubscribe_and_session_end_send_exclusive_unlock() {
    let mut b = exclusive_shard0();
    let client = id_on(0, "x");
    let id = connected(&mut b, &client);
    let (f, g) = (locked_on(1, "ex"), locked_on(1, "ey"));
    let grant = |b: &mut Broker, pid: u16, f: &str| {
        let mut rx = subscribe_packet(pid, &[&format!("$exclusive/{f}")]);
        b.input(id, &mut rx, 1);
        let locks = ack_route_syncs(b);
        let token = locks[0].token;
        b.mesh_in(
            1,
            MeshMsg::ExclusiveLockReply {
                token,
                granted: true,
            },
            1,
        );
        ack_route_syncs(b);
        assert_eq!(subacks(b, id), vec![(pid, vec![ReasonCode::Success])]);
    };
    grant(&mut b, 1, &f);
    grant(&mut b, 2, &g);
    let mut rx = bytes_of(Packet::Unsubscribe(Unsubscribe {
        packet_id: NonZeroU16::new(3).unwrap(),
        properties: Default::default(),
        filters: vec![MqttStr::from(format!("$exclusive/{f}").as_str())],
    }));
    b.input(id, &mut rx, 2);
    let unlocked = |sent: Vec<MeshMsg>| -> Vec<String> {
        sent.into_iter()
            .filter_map(|m| match m {
                MeshMsg::ExclusiveUnlock { filter, holder } => {
                    assert_eq!(holder.client_id.as_str(), client);
                    Some(filter.to_string())
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(unlocked(mesh(&mut b)), vec![f.clone()]);
    // Session Expiry 0: the session ends with the connection.
    let mut rx = bytes_of(Packet::Disconnect(Default::default()));
    b.input(id, &mut rx, 3);
    b.closed(id, 3);
    assert_eq!(unlocked(mesh(&mut b)), vec![g.clone()]);
}

#[test]
fn exclusive_subscriptions_disabled_are_topic_filter_invalid() {
    let mut b = shard0();
    let id = connected(&mut b, &id_on(0, "x"));
    let mut rx = subscribe_packet(1, &["$exclusive/a"]);
    b.input(id, &mut rx, 1);
    assert_eq!(
        subacks(&mut b, id),
        vec![(1, vec![ReasonCode::TopicFilterInvalid])]
    );
}

#[test]
fn a_lock_granted_after_the_session_ended_is_given_back() {
    let mut b = exclusive_shard0();
    let client = id_on(0, "x");
    let id = connected(&mut b, &client);
    let f = locked_on(1, "ex");
    let mut rx = subscribe_packet(1, &[&format!("$exclusive/{f}")]);
    b.input(id, &mut rx, 1);
    let locks = ack_route_syncs(&mut b);
    // Session Expiry 0: the session ends before the lock shard answers.
    b.closed(id, 2);
    assert!(
        mesh(&mut b).is_empty(),
        "nothing held yet, nothing to unlock"
    );
    b.mesh_in(
        1,
        MeshMsg::ExclusiveLockReply {
            token: locks[0].token,
            granted: true,
        },
        3,
    );
    match mesh(&mut b).as_slice() {
        [MeshMsg::ExclusiveUnlock { filter, holder }] => {
            assert_eq!(filter.as_str(), f);
            assert_eq!(holder.client_id.as_str(), client);
        }
        other => panic!("expected one ExclusiveUnlock, got {other:?}"),
    }
    assert_eq!(b.session_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Backpressure: a congested subscriber stalls its publisher instead of dropping

fn one_shard(settings: Settings) -> Broker {
    Broker::new(0, 1, Rc::new(settings))
}

/// A SUBSCRIBE (packet id 1) of one filter at `qos`.
pub(super) fn subscribe_qos(filter: &str, qos: QoS) -> BytesMut {
    bytes_of(Packet::Subscribe(Subscribe {
        packet_id: NonZeroU16::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            MqttStr::from(filter),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
    }))
}

fn subscribed(b: &mut Broker, client: &str, filter: &str, qos: QoS) -> ConnId {
    let id = connected(b, client);
    let mut rx = subscribe_qos(filter, qos);
    assert!(matches!(b.input(id, &mut rx, 0), super::Input::Continue));
    assert!(matches!(output(b, id).as_slice(), [Packet::SubAck(_)]));
    id
}

fn publishes(n: usize, qos: QoS, size: usize) -> BytesMut {
    let mut rx = BytesMut::new();
    for i in 0..n {
        let p = Packet::Publish(Publish {
            qos,
            packet_id: (qos != QoS::AtMostOnce).then(|| NonZeroU16::new(i as u16 + 1).unwrap()),
            topic: MqttStr::from("t"),
            payload: Bytes::from(vec![b'x'; size]),
            ..Default::default()
        });
        p.encode(V, &mut rx).unwrap();
    }
    rx
}

fn count_publishes(b: &mut Broker, id: ConnId) -> usize {
    output(b, id)
        .iter()
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count()
}

#[test]
fn a_subscriber_over_the_output_mark_stalls_its_publisher_with_the_rest_unread() {
    use crate::limits::STALL_WRITE_BYTES;
    let mut b = one_shard(Settings::default());
    let s = subscribed(&mut b, "s", "t", QoS::AtMostOnce);
    let p = connected(&mut b, "p");
    let mut rx = publishes(400, QoS::AtMostOnce, 1024);
    let total = rx.len();
    match b.input(p, &mut rx, 1) {
        super::Input::Stall(on) => assert_eq!(on, super::StallOn::Conn(s)),
        other => panic!("expected a stall on the subscriber, got {other:?}"),
    }
    assert!(b.congested(s));
    // Stopped right after the packet that crossed the mark: the rest is left unread.
    let handled = total - rx.len();
    assert!(
        handled > STALL_WRITE_BYTES && handled < STALL_WRITE_BYTES + 2 * 1100,
        "{handled} bytes handled"
    );
    // The kernel took the subscriber's output: it has drained and made progress.
    let progress = b.progress(s);
    let first = count_publishes(&mut b, s);
    assert!(!b.congested(s));
    assert_ne!(b.progress(s), progress);
    assert!(matches!(b.input(p, &mut rx, 2), super::Input::Continue));
    assert!(rx.is_empty());
    assert_eq!(first + count_publishes(&mut b, s), 400, "nothing dropped");

    // A subscriber marked slow (no progress while congested) stalls nobody ...
    let mut rx = publishes(400, QoS::AtMostOnce, 1024);
    assert!(matches!(b.input(p, &mut rx, 3), super::Input::Stall(_)));
    b.mark_slow(s);
    assert!(matches!(b.input(p, &mut rx, 4), super::Input::Continue));
    // ... until it shows it is consuming again.
    let mut ping = bytes_of(Packet::PingReq);
    b.input(s, &mut ping, 5);
    let mut rx = publishes(10, QoS::AtMostOnce, 1024);
    assert!(matches!(b.input(p, &mut rx, 6), super::Input::Stall(_)));
    // A client publishing to itself is never stalled on itself.
    let mut rx = publishes(10, QoS::AtMostOnce, 1024);
    assert!(matches!(b.input(s, &mut rx, 7), super::Input::Continue));
}

#[test]
fn a_qos1_queue_over_half_its_length_stalls_the_publisher_before_it_drops() {
    let settings = Settings {
        max_mqueue_len: 20,
        ..Settings::default()
    };
    let mut b = one_shard(settings);
    let s = subscribed(&mut b, "s", "t", QoS::AtLeastOnce);
    let p = connected(&mut b, "p");
    let mut rx = publishes(100, QoS::AtLeastOnce, 10);
    assert!(
        matches!(b.input(p, &mut rx, 1), super::Input::Stall(on) if on == super::StallOn::Conn(s))
    );
    // 32 in flight (max_inflight), then the queue filled past half of 20.
    let out = output(&mut b, s);
    assert_eq!(
        out.iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count(),
        32
    );
    assert!(b.congested(s));
    // Acknowledging moves the queue into the window: below the resume mark, and nothing lost.
    let mut acks = BytesMut::new();
    for p in &out {
        if let Packet::Publish(p) = p {
            Packet::PubAck(Ack::new(p.packet_id.unwrap()))
                .encode(V, &mut acks)
                .unwrap();
        }
    }
    b.input(s, &mut acks, 2);
    assert!(!b.congested(s));
    // Go on: the subscriber acknowledges whatever it gets, the publisher is fed whenever it is
    // resumed. Every message arrives, none is shed from the queue.
    let mut got: Vec<Vec<u8>> = Vec::new();
    let ack_all = |b: &mut Broker, got: &mut Vec<Vec<u8>>| {
        let mut acks = BytesMut::new();
        for p in output(b, s) {
            if let Packet::Publish(p) = p {
                got.push(p.payload.to_vec());
                Packet::PubAck(Ack::new(p.packet_id.unwrap()))
                    .encode(V, &mut acks)
                    .unwrap();
            }
        }
        b.input(s, &mut acks, 4);
    };
    for _ in 0..100 {
        ack_all(&mut b, &mut got);
        if rx.is_empty() {
            break;
        }
        let _ = b.input(p, &mut rx, 3);
    }
    ack_all(&mut b, &mut got);
    ack_all(&mut b, &mut got);
    assert_eq!(32 + got.len(), 100, "every message delivered");
    assert_eq!(b.counters.dropped(), 0);
}

#[test]
fn a_full_outbox_stalls_the_publisher_feeding_it_and_nobody_else() {
    use crate::limits::MESH_OUTBOX_MESSAGES_MAX;
    let mut b = shard0();
    // A subscriber of `t` lives on shard 1.
    b.mesh_in(1, MeshMsg::RouteAdd(MqttStr::from("t")), 0);
    let p = connected(&mut b, &id_on(0, "p"));
    let mut rx = publishes(MESH_OUTBOX_MESSAGES_MAX + 1000, QoS::AtMostOnce, 1);
    match b.input(p, &mut rx, 1) {
        super::Input::Stall(on) => assert_eq!(on, super::StallOn::Mesh(1)),
        other => panic!("expected a stall on the outbox, got {other:?}"),
    }
    assert_eq!(b.mesh_out_len(1), MESH_OUTBOX_MESSAGES_MAX + 1);
    assert!(!rx.is_empty(), "the rest stays unread");
    assert!(b.stall_holds(super::StallOn::Mesh(1)));
    // Another client's packets are handled meanwhile.
    let q = connected(&mut b, &id_on(0, "q"));
    let mut ping = bytes_of(Packet::PingReq);
    assert!(matches!(b.input(q, &mut ping, 2), super::Input::Continue));
    assert!(matches!(output(&mut b, q).as_slice(), [Packet::PingResp]));
    // The flusher hands the outbox to the mesh: the publisher may go on.
    let sent = b.take_mesh_out(1, usize::MAX).len();
    assert!(!b.stall_holds(super::StallOn::Mesh(1)));
    assert!(matches!(b.input(p, &mut rx, 3), super::Input::Continue));
    assert_eq!(sent + b.mesh_out_len(1), MESH_OUTBOX_MESSAGES_MAX + 1000);
}

#[test]
fn a_client_slot_keeps_its_rare_parts_boxed() {
    // Issue 5: the client slot is the largest part of an idle connection's broker state; the
    // username, will, shared and exclusive subscriptions sit in one optional box.
    let n = std::mem::size_of::<super::Client>();
    assert!(n <= 168, "size_of::<Client>() = {n}");
    let mut b = shard0();
    connected(&mut b, &id_on(0, "plain"));
    assert!(b.clients.iter().all(|(_, c)| c.extra.is_none()));
}

#[test]
fn a_connection_slot_stays_104_bytes() {
    // Issue 5: every idle connection has one; the cork flag fits in the padding.
    let n = std::mem::size_of::<super::conn::Conn>();
    assert!(n <= 104, "size_of::<Conn>() = {n}");
}
