//! Who connects where: the list of clients of a scenario, subscribers (and idle clients) first,
//! then publishers, with their ids, topics or filters, broker and source addresses.

use std::net::{IpAddr, SocketAddr};

use crate::cli::{Config, Scenario};
use crate::template::{Vars, expand};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connects and stays idle (`conn`).
    Idle,
    Sub,
    Pub,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Idle => "conn",
            Role::Sub => "sub",
            Role::Pub => "pub",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub role: Role,
    /// `%i`; for a publisher also the index in its payload header.
    pub index: u64,
    pub client_id: String,
    /// Publish topic (publishers) or subscription filter (subscribers).
    pub topic: String,
    pub broker: SocketAddr,
    pub source: Option<IpAddr>,
    /// A member of a shared-subscription group.
    pub shared: bool,
}

/// The scenario's clients in connection order (subscribers first).
pub fn clients(cfg: &Config) -> Vec<ClientSpec> {
    let mut out = Vec::with_capacity((cfg.idle + cfg.subscribers + cfg.publishers) as usize);
    let id = |role: Role, index: u64| {
        expand(
            &cfg.client_id,
            &Vars {
                index,
                client_id: "",
                role: role.name(),
            },
        )
    };
    let push = |out: &mut Vec<ClientSpec>, role: Role, index: u64, topic: String| {
        let k = out.len();
        out.push(ClientSpec {
            role,
            index,
            client_id: id(role, index),
            topic,
            broker: cfg.hosts[k % cfg.hosts.len()],
            source: (!cfg.ifaddrs.is_empty()).then(|| cfg.ifaddrs[k % cfg.ifaddrs.len()]),
            shared: cfg.group.is_some() && role == Role::Sub,
        });
    };
    let expand_for = |t: &str, role: Role, index: u64| {
        let cid = id(role, index);
        expand(
            t,
            &Vars {
                index,
                client_id: &cid,
                role: role.name(),
            },
        )
    };
    for i in 0..cfg.idle {
        push(&mut out, Role::Idle, cfg.start + i, String::new());
    }
    for i in 0..cfg.subscribers {
        let index = cfg.start + i;
        let filter = expand_for(&cfg.filter, Role::Sub, index);
        let filter = match &cfg.group {
            Some(g) => format!("$share/{g}/{filter}"),
            None => filter,
        };
        push(&mut out, Role::Sub, index, filter);
    }
    for i in 0..cfg.publishers {
        let index = cfg.start + i;
        let topic = if cfg.scenario == Scenario::P2p {
            // To the peer: the topic template expanded for subscriber i.
            expand_for(&cfg.topic, Role::Sub, index)
        } else {
            expand_for(&cfg.topic, Role::Pub, index)
        };
        push(&mut out, Role::Pub, index, topic);
    }
    out
}
