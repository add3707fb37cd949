//! Topic rewrite (FEATURES.md §8), sans-io: `[[rewrite]]` rules turned into two lists, one for
//! PUBLISH topics (and wills) and one for SUBSCRIBE / UNSUBSCRIBE filters, each in reverse
//! configuration order. The first rule whose `source_topic` filter matches is final: its regex
//! either matches (the topic becomes `dest_topic` with `$1..$N`, `${clientid}` and `${username}`
//! filled in) or not (the topic stays as it is, no other rule is tried).
//!
//! For `$share/<group>/<filter>` and `$queue/<filter>` only `<filter>` is rewritten. The result is
//! not validated here: the caller validates it as it validates any topic or filter. Nothing is
//! allocated unless a rule rewrites the topic.

use crate::config::{RewriteAction, RewriteRule};
use crate::topic::matches;

/// The rewrite rules of one broker, ready to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewriter {
    /// `publish` and `all` rules, last configured first.
    publish: Vec<RewriteRule>,
    /// `subscribe` and `all` rules, last configured first.
    subscribe: Vec<RewriteRule>,
}

/// Who the topic is rewritten for: fills `${clientid}` and `${username}` (empty without one).
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

impl Rewriter {
    /// The rules in configuration order, as `[[rewrite]]` lists them.
    pub fn new(rules: &[RewriteRule]) -> Self {
        let pick = |f: fn(RewriteAction) -> bool| {
            rules
                .iter()
                .rev()
                .filter(|r| f(r.action))
                .cloned()
                .collect()
        };
        Rewriter {
            publish: pick(RewriteAction::applies_to_publish),
            subscribe: pick(RewriteAction::applies_to_subscribe),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty()
    }

    /// The new name of a PUBLISH (or will) topic, `None` when it stays as it is.
    pub fn publish_topic(&self, topic: &str, who: Who<'_>) -> Option<String> {
        apply(&self.publish, topic, who)
    }

    /// The new SUBSCRIBE / UNSUBSCRIBE filter, `None` when it stays as it is. Of a shared
    /// subscription only the filter after `$share/<group>/` or `$queue/` is rewritten.
    pub fn subscribe_filter(&self, filter: &str, who: Who<'_>) -> Option<String> {
        if self.subscribe.is_empty() {
            return None;
        }
        let (prefix, inner) = split_share(filter);
        let inner = apply(&self.subscribe, inner, who)?;
        Some(format!("{prefix}{inner}"))
    }
}

/// `$share/<group>/` or `$queue/` and the filter after it; an empty prefix for other filters (and
/// for a `$share/` without a group separator, which validation refuses later anyway).
fn split_share(filter: &str) -> (&str, &str) {
    if let Some(rest) = filter.strip_prefix("$share/")
        && let Some(slash) = rest.find('/')
    {
        return filter.split_at("$share/".len() + slash + 1);
    }
    if filter.starts_with("$queue/") {
        return filter.split_at("$queue/".len());
    }
    ("", filter)
}

fn apply(rules: &[RewriteRule], topic: &str, who: Who<'_>) -> Option<String> {
    let rule = rules.iter().find(|r| matches(&r.source_topic, topic))?;
    // `is_match` does not allocate; `captures` does, so it runs only when there is a result.
    if !rule.re.is_match(topic) {
        return None;
    }
    let caps = rule.re.captures(topic)?;
    Some(render(&rule.dest_topic, &caps, who))
}

/// `dest_topic` with `$N` replaced by capture N (empty if the group took no part; left as written
/// if the regex has no group N), `${clientid}` and `${username}` by the client's.
fn render(dest: &str, caps: &regex::Captures<'_>, who: Who<'_>) -> String {
    let mut out = String::with_capacity(dest.len() + 16);
    let mut rest = dest;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("${clientid}") {
            out.push_str(who.client_id);
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix("${username}") {
            out.push_str(who.username.unwrap_or(""));
            rest = after;
            continue;
        }
        let digits = rest[1..].bytes().take_while(u8::is_ascii_digit).count();
        let group = rest[1..1 + digits].parse::<usize>().ok();
        match group {
            Some(n) if n >= 1 && n < caps.len() => {
                out.push_str(caps.get(n).map_or("", |m| m.as_str()));
                rest = &rest[1 + digits..];
            }
            _ => {
                out.push('$');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicRegex;

    fn rule(action: RewriteAction, source: &str, re: &str, dest: &str) -> RewriteRule {
        RewriteRule {
            action,
            source_topic: source.into(),
            re: TopicRegex::new(re).unwrap(),
            dest_topic: dest.into(),
        }
    }

    const WHO: Who<'static> = Who {
        client_id: "c1",
        username: Some("u1"),
    };

    #[test]
    fn captures_replace_dollar_n() {
        let r = Rewriter::new(&[rule(RewriteAction::Publish, "x/#", r"^x/y/(.+)$", "z/y/$1")]);
        assert_eq!(r.publish_topic("x/y/1", WHO).as_deref(), Some("z/y/1"));
        assert_eq!(r.publish_topic("other", WHO), None);
        // A publish rule leaves filters alone.
        assert_eq!(r.subscribe_filter("x/y/1", WHO), None);
    }

    #[test]
    fn last_rule_first_and_first_match_is_final() {
        let r = Rewriter::new(&[
            rule(RewriteAction::All, "x/#", r"^x/(.+)$", "first/$1"),
            rule(RewriteAction::All, "x/y/#", r"^x/y/(\d+)$", "second/$1"),
        ]);
        // The last rule is tried first.
        assert_eq!(r.publish_topic("x/y/1", WHO).as_deref(), Some("second/1"));
        // Its filter matches but its regex does not: unchanged, the earlier rule is not tried.
        assert_eq!(r.publish_topic("x/y/a", WHO), None);
        assert_eq!(r.subscribe_filter("x/y/a", WHO), None);
        // Only the earlier rule's filter matches.
        assert_eq!(r.publish_topic("x/q", WHO).as_deref(), Some("first/q"));
    }

    #[test]
    fn actions_pick_their_lists() {
        let r = Rewriter::new(&[
            rule(RewriteAction::Subscribe, "a/#", r"^a/(.*)$", "sub/$1"),
            rule(RewriteAction::Publish, "a/#", r"^a/(.*)$", "pub/$1"),
        ]);
        assert_eq!(r.publish_topic("a/1", WHO).as_deref(), Some("pub/1"));
        assert_eq!(r.subscribe_filter("a/+", WHO).as_deref(), Some("sub/+"));
        assert!(!r.is_empty());
        assert!(Rewriter::new(&[]).is_empty());
    }

    #[test]
    fn placeholders_and_odd_dollars() {
        let r = Rewriter::new(&[rule(
            RewriteAction::Publish,
            "#",
            r"^(\w+)/(\w+)?/?(.*)$",
            "${clientid}/${username}/$2/$1/$9/$0/$$/$",
        )]);
        assert_eq!(
            r.publish_topic("a/b/c", WHO).as_deref(),
            Some("c1/u1/b/a/$9/$0/$$/$")
        );
        let anon = Who {
            client_id: "c2",
            username: None,
        };
        // Group 2 took no part: empty; no username: empty.
        assert_eq!(
            r.publish_topic("a//c", anon).as_deref(),
            Some("c2///a/$9/$0/$$/$")
        );
    }

    #[test]
    fn share_prefix_is_kept() {
        let r = Rewriter::new(&[rule(RewriteAction::Subscribe, "x/#", r"^x/(.+)$", "z/$1")]);
        assert_eq!(
            r.subscribe_filter("$share/g/x/y/+", WHO).as_deref(),
            Some("$share/g/z/y/+")
        );
        assert_eq!(
            r.subscribe_filter("$queue/x/1", WHO).as_deref(),
            Some("$queue/z/1")
        );
        assert_eq!(r.subscribe_filter("x/1", WHO).as_deref(), Some("z/1"));
        // The group is not a topic level: `$share/x/...` is not seen as `x/...`.
        assert_eq!(r.subscribe_filter("$share/x/q", WHO), None);
        assert_eq!(split_share("$share/g"), ("", "$share/g"));
    }

    #[test]
    fn wildcard_source_does_not_match_dollar_topics() {
        let r = Rewriter::new(&[rule(RewriteAction::Publish, "#", "(.*)", "all/$1")]);
        assert_eq!(r.publish_topic("$SYS/x", WHO), None);
        assert_eq!(r.publish_topic("t", WHO).as_deref(), Some("all/t"));
    }
}
