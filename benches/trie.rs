//! Benchmark of the per-shard subscription trie (`ringmq::topic::TopicTrie`), a plain program:
//! `cargo bench --bench trie`. Prints, per workload, the insert rate, the trie's heap bytes per
//! subscription (counted by a wrapping global allocator), the cost of one match and the removal
//! rate. Targets: well under 100 B per subscription, at most 1 µs per match.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ringmq::rng::SplitMix64;
use ringmq::topic::{Matches, TopicTrie};

/// Counts live heap bytes so the trie's footprint is measured, not estimated.
struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the counter is a side effect that never touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is (see the impl).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

/// CPU time of this thread: on a shared machine it stays put while wall time does not.
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

const SUBSCRIPTIONS: usize = 1_000_000;
const TOPICS: usize = 1_000_000;
const MATCH_PASSES: usize = 3;

/// Deterministic randomness for reproducible workloads.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const DEVICES: u64 = 300_000;
const KINDS: &[&str] = &["telemetry", "commands", "config", "status"];
const SITES: u64 = 1_000;
const ROOMS: u64 = 100;
const SENSORS: &[&str] = &["temperature", "humidity", "co2", "occupancy"];
const CHAT_ROOMS: u64 = 10_000;
const USERS: u64 = 1_000;

/// A realistic exact topic of 3 to 5 levels; also used as a PUBLISH topic.
fn exact_topic(rng: &mut Rng) -> String {
    match rng.below(100) {
        0..60 => format!("devices/{}/{}", rng.below(DEVICES), rng.pick(KINDS)),
        60..85 => format!(
            "site/{}/room/{}/{}",
            rng.below(SITES),
            rng.below(ROOMS),
            rng.pick(SENSORS)
        ),
        _ => format!("chat/{}/{}", rng.below(CHAT_ROOMS), rng.below(USERS)),
    }
}

/// `+` and `#` at various depths, each narrow enough to match a few topics.
fn wildcard_filter(rng: &mut Rng) -> String {
    let device = rng.below(DEVICES);
    let site = rng.below(SITES);
    match rng.below(6) {
        0 => format!("devices/{device}/#"),
        1 => format!("devices/{device}/+"),
        2 => format!("site/{site}/room/+/{}", rng.pick(SENSORS)),
        3 => format!("site/{site}/#"),
        4 => format!("+/{device}/status"),
        _ => format!("chat/{}/+", rng.below(CHAT_ROOMS)),
    }
}

/// Distinct filters: 99% exact, 1% with wildcards.
fn mixed_filters(rng: &mut Rng) -> Vec<String> {
    let mut seen = HashSet::with_capacity(SUBSCRIPTIONS);
    let mut filters = Vec::with_capacity(SUBSCRIPTIONS);
    while filters.len() < SUBSCRIPTIONS {
        let filter = if rng.below(100) == 0 {
            wildcard_filter(rng)
        } else {
            exact_topic(rng)
        };
        if seen.insert(filter.clone()) {
            filters.push(filter);
        }
    }
    filters
}

/// The floor: every subscription adds exactly one node with a unique last level.
fn unique_leaf_filters() -> Vec<String> {
    (0..SUBSCRIPTIONS)
        .map(|n| format!("devices/telemetry/{n}"))
        .collect()
}

fn run(name: &str, filters: &[String], topics: &[String]) {
    let bytes_before = live_bytes();
    let start = Instant::now();
    let mut trie = TopicTrie::new();
    for filter in filters {
        black_box(trie.insert(filter));
    }
    let build = start.elapsed();
    let bytes = live_bytes() - bytes_before;
    let count = trie.len();
    println!(
        "trie.insert  {name:<11} {count} subs  {:.2} M inserts/s  ({} ms)",
        count as f64 / build.as_secs_f64() / 1e6,
        build.as_millis()
    );
    println!(
        "trie.memory  {name:<11} {count} subs  {:.1} B/sub  (allocator {bytes} B, heap_bytes() {} B, {} nodes)",
        bytes as f64 / count as f64,
        trie.heap_bytes(),
        trie.node_count()
    );
    measure_matches(name, &trie, topics);
    measure_removes(name, trie, filters, bytes_before);
}

fn measure_matches(name: &str, trie: &TopicTrie, topics: &[String]) {
    let mut out = Matches::default();
    let mut found = 0usize;
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    for _ in 0..MATCH_PASSES {
        for topic in topics {
            trie.matches(black_box(topic), &mut out);
            found += black_box(out.ids()).len();
        }
    }
    let elapsed = start.elapsed();
    let cpu = thread_cpu_ns() - cpu_start;
    let runs = (MATCH_PASSES * topics.len()) as f64;
    println!(
        "trie.match   {name:<11} {} subs  {:.0} ns/match  (cpu {:.0} ns/match, avg {:.2} matches, {} topics x {MATCH_PASSES})",
        trie.len(),
        elapsed.as_nanos() as f64 / runs,
        cpu as f64 / runs,
        found as f64 / runs,
        topics.len()
    );
}

fn measure_removes(name: &str, mut trie: TopicTrie, filters: &[String], bytes_before: usize) {
    let start = Instant::now();
    for filter in filters {
        black_box(trie.remove(filter));
    }
    let elapsed = start.elapsed();
    let left = live_bytes() - bytes_before;
    trie.shrink_to_fit();
    let shrunk = live_bytes() - bytes_before;
    println!(
        "trie.remove  {name:<11} {} subs  {:.2} M removes/s  (left {left} B, after shrink_to_fit {shrunk} B, {} nodes)",
        filters.len(),
        filters.len() as f64 / elapsed.as_secs_f64() / 1e6,
        trie.node_count()
    );
}

fn main() {
    let mut rng = Rng(SplitMix64(0x5EED));
    let mixed = mixed_filters(&mut rng);
    let mixed_topics: Vec<String> = (0..TOPICS).map(|_| exact_topic(&mut rng)).collect();
    run("mixed", &mixed, &mixed_topics);

    let unique = unique_leaf_filters();
    let unique_topics: Vec<String> = (0..TOPICS)
        .map(|_| format!("devices/telemetry/{}", rng.below(2 * SUBSCRIPTIONS as u64)))
        .collect();
    run("unique-leaf", &unique, &unique_topics);
}
