//! One routed application message ([`Message`], shared by all its deliveries as `Arc<Message>`)
//! and the per-subscriber delivery options that turn it into an outgoing PUBLISH. Pure data; a
//! `Message` may cross shards, the deliveries built from it live on each subscriber's home shard.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use crate::protocol::{MqttStr, ProtocolVersion, Publish, PublishProperties, QoS};

/// An application message as the broker routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: MqttStr,
    pub payload: Bytes,
    /// The QoS it was published with; each subscriber gets `min(qos, granted)`.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// As published, minus Topic Alias and Subscription Identifiers. `message_expiry_interval`
    /// is the published value (forwarded as the remaining interval only when present).
    pub properties: PublishProperties,
    /// Absolute expiry (caller's monotonic ms), from the Message Expiry Interval or the
    /// configured default; `None` = never.
    pub expires_at_ms: Option<u64>,
    /// Session key of the publisher, for No Local; 0 = the broker itself (will, `$SYS`, ...).
    pub publisher_id: u64,
}

impl Message {
    /// Takes an inbound PUBLISH (topic alias already resolved). `default_expiry_secs` is the
    /// configured `message_expiry_interval` used when the PUBLISH has none (`None` = infinity).
    pub fn from_publish(
        p: Publish,
        publisher_id: u64,
        now_ms: u64,
        default_expiry_secs: Option<u32>,
    ) -> Message {
        let mut properties = p.properties;
        properties.topic_alias = None;
        if let Some(e) = &mut properties.extra {
            e.subscription_identifiers = Vec::new();
            if e.is_empty() {
                properties.extra = None;
            }
        }
        let expiry = properties.message_expiry_interval.or(default_expiry_secs);
        Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            expires_at_ms: expiry.map(|s| now_ms.saturating_add(u64::from(s) * 1000)),
            publisher_id,
        }
    }

    /// Expired once `now` is strictly past the deadline (as EMQX: an interval of 0 still lets a
    /// message through in the millisecond it was published).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms > at)
    }

    /// The Message Expiry Interval to forward: the remaining time rounded up to whole seconds,
    /// at least 1 (as EMQX), and only when the publisher sent the property [MQTT-3.3.2-6].
    pub fn remaining_expiry_secs(&self, now_ms: u64) -> Option<u32> {
        self.properties.message_expiry_interval?;
        let left = self.expires_at_ms?.saturating_sub(now_ms);
        Some(
            u32::try_from(left.div_ceil(1000))
                .unwrap_or(u32::MAX)
                .max(1),
        )
    }

    /// The QoS one subscriber receives.
    pub fn effective_qos(&self, opts: &DeliveryOpts) -> QoS {
        self.qos.min(opts.qos)
    }

    /// The PUBLISH for one subscriber: QoS `min(message, granted)`, RETAIN per Retain As
    /// Published (always set for retained messages sent because of a SUBSCRIBE), the remaining
    /// expiry interval and the subscriber's subscription identifiers. `packet_id` must be
    /// `Some` exactly when the effective QoS is 1 or 2. Below 5.0 no properties are copied.
    pub fn to_publish(
        &self,
        opts: &DeliveryOpts,
        packet_id: Option<NonZeroU16>,
        now_ms: u64,
        version: ProtocolVersion,
    ) -> Publish {
        let qos = self.effective_qos(opts);
        debug_assert_eq!(qos == QoS::AtMostOnce, packet_id.is_none());
        let retain = if opts.retained_on_subscribe {
            true
        } else {
            opts.retain_as_published && self.retain
        };
        let properties = if version.is_v5() {
            let mut props = self.properties.clone();
            props.message_expiry_interval = self.remaining_expiry_secs(now_ms);
            let ids = opts.subscription_ids.as_slice();
            if !ids.is_empty() || props.extra.is_some() {
                props.extra_mut().subscription_identifiers = ids.to_vec();
            }
            props
        } else {
            PublishProperties::default()
        };
        Publish {
            dup: false,
            qos,
            retain,
            topic: self.topic.clone(),
            packet_id,
            properties,
            payload: self.payload.clone(),
        }
    }
}

/// The subscription identifiers of one subscriber's matching subscriptions: none or one (the
/// common cases) without a heap block, more in a boxed slice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SubIds {
    #[default]
    None,
    One(NonZeroU32),
    Many(Box<[NonZeroU32]>),
}

impl SubIds {
    pub fn from_slice(ids: &[NonZeroU32]) -> SubIds {
        match ids {
            [] => SubIds::None,
            [one] => SubIds::One(*one),
            many => SubIds::Many(many.into()),
        }
    }

    pub fn as_slice(&self) -> &[NonZeroU32] {
        match self {
            SubIds::None => &[],
            SubIds::One(id) => std::slice::from_ref(id),
            SubIds::Many(ids) => ids,
        }
    }
}

/// How one message is delivered to one subscriber (from its subscription options).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryOpts {
    /// The granted (maximum) QoS of the matching subscription.
    pub qos: QoS,
    pub retain_as_published: bool,
    /// A retained message sent because of a SUBSCRIBE: keeps RETAIN=1 [MQTT-3.3.1-9].
    pub retained_on_subscribe: bool,
    pub subscription_ids: SubIds,
    /// Set when the message came through a shared subscription: the group it is redispatched
    /// to when this session ends unacknowledged (FEATURES.md §4).
    pub shared: Option<std::sync::Arc<ShareName>>,
}

/// A shared subscription's group and filter (`$share/<group>/<filter>`; `$queue/<filter>` is
/// group `$queue`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ShareName {
    pub group: MqttStr,
    pub filter: MqttStr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PublishExtraProperties;

    fn publish(qos: QoS, retain: bool, expiry: Option<u32>) -> Publish {
        Publish {
            qos,
            retain,
            topic: "a/b".into(),
            packet_id: NonZeroU16::new(if qos == QoS::AtMostOnce { 0 } else { 7 }),
            properties: PublishProperties {
                message_expiry_interval: expiry,
                topic_alias: NonZeroU16::new(3),
                ..Default::default()
            }
            .with_extra(PublishExtraProperties {
                subscription_identifiers: vec![NonZeroU32::new(9).unwrap()],
                content_type: Some("text/plain".into()),
                ..Default::default()
            }),
            payload: Bytes::from_static(b"hi"),
            dup: false,
        }
    }

    #[test]
    fn from_publish_strips_alias_and_sub_ids_and_sets_expiry() {
        let m = Message::from_publish(publish(QoS::AtLeastOnce, true, Some(10)), 5, 1_000, None);
        assert_eq!(m.properties.topic_alias, None);
        assert!(m.properties.extra().subscription_identifiers.is_empty());
        assert_eq!(m.expires_at_ms, Some(11_000));
        assert_eq!(m.publisher_id, 5);
        // Default expiry applies only without the property, and is not forwarded.
        let m = Message::from_publish(publish(QoS::AtLeastOnce, true, None), 5, 1_000, Some(2));
        assert_eq!(m.expires_at_ms, Some(3_000));
        assert_eq!(m.remaining_expiry_secs(1_500), None);
        let m = Message::from_publish(publish(QoS::AtLeastOnce, true, None), 5, 1_000, None);
        assert_eq!(m.expires_at_ms, None);
        assert!(!m.is_expired(u64::MAX));
    }

    #[test]
    fn remaining_expiry_rounds_up() {
        let m = Message::from_publish(publish(QoS::AtLeastOnce, false, Some(10)), 0, 0, None);
        for (now, want) in [
            (0, 10),
            (1, 10),
            (999, 10),
            (1_000, 9),
            (9_001, 1),
            (10_000, 1),
        ] {
            assert_eq!(m.remaining_expiry_secs(now), Some(want), "now={now}");
        }
        assert!(!m.is_expired(10_000));
        assert!(m.is_expired(10_001));
    }

    #[test]
    fn qos_and_retain_per_subscriber() {
        // (message qos, granted, retain, rap, on_subscribe) -> (qos, retain)
        use QoS::*;
        let table = [
            (
                ExactlyOnce,
                AtLeastOnce,
                true,
                false,
                false,
                AtLeastOnce,
                false,
            ),
            (
                AtLeastOnce,
                ExactlyOnce,
                true,
                true,
                false,
                AtLeastOnce,
                true,
            ),
            (
                ExactlyOnce,
                AtMostOnce,
                false,
                true,
                false,
                AtMostOnce,
                false,
            ),
            (AtMostOnce, ExactlyOnce, true, false, true, AtMostOnce, true),
        ];
        for (mq, granted, retain, rap, on_sub, want_q, want_r) in table {
            let m = Message::from_publish(publish(mq, retain, None), 0, 0, None);
            let opts = DeliveryOpts {
                qos: granted,
                retain_as_published: rap,
                retained_on_subscribe: on_sub,
                subscription_ids: SubIds::from_slice(&[NonZeroU32::new(4).unwrap()]),
                shared: None,
            };
            let pid = NonZeroU16::new(if want_q == AtMostOnce { 0 } else { 1 });
            let p = m.to_publish(&opts, pid, 0, ProtocolVersion::V5);
            assert_eq!((p.qos, p.retain), (want_q, want_r));
            assert_eq!(
                p.properties.extra().subscription_identifiers,
                opts.subscription_ids.as_slice()
            );
            assert_eq!(
                p.properties.extra().content_type.as_deref(),
                Some("text/plain")
            );
            let p3 = m.to_publish(&opts, pid, 0, ProtocolVersion::V311);
            assert_eq!(p3.properties, PublishProperties::default());
        }
    }

    #[test]
    fn sub_ids_small_forms() {
        let ids: Vec<_> = (1..=3).map(|i| NonZeroU32::new(i).unwrap()).collect();
        assert_eq!(SubIds::from_slice(&[]), SubIds::None);
        assert_eq!(SubIds::from_slice(&ids[..1]), SubIds::One(ids[0]));
        assert_eq!(SubIds::from_slice(&ids).as_slice(), &ids[..]);
    }
}
