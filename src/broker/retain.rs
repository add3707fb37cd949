//! This shard's slice of the retained messages: the topics with `hash(topic) % nr_shards` equal
//! to this shard. A retained PUBLISH replaces its topic's message, an empty payload deletes it,
//! and an expired message is dropped when it is next looked at (and by a periodic sweep).

use std::sync::Arc;

use ahash::AHashMap;

use super::settings::Settings;
use crate::protocol::MqttStr;
use crate::session::Message;
use crate::topic;

/// Ticks (seconds) between sweeps for expired messages.
const SWEEP_TICKS: u32 = 60;

#[derive(Debug, Default)]
pub(super) struct RetainStore {
    by_topic: AHashMap<MqttStr, Arc<Message>>,
    ticks: u32,
    /// Retained messages refused because the store was full or the payload too large.
    pub dropped: u64,
}

impl RetainStore {
    pub fn store(&mut self, msg: Arc<Message>, s: &Settings, now_ms: u64) {
        if msg.payload.is_empty() {
            self.by_topic.remove(&msg.topic);
            return;
        }
        let full = s.max_retained_messages != 0
            && self.by_topic.len() >= s.max_retained_messages
            && !self.by_topic.contains_key(&msg.topic);
        if full || msg.payload.len() > s.max_retained_payload || msg.is_expired(now_ms) {
            self.dropped += 1;
            return;
        }
        self.by_topic.insert(msg.topic.clone(), msg);
    }

    /// The live retained messages whose topic matches `filter`.
    pub fn matching(&mut self, filter: &str, now_ms: u64) -> Vec<Arc<Message>> {
        if !topic::has_wildcards(filter) {
            return match self.by_topic.get(filter) {
                Some(m) if m.is_expired(now_ms) => {
                    self.by_topic.remove(filter);
                    Vec::new()
                }
                Some(m) => vec![m.clone()],
                None => Vec::new(),
            };
        }
        self.by_topic.retain(|_, m| !m.is_expired(now_ms));
        self.by_topic
            .iter()
            .filter(|(t, _)| topic::matches(filter, t))
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn tick(&mut self, now_ms: u64) {
        self.ticks += 1;
        if self.ticks % SWEEP_TICKS == 0 {
            self.by_topic.retain(|_, m| !m.is_expired(now_ms));
        }
    }
}
