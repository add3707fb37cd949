//! Offline queue, expiry, resume and shared-subscription hand-back tests for the session of a
//! client's home shard.

use super::*;

#[test]
fn resume_resends_inflight_with_dup_in_order_including_pubrel() {
    let mut s = session(SessionConfig::default(), v5(3));
    let mut out = Vec::new();
    s.deliver(
        msg(QoS::AtLeastOnce, "m0"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::ExactlyOnce, "m1"),
        opts(QoS::ExactlyOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtLeastOnce, "m2"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtLeastOnce, "m3"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.on_pubrec(pid(2), ReasonCode::Success, 0, &mut out);
    out.clear();
    s.disconnect();
    assert!(!s.is_connected());
    assert_eq!(
        s.deliver(
            msg(QoS::AtMostOnce, "m4"),
            opts(QoS::AtMostOnce),
            0,
            &mut out
        ),
        Outcome::Queued
    );
    assert!(out.is_empty());
    s.resume(v5(10), 0, &mut out);
    assert_eq!(
        view(&mut out),
        [
            p(1, true, "m0"),
            ("REL", 2, false, "Success".into()),
            p(3, true, "m2"),
            p(4, false, "m3"),
            p(0, false, "m4"),
        ]
    );
    assert_eq!((s.counters().resent, s.inflight_len()), (2, 4));
}

#[test]
fn queue_overflow_drops_oldest_and_counts() {
    let cfg = SessionConfig {
        max_mqueue_len: 3,
        ..Default::default()
    };
    let mut s = session(cfg, v5(10));
    s.disconnect();
    let mut out = Vec::new();
    for i in 0..5 {
        let o = s.deliver(
            msg(QoS::AtLeastOnce, &i.to_string()),
            opts(QoS::AtLeastOnce),
            0,
            &mut out,
        );
        assert_eq!(o, Outcome::Queued);
    }
    assert_eq!((s.queue_len(), s.counters().dropped_queue_full), (3, 2));
    s.resume(v5(10), 0, &mut out);
    assert_eq!(
        view(&mut out),
        [p(1, false, "2"), p(2, false, "3"), p(3, false, "4")]
    );
}

#[test]
fn qos0_storage_follows_mqueue_store_qos0() {
    // (store_qos0, connected, granted, expected outcome)
    let table = [
        (true, false, QoS::AtMostOnce, Outcome::Queued),
        (
            false,
            false,
            QoS::AtMostOnce,
            Outcome::Dropped(DropReason::Qos0NotStored),
        ),
        (false, true, QoS::AtMostOnce, Outcome::Sent),
        (false, false, QoS::AtLeastOnce, Outcome::Queued),
    ];
    for (store, connected, granted, want) in table {
        let cfg = SessionConfig {
            mqueue_store_qos0: store,
            ..Default::default()
        };
        let mut s = session(cfg, v5(10));
        if !connected {
            s.disconnect();
        }
        let mut out = Vec::new();
        // A QoS 1 message to a QoS 0 subscription is QoS 0 for this subscriber.
        let o = s.deliver(msg(QoS::AtLeastOnce, "x"), opts(granted), 0, &mut out);
        assert_eq!(
            o, want,
            "store={store} connected={connected} granted={granted:?}"
        );
        let dropped = matches!(want, Outcome::Dropped(_));
        assert_eq!(s.counters().dropped_qos0, u64::from(dropped));
    }
}

#[test]
fn expired_messages_dropped_from_queue_and_remaining_interval_forwarded() {
    let mut s = session(SessionConfig::default(), v5(10));
    s.disconnect();
    let mut out = Vec::new();
    let with_expiry = |secs: u32, payload: &str| {
        let props = PublishProperties {
            message_expiry_interval: Some(secs),
            ..Default::default()
        };
        msg_props("t/1", QoS::AtLeastOnce, payload, props)
    };
    s.deliver(
        with_expiry(2, "short"),
        opts(QoS::AtLeastOnce),
        1_000,
        &mut out,
    );
    s.deliver(
        with_expiry(10, "long"),
        opts(QoS::AtLeastOnce),
        1_000,
        &mut out,
    );
    s.resume(v5(10), 3_500, &mut out);
    assert_eq!(out.len(), 1);
    let Packet::Publish(pb) = &out[0] else {
        panic!()
    };
    assert_eq!(pb.payload, "long");
    // Published at 0 with 10 s; at 3.5 s, 6.5 s remain → 7 (rounded up).
    assert_eq!(pb.properties.message_expiry_interval, Some(7));
    assert_eq!(s.counters().dropped_expired, 1);
    // Already expired when routed.
    let o = s.deliver(
        with_expiry(1, "late"),
        opts(QoS::AtLeastOnce),
        1_001,
        &mut out,
    );
    assert_eq!(o, Outcome::Dropped(DropReason::Expired));
    assert_eq!(s.counters().dropped_expired, 2);
}

#[test]
fn take_pending_returns_unreleased_shared_qos12_in_order() {
    let share = Arc::new(ShareName {
        group: "g".into(),
        filter: "t/#".into(),
    });
    let shared = |qos| DeliveryOpts {
        shared: Some(share.clone()),
        ..opts(qos)
    };
    let mut s = session(SessionConfig::default(), v5(3));
    let mut out = Vec::new();
    s.deliver(
        msg(QoS::ExactlyOnce, "rec"),
        shared(QoS::ExactlyOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtLeastOnce, "fly"),
        shared(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    // Not through a shared subscription: not handed back.
    s.deliver(
        msg(QoS::AtLeastOnce, "plain"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtLeastOnce, "q1"),
        shared(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.disconnect();
    s.deliver(
        msg(QoS::AtMostOnce, "q0"),
        shared(QoS::AtMostOnce),
        0,
        &mut out,
    );
    // Granted QoS 0: delivered at QoS 0, so not redispatched either.
    s.deliver(
        msg(QoS::AtLeastOnce, "g0"),
        shared(QoS::AtMostOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::ExactlyOnce, "q2"),
        shared(QoS::ExactlyOnce),
        0,
        &mut out,
    );
    s.on_pubrec(pid(1), ReasonCode::Success, 0, &mut out);
    let got: Vec<_> = s
        .take_pending()
        .map(|(m, g)| {
            assert!(Arc::ptr_eq(&g, &share));
            m.payload.clone()
        })
        .collect();
    assert_eq!(got, ["fly", "q1", "q2"]);
    assert_eq!((s.inflight_len(), s.queue_len()), (0, 0));
    s.compact();
    assert!(s.state.is_none(), "empty state is freed");
}

#[test]
fn queued_qos0_passes_a_full_window_on_resume() {
    let mut s = session(SessionConfig::default(), v5(1));
    let mut out = Vec::new();
    s.deliver(
        msg(QoS::AtLeastOnce, "fly"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.disconnect();
    s.deliver(
        msg(QoS::AtMostOnce, "z"),
        opts(QoS::AtMostOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtLeastOnce, "y"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtMostOnce, "w"),
        opts(QoS::AtMostOnce),
        0,
        &mut out,
    );
    out.clear();
    s.resume(v5(1), 0, &mut out);
    // "y" waits for the window and keeps "w" behind it (order is kept).
    assert_eq!(view(&mut out), [p(1, true, "fly"), p(0, false, "z")]);
    s.on_puback(pid(1), 0, &mut out);
    assert_eq!(view(&mut out), [p(2, false, "y"), p(0, false, "w")]);
}

#[test]
fn resume_drops_inflight_now_too_large() {
    let mut s = session(SessionConfig::default(), v5(10));
    let mut out = Vec::new();
    s.deliver(
        msg(QoS::AtLeastOnce, "small"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtLeastOnce, &"big".repeat(20)),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    s.deliver(
        msg(QoS::AtLeastOnce, "tiny"),
        opts(QoS::AtLeastOnce),
        0,
        &mut out,
    );
    out.clear();
    s.disconnect();
    s.resume(
        ClientLimits {
            maximum_packet_size: 30,
            ..v5(10)
        },
        0,
        &mut out,
    );
    assert_eq!(view(&mut out), [p(1, true, "small"), p(3, true, "tiny")]);
    assert_eq!((s.inflight_len(), s.counters().dropped_too_large), (2, 1));
}
