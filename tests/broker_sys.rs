//! `$SYS` system topics over TCP (FEATURES.md §9): stats gathered from every shard, metrics,
//! the retained version / sysdescr, the heartbeat, client events, and "disabled". Every test
//! runs with 1 and 2 shards, with clients on every shard.

mod support;

use std::time::{Duration, Instant};

use ringmq::protocol::*;
use support::*;

const SHARDS: [usize; 2] = [1, 2];
const NODE: &str = "testnode";
const CONFIG: &str = r#"
[node]
name = "testnode"
[sys_topics]
sys_msg_interval = "1s"
sys_heartbeat_interval = "1s"
[sys_topics.sys_event_messages]
client_subscribed = true
client_unsubscribed = true
"#;

fn sys(rest: &str) -> String {
    format!("$SYS/brokers/{NODE}/{rest}")
}

fn watcher(b: &Broker, id: &str, filter: &str) -> Raw {
    let (mut w, _) = Raw::connect(b, V5, id, true);
    w.subscribe(filter, 0);
    w
}

/// Numeric payloads of `topic` arriving within `d`.
fn values(w: &mut Raw, topic: &str, d: Duration) -> Vec<u64> {
    let deadline = Instant::now() + d;
    let mut out = Vec::new();
    while let Some(p) = w.recv_publish_within(deadline.saturating_duration_since(Instant::now())) {
        if p.topic.as_str() == topic {
            out.push(std::str::from_utf8(&p.payload).unwrap().parse().unwrap());
        }
    }
    out
}

/// The raw JSON text of `key`'s value in a flat object (strings keep their quotes).
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[start..];
    if let Some(s) = rest.strip_prefix('"') {
        let end = s.find('"').unwrap();
        &rest[..end + 2]
    } else {
        let end = rest.find([',', '}']).unwrap();
        &rest[..end]
    }
}

#[test]
fn connections_count_is_summed_over_the_shards() {
    for shards in SHARDS {
        let b = Broker::start_with(shards, CONFIG, &[]);
        let topic = sys("stats/connections/count");
        let mut w = watcher(&b, &id_on(0, shards, "w"), &topic);
        let n = 5;
        let clients: Vec<Raw> = (0..n)
            .map(|i| Raw::connect(&b, V311, &id_on(i % shards, shards, &format!("c{i}")), true).0)
            .collect();
        // The watcher counts too.
        let seen = values(&mut w, &topic, Duration::from_secs(4));
        assert!(seen.contains(&(n as u64 + 1)), "shards {shards}: {seen:?}");
        assert_eq!(
            *seen.last().unwrap(),
            n as u64 + 1,
            "shards {shards}: {seen:?}"
        );
        for c in clients {
            c.disconnect();
        }
        let seen = values(&mut w, &topic, Duration::from_secs(3));
        assert_eq!(*seen.last().unwrap(), 1, "shards {shards}: {seen:?}");
        let max = sys("stats/connections/max");
        let mut w2 = watcher(&b, &id_on(shards - 1, shards, "w2"), &max);
        let seen = values(&mut w2, &max, Duration::from_secs(3));
        assert!(
            seen.iter().all(|&m| m > n as u64),
            "shards {shards}: {seen:?}"
        );
    }
}

#[test]
fn messages_received_grows_by_exactly_the_messages_published() {
    for shards in SHARDS {
        let b = Broker::start_with(shards, CONFIG, &[]);
        let topic = sys("metrics/messages/received");
        let mut pubs: Vec<Raw> = (0..shards)
            .map(|s| Raw::connect(&b, V5, &id_on(s, shards, "p"), true).0)
            .collect();
        let mut w = watcher(&b, &id_on(0, shards, "w"), &topic);
        let before = values(&mut w, &topic, Duration::from_millis(1500));
        let before = *before.last().expect("a report within 1.5 s");
        let m = 7;
        for i in 0..m {
            let p = &mut pubs[i % shards];
            let reason = p.publish(publish("nobody/listens", qos(1), 1 + i as u16, b"x"));
            assert_eq!(reason, ReasonCode::NoMatchingSubscribers);
        }
        // Reports gathered after every PUBACK: no one else publishes meanwhile.
        let after = values(&mut w, &topic, Duration::from_millis(2500));
        let after = *after.last().expect("reports");
        assert!(after >= m as u64);
        assert_eq!(after - before, m as u64, "shards {shards}");
    }
}

#[test]
fn version_sysdescr_and_node_list_are_retained_and_plain_wildcards_miss_sys() {
    for shards in SHARDS {
        let b = Broker::start_with(shards, CONFIG, &[]);
        let (mut all, _) = Raw::connect(&b, V5, &id_on(0, shards, "all"), true);
        all.subscribe("#", 0);
        all.subscribe("+/brokers/#", 0);
        // The first tick is 1 s after the start; the heartbeat follows every second.
        std::thread::sleep(Duration::from_millis(1500));
        let (mut c, _) = Raw::connect(&b, V5, &id_on(shards - 1, shards, "c"), true);
        for (topic, want) in [
            (sys("version"), env!("CARGO_PKG_VERSION")),
            (sys("sysdescr"), "ringmq"),
            ("$SYS/brokers".to_string(), NODE),
        ] {
            c.subscribe(&topic, 0);
            let p = c.recv_publish();
            assert_eq!(p.topic.as_str(), topic);
            assert!(p.retain, "{topic} retained");
            assert_eq!(&p.payload[..], want.as_bytes(), "{topic}");
        }
        c.subscribe(&sys("uptime"), 0);
        let p = c.recv_publish();
        assert!(
            std::str::from_utf8(&p.payload)
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        c.subscribe(&sys("datetime"), 0);
        let p = std::iter::repeat_with(|| c.recv_publish())
            .find(|p| p.topic.as_str() == sys("datetime"))
            .unwrap();
        let dt = std::str::from_utf8(&p.payload).unwrap().to_string();
        assert!(
            dt.len() == 24 && dt.ends_with('Z') && &dt[10..11] == "T",
            "{dt}"
        );
        // A `#` or `+/...` subscriber sees none of it (only the connected events would be
        // $SYS too).
        all.expect_no_publish(Duration::from_millis(1500));
    }
}

#[test]
fn client_events_carry_the_connection_fields() {
    for shards in SHARDS {
        let b = Broker::start_with(shards, CONFIG, &[]);
        let mut w = watcher(&b, &id_on(0, shards, "w"), &sys("clients/#"));
        let id = id_on(shards - 1, shards, "ev");
        let mut c = connect_packet(V5, &id, true);
        c.username = Some(MqttStr::from("a\"b"));
        c.keep_alive = 30;
        let (mut raw, _) = Raw::connect_with(&b, c);
        let event = |w: &mut Raw, what: &str| loop {
            let p = w.recv_publish();
            if p.topic.as_str() == sys(&format!("clients/{id}/{what}")) {
                assert_eq!(p.qos, QoS::AtMostOnce);
                assert!(!p.retain);
                return String::from_utf8(p.payload.to_vec()).unwrap();
            }
        };
        let j = event(&mut w, "connected");
        assert_eq!(field(&j, "clientid"), format!("\"{id}\""));
        assert_eq!(field(&j, "username"), "\"a\\\"", "escaped: {j}");
        assert!(j.contains("\"username\":\"a\\\"b\""), "{j}");
        assert_eq!(field(&j, "ipaddress"), "\"127.0.0.1\"");
        assert_eq!(field(&j, "sockport"), b.port.to_string());
        assert_eq!(field(&j, "protocol"), "\"mqtt\"");
        assert_eq!(field(&j, "proto_name"), "\"MQTT\"");
        assert_eq!(field(&j, "proto_ver"), "5");
        assert_eq!(field(&j, "keepalive"), "30");
        assert_eq!(field(&j, "clean_start"), "true");
        assert_eq!(field(&j, "expiry_interval"), "0");
        let connected_at: u64 = field(&j, "connected_at").parse().unwrap();
        let ts: u64 = field(&j, "ts").parse().unwrap();
        assert!(connected_at > 1_600_000_000_000 && ts >= connected_at);

        raw.subscribe("s/+", 1);
        let j = event(&mut w, "subscribed");
        assert_eq!(field(&j, "topic"), "\"s/+\"");
        assert!(j.contains("\"subopts\":{\"qos\":1"), "{j}");

        raw.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: std::num::NonZeroU16::new(9).unwrap(),
            properties: Default::default(),
            filters: vec![MqttStr::from("s/+")],
        }));
        assert!(matches!(raw.recv(), Some(Packet::UnsubAck(_))));
        let j = event(&mut w, "unsubscribed");
        assert_eq!(field(&j, "topic"), "\"s/+\"");
        assert!(!j.contains("subopts"), "{j}");

        raw.disconnect();
        let j = event(&mut w, "disconnected");
        assert_eq!(field(&j, "reason"), "\"normal\"");
        assert_eq!(field(&j, "clientid"), format!("\"{id}\""));
        assert!(field(&j, "disconnected_at").parse::<u64>().unwrap() >= connected_at);

        // A v3.1.1 client whose socket just closes.
        let (raw, _) = Raw::connect(&b, V311, &id, true);
        let j = event(&mut w, "connected");
        assert_eq!(field(&j, "proto_ver"), "4");
        assert_eq!(field(&j, "username"), "null");
        raw.abort();
        let j = event(&mut w, "disconnected");
        assert_eq!(field(&j, "reason"), "\"tcp_closed\"");

        // Taken over by a new connection resuming the session.
        let (_old, _) = Raw::connect(&b, V5, &id, false);
        event(&mut w, "connected");
        let (_new, _) = Raw::connect(&b, V5, &id, false);
        let j = event(&mut w, "disconnected");
        assert_eq!(field(&j, "reason"), "\"takenover\"");
        let j = event(&mut w, "connected");
        assert_eq!(field(&j, "clean_start"), "false");
    }
}

#[test]
fn disabled_sys_msg_interval_publishes_no_stats() {
    for shards in SHARDS {
        let config = CONFIG.replace(
            "sys_msg_interval = \"1s\"",
            "sys_msg_interval = \"disabled\"",
        );
        let b = Broker::start_with(shards, &config, &[]);
        let mut w = watcher(&b, &id_on(0, shards, "w"), "$SYS/#");
        let deadline = Instant::now() + Duration::from_millis(2500);
        let got: Vec<Publish> = std::iter::from_fn(|| {
            w.recv_publish_within(deadline.saturating_duration_since(Instant::now()))
        })
        .collect();
        let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
        assert!(
            !topics
                .iter()
                .any(|t| t.contains("/stats/") || t.contains("/metrics/")),
            "{topics:?}"
        );
        // The heartbeat still runs.
        assert!(topics.iter().any(|t| t.ends_with("/uptime")), "{topics:?}");
    }
}

/// Client events are built only when someone would receive them: a subscriber on the client's
/// shard, on another shard, or a share group's member. Each kind of watcher, alone, gets them.
#[test]
fn client_events_reach_local_remote_and_shared_watchers() {
    for shards in SHARDS {
        let b = Broker::start_with(shards, CONFIG, &[]);
        let filter = sys("clients/+/connected");
        let watchers = [
            // A share group's only member.
            (id_on(0, shards, "m"), format!("$share/g/{filter}")),
            // A plain subscriber: local to some clients, remote to the others.
            (id_on(shards - 1, shards, "p"), filter.clone()),
        ];
        for (i, (wid, wfilter)) in watchers.iter().enumerate() {
            let mut w = watcher(&b, wid, wfilter);
            // Clients on every shard.
            let ids: Vec<String> = (0..shards)
                .map(|s| id_on(s, shards, &format!("ev{i}-{s}")))
                .collect();
            let _clients: Vec<_> = ids
                .iter()
                .map(|id| Raw::connect(&b, V311, id, true))
                .collect();
            let mut want: Vec<String> = ids
                .iter()
                .map(|id| sys(&format!("clients/{id}/connected")))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !want.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(p) = w.recv_publish_within(left) else {
                    panic!("{shards} shards, watcher {wfilter}: no event for {want:?}");
                };
                want.retain(|t| t != p.topic.as_str());
            }
            w.disconnect();
        }
    }
}
