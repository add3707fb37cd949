//! Value forms shared by many keys: durations ("500ms", "30s", "1h30m", "infinity"), byte sizes
//! ("64KB", "1MB"), range-checked integers, 0/1 flags, and the serde `deserialize_with` helpers
//! that turn them into typed fields with EMQX-style error messages.

use std::fmt;
use std::time::Duration;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// Parses a duration: a non-negative integer (seconds), or one or more `<integer><unit>` parts
/// with unit `ms`, `s`, `m`, `h`, `d` or `w` ("500ms", "30s", "1h30m"). Units are case-insensitive.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration such as \"500ms\", \"30s\", \"1m\", \"2h\", \"1d\"";
    let s = s.trim();
    if s.is_empty() {
        return Err(EXPECTED.into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| "duration too large".into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit_len = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || unit_len == 0 {
            return Err(EXPECTED.into());
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| "duration too large".to_string())?;
        let unit_ms: u64 = match rest[digits..digits + unit_len]
            .to_ascii_lowercase()
            .as_str()
        {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(EXPECTED.into()),
        };
        let part = n.checked_mul(unit_ms).ok_or("duration too large")?;
        total_ms = total_ms.checked_add(part).ok_or("duration too large")?;
        rest = &rest[digits + unit_len..];
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a byte size: a non-negative integer (bytes), or `<integer><unit>` with unit `B`, `KB`,
/// `MB` or `GB`, 1024-based as in EMQX ("64KB" = 65536). Units are case-insensitive.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a size such as \"512B\", \"64KB\", \"1MB\", \"1GB\"";
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(EXPECTED.into());
    }
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| "size too large".to_string())?;
    let mult: u64 = match s[digits..].trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return Err(EXPECTED.into()),
    };
    n.checked_mul(mult).ok_or_else(|| "size too large".into())
}

/// A value given either as a TOML integer or as a string; floats, booleans and tables are
/// refused with `expected`.
enum Raw {
    Int(u64),
    Str(String),
}

fn raw<'de, D: Deserializer<'de>>(d: D, expected: &'static str) -> Result<Raw, D::Error> {
    struct RawVisitor(&'static str);
    impl Visitor<'_> for RawVisitor {
        type Value = Raw;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
            u64::try_from(v)
                .map(Raw::Int)
                .map_err(|_| E::custom(format!("{}, not a negative number", self.0)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
            Ok(Raw::Int(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
            Ok(Raw::Str(v.to_owned()))
        }
    }
    d.deserialize_any(RawVisitor(expected))
}

/// Either a plain integer or a string turned into `T` by `parse_str`.
enum Parsed<T> {
    Int(u64),
    Value(T),
}

fn int_or_str<'de, D, T>(
    d: D,
    expected: &'static str,
    parse_str: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Parsed<T>, D::Error>
where
    D: Deserializer<'de>,
{
    match raw(d, expected)? {
        Raw::Int(n) => Ok(Parsed::Int(n)),
        Raw::Str(s) => parse_str(&s).map(Parsed::Value).map_err(de::Error::custom),
    }
}

/// `deserialize_with` for a duration.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match int_or_str(d, "expected a duration", parse_duration)? {
        Parsed::Int(secs) => Ok(Duration::from_secs(secs)),
        Parsed::Value(v) => Ok(v),
    }
}

fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
    none: &'static str,
    expected: &'static str,
) -> Result<Option<Duration>, D::Error> {
    let parsed = int_or_str(d, expected, |s| {
        if s.trim().eq_ignore_ascii_case(none) {
            Ok(None)
        } else {
            parse_duration(s)
                .map(Some)
                .map_err(|e| format!("{e}, or \"{none}\""))
        }
    })?;
    let v = match parsed {
        Parsed::Int(secs) => Some(Duration::from_secs(secs)),
        Parsed::Value(v) => v,
    };
    if v.is_some_and(|v| v.is_zero()) {
        return Err(de::Error::custom(format!(
            "must be greater than 0 (or \"{none}\")"
        )));
    }
    Ok(v)
}

/// `deserialize_with` for a positive duration or `"infinity"` (`None`).
pub(crate) fn duration_or_infinity<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    optional_duration(d, "infinity", "expected a duration or \"infinity\"")
}

/// `deserialize_with` for a positive duration or `"disabled"` (`None`).
pub(crate) fn duration_or_disabled<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    optional_duration(d, "disabled", "expected a duration or \"disabled\"")
}

/// `deserialize_with` for a byte size in `MIN..=MAX`.
pub(crate) fn size<'de, D, const MIN: u64, const MAX: u64>(d: D) -> Result<u64, D::Error>
where
    D: Deserializer<'de>,
{
    let v = match int_or_str(d, "expected a size", parse_size)? {
        Parsed::Int(n) | Parsed::Value(n) => n,
    };
    if !(MIN..=MAX).contains(&v) {
        return Err(de::Error::custom(format!(
            "must be between {MIN} and {MAX} bytes"
        )));
    }
    Ok(v)
}

/// `deserialize_with` for an integer in `MIN..=MAX`, converted to the field's type.
pub(crate) fn int<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let v = match int_or_str(d, "expected an integer", |_| {
        Err("expected an integer".to_string())
    })? {
        Parsed::Int(n) | Parsed::Value(n) => n,
    };
    checked::<D::Error, T>(v, MIN, MAX)
}

/// `deserialize_with` for an integer in `MIN..=MAX` or `"infinity"` (`None`).
pub(crate) fn int_or_infinity<'de, D, T, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let parsed = int_or_str(d, "expected an integer or \"infinity\"", |s| {
        if s.trim().eq_ignore_ascii_case("infinity") {
            Ok(())
        } else {
            Err("expected an integer or \"infinity\"".into())
        }
    })?;
    match parsed {
        Parsed::Int(n) => checked::<D::Error, T>(n, MIN, MAX).map(Some),
        Parsed::Value(()) => Ok(None),
    }
}

fn checked<E: de::Error, T: TryFrom<u64>>(v: u64, min: u64, max: u64) -> Result<T, E> {
    if !(min..=max).contains(&v) {
        return Err(E::custom(format!("must be between {min} and {max}")));
    }
    T::try_from(v).map_err(|_| E::custom(format!("must be between {min} and {max}")))
}

/// `deserialize_with` for a flag written `0` / `1` (as EMQX does) or `false` / `true`.
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct FlagVisitor;
    impl Visitor<'_> for FlagVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("expected 0 or 1")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::custom("must be 0 or 1")),
            }
        }
    }
    d.deserialize_any(FlagVisitor)
}

/// `deserialize_with` for a finite float greater than 0 (integers accepted).
pub(crate) fn positive_float<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct FloatVisitor;
    impl Visitor<'_> for FloatVisitor {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("expected a number")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(E::custom("must be a finite number greater than 0"))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
    }
    d.deserialize_any(FloatVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_forms() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1S"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "s",
            "10",
            "1.5s",
            "-1s",
            "10x",
            "1 s",
            "ms10",
            "99999999999999999999s",
        ] {
            if bad == "10" {
                continue;
            }
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("18446744073709551615d").is_err());
    }

    #[test]
    fn size_forms() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KB"), Ok(65_536));
        assert_eq!(parse_size("1MB"), Ok(1_048_576));
        assert_eq!(parse_size("1GB"), Ok(1_073_741_824));
        assert_eq!(parse_size("1mb"), Ok(1_048_576));
        assert_eq!(parse_size("100"), Ok(100));
        for bad in ["", "MB", "1.5MB", "-1KB", "1TB", "1 M", "99999999999GB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
