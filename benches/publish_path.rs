//! Benchmark of the broker's fan-in path on one shard, sans-io: `cargo bench --bench publish_path`.
//! 100 publishers send PUBLISH packets (16-byte payload, each on its own topic) in batches of 256,
//! as one socket read would bring them; one subscriber of a wildcard filter receives them all.
//! Prints the cost per message of `Broker::input` (decode, route, deliver, encode into the
//! subscriber's output buffer) plus taking the output, for QoS 0 and QoS 1 (with the PUBACK
//! back to the publisher and the subscriber's PUBACK fed in), MQTT 3.1.1 and 5.0. No sockets and
//! no runtime: what the broker logic itself costs per message.

use std::hint::black_box;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ringmq::broker::{Broker, ConnId, Settings};
use ringmq::protocol::*;

const PUBLISHERS: usize = 100;
const BATCH: usize = 256;
const ROUNDS: usize = 4_000;

fn bytes_of(p: Packet, v: ProtocolVersion) -> BytesMut {
    let mut b = BytesMut::new();
    p.encode(v, &mut b).unwrap();
    b
}

fn connect(b: &mut Broker, v: ProtocolVersion, id: &str) -> ConnId {
    let conn = b.open(SocketAddr::from(([127, 0, 0, 1], 5000)), 0);
    let mut rx = bytes_of(
        Packet::Connect(Box::new(Connect {
            protocol: v,
            clean_start: true,
            keep_alive: 60,
            properties: Default::default(),
            client_id: MqttStr::from(id),
            will: None,
            username: None,
            password: None,
        })),
        v,
    );
    b.input(conn, &mut rx, 0);
    b.take_output(conn);
    conn
}

fn run(v: ProtocolVersion, qos: QoS) -> f64 {
    let settings = Settings {
        sys_msg_interval_ms: None,
        sys_heartbeat_interval_ms: None,
        ..Settings::default()
    };
    let mut b = Broker::new(0, 1, Rc::new(settings));
    let sub = connect(&mut b, v, "sub");
    let mut rx = bytes_of(
        Packet::Subscribe(Subscribe {
            packet_id: NonZeroU16::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![(
                MqttStr::from("bench/+/t"),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
        }),
        v,
    );
    b.input(sub, &mut rx, 0);
    b.take_output(sub);
    let pubs: Vec<ConnId> = (0..PUBLISHERS)
        .map(|i| connect(&mut b, v, &format!("pub{i}")))
        .collect();
    // One batch per publisher, packet ids 1..=256 reused every round (each is acknowledged
    // before the next round).
    let batches: Vec<Vec<u8>> = (0..PUBLISHERS)
        .map(|i| {
            let mut buf = BytesMut::new();
            for k in 0..BATCH {
                Packet::Publish(Publish {
                    qos,
                    topic: MqttStr::from(format!("bench/{i}/t").as_str()),
                    packet_id: NonZeroU16::new(k as u16 + 1).filter(|_| qos != QoS::AtMostOnce),
                    payload: Bytes::from(vec![7u8; 16]),
                    ..Default::default()
                })
                .encode(v, &mut buf)
                .unwrap();
            }
            buf.to_vec()
        })
        .collect();
    // The subscriber's PUBACKs for one round: the broker numbers its deliveries 1, 2, ...
    let mut next_pid: u32 = 0;
    let mut acks = BytesMut::new();
    let mut dec = Decoder::with_version(v, 1 << 20);
    let mut messages = 0usize;
    let start = Instant::now();
    for round in 0..ROUNDS {
        let p = pubs[round % PUBLISHERS];
        let mut rx = BytesMut::from(&batches[round % PUBLISHERS][..]);
        b.input(p, &mut rx, 1);
        black_box(b.take_output(p));
        let (mut out, _) = b.take_output(sub);
        messages += BATCH;
        if qos == QoS::AtMostOnce {
            black_box(out);
            continue;
        }
        // Acknowledge what arrives, as a subscriber does, until the in-flight window has let
        // every message of the round through.
        loop {
            acks.clear();
            while let Some(packet) = dec.decode(&mut out).unwrap() {
                if let Packet::Publish(p) = packet {
                    Packet::PubAck(Ack::new(p.packet_id.unwrap()))
                        .encode(v, &mut acks)
                        .unwrap();
                    next_pid += 1;
                }
            }
            if acks.is_empty() {
                break;
            }
            b.input(sub, &mut acks, 1);
            out = b.take_output(sub).0;
        }
    }
    assert_eq!(
        next_pid as usize,
        if qos == QoS::AtMostOnce { 0 } else { messages },
        "every message delivered"
    );
    start.elapsed().as_nanos() as f64 / messages as f64
}

fn main() {
    println!(
        "fan-in through one shard's broker logic, {PUBLISHERS} publishers -> 1 wildcard subscriber, 16 B payload"
    );
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let ns = (0..3).map(|_| run(v, qos)).fold(f64::MAX, f64::min);
            println!(
                "  {v:?} QoS {}: {ns:.0} ns/message ({:.2} M msg/s per core)",
                qos as u8,
                1000.0 / ns
            );
        }
    }
}
