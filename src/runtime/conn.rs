//! The one place that reads and writes client sockets, on the shard that owns them. There is no
//! task per connection: each shard runs one reactor task over its readiness ring (`poller.rs`),
//! and a connection is a 16-byte slot holding its descriptor. Reads drain a socket without
//! blocking (at most [`READ_TURN_BYTES_MAX`] per round, so a busy connection cannot starve the
//! others) into the shard's scratch buffer and hand the broker exactly the bytes read; only a
//! partial packet's bytes outlive the round. Output queued by the broker is written without
//! blocking when the broker marks the connection dirty: at the end of the reactor round, or at
//! once when another task (mesh, ticker) produced it. Only while the kernel's send buffer is full
//! does a connection keep the unwritten bytes, watched for EPOLLOUT and not read meanwhile (the
//! client's own backpressure). A connection the broker closes gets its last bytes, a write
//! shutdown and [`CLOSE_LINGER_MS`] to read them before the socket goes (closing with unread
//! input would reset it and lose our DISCONNECT).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};

use super::pacer::Pacer;
use super::poller::{READ, WRITE};
use super::shard::Shard;
use crate::broker::{ConnId, Handoff, Input, StallOn};
use crate::limits::{
    ACCEPTS_PER_ROUND, CLOSE_LINGER_MS, CONNECTIONS_RESERVED_PER_SHARD, READY_EVENTS_PER_ROUND,
    STALL_MAX_MS, STALL_POLL_MS, STALL_WRITE_BYTES,
};
use crate::protocol::Connect;

/// Tokens at and above this one name listeners (`LISTENER_TOKEN + index`), below it connections.
const LISTENER_TOKEN: u64 = 1 << 40;

/// The peer has closed its side: close once the output is written.
const EOF: u8 = 1;
/// DISCONNECT written and our side shut down: reading only to discard until closed.
const LINGER: u8 = 2;
/// Not read while a subscriber it published to is congested (see [`Stalled`]).
const STALLED: u8 = 4;

/// How far a subscriber has consumed: the broker's count of signs of life (packets from it,
/// output handed to the kernel) and the bytes its socket still has to send. The kernel wakes a
/// writer only once a good part of a large send buffer has drained, so a client reading steadily
/// can go longer than [`STALL_MAX_MS`] without a write; its shrinking send queue shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Progress(u16, i32);

/// A publisher that is not read until connection `on` has drained its output (or `deadline`).
#[derive(Clone, Copy)]
struct Stalled {
    id: ConnId,
    generation: u16,
    on: StallOn,
    /// `on`'s progress when last looked at; the deadline moves while it changes.
    progress: Progress,
    deadline: u64,
}

/// A connection's socket, indexed by the broker's connection id.
pub struct Slot {
    /// -1 when the slot is free.
    fd: RawFd,
    /// Bumped when the slot is reused, so a late linger deadline finds it changed.
    generation: u16,
    flags: u8,
    /// Only while a packet is partial or output waits for the kernel; `None` when idle.
    bufs: Option<Box<Bufs>>,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            fd: -1,
            generation: 0,
            flags: 0,
            bufs: None,
        }
    }
}

#[derive(Default)]
struct Bufs {
    /// Bytes of a packet not complete yet.
    rx: BytesMut,
    /// Output the kernel had no room for; while non-empty, the socket is watched for EPOLLOUT.
    out: BytesMut,
}

/// The socket state of one shard's connections, and its listeners.
pub struct Sockets {
    slots: Vec<Slot>,
    /// Lingering connections in deadline order: (deadline ms, id, generation).
    lingering: VecDeque<(u64, ConnId, u16)>,
    /// Listening sockets and their local port; `None` once closed.
    listeners: Vec<Option<(OwnedFd, u16)>>,
    /// Publishers waiting for a congested subscriber.
    stalled: Vec<Stalled>,
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets {
            slots: Vec::with_capacity(CONNECTIONS_RESERVED_PER_SHARD),
            lingering: VecDeque::new(),
            listeners: Vec::new(),
            stalled: Vec::new(),
        }
    }
}

impl Sockets {
    fn slot(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize).filter(|s| s.fd >= 0)
    }

    fn bufs(&mut self, id: ConnId) -> Option<&mut Bufs> {
        self.slot(id)
            .map(|s| &mut **s.bufs.get_or_insert_with(Box::default))
    }

    /// Bytes of connection `id`'s output waiting for the kernel.
    pub fn blocked_output(&self, id: ConnId) -> usize {
        self.slots
            .get(id as usize)
            .and_then(|s| s.bufs.as_ref())
            .map_or(0, |b| b.out.len())
    }

    pub fn any_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }
}

impl Slot {
    /// What the socket is watched for: room to write while output waits for the kernel, nothing
    /// while stalled, else input.
    fn interest(&self) -> u32 {
        if self.bufs.as_ref().is_some_and(|b| !b.out.is_empty()) {
            WRITE
        } else if self.flags & STALLED != 0 {
            0
        } else {
            READ
        }
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for s in &self.slots {
            if s.fd >= 0 {
                // SAFETY: the slot owns its descriptor.
                unsafe { libc::close(s.fd) };
            }
        }
    }
}

impl Shard {
    /// Hands the shard's listening sockets to its reactor.
    pub fn listen(&self, listeners: Vec<socket2::Socket>) -> std::io::Result<()> {
        for (i, l) in listeners.into_iter().enumerate() {
            let port = l.local_addr()?.as_socket().map_or(0, |a| a.port());
            // SAFETY: `into_raw_fd` gives up ownership of a valid listening socket.
            let fd = unsafe { OwnedFd::from_raw_fd(l.into_raw_fd()) };
            self.poller.add(raw(&fd), LISTENER_TOKEN + i as u64, READ)?;
            self.sockets.borrow_mut().listeners.push(Some((fd, port)));
        }
        Ok(())
    }

    /// Closes the listening sockets (shutdown).
    pub fn stop_listening(&self) {
        for l in self.sockets.borrow_mut().listeners.iter_mut() {
            if let Some((fd, _)) = l.take() {
                self.poller.delete(raw(&fd));
            }
        }
    }

    /// Takes over a connected non-blocking socket: opens its protocol state (with the CONNECT
    /// another shard decoded, and the bytes it read after it) and starts watching it.
    pub fn open_conn(
        self: &Rc<Self>,
        fd: OwnedFd,
        peer: SocketAddr,
        sockport: u16,
        handoff: Option<(Box<Connect>, bytes::Bytes)>,
    ) {
        self.batch(|| {
            let (id, rest) = self.with_broker(|b, now| {
                let id = b.open(peer, now);
                b.set_sockport(id, sockport);
                match handoff {
                    Some((connect, rest)) => {
                        b.accept_handoff(id, connect);
                        (id, rest)
                    }
                    None => (id, bytes::Bytes::new()),
                }
            });
            let fd = fd.into_raw_fd();
            {
                let mut s = self.sockets.borrow_mut();
                let i = id as usize;
                if s.slots.len() <= i {
                    s.slots.resize_with(i + 1, Slot::default);
                }
                let slot = &mut s.slots[i];
                debug_assert!(slot.fd < 0, "connection slot {id} still in use");
                *slot = Slot {
                    fd,
                    generation: slot.generation.wrapping_add(1),
                    flags: 0,
                    bufs: None,
                };
            }
            if let Err(e) = self.poller.add(fd, id as u64, READ) {
                tracing::warn!(error = %e, "cannot watch a connection");
                self.close_now(id);
                return;
            }
            if !rest.is_empty() {
                self.feed(id, BytesMut::from(&rest[..]));
            }
        });
    }

    /// Runs `f`, writing the output it produces once at the end rather than as it is produced.
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        self.deferring.set(self.deferring.get() + 1);
        let r = f();
        self.deferring.set(self.deferring.get() - 1);
        self.flush_dirty();
        r
    }

    /// Writes the output of every connection the broker marked dirty (unless a batch is open).
    pub fn flush_dirty(&self) {
        if self.deferring.get() > 0 || self.flushing.replace(true) {
            return;
        }
        loop {
            let Some(id) = self.dirty.borrow_mut().pop() else {
                break;
            };
            self.flush(id);
        }
        self.flushing.set(false);
    }

    /// Writes connection `id`'s queued output; closes or starts lingering when the broker or
    /// the peer has ended it.
    pub(super) fn flush(&self, id: ConnId) {
        let (fd, flags) = {
            let mut s = self.sockets.borrow_mut();
            let Some(slot) = s.slot(id) else { return };
            if slot.bufs.as_ref().is_some_and(|b| !b.out.is_empty()) {
                // Waiting for EPOLLOUT; the rest follows when the kernel has room.
                return;
            }
            (slot.fd, slot.flags)
        };
        if flags & LINGER != 0 {
            return;
        }
        let (mut tx, close) = self.broker.borrow_mut().take_output(id);
        if !tx.is_empty() {
            match write_some(fd, &tx) {
                Ok(n) if n == tx.len() => {}
                Ok(n) => {
                    tx.advance(n);
                    let mut s = self.sockets.borrow_mut();
                    if let Some(b) = s.bufs(id) {
                        b.out = tx;
                    }
                    drop(s);
                    if self.poller.modify(fd, id as u64, WRITE).is_err() {
                        self.close_now(id);
                    }
                    return;
                }
                Err(_) => {
                    self.close_now(id);
                    return;
                }
            }
        }
        if close.is_some() {
            self.start_linger(id, fd);
        } else if flags & EOF != 0 {
            self.close_now(id);
        }
    }

    /// The kernel has room again for a connection's blocked output.
    fn write_pending(&self, id: ConnId) {
        let Some((fd, out)) = self
            .sockets
            .borrow_mut()
            .slot(id)
            .and_then(|s| Some((s.fd, std::mem::take(&mut s.bufs.as_mut()?.out))))
        else {
            return;
        };
        match write_some(fd, &out) {
            Ok(n) if n == out.len() => {
                self.shrink(id);
                let interest = self
                    .sockets
                    .borrow_mut()
                    .slot(id)
                    .map_or(READ, |s| s.interest());
                if self.poller.modify(fd, id as u64, interest).is_err() {
                    self.close_now(id);
                    return;
                }
                // Whatever the broker queued meanwhile, and a close it asked for.
                self.flush(id);
            }
            Ok(n) => {
                if n > 0 {
                    self.broker.borrow_mut().made_progress(id);
                }
                let mut out = out;
                out.advance(n);
                if let Some(b) = self.sockets.borrow_mut().bufs(id) {
                    b.out = out;
                }
            }
            Err(_) => self.close_now(id),
        }
    }

    /// Frees a connection's buffers once both are empty (an idle connection holds none).
    fn shrink(&self, id: ConnId) {
        if let Some(slot) = self.sockets.borrow_mut().slot(id)
            && slot
                .bufs
                .as_ref()
                .is_some_and(|b| b.rx.is_empty() && b.out.is_empty())
        {
            slot.bufs = None;
        }
    }

    /// Reads what a ready connection holds and feeds it to the broker.
    fn read_ready(self: &Rc<Self>, id: ConnId) {
        let (fd, flags, mut rx) = {
            let mut s = self.sockets.borrow_mut();
            let Some(slot) = s.slot(id) else { return };
            let rx = slot
                .bufs
                .as_mut()
                .map(|b| std::mem::take(&mut b.rx))
                .unwrap_or_default();
            (slot.fd, slot.flags, rx)
        };
        let before = rx.len();
        let eof = self.read_available(fd, &mut rx);
        self.bytes_read
            .set(self.bytes_read.get() + (rx.len() - before) as u64);
        if flags & LINGER != 0 {
            if eof {
                self.close_now(id);
            }
            return;
        }
        if rx.len() > before {
            self.feed(id, rx);
        } else if !rx.is_empty()
            && let Some(b) = self.sockets.borrow_mut().bufs(id)
        {
            b.rx = rx;
        }
        if eof {
            if let Some(slot) = self.sockets.borrow_mut().slot(id) {
                slot.flags |= EOF;
            }
            // Nothing more will come from the peer: what the broker holds back for it goes out
            // before the close. (A flag only: no output to collect, unlike `with_broker`.)
            self.broker.borrow_mut().input_ended(id);
            // Written (and then closed) at the end of the round, after any output of the
            // bytes read with the end of stream.
            self.dirty.borrow_mut().push(id);
            self.flush_dirty();
        }
    }

    /// Feeds bytes read from connection `id` to the broker; a partial packet is kept.
    fn feed(self: &Rc<Self>, id: ConnId, mut rx: BytesMut) {
        match self.with_broker(|b, now| b.input(id, &mut rx, now)) {
            Input::Handoff { home, connect } => self.hand_off(id, home, connect, rx),
            Input::Stall(on) => {
                self.stall(id, on);
                if !rx.is_empty()
                    && let Some(b) = self.sockets.borrow_mut().bufs(id)
                {
                    b.rx = rx;
                }
            }
            Input::Continue | Input::Close => {
                if !rx.is_empty() {
                    if let Some(b) = self.sockets.borrow_mut().bufs(id) {
                        b.rx = rx;
                    }
                } else {
                    self.shrink(id);
                }
            }
        }
    }

    /// Stops reading connection `id` until connection `on` has drained (backpressure from a
    /// congested subscriber to its publisher; DESIGN.md).
    fn stall(&self, id: ConnId, on: StallOn) {
        let deadline = self.now_ms() + STALL_MAX_MS;
        let mut s = self.sockets.borrow_mut();
        let Some(slot) = s.slot(id) else { return };
        if slot.flags & (STALLED | LINGER) != 0 {
            return;
        }
        slot.flags |= STALLED;
        let (fd, generation, interest) = (slot.fd, slot.generation, slot.interest());
        drop(s);
        let progress = self.stall_progress(on);
        let mut s = self.sockets.borrow_mut();
        s.stalled.push(Stalled {
            id,
            generation,
            on,
            progress,
            deadline,
        });
        drop(s);
        if self.poller.modify(fd, id as u64, interest).is_err() {
            self.close_now(id);
        }
        self.stall_added.notify_all();
    }

    /// Connection `on`'s [`Progress`] now.
    pub fn progress(&self, on: ConnId) -> Progress {
        let fd = self
            .sockets
            .borrow()
            .slots
            .get(on as usize)
            .map_or(-1, |s| s.fd);
        let mut unsent: libc::c_int = 0;
        if fd >= 0 {
            // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int: the bytes the socket has yet to send.
            unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) };
        }
        Progress(self.broker.borrow().progress(on), unsent)
    }

    /// What shows that what a publisher waits for is moving: a subscriber's [`Progress`]; for an
    /// outbox, the messages the flusher has handed to the mesh (the outbox's length changes).
    fn stall_progress(&self, on: StallOn) -> Progress {
        match on {
            StallOn::Conn(id) => self.progress(id),
            StallOn::Mesh(dest) => Progress(0, self.broker.borrow().mesh_out_len(dest) as i32),
        }
    }

    /// Whether a publisher stalled on `on` must keep waiting.
    fn stall_holds(&self, on: StallOn) -> bool {
        match on {
            StallOn::Conn(id) => self.congested(id),
            StallOn::Mesh(_) => self.broker.borrow().stall_holds(on),
        }
    }

    /// Whether a publisher stalled on connection `on` must keep waiting: its output (queued in
    /// the broker or for the kernel) or its session queue is still above the resume mark.
    pub fn congested(&self, on: ConnId) -> bool {
        self.broker.borrow().congested(on)
            || self.sockets.borrow().blocked_output(on) > STALL_WRITE_BYTES / 2
    }

    /// Resumes the stalled publishers whose subscriber has drained, or has made no progress for
    /// [`STALL_MAX_MS`] (it is marked slow then); their unhandled bytes are fed first.
    pub fn resume_stalled(self: &Rc<Self>) {
        let stalled = std::mem::take(&mut self.sockets.borrow_mut().stalled);
        if stalled.is_empty() {
            return;
        }
        let now = self.now_ms();
        let mut resumed = Vec::new();
        let mut waiting = Vec::new();
        for mut st in stalled {
            let current = self
                .sockets
                .borrow_mut()
                .slot(st.id)
                .is_some_and(|s| s.generation == st.generation && s.flags & STALLED != 0);
            if !current {
                continue;
            }
            if self.stall_holds(st.on) {
                if now >= st.deadline {
                    let progress = self.stall_progress(st.on);
                    if progress != st.progress {
                        st.progress = progress;
                        st.deadline = now + STALL_MAX_MS;
                        // Its PINGREQs wait unread behind its PUBLISHes: do not time it out.
                        self.broker.borrow_mut().stalled_but_alive(st.id);
                    }
                }
                if now < st.deadline {
                    waiting.push(st);
                    continue;
                }
                if let StallOn::Conn(on) = st.on {
                    self.with_broker(|b, _| b.mark_slow(on));
                }
            }
            resumed.push(st.id);
        }
        self.sockets.borrow_mut().stalled.extend(waiting);
        for id in resumed {
            let (fd, interest, rx) = {
                let mut s = self.sockets.borrow_mut();
                let Some(slot) = s.slot(id) else { continue };
                slot.flags &= !STALLED;
                let rx = slot
                    .bufs
                    .as_mut()
                    .map(|b| std::mem::take(&mut b.rx))
                    .unwrap_or_default();
                (slot.fd, slot.interest(), rx)
            };
            if self.poller.modify(fd, id as u64, interest).is_err() {
                self.close_now(id);
                continue;
            }
            if !rx.is_empty() {
                self.feed(id, rx);
            }
        }
    }

    /// Moves a connection to its home shard: the socket leaves this shard's ring and goes, with
    /// its CONNECT and the bytes read after it, to the home shard over the mesh.
    fn hand_off(&self, id: ConnId, home: usize, connect: Box<Connect>, rest: BytesMut) {
        let Some(fd) = self.free_slot(id) else { return };
        let peer = self.with_broker(|b, _| b.release(id));
        let Some(peer) = peer else {
            // SAFETY: the slot owned the descriptor.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            return;
        };
        let h = Handoff {
            // SAFETY: the slot owned the descriptor; it is now the handoff's alone.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            peer,
            connect,
            rest: rest.freeze(),
        };
        self.with_broker(|b, _| b.queue_handoff(home, h));
    }

    /// Takes the descriptor out of a connection's slot and stops watching it.
    fn free_slot(&self, id: ConnId) -> Option<RawFd> {
        let mut s = self.sockets.borrow_mut();
        let slot = s.slot(id)?;
        let fd = std::mem::replace(&mut slot.fd, -1);
        slot.flags = 0;
        slot.bufs = None;
        drop(s);
        self.poller.delete(fd);
        Some(fd)
    }

    /// Closes connection `id`'s socket now and tells the broker.
    fn close_now(&self, id: ConnId) {
        if let Some(fd) = self.free_slot(id) {
            // SAFETY: the slot owned the descriptor.
            unsafe { libc::close(fd) };
            self.with_broker(|b, now| b.closed(id, now));
        }
    }

    /// Our last bytes are written: shut our side and give the peer [`CLOSE_LINGER_MS`] to read
    /// them (input meanwhile is discarded); the sweeper closes the socket then.
    fn start_linger(&self, id: ConnId, fd: RawFd) {
        // SAFETY: shutdown of a descriptor the slot owns.
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        let deadline = self.now_ms() + CLOSE_LINGER_MS;
        let mut s = self.sockets.borrow_mut();
        let Some(slot) = s.slot(id) else { return };
        slot.flags |= LINGER;
        slot.bufs = None;
        let generation = slot.generation;
        s.lingering.push_back((deadline, id, generation));
        drop(s);
        self.linger_added.notify_all();
    }

    /// Accepts what a listener has queued (a bounded number per round).
    fn accept_ready(self: &Rc<Self>, index: usize) {
        for _ in 0..ACCEPTS_PER_ROUND {
            let (lfd, port) = match self.sockets.borrow().listeners.get(index) {
                Some(Some((fd, port))) => (raw(fd), *port),
                _ => return,
            };
            match accept(lfd) {
                Ok((fd, peer)) => self.open_conn(fd, peer, port, None),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO)
                    ) => {}
                Err(e) => {
                    // EMFILE and friends: stop watching the listener for a moment instead of
                    // spinning on the error (it stays level-triggered ready).
                    tracing::warn!(error = %e, "accept failed");
                    let token = LISTENER_TOKEN + index as u64;
                    let _ = self.poller.modify(lfd, token, 0);
                    let ctx = self.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                        if let Some(Some((fd, _))) = ctx.sockets.borrow().listeners.get(index) {
                            let _ = ctx.poller.modify(raw(fd), token, READ);
                        }
                    })
                    .detach();
                    return;
                }
            }
        }
    }
}

/// The shard's reactor: waits for ready sockets and serves them, a bounded round at a time.
/// While busy with open-loop input it starts its rounds at most once per batching window
/// ([`Pacer`]), sleeping out the rest of it (the mesh, the flushers and the timers run meanwhile).
pub async fn reactor(ctx: Rc<Shard>) {
    let mut events: Vec<libc::epoll_event> = Vec::with_capacity(READY_EVENTS_PER_ROUND);
    // Off (the default): no clock reads per round.
    let pacing = !ctx.batch_window.is_zero();
    let mut pacer = Pacer::new(ctx.batch_window, Instant::now());
    let mut round_start = Instant::now();
    loop {
        if let Some(due) = pacer.next_round(round_start) {
            let now = Instant::now();
            if now < due {
                glommio::timer::sleep(due - now).await;
            } else {
                futures_lite::future::yield_now().await;
            }
        }
        // An outbox over its hard bound stops every reader of this shard until the flusher drains it.
        loop {
            let drained = ctx.drained.notified();
            if !ctx.mesh_backlogged() {
                break;
            }
            drained.await;
        }
        ctx.poller.ready(&mut events);
        if events.is_empty() {
            pacer.idle();
            ctx.poller.readable().await;
            continue;
        }
        if pacing {
            round_start = Instant::now();
        }
        ctx.batch(|| {
            for ev in &events {
                let token = ev.u64;
                if token >= LISTENER_TOKEN {
                    ctx.accept_ready((token - LISTENER_TOKEN) as usize);
                    continue;
                }
                let id = token as ConnId;
                let state = ctx.sockets.borrow_mut().slot(id).map(|s| {
                    let blocked = s.bufs.as_ref().is_some_and(|b| !b.out.is_empty());
                    (blocked, s.flags & STALLED != 0)
                });
                let failed = ev.events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
                match state {
                    Some((true, _)) => ctx.write_pending(id),
                    // Watched for nothing while stalled: only an error or hang-up arrives.
                    Some((false, true)) if failed => ctx.close_now(id),
                    Some((false, true)) => {}
                    Some((false, false)) => ctx.read_ready(id),
                    None => {}
                }
            }
            if ctx.sockets.borrow().any_stalled() {
                ctx.resume_stalled();
            }
        });
        if pacing {
            pacer.after_round(Instant::now(), events.len(), ctx.bytes_read.get());
        }
        // Let the mesh, the flushers and the ticker run between rounds (the batching sleep does).
        if !pacer.batching() {
            futures_lite::future::yield_now().await;
        }
    }
}

/// Checks the stalled publishers every [`STALL_POLL_MS`] while there are any, for when no
/// socket activity makes the reactor check them (a subscriber that stopped reading).
pub async fn stall_sweeper(ctx: Rc<Shard>) {
    loop {
        let added = ctx.stall_added.notified();
        if !ctx.sockets.borrow().any_stalled() {
            added.await;
            continue;
        }
        glommio::timer::sleep(Duration::from_millis(STALL_POLL_MS)).await;
        ctx.batch(|| ctx.resume_stalled());
    }
}

/// Closes lingering connections when their time is up.
pub async fn linger_sweeper(ctx: Rc<Shard>) {
    loop {
        let added = ctx.linger_added.notified();
        let next = ctx.sockets.borrow().lingering.front().copied();
        let Some((deadline, id, generation)) = next else {
            added.await;
            continue;
        };
        let now = ctx.now_ms();
        if now < deadline {
            glommio::timer::sleep(Duration::from_millis(deadline - now)).await;
            continue;
        }
        ctx.sockets.borrow_mut().lingering.pop_front();
        let current = ctx
            .sockets
            .borrow_mut()
            .slot(id)
            .is_some_and(|s| s.generation == generation && s.flags & LINGER != 0);
        if current {
            ctx.close_now(id);
        }
    }
}

fn raw(fd: &OwnedFd) -> RawFd {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

/// Writes as much of `buf` as the kernel takes now.
fn write_some(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &buf[done..];
        // SAFETY: `rest` is readable memory of `rest.len()` bytes.
        let n = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            done += n as usize;
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => break,
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
    Ok(done)
}

/// Accepts one connection as a non-blocking socket, with its peer address.
fn accept(lfd: RawFd) -> std::io::Result<(OwnedFd, SocketAddr)> {
    // SAFETY: zeroed storage is a valid sockaddr_storage; accept4 writes at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let fd = unsafe {
        libc::accept4(
            lfd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, sockaddr(&storage)))
}

fn sockaddr(s: &libc::sockaddr_storage) -> SocketAddr {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            SocketAddr::from((ip, u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            ))
        }
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}
