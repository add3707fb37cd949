//! No length or count read off the wire makes the decoder allocate more than the bytes it was
//! given justify. A counting global allocator records the largest single allocation (or
//! reallocation) made on this thread while `Decoder::decode` runs.
//!
//! The decoder is zero-copy: strings, binary fields and payloads are slices of the input, so a
//! String Length, Property Length or Remaining Length never sizes an allocation. What it does
//! allocate is (1) the box of a CONNECT or CONNACK, or of a PUBLISH's variable-size properties,
//! and (2) the `Vec`s of decoded lists (User Properties, Subscription Identifiers, topic
//! filters, reason codes), which grow one decoded entry at a time. An entry's in-memory size is larger than its smallest wire form (a User
//! Property is two 32-byte `MqttStr`s for at least 5 wire bytes), so the bound is
//! `input + BOX + LIST_FACTOR * input + 64`, where `LIST_FACTOR` is the largest
//! (element size / smallest wire size) of any list, doubled for `Vec`'s amortised growth.
//! A capacity taken from a wire count (e.g. `Vec::with_capacity(u16)`) would exceed it at once:
//! the targeted cases below claim 65,535-byte strings and 268 MB property lengths in a handful
//! of bytes and must allocate no more than a box and 64 bytes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::size_of;

use bytes::BytesMut;
use common::*;
use proptest::collection::vec;
use proptest::prelude::*;
use ringmq::protocol::*;

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Decodes everything in `bytes` and returns the largest single allocation `decode` made.
/// Only the `decode` calls are measured; decoded packets are dropped outside the window.
fn largest_allocation(mut dec: Decoder, bytes: &[u8]) -> usize {
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::with_capacity(bytes.len() + 1);
    LARGEST.with(|l| l.set(0));
    loop {
        TRACKING.with(|t| t.set(true));
        let r = dec.decode(&mut buf);
        TRACKING.with(|t| t.set(false));
        match r {
            Ok(Some(p)) if packets.len() < packets.capacity() => packets.push(p),
            _ => break,
        }
    }
    drop(packets);
    LARGEST.with(|l| l.get())
}

/// The boxed packets (and PUBLISH's boxed extra properties): allocated whatever their wire size.
fn boxed() -> usize {
    size_of::<Connect>()
        .max(size_of::<ConnAck>())
        .max(size_of::<PublishExtraProperties>())
}

/// Largest (element size / fewest wire bytes per element) over the decoded lists, doubled for
/// `Vec`'s growth, rounded up.
fn list_factor() -> usize {
    let lists = [
        // User Property: identifier + two empty strings.
        (size_of::<(MqttStr, MqttStr)>(), 5),
        // SUBSCRIBE entry: empty filter + options byte.
        (size_of::<(MqttStr, SubscriptionOptions)>(), 3),
        // UNSUBSCRIBE entry: empty filter.
        (size_of::<MqttStr>(), 2),
        // Subscription Identifier: identifier + one-byte varint.
        (size_of::<std::num::NonZeroU32>(), 2),
        // SUBACK / UNSUBACK reason code.
        (size_of::<ReasonCode>(), 1),
    ];
    lists
        .iter()
        .map(|&(elem, wire)| (2 * elem).div_ceil(wire))
        .max()
        .unwrap()
}

/// `Vec`'s smallest non-zero capacity is 4 elements (8 for bytes); the largest element is a
/// User Property.
fn first_chunk() -> usize {
    4 * size_of::<(MqttStr, MqttStr)>()
}

fn bound(input: usize) -> usize {
    input + 64 + boxed().max(first_chunk()).max(list_factor() * input)
}

fn check(dec: Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    let largest = largest_allocation(dec, bytes);
    prop_assert!(
        largest <= bound(bytes.len()),
        "decoding {} bytes allocated {} at once (bound {}): {:02x?}",
        bytes.len(),
        largest,
        bound(bytes.len()),
        bytes
    );
    Ok(())
}

fn decoders() -> Vec<Decoder> {
    let mut all = vec![Decoder::new(u32::MAX)];
    all.extend(VERSIONS.map(|v| Decoder::with_version(v, u32::MAX)));
    all
}

#[test]
fn the_counting_allocator_sees_decode() {
    // A SUBSCRIBE with 100 one-byte filters must show a Vec allocation during decode.
    let mut wire = vec![0x82, 0x00, 0x00, 0x0a];
    for _ in 0..100 {
        wire.extend_from_slice(&[0x00, 0x01, b'a', 0x01]);
    }
    wire[1] = 0x80 | ((wire.len() - 2) & 0x7f) as u8;
    wire.insert(2, ((wire.len() - 2) >> 7) as u8);
    let largest = largest_allocation(Decoder::with_version(V311, u32::MAX), &wire);
    assert!(
        largest >= 100 * size_of::<(MqttStr, SubscriptionOptions)>(),
        "{largest}"
    );
    assert!(largest <= bound(wire.len()));
}

#[test]
fn length_fields_do_not_size_allocations() {
    let small = 64 + boxed();
    #[rustfmt::skip]
    let cases: Vec<(Decoder, Vec<u8>)> = vec![
        // A topic claiming 65,535 bytes.
        (Decoder::with_version(V311, u32::MAX), vec![0x30, 0x04, 0xff, 0xff, b'a', b'b']),
        // A Property Length claiming 268,435,455 bytes.
        (Decoder::with_version(V5, u32::MAX), vec![0x30, 0x08, 0x00, 0x01, b'a', 0xff, 0xff, 0xff, 0x7f, 0x26]),
        // A User Property whose strings claim 65,535 bytes each.
        (Decoder::with_version(V5, u32::MAX), vec![0x30, 0x0a, 0x00, 0x01, b'a', 0x05, 0x26, 0xff, 0xff, 0xff, 0xff, 0x00]),
        // SUBSCRIBE / UNSUBSCRIBE / SUBACK whose Property Length claims the maximum.
        (Decoder::with_version(V5, u32::MAX), vec![0x82, 0x07, 0x00, 0x0a, 0xff, 0xff, 0xff, 0x7f, 0x0b]),
        (Decoder::with_version(V5, u32::MAX), vec![0xa2, 0x07, 0x00, 0x0a, 0xff, 0xff, 0xff, 0x7f, 0x26]),
        (Decoder::with_version(V5, u32::MAX), vec![0x90, 0x07, 0x00, 0x0a, 0xff, 0xff, 0xff, 0x7f, 0x00]),
        // A Remaining Length of 268,435,455 with five bytes present.
        (Decoder::with_version(V5, u32::MAX), vec![0x30, 0xff, 0xff, 0xff, 0x7f, 0x00]),
        // CONNECT whose client id, will topic and password claim 65,535 bytes.
        (Decoder::new(u32::MAX), vec![0x10, 0x0e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 4, 0xc6, 0x00, 0x0a, 0xff, 0xff, b'c', 0x00]),
        (Decoder::new(u32::MAX), vec![0x10, 0x0f, 0x00, 0x04, b'M', b'Q', b'T', b'T', 5, 0x02, 0x00, 0x0a, 0xff, 0xff, 0xff, 0x7f, 0x21]),
    ];
    for (dec, wire) in cases {
        let largest = largest_allocation(dec, &wire);
        assert!(
            largest <= small,
            "{wire:02x?} allocated {largest} (limit {small})"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_input_allocates_within_bound(bytes in vec(any::<u8>(), 0..128)) {
        for dec in decoders() {
            check(dec, &bytes)?;
        }
    }

    #[test]
    fn mutated_packets_allocate_within_bound((v, is_connect, bytes) in mutated_packet()) {
        let dec = if is_connect {
            Decoder::new(u32::MAX)
        } else {
            Decoder::with_version(v, u32::MAX)
        };
        check(dec, &bytes)?;
        for dec in decoders() {
            check(dec, &bytes)?;
        }
    }

    #[test]
    fn valid_packets_allocate_within_bound((v, p) in versioned_packet()) {
        let wire = encode(v, &p);
        check(decoder_for(v, &p, u32::MAX), &wire)?;
    }
}
