//! Backpressure (DESIGN.md: "a full client write queue slows the reader of the publishing
//! socket"): a publisher faster than its subscriber is slowed to the subscriber's pace instead of
//! the broker dropping what the subscriber cannot take, within one shard and across shards; and a
//! subscriber that stops reading holds its publishers up only briefly.
//! Each test runs with the publisher and the subscriber on the same shard and on different ones.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringmq::protocol::*;
use support::*;

/// `n` PUBLISHes of `size`-byte payloads to `topic`, each payload starting with its index.
fn flood(version: ProtocolVersion, topic: &str, q: QoS, n: usize, size: usize) -> BytesMut {
    let mut out = BytesMut::new();
    for i in 0..n {
        let mut payload = vec![b'.'; size];
        payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
        Packet::Publish(Publish {
            topic: MqttStr::from(topic),
            qos: q,
            packet_id: (q != QoS::AtMostOnce)
                .then(|| std::num::NonZeroU16::new((i % 65535 + 1) as u16).unwrap()),
            payload: Bytes::from(payload),
            ..Default::default()
        })
        .encode(version, &mut out)
        .unwrap();
    }
    out
}

fn index(p: &Publish) -> u32 {
    u32::from_be_bytes(p.payload[..4].try_into().unwrap())
}

/// Writes `bytes` on a thread (blocking while the broker does not read) and returns the client
/// to read its acknowledgements from afterwards.
fn send_on_thread(mut c: Raw, bytes: BytesMut) -> std::thread::JoinHandle<Raw> {
    std::thread::spawn(move || {
        c.stream.write_all(&bytes).expect("publisher write");
        c
    })
}

/// 30 MB of QoS 0 to a subscriber that reads at about 16 MB/s: far more than the socket buffers
/// and the broker's 1 MiB QoS 0 write queue hold, so without backpressure most would be dropped.
fn qos0_flood_reaches_a_slow_reader_whole(shards: usize, same_shard: bool) {
    const N: usize = 30_000;
    let broker = Broker::start(shards);
    let sub_shard = 0;
    let pub_shard = if same_shard { 0 } else { 1 % shards };
    let (mut sub, _) = Raw::connect(&broker, V311, &id_on(sub_shard, shards, "bp-sub"), true);
    subscribe(&mut sub, "bp/#", QoS::AtMostOnce);
    let (mut publ, _) = Raw::connect(&broker, V311, &id_on(pub_shard, shards, "bp-pub"), true);
    sync_route(&mut publ, &mut sub, "bp/x");
    let writer = send_on_thread(publ, flood(V311, "bp/x", QoS::AtMostOnce, N, 1024));
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (next as usize) < N && Instant::now() < deadline {
        let Some(p) = sub.recv_publish_within(Duration::from_secs(10)) else {
            break;
        };
        assert_eq!(index(&p), next, "QoS 0 messages out of order or missing");
        next += 1;
        if next.is_multiple_of(16) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(
        next as usize, N,
        "messages lost on the way to a slow reader"
    );
    let mut publ = writer.join().unwrap();
    publ.send(&Packet::PingReq);
    assert!(matches!(publ.recv(), Some(Packet::PingResp)));
}

#[test]
fn qos0_flood_reaches_a_slow_reader_whole_on_one_shard() {
    qos0_flood_reaches_a_slow_reader_whole(1, true);
}

#[test]
fn qos0_flood_reaches_a_slow_reader_whole_on_two_shards() {
    qos0_flood_reaches_a_slow_reader_whole(2, true);
    qos0_flood_reaches_a_slow_reader_whole(2, false);
}

/// 5,000 QoS 1 messages sent at once, towards a subscriber whose queue holds 50 and which
/// acknowledges as it reads: the publisher waits, the queue never sheds.
fn qos1_burst_waits_for_the_subscriber_queue(shards: usize, same_shard: bool) {
    const N: usize = 5_000;
    let broker = Broker::start_with(shards, "[mqtt]\nmax_mqueue_len = 50\n", &[]);
    let pub_shard = if same_shard { 0 } else { 1 % shards };
    let (mut sub, _) = Raw::connect(&broker, V5, &id_on(0, shards, "bp1-sub"), true);
    subscribe(&mut sub, "bp1/#", QoS::AtLeastOnce);
    let (mut publ, _) = Raw::connect(&broker, V5, &id_on(pub_shard, shards, "bp1-pub"), true);
    sync_route(&mut publ, &mut sub, "bp1/x");
    let writer = send_on_thread(publ, flood(V5, "bp1/x", QoS::AtLeastOnce, N, 16));
    let mut next = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (next as usize) < N && Instant::now() < deadline {
        let Some(p) = sub.recv_publish_within(Duration::from_secs(10)) else {
            break;
        };
        assert_eq!(index(&p), next, "QoS 1 messages out of order or missing");
        next += 1;
        sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));
        if next.is_multiple_of(8) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(next as usize, N, "QoS 1 messages shed from a queue of 50");
    // Every message was acknowledged to the publisher.
    let mut publ = writer.join().unwrap();
    let mut acked = 0;
    while acked < N {
        match publ.recv() {
            Some(Packet::PubAck(_)) => acked += 1,
            other => panic!("expected PUBACK {acked}, got {other:?}"),
        }
    }
}

#[test]
fn qos1_burst_waits_for_the_subscriber_queue_on_one_shard() {
    qos1_burst_waits_for_the_subscriber_queue(1, true);
}

#[test]
fn qos1_burst_waits_for_the_subscriber_queue_on_two_shards() {
    qos1_burst_waits_for_the_subscriber_queue(2, true);
    qos1_burst_waits_for_the_subscriber_queue(2, false);
}

/// A publisher with a 1-second keep-alive waits seconds at a time for a subscriber that
/// acknowledges slowly but steadily: it is not timed out meanwhile (its packets, PINGREQs
/// included, wait unread because of the broker's backpressure, not because it is silent).
#[test]
fn a_stalled_publisher_is_not_timed_out_by_its_keep_alive() {
    const N: usize = 200;
    // Stalls when 101 wait in the queue, resumes at 50: 51 acknowledgements 70 ms apart (often
    // enough to count as progress) are 3.6 s, longer than the keep-alive's 1.5 s (on 1 s ticks).
    let broker = Broker::start_with(1, "[mqtt]\nmax_mqueue_len = 200\n", &[]);
    let (mut sub, _) = Raw::connect(&broker, V5, "ka-sub", true);
    subscribe(&mut sub, "ka/#", QoS::AtLeastOnce);
    let mut c = connect_packet(V5, "ka-pub", true);
    c.keep_alive = 1;
    let (mut publ, _) = Raw::connect_with(&broker, c);
    sync_route(&mut publ, &mut sub, "ka/x");
    // The client does its part: a PINGREQ after every 10 messages, and every 300 ms once done.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let ping = {
                let mut b = BytesMut::new();
                Packet::PingReq.encode(V5, &mut b).unwrap();
                b
            };
            let all = flood(V5, "ka/x", QoS::AtLeastOnce, N, 16);
            let each = all.len() / N;
            for chunk in all.chunks(10 * each) {
                publ.stream.write_all(chunk).expect("publisher write");
                publ.stream.write_all(&ping).expect("publisher write");
            }
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300));
                publ.stream.write_all(&ping).expect("publisher write");
            }
            publ
        })
    };
    for i in 0..N as u32 {
        let p = sub
            .recv_publish_within(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("got {i} of {N}"));
        assert_eq!(index(&p), i, "messages lost");
        std::thread::sleep(Duration::from_millis(70));
        sub.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut publ = writer.join().unwrap();
    let mut acks = 0;
    while let Some(p) = publ.recv_within(Duration::from_millis(500)) {
        match p {
            Packet::PubAck(_) => acks += 1,
            Packet::PingResp => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acks, N, "the publisher was disconnected");
    publ.send(&Packet::PingReq);
    match publ.recv() {
        Some(Packet::PingResp) => {}
        other => panic!("the publisher was disconnected: {other:?}"),
    }
}

/// A subscriber that never reads gets the publisher stalled for a moment, then is treated as
/// slow: the publisher goes on and its other subscriber gets everything sent after.
fn a_stuck_subscriber_holds_its_publisher_only_briefly(shards: usize, same_shard: bool) {
    let broker = Broker::start(shards);
    let pub_shard = if same_shard { 0 } else { 1 % shards };
    // Never reads, with a tiny receive buffer.
    let stuck = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let addr: std::net::SocketAddr = broker.addr().parse().unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut raw = Raw::from_stream(sock.into(), V311);
        raw.send(&Packet::Connect(Box::new(connect_packet(
            V311,
            &id_on(0, shards, "bp-stuck"),
            true,
        ))));
        assert!(matches!(raw.recv(), Some(Packet::ConnAck(_))));
        subscribe(&mut raw, "bps/#", QoS::AtMostOnce);
        raw
    };
    let (mut live, _) = Raw::connect(&broker, V311, &id_on(0, shards, "bp-live"), true);
    subscribe(&mut live, "bpl/#", QoS::AtMostOnce);
    let (mut publ, _) = Raw::connect(&broker, V311, &id_on(pub_shard, shards, "bp-p"), true);
    sync_route(&mut publ, &mut live, "bpl/x");
    // 16 MB for the stuck one (its output fills), then 1,000 messages for the live one, twice.
    for round in 0..2 {
        let mut bytes = flood(V311, "bps/x", QoS::AtMostOnce, 16_000, 1024);
        bytes.extend_from_slice(&flood(V311, "bpl/x", QoS::AtMostOnce, 1_000, 64));
        let started = Instant::now();
        let writer = send_on_thread(publ, bytes);
        for i in 0..1_000u32 {
            match live.recv_publish_within(Duration::from_secs(20)) {
                Some(p) => assert_eq!(index(&p), i, "round {round}"),
                None => panic!("round {round}: the live subscriber got {i} of 1000"),
            }
        }
        publ = writer.join().unwrap();
        // Generous: the stall is 100 ms; a wait for the stuck reader would never end.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "round {round} took {:?}",
            started.elapsed()
        );
    }
    drop(stuck);
}

#[test]
fn a_stuck_subscriber_holds_its_publisher_only_briefly_on_one_shard() {
    a_stuck_subscriber_holds_its_publisher_only_briefly(1, true);
}

#[test]
fn a_stuck_subscriber_holds_its_publisher_only_briefly_on_two_shards() {
    a_stuck_subscriber_holds_its_publisher_only_briefly(2, true);
    a_stuck_subscriber_holds_its_publisher_only_briefly(2, false);
}

/// The load generator's closed-loop shared-subscription flood on two shards: 100 QoS 1
/// publishers and 5 members spread over both shards, as fast as the publishers' windows allow.
/// Each shard waits for the other's members and outbox at once; a shard whose outbox filled used
/// to stop reading every socket, its members' acknowledgements included, so the members looked
/// stuck and their queues shed (about half the messages). Nothing may be lost.
#[test]
fn a_two_shard_shared_flood_loses_nothing() {
    let broker = Broker::start(2);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args([
            "sharedsub",
            "--publishers",
            "100",
            "--subscribers",
            "5",
            "--group",
            "g",
        ])
        .args([
            "-q",
            "1",
            "-s",
            "16",
            "-I",
            "0",
            "--inflight",
            "32",
            "-d",
            "4",
        ])
        .args(["--drain", "60", "--threads", "1", "--quiet", "-p"])
        .arg(broker.port.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ringmq-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("no JSON summary ({e}): {text}"));
    let field = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {text}"))
    };
    assert!(field("published") > 10_000, "{text}");
    assert_eq!(field("lost"), 0, "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}
