//! The special topic forms: `$share/<group>/<filter>`, `$queue/<filter>` and
//! `$exclusive/<filter>` in SUBSCRIBE, `$delayed/<secs>/<topic>` in PUBLISH. Pure functions, usable
//! on any shard; whether a feature is enabled is the broker's business (it maps that to SUBACK
//! 0x8F / 0x9E), not this module's.

use super::{TOPIC_LEN_MAX, TopicError, validate_topic_filter, validate_topic_name};

const SHARE_PREFIX: &str = "$share/";
const QUEUE_PREFIX: &str = "$queue/";
const EXCLUSIVE_PREFIX: &str = "$exclusive/";
pub const DELAYED_PREFIX: &str = "$delayed/";

/// The group a `$queue/<filter>` subscription belongs to (`$queue/f` = `$share/$queue/f`).
pub const QUEUE_GROUP: &str = "$queue";

/// Intervals below this are relative seconds; at or above, an absolute Unix time in seconds, which
/// may be at most this many seconds ahead (FEATURES.md §6, EMQX's `?MAX_INTERVAL`).
pub const DELAY_SECS_MAX: u64 = 4_294_967;

/// What a SUBSCRIBE topic filter asks for, borrowing from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionTopic<'a> {
    /// An ordinary filter.
    Plain(&'a str),
    /// `$share/<group>/<filter>`, or `$queue/<filter>` with group [`QUEUE_GROUP`].
    Shared { group: &'a str, filter: &'a str },
    /// `$exclusive/<filter>`.
    Exclusive(&'a str),
}

/// Splits off and checks the special forms of a SUBSCRIBE filter; the filter inside is checked
/// with [`validate_topic_filter`] against `max_levels` (the prefix and group do not count).
///
/// As in EMQX, the filter inside `$exclusive/` is taken as it is: `$exclusive/$share/g/t` is an
/// exclusive subscription to the plain filter `$share/g/t`.
pub fn parse_subscription(s: &str, max_levels: usize) -> Result<SubscriptionTopic<'_>, TopicError> {
    // The 65535-byte rule applies to the whole string, prefix and group included.
    if s.len() > TOPIC_LEN_MAX {
        return Err(TopicError::TooLong);
    }
    if let Some(rest) = s.strip_prefix(SHARE_PREFIX) {
        parse_share(rest, max_levels)
    } else if let Some(filter) = s.strip_prefix(QUEUE_PREFIX) {
        let filter = check_shared_filter(filter, max_levels)?;
        Ok(SubscriptionTopic::Shared {
            group: QUEUE_GROUP,
            filter,
        })
    } else if let Some(filter) = s.strip_prefix(EXCLUSIVE_PREFIX) {
        if filter.is_empty() {
            return Err(TopicError::ExclusiveEmptyFilter);
        }
        validate_topic_filter(filter, max_levels)?;
        Ok(SubscriptionTopic::Exclusive(filter))
    } else {
        validate_topic_filter(s, max_levels)?;
        Ok(SubscriptionTopic::Plain(s))
    }
}

/// `rest` is what follows `$share/`.
fn parse_share(rest: &str, max_levels: usize) -> Result<SubscriptionTopic<'_>, TopicError> {
    let (group, filter) = rest.split_once('/').unwrap_or((rest, ""));
    if group.is_empty() {
        return Err(TopicError::ShareEmptyGroup);
    }
    if group.contains('\0') {
        return Err(TopicError::Nul);
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::ShareWildcardInGroup);
    }
    let filter = check_shared_filter(filter, max_levels)?;
    Ok(SubscriptionTopic::Shared { group, filter })
}

fn check_shared_filter(filter: &str, max_levels: usize) -> Result<&str, TopicError> {
    if filter.is_empty() {
        return Err(TopicError::ShareEmptyFilter);
    }
    if filter.starts_with(SHARE_PREFIX) || filter.starts_with(QUEUE_PREFIX) {
        return Err(TopicError::ShareNested);
    }
    validate_topic_filter(filter, max_levels)?;
    Ok(filter)
}

/// A `$delayed/<secs>/<topic>` PUBLISH: publish `topic` after `delay_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delayed<'a> {
    pub delay_secs: u32,
    pub topic: &'a str,
}

/// Recognises `$delayed/<secs>/<topic>`; `None` when `topic` does not start with `$delayed/`.
///
/// `<secs>` is a plain decimal integer (digits only). Below [`DELAY_SECS_MAX`] it is relative;
/// otherwise an absolute Unix time, turned into a delay from `now_unix_secs` (0 if past) and
/// rejected when more than [`DELAY_SECS_MAX`] seconds ahead. The inner topic is checked with
/// [`validate_topic_name`] but *without* a level limit: the caller applies `max_topic_levels` to
/// the returned topic, as it does for any PUBLISH.
pub fn parse_delayed(topic: &str, now_unix_secs: u64) -> Option<Result<Delayed<'_>, TopicError>> {
    let rest = topic.strip_prefix(DELAYED_PREFIX)?;
    Some(parse_delayed_rest(rest, now_unix_secs))
}

fn parse_delayed_rest(rest: &str, now_unix_secs: u64) -> Result<Delayed<'_>, TopicError> {
    let (secs, topic) = rest.split_once('/').unwrap_or((rest, ""));
    let secs = parse_decimal(secs).ok_or(TopicError::DelayedBadInterval)?;
    if topic.is_empty() {
        return Err(TopicError::DelayedEmptyTopic);
    }
    validate_topic_name(topic, usize::MAX)?;
    let delay_secs = delay_from(secs, now_unix_secs)?;
    Ok(Delayed { delay_secs, topic })
}

fn delay_from(secs: u64, now_unix_secs: u64) -> Result<u32, TopicError> {
    let delay = if secs < DELAY_SECS_MAX {
        secs
    } else {
        secs.saturating_sub(now_unix_secs)
    };
    if delay > DELAY_SECS_MAX {
        return Err(TopicError::DelayedTooFar);
    }
    // DELAY_SECS_MAX < u32::MAX, so this cannot fail.
    u32::try_from(delay).map_err(|_| TopicError::DelayedTooFar)
}

/// Digits only: `str::parse::<u64>` would also accept a leading `+`.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionTopic::*;

    const LEVELS: usize = 128;

    #[test]
    fn subscriptions() {
        let cases: &[(&str, Result<SubscriptionTopic, TopicError>)] = &[
            ("a/b", Ok(Plain("a/b"))),
            ("$share", Ok(Plain("$share"))),
            ("$queue", Ok(Plain("$queue"))),
            ("$SYS/#", Ok(Plain("$SYS/#"))),
            (
                "$share/g/a/+",
                Ok(Shared {
                    group: "g",
                    filter: "a/+",
                }),
            ),
            (
                "$share/g/#",
                Ok(Shared {
                    group: "g",
                    filter: "#",
                }),
            ),
            (
                "$share/$share/t",
                Ok(Shared {
                    group: "$share",
                    filter: "t",
                }),
            ),
            (
                "$share/g/$queue",
                Ok(Shared {
                    group: "g",
                    filter: "$queue",
                }),
            ),
            (
                "$queue/a/#",
                Ok(Shared {
                    group: QUEUE_GROUP,
                    filter: "a/#",
                }),
            ),
            ("$exclusive/a/+", Ok(Exclusive("a/+"))),
            ("$exclusive/$share/g/t", Ok(Exclusive("$share/g/t"))),
            ("$share//t", Err(TopicError::ShareEmptyGroup)),
            ("$share/", Err(TopicError::ShareEmptyGroup)),
            ("$share/g+/t", Err(TopicError::ShareWildcardInGroup)),
            ("$share/#/t", Err(TopicError::ShareWildcardInGroup)),
            ("$share/g", Err(TopicError::ShareEmptyFilter)),
            ("$share/g/", Err(TopicError::ShareEmptyFilter)),
            ("$queue/", Err(TopicError::ShareEmptyFilter)),
            ("$share/g/$share/h/t", Err(TopicError::ShareNested)),
            ("$share/g/$queue/t", Err(TopicError::ShareNested)),
            ("$queue/$share/h/t", Err(TopicError::ShareNested)),
            ("$queue/$queue/t", Err(TopicError::ShareNested)),
            ("$share/g/a/#/b", Err(TopicError::MultiLevelMisplaced)),
            ("$share/g\0/t", Err(TopicError::Nul)),
            ("$exclusive/", Err(TopicError::ExclusiveEmptyFilter)),
            ("$exclusive/a+", Err(TopicError::SingleLevelMisplaced)),
            ("", Err(TopicError::Empty)),
            ("a/#/b", Err(TopicError::MultiLevelMisplaced)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_subscription(s, LEVELS), *want, "{s:?}");
        }
    }

    #[test]
    fn level_limit_applies_to_the_inner_filter() {
        assert_eq!(
            parse_subscription("$share/g/a/b", 2),
            Ok(Shared {
                group: "g",
                filter: "a/b"
            })
        );
        assert_eq!(
            parse_subscription("$queue/a/b", 2),
            Ok(Shared {
                group: "$queue",
                filter: "a/b"
            })
        );
        assert_eq!(
            parse_subscription("$exclusive/a/b", 2),
            Ok(Exclusive("a/b"))
        );
        assert_eq!(
            parse_subscription("$share/g/a/b/c", 2),
            Err(TopicError::TooManyLevels)
        );
    }

    #[test]
    fn share_length_counts_the_whole_string() {
        let s = format!("$share/g/{}", "a".repeat(TOPIC_LEN_MAX - 9));
        assert!(parse_subscription(&s, LEVELS).is_ok());
        let s = format!("$share/g/{}", "a".repeat(TOPIC_LEN_MAX - 8));
        assert_eq!(parse_subscription(&s, LEVELS), Err(TopicError::TooLong));
    }

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn delayed() {
        let ok = |delay_secs, topic| Some(Ok(Delayed { delay_secs, topic }));
        let err = |e| Some(Err(e));
        let cases: &[(&str, Option<Result<Delayed, TopicError>>)] = &[
            ("a/b", None),
            ("$delayed", None),
            ("$delayed/10/a/b", ok(10, "a/b")),
            ("$delayed/0/a", ok(0, "a")),
            ("$delayed/007/a", ok(7, "a")),
            ("$delayed/4294966/a", ok(4_294_966, "a")),
            ("$delayed/4294967/a", ok(0, "a")),
            ("$delayed/1700000100/a", ok(100, "a")),
            ("$delayed/1699999999/a", ok(0, "a")),
            ("$delayed/1704294967/a", ok(4_294_967, "a")),
            ("$delayed/1704294968/a", err(TopicError::DelayedTooFar)),
            (
                "$delayed/18446744073709551615/a",
                err(TopicError::DelayedTooFar),
            ),
            (
                "$delayed/18446744073709551616/a",
                err(TopicError::DelayedBadInterval),
            ),
            ("$delayed/-1/a", err(TopicError::DelayedBadInterval)),
            ("$delayed/+1/a", err(TopicError::DelayedBadInterval)),
            ("$delayed/ 1/a", err(TopicError::DelayedBadInterval)),
            ("$delayed/1.5/a", err(TopicError::DelayedBadInterval)),
            ("$delayed//a", err(TopicError::DelayedBadInterval)),
            ("$delayed/", err(TopicError::DelayedBadInterval)),
            ("$delayed/10", err(TopicError::DelayedEmptyTopic)),
            ("$delayed/10/", err(TopicError::DelayedEmptyTopic)),
            ("$delayed/10/a/+", err(TopicError::WildcardInName)),
            ("$delayed/10/a\0", err(TopicError::Nul)),
        ];
        for (topic, want) in cases {
            assert_eq!(parse_delayed(topic, NOW), *want, "{topic:?}");
        }
    }
}
