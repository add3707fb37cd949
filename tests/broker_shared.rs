//! Shared subscriptions over TCP (FEATURES.md §4): `$share/<group>/<filter>` and `$queue/<filter>`,
//! one copy per matching group to exactly one member, the seven dispatch strategies (global and
//! per group), no retained messages, redispatch of a departed member's QoS 1/2 messages, the
//! validation rules. Every test runs with 1 and 2 shards, with the members and publishers on
//! different home shards.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];

fn strategy(name: &str) -> String {
    format!(
        "[mqtt]\nshared_subscription_strategy = \"{name}\"\n[broker]\nshared_subscription_seed = 7\n"
    )
}

fn connect(broker: &Broker, c: Connect) -> Raw {
    let (raw, ack) = Raw::connect_with(broker, c);
    assert_eq!(ack.reason, ReasonCode::Success, "{ack:?}");
    raw
}

/// `n` members of `filter`, member `i` on home shard `i % shards`.
fn members(broker: &Broker, prefix: &str, filter: &str, n: usize) -> Vec<Raw> {
    (0..n)
        .map(|i| {
            let id = id_on(i % broker.shards, broker.shards, &format!("{prefix}{i}-"));
            let mut m = connect(broker, connect_packet(V5, &id, true));
            m.subscribe(filter, 1);
            m
        })
        .collect()
}

/// Receives from every member until `total` publishes arrived, then checks that nothing more
/// comes; returns each member's payloads in arrival order.
fn collect(members: &mut [Raw], total: usize) -> Vec<Vec<String>> {
    let mut got = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + WAIT;
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} arrived: {got:?}",
            got.iter().map(Vec::len).sum::<usize>()
        );
        for (m, g) in members.iter_mut().zip(&mut got) {
            while let Some(p) = m.recv_publish_within(Duration::from_millis(20)) {
                g.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
        }
    }
    for m in members.iter_mut() {
        m.expect_no_publish(Duration::from_millis(200));
    }
    got
}

/// Every payload exactly once over all members.
fn assert_one_copy_each(got: &[Vec<String>], sent: &[String]) {
    let all: Vec<&String> = got.iter().flatten().collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "a message was delivered twice: {got:?}"
    );
    assert_eq!(unique, sent.iter().collect(), "{got:?}");
}

fn publish_all(p: &mut Raw, topic: &str, payloads: &[String]) {
    for (i, payload) in payloads.iter().enumerate() {
        let id = (i % 60_000) as u16 + 1;
        p.publish(publish(topic, QoS::AtLeastOnce, id, payload.as_bytes()));
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Which member got each payload.
fn owner(got: &[Vec<String>]) -> BTreeMap<String, usize> {
    got.iter()
        .enumerate()
        .flat_map(|(m, ps)| ps.iter().map(move |p| (p.clone(), m)))
        .collect()
}

#[test]
fn round_robin_gives_each_of_three_members_exactly_a_third_in_turn() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut ms = members(&broker, "rr", "$share/g/rr/+", 3);
        let mut p = connect(
            &broker,
            connect_packet(V5, &id_on(shards - 1, shards, "rrp"), true),
        );
        let sent = numbered("", 300);
        publish_all(&mut p, "rr/1", &sent);
        let got = collect(&mut ms, 300);
        assert_one_copy_each(&got, &sent);
        for g in &got {
            assert_eq!(
                g.len(),
                100,
                "{shards} shards: {:?}",
                got.iter().map(Vec::len).collect::<Vec<_>>()
            );
        }
        // In turn: messages i and i + 3 go to the same member, i, i + 1, i + 2 to three.
        let owner = owner(&got);
        for i in 0..297 {
            assert_eq!(
                owner[&i.to_string()],
                owner[&(i + 3).to_string()],
                "message {i}"
            );
        }
        let first: BTreeSet<usize> = (0..3).map(|i| owner[&i.to_string()]).collect();
        assert_eq!(first.len(), 3);
    }
}

#[test]
fn each_matching_group_gets_one_copy_and_plain_subscribers_their_own() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut a = members(&broker, "ga", "$share/a/grp/#", 2);
        let mut b = members(&broker, "gb", "$share/b/grp/+/x", 2);
        // `$queue/f` is the group `$queue`.
        let mut q = members(&broker, "gq", "$queue/grp/#", 2);
        let mut plain = members(&broker, "gp", "grp/#", 1);
        // A group whose filter does not match gets nothing.
        let mut other = members(&broker, "go", "$share/a/other/#", 1);
        let mut p = connect(&broker, connect_packet(V5, &id_on(0, shards, "gpub"), true));
        let sent = numbered("m", 20);
        publish_all(&mut p, "grp/1/x", &sent);
        for group in [&mut a, &mut b, &mut q, &mut plain] {
            let got = collect(group, 20);
            assert_one_copy_each(&got, &sent);
        }
        other[0].expect_no_publish(Duration::from_millis(200));
        // The PUBACK says a subscriber matched; with only a share group matching as well.
        let code = p.publish(publish("other/1", QoS::AtLeastOnce, 1, b"o"));
        assert_eq!(code, ReasonCode::Success);
        assert_eq!(&other[0].recv_publish().payload[..], b"o");
        let code = p.publish(publish("nobody/1", QoS::AtLeastOnce, 2, b"n"));
        assert_eq!(code, ReasonCode::NoMatchingSubscribers);
    }
}

/// The member each of 60 messages went to, with `seed`.
fn random_run(shards: usize, seed: u64) -> Vec<usize> {
    let config = format!(
        "[mqtt]\nshared_subscription_strategy = \"random\"\n[broker]\nshared_subscription_seed = {seed}\n"
    );
    let broker = Broker::start_with(shards, &config, &[]);
    let mut ms = members(&broker, "rnd", "$share/g/rnd", 3);
    let mut p = connect(&broker, connect_packet(V5, &id_on(0, shards, "rndp"), true));
    let sent = numbered("", 60);
    publish_all(&mut p, "rnd", &sent);
    let got = collect(&mut ms, 60);
    assert_one_copy_each(&got, &sent);
    let owner = owner(&got);
    (0..60).map(|i| owner[&i.to_string()]).collect()
}

#[test]
fn random_picks_are_repeatable_with_a_seed() {
    for shards in SHARDS {
        let first = random_run(shards, 11);
        assert_eq!(first, random_run(shards, 11), "same seed, same picks");
        let counts: Vec<usize> = (0..3)
            .map(|m| first.iter().filter(|&&o| o == m).count())
            .collect();
        assert!(
            counts.iter().all(|&c| c >= 5),
            "every member gets some: {counts:?}"
        );
        let cyclic = (3..60).all(|i| first[i] == first[i - 3]);
        assert!(!cyclic, "random is not round robin: {first:?}");
        assert_ne!(first, random_run(shards, 12), "another seed, other picks");
    }
}

#[test]
fn round_robin_per_group_rotates_over_all_publishers() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, &strategy("round_robin_per_group"), &[]);
        let mut ms = members(&broker, "rpg", "$share/g/rpg", 3);
        // Three publishers on one shard (the counter is per shard, as EMQX's is per node),
        // each publishing in turn: every three consecutive messages reach three members.
        let mut pubs: Vec<Raw> = (0..3)
            .map(|i| {
                connect(
                    &broker,
                    connect_packet(V5, &id_on(shards - 1, shards, &format!("rpgp{i}-")), true),
                )
            })
            .collect();
        let sent = numbered("", 30);
        for (i, payload) in sent.iter().enumerate() {
            pubs[i % 3].publish(publish("rpg", QoS::AtLeastOnce, 1, payload.as_bytes()));
        }
        let got = collect(&mut ms, 30);
        assert_one_copy_each(&got, &sent);
        let owner = owner(&got);
        for round in 0..10 {
            let picked: BTreeSet<usize> = (0..3)
                .map(|k| owner[&(round * 3 + k).to_string()])
                .collect();
            assert_eq!(picked.len(), 3, "round {round}: {got:?}");
        }
    }
}

#[test]
fn local_prefers_a_member_on_the_publishers_shard() {
    let broker = Broker::start_with(2, &strategy("local"), &[]);
    let mut ms = members(&broker, "loc", "$share/g/loc", 2);
    for shard in 0..2 {
        let mut p = connect(
            &broker,
            connect_packet(V5, &id_on(shard, 2, &format!("locp{shard}-")), true),
        );
        let sent = numbered(&format!("s{shard}-"), 20);
        publish_all(&mut p, "loc", &sent);
        let got = collect(&mut ms, 20);
        assert_eq!(
            got[shard], sent,
            "shard {shard}'s publisher reaches shard {shard}'s member"
        );
    }
    // Shard 1's member leaves: its publisher's messages go to any member (shard 0's).
    let m1 = ms.pop().unwrap();
    m1.disconnect();
    let mut p = connect(&broker, connect_packet(V5, &id_on(1, 2, "locq"), true));
    let sent = numbered("x", 10);
    publish_all(&mut p, "loc", &sent);
    let got = collect(&mut ms, 10);
    assert_eq!(got[0], sent);
    // With one shard every member is local: a random one each time.
    let broker = Broker::start_with(1, &strategy("local"), &[]);
    let mut ms = members(&broker, "loc1", "$share/g/loc", 2);
    let mut p = connect(&broker, connect_packet(V5, "loc1p", true));
    let sent = numbered("", 40);
    publish_all(&mut p, "loc", &sent);
    let got = collect(&mut ms, 40);
    assert_one_copy_each(&got, &sent);
    assert!(got.iter().all(|g| !g.is_empty()), "{got:?}");
}

#[test]
fn sticky_keeps_its_pick_until_that_members_session_ends() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, &strategy("sticky"), &[]);
        let mut ms = members(&broker, "st", "$share/g/st", 3);
        let mut p = connect(&broker, connect_packet(V5, &id_on(0, shards, "stp"), true));
        let sent = numbered("a", 30);
        publish_all(&mut p, "st", &sent);
        let got = collect(&mut ms, 30);
        let picked = got.iter().position(|g| !g.is_empty()).unwrap();
        assert_eq!(got[picked], sent, "all to one member: {got:?}");
        // That member's session ends: a new pick, kept again.
        ms.remove(picked).disconnect();
        let sent = numbered("b", 30);
        publish_all(&mut p, "st", &sent);
        let got = collect(&mut ms, 30);
        assert!(got.contains(&sent), "all to one of the others: {got:?}");
    }
}

#[test]
fn sticky_first_pick_can_hash_the_topic() {
    for shards in SHARDS {
        let config = "[mqtt]\nshared_subscription_strategy = \"sticky\"\n\
                      shared_subscription_initial_sticky_pick = \"hash_topic\"\n";
        let broker = Broker::start_with(shards, config, &[]);
        let mut ms = members(&broker, "sth", "$share/g/sth", 4);
        // Publishers on every shard start from the same pick: the topic's hash.
        let mut firsts = BTreeSet::new();
        for i in 0..4 {
            let id = id_on(i % shards, shards, &format!("sthp{i}-"));
            let mut p = connect(&broker, connect_packet(V5, &id, true));
            let sent = numbered(&format!("p{i}-"), 5);
            publish_all(&mut p, "sth", &sent);
            let got = collect(&mut ms, 5);
            firsts.insert(got.iter().position(|g| *g == sent).expect("one member"));
        }
        assert_eq!(firsts.len(), 1, "{firsts:?}");
    }
}

#[test]
fn hash_clientid_sends_each_publisher_to_one_member() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, &strategy("hash_clientid"), &[]);
        let mut ms = members(&broker, "hc", "$share/g/hc/+", 3);
        let mut used = BTreeSet::new();
        for i in 0..8 {
            let id = id_on(i % shards, shards, &format!("hcp{i}-"));
            let mut p = connect(&broker, connect_packet(V5, &id, true));
            // Several topics: only the client id counts.
            let sent = numbered(&format!("p{i}-"), 6);
            for (k, payload) in sent.iter().enumerate() {
                p.publish(publish(
                    &format!("hc/{k}"),
                    QoS::AtLeastOnce,
                    1,
                    payload.as_bytes(),
                ));
            }
            let got = collect(&mut ms, 6);
            let m = got
                .iter()
                .position(|g| *g == sent)
                .unwrap_or_else(|| panic!("{got:?}"));
            used.insert(m);
        }
        assert!(
            used.len() >= 2,
            "8 publishers all hashed to one member: {used:?}"
        );
    }
}

#[test]
fn hash_topic_by_group_override_sends_each_topic_to_one_member() {
    for shards in SHARDS {
        // Round robin globally, hash_topic for group `h` only.
        let config = "[broker.shared_subscription_group.h]\nstrategy = \"hash_topic\"\n";
        let broker = Broker::start_with(shards, config, &[]);
        let mut hs = members(&broker, "ht", "$share/h/ht/+", 3);
        let mut rs = members(&broker, "hr", "$share/r/ht/+", 2);
        let mut pubs: Vec<Raw> = (0..shards)
            .map(|s| {
                connect(
                    &broker,
                    connect_packet(V5, &id_on(s, shards, &format!("htp{s}-")), true),
                )
            })
            .collect();
        let mut sent = Vec::new();
        for k in 0..10 {
            for (j, p) in pubs.iter_mut().enumerate() {
                for n in 0..3 {
                    let payload = format!("{k}/{j}/{n}");
                    p.publish(publish(
                        &format!("ht/{k}"),
                        QoS::AtLeastOnce,
                        1,
                        payload.as_bytes(),
                    ));
                    sent.push(payload);
                }
            }
        }
        let got = collect(&mut hs, sent.len());
        assert_one_copy_each(&got, &sent);
        let owner = owner(&got);
        let mut by_topic: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for p in &sent {
            by_topic
                .entry(p.split('/').next().unwrap())
                .or_default()
                .insert(owner[p]);
        }
        assert!(
            by_topic.values().all(|m| m.len() == 1),
            "a topic went to two members: {by_topic:?}"
        );
        let used: BTreeSet<usize> = by_topic.values().flatten().copied().collect();
        assert!(used.len() >= 2, "10 topics all hashed to one member");
        // Group `r` keeps the global round robin.
        let got = collect(&mut rs, sent.len());
        assert_one_copy_each(&got, &sent);
        assert_eq!(got[0].len(), got[1].len(), "{got:?}");
    }
}

#[test]
fn shared_subscriptions_get_no_retained_messages() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut p = connect(&broker, connect_packet(V5, &id_on(0, shards, "retp"), true));
        let mut m = publish("ret/a", QoS::AtLeastOnce, 1, b"kept");
        m.retain = true;
        p.publish(m);
        let mut s = connect(
            &broker,
            connect_packet(V5, &id_on(shards - 1, shards, "rets"), true),
        );
        s.subscribe("$share/g/ret/#", 1);
        s.subscribe("$queue/ret/#", 1);
        s.expect_no_publish(Duration::from_millis(300));
        // A plain subscription of the same client does get it.
        s.subscribe("ret/#", 1);
        assert_eq!(&s.recv_publish().payload[..], b"kept");
    }
}

#[test]
fn unsubscribe_leaves_the_group_and_queue_is_share_queue() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut ms = members(&broker, "un", "$share/$queue/un", 2);
        let mut p = connect(&broker, connect_packet(V5, &id_on(0, shards, "unp"), true));
        // `$queue/un` is the same subscription as `$share/$queue/un`.
        let codes = ms[1].unsubscribe_with(&["$queue/un", "$share/$queue/un", "$share/other/un"]);
        assert_eq!(
            codes,
            [
                ReasonCode::Success,
                ReasonCode::NoSubscriptionExisted,
                ReasonCode::NoSubscriptionExisted
            ]
        );
        let sent = numbered("", 10);
        publish_all(&mut p, "un", &sent);
        let got = collect(&mut ms, 10);
        assert_eq!(got[0], sent);
    }
}

#[test]
fn a_departed_members_unacknowledged_qos12_messages_go_to_the_others() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        // Member A takes one unacknowledged message at a time and never acknowledges.
        let mut c = connect_packet(V5, &id_on(0, shards, "rda"), true);
        c.properties.receive_maximum = std::num::NonZeroU16::new(1);
        let mut a = connect(&broker, c);
        a.subscribe("$share/g/rd", 2);
        let mut b = members(&broker, "rdb", "$share/g/rd", 1).pop().unwrap();
        let mut p = connect(
            &broker,
            connect_packet(V5, &id_on(shards - 1, shards, "rdp"), true),
        );
        let mut sent = Vec::new();
        for i in 0..12u16 {
            let q = [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtMostOnce][usize::from(i % 3)];
            let payload = format!("{i}:{}", q as u8);
            p.publish(publish("rd", q, i + 1, payload.as_bytes()));
            sent.push(payload);
        }
        // A receives without acknowledging: one QoS 1/2 message in flight, its QoS 0 ones.
        let mut at_a = Vec::new();
        while let Some(Packet::Publish(m)) = a.recv_within(Duration::from_millis(300)) {
            at_a.push(String::from_utf8(m.payload.to_vec()).unwrap());
        }
        assert!(!at_a.is_empty());
        // A's connection drops; its session (no expiry) ends.
        a.abort();
        let mut at_b = Vec::new();
        while let Some(m) = b.recv_publish_within(Duration::from_millis(500)) {
            at_b.push(String::from_utf8(m.payload.to_vec()).unwrap());
        }
        let qos0_at_a: BTreeSet<&String> = at_a.iter().filter(|p| p.ends_with(":0")).collect();
        let expected: BTreeSet<&String> = sent.iter().filter(|p| !qos0_at_a.contains(p)).collect();
        let unique: BTreeSet<&String> = at_b.iter().collect();
        assert_eq!(unique.len(), at_b.len(), "twice at B: {at_b:?}");
        assert_eq!(unique, expected, "{shards} shards; A had {at_a:?}");
        assert!(
            !qos0_at_a.is_empty(),
            "A got QoS 0 messages, which are not redispatched"
        );
    }
}

#[test]
fn invalid_share_filters_are_0x8f_and_no_local_is_a_protocol_error() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        let mut c = connect(&broker, connect_packet(V5, &id_on(0, shards, "inv"), true));
        let bad = [
            "$share//t",
            "$share/g+/t",
            "$share/g#/t",
            "$share/g",
            "$share/g/",
            "$share/g/$share/h/t",
            "$queue/",
            "$share/g/$queue/t",
        ];
        let filters: Vec<(&str, SubscriptionOptions)> = bad.iter().map(|f| (*f, opts(1))).collect();
        let codes = c.subscribe_with(&filters, None);
        assert!(
            codes.iter().all(|&r| r == ReasonCode::TopicFilterInvalid),
            "{codes:?}"
        );
        // No Local on a shared subscription [MQTT-3.8.3-4]: DISCONNECT 0x82.
        let mut o = opts(1);
        o.no_local = true;
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: std::num::NonZeroU16::new(9).unwrap(),
            properties: Default::default(),
            filters: vec![(MqttStr::from("$share/g/t"), o)],
        }));
        match c.expect_closed().as_slice() {
            [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::ProtocolError),
            other => panic!("expected DISCONNECT 0x82, got {other:?}"),
        }
    }
}

#[test]
fn disabled_shared_subscriptions_are_refused_0x9e_and_announced_in_connack() {
    for shards in SHARDS {
        let broker = Broker::start_with(shards, "[mqtt]\nshared_subscription = false\n", &[]);
        let (mut c, ack) =
            Raw::connect_with(&broker, connect_packet(V5, &id_on(0, shards, "dis"), true));
        assert_eq!(ack.properties.shared_subscription_available, Some(false));
        let codes = c.subscribe_with(
            &[
                ("$share/g/t", opts(1)),
                ("$queue/t", opts(1)),
                ("t", opts(1)),
            ],
            None,
        );
        assert_eq!(
            codes,
            [
                ReasonCode::SharedSubscriptionsNotSupported,
                ReasonCode::SharedSubscriptionsNotSupported,
                ReasonCode::GrantedQos1
            ]
        );
    }
    // Enabled (the default): the property is left out, which means available.
    let broker = Broker::start(1);
    let (_, ack) = Raw::connect_with(&broker, connect_packet(V5, "en", true));
    assert_eq!(ack.properties.shared_subscription_available, None);
}

#[test]
fn real_clients_share_a_group_v311_and_v5() {
    for shards in SHARDS {
        let broker = Broker::start(shards);
        // rumqttc (MQTT 3.1.1) members, a Raw v5 member.
        let mut rx = Vec::new();
        let mut clients = Vec::new();
        for i in 0..2 {
            let id = id_on(i % shards, shards, &format!("rq{i}-"));
            let (client, mut conn) =
                rumqttc::Client::new(rumqttc::MqttOptions::new(id, "127.0.0.1", broker.port), 64);
            client
                .subscribe("$share/real/rq/#", rumqttc::QoS::AtLeastOnce)
                .unwrap();
            let (tx, r) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for event in conn.iter() {
                    match event {
                        Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                            let _ = tx.send(None);
                        }
                        Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                            let _ = tx.send(Some(String::from_utf8(p.payload.to_vec()).unwrap()));
                        }
                        Err(_) => break,
                        _ => {}
                    }
                }
            });
            assert_eq!(r.recv_timeout(WAIT), Ok(None), "SUBACK");
            rx.push(r);
            clients.push(client);
        }
        let mut v5 = members(&broker, "rq5", "$share/real/rq/#", 1);
        let mut p = connect(
            &broker,
            connect_packet(V311, &id_on(0, shards, "rqp"), true),
        );
        let sent = numbered("", 30);
        publish_all(&mut p, "rq/x", &sent);
        let v5_got = collect(&mut v5, 10);
        let mut got = vec![v5_got.into_iter().next().unwrap()];
        for r in &rx {
            let mine: Vec<String> = (0..10)
                .map(|_| r.recv_timeout(WAIT).unwrap().unwrap())
                .collect();
            got.push(mine);
        }
        assert_one_copy_each(&got, &sent);
        drop(clients);
    }
}

#[test]
fn sys_counts_shared_subscriptions_over_the_shards() {
    for shards in SHARDS {
        let config = "[node]\nname = \"sharednode\"\n[sys_topics]\nsys_msg_interval = \"1s\"\n";
        let broker = Broker::start_with(shards, config, &[]);
        let shared = "$SYS/brokers/sharednode/stats/subscriptions/shared/count";
        let all = "$SYS/brokers/sharednode/stats/subscriptions/count";
        let (mut w, _) = Raw::connect(&broker, V5, &id_on(0, shards, "sysw"), true);
        w.subscribe("$SYS/brokers/sharednode/stats/subscriptions/#", 0);
        let mut ms = members(&broker, "sys", "$share/g/sys/#", 3);
        ms[0].subscribe("$queue/sys/q", 1);
        let latest = |w: &mut Raw| {
            let deadline = Instant::now() + Duration::from_secs(3);
            let (mut s, mut a) = (None, None);
            while let Some(p) =
                w.recv_publish_within(deadline.saturating_duration_since(Instant::now()))
            {
                let v: u64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                match p.topic.as_str() {
                    t if t == shared => s = Some(v),
                    t if t == all => a = Some(v),
                    _ => {}
                }
            }
            (s, a)
        };
        // Three members + one `$queue` membership, plus the watcher's own plain subscription.
        assert_eq!(latest(&mut w), (Some(4), Some(5)), "{shards} shards");
        ms.pop().unwrap().disconnect();
        assert_eq!(latest(&mut w), (Some(3), Some(4)), "{shards} shards");
    }
}
