//! Client-id and topic templates: `%i` (the client's index, start number included), `%c` (the
//! client id), `%r` (the role: `pub`, `sub` or `conn`) and `%%` (a literal `%`).

/// What a template's placeholders stand for.
pub struct Vars<'a> {
    pub index: u64,
    pub client_id: &'a str,
    pub role: &'a str,
}

/// Checks that every `%` starts a known placeholder.
pub fn validate(template: &str) -> Result<(), String> {
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('i' | 'c' | 'r' | '%') => {}
                Some(other) => {
                    return Err(format!(
                        "template {template:?}: unknown placeholder %{other} (known: %i, %c, %r, %%)"
                    ));
                }
                None => return Err(format!("template {template:?}: ends with a lone %")),
            }
        }
    }
    Ok(())
}

/// Whether `template` uses placeholder `%p` (`p` one of `i`, `c`, `r`).
pub fn uses(template: &str, p: char) -> bool {
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some(x) if x == p => return true,
                _ => {}
            }
        }
    }
    false
}

/// Expands a (validated) template.
pub fn expand(template: &str, v: &Vars) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('i') => {
                use std::fmt::Write;
                let _ = write!(out, "{}", v.index);
            }
            Some('c') => out.push_str(v.client_id),
            Some('r') => out.push_str(v.role),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The subscription filter that covers every topic a publish-topic template expands to: each
/// topic level holding a placeholder becomes `+` (`bench/%i` → `bench/+`).
pub fn wildcard_filter(topic_template: &str) -> String {
    topic_template
        .split('/')
        .map(|level| {
            if level.contains("%i") || level.contains("%c") || level.contains("%r") {
                "+"
            } else {
                level
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(i: u64) -> Vars<'static> {
        Vars {
            index: i,
            client_id: "bench-sub-7",
            role: "sub",
        }
    }

    #[test]
    fn expands_every_placeholder() {
        assert_eq!(expand("bench-%r-%i", &vars(42)), "bench-sub-42");
        assert_eq!(expand("t/%c/x", &vars(1)), "t/bench-sub-7/x");
        assert_eq!(expand("100%%/%i%i", &vars(3)), "100%/33");
        assert_eq!(expand("plain/topic", &vars(3)), "plain/topic");
        assert_eq!(expand("", &vars(3)), "");
        assert_eq!(expand("ünï/%i", &vars(0)), "ünï/0");
    }

    #[test]
    fn validation_rejects_unknown_placeholders() {
        assert!(validate("a/%i/%c/%r/%%").is_ok());
        assert!(validate("a/%x").unwrap_err().contains("%x"));
        assert!(validate("a/%").is_err());
    }

    #[test]
    fn finds_placeholders() {
        assert!(uses("bench-%r-%i", 'r'));
        assert!(uses("bench-%r-%i", 'i'));
        assert!(!uses("bench-%%i", 'i'));
        assert!(!uses("bench", 'c'));
    }

    #[test]
    fn wildcard_filter_replaces_templated_levels() {
        assert_eq!(wildcard_filter("bench/%i"), "bench/+");
        assert_eq!(wildcard_filter("bench/dev-%i/data"), "bench/+/data");
        assert_eq!(wildcard_filter("bench/%c/%i"), "bench/+/+");
        assert_eq!(wildcard_filter("bench/fixed"), "bench/fixed");
    }
}
