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
    /// `max_retained_messages` is a broker-wide limit: when one is set, the count is shared by
    /// all shards (one atomic, touched only by retained stores and deletes); without a limit no
    /// count is kept.
    pub fn store(&mut self, msg: Arc<Message>, s: &Settings, now_ms: u64) {
        if msg.payload.is_empty() {
            if self.by_topic.remove(&msg.topic).is_some() {
                release(s, 1);
            }
            return;
        }
        if msg.payload.len() > s.max_retained_payload || msg.is_expired(now_ms) {
            self.dropped += 1;
            return;
        }
        // The broker's own `$SYS` messages (never deleted, never expiring) take no place.
        if !self.by_topic.contains_key(&msg.topic) && !msg.topic.starts_with("$SYS") && !reserve(s)
        {
            self.dropped += 1;
            return;
        }
        // Kept for long: own copies, so the message does not pin the whole socket read it came in.
        let msg = Arc::new(Message {
            topic: MqttStr::from(msg.topic.as_str()),
            payload: bytes::Bytes::copy_from_slice(&msg.payload),
            ..Message::clone(&msg)
        });
        self.by_topic.insert(msg.topic.clone(), msg);
    }

    /// Drops the expired messages, and gives their places back to the shared count.
    fn sweep(&mut self, now_ms: u64, s: &Settings) {
        let before = self.by_topic.len();
        self.by_topic.retain(|_, m| !m.is_expired(now_ms));
        let gone = before - self.by_topic.len();
        release(s, gone);
    }

    /// The live retained messages whose topic matches `filter`.
    pub fn matching(&mut self, filter: &str, now_ms: u64, s: &Settings) -> Vec<Arc<Message>> {
        if !topic::has_wildcards(filter) {
            return match self.by_topic.get(filter) {
                Some(m) if m.is_expired(now_ms) => {
                    self.by_topic.remove(filter);
                    release(s, 1);
                    Vec::new()
                }
                Some(m) => vec![m.clone()],
                None => Vec::new(),
            };
        }
        self.sweep(now_ms, s);
        self.by_topic
            .iter()
            .filter(|(t, _)| topic::matches(filter, t))
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn tick(&mut self, now_ms: u64, s: &Settings) {
        self.ticks += 1;
        if self.ticks.is_multiple_of(SWEEP_TICKS) {
            self.sweep(now_ms, s);
        }
    }
}

/// Takes a place under `max_retained_messages`; always succeeds without a limit.
fn reserve(s: &Settings) -> bool {
    s.retained_count.reserve(s.max_retained_messages)
}

/// Gives `n` places back.
fn release(s: &Settings, n: usize) {
    s.retained_count.release(s.max_retained_messages, n);
}
