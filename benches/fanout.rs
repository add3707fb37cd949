//! Benchmark of fan-out to N local subscribers on one shard, a plain program:
//! `cargo bench --bench fanout`. Drives the sans-io [`Broker`] without sockets (as
//! `src/broker/tests.rs` does): N subscribers of `bench/fanout` and one publisher connected on
//! shard 0 of 1, then one QoS 0 PUBLISH (16-byte payload) at a time fed to the publisher's input.
//! Prints the cost per delivery of
//! - `route+encode`: `Broker::input` alone (decode, trie match, one PUBLISH encoded into each
//!   subscriber's output buffer), and
//! - `+take_output`: that plus what the runtime does next on the shard before the socket write
//!   (`take_dirty`, then `take_output` of every woken connection, the buffer dropped as a write
//!   would consume it),
//!
//! for N = 1, 10, 100, 1000, MQTT 3.1.1 and 5.0 subscribers. Median of 3 runs each; the
//! `+take_output` figure comes from runs without per-publish clock reads.

use std::hint::black_box;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ringmq::broker::{Broker, ConnId, Settings};
use ringmq::protocol::{
    Connect, MqttStr, Packet, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
};

const TOPIC: &str = "bench/fanout";
/// Deliveries per measurement (at least `MIN_PUBLISHES` publishes).
const DELIVERIES: usize = 2_000_000;
const MIN_PUBLISHES: usize = 2_000;

fn bytes_of(p: Packet, v: ProtocolVersion) -> BytesMut {
    let mut b = BytesMut::new();
    p.encode(v, &mut b).expect("encodes");
    b
}

fn connect(b: &mut Broker, v: ProtocolVersion, client: &str) -> ConnId {
    let id = b.open(SocketAddr::from(([127, 0, 0, 1], 5000)), 0);
    let c = Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 0,
        properties: Default::default(),
        client_id: MqttStr::from(client),
        will: None,
        username: None,
        password: None,
    };
    let mut rx = bytes_of(Packet::Connect(Box::new(c)), v);
    b.input(id, &mut rx, 0);
    let (out, close) = b.take_output(id);
    assert!(
        close.is_none() && !out.is_empty(),
        "no CONNACK for {client}"
    );
    id
}

/// A shard with `n` subscribers of [`TOPIC`] and one publisher; returns it and the publisher.
fn setup(n: usize, v: ProtocolVersion) -> (Broker, ConnId) {
    let settings = Settings {
        sys_msg_interval_ms: None,
        sys_heartbeat_interval_ms: None,
        ..Settings::default()
    };
    let mut b = Broker::new(0, 1, Rc::new(settings));
    for i in 0..n {
        let id = connect(&mut b, v, &format!("sub-{i}"));
        let sub = Subscribe {
            packet_id: NonZeroU16::new(1).expect("nonzero"),
            properties: Default::default(),
            filters: vec![(
                MqttStr::from(TOPIC),
                SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    ..Default::default()
                },
            )],
        };
        let mut rx = bytes_of(Packet::Subscribe(sub), v);
        b.input(id, &mut rx, 0);
        let (out, _) = b.take_output(id);
        assert!(!out.is_empty(), "no SUBACK");
    }
    let publisher = connect(&mut b, v, "pub-0");
    let mut dirty = Vec::new();
    b.take_dirty(&mut dirty);
    (b, publisher)
}

/// One pass of `publishes` publishes, each followed by what the runtime does before the socket
/// write. With `timed`, the time of `Broker::input` alone is summed as well (two clock reads per
/// publish, whose cost [`timer_ns`] is subtracted). Returns (ns in input, ns in total, bytes out).
fn pass(n: usize, v: ProtocolVersion, timed: bool) -> (f64, f64, usize) {
    let (mut b, publisher) = setup(n, v);
    let wire = bytes_of(
        Packet::Publish(Publish {
            qos: QoS::AtMostOnce,
            topic: MqttStr::from(TOPIC),
            payload: Bytes::from(vec![0x5a; 16]),
            ..Default::default()
        }),
        v,
    );
    let publishes = (DELIVERIES / n).max(MIN_PUBLISHES);
    let mut dirty = Vec::with_capacity(n + 1);
    let mut input_ns = 0u128;
    let mut out_bytes = 0usize;
    let start = Instant::now();
    for i in 0..publishes {
        let mut rx = BytesMut::from(black_box(&wire[..]));
        if timed {
            let t = Instant::now();
            b.input(publisher, &mut rx, i as u64 / 1000);
            input_ns += t.elapsed().as_nanos();
        } else {
            b.input(publisher, &mut rx, i as u64 / 1000);
        }
        b.take_dirty(&mut dirty);
        for id in dirty.drain(..) {
            let (tx, _) = b.take_output(id);
            out_bytes += tx.len();
            drop(black_box(tx));
        }
    }
    let total_ns = start.elapsed().as_nanos();
    assert!(out_bytes >= publishes * n * 18, "deliveries missing");
    let deliveries = (publishes * n) as f64;
    let input = (input_ns as f64 - timer_ns() * publishes as f64) / deliveries;
    (
        input,
        total_ns as f64 / deliveries,
        out_bytes / (publishes * n),
    )
}

/// The cost of one `Instant::now()` + `elapsed()` pair.
fn timer_ns() -> f64 {
    use std::sync::OnceLock;
    static NS: OnceLock<f64> = OnceLock::new();
    *NS.get_or_init(|| {
        let k = 1_000_000;
        let mut sink = 0u128;
        let start = Instant::now();
        for _ in 0..k {
            let t = Instant::now();
            sink += black_box(t.elapsed().as_nanos());
        }
        black_box(sink);
        start.elapsed().as_nanos() as f64 / k as f64
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    println!(
        "fan-out to N local subscribers, QoS 0, 16-byte payload, one shard (sans-io Broker); \
         clock pair {:.1} ns (subtracted from route+encode)",
        timer_ns()
    );
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for n in [1usize, 10, 100, 1000] {
            pass(n, v, false); // warm-up
            let total = median((0..3).map(|_| pass(n, v, false).1).collect());
            let timed: Vec<_> = (0..3).map(|_| pass(n, v, true)).collect();
            let input = median(timed.iter().map(|r| r.0).collect());
            println!(
                "fanout.local {v:?} N={n:<5} {} B/delivery  route+encode {input:7.1} ns/delivery  \
                 +take_output {total:7.1} ns/delivery  ({:.2} M deliveries/s per core)",
                timed[0].2,
                1e3 / total
            );
        }
    }
}
