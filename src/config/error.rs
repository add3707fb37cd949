//! [`ConfigError`] and the translation of a TOML / serde error into one that names the full key
//! path (`mqtt.max_inflight`, `rewrite[1].re`) and the offending value as written.

use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};

/// Why a configuration was refused. Every message starts with `config:`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("config: TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A key that no section knows.
    #[error("config: unknown key {key} ({expected})")]
    UnknownKey { key: String, expected: String },
    /// A value of the wrong type or out of range.
    #[error("config: {key} = {value}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A problem with a whole table or array (a missing key, too many entries).
    #[error("config: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// The full key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { key, .. }
            | Self::InvalidValue { key, .. }
            | Self::Invalid { key, .. } => Some(key),
            Self::Io { .. } | Self::Syntax { .. } => None,
        }
    }
}

/// Turns an error of `toml::from_str` on `src` into a [`ConfigError`] naming the key.
pub(crate) fn from_toml(src: &str, err: &toml::de::Error) -> ConfigError {
    let message = err.message().trim();
    let Some(span) = err.span() else {
        return ConfigError::Invalid {
            key: "(document)".into(),
            reason: message.into(),
        };
    };
    let root = match DeTable::parse(src) {
        Ok(root) => root,
        Err(_) => {
            let (line, column) = line_column(src, span.start);
            return ConfigError::Syntax {
                line,
                column,
                message: message.into(),
            };
        }
    };
    let mut best = None;
    locate_table(root.get_ref(), &span, "", &mut best);
    let Some(found) = best else {
        return ConfigError::Invalid {
            key: "(document)".into(),
            reason: message.into(),
        };
    };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let expected = rest.split_once(", ").map_or("", |(_, e)| e);
        let expected = expected.replace("there are no fields", "this table takes no keys");
        return ConfigError::UnknownKey {
            key: found.path,
            expected,
        };
    }
    // A table's own error (a missing key) is not about its text; a wrong type is.
    let quote = !found.is_table || message.starts_with("invalid type:");
    match found.value {
        Some(v) if quote => ConfigError::InvalidValue {
            key: found.path,
            value: excerpt(&src[v]),
            reason: reason(message),
        },
        _ => ConfigError::Invalid {
            key: found.path,
            reason: reason(message),
        },
    }
}

/// The value as written, cut to its first line and 80 characters.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None if line.len() < text.len() => format!("{line}..."),
        None => line.to_owned(),
    }
}

/// Shortens serde's "invalid type: string \"abc\", expected u32" to "expected an integer".
fn reason(message: &str) -> String {
    let message = message.lines().next().unwrap_or(message);
    let typed = message.starts_with("invalid type:") || message.starts_with("invalid value:");
    if typed && let Some((_, expected)) = message.split_once(", expected ") {
        return format!(
            "expected {}",
            friendly(expected.trim_start_matches("expected "))
        );
    }
    if let Some(rest) = message.strip_prefix("unknown variant ")
        && let Some((_, expected)) = rest.split_once(", expected ")
    {
        return format!("expected {expected}");
    }
    message.to_owned()
}

fn friendly(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "an integer"
        }
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "a table",
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table",
        e => e,
    }
}

struct Found {
    path: String,
    /// The value's span, for quoting it; `None` when the error is on the key itself.
    value: Option<Range<usize>>,
    is_table: bool,
    /// Length of the span that contained the error; the smallest wins.
    width: usize,
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

fn consider(best: &mut Option<Found>, candidate: Found) {
    if best.as_ref().is_none_or(|b| candidate.width <= b.width) {
        *best = Some(candidate);
    }
}

fn locate_table(table: &DeTable<'_>, err: &Range<usize>, prefix: &str, best: &mut Option<Found>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        locate_entry(&path, Some(k.span()), v.span(), v.get_ref(), err, best);
    }
}

fn locate_entry(
    path: &str,
    key_span: Option<Range<usize>>,
    value_span: Range<usize>,
    value: &DeValue<'_>,
    err: &Range<usize>,
    best: &mut Option<Found>,
) {
    if let Some(ks) = key_span.filter(|ks| contains(ks, err)) {
        let width = ks.len();
        consider(
            best,
            Found {
                path: path.to_owned(),
                value: None,
                is_table: false,
                width,
            },
        );
    }
    let is_table = value.is_table() || value.is_array();
    if contains(&value_span, err) {
        let width = value_span.len();
        consider(
            best,
            Found {
                path: path.to_owned(),
                value: Some(value_span),
                is_table,
                width,
            },
        );
    }
    if let Some(t) = value.as_table() {
        locate_table(t, err, path, best);
    } else if let Some(a) = value.as_array() {
        for (i, item) in a.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            locate_entry(&item_path, None, item.span(), item.get_ref(), err, best);
        }
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
