//! What the broker logic reads from the configuration, in the units it works in. Built once at
//! start-up from `crate::config::Config` and shared (read-only, `Rc`) by everything on a shard.

use std::collections::BTreeMap;

use crate::config::{SharedStrategy, StickyPick};
use crate::protocol::QoS;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub node_name: String,
    pub max_packet_size: u32,
    pub max_clientid_len: usize,
    pub max_topic_levels: usize,
    pub max_qos_allowed: QoS,
    pub retain_available: bool,
    pub wildcard_subscription: bool,
    pub shared_subscription: bool,
    /// `mqtt.shared_subscription_strategy`, for groups without an override.
    pub shared_strategy: SharedStrategy,
    /// `[broker.shared_subscription_group.<group>] strategy`.
    pub shared_group_strategy: BTreeMap<String, SharedStrategy>,
    /// `mqtt.shared_subscription_initial_sticky_pick`.
    pub sticky_pick: StickyPick,
    /// `broker.shared_subscription_seed`; `None` = seeded from the clock at start.
    pub shared_seed: Option<u64>,
    pub exclusive_subscription: bool,
    pub keepalive_multiplier: f64,
    /// Session expiry for v3 clients with clean_session = 0, seconds.
    pub session_expiry_secs: u32,
    /// Message expiry for messages without the property; `None` = never.
    pub message_expiry_secs: Option<u32>,
    pub max_inflight: u16,
    pub max_mqueue_len: usize,
    pub mqueue_store_qos0: bool,
    pub max_awaiting_rel: usize,
    pub await_rel_timeout_secs: u32,
    /// `None` = unlimited.
    pub max_subscriptions: Option<usize>,
    pub idle_timeout_secs: u32,
    pub max_topic_alias: u16,
    pub retainer_enable: bool,
    /// 0 = unlimited.
    pub max_retained_messages: usize,
    pub max_retained_payload: usize,
    /// Retained messages stored on all shards together (shared by every shard's copy of the
    /// settings), for `max_retained_messages`.
    /// `[[rewrite]]`, ready to apply (FEATURES.md §8).
    pub rewrite: super::rewrite::Rewriter,
    /// `[[auto_subscribe.topics]]` in configuration order (FEATURES.md §7).
    pub auto_subscribe: Vec<crate::config::AutoSubscribeTopic>,
    pub retained_count: SharedCount,
    /// `[delayed] enable`: whether `$delayed/<secs>/<topic>` publishes are delayed.
    pub delayed_enable: bool,
    /// 0 = unlimited; a broker-wide limit.
    pub max_delayed_messages: usize,
    /// Delayed messages pending on all shards together (shared like `retained_count`), for
    /// `max_delayed_messages`; touched only by delayed publishes, and only when a limit is set.
    pub delayed_count: SharedCount,
    /// `$SYS` stats and metrics period; `None` = disabled.
    pub sys_msg_interval_ms: Option<u64>,
    /// `$SYS` uptime / datetime period; `None` = disabled.
    pub sys_heartbeat_interval_ms: Option<u64>,
    /// Which client events go to `$SYS`.
    pub sys_events: crate::config::SysEventMessages,
}

/// A counter shared by all shards (every shard's copy of the settings clones the `Arc`); equal to any other (it is state, not configuration).
#[derive(Debug, Clone, Default)]
pub struct SharedCount(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl SharedCount {
    /// Takes a place under `max` (0 = unlimited: always succeeds, nothing counted).
    pub fn reserve(&self, max: usize) -> bool {
        use std::sync::atomic::Ordering;
        max == 0
            || self
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
    }

    /// Gives `n` places taken under the same `max` back.
    pub fn release(&self, max: usize, n: usize) {
        if max != 0 && n > 0 {
            self.0.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl PartialEq for SharedCount {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_name: "ringmq@localhost".into(),
            max_packet_size: 1 << 20,
            max_clientid_len: 65_535,
            max_topic_levels: 128,
            max_qos_allowed: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription: true,
            shared_subscription: true,
            shared_strategy: SharedStrategy::RoundRobin,
            shared_group_strategy: BTreeMap::new(),
            sticky_pick: StickyPick::Random,
            shared_seed: None,
            exclusive_subscription: false,
            keepalive_multiplier: 1.5,
            session_expiry_secs: 2 * 3600,
            message_expiry_secs: None,
            max_inflight: 32,
            max_mqueue_len: 1000,
            mqueue_store_qos0: true,
            max_awaiting_rel: 100,
            await_rel_timeout_secs: 300,
            max_subscriptions: None,
            idle_timeout_secs: 15,
            max_topic_alias: 65_535,
            retainer_enable: true,
            max_retained_messages: 0,
            max_retained_payload: 1 << 20,
            rewrite: Default::default(),
            auto_subscribe: Vec::new(),
            retained_count: SharedCount::default(),
            delayed_enable: true,
            max_delayed_messages: 0,
            delayed_count: SharedCount::default(),
            sys_msg_interval_ms: Some(60_000),
            sys_heartbeat_interval_ms: Some(30_000),
            sys_events: Default::default(),
        }
    }
}

impl Settings {
    /// The dispatch strategy of share group `group` (FEATURES.md §4).
    pub fn shared_strategy_of(&self, group: &str) -> SharedStrategy {
        self.shared_group_strategy
            .get(group)
            .copied()
            .unwrap_or(self.shared_strategy)
    }

    /// The per-session limits every session on the shard shares.
    pub fn session_config(&self) -> crate::session::SessionConfig {
        let cap = |n: usize| u32::try_from(n).unwrap_or(0);
        crate::session::SessionConfig {
            max_inflight: self.max_inflight,
            // The session reads 0 as unlimited.
            max_mqueue_len: if self.max_mqueue_len == usize::MAX {
                0
            } else {
                cap(self.max_mqueue_len)
            },
            mqueue_store_qos0: self.mqueue_store_qos0,
            max_awaiting_rel: if self.max_awaiting_rel == usize::MAX {
                0
            } else {
                cap(self.max_awaiting_rel)
            },
            await_rel_timeout_ms: u64::from(self.await_rel_timeout_secs) * 1000,
            server_receive_maximum: self.max_inflight,
            max_topic_alias: self.max_topic_alias,
        }
    }

    /// The broker's view of a loaded configuration.
    pub fn from_config(c: &crate::config::Config) -> Settings {
        let m = &c.mqtt;
        let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        Settings {
            node_name: c.node.name.clone(),
            max_packet_size: u32::try_from(m.max_packet_size).unwrap_or(u32::MAX),
            max_clientid_len: usize::from(m.max_clientid_len),
            max_topic_levels: usize::from(m.max_topic_levels),
            max_qos_allowed: m.max_qos_allowed,
            retain_available: m.retain_available,
            wildcard_subscription: m.wildcard_subscription,
            shared_subscription: m.shared_subscription,
            shared_strategy: m.shared_subscription_strategy,
            shared_group_strategy: c
                .broker
                .shared_subscription_group
                .iter()
                .map(|(g, o)| (g.clone(), o.strategy))
                .collect(),
            sticky_pick: m.shared_subscription_initial_sticky_pick,
            shared_seed: c.broker.shared_subscription_seed,
            exclusive_subscription: m.exclusive_subscription,
            keepalive_multiplier: m.keepalive_multiplier,
            session_expiry_secs: secs(m.session_expiry_interval),
            message_expiry_secs: m.message_expiry_interval.map(secs),
            max_inflight: m.max_inflight,
            max_mqueue_len: unlimited_if_zero(m.max_mqueue_len),
            mqueue_store_qos0: m.mqueue_store_qos0,
            max_awaiting_rel: unlimited_if_zero(m.max_awaiting_rel),
            await_rel_timeout_secs: secs(m.await_rel_timeout),
            max_subscriptions: m.max_subscriptions.map(|n| n as usize),
            idle_timeout_secs: secs(m.idle_timeout).max(1),
            max_topic_alias: m.max_topic_alias,
            retainer_enable: c.retainer.enable,
            max_retained_messages: usize::try_from(c.retainer.max_retained_messages)
                .unwrap_or(usize::MAX),
            max_retained_payload: usize::try_from(c.retainer.max_payload_size)
                .unwrap_or(usize::MAX),
            rewrite: super::rewrite::Rewriter::new(&c.rewrite),
            auto_subscribe: c.auto_subscribe.topics.clone(),
            retained_count: SharedCount::default(),
            delayed_enable: c.delayed.enable,
            max_delayed_messages: usize::try_from(c.delayed.max_delayed_messages)
                .unwrap_or(usize::MAX),
            delayed_count: SharedCount::default(),
            sys_msg_interval_ms: c.sys_topics.sys_msg_interval.map(ms),
            sys_heartbeat_interval_ms: c.sys_topics.sys_heartbeat_interval.map(ms),
            sys_events: c.sys_topics.sys_event_messages.clone(),
        }
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// EMQX reads 0 as "no limit" for queue lengths, as it does "infinity".
fn unlimited_if_zero(n: Option<u32>) -> usize {
    match n {
        None | Some(0) => usize::MAX,
        Some(n) => n as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_agree_with_the_default_config() {
        let from_file = Settings::from_config(&crate::config::Config::default());
        let ours = Settings {
            node_name: from_file.node_name.clone(),
            ..Settings::default()
        };
        assert_eq!(from_file, ours);
    }
}
