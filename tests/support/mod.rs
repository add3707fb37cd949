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
pub const WAIT: Duration = Duration::from_secs(5);

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start(shards: usize) -> Broker {
        Broker::start_with(shards, "", &[])
    }

    /// Starts ringmq with `config` (TOML, may be empty) and extra command-line arguments.
    pub fn start_with(shards: usize, config: &str, args: &[&str]) -> Broker {
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
        let broker = Broker {
            child: Some(child),
            port,
            shards,
            _config: config_file,
        };
        broker.wait_ready();
        broker
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
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
}

impl Raw {
    /// Opens a TCP connection without sending anything.
    pub fn open(broker: &Broker, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(broker.addr()).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            version,
            decoder: Decoder::with_version(version, 1 << 28),
            buf: BytesMut::new(),
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

/// Subscribes to one filter (packet id 1) and asserts the SUBACK grants it.
pub fn subscribe(c: &mut Raw, filter: &str, q: QoS) {
    use ringmq::protocol::{Subscribe, SubscriptionOptions};
    let s = Subscribe {
        packet_id: std::num::NonZeroU16::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            MqttStr::from(filter),
            SubscriptionOptions {
                qos: q,
                ..Default::default()
            },
        )],
    };
    c.send(&Packet::Subscribe(s));
    match c.recv() {
        Some(Packet::SubAck(a)) => assert!(!a.reasons[0].is_error(), "{a:?}"),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// A PUBLISH packet; `id` is ignored for QoS 0.
pub fn publish_packet(topic: &str, q: QoS, id: u16, payload: &[u8]) -> Packet {
    Packet::Publish(ringmq::protocol::Publish {
        qos: q,
        topic: MqttStr::from(topic),
        packet_id: std::num::NonZeroU16::new(if q == QoS::AtMostOnce { 0 } else { id }),
        payload: bytes::Bytes::copy_from_slice(payload),
        ..Default::default()
    })
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
    pub fn publish(&mut self, topic: &str, q: QoS, payload: &[u8]) {
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

/// Waits until `sub`'s new subscription matching `topic` is known to `publ`'s shard: route
/// updates cross shards asynchronously, after the SUBACK. Publishes QoS 0 probes (payload
/// `probe`) until one arrives, then drains the rest.
pub fn sync_route(publ: &mut Raw, sub: &mut Raw, topic: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "route to {topic} never appeared");
        publ.publish(topic, QoS::AtMostOnce, b"probe");
        if let Some(p) = sub.recv_within(Duration::from_millis(100)) {
            assert!(
                matches!(&p, Packet::Publish(p) if &p.payload[..] == b"probe"),
                "{p:?}"
            );
            break;
        }
    }
    while let Some(p) = sub.recv_within(Duration::from_millis(300)) {
        assert!(
            matches!(&p, Packet::Publish(p) if &p.payload[..] == b"probe"),
            "{p:?}"
        );
    }
}
