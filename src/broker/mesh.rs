//! The one closed set of messages that crosses shards over the mesh (DESIGN.md). Payloads travel
//! as `Arc<Message>` over `bytes::Bytes`, so a message fanned out to several shards is never
//! copied. Built on one shard, consumed on another; every variant is `Send`.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::{Connect, MqttStr, QoS};
use crate::session::Message;

/// A shard's index, 0..nr_shards.
pub type ShardId = usize;

#[derive(Debug)]
pub enum MeshMsg {
    /// A connection whose CONNECT arrived on another shard, moved to its client id's home shard.
    Handoff(Box<Handoff>),
    /// A message for this shard's local subscribers (the sender matched the route table).
    Publish(Arc<Message>),
    /// The sending shard got its first local subscriber of this filter.
    RouteAdd(MqttStr),
    /// The sending shard lost its last local subscriber of this filter.
    RouteDel(MqttStr),
    /// The sending shard's session joined a share group, or changed its options (FEATURES.md §4).
    SharedAdd(Box<super::shared::SharedMember>),
    /// The sending shard's session left a share group.
    SharedDel(Box<super::shared::SharedMember>),
    /// A message for one member of a share group, a session of this shard.
    SharedPublish(Box<super::shared::SharedDelivery>),
    /// Store (or, with an empty payload, delete) the retained message of a topic this shard owns;
    /// with a token, answer [`MeshMsg::RetainStored`] once done (the publisher's PUBACK waits).
    Retain(Arc<Message>, Option<u64>),
    /// The retained message sent with this token is stored.
    RetainStored(u64),
    /// Asks the receiver to answer [`MeshMsg::RouteSyncAck`] with the same epoch: once it does, it
    /// has applied every RouteAdd the sender sent before (the channels are FIFO).
    RouteSync(u64),
    /// The answer to [`MeshMsg::RouteSync`].
    RouteSyncAck(u64),
    /// A new subscription asks this shard for its retained messages matching `filter`.
    RetainedQuery(Box<RetainedQuery>),
    /// The answer to a [`RetainedQuery`], sent back to the subscriber's shard.
    RetainedReply(Box<RetainedReply>),
    /// Asks the lock shard of an exclusive filter for its lock (FEATURES.md §5); answered by
    /// [`MeshMsg::ExclusiveLockReply`] with the same token.
    ExclusiveLock(Box<super::exclusive::ExclusiveLock>),
    /// Whether the lock asked for with `token` was granted.
    ExclusiveLockReply { token: u64, granted: bool },
    /// Releases the lock of `filter` if `holder` has it.
    ExclusiveUnlock {
        filter: MqttStr,
        holder: super::exclusive::Holder,
    },
    /// Shard 0 asks for this shard's `$SYS` numbers for stats round `.0`.
    SysStatsRequest(u64),
    /// The answer to [`MeshMsg::SysStatsRequest`].
    SysStatsReply(u64, Box<super::sys::Snapshot>),
}

/// A connection on its way to its home shard. Dropping it closes the socket.
#[derive(Debug)]
pub struct Handoff {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
    pub connect: Box<Connect>,
    /// Bytes read after the CONNECT, not yet decoded.
    pub rest: Bytes,
}

/// Who asked for retained messages, and how they are to be delivered.
#[derive(Debug, Clone)]
pub struct RetainedTarget {
    pub shard: ShardId,
    pub client: u32,
    /// The client slot's generation, so a reply for a client that has gone is dropped.
    pub generation: u32,
    pub qos: QoS,
    pub subscription_id: Option<std::num::NonZeroU32>,
}

#[derive(Debug)]
pub struct RetainedQuery {
    pub target: RetainedTarget,
    pub filter: MqttStr,
}

#[derive(Debug)]
pub struct RetainedReply {
    pub target: RetainedTarget,
    pub messages: Vec<Arc<Message>>,
}

/// Where a topic's retained message lives: `hash(topic) % nr_shards`.
pub fn retain_shard(topic: &str, nr_shards: usize) -> ShardId {
    (stable_hash(topic.as_bytes()) % nr_shards as u64) as usize
}

/// A client id's home shard: `hash(client_id) % nr_shards`.
pub fn home_shard(client_id: &str, nr_shards: usize) -> ShardId {
    (stable_hash(client_id.as_bytes()) % nr_shards as u64) as usize
}

/// FNV-1a: the same on every shard and in every run (a test picks client ids by home shard).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        assert_eq!(home_shard("a", 1), 0);
        for n in 1..8 {
            for id in ["a", "client-1", "", "ü"] {
                assert!(home_shard(id, n) < n);
                assert_eq!(home_shard(id, n), home_shard(id, n));
            }
        }
        // FNV-1a of "a" (a published test vector).
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
