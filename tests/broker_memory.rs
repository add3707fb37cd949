//! Heap the sans-io broker keeps per idle connection (issue 5): N MQTT 3.1.1 clients, clean
//! session, keep-alive 600 s, one QoS 1 subscription each to its own topic — the load of
//! `benches/idle_connections.py` — fed to one shard's `Broker` without sockets. A counting global
//! allocator measures the live heap, including malloc's per-chunk overhead
//! (`malloc_usable_size` + one header word), so the figure is what RSS would show, minus the
//! runtime. Run with `--nocapture` for the breakdown by phase.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};

use bytes::BytesMut;
use ringmq::broker::{Broker, Input, Settings};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

fn footprint(ptr: *mut u8) -> isize {
    // SAFETY: `ptr` is a live allocation of the system allocator.
    (unsafe { libc::malloc_usable_size(ptr.cast()) } + 8) as isize
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(footprint(p), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(footprint(p), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(footprint(ptr), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = footprint(ptr);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(footprint(p) - before, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn mqtt_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    let mut rl = body.len();
    loop {
        let d = (rl % 128) as u8;
        rl /= 128;
        out.push(if rl > 0 { d | 0x80 } else { d });
        if rl == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// CONNECT (3.1.1, clean session, keep-alive 600 s) + SUBSCRIBE `idle/<i>` at QoS 1.
fn client_bytes(i: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = Vec::new();
    mqtt_str(&mut c, "MQTT");
    c.extend_from_slice(&[4, 0x02, 0x02, 0x58]);
    mqtt_str(&mut c, &format!("idle-{i}"));
    let mut s = vec![0, 1];
    mqtt_str(&mut s, &format!("idle/{i}"));
    s.push(1);
    (packet(0x10, &c), packet(0x82, &s))
}

struct Phases {
    open: isize,
    connect: isize,
    subscribe: isize,
}

/// Live heap growth per connection, by phase, for `n` idle clients on one broker shard.
fn per_connection(n: usize) -> Phases {
    let mut b = Broker::new(0, 1, Rc::new(Settings::default()));
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let inputs: Vec<_> = (0..n).map(client_bytes).collect();
    let mut ids = Vec::with_capacity(n);
    let base = live();
    for _ in 0..n {
        ids.push(b.open(peer, 0));
    }
    let opened = live();
    let mut feed = |b: &mut Broker, which: usize| {
        for (&id, (c, s)) in ids.iter().zip(&inputs) {
            let mut rx = BytesMut::from(&[c, s][which][..]);
            assert!(matches!(b.input(id, &mut rx, 0), Input::Continue));
            assert!(rx.is_empty());
            drop(rx);
            let (tx, close) = b.take_output(id);
            assert!(!tx.is_empty() && close.is_none());
        }
        let mut dirty = Vec::new();
        b.take_dirty(&mut dirty);
    };
    feed(&mut b, 0);
    let connected = live();
    feed(&mut b, 1);
    let subscribed = live();
    assert_eq!(b.connection_count(), n);
    let per = |d: isize| d / n as isize;
    let p = Phases {
        open: per(opened - base),
        connect: per(connected - opened),
        subscribe: per(subscribed - connected),
    };
    drop(inputs);
    drop(b);
    p
}

#[test]
fn broker_state_per_idle_connection_is_small() {
    for n in [1_000, 15_000] {
        let p = per_connection(n);
        let total = p.open + p.connect + p.subscribe;
        println!(
            "{n} connections: open {} + connect {} + subscribe {} = {total} B per connection",
            p.open, p.connect, p.subscribe
        );
    }
}
