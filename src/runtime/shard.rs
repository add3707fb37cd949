//! One shard at run time, on its own pinned glommio executor: the broker logic behind a
//! `RefCell` (borrowed only between awaits), the reactor that serves every socket of the shard
//! (`conn.rs`), one task per inbound mesh channel, one flusher task per outbound mesh channel,
//! the one-second tick, and shutdown.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::channels::shared_channel::{
    ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::{spawn_local, timer::sleep};

use super::conn::{Sockets, linger_sweeper, reactor, stall_sweeper};
use super::notify::Notify;
use super::poller::Poller;
use crate::broker::{Broker, ConnId, Handoff, MeshMsg, Settings, ShardId};
use crate::limits::{
    HEAP_TRIM_CONNECTIONS_CHANGED, MESH_BATCH_MESSAGES_MAX, MESH_IN_FLIGHT_MESSAGES_MAX,
    MESH_OUTBOX_MESSAGES_HARD_MAX, READ_TURN_BYTES_MAX, SHUTDOWN_GRACE_MS, STALL_MAX_MS,
    STALL_POLL_MS,
};

pub type Batch = Vec<MeshMsg>;

/// What `runtime::run` hands each shard's thread.
pub struct ShardSetup {
    pub shard: ShardId,
    pub nr_shards: usize,
    pub settings: Settings,
    /// `runtime.batch_window_us` (zero = off).
    pub batch_window: Duration,
    pub listeners: Vec<socket2::Socket>,
    /// Indexed by destination shard; `None` for this shard. With the count of messages the
    /// destination has handled.
    pub senders: Vec<Option<(SharedSender<Batch>, Arc<AtomicU64>)>>,
    /// Indexed by source shard; `None` for this shard. With the count of messages handled, for
    /// the source.
    pub receivers: Vec<Option<(SharedReceiver<Batch>, Arc<AtomicU64>)>>,
    pub epoch: Instant,
    pub shutdown: Arc<AtomicBool>,
    /// Shards that have published their wills at shutdown (a barrier before disconnecting).
    pub wills_published: Arc<AtomicUsize>,
}

/// The shard's state shared by its tasks (all on one thread).
pub struct Shard {
    pub broker: RefCell<Broker>,
    /// Every socket of the shard is watched here.
    pub poller: Poller,
    pub sockets: RefCell<Sockets>,
    /// Signalled when mesh messages are queued for a destination.
    flush: Vec<Notify>,
    /// Signalled when a flusher has drained its outbox (publishers waiting on backpressure).
    pub drained: Notify,
    /// Signalled when a connection starts lingering.
    pub linger_added: Notify,
    /// Signalled when a publisher is stalled.
    pub stall_added: Notify,
    /// Connections whose output grew large during a batch: written before the batch ends.
    big: RefCell<Vec<ConnId>>,
    epoch: Instant,
    /// Connections whose output the broker changed, to be written.
    pub dirty: RefCell<Vec<ConnId>>,
    /// Open [`Shard::batch`]es: output is written when the outermost ends.
    pub deferring: Cell<u32>,
    /// Set while [`Shard::flush_dirty`] runs (it is not re-entered).
    pub flushing: Cell<bool>,
    /// Every socket read of this shard lands here first.
    scratch: RefCell<Vec<u8>>,
    /// While busy, the reactor starts a round at most this often (zero = as soon as ready).
    pub batch_window: Duration,
    /// Bytes read from client sockets so far (the batching pacer's measure of input).
    pub bytes_read: Cell<u64>,
}

impl Shard {
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs `f` on the broker, then writes the output it produced (at the end of the
    /// enclosing [`Shard::batch`], if any) and wakes the flushers it gave work to.
    pub fn with_broker<R>(&self, f: impl FnOnce(&mut Broker, u64) -> R) -> R {
        let now = self.now_ms();
        let r = {
            let mut broker = self.broker.borrow_mut();
            let r = f(&mut broker, now);
            broker.take_dirty(&mut self.dirty.borrow_mut());
            broker.take_big_output(&mut self.big.borrow_mut());
            for (dest, flush) in self.flush.iter().enumerate() {
                if dest != broker.shard() && broker.has_mesh_out(dest) {
                    flush.notify_all();
                }
            }
            r
        };
        // A subscriber whose output grew large is written now, even inside a batch, so that a
        // round reading many publishers keeps it moving instead of piling its output up.
        loop {
            let Some(id) = self.big.borrow_mut().pop() else {
                break;
            };
            self.flush(id);
        }
        self.flush_dirty();
        r
    }

    /// True while some outbox holds messages not yet handed to the mesh.
    fn mesh_pending(&self) -> bool {
        let b = self.broker.borrow();
        (0..b.nr_shards()).any(|d| d != b.shard() && b.mesh_out_len(d) > 0)
    }

    /// Reads what socket `fd` holds without blocking (at most [`READ_TURN_BYTES_MAX`] per turn)
    /// into the shard's scratch buffer, and appends those bytes to `rx` with one exact-size
    /// allocation. True at end of stream (or on a socket error). An end of stream right behind
    /// data is seen at the next turn.
    pub fn read_available(&self, fd: i32, rx: &mut BytesMut) -> bool {
        let mut scratch = self.scratch.borrow_mut();
        let mut len = 0;
        let mut eof = false;
        while len < scratch.len() {
            let spare = &mut scratch[len..];
            // SAFETY: `spare` is writable memory of `spare.len()` bytes; recv writes at most that.
            let n = unsafe {
                libc::recv(
                    fd,
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                len += n as usize;
                if (n as usize) < spare.len() {
                    // A short read took all the socket held: another recv would only say
                    // EAGAIN (level-triggered epoll reports what arrives after).
                    break;
                }
                continue;
            }
            if n == 0 {
                eof = true;
                break;
            }
            match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::WouldBlock => break,
                std::io::ErrorKind::Interrupted => continue,
                _ => {
                    eof = true;
                    break;
                }
            }
        }
        if len > 0 {
            rx.reserve(len);
            rx.extend_from_slice(&scratch[..len]);
        }
        eof
    }

    /// True while some outbox holds more than its hard bound: the reactor stops reading until it
    /// drains. (Publishers stall one by one at a quarter of that, see `Input::Stall`.)
    pub fn mesh_backlogged(&self) -> bool {
        let b = self.broker.borrow();
        (0..b.nr_shards())
            .any(|d| d != b.shard() && b.mesh_out_len(d) > MESH_OUTBOX_MESSAGES_HARD_MAX)
    }
}

/// The shard's main future: returns once shutdown has completed.
pub async fn run(setup: ShardSetup) -> Result<(), String> {
    let ShardSetup {
        shard,
        nr_shards,
        settings,
        batch_window,
        listeners,
        senders,
        receivers,
        epoch,
        shutdown,
        wills_published,
    } = setup;
    let poller = Poller::new().map_err(|e| format!("epoll_create: {e}"))?;
    let ctx = Rc::new(Shard {
        broker: RefCell::new(Broker::new(shard, nr_shards, Rc::new(settings))),
        poller,
        sockets: RefCell::new(Sockets::default()),
        flush: (0..nr_shards).map(|_| Notify::default()).collect(),
        drained: Notify::default(),
        linger_added: Notify::default(),
        stall_added: Notify::default(),
        big: RefCell::new(Vec::new()),
        epoch,
        dirty: RefCell::new(Vec::new()),
        deferring: Cell::new(0),
        flushing: Cell::new(false),
        scratch: RefCell::new(vec![0; READ_TURN_BYTES_MAX]),
        batch_window,
        bytes_read: Cell::new(0),
    });

    // Connect every mesh endpoint concurrently: each connect waits for its peer.
    let rx_tasks: Vec<_> = receivers
        .into_iter()
        .map(|r| r.map(|(r, handled)| (spawn_local(r.connect()), handled)))
        .collect();
    let tx_tasks: Vec<_> = senders
        .into_iter()
        .map(|s| s.map(|(s, handled)| (spawn_local(s.connect()), handled)))
        .collect();
    for (from, t) in rx_tasks.into_iter().enumerate() {
        if let Some((t, handled)) = t {
            let r = t.await;
            spawn_local(inbound(ctx.clone(), from, r, handled)).detach();
        }
    }
    for (dest, t) in tx_tasks.into_iter().enumerate() {
        if let Some((t, handled)) = t {
            let s = t.await;
            spawn_local(flusher(ctx.clone(), dest, s, handled)).detach();
        }
    }

    ctx.listen(listeners)
        .map_err(|e| format!("cannot watch the listeners: {e}"))?;
    spawn_local(reactor(ctx.clone())).detach();
    spawn_local(linger_sweeper(ctx.clone())).detach();
    spawn_local(stall_sweeper(ctx.clone())).detach();
    ctx.with_broker(|b, now| b.set_unix_time(now, unix_ms()));
    spawn_local(ticker(ctx.clone())).detach();

    while !shutdown.load(Ordering::Relaxed) {
        sleep(Duration::from_millis(100)).await;
    }
    // Stop accepting, publish the wills while every shard's clients are still connected, and
    // wait until every shard has done so and its wills have crossed the mesh; then tell every
    // client and let the connections close.
    ctx.stop_listening();
    ctx.with_broker(|b, now| b.publish_wills_for_shutdown(now));
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS / 2);
    while ctx.mesh_pending() && Instant::now() < deadline {
        sleep(Duration::from_millis(5)).await;
    }
    wills_published.fetch_add(1, Ordering::SeqCst);
    while wills_published.load(Ordering::SeqCst) < nr_shards && Instant::now() < deadline {
        sleep(Duration::from_millis(5)).await;
    }
    // The inbound tasks hand what is in the rings to the local subscribers.
    sleep(Duration::from_millis(50)).await;
    ctx.with_broker(|b, _| b.shutdown());
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    while ctx.broker.borrow().connection_count() > 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(20)).await;
    }
    // Let the wills published by the last connections cross the mesh.
    sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// One task per inbound channel, looping only on `recv` (DESIGN.md: never in a select).
async fn inbound(
    ctx: Rc<Shard>,
    from: ShardId,
    rx: ConnectedReceiver<Batch>,
    handled: Arc<AtomicU64>,
) {
    while let Some(batch) = rx.recv().await {
        let n = batch.len() as u64;
        let mut msgs = batch.into_iter();
        loop {
            let mut handoffs = Vec::new();
            let stall = ctx.with_broker(|b, now| {
                for msg in msgs.by_ref() {
                    if let Some(h) = b.mesh_in(from, msg, now) {
                        handoffs.push(h);
                    }
                    if let Some(on) = b.take_stall() {
                        return Some(on);
                    }
                }
                None
            });
            ctx.batch(|| {
                for h in handoffs {
                    adopt(&ctx, *h);
                }
            });
            let Some(on) = stall else { break };
            // A local subscriber this message went to is congested: hold the rest of the batch
            // until it drains (the ring fills meanwhile and the other shard stops reading its
            // publishers), as long as it makes progress at least every STALL_MAX_MS.
            let mut deadline = Instant::now() + Duration::from_millis(STALL_MAX_MS);
            let mut progress = ctx.progress(on);
            while ctx.congested(on) {
                if Instant::now() >= deadline {
                    let now = ctx.progress(on);
                    if now == progress {
                        ctx.with_broker(|b, _| b.mark_slow(on));
                        break;
                    }
                    progress = now;
                    deadline = Instant::now() + Duration::from_millis(STALL_MAX_MS);
                }
                sleep(Duration::from_millis(STALL_POLL_MS)).await;
            }
        }
        handled.fetch_add(n, Ordering::Release);
    }
}

/// A connection handed over by another shard: its socket is watched here from now on.
fn adopt(ctx: &Rc<Shard>, h: Handoff) {
    let Handoff {
        fd,
        peer,
        connect,
        rest,
    } = h;
    let sockport = local_port(&fd);
    ctx.open_conn(fd, peer, sockport, Some((connect, rest)));
}

/// The local port of a socket (0 if unknown).
fn local_port(fd: &std::os::fd::OwnedFd) -> u16 {
    socket2::SockRef::from(fd)
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or(0, |a| a.port())
}

/// Sends this shard's queued mesh messages to `dest` in batches, waiting for room in the ring
/// and while more than [`MESH_IN_FLIGHT_MESSAGES_MAX`] sent messages are not handled yet (the
/// ring counts batches, which may be small or large).
async fn flusher(
    ctx: Rc<Shard>,
    dest: ShardId,
    tx: ConnectedSender<Batch>,
    handled: Arc<AtomicU64>,
) {
    let mut sent: u64 = 0;
    loop {
        while sent.saturating_sub(handled.load(Ordering::Acquire))
            > MESH_IN_FLIGHT_MESSAGES_MAX as u64
        {
            sleep(Duration::from_millis(STALL_POLL_MS)).await;
        }
        let notified = ctx.flush[dest].notified();
        let batch = ctx
            .broker
            .borrow_mut()
            .take_mesh_out(dest, MESH_BATCH_MESSAGES_MAX);
        if batch.is_empty() {
            ctx.drained.notify_all();
            notified.await;
            continue;
        }
        sent += batch.len() as u64;
        if tx.send(batch).await.is_err() {
            // The peer shard has stopped (shutdown).
            return;
        }
    }
}

/// The wall clock in ms since the Unix epoch (0 if the clock is before it), for the broker.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn ticker(ctx: Rc<Shard>) {
    let mut trimmed_at = 0;
    let mut settle = false;
    loop {
        sleep(Duration::from_secs(1)).await;
        ctx.with_broker(|b, now| b.tick(now, unix_ms()));
        let conns = ctx.broker.borrow().connection_count();
        if conns.abs_diff(trimmed_at) >= HEAP_TRIM_CONNECTIONS_CHANGED {
            trim_heap();
            trimmed_at = conns;
            settle = true;
        } else if settle {
            trim_heap();
            settle = false;
        }
    }
}

/// Gives the free pages of every malloc arena back to the kernel (glibc; a no-op elsewhere).
/// Costs a walk of the free lists and a few `madvise` calls: called after connect or disconnect
/// bursts only (see [`HEAP_TRIM_CONNECTIONS_CHANGED`]).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; always safe to call.
    unsafe {
        libc::malloc_trim(0);
    }
}
