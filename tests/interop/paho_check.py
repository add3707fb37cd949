#!/usr/bin/env python3
"""Drives a running ringmq with Eclipse paho-mqtt clients (MQTT 3.1.1 and 5.0).

Usage: paho_check.py HOST PORT

Checks, for each protocol version (and across versions): QoS 0/1/2 round trips, a retained
message, a will published on an abrupt close, and a persistent session that gets the messages
queued while it was offline. Prints one line per check; exits non-zero on the first failure.
Works with paho-mqtt 1.x and 2.x (the 1.x callback API is requested from 2.x).
"""

import queue
import socket
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = sys.argv[1]
PORT = int(sys.argv[2])
TIMEOUT = 10.0
RUN = uuid.uuid4().hex[:8]


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


class Client:
    """A paho client running its network loop in a thread, with queues for what arrives."""

    def __init__(self, name, v5, clean=True, will=None, session_expiry=None):
        self.name = name
        self.v5 = v5
        self.client_id = "py-%s-%s" % (RUN, name)
        kwargs = {}
        if hasattr(mqtt, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION1
        if v5:
            self.c = mqtt.Client(client_id=self.client_id, protocol=mqtt.MQTTv5, **kwargs)
        else:
            self.c = mqtt.Client(
                client_id=self.client_id, clean_session=clean, protocol=mqtt.MQTTv311, **kwargs
            )
        self.messages = queue.Queue()
        self.subacks = queue.Queue()
        self.connected = threading.Event()
        self.connack = None
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.c.on_subscribe = lambda _c, _u, mid, *rest: self.subacks.put(mid)
        if will is not None:
            topic, payload, qos = will
            self.c.will_set(topic, payload, qos=qos, retain=False)
        if v5:
            props = Properties(PacketTypes.CONNECT)
            if session_expiry is not None:
                props.SessionExpiryInterval = session_expiry
            self.c.connect(HOST, PORT, keepalive=30, clean_start=clean, properties=props)
        else:
            self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        check(self.connected.wait(TIMEOUT), "%s: no CONNACK" % name)
        flags, rc = self.connack
        check(rc == 0, "%s: CONNACK %s" % (name, rc))
        self.session_present = bool(flags.get("session present"))

    def _on_connect(self, _c, _u, flags, rc, properties=None):
        self.connack = (flags, rc)
        self.connected.set()

    def subscribe(self, topic, qos):
        result, mid = self.c.subscribe(topic, qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, "%s: subscribe %s" % (self.name, result))
        try:
            while self.subacks.get(timeout=TIMEOUT) != mid:
                pass
        except queue.Empty:
            raise CheckFailed("%s: no SUBACK for %s" % (self.name, topic))

    def publish(self, topic, payload, qos, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT) if _wait_takes_timeout() else info.wait_for_publish()
        check(info.is_published(), "%s: publish to %s not acknowledged" % (self.name, topic))

    def expect(self, topic, timeout=TIMEOUT):
        """The next message on `topic` (other topics skipped), or None."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                return None
            if msg.topic == topic:
                return msg

    def drain(self, quiet=0.3):
        while True:
            try:
                self.messages.get(timeout=quiet)
            except queue.Empty:
                return

    def disconnect(self):
        self.c.disconnect()
        self.c.loop_stop()

    def abort(self):
        """Closes the TCP connection without DISCONNECT."""
        sock = self.c.socket()
        self.c.loop_stop()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _wait_takes_timeout():
    import inspect

    try:
        return "timeout" in inspect.signature(mqtt.MQTTMessageInfo.wait_for_publish).parameters
    except (TypeError, ValueError):
        return False


def await_route(sub, pub, topic):
    """Publishes QoS 0 probes from `pub` until `sub` (subscribed to `topic`) gets one: the
    subscription is then known on the publisher's shard."""
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        pub.publish(topic, b"probe", 0)
        if sub.expect(topic, timeout=0.2) is not None:
            sub.drain()
            return
    raise CheckFailed("route to %s never established" % topic)


def vname(v5):
    return "v5" if v5 else "v311"


def qos_round_trip(sub_v5, pub_v5):
    tag = "%s-%s" % (vname(sub_v5), vname(pub_v5))
    sub = Client("sub-" + tag, sub_v5)
    pub = Client("pub-" + tag, pub_v5)
    base = "py/%s/%s" % (RUN, tag)
    sub.subscribe(base + "/#", 2)
    await_route(sub, pub, base + "/probe")
    for qos in (0, 1, 2):
        topic = "%s/q%d" % (base, qos)
        payload = ("qos %d %s" % (qos, tag)).encode()
        pub.publish(topic, payload, qos)
        msg = sub.expect(topic)
        check(msg is not None, "%s: QoS %d message not received" % (tag, qos))
        check(msg.payload == payload, "%s: payload %r" % (tag, msg.payload))
        check(msg.qos == qos, "%s: delivered at QoS %d, sent at %d" % (tag, msg.qos, qos))
    # QoS 2 exactly once: nothing more arrives.
    check(sub.expect(base + "/q2", timeout=0.5) is None, "%s: QoS 2 duplicate" % tag)
    sub.disconnect()
    pub.disconnect()
    print("ok  QoS 0/1/2 round trip, subscriber %s, publisher %s" % (vname(sub_v5), vname(pub_v5)))


def retained(v5):
    name = vname(v5)
    topic = "py/%s/retained/%s" % (RUN, name)
    pub = Client("ret-pub-" + name, v5)
    pub.publish(topic, b"kept", 1, retain=True)
    msg = None
    # The retained store may be on another shard: retry a subscriber that came too early.
    for attempt in range(5):
        sub = Client("ret-sub-%s-%d" % (name, attempt), v5)
        sub.subscribe(topic, 1)
        msg = sub.expect(topic, timeout=2)
        sub.disconnect()
        if msg is not None:
            break
    check(msg is not None, "%s: retained message not delivered to a new subscriber" % name)
    check(msg.payload == b"kept", "%s: retained payload %r" % (name, msg.payload))
    check(msg.retain, "%s: retain flag not set on a retained message" % name)
    pub.publish(topic, b"", 1, retain=True)
    pub.disconnect()
    print("ok  retained message (%s)" % name)


def will(v5):
    name = vname(v5)
    topic = "py/%s/will/%s" % (RUN, name)
    watcher = Client("will-watch-" + name, True)
    watcher.subscribe(topic, 1)
    dying = Client("will-" + name, v5, will=(topic, b"gone", 1))
    # The dying client publishes on its own shard, as its will will be.
    await_route(watcher, dying, topic)
    dying.abort()
    msg = watcher.expect(topic)
    check(msg is not None, "%s: will not published after an abrupt close" % name)
    check(msg.payload == b"gone", "%s: will payload %r" % (name, msg.payload))
    watcher.disconnect()
    print("ok  will on abrupt close (%s)" % name)


def persistent_session(v5):
    name = vname(v5)
    topic = "py/%s/offline/%s" % (RUN, name)
    if v5:
        sub = Client("persist-" + name, True, clean=True, session_expiry=300)
    else:
        sub = Client("persist-" + name, False, clean=False)
    check(not sub.session_present, "%s: session present on a new client id" % name)
    sub.subscribe(topic, 1)
    pub = Client("persist-pub-" + name, v5)
    await_route(sub, pub, topic)
    sub.disconnect()
    sent = [("offline %d" % i).encode() for i in range(3)]
    for payload in sent:
        pub.publish(topic, payload, 1)
    if v5:
        back = Client("persist-" + name, True, clean=False, session_expiry=300)
    else:
        back = Client("persist-" + name, False, clean=False)
    check(back.session_present, "%s: session not present on resume" % name)
    got = []
    for _ in sent:
        msg = back.expect(topic)
        check(msg is not None, "%s: queued messages missing, got %r" % (name, got))
        got.append(msg.payload)
    check(got == sent, "%s: queued messages %r, expected %r" % (name, got, sent))
    back.disconnect()
    pub.disconnect()
    print("ok  persistent session resume with offline queue (%s)" % name)


def main():
    print("paho-mqtt %s, broker %s:%d" % (getattr(mqtt, "__version__", "?"), HOST, PORT))
    try:
        for sub_v5 in (False, True):
            for pub_v5 in (False, True):
                qos_round_trip(sub_v5, pub_v5)
        for v5 in (False, True):
            retained(v5)
            will(v5)
            persistent_session(v5)
    except CheckFailed as e:
        print("FAIL %s" % e)
        sys.exit(1)
    print("all paho checks passed")


if __name__ == "__main__":
    main()
