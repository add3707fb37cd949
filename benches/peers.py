#!/usr/bin/env python3
"""ringmq against its peers: the same ringmq-bench scenarios against ringmq (1 and 2 shards),
Mosquitto and rumqttd, in one run, on loopback, with one table at the end.

usage: benches/peers.py [--brokers LIST] [--scenarios LIST] [--quick] [--out PATH] ...
       benches/peers.py --list        # the scenario matrix with its exact ringmq-bench arguments

Python 3 standard library only. Installs nothing: it checks for what it needs and names it:
  ringmq, ringmq-bench  `cargo build --release` (run once by this script unless --no-build)
  mosquitto             Debian package `mosquitto` (/usr/sbin/mosquitto)
  rumqttd               `cargo install rumqttd` (~/.cargo/bin/rumqttd or on PATH)
A broker that is asked for and missing is an error; without --brokers, missing peers are
skipped with a note.

Every generator run gets a freshly started broker on a free loopback port (so RSS, VmHWM and CPU
belong to that run alone), stopped afterwards. Measured per run:
  delivered msg/s  ringmq-bench's `delivered_per_s` (received / run start to last delivery)
  p50 / p99        end-to-end latency from the payload's send time (CLOCK_MONOTONIC)
  CPU-s/M          broker utime+stime (/proc/PID/stat, all threads) over the run, per million
                   delivered messages
  RSS / HWM        broker VmRSS (highest sample, 10 per second) / VmHWM (/proc/PID/status)
  B/conn           conn: (VmRSS while holding every connection - VmRSS before) / connections

CPU placement (the idea of tuning/cpu/shared-2core.env): with 2+ CPUs, single-core brokers
(ringmq --shards 1, Mosquitto, rumqttd) run on the second allowed CPU (`taskset`, and ringmq
`--cores`) and the generator, one thread, on the first; ringmq --shards 2 takes both CPUs and the
generator shares them unpinned. rumqttd's router and its listener's runtime are two threads;
pinned, they share one core like everyone else's single core. With one CPU nothing is pinned.

Broker configuration: defaults, except what the scenarios need or what levels the field (written
to a temporary directory, shown with --list): Mosquitto max_connections -1, max_inflight_messages
32 and max_queued_messages 1000 (ringmq's mqtt.max_inflight / max_mqueue_len defaults),
set_tcp_nodelay true (ringmq sets TCP_NODELAY), persistence off; rumqttd max_connections 20000,
next_connection_delay_ms 0 (its default 1 ms sleep after each accept caps connects at 1,000/s),
dynamic_filters true, the rest from its sample rumqttd.toml.

Fan-in, fan-out and shared subscriptions (QoS 0 and 1) also run a rate search: the offered rate
(--rate, all publishers together) climbs a fixed ladder, the same for every broker, until a step
loses messages, publishes or delivers < 95 % of what it should (offered x subscribers per
message) or has a p99 above 1 s (a growing backlog); two bisection steps between the last good
and the first bad rate refine it (to a quarter of the ladder's gap; none below a 10 % gap). The row reports the highest good rate and that step's figures;
every step is kept in the JSON, and a second table puts the brokers' steps at equal offered load
side by side. A step the generator itself could not offer (QoS 0 published < 95 %, or its thread
>= 90 % busy) ends the search as generator-limited; a QoS 1 publisher held back by its in-flight
window is the broker's limit (its acks are slow), not the generator's.

Re-measure one step: --scenarios fanin --only "q1 16B search" --ladder 50000. Tables of an
earlier run again (its searches judged with the current rules): --render PATH.json.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_BROKERS = ["ringmq-1", "ringmq-2", "mosquitto", "rumqttd"]
ALIASES = {"ringmq": ["ringmq-1", "ringmq-2"], "all": ALL_BROKERS}
ALL_SCENARIOS = ["conn", "fanin", "fanout", "p2p", "sharedsub"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOOD_FRACTION = 0.95
# A search step whose p99 exceeds this is not good either: the broker kept up only by letting a
# backlog grow (in its queues or, by not reading, in TCP buffers); in a step longer than 5 s it
# would fall below 95 %.
MAX_GOOD_P99_MS = 1000

# The rate ladder of the searches (msg/s offered, all publishers together).
LADDER = [50e3, 100e3, 200e3, 300e3, 400e3, 500e3, 600e3, 800e3, 1e6, 1.25e6, 1.5e6, 2e6]
# QoS 1 to one subscriber is bounded by the brokers' in-flight windows: start lower.
Q1_LADDER = [5e3, 10e3, 20e3, 30e3, 50e3, 100e3, 200e3, 300e3, 400e3, 600e3, 800e3, 1e6]
# Fan-out 1 -> 1,000: publish rates (deliveries = 1,000 x).
FANOUT_LADDER = [500, 1000, 2000, 3000, 4000, 6000, 8000]
QUICK_LADDER = [20e3]
# Bisection steps between the last good and the first bad rate of a search.
REFINE_STEPS = 2


# ----------------------------------------------------------------------------------------------
# The scenario matrix


def matrix(quick):
    """Runs per scenario group: dicts with id, group, kind (conn | fixed | search), args."""
    d = 1 if quick else 10  # seconds of publishing, fixed-rate runs
    ds = 1 if quick else 5  # seconds per search step
    conns = 1000 if quick else 15000
    fan_subs = 100 if quick else 1000
    pairs = 100 if quick else 1000
    ladder = QUICK_LADDER if quick else LADDER
    q1_ladder = QUICK_LADDER if quick else Q1_LADDER
    pubs = ["--publishers", "100"]
    runs = []

    def add(group, rid, kind, args, offered, **extra):
        runs.append(dict(group=group, id=rid, kind=kind, args=args, offered=offered, **extra))

    hold = 2 if quick else 3
    add("conn", f"conn {conns} @2000/s", "conn",
        ["conn", "-c", str(conns), "-R", "2000", "-d", str(hold)],
        f"{conns} conns @2,000/s", conns=conns)
    add("conn", f"conn {conns} @max", "conn",
        ["conn", "-c", str(conns), "-R", "0", "--conn-timeout", "60", "-d", str(hold)],
        f"{conns} conns unpaced", conns=conns)

    sizes = [16] if quick else [16, 256]
    for s in sizes:
        add("fanin", f"fanin q0 {s}B search", "search",
            ["fanin", *pubs, "--subscribers", "1", "-q", "0", "-s", str(s), "-d", str(ds)],
            "rate search", ladder=ladder)
    if not quick:
        add("fanin", "fanin q1 16B search", "search",
            ["fanin", *pubs, "--subscribers", "1", "-q", "1", "-s", "16", "--inflight", "32",
             "-d", str(ds)], "rate search", ladder=q1_ladder)
    for s in sizes:
        add("fanin", f"fanin q1 {s}B", "fixed",
            ["fanin", *pubs, "--subscribers", "1", "-q", "1", "-s", str(s), "-I", "0",
             "--inflight", "32", "-d", str(d)],
            "closed loop, 32 in flight/pub")

    fan_rates = [(0, 100)] if quick else [(0, 100), (0, 500), (0, 2000), (1, 100), (1, 500)]
    for q, r in fan_rates:
        add("fanout", f"fanout q{q} 1->{fan_subs} @{r}", "fixed",
            ["fanout", "--publishers", "1", "--subscribers", str(fan_subs), "-q", str(q),
             "-s", "16", "--rate", str(r), "-d", str(d)],
            f"{r} msg/s = {r * fan_subs:,} deliveries/s")

    if not quick:
        for q in (0, 1):
            add("fanout", f"fanout q{q} 1->{fan_subs} search", "search",
                ["fanout", "--publishers", "1", "--subscribers", str(fan_subs), "-q", str(q),
                 "-s", "16", "-d", str(ds)], "rate search (msg/s published)",
                ladder=FANOUT_LADDER, fan=fan_subs)

    add("p2p", f"p2p q1 {pairs} pairs @10", "fixed",
        ["p2p", "--pairs", str(pairs), "-q", "1", "-s", "16", "-I", "100", "-d", str(d)],
        f"{pairs} x 10 msg/s = {pairs * 10:,} msg/s")

    share = ["sharedsub", *pubs, "--subscribers", "5", "--group", "g"]
    add("sharedsub", "sharedsub q0 16B search", "search",
        [*share, "-q", "0", "-s", "16", "-d", str(ds)], "rate search", ladder=ladder)
    if not quick:
        add("sharedsub", "sharedsub q1 16B search", "search",
            [*share, "-q", "1", "-s", "16", "--inflight", "32", "-d", str(ds)], "rate search",
            ladder=q1_ladder)
    add("sharedsub", "sharedsub q1 16B", "fixed",
        [*share, "-q", "1", "-s", "16", "-I", "0", "--inflight", "32", "-d", str(d)],
        "closed loop, 32 in flight/pub")
    return runs


# ----------------------------------------------------------------------------------------------
# Brokers


def which(paths, name):
    for p in paths:
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def find_bins(args):
    bins = {}
    bindir = args.bin_dir or os.path.join(ROOT, "target", "release")
    bins["ringmq"] = os.path.join(bindir, "ringmq")
    bins["bench"] = os.path.join(bindir, "ringmq-bench")
    bins["mosquitto"] = which([args.mosquitto, "/usr/sbin/mosquitto", "/usr/bin/mosquitto"],
                              "mosquitto")
    bins["rumqttd"] = which([args.rumqttd, os.path.expanduser("~/.cargo/bin/rumqttd")],
                            "rumqttd")
    return bins


WHAT_TO_INSTALL = {
    "mosquitto": "mosquitto not found: install the Debian package (apt-get install mosquitto)",
    "rumqttd": "rumqttd not found: cargo install rumqttd (or --rumqttd PATH)",
}


def version_of(name, path):
    try:
        if name == "mosquitto":
            out = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).splitlines()[0].strip()
        if name == "rumqttd":
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            return out.stdout.strip()
        if name == "ringmq":
            head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
            return f"ringmq 0.1.0 ({head or 'unknown commit'})"
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return "unknown"


def free_port():
    """A free loopback port below the ephemeral range (so no client socket takes it meanwhile)."""
    base = 20000 + (os.getpid() * 131) % 9000
    for i in range(5000):
        port = 20000 + (base + i * 11) % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def placement():
    """(broker CPUs for a single-core broker, generator CPUs, both) from the allowed CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, cpus
    return [cpus[1]], [cpus[0]], cpus[:2]


def taskset(cpus):
    if not cpus or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", ",".join(map(str, cpus))]


def broker_configs(name, port, tmp):
    """Writes the broker's config (if it needs one); returns the command line."""
    if name == "mosquitto":
        path = os.path.join(tmp, f"mosquitto-{port}.conf")
        with open(path, "w") as f:
            f.write(MOSQUITTO_CONF.format(port=port))
        return path
    if name == "rumqttd":
        path = os.path.join(tmp, f"rumqttd-{port}.toml")
        with open(path, "w") as f:
            f.write(RUMQTTD_CONF.format(port=port))
        return path
    return None


MOSQUITTO_CONF = """\
# written by benches/peers.py
listener {port} 127.0.0.1
allow_anonymous true
max_connections -1
max_inflight_messages 32
max_queued_messages 1000
set_tcp_nodelay true
persistence false
log_dest stderr
log_type error
log_type warning
"""

RUMQTTD_CONF = """\
# written by benches/peers.py (rumqttd 0.20 format; router and connection values from its
# sample rumqttd.toml, raised limits for 15,000 connections, no accept throttle)
id = 0

[router]
max_connections = 20000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
"""


class Broker:
    """One broker process, started fresh on a free loopback port."""

    def __init__(self, name, bins, tmp, log):
        self.name = name
        self.port = free_port()
        single, _, both = placement()
        cfg = broker_configs(name, self.port, tmp)
        if name.startswith("ringmq"):
            shards = name.split("-")[1]
            cmd = [bins["ringmq"], "--bind", f"127.0.0.1:{self.port}", "--shards", shards,
                   "--log-level", "warn"]
            cores = single if shards == "1" else both
            if cores and len(cores) >= int(shards):
                cmd += ["--cores", ",".join(map(str, cores[: int(shards)]))]
                cmd = taskset(cores) + cmd
            else:
                cmd += ["--no-pin"]
        elif name == "mosquitto":
            cmd = taskset(single) + [bins["mosquitto"], "-c", cfg]
        elif name == "rumqttd":
            cmd = taskset(single) + [bins["rumqttd"], "-q", "-c", cfg]
        else:
            raise ValueError(name)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.time() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode} at start "
                                   f"({' '.join(cmd)}); see {log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"{name} did not listen on {self.port} within 15 s")
                time.sleep(0.02)
        # The accepted probe connection is gone once the broker has noticed the close.
        time.sleep(0.2)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK

    def status(self):
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0]) * (1024 if k != "Threads" else 1)
        return out

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return 0

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Sampler(threading.Thread):
    """Samples the broker's VmRSS (and its fd count, for conn) ten times a second."""

    def __init__(self, broker, count_fds):
        super().__init__(daemon=True)
        self.broker, self.count_fds = broker, count_fds
        self.samples = []  # (t, rss, fds)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                st = self.broker.status()
                fds = self.broker.fds() if self.count_fds else 0
                self.samples.append((time.time(), st.get("VmRSS", 0), fds))
            except OSError:
                return
            self.halt.wait(0.1)

    def stop(self):
        self.halt.set()
        self.join()


# ----------------------------------------------------------------------------------------------
# Running one generator invocation against a fresh broker


def run_once(ctx, broker_name, run, extra_args, timeout_s):
    tmp, bins = ctx["tmp"], ctx["bins"]
    logpath = os.path.join(tmp, f"{broker_name}-{ctx['seq']}.log")
    ctx["seq"] += 1
    with open(logpath, "w") as log:
        b = Broker(broker_name, bins, tmp, log)
        try:
            return measure(ctx, b, run, extra_args, timeout_s, logpath)
        finally:
            b.stop()


def measure(ctx, b, run, extra_args, timeout_s, logpath):
    _, gen_cpus, both = placement()
    gen_args = ["--threads", "1", "--quiet"]
    if b.name == "ringmq-2" or gen_cpus is None:
        prefix = taskset(both)
    else:
        prefix = taskset(gen_cpus)
        gen_args += ["--cores", str(gen_cpus[0])]
    jpath = os.path.join(ctx["tmp"], f"run-{ctx['seq']}.json")
    cmd = [ctx["bins"]["bench"], *run["args"], *extra_args, "-p", str(b.port), *gen_args,
           "--json", jpath]
    if ctx["quick"]:
        if run["kind"] != "conn":
            cmd += ["--drain", "1"]
    conn = run["kind"] == "conn"
    load = os.getloadavg()[0]
    before = b.status()
    fds0 = b.fds() if conn else 0
    cpu0 = b.cpu_s()
    sampler = Sampler(b, conn)
    t0 = time.time()
    sampler.start()
    try:
        out = subprocess.run(prefix + cmd, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=timeout_s)
        code, stdout, stderr = out.returncode, out.stdout, out.stderr
    except subprocess.TimeoutExpired as e:
        code, stdout, stderr = -1, "", f"generator timed out after {timeout_s} s: {e}"
    wall = time.time() - t0
    sampler.stop()
    alive = b.alive()
    cpu1 = b.cpu_s() if alive else cpu0
    after = b.status() if alive else {}
    try:
        summary = json.loads(stdout) if stdout.strip() else json.load(open(jpath))
    except (OSError, ValueError):
        summary = None
    r = {
        "broker": b.name,
        "cmd": " ".join(prefix + cmd).replace(ctx["bins"]["bench"], "ringmq-bench"),
        "broker_cmd": " ".join(b.cmd),
        "exit_code": code,
        "wall_s": round(wall, 2),
        "load1": round(load, 2),
        "broker_alive": alive,
        "broker_cpu_s": round(cpu1 - cpu0, 2),
        "rss_before": before.get("VmRSS"),
        "rss_max": max([s[1] for s in sampler.samples] + [after.get("VmRSS", 0)]),
        "hwm": after.get("VmHWM"),
        "broker_threads": after.get("Threads"),
        "broker_log": logpath,
    }
    if summary is None:
        r["error"] = (stderr or "no JSON summary").strip().splitlines()[-3:]
        return r
    r["summary"] = summary
    rec = summary.get("received", 0)
    r["delivered_per_s"] = summary.get("delivered_per_s", 0.0)
    r["published_per_s"] = summary.get("published_per_s", 0.0)
    r["lost"] = summary.get("lost", 0)
    r["expected"] = summary.get("expected", 0)
    r["received"] = rec
    lat = summary.get("latency_us", {})
    r["p50_ms"] = lat.get("p50", 0) / 1000 if lat.get("count") else None
    r["p99_ms"] = lat.get("p99", 0) / 1000 if lat.get("count") else None
    r["cpu_per_m"] = (cpu1 - cpu0) / (rec / 1e6) if rec else None
    r["gen_util"] = summary.get("cpu", {}).get("run_utilisation")
    r["qos"] = summary.get("params", {}).get("qos", 0)
    r["fan"] = run.get("fan", 1)
    r["failed"] = summary.get("failed", 0)
    r["errors"] = summary.get("errors", 0)
    if conn:
        n = summary.get("connected", 0)
        r["connected"] = n
        want = run["conns"]
        full = [s for s in sampler.samples if s[2] >= fds0 + want]
        if full:
            r["connect_s"] = round(full[0][0] - t0, 2)
            r["conn_per_s"] = round(want / max(full[0][0] - t0, 1e-3))
            rss_full = full[-1][1]
        else:
            most = max(sampler.samples, key=lambda s: s[2], default=(t0, 0, 0))
            r["connect_s"] = None
            r["conn_per_s"] = None
            r["max_accepted"] = most[2] - fds0
            rss_full = r["rss_max"]
        if n:
            r["bytes_per_conn"] = round((rss_full - before.get("VmRSS", 0)) / n)
    return r


def good(r, offered):
    """A search step is good: no loss, no errors, the offered rate published and >= 95 % of the
    deliveries it means (offered x subscribers per message) delivered per second, p99 <= 1 s."""
    return ("delivered_per_s" in r and r["lost"] == 0 and r["errors"] == 0 and r["failed"] == 0
            and r["published_per_s"] >= GOOD_FRACTION * offered
            and r["delivered_per_s"] >= GOOD_FRACTION * offered * r.get("fan", 1)
            and (r["p99_ms"] or 0) <= MAX_GOOD_P99_MS)


def gen_limited(r, offered):
    """The generator could not offer the rate itself: its thread was busy. (A QoS 1/2 publisher
    that is held back by its in-flight window, the broker's acks being slow, is the broker's
    limit, not the generator's.)"""
    return ("published_per_s" in r and r["published_per_s"] < GOOD_FRACTION * offered
            and (r.get("qos", 0) == 0 or (r.get("gen_util") or 0) >= 0.9))


def search(ctx, broker_name, run, timeout_s):
    steps, best, bad = [], None, None
    for rate in run["ladder"]:
        r = run_once(ctx, broker_name, run, ["--rate", str(int(rate))], timeout_s)
        r["offered_rate"] = rate
        r["good"] = good(r, rate)
        steps.append(r)
        note(ctx, broker_name, run["id"], r, f"@{rate / 1e3:g}k")
        if gen_limited(r, rate) and r.get("lost", 1) == 0:
            r["generator_limited"] = True
            break
        if r["good"]:
            best = r
        else:
            bad = rate
            break
    # Bisection between the last good and the first bad step: the ladder doubles at its top
    # (100 k -> 200 k), so one step left a 50 % gap, and two brokers 1.3x apart could both stop
    # at the same step or swap by a rounding.
    for _ in range(REFINE_STEPS):
        mid = refine(best["offered_rate"], bad) if best and bad else None
        if not mid:
            break
        r = run_once(ctx, broker_name, run, ["--rate", str(int(mid))], timeout_s)
        r["offered_rate"] = mid
        r["good"] = good(r, mid)
        steps.append(r)
        note(ctx, broker_name, run["id"], r, f"@{mid / 1e3:g}k")
        if r["good"]:
            best = r
        else:
            bad = mid
    row = dict(best or steps[0])
    row["steps"] = [{k: v for k, v in s.items() if k != "summary"} for s in steps]
    row["max_good_rate"] = best["offered_rate"] if best else None
    row["first_bad_rate"] = bad
    row["search_generator_limited"] = any(s.get("generator_limited") for s in steps)
    return row


def refine(good_rate, bad_rate):
    """The rate between the last good and the first bad step, to two significant digits; None
    when they are within 10 % or the rounding hits either end."""
    if bad_rate / good_rate <= 1.1:
        return None
    mid = (good_rate + bad_rate) / 2
    digits = 10 ** (len(str(int(mid))) - 2)
    mid = round(mid / digits) * digits
    return mid if good_rate < mid < bad_rate else None


def rejudge(row):
    """Judges a search row's steps again with the current rules (for --render of an older run)."""
    steps = row.get("steps", [])
    m = re.search(r"1->(\d+)", row.get("id", ""))
    q = re.search(r"\bq(\d)\b", row.get("id", ""))
    for st in steps:
        st.setdefault("fan", int(m.group(1)) if m else 1)
        st.setdefault("qos", int(q.group(1)) if q else 0)
        st["good"] = good(st, st["offered_rate"])
        st["generator_limited"] = not st["good"] and gen_limited(st, st["offered_rate"])
    bad = [st["offered_rate"] for st in steps if not st["good"] and not st["generator_limited"]]
    first_bad = min(bad) if bad else None
    goods = [st for st in steps if st["good"] and (first_bad is None or st["offered_rate"] <
                                                    first_bad)]
    best = max(goods, key=lambda st: st["offered_rate"]) if goods else None
    keep = {k: row[k] for k in ("id", "group", "kind", "offered", "run_s", "steps") if k in row}
    row.clear()
    row.update(best or steps[0])
    row.update(keep)
    row["max_good_rate"] = best["offered_rate"] if best else None
    row["first_bad_rate"] = first_bad
    row["search_generator_limited"] = any(st["generator_limited"] for st in steps)


def note(ctx, broker, rid, r, tag=""):
    if ctx["quiet"]:
        return
    if "delivered_per_s" not in r:
        msg = f"ERROR {r.get('error')}"
    elif "bytes_per_conn" in r or r.get("connected") is not None:
        msg = (f"connected {r.get('connected')} in {r.get('connect_s')} s, "
               f"{r.get('bytes_per_conn')} B/conn")
    else:
        msg = (f"delivered {r['delivered_per_s']:,.0f}/s lost {r['lost']} "
               f"p99 {fmt_ms(r.get('p99_ms'))} ms cpu {r['broker_cpu_s']} s")
    print(f"  [{broker:9}] {rid} {tag}: {msg} (load {r['load1']}, {r['wall_s']} s)",
          file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Output


def fmt_ms(v):
    return "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.0f}")


def fmt_rate(v):
    if v is None:
        return "-"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def row_cells(r):
    if "delivered_per_s" not in r:
        return [r["broker"], r["id"], r.get("offered", ""), "error", "", "", "", "", "", "",
                "", str(r.get("error", ""))[:60]]
    mb = lambda v: "-" if not v else f"{v / 2**20:.1f}"
    offered = r["offered"]
    notes = []
    if r.get("kind") == "search":
        if r.get("max_good_rate"):
            offered = f"max good {fmt_rate(r['max_good_rate'])}"
        else:
            offered = f"none good (<{fmt_rate(r['offered_rate'])})"
        if r.get("first_bad_rate"):
            notes.append(f"bad @{fmt_rate(r['first_bad_rate'])}")
        if r.get("search_generator_limited"):
            notes.append("generator-limited")
    delivered = fmt_rate(r["delivered_per_s"])
    lost = ""
    if r.get("expected"):
        lost = f"{r['lost']}" if r["lost"] == 0 else f"{100 * r['lost'] / r['expected']:.1f}%"
    bpc = ""
    if r.get("kind") == "conn":
        delivered = "-"
        bpc = f"{r['bytes_per_conn']:,}" if r.get("bytes_per_conn") is not None else "-"
        if r.get("conn_per_s"):
            notes.append(f"{r['connected']} in {r['connect_s']} s = {r['conn_per_s']:,}/s")
        else:
            notes.append(f"connected {r.get('connected')}, failed {r.get('failed')}")
    if r.get("failed") and r.get("kind") != "conn":
        notes.append(f"failed {r['failed']}")
    if r.get("errors"):
        notes.append(f"errors {r['errors']}")
    if not r.get("broker_alive", True):
        notes.append("BROKER DIED")
    if r.get("gen_util") and r["gen_util"] > 0.9 and r.get("kind") != "conn":
        notes.append(f"gen cpu {r['gen_util']:.0%}")
    cpu = "-" if r.get("cpu_per_m") is None else f"{r['cpu_per_m']:.2f}"
    return [r["broker"], r["id"], offered, delivered, lost, fmt_ms(r.get("p50_ms")),
            fmt_ms(r.get("p99_ms")), cpu, mb(r.get("rss_max")), mb(r.get("hwm")), bpc,
            f"{r['load1']:.1f}", "; ".join(notes)]


HEADER = ["broker", "scenario", "offered", "delivered/s", "lost", "p50 ms", "p99 ms",
          "CPU-s/M", "RSS MB", "HWM MB", "B/conn", "load", "notes"]


def table_text(rows):
    cells = [HEADER] + [row_cells(r) for r in rows]
    w = [max(len(str(c[i])) if i < len(c) else 0 for c in cells) for i in range(len(HEADER))]
    lines = []
    for i, c in enumerate(cells):
        lines.append("  ".join(str(x).ljust(w[j]) for j, x in enumerate(c)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * x for x in w))
    return "\n".join(lines)


def table_md(rows):
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in row_cells(r)) + " |")
    return "\n".join(out)


def equal_load(rows):
    """Search steps at the same offered rate, side by side: (header, rows of cells)."""
    brokers = []
    for r in rows:
        if r["broker"] not in brokers:
            brokers.append(r["broker"])
    by_run = {}
    for r in rows:
        if r.get("kind") != "search":
            continue
        for st in r.get("steps", []):
            by_run.setdefault(r["id"], {}).setdefault(st["offered_rate"], {})[r["broker"]] = st
    out = []
    for rid, rates in by_run.items():
        for rate in sorted(rates):
            steps = rates[rate]
            if len(steps) < 2:
                continue
            cells = [rid, fmt_rate(rate)]
            for b in brokers:
                st = steps.get(b)
                if st is None or "p99_ms" not in st:
                    cells.append("-")
                    continue
                ok = st.get("good", False)
                cpu = "-" if st.get("cpu_per_m") is None else f"{st['cpu_per_m']:.1f}"
                cells.append(f"{fmt_ms(st['p99_ms'])} / {cpu}" + ("" if ok else " (bad)"))
            out.append(cells)
    return ["scenario", "offered"] + [f"{b} p99 ms / CPU-s/M" for b in brokers], out


def machine_info(bins, brokers):
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    info = {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "allowed_cpus": sorted(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "versions": {"ringmq": version_of("ringmq", bins["ringmq"])},
    }
    for b in ("mosquitto", "rumqttd"):
        if any(x == b for x in brokers):
            info["versions"][b] = version_of(b, bins[b])
    return info


# ----------------------------------------------------------------------------------------------


def expand(names, allowed, aliases):
    out = []
    for n in names.split(","):
        n = n.strip()
        if not n:
            continue
        for m in aliases.get(n, [n]):
            if m not in allowed:
                sys.exit(f"peers.py: unknown name {m!r}; choose from {', '.join(allowed)} "
                         f"(or {', '.join(aliases)})")
            if m not in out:
                out.append(m)
    return out


def report(rows, info, total, out):
    """Prints the tables; with `out`, writes OUT.json and OUT.md."""
    text = table_text(rows)
    print(text)
    eq_header, eq_rows = equal_load(rows)
    if eq_rows:
        cells = [eq_header] + eq_rows
        w = [max(len(c[i]) for c in cells) for i in range(len(eq_header))]
        print("\nAt equal offered load (the rate searches' common steps; (bad) = the step failed "
              "the search's rule):")
        for i, c in enumerate(cells):
            print("  ".join(x.ljust(w[j]) for j, x in enumerate(c)).rstrip())
            if i == 0:
                print("  ".join("-" * x for x in w))
    print(f"\n{len(rows)} rows in {total:.0f} s; load average {info['loadavg_start'][0]:.2f} "
          f"at start, {info['loadavg_end'][0]:.2f} at end; {info['placement']}")
    if out:
        with open(out + ".json", "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=1, default=str)
        with open(out + ".md", "w") as f:
            v = info["versions"]
            f.write(f"Command: `{info['command']}`\n\n")
            f.write(f"Machine: {info['cpus']} x {info['cpu_model']}, Linux {info['kernel']}, "
                    f"load average {info['loadavg_start'][0]:.2f} at start / "
                    f"{info['loadavg_end'][0]:.2f} at end; {info['placement']}.\n\n")
            f.write("Versions: " + "; ".join(f"{k}: {x}" for k, x in v.items()) + "\n\n")
            f.write(table_md(rows) + "\n\n")
            if eq_rows:
                f.write("At equal offered load (the rate searches' common steps; (bad) = the "
                        "step failed the search's rule):\n\n")
                f.write("| " + " | ".join(eq_header) + " |\n|" + "---|" * len(eq_header) + "\n")
                for c in eq_rows:
                    f.write("| " + " | ".join(c) + " |\n")
                f.write("\n")
            f.write(f"Total time: {total:.0f} s.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Scenarios: " + ", ".join(ALL_SCENARIOS) +
                                 ". Brokers: " + ", ".join(ALL_BROKERS) +
                                 " (ringmq = ringmq-1,ringmq-2).")
    ap.add_argument("--brokers", help="comma-separated (default: all that are installed)")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                    help="comma-separated groups (default: all)")
    ap.add_argument("--only", help="only runs whose id contains one of these comma-separated "
                                   "strings (e.g. 'q0 16B,@500')")
    ap.add_argument("--ladder", help="comma-separated offered rates replacing every selected "
                                     "search's ladder (e.g. 50000 to re-measure one step)")
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke test: 1-second runs, one rate step, small counts")
    ap.add_argument("--out", help="write PATH.json and PATH.md (PATH without extension)")
    ap.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    ap.add_argument("--bin-dir", help="where ringmq and ringmq-bench are (target/release)")
    ap.add_argument("--mosquitto", help="mosquitto binary")
    ap.add_argument("--rumqttd", help="rumqttd binary")
    ap.add_argument("--list", action="store_true", help="print the matrix and exit")
    ap.add_argument("--render", metavar="JSON",
                    help="print (and with --out write) the tables of an earlier run's JSON, its "
                         "searches judged again with the current rules; runs nothing")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args()

    groups = expand(args.scenarios, ALL_SCENARIOS, {"all": ALL_SCENARIOS})
    runs = [r for r in matrix(args.quick) if r["group"] in groups]
    if args.ladder:
        ladder = [float(x) for x in args.ladder.split(",") if x.strip()]
        for r in runs:
            if r["kind"] == "search":
                r["ladder"] = ladder
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        runs = [r for r in runs if any(k in r["id"] for k in keys)]
    if args.list:
        for r in runs:
            ladder = f"  --rate {{{', '.join(f'{x:g}' for x in r['ladder'])}}}" \
                if r["kind"] == "search" else ""
            print(f"{r['id']:32} ringmq-bench {' '.join(r['args'])}{ladder}")
        print("\n# mosquitto.conf\n" + MOSQUITTO_CONF.format(port="PORT"))
        print("# rumqttd.toml\n" + RUMQTTD_CONF.format(port="PORT"))
        return 0

    if args.render:
        with open(args.render) as f:
            earlier = json.load(f)
        for r in earlier["rows"]:
            if r.get("kind") == "search":
                rejudge(r)
        info = earlier["machine"]
        info["command"] += "  (rendered again by peers.py --render)"
        report(earlier["rows"], info, info.get("total_s", 0), args.out)
        return 0

    bins = find_bins(args)
    if args.brokers:
        brokers = expand(args.brokers, ALL_BROKERS, ALIASES)
        for b in brokers:
            if b in WHAT_TO_INSTALL and not bins[b]:
                sys.exit(f"peers.py: {WHAT_TO_INSTALL[b]}")
    else:
        brokers = []
        for b in ALL_BROKERS:
            if b in WHAT_TO_INSTALL and not bins[b]:
                print(f"peers.py: skipping {b}: {WHAT_TO_INSTALL[b]}", file=sys.stderr)
            else:
                brokers.append(b)

    if not args.no_build:
        print("peers.py: cargo build --release", file=sys.stderr, flush=True)
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    for k in ("ringmq", "bench"):
        if not os.path.isfile(bins[k]):
            sys.exit(f"peers.py: {bins[k]} missing: run `cargo build --release`")

    # Both sides of 15,000 loopback connections: each process needs its own fds.
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        need = max([r.get("conns", 0) for r in runs] + [0]) + 100
        if hard < need:
            print(f"peers.py: open-files limit {hard} < {need}: conn will fail", file=sys.stderr)
    except (ImportError, ValueError, OSError):
        pass

    info = machine_info(bins, brokers)
    single, gen, both = placement()
    info["placement"] = (f"single-core brokers on CPU {single[0]}, generator (1 thread) on CPU "
                         f"{gen[0]}; ringmq-2 on CPUs {both[0]},{both[1]} with the generator "
                         f"unpinned" if single else "one CPU: nothing pinned")
    info["command"] = " ".join(["benches/peers.py"] + sys.argv[1:])
    tmp = tempfile.mkdtemp(prefix="ringmq-peers-")
    ctx = {"tmp": tmp, "bins": bins, "quick": args.quick, "seq": 0, "quiet": args.quiet}
    if not args.quiet:
        print(f"peers.py: {len(runs)} runs x {len(brokers)} brokers "
              f"({', '.join(brokers)}); logs in {tmp}; {info['placement']}",
              file=sys.stderr, flush=True)

    rows = []
    t_start = time.time()
    for run in runs:
        for b in brokers:
            t0 = time.time()
            if run["kind"] == "search":
                d = float(run["args"][run["args"].index("-d") + 1])
                r = search(ctx, b, run, timeout_s=d + 40)
            else:
                if run["kind"] == "conn":
                    hold = float(run["args"][run["args"].index("-d") + 1])
                    timeout = run["conns"] / 1000 + hold + 60
                else:
                    timeout = float(run["args"][run["args"].index("-d") + 1]) + 60
                r = run_once(ctx, b, run, [], timeout)
                note(ctx, b, run["id"], r)
            r.update(id=run["id"], group=run["group"], kind=run["kind"],
                     offered=run["offered"], run_s=round(time.time() - t0, 1))
            rows.append(r)
    total = time.time() - t_start
    info["loadavg_end"] = os.getloadavg()
    info["total_s"] = round(total, 1)

    report(rows, info, total, args.out)
    shutil.rmtree(tmp, ignore_errors=True) if not any("error" in r for r in rows) else None
    return 0


if __name__ == "__main__":
    sys.exit(main())
