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

/// Runs the load generator's fan-in (`args` after `fanin`, 2 s, one subscriber) against a
/// one-shard broker with `window_us`; returns its summary and how often the broker slept
/// meanwhile.
fn fan_in(window_us: u32, args: &[&str]) -> (serde_json::Value, u64) {
    let broker = Broker::start_with(
        1,
        &format!("[runtime]\nbatch_window_us = {window_us}\n"),
        &[],
    );
    let before = sleeps(broker.pid());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmq-bench"))
        .args(["fanin", "--subscribers", "1", "-s", "16", "-d", "2"])
        .args(args)
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
    (summary, after - before)
}

/// 50 QoS 0 publishers on their own clocks, 20,000 msg/s in all: how often the broker slept.
fn sleeps_during_fan_in(window_us: u32) -> u64 {
    let (summary, sleeps) = fan_in(
        window_us,
        &["--publishers", "50", "-q", "0", "--rate", "20000"],
    );
    assert!(
        summary["received"].as_u64().unwrap() >= 30_000,
        "window {window_us} µs: {summary}"
    );
    sleeps
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
        batched * 2 < unbatched,
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

/// Four QoS 1 publishers that each wait for their PUBACK before the next PUBLISH (a closed loop:
/// their rounds serve five sockets, enough to start the window). Holding them to one exchange
/// per window would cut their rate tenfold or more; the pacer sees the read rate fall during its
/// trial and stops batching, so they keep most of their rate.
#[test]
fn a_closed_loop_is_not_slowed_by_the_window() {
    let args = ["--publishers", "4", "-q", "1", "--inflight", "1", "-I", "0"];
    let rate = |window_us| {
        let (summary, _) = fan_in(window_us, &args);
        summary["delivered_per_s"].as_f64().unwrap()
    };
    let unbatched = rate(0);
    let batched = rate(2_000);
    eprintln!(
        "closed loop, 4 publishers: {unbatched:.0}/s without a window, {batched:.0}/s with 2 ms"
    );
    // Held by a 2 ms window, 4 publishers would deliver at most 4 / 2 ms = 2,000/s.
    assert!(
        batched > 0.5 * unbatched && batched > 4_000.0,
        "{batched:.0}/s with a 2 ms window, {unbatched:.0}/s without"
    );
}
