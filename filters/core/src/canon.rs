//! The canonical request view: what every policy matches on, and what it refuses.
//!
//! Backends read the same bytes differently (Tomcat and Spring strip `;params` and resolve
//! `..;`, Rack and WSGI fold `_` into `-` in header names, qs and Rails build objects from
//! brackets, Django upper-cases methods). A policy that matched the raw request would decide
//! on something the backend does not act on. So every policy matches on one canonical form,
//! built here, and refuses what has no single meaning ([`Ambiguity`], answered with 400).
//!
//! The path, step by step ([`canonical_path`]):
//! 1. the query string and anything after it are cut off; a fragment (`#`) is refused;
//! 2. percent-escapes are checked (`%zz`, a cut-off `%4` are refused), unreserved characters
//!    (`A-Z a-z 0-9 - . _ ~`) are decoded, every other escape is kept with upper-case hex;
//!    an encoded `/` or `\` is refused (or, with `allow_encoded_slashes`, kept as data in its
//!    segment), as are encoded control characters and double encoding (`%25` + two hex digits);
//! 3. a raw `\` is refused (or kept as data with `allow_backslashes`);
//! 4. `;` path parameters are refused (or, with `allow_path_params`, cut from each segment as
//!    Tomcat does); a dot segment with parameters (`..;`, `.;x`, `..%3B`) is always refused; an
//!    encoded `;` is refused too unless parameters are allowed (then it is data, as in Tomcat);
//! 5. a dot segment written with an escape (`%2e%2e`, `.%2E`) is refused, and so is `..` right
//!    after an empty segment (`/a//../b`: merging slashes first or not gives two paths); literal
//!    `.` and `..` are resolved (RFC 3986 §5.2.4), never above the root;
//! 6. a segment ending in `.` or a space (`/admin./x`, `/admin%20/x`: IIS strips them) is
//!    refused unless `allow_trailing_dots`; so are percent-encoded overlong UTF-8 forms
//!    (`%C0%AE`);
//! 7. empty segments are merged (`//a` is `/a`), the trailing slash is kept (matching decides
//!    whether it counts), and with `case_insensitive_paths` the path is lower-cased.
//!
//! The method ([`crate::http::effective_method`]): a method override (`X-HTTP-Method-Override`
//! and its variants in any spelling, `_method` in the query of a POST) naming another method is
//! refused, or with `allow_method_override` is the method matched on.
//!
//! The URL override ([`crate::url_override::canonical_request_path`]): `X-Original-URL` or
//! `X-Rewrite-URL` (any spelling) naming another path than the request's is refused (IIS URL
//! Rewrite, Zend, old Symfony route on it), unless `allow_url_override`.

use serde::Deserialize;

/// Why a request was refused as ambiguous. [`Ambiguity::reason`] is the short code used in
/// the problem reply, the log line and the metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ambiguity {
    /// The path is not origin-form (`/…`) or `*`.
    NotOriginForm,
    /// A `#` fragment in the request target.
    Fragment,
    /// A malformed percent-escape.
    BadEscape,
    /// `%2F` or `%5C`: a separator for some servers, data for others.
    EncodedSlash,
    /// A literal `\`: a separator for some servers (IIS, some Java containers).
    Backslash,
    /// An encoded control character (`%00`, `%0A`, …).
    EncodedControl,
    /// `%25` followed by two hex digits: a second decoding changes the path.
    DoubleEncoding,
    /// `;` parameters in a path segment (Tomcat, Jetty and Spring strip them).
    PathParams,
    /// A dot segment carrying parameters (`..;`): Tomcat resolves it, others do not.
    DotSegmentParams,
    /// A dot segment written with escapes (`%2e%2e`): resolved by some servers only.
    EncodedDotSegment,
    /// `..` right after an empty segment (`/admin//../public`): servers that merge slashes
    /// first (Tomcat) resolve it to `/public`, RFC 3986 and Envoy to `/admin/public`.
    DotSegmentAfterEmpty,
    /// A segment ending in `.` or a space (`/admin./x`, `/admin%20/x`, `/...`): IIS and
    /// ASP.NET on Windows strip them (`/admin/x`), other servers do not.
    SegmentTrailingDot,
    /// A percent-encoded overlong UTF-8 form (`%C0%AE` for `.`, `%C0%AF` for `/`,
    /// `%E0%80%AE`): old decoders read them as the ASCII character, UTF-8 says they are invalid.
    OverlongUtf8,
    /// `X-HTTP-Method-Override`, `X-HTTP-Method` or `X-Method-Override` (any spelling), or a
    /// `_method` query parameter on a POST, naming another method: Express, Rails, Laravel and
    /// Symfony run that method's handler, while the policy would match the request's own.
    MethodOverride(String),
    /// `X-Original-URL` or `X-Rewrite-URL` (any spelling) naming another path than the
    /// request's: IIS URL Rewrite, Zend and old Symfony route on it.
    UrlOverride(String),
    /// A header given in two spellings that backends fold together (`x_user_id` beside
    /// `x-user-id`), or in a spelling other than the configured one.
    HeaderSpelling(String),
    /// A header that must have one value was given several times.
    RepeatedHeader(String),
    /// A cookie that must have one value was given several times.
    RepeatedCookie(String),
    /// A query parameter that must have one value was given several times, or in a bracket
    /// form (`name[]`, `name[0]`, `name[a][b]`) that frameworks turn into arrays or objects.
    RepeatedParam(String),
}

impl Ambiguity {
    /// Short, stable code: metric label, log reason, problem `reason` member.
    pub fn reason(&self) -> &'static str {
        match self {
            Ambiguity::NotOriginForm => "path_not_origin_form",
            Ambiguity::Fragment => "path_fragment",
            Ambiguity::BadEscape => "path_bad_escape",
            Ambiguity::EncodedSlash => "path_encoded_slash",
            Ambiguity::Backslash => "path_backslash",
            Ambiguity::EncodedControl => "path_encoded_control",
            Ambiguity::DoubleEncoding => "path_double_encoding",
            Ambiguity::PathParams => "path_params",
            Ambiguity::DotSegmentParams => "path_dot_segment_params",
            Ambiguity::EncodedDotSegment => "path_encoded_dot_segment",
            Ambiguity::DotSegmentAfterEmpty => "path_dot_segment_after_empty",
            Ambiguity::SegmentTrailingDot => "path_segment_trailing_dot",
            Ambiguity::OverlongUtf8 => "path_overlong_utf8",
            Ambiguity::MethodOverride(_) => "method_override",
            Ambiguity::UrlOverride(_) => "url_override",
            Ambiguity::HeaderSpelling(_) => "header_spelling",
            Ambiguity::RepeatedHeader(_) => "repeated_header",
            Ambiguity::RepeatedCookie(_) => "repeated_cookie",
            Ambiguity::RepeatedParam(_) => "repeated_param",
        }
    }

    /// Every reason code, for defining one metric per reason at configure time.
    pub const REASONS: &'static [&'static str] = &[
        "path_not_origin_form",
        "path_fragment",
        "path_bad_escape",
        "path_encoded_slash",
        "path_backslash",
        "path_encoded_control",
        "path_double_encoding",
        "path_params",
        "path_dot_segment_params",
        "path_encoded_dot_segment",
        "path_dot_segment_after_empty",
        "path_segment_trailing_dot",
        "path_overlong_utf8",
        "method_override",
        "url_override",
        "header_spelling",
        "repeated_header",
        "repeated_cookie",
        "repeated_param",
    ];

    /// The 400 problem reply: `detail` says what was ambiguous, `reason` is the code.
    pub fn reply(&self) -> crate::action::LocalReply {
        crate::action::LocalReply::builder(400, &self.detail())
            .member("reason", serde_json::Value::from(self.reason()))
            .build()
    }

    /// The fixed sentence of the problem reply (no request data in it, except a configured
    /// name: header, cookie or parameter names come from the configuration).
    pub fn detail(&self) -> String {
        match self {
            Ambiguity::NotOriginForm => "the request path must start with '/'".into(),
            Ambiguity::Fragment => "the request path must not carry a fragment".into(),
            Ambiguity::BadEscape => "the request path has a malformed percent-escape".into(),
            Ambiguity::EncodedSlash => "the request path has an encoded '/' or '\\'".into(),
            Ambiguity::Backslash => "the request path has a '\\'".into(),
            Ambiguity::EncodedControl => "the request path has an encoded control character".into(),
            Ambiguity::DoubleEncoding => "the request path is percent-encoded twice".into(),
            Ambiguity::PathParams => "the request path has ';' parameters".into(),
            Ambiguity::DotSegmentParams => {
                "the request path has a dot segment with ';' parameters".into()
            }
            Ambiguity::EncodedDotSegment => {
                "the request path has a percent-encoded dot segment".into()
            }
            Ambiguity::DotSegmentAfterEmpty => {
                "the request path has a '..' segment after an empty segment".into()
            }
            Ambiguity::SegmentTrailingDot => {
                "the request path has a segment ending in '.' or a space".into()
            }
            Ambiguity::OverlongUtf8 => {
                "the request path has a percent-encoded overlong UTF-8 sequence".into()
            }
            Ambiguity::MethodOverride(n) => {
                format!("'{n}' names another method than the request's")
            }
            Ambiguity::UrlOverride(n) => format!("'{n}' names another path than the request's"),
            Ambiguity::HeaderSpelling(n) => {
                format!("header '{n}' is given in another spelling ('_' for '-')")
            }
            Ambiguity::RepeatedHeader(n) => format!("header '{n}' must be given once"),
            Ambiguity::RepeatedCookie(n) => format!("cookie '{n}' must be given once"),
            Ambiguity::RepeatedParam(n) => {
                format!("query parameter '{n}' must be given once, without brackets")
            }
        }
    }
}

/// One policy's answer to ambiguous requests: a 400 problem reply naming the reason, one
/// log line, and a counter per reason (`meshwall.<policy>.ambiguous.reason.<reason>`, in
/// Prometheus `meshwall_<policy>_ambiguous{reason="<reason>"}`; see [`crate::metrics`]).
pub struct Refusals {
    policy: &'static str,
    counters: crate::metrics::Counters,
}

impl Refusals {
    /// Defines the counters (at configure time); `policy` is the policy's `Policy::NAME`.
    pub fn define(policy: &'static str, host: &dyn crate::host::Host) -> Self {
        let counters = crate::metrics::Registry::new(policy, host)
            .counters(
                "ambiguous",
                crate::metrics::Label::Reason,
                Ambiguity::REASONS,
            )
            .unwrap_or_default();
        Refusals { policy, counters }
    }

    /// Counts, logs and answers an ambiguous request.
    pub fn refuse(&self, a: &Ambiguity, host: &dyn crate::host::Host) -> crate::action::Action {
        self.counters.inc(a.reason(), host);
        log::info!(
            "meshwall.{}: 400 ambiguous request: {}",
            self.policy,
            a.reason()
        );
        crate::action::Action::Reply(a.reply())
    }
}

/// How request paths are read: the `canonical` section of every policy's configuration.
/// Every `allow_*` is an opt-out from a refusal, for APIs that really use that form.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanonConfig {
    /// Accept `;` path parameters and ignore them for matching (Tomcat's reading).
    pub allow_path_params: bool,
    /// Accept `%2F` / `%5C` as data inside a segment (never as a separator).
    pub allow_encoded_slashes: bool,
    /// Accept a literal `\` as data inside a segment.
    pub allow_backslashes: bool,
    /// `/a` and `/a/` are the same for exact and prefix matches (Express, Spring MVC).
    pub trailing_slash_insensitive: bool,
    /// Paths compare without regard to ASCII case.
    pub case_insensitive_paths: bool,
    /// A rule naming `GET` also applies to `HEAD` (servers answer HEAD with the GET handler).
    pub head_matches_get: bool,
    /// Accept segments ending in `.` or a space (kept as they are) instead of refusing them.
    pub allow_trailing_dots: bool,
    /// Accept a method override (`X-HTTP-Method-Override` and its variants, `_method` on a
    /// POST) and match on the method it names, as the backend will, instead of refusing it.
    pub allow_method_override: bool,
    /// Do not check `X-Original-URL` / `X-Rewrite-URL`: for gateways whose backends never read
    /// them (or that remove them before the backend).
    pub allow_url_override: bool,
}

impl Default for CanonConfig {
    fn default() -> Self {
        CanonConfig {
            allow_path_params: false,
            allow_encoded_slashes: false,
            allow_backslashes: false,
            trailing_slash_insensitive: true,
            case_insensitive_paths: false,
            head_matches_get: true,
            allow_trailing_dots: false,
            allow_method_override: false,
            allow_url_override: false,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The upper-case hex digit of a nibble (`0..=15`).
fn upper_hex(n: u8) -> char {
    char::from_digit(u32::from(n), 16).map_or('0', |c| c.to_ascii_uppercase())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One segment as it is being built.
#[derive(Default)]
struct Segment {
    text: String,
    /// A `.` in the text came from `%2e`.
    escaped_dot: bool,
    /// The segment had `;` parameters (already cut off).
    params: bool,
    /// Inside the parameters: the rest of the segment is dropped.
    in_params: bool,
}

/// Adds a finished segment to `out`: dot segments resolved, empty ones merged. True when the
/// segment was a dot segment (the path then ends with `/`). `after_empty`: the segment before
/// was empty (`//`).
fn finish_segment(
    seg: Segment,
    out: &mut Vec<String>,
    after_empty: bool,
    cfg: &CanonConfig,
) -> Result<bool, Ambiguity> {
    let dot = seg.text == "." || seg.text == "..";
    if !dot && !cfg.allow_trailing_dots && (seg.text.ends_with('.') || seg.text.ends_with("%20")) {
        return Err(Ambiguity::SegmentTrailingDot);
    }
    if dot && seg.params {
        return Err(Ambiguity::DotSegmentParams);
    }
    if dot && seg.escaped_dot {
        return Err(Ambiguity::EncodedDotSegment);
    }
    if seg.text == ".." && after_empty {
        return Err(Ambiguity::DotSegmentAfterEmpty);
    }
    match seg.text.as_str() {
        "" | "." => Ok(dot),
        ".." => {
            out.pop();
            Ok(true)
        }
        _ => {
            out.push(seg.text);
            Ok(false)
        }
    }
}

/// The canonical form of a request path (the part before `?`). See the module docs.
pub fn canonical_path(raw: &str, cfg: &CanonConfig) -> Result<String, Ambiguity> {
    let path = raw.split('?').next().unwrap_or("");
    if path.contains('#') {
        return Err(Ambiguity::Fragment);
    }
    if path == "*" {
        return Ok("*".into());
    }
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Ambiguity::NotOriginForm);
    }
    let mut out: Vec<String> = Vec::new();
    let mut seg = Segment::default();
    // Whether the canonical path ends with `/` (`/a/`, `/a/.`, `/a//`).
    let mut trailing = false;
    // The segment just finished was empty (`//`).
    let mut last_empty = false;
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' => {
                let s = std::mem::take(&mut seg);
                let empty = s.text.is_empty() && !s.params;
                finish_segment(s, &mut out, last_empty, cfg)?;
                last_empty = empty;
                trailing = true;
                i += 1;
                continue;
            }
            b';' => {
                if !seg.in_params && (seg.text == "." || seg.text == "..") {
                    return Err(Ambiguity::DotSegmentParams);
                }
                if !cfg.allow_path_params {
                    return Err(Ambiguity::PathParams);
                }
                seg.params = true;
                seg.in_params = true;
            }
            b'\\' => {
                if !cfg.allow_backslashes {
                    return Err(Ambiguity::Backslash);
                }
                if !seg.in_params {
                    seg.text.push_str("%5C");
                }
            }
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(Ambiguity::BadEscape);
                };
                let v = h * 16 + l;
                if v < 0x20 || v == 0x7f {
                    return Err(Ambiguity::EncodedControl);
                }
                if (v == b'/' || v == b'\\') && !cfg.allow_encoded_slashes {
                    return Err(Ambiguity::EncodedSlash);
                }
                // An encoded `;` is data for Tomcat (which cuts parameters before decoding) and
                // a parameter for servers that decode first: a dot segment before it is always
                // ambiguous, and so is the `;` itself unless parameters are allowed.
                if v == b';' && !seg.in_params {
                    if seg.text == "." || seg.text == ".." {
                        return Err(Ambiguity::DotSegmentParams);
                    }
                    if !cfg.allow_path_params {
                        return Err(Ambiguity::PathParams);
                    }
                }
                if v == b'%'
                    && bytes.get(i + 3).copied().and_then(hex).is_some()
                    && bytes.get(i + 4).copied().and_then(hex).is_some()
                {
                    return Err(Ambiguity::DoubleEncoding);
                }
                if !seg.in_params {
                    if is_unreserved(v) {
                        seg.text.push(char::from(v));
                        seg.escaped_dot |= v == b'.';
                    } else {
                        seg.text.push('%');
                        seg.text.push(upper_hex(h));
                        seg.text.push(upper_hex(l));
                    }
                }
                i += 3;
                continue;
            }
            _ => {
                if !seg.in_params {
                    // Multi-byte UTF-8 is copied byte-run by byte-run below.
                    if b.is_ascii() {
                        seg.text.push(char::from(b));
                    } else {
                        let start = i;
                        let mut end = i + 1;
                        while end < bytes.len() && !path.is_char_boundary(end) {
                            end += 1;
                        }
                        seg.text.push_str(path.get(start..end).unwrap_or(""));
                        i = end;
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    if !seg.text.is_empty() || seg.params {
        let empty = seg.text.is_empty();
        trailing = finish_segment(seg, &mut out, last_empty, cfg)? || empty;
    }
    let mut canon = String::with_capacity(path.len());
    for s in &out {
        canon.push('/');
        canon.push_str(s);
    }
    if canon.is_empty() || trailing {
        canon.push('/');
    }
    // `%25%34%31`: decoding the unreserved `%34%31` made `%2541`, which a second decoding
    // turns into `%41` and then `A`.
    if has_double_encoding(&canon) {
        return Err(Ambiguity::DoubleEncoding);
    }
    if has_overlong_utf8(&canon) {
        return Err(Ambiguity::OverlongUtf8);
    }
    if cfg.case_insensitive_paths {
        canon.make_ascii_lowercase();
    }
    Ok(canon)
}

/// An escaped byte sequence that starts an overlong UTF-8 form: `%C0`/`%C1` (two bytes),
/// `%E0` + `%80`–`%9F` (three), `%F0` + `%80`–`%8F` (four). The canonical text keeps escapes
/// of non-ASCII bytes with upper-case hex.
fn has_overlong_utf8(s: &str) -> bool {
    let b = s.as_bytes();
    let byte_at = |i: usize| -> Option<u8> {
        if b.get(i) != Some(&b'%') {
            return None;
        }
        Some(hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?)
    };
    (0..b.len()).any(|i| match byte_at(i) {
        Some(0xC0 | 0xC1) => true,
        Some(0xE0) => byte_at(i + 3).is_some_and(|n| (0x80..=0x9F).contains(&n)),
        Some(0xF0) => byte_at(i + 3).is_some_and(|n| (0x80..=0x8F).contains(&n)),
        _ => false,
    })
}

/// `%25` followed by two hex digits: a second percent-decoding changes the text.
fn has_double_encoding(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(5).any(|w| {
        w.first() == Some(&b'%')
            && w.get(1..3) == Some(b"25")
            && w.get(3).copied().and_then(hex).is_some()
            && w.get(4).copied().and_then(hex).is_some()
    })
}

/// A header name as CGI-style servers see it: lower-case, `_` read as `-`.
pub fn fold_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            other => char::from(other.to_ascii_lowercase()),
        })
        .collect()
}

/// Whether two header names are the same for a backend that folds `_` into `-`.
pub fn same_header(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let f = |c: u8| {
                if c == b'_' {
                    b'-'
                } else {
                    c.to_ascii_lowercase()
                }
            };
            f(x) == f(y)
        })
}

#[cfg(test)]
#[path = "canon_tests.rs"]
mod tests;
