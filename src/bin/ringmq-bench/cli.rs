//! Command line (emqtt-bench's option names where it has them) and its resolution into one
//! [`Config`] that the workers read.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use ringmq::protocol::{ProtocolVersion, QoS};

use crate::{addr, template};

const AFTER_HELP: &str = "\
Every payload starts with a 16-byte header (little-endian): publisher index u32, sequence number
u32 (from 0 per publisher), send time u64 ns (--clock). Receivers compute latency from it, and count
loss, reordering and duplicates per (subscription, publisher). The composite scenarios (fanin,
fanout, p2p, sharedsub) connect and subscribe every subscriber first, wait for all SUBACKs, connect
the publishers, then publish. A progress line goes to stderr every second; one JSON summary goes to
stdout (and to --json FILE) at the end.

Exit status: 0 = all expected messages arrived; 1 = loss; 3 = connection, subscription or protocol
failures (with or without loss); 2 = bad command line.

Examples:
  ringmq-bench fanin --publishers 100 --subscribers 1 -I 0 -s 16 -d 10
  ringmq-bench fanout --subscribers 1000 -q 1 -I 10 -L 1000
  ringmq-bench sharedsub --publishers 10 --subscribers 4 --group g1 -q 1 -I 1 -d 30
  ringmq-bench conn -c 15000 -R 2000 -d 60
  ringmq-bench pub -c 100 -t 'bench/%i' -q 2 --inflight 16 -L 1000";

/// ringmq-bench: an MQTT 3.1.1 / 5.0 load generator (emqtt-bench-like).
#[derive(Debug, Parser)]
#[command(
    name = "ringmq-bench",
    disable_help_flag = true,
    disable_version_flag = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
    /// Print help (-h is --host).
    #[arg(long, action = ArgAction::Help, global = true)]
    help: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Open -c connections and hold them (until -d elapses or Ctrl-C).
    #[command(disable_help_flag = true)]
    Conn {
        #[command(flatten)]
        common: Common,
        /// Number of clients.
        #[arg(short = 'c', long, default_value_t = 1)]
        count: u64,
    },
    /// -c subscribers on topic filter -t (until -d elapses or Ctrl-C).
    #[command(disable_help_flag = true)]
    Sub {
        #[command(flatten)]
        common: Common,
        /// Number of clients.
        #[arg(short = 'c', long, default_value_t = 1)]
        count: u64,
        /// Topic filter template (%i index, %c client id).
        #[arg(short = 't', long)]
        topic: String,
        /// Subscription QoS.
        #[arg(short = 'q', long, default_value_t = 0)]
        qos: u8,
    },
    /// -c publishers on topic -t.
    #[command(disable_help_flag = true)]
    Pub {
        #[command(flatten)]
        common: Common,
        /// Number of clients.
        #[arg(short = 'c', long, default_value_t = 1)]
        count: u64,
        #[command(flatten)]
        publish: Publish,
    },
    /// P publishers, each on its own topic -> S subscribers on a wildcard filter.
    #[command(disable_help_flag = true)]
    Fanin {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        publish: Publish,
        /// Number of publishers.
        #[arg(long, default_value_t = 100)]
        publishers: u64,
        /// Number of subscribers (each receives every message).
        #[arg(long, default_value_t = 1)]
        subscribers: u64,
        #[command(flatten)]
        subscribe: Subscribe,
    },
    /// P publishers (default 1) on one topic -> S subscribers of that topic.
    #[command(disable_help_flag = true)]
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        publish: Publish,
        /// Number of publishers (all on the same topic).
        #[arg(long, default_value_t = 1)]
        publishers: u64,
        /// Number of subscribers (each receives every message).
        #[arg(long, default_value_t = 100)]
        subscribers: u64,
        #[command(flatten)]
        subscribe: Subscribe,
    },
    /// N pairs: publisher i publishes to the topic its peer, subscriber i, subscribed to.
    #[command(disable_help_flag = true)]
    P2p {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        publish: Publish,
        /// Number of publisher/subscriber pairs.
        #[arg(long, default_value_t = 100)]
        pairs: u64,
        /// Subscription QoS (default: -q).
        #[arg(long)]
        sub_qos: Option<u8>,
    },
    /// P publishers -> one shared-subscription group ($share/GROUP/FILTER) of S members; every
    /// message is delivered once to the group.
    #[command(disable_help_flag = true)]
    Sharedsub {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        publish: Publish,
        /// Number of publishers.
        #[arg(long, default_value_t = 10)]
        publishers: u64,
        /// Number of group members.
        #[arg(long, default_value_t = 2)]
        subscribers: u64,
        /// Shared-subscription group name.
        #[arg(long, default_value = "bench")]
        group: String,
        #[command(flatten)]
        subscribe: Subscribe,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Clock {
    /// CLOCK_MONOTONIC: exact on one machine, meaningless across machines.
    Monotonic,
    /// CLOCK_REALTIME: for publishers and subscribers on different machines (as good as their
    /// clock synchronisation).
    Realtime,
}

impl Clock {
    pub fn id(self) -> libc::clockid_t {
        match self {
            Clock::Monotonic => libc::CLOCK_MONOTONIC,
            Clock::Realtime => libc::CLOCK_REALTIME,
        }
    }
}

/// Options of every scenario.
#[derive(Debug, Args)]
pub struct Common {
    /// Broker hosts, comma-separated, each HOST or HOST:PORT; clients are spread round-robin.
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port (for hosts without one).
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// MQTT version: 3 (3.1), 4 (3.1.1) or 5.
    #[arg(short = 'V', long = "version", default_value_t = 4)]
    pub version: u8,
    /// Keep-alive in seconds (0 = none); a PINGREQ goes out after half of it without traffic.
    #[arg(short = 'k', long, default_value_t = 300)]
    pub keepalive: u16,
    /// Clean session (3.1.1) / Clean Start (5.0).
    #[arg(short = 'C', long, default_value_t = true, action = ArgAction::Set)]
    pub clean: bool,
    /// Session Expiry Interval in seconds (5.0 only).
    #[arg(short = 'x', long)]
    pub session_expiry: Option<u32>,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// Client id template: %i index, %r role (pub, sub, conn), %% a literal %.
    #[arg(long, default_value = "bench-%r-%i")]
    pub client_id: String,
    /// First client index (%i and the publisher index in the payload); give each process of a
    /// split test its own range.
    #[arg(short = 'n', long, default_value_t = 0)]
    pub start_number: u64,
    /// New connections per second over this process (0 = as fast as possible).
    #[arg(short = 'R', long, default_value_t = 0.0)]
    pub connrate: f64,
    /// At most this many connections being set up at once (TCP + CONNECT + SUBSCRIBE).
    #[arg(long, default_value_t = 1000)]
    pub max_connecting: u64,
    /// Give up on a connection (and its SUBACK) after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub conn_timeout: f64,
    /// Local source addresses, comma-separated, ranges as FIRST-LAST (127.0.0.2-127.0.0.40);
    /// clients are spread round-robin. Bound with IP_BIND_ADDRESS_NO_PORT, so each address has
    /// its own ephemeral ports per destination.
    #[arg(long)]
    pub ifaddr: Option<String>,
    /// SO_SNDBUF and SO_RCVBUF of every socket in bytes (0 = the kernel's default).
    #[arg(long, default_value_t = 0)]
    pub sockbuf: usize,
    /// Seconds to publish (composite scenarios and pub) or to hold the connections (conn, sub);
    /// without it: until -L messages each, or Ctrl-C.
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Pin worker i to core i.
    #[arg(long)]
    pub pin: bool,
    /// Pin the workers to these cores, in order (e.g. 1,3); implies --pin.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Clock of the send time in the payload.
    #[arg(long, value_enum, default_value_t = Clock::Monotonic)]
    pub clock: Clock,
    /// Also write the JSON summary to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Publishing options.
#[derive(Debug, Args)]
pub struct Publish {
    /// Topic template (%i index, %c client id).
    #[arg(short = 't', long)]
    pub topic: Option<String>,
    /// Publish QoS.
    #[arg(short = 'q', long, default_value_t = 0)]
    pub qos: u8,
    /// Payload bytes (at least the 16-byte header).
    #[arg(short = 's', long, default_value_t = 256)]
    pub size: usize,
    /// Milliseconds between two messages of one publisher (0 = as fast as possible).
    #[arg(short = 'I', long, default_value_t = 1000.0)]
    pub interval: f64,
    /// Total messages per second over all publishers of this process (overrides -I).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Unacknowledged QoS 1/2 messages per publisher at most (closed loop); capped by the
    /// broker's Receive Maximum (5.0).
    #[arg(long, default_value_t = 32)]
    pub inflight: u16,
    /// Messages per publisher (0 = no limit).
    #[arg(short = 'L', long, default_value_t = 0)]
    pub limit: u64,
    /// Set the retain flag (retained messages from earlier runs are then counted as foreign).
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// After publishing, wait at most this many seconds for outstanding acks and deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Test hook: skip (count as published, never send) every Nth sequence number.
    #[arg(long, hide = true, default_value_t = 0)]
    pub debug_skip_every: u32,
}

/// Subscribing options of the composite scenarios.
#[derive(Debug, Args)]
pub struct Subscribe {
    /// Subscription filter template (default: -t with every templated level replaced by +).
    #[arg(long)]
    pub filter: Option<String>,
    /// Subscription QoS (default: -q).
    #[arg(long)]
    pub sub_qos: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Conn,
    Sub,
    Pub,
    Fanin,
    Fanout,
    P2p,
    SharedSub,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Conn => "conn",
            Scenario::Sub => "sub",
            Scenario::Pub => "pub",
            Scenario::Fanin => "fanin",
            Scenario::Fanout => "fanout",
            Scenario::P2p => "p2p",
            Scenario::SharedSub => "sharedsub",
        }
    }

    pub fn composite(self) -> bool {
        matches!(
            self,
            Scenario::Fanin | Scenario::Fanout | Scenario::P2p | Scenario::SharedSub
        )
    }
}

/// Everything resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: Scenario,
    pub hosts: Vec<SocketAddr>,
    pub version: ProtocolVersion,
    pub keepalive: u16,
    pub clean: bool,
    pub session_expiry: Option<u32>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: String,
    pub start: u64,
    pub connrate: f64,
    pub max_connecting: u64,
    pub conn_timeout_s: f64,
    pub ifaddrs: Vec<IpAddr>,
    pub sockbuf: usize,
    pub duration: Option<f64>,
    pub threads: usize,
    pub cores: Option<Vec<usize>>,
    pub clock: Clock,
    pub json: Option<PathBuf>,
    pub quiet: bool,
    /// Clients of each role (conn: `idle`).
    pub publishers: u64,
    pub subscribers: u64,
    pub idle: u64,
    pub topic: String,
    pub qos: QoS,
    pub size: usize,
    pub interval_ms: f64,
    pub rate: Option<f64>,
    pub inflight: u16,
    pub limit: u64,
    pub retain: bool,
    pub drain_s: f64,
    pub skip_every: u32,
    pub filter: String,
    pub sub_qos: QoS,
    pub group: Option<String>,
}

impl Config {
    /// Nanoseconds between two messages of one publisher (0 = as fast as possible).
    pub fn interval_ns(&self) -> u64 {
        match self.rate {
            Some(r) if r > 0.0 => (self.publishers as f64 * 1e9 / r) as u64,
            _ => (self.interval_ms * 1e6) as u64,
        }
    }
}

fn qos(v: u8, what: &str) -> Result<QoS, String> {
    QoS::from_u8(v).ok_or_else(|| format!("{what} must be 0, 1 or 2, got {v}"))
}

impl Cli {
    pub fn resolve(self) -> Result<Config, String> {
        let none = || Subscribe {
            filter: None,
            sub_qos: None,
        };
        let (scenario, common, count, publish, pubs, subs, sub, group, sub_topic) = match self.cmd {
            Cmd::Conn { common, count } => (
                Scenario::Conn,
                common,
                count,
                None,
                0,
                0,
                none(),
                None,
                None,
            ),
            Cmd::Sub {
                common,
                count,
                topic,
                qos,
            } => {
                let s = Subscribe {
                    filter: None,
                    sub_qos: Some(qos),
                };
                (
                    Scenario::Sub,
                    common,
                    0,
                    None,
                    0,
                    count,
                    s,
                    None,
                    Some(topic),
                )
            }
            Cmd::Pub {
                common,
                count,
                publish,
            } => (
                Scenario::Pub,
                common,
                0,
                Some(publish),
                count,
                0,
                none(),
                None,
                None,
            ),
            Cmd::Fanin {
                common,
                publish,
                publishers,
                subscribers,
                subscribe,
            } => {
                let s = (Scenario::Fanin, publishers, subscribers, subscribe);
                (s.0, common, 0, Some(publish), s.1, s.2, s.3, None, None)
            }
            Cmd::Fanout {
                common,
                publish,
                publishers,
                subscribers,
                subscribe,
            } => {
                let s = (Scenario::Fanout, publishers, subscribers, subscribe);
                (s.0, common, 0, Some(publish), s.1, s.2, s.3, None, None)
            }
            Cmd::P2p {
                common,
                publish,
                pairs,
                sub_qos,
            } => {
                let s = Subscribe {
                    filter: None,
                    sub_qos,
                };
                (
                    Scenario::P2p,
                    common,
                    0,
                    Some(publish),
                    pairs,
                    pairs,
                    s,
                    None,
                    None,
                )
            }
            Cmd::Sharedsub {
                common,
                publish,
                publishers,
                subscribers,
                group,
                subscribe,
            } => {
                let s = (Scenario::SharedSub, publishers, subscribers, subscribe);
                (
                    s.0,
                    common,
                    0,
                    Some(publish),
                    s.1,
                    s.2,
                    s.3,
                    Some(group),
                    None,
                )
            }
        };
        let version = match common.version {
            3 => ProtocolVersion::V31,
            4 => ProtocolVersion::V311,
            5 => ProtocolVersion::V5,
            v => return Err(format!("-V/--version must be 3, 4 or 5, got {v}")),
        };
        let hosts = addr::parse_hosts(&common.host, common.port)?;
        let ifaddrs = match &common.ifaddr {
            Some(s) => addr::parse_ifaddrs(s)?,
            None => Vec::new(),
        };
        template::validate(&common.client_id)?;
        let total = count + pubs + subs;
        if total == 0 {
            return Err("no clients: give a count above 0".into());
        }
        if total > 1 && !template::uses(&common.client_id, 'i') {
            return Err(format!(
                "--client-id {:?} must contain %i: clients would share an id",
                common.client_id
            ));
        }
        if scenario.composite() && !template::uses(&common.client_id, 'r') {
            return Err(format!(
                "--client-id {:?} must contain %r in a composite scenario (publisher i and \
                 subscriber i would share an id)",
                common.client_id
            ));
        }
        if common.session_expiry.is_some() && version != ProtocolVersion::V5 {
            return Err("-x/--session-expiry needs -V 5".into());
        }
        if common.connrate < 0.0 || common.conn_timeout <= 0.0 || common.max_connecting == 0 {
            return Err("--connrate must be >= 0, --conn-timeout > 0, --max-connecting > 0".into());
        }
        if let Some(d) = common.duration
            && !(d >= 0.0 && d.is_finite())
        {
            return Err("-d/--duration must be >= 0".into());
        }
        let threads = match common.threads {
            Some(0) => return Err("--threads must be at least 1".into()),
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let threads = threads.min(total as usize).max(1);
        let cores = if !common.cores.is_empty() {
            Some(common.cores.clone())
        } else if common.pin {
            let n = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
            Some((0..threads).map(|i| i % n).collect())
        } else {
            None
        };

        let default_topic = match scenario {
            Scenario::Fanin => "bench/fanin/%i",
            Scenario::Fanout => "bench/fanout",
            Scenario::P2p => "bench/p2p/%i",
            Scenario::SharedSub => "bench/shared/%i",
            _ => "",
        };
        let (topic, qos_v, size, interval_ms, rate, inflight, limit, retain, drain_s, skip_every) =
            match publish {
                Some(p) => {
                    let topic = match (p.topic, scenario) {
                        (Some(t), _) => t,
                        (None, Scenario::Pub) => return Err("pub needs -t/--topic".into()),
                        (None, _) => default_topic.to_string(),
                    };
                    if p.interval < 0.0 || !p.interval.is_finite() {
                        return Err("-I/--interval must be >= 0".into());
                    }
                    if let Some(r) = p.rate
                        && !(r > 0.0 && r.is_finite())
                    {
                        return Err("--rate must be > 0".into());
                    }
                    if p.inflight == 0 {
                        return Err("--inflight must be at least 1".into());
                    }
                    if p.drain < 0.0 {
                        return Err("--drain must be >= 0".into());
                    }
                    let size = p.size;
                    let q = qos(p.qos, "-q/--qos")?;
                    (
                        topic,
                        q,
                        size,
                        p.interval,
                        p.rate,
                        p.inflight,
                        p.limit,
                        p.retain,
                        p.drain,
                        p.debug_skip_every,
                    )
                }
                None => (
                    String::new(),
                    QoS::AtMostOnce,
                    crate::wire::HEADER_LEN,
                    0.0,
                    None,
                    1,
                    0,
                    false,
                    0.0,
                    0,
                ),
            };
        if publish_needed(scenario) {
            template::validate(&topic)?;
            if size < crate::wire::HEADER_LEN {
                return Err(format!(
                    "-s/--size must be at least {} (the payload header)",
                    crate::wire::HEADER_LEN
                ));
            }
        }
        let filter = match (scenario, sub_topic, sub.filter) {
            (Scenario::Sub, Some(t), _) => t,
            (Scenario::P2p, _, _) => topic.clone(),
            (_, _, Some(f)) => f,
            (Scenario::Fanout, _, None) => topic.clone(),
            (_, _, None) => template::wildcard_filter(&topic),
        };
        template::validate(&filter)?;
        let sub_qos = qos(sub.sub_qos.unwrap_or(qos_v as u8), "--sub-qos")?;
        if let Some(g) = &group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            return Err(format!("--group {g:?}: a non-empty name without / + #"));
        }
        Ok(Config {
            scenario,
            hosts,
            version,
            keepalive: common.keepalive,
            clean: common.clean,
            session_expiry: common.session_expiry,
            username: common.username,
            password: common.password,
            client_id: common.client_id,
            start: common.start_number,
            connrate: common.connrate,
            max_connecting: common.max_connecting,
            conn_timeout_s: common.conn_timeout,
            ifaddrs,
            sockbuf: common.sockbuf,
            duration: common.duration,
            threads,
            cores,
            clock: common.clock,
            json: common.json,
            quiet: common.quiet,
            publishers: pubs,
            subscribers: subs,
            idle: count,
            topic,
            qos: qos_v,
            size,
            interval_ms,
            rate,
            inflight,
            limit,
            retain,
            drain_s,
            skip_every,
            filter,
            sub_qos,
            group,
        })
    }
}

fn publish_needed(s: Scenario) -> bool {
    !matches!(s, Scenario::Conn | Scenario::Sub)
}
