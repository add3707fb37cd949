//! Delayed publish (FEATURES.md §6): a PUBLISH to `$delayed/<secs>/<topic>` is kept and published
//! to `<topic>` when it is due. This module owns the pending delayed messages of one shard — the
//! shard where they were published, i.e. the publisher's home shard — in a per-shard timer
//! structure: a binary heap ordered by (due time, arrival), one heap entry per message (no task
//! or glommio timer each). [`Broker::tick`] fires the due ones, once a second, never early.
//!
//! The message keeps its QoS, retain flag, properties and publisher (No Local applies); its
//! Message Expiry Interval counts from the original publish, so a message that expired while
//! delayed is dropped when due. `max_delayed_messages` is broker-wide: a count shared by all
//! shards, touched only by delayed publishes and only when a limit is set. Nothing is persisted:
//! pending delayed messages are lost on restart.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::Broker;
use crate::protocol::{MqttStr, Publish, ReasonCode};
use crate::session::Message;
use crate::topic::{
    DELAY_SECS_MAX, DELAYED_PREFIX, TopicError, parse_delayed, validate_topic_name,
};

/// One pending message; ordered by due time, then arrival (so equal due times keep publish order).
#[derive(Debug)]
struct Entry {
    due_ms: u64,
    seq: u64,
    msg: Arc<Message>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.due_ms, self.seq) == (o.due_ms, o.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest entry must be on top.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.due_ms, o.seq).cmp(&(self.due_ms, self.seq))
    }
}

/// The pending delayed messages of one shard.
#[derive(Debug, Default)]
pub(super) struct DelayedStore {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

impl DelayedStore {
    /// Keeps `msg` until `due_ms` (the broker's monotonic clock).
    pub fn push(&mut self, due_ms: u64, msg: Arc<Message>) {
        self.next_seq += 1;
        self.heap.push(Entry {
            due_ms,
            seq: self.next_seq,
            msg,
        });
    }

    /// The earliest message due at `now_ms` or before, if any.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<Arc<Message>> {
        if self.heap.peek()?.due_ms <= now_ms {
            self.heap.pop().map(|e| e.msg)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Parses `$delayed/<secs>/<topic>` (already known to start with `$delayed/`): the inner topic
/// and the milliseconds until it is due. `now_unix_ms` is the wall clock: the absolute form is
/// counted to the millisecond, so it is never early by the part of the current second.
/// `max_levels` applies to the inner topic.
pub(super) fn due_in(
    topic: &str,
    now_unix_ms: u64,
    max_levels: usize,
) -> Result<(&str, u64), TopicError> {
    let d = parse_delayed(topic, now_unix_ms / 1000).ok_or(TopicError::DelayedBadInterval)??;
    validate_topic_name(d.topic, max_levels)?;
    // The interval is digits only here (parse_delayed checked it).
    let secs: u64 = topic[DELAYED_PREFIX.len()..]
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(TopicError::DelayedBadInterval)?;
    let ms = if secs < DELAY_SECS_MAX {
        secs * 1000
    } else {
        (secs * 1000).saturating_sub(now_unix_ms)
    };
    Ok((d.topic, ms))
}

impl Broker {
    /// Whether an inbound PUBLISH to `topic` is a delayed one.
    pub(super) fn is_delayed(&self, topic: &str) -> bool {
        self.settings.delayed_enable && topic.starts_with(DELAYED_PREFIX)
    }

    /// Takes an inbound `$delayed/...` PUBLISH (topic alias resolved); returns the v5 reason for
    /// its PUBACK / PUBREC: 0x10 when kept (as EMQX: nothing received it yet), 0x90 when the
    /// interval or inner topic is bad, 0x97 when the store is full, 0x87 for an inner `$SYS`
    /// topic. A dropped message is counted.
    pub(super) fn delay(&mut self, mut p: Publish, publisher: u64) -> ReasonCode {
        let now_unix_ms = self.unix_now_ms();
        let (topic, after_ms) = match due_in(&p.topic, now_unix_ms, self.settings.max_topic_levels)
        {
            Ok((t, ms)) => (MqttStr::from(t), ms),
            Err(_) => {
                self.counters.delayed_dropped_invalid += 1;
                return ReasonCode::TopicNameInvalid;
            }
        };
        // Clients cannot publish to `$SYS` (FEATURES.md §9), later either.
        if topic.starts_with("$SYS") {
            return ReasonCode::NotAuthorized;
        }
        let s = &self.settings;
        if !s.delayed_count.reserve(s.max_delayed_messages) {
            self.counters.delayed_dropped_full += 1;
            return ReasonCode::QuotaExceeded;
        }
        p.topic = topic;
        let msg = self.message_from(p, publisher);
        self.delayed
            .push(self.now_ms.saturating_add(after_ms), Arc::new(msg));
        self.counters.delayed_stored = self.delayed.len() as u64;
        ReasonCode::NoMatchingSubscribers
    }

    /// Publishes the delayed messages due at `now_ms`, in due order; the ones whose Message
    /// Expiry passed meanwhile are dropped and counted.
    pub(super) fn fire_delayed(&mut self, now_ms: u64) {
        while let Some(msg) = self.delayed.pop_due(now_ms) {
            let s = &self.settings;
            s.delayed_count.release(s.max_delayed_messages, 1);
            if msg.is_expired(now_ms) {
                self.counters.delayed_dropped_expired += 1;
            } else {
                self.counters.delayed_published += 1;
                self.route(msg);
            }
        }
        self.counters.delayed_stored = self.delayed.len() as u64;
    }

    /// Delayed messages pending on this shard.
    pub fn delayed_count(&self) -> usize {
        self.delayed.len()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::broker::Settings;
    use crate::protocol::{PublishProperties, QoS};

    const NOW_UNIX_MS: u64 = 1_700_000_000_250;

    #[test]
    fn due_times() {
        let due = |t| due_in(t, NOW_UNIX_MS, 128);
        assert_eq!(due("$delayed/2/a/b"), Ok(("a/b", 2000)));
        assert_eq!(due("$delayed/0/a"), Ok(("a", 0)));
        assert_eq!(due("$delayed/4294966/a"), Ok(("a", 4_294_966_000)));
        // Absolute: counted from the wall clock to the millisecond.
        assert_eq!(due("$delayed/1700000002/a"), Ok(("a", 1750)));
        assert_eq!(due("$delayed/1700000000/a"), Ok(("a", 0)));
        assert_eq!(due("$delayed/4294967/a"), Ok(("a", 0)));
        assert_eq!(due("$delayed/1704294967/a"), Ok(("a", 4_294_966_750)));
        assert_eq!(due("$delayed/1704294968/a"), Err(TopicError::DelayedTooFar));
        assert_eq!(due("$delayed/x/a"), Err(TopicError::DelayedBadInterval));
        assert_eq!(due("$delayed/1.5/a"), Err(TopicError::DelayedBadInterval));
        assert_eq!(due("$delayed/5"), Err(TopicError::DelayedEmptyTopic));
        assert_eq!(due("$delayed/5/"), Err(TopicError::DelayedEmptyTopic));
        assert_eq!(due("$delayed/5/a/#"), Err(TopicError::WildcardInName));
        // max_topic_levels applies to the inner topic only.
        assert_eq!(due_in("$delayed/5/a/b", NOW_UNIX_MS, 2), Ok(("a/b", 5000)));
        assert_eq!(
            due_in("$delayed/5/a/b/c", NOW_UNIX_MS, 2),
            Err(TopicError::TooManyLevels)
        );
    }

    fn msg(topic: &str) -> Arc<Message> {
        Arc::new(Message::from_publish(
            Publish {
                topic: MqttStr::from(topic),
                ..Default::default()
            },
            1,
            0,
            None,
        ))
    }

    #[test]
    fn many_messages_fire_in_due_order_never_early() {
        let mut store = DelayedStore::default();
        // Due times 0..10_000 ms, pushed out of order; equal due times keep arrival order.
        for i in 0..1000u64 {
            let due = (i * 7919) % 10_000;
            store.push(due, msg(&format!("{due}/{i}")));
        }
        store.push(5000, msg("5000/last"));
        assert_eq!(store.len(), 1001);
        let mut fired: Vec<(u64, String)> = Vec::new();
        for now in (0..=10_000).step_by(1000) {
            while let Some(m) = store.pop_due(now) {
                let due: u64 = m.topic.split('/').next().unwrap().parse().unwrap();
                assert!(due <= now && now < due + 1000, "due {due} fired at {now}");
                fired.push((due, m.topic.to_string()));
            }
        }
        assert_eq!(store.len(), 0);
        assert_eq!(fired.len(), 1001);
        assert!(fired.windows(2).all(|w| w[0].0 <= w[1].0));
        let at_5000: Vec<_> = fired.iter().filter(|(d, _)| *d == 5000).collect();
        assert_eq!(at_5000.last().unwrap().1, "5000/last");
    }

    fn broker(settings: Settings) -> Broker {
        let mut b = Broker::new(0, 1, Rc::new(settings));
        b.set_unix_time(0, NOW_UNIX_MS);
        b
    }

    fn delayed_publish(topic: &str, expiry: Option<u32>) -> Publish {
        Publish {
            topic: MqttStr::from(topic),
            qos: QoS::AtLeastOnce,
            properties: PublishProperties {
                message_expiry_interval: expiry,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn full_store_drops_the_new_message() {
        let settings = Settings {
            max_delayed_messages: 2,
            ..Settings::default()
        };
        let count = settings.delayed_count.clone();
        let mut b = broker(settings);
        for t in ["$delayed/5/a", "$delayed/5/b"] {
            assert_eq!(
                b.delay(delayed_publish(t, None), 1),
                ReasonCode::NoMatchingSubscribers
            );
        }
        assert_eq!(
            b.delay(delayed_publish("$delayed/5/c", None), 1),
            ReasonCode::QuotaExceeded
        );
        assert_eq!(b.counters.delayed_dropped_full, 1);
        assert_eq!(b.counters.delayed_stored, 2);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 2);
        // Not early; then both fire and give their places back.
        b.tick(4999, NOW_UNIX_MS + 4999);
        assert_eq!(b.delayed_count(), 2);
        b.tick(5000, NOW_UNIX_MS + 5000);
        assert_eq!(b.delayed_count(), 0);
        assert_eq!(b.counters.delayed_published, 2);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(
            b.delay(delayed_publish("$delayed/5/c", None), 1),
            ReasonCode::NoMatchingSubscribers
        );
    }

    #[test]
    fn bad_topics_are_dropped_and_counted() {
        let mut b = broker(Settings {
            max_topic_levels: 2,
            ..Settings::default()
        });
        for t in [
            "$delayed/x/a",
            "$delayed/5",
            "$delayed/5/",
            "$delayed/5/a/+",
            "$delayed/5/a/b/c",
        ] {
            assert_eq!(
                b.delay(delayed_publish(t, None), 1),
                ReasonCode::TopicNameInvalid,
                "{t}"
            );
        }
        assert_eq!(b.counters.delayed_dropped_invalid, 5);
        assert_eq!(b.delayed_count(), 0);
    }

    #[test]
    fn expiry_counts_from_the_original_publish() {
        let mut b = broker(Settings::default());
        // Expires 2 s after the publish, due after 3 s: dropped when due.
        b.delay(delayed_publish("$delayed/3/a", Some(2)), 1);
        // Expires after 10 s: published.
        b.delay(delayed_publish("$delayed/3/b", Some(10)), 1);
        b.tick(3000, NOW_UNIX_MS + 3000);
        assert_eq!(b.delayed_count(), 0);
        assert_eq!(b.counters.delayed_dropped_expired, 1);
        assert_eq!(b.counters.delayed_published, 1);
    }
}
