//! Benchmark of the mesh hop, a plain program: `cargo bench --bench mesh`. Two glommio
//! executors built as `runtime` builds its shards (pinned to the first two allowed CPUs,
//! `io_memory` 64 KiB, `ring_depth` 256) and the channel the runtime uses between them: a
//! `glommio::channels::shared_channel` bounded to `MESH_CHANNEL_BATCHES` of `Vec<MeshMsg>`.
//! Shard A sends `MeshMsg::Publish(Arc<Message>)`, a new `Arc` per message (16-byte payload;
//! topic and payload static, so no other refcount is shared between the cores); shard B's task
//! does what `runtime::shard::inbound` does with a batch: takes every message out and drops it
//! (the `Arc` and the batch's `Vec`, allocated on A, freed on B). Prints
//! - ns per message, one message per `send` (unbatched) and batched 16, 128 and 1024
//!   (`MESH_BATCH_MESSAGES_MAX`) per `send`, from A's first send to B's last receive, next to
//!   the single-core baseline (the same messages and batches built and dropped on one core, no
//!   channel): the difference is what the hop itself costs;
//! - the same with one `Arc` cloned for every message (both cores hammer its refcount: the
//!   worst case, for comparison);
//! - the round trip A -> B -> A of a one-message batch (B sends the batch straight back), p50 /
//!   p99 / p999 over 20,000 trips, with B parked in between (no spinning, as the runtime).
//!
//! Median of 3 runs for the throughput figures.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement};
use ringmq::broker::MeshMsg;
use ringmq::limits::{MESH_BATCH_MESSAGES_MAX, MESH_CHANNEL_BATCHES};
use ringmq::protocol::{MqttStr, QoS};
use ringmq::session::Message;

type Batch = Vec<MeshMsg>;

const MESSAGES: usize = 2_000_000;
const MESSAGES_UNBATCHED: usize = 500_000;
const TRIPS: usize = 20_000;

fn message() -> Arc<Message> {
    Arc::new(Message {
        topic: MqttStr::from_bytes(Bytes::from_static(b"bench/fanin/42")).expect("topic"),
        payload: Bytes::from_static(&[0x5a; 16]),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        expires_at_ms: None,
        publisher_id: 1,
    })
}

/// One batch of `k` publishes: fresh messages, or clones of `shared`.
fn batch_of(k: usize, shared: Option<&Arc<Message>>) -> Batch {
    let mut v = Vec::with_capacity(k);
    for _ in 0..k {
        v.push(MeshMsg::Publish(match shared {
            Some(m) => m.clone(),
            None => message(),
        }));
    }
    v
}

/// What the receiver does with a batch; returns the messages in it.
fn consume(batch: Batch) -> usize {
    let mut n = 0;
    for msg in batch {
        if let MeshMsg::Publish(m) = msg {
            black_box(m.payload.len());
            n += 1;
        }
    }
    n
}

/// The baseline: the same batches built and consumed on one core, no channel.
fn single_core(batch: usize, total: usize) -> f64 {
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let k = batch.min(total - sent);
        sent += consume(black_box(batch_of(k, None)));
    }
    start.elapsed().as_nanos() as f64 / total as f64
}

/// Shard i's executor, as `runtime::start` builds it.
fn executor(i: usize) -> LocalExecutorBuilder {
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .map(|c| c.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let placement = if cpus.len() >= 2 {
        Placement::Fixed(cpus[i])
    } else {
        Placement::Unbound
    };
    LocalExecutorBuilder::new(placement)
        .name(&format!("mesh{i}"))
        .io_memory(64 << 10)
        .ring_depth(256)
}

fn channel() -> (SharedSender<Batch>, SharedReceiver<Batch>) {
    shared_channel::new_bounded(MESH_CHANNEL_BATCHES)
}

/// ns per message with `batch` messages per send, fresh messages or clones of one.
fn throughput(batch: usize, total: usize, clone_one: bool) -> f64 {
    let (tx, rx) = channel();
    let b = executor(1)
        .spawn(move || async move {
            let rx = rx.connect().await;
            let mut n = 0usize;
            while let Some(batch) = rx.recv().await {
                n += consume(batch);
            }
            (n, Instant::now())
        })
        .expect("executor B");
    let a = executor(0)
        .spawn(move || async move {
            let tx = tx.connect().await;
            let shared = clone_one.then(message);
            let start = Instant::now();
            let mut sent = 0;
            while sent < total {
                let k = batch.min(total - sent);
                if tx.send(batch_of(k, shared.as_ref())).await.is_err() {
                    panic!("receiver gone");
                }
                sent += k;
            }
            start
        })
        .expect("executor A");
    let start = a.join().expect("A");
    let (n, end) = b.join().expect("B");
    assert_eq!(n, total);
    end.duration_since(start).as_nanos() as f64 / total as f64
}

/// Round-trip times of a one-message batch A -> B -> A.
fn round_trips(trips: usize) -> Vec<Duration> {
    let (tx_ab, rx_ab) = channel();
    let (tx_ba, rx_ba) = channel();
    let b = executor(1)
        .spawn(move || async move {
            let rx = rx_ab.connect().await;
            let tx = tx_ba.connect().await;
            while let Some(batch) = rx.recv().await {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
        })
        .expect("executor B");
    let a = executor(0)
        .spawn(move || async move {
            let tx = tx_ab.connect().await;
            let rx = rx_ba.connect().await;
            let mut times = Vec::with_capacity(trips);
            for i in 0..trips + 1000 {
                let t = Instant::now();
                tx.send(batch_of(1, None)).await.expect("B alive");
                let back = rx.recv().await.expect("B alive");
                if i >= 1000 {
                    times.push(t.elapsed());
                }
                drop(black_box(back));
            }
            times
        })
        .expect("executor A");
    let times = a.join().expect("A");
    b.join().expect("B");
    times
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    println!(
        "mesh hop: glommio shared_channel of Vec<MeshMsg> (capacity {MESH_CHANNEL_BATCHES} \
         batches), MeshMsg::Publish(Arc<Message>), 2 pinned executors"
    );
    for batch in [1, 16, 128, MESH_BATCH_MESSAGES_MAX] {
        let total = if batch == 1 {
            MESSAGES_UNBATCHED
        } else {
            MESSAGES
        };
        throughput(batch, total / 10, false); // warm-up
        let ns = median((0..3).map(|_| throughput(batch, total, false)).collect());
        let base = median((0..3).map(|_| single_core(batch, total)).collect());
        let shared = median((0..3).map(|_| throughput(batch, total, true)).collect());
        println!(
            "mesh.hop batch={batch:<5} {ns:7.1} ns/message ({:.1} M/s)  single-core baseline \
             {base:5.1} ns  => hop {:6.1} ns/message  | one shared Arc: {shared:7.1} ns/message",
            1e3 / ns,
            ns - base
        );
    }
    let mut t = round_trips(TRIPS);
    t.sort();
    let q = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "mesh.round_trip one-message batch A->B->A  p50 {:.1} us  p90 {:.1} us  p99 {:.1} us  \
         p999 {:.1} us  max {:.1} us  ({} trips)",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        t[t.len() - 1].as_secs_f64() * 1e6,
        t.len()
    );
}
