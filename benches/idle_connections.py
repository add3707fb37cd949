#!/usr/bin/env python3
"""Memory per idle connection of a running broker.

usage: idle_connections.py PORT N BROKER_PID

Opens N MQTT 3.1.1 connections (clean session, keep-alive 600 s), each subscribed to its own
topic at QoS 1, waits for every CONNACK and SUBACK, then reports the broker's RSS growth per
connection (VmRSS of BROKER_PID). Needs N + a few file descriptors in this process.
"""
import socket, sys, time, struct
port=int(sys.argv[1]); n=int(sys.argv[2]); pid=sys.argv[3]
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])*1024
def enc_str(s): b=s.encode(); return struct.pack(">H",len(b))+b
def pkt(t, body):
    rl=len(body); out=bytes([t]); 
    while True:
        d=rl%128; rl//=128
        out+=bytes([d|0x80 if rl else d])
        if not rl: break
    return out+body
socks=[]
base=rss()
for i in range(n):
    s=socket.create_connection(("127.0.0.1",port))
    cid=f"idle-{i}"
    body=enc_str("MQTT")+bytes([4,0x02])+struct.pack(">H",600)+enc_str(cid)
    s.sendall(pkt(0x10,body))
    sub=struct.pack(">H",1)+enc_str(f"idle/{i}")+bytes([1])
    s.sendall(pkt(0x82,sub))
    socks.append(s)
# read acks
for s in socks:
    got=b""
    while len(got)<4+5:
        got+=s.recv(64)
time.sleep(2)
after=rss()
print(f"{n} idle connections: RSS {base/1e6:.1f} MB -> {after/1e6:.1f} MB, {(after-base)/n:.0f} B per connection")
