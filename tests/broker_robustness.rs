//! Robustness of the running broker against misbehaving clients: byte-level protocol violations
//! (each answered exactly as the spec asks, then closed, without disturbing other clients), a
//! decoder fuzz over TCP, 15,000 concurrent connections with an abrupt mass close, and a
//! subscriber that never reads.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringmq::protocol::*;
use support::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn publish_packet(topic: &str, q: QoS, id: u16, payload: Vec<u8>) -> Packet {
    Packet::Publish(Publish {
        qos: q,
        topic: MqttStr::from(topic),
        packet_id: NonZeroU16::new(if q == QoS::AtMostOnce { 0 } else { id }),
        payload: Bytes::from(payload),
        ..Default::default()
    })
}

fn encode(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(v, &mut out).unwrap();
    out.to_vec()
}

/// Two clients on different shards, connected before a misbehaving client shows up: `check`
/// proves that they still work afterwards (a QoS 1 round trip).
struct Witness {
    sub: Raw,
    publ: Raw,
    n: u16,
}

impl Witness {
    fn new(broker: &Broker) -> Witness {
        let s = broker.shards;
        let (mut sub, _) = Raw::connect(broker, V5, &id_on(0, s, "witness-sub"), true);
        subscribe(&mut sub, "witness/#", QoS::AtLeastOnce);
        let (mut publ, _) = Raw::connect(broker, V311, &id_on(s - 1, s, "witness-pub"), true);
        await_route(&mut sub, &mut publ, "witness/probe");
        let mut w = Witness { sub, publ, n: 0 };
        w.check();
        w
    }

    fn check(&mut self) {
        self.n += 1;
        let n = self.n;
        let payload = format!("still alive {n}").into_bytes();
        self.publ.send(&publish_packet(
            &format!("witness/{n}"),
            QoS::AtLeastOnce,
            n,
            payload.clone(),
        ));
        match self.publ.recv() {
            Some(Packet::PubAck(a)) => assert_eq!(a.packet_id.get(), n),
            other => panic!("witness publisher: expected PUBACK, got {other:?}"),
        }
        match self.sub.recv() {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.topic.to_string(), format!("witness/{n}"));
                assert_eq!(&p.payload[..], &payload[..]);
                self.sub
                    .send(&Packet::PubAck(Ack::new(p.packet_id.unwrap())));
            }
            other => panic!("witness subscriber: expected PUBLISH, got {other:?}"),
        }
    }
}

/// Publishes QoS 0 probes to `topic` until `sub` (subscribed to it) receives one: the SUBACK is
/// sent before the other shards have learnt the new route, so a publisher on another shard may
/// miss a subscription made a moment ago. Other packets `sub` receives meanwhile are dropped.
fn await_route(sub: &mut Raw, publ: &mut Raw, topic: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "route to {topic} never established"
        );
        publ.send(&publish_packet(
            topic,
            QoS::AtMostOnce,
            0,
            b"probe".to_vec(),
        ));
        if let Some(Packet::Publish(p)) = sub.recv_within(Duration::from_millis(100))
            && p.topic == topic
        {
            // Drain the other probes.
            while sub.recv_within(Duration::from_millis(100)).is_some() {}
            return;
        }
    }
}

/// A new subscriber and a new publisher on different shards can still talk.
fn serves_new_clients(broker: &Broker, tag: &str) {
    let n = broker.shards;
    let (mut sub, _) = Raw::connect(broker, V5, &id_on(0, n, &format!("after-{tag}-sub")), true);
    subscribe(&mut sub, &format!("after/{tag}/#"), QoS::AtLeastOnce);
    let (mut publ, _) = Raw::connect(
        broker,
        V311,
        &id_on(n - 1, n, &format!("after-{tag}-pub")),
        true,
    );
    await_route(&mut sub, &mut publ, &format!("after/{tag}/probe"));
    publ.send(&publish_packet(
        &format!("after/{tag}/ok"),
        QoS::AtLeastOnce,
        1,
        b"ok".to_vec(),
    ));
    assert!(
        matches!(publ.recv(), Some(Packet::PubAck(_))),
        "{tag}: PUBACK"
    );
    assert!(
        matches!(sub.recv(), Some(Packet::Publish(p)) if &p.payload[..] == b"ok"),
        "{tag}: the new subscriber got nothing"
    );
}

/// Every byte the broker sends until it closes the connection; fails if it stays open.
fn read_until_closed(raw: &mut Raw) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connection not closed; got {got:02x?}");
        raw.stream.set_read_timeout(Some(left)).unwrap();
        match raw.stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset also ends the connection.
            Err(_) => return got,
        }
    }
}

fn decode_all(v: ProtocolVersion, bytes: &[u8]) -> Vec<Packet> {
    let mut d = Decoder::with_version(v, 1 << 28);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(p) = d
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("broker sent undecodable bytes {bytes:02x?}: {e}"))
    {
        out.push(p);
    }
    assert!(
        buf.is_empty(),
        "trailing bytes from the broker: {bytes:02x?}"
    );
    out
}

/// Asserts the broker answers exactly one v5 DISCONNECT with `code` and closes.
fn expect_disconnect(raw: &mut Raw, code: ReasonCode, what: &str) {
    let bytes = read_until_closed(raw);
    let got = decode_all(V5, &bytes);
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == code),
        "{what}: expected DISCONNECT {code:?} then close, got {got:?}"
    );
}

/// Asserts the broker closes without sending anything.
fn expect_silent_close(raw: &mut Raw, what: &str) {
    let bytes = read_until_closed(raw);
    assert!(
        bytes.is_empty(),
        "{what}: expected a close without answer, got {bytes:02x?}"
    );
}

/// A CONNECT by hand: protocol name, level, flags 0x02 (clean), keep-alive 60, client id "bad".
fn raw_connect(name: &[u8], level: u8, v5_props: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.push(level);
    body.push(0x02);
    body.extend_from_slice(&60u16.to_be_bytes());
    if v5_props {
        body.push(0);
    }
    body.extend_from_slice(&[0, 3, b'b', b'a', b'd']);
    let mut p = vec![0x10, body.len() as u8];
    p.extend_from_slice(&body);
    p
}

/// A PUBLISH by hand with a raw topic: `header` is the first byte (type and flags).
fn raw_publish(header: u8, topic: &[u8], packet_id: Option<u16>, v5: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if v5 {
        body.push(0);
    }
    body.extend_from_slice(b"payload");
    let mut p = vec![header, body.len() as u8];
    p.extend_from_slice(&body);
    p
}

/// Connects a client on `shard` (so a handoff may be involved) and sends `bytes` after CONNACK.
fn connected_then(broker: &Broker, v: ProtocolVersion, bytes: &[u8]) -> Raw {
    let (mut raw, _) = Raw::connect(
        broker,
        v,
        &id_on(1 % broker.shards, broker.shards, "bad"),
        true,
    );
    raw.send_raw(bytes);
    raw
}

// ---------------------------------------------------------------------------------------------
// Violations before and at CONNECT

#[test]
fn first_packet_not_connect_is_closed_without_answer() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    for (what, bytes) in [
        ("PINGREQ first", vec![0xC0, 0x00]),
        ("PUBLISH first", raw_publish(0x30, b"a", None, false)),
        ("SUBSCRIBE first", vec![0x82, 0x06, 0, 1, 0, 1, b'a', 0]),
        ("reserved type 0 first", vec![0x00, 0x00]),
    ] {
        let mut raw = Raw::open(&broker, V311);
        raw.send_raw(&bytes);
        expect_silent_close(&mut raw, what);
        w.check();
    }
}

#[test]
fn wrong_protocol_name_is_closed_without_answer() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    for (name, level) in [(&b"MQTX"[..], 4), (b"mqtt", 4), (b"MQTTT", 5), (b"", 4)] {
        let mut raw = Raw::open(&broker, V311);
        raw.send_raw(&raw_connect(name, level, false));
        expect_silent_close(
            &mut raw,
            &format!(
                "protocol name {:?} level {level}",
                String::from_utf8_lossy(name)
            ),
        );
        w.check();
    }
}

#[test]
fn unsupported_protocol_level_gets_connack_1_then_close() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    for level in [6u8, 0, 2, 255] {
        let mut raw = Raw::open(&broker, V311);
        raw.send_raw(&raw_connect(b"MQTT", level, false));
        let bytes = read_until_closed(&mut raw);
        // The 3.1.1 CONNACK (every version can read it) with return code 1, "unacceptable
        // protocol version" ([MQTT-3.1.2-2]).
        assert_eq!(bytes, [0x20, 0x02, 0x00, 0x01], "level {level}");
        w.check();
    }
}

#[test]
fn second_connect_is_a_protocol_error() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let again = encode(
        &Packet::Connect(Box::new(connect_packet(V5, "bad", true))),
        V5,
    );
    let mut raw = connected_then(&broker, V5, &again);
    expect_disconnect(&mut raw, ReasonCode::ProtocolError, "second CONNECT (v5)");
    w.check();
    let again = encode(
        &Packet::Connect(Box::new(connect_packet(V311, "bad", true))),
        V311,
    );
    let mut raw = connected_then(&broker, V311, &again);
    expect_silent_close(&mut raw, "second CONNECT (v3.1.1)");
    w.check();
}

// ---------------------------------------------------------------------------------------------
// Violations after CONNECT

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "SUBSCRIBE flags 0",
            vec![0x80, 0x07, 0, 1, 0, 0, 1, b'a', 0],
        ),
        ("UNSUBSCRIBE flags 0", vec![0xA0, 0x06, 0, 1, 0, 0, 1, b'a']),
        ("PUBREL flags 0", vec![0x60, 0x02, 0, 1]),
        ("PINGREQ flags 1", vec![0xC1, 0x00]),
    ];
    for (what, bytes) in cases {
        let mut raw = connected_then(&broker, V5, &bytes);
        expect_disconnect(&mut raw, ReasonCode::MalformedPacket, what);
        w.check();
    }
}

#[test]
fn publish_qos_3_is_malformed() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let mut raw = connected_then(&broker, V5, &raw_publish(0x36, b"a", Some(1), true));
    expect_disconnect(&mut raw, ReasonCode::MalformedPacket, "PUBLISH QoS 3");
    w.check();
}

#[test]
fn malformed_remaining_length_closes() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    // Five bytes of Remaining Length (at most four are allowed).
    let bad = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
    let mut raw = connected_then(&broker, V5, &bad);
    expect_disconnect(
        &mut raw,
        ReasonCode::MalformedPacket,
        "5-byte remaining length",
    );
    w.check();
    let mut raw = connected_then(&broker, V311, &bad);
    expect_silent_close(&mut raw, "5-byte remaining length (v3.1.1)");
    w.check();
    // Before CONNECT as well.
    let mut raw = Raw::open(&broker, V311);
    raw.send_raw(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    expect_silent_close(&mut raw, "5-byte remaining length in CONNECT");
    w.check();
}

#[test]
fn packet_over_max_packet_size_is_0x95() {
    let broker = Broker::start_with(2, "[mqtt]\nmax_packet_size = \"1KB\"\n", &[]);
    let mut w = Witness::new(&broker);
    let big = encode(
        &publish_packet("big", QoS::AtMostOnce, 0, vec![b'x'; 2000]),
        V5,
    );
    let mut raw = connected_then(&broker, V5, &big);
    expect_disconnect(
        &mut raw,
        ReasonCode::PacketTooLarge,
        "2000-byte PUBLISH, max 1KB",
    );
    w.check();
    // Just below the limit is fine.
    let (mut ok, _) = Raw::connect(&broker, V5, "fits", true);
    ok.send(&publish_packet(
        "fits",
        QoS::AtLeastOnce,
        1,
        vec![b'x'; 900],
    ));
    assert!(matches!(ok.recv(), Some(Packet::PubAck(_))));
    // v3.1.1: closed without answer.
    let big = encode(
        &publish_packet("big", QoS::AtMostOnce, 0, vec![b'x'; 2000]),
        V311,
    );
    let mut raw = connected_then(&broker, V311, &big);
    expect_silent_close(&mut raw, "2000-byte PUBLISH, max 1KB (v3.1.1)");
    w.check();
}

#[test]
fn invalid_utf8_or_nul_in_topic_is_malformed() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let topics: [(&str, &[u8]); 4] = [
        ("invalid UTF-8", b"a/\xC3\x28"),
        ("UTF-16 surrogate", b"a/\xED\xA0\x80"),
        ("U+0000", b"a/\x00/b"),
        ("overlong encoding", b"\xC0\xAF"),
    ];
    for (what, topic) in topics {
        let mut raw = connected_then(&broker, V5, &raw_publish(0x30, topic, None, true));
        expect_disconnect(&mut raw, ReasonCode::MalformedPacket, what);
        w.check();
        let mut raw = connected_then(&broker, V311, &raw_publish(0x30, topic, None, false));
        expect_silent_close(&mut raw, &format!("{what} (v3.1.1)"));
        w.check();
    }
    // In a SUBSCRIBE filter too.
    let sub = [0x82, 0x08, 0, 1, 0, 0, 2, b'a', 0x00, 0];
    let mut raw = connected_then(&broker, V5, &sub);
    expect_disconnect(&mut raw, ReasonCode::MalformedPacket, "U+0000 in a filter");
    w.check();
}

#[test]
fn wildcard_in_publish_topic_is_0x90() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    for topic in [&b"a/+"[..], b"a/#", b"#", b"a+b"] {
        let what = format!("PUBLISH to {:?}", String::from_utf8_lossy(topic));
        let mut raw = connected_then(&broker, V5, &raw_publish(0x30, topic, None, true));
        expect_disconnect(&mut raw, ReasonCode::TopicNameInvalid, &what);
        w.check();
        let mut raw = connected_then(&broker, V311, &raw_publish(0x30, topic, None, false));
        expect_silent_close(&mut raw, &format!("{what} (v3.1.1)"));
        w.check();
    }
}

#[test]
fn packet_id_0_on_qos1_publish_is_a_protocol_error() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let mut raw = connected_then(&broker, V5, &raw_publish(0x32, b"a", Some(0), true));
    expect_disconnect(&mut raw, ReasonCode::ProtocolError, "QoS 1 PUBLISH id 0");
    w.check();
    let mut raw = connected_then(&broker, V5, &raw_publish(0x34, b"a", Some(0), true));
    expect_disconnect(&mut raw, ReasonCode::ProtocolError, "QoS 2 PUBLISH id 0");
    w.check();
    let mut raw = connected_then(&broker, V311, &raw_publish(0x32, b"a", Some(0), false));
    expect_silent_close(&mut raw, "QoS 1 PUBLISH id 0 (v3.1.1)");
    w.check();
}

#[test]
fn empty_subscribe_is_a_protocol_error() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let mut raw = connected_then(&broker, V5, &[0x82, 0x03, 0, 1, 0]);
    expect_disconnect(
        &mut raw,
        ReasonCode::ProtocolError,
        "SUBSCRIBE without filters",
    );
    w.check();
    let mut raw = connected_then(&broker, V5, &[0xA2, 0x03, 0, 1, 0]);
    expect_disconnect(
        &mut raw,
        ReasonCode::ProtocolError,
        "UNSUBSCRIBE without filters",
    );
    w.check();
    let mut raw = connected_then(&broker, V311, &[0x82, 0x02, 0, 1]);
    expect_silent_close(&mut raw, "SUBSCRIBE without filters (v3.1.1)");
    w.check();
}

#[test]
fn v311_violations_close_without_disconnect() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let cases: [(&str, Vec<u8>); 6] = [
        ("SUBSCRIBE flags 0", vec![0x80, 0x06, 0, 1, 0, 1, b'a', 0]),
        ("PUBLISH QoS 3", raw_publish(0x36, b"a", Some(1), false)),
        ("DUP on QoS 0", raw_publish(0x38, b"a", None, false)),
        ("subscription QoS 3", vec![0x82, 0x06, 0, 1, 0, 1, b'a', 3]),
        ("DISCONNECT with a body", vec![0xE0, 0x01, 0x00]),
        ("reserved type 15", vec![0xF0, 0x00]),
    ];
    for (what, bytes) in cases {
        let mut raw = connected_then(&broker, V311, &bytes);
        expect_silent_close(&mut raw, what);
        w.check();
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzz

/// xorshift64*: deterministic, so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Valid packets of every type a client may send, the starting points for mutation.
fn seeds(v: ProtocolVersion) -> Vec<Vec<u8>> {
    let id = NonZeroU16::new(7).unwrap();
    let mut props = PublishProperties {
        message_expiry_interval: Some(60),
        ..Default::default()
    }
    .with_extra(PublishExtraProperties {
        content_type: Some(MqttStr::from("text/plain")),
        ..Default::default()
    });
    if !v.is_v5() {
        props = PublishProperties::default();
    }
    let mut packets = vec![
        publish_packet("fuzz/a", QoS::AtMostOnce, 0, b"hello".to_vec()),
        publish_packet("fuzz/b", QoS::AtLeastOnce, 7, b"one".to_vec()),
        publish_packet("fuzz/c", QoS::ExactlyOnce, 8, b"two".to_vec()),
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: MqttStr::from("fuzz/retained"),
            packet_id: Some(id),
            properties: props,
            payload: Bytes::from_static(b"r"),
            ..Default::default()
        }),
        Packet::Subscribe(Subscribe {
            packet_id: id,
            properties: Default::default(),
            filters: vec![
                (MqttStr::from("fuzz/#"), SubscriptionOptions::default()),
                (
                    MqttStr::from("$share/g/fuzz/+"),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                ),
            ],
        }),
        Packet::PubAck(Ack::new(id)),
        Packet::PubRec(Ack::new(id)),
        Packet::PubRel(Ack::new(id)),
        Packet::PubComp(Ack::new(id)),
        Packet::PingReq,
        Packet::Connect(Box::new(connect_packet(v, "fuzz-again", true))),
    ];
    if v.is_v5() {
        packets.push(Packet::Disconnect(Disconnect::new(
            ReasonCode::DisconnectWithWillMessage,
        )));
    }
    let mut out: Vec<Vec<u8>> = packets.iter().map(|p| encode(p, v)).collect();
    // UNSUBSCRIBE by hand (one filter).
    out.push(if v.is_v5() {
        vec![0xA2, 0x09, 0, 7, 0, 0, 6, b'f', b'u', b'z', b'z', b'/']
    } else {
        vec![0xA2, 0x08, 0, 7, 0, 6, b'f', b'u', b'z', b'z', b'/']
    });
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    match rng.below(8) {
        0 => {
            // Pure noise.
            let n = 1 + rng.below(64);
            return (0..n).map(|_| rng.next() as u8).collect();
        }
        1 => {
            let cut = rng.below(b.len());
            b.truncate(cut.max(1));
        }
        2 => {
            let extra = seeds[rng.below(seeds.len())].clone();
            b.extend_from_slice(&extra);
        }
        3 => {
            // The header byte replaced: any type, any flags.
            b[0] = rng.next() as u8;
        }
        4 => {
            let at = rng.below(b.len() + 1);
            let n = 1 + rng.below(8);
            for _ in 0..n {
                b.insert(at, rng.next() as u8);
            }
        }
        _ => {}
    }
    // Then a few bit flips and byte replacements anywhere.
    for _ in 0..rng.below(4) {
        let i = rng.below(b.len());
        if rng.below(2) == 0 {
            b[i] ^= 1 << rng.below(8);
        } else {
            b[i] = rng.next() as u8;
        }
    }
    b
}

/// Reads whatever the broker answers until it closes or `quiet` passes without a byte.
fn drain_for(stream: &mut TcpStream, quiet: Duration) {
    let mut chunk = [0u8; 4096];
    stream.set_read_timeout(Some(quiet)).unwrap();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn connect_stream(addr: SocketAddr, v: ProtocolVersion, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    let mut c = connect_packet(v, id, true);
    c.keep_alive = 0;
    s.write_all(&encode(&Packet::Connect(Box::new(c)), v))
        .unwrap();
    let mut ack = [0u8; 4];
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.read_exact(&mut ack[..2]).unwrap();
    assert_eq!(ack[0], 0x20, "expected CONNACK");
    let mut rest = vec![0u8; ack[1] as usize];
    s.read_exact(&mut rest).unwrap();
    s
}

#[test]
fn decoder_fuzz_over_tcp_never_crashes_the_broker() {
    let broker = Broker::start(2);
    let mut w = Witness::new(&broker);
    let addr: SocketAddr = broker.addr().parse().unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let seed = 0x5EED_0000 + t;
                let mut rng = Rng(seed);
                for k in 0..100 {
                    let v = if (k + t as usize).is_multiple_of(2) {
                        V5
                    } else {
                        V311
                    };
                    let seeds = seeds(v);
                    let mut s = connect_stream(addr, v, &format!("fz-{t}-{k}"));
                    // Several fuzz strings on one connection, until the broker closes it.
                    for _ in 0..3 {
                        let bytes = mutate(&mut rng, &seeds);
                        if s.write_all(&bytes).is_err() {
                            break;
                        }
                    }
                    drain_for(&mut s, Duration::from_millis(50));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("fuzz thread");
    }
    // Still alive: the old clients work and a new client is served.
    w.check();
    serves_new_clients(&broker, "fuzz");
}

// ---------------------------------------------------------------------------------------------
// Load

const LOAD_CONNS: usize = 15_000;
const LOAD_THREADS: usize = 5;

fn load_connect_bytes(i: usize) -> Vec<u8> {
    let mut c = connect_packet(V311, &format!("load-{i}"), true);
    c.keep_alive = 0;
    let mut b = encode(&Packet::Connect(Box::new(c)), V311);
    b.extend(encode(
        &Packet::Subscribe(Subscribe {
            packet_id: NonZeroU16::new(1).unwrap(),
            properties: Default::default(),
            filters: vec![(
                MqttStr::from(format!("load/{i}").as_str()),
                SubscriptionOptions::default(),
            )],
        }),
        V311,
    ));
    b
}

fn load_message(i: usize, round: u32) -> Vec<u8> {
    encode(
        &publish_packet(
            &format!("load/{i}"),
            QoS::AtMostOnce,
            0,
            format!("m{round}-{i}").into_bytes(),
        ),
        V311,
    )
}

/// Runs `f` on each chunk of connections in its own thread and gives the chunks back.
fn in_threads(
    chunks: Vec<Vec<(usize, TcpStream)>>,
    f: impl Fn(&mut (usize, TcpStream)) + Send + Sync + Copy + 'static,
) -> Vec<Vec<(usize, TcpStream)>> {
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|mut chunk| {
            std::thread::spawn(move || {
                for c in chunk.iter_mut() {
                    f(c);
                }
                chunk
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn read_exactly(s: &mut TcpStream, expected: &[u8], what: &str) {
    let mut got = vec![0u8; expected.len()];
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, expected, "{what}");
}

#[test]
fn fifteen_thousand_connections_then_an_abrupt_mass_close() {
    let broker = Broker::start(2);
    let addr: SocketAddr = broker.addr().parse().unwrap();
    let started = Instant::now();

    // Connect and subscribe, from a few threads.
    let per = LOAD_CONNS / LOAD_THREADS;
    let handles: Vec<_> = (0..LOAD_THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                (t * per..(t + 1) * per)
                    .map(|i| {
                        let mut s = TcpStream::connect(addr)
                            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                        // Closing later resets the connection: no TIME_WAIT left behind.
                        socket2::SockRef::from(&s)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        s.write_all(&load_connect_bytes(i)).unwrap();
                        (i, s)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let chunks: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!("{LOAD_CONNS} connected in {:?}", started.elapsed());
    let chunks = in_threads(chunks, |(i, s)| {
        // CONNACK (accepted, no session) then SUBACK (packet id 1, QoS 0).
        read_exactly(
            s,
            &[0x20, 2, 0, 0, 0x90, 3, 0, 1, 0],
            &format!("conn {i} acks"),
        );
    });
    eprintln!("{LOAD_CONNS} subscribed after {:?}", started.elapsed());

    // One message to each.
    let publisher = |round: u32, range: std::ops::Range<usize>| {
        let mut p = connect_stream(addr, V311, &id_on(0, 2, &format!("load-pub-{round}")));
        let mut batch = Vec::new();
        for i in range {
            batch.extend(load_message(i, round));
            if batch.len() > 64 * 1024 {
                p.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        p.write_all(&batch).unwrap();
        p
    };
    // Every shard's RouteAdds reach the publisher's shard in order: once a probe subscribed on
    // each shard after the load subscriptions is reachable, so are they.
    let (mut probe_pub, _) = Raw::connect(&broker, V311, &id_on(0, 2, "probe-pub"), true);
    for shard in 0..2 {
        let (mut probe, _) = Raw::connect(&broker, V311, &id_on(shard, 2, "probe-sub"), true);
        subscribe(&mut probe, &format!("probe/{shard}"), QoS::AtMostOnce);
        await_route(&mut probe, &mut probe_pub, &format!("probe/{shard}"));
    }
    let _p1 = publisher(1, 0..LOAD_CONNS);
    let chunks = in_threads(chunks, |(i, s)| {
        read_exactly(s, &load_message(*i, 1), &format!("conn {i} message"));
    });
    eprintln!("{LOAD_CONNS} received after {:?}", started.elapsed());

    // Abruptly close 5,000 (the first chunk and a bit), all at once.
    let mut all: Vec<(usize, TcpStream)> = chunks.into_iter().flatten().collect();
    let kept = all.split_off(5_000);
    drop(all);
    eprintln!("5000 reset after {:?}", started.elapsed());

    // A new client is served, and the remaining connections still get their messages.
    serves_new_clients(&broker, "load");
    let _p2 = publisher(2, 5_000..LOAD_CONNS);
    let mut chunks: Vec<Vec<(usize, TcpStream)>> = (0..LOAD_THREADS).map(|_| Vec::new()).collect();
    for (k, c) in kept.into_iter().enumerate() {
        chunks[k % LOAD_THREADS].push(c);
    }
    let chunks = in_threads(chunks, |(i, s)| {
        read_exactly(s, &load_message(*i, 2), &format!("conn {i} second message"));
    });
    eprintln!("10000 received again after {:?}", started.elapsed());
    drop(chunks);
}

// ---------------------------------------------------------------------------------------------
// Slow subscriber

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_subscriber_that_never_reads_does_not_grow_memory() {
    const FLOOD_BYTES: usize = 50 << 20;
    const MESSAGE_BYTES: usize = 64 << 10;
    const RSS_CAP_KIB: u64 = 200 << 10;

    let broker = Broker::start(2);
    let pid = broker.pid();
    let addr: SocketAddr = broker.addr().parse().unwrap();
    let rss_before = vm_rss_kib(pid);

    // The stalled subscriber: a tiny receive buffer, and it never reads.
    let slow = {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&addr.into()).unwrap();
        let mut s: TcpStream = sock.into();
        let mut c = connect_packet(V311, &id_on(0, 2, "slow"), true);
        c.keep_alive = 0;
        let mut b = encode(&Packet::Connect(Box::new(c)), V311);
        b.extend(encode(
            &Packet::Subscribe(Subscribe {
                packet_id: NonZeroU16::new(1).unwrap(),
                properties: Default::default(),
                filters: vec![(MqttStr::from("flood/#"), SubscriptionOptions::default())],
            }),
            V311,
        ));
        s.write_all(&b).unwrap();
        read_exactly(
            &mut s,
            &[0x20, 2, 0, 0, 0x90, 3, 0, 1, 0],
            "slow subscriber acks",
        );
        s
    };

    // A subscriber that reads everything, on the other shard.
    let (mut fast, _) = Raw::connect(&broker, V311, &id_on(1, 2, "fast"), true);
    subscribe(&mut fast, "flood/#", QoS::AtMostOnce);
    let done = Arc::new(AtomicBool::new(false));
    let got_end = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let (done, got_end, received) = (done.clone(), got_end.clone(), received.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(240);
            while Instant::now() < deadline && !done.load(Ordering::SeqCst) {
                match fast.recv_within(Duration::from_millis(200)) {
                    Some(Packet::Publish(p)) if p.topic == "flood/end" => {
                        got_end.store(true, Ordering::SeqCst);
                        return;
                    }
                    Some(Packet::Publish(p)) if p.topic == "flood/x" => {
                        received.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        })
    };

    // Watch the broker's memory while the flood runs.
    let max_rss = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (done, max_rss) = (done.clone(), max_rss.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                max_rss.fetch_max(vm_rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let (mut publ, _) = Raw::connect(&broker, V311, &id_on(1, 2, "flooder"), true);
    // The stalled subscriber's route must have reached the flooder's shard.
    let mut slow_raw = Raw::from_stream(slow, V311);
    await_route(&mut slow_raw, &mut publ, "flood/probe");
    let slow = slow_raw.stream;
    let mut publ = publ.stream;
    let message = encode(
        &publish_packet("flood/x", QoS::AtMostOnce, 0, vec![b'f'; MESSAGE_BYTES]),
        V311,
    );
    for _ in 0..FLOOD_BYTES / MESSAGE_BYTES {
        publ.write_all(&message).unwrap();
    }
    // Then an end marker, repeated: a QoS 0 message may be dropped while the reader catches up.
    let end = encode(
        &publish_packet("flood/end", QoS::AtMostOnce, 0, b"end".to_vec()),
        V311,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !got_end.load(Ordering::SeqCst) && Instant::now() < deadline {
        publ.write_all(&end).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    max_rss.fetch_max(vm_rss_kib(pid), Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    watcher.join().unwrap();

    let max_rss = max_rss.load(Ordering::SeqCst);
    eprintln!(
        "RSS before {rss_before} KiB, max {max_rss} KiB; the reading subscriber got {} of {} flood messages",
        received.load(Ordering::SeqCst),
        FLOOD_BYTES / MESSAGE_BYTES
    );
    assert!(
        got_end.load(Ordering::SeqCst),
        "the reading subscriber never got the end marker"
    );
    assert!(
        received.load(Ordering::SeqCst) > 0,
        "the reading subscriber got no flood message"
    );
    assert!(
        max_rss < RSS_CAP_KIB,
        "broker RSS reached {max_rss} KiB (cap {RSS_CAP_KIB} KiB) with a stalled subscriber"
    );

    // The broker still serves new clients, and the stalled one is still connected.
    serves_new_clients(&broker, "flood");
    drop(slow);
}
