//! Per-socket protocol state on the shard that holds the socket, and the dispatch of every
//! decoded packet to the feature that handles it. Violations end here: the spec's reason code
//! goes out (CONNACK before CONNECT succeeded, DISCONNECT after, for v5; a close for v3) and the
//! connection is marked to close.

use std::net::SocketAddr;

use bytes::BytesMut;

use super::{Broker, ClientKey, ConnId, ShardId, StallOn};
use crate::limits::FLUSH_EARLY_BYTES;
use crate::protocol::{
    Connect, DecodeError, Decoder, Disconnect, MqttStr, Packet, ProtocolVersion, ReasonCode,
    Response,
};

/// Why a connection ends; kept for the will decision and `$SYS` disconnect events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT (normal or with a reason).
    Normal,
    /// The peer closed the socket or it failed.
    TcpClosed,
    /// A protocol violation; the reason code (if any) has been queued.
    ProtocolError,
    /// Keep-alive or CONNECT deadline passed.
    KeepAliveTimeout,
    /// Another connection took the session over.
    TakenOver,
    /// The CONNECT was refused (CONNACK with an error queued).
    Refused,
    /// The broker is shutting down.
    Shutdown,
}

/// What the runtime does after feeding bytes to [`Broker::input`].
#[derive(Debug)]
pub enum Input {
    /// Keep reading (and flush the queued output).
    Continue,
    /// The CONNECT belongs to another shard: move the socket there with this CONNECT.
    Handoff {
        home: ShardId,
        connect: Box<Connect>,
    },
    /// Stop reading: flush the queued output and close.
    Close,
    /// A message from this connection went to a local subscriber whose output is congested, or
    /// filled the outbox towards another shard: stop reading until [`Broker::stall_holds`] says
    /// it has drained (or, for a subscriber, it made no progress for
    /// [`STALL_MAX_MS`](crate::limits::STALL_MAX_MS)). The bytes after the packet that stalled
    /// are left in `rx`, to be fed again then.
    Stall(StallOn),
}

#[derive(Debug)]
pub(super) struct Conn {
    pub decoder: Decoder,
    pub peer: SocketAddr,
    pub tx: BytesMut,
    pub close: Option<CloseReason>,
    /// Set once CONNECT succeeded.
    pub client: Option<ClientKey>,
    pub dirty: bool,
    /// Made no progress for [`STALL_MAX_MS`](crate::limits::STALL_MAX_MS) while congested:
    /// deliveries to it stall nobody until it makes progress again.
    pub slow: bool,
    /// Output held back (the CONNACK first) until the other shards have the routes of the
    /// client's auto subscriptions ([`Broker::cork_until_routes_synced`]).
    pub corked: bool,
    /// Bumped whenever the client shows it is consuming: it sent something, or the kernel took
    /// some of its output. Publishers stalled on it keep waiting while this moves.
    pub progress: u16,
    /// Seconds of silence allowed (1.5 × keep-alive), 0 = no keep-alive.
    pub keepalive_secs: u32,
    /// Acknowledgements waiting, in order, behind one whose retained message is not stored yet:
    /// (token, packet), token 0 = ready. `None` when nothing is held (always, but briefly):
    /// boxed, so an idle connection carries 8 bytes for it instead of 32.
    #[allow(clippy::box_collection)]
    pub held_acks: Option<Box<std::collections::VecDeque<(u64, Packet)>>>,
    /// The local (listener) port, for `$SYS` events; 0 when unknown.
    pub sockport: u16,
}

impl Conn {
    pub fn new(peer: SocketAddr, max_packet_size: u32) -> Self {
        Conn {
            decoder: Decoder::new(max_packet_size),
            peer,
            tx: BytesMut::new(),
            close: None,
            client: None,
            dirty: false,
            slow: false,
            corked: false,
            progress: 0,
            keepalive_secs: 0,
            held_acks: None,
            sockport: 0,
        }
    }

    pub fn version(&self) -> Option<ProtocolVersion> {
        self.decoder.version()
    }
}

/// What handling one packet asks of the read loop.
pub(super) enum Flow {
    Continue,
    Handoff(ShardId, Box<Connect>),
    Stop,
}

impl Broker {
    /// Decodes and handles every complete packet at the front of `rx` (bytes read from
    /// connection `id`'s socket); a partial packet stays in `rx`.
    pub fn input(&mut self, id: ConnId, rx: &mut BytesMut, now_ms: u64) -> Input {
        self.now_ms = now_ms;
        self.reading = Some(id);
        self.stall = None;
        self.made_progress(id);
        let r = self.input_packets(id, rx);
        self.reading = None;
        r
    }

    fn input_packets(&mut self, id: ConnId, rx: &mut BytesMut) -> Input {
        loop {
            let Some(conn) = self.conns.get_mut(id as usize) else {
                return Input::Close;
            };
            if conn.close.is_some() {
                return Input::Close;
            }
            let before = rx.len();
            let packet = match conn.decoder.decode(rx) {
                Ok(Some(p)) => {
                    let c = &mut self.counters;
                    c.bytes_received += (before - rx.len()) as u64;
                    c.packets_received[p.packet_type() as usize] += 1;
                    p
                }
                Ok(None) => return Input::Continue,
                Err(e) => {
                    self.decode_error(id, e);
                    return Input::Close;
                }
            };
            if conn.keepalive_secs > 0 {
                self.keepalive.extend(id, conn.keepalive_secs);
            }
            match self.dispatch(id, packet) {
                Flow::Continue => {
                    if let Some(on) = self.stall.take() {
                        return Input::Stall(on);
                    }
                }
                Flow::Handoff(home, connect) => return Input::Handoff { home, connect },
                Flow::Stop => return Input::Close,
            }
        }
    }

    fn dispatch(&mut self, id: ConnId, packet: Packet) -> Flow {
        let client = self.conns[id as usize].client;
        let Some(key) = client else {
            return match packet {
                Packet::Connect(c) => self.handle_connect(id, c),
                // The decoder lets nothing else through before CONNECT.
                _ => self.violation(id, ReasonCode::ProtocolError),
            };
        };
        match packet {
            Packet::Publish(p) => self.handle_publish(id, key, p),
            Packet::PubAck(a) => {
                self.with_session(key, |s, now, out| s.on_puback(a.packet_id, now, out));
                Flow::Continue
            }
            Packet::PubRec(a) => {
                self.with_session(key, |s, now, out| {
                    s.on_pubrec(a.packet_id, a.reason, now, out)
                });
                Flow::Continue
            }
            Packet::PubComp(a) => {
                self.with_session(key, |s, now, out| s.on_pubcomp(a.packet_id, now, out));
                Flow::Continue
            }
            Packet::PubRel(a) => self.handle_pubrel(key, a),
            Packet::Subscribe(s) => self.handle_subscribe(id, key, s),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(id, key, u),
            Packet::PingReq => {
                self.send(id, &Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect(d) => self.handle_disconnect(id, key, d),
            // No enhanced authentication method is supported, so AUTH is never expected
            // ([MQTT-4.12.0-1]); a server-to-client packet from a client is a protocol error.
            Packet::Auth(_)
            | Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => self.violation(id, ReasonCode::ProtocolError),
        }
    }

    /// Encodes `packet` into connection `id`'s output queue.
    pub(super) fn send(&mut self, id: ConnId, packet: &Packet) {
        let Some(conn) = self.conns.get_mut(id as usize) else {
            return;
        };
        let version = conn.version().unwrap_or(ProtocolVersion::V311);
        let before = conn.tx.len();
        if packet.encode(version, &mut conn.tx).is_err() {
            // Only a packet built wrongly by the broker itself can fail to encode.
            debug_assert!(false, "broker built an unencodable packet: {packet:?}");
            return;
        }
        let c = &mut self.counters;
        c.bytes_sent += (conn.tx.len() - before) as u64;
        c.packets_sent[packet.packet_type() as usize] += 1;
        if let Packet::Publish(p) = packet {
            c.messages_sent += 1;
            c.qos_sent[p.qos as usize] += 1;
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id);
        }
        if before < FLUSH_EARLY_BYTES && conn.tx.len() >= FLUSH_EARLY_BYTES {
            self.big_output.push(id);
        }
    }

    /// Marks connection `id` to be closed once its queued output is written.
    pub(super) fn mark_close(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(conn) = self.conns.get_mut(id as usize) {
            if conn.close.is_none() {
                conn.close = Some(reason);
                // Nothing sent from now on reaches the client: its session queues instead.
                let client = conn.client.and_then(|k| self.clients.get_mut(k as usize));
                if let Some(client) = client.filter(|c| c.conn == Some(id)) {
                    client.session.disconnect();
                }
            }
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// A protocol violation on a connection: the v5 reason code (CONNACK before CONNECT
    /// succeeded, DISCONNECT after), nothing for v3, then close.
    pub(super) fn violation(&mut self, id: ConnId, code: ReasonCode) -> Flow {
        let conn = &self.conns[id as usize];
        if conn.version() == Some(ProtocolVersion::V5) {
            let packet = if conn.client.is_some() {
                Packet::Disconnect(Disconnect::new(code))
            } else {
                super::connect::refused(code)
            };
            self.send(id, &packet);
        }
        self.mark_close(id, CloseReason::ProtocolError);
        Flow::Stop
    }

    fn decode_error(&mut self, id: ConnId, e: DecodeError) {
        let conn = &self.conns[id as usize];
        tracing::debug!(peer = %conn.peer, error = %e, statement = e.statement(), "protocol violation");
        match e.response(conn.version(), conn.client.is_some()) {
            Response::ConnAck(code) => {
                // An unsupported level is answered in the format the client asked for: a v5
                // CONNACK for level 5, the 3.1.1 one otherwise.
                let v = conn.version().unwrap_or(ProtocolVersion::V311);
                let mut tx = BytesMut::new();
                let ack = super::connect::refused(code);
                let _ = ack.encode(v, &mut tx);
                let conn = &mut self.conns[id as usize];
                conn.tx.extend_from_slice(&tx);
            }
            Response::Disconnect(code) => {
                let packet = self.disconnect_explained(id, code, &e);
                self.send(id, &packet);
            }
            Response::Close => {}
        }
        self.mark_close(id, CloseReason::ProtocolError);
    }

    /// A v5 DISCONNECT whose Reason String names the violation and the statement it breaks,
    /// unless that would exceed the client's Maximum Packet Size ([MQTT-3.14.2-3]).
    fn disconnect_explained(&self, id: ConnId, code: ReasonCode, e: &DecodeError) -> Packet {
        let mut d = Disconnect::new(code);
        d.properties.reason_string = Some(MqttStr::from(format!("{e}: {}", e.statement())));
        let packet = Packet::Disconnect(d);
        let max = self.conns[id as usize]
            .client
            .and_then(|k| self.clients.get(k as usize))
            .map_or(u32::MAX, |c| c.session.client_limits().maximum_packet_size);
        match packet.encoded_len(ProtocolVersion::V5) {
            Ok(len) if len <= max as usize => packet,
            _ => Packet::Disconnect(Disconnect::new(code)),
        }
    }

    pub(super) fn keepalive_expired(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(id as usize) else {
            return;
        };
        if conn.close.is_some() {
            return;
        }
        if conn.client.is_some() && conn.version() == Some(ProtocolVersion::V5) {
            self.send(
                id,
                &Packet::Disconnect(Disconnect::new(ReasonCode::KeepAliveTimeout)),
            );
        }
        self.mark_close(id, CloseReason::KeepAliveTimeout);
    }
}
