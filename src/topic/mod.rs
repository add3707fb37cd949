//! Topic names and filters: validation, the reference matcher, the special subscription and
//! publish forms, and the per-shard subscription trie. Everything except [`TopicTrie`] is a pure
//! function usable on any shard; a [`TopicTrie`] is owned by exactly one shard.
//!
//! Spec statements are quoted with their MQTT 5.0 numbers (3.1.1 numbers some of them
//! differently). The codec has already checked UTF-8 and NUL, but the functions here check NUL
//! again so that they are safe on their own.

mod labels;
mod special;
mod table;
mod trie;

pub use special::{
    DELAY_SECS_MAX, DELAYED_PREFIX, Delayed, SubscriptionTopic, parse_delayed, parse_subscription,
};
pub use trie::{FilterId, Matches, TopicTrie};

/// Longest topic name or filter on the wire, in bytes [MQTT-4.7.3-3].
pub const TOPIC_LEN_MAX: usize = 65_535;

/// One variant per rule a topic name, topic filter or special form can break.
///
/// Small and `Copy` because it sits on the SUBSCRIBE / PUBLISH path; [`TopicError::statement`]
/// names the rule for logs and reason strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    #[error("topic has more levels than the configured maximum")]
    TooManyLevels,
    #[error("topic contains U+0000")]
    Nul,
    #[error("topic name contains a wildcard")]
    WildcardInName,
    #[error("`#` is not alone in the last level")]
    MultiLevelMisplaced,
    #[error("`+` is not alone in its level")]
    SingleLevelMisplaced,
    #[error("shared subscription has an empty group")]
    ShareEmptyGroup,
    #[error("shared subscription group contains `+` or `#`")]
    ShareWildcardInGroup,
    #[error("shared subscription has no filter or an empty filter")]
    ShareEmptyFilter,
    #[error("shared subscription filter is itself `$share/` or `$queue/`")]
    ShareNested,
    #[error("exclusive subscription has an empty filter")]
    ExclusiveEmptyFilter,
    #[error("delayed publish interval is not a non-negative integer")]
    DelayedBadInterval,
    #[error("delayed publish has no topic")]
    DelayedEmptyTopic,
    #[error("delayed publish time is more than 4294967 s ahead")]
    DelayedTooFar,
}

impl TopicError {
    /// The normative statement or FEATURES.md section the error breaks.
    pub fn statement(self) -> &'static str {
        match self {
            Self::Empty => "[MQTT-4.7.3-1]",
            Self::TooLong => "[MQTT-4.7.3-3]",
            Self::TooManyLevels => "FEATURES.md §1 (mqtt.max_topic_levels)",
            Self::Nul => "[MQTT-4.7.3-2]",
            Self::WildcardInName => "[MQTT-3.3.2-2]",
            Self::MultiLevelMisplaced => "[MQTT-4.7.1-1]",
            Self::SingleLevelMisplaced => "[MQTT-4.7.1-2]",
            Self::ShareEmptyGroup
            | Self::ShareWildcardInGroup
            | Self::ShareEmptyFilter
            | Self::ShareNested => "FEATURES.md §4",
            Self::ExclusiveEmptyFilter => "FEATURES.md §5",
            Self::DelayedBadInterval | Self::DelayedEmptyTopic | Self::DelayedTooFar => {
                "FEATURES.md §6"
            }
        }
    }
}

/// Checks a PUBLISH topic name: non-empty, at most 65535 bytes, no NUL, no wildcard, and at most
/// `max_levels` levels (`a/b` has 2 levels, `/` has 2).
pub fn validate_topic_name(name: &str, max_levels: usize) -> Result<(), TopicError> {
    check_length(name)?;
    let mut levels = 1usize;
    for byte in name.bytes() {
        match byte {
            b'+' | b'#' => return Err(TopicError::WildcardInName),
            0 => return Err(TopicError::Nul),
            b'/' => levels += 1,
            _ => {}
        }
    }
    check_levels(levels, max_levels)
}

/// Checks a SUBSCRIBE / UNSUBSCRIBE topic filter (without `$share/` or `$exclusive/`; see
/// [`parse_subscription`]): non-empty, at most 65535 bytes, no NUL, `#` only alone in the last
/// level, `+` only alone in its level, and at most `max_levels` levels.
pub fn validate_topic_filter(filter: &str, max_levels: usize) -> Result<(), TopicError> {
    check_length(filter)?;
    let mut levels = filter.split('/').peekable();
    let mut count = 0usize;
    while let Some(level) = levels.next() {
        count += 1;
        check_filter_level(level, levels.peek().is_none())?;
    }
    check_levels(count, max_levels)
}

fn check_filter_level(level: &str, is_last: bool) -> Result<(), TopicError> {
    if level.contains('\0') {
        return Err(TopicError::Nul);
    }
    if level.contains('#') && (level != "#" || !is_last) {
        return Err(TopicError::MultiLevelMisplaced);
    }
    if level.contains('+') && level != "+" {
        return Err(TopicError::SingleLevelMisplaced);
    }
    Ok(())
}

fn check_length(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > TOPIC_LEN_MAX {
        return Err(TopicError::TooLong);
    }
    Ok(())
}

fn check_levels(levels: usize, max_levels: usize) -> Result<(), TopicError> {
    if levels > max_levels {
        return Err(TopicError::TooManyLevels);
    }
    Ok(())
}

/// True if the filter contains `+` or `#`. For a valid filter that means it has a wildcard level.
pub fn has_wildcards(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// The reference matcher: does `filter` match the topic name `topic`?
///
/// `+` matches exactly one level (an empty one too); `#` as the last level matches the parent
/// level and any number of levels below it (`sport/#` matches `sport`); a filter whose first level
/// is a wildcard does not match a topic starting with `$` [MQTT-4.7.2-1]. Linear in the lengths,
/// no allocation. Used for retained-message lookup and as the model the trie is tested against.
///
/// Defined on any strings: a `#` that is not the last level matches nothing (the trie agrees), and
/// levels such as `a+` are compared literally.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/').peekable();
    let mut topic_levels = topic.split('/');
    while let Some(f) = filter_levels.next() {
        if f == "#" {
            return filter_levels.peek().is_none();
        }
        match topic_levels.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVELS: usize = 128;

    #[test]
    fn topic_names() {
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("a", Ok(())),
            ("/", Ok(())),
            ("a/b/c", Ok(())),
            ("$SYS/broker", Ok(())),
            ("a b/ü", Ok(())),
            ("", Err(TopicError::Empty)),
            ("a/+", Err(TopicError::WildcardInName)),
            ("a/#", Err(TopicError::WildcardInName)),
            ("a+b", Err(TopicError::WildcardInName)),
            ("a\0b", Err(TopicError::Nul)),
        ];
        for (name, want) in cases {
            assert_eq!(validate_topic_name(name, LEVELS), *want, "{name:?}");
        }
    }

    #[test]
    fn topic_filters() {
        let cases: &[(&str, Result<(), TopicError>)] = &[
            ("#", Ok(())),
            ("+", Ok(())),
            ("/", Ok(())),
            ("sport/tennis/player1/#", Ok(())),
            ("sport/+/player1", Ok(())),
            ("+/+", Ok(())),
            ("/+", Ok(())),
            ("+/tennis/#", Ok(())),
            ("$SYS/#", Ok(())),
            ("", Err(TopicError::Empty)),
            ("sport/tennis#", Err(TopicError::MultiLevelMisplaced)),
            (
                "sport/tennis/#/ranking",
                Err(TopicError::MultiLevelMisplaced),
            ),
            ("#/", Err(TopicError::MultiLevelMisplaced)),
            ("##", Err(TopicError::MultiLevelMisplaced)),
            ("sport+", Err(TopicError::SingleLevelMisplaced)),
            ("sport/+x/a", Err(TopicError::SingleLevelMisplaced)),
            ("++", Err(TopicError::SingleLevelMisplaced)),
            ("a/\0", Err(TopicError::Nul)),
        ];
        for (filter, want) in cases {
            assert_eq!(validate_topic_filter(filter, LEVELS), *want, "{filter:?}");
        }
    }

    #[test]
    fn length_and_levels() {
        let long = "a".repeat(TOPIC_LEN_MAX);
        assert_eq!(validate_topic_name(&long, LEVELS), Ok(()));
        assert_eq!(validate_topic_filter(&long, LEVELS), Ok(()));
        let longer = "a".repeat(TOPIC_LEN_MAX + 1);
        assert_eq!(
            validate_topic_name(&longer, LEVELS),
            Err(TopicError::TooLong)
        );
        assert_eq!(
            validate_topic_filter(&longer, LEVELS),
            Err(TopicError::TooLong)
        );

        assert_eq!(validate_topic_name("a/b", 2), Ok(()));
        assert_eq!(validate_topic_name("/", 2), Ok(()));
        assert_eq!(
            validate_topic_name("a/b/c", 2),
            Err(TopicError::TooManyLevels)
        );
        assert_eq!(validate_topic_filter("a/+", 2), Ok(()));
        assert_eq!(
            validate_topic_filter("a/+/#", 2),
            Err(TopicError::TooManyLevels)
        );
    }

    #[test]
    fn wildcard_detection() {
        assert!(has_wildcards("a/+/b"));
        assert!(has_wildcards("#"));
        assert!(!has_wildcards("a/b"));
    }

    /// MQTT 3.1.1 §4.7.1–4.7.2 and MQTT 5.0 §4.7 examples.
    pub(crate) const MATCH_CASES: &[(&str, &str, bool)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/#", "sport", true),
        ("sport/#", "sports", false),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("#", "$SYS/monitor/Clients", false),
        ("+", "$SYS", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("a/+/c", "a/$b/c", true),
        ("a/#/c", "a/b/c", false),
        ("a/b", "a/b", true),
        ("a/b", "a/b/", false),
        ("a+", "a+", true),
    ];

    #[test]
    fn reference_matcher() {
        for (filter, topic, want) in MATCH_CASES {
            assert_eq!(matches(filter, topic), *want, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn every_error_names_a_statement() {
        assert_eq!(
            TopicError::MultiLevelMisplaced.statement(),
            "[MQTT-4.7.1-1]"
        );
        assert_eq!(
            TopicError::SingleLevelMisplaced.statement(),
            "[MQTT-4.7.1-2]"
        );
        assert_eq!(TopicError::Empty.statement(), "[MQTT-4.7.3-1]");
        assert_eq!(TopicError::Nul.statement(), "[MQTT-4.7.3-2]");
        assert_eq!(TopicError::ShareNested.statement(), "FEATURES.md §4");
    }
}
