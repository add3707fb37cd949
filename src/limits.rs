//! Every bound on a queue, a loop or a buffer that is not a user-facing config key, in one place.
//! Plain constants; used by every shard.

/// Batches of mesh messages one shard may have in flight to another (the SPSC ring's capacity;
/// glommio rounds it up to a power of two). A full ring back-pressures the producer.
pub const MESH_CHANNEL_BATCHES: usize = 1024;

/// Mesh messages one shard may have sent to another that the other has not handled yet
/// (whatever the batches): bounds the memory a congested destination holds in the ring.
pub const MESH_IN_FLIGHT_MESSAGES_MAX: usize = 64 * 1024;

/// Mesh messages a shard collects for one destination before a connection publishing towards it
/// stops being read until the flusher has sent half of them (the other connections go on).
pub const MESH_OUTBOX_MESSAGES_MAX: usize = 64 * 1024;

/// Mesh messages for one destination at which the shard's reactor stops reading every socket
/// until the flusher has sent them: a safety net for what publishers do not produce (wills,
/// `$SYS`, redispatched shared messages), normally never reached.
pub const MESH_OUTBOX_MESSAGES_HARD_MAX: usize = 4 * MESH_OUTBOX_MESSAGES_MAX;

/// Messages in one mesh batch at the most (a larger outbox is sent in several batches).
pub const MESH_BATCH_MESSAGES_MAX: usize = 1024;

/// Bytes read from one socket in one turn before other connections get their turn (also the
/// size of each shard's one scratch read buffer).
pub const READ_TURN_BYTES_MAX: usize = 64 * 1024;

/// Ready sockets a shard's reactor serves in one round before the shard's other tasks (mesh,
/// flushers, ticker) get their turn.
pub const READY_EVENTS_PER_ROUND: usize = 256;

/// Connections one listener accepts in one round.
pub const ACCEPTS_PER_ROUND: usize = 64;

/// A round that serves this many ready sockets may start the batching window
/// (`runtime.batch_window_us`, `runtime/pacer.rs`): the next rounds wait for the window's end.
/// Fewer (a lone client's request and response) never wait.
pub const BATCH_WINDOW_ENTER_SOCKETS: usize = 4;

/// While batching, a round that serves fewer ready sockets than this ends it (the load has gone).
pub const BATCH_WINDOW_STAY_SOCKETS: usize = 2;

/// Upper bound of `runtime.batch_window_us`: beyond 10 ms the added latency buys nothing.
pub const BATCH_WINDOW_US_MAX: u64 = 10_000;

/// Connections (and sessions) per shard whose tables are reserved up front: address space only
/// (the allocator maps tables this large lazily, so untouched entries cost no memory), but the
/// per-connection tables then never move or leave the freed blocks of their doubling behind
/// while a shard fills up. Beyond it they grow by doubling as usual.
pub const CONNECTIONS_RESERVED_PER_SHARD: usize = 1 << 16;

/// Change in a shard's connection count (since its last heap trim) after which the shard gives
/// the allocator's free pages back to the kernel at its next one-second tick, and once more at the
/// tick after (the burst's held SUBACKs and handoffs are freed by then). A connect burst frees
/// its transient blocks (reads, decoded CONNECTs, handoffs, held SUBACKs) in the middle of the
/// heap, where the allocator keeps them resident otherwise.
pub const HEAP_TRIM_CONNECTIONS_CHANGED: usize = 256;

/// Filters per shard whose tables (trie nodes and per-filter entries, of the local subscriptions
/// and of the route table) are reserved up front, as for [`CONNECTIONS_RESERVED_PER_SHARD`]:
/// address space only, so the tables' untouched spare capacity costs nothing and their doubling
/// leaves no freed blocks behind in the heap while subscriptions arrive. Beyond it they grow by
/// doubling as usual.
pub const FILTERS_RESERVED_PER_SHARD: usize = 1 << 16;

/// Bytes queued for one client socket above which QoS 0 messages to it are dropped (and
/// counted): a stalled subscriber cannot grow broker memory. QoS 1/2 are bounded by the in-flight
/// window and the session's message queue instead.
pub const WRITE_QUEUE_BYTES_MAX: usize = 1024 * 1024;

/// Bytes queued for one client socket above which the connection that published the message
/// stops being read until that output has drained to half of it (backpressure: the publisher's
/// TCP window closes instead of messages being dropped). Well below
/// [`WRITE_QUEUE_BYTES_MAX`], so that the packets the stalled publishers had already sent still
/// fit.
pub const STALL_WRITE_BYTES: usize = 256 * 1024;

/// Output queued for one socket during a reactor round above which it is written at once rather
/// than at the end of the round, so that a round reading many publishers does not pile up one
/// subscriber's output.
pub const FLUSH_EARLY_BYTES: usize = 64 * 1024;

/// The longest a publisher waits for a congested subscriber. A subscriber still congested then is
/// marked slow: it stalls nobody until it has drained (its QoS 0 messages are dropped over
/// [`WRITE_QUEUE_BYTES_MAX`] and its queue sheds its oldest entries, as without backpressure), so
/// a client that stops reading costs each of its publishers one such wait.
pub const STALL_MAX_MS: u64 = 100;

/// How often stalled publishers are checked when no socket activity triggers a check.
pub const STALL_POLL_MS: u64 = 1;

/// Length of the per-shard timer wheel in one-second ticks; longer deadlines are re-filed lazily.
pub const WHEEL_SLOTS: usize = 512;

/// Time a client gets after DISCONNECT from the server to read it before the socket is closed.
pub const CLOSE_LINGER_MS: u64 = 100;

/// How long shutdown waits for connections to flush their DISCONNECT before the process exits.
pub const SHUTDOWN_GRACE_MS: u64 = 2_000;

/// Shards at the most (the route table keeps a shard set as a bitmap of this many bits).
pub const SHARDS_MAX: usize = 256;
