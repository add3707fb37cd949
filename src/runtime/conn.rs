//! The connection driver: the one place that reads and writes a client socket. One small task
//! per connection on the shard that owns it. While idle it holds no read buffer: it waits for
//! readability with a one-byte read, then drains the socket without blocking into a buffer that
//! is released again once empty. Output queued by the broker is written when the task is woken.

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::future::or;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::sleep;

use super::shard::{Shard, hand_off};
use crate::broker::{ConnId, Input};
use crate::limits::{
    CLOSE_LINGER_MS, READ_BUFFER_KEEP_BYTES, READ_CHUNK_BYTES, READ_TURN_BYTES_MAX,
};

enum Event {
    Readable(std::io::Result<usize>),
    Woken,
}

/// What draining the socket found.
struct Drained {
    eof: bool,
}

pub async fn drive(ctx: Rc<Shard>, mut stream: TcpStream, id: ConnId, mut rx: BytesMut) {
    let peer = stream.peer_addr().ok();
    let mut byte = [0u8; 1];
    let mut eof = false;
    // Bytes that arrived with a handed-over connection are handled first.
    if !rx.is_empty()
        && let Some(handoff) = process(&ctx, id, &mut rx)
    {
        let (home, connect) = handoff;
        if let Some(peer) = peer {
            hand_off(&ctx, id, stream, peer, home, connect, rx);
        }
        return;
    }
    loop {
        let (tx, close) = ctx.with_broker(|b, _| b.take_output(id));
        if !tx.is_empty() && stream.write_all(&tx).await.is_err() {
            break;
        }
        if close.is_some() {
            linger(&mut stream).await;
            break;
        }
        if eof {
            break;
        }
        while ctx.mesh_backlogged() {
            ctx.drained.notified().await;
        }
        let event = or(
            async { Event::Readable(stream.read(&mut byte).await) },
            async {
                ctx.wakers.woken(id).await;
                Event::Woken
            },
        )
        .await;
        match event {
            Event::Woken => continue,
            Event::Readable(Ok(0)) | Event::Readable(Err(_)) => break,
            Event::Readable(Ok(_)) => {
                rx.extend_from_slice(&byte);
                eof = drain(stream.as_raw_fd(), &mut rx).eof;
                if let Some((home, connect)) = process(&ctx, id, &mut rx) {
                    if let Some(peer) = peer {
                        hand_off(&ctx, id, stream, peer, home, connect, rx);
                    }
                    return;
                }
                if rx.is_empty() && rx.capacity() >= READ_BUFFER_KEEP_BYTES {
                    rx = BytesMut::new();
                }
                glommio::yield_if_needed().await;
            }
        }
    }
    ctx.with_broker(|b, now| b.closed(id, now));
}

/// Feeds the buffered bytes to the broker; `Some` when the connection must move to its home shard.
fn process(
    ctx: &Rc<Shard>,
    id: ConnId,
    rx: &mut BytesMut,
) -> Option<(usize, Box<crate::protocol::Connect>)> {
    match ctx.with_broker(|b, now| b.input(id, rx, now)) {
        Input::Continue | Input::Close => None,
        Input::Handoff { home, connect } => Some((home, connect)),
    }
}

/// Reads what the socket holds without blocking, at most [`READ_TURN_BYTES_MAX`] per turn.
fn drain(fd: i32, rx: &mut BytesMut) -> Drained {
    let mut total = 0;
    while total < READ_TURN_BYTES_MAX {
        rx.reserve(READ_CHUNK_BYTES);
        let spare = rx.spare_capacity_mut();
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `rx`; recv writes at
        // most that many bytes and reports how many it wrote.
        let n = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            let n = n as usize;
            // SAFETY: recv initialised the first `n` bytes of the spare capacity.
            unsafe { rx.set_len(rx.len() + n) };
            total += n;
            continue;
        }
        if n == 0 {
            return Drained { eof: true };
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::WouldBlock => break,
            std::io::ErrorKind::Interrupted => continue,
            _ => return Drained { eof: true },
        }
    }
    Drained { eof: false }
}

/// Closes our side after the last bytes, and gives the peer a moment to read them before the
/// socket goes (closing with unread input would reset the connection and lose our DISCONNECT).
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write).await;
    let mut sink = [0u8; 256];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    or(drain, sleep(Duration::from_millis(CLOSE_LINGER_MS))).await;
}
