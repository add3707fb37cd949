//! Exclusive subscriptions over TCP (FEATURES.md §5): `$exclusive/<filter>` is held by one
//! client broker-wide, others get SUBACK 0x97; plain subscribers are unaffected; the lock
//! survives a persistent session's disconnect and is released by UNSUBSCRIBE and by the end of
//! the session. Every test runs with 1 and 2 shards, with the lock on shard `nr_shards - 1` and
//! the clients on different home shards.

mod support;

use std::time::{Duration, Instant};

use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];
const V5: ProtocolVersion = ProtocolVersion::V5;
const ENABLED: &str = "[mqtt]\nexclusive_subscription = true\n";

/// A filter whose lock lives on the last shard (the lock shard uses the same hash as homes).
fn filter(shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}/{i}"))
        .find(|f| ringmq::broker::home_shard(f, shards) == shards - 1)
        .unwrap()
}

fn persistent(id: &str) -> Connect {
    let mut c = connect_packet(V5, id, false);
    c.properties.session_expiry_interval = Some(60);
    c
}

fn connect(broker: &Broker, c: Connect) -> Raw {
    let (raw, ack) = Raw::connect_with(broker, c);
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    raw
}

fn sub1(c: &mut Raw, filter: &str) -> ReasonCode {
    c.subscribe_with(&[(filter, opts(1))], None)[0]
}

/// The lock is released asynchronously on its shard: retries until granted.
fn eventually_granted(c: &mut Raw, filter: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sub1(c, filter) {
            ReasonCode::GrantedQos1 => return,
            ReasonCode::QuotaExceeded if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => panic!("{filter}: {other:?}"),
        }
    }
}

#[test]
fn disabled_exclusive_subscriptions_are_topic_filter_invalid() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut c = connect(&broker, connect_packet(V5, &id_on(0, shards, "d"), true));
        let codes = c.subscribe_with(&[("$exclusive/a/b", opts(1)), ("a/b", opts(1))], None);
        assert_eq!(
            codes,
            vec![ReasonCode::TopicFilterInvalid, ReasonCode::GrantedQos1],
            "{shards} shards"
        );
    }
}

#[test]
fn one_holder_others_quota_exceeded_plain_subscribers_unaffected() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, ENABLED, &[]);
        let f = filter(shards, "ex");
        let ex = format!("$exclusive/{f}");
        let mut holder = connect(&broker, connect_packet(V5, &id_on(0, shards, "h"), true));
        let mut other = connect(
            &broker,
            connect_packet(V5, &id_on(shards - 1, shards, "o"), true),
        );
        let mut plain = connect(
            &broker,
            connect_packet(V5, &id_on(shards - 1, shards, "p"), true),
        );
        let mut publ = connect(&broker, connect_packet(V5, &id_on(0, shards, "q"), true));
        // Several filters in one SUBSCRIBE, the exclusive one in the middle.
        let codes = holder.subscribe_with(
            &[("x/1", opts(0)), (ex.as_str(), opts(1)), ("x/2", opts(2))],
            None,
        );
        assert_eq!(
            codes,
            vec![
                ReasonCode::Success,
                ReasonCode::GrantedQos1,
                ReasonCode::GrantedQos2
            ],
            "{shards} shards"
        );
        assert_eq!(sub1(&mut other, &ex), ReasonCode::QuotaExceeded);
        assert_eq!(sub1(&mut plain, &f), ReasonCode::GrantedQos1);
        // The holder subscribes again.
        assert_eq!(sub1(&mut holder, &ex), ReasonCode::GrantedQos1);
        assert_eq!(
            publ.publish(publish(&f, QoS::AtLeastOnce, 1, b"m")),
            ReasonCode::Success
        );
        assert_eq!(&holder.recv_publish().payload[..], b"m");
        assert_eq!(&plain.recv_publish().payload[..], b"m");
        other.expect_no_publish(Duration::from_millis(300));
        // Refused, the other client has no subscription to drop.
        other.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: std::num::NonZeroU16::new(2).unwrap(),
            properties: Default::default(),
            filters: vec![MqttStr::from(ex.as_str())],
        }));
        match other.recv() {
            Some(Packet::UnsubAck(u)) => {
                assert_eq!(u.reasons, vec![ReasonCode::NoSubscriptionExisted])
            }
            p => panic!("expected UNSUBACK, got {p:?}"),
        }
        assert_eq!(sub1(&mut other, &ex), ReasonCode::QuotaExceeded);
    }
}

#[test]
fn the_lock_survives_a_persistent_disconnect_and_unsubscribe_releases_it() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, ENABLED, &[]);
        let f = filter(shards, "ex");
        let ex = format!("$exclusive/{f}");
        let holder_id = id_on(0, shards, "h");
        let mut holder = connect(&broker, persistent(&holder_id));
        assert_eq!(sub1(&mut holder, &ex), ReasonCode::GrantedQos1);
        holder.disconnect();
        std::thread::sleep(Duration::from_millis(300));
        let mut other = connect(
            &broker,
            connect_packet(V5, &id_on(shards - 1, shards, "o"), true),
        );
        assert_eq!(
            sub1(&mut other, &ex),
            ReasonCode::QuotaExceeded,
            "{shards} shards"
        );
        // Back, the holder still holds it (and may subscribe again), then unsubscribes.
        let (mut holder, ack) = Raw::connect_with(&broker, persistent(&holder_id));
        assert!(ack.session_present);
        assert_eq!(sub1(&mut holder, &ex), ReasonCode::GrantedQos1);
        assert_eq!(sub1(&mut other, &ex), ReasonCode::QuotaExceeded);
        holder.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: std::num::NonZeroU16::new(2).unwrap(),
            properties: Default::default(),
            filters: vec![MqttStr::from(ex.as_str())],
        }));
        match holder.recv() {
            Some(Packet::UnsubAck(u)) => assert_eq!(u.reasons, vec![ReasonCode::Success]),
            p => panic!("expected UNSUBACK, got {p:?}"),
        }
        // The UNSUBACK waits until the lock shard has dropped the lock: free at once.
        assert_eq!(sub1(&mut other, &ex), ReasonCode::GrantedQos1);
        assert_eq!(sub1(&mut holder, &ex), ReasonCode::QuotaExceeded);
    }
}

#[test]
fn the_end_of_a_clean_session_releases_the_lock() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, ENABLED, &[]);
        let f = filter(shards, "ex");
        let ex = format!("$exclusive/{f}");
        let mut holder = connect(&broker, connect_packet(V5, &id_on(0, shards, "h"), true));
        let mut other = connect(
            &broker,
            connect_packet(V5, &id_on(shards - 1, shards, "o"), true),
        );
        assert_eq!(sub1(&mut holder, &ex), ReasonCode::GrantedQos1);
        assert_eq!(
            sub1(&mut other, &ex),
            ReasonCode::QuotaExceeded,
            "{shards} shards"
        );
        // No Session Expiry Interval: the session ends with the connection.
        holder.disconnect();
        eventually_granted(&mut other, &ex);
    }
}
