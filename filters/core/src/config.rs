//! Plugin configuration: JSON, parsed strictly, every error naming the field at fault.

use serde::de::DeserializeOwned;
use std::fmt;

/// A configuration error: which field, and why. Displayed as one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`providers.main.issuer`, `rules[2].match`), or `.` for the root.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with `parent` (for errors raised by a nested check).
    pub fn within(mut self, parent: &str) -> Self {
        if self.field == "." || self.field.is_empty() {
            self.field = parent.to_string();
        } else if self.field.starts_with('[') {
            self.field = format!("{parent}{}", self.field);
        } else {
            self.field = format!("{parent}.{}", self.field);
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: field `{}`: {}",
            self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Headers that carry HTTP framing or connection handling: no filter may set or remove them.
pub const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
];

/// RFC 9110 token characters (header names, methods, cookie names).
pub fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Checks a configured header name (an RFC 9110 token, no pseudo-header) and returns it
/// lower-cased, as Envoy hands header names to filters.
pub fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(field, "header name must not be empty"));
    }
    if name.starts_with(':') {
        return Err(ConfigError::new(
            field,
            format!("pseudo-header `{name}` cannot be used"),
        ));
    }
    if !name.chars().all(is_tchar) {
        return Err(ConfigError::new(
            field,
            format!("`{name}` is not a valid header name"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// [`header_name`] for a header the filter writes or removes: also refuses `forbidden`
/// (pass [`FRAMING_HEADERS`], plus whatever else the filter must never touch).
pub fn writable_header_name(
    field: &str,
    name: &str,
    forbidden: &[&str],
) -> Result<String, ConfigError> {
    let lower = header_name(field, name)?;
    if forbidden.contains(&lower.as_str()) {
        return Err(ConfigError::new(
            field,
            format!("`{lower}` carries HTTP framing or routing and cannot be changed"),
        ));
    }
    Ok(lower)
}

/// Parses a configured duration, the one syntax of every policy: a decimal number followed by
/// `ms`, `s`, `m` or `h` (`"60s"`, `"0.5s"`, `"500ms"`, `"1.5m"`, `"1h"`). It must be a whole
/// number of milliseconds (`"0.0005s"` is refused, never rounded); bounds are the caller's.
pub fn parse_duration(field: &str, s: &str) -> Result<std::time::Duration, ConfigError> {
    let bad = || {
        ConfigError::new(
            field,
            format!("`{s}` is not a duration like \"60s\", \"0.5s\" or \"500ms\""),
        )
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = (
        s.get(..split).ok_or_else(bad)?,
        s.get(split..).ok_or_else(bad)?,
    );
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || (num.contains('.') && frac.is_empty()) || frac.len() > 9 {
        return Err(bad());
    }
    let int: u64 = int.parse().map_err(|_| bad())?;
    let mut ms = int.checked_mul(unit_ms).ok_or_else(bad)?;
    if !frac.is_empty() {
        // frac / 10^len × unit_ms must be a whole number of milliseconds.
        let f: u64 = frac.parse().map_err(|_| bad())?;
        let scale = 10u64.pow(u32::try_from(frac.len()).map_err(|_| bad())?);
        let part = f.checked_mul(unit_ms).ok_or_else(bad)?;
        if part % scale != 0 {
            return Err(ConfigError::new(
                field,
                format!("`{s}` is not a whole number of milliseconds"),
            ));
        }
        ms = ms.checked_add(part / scale).ok_or_else(bad)?;
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// Parses the plugin configuration. Empty input means `{}` (every field at its default).
/// Unknown fields, wrong types and duplicate keys are errors naming the field.
pub fn parse_config<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let trimmed = bytes.iter().all(|b| b.is_ascii_whitespace());
    let input: &[u8] = if trimmed { b"{}" } else { bytes };
    // serde would also accept an array for a struct (positional fields): refuse it.
    if input.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConfigError::new(
            ".",
            "the configuration must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(input);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; keep it, it helps find the spot.
        ConfigError::new(path, inner.to_string())
    })?;
    de.end().map_err(|e| ConfigError::new(".", e.to_string()))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        n: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        name: String,
        #[serde(default)]
        items: Vec<Inner>,
    }

    #[test]
    fn empty_config_is_defaults() {
        let c: Cfg = parse_config(b"  ").unwrap();
        assert_eq!(
            c,
            Cfg {
                name: String::new(),
                items: vec![]
            }
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse_config::<Cfg>(br#"{"items":[{"n":1},{"n":2,"m":3}]}"#).unwrap_err();
        assert_eq!(e.field, "items[1].m");
        assert!(e.reason.contains("unknown field `m`"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = parse_config::<Cfg>(br#"{"items":[{"n":"x"}]}"#).unwrap_err();
        assert_eq!(e.field, "items[0].n");
        assert!(e.reason.contains("invalid type"), "{e}");
        assert!(e
            .to_string()
            .starts_with("invalid configuration: field `items[0].n`"));
    }

    #[test]
    fn duplicate_and_trailing_input_rejected() {
        assert!(parse_config::<Cfg>(br#"{"name":"a","name":"b"}"#).is_err());
        assert!(parse_config::<Cfg>(br#"{"name":"a"} {}"#).is_err());
        assert!(parse_config::<Cfg>(b"[]").is_err());
    }

    #[test]
    fn header_names_are_checked_and_lower_cased() {
        assert_eq!(header_name("f", "X-User-Id").unwrap(), "x-user-id");
        for (bad, why) in [
            ("", "must not be empty"),
            (":path", "pseudo-header"),
            ("a b", "not a valid header name"),
            ("a:b", "not a valid header name"),
            ("é", "not a valid header name"),
        ] {
            let e = header_name("f", bad).unwrap_err();
            assert_eq!(e.field, "f");
            assert!(e.reason.contains(why), "{bad}: {e}");
        }
        let e = writable_header_name("g", "Content-Length", FRAMING_HEADERS).unwrap_err();
        assert!(e.reason.contains("framing"), "{e}");
        assert_eq!(
            writable_header_name("g", "Cookie", FRAMING_HEADERS).unwrap(),
            "cookie"
        );
        assert!(writable_header_name("g", "Cookie", &["cookie"]).is_err());
    }

    #[test]
    fn durations_have_one_syntax() {
        use std::time::Duration;
        for (text, ms) in [
            ("5s", 5000),
            ("1.5s", 1500),
            ("500ms", 500),
            ("0.5s", 500),
            ("1m", 60_000),
            ("1.5m", 90_000),
            ("1h", 3_600_000),
            ("0ms", 0),
        ] {
            assert_eq!(
                parse_duration("f", text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "",
            "5",
            "s",
            "5 s",
            "-1s",
            "1.s",
            ".5s",
            "5d",
            "1e3ms",
            "0.0005s",
            "1.0001s",
            "99999999999999999999h",
        ] {
            let e = parse_duration("cache_duration", bad).unwrap_err();
            assert_eq!(e.field, "cache_duration", "{bad}");
        }
        assert!(parse_duration("f", "0.0005s")
            .unwrap_err()
            .reason
            .contains("whole number of milliseconds"));
    }

    #[test]
    fn within_builds_paths() {
        assert_eq!(
            ConfigError::new("n", "x").within("items[1]").field,
            "items[1].n"
        );
        assert_eq!(
            ConfigError::new("[0]", "x").within("items").field,
            "items[0]"
        );
        assert_eq!(ConfigError::new(".", "x").within("items").field, "items");
    }
}
