//! ringmq: an MQTT 3.1 / 3.1.1 / 5.0 broker on a thread-per-core io_uring runtime.
//!
//! # Layout
//! - [`broker`]: one shard's broker logic, sans-io: connections' protocol state, sessions, local
//!   trie, replicated route table, retained slice, wills, timers, and what crosses shards.
//! - [`config`]: the TOML configuration (EMQX's keys), its defaults, and path-aware load errors.
//! - [`protocol`]: sans-io codec for every MQTT packet of protocol levels 3, 4 and 5 (no I/O, no clock).
//! - [`topic`]: topic name / filter validation, the `$share` / `$queue` / `$exclusive` / `$delayed`
//!   forms, and the subscription trie that matches a topic against all filters.
//! - [`rng`]: the seedable generator behind shared-subscription dispatch.
//! - [`limits`]: every internal bound (queues, buffers, batches) in one place.
//! - [`runtime`]: the only code that touches glommio and sockets: shards, listeners, the
//!   reactor that serves every socket of a shard over its epoll ring, the mesh, timers and
//!   signals.
//! - [`session`]: per-client session state on its home shard (in-flight window, queue, QoS 2, topic aliases), sans-io.

pub mod broker;
pub mod config;
pub mod limits;
pub mod protocol;
pub mod rng;
pub mod runtime;
pub mod session;
pub mod topic;
