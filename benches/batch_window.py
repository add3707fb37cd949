#!/usr/bin/env python3
"""What ringmq's batching window (`runtime.batch_window_us`) buys and costs, beside Mosquitto.

usage: benches/batch_window.py [--reps N] [--windows 0,500,1000] [--rates 20000,50000]
                               [--closed 4,10,100] [--no-mosquitto] [--bin-dir target/release]
       benches/batch_window.py --quick    # CI smoke test: 1-second runs, one of each

Python 3 standard library only; needs `cargo build --release` and, unless --no-mosquitto,
Mosquitto (Debian package `mosquitto`). Each run gets a fresh broker on a free loopback port,
pinned to the second allowed CPU (with one CPU, both share it) (ringmq `--shards 1 --cores C`, Mosquitto via `taskset`), the
load generator (one thread) on the first.

Open loop: `ringmq-bench fanin --publishers 100 --subscribers 1 -q 0 -s 16 --rate R -d 10`,
publishers on their own clocks, at each rate, for each window and for Mosquitto.
Closed loop: `ringmq-bench fanin --publishers P --subscribers 1 -q 1 --inflight 1 -I 0 -d 5`,
each publisher waiting for its PUBACK before the next PUBLISH, for each window (the case a
window must not slow down).

Per run: delivered msg/s, p50 / p99 latency, lost, and broker CPU seconds (utime + stime of all
threads, /proc/PID/stat) per million delivered. Prints the median of --reps runs (interleaved,
so drifts in the shared machine's load hit every configuration alike) with the range of CPU-s/M.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_listening(port, proc):
    for _ in range(100):
        if proc.poll() is not None:
            sys.exit(f"broker exited at start-up with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("broker did not start listening")


def run(args, tmp, broker, window, bench_args, cores):
    port = free_port()
    if broker == "mosquitto":
        conf = os.path.join(tmp, f"m{port}.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 32\n"
                    "max_queued_messages 1000\nset_tcp_nodelay true\npersistence false\n")
        cmd = ["taskset", "-c", str(cores[1]), args.mosquitto, "-c", conf]
    else:
        conf = os.path.join(tmp, f"r{port}.toml")
        with open(conf, "w") as f:
            f.write(f"[runtime]\nbatch_window_us = {window}\n")
        cmd = [os.path.join(args.bin_dir, "ringmq"), "--bind", f"127.0.0.1:{port}", "--shards",
               "1", "--cores", str(cores[1]), "--log-level", "error", "--config", conf]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        time.sleep(0.3)
        before = cpu_seconds(proc.pid)
        out = subprocess.run(
            [os.path.join(args.bin_dir, "ringmq-bench"), "fanin", "-p", str(port), "--threads",
             "1", "--cores", str(cores[0]), "--quiet", "--subscribers", "1", "-s", "16"]
            + bench_args, capture_output=True, text=True)
        after = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    s = json.loads(out.stdout)
    lat = s.get("latency_us", {})
    return {
        "delivered": s["delivered_per_s"],
        "p50": lat.get("p50", 0) / 1000,
        "p99": lat.get("p99", 0) / 1000,
        "lost": s["lost"],
        "cpu_per_m": (after - before) / max(s["received"], 1) * 1e6,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--windows", default="0,500,1000")
    ap.add_argument("--rates", default="20000,50000")
    ap.add_argument("--closed", default="4,10,100", help="closed-loop publisher counts")
    ap.add_argument("--no-mosquitto", action="store_true")
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--quick", action="store_true",
                    help="CI smoke test: one 1-second run per configuration, windows 0 and 500, "
                         "20k msg/s open loop, 4 publishers closed loop")
    ap.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    args = ap.parse_args()
    open_s, closed_s = ("1", "1") if args.quick else ("10", "5")
    if args.quick:
        args.reps, args.windows, args.rates, args.closed = 1, "0,500", "20000", "4"
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        # One CPU: broker and generator share it (the figures then mean little; a smoke test).
        print("note: one CPU, broker and generator share it", file=sys.stderr)
        cores = cores * 2
    windows = [int(w) for w in args.windows.split(",")]
    matrix = []
    for rate in [int(r) for r in args.rates.split(",") if r]:
        bench = ["--publishers", "100", "-q", "0", "--rate", str(rate), "-d", open_s]
        for w in windows:
            matrix.append((f"open {rate // 1000}k msg/s", f"ringmq window {w}", "ringmq", w, bench))
        if not args.no_mosquitto:
            matrix.append((f"open {rate // 1000}k msg/s", "mosquitto", "mosquitto", 0, bench))
    for p in [int(p) for p in args.closed.split(",") if p]:
        bench = ["--publishers", str(p), "-q", "1", "--inflight", "1", "-I", "0", "-d",
                 closed_s]
        for w in windows:
            matrix.append((f"closed {p} pub", f"ringmq window {w}", "ringmq", w, bench))
    results = {i: [] for i in range(len(matrix))}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for i, (load, name, broker, w, bench) in enumerate(matrix):
                r = run(args, tmp, broker, w, bench, cores)
                results[i].append(r)
                print(f"[{rep + 1}/{args.reps}] {load:16} {name:20} {r['delivered']:>10,.0f}/s "
                      f"lost {r['lost']} p50 {r['p50']:.2f} p99 {r['p99']:.2f} ms "
                      f"{r['cpu_per_m']:.2f} CPU-s/M", file=sys.stderr)
    print(f"medians of {args.reps} (CPU-s/M range in brackets); load average now "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| load | broker | delivered/s | lost | p50 ms | p99 ms | CPU-s/M |")
    print("|---|---|---|---|---|---|---|")
    for i, (load, name, _, _, _) in enumerate(matrix):
        rs = results[i]
        med = lambda k: statistics.median(r[k] for r in rs)
        cpus = [r["cpu_per_m"] for r in rs]
        print(f"| {load} | {name} | {med('delivered'):,.0f} | {max(r['lost'] for r in rs)} | "
              f"{med('p50'):.2f} | {med('p99'):.2f} | {med('cpu_per_m'):.2f} "
              f"({min(cpus):.2f}-{max(cpus):.2f}) |")


if __name__ == "__main__":
    main()
