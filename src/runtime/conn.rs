//! The connection driver: the one place that reads and writes a client socket. One small task
//! per connection on the shard that owns it. While idle it holds no read buffer: it waits for
//! readability with a one-byte read, then drains the socket without blocking into the shard's
//! scratch buffer and copies exactly the bytes read into the connection's buffer, which is
//! released again once empty (so a retained payload or queued message pins only the bytes of
//! its own read, never a fixed-size buffer). Output queued by the broker is written when the task
//! is woken.

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
use crate::limits::CLOSE_LINGER_MS;

enum Event {
    Readable(std::io::Result<usize>),
    Woken,
}

pub async fn drive(ctx: Rc<Shard>, mut stream: TcpStream, id: ConnId, mut rx: BytesMut) {
    // Only needed to hand the socket over; a peer that is already gone fails there anyway.
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut byte = [0u8; 1];
    let mut eof = false;
    // Bytes that arrived with a handed-over connection are handled first.
    if !rx.is_empty()
        && let Some(handoff) = process(&ctx, id, &mut rx)
    {
        let (home, connect) = handoff;
        hand_off(&ctx, id, stream, peer, home, connect, rx);
        return;
    }
    loop {
        let (tx, close) = ctx.with_broker(|b, _| b.take_output(id));
        if !tx.is_empty() && stream.write_all(&tx).await.is_err() {
            break;
        }
        if close.is_some() {
            // Boxed: its buffer is needed only once, not in every idle connection's future.
            Box::pin(linger(&mut stream)).await;
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
                eof = ctx.read_available(stream.as_raw_fd(), byte[0], &mut rx);
                if let Some((home, connect)) = process(&ctx, id, &mut rx) {
                    hand_off(&ctx, id, stream, peer, home, connect, rx);
                    return;
                }
                if rx.is_empty() {
                    // Hold no buffer while idle; packets still in use keep only their bytes.
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
