//! The reactor's batching window (`runtime.batch_window_us`): a busy shard starts its rounds at
//! most once per window, so it wakes far less often; a lone client's request and response are
//! never held by it.

mod support;

use std::time::{Duration, Instant};

use ringmq::protocol::ProtocolVersion;
use support::*;

/// Voluntary context switches of every thread of `pid` (a thread that sleeps and wakes again
/// counts one): how often the broker went to sleep.
fn sleeps(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("broker's threads") {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("voluntary_ctxt_switches");
    }
    total
}

/// Runs the load generator's fan-in (50 QoS 0 publishers, 20,000 msg/s in all, 2 s) against a
/// one-shard broker with `window_us`; returns how often the broker slept meanwhile.
fn sleeps_during_fan_in(window_us: u32) -> u64 {
    let broker = Broker::start_with(
        1,
        &format!("[runtime]\nbatch_window_us = {window_us}\n"),
        &[],
    );
    let before = sleeps(broker.pid());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args(["fanin", "--publishers", "50", "--subscribers", "1"])
        .args(["-q", "0", "-s", "16", "--rate", "20000", "-d", "2"])
        .args(["--drain", "10", "--threads", "1", "--quiet", "-p"])
        .arg(broker.port.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ringmq-bench");
    let after = sleeps(broker.pid());
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "summary: {e}: {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(summary["lost"], 0, "window {window_us} µs: {summary}");
    assert!(
        summary["received"].as_u64().unwrap() >= 30_000,
        "window {window_us} µs: {summary}"
    );
    after - before
}

/// The same steady fan-in wakes the broker several times less often with a 2 ms window than
/// without one (without, it sleeps after nearly every round of a few messages).
#[test]
fn a_busy_shard_batches_its_rounds() {
    let unbatched = sleeps_during_fan_in(0);
    let batched = sleeps_during_fan_in(2_000);
    eprintln!(
        "broker sleeps over 2 s at 20,000 msg/s: {unbatched} without a window, {batched} with 2 ms"
    );
    assert!(
        batched * 3 < unbatched,
        "{batched} sleeps with a 2 ms window, {unbatched} without"
    );
}

/// One client publishing at QoS 1 and waiting for each PUBACK (a request and its response)
/// is never held by the window, even the largest: its rounds serve one socket each.
#[test]
fn a_lone_client_is_not_held_by_the_window() {
    let broker = Broker::start_with(1, "[runtime]\nbatch_window_us = 10000\n", &[]);
    let (mut sub, _) = Raw::connect(&broker, ProtocolVersion::V5, "lone-sub", true);
    sub.subscribe("lone/t", 0);
    let (mut publ, _) = Raw::connect(&broker, ProtocolVersion::V5, "lone-pub", true);
    let mut slow = 0;
    for i in 1..=100u16 {
        let start = Instant::now();
        publ.publish(publish("lone/t", qos(1), i, b"x"));
        if start.elapsed() >= Duration::from_millis(10) {
            slow += 1;
        }
    }
    assert_eq!(sub.drain_publishes(Duration::from_millis(200)).len(), 100);
    // Held by the window, every round trip would take 10 ms; scheduling hiccups on a busy
    // machine make a few slow at most.
    assert!(slow < 30, "{slow} of 100 round trips took 10 ms or more");
}
