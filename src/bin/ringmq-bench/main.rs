//! `ringmq-bench`: an MQTT load generator (emqtt-bench-like) built on ringmq's codec.
//!
//! - `cli`: the command line and its resolution into one `Config`.
//! - `plan`: the clients of a scenario (ids, topics, broker and source addresses).
//! - `worker`: one epoll loop per thread over its share of the clients.
//! - `wire`: the PUBLISH / ack hot path and the 16-byte payload header.
//! - `tracker`: per-stream sequence tracking (loss, reordering, duplicates).
//! - `template`, `addr`: `%i` templates, host lists and `--ifaddr` ranges.
//!
//! The main thread runs the phases (subscribers, then publishers, then publishing, then the
//! drain), prints a progress line a second, and the JSON summary at the end.

mod addr;
mod cli;
mod plan;
mod template;
mod tracker;
mod wire;
mod worker;

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;

use cli::{Config, Scenario};
use tracker::Totals;
use worker::{
    PHASE_DRAIN, PHASE_GO, PHASE_PUBS, PHASE_SHUTDOWN, PHASE_SUBS, Shared, Worker, WorkerResult,
    mono_ns,
};

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let cfg = match cli::Cli::parse().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmq-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let clients = cfg.idle + cfg.subscribers + cfg.publishers;
    if let Err(e) = raise_nofile(clients + 32 + 2 * cfg.threads as u64) {
        eprintln!("ringmq-bench: {e}");
        return ExitCode::from(2);
    }
    // SAFETY: installing a handler that only touches an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let code = run(Arc::new(cfg));
    ExitCode::from(code)
}

/// Raises the soft open-files limit to what `need` takes, within the hard limit.
fn raise_nofile(need: u64) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit / setrlimit with a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= need {
            return Ok(());
        }
        if lim.rlim_max < need {
            return Err(format!(
                "{need} open files needed but this process may have {} (hard limit): split the \
                 clients over several processes (-c and -n/--start-number), or raise `ulimit -n`",
                lim.rlim_max
            ));
        }
        lim.rlim_cur = need;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    Ok(())
}

/// CPU seconds (user, system) of this process.
fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

fn cpu_total() -> f64 {
    let (u, s) = cpu_times();
    u + s
}

/// Times the main thread noted while running the phases.
#[derive(Default)]
struct Timeline {
    start_ns: u64,
    go_ns: u64,
    publish_end_ns: u64,
    end_ns: u64,
    cpu_go: f64,
    cpu_end: f64,
    connected_at_end: u64,
}

fn run(cfg: Arc<Config>) -> u8 {
    let start_ns = mono_ns();
    let threads = cfg.threads;
    let mut per_thread: Vec<Vec<plan::ClientSpec>> = (0..threads).map(|_| Vec::new()).collect();
    for (k, c) in plan::clients(&cfg).into_iter().enumerate() {
        per_thread[k % threads].push(c);
    }
    let shared = Arc::new(Shared::new(threads));
    let mut handles = Vec::with_capacity(threads);
    for (i, specs) in per_thread.into_iter().enumerate() {
        let (cfg, shared) = (cfg.clone(), shared.clone());
        let core = cfg.cores.as_ref().map(|c| c[i % c.len()]);
        let h = std::thread::Builder::new()
            .name(format!("bench{i}"))
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                Worker::new(i, cfg, shared, specs).run()
            })
            .expect("spawn worker");
        handles.push(h);
    }
    let timeline = orchestrate(&cfg, &shared, start_ns);
    shared.set_phase(PHASE_SHUTDOWN);
    let results: Vec<WorkerResult> = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .collect();
    let summary = summarize(&cfg, &shared, &timeline, results);
    let code = summary["exit_code"].as_u64().unwrap_or(3) as u8;
    let text = serde_json::to_string_pretty(&summary).expect("json");
    println!("{text}");
    if let Some(path) = &cfg.json
        && let Err(e) = std::fs::write(path, format!("{text}\n"))
    {
        eprintln!("ringmq-bench: cannot write {}: {e}", path.display());
    }
    code
}

fn phase_name(p: u8) -> &'static str {
    match p {
        PHASE_SUBS => "connect",
        PHASE_PUBS => "connect-pubs",
        PHASE_GO => "run",
        PHASE_DRAIN => "drain",
        _ => "stop",
    }
}

fn orchestrate(cfg: &Config, sh: &Shared, start_ns: u64) -> Timeline {
    let mut t = Timeline {
        start_ns,
        ..Default::default()
    };
    let total = cfg.idle + cfg.subscribers + cfg.publishers;
    let subs_total = cfg.idle + cfg.subscribers;
    let secs = |s: f64| (s * 1e9) as u64;
    let mut phase = PHASE_SUBS;
    let mut hold_until = u64::MAX;
    let mut drain_until = u64::MAX;
    let mut last_progress = (start_ns, 0u64, 0u64, cpu_total());
    let mut quiet = (0u64, 0u64, start_ns);
    let mut signals_seen = 0;
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now = mono_ns();
        if now >= last_progress.0 + 1_000_000_000 {
            let (pubd, recv, cpu) = (
                sh.sum(|c| &c.published),
                sh.sum(|c| &c.received),
                cpu_total(),
            );
            let dt = (now - last_progress.0) as f64 / 1e9;
            if !cfg.quiet {
                eprintln!(
                    "[{:>5.1}s {:<12}] conn {}/{} fail {} | pub {:.0}/s recv {:.0}/s | err {} | cpu {:.0}%",
                    (now - start_ns) as f64 / 1e9,
                    phase_name(phase),
                    sh.sum(|c| &c.connected),
                    total,
                    sh.sum(|c| &c.failed),
                    (pubd - last_progress.1) as f64 / dt,
                    (recv - last_progress.2) as f64 / dt,
                    sh.sum(|c| &c.errors),
                    (cpu - last_progress.3) / dt * 100.0,
                );
            }
            last_progress = (now, pubd, recv, cpu);
        }
        let signals = SIGNALS.load(Ordering::SeqCst);
        let interrupted = signals > signals_seen;
        signals_seen = signals;
        match phase {
            PHASE_SUBS if interrupted => break,
            PHASE_SUBS if sh.sum(|c| &c.settled_subs) >= subs_total => {
                if cfg.publishers > 0 {
                    phase = PHASE_PUBS;
                    sh.set_phase(phase);
                } else {
                    // conn / sub: hold.
                    t.go_ns = now;
                    t.cpu_go = cpu_total();
                    hold_until = cfg.duration.map_or(u64::MAX, |d| now + secs(d));
                    phase = PHASE_GO;
                    sh.go_ns.store(now, Ordering::SeqCst);
                    sh.set_phase(phase);
                }
            }
            PHASE_PUBS if interrupted => break,
            PHASE_PUBS if sh.sum(|c| &c.settled_pubs) >= cfg.publishers => {
                t.go_ns = now;
                t.cpu_go = cpu_total();
                sh.go_ns.store(now, Ordering::SeqCst);
                sh.stop_ns.store(
                    cfg.duration.map_or(u64::MAX, |d| now + secs(d)),
                    Ordering::SeqCst,
                );
                phase = PHASE_GO;
                sh.set_phase(phase);
            }
            PHASE_GO if cfg.publishers == 0 && (interrupted || now >= hold_until) => {
                t.publish_end_ns = now;
                break;
            }
            PHASE_GO if cfg.publishers == 0 => {}
            PHASE_GO => {
                let done = sh.sum(|c| &c.pub_done) as usize >= sh.counters.len();
                if done || interrupted {
                    t.publish_end_ns = now;
                    drain_until = now + secs(cfg.drain_s);
                    quiet = (u64::MAX, u64::MAX, now);
                    phase = PHASE_DRAIN;
                    sh.set_phase(phase);
                }
            }
            PHASE_DRAIN => {
                let (recv, acked) = (sh.sum(|c| &c.received), sh.sum(|c| &c.acked));
                if (recv, acked) != (quiet.0, quiet.1) {
                    quiet = (recv, acked, now);
                }
                let published = sh.sum(|c| &c.published);
                let expected = match cfg.scenario {
                    Scenario::Fanin | Scenario::Fanout => published * sh.sum(|c| &c.subscribed),
                    Scenario::P2p | Scenario::SharedSub => published,
                    _ => 0,
                };
                let complete = recv >= expected && sh.sum(|c| &c.inflight) == 0;
                let quiet_for = now - quiet.2;
                if complete
                    || interrupted
                    || now >= drain_until
                    || quiet_for >= secs(1.0_f64.min(cfg.drain_s.max(0.1)))
                {
                    break;
                }
            }
            _ => {}
        }
    }
    let now = mono_ns();
    if t.publish_end_ns == 0 {
        t.publish_end_ns = now;
    }
    t.end_ns = now;
    t.cpu_end = cpu_total();
    t.connected_at_end = sh.sum(|c| &c.connected);
    t
}

fn percentiles_us(h: &Histogram<u64>, scale: f64) -> serde_json::Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    let q = |p: f64| round1(h.value_at_quantile(p) as f64 / scale);
    json!({
        "count": h.len(),
        "min": round1(h.min() as f64 / scale),
        "mean": round1(h.mean() / scale),
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": round1(h.max() as f64 / scale),
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn summarize(
    cfg: &Config,
    sh: &Shared,
    t: &Timeline,
    results: Vec<WorkerResult>,
) -> serde_json::Value {
    let mut conn_lat = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    let mut lat = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram");
    let mut streams = Totals::default();
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut published, mut acked, mut raw_received, mut failed) = (0, 0, 0, 0);
    let (mut member_reordered, mut foreign) = (0, 0);
    let mut subscribed: HashSet<u64> = HashSet::new();
    let mut pub_counts = Vec::new();
    let (mut first_rx, mut last_rx, mut last_pub) = (u64::MAX, 0, 0);
    for r in results {
        let _ = conn_lat.add(&r.conn_latency);
        let _ = lat.add(&r.latency);
        streams.merge(&r.streams);
        for (k, v) in r.errors {
            *errors.entry(k).or_default() += v;
        }
        published += r.published;
        acked += r.acked;
        raw_received += r.received;
        failed += r.failed;
        member_reordered += r.member_reordered;
        foreign += r.foreign;
        subscribed.extend(r.subscribed);
        pub_counts.extend(r.pub_counts);
        if r.first_rx_ns > 0 {
            first_rx = first_rx.min(r.first_rx_ns);
        }
        last_rx = last_rx.max(r.last_rx_ns);
        last_pub = last_pub.max(r.last_pub_ns);
    }
    let mut group = Totals::default();
    for s in sh.group.lock().expect("group").values() {
        group.add(s);
    }
    let received = streams.unique + group.unique;
    let duplicates = streams.duplicates + group.duplicates;
    let reordered = streams.reordered + member_reordered;
    let subs_ok = subscribed.len() as u64;
    let expected: Option<u64> = match cfg.scenario {
        Scenario::Fanin | Scenario::Fanout => Some(published * subs_ok),
        Scenario::P2p => Some(
            pub_counts
                .iter()
                .filter(|(i, _)| subscribed.contains(i))
                .map(|(_, n)| n)
                .sum(),
        ),
        Scenario::SharedSub => Some(if subs_ok > 0 { published } else { 0 }),
        // A lone subscriber knows only the gaps between what it saw.
        Scenario::Sub => Some(received + streams.missing_after_first),
        Scenario::Pub | Scenario::Conn => None,
    };
    let lost = expected.map_or(0, |e| tracker::lost(e, received));
    let error_total: u64 = errors.values().sum::<u64>() - failed.min(errors.values().sum());
    let window_start = if cfg.scenario == Scenario::Sub {
        first_rx.min(last_rx)
    } else {
        t.go_ns
    };
    let window_end = if received > 0 {
        last_rx
    } else {
        t.publish_end_ns
    };
    let window_s = window_end.saturating_sub(window_start) as f64 / 1e9;
    let publish_window_s = last_pub.saturating_sub(t.go_ns) as f64 / 1e9;
    let rate = |n: u64, s: f64| if s > 0.0 { round1(n as f64 / s) } else { 0.0 };
    let wall_s = (t.end_ns - t.start_ns) as f64 / 1e9;
    let (user_s, sys_s) = cpu_times();
    let run_wall = t.end_ns.saturating_sub(t.go_ns) as f64 / 1e9;
    let run_cpu = t.cpu_end - t.cpu_go;
    let exit_code = if failed > 0 || error_total > 0 {
        3
    } else if lost > 0 {
        1
    } else {
        0
    };
    let params = json!({
        "hosts": cfg.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        "version": cfg.version as u8,
        "qos": cfg.qos as u8,
        "sub_qos": cfg.sub_qos as u8,
        "size": cfg.size,
        "publishers": cfg.publishers,
        "subscribers": cfg.subscribers,
        "idle": cfg.idle,
        "group": cfg.group,
        "topic": cfg.topic,
        "filter": cfg.filter,
        "client_id": cfg.client_id,
        "start_number": cfg.start,
        "interval_ms": cfg.interval_ns() as f64 / 1e6,
        "rate": cfg.rate,
        "inflight": cfg.inflight,
        "limit": cfg.limit,
        "duration_s": cfg.duration,
        "connrate": cfg.connrate,
        "keepalive": cfg.keepalive,
        "clean": cfg.clean,
        "session_expiry": cfg.session_expiry,
        "ifaddrs": cfg.ifaddrs.len(),
        "threads": cfg.threads,
        "cores": cfg.cores,
        "clock": format!("{:?}", cfg.clock).to_lowercase(),
    });
    json!({
        "tool": "ringmq-bench",
        "scenario": cfg.scenario.name(),
        "params": params,
        "clients": cfg.idle + cfg.subscribers + cfg.publishers,
        "connected": t.connected_at_end,
        "failed": failed,
        "subscribed": subs_ok,
        "connect_latency_us": percentiles_us(&conn_lat, 1.0),
        "published": published,
        "acked": acked,
        "received": received,
        "received_packets": raw_received,
        "expected": expected,
        "lost": lost,
        "reordered": reordered,
        "duplicates": duplicates,
        "foreign": foreign,
        "publish_window_s": round3(publish_window_s),
        "window_s": round3(window_s),
        "published_per_s": rate(published, publish_window_s),
        "delivered_per_s": rate(received, window_s),
        "latency_us": percentiles_us(&lat, 1000.0),
        "errors": error_total,
        "error_kinds": errors,
        "cpu": {
            "user_s": round3(user_s),
            "sys_s": round3(sys_s),
            "total_s": round3(user_s + sys_s),
            "wall_s": round3(wall_s),
            "utilisation": round3((user_s + sys_s) / wall_s.max(1e-9)),
            "run_cpu_s": round3(run_cpu),
            "run_wall_s": round3(run_wall),
            "run_utilisation": round3(run_cpu / run_wall.max(1e-9)),
            "threads": cfg.threads,
        },
        "exit_code": exit_code,
    })
}
