//! Fan-in throughput of a running broker: P publishers send QoS 0 PUBLISHes (64-byte payload)
//! to one topic as fast as the broker takes them; one subscriber reads them. Prints the
//! messages per second the subscriber received (and the publishers sent) over the measured
//! window, after a warm-up.
//!
//! usage: cargo bench --bench fan_in -- HOST:PORT [PUBLISHERS] [SECONDS]
//!
//! The publishers' client ids are `fan-pub-<n>` and the subscriber's `fan-sub`, so with several
//! shards some publishers cross shards and some do not, as in real use.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringmq::protocol::{
    Connect, MqttStr, Packet, ProtocolVersion, Publish, Subscribe, SubscriptionOptions,
};

const TOPIC: &str = "fan/in";
const PAYLOAD_BYTES: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);

/// One packet encoded as MQTT 3.1.1 by the library's codec.
fn encode(p: Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(ProtocolVersion::V311, &mut out).expect("encodes");
    out.to_vec()
}

/// Connects as an MQTT 3.1.1 client (clean session, no keep-alive) and waits for the CONNACK.
fn connect(addr: &str, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 0,
        properties: Default::default(),
        client_id: MqttStr::from(id),
        will: None,
        username: None,
        password: None,
    };
    s.write_all(&encode(Packet::Connect(Box::new(connect))))
        .unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK");
    s
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let addr = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let publishers: usize = args.get(1).map_or(4, |a| a.parse().expect("PUBLISHERS"));
    let seconds: u64 = args.get(2).map_or(5, |a| a.parse().expect("SECONDS"));

    let mut sub = connect(&addr, "fan-sub");
    let subscribe = Subscribe {
        packet_id: NonZeroU16::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(MqttStr::from(TOPIC), SubscriptionOptions::default())],
    };
    sub.write_all(&encode(Packet::Subscribe(subscribe)))
        .unwrap();
    let mut suback = [0u8; 5];
    sub.read_exact(&mut suback).unwrap();
    assert_eq!(suback[0], 0x90, "SUBACK");

    let one = encode(Packet::Publish(Publish {
        topic: MqttStr::from(TOPIC),
        payload: Bytes::from(vec![b'x'; PAYLOAD_BYTES]),
        ..Default::default()
    }));
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 256).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let pubs: Vec<_> = (0..publishers)
        .map(|n| {
            let mut s = connect(&addr, &format!("fan-pub-{n}"));
            let (stop, sent, batch) = (stop.clone(), sent.clone(), batch.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if s.write_all(&batch).is_err() {
                        break;
                    }
                    sent.fetch_add(256, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Every received PUBLISH has the same size: count bytes.
    let mut buf = vec![0u8; 1 << 20];
    let mut received_bytes = 0u64;
    let start = Instant::now();
    let mut window: Option<(Instant, u64, u64)> = None;
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        let n = sub.read(&mut buf).expect("subscriber read");
        assert!(n > 0, "broker closed the subscriber");
        received_bytes += n as u64;
        let now = Instant::now();
        if window.is_none() && now - start >= WARMUP {
            window = Some((now, received_bytes, sent.load(Ordering::Relaxed)));
        }
        if let Some((t0, r0, s0)) = window
            && now - t0 >= Duration::from_secs(seconds)
        {
            let secs = (now - t0).as_secs_f64();
            let received = (received_bytes - r0) / one.len() as u64;
            let sent = sent.load(Ordering::Relaxed) - s0;
            println!(
                "fan-in {publishers} publishers -> 1 subscriber, {PAYLOAD_BYTES}-byte QoS 0: received {:.0} msg/s, sent {:.0} msg/s",
                received as f64 / secs,
                sent as f64 / secs
            );
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(sub);
    for p in pubs {
        let _ = p.join();
    }
}
