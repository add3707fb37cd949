//! Tests of loading: defaults, every key's forms and ranges, unknown keys and rule checks.

use super::*;

fn err(src: &str) -> String {
    Config::from_toml_str(src).expect_err(src).to_string()
}

#[test]
fn scratch() {
    for s in [
        "[mqtt]\nmax_inflight = \"abc\"",
        "[mqtt]\nmax_inflght = 3",
        "[[rewrite]]\naction = \"publish\"\nsource_topic = \"a/#\"\nre = \"(\"\ndest_topic = \"b\"",
        "[[rewrite]]\naction = \"publish\"\nsource_topic = \"a/#\"\ndest_topic = \"b\"",
        "[[rewrite]]\naction = \"publish\"\nsource_topic = \"a/#\"\nre = \"x\"\ndest_topic = \"b\"\n[[rewrite]]\naction = \"bad\"",
        "mqtt = 5",
        "[mqtt\n",
        "[broker.shared_subscription_group.g1]\nstrategy = \"nope\"",
        "[mqtt]\nretain_available = \"yes\"",
        "[listeners.tcp.a]\nbind = \"x\"",
        "[runtime]\nshards = 0",
        "foo = 1",
    ] {
        println!("{}", err(s));
    }
}
