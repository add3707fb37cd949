//! Tests of loading: defaults, every key's forms and ranges, unknown keys and rule checks.

use std::time::Duration;

use super::*;
use crate::protocol::RetainHandling;

fn ok(src: &str) -> Config {
    Config::from_toml_str(src).unwrap_or_else(|e| panic!("{src:?} refused: {e}"))
}

fn err(src: &str) -> String {
    match Config::from_toml_str(src) {
        Ok(c) => panic!("{src:?} accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the message starts with `config:` and contains every needle.
fn assert_mentions(msg: &str, needles: &[&str]) {
    assert!(msg.starts_with("config: "), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "{msg:?} does not mention {n:?}");
    }
}

fn mqtt(key: &str, value: &str) -> String {
    format!("[mqtt]\n{key} = {value}\n")
}

#[test]
fn default_config_text_is_the_default() {
    assert_eq!(ok(DEFAULT_CONFIG), Config::default());
    assert_eq!(ok(""), Config::default());
    assert_eq!(ok("# only a comment\n"), Config::default());
}

#[test]
fn default_config_lists_every_key() {
    // Each key of every section appears in the embedded file, commented or not.
    let keys = [
        "name",
        "max_packet_size",
        "max_clientid_len",
        "max_topic_levels",
        "max_qos_allowed",
        "retain_available",
        "wildcard_subscription",
        "shared_subscription =",
        "exclusive_subscription",
        "keepalive_multiplier",
        "session_expiry_interval",
        "message_expiry_interval",
        "max_inflight",
        "max_mqueue_len",
        "mqueue_store_qos0",
        "max_awaiting_rel",
        "await_rel_timeout",
        "retry_interval",
        "max_subscriptions",
        "idle_timeout",
        "max_topic_alias",
        "shared_subscription_strategy",
        "shared_subscription_initial_sticky_pick",
        "max_retained_messages",
        "max_payload_size",
        "max_delayed_messages",
        "sys_msg_interval",
        "sys_heartbeat_interval",
        "client_connected",
        "client_disconnected",
        "client_subscribed",
        "client_unsubscribed",
        "[[auto_subscribe.topics]]",
        "[[rewrite]]",
        "[broker.shared_subscription_group.",
        "shared_subscription_seed",
        "[listeners.tcp.default]",
        "bind",
        "backlog",
        "max_connections",
        "shards",
        "pin_cores",
        "cores",
        "batch_window_us",
        "level",
    ];
    for k in keys {
        assert!(DEFAULT_CONFIG.contains(k), "{k} missing from default.toml");
    }
}

#[test]
fn defaults_match_features_md() {
    let c = Config::default();
    assert!(c.node.name.starts_with("ringmq@") && c.node.name.len() > "ringmq@".len());
    let m = &c.mqtt;
    assert_eq!(m.max_packet_size, 1_048_576);
    assert_eq!(m.max_qos_allowed, QoS::ExactlyOnce);
    assert_eq!(m.session_expiry_interval, Duration::from_secs(7200));
    assert_eq!(m.message_expiry_interval, None);
    assert_eq!(m.retry_interval, None);
    assert_eq!(m.max_subscriptions, None);
    assert_eq!(m.await_rel_timeout, Duration::from_secs(300));
    assert_eq!(m.idle_timeout, Duration::from_secs(15));
    assert_eq!(m.shared_subscription_strategy, SharedStrategy::RoundRobin);
    assert_eq!(c.sys_topics.sys_msg_interval, Some(Duration::from_secs(60)));
    assert_eq!(c.retainer.max_payload_size, 1 << 20);
    let l = &c.listeners.tcp["default"];
    assert_eq!(l.bind.to_string(), "0.0.0.0:1883");
    assert_eq!((l.backlog, l.max_connections), (1024, None));
    assert_eq!(c.runtime.shards, Shards::Auto);
    assert_eq!(c.runtime.batch_window_us, 0);
    assert_eq!(c.log.level, LogLevel::Info);
}

#[test]
fn duration_forms() {
    let cases = [
        ("\"500ms\"", Duration::from_millis(500)),
        ("\"30s\"", Duration::from_secs(30)),
        ("\"1m\"", Duration::from_secs(60)),
        ("\"2h\"", Duration::from_secs(7200)),
        ("\"1d\"", Duration::from_secs(86_400)),
        ("\"1h30m\"", Duration::from_secs(5400)),
        ("45", Duration::from_secs(45)),
    ];
    for (text, want) in cases {
        let c = ok(&mqtt("session_expiry_interval", text));
        assert_eq!(c.mqtt.session_expiry_interval, want, "{text}");
        let c = ok(&mqtt("message_expiry_interval", text));
        assert_eq!(c.mqtt.message_expiry_interval, Some(want), "{text}");
    }
    assert_eq!(
        ok(&mqtt("retry_interval", "\"infinity\""))
            .mqtt
            .retry_interval,
        None
    );
    let c =
        ok("[sys_topics]\nsys_msg_interval = \"disabled\"\nsys_heartbeat_interval = \"disabled\"");
    assert_eq!(
        (
            c.sys_topics.sys_msg_interval,
            c.sys_topics.sys_heartbeat_interval
        ),
        (None, None)
    );
}

#[test]
fn duration_errors_name_key_and_value() {
    for (key, value) in [
        ("session_expiry_interval", "\"infinity\""),
        ("session_expiry_interval", "\"10 parsecs\""),
        ("idle_timeout", "1.5"),
        ("idle_timeout", "-3"),
        ("await_rel_timeout", "true"),
        ("message_expiry_interval", "\"0s\""),
        ("retry_interval", "0"),
    ] {
        assert_mentions(&err(&mqtt(key, value)), &[&format!("mqtt.{key}"), value]);
    }
    let msg = err("[sys_topics]\nsys_msg_interval = \"never\"");
    assert_mentions(
        &msg,
        &["sys_topics.sys_msg_interval", "\"never\"", "disabled"],
    );
}

#[test]
fn size_forms() {
    for (text, want) in [
        ("\"512B\"", 512),
        ("\"64KB\"", 65_536),
        ("\"1MB\"", 1 << 20),
        ("4096", 4096),
    ] {
        assert_eq!(
            ok(&mqtt("max_packet_size", text)).mqtt.max_packet_size,
            want,
            "{text}"
        );
    }
    let c = ok("[retainer]\nmax_payload_size = \"1GB\"");
    assert_eq!(c.retainer.max_payload_size, 1 << 30);
    assert_mentions(
        &err(&mqtt("max_packet_size", "\"1TB\"")),
        &["mqtt.max_packet_size", "\"1TB\""],
    );
    assert_mentions(
        &err("[retainer]\nmax_payload_size = 1.5"),
        &["retainer.max_payload_size", "1.5"],
    );
}

#[test]
fn max_packet_size_limit_is_the_mqtt_maximum() {
    let c = ok(&mqtt("max_packet_size", "268435460"));
    assert_eq!(c.mqtt.max_packet_size, 268_435_460);
    assert_mentions(
        &err(&mqtt("max_packet_size", "268435461")),
        &["mqtt.max_packet_size", "268435461"],
    );
    assert_mentions(
        &err(&mqtt("max_packet_size", "\"257MB\"")),
        &["mqtt.max_packet_size", "\"257MB\""],
    );
    assert_mentions(
        &err(&mqtt("max_packet_size", "0")),
        &["mqtt.max_packet_size", "= 0:"],
    );
}

#[test]
fn range_checks_name_key_and_value() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("mqtt", "max_qos_allowed", &["3", "-1", "\"2\""]),
        ("mqtt", "max_inflight", &["0", "65536", "\"abc\""]),
        ("mqtt", "max_clientid_len", &["22", "65536"]),
        ("mqtt", "max_topic_levels", &["0", "65536"]),
        ("mqtt", "max_topic_alias", &["-1", "65536"]),
        (
            "mqtt",
            "keepalive_multiplier",
            &["0", "-1.5", "0.0", "nan", "inf", "\"1.5\""],
        ),
        ("mqtt", "max_mqueue_len", &["-1", "\"lots\"", "4294967296"]),
        ("mqtt", "max_awaiting_rel", &["-1", "65536"]),
        ("mqtt", "max_subscriptions", &["-5", "\"none\""]),
        (
            "mqtt",
            "shared_subscription_strategy",
            &["\"fastest\"", "1"],
        ),
        (
            "mqtt",
            "shared_subscription_initial_sticky_pick",
            &["\"sticky\""],
        ),
        ("mqtt", "retain_available", &["1", "\"true\""]),
        ("retainer", "max_retained_messages", &["-1"]),
        ("delayed", "max_delayed_messages", &["-1", "\"10\""]),
        ("delayed", "enable", &["\"yes\""]),
        ("runtime", "shards", &["0", "-2", "\"many\"", "1.5"]),
        ("runtime", "pin_cores", &["2"]),
        ("runtime", "cores", &["\"0,1\"", "{ a = 1 }"]),
        ("runtime", "batch_window_us", &["-1", "10001", "\"250us\""]),
        ("log", "level", &["\"verbose\""]),
        ("node", "name", &["\"a/b\"", "\"\"", "\"x#\""]),
    ];
    for (section, key, values) in cases {
        for value in *values {
            let msg = err(&format!("[{section}]\n{key} = {value}\n"));
            assert_mentions(&msg, &[&format!("{section}.{key}"), value]);
        }
    }
}

#[test]
fn integer_message_is_readable() {
    assert_eq!(
        err(&mqtt("max_inflight", "\"abc\"")),
        "config: mqtt.max_inflight = \"abc\": expected an integer"
    );
    assert_eq!(
        err(&mqtt("max_inflight", "0")),
        "config: mqtt.max_inflight = 0: must be between 1 and 65535"
    );
}

#[test]
fn in_range_values_are_accepted() {
    let c = ok(
        "[mqtt]\nmax_qos_allowed = 1\nmax_inflight = 65535\nmax_clientid_len = 23\n\
                max_topic_alias = 0\nkeepalive_multiplier = 2\nmax_mqueue_len = \"infinity\"\n\
                max_subscriptions = 10\nshared_subscription_strategy = \"hash_topic\"\n\
                shared_subscription_initial_sticky_pick = \"local\"\n\
                [runtime]\nshards = 2\ncores = [3, 1]\nbatch_window_us = 10000\n\
                [log]\nlevel = \"warning\"",
    );
    assert_eq!(c.mqtt.max_qos_allowed, QoS::AtLeastOnce);
    assert_eq!(c.mqtt.max_inflight, 65535);
    assert_eq!(c.mqtt.max_clientid_len, 23);
    assert_eq!(c.mqtt.max_topic_alias, 0);
    assert_eq!(c.mqtt.keepalive_multiplier, 2.0);
    assert_eq!(c.mqtt.max_mqueue_len, None);
    assert_eq!(c.mqtt.max_subscriptions, Some(10));
    assert_eq!(
        c.mqtt.shared_subscription_strategy,
        SharedStrategy::HashTopic
    );
    assert_eq!(
        c.mqtt.shared_subscription_initial_sticky_pick,
        StickyPick::Local
    );
    assert_eq!(c.runtime.shards, Shards::Count(2.try_into().unwrap()));
    assert_eq!(c.runtime.cores, [3, 1]);
    assert_eq!(c.runtime.batch_window_us, 10_000);
    assert_eq!(c.log.level, LogLevel::Warn);
}

#[test]
fn all_seven_strategies_parse() {
    use SharedStrategy::*;
    for (name, want) in [
        ("random", Random),
        ("round_robin", RoundRobin),
        ("round_robin_per_group", RoundRobinPerGroup),
        ("local", Local),
        ("sticky", Sticky),
        ("hash_clientid", HashClientid),
        ("hash_topic", HashTopic),
    ] {
        let c = ok(&mqtt("shared_subscription_strategy", &format!("{name:?}")));
        assert_eq!(c.mqtt.shared_subscription_strategy, want);
    }
}

#[test]
fn runtime_cross_checks() {
    let msg = err("[runtime]\nshards = 3\ncores = [0, 1]");
    assert_mentions(&msg, &["runtime.cores", "[0, 1]", "runtime.shards = 3"]);
    assert_mentions(
        &err("[runtime]\ncores = [1, 2, 1]"),
        &["runtime.cores", "[1, 2, 1]", "twice"],
    );
    assert_eq!(ok("[runtime]\ncores = [5]").runtime.cores, [5]);
    assert_mentions(
        &err("[runtime]\ncores = [0, -1]"),
        &["runtime.cores[1] = -1"],
    );
}

#[test]
fn unknown_keys_are_refused() {
    assert_mentions(&err("foo = 1"), &["unknown key foo"]);
    assert_mentions(&err("[foo]\nbar = 1"), &["unknown key foo"]);
    assert_mentions(
        &err(&mqtt("max_inflght", "3")),
        &["unknown key mqtt.max_inflght", "max_inflight"],
    );
    assert_mentions(
        &err("[sys_topics.sys_event_messages]\nclient_kicked = true"),
        &["unknown key sys_topics.sys_event_messages.client_kicked"],
    );
    assert_mentions(
        &err("[listeners.tcp.a]\nport = 1883"),
        &["unknown key listeners.tcp.a.port"],
    );
    assert_mentions(
        &err("[listeners.ssl.a]\nbind = 8883"),
        &["unknown key listeners.ssl"],
    );
    assert_mentions(
        &err("[[auto_subscribe.topics]]\ntopic = \"a\"\nqos2 = 1"),
        &["unknown key auto_subscribe.topics[0].qos2"],
    );
    assert_mentions(
        &err("[broker.shared_subscription_group.g]\nstrategy = \"random\"\npick = 1"),
        &["unknown key broker.shared_subscription_group.g.pick"],
    );
    assert_mentions(
        &err("mqtt = { max_inflight = 3, x = 1 }"),
        &["unknown key mqtt.x"],
    );
}

#[test]
fn inline_tables_and_dotted_keys_get_paths() {
    assert_mentions(
        &err("mqtt = { max_inflight = 0 }"),
        &["mqtt.max_inflight = 0"],
    );
    assert_mentions(
        &err("mqtt.max_inflight = \"x\""),
        &["mqtt.max_inflight = \"x\""],
    );
    assert_mentions(&err("mqtt = 5"), &["mqtt = 5", "expected a table"]);
}

#[test]
fn syntax_errors_give_a_line() {
    assert_mentions(&err("[mqtt]\nmax_inflight = = 3\n"), &["syntax", "line 2"]);
}

fn rewrite(action: &str, source: &str, re: &str, dest: &str) -> String {
    format!(
        "[[rewrite]]\naction = {action:?}\nsource_topic = {source:?}\nre = {re:?}\ndest_topic = {dest:?}\n"
    )
}

#[test]
fn rewrite_rules() {
    let src = rewrite("publish", "x/#", "^x/y/(.+)$", "z/y/$1")
        + &rewrite("subscribe", "y/+/z/#", "^y/(.+)/z/(.+)$", "y/z/$2");
    let c = ok(&src);
    assert_eq!(c.rewrite.len(), 2);
    assert_eq!(c.rewrite[0].action, RewriteAction::Publish);
    assert_eq!(c.rewrite[0].re.as_str(), "^x/y/(.+)$");
    assert!(c.rewrite[0].re.is_match("x/y/1"));
    assert_eq!(c.rewrite[1].dest_topic, "y/z/$2");

    for action in ["publish", "all"] {
        for dest in ["a/+", "a/#"] {
            let msg = err(&rewrite(action, "a/#", "^a/(.+)$", dest));
            assert_mentions(&msg, &["rewrite[0].dest_topic", dest]);
        }
    }
    let c = ok(&rewrite("subscribe", "a/#", "^a/(.+)$", "b/+/$1"));
    assert_eq!(c.rewrite[0].dest_topic, "b/+/$1");

    // The second rule is the bad one, and the message says so.
    let src = rewrite("subscribe", "a/#", "a", "b") + &rewrite("all", "a/#", "^a/(.+$", "b");
    assert_mentions(&err(&src), &["rewrite[1].re", "^a/(.+$", "invalid regex"]);
    for bad in ["a/#/b", "a+", ""] {
        let msg = err(&rewrite("all", bad, "a", "b"));
        assert_mentions(&msg, &["rewrite[0].source_topic", &format!("{bad:?}")]);
    }
    assert_mentions(
        &err(&rewrite("forward", "a", "a", "b")),
        &["rewrite[0].action", "\"forward\""],
    );
    assert_mentions(
        &err("[[rewrite]]\naction = \"all\"\nsource_topic = \"a\"\nre = \"a\""),
        &["rewrite[0]", "dest_topic"],
    );
}

fn auto(topic: &str) -> String {
    format!("[[auto_subscribe.topics]]\ntopic = {topic:?}\n")
}

#[test]
fn auto_subscribe_rules() {
    let c = ok(
        "[[auto_subscribe.topics]]\ntopic = \"c/${clientid}\"\nqos = 1\nrh = 2\nrap = 1\nnl = true",
    );
    let t = &c.auto_subscribe.topics[0];
    assert_eq!(t.topic, "c/${clientid}");
    let o = t.options();
    assert_eq!(
        (o.qos, o.retain_handling, o.retain_as_published, o.no_local),
        (QoS::AtLeastOnce, RetainHandling::DoNotSend, true, true)
    );
    let d = &ok(&auto("t")).auto_subscribe.topics[0];
    assert_eq!(
        (d.qos, d.rh, d.rap, d.nl),
        (
            QoS::AtMostOnce,
            RetainHandling::SendAtSubscribe,
            false,
            false
        )
    );

    let twenty: String = (0..20).map(|i| auto(&format!("t/{i}"))).collect();
    assert_eq!(ok(&twenty).auto_subscribe.topics.len(), 20);
    let msg = err(&(twenty + &auto("t/20")));
    assert_mentions(&msg, &["auto_subscribe.topics", "21", "20"]);

    for (key, value) in [
        ("qos", "3"),
        ("rh", "3"),
        ("rap", "2"),
        ("nl", "-1"),
        ("qos", "\"1\""),
    ] {
        let msg = err(&format!("{}{key} = {value}\n", auto("t")));
        assert_mentions(&msg, &[&format!("auto_subscribe.topics[0].{key}"), value]);
    }
    assert_mentions(&err(&auto("")), &["auto_subscribe.topics[0].topic", "\"\""]);
}

#[test]
fn shared_group_override() {
    let c = ok("[mqtt]\nshared_subscription_strategy = \"random\"\n\
                [broker.shared_subscription_group.g1]\nstrategy = \"sticky\"\n\
                [broker.shared_subscription_group.g2]\nstrategy = \"hash_clientid\"");
    let groups = &c.broker.shared_subscription_group;
    assert_eq!(groups["g1"].strategy, SharedStrategy::Sticky);
    assert_eq!(c.shared_strategy("g2"), SharedStrategy::HashClientid);
    assert_eq!(c.shared_strategy("other"), SharedStrategy::Random);
    let msg = err("[broker.shared_subscription_group.g]\nstrategy = \"fair\"");
    assert_mentions(
        &msg,
        &["broker.shared_subscription_group.g.strategy", "\"fair\""],
    );
    assert_mentions(
        &err("[broker.shared_subscription_group.g]\n"),
        &["broker.shared_subscription_group.g", "strategy"],
    );
    assert_mentions(
        &err("[broker.shared_subscription_group.\"a/b\"]\nstrategy = \"random\""),
        &["a/b"],
    );
}

#[test]
fn listeners() {
    let c = ok(
        "[listeners.tcp.a]\nbind = \"127.0.0.1:1884\"\nbacklog = 10\nmax_connections = 5000\n\
                [listeners.tcp.b]\nbind = 1885\n[listeners.tcp.c]\nbind = \":1886\"\nenable = false",
    );
    let tcp = &c.listeners.tcp;
    assert_eq!(tcp.len(), 3, "naming listeners replaces the default");
    assert_eq!(tcp["a"].bind.to_string(), "127.0.0.1:1884");
    assert_eq!(
        (tcp["a"].backlog, tcp["a"].max_connections),
        (10, Some(5000))
    );
    assert_eq!(tcp["b"].bind.to_string(), "0.0.0.0:1885");
    assert_eq!(tcp["b"].backlog, 1024);
    assert_eq!(tcp["c"].bind.to_string(), "0.0.0.0:1886");
    assert!(!tcp["c"].enable);
    assert_eq!(
        ok("[listeners.tcp.v6]\nbind = \"[::1]:1883\"")
            .listeners
            .tcp["v6"]
            .bind
            .to_string(),
        "[::1]:1883"
    );
    for (key, value) in [
        ("bind", "\"localhost\""),
        ("bind", "70000"),
        ("backlog", "0"),
        ("max_connections", "0"),
    ] {
        let msg = err(&format!("[listeners.tcp.a]\n{key} = {value}"));
        assert_mentions(&msg, &[&format!("listeners.tcp.a.{key}"), value]);
    }
}

#[test]
fn load_from_file() {
    let missing = std::env::temp_dir().join("ringmq-config-test-missing.toml");
    let msg = Config::load(&missing).unwrap_err().to_string();
    assert_mentions(&msg, &[&missing.display().to_string()]);

    let path = std::env::temp_dir().join(format!("ringmq-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, "[mqtt]\nmax_inflight = 7\n").unwrap();
    let c = Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(c.unwrap().mqtt.max_inflight, 7);
}

#[test]
fn error_key_accessor() {
    let e = Config::from_toml_str(&mqtt("max_inflight", "0")).unwrap_err();
    assert_eq!(e.key(), Some("mqtt.max_inflight"));
}

#[test]
fn messages_read_well() {
    let cases = [
        (
            mqtt("idle_timeout", "1.5"),
            "config: mqtt.idle_timeout = 1.5: expected a duration",
        ),
        (
            mqtt("idle_timeout", "-3"),
            "config: mqtt.idle_timeout = -3: expected a duration, not a negative number",
        ),
        (
            mqtt("keepalive_multiplier", "\"x\""),
            "config: mqtt.keepalive_multiplier = \"x\": expected a number",
        ),
        (
            mqtt("retain_available", "1"),
            "config: mqtt.retain_available = 1: expected a boolean",
        ),
        (
            "[[auto_subscribe.topics]]\ntopic = \"t\"\nnl = 2".into(),
            "config: auto_subscribe.topics[0].nl = 2: must be 0 or 1",
        ),
        (
            "[runtime]\ncores = { a = 1 }".into(),
            "config: runtime.cores = { a = 1 }: expected an array",
        ),
        (
            "[[rewrite]]\naction = \"all\"".into(),
            "config: rewrite[0]: missing field `source_topic`",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(err(&src), want);
    }
}
