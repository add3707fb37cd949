//! Configuration of the broker features that take more than a scalar: shared-subscription
//! strategies (global and per group), `[[auto_subscribe.topics]]` rules and `[[rewrite]]` rules.
//! Only their configuration lives here; the features themselves are implemented elsewhere.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::units;
use crate::protocol::{QoS, RetainHandling, SubscriptionOptions};
use crate::topic::{has_wildcards, validate_topic_filter};

/// Most `[[auto_subscribe.topics]]` rules accepted (EMQX's limit).
pub const AUTO_SUBSCRIBE_MAX: usize = 20;

/// How one member of a shared-subscription group is picked for a message (FEATURES.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedStrategy {
    /// A random member.
    Random,
    /// A counter per publishing connection, starting at a random offset.
    #[default]
    RoundRobin,
    /// One counter per group and filter.
    RoundRobinPerGroup,
    /// A random member on the publisher's shard, otherwise any member.
    Local,
    /// The last pick, until that member's session ends; the first pick per
    /// `shared_subscription_initial_sticky_pick`.
    Sticky,
    /// A hash of the publisher's client id.
    HashClientid,
    /// A hash of the topic.
    HashTopic,
}

/// The first pick of the `sticky` strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StickyPick {
    #[default]
    Random,
    Local,
    HashClientid,
    HashTopic,
}

/// `[broker.shared_subscription_group.<group>]`: overrides for one share group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedGroupConfig {
    /// Replaces `mqtt.shared_subscription_strategy` for this group.
    pub strategy: SharedStrategy,
}

/// `[auto_subscribe]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoSubscribeConfig {
    /// Subscriptions made for every client at connect, without a SUBACK; at most
    /// [`AUTO_SUBSCRIBE_MAX`].
    pub topics: Vec<AutoSubscribeTopic>,
}

/// One `[[auto_subscribe.topics]]` rule. `topic` may hold `${clientid}`, `${username}`,
/// `${host}` and `${port}`; it is validated as a filter only after rendering, per client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoSubscribeTopic {
    #[serde(deserialize_with = "non_empty")]
    pub topic: String,
    #[serde(default, deserialize_with = "qos")]
    pub qos: QoS,
    /// Retain Handling, 0..=2.
    #[serde(default, deserialize_with = "retain_handling")]
    pub rh: RetainHandling,
    /// Retain As Published, 0 or 1.
    #[serde(default, deserialize_with = "units::flag")]
    pub rap: bool,
    /// No Local, 0 or 1.
    #[serde(default, deserialize_with = "units::flag")]
    pub nl: bool,
}

impl AutoSubscribeTopic {
    /// The subscription options the rule subscribes with.
    pub fn options(&self) -> SubscriptionOptions {
        SubscriptionOptions {
            qos: self.qos,
            no_local: self.nl,
            retain_as_published: self.rap,
            retain_handling: self.rh,
        }
    }
}

/// Which packets a `[[rewrite]]` rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RewriteAction {
    /// PUBLISH topics (and wills).
    Publish,
    /// SUBSCRIBE and UNSUBSCRIBE filters.
    Subscribe,
    /// Both.
    All,
}

impl RewriteAction {
    /// True if the rule rewrites PUBLISH topics (whose result must not contain wildcards).
    pub fn applies_to_publish(self) -> bool {
        matches!(self, Self::Publish | Self::All)
    }

    /// True if the rule rewrites SUBSCRIBE / UNSUBSCRIBE filters.
    pub fn applies_to_subscribe(self) -> bool {
        matches!(self, Self::Subscribe | Self::All)
    }
}

/// One `[[rewrite]]` rule (FEATURES.md §8).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteRule {
    pub action: RewriteAction,
    /// A topic filter; the rule applies to topics it matches.
    #[serde(deserialize_with = "topic_filter")]
    pub source_topic: String,
    /// Matched against the whole topic; captures feed `$1..$N` in `dest_topic`.
    pub re: TopicRegex,
    /// The template of the new topic: `$1..$N`, `${clientid}`, `${username}`.
    #[serde(deserialize_with = "non_empty")]
    pub dest_topic: String,
}

/// A regex compiled when the configuration is loaded; equal when the sources are equal.
#[derive(Clone)]
pub struct TopicRegex(pub regex::Regex);

impl TopicRegex {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        regex::Regex::new(source).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl std::ops::Deref for TopicRegex {
    type Target = regex::Regex;
    fn deref(&self) -> &regex::Regex {
        &self.0
    }
}

impl PartialEq for TopicRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TopicRegex {}

impl fmt::Debug for TopicRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicRegex({:?})", self.as_str())
    }
}

impl<'de> Deserialize<'de> for TopicRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // The regex crate's message spans several lines; keep its last line, the reason.
        TopicRegex::new(&s).map_err(|e| {
            let msg = e.to_string();
            let reason = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let reason = reason.trim().trim_start_matches("error: ");
            de::Error::custom(format!("invalid regex: {reason}"))
        })
    }
}

/// Checks the rules after they are parsed; returns the offending key, value and reason.
pub(crate) fn check_rewrite(rules: &[RewriteRule]) -> Result<(), (String, String, String)> {
    for (i, rule) in rules.iter().enumerate() {
        if rule.action.applies_to_publish() && has_wildcards(&rule.dest_topic) {
            return Err((
                format!("rewrite[{i}].dest_topic"),
                format!("{:?}", rule.dest_topic),
                "a publish or all rule cannot rewrite to a topic with `+` or `#`".into(),
            ));
        }
    }
    Ok(())
}

fn qos<'de, D: Deserializer<'de>>(d: D) -> Result<QoS, D::Error> {
    let v: u8 = units::int::<D, u8, 0, 2>(d)?;
    Ok(QoS::from_u8(v).expect("range checked"))
}

fn retain_handling<'de, D: Deserializer<'de>>(d: D) -> Result<RetainHandling, D::Error> {
    Ok(match units::int::<D, u8, 0, 2>(d)? {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        _ => RetainHandling::DoNotSend,
    })
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(s)
}

fn topic_filter<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    validate_topic_filter(&s, usize::MAX)
        .map_err(|e| de::Error::custom(format!("invalid topic filter: {e}")))?;
    Ok(s)
}
