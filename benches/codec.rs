//! Benchmark of the sans-io codec (`ringmq::protocol`), a plain program:
//! `cargo bench --bench codec`. Prints the cost per packet of decoding and re-encoding a QoS 1
//! PUBLISH (64-byte payload) for MQTT 3.1.1 and 5.0, next to a baseline that only copies the
//! same bytes, so the codec's own cost can be read off. Target: at most 100 ns per packet.

use std::hint::black_box;
use std::num::NonZeroU16;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ringmq::protocol::{
    Decoder, MqttStr, Packet, ProtocolVersion, Publish, PublishProperties, QoS,
};

/// Packets per batch: the read buffer holds this many back to back, as a busy socket read would.
const BATCH: usize = 256;
const BATCHES: usize = 40_000;
const MAX_PACKET_SIZE: u32 = 1 << 20;

fn sample(v: ProtocolVersion) -> Packet {
    let mut properties = PublishProperties::default();
    if v.is_v5() {
        properties.message_expiry_interval = Some(3600);
    }
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: MqttStr::from("site/42/room/7/temperature"),
        packet_id: NonZeroU16::new(4711),
        properties,
        payload: Bytes::from(vec![0xA5u8; 64]),
    })
}

/// One batch of `BATCH` encoded packets, as one socket read would deliver them.
fn wire(v: ProtocolVersion) -> (Vec<u8>, usize) {
    let mut buf = BytesMut::new();
    let packet = sample(v);
    for _ in 0..BATCH {
        packet.encode(v, &mut buf).expect("encodes");
    }
    let one = buf.len() / BATCH;
    (buf.to_vec(), one)
}

/// Decodes every packet of each batch and encodes it again into an output buffer.
fn decode_encode(v: ProtocolVersion, wire: &[u8]) -> f64 {
    let mut decoder = Decoder::with_version(v, MAX_PACKET_SIZE);
    let mut out = BytesMut::with_capacity(wire.len());
    let mut packets = 0usize;
    let start = Instant::now();
    for _ in 0..BATCHES {
        let mut src = BytesMut::from(black_box(wire));
        out.clear();
        while let Some(packet) = decoder.decode(&mut src).expect("decodes") {
            packet.encode(v, &mut out).expect("encodes");
            packets += 1;
        }
        black_box(&out);
    }
    assert_eq!(packets, BATCH * BATCHES);
    start.elapsed().as_nanos() as f64 / packets as f64
}

/// The baseline: the same buffer handling with the codec replaced by a copy of each packet.
fn copy_only(wire: &[u8], one: usize) -> f64 {
    let mut out = BytesMut::with_capacity(wire.len());
    let start = Instant::now();
    for _ in 0..BATCHES {
        let mut src = BytesMut::from(black_box(wire));
        out.clear();
        while src.len() >= one {
            let packet = src.split_to(one).freeze();
            out.extend_from_slice(black_box(&packet));
        }
        black_box(&out);
    }
    start.elapsed().as_nanos() as f64 / (BATCH * BATCHES) as f64
}

fn main() {
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let (wire, one) = wire(v);
        // Warm up caches and the allocator.
        decode_encode(v, &wire);
        let codec = decode_encode(v, &wire);
        let base = copy_only(&wire, one);
        println!(
            "codec.publish_qos1_64B {v:?}  {one} B/packet  decode+encode {codec:.1} ns/packet  \
             (copy-only baseline {base:.1} ns/packet, codec share {:.1} ns)",
            codec - base
        );
    }
}
