//! The runtime: the only code that touches glommio, sockets, the clock and signals. It builds the
//! N×N mesh, binds the listeners, starts one pinned executor per shard (`shard`), serves every
//! socket of a shard from one reactor task over its readiness ring (`conn`, `poller`) and stops
//! everything on SIGINT / SIGTERM.

mod conn;
mod listener;
mod notify;
mod pacer;
mod poller;
mod shard;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};

use crate::broker::Settings;
use crate::limits::{MESH_CHANNEL_BATCHES, SHARDS_MAX};
pub use listener::probe_free;

/// glommio refuses to start below this much lockable memory (DESIGN.md, glommio notes).
const MEMLOCK_MIN_BYTES: u64 = 512 << 10;
/// Lockable memory one executor needs with our settings (3 rings + 3 × 64 KiB registered).
const MEMLOCK_PER_SHARD_BYTES: u64 = 256 << 10;

/// Everything the runtime needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    pub binds: Vec<(SocketAddr, u32)>,
    pub shards: usize,
    pub pin_cores: bool,
    /// Core for each shard when pinning (empty = shard i on core i).
    pub cores: Vec<usize>,
    /// `runtime.batch_window_us` (zero = off).
    pub batch_window: std::time::Duration,
}

/// Why the broker could not start; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}{hint}", hint = if source.kind() == std::io::ErrorKind::AddrInUse { " (is another broker, or another ringmq, running on that port?)" } else { "" })]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`) is {have_kib} KiB; io_uring needs about {need_kib} KiB for {shards} shard(s): raise it with `ulimit -l {need_kib}` or LimitMEMLOCK= (see tuning/README.md)"
    )]
    MemLock {
        have_kib: u64,
        need_kib: u64,
        shards: usize,
    },
    #[error("--shards must be between 1 and {SHARDS_MAX}, got {0}")]
    Shards(usize),
    #[error(
        "cannot start shard {shard}: {reason} (io_uring needs Linux 5.8+ and enough locked memory: see tuning/README.md)"
    )]
    Executor { shard: usize, reason: String },
    #[error("shard {shard} failed: {reason}")]
    Shard { shard: usize, reason: String },
}

/// Starts the broker and blocks until SIGINT or SIGTERM has stopped it.
pub fn run(opts: Options) -> Result<(), StartError> {
    let shutdown = Arc::new(AtomicBool::new(false));
    block_stop_signals();
    let handles = start(opts, shutdown.clone())?;
    wait_for_stop_signal(&shutdown, &handles.1);
    handles.join()
}

/// Running shards: their join handles and how many have finished.
pub struct Running(
    Vec<glommio::ExecutorJoinHandle<Result<(), String>>>,
    Arc<AtomicUsize>,
);

impl Running {
    /// Waits for every shard; the first failure is returned.
    pub fn join(self) -> Result<(), StartError> {
        let mut result = Ok(());
        for (shard, h) in self.0.into_iter().enumerate() {
            let r = match h.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(reason)) => Err(StartError::Shard { shard, reason }),
                Err(e) => Err(StartError::Shard {
                    shard,
                    reason: e.to_string(),
                }),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }
}

/// Binds the listeners, builds the mesh and starts the shards; `shutdown` stops them.
pub fn start(opts: Options, shutdown: Arc<AtomicBool>) -> Result<Running, StartError> {
    let n = opts.shards;
    if n == 0 || n > SHARDS_MAX {
        return Err(StartError::Shards(n));
    }
    check_memlock(n)?;
    tune_malloc();
    for &(addr, _) in &opts.binds {
        listener::probe_free(addr).map_err(|source| StartError::Bind { addr, source })?;
    }
    let mut listeners: Vec<Vec<socket2::Socket>> = Vec::with_capacity(n);
    for _ in 0..n {
        let mut mine = Vec::new();
        for &(addr, backlog) in &opts.binds {
            mine.push(
                listener::bind(addr, backlog)
                    .map_err(|source| StartError::Bind { addr, source })?,
            );
        }
        listeners.push(mine);
    }
    for (addr, _) in &opts.binds {
        tracing::info!(%addr, shards = n, "listening");
    }

    let mut senders: Vec<Vec<Option<_>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut receivers: Vec<Vec<Option<_>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let (s, r) = shared_channel::new_bounded(MESH_CHANNEL_BATCHES);
                // Messages the receiver has handled, for the sender's in-flight bound.
                let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
                senders[i][j] = Some((s, handled.clone()));
                receivers[j][i] = Some((r, handled));
            }
        }
    }

    let epoch = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let wills_published = Arc::new(AtomicUsize::new(0));
    let cores = core_list(&opts);
    let mut handles = Vec::with_capacity(n);
    for (shard, ((mine, tx), rx)) in listeners
        .into_iter()
        .zip(senders)
        .zip(receivers)
        .enumerate()
    {
        let setup = shard::ShardSetup {
            shard,
            nr_shards: n,
            settings: opts.settings.clone(),
            batch_window: opts.batch_window,
            listeners: mine,
            senders: tx,
            receivers: rx,
            epoch,
            shutdown: shutdown.clone(),
            wills_published: wills_published.clone(),
        };
        let placement = match &cores {
            Some(cores) => Placement::Fixed(cores[shard]),
            None => Placement::Unbound,
        };
        let done = done.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard{shard}"))
            // TCP never uses glommio's registered I/O memory; keep it (and memlock) small.
            .io_memory(64 << 10)
            .ring_depth(256)
            .spawn(move || async move {
                let r = shard::run(setup).await;
                done.fetch_add(1, Ordering::SeqCst);
                r
            })
            .map_err(|e| StartError::Executor {
                shard,
                reason: e.to_string(),
            })?;
        handles.push(handle);
    }
    Ok(Running(handles, done))
}

/// Fixes glibc malloc's thresholds before the shards start (a no-op with other C libraries).
///
/// - `M_MMAP_THRESHOLD` stays at its default, 128 KiB, but fixed: by default glibc raises it to
///   the size of every mapped block freed (up to 32 MiB), after which a shard's large transient
///   buffers (a burst's held SUBACK queue, a mesh batch, a table's old half while it doubles)
///   are carved from its heap, and the pages they touched stay with the heap after they are freed.
/// - `M_TOP_PAD` 16 KiB (default 128 KiB) and `M_TRIM_THRESHOLD` 64 KiB: a shard's heap (a
///   glibc arena of its own) gives back the free space at its end once it exceeds 64 KiB.
///   `malloc_trim` never shrinks the end of a thread's arena, only the main one's, so after a
///   connect burst ~100 KiB per shard of freed, touched pages stayed resident at the top of each
///   shard's heap. Costs an `madvise` when the heap's end shrinks by that much, rare in steady
///   state.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before the shard threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TOP_PAD, 16 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 10);
    }
}

/// Cores to pin shards to, or `None` to leave them unbound (pinning off, or more shards than
/// cores).
fn core_list(opts: &Options) -> Option<Vec<usize>> {
    if !opts.pin_cores {
        return None;
    }
    if !opts.cores.is_empty() {
        return Some(opts.cores.clone());
    }
    let available = core_affinity::get_core_ids()?;
    if opts.shards > available.len() {
        tracing::warn!(
            shards = opts.shards,
            cores = available.len(),
            "more shards than cores: shards are not pinned"
        );
        return None;
    }
    Some(available.iter().take(opts.shards).map(|c| c.id).collect())
}

fn check_memlock(shards: usize) -> Result<(), StartError> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Ok(());
    }
    if lim.rlim_cur == libc::RLIM_INFINITY || has_ipc_lock() {
        return Ok(());
    }
    let need = (shards as u64 * MEMLOCK_PER_SHARD_BYTES).max(MEMLOCK_MIN_BYTES);
    if lim.rlim_cur < need {
        return Err(StartError::MemLock {
            have_kib: lim.rlim_cur >> 10,
            need_kib: need >> 10,
            shards,
        });
    }
    Ok(())
}

/// Whether the process has CAP_IPC_LOCK (then locked memory is not limited).
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Blocks SIGINT and SIGTERM in this thread (and so in the shard threads it starts), so that
/// only [`wait_for_stop_signal`] receives them.
fn block_stop_signals() {
    // SAFETY: plain libc signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        // A shell starts background jobs with SIGINT ignored, and an ignored signal is discarded
        // rather than queued for `sigtimedwait`: restore the default disposition (the signals
        // stay blocked, so the default action never runs).
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// Waits for SIGINT / SIGTERM (or for every shard to have stopped on its own), then sets
/// `shutdown`.
fn wait_for_stop_signal(shutdown: &AtomicBool, done: &AtomicUsize) {
    // SAFETY: as in `block_stop_signals`; sigtimedwait only reads the set and fills `info`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigtimedwait(&set, &mut info, &timeout);
            if sig == libc::SIGINT || sig == libc::SIGTERM {
                tracing::info!(signal = sig, "stopping");
                break;
            }
            if done.load(Ordering::SeqCst) > 0 {
                break;
            }
        }
    }
    shutdown.store(true, Ordering::SeqCst);
}
