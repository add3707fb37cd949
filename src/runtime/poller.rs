//! One shard's readiness ring: a level-triggered epoll instance watching every client socket and
//! listener the shard owns. Watching costs the kernel one small epoll item per socket and user
//! space nothing (DESIGN.md, "Memory for millions of idle connections"); the shard's reactor task
//! (`conn.rs`) asks it for ready sockets without blocking and, when there are none, sleeps in
//! glommio until the epoll instance itself becomes readable.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use futures_lite::AsyncReadExt;

/// Interest of a socket we read from (a peer's half-close wakes it too).
pub const READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
/// Interest of a socket whose output waits for room in its send buffer (not read meanwhile).
pub const WRITE: u32 = libc::EPOLLOUT as u32;

pub struct Poller {
    epfd: OwnedFd,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Poller {
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event; the kernel only reads it.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts watching `fd` for `events`; ready events carry `token`.
    pub fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
    }

    /// Stops watching `fd` (before it is closed or handed to another shard).
    pub fn delete(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Fills `events` (up to its capacity) with the sockets ready now, without waiting.
    pub fn ready(&self, events: &mut Vec<libc::epoll_event>) {
        events.clear();
        let max = events.capacity().min(i32::MAX as usize) as i32;
        // SAFETY: the kernel writes at most `max` events into the vector's spare capacity.
        let n = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events.as_mut_ptr(), max, 0) };
        if n > 0 {
            // SAFETY: the kernel initialised the first `n` entries.
            unsafe { events.set_len(n as usize) };
        }
    }

    /// Completes once some watched socket is ready (possibly at once).
    ///
    /// glommio 0.9 cannot await an arbitrary descriptor (DataDog/glommio#531). A `TcpStream`
    /// built on a duplicate of the epoll descriptor arms an io_uring POLL_ADD(POLLIN) on it at
    /// construction, and a read checks that poll before it tries `recv`; so the read completes
    /// when the epoll instance has ready events — with ENOTSOCK, which is the signal. Costs a
    /// dup, a poll and a close per sleep of the shard, nothing per socket.
    /// (`notes/glommio-0.9.md` §1.3 (b); glommio is pinned to 0.9.0 in Cargo.lock.)
    pub async fn readable(&self) {
        // SAFETY: dup of a descriptor we own; the result is checked.
        let dup = unsafe { libc::dup(self.epfd.as_raw_fd()) };
        if dup < 0 {
            tracing::warn!("epoll dup failed: {}", io::Error::last_os_error());
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            return;
        }
        // SAFETY: `dup` is a fresh descriptor; the stream owns (and closes) it alone.
        let mut waiter = unsafe { glommio::net::TcpStream::from_raw_fd(dup) };
        let mut byte = [0u8; 1];
        let _ = waiter.read(&mut byte).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn readable_completes_when_a_watched_socket_has_data() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 << 10)
            .ring_depth(64)
            .spawn(|| async {
                let p = Poller::new().unwrap();
                let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
                p.add(a.as_raw_fd(), 7, READ).unwrap();
                let mut events = Vec::with_capacity(8);
                p.ready(&mut events);
                assert!(events.is_empty());
                let writer = glommio::spawn_local(async move {
                    glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                    b.write_all(b"x").unwrap();
                    b
                });
                // Twice: the wait must work again after it has fired once.
                for _ in 0..2 {
                    p.readable().await;
                    p.ready(&mut events);
                    assert_eq!(events.len(), 1);
                    assert_eq!({ events[0].u64 }, 7);
                }
                drop(writer.await);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
