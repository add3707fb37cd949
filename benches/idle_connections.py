#!/usr/bin/env python3
"""Memory per idle connection of a running broker.

usage: idle_connections.py PORT N BROKER_PID [WARMUP]

Opens N MQTT 3.1.1 connections (clean session, keep-alive 600 s), each subscribed to its own
topic at QoS 1, waits for every CONNACK and SUBACK, then reports the broker's RSS growth per
connection (VmRSS of BROKER_PID), 2 s after the last SUBACK. Needs N + a few file descriptors in
this process.

Two figures, from two bases:
- "cold": the base is taken right after start-up, as this script always did. It includes what the
  broker pays once, at its first connections, whatever their number: the pages of its code that
  the connect / subscribe path runs for the first time (file-backed, shared with every other
  process running the binary) and lazily initialised state. At N = 1,000 that is a large share.
- "warm" (the headline): first WARMUP connections (default 20) connect, subscribe and wait for
  their acks exactly like the measured ones, then disconnect; 2.5 s later the base is taken. The
  one-time costs land in the base; what the measured connections add is their own cost. Sound
  for any broker (nothing broker-specific is assumed); the warm-up clients' state is gone by the
  time the base is taken, so nothing they leave behind is per-connection state of the N.
"""
import socket, sys, time, struct
port = int(sys.argv[1]); n = int(sys.argv[2]); pid = sys.argv[3]
warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 20


def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"):
            return int(l.split()[1]) * 1024


def enc_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def pkt(t, body):
    rl = len(body); out = bytes([t])
    while True:
        d = rl % 128; rl //= 128
        out += bytes([d | 0x80 if rl else d])
        if not rl:
            break
    return out + body


def open_clients(count, prefix):
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        body = enc_str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 600) + enc_str(f"{prefix}-{i}")
        s.sendall(pkt(0x10, body))
        sub = struct.pack(">H", 1) + enc_str(f"{prefix}/{i}") + bytes([1])
        s.sendall(pkt(0x82, sub))
        socks.append(s)
    # CONNACK (4 bytes) + SUBACK (5 bytes) each
    for s in socks:
        got = b""
        while len(got) < 4 + 5:
            got += s.recv(64)
    return socks


cold = rss()
if warmup:
    for s in open_clients(warmup, "warmup"):
        s.sendall(bytes([0xE0, 0]))  # DISCONNECT
        s.close()
    time.sleep(2.5)
warm = rss()
socks = open_clients(n, "idle")
time.sleep(2)
after = rss()
print(f"{n} idle connections: RSS {warm/1e6:.1f} MB -> {after/1e6:.1f} MB, "
      f"{(after-warm)/n:.0f} B per connection (warm base, after {warmup} warm-up connections); "
      f"cold base {cold/1e6:.1f} MB: {(after-cold)/n:.0f} B per connection")
