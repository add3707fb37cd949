//! One worker thread: an epoll loop (level-triggered) over its share of the clients.
//!
//! Per idle connection it holds a socket and a small struct, no buffer: reads go into one
//! per-thread buffer and only a partial packet's bytes are kept per connection; writes are
//! encoded into one per-thread buffer and sent at once, and only what the socket did not take
//! is kept per connection (EPOLLOUT is armed only then). A publisher sends the messages it owes
//! (by its interval or flat out) in one `send`, bounded by its QoS 1/2 window.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use ringmq::protocol::{
    Connect, ConnectProperties, Decoder, Disconnect, MqttStr, Packet, PacketType, QoS, ReasonCode,
    Subscribe, SubscriptionOptions, parse_frame_header,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::cli::Config;
use crate::plan::{ClientSpec, Role};
use crate::tracker::{Stream, Totals};
use crate::wire::{self, PublishTemplate};

pub const PHASE_SUBS: u8 = 1;
pub const PHASE_PUBS: u8 = 2;
pub const PHASE_GO: u8 = 3;
pub const PHASE_DRAIN: u8 = 4;
pub const PHASE_SHUTDOWN: u8 = 5;

/// Largest packet accepted from a broker.
const MAX_PACKET: u32 = 256 << 20;
/// The per-thread read buffer.
const RX_BUF: usize = 256 << 10;
/// At most this many bytes of PUBLISH per `send` of one publisher.
const TX_BATCH: usize = 64 << 10;
/// Reads per readable event before moving on to other connections.
const READS_PER_EVENT: usize = 8;
/// Buffers bigger than this are released when they empty.
const KEEP_BUF: usize = 4 << 10;
const WAKE: u64 = u64::MAX;
/// Time one round of publishing may take before reads are served again.
const PUBLISH_BUDGET_NS: u64 = 200_000;

pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

pub fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Counters a worker publishes for the progress line and the phase changes.
#[repr(align(128))]
#[derive(Default)]
pub struct Counters {
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    /// Subscribers and idle clients that are subscribed / connected, or failed.
    pub settled_subs: AtomicU64,
    pub settled_pubs: AtomicU64,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: AtomicU64,
    /// Subscriptions granted.
    pub subscribed: AtomicU64,
    /// PUBLISH packets received (duplicates included).
    pub received: AtomicU64,
    pub errors: AtomicU64,
    /// 1 once every publisher of this worker is done.
    pub pub_done: AtomicU64,
    pub last_rx_ns: AtomicU64,
    pub last_pub_ns: AtomicU64,
}

/// What the main thread and the workers share.
pub struct Shared {
    pub phase: AtomicU8,
    pub go_ns: AtomicU64,
    /// Publishing stops at this monotonic time (u64::MAX: no deadline).
    pub stop_ns: AtomicU64,
    pub counters: Vec<Counters>,
    /// One eventfd per worker, written on a phase change.
    pub wake: Vec<i32>,
    /// Dup / loss tracking of the shared-subscription group, per publisher.
    pub group: Mutex<HashMap<u32, Stream, ahash::RandomState>>,
}

impl Shared {
    pub fn new(threads: usize) -> Shared {
        Shared {
            phase: AtomicU8::new(PHASE_SUBS),
            go_ns: AtomicU64::new(0),
            stop_ns: AtomicU64::new(u64::MAX),
            counters: (0..threads).map(|_| Counters::default()).collect(),
            // SAFETY: plain eventfd creation.
            wake: (0..threads)
                .map(|_| unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
                .collect(),
            group: Mutex::new(HashMap::default()),
        }
    }

    pub fn set_phase(&self, p: u8) {
        self.phase.store(p, std::sync::atomic::Ordering::SeqCst);
        for &fd in &self.wake {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a local to our eventfd.
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        }
    }

    pub fn sum(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.counters.iter().map(|c| f(c).load(Relaxed)).sum()
    }
}

/// What a worker hands back at the end.
pub struct WorkerResult {
    pub conn_latency: Histogram<u64>,
    pub latency: Histogram<u64>,
    pub streams: Totals,
    pub member_reordered: u64,
    pub foreign: u64,
    pub published: u64,
    pub acked: u64,
    pub received: u64,
    pub failed: u64,
    pub errors: BTreeMap<&'static str, u64>,
    /// Indices of subscribers whose SUBACK granted the subscription.
    pub subscribed: Vec<u64>,
    /// (index, messages published) of every publisher.
    pub pub_counts: Vec<(u64, u64)>,
    pub first_rx_ns: u64,
    pub last_rx_ns: u64,
    pub last_pub_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Tcp,
    WaitConnAck,
    WaitSubAck,
    Ready,
    Closed,
}

struct Publisher {
    tmpl: PublishTemplate,
    /// Sequence numbers used (messages sent + skipped by the test hook).
    seq: u64,
    /// PUBLISH packets written.
    sent: u64,
    /// Completed QoS 1/2 exchanges (PUBACK, PUBCOMP, or an error PUBREC).
    acked: u64,
    /// PUBRECs received.
    recs: u64,
    window: u64,
    start_ns: u64,
    done: bool,
    /// In the ready list or the timer heap.
    queued: bool,
}

struct Conn {
    spec: ClientSpec,
    sock: Option<Socket>,
    state: State,
    settled: bool,
    t0: u64,
    last_tx: u64,
    /// Bytes of an incomplete packet.
    rbuf: Vec<u8>,
    /// Bytes the socket did not take yet, from `wpos`.
    wbuf: Vec<u8>,
    wpos: usize,
    out_armed: bool,
    /// The SUBACK granted the subscription.
    sub_ok: bool,
    publ: Option<Box<Publisher>>,
}

#[derive(Default)]
struct Local {
    connected: u64,
    failed: u64,
    settled_subs: u64,
    settled_pubs: u64,
    published: u64,
    sent: u64,
    acked: u64,
    /// Unacknowledged when their connection went.
    abandoned: u64,
    subscribed: u64,
    received: u64,
    errors: u64,
    foreign: u64,
    member_reordered: u64,
    first_rx_ns: u64,
    last_rx_ns: u64,
    last_pub_ns: u64,
}

pub struct Worker {
    id: usize,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    epfd: i32,
    conns: Vec<Conn>,
    pending_subs: std::collections::VecDeque<u32>,
    pending_pubs: std::collections::VecDeque<u32>,
    ready: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    streams: HashMap<u64, Stream, ahash::RandomState>,
    member_last: HashMap<u64, u32, ahash::RandomState>,
    group_batch: Vec<(u32, u32)>,
    latency: Histogram<u64>,
    conn_latency: Histogram<u64>,
    local: Local,
    errors: BTreeMap<&'static str, u64>,
    connecting: u64,
    max_connecting: u64,
    conn_interval_ns: u64,
    next_conn_ns: u64,
    n_pubs: u64,
    pubs_done: u64,
    phase: u8,
    stop_ns: u64,
    interval_ns: u64,
    next_tick_ns: u64,
    known_pubs: Option<(u64, u64)>,
    v5: bool,
    window: u64,
    shutting_down: bool,
    /// The payload clock when this process started: older send times are from another run.
    run_start_clock: u64,
}

impl Worker {
    pub fn new(id: usize, cfg: Arc<Config>, shared: Arc<Shared>, specs: Vec<ClientSpec>) -> Worker {
        // SAFETY: plain epoll creation.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            epfd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE,
        };
        // SAFETY: registering our eventfd with our epoll instance.
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, shared.wake[id], &mut ev) };
        let threads = cfg.threads as f64;
        let n_pubs = specs.iter().filter(|s| s.role == Role::Pub).count() as u64;
        let mut w = Worker {
            id,
            epfd,
            pending_subs: Default::default(),
            pending_pubs: Default::default(),
            ready: Vec::new(),
            heap: BinaryHeap::new(),
            rx: vec![0; RX_BUF],
            tx: Vec::with_capacity(TX_BATCH + 4096),
            streams: HashMap::default(),
            member_last: HashMap::default(),
            group_batch: Vec::new(),
            latency: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("histogram"),
            conn_latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram"),
            local: Local::default(),
            errors: BTreeMap::new(),
            connecting: 0,
            max_connecting: (cfg.max_connecting as f64 / threads).ceil().max(1.0) as u64,
            conn_interval_ns: if cfg.connrate > 0.0 {
                (1e9 * threads / cfg.connrate) as u64
            } else {
                0
            },
            next_conn_ns: 0,
            n_pubs,
            pubs_done: 0,
            phase: 0,
            stop_ns: u64::MAX,
            interval_ns: cfg.interval_ns(),
            next_tick_ns: 0,
            known_pubs: cfg
                .scenario
                .composite()
                .then_some((cfg.start, cfg.start + cfg.publishers)),
            v5: cfg.version.is_v5(),
            window: cfg.inflight as u64,
            shutting_down: false,
            run_start_clock: clock_ns(cfg.clock.id()),
            conns: Vec::with_capacity(specs.len()),
            cfg,
            shared,
        };
        for spec in specs {
            let k = w.conns.len() as u32;
            match spec.role {
                Role::Pub => w.pending_pubs.push_back(k),
                _ => w.pending_subs.push_back(k),
            }
            w.conns.push(Conn {
                spec,
                sock: None,
                state: State::Pending,
                settled: false,
                t0: 0,
                last_tx: 0,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
                wpos: 0,
                out_armed: false,
                sub_ok: false,
                publ: None,
            });
        }
        w
    }

    pub fn run(mut self) -> WorkerResult {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        loop {
            let now = mono_ns();
            let phase = self.shared.phase.load(std::sync::atomic::Ordering::SeqCst);
            if phase != self.phase {
                self.enter(phase);
            }
            if self.phase == PHASE_SHUTDOWN {
                break;
            }
            self.start_connections(now);
            if now >= self.next_tick_ns {
                self.tick(now);
                self.next_tick_ns = now + 1_000_000_000;
            }
            if self.phase == PHASE_GO {
                self.publish_round(now);
            }
            let timeout = self.timeout_ms(mono_ns());
            // SAFETY: `events` is a valid buffer of that many entries.
            let n = unsafe {
                libc::epoll_wait(self.epfd, events.as_mut_ptr(), events.len() as i32, timeout)
            };
            for ev in events.iter().take(n.max(0) as usize) {
                let (flags, key) = (ev.events, ev.u64);
                if key == WAKE {
                    let mut buf = 0u64;
                    // SAFETY: reading 8 bytes into a local from our eventfd.
                    unsafe {
                        libc::read(self.shared.wake[self.id], (&mut buf as *mut u64).cast(), 8)
                    };
                    continue;
                }
                self.event(key as u32, flags);
            }
            self.publish_counters();
        }
        self.shutdown();
        self.publish_counters();
        self.result()
    }

    fn timeout_ms(&self, now: u64) -> i32 {
        if !self.ready.is_empty() {
            return 0;
        }
        let mut until = self.next_tick_ns.min(now + 100_000_000);
        if self.phase == PHASE_GO {
            until = until.min(self.stop_ns);
            if let Some(Reverse((due, _))) = self.heap.peek() {
                until = until.min(*due);
            }
        }
        if self.connecting < self.max_connecting && self.has_pending() {
            until = until.min(self.next_conn_ns);
        }
        if until <= now {
            return 0;
        }
        (until - now).div_ceil(1_000_000).min(1000) as i32
    }

    fn has_pending(&self) -> bool {
        (self.phase >= PHASE_SUBS && !self.pending_subs.is_empty())
            || (self.phase >= PHASE_PUBS && !self.pending_pubs.is_empty())
    }

    fn enter(&mut self, phase: u8) {
        let from = self.phase;
        self.phase = phase;
        if phase >= PHASE_GO && from < PHASE_GO {
            // Publishers not connected by now are given up.
            while let Some(k) = self.pending_pubs.pop_front() {
                self.fail(k as usize, "not_connected_in_time");
            }
        }
        if phase == PHASE_GO && from < PHASE_GO {
            let go = self
                .shared
                .go_ns
                .load(std::sync::atomic::Ordering::SeqCst)
                .max(1);
            self.stop_ns = self
                .shared
                .stop_ns
                .load(std::sync::atomic::Ordering::SeqCst);
            let pubs: Vec<u32> = (0..self.conns.len() as u32)
                .filter(|&k| self.conns[k as usize].publ.is_some())
                .collect();
            let n = pubs.len().max(1) as u64;
            for (slot, k) in pubs.into_iter().enumerate() {
                // Spread the publishers over one interval.
                let offset = self.interval_ns / n * slot as u64;
                let p = self.conns[k as usize].publ.as_mut().expect("publisher");
                p.start_ns = go + offset;
                if !p.done {
                    p.queued = true;
                    if self.interval_ns == 0 || offset == 0 {
                        self.ready.push(k);
                    } else {
                        self.heap.push(Reverse((p.start_ns, k)));
                    }
                }
            }
        }
        if phase >= PHASE_DRAIN && from < PHASE_DRAIN {
            self.stop_publishing();
        }
    }

    fn stop_publishing(&mut self) {
        self.ready.clear();
        self.heap.clear();
        for c in &mut self.conns {
            if let Some(p) = c.publ.as_mut()
                && !p.done
            {
                p.done = true;
                p.queued = false;
                self.pubs_done += 1;
            }
        }
        self.pubs_done = self.n_pubs;
    }

    fn start_connections(&mut self, now: u64) {
        while self.connecting < self.max_connecting {
            if self.conn_interval_ns > 0 && now < self.next_conn_ns {
                return;
            }
            let k = if self.phase >= PHASE_SUBS && !self.pending_subs.is_empty() {
                self.pending_subs.pop_front()
            } else if self.phase >= PHASE_PUBS && self.phase < PHASE_GO {
                self.pending_pubs.pop_front()
            } else {
                None
            };
            let Some(k) = k else { return };
            if self.conn_interval_ns > 0 {
                self.next_conn_ns = if self.next_conn_ns + 1_000_000_000 < now {
                    now
                } else {
                    self.next_conn_ns
                } + self.conn_interval_ns;
            }
            self.start_connect(k as usize, now);
        }
    }

    fn start_connect(&mut self, k: usize, now: u64) {
        let (broker, source) = (self.conns[k].spec.broker, self.conns[k].spec.source);
        let sock = match self.open_socket(broker, source) {
            Ok(s) => s,
            Err(e) => {
                let kind = if e.raw_os_error() == Some(libc::EMFILE) {
                    "too_many_open_files"
                } else if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                    "no_source_port"
                } else {
                    "connect_failed"
                };
                self.fail(k, kind);
                return;
            }
        };
        let fd = sock.as_raw_fd();
        let c = &mut self.conns[k];
        c.sock = Some(sock);
        c.t0 = now;
        c.last_tx = now;
        c.state = State::Tcp;
        c.out_armed = true;
        self.connecting += 1;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32,
            u64: k as u64,
        };
        // SAFETY: registering a socket we own with our epoll instance.
        if unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            self.fail(k, "epoll");
        }
    }

    fn open_socket(
        &self,
        broker: std::net::SocketAddr,
        source: Option<std::net::IpAddr>,
    ) -> std::io::Result<Socket> {
        let s = Socket::new(
            Domain::for_address(broker),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        s.set_tcp_nodelay(true)?;
        if self.cfg.sockbuf > 0 {
            s.set_send_buffer_size(self.cfg.sockbuf)?;
            s.set_recv_buffer_size(self.cfg.sockbuf)?;
        }
        if let Some(src) = source {
            let one: libc::c_int = 1;
            // SAFETY: setsockopt with a pointer to a local int of the size we pass. Without
            // IP_BIND_ADDRESS_NO_PORT, bind() would pick the port alone (not per destination).
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            s.bind(&SockAddr::from(std::net::SocketAddr::new(src, 0)))?;
        }
        match s.connect(&SockAddr::from(broker)) {
            Ok(()) => Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(s),
            Err(e) => Err(e),
        }
    }

    fn event(&mut self, k: u32, flags: u32) {
        let k = k as usize;
        if self.conns[k].sock.is_none() {
            return;
        }
        if self.conns[k].state == State::Tcp {
            self.tcp_connected(k);
            return;
        }
        if flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0
        {
            self.readable(k);
        }
        if flags & libc::EPOLLOUT as u32 != 0 && self.conns[k].sock.is_some() {
            self.flush(k);
        }
    }

    fn tcp_connected(&mut self, k: usize) {
        let err = match self.conns[k].sock.as_ref().expect("socket").take_error() {
            Ok(None) => None,
            Ok(Some(e)) | Err(e) => Some(e),
        };
        if let Some(e) = err {
            let kind = match e.raw_os_error() {
                Some(libc::ECONNREFUSED) => "connection_refused",
                Some(libc::ETIMEDOUT) => "connect_timeout",
                Some(libc::EADDRNOTAVAIL) => "no_source_port",
                _ => "connect_failed",
            };
            self.fail(k, kind);
            return;
        }
        let cfg = &self.cfg;
        let c = &mut self.conns[k];
        let connect = Connect {
            protocol: cfg.version,
            clean_start: cfg.clean,
            keep_alive: cfg.keepalive,
            properties: ConnectProperties {
                session_expiry_interval: cfg.session_expiry,
                ..Default::default()
            },
            client_id: MqttStr::from(c.spec.client_id.as_str()),
            will: None,
            username: cfg.username.as_deref().map(MqttStr::from),
            password: cfg
                .password
                .as_ref()
                .map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())),
        };
        c.state = State::WaitConnAck;
        self.send_packet(k, &Packet::Connect(Box::new(connect)));
    }

    fn send_packet(&mut self, k: usize, p: &Packet) {
        let mut b = BytesMut::new();
        if p.encode(self.cfg.version, &mut b).is_err() {
            self.close(k, "encode");
            return;
        }
        self.conns[k].wbuf.extend_from_slice(&b);
        self.flush(k);
    }

    /// Writes what `wbuf` holds; arms EPOLLOUT if the socket did not take it all.
    fn flush(&mut self, k: usize) {
        let c = &mut self.conns[k];
        let Some(sock) = c.sock.as_ref() else { return };
        let fd = sock.as_raw_fd();
        while c.wpos < c.wbuf.len() {
            match send(fd, &c.wbuf[c.wpos..]) {
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.close(k, "write_failed");
                    return;
                }
            }
        }
        if c.wpos < c.wbuf.len() {
            self.set_out(k, true);
            return;
        }
        c.wbuf.clear();
        c.wpos = 0;
        if c.wbuf.capacity() > KEEP_BUF {
            c.wbuf = Vec::new();
        }
        self.set_out(k, false);
        let c = &mut self.conns[k];
        if self.phase == PHASE_GO
            && let Some(p) = c.publ.as_mut()
            && !p.done
            && !p.queued
        {
            p.queued = true;
            self.ready.push(k as u32);
        }
    }

    fn set_out(&mut self, k: usize, on: bool) {
        let c = &mut self.conns[k];
        if c.out_armed == on {
            return;
        }
        let Some(sock) = c.sock.as_ref() else { return };
        c.out_armed = on;
        let mut events = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        if on {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event {
            events,
            u64: k as u64,
        };
        // SAFETY: modifying the registration of a socket we own.
        unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_MOD, sock.as_raw_fd(), &mut ev) };
    }

    fn readable(&mut self, k: usize) {
        let mut rx = std::mem::take(&mut self.rx);
        for _ in 0..READS_PER_EVENT {
            let c = &mut self.conns[k];
            let Some(sock) = c.sock.as_ref() else { break };
            let fd = sock.as_raw_fd();
            let keep = c.rbuf.len();
            // Room for the whole partial packet and a good read after it.
            if keep + (RX_BUF / 2) > rx.len() {
                let need = match parse_frame_header(&c.rbuf, MAX_PACKET) {
                    Ok(Some(h)) => h.total_len(),
                    _ => keep,
                };
                rx.resize(need.max(keep) + RX_BUF / 2, 0);
            }
            rx[..keep].copy_from_slice(&c.rbuf);
            let space = rx.len() - keep;
            // SAFETY: recv writes at most `space` bytes into our buffer past `keep`.
            let n = unsafe {
                libc::recv(
                    fd,
                    rx[keep..].as_mut_ptr().cast(),
                    space,
                    libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                self.close(k, "closed_by_broker");
                break;
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => break,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.close(k, "read_failed");
                        break;
                    }
                }
            }
            let n = n as usize;
            let end = keep + n;
            let used = self.process(k, &rx[..end]);
            let c = &mut self.conns[k];
            if c.sock.is_none() {
                break;
            }
            c.rbuf.clear();
            c.rbuf.extend_from_slice(&rx[used..end]);
            if c.rbuf.is_empty() && c.rbuf.capacity() > KEEP_BUF {
                c.rbuf = Vec::new();
            }
            if n < space {
                break;
            }
        }
        // Shrink a buffer grown for one big packet.
        if rx.len() > RX_BUF * 4 {
            rx.truncate(RX_BUF);
            rx.shrink_to_fit();
        }
        self.rx = rx;
        if !self.group_batch.is_empty() {
            let mut g = self.shared.group.lock().expect("group lock");
            for &(p, seq) in &self.group_batch {
                g.entry(p).or_default().observe(seq);
            }
            drop(g);
            self.group_batch.clear();
        }
        if self.conns[k].sock.is_some() && self.conns[k].wpos < self.conns[k].wbuf.len() {
            self.flush(k);
        }
    }

    /// Handles every whole packet at the front of `buf`; returns the bytes used.
    fn process(&mut self, k: usize, buf: &[u8]) -> usize {
        let mut pos = 0;
        let mut now = (0, 0);
        while pos < buf.len() {
            let h = match parse_frame_header(&buf[pos..], MAX_PACKET) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => {
                    self.close(k, "protocol_error");
                    return buf.len();
                }
            };
            let total = h.total_len();
            if buf.len() - pos < total {
                break;
            }
            let body = &buf[pos + h.header_len..pos + total];
            match h.packet_type {
                PacketType::Publish => {
                    let Some(v) = wire::parse_publish(h.flags, body, self.v5) else {
                        self.close(k, "protocol_error");
                        return buf.len();
                    };
                    match v.qos {
                        1 => wire::put_ack(&mut self.conns[k].wbuf, wire::PUBACK, v.packet_id),
                        2 => wire::put_ack(&mut self.conns[k].wbuf, wire::PUBREC, v.packet_id),
                        _ => {}
                    }
                    if now.0 == 0 {
                        now = self.now_pair();
                    }
                    self.message(k, v.payload, now);
                }
                PacketType::PubAck | PacketType::PubRec | PacketType::PubComp => {
                    let Some((id, reason)) = wire::parse_ack(body) else {
                        self.close(k, "protocol_error");
                        return buf.len();
                    };
                    self.ack(k, h.packet_type, id, reason);
                }
                PacketType::PubRel => {
                    let Some((id, _)) = wire::parse_ack(body) else {
                        self.close(k, "protocol_error");
                        return buf.len();
                    };
                    wire::put_ack(&mut self.conns[k].wbuf, wire::PUBCOMP, id);
                }
                PacketType::PingResp => {}
                _ => {
                    let mut b = BytesMut::from(&buf[pos..pos + total]);
                    let decoded =
                        Decoder::with_version(self.cfg.version, MAX_PACKET).decode(&mut b);
                    match decoded {
                        Ok(Some(p)) => self.control(k, p),
                        _ => {
                            self.close(k, "protocol_error");
                            return buf.len();
                        }
                    }
                }
            }
            pos += total;
            if self.conns[k].sock.is_none() {
                return buf.len();
            }
        }
        pos
    }

    /// Monotonic time and the payload clock's time.
    fn now_pair(&self) -> (u64, u64) {
        let mono = mono_ns();
        match self.cfg.clock {
            crate::cli::Clock::Monotonic => (mono, mono),
            c => (mono, clock_ns(c.id())),
        }
    }

    fn message(&mut self, k: usize, payload: &[u8], (now, now_clock): (u64, u64)) {
        let l = &mut self.local;
        l.received += 1;
        l.last_rx_ns = now;
        if l.first_rx_ns == 0 {
            l.first_rx_ns = now;
        }
        let Some((p, seq, ts)) = wire::parse_header(payload) else {
            l.foreign += 1;
            return;
        };
        // Composite scenarios: only this run's publishers, and nothing sent before it started
        // (a broker may still be delivering an earlier run's backlog on the same topics).
        if let Some((lo, hi)) = self.known_pubs
            && (!(lo..hi).contains(&(p as u64)) || ts < self.run_start_clock)
        {
            l.foreign += 1;
            return;
        }
        self.latency
            .saturating_record(now_clock.saturating_sub(ts).max(1));
        let key = ((k as u64) << 32) | p as u64;
        if self.conns[k].spec.shared {
            let last = self.member_last.entry(key).or_insert(0);
            if seq < *last {
                l.member_reordered += 1;
            } else {
                *last = seq;
            }
            self.group_batch.push((p, seq));
        } else {
            self.streams.entry(key).or_default().observe(seq);
        }
    }

    fn ack(&mut self, k: usize, kind: PacketType, id: u16, reason: u8) {
        let Some(p) = self.conns[k].publ.as_mut() else {
            self.close(k, "unexpected_ack");
            return;
        };
        let mut complete = false;
        match kind {
            PacketType::PubAck => {
                if id != wire::packet_id_for(p.acked) {
                    *self.errors.entry("ack_out_of_order").or_default() += 1;
                    self.local.errors += 1;
                }
                complete = true;
            }
            PacketType::PubRec => {
                if id != wire::packet_id_for(p.recs) {
                    *self.errors.entry("ack_out_of_order").or_default() += 1;
                    self.local.errors += 1;
                }
                p.recs += 1;
                if reason >= 0x80 {
                    complete = true;
                } else {
                    wire::put_ack(&mut self.conns[k].wbuf, wire::PUBREL, id);
                }
            }
            _ => complete = true,
        }
        if reason >= 0x80 {
            *self.errors.entry("publish_refused").or_default() += 1;
            self.local.errors += 1;
        }
        if complete {
            let p = self.conns[k].publ.as_mut().expect("publisher");
            p.acked += 1;
            self.local.acked += 1;
            if self.phase == PHASE_GO && !p.done && !p.queued {
                p.queued = true;
                self.ready.push(k as u32);
            }
        }
    }

    fn control(&mut self, k: usize, p: Packet) {
        match (self.conns[k].state, p) {
            (State::WaitConnAck, Packet::ConnAck(ack)) => {
                if ack.reason != ReasonCode::Success {
                    self.fail(k, "connack_refused");
                    return;
                }
                let now = mono_ns();
                let c = &mut self.conns[k];
                self.conn_latency
                    .saturating_record(((now - c.t0) / 1000).max(1));
                self.connecting -= 1;
                self.local.connected += 1;
                match c.spec.role {
                    Role::Sub => {
                        c.state = State::WaitSubAck;
                        let sub = Subscribe {
                            packet_id: std::num::NonZeroU16::new(1).expect("1"),
                            properties: Default::default(),
                            filters: vec![(
                                MqttStr::from(c.spec.topic.as_str()),
                                SubscriptionOptions {
                                    qos: self.cfg.sub_qos,
                                    ..Default::default()
                                },
                            )],
                        };
                        self.send_packet(k, &Packet::Subscribe(sub));
                    }
                    Role::Pub => {
                        let window = match ack.properties.receive_maximum {
                            Some(m) => self.window.min(m.get() as u64),
                            None => self.window,
                        };
                        let cfg = &self.cfg;
                        let tmpl = match PublishTemplate::new(
                            &c.spec.topic,
                            cfg.qos,
                            cfg.retain,
                            cfg.version,
                            cfg.size,
                        ) {
                            Ok(t) => t,
                            Err(_) => {
                                self.fail(k, "bad_topic");
                                return;
                            }
                        };
                        c.state = State::Ready;
                        c.publ = Some(Box::new(Publisher {
                            tmpl,
                            seq: 0,
                            sent: 0,
                            acked: 0,
                            recs: 0,
                            window,
                            start_ns: 0,
                            done: false,
                            queued: false,
                        }));
                        self.settle(k);
                    }
                    Role::Idle => {
                        c.state = State::Ready;
                        self.settle(k);
                    }
                }
            }
            (State::WaitSubAck, Packet::SubAck(ack)) => {
                if ack.reasons.iter().any(|r| r.is_error()) {
                    self.fail(k, "suback_refused");
                    return;
                }
                self.conns[k].state = State::Ready;
                self.conns[k].sub_ok = true;
                self.local.subscribed += 1;
                self.settle(k);
            }
            (_, Packet::Disconnect(_)) => self.close(k, "disconnected_by_broker"),
            _ => self.close(k, "unexpected_packet"),
        }
    }

    /// A client is set up (or given up): count it once for the phase barrier.
    fn settle(&mut self, k: usize) {
        let c = &mut self.conns[k];
        if c.settled {
            return;
        }
        c.settled = true;
        match c.spec.role {
            Role::Pub => self.local.settled_pubs += 1,
            _ => self.local.settled_subs += 1,
        }
    }

    /// A client that never got ready.
    fn fail(&mut self, k: usize, kind: &'static str) {
        let st = self.conns[k].state;
        if st == State::Ready {
            self.close(k, kind);
            return;
        }
        if matches!(st, State::Tcp | State::WaitConnAck) {
            self.connecting -= 1;
        }
        if st == State::WaitSubAck {
            self.local.connected -= 1;
        }
        *self.errors.entry(kind).or_default() += 1;
        self.local.failed += 1;
        self.drop_socket(k);
        self.settle(k);
        self.publisher_gone(k);
    }

    /// A connection lost after it was set up (an error unless we are closing it).
    fn close(&mut self, k: usize, kind: &'static str) {
        let st = self.conns[k].state;
        if st != State::Ready {
            if st != State::Closed && st != State::Pending {
                self.fail(k, kind);
            }
            return;
        }
        if !self.shutting_down {
            *self.errors.entry(kind).or_default() += 1;
            self.local.errors += 1;
        }
        self.local.connected -= 1;
        self.drop_socket(k);
        self.publisher_gone(k);
    }

    fn drop_socket(&mut self, k: usize) {
        let c = &mut self.conns[k];
        c.sock = None; // closing the fd removes it from epoll
        c.state = State::Closed;
        c.rbuf = Vec::new();
        c.wbuf = Vec::new();
        c.wpos = 0;
    }

    fn publisher_gone(&mut self, k: usize) {
        if self.conns[k].spec.role != Role::Pub {
            return;
        }
        if let Some(p) = self.conns[k].publ.as_ref() {
            self.local.abandoned += p.sent - p.acked;
        }
        match self.conns[k].publ.as_mut() {
            Some(p) if !p.done => {
                p.done = true;
                self.pubs_done += 1;
            }
            Some(_) => {}
            None => self.pubs_done += 1,
        }
    }

    /// Once a second: keep-alive pings and set-up timeouts.
    fn tick(&mut self, now: u64) {
        let ka = self.cfg.keepalive as u64 * 1_000_000_000 / 2;
        let timeout = (self.cfg.conn_timeout_s * 1e9) as u64;
        for k in 0..self.conns.len() {
            let c = &mut self.conns[k];
            match c.state {
                State::Ready if ka > 0 && now.saturating_sub(c.last_tx) >= ka => {
                    c.last_tx = now;
                    c.wbuf.extend_from_slice(&[0xc0, 0]);
                    self.flush(k);
                }
                State::Tcp | State::WaitConnAck | State::WaitSubAck
                    if now.saturating_sub(c.t0) > timeout =>
                {
                    self.fail(k, "setup_timeout");
                }
                _ => {}
            }
        }
    }

    fn publish_round(&mut self, now: u64) {
        if now >= self.stop_ns {
            if self.pubs_done < self.n_pubs {
                self.stop_publishing();
            }
            return;
        }
        while let Some(&Reverse((due, k))) = self.heap.peek() {
            if due > now {
                break;
            }
            self.heap.pop();
            self.ready.push(k);
        }
        let mut ready = std::mem::take(&mut self.ready);
        let mut served = 0;
        while served < ready.len() {
            // Within a time budget, so that reads (acks, subscribers) wait little.
            if served % 8 == 7 && mono_ns().saturating_sub(now) > PUBLISH_BUDGET_NS {
                break;
            }
            let k = ready[served];
            served += 1;
            if let Some(p) = self.conns[k as usize].publ.as_mut() {
                p.queued = false;
            }
            self.try_publish(k as usize, now);
        }
        // Those not served stay queued and go first next time.
        ready.drain(..served);
        ready.append(&mut self.ready);
        self.ready = ready;
    }

    fn try_publish(&mut self, k: usize, now: u64) {
        let limit = self.cfg.limit;
        let interval = self.interval_ns;
        let qos = self.cfg.qos;
        let skip = self.cfg.skip_every as u64;
        let c = &mut self.conns[k];
        if c.state != State::Ready || c.wpos < c.wbuf.len() {
            return;
        }
        let Some(p) = c.publ.as_mut() else { return };
        if p.done || p.queued {
            return;
        }
        let due = if interval == 0 {
            u64::MAX
        } else if now < p.start_ns {
            0
        } else {
            (now - p.start_ns) / interval + 1
        };
        let target = if limit > 0 { due.min(limit) } else { due };
        let owed = target.saturating_sub(p.seq);
        if owed == 0 {
            p.queued = true;
            self.heap
                .push(Reverse((p.start_ns + p.seq * interval, k as u32)));
            return;
        }
        let room = if qos == QoS::AtMostOnce {
            u64::MAX
        } else {
            p.window - (p.sent - p.acked)
        };
        if room == 0 {
            return; // an ack makes it ready again
        }
        let per_batch = (TX_BATCH / p.tmpl.len()).max(1) as u64;
        let n = owed.min(room).min(per_batch);
        let ts = clock_ns(self.cfg.clock.id());
        let index = c.spec.index as u32;
        self.tx.clear();
        let mut consumed = 0;
        let mut written = 0;
        while written < n {
            let seq = p.seq;
            p.seq += 1;
            consumed += 1;
            if skip > 0 && (seq + 1) % skip == 0 {
                if p.seq >= target {
                    break;
                }
                continue;
            }
            p.tmpl.encode(
                &mut self.tx,
                wire::packet_id_for(p.sent),
                index,
                seq as u32,
                ts,
            );
            p.sent += 1;
            written += 1;
            self.local.sent += 1;
            if p.seq >= target {
                break;
            }
        }
        self.local.published += consumed;
        self.local.last_pub_ns = now;
        c.last_tx = now;
        let finished = limit > 0 && p.seq >= limit;
        if finished {
            p.done = true;
            self.pubs_done += 1;
        }
        let fd = c.sock.as_ref().expect("socket").as_raw_fd();
        let mut off = 0;
        while off < self.tx.len() {
            match send(fd, &self.tx[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.close(k, "write_failed");
                    return;
                }
            }
        }
        if off < self.tx.len() {
            // The socket is full: keep the rest, EPOLLOUT makes the publisher ready again.
            self.conns[k].wbuf.extend_from_slice(&self.tx[off..]);
            self.set_out(k, true);
            return;
        }
        if finished {
            return;
        }
        let p = self.conns[k].publ.as_mut().expect("publisher");
        if (interval == 0 || p.seq < target) && room > written {
            p.queued = true;
            self.ready.push(k as u32);
        } else if interval > 0 && p.seq >= target {
            p.queued = true;
            self.heap
                .push(Reverse((p.start_ns + p.seq * interval, k as u32)));
        }
    }

    fn publish_counters(&mut self) {
        if self.phase >= PHASE_GO && self.pubs_done >= self.n_pubs {
            self.shared.counters[self.id].pub_done.store(1, Relaxed);
        }
        let l = &self.local;
        let c = &self.shared.counters[self.id];
        c.connected.store(l.connected, Relaxed);
        c.failed.store(l.failed, Relaxed);
        c.settled_subs.store(l.settled_subs, Relaxed);
        c.settled_pubs.store(l.settled_pubs, Relaxed);
        c.published.store(l.published, Relaxed);
        c.acked.store(l.acked, Relaxed);
        c.inflight.store(
            if self.cfg.qos == QoS::AtMostOnce {
                0
            } else {
                l.sent.saturating_sub(l.acked + l.abandoned)
            },
            Relaxed,
        );
        c.subscribed.store(l.subscribed, Relaxed);
        c.received.store(l.received, Relaxed);
        c.errors.store(l.errors, Relaxed);
        c.last_rx_ns.store(l.last_rx_ns, Relaxed);
        c.last_pub_ns.store(l.last_pub_ns, Relaxed);
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        let v = self.cfg.version;
        for k in 0..self.conns.len() {
            let unsent = self.conns[k].sock.as_ref().is_some_and(|s| {
                let mut n: libc::c_int = 0;
                // SAFETY: TIOCOUTQ (SIOCOUTQ) writes the socket's unsent byte count into `n`.
                unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
                n > 0
            }) || self.conns[k].wpos < self.conns[k].wbuf.len();
            if unsent {
                // A backlog of this run's messages must not keep flowing into the broker
                // after we are gone: reset the connection instead of a graceful close.
                if let Some(s) = self.conns[k].sock.as_ref() {
                    let _ = s.set_linger(Some(std::time::Duration::ZERO));
                }
                if self.conns[k].state == State::Ready {
                    self.close(k, "shutdown");
                } else {
                    self.drop_socket(k);
                }
            } else if self.conns[k].state == State::Ready {
                let mut b = BytesMut::new();
                let _ = Packet::Disconnect(Disconnect::default()).encode(v, &mut b);
                self.conns[k].wbuf.extend_from_slice(&b);
                self.flush(k);
                if let Some(s) = self.conns[k].sock.as_ref() {
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
                self.close(k, "shutdown");
            } else if self.conns[k].sock.is_some() {
                self.drop_socket(k);
            }
        }
        // SAFETY: closing our own epoll fd.
        unsafe { libc::close(self.epfd) };
    }

    fn result(mut self) -> WorkerResult {
        let mut streams = Totals::default();
        for s in self.streams.values() {
            streams.add(s);
        }
        let mut subscribed = Vec::new();
        let mut pub_counts = Vec::new();
        for c in &self.conns {
            match c.spec.role {
                Role::Sub if c.sub_ok => subscribed.push(c.spec.index),
                Role::Pub => pub_counts.push((c.spec.index, c.publ.as_ref().map_or(0, |p| p.seq))),
                _ => {}
            }
        }
        WorkerResult {
            conn_latency: std::mem::replace(
                &mut self.conn_latency,
                Histogram::new(3).expect("histogram"),
            ),
            latency: std::mem::replace(&mut self.latency, Histogram::new(3).expect("histogram")),
            streams,
            member_reordered: self.local.member_reordered,
            foreign: self.local.foreign,
            published: self.local.published,
            acked: self.local.acked,
            received: self.local.received,
            failed: self.local.failed,
            errors: std::mem::take(&mut self.errors),
            subscribed,
            pub_counts,
            first_rx_ns: self.local.first_rx_ns,
            last_rx_ns: self.local.last_rx_ns,
            last_pub_ns: self.local.last_pub_ns,
        }
    }
}

fn send(fd: i32, buf: &[u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: sending from a valid slice; MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
