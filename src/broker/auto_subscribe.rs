//! Auto subscribe (FEATURES.md §7), sans-io: the `[[auto_subscribe.topics]]` rules rendered for one
//! connecting client. `${clientid}`, `${username}`, `${host}` (the peer's IP) and `${port}` (the
//! peer's port) are filled in; a rule using `${username}` is skipped for a client without one.
//! The rendered filters are not validated here: the broker subscribes them through its normal
//! subscribe path (which validates them), after the CONNACK and without a SUBACK.

use std::net::SocketAddr;

use crate::config::AutoSubscribeTopic;
use crate::protocol::SubscriptionOptions;

/// Who the topics are rendered for.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub peer: SocketAddr,
}

/// Every rule's filter for `client`, with its subscription options, in configuration order.
pub fn render_all<'r>(
    rules: &'r [AutoSubscribeTopic],
    client: Client<'r>,
) -> impl Iterator<Item = (String, SubscriptionOptions)> + 'r {
    rules
        .iter()
        .filter_map(move |r| render(&r.topic, client).map(|t| (t, r.options())))
}

/// `template` for `client`; `None` when it uses `${username}` and the client has none.
pub fn render(template: &str, client: Client<'_>) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let (value, len) = if rest.starts_with("${clientid}") {
            (client.client_id.to_owned(), "${clientid}".len())
        } else if rest.starts_with("${username}") {
            (client.username?.to_owned(), "${username}".len())
        } else if rest.starts_with("${host}") {
            (client.peer.ip().to_string(), "${host}".len())
        } else if rest.starts_with("${port}") {
            (client.peer.port().to_string(), "${port}".len())
        } else {
            ("${".to_owned(), 2)
        };
        out.push_str(&value);
        rest = &rest[len..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{QoS, RetainHandling};

    fn client(username: Option<&str>) -> Client<'_> {
        Client {
            client_id: "c1",
            username,
            peer: "10.1.2.3:4567".parse().unwrap(),
        }
    }

    #[test]
    fn placeholders_are_filled_in() {
        assert_eq!(
            render(
                "a/${clientid}/${username}/${host}/${port}",
                client(Some("u"))
            )
            .as_deref(),
            Some("a/c1/u/10.1.2.3/4567")
        );
        assert_eq!(
            render("${clientid}${clientid}", client(None)).as_deref(),
            Some("c1c1")
        );
        // Unknown placeholders stay as written.
        assert_eq!(
            render("x/${nope}/$1/${", client(None)).as_deref(),
            Some("x/${nope}/$1/${")
        );
        let v6 = Client {
            peer: "[::1]:80".parse().unwrap(),
            ..client(None)
        };
        assert_eq!(render("${host}:${port}", v6).as_deref(), Some("::1:80"));
    }

    #[test]
    fn username_rule_is_skipped_without_a_username() {
        assert_eq!(render("u/${username}", client(None)), None);
        assert_eq!(
            render("u/${username}", client(Some(""))).as_deref(),
            Some("u/")
        );
    }

    #[test]
    fn rules_keep_their_order_and_options() {
        let rules = vec![
            AutoSubscribeTopic {
                topic: "u/${username}".into(),
                qos: QoS::AtLeastOnce,
                rh: RetainHandling::SendAtSubscribe,
                rap: false,
                nl: false,
            },
            AutoSubscribeTopic {
                topic: "c/${clientid}".into(),
                qos: QoS::ExactlyOnce,
                rh: RetainHandling::DoNotSend,
                rap: true,
                nl: true,
            },
        ];
        let got: Vec<_> = render_all(&rules, client(None)).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "c/c1");
        assert_eq!(got[0].1, rules[1].options());
        let got: Vec<_> = render_all(&rules, client(Some("u"))).collect();
        assert_eq!(
            got.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["u/u", "c/c1"]
        );
    }
}
