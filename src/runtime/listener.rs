//! Listening sockets: one SO_REUSEPORT socket per shard and bind address, built with socket2 for
//! our own backlog and options, and a start-up probe that refuses a port
//! that is already taken — SO_REUSEPORT would otherwise let a second broker bind it silently.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Fails when something already listens on `addr`, including another ringmq (or another
/// SO_REUSEPORT socket). The probe binds without SO_REUSEPORT, so any listener makes it fail;
/// SO_REUSEADDR keeps connections in TIME_WAIT from a previous run from counting.
///
/// The probe only binds, it never listens: a listening probe would accept handshakes in the
/// instant before it is closed, and those clients would see their connection reset (seen in CI:
/// a test's first connect got ECONNRESET).
pub fn probe_free(addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    Ok(())
}

/// A non-blocking listening socket with SO_REUSEPORT, to be watched by one shard's reactor.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Inherited by accepted sockets: MQTT packets are small and latency matters.
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sees_a_reuseport_listener() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = first.local_addr().unwrap().as_socket().unwrap();
        // A second SO_REUSEPORT bind would succeed silently; the probe must not.
        assert!(bind(addr, 16).is_ok());
        let err = probe_free(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(first);
    }

    #[test]
    fn probe_passes_on_a_free_port() {
        let s = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        drop(s);
        probe_free(addr).unwrap();
    }
}
