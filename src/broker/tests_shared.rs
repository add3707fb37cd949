//! Sans-io tests of shared subscriptions (FEATURES.md §4) on shard 0 of two: the replicated
//! membership, one copy per group, the hop to a member on the other shard, and what happens to
//! a member's messages when its session ends.

use std::num::NonZeroU16;
use std::sync::Arc;

use bytes::Bytes;

use super::mesh::MeshMsg;
use super::shared::{Member, MemberId, SharedDelivery, SharedMember};
use super::subscribe::SubOpts;
use super::tests::{
    bytes_of, connect_packet, connect_with, connected, id_on, mesh, output, shard0, subscribe_qos,
};
use super::{Broker, ConnId};
use crate::protocol::*;
use crate::session::{Message, ShareName};

fn subscribe(b: &mut Broker, id: ConnId, filter: &str, qos: QoS) -> Vec<MeshMsg> {
    let mut rx = subscribe_qos(filter, qos);
    b.input(id, &mut rx, 1);
    let sent = mesh(b);
    // The SUBACK waits for the other shard to apply the membership.
    if let Some(MeshMsg::RouteSync(epoch)) = sent.last() {
        assert!(
            output(b, id).is_empty(),
            "SUBACK held until shard 1 has the member"
        );
        b.mesh_in(1, MeshMsg::RouteSyncAck(*epoch), 1);
    }
    match output(b, id).as_slice() {
        [Packet::SubAck(a)] => assert!(!a.reasons[0].is_error(), "{a:?}"),
        other => panic!("expected a SUBACK, got {other:?}"),
    }
    sent
}

fn publish(b: &mut Broker, id: ConnId, topic: &str, qos: QoS, pid: u16, payload: &str) {
    let mut rx = bytes_of(Packet::Publish(Publish {
        qos,
        topic: MqttStr::from(topic),
        packet_id: NonZeroU16::new(pid).filter(|_| qos != QoS::AtMostOnce),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..Default::default()
    }));
    b.input(id, &mut rx, 2);
}

fn payloads(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(String::from_utf8(p.payload.to_vec()).unwrap()),
            _ => None,
        })
        .collect()
}

/// A routed QoS 1 message from another shard's publisher.
fn qos1_message(topic: &str, payload: &'static str) -> Message {
    Message::from_publish(
        Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: NonZeroU16::new(1),
            payload: Bytes::from_static(payload.as_bytes()),
            ..Default::default()
        },
        42,
        0,
        None,
    )
}

fn share(group: &str, filter: &str) -> Arc<ShareName> {
    Arc::new(ShareName {
        group: group.into(),
        filter: filter.into(),
    })
}

fn remote_member(client: u32) -> Member {
    Member {
        id: MemberId {
            shard: 1,
            client,
            generation: 1,
        },
        opts: SubOpts {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        },
    }
}

#[test]
fn membership_is_broadcast_and_each_message_goes_to_exactly_one_member() {
    let mut b = shard0();
    let local = connected(&mut b, &id_on(0, "m"));
    let sent = subscribe(&mut b, local, "$share/g/t/+", QoS::AtLeastOnce);
    match sent.as_slice() {
        [MeshMsg::SharedAdd(m), MeshMsg::RouteSync(_)] => {
            assert_eq!(
                (m.share.group.as_str(), m.share.filter.as_str()),
                ("g", "t/+")
            );
            assert_eq!(m.member.id.shard, 0);
        }
        other => panic!("expected SharedAdd + RouteSync, got {other:?}"),
    }
    // A member on shard 1 joins.
    let remote = remote_member(7);
    b.mesh_in(
        1,
        MeshMsg::SharedAdd(Box::new(SharedMember {
            share: share("g", "t/+"),
            member: remote,
        })),
        1,
    );
    let publisher = connected(&mut b, &id_on(0, "p"));
    for i in 0..10 {
        publish(&mut b, publisher, "t/1", QoS::AtMostOnce, 0, &i.to_string());
    }
    let here = payloads(&output(&mut b, local));
    let there: Vec<String> = mesh(&mut b)
        .into_iter()
        .map(|m| match m {
            MeshMsg::SharedPublish(d) => {
                assert_eq!(d.member, remote);
                String::from_utf8(d.msg.payload.to_vec()).unwrap()
            }
            other => panic!("only SharedPublish expected, got {other:?}"),
        })
        .collect();
    // round_robin: alternating, one copy each, nothing lost or doubled.
    assert_eq!((here.len(), there.len()), (5, 5));
    let mut all: Vec<_> = here.iter().chain(&there).cloned().collect();
    all.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(all, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    // The remote member leaves: everything stays here.
    b.mesh_in(
        1,
        MeshMsg::SharedDel(Box::new(SharedMember {
            share: share("g", "t/+"),
            member: remote,
        })),
        3,
    );
    publish(&mut b, publisher, "t/2", QoS::AtMostOnce, 0, "after");
    assert_eq!(payloads(&output(&mut b, local)), ["after"]);
    assert!(mesh(&mut b).is_empty());
}

#[test]
fn a_message_for_a_member_that_left_goes_to_another_member() {
    let mut b = shard0();
    let local = connected(&mut b, &id_on(0, "m"));
    subscribe(&mut b, local, "$queue/q", QoS::AtLeastOnce);
    // Shard 1 picked a member of this shard that has gone (an old generation of some slot).
    let gone = Member {
        id: MemberId {
            shard: 0,
            client: 999,
            generation: 1,
        },
        opts: SubOpts::default(),
    };
    let msg = qos1_message("q", "late");
    b.mesh_in(
        1,
        MeshMsg::SharedPublish(Box::new(SharedDelivery {
            msg: Arc::new(msg),
            share: share("$queue", "q"),
            member: gone,
        })),
        2,
    );
    assert_eq!(payloads(&output(&mut b, local)), ["late"]);
    assert_eq!(b.counters.shared_redispatched, 1);
}

#[test]
fn unacked_qos12_of_an_ended_session_are_redispatched_then_dropped_and_counted() {
    let mut b = shard0();
    // Member A takes one message at a time (Receive Maximum 1) and never acknowledges.
    let mut c = connect_packet(&id_on(0, "a"));
    c.properties.receive_maximum = NonZeroU16::new(1);
    let a = connect_with(&mut b, c);
    output(&mut b, a);
    subscribe(&mut b, a, "$share/g/t", QoS::ExactlyOnce);
    let m = connected(&mut b, &id_on(0, "b"));
    subscribe(&mut b, m, "$share/g/t", QoS::ExactlyOnce);
    let publisher = connected(&mut b, &id_on(0, "p"));
    let sends = [
        (QoS::AtLeastOnce, "1"),
        (QoS::AtLeastOnce, "2"),
        (QoS::AtMostOnce, "3"),
        (QoS::AtMostOnce, "4"),
        (QoS::ExactlyOnce, "5"),
        (QoS::ExactlyOnce, "6"),
    ];
    for (i, (qos, payload)) in sends.into_iter().enumerate() {
        publish(&mut b, publisher, "t", qos, i as u16 + 1, payload);
    }
    let to_a = payloads(&output(&mut b, a));
    let to_b = payloads(&output(&mut b, m));
    // round_robin alternates: A's share is three messages, one of them QoS 0 (sent at once);
    // one QoS 1/2 fills its window, the other is queued.
    assert_eq!(to_a.len(), 2, "{to_a:?}");
    assert_eq!(to_b.len(), 3, "{to_b:?}");
    // A's connection drops; its session (expiry 0) ends: its QoS 1/2 messages, in flight or
    // queued, go to B; its QoS 0 ones do not.
    b.closed(a, 3);
    let again = payloads(&output(&mut b, m));
    let mut got: Vec<String> = to_b.iter().chain(&again).cloned().collect();
    got.sort();
    let qos0_at_a = ["3", "4"]
        .iter()
        .filter(|p| !got.contains(&p.to_string()))
        .count();
    assert_eq!(
        qos0_at_a, 1,
        "one QoS 0 message went to A and is not redispatched"
    );
    assert_eq!(
        got.len(),
        5,
        "B has everything but A's QoS 0 message: {got:?}"
    );
    assert_eq!(b.counters.shared_redispatched, 2);
    // B goes too: nobody is left for its unacknowledged QoS 1/2 messages.
    let before = b.counters.dropped();
    b.closed(m, 4);
    assert_eq!(b.counters.shared_dropped_no_member, 4);
    assert_eq!(b.counters.dropped() - before, 4);
}

#[test]
fn a_message_for_a_member_that_unsubscribed_meanwhile_goes_to_another_member() {
    let mut b = shard0();
    let a = connected(&mut b, &id_on(0, "a"));
    let member_a = match subscribe(&mut b, a, "$share/g/u", QoS::AtLeastOnce).as_slice() {
        [MeshMsg::SharedAdd(m), ..] => m.member,
        other => panic!("{other:?}"),
    };
    let other = connected(&mut b, &id_on(0, "b"));
    subscribe(&mut b, other, "$share/g/u", QoS::AtLeastOnce);
    // A leaves the group but stays connected; shard 1 had already picked it.
    let mut rx = bytes_of(Packet::Unsubscribe(Unsubscribe {
        packet_id: NonZeroU16::new(2).unwrap(),
        properties: Default::default(),
        filters: vec![MqttStr::from("$share/g/u")],
    }));
    b.input(a, &mut rx, 2);
    // The UNSUBACK waits until shard 1 no longer counts A as a member.
    assert!(output(&mut b, a).is_empty(), "UNSUBACK held");
    let epoch = match mesh(&mut b).as_slice() {
        [MeshMsg::SharedDel(_), MeshMsg::RouteSync(e)] => *e,
        other => panic!("expected SharedDel + RouteSync, got {other:?}"),
    };
    let msg = qos1_message("u", "crossed");
    b.mesh_in(
        1,
        MeshMsg::SharedPublish(Box::new(SharedDelivery {
            msg: Arc::new(msg),
            share: share("g", "u"),
            member: member_a,
        })),
        3,
    );
    assert!(output(&mut b, a).is_empty(), "A is no longer a member");
    assert_eq!(payloads(&output(&mut b, other)), ["crossed"]);
    b.mesh_in(1, MeshMsg::RouteSyncAck(epoch), 4);
    assert!(matches!(
        output(&mut b, a).as_slice(),
        [Packet::UnsubAck(_)]
    ));
}
