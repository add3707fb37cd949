//! Property tests of the codec:
//! - encode → decode is the identity for every packet type at every protocol level where it
//!   exists, `encoded_len` is exactly what `encode` writes, and decoding one byte at a time gives
//!   the same packet (and `Ok(None)` before the last byte);
//! - the decoder never panics on arbitrary bytes or on mutated valid packets, reads the same
//!   whether fed at once or byte by byte, and whatever it accepts re-encodes to an equal packet.

mod common;

use bytes::BytesMut;
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use ringmq::protocol::*;

const MAX: u32 = 1 << 20;

/// A minimal CONNECT of level `v`, to put a server-side decoder into the connected state.
fn hello(v: ProtocolVersion) -> BytesMut {
    let c = Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 30,
        properties: ConnectProperties::default(),
        client_id: MqttStr::from("c"),
        will: None,
        username: None,
        password: None,
    };
    encode(v, &Packet::Connect(Box::new(c)))
}

fn round_trip(v: ProtocolVersion, p: &Packet) -> Result<(), TestCaseError> {
    let mut wire = BytesMut::new();
    let n = p
        .encode(v, &mut wire)
        .map_err(|e| TestCaseError::fail(format!("encode: {e}")))?;
    prop_assert_eq!(n, wire.len(), "encode reports what it wrote");
    prop_assert_eq!(p.encoded_len(v), Ok(n), "encoded_len agrees with encode");

    // All at once.
    let mut dec = decoder_for(v, p, MAX);
    let mut buf = wire.clone();
    prop_assert_eq!(dec.decode(&mut buf), Ok(Some(p.clone())));
    prop_assert!(buf.is_empty(), "the whole packet is consumed");
    prop_assert_eq!(dec.version(), Some(v));

    // One byte at a time.
    let mut dec = decoder_for(v, p, MAX);
    let mut buf = BytesMut::new();
    for (i, &b) in wire.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let got = dec.decode(&mut buf);
        if i + 1 < wire.len() {
            prop_assert_eq!(got, Ok(None), "byte {} of {}", i + 1, wire.len());
            prop_assert!(dec.bytes_needed(&buf) > buf.len());
        } else {
            prop_assert_eq!(got, Ok(Some(p.clone())));
        }
    }
    prop_assert!(buf.is_empty());

    // Behind a CONNECT on a server-side decoder, in one buffer with a trailing PINGREQ.
    if !matches!(p, Packet::Connect(_)) {
        let mut dec = Decoder::new(MAX);
        let mut buf = hello(v);
        buf.extend_from_slice(&wire);
        buf.extend_from_slice(&[0xc0, 0x00]);
        prop_assert!(matches!(dec.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
        prop_assert_eq!(dec.decode(&mut buf), Ok(Some(p.clone())));
        prop_assert_eq!(dec.decode(&mut buf), Ok(Some(Packet::PingReq)));
        prop_assert_eq!(dec.decode(&mut buf), Ok(None));
    }
    Ok(())
}

/// One round-trip property per packet type, over every level where the type exists.
macro_rules! round_trips {
    ($($name:ident: $t:expr;)*) => {$(
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(250))]
            #[test]
            fn $name((v, p) in version()
                .prop_filter("type exists at this level", |v| packet_types(*v).contains(&$t))
                .prop_flat_map(|v| (Just(v), packet_of($t, v))))
            {
                prop_assert_eq!(p.packet_type(), $t);
                round_trip(v, &p)?;
            }
        }
    )*};
}

round_trips! {
    round_trip_connect: PacketType::Connect;
    round_trip_connack: PacketType::ConnAck;
    round_trip_publish: PacketType::Publish;
    round_trip_puback: PacketType::PubAck;
    round_trip_pubrec: PacketType::PubRec;
    round_trip_pubrel: PacketType::PubRel;
    round_trip_pubcomp: PacketType::PubComp;
    round_trip_subscribe: PacketType::Subscribe;
    round_trip_suback: PacketType::SubAck;
    round_trip_unsubscribe: PacketType::Unsubscribe;
    round_trip_unsuback: PacketType::UnsubAck;
    round_trip_pingreq: PacketType::PingReq;
    round_trip_pingresp: PacketType::PingResp;
    round_trip_disconnect: PacketType::Disconnect;
    round_trip_auth: PacketType::Auth;
}

#[test]
fn every_type_exists_where_the_spec_says() {
    assert_eq!(packet_types(V31).len(), 14);
    assert_eq!(packet_types(V311).len(), 14);
    assert_eq!(packet_types(V5).len(), 15);
}

/// The first outcome of decoding `bytes` all at once and one byte at a time must agree.
fn first_outcome_agrees(mk: impl Fn() -> Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    let whole = mk().decode(&mut BytesMut::from(bytes));
    let mut dec = mk();
    let mut buf = BytesMut::new();
    let mut inc = Ok(None);
    for &b in bytes {
        buf.extend_from_slice(&[b]);
        inc = dec.decode(&mut buf);
        if !matches!(inc, Ok(None)) {
            break;
        }
    }
    prop_assert_eq!(whole, inc);
    Ok(())
}

/// Decodes everything in `bytes`; every accepted packet re-encodes (at the level the decoder
/// used) to bytes that decode to the same packet.
fn decode_all_and_reencode(mut dec: Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = dec.version();
        match dec.decode(&mut buf) {
            Ok(Some(p)) => {
                let v = dec.version().expect("a decoded packet fixes the level");
                prop_assert!(before.is_none() || before == Some(v));
                let wire = encode(v, &p);
                let mut again = match p {
                    Packet::Connect(_) => Decoder::new(u32::MAX),
                    _ => Decoder::with_version(v, u32::MAX),
                };
                prop_assert_eq!(
                    again.decode(&mut wire.clone()),
                    Ok(Some(p.clone())),
                    "re-encoded as {:02x?}",
                    &wire[..]
                );
            }
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

fn decoders(max: u32) -> Vec<Box<dyn Fn() -> Decoder>> {
    let mut all: Vec<Box<dyn Fn() -> Decoder>> = vec![Box::new(move || Decoder::new(max))];
    for v in VERSIONS {
        all.push(Box::new(move || Decoder::with_version(v, max)));
    }
    all
}

fn max_packet_size() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(u32::MAX), 1 => 0..64u32]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..96), max in max_packet_size()) {
        for mk in decoders(max) {
            first_outcome_agrees(&mk, &bytes)?;
            decode_all_and_reencode(mk(), &bytes)?;
        }
    }

    #[test]
    fn arbitrary_bytes_with_a_plausible_first_byte_never_panic(
        first in prop::sample::select(vec![
            0x10u8, 0x20, 0x30, 0x32, 0x34, 0x3b, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xa2, 0xb0,
            0xc0, 0xd0, 0xe0, 0xf0,
        ]),
        len in 0..80u8,
        rest in vec(any::<u8>(), 0..80),
    ) {
        // A well-formed fixed header over random contents reaches the packet decoders.
        let mut bytes = vec![first, len];
        bytes.extend_from_slice(&rest);
        for mk in decoders(u32::MAX) {
            first_outcome_agrees(&mk, &bytes)?;
            decode_all_and_reencode(mk(), &bytes)?;
        }
    }

    #[test]
    fn arbitrary_bytes_after_connect_never_panic(v in version(), bytes in vec(any::<u8>(), 0..64)) {
        let mut input = hello(v).to_vec();
        input.extend_from_slice(&bytes);
        decode_all_and_reencode(Decoder::new(u32::MAX), &input)?;
    }

    #[test]
    fn mutated_packets_never_panic((v, is_connect, bytes) in mutated_packet()) {
        let mk = move || if is_connect {
            Decoder::new(u32::MAX)
        } else {
            Decoder::with_version(v, u32::MAX)
        };
        first_outcome_agrees(mk, &bytes)?;
        decode_all_and_reencode(mk(), &bytes)?;
        // The same bytes against the other kinds of decoder.
        for mk in decoders(u32::MAX) {
            let _ = drain(&mut mk(), &bytes);
        }
    }
}
