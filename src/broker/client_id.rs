//! A session's client id, kept inline in its [`Client`](super::Client) slot when short.
//!
//! Why not `Box<str>`: an id on the heap is a small block allocated while a connect burst also
//! allocates and frees the connection's transient buffers (the read, the decoded CONNECT, a
//! handoff, a held SUBACK). Left alone between their freed blocks, the ids keep every page of
//! that burst resident (measured: ~200 B per connection with two shards). Inline, the per-client
//! state lives only in the client slab, whose pages are touched in order.

use std::fmt;
use std::ops::Deref;

/// Longest id kept inline: 22 bytes, the slot then stays 24 bytes (the MQTT 3.1.1 minimum a
/// server must accept is 23; generated ids are usually shorter or UUID-long).
const INLINE_MAX: usize = 22;

#[derive(Clone)]
pub(super) enum ClientId {
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    Heap(Box<str>),
}

impl From<&str> for ClientId {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE_MAX {
            let mut bytes = [0; INLINE_MAX];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            ClientId::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            ClientId::Heap(Box::from(s))
        }
    }
}

impl Deref for ClientId {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            ClientId::Inline { len, bytes } => {
                let b = &bytes[..usize::from(*len)];
                // SAFETY: `bytes[..len]` is a copy of a `&str` (`From<&str>`), so valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(b) }
            }
            ClientId::Heap(s) => s,
        }
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_inline_long_ids_boxed() {
        assert_eq!(size_of::<ClientId>(), 24);
        for s in ["", "a", "idle-14999", "ü-ünïcödé-ü", &"x".repeat(22)] {
            let id = ClientId::from(s);
            assert!(matches!(id, ClientId::Inline { .. }), "{s}");
            assert_eq!(&*id, s);
        }
        for s in [&"y".repeat(23)[..], "0123456789abcdef-0123456789abcdef-ü"] {
            let id = ClientId::from(s);
            assert!(matches!(id, ClientId::Heap(_)), "{s}");
            assert_eq!(&*id, s);
        }
    }
}
