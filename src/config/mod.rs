//! The broker configuration: typed sections for every key of FEATURES.md (EMQX's keys in TOML
//! form) plus ringmq's runtime keys, their defaults, and loading with path-aware errors.
//!
//! Loading never half-succeeds: an unknown key, a value of the wrong type or out of range, or a
//! rule that cannot work is refused with a [`ConfigError`] naming the full key path and the value.
//! [`DEFAULT_CONFIG`] is the commented default file; it parses to [`Config::default`].

mod error;
mod features;
mod runtime;
mod units;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::Deserializer;

pub use error::ConfigError;
pub use features::{
    AUTO_SUBSCRIBE_MAX, AutoSubscribeConfig, AutoSubscribeTopic, RewriteAction, RewriteRule,
    SharedGroupConfig, SharedStrategy, StickyPick, TopicRegex,
};
pub use runtime::{ListenersConfig, LogConfig, LogLevel, RuntimeConfig, Shards, TcpListenerConfig};
pub use units::{parse_duration, parse_size};

use crate::protocol::QoS;

/// The commented default configuration (`ringmq --print-default-config`).
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Largest MQTT packet: a remaining length of 268435455 plus at most 5 bytes of fixed header.
pub const MAX_PACKET_SIZE_LIMIT: u64 = 268_435_455 + 5;

/// The whole configuration. Every section and key is optional in the file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub mqtt: MqttConfig,
    pub retainer: RetainerConfig,
    pub delayed: DelayedConfig,
    pub sys_topics: SysTopicsConfig,
    pub auto_subscribe: AutoSubscribeConfig,
    /// `[[rewrite]]` rules in file order (they are evaluated last first).
    pub rewrite: Vec<RewriteRule>,
    pub broker: BrokerConfig,
    pub listeners: ListenersConfig,
    pub runtime: RuntimeConfig,
    pub log: LogConfig,
}

impl Config {
    /// Parses and checks a TOML document; an empty document gives [`Config::default`].
    pub fn from_toml_str(src: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(src).map_err(|e| error::from_toml(src, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and checks a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&src)
    }

    /// The checks that involve more than one value.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid_value = |key: String, value: String, reason: &str| ConfigError::InvalidValue {
            key,
            value,
            reason: reason.to_owned(),
        };
        let name = &self.node.name;
        if name.is_empty() || name.contains(['/', '+', '#', '\0']) {
            return Err(invalid_value(
                "node.name".into(),
                format!("{name:?}"),
                "must be non-empty and contain no `/`, `+`, `#` (it is a $SYS topic level)",
            ));
        }
        let topics = &self.auto_subscribe.topics;
        if topics.len() > AUTO_SUBSCRIBE_MAX {
            return Err(ConfigError::Invalid {
                key: "auto_subscribe.topics".into(),
                reason: format!(
                    "{} rules, at most {AUTO_SUBSCRIBE_MAX} allowed",
                    topics.len()
                ),
            });
        }
        features::check_rewrite(&self.rewrite)
            .map_err(|(key, value, reason)| invalid_value(key, value, &reason))?;
        for group in self.broker.shared_subscription_group.keys() {
            if group.is_empty() || group.contains(['/', '+', '#', '\0']) {
                return Err(ConfigError::Invalid {
                    key: format!("broker.shared_subscription_group.{group:?}"),
                    reason: "a share group name must be non-empty and contain no `/`, `+`, `#`"
                        .into(),
                });
            }
        }
        let rt = &self.runtime;
        let mut seen = rt.cores.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid_value(
                "runtime.cores".into(),
                format!("{:?}", rt.cores),
                &format!("core {} is listed twice", w[0]),
            ));
        }
        if let Shards::Count(n) = rt.shards
            && !rt.cores.is_empty()
            && rt.cores.len() != n.get()
        {
            return Err(invalid_value(
                "runtime.cores".into(),
                format!("{:?}", rt.cores),
                &format!("lists {} cores but runtime.shards = {n}", rt.cores.len()),
            ));
        }
        Ok(())
    }

    /// The strategy for a share group: its override, else `mqtt.shared_subscription_strategy`.
    pub fn shared_strategy(&self, group: &str) -> SharedStrategy {
        self.broker
            .shared_subscription_group
            .get(group)
            .map_or(self.mqtt.shared_subscription_strategy, |g| g.strategy)
    }
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node name in `$SYS/brokers/<name>/`; default `ringmq@<hostname>`.
    pub name: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: format!("ringmq@{}", hostname()),
        }
    }
}

/// The host name, from gethostname(2), else /proc/sys/kernel/hostname, else `localhost`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success
    // (and we stop at the buffer end regardless).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..len])
            && !s.is_empty()
        {
            return s.to_owned();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `[mqtt]`: protocol limits and session behaviour (FEATURES.md §1, §4, §5).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Largest packet accepted or sent, in bytes (1..=[`MAX_PACKET_SIZE_LIMIT`]).
    #[serde(deserialize_with = "units::size::<_, 1, MAX_PACKET_SIZE_LIMIT>")]
    pub max_packet_size: u64,
    #[serde(deserialize_with = "units::int::<_, u16, 23, 65535>")]
    pub max_clientid_len: u16,
    #[serde(deserialize_with = "units::int::<_, u16, 1, 65535>")]
    pub max_topic_levels: u16,
    #[serde(deserialize_with = "max_qos")]
    pub max_qos_allowed: QoS,
    pub retain_available: bool,
    pub wildcard_subscription: bool,
    pub shared_subscription: bool,
    pub exclusive_subscription: bool,
    #[serde(deserialize_with = "units::positive_float")]
    pub keepalive_multiplier: f64,
    /// For v3 clients with clean_session = false.
    #[serde(deserialize_with = "units::duration")]
    pub session_expiry_interval: Duration,
    /// `None` = infinity; for messages without a Message Expiry Interval.
    #[serde(deserialize_with = "units::duration_or_infinity")]
    pub message_expiry_interval: Option<Duration>,
    #[serde(deserialize_with = "units::int::<_, u16, 1, 65535>")]
    pub max_inflight: u16,
    /// `None` = infinity.
    #[serde(deserialize_with = "units::int_or_infinity::<_, u32, 0, 4294967295>")]
    pub max_mqueue_len: Option<u32>,
    pub mqueue_store_qos0: bool,
    /// `None` = infinity.
    #[serde(deserialize_with = "units::int_or_infinity::<_, u32, 0, 65535>")]
    pub max_awaiting_rel: Option<u32>,
    #[serde(deserialize_with = "units::duration")]
    pub await_rel_timeout: Duration,
    /// `None` = infinity: resend only on resume.
    #[serde(deserialize_with = "units::duration_or_infinity")]
    pub retry_interval: Option<Duration>,
    /// `None` = infinity.
    #[serde(deserialize_with = "units::int_or_infinity::<_, u32, 0, 4294967295>")]
    pub max_subscriptions: Option<u32>,
    /// Time allowed between TCP accept and CONNECT.
    #[serde(deserialize_with = "units::duration")]
    pub idle_timeout: Duration,
    #[serde(deserialize_with = "units::int::<_, u16, 0, 65535>")]
    pub max_topic_alias: u16,
    pub shared_subscription_strategy: SharedStrategy,
    pub shared_subscription_initial_sticky_pick: StickyPick,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1 << 20,
            max_clientid_len: 65535,
            max_topic_levels: 128,
            max_qos_allowed: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription: true,
            shared_subscription: true,
            exclusive_subscription: false,
            keepalive_multiplier: 1.5,
            session_expiry_interval: Duration::from_secs(2 * 3600),
            message_expiry_interval: None,
            max_inflight: 32,
            max_mqueue_len: Some(1000),
            mqueue_store_qos0: true,
            max_awaiting_rel: Some(100),
            await_rel_timeout: Duration::from_secs(300),
            retry_interval: None,
            max_subscriptions: None,
            idle_timeout: Duration::from_secs(15),
            max_topic_alias: 65535,
            shared_subscription_strategy: SharedStrategy::RoundRobin,
            shared_subscription_initial_sticky_pick: StickyPick::Random,
        }
    }
}

fn max_qos<'de, D: Deserializer<'de>>(d: D) -> Result<QoS, D::Error> {
    let v: u8 = units::int::<D, u8, 0, 2>(d)?;
    Ok(QoS::from_u8(v).expect("range checked"))
}

/// `[retainer]` (FEATURES.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetainerConfig {
    pub enable: bool,
    /// 0 = unlimited.
    #[serde(deserialize_with = "units::int::<_, u64, 0, { u64::MAX }>")]
    pub max_retained_messages: u64,
    /// Larger retained payloads are not stored.
    #[serde(deserialize_with = "units::size::<_, 0, { u64::MAX }>")]
    pub max_payload_size: u64,
}

impl Default for RetainerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            max_retained_messages: 0,
            max_payload_size: 1 << 20,
        }
    }
}

/// `[delayed]` (FEATURES.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelayedConfig {
    pub enable: bool,
    /// 0 = unlimited.
    #[serde(deserialize_with = "units::int::<_, u64, 0, { u64::MAX }>")]
    pub max_delayed_messages: u64,
}

impl Default for DelayedConfig {
    fn default() -> Self {
        Self {
            enable: true,
            max_delayed_messages: 0,
        }
    }
}

/// `[sys_topics]` (FEATURES.md §9).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysTopicsConfig {
    /// `None` = "disabled".
    #[serde(deserialize_with = "units::duration_or_disabled")]
    pub sys_msg_interval: Option<Duration>,
    /// `None` = "disabled".
    #[serde(deserialize_with = "units::duration_or_disabled")]
    pub sys_heartbeat_interval: Option<Duration>,
    pub sys_event_messages: SysEventMessages,
}

impl Default for SysTopicsConfig {
    fn default() -> Self {
        Self {
            sys_msg_interval: Some(Duration::from_secs(60)),
            sys_heartbeat_interval: Some(Duration::from_secs(30)),
            sys_event_messages: SysEventMessages::default(),
        }
    }
}

/// `[sys_topics.sys_event_messages]`: which client events are published under `$SYS`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysEventMessages {
    pub client_connected: bool,
    pub client_disconnected: bool,
    pub client_subscribed: bool,
    pub client_unsubscribed: bool,
}

impl Default for SysEventMessages {
    fn default() -> Self {
        Self {
            client_connected: true,
            client_disconnected: true,
            client_subscribed: false,
            client_unsubscribed: false,
        }
    }
}

/// `[broker]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Seed of the shared-subscription dispatch randomness; `None` = a new one at every start.
    pub shared_subscription_seed: Option<u64>,
    /// `[broker.shared_subscription_group.<group>]`, per share group overrides.
    pub shared_subscription_group: BTreeMap<String, SharedGroupConfig>,
}
