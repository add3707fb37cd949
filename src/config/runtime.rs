//! ringmq's own keys, which EMQX does not have in this form: `[listeners.tcp.<name>]`,
//! `[runtime]` (shards and their cores) and `[log]`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::units;

/// `[listeners]`. Naming any listener replaces the default set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    /// `[listeners.tcp.<name>]`; default one listener `default` on 0.0.0.0:1883.
    pub tcp: BTreeMap<String, TcpListenerConfig>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        Self {
            tcp: BTreeMap::from([("default".to_owned(), TcpListenerConfig::default())]),
        }
    }
}

/// `[listeners.tcp.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpListenerConfig {
    pub enable: bool,
    /// "ip:port", or a bare port for 0.0.0.0.
    #[serde(deserialize_with = "bind")]
    pub bind: SocketAddr,
    #[serde(deserialize_with = "units::int::<_, u32, 1, 65535>")]
    pub backlog: u32,
    /// `None` = infinity.
    #[serde(deserialize_with = "units::int_or_infinity::<_, u64, 1, { u64::MAX }>")]
    pub max_connections: Option<u64>,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 1883)),
            backlog: 1024,
            max_connections: None,
        }
    }
}

fn bind<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Bind {
        Port(u16),
        Addr(String),
    }
    const EXPECTED: &str = "expected \"ip:port\" or a port number";
    match Bind::deserialize(d).map_err(|_| de::Error::custom(EXPECTED))? {
        Bind::Port(p) => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p))),
        Bind::Addr(s) => {
            let s = s.trim();
            match s.strip_prefix(':').unwrap_or(s).parse::<u16>() {
                Ok(p) => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p))),
                Err(_) => s.parse().map_err(|_| de::Error::custom(EXPECTED)),
            }
        }
    }
}

/// `[runtime]`: shards (one per core) and their placement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub shards: Shards,
    /// Pin each shard's thread to its core.
    pub pin_cores: bool,
    /// Explicit cores for the shards, in order; empty = the first available cores.
    pub cores: Vec<usize>,
    /// Microseconds: while a shard is busy it starts a round of reads at most this often, so
    /// each round serves more sockets and writes more per `send` (0 = as soon as any is ready).
    #[serde(deserialize_with = "units::int::<_, u32, 0, { crate::limits::BATCH_WINDOW_US_MAX }>")]
    pub batch_window_us: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shards: Shards::Auto,
            pin_cores: true,
            cores: Vec::new(),
            batch_window_us: 0,
        }
    }
}

/// `runtime.shards`: `"auto"` (one per available core, or per listed core) or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shards {
    #[default]
    Auto,
    Count(NonZeroUsize),
}

impl<'de> Deserialize<'de> for Shards {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(i64),
            Word(String),
        }
        const EXPECTED: &str = "expected \"auto\" or an integer >= 1";
        match Raw::deserialize(d).map_err(|_| de::Error::custom(EXPECTED))? {
            Raw::Word(w) if w == "auto" => Ok(Shards::Auto),
            Raw::Count(n) => usize::try_from(n)
                .ok()
                .and_then(NonZeroUsize::new)
                .map(Shards::Count)
                .ok_or_else(|| de::Error::custom(EXPECTED)),
            Raw::Word(_) => Err(de::Error::custom(EXPECTED)),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
}

/// `log.level`; EMQX's `warning` is accepted for `warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Error,
    #[serde(alias = "warning")]
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}
