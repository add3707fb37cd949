//! Property tests for `ringmq::topic`: the trie against the linear reference matcher, and the
//! validators against arbitrary input. Pure, no shard involved.

use std::collections::BTreeSet;

use proptest::prelude::*;
use ringmq::topic::{
    self, Matches, SubscriptionTopic, TopicTrie, parse_delayed, parse_subscription,
    validate_topic_filter, validate_topic_name,
};

/// Few distinct levels, so that filters collide, share prefixes and hit the edge cases often.
const NAME_LEVELS: &[&str] = &["", "$SYS", "$x", "a", "b"];
const FILTER_LEVELS: &[&str] = &["", "$SYS", "$x", "a", "b", "+", "#"];

fn levels_of(alphabet: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet), 1..=max).prop_map(|l| l.join("/"))
}

/// Valid filters: `#` only as the last level.
fn valid_filter() -> impl Strategy<Value = String> {
    let no_hash = &FILTER_LEVELS[..FILTER_LEVELS.len() - 1];
    (levels_of(no_hash, 4), any::<bool>())
        .prop_map(|(body, hash)| if hash { format!("{body}/#") } else { body })
}

/// Any mix of levels, `#` in the middle and `a+`-style levels included.
fn any_filter() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => valid_filter(),
        1 => levels_of(FILTER_LEVELS, 5),
        1 => "[a+#$/]{0,6}",
    ]
}

fn topic_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => levels_of(NAME_LEVELS, 5),
        1 => "[a+#$/]{0,6}",
    ]
}

/// Filters matching `topic` according to the trie, as strings, checking each is reported once.
fn trie_matches(trie: &TopicTrie, topic: &str, out: &mut Matches) -> BTreeSet<String> {
    trie.matches(topic, out);
    let found: BTreeSet<String> = out.ids().iter().map(|&id| trie.filter_string(id)).collect();
    assert_eq!(
        found.len(),
        out.ids().len(),
        "a filter reported twice for {topic:?}"
    );
    found
}

fn model_matches(filters: &BTreeSet<String>, topic: &str) -> BTreeSet<String> {
    filters
        .iter()
        .filter(|f| topic::matches(f, topic))
        .cloned()
        .collect()
}

fn assert_agrees(trie: &TopicTrie, live: &BTreeSet<String>, topics: &[String]) {
    assert_eq!(trie.len(), live.len());
    for filter in live {
        let id = trie.get(filter).expect("live filter present");
        assert_eq!(&trie.filter_string(id), filter);
    }
    let mut out = Matches::default();
    for topic in topics {
        assert_eq!(
            trie_matches(trie, topic, &mut out),
            model_matches(live, topic),
            "{topic:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn trie_agrees_with_linear_matcher(
        filters in prop::collection::vec(any_filter(), 0..40),
        topics in prop::collection::vec(topic_name(), 1..20),
    ) {
        let mut trie = TopicTrie::new();
        for filter in &filters {
            let id = trie.insert(filter);
            prop_assert_eq!(trie.insert(filter), id, "insert is idempotent");
        }
        let live: BTreeSet<String> = filters.into_iter().collect();
        assert_agrees(&trie, &live, &topics);
    }

    #[test]
    fn trie_agrees_after_removals(
        filters in prop::collection::vec((any_filter(), any::<bool>()), 0..40),
        readd in prop::collection::vec(any_filter(), 0..10),
        topics in prop::collection::vec(topic_name(), 1..20),
    ) {
        let mut trie = TopicTrie::new();
        for (filter, _) in &filters {
            trie.insert(filter);
        }
        let mut live: BTreeSet<String> = filters.iter().map(|(f, _)| f.clone()).collect();
        for (filter, remove) in &filters {
            if *remove {
                let was_live = live.remove(filter);
                prop_assert_eq!(trie.remove(filter).is_some(), was_live);
                prop_assert_eq!(trie.get(filter), None);
            }
        }
        assert_agrees(&trie, &live, &topics);

        // Freed slots and labels are reused without confusing the survivors.
        for filter in readd {
            trie.insert(&filter);
            live.insert(filter);
        }
        assert_agrees(&trie, &live, &topics);

        for filter in &live {
            prop_assert!(trie.remove(filter).is_some());
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1, "only the root is left");
    }

    #[test]
    fn validators_never_panic(s in any::<String>(), now in any::<u64>()) {
        check_validators(&s, now);
    }

    #[test]
    fn validators_never_panic_on_special_forms(
        s in "(\\$share/|\\$queue/|\\$exclusive/|\\$delayed/)?[a$/+#0-9 \u{0}-]{0,20}",
        now in any::<u64>(),
    ) {
        check_validators(&s, now);
    }
}

/// Runs every validator on `s` and checks they are consistent with each other.
fn check_validators(s: &str, now: u64) {
    let filter = validate_topic_filter(s, 8);
    let name = validate_topic_name(s, 8);
    assert!(
        name.is_err() || filter.is_ok(),
        "a valid name is a valid filter: {s:?}"
    );
    match parse_subscription(s, 8) {
        Ok(SubscriptionTopic::Plain(f)) => assert_eq!(f, s),
        Ok(SubscriptionTopic::Shared { filter, .. } | SubscriptionTopic::Exclusive(filter)) => {
            assert_eq!(validate_topic_filter(filter, 8), Ok(()));
        }
        Err(e) => assert!(!e.statement().is_empty()),
    }
    if let Some(Ok(delayed)) = parse_delayed(s, now) {
        assert_eq!(validate_topic_name(delayed.topic, usize::MAX), Ok(()));
        assert!(u64::from(delayed.delay_secs) <= 4_294_967);
    }
    let _ = topic::has_wildcards(s);
    let _ = topic::matches(s, s);
    let mut trie = TopicTrie::new();
    let id = trie.insert(s);
    trie.matches(s, &mut Matches::default());
    assert_eq!(trie.remove(s), Some(id));
}

#[test]
fn deep_topic_completes_without_recursion() {
    let mut trie = TopicTrie::new();
    for filter in ["#", "+/#", "a/#", "a/+/a", "b/#"] {
        trie.insert(filter);
    }
    let topic = vec!["a"; 100_000].join("/");
    let mut out = Matches::default();
    let found = trie_matches(&trie, &topic, &mut out);
    let want: BTreeSet<String> = ["#", "+/#", "a/#"].map(String::from).into();
    assert_eq!(found, want);

    // A deep filter too: insert, match and remove walk levels without recursion.
    let id = trie.insert(&topic);
    trie.matches(&topic, &mut out);
    assert!(out.ids().contains(&id));
    assert_eq!(trie.remove(&topic), Some(id));
    assert_eq!(trie.len(), 5);
}
