//! Black-box test support: starts the real `ringmq` binary on a free loopback port (stopped on
//! drop), picks client ids by home shard, and a raw MQTT client built on the project's codec for
//! byte-exact checks. Tests also use independent clients (rumqttc, mosquitto, paho) next to it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringmq::protocol::{
    ConnAck, Connect, ConnectProperties, Decoder, MqttStr, Packet, ProtocolVersion, QoS,
};

pub const V31: ProtocolVersion = ProtocolVersion::V31;
pub const V311: ProtocolVersion = ProtocolVersion::V311;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// How long a test waits for an expected packet.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running broker process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub shards: usize,
    _config: Option<tempfile_path::TempPath>,
}

mod tempfile_path {
    /// A file removed on drop.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// A free loopback port below the kernel's ephemeral range (32768-60999 by default), so that no
/// client socket of a concurrently running test can take it between this check and the broker's
/// bind. Each call in a process returns a different port.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread processes (test binaries) over the range by pid; step within one process.
    let base = 20_000 + (std::process::id() * 97) % 10_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (base + n * 7) % 12_000 + 20_000;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

/// Sockets listening on 127.0.0.1:`port` (IPv4, from /proc/net/tcp).
fn listening_sockets(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, rem_address, st (0A = LISTEN)
            f.len() > 3 && f[1] == local && f[3] == "0A"
        })
        .count()
}

impl Broker {
    pub fn start(shards: usize) -> Broker {
        Broker::start_with(shards, "", &[])
    }

    /// Starts ringmq with `config` (TOML, may be empty) and extra command-line arguments.
    /// A broker that exits before listening (its port taken meanwhile) is started again on
    /// another port.
    pub fn start_with(shards: usize, config: &str, args: &[&str]) -> Broker {
        for _ in 0..3 {
            if let Some(b) = Broker::try_start(shards, config, args) {
                return b;
            }
        }
        panic!("ringmq exited before listening, three times");
    }

    fn try_start(shards: usize, config: &str, args: &[&str]) -> Option<Broker> {
        let port = free_port();
        let config_file = (!config.is_empty()).then(|| {
            let path = std::env::temp_dir()
                .join(format!("ringmq-test-{}-{port}.toml", std::process::id()));
            std::fs::write(&path, config).unwrap();
            tempfile_path::TempPath(path)
        });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmq"));
        cmd.arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--shards")
            .arg(shards.to_string())
            .arg("--no-pin")
            .arg("--log-level")
            .arg("warn")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(f) = &config_file {
            cmd.arg("--config").arg(&f.0);
        }
        let child = cmd.spawn().expect("start ringmq");
        let mut broker = Broker {
            child: Some(child),
            port,
            shards,
            _config: config_file,
        };
        broker.wait_ready().then_some(broker)
    }

    /// True once every shard's listener is listening and the broker accepts a connection;
    /// false if it exited first.
    ///
    /// Every shard's listener, not just one: the shards' SO_REUSEPORT sockets start listening
    /// one after the other, and a handshake could complete on the first while the next was
    /// joining the port's reuseport group — a test's next connect was once refused (CI,
    /// broker_smoke).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if listening_sockets(self.port) >= self.shards
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return true;
            }
            let child = self.child.as_mut().expect("running");
            if child.try_wait().expect("child status").is_some() {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ringmq did not start listening on {}", self.port);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("ringmq did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client id whose home shard is `shard` of `nr_shards`.
pub fn id_on(shard: usize, nr_shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| ringmq::broker::home_shard(id, nr_shards) == shard)
        .unwrap()
}

/// A minimal CONNECT.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: MqttStr::from(client_id),
        will: None,
        username: None,
        password: None,
    }
}

/// A blocking MQTT client speaking through the project's codec, for exact checks.
pub struct Raw {
    pub stream: TcpStream,
    pub version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
    /// Packets read ahead by [`Raw::publish`] while waiting for its acknowledgement.
    stashed: std::collections::VecDeque<Packet>,
}

impl Raw {
    /// Opens a TCP connection without sending anything.
    pub fn open(broker: &Broker, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(broker.addr()).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw::from_stream(stream, version)
    }

    /// Wraps a connection opened (and maybe already connected) elsewhere.
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion) -> Raw {
        Raw {
            stream,
            version,
            decoder: Decoder::with_version(version, 1 << 28),
            buf: BytesMut::new(),
            stashed: Default::default(),
        }
    }

    /// Connects and returns the CONNACK.
    pub fn connect_with(broker: &Broker, c: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(broker, c.protocol);
        raw.send(&Packet::Connect(Box::new(c)));
        match raw.recv() {
            Some(Packet::ConnAck(ack)) => (raw, *ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with a minimal CONNECT and asserts success.
    pub fn connect(
        broker: &Broker,
        version: ProtocolVersion,
        id: &str,
        clean_start: bool,
    ) -> (Raw, ConnAck) {
        let (raw, ack) = Raw::connect_with(broker, connect_packet(version, id, clean_start));
        assert_eq!(ack.reason, ringmq::protocol::ReasonCode::Success, "{ack:?}");
        (raw, ack)
    }

    pub fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        p.encode(self.version, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next packet within `timeout`; `None` on timeout or when the broker closed the socket.
    pub fn recv_within(&mut self, timeout: Duration) -> Option<Packet> {
        if let Some(p) = self.stashed.pop_front() {
            return Some(p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(p)) = self.decoder.decode(&mut self.buf) {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    pub fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT)
    }

    /// Asserts nothing arrives for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        if let Some(p) = self.recv_within(d) {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Asserts the broker closes the connection (after any packets, which are returned).
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(p)) = self.decoder.decode(&mut self.buf) {
                got.push(p);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "connection not closed; got {got:?}"
            );
            self.stream
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return got,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return got,
            }
        }
    }

    /// Drops the TCP connection without DISCONNECT.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

pub fn qos(n: u8) -> QoS {
    QoS::from_u8(n).unwrap()
}

/// A topic `{prefix}/{i}` whose retained message lives on `shard` of `nr_shards`.
pub fn topic_on(shard: usize, nr_shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}/{i}"))
        .find(|t| ringmq::broker::mesh::retain_shard(t, nr_shards) == shard)
        .unwrap()
}

/// A PUBLISH of `payload` to `topic`; `id` is used as the packet id for QoS 1 and 2.
pub fn publish(topic: &str, q: QoS, id: u16, payload: &[u8]) -> ringmq::protocol::Publish {
    ringmq::protocol::Publish {
        qos: q,
        topic: MqttStr::from(topic),
        packet_id: std::num::NonZeroU16::new(if q == QoS::AtMostOnce { 0 } else { id }),
        payload: bytes::Bytes::copy_from_slice(payload),
        ..Default::default()
    }
}

/// Subscription options with `qos` and everything else default.
pub fn opts(q: u8) -> ringmq::protocol::SubscriptionOptions {
    ringmq::protocol::SubscriptionOptions {
        qos: qos(q),
        ..Default::default()
    }
}

impl Raw {
    /// Sends a SUBSCRIBE (with an optional Subscription Identifier) and returns the SUBACK codes.
    pub fn subscribe_with(
        &mut self,
        filters: &[(&str, ringmq::protocol::SubscriptionOptions)],
        sub_id: Option<u32>,
    ) -> Vec<ringmq::protocol::ReasonCode> {
        let s = ringmq::protocol::Subscribe {
            packet_id: std::num::NonZeroU16::new(1).unwrap(),
            properties: ringmq::protocol::SubscribeProperties {
                subscription_identifier: sub_id.and_then(std::num::NonZeroU32::new),
                ..Default::default()
            },
            filters: filters
                .iter()
                .map(|(f, o)| (MqttStr::from(*f), *o))
                .collect(),
        };
        self.send(&Packet::Subscribe(s));
        match self.recv() {
            Some(Packet::SubAck(a)) => a.reasons,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends an UNSUBSCRIBE and returns the UNSUBACK codes (v5; empty for v3).
    pub fn unsubscribe_with(&mut self, filters: &[&str]) -> Vec<ringmq::protocol::ReasonCode> {
        let u = ringmq::protocol::Unsubscribe {
            packet_id: std::num::NonZeroU16::new(2).unwrap(),
            properties: Default::default(),
            filters: filters.iter().map(|f| MqttStr::from(*f)).collect(),
        };
        self.send(&Packet::Unsubscribe(u));
        match self.recv() {
            Some(Packet::UnsubAck(a)) => a.reasons,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Subscribes to one filter at QoS `q` and asserts it is granted as asked.
    pub fn subscribe(&mut self, filter: &str, q: u8) {
        let granted = self.subscribe_with(&[(filter, opts(q))], None);
        assert_eq!(granted[0] as u8, q, "SUBACK for {filter}: {granted:?}");
    }

    /// Publishes and completes the QoS 1 / 2 exchange; returns the PUBACK / PUBREC reason
    /// (Success for QoS 0).
    /// PUBLISHes (and PUBRELs) arriving meanwhile are kept for the next `recv`.
    pub fn publish(&mut self, p: ringmq::protocol::Publish) -> ringmq::protocol::ReasonCode {
        use ringmq::protocol::{Ack, ReasonCode};
        let (q, pid) = (p.qos, p.packet_id);
        self.send(&Packet::Publish(p));
        match (q, pid) {
            (QoS::AtLeastOnce, Some(id)) => match self.recv_ack() {
                Some(Packet::PubAck(a)) if a.packet_id == id => a.reason,
                other => panic!("expected PUBACK {id}, got {other:?}"),
            },
            (QoS::ExactlyOnce, Some(id)) => {
                let reason = match self.recv_ack() {
                    Some(Packet::PubRec(a)) if a.packet_id == id => a.reason,
                    other => panic!("expected PUBREC {id}, got {other:?}"),
                };
                if !reason.is_error() {
                    self.send(&Packet::PubRel(Ack::new(id)));
                    match self.recv_ack() {
                        Some(Packet::PubComp(a)) if a.packet_id == id => {}
                        other => panic!("expected PUBCOMP {id}, got {other:?}"),
                    }
                }
                reason
            }
            _ => ReasonCode::Success,
        }
    }

    /// The next packet that is not a PUBLISH or PUBREL (those are stashed for later).
    fn recv_ack(&mut self) -> Option<Packet> {
        let mut ahead = Vec::new();
        let got = loop {
            match self.recv_within(WAIT) {
                Some(p @ (Packet::Publish(_) | Packet::PubRel(_))) => ahead.push(p),
                other => break other,
            }
        };
        for p in ahead.into_iter().rev() {
            self.stashed.push_front(p);
        }
        got
    }

    /// The next PUBLISH within `timeout`, acknowledged (PUBACK, or PUBREC with the PUBCOMP sent
    /// when its PUBREL shows up later). PUBRELs met on the way are answered and skipped.
    pub fn recv_publish_within(&mut self, timeout: Duration) -> Option<ringmq::protocol::Publish> {
        use ringmq::protocol::Ack;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left)? {
                Packet::Publish(p) => {
                    match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(Ack::new(id))),
                        (QoS::ExactlyOnce, Some(id)) => self.send(&Packet::PubRec(Ack::new(id))),
                        _ => {}
                    }
                    return Some(p);
                }
                Packet::PubRel(a) => self.send(&Packet::PubComp(Ack::new(a.packet_id))),
                other => panic!("expected PUBLISH, got {other:?}"),
            }
        }
    }

    /// The next PUBLISH (acknowledged); panics after [`WAIT`].
    pub fn recv_publish(&mut self) -> ringmq::protocol::Publish {
        self.recv_publish_within(WAIT)
            .expect("expected a PUBLISH, got nothing")
    }

    /// Asserts no PUBLISH arrives for `d` (PUBRELs are answered).
    pub fn expect_no_publish(&mut self, d: Duration) {
        if let Some(p) = self.recv_publish_within(d) {
            panic!("expected no PUBLISH, got {p:?}");
        }
    }

    /// Every PUBLISH until `quiet` passes without one.
    pub fn drain_publishes(&mut self, quiet: Duration) -> Vec<ringmq::protocol::Publish> {
        std::iter::from_fn(|| self.recv_publish_within(quiet)).collect()
    }
}

/// Subscribes to one filter (packet id 1) and asserts the SUBACK grants it.
pub fn subscribe(c: &mut Raw, filter: &str, q: QoS) {
    c.subscribe(filter, q as u8);
}

/// A PUBLISH packet; `id` is ignored for QoS 0.
pub fn publish_packet(topic: &str, q: QoS, id: u16, payload: &[u8]) -> Packet {
    Packet::Publish(publish(topic, q, id, payload))
}

/// The next packet, which must be a PUBLISH.
pub fn expect_publish(c: &mut Raw) -> ringmq::protocol::Publish {
    match c.recv() {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

impl Raw {
    /// Publishes at QoS 0 or 1 (waiting for the PUBACK); packet id 1.
    pub fn publish_to(&mut self, topic: &str, q: QoS, payload: &[u8]) {
        assert!(q != QoS::ExactlyOnce, "use the packets for QoS 2");
        self.send(&publish_packet(topic, q, 1, payload));
        if q == QoS::AtLeastOnce {
            match self.recv() {
                Some(Packet::PubAck(a)) => assert_eq!(a.packet_id.get(), 1),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
    }

    /// Sends DISCONNECT (v5 reason 0x00) and waits for the broker to close the connection.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Default::default()));
        self.expect_closed();
    }
}

/// Checks that `sub`'s subscription matching `topic` is live for `publ` right after its SUBACK
/// (the broker holds the SUBACK until every shard has the route): one QoS 0 probe (payload
/// `probe`) published now must arrive.
pub fn sync_route(publ: &mut Raw, sub: &mut Raw, topic: &str) {
    publ.publish_to(topic, QoS::AtMostOnce, b"probe");
    match sub.recv() {
        Some(Packet::Publish(p)) if &p.payload[..] == b"probe" => {}
        other => panic!("the probe published after the SUBACK did not arrive: {other:?}"),
    }
}
